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

Sizes (`FIGURE.sizes`): the toys are already the paper's size at every size; the sizes differ in
the number of log-spaced save times per run (`saves`: smoke 40, quick 300, full 1000) and of
distances in the slope fit (`dists`: 5, 13, 25). The initialisations of each panel are flat lists
(`inits_curved`, `inits_singular`, `inits_leaky`: w1, w2 of the first, then of the second, …).

The figure: top row Fig. 3 (a)–(c); bottom row Fig. 4's three magnified views and |cos| against
distance. Dataset: the trajectories (panel, init, time, component) and the cosines (foot, dist).
"""

from __future__ import annotations

import functools
import json
import math

import equinox as eqx
import jax
import numpy as np
import xarray as xr

from . import FigureExperiment
from ._common import caption, require_float64
from ._musat import simulate_musat_time

PANELS = ("curved", "singular", "leaky")
TITLES = {
    "curved": "(a) curved zero-loss set: f = w2·w1·x, 1 → 1",
    "singular": "(b) singular point at the origin: f = w2·w1·x, 1 → 0",
    "leaky": "(c) leaky ReLU (slope 1/10): f = σ(w1x1 + w2x2), (1, 1) → 2",
}
MIN_NORM = {"curved": ((1.0, 1.0), (-1.0, -1.0)), "singular": ((0.0, 0.0),), "leaky": ((1.0, 1.0),)}


FIGURE = FigureExperiment.from_toml(__name__)


def check(params) -> None:
    """Refuse parameter combinations the runs cannot use (a `ConfigError` naming the field)."""
    from ..experiments import ConfigError

    n = len(params["inits_curved"])
    for name in PANELS:
        field = f"inits_{name}"
        if len(params[field]) != n or not n or n % 2:
            raise ConfigError(
                f"figure.{field} must list (w1, w2) pairs, as many as figure.inits_curved ({n} numbers), "
                f"got {len(params[field])}"
            )
    if params["lam"] <= 0:
        raise ConfigError(f"figure.lam must be positive, got {params['lam']}")
    if len(params["abc"]) != 3 or len(params["view_half_width"]) != 3:
        raise ConfigError("figure.abc and figure.view_half_width must have 3 entries each (A, B, C; three views)")
    if len(params["fit_range"]) != 2 or not 0 < params["fit_range"][0] < params["fit_range"][1]:
        raise ConfigError(f"figure.fit_range must be [low, high] with 0 < low < high, got {params['fit_range']}")
    if params["dists"] < 2 or params["saves"] < 2:
        raise ConfigError("figure.dists and figure.saves must be at least 2")


def panel_inits(params, name: str) -> np.ndarray:
    """The initialisations of panel `name`, shape (n_init, 2)."""
    return np.asarray(params[f"inits_{name}"], float).reshape(-1, 2)


# ---------------------------------------------------------------------------------------------
# Fig. 3: trajectories
# ---------------------------------------------------------------------------------------------


def panel_problem(name: str, w0):
    """The gflow Problem of panel `name` started at w0 = (w1, w2)."""
    import jax.numpy as jnp

    from .. import models
    from .._problem import Problem

    w0 = jnp.asarray(w0, float)
    if name in ("curved", "singular"):
        model = models.TwoLayerLinear(w0[:1].reshape(1, 1), w0[1:])
        data = {"x": jnp.ones((1, 1)), "y": jnp.full((1,), 1.0 if name == "curved" else 0.0)}
    elif name == "leaky":
        model = models.LeakyReLUNeuron(w0, 0.1)
        data = {"x": jnp.ones((1, 2)), "y": jnp.full((1,), 2.0)}
    else:
        raise ValueError(f"unknown panel {name!r}")
    return Problem(model, data, loss="mse")


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


def simulate_panels(params) -> dict:
    """Every trajectory of Fig. 3: w (panel, init, time, 2) and Musat's train loss, over t_M."""
    lam = params["lam"]
    t_m = np.concatenate([[0.0], np.geomspace(params["t_min"], params["slow_end"] / (2 * lam), params["saves"])])
    n_init = len(panel_inits(params, "curved"))
    w = np.zeros((len(PANELS), n_init, t_m.size, 2))
    loss = np.zeros((len(PANELS), n_init, t_m.size))
    steps = np.zeros((len(PANELS), n_init), int)
    for i, name in enumerate(PANELS):
        for j, w0 in enumerate(panel_inits(params, name)):
            traj = simulate_musat_time(panel_problem(name, w0), lam, t_m, params, f"panel {name}, init {w0}")
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

    from .._problem import Problem

    def residuals(model, data):
        del data
        x, y = model.theta[0], model.theta[1]
        return jnp.sqrt(2.0) * jnp.reshape(y - x**2, (1,))

    return Problem(Point(jnp.zeros(2)), {"unused": jnp.zeros(1)}, residuals=residuals)


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

    from .._slow import project_tangent

    problem = parabola_problem()
    foot = Point(jnp.asarray([x0, x0**2]))
    cosines, directions = [], []
    for dist in dists:
        g = np.asarray(_loss_gradient(problem, jnp.asarray(off_point(x0, dist))))
        tangential, _ = project_tangent(problem, foot, Point(jnp.asarray(g)))
        cosines.append(np.linalg.norm(np.asarray(tangential.theta)) / np.linalg.norm(g))
        directions.append(-g / np.linalg.norm(g))
    return np.asarray(cosines), np.asarray(directions)


