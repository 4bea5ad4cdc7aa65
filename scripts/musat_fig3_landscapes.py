"""Toy landscapes and gradient orthogonality near the zero-loss set (Musat Figs. 3, 4; papers.md E2.3, claim 3.4(a)).

What the paper's figures show.
Fig. 3: training trajectories in a 2-D weight plane over the loss landscape. Left: a two-layer
linear net whose zero-loss set is curved; centre: a two-layer linear net whose zero-loss set has
a singular point at (w1, w2) = (0, 0); right: a one-layer leaky-ReLU net (slope 1/10) that
groks simple addition. In each, runs go fast to the zero-loss set, then slide along it towards
smaller norm.
Fig. 4: 𝓛(x, y) = (y − x²)², zero-loss set 𝒵 the parabola y = x². Three points A, B, C with
the same projection onto 𝒵, ever closer to it, seen in three successively magnified views:
the loss gradient becomes orthogonal to 𝒵 as the distance shrinks (Theorem 4.14:
|cos∠(∇𝓛, tangent)| < C·dist). Here we also measure that |cos| is O(dist) (log-log slope 1).

Setups (the data of Fig. 3 are not given; these are our choices, papers.md E2.3):
- (a) curved: `gflow.models.TwoLayerLinear` with one input and one hidden unit, f = w2·w1·x,
  one sample x = 1, y = 1: 𝒵 = {w1w2 = 1}, a hyperbola; minimum-norm points ±(1, 1).
- (b) singular: the same net on one sample x = 1, y = 0: 𝒵 = {w1w2 = 0}, the two axes,
  crossing at the singular origin (the Jacobian (w2, w1) vanishes there), which is also the
  minimum-norm point.
- (c) leaky ReLU: `gflow.models.LeakyReLUNeuron` (slope 1/10), f = σ(w1x1 + w2x2), the sample
  (1, 1) → 2 of Fig. 1: 𝒵 = {w1 + w2 = 2}; the loss has a kink along w1 + w2 = 0, which runs
  from the negative side must cross. The kink is crossed transversally, once, so we integrate
  it as it is (Tsit5, adaptive): the step-size controller rejects a few steps there and moves
  on; no smoothing is used.
- Four initialisations per panel (ours) and weight decay λ_M = 0.02 (ours).
Each run: `gflow.simulate` (Tsit5, rtol 1e-10, atol 1e-12, float64) to Musat slow time
2λ_M t_M = 15.

- Fig. 4: points q = p + δ·n with p = (x0, x0²) on 𝒵 and n its outward unit normal (below the
  parabola, where p is the unique nearest point for every δ > 0). A, B, C: x0 = 0.7 (ours) and
  δ = 0.3, 0.03, 0.003 (ours). |cos| = ‖P_p ∇𝓛(q)‖/‖∇𝓛(q)‖ with P_p the tangent projection at
  p from `gflow.project_tangent` (𝓛 written as a gflow residual problem r = √2(y − x²), so
  F = ½r² = 𝓛), against the closed form |cos| = 4|x0|δ / ((1 + 4x0²)·√(1 + 4x²)), x the first
  coordinate of q. The slope of log|cos| against log δ is fitted for x0 ∈ {0.25, 0.5, 1, 2}
  and δ from 1e−5 to 1e−2.

Time and weight-decay convention (papers.md §1): Musat's 𝓛_λ = (f − y)² + λ_M‖θ‖² is gflow's
2F_λ with F = ½(f − y)², so his run at λ_M is gflow's at λ = λ_M in time t = 2t_M (slow time
τ = λt = 2λ_M t_M). Trajectories are drawn in weight space; times are in Musat's t_M.

Writes `musat_fig3_landscapes.png` (top row: Fig. 3 (a)–(c); bottom row: Fig. 4's three
magnified views and |cos| against distance) and `musat_fig3_landscapes.nc` into `--out`.

    python scripts/musat_fig3_landscapes.py            # quick (= the paper's size): seconds after compilation
    python scripts/musat_fig3_landscapes.py --smoke    # fewer save points and distances
    python scripts/musat_fig3_landscapes.py --full     # more save points (the toys are already full size)
"""

from __future__ import annotations

import functools
import math
import pathlib
import sys
import time

import equinox as eqx
import jax
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))  # scripts/ is not a package
import _figure  # noqa: E402

