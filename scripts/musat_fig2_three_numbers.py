"""Grokking 1 + 1 + 1 = 3: onto the zero-loss plane, then straight to (1, 1, 1) (Musat Fig. 2; papers.md E2.2).

What the paper's figure shows: ŷ = w1x1 + w2x2 + w3x3 trained on the one sample x = (1, 1, 1),
y = 3, from four initialisations, drawn in 3-D over the zero-loss plane w1 + w2 + w3 = 3
(shaded by ‖w‖, lighter = smaller). Every run first drops onto the plane, then moves along it
in a straight line to the minimum-norm point (1, 1, 1): weight decay acts as gradient descent
on ‖w‖² constrained to the zero-loss set.

Setup: `gflow.tasks.musat_addition(n_weights=3, init=...)`, integrated by `gflow.simulate`
(Tsit5, rtol 1e-12, atol 1e-14, float64), one run per initialisation (one compilation).

Time and weight-decay convention (papers.md §1): Musat's 𝓛_λ = (ŷ − y)² + λ_M‖w‖² equals
gflow's 2F_λ with F = ½(ŷ − y)², so his run at λ_M is gflow's at **λ = λ_M in time
t = 2t_M**; slow time τ = λt = 2λ_M t_M. **The time axis is Musat's t_M.**

Exact solution [INFERRED, as papers.md E2.1 with n = 3]: with P the projection onto the plane's
direction {Σu = 0}, P w(t_M) = e^{−2λ t_M} P w0 (so the projected path is exactly a straight
segment to the origin of the plane, i.e. towards (1, 1, 1), for all t) and
Σw(t_M) → 9/(3 + λ) at rate 2(3 + λ); the end point is w_i = 3/(3 + λ), at distance
√3·λ/(3 + λ) from (1, 1, 1). Overlaid as dashed lines.

Details the paper does not give, and our choices: the four initialisations (ours:
(−1, 1, 2), (2.5, −1, 0.5), (−2, 0.5, −1.5), (1.5, 0.5, −2.5), on both sides of the plane), the
weight decay (ours: λ_M = 0.01, the smallest of Fig. 1) and the learning rate (we integrate
the flow).

Writes `musat_fig2_three_numbers.png` ((a) 3-D paths over the shaded plane, (b) the paths
projected onto the plane, (c) distance to (1, 1, 1) and to the plane against log t_M) and
`musat_fig2_three_numbers.nc` (xarray, dims (init, time)) into `--out`.

    python scripts/musat_fig2_three_numbers.py            # quick (= the paper's size): seconds after compilation
    python scripts/musat_fig2_three_numbers.py --smoke    # fewer save points
    python scripts/musat_fig2_three_numbers.py --full     # more save points (the toy is already full size)
"""

from __future__ import annotations

import math
import pathlib
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))  # scripts/ is not a package
import _figure  # noqa: E402

NAME = "musat_fig2_three_numbers"


INITS = ((-1.0, 1.0, 2.0), (2.5, -1.0, 0.5), (-2.0, 0.5, -1.5), (1.5, 0.5, -2.5))
LAM = 0.01  # Musat's λ_M = gflow's λ
SLOW_END = 30.0  # runs end at Musat slow time 2λ t_M = 30
T_MIN = 1e-3  # first non-zero save time (t_M); the fast phase has rate 2(3 + λ) ≈ 6
SIZES = {"smoke": 40, "quick": 300, "full": 1000}
RTOL, ATOL = 1e-12, 1e-14
# Orthonormal basis of the plane's direction {Σu = 0}, and its unit normal.
B1 = np.array([1.0, -1.0, 0.0]) / math.sqrt(2)
B2 = np.array([1.0, 1.0, -2.0]) / math.sqrt(6)
NORMAL = np.ones(3) / math.sqrt(3)


def exact_weights(w0, lam: float, t_m) -> np.ndarray:
    """Closed-form gradient flow of 𝓛_λ = (⟨w, 1⟩ − n)² + λ‖w‖² in Musat's time t_M, shape (T, n).

    ⟨w, 1⟩ relaxes at rate 2(n + λ) to n²/(n + λ); the component of w orthogonal to 1 decays
    as e^{−2λ t_M}.
    """
    w0 = np.asarray(w0, float)
    n = w0.size
    t_m = np.asarray(t_m, float)[:, None]
    a0 = w0.sum()
    a_inf = n * n / (n + lam)
    a = a_inf + (a0 - a_inf) * np.exp(-2.0 * (n + lam) * t_m)
    u0 = w0 - a0 / n
    return u0 * np.exp(-2.0 * lam * t_m) + a / n