def orthogonality(params) -> dict:
    """|cos| against distance for each foot point of fit_feet, its log-log slope, and A, B, C."""
    from ..analysis import scaling_fit

    feet, foot_x0, abc = params["fit_feet"], params["foot_x0"], params["abc"]
    dists = np.geomspace(params["fit_range"][0], params["fit_range"][1], params["dists"])
    cos = np.zeros((len(feet), dists.size))
    slopes = np.zeros(len(feet))
    for i, x0 in enumerate(feet):
        cos[i], _ = gradient_cosines(x0, dists)
        slopes[i] = scaling_fit(np.log(dists), np.log(cos[i]), x_name="ln dist", y_name="ln |cos|").slope
    cos_abc, dir_abc = gradient_cosines(foot_x0, abc)
    return {
        "feet": np.asarray(feet, float),
        "dists": dists,
        "cos": cos,
        "cos_exact": np.stack([cos_exact(x0, dists) for x0 in feet]),
        "slopes": slopes,
        "cos_abc": cos_abc,
        "dir_abc": dir_abc,
        "points_abc": np.stack([off_point(foot_x0, d) for d in abc]),
    }


# ---------------------------------------------------------------------------------------------
# measure, summary, plot
# ---------------------------------------------------------------------------------------------


def measure(params, *, progress: bool = False, echo=print) -> xr.Dataset:
    """The twelve trajectories of Fig. 3 and the cosines of Fig. 4; returns one Dataset."""
    require_float64(FIGURE.name)
    check(params)
    lam = params["lam"]
    n_init = len(panel_inits(params, "curved"))
    echo(f"  E2.3 (Fig. 3): three toy landscapes, {n_init} initialisations each, λ_M = {lam:g}")
    traj = simulate_panels(params)
    echo(f"  simulated {len(PANELS) * n_init} runs (Tsit5, rtol {params['rtol']:g})")
    echo("  E2.3 (Fig. 4) / claim 3.4(a): 𝓛 = (y − x²)², |cos∠(∇𝓛, tangent)| against distance")
    orth = orthogonality(params)
    return xr.Dataset(
        {
            "w": (("panel", "init", "time", "component"), traj["w"]),
            "train_loss_musat": (("panel", "init", "time"), traj["loss"], {"long_name": "(f - y)^2"}),
            "w0": (("panel", "init", "component"), np.stack([panel_inits(params, name) for name in PANELS])),
            "num_steps": (("panel", "init"), traj["num_steps"]),
            "cos": (("foot", "dist"), orth["cos"], {"long_name": "|cos(grad L, tangent of Z at the foot point)|"}),
            "cos_exact": (("foot", "dist"), orth["cos_exact"]),
            "slope": ("foot", orth["slopes"], {"long_name": "fitted d ln|cos| / d ln dist"}),
            "cos_abc": ("abc", orth["cos_abc"]),
            "points_abc": (("abc", "component"), orth["points_abc"]),
            "dir_abc": (("abc", "component"), orth["dir_abc"], {"long_name": "unit -grad L at A, B, C"}),
        },
        coords={
            "panel": list(PANELS),
            "t_m": ("time", traj["t_m"], {"long_name": "Musat time t_M (gflow t = 2 t_M)"}),
            "component": [1, 2],
            "foot": orth["feet"],
            "dist": orth["dists"],
            "abc": np.asarray(params["abc"], float),
        },
        attrs={
            "params": json.dumps(params),
            "lam_musat": lam,
            "convention": "Musat L = (f - y)^2 + lam ||theta||^2 is gflow 2 F_lam: gflow lam = Musat lam, t = 2 t_M",
            "solver": f"tsit5, rtol {params['rtol']}, atol {params['atol']}",
            "foot_x0_abc": params["foot_x0"],
        },
    )