NAME = "musat_fig3_landscapes"


LAM = 0.02  # Musat's λ_M = gflow's λ (our choice; the paper's is not given)
SLOW_END = 15.0  # Musat slow time 2λ t_M at the end of each run
T_MIN = 1e-3
RTOL, ATOL = 1e-10, 1e-12
PANELS = {
    # name: (title, initialisations)
    "curved": ("(a) curved zero-loss set: f = w2·w1·x, 1 → 1", ((3.0, 0.1), (0.15, 2.8), (0.3, -2.5), (-2.6, 0.5))),
    "singular": (
        "(b) singular point at the origin: f = w2·w1·x, 1 → 0",
        ((2.5, 1.0), (-1.0, 2.5), (1.5, 1.5), (0.8, -2.6)),
    ),
    "leaky": (
        "(c) leaky ReLU (slope 1/10): f = σ(w1x1 + w2x2), (1, 1) → 2",
        ((-1.0, 1.0), (-2.0, -1.0), (-0.5, -2.5), (2.8, 2.2)),
    ),
}
MIN_NORM = {"curved": ((1.0, 1.0), (-1.0, -1.0)), "singular": ((0.0, 0.0),), "leaky": ((1.0, 1.0),)}
FOOT_X0 = 0.7  # foot point of A, B, C on the parabola
ABC = (0.3, 0.03, 0.003)  # distances of A, B, C from 𝒵
VIEW_HALF_WIDTH = (1.0, 0.1, 0.01)  # half-widths of the three magnified views
FIT_FEET = (0.25, 0.5, 1.0, 2.0)
FIT_RANGE = (1e-5, 1e-2)
SIZES = {"smoke": {"saves": 40, "dists": 5}, "quick": {"saves": 300, "dists": 13}, "full": {"saves": 1000, "dists": 25}}


# ---------------------------------------------------------------------------------------------
# Fig. 3: trajectories
# ---------------------------------------------------------------------------------------------


def build_problem(name: str, w0):
    """The gflow Problem of panel `name` started at w0 = (w1, w2)."""
    import jax.numpy as jnp

    import gflow

    w0 = jnp.asarray(w0, float)
    if name in ("curved", "singular"):
        model = gflow.models.TwoLayerLinear(w0[:1].reshape(1, 1), w0[1:])
        data = {"x": jnp.ones((1, 1)), "y": jnp.full((1,), 1.0 if name == "curved" else 0.0)}
    elif name == "leaky":
        model = gflow.models.LeakyReLUNeuron(w0, 0.1)
        data = {"x": jnp.ones((1, 2)), "y": jnp.full((1,), 2.0)}
    else:
        raise ValueError(f"unknown panel {name!r}")
    return gflow.Problem(model, data, loss="mse")


def weights(model) -> np.ndarray:
    """(w1, w2) of a panel's model, for one state or a saved time series (…, 2)."""
    if hasattr(model, "slope"):
        return np.asarray(model.w)
    w1 = np.asarray(model.w1).reshape(np.shape(model.w1)[:-2] + (1,))
    return np.concatenate([w1, np.asarray(model.w2)], axis=-1)


def musat_loss(name: str, w1, w2):
    """Musat's (f − y)² of panel `name` on a grid."""
    if name == "curved":
        return (w1 * w2 - 1.0) ** 2
    if name == "singular":
        return (w1 * w2) ** 2
    z = w1 + w2
    return (np.where(z >= 0, z, 0.1 * z) - 2.0) ** 2


def simulate_panels(n_saves: int, lam: float = LAM) -> dict:
    """Every trajectory of Fig. 3: w (panel, init, time, 2) and Musat's train loss, over t_M."""
    import jax.numpy as jnp

    import gflow

    t_m = np.concatenate([[0.0], np.geomspace(T_MIN, SLOW_END / (2 * lam), n_saves)])
    w = np.zeros((len(PANELS), 4, t_m.size, 2))
    loss = np.zeros((len(PANELS), 4, t_m.size))
    steps = np.zeros((len(PANELS), 4), int)
    for i, (name, (_, inits)) in enumerate(PANELS.items()):
        for j, w0 in enumerate(inits):
            traj = gflow.simulate(
                build_problem(name, w0),
                lam,
                2 * t_m[-1],
                solver="tsit5",
                saveat=jnp.asarray(2 * t_m),
                save_params=True,
                rtol=RTOL,
                atol=ATOL,
            )
            if not bool(traj.ok):
                raise RuntimeError(f"panel {name}, init {w0}: {traj.message}")
            w[i, j] = weights(traj.params)
            loss[i, j] = 2 * np.asarray(traj.metrics["train_loss"])
            steps[i, j] = int(traj.stats["num_steps"])
    return {"t_m": t_m, "w": w, "loss": loss, "num_steps": steps, "lam": lam}