def save_times(n: int, lam: float = LAM) -> np.ndarray:
    return np.concatenate([[0.0], np.geomspace(T_MIN, SLOW_END / (2.0 * lam), n)])


def simulate_runs(inits=INITS, lam: float = LAM, n_saves: int = SIZES["quick"]) -> dict:
    """One gflow run per initialisation; arrays (init, time) in Musat's time t_M."""
    import jax.numpy as jnp

    import gflow

    t_m = save_times(n_saves, lam)
    ws, steps = [], []
    for w0 in inits:
        problem = gflow.tasks.musat_addition(0, n_weights=3, init=w0)
        traj = gflow.simulate(
            problem,
            lam,
            2.0 * t_m[-1],
            solver="tsit5",
            saveat=jnp.asarray(2.0 * t_m),
            save_params=True,
            rtol=RTOL,
            atol=ATOL,
        )
        if not bool(traj.ok):
            raise RuntimeError(f"init {w0}: {traj.message}")
        ws.append(np.asarray(traj.params.w))
        steps.append(int(traj.stats["num_steps"]))
    w = np.stack(ws)
    w_exact = np.stack([exact_weights(w0, lam, t_m) for w0 in inits])
    ones = np.ones(3)
    res = {
        "t_m": t_m,
        "inits": np.asarray(inits, float),
        "lam": lam,
        "w": w,
        "w_exact": w_exact,
        "num_steps": np.asarray(steps),
        "dist_min_norm": np.linalg.norm(w - ones, axis=-1),
        "dist_min_norm_exact": np.linalg.norm(w_exact - ones, axis=-1),
        "dist_plane": np.abs(w.sum(-1) - 3.0) / math.sqrt(3),
        "dist_plane_exact": np.abs(w_exact.sum(-1) - 3.0) / math.sqrt(3),
    }
    # In-plane coordinates of w − (1, 1, 1): exactly e^{−2λ t_M} times those of w0 − (1, 1, 1).
    res["plane_xy"] = np.stack([(w - ones) @ B1, (w - ones) @ B2], axis=-1)
    res["plane_xy_exact"] = np.stack([(w_exact - ones) @ B1, (w_exact - ones) @ B2], axis=-1)
    return res


def straightness(res: dict, rel: float = 1e-6) -> np.ndarray:
    """Largest angle (radians) between the in-plane displacement w − (1, 1, 1) at a save time and at
    t = 0, per run, over the times where that displacement is still ≥ `rel` × its start (below, the
    integrator's absolute tolerance, not the flow, sets its direction)."""
    xy = res["plane_xy"]
    xy0 = xy[:, :1, :]
    cross = xy[..., 0] * xy0[..., 1] - xy[..., 1] * xy0[..., 0]
    dot = np.sum(xy * xy0, axis=-1)
    big = np.linalg.norm(xy, axis=-1) >= rel * np.linalg.norm(xy0, axis=-1)
    return np.max(np.where(big, np.abs(np.arctan2(cross, dot)), 0.0), axis=1)


def phase_times(res: dict) -> tuple[np.ndarray, np.ndarray]:
    """Per run: t_M from which the distance to the plane is within 1% of its initial gap to its end
    value (the plane is reached), and t_M from which the distance to (1, 1, 1) is below half its
    value at that time."""
    from gflow.analysis import crossing_time

    t = res["t_m"]
    gap = np.abs(res["dist_plane"] - res["dist_plane"][:, -1:])
    t_plane = np.array([crossing_time(t, g, 1e-2 * g[0]) for g in gap])
    t_half = []
    for d, tp in zip(res["dist_min_norm"], t_plane, strict=True):
        d_fast = d[np.searchsorted(t, tp)]
        t_half.append(crossing_time(t, d, 0.5 * d_fast, after=tp))
    return t_plane, np.asarray(t_half)


