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

Sizes (`FIGURE.sizes`): the toy is already the paper's size at every size; they differ only in
the number of log-spaced save times (`saves`: smoke 40, quick 300, full 1000). `inits` is the
four initialisations as one flat list (w1, w2, w3 of the first, then of the second, …); each run
ends at Musat slow time 2λt_M = `slow_end`.

The figure: (a) 3-D paths over the shaded plane, (b) the paths projected onto the plane,
(c) distance to (1, 1, 1) and to the plane against log t_M. Dataset: dims (init, time, component).
"""

from __future__ import annotations

import json
import math

import numpy as np
import xarray as xr

from . import FigureExperiment
from ._common import caption, require_float64
from ._musat import exact_weights, simulate_musat_time

# Orthonormal basis of the plane's direction {Σu = 0}, and its unit normal.
B1 = np.array([1.0, -1.0, 0.0]) / math.sqrt(2)
B2 = np.array([1.0, 1.0, -2.0]) / math.sqrt(6)
NORMAL = np.ones(3) / math.sqrt(3)


FIGURE = FigureExperiment.from_toml(__name__)


def check(params) -> None:
    """Refuse parameter combinations the runs cannot use (a `ConfigError` naming the field)."""
    from ..experiments import ConfigError

    if not params["inits"] or len(params["inits"]) % 3:
        raise ConfigError(f"figure.inits must list 3 numbers per initialisation, got {len(params['inits'])} numbers")
    if params["lam"] <= 0:
        raise ConfigError(f"figure.lam must be positive, got {params['lam']}")
    if params["saves"] < 2:
        raise ConfigError(f"figure.saves must be at least 2, got {params['saves']}")
    if not 0 < params["t_min"] < params["slow_end"] / (2 * params["lam"]):
        raise ConfigError(f"figure.t_min must be in (0, slow_end/(2λ)), got {params['t_min']}")


def inits(params) -> np.ndarray:
    """The initialisations, shape (n_init, 3)."""
    return np.asarray(params["inits"], float).reshape(-1, 3)


def save_times(params) -> np.ndarray:
    """0 and `saves` log-spaced Musat times from t_min to slow_end/(2λ)."""
    end = params["slow_end"] / (2.0 * params["lam"])
    return np.concatenate([[0.0], np.geomspace(params["t_min"], end, params["saves"])])


def _derived(res: dict) -> dict:
    """Distances and in-plane coordinates from the weights (numpy only)."""
    ones = np.ones(3)
    w, w_exact = res["w"], res["w_exact"]
    res["dist_min_norm"] = np.linalg.norm(w - ones, axis=-1)
    res["dist_min_norm_exact"] = np.linalg.norm(w_exact - ones, axis=-1)
    res["dist_plane"] = np.abs(w.sum(-1) - 3.0) / math.sqrt(3)
    res["dist_plane_exact"] = np.abs(w_exact.sum(-1) - 3.0) / math.sqrt(3)
    # In-plane coordinates of w − (1, 1, 1): exactly e^{−2λ t_M} times those of w0 − (1, 1, 1).
    res["plane_xy"] = np.stack([(w - ones) @ B1, (w - ones) @ B2], axis=-1)
    res["plane_xy_exact"] = np.stack([(w_exact - ones) @ B1, (w_exact - ones) @ B2], axis=-1)
    return res


def simulate_runs(params) -> dict:
    """One gflow run per initialisation; arrays (init, time) in Musat's time t_M."""
    from .. import tasks

    lam = params["lam"]
    t_m = save_times(params)
    ws, steps = [], []
    for w0 in inits(params):
        problem = tasks.musat_addition(0, n_weights=3, init=tuple(w0.tolist()))
        traj = simulate_musat_time(problem, lam, t_m, params, f"init {w0}")
        ws.append(np.asarray(traj.params.w))
        steps.append(int(traj.stats["num_steps"]))
    res = {
        "t_m": t_m,
        "inits": inits(params),
        "lam": lam,
        "w": np.stack(ws),
        "w_exact": np.stack([exact_weights(w0, lam, t_m) for w0 in inits(params)]),
        "num_steps": np.asarray(steps),
    }
    return _derived(res)


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
    from ..analysis import crossing_time

    t = res["t_m"]
    gap = np.abs(res["dist_plane"] - res["dist_plane"][:, -1:])
    t_plane = np.array([crossing_time(t, g, 1e-2 * g[0]) for g in gap])
    t_half = []
    for d, tp in zip(res["dist_min_norm"], t_plane, strict=True):
        d_fast = d[np.searchsorted(t, tp)]
        t_half.append(crossing_time(t, d, 0.5 * d_fast, after=tp))
    return t_plane, np.asarray(t_half)