# ---------------------------------------------------------------------------------------------
# Fig. 4: gradient orthogonality on the parabola
# ---------------------------------------------------------------------------------------------


class Point(eqx.Module):
    """Two parameters (x, y): the whole "model" of Fig. 4's landscape."""

    theta: jax.Array


@functools.cache
def parabola_problem():
    """𝓛(x, y) = (y − x²)² as a gflow residual problem: r = √2(y − x²), F = ½r² = 𝓛.

    Cached: the residual function is static in the Problem, so a new one would recompile
    `gflow.project_tangent`."""
    import jax.numpy as jnp

    import gflow

    def residuals(model, data):
        del data
        x, y = model.theta[0], model.theta[1]
        return jnp.sqrt(2.0) * jnp.reshape(y - x**2, (1,))

    return gflow.Problem(Point(jnp.zeros(2)), {"unused": jnp.zeros(1)}, residuals=residuals)


def normal(x0: float) -> np.ndarray:
    """Outward unit normal of the parabola at (x0, x0²) (pointing below it)."""
    return np.array([2 * x0, -1.0]) / math.sqrt(1 + 4 * x0**2)


def off_point(x0: float, dist: float) -> np.ndarray:
    return np.array([x0, x0**2]) + dist * normal(x0)


def nearest_on_parabola(q) -> np.ndarray:
    """The point of y = x² nearest to q (the real roots of 4x³ + (2 − 4q_y)x − 2q_x = 0)."""
    roots = np.roots([4.0, 0.0, 2.0 - 4.0 * q[1], -2.0 * q[0]])
    xs = roots[np.abs(roots.imag) < 1e-9].real
    pts = np.stack([xs, xs**2], axis=1)
    return pts[np.argmin(np.linalg.norm(pts - q, axis=1))]


def cos_exact(x0: float, dist) -> np.ndarray:
    """|cos∠(∇𝓛(q), tangent at x0)| in closed form, q = off_point(x0, dist)."""
    dist = np.asarray(dist, float)
    x = x0 + dist * 2 * x0 / math.sqrt(1 + 4 * x0**2)
    return 4 * abs(x0) * dist / ((1 + 4 * x0**2) * np.sqrt(1 + 4 * x**2))


@eqx.filter_jit
def _loss_gradient(problem, theta):
    return jax.grad(lambda th: problem.loss(Point(th), problem.train))(theta)


def gradient_cosines(x0: float, dists) -> tuple[np.ndarray, np.ndarray]:
    """|cos| between ∇𝓛 at q = p + δn and the tangent of 𝒵 at p, via gflow.project_tangent.

    Returns (|cos|, the unit negative gradients (len(dists), 2)).
    """
    import jax.numpy as jnp

    import gflow

    problem = parabola_problem()
    foot = Point(jnp.asarray([x0, x0**2]))
    cosines, directions = [], []
    for dist in dists:
        g = np.asarray(_loss_gradient(problem, jnp.asarray(off_point(x0, dist))))
        tangential, _ = gflow.project_tangent(problem, foot, Point(jnp.asarray(g)))
        cosines.append(np.linalg.norm(np.asarray(tangential.theta)) / np.linalg.norm(g))
        directions.append(-g / np.linalg.norm(g))
    return np.asarray(cosines), np.asarray(directions)