def plot(res: dict, *, size: str):
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(17, 6), layout="constrained")
    fig.get_layout_engine().set(rect=(0, 0.03, 1, 0.97))
    ax3 = fig.add_subplot(1, 3, 1, projection="3d")
    ax_plane = fig.add_subplot(1, 3, 2)
    ax_dist = fig.add_subplot(1, 3, 3)
    colors = plt.get_cmap("tab10")(np.arange(len(res["inits"])))

    # (a) 3-D view over the zero-loss plane, shaded by the norm (lighter = smaller, as in the paper)
    g = np.linspace(-2.2, 3.2, 40)
    g1, g2 = np.meshgrid(g, g)
    g3 = 3.0 - g1 - g2
    norm = np.sqrt(g1**2 + g2**2 + g3**2)
    shade = plt.get_cmap("Greys")(0.15 + 0.6 * (norm - norm.min()) / np.ptp(norm))
    shade[..., 3] = 0.35
    ax3.plot_surface(g1, g2, g3, facecolors=shade, shade=False, linewidth=0, antialiased=False)
    for i, c in enumerate(colors):
        w = res["w"][i]
        ax3.plot(w[:, 0], w[:, 1], w[:, 2], color=c, lw=2.2)
        ax3.scatter(*w[0], color=c, s=30, marker="o", depthshade=False)
    ax3.scatter(1, 1, 1, color="k", s=60, marker="*", depthshade=False, label="(1, 1, 1): min norm")
    ax3.set_xlabel("w1")
    ax3.set_ylabel("w2")
    ax3.set_zlabel("w3")
    ax3.view_init(elev=22, azim=-60)
    ax3.set_title(
        "(a) paths over the zero-loss plane w1 + w2 + w3 = 3\n(shaded by ‖w‖, lighter = smaller)", fontsize=10
    )
    ax3.legend(fontsize=8, loc="upper left")

    # (b) projected onto the plane: straight segments to (1, 1, 1)
    r = np.linspace(-3.5, 3.5, 200)
    x, y = np.meshgrid(r, r)
    ax_plane.contourf(x, y, np.sqrt(3.0 + x**2 + y**2), levels=20, cmap="Greys", alpha=0.45)
    for i, c in enumerate(colors):
        xy, xye = res["plane_xy"][i], res["plane_xy_exact"][i]
        w0 = res["inits"][i]
        ax_plane.plot(xy[:, 0], xy[:, 1], color=c, lw=3, alpha=0.8, label=f"w0 = ({w0[0]:g}, {w0[1]:g}, {w0[2]:g})")
        ax_plane.plot(xye[:, 0], xye[:, 1], color="k", lw=0.8, ls="--")
        ax_plane.plot(*xy[0], "o", color=c)
    ax_plane.plot(0, 0, "k*", ms=12)
    ax_plane.plot([], [], color="k", lw=0.8, ls="--", label="exact: e^(−2λ t_M)·(in-plane part of w0)")
    ax_plane.set_aspect("equal")
    ax_plane.set_xlabel("⟨w − 1, (1, −1, 0)/√2⟩")
    ax_plane.set_ylabel("⟨w − 1, (1, 1, −2)/√6⟩")
    ax_plane.set_title(
        "(b) the same paths seen along the plane's normal:\nstraight to (1, 1, 1) (the star)", fontsize=10
    )
    ax_plane.legend(fontsize=8, loc="lower left")

    # (c) distances over time
    t = res["t_m"]
    keep = t > 0
    for i, c in enumerate(colors):
        ax_dist.plot(t[keep], res["dist_min_norm"][i][keep], color=c, lw=2.5, alpha=0.85)
        ax_dist.plot(t[keep], res["dist_plane"][i][keep], color=c, lw=2.5, ls=":")
        ax_dist.plot(t[keep], res["dist_min_norm_exact"][i][keep], color="k", lw=0.7, ls="--")
        ax_dist.plot(t[keep], res["dist_plane_exact"][i][keep], color="k", lw=0.7, ls="--")
    lam = res["lam"]
    floor = math.sqrt(3) * lam / (3 + lam)
    ax_dist.axhline(floor, color="0.4", lw=0.8, ls="-.")
    ax_dist.axvline(1 / (2 * lam), color="0.5", lw=0.8, ls=":")
    ax_dist.text(1 / (2 * lam), 1.2e-3, " 2λt_M = 1", color="0.4", fontsize=8)
    ax_dist.plot([], [], color="0.3", lw=2.5, label="‖w − (1, 1, 1)‖")
    ax_dist.plot([], [], color="0.3", lw=2.5, ls=":", label="distance to the zero-loss plane")
    ax_dist.plot([], [], color="k", lw=0.7, ls="--", label="exact gradient flow")
    ax_dist.plot([], [], color="0.4", lw=0.8, ls="-.", label=f"end distance √3·λ/(3 + λ) = {floor:.2g}")
    ax_dist.set_xscale("log")
    ax_dist.set_yscale("log")
    ax_dist.set_ylim(1e-3, 10)
    ax_dist.set_xlabel("Musat time t_M = t/2 (log scale)")
    ax_dist.set_ylabel("distance")
    ax_dist.set_title("(c) onto the plane at t_M ~ 1/(2(3 + λ)), to (1, 1, 1) at t_M ~ 1/(2λ)", fontsize=10)
    ax_dist.grid(True, which="major", alpha=0.3)
    ax_dist.legend(fontsize=8, loc="lower left")

    fig.suptitle("Musat Fig. 2: ŷ = w·x groks 1 + 1 + 1 = 3 from one sample, four initialisations (gradient flow)")
    fig.text(
        0.005,
        0.008,
        f"size: {size}. λ_M = {lam:g} (ours); the four initialisations are ours; flow, not GD (η unknown). "
        "Musat's L = (ŷ − y)² + λ‖w‖² = gflow's 2F_λ: λ = λ_M, t = 2t_M. Dashed: exact solution.",
        fontsize=8,
        color="0.3",
    )
    return fig