def _results(ds: xr.Dataset) -> tuple[dict, dict]:
    """The (trajectories, orthogonality) dicts the plotting code reads, rebuilt from the dataset."""
    traj = {
        "t_m": ds["t_m"].values,
        "w": ds["w"].values,
        "loss": ds["train_loss_musat"].values,
        "num_steps": ds["num_steps"].values,
        "lam": float(ds.attrs["lam_musat"]),
    }
    orth = {
        "feet": ds["foot"].values,
        "dists": ds["dist"].values,
        "cos": ds["cos"].values,
        "cos_exact": ds["cos_exact"].values,
        "slopes": ds["slope"].values,
        "cos_abc": ds["cos_abc"].values,
        "dir_abc": ds["dir_abc"].values,
        "points_abc": ds["points_abc"].values,
    }
    return traj, orth


def summary(ds: xr.Dataset) -> list[tuple[str, str]]:
    """The end points of each panel's runs against the expected ones, the final losses, the
    log-log slopes of |cos| against distance, and |cos| at A, B, C."""
    traj, orth = _results(ds)
    lam = traj["lam"]
    rows = []
    for i, name in enumerate(PANELS):
        ends = ", ".join(
            f"({w0[0]:g}, {w0[1]:g}) → ({w[-1, 0]:+.4f}, {w[-1, 1]:+.4f})"
            for w0, w in zip(ds["w0"].values[i], traj["w"][i], strict=True)
        )
        rows.append((f"{name}: end points", f"{ends}; final Musat train loss ≤ {traj['loss'][i, :, -1].max():.2e}"))
    rows.append(
        (
            "expected ends",
            f"curved ±(1, 1)·√(1 − λ) = ±{math.sqrt(1 - lam):.4f} (balanced, w1w2 = 1 − λ); "
            f"singular (0, 0); leaky (1, 1)·2/(2 + λ) = {2 / (2 + lam):.4f}",
        )
    )
    rows.append(("solver steps per panel", "; ".join(f"{n}: {s.tolist()}" for n, s in zip(PANELS, traj["num_steps"]))))
    for x0, s, c, ce in zip(orth["feet"], orth["slopes"], orth["cos"], orth["cos_exact"], strict=True):
        err = np.max(np.abs(c / ce - 1))
        rows.append(
            (f"foot x0 = {x0:g}: log-log slope of |cos| vs dist", f"{s:.5f} (max rel. error vs closed form {err:.1e})")
        )
    for name, d, c in zip("ABC", ds["abc"].values, orth["cos_abc"], strict=True):
        rows.append((f"{name}: dist {d:g}", f"|cos| = {c:.3e} (90° − angle = {math.degrees(math.asin(c)):.3g}°)"))
    return rows