def orthogonality(n_dists: int) -> dict:
    """|cos| against distance for each foot point of FIT_FEET, its log-log slope, and A, B, C."""
    from gflow.analysis import scaling_fit

    dists = np.geomspace(FIT_RANGE[0], FIT_RANGE[1], n_dists)
    cos = np.zeros((len(FIT_FEET), n_dists))
    slopes = np.zeros(len(FIT_FEET))
    for i, x0 in enumerate(FIT_FEET):
        cos[i], _ = gradient_cosines(x0, dists)
        slopes[i] = scaling_fit(np.log(dists), np.log(cos[i]), x_name="ln dist", y_name="ln |cos|").slope
    cos_abc, dir_abc = gradient_cosines(FOOT_X0, ABC)
    return {
        "dists": dists,
        "cos": cos,
        "cos_exact": np.stack([cos_exact(x0, dists) for x0 in FIT_FEET]),
        "slopes": slopes,
        "cos_abc": cos_abc,
        "dir_abc": dir_abc,
        "points_abc": np.stack([off_point(FOOT_X0, d) for d in ABC]),
    }


# ---------------------------------------------------------------------------------------------
# Figure and main
# ---------------------------------------------------------------------------------------------


def plot(traj: dict, orth: dict, *, size: str):
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(18, 10.5), layout="constrained")
    fig.get_layout_engine().set(rect=(0, 0.025, 1, 0.975))
    top, bottom = fig.subfigures(2, 1, height_ratios=(1.1, 1))
    top.suptitle(
        f"Musat Fig. 3: trajectories over loss landscapes (gradient flow, λ_M = {traj['lam']:g}); "
        "fast onto the zero-loss set Z, then along it to lower norm",
        fontsize=11,
    )
    colors = plt.get_cmap("tab10")(np.arange(4))
    g = np.linspace(-3.2, 3.2, 400)
    w1g, w2g = np.meshgrid(g, g)
    for ax, (i, (name, (title, _))) in zip(top.subplots(1, 3), enumerate(PANELS.items()), strict=True):
        ax.contourf(w1g, w2g, np.log10(musat_loss(name, w1g, w2g) + 1e-4), levels=24, cmap="Greys_r", alpha=0.55)
        if name == "curved":
            for sgn in (1, -1):
                x = sgn * np.geomspace(1 / 3.2, 3.2, 200)
                ax.plot(x, 1 / x, color="k", lw=1.5)
        elif name == "singular":
            ax.axhline(0, color="k", lw=1.5)
            ax.axvline(0, color="k", lw=1.5)
            ax.plot(0, 0, "o", mfc="none", mec="tab:red", ms=12, mew=1.5, label="singular point")
        else:
            ax.plot(g, 2 - g, color="k", lw=1.5)
            ax.plot(g, -g, color="tab:red", lw=1, ls="--", label="kink of the loss: w1 + w2 = 0")
        ax.plot([], [], color="k", lw=1.5, label="zero-loss set Z")
        for j, c in enumerate(colors):
            w = traj["w"][i, j]
            ax.plot(w[:, 0], w[:, 1], color=c, lw=2.2)
            ax.plot(*w[0], "o", color=c, ms=6)
            ax.plot(*w[-1], "s", color=c, ms=5)
        for pt in MIN_NORM[name]:
            ax.plot(*pt, "*", color="gold", mec="k", ms=14)
        ax.plot([], [], "*", color="gold", mec="k", ms=12, label="minimum-norm point(s) on Z")
        ax.plot([], [], "o", color="0.3", label="start")
        ax.plot([], [], "s", color="0.3", ms=5, label=f"end (2λt_M = {SLOW_END:g})")
        ax.set_xlim(-3.2, 3.2)
        ax.set_ylim(-3.2, 3.2)
        ax.set_aspect("equal")
        ax.set_xlabel("w1")
        ax.set_ylabel("w2")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=7.5, loc="lower left" if name == "singular" else "lower right", framealpha=0.85)

    bottom.suptitle(
        "Musat Fig. 4: L(x, y) = (y − x²)²; the negative gradient at A, B, C (same foot point on Z) "
        "turns orthogonal to Z as the distance shrinks (claim 3.4(a))",
        fontsize=11,
    )
    axes = bottom.subplots(1, 4, width_ratios=(1, 1, 1, 1.25))
    p = np.array([FOOT_X0, FOOT_X0**2])
    tangent = np.array([1.0, 2 * FOOT_X0]) / math.sqrt(1 + 4 * FOOT_X0**2)
    for k, (ax, h) in enumerate(zip(axes[:3], VIEW_HALF_WIDTH, strict=True)):
        x = np.linspace(p[0] - h, p[0] + h, 300)
        y = np.linspace(p[1] - h, p[1] + h, 300)
        xg, yg = np.meshgrid(x, y)
        ax.contour(xg, yg, np.log10((yg - xg**2) ** 2 + 1e-30), levels=18, cmap="viridis", linewidths=0.7)
        ax.plot(x, x**2, color="k", lw=1.5, label="Z: y = x²")
        ax.plot(*p, "ko", ms=4)
        ends = p[:, None] + np.outer(tangent, [-h, h])
        ax.plot(*ends, color="0.4", lw=0.8, ls="--", label="tangent at the foot point")
        if k < 2:  # the next view's window
            hn = VIEW_HALF_WIDTH[k + 1]
            ax.add_patch(plt.Rectangle(p - hn, 2 * hn, 2 * hn, fill=False, ec="tab:red", lw=1))
        # One point per view, as in the paper: A in view 1, B in view 2, C in view 3.
        q, d, c = orth["points_abc"][k], orth["dir_abc"][k], orth["cos_abc"][k]
        ax.plot(*q, "o", color="tab:red", ms=5)
        ax.annotate("", q + 0.25 * h * d, q, arrowprops={"arrowstyle": "->", "color": "tab:red", "lw": 1.5})
        deviation = math.degrees(math.asin(min(c, 1.0)))
        ax.annotate(
            f"{'ABC'[k]}: distance {ABC[k]:g}\n−∇L is {deviation:.2g}° off the normal",
            q,
            textcoords="offset points",
            xytext=(8, -24),
            fontsize=8.5,
            color="tab:red",
        )
        ax.set_xlim(p[0] - h, p[0] + h)
        ax.set_ylim(p[1] - h, p[1] + h)
        ax.set_aspect("equal")
        ax.set_title(f"view {k + 1}: ±{h:g} around the foot point ({FOOT_X0:g}, {FOOT_X0**2:.2f})", fontsize=9)
        ax.tick_params(labelsize=7)
        if k == 0:
            ax.legend(fontsize=7.5, loc="upper left")

    ax = axes[3]
    dists = orth["dists"]
    for i, x0 in enumerate(FIT_FEET):
        line = ax.plot(dists, orth["cos"][i], "o", ms=4, label=f"foot x0 = {x0:g}: slope {orth['slopes'][i]:.4f}")[0]
        ax.plot(dists, orth["cos_exact"][i], color=line.get_color(), lw=0.8, ls="--")
    ax.plot(np.asarray(ABC), orth["cos_abc"], "s", color="tab:red", ms=6, label=f"A, B, C (x0 = {FOOT_X0:g})")
    d_abc = np.geomspace(dists[0], max(ABC), 50)
    ax.plot(d_abc, cos_exact(FOOT_X0, d_abc), color="tab:red", lw=0.8, ls="--")
    ax.plot([], [], color="0.3", lw=0.8, ls="--", label="closed form 4|x0|δ/((1+4x0²)√(1+4x²))")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("distance δ to Z")
    ax.set_ylabel("|cos∠(∇L, tangent of Z)|")
    ax.set_title("|cos| = O(dist): log-log slope 1 (gflow.project_tangent)", fontsize=9)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=7.5, loc="upper left")

    fig.text(
        0.005,
        0.006,
        f"size: {size}. Fig. 3's data, initialisations and λ_M = {traj['lam']:g} are our choices (not in the paper); "
        "Musat's L = (f − y)² + λ‖θ‖² = gflow's 2F_λ: λ = λ_M, t = 2t_M. Fig. 4: foot point and distances ours.",
        fontsize=8,
        color="0.3",
    )
    return fig