def run(out: pathlib.Path, *, size: str, echo=print) -> dict:
    import jax

    jax.config.update("jax_enable_x64", True)

    echo(f"E2.2: ŷ = w·x, sample (1, 1, 1) → 3, λ_M = {LAM:g}, {len(INITS)} initialisations")
    start = time.perf_counter()
    res = simulate_runs(INITS, LAM, SIZES[size])
    echo(
        f"  simulated {len(INITS)} runs (Tsit5, rtol {RTOL:g}), steps {res['num_steps'].tolist()}  "
        f"[{time.perf_counter() - start:.1f} s incl. compilation]"
    )
    angles = straightness(res)
    t_plane, t_half = phase_times(res)
    path_err = np.max(np.abs(res["w"] - res["w_exact"]), axis=(1, 2))
    floor = math.sqrt(3) * LAM / (3 + LAM)
    echo(
        "  init              Φ(w0) (on the plane)        t_M to plane  t_M half-way  max angle off the line  "
        "final ‖w − 1‖ "
        "(exact √3λ/(3+λ))  max |w − exact|"
    )
    for i, w0 in enumerate(INITS):
        phi = exact_weights(w0, 0.0, [1e3])[0]
        echo(
            f"  {str(w0):<17} ({phi[0]:+.3f}, {phi[1]:+.3f}, {phi[2]:+.3f})   {t_plane[i]:<12.3g}  {t_half[i]:<12.3g}  "
            f"{angles[i]:<22.1e}  {res['dist_min_norm'][i][-1]:.8f} ({floor:.8f})  {path_err[i]:.1e}"
        )

    fig = plot(res, size=size)
    png = out / "musat_fig2_three_numbers.png"
    fig.savefig(png, dpi=110)

    import xarray as xr

    dims = ("init", "time")
    ds = xr.Dataset(
        {
            "w": (("init", "time", "component"), res["w"]),
            "w_exact": (("init", "time", "component"), res["w_exact"]),
            "w0": (("init", "component"), res["inits"]),
            "dist_min_norm": (dims, res["dist_min_norm"], {"long_name": "||w - (1,1,1)||"}),
            "dist_plane": (dims, res["dist_plane"], {"long_name": "distance to w1 + w2 + w3 = 3"}),
            "dist_min_norm_exact": (dims, res["dist_min_norm_exact"]),
            "dist_plane_exact": (dims, res["dist_plane_exact"]),
            "max_angle_off_line": ("init", angles),
            "t_plane": ("init", t_plane),
            "t_half": ("init", t_half),
            "num_steps": ("init", res["num_steps"]),
        },
        coords={
            "t_m": ("time", res["t_m"], {"long_name": "Musat time t_M (gflow t = 2 t_M)"}),
            "component": [1, 2, 3],
            "init": np.arange(len(INITS)),
        },
        attrs={
            "experiment": "papers.md E2.2 (Musat Fig. 2): y_hat = w.x, one sample (1,1,1) -> 3, four initialisations "
            "(ours)",
            "lam_musat": LAM,
            "convention": "Musat L = (y_hat - y)^2 + lam ||w||^2 is gflow 2 F_lam: gflow lam = Musat lam, t = 2 t_M",
            "solver": f"tsit5, rtol {RTOL}, atol {ATOL}",
            "size": size,
            **_figure.provenance(),
        },
    )
    data = out / "musat_fig2_three_numbers.nc"
    ds.to_netcdf(data, engine="scipy")
    echo(f"  wrote {png} and {data}")
    return {"dataset": ds, "png": png, "data": data}


def main(argv=None) -> int:
    parser = _figure.parser(
        __doc__,
        "musat_fig2_three_numbers",
        smoke="few save points (seconds)",
        full="many save points (the toy is already the paper's size)",
    )
    args = parser.parse_args(argv)
    size = _figure.size(args)
    return _figure.run_in_new_folder(args.out, NAME, lambda out: run(out, size=size))


if __name__ == "__main__":
    sys.exit(main())