def plot(ds: xr.Dataset):
    """Top row: Fig. 3 (a)–(c), trajectories over the three landscapes; bottom row: Fig. 4's three
    magnified views with A, B, C and |cos| against distance."""
    import matplotlib.pyplot as plt

    traj, orth = _results(ds)
    params = json.loads(ds.attrs["params"])
    foot_x0, abc, view_half_width = params["foot_x0"], params["abc"], params["view_half_width"]
    fig = plt.figure(figsize=(18, 10.5), layout="constrained")
    fig.get_layout_engine().set(rect=(0, 0.025, 1, 0.975))
    top, bottom = fig.subfigures(2, 1, height_ratios=(1.1, 1))
    top.suptitle(
        f"Musat Fig. 3: trajectories over loss landscapes (gradient flow, λ_M = {traj['lam']:g}); "
        "fast onto the zero-loss set Z, then along it to lower norm",
        fontsize=11,
    )
    colors = plt.get_cmap("tab10")(np.arange(traj["w"].shape[1]))
    g = np.linspace(-3.2, 3.2, 400)
    w1g, w2g = np.meshgrid(g, g)
    for ax, (i, (name, title)) in zip(top.subplots(1, 3), enumerate(TITLES.items()), strict=True):
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
        ax.plot([], [], "s", color="0.3", ms=5, label=f"end (2λt_M = {params['slow_end']:g})")
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
    p = np.array([foot_x0, foot_x0**2])
    tangent = np.array([1.0, 2 * foot_x0]) / math.sqrt(1 + 4 * foot_x0**2)
    for k, (ax, h) in enumerate(zip(axes[:3], view_half_width, strict=True)):
        x = np.linspace(p[0] - h, p[0] + h, 300)
        y = np.linspace(p[1] - h, p[1] + h, 300)
        xg, yg = np.meshgrid(x, y)
        ax.contour(xg, yg, np.log10((yg - xg**2) ** 2 + 1e-30), levels=18, cmap="viridis", linewidths=0.7)
        ax.plot(x, x**2, color="k", lw=1.5, label="Z: y = x²")
        ax.plot(*p, "ko", ms=4)
        ends = p[:, None] + np.outer(tangent, [-h, h])
        ax.plot(*ends, color="0.4", lw=0.8, ls="--", label="tangent at the foot point")
        if k < 2:  # the next view's window
            hn = view_half_width[k + 1]
            ax.add_patch(plt.Rectangle(p - hn, 2 * hn, 2 * hn, fill=False, ec="tab:red", lw=1))
        # One point per view, as in the paper: A in view 1, B in view 2, C in view 3.
        q, d, c = orth["points_abc"][k], orth["dir_abc"][k], orth["cos_abc"][k]
        ax.plot(*q, "o", color="tab:red", ms=5)
        ax.annotate("", q + 0.25 * h * d, q, arrowprops={"arrowstyle": "->", "color": "tab:red", "lw": 1.5})
        deviation = math.degrees(math.asin(min(c, 1.0)))
        ax.annotate(
            f"{'ABC'[k]}: distance {abc[k]:g}\n−∇L is {deviation:.2g}° off the normal",
            q,
            textcoords="offset points",
            xytext=(8, -24),
            fontsize=8.5,
            color="tab:red",
        )
        ax.set_xlim(p[0] - h, p[0] + h)
        ax.set_ylim(p[1] - h, p[1] + h)
        ax.set_aspect("equal")
        ax.set_title(f"view {k + 1}: ±{h:g} around the foot point ({foot_x0:g}, {foot_x0**2:.2f})", fontsize=9)
        ax.tick_params(labelsize=7)
        if k == 0:
            ax.legend(fontsize=7.5, loc="upper left")

    ax = axes[3]
    dists = orth["dists"]
    for i, x0 in enumerate(orth["feet"]):
        line = ax.plot(dists, orth["cos"][i], "o", ms=4, label=f"foot x0 = {x0:g}: slope {orth['slopes'][i]:.4f}")[0]
        ax.plot(dists, orth["cos_exact"][i], color=line.get_color(), lw=0.8, ls="--")
    ax.plot(np.asarray(abc), orth["cos_abc"], "s", color="tab:red", ms=6, label=f"A, B, C (x0 = {foot_x0:g})")
    d_abc = np.geomspace(dists[0], max(abc), 50)
    ax.plot(d_abc, cos_exact(foot_x0, d_abc), color="tab:red", lw=0.8, ls="--")
    ax.plot([], [], color="0.3", lw=0.8, ls="--", label="closed form 4|x0|δ/((1+4x0²)√(1+4x²))")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("distance δ to Z")
    ax.set_ylabel("|cos∠(∇L, tangent of Z)|")
    ax.set_title("|cos| = O(dist): log-log slope 1 (gflow.project_tangent)", fontsize=9)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=7.5, loc="upper left")

    caption(
        fig,
        f"Fig. 3's data, initialisations and λ_M = {traj['lam']:g} are our choices (not in the paper); "
        "Musat's L = (f − y)² + λ‖θ‖² = gflow's 2F_λ: λ = λ_M, t = 2t_M. Fig. 4: foot point and distances ours.",
        size=ds.attrs.get("size"),
    )
    return fig