def measure(params, *, progress: bool = False, echo=print) -> xr.Dataset:
    """One flow per initialisation against the closed form; returns the Dataset (dims init, time, component)."""
    require_float64(FIGURE.name)  # the checks go to 1e-9
    check(params)
    lam = params["lam"]
    echo(f"  E2.2: ŷ = w·x, sample (1, 1, 1) → 3, λ_M = {lam:g}, {len(inits(params))} initialisations")
    res = simulate_runs(params)
    echo(f"  simulated {len(res['inits'])} runs (Tsit5, rtol {params['rtol']:g}), steps {res['num_steps'].tolist()}")
    angles = straightness(res)
    t_plane, t_half = phase_times(res)
    path_err = np.max(np.abs(res["w"] - res["w_exact"]), axis=(1, 2))
    dims = ("init", "time")
    return xr.Dataset(
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
            "max_error_exact": ("init", path_err, {"long_name": "max |w - exact| over the path"}),
            "num_steps": ("init", res["num_steps"]),
        },
        coords={
            "t_m": ("time", res["t_m"], {"long_name": "Musat time t_M (gflow t = 2 t_M)"}),
            "component": [1, 2, 3],
            "init": np.arange(len(res["inits"])),
        },
        attrs={
            "params": json.dumps(params),
            "lam_musat": lam,
            "convention": "Musat L = (y_hat - y)^2 + lam ||w||^2 is gflow 2 F_lam: gflow lam = Musat lam, t = 2 t_M",
            "solver": f"tsit5, rtol {params['rtol']}, atol {params['atol']}",
        },
    )


def _results(ds: xr.Dataset) -> dict:
    """The dict of arrays the plotting code reads, rebuilt from the dataset."""
    res = {
        "t_m": ds["t_m"].values,
        "inits": ds["w0"].values,
        "lam": float(ds.attrs["lam_musat"]),
        "w": ds["w"].values,
        "w_exact": ds["w_exact"].values,
        "num_steps": ds["num_steps"].values,
    }
    return _derived(res)


def summary(ds: xr.Dataset) -> list[tuple[str, str]]:
    """Per initialisation: its projection onto the plane, the times to the plane and half-way to
    (1, 1, 1), the largest angle off the straight line, the end distance and the error against the
    closed form."""
    lam = float(ds.attrs["lam_musat"])
    floor = math.sqrt(3) * lam / (3 + lam)
    rows = []
    for i, w0 in enumerate(ds["w0"].values):
        phi = exact_weights(w0, 0.0, [1e3])[0]
        rows.append(
            (
                f"w0 = ({w0[0]:g}, {w0[1]:g}, {w0[2]:g})",
                f"Φ(w0) on the plane ({phi[0]:+.3f}, {phi[1]:+.3f}, {phi[2]:+.3f}); "
                f"t_M to plane {ds['t_plane'].values[i]:.3g}, half-way {ds['t_half'].values[i]:.3g}; "
                f"max angle off the line {ds['max_angle_off_line'].values[i]:.1e}; "
                f"final ‖w − 1‖ {ds['dist_min_norm'].values[i, -1]:.8f} (exact √3λ/(3+λ) = {floor:.8f}); "
                f"max |w − exact| {ds['max_error_exact'].values[i]:.1e}",
            )
        )
    rows.append(("solver steps per initialisation", f"{ds.attrs['solver']}: {ds['num_steps'].values.tolist()}"))
    return rows


def plot(ds: xr.Dataset):
    """(a) 3-D paths over the shaded zero-loss plane, (b) the paths projected onto the plane,
    (c) distance to (1, 1, 1) and to the plane against log t_M, with the exact solution dashed."""
    import matplotlib.pyplot as plt

    res = _results(ds)
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
    caption(
        fig,
        f"λ_M = {lam:g} (ours); the four initialisations are ours; flow, not GD (η unknown). "
        "Musat's L = (ŷ − y)² + λ‖w‖² = gflow's 2F_λ: λ = λ_M, t = 2t_M. Dashed: exact solution.",
        size=ds.attrs.get("size"),
    )
    return fig