def run(out: pathlib.Path, *, size: str, echo=print) -> dict:
    jax.config.update("jax_enable_x64", True)

    cfg = SIZES[size]
    echo(f"E2.3 (Fig. 3): three toy landscapes, 4 initialisations each, λ_M = {LAM:g}")
    start = time.perf_counter()
    traj = simulate_panels(cfg["saves"])
    echo(
        f"  simulated 12 runs (Tsit5, rtol {RTOL:g}), steps per panel "
        f"{ {k: traj['num_steps'][i].tolist() for i, k in enumerate(PANELS)} }  [{time.perf_counter() - start:.1f} s]"
    )
    for i, (name, (_, inits)) in enumerate(PANELS.items()):
        ends = ", ".join(f"{w0} → ({w[-1, 0]:+.4f}, {w[-1, 1]:+.4f})" for w0, w in zip(inits, traj["w"][i]))
        echo(f"  {name:<9}: {ends}")
        echo(f"  {'':<9}  final Musat train loss ≤ {traj['loss'][i, :, -1].max():.2e}")
    echo(
        f"  expected ends: curved ±(1, 1)·√(1 − λ) = ±{math.sqrt(1 - LAM):.4f} (balanced, w1w2 = 1 − λ); "
        f"singular (0, 0); leaky (1, 1)·2/(2 + λ) = {2 / (2 + LAM):.4f}"
    )

    start = time.perf_counter()
    orth = orthogonality(cfg["dists"])
    echo(
        f"E2.3 (Fig. 4) / claim 3.4(a): 𝓛 = (y − x²)², |cos∠(∇𝓛, tangent)| against distance  "
        f"[{time.perf_counter() - start:.1f} s]"
    )
    for x0, s, c, ce in zip(FIT_FEET, orth["slopes"], orth["cos"], orth["cos_exact"], strict=True):
        err = np.max(np.abs(c / ce - 1))
        echo(f"  foot x0 = {x0:<5g} log-log slope {s:.5f}   max rel. error vs closed form {err:.1e}")
    for name, d, c in zip("ABC", ABC, orth["cos_abc"], strict=True):
        echo(f"  {name}: dist {d:<6g} |cos| = {c:.3e}  (90° − angle = {math.degrees(math.asin(c)):.3g}°)")

    fig = plot(traj, orth, size=size)
    png = out / "musat_fig3_landscapes.png"
    fig.savefig(png, dpi=100)

    import xarray as xr

    ds = xr.Dataset(
        {
            "w": (("panel", "init", "time", "component"), traj["w"]),
            "train_loss_musat": (("panel", "init", "time"), traj["loss"], {"long_name": "(f - y)^2"}),
            "w0": (("panel", "init", "component"), np.array([inits for _, inits in PANELS.values()])),
            "num_steps": (("panel", "init"), traj["num_steps"]),
            "cos": (("foot", "dist"), orth["cos"], {"long_name": "|cos(grad L, tangent of Z at the foot point)|"}),
            "cos_exact": (("foot", "dist"), orth["cos_exact"]),
            "slope": ("foot", orth["slopes"], {"long_name": "fitted d ln|cos| / d ln dist"}),
            "cos_abc": ("abc", orth["cos_abc"]),
            "points_abc": (("abc", "component"), orth["points_abc"]),
        },
        coords={
            "panel": list(PANELS),
            "t_m": ("time", traj["t_m"], {"long_name": "Musat time t_M (gflow t = 2 t_M)"}),
            "component": [1, 2],
            "foot": list(FIT_FEET),
            "dist": orth["dists"],
            "abc": list(ABC),
        },
        attrs={
            "experiment": "papers.md E2.3 (Musat Figs. 3, 4): (a) f = w2 w1 x on 1 -> 1, (b) on 1 -> 0, "
            "(c) leaky ReLU (slope 0.1) neuron on (1,1) -> 2; Fig. 4: L = (y - x^2)^2. Data, inits, lam: ours",
            "lam_musat": LAM,
            "convention": "Musat L = (f - y)^2 + lam ||theta||^2 is gflow 2 F_lam: gflow lam = Musat lam, t = 2 t_M",
            "solver": f"tsit5, rtol {RTOL}, atol {ATOL}",
            "foot_x0_abc": FOOT_X0,
            "size": size,
            **_figure.provenance(),
        },
    )
    data = out / "musat_fig3_landscapes.nc"
    ds.to_netcdf(data, engine="scipy")
    echo(f"  wrote {png} and {data}")
    return {"dataset": ds, "png": png, "data": data}


def main(argv=None) -> int:
    parser = _figure.parser(
        __doc__,
        "musat_fig3_landscapes",
        smoke="few save points and distances (seconds)",
        full="more save points (the toys are already the paper's size)",
    )
    args = parser.parse_args(argv)
    size = _figure.size(args)
    return _figure.run_in_new_folder(args.out, NAME, lambda out: run(out, size=size))


if __name__ == "__main__":
    sys.exit(main())
