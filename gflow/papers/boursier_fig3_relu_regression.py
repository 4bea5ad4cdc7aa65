r"""Boursier, Pesme & Dragomir, Fig. 3: grokking of a two-layer ReLU network on 1-D regression.

The paper's figure (papers.md §2.5 E1.2, §9 A8): f(x) = Σ_{j=1}^{100} u_j ReLU(v_j x + b_j)
fitted to n = 10 points of a teacher made of 3 ReLUs, initial weights i.i.d. 𝒩(0, 4), weight
decay λ = 1e−3, gradient descent with a small step for 10⁶ iterations. The train loss is ≈ 0
by t ≈ 1 while the function is a wiggly interpolant with many kinks; from t ≈ 1/λ = 10³ the
norm falls, and by t ≈ 10⁵ the network still interpolates, with a much smaller norm, a much
lower test loss and only a few kinks. ReLU is not C³: this is outside the paper's theory.

Setup (`gflow.tasks.teacher_relu_1d`, model `gflow.models.ReLU1D`): m = 100 (`width`),
n = 10 (`n_train`) with x_i ~ U[−2, 2], u, v, b ~ 𝒩(0, 4) (`alpha` = 2),
F = (1/2n)Σ(f(x_i) − y_i)² (the paper's convention), λ = 1e−3, one run (`seed` 0). Test loss
on 401 equispaced points of [−2, 2].

Details the paper does not give, and our choices:
- Teacher: f⋆(x) = ReLU(x + 1) − 2 ReLU(x) + 1.5 ReLU(x − 1) (kinks at −1, 0, 1).
- Test set: 401 equispaced points of [−2, 2].
- The flow and gradient descent. The gradient field of a ReLU network jumps where a data point
  crosses a unit's kink, and late in training the flow slides along such kinks, where smooth
  adaptive solvers crawl (measured: ROS34PW2 spent 50 000 steps, 70% rejected, to reach
  t = 157). The main curves are the flow by `gflow.simulate` with solver "auto", which detects
  the kinks and takes Bogacki–Shampine 3(2) (issue 12); the flow is stiff until the norm has
  decayed (sharpness ≈ 540 at θ0), so after Bosh3's first 20 000 steps it races Bosh3 against
  first-order Runge–Kutta–Chebyshev and goes on with the cheaper (RKC1 during the fit, Bosh3
  once the flow slides along kinks; `traj.solver` "bosh3+rkc1"), here at `rtol` = 1e−4 (atol rtol·1e−2)
  up to `t_settled` = 1e4 and at `rtol_settled` = 1e−3 after it: at its kink default 1e−3 the
  train loss, far smaller than the parameters the tolerance is relative to, is up to 10× off in
  t ∈ [1, 10³], while once the norm has settled the flow slides along kinks, where 1e−4 costs 7×
  the steps for the same curves. Beside it, dashed, the paper's own method:
  gradient descent (`gflow.gd`) with a step that tracks the curvature: the time axis is cut at
  t = `t_first` = 0.01, 0.1, 1, …, t1 and each segment runs GD at a fixed step η = c/s, s the
  largest Hessian eigenvalue of F_λ at the segment's start (`c` = 0.5 quick, 0.2 full, 1 smoke;
  GD is stable for c < 2 and follows the flow to O(η)), with `saves` saves per segment; the
  flow is saved at the same times. A single η would be set by the initial sharpness (≈ 540 at
  variance 4), i.e. ≈ 1e−3, and t = 1e5 would cost 1e8 steps; the sharpness falls to ≈ 3 once
  the norm has decayed, so the schedule needs ~3e6. Measured at the smoke size (t1 = 1e4): the
  flow took 4.4e5 gradients (6.8e5 with Bosh3 alone), GD 1.1e6 steps; ‖θ‖ agreed within 0.11%
  at every save, from t = 0.1 on the test loss within 2.4% and the train loss within 13%, and
  the test loss at t1 within 0.07% (GD at c = 1 is coarse in the first 0.01 of t, where
  ηs ≈ 0.9). At the quick size (t1 = 1e5): 1.06e6 gradients (1.29e6 with Bosh3 alone) against
  GD's 2.85e6 steps, ‖θ‖ within 0.09% at every save, the test loss at t1 0.25% apart.
- Horizon: t1 = 1e5 (quick, the paper's t₃), 1e6 (full), 1e4 (smoke, which also saves 6
  times per segment instead of 18; full saves 36).
- Kinks (`gflow.analysis.relu_kinks`): positions −b_j/v_j in [−2, 2] of units whose slope
  change |u_j v_j| is ≥ `kink_threshold` = 1e−3 of the largest; "distinct" merges kinks within
  `kink_merge` = 0.02 of each other.

Events: t_fit is the first save from which the train loss stays ≤ 1e−3 of its initial value.

Time convention: F_λ = F + (λ/2)‖θ‖², the flow θ' = −∇F_λ(θ) in ODE time t; GD step
θ ← θ − η(∇F + λθ) at t = Σ η (the paper's GD, t = η·iteration at a constant step); slow time
τ = λt (top axis).

The figure: train/test loss and ‖θ‖ of the flow (solid) and of GD (dashed), and the number of
kinks of the flow's network, over log t with t = 1/λ marked; the learned function at t = 1,
t = 1/λ and t = t1. The dataset holds the metrics over `time` and,
per segment end (`snap`), the kink counts and positions, the step, the sharpness and f on the
test grid.
"""

from __future__ import annotations

import json
import math
import time

import equinox as eqx
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import xarray as xr

from . import FigureExperiment, _boursier
from ._common import caption, require_float64, require_in

FIGURE = FigureExperiment.from_toml(__name__)


def check(params) -> None:
    """Refuse parameter combinations the run cannot use (a `ConfigError` naming the field)."""
    from ..experiments import ConfigError

    if not 0 < params["c"] < 2:
        raise ConfigError(f"figure.c must be in (0, 2) (GD is unstable at η ≥ 2/sharpness), got {params['c']}")
    require_in(params, "t_first", 0, "t1")
    require_in(params, "rtol", 0, 1)
    require_in(params, "rtol_settled", 0, 1)
    require_in(params, "t_settled", 0, math.inf)
    if params["saves"] < 1:
        raise ConfigError(f"figure.saves must be ≥ 1, got {params['saves']}")


def build_problem(params):
    """The E1.2 problem: `gflow.tasks.teacher_relu_1d`."""
    from .. import tasks

    return tasks.teacher_relu_1d(params["seed"], m=params["width"], n=params["n_train"], alpha=params["alpha"])


def sharpness_fn(problem):
    """A jitted θ ↦ largest |eigenvalue| of ∇²F(θ) (dense Hessian: 3m parameters)."""
    static = problem.split()[1]
    train = problem.train

    @jax.jit
    def top_eigenvalue(params):
        flat, unravel = jax.flatten_util.ravel_pytree(params)
        hess = jax.hessian(lambda v: problem.loss(eqx.combine(unravel(v), static), train))(flat)
        return jnp.max(jnp.abs(jnp.linalg.eigvalsh(hess)))

    return top_eigenvalue


def segment_edges(t1: float, t_first: float) -> list[float]:
    """0, t_first, 10·t_first, … up to t1 (the last edge is t1)."""
    edges = [0.0, t_first]
    while edges[-1] * 10 < t1 * (1 + 1e-9):
        edges.append(edges[-1] * 10)
    if edges[-1] < t1 * (1 - 1e-9):
        edges.append(t1)
    return edges


def scheduled_gd(problem, lam: float, t1: float, *, c: float, t_first: float, saves_per_segment: int, echo=print):
    """`gflow.gd` segment by segment (see the module docstring): returns a dict of NumPy series
    and the per-segment record (end time, η, sharpness, steps)."""
    from .._gd import gd

    top_eigenvalue = sharpness_fn(problem)
    edges = segment_edges(t1, t_first)
    series: dict[str, list] = {}
    segments = []
    q = problem
    for k, (a, b) in enumerate(zip(edges[:-1], edges[1:], strict=True)):
        s = float(top_eigenvalue(q.params)) + lam
        n_saves = saves_per_segment
        dt_save = (b - a) / n_saves
        save_every = max(1, math.ceil(dt_save * s / c))
        eta = dt_save / save_every
        start = time.perf_counter()
        traj = gd(q, lam, eta, n_saves * save_every, save_every=save_every)
        jax.block_until_ready(traj)
        if not bool(traj.ok):
            raise RuntimeError(f"gd failed on [{a:g}, {b:g}] at η = {eta:.3g}: {traj.message}")
        first = 0 if k == 0 else 1  # the first save of a segment repeats the last of the previous one
        series.setdefault("t", []).append(a + np.asarray(traj.t)[first:])
        for name, values in traj.metrics.items():
            series.setdefault(name, []).append(np.asarray(values)[first:])
        segments.append({"t": b, "eta": eta, "sharpness": s, "steps": n_saves * save_every})
        echo(
            f"  t ∈ [{a:g}, {b:g}]: sharpness {s:.3g}, η = {eta:.3g}, {n_saves * save_every} steps, "
            f"‖θ‖ = {float(traj.metrics['norm'][-1]):.3f}  [{time.perf_counter() - start:.1f} s]"
        )
        q = eqx.tree_at(lambda p: p.model, q, traj.final)
    return {name: np.concatenate(parts) for name, parts in series.items()}, segments


def measure(params, *, progress: bool = False, echo=print) -> xr.Dataset:
    """The flow (`gflow.simulate`, solver "auto") and, beside it, scheduled GD to t1, both saved on
    GD's save times; the kinks of the flow's network at each segment end. Returns one Dataset over
    `time` (the flow's metrics, and GD's as `gd_<metric>`) and `snap` (the segment ends: kinks, f
    on the grid, and GD's η and sharpness there)."""
    from .._simulate import simulate
    from ..analysis import crossing_time, relu_kinks

    require_float64(FIGURE.name)
    check(params)
    lam, t1 = params["lam"], params["t1"]
    problem = build_problem(params)
    echo(
        f"  GD on F_λ with η = {params['c']:g}/sharpness per segment to t1 = {t1:g} "
        f"(m = {params['width']}, n = {params['n_train']}, λ = {lam:g})"
    )
    start = time.perf_counter()
    series, segments = scheduled_gd(
        problem, lam, t1, c=params["c"], t_first=params["t_first"], saves_per_segment=params["saves"], echo=echo
    )
    wall_gd = time.perf_counter() - start

    # The flow on GD's save times (t = Σ η: equal to the segments' grid up to rounding), so the two
    # are compared save by save; its parameters are kept for the kinks at the segment ends.
    t = np.minimum(series["t"], t1)
    t[-1] = t1
    # Two pieces: rtol to t_settled, rtol_settled after it (the second continues the first:
    # `start=flow`, one Trajectory over both).
    t_settled = min(params["t_settled"], t1)
    echo(
        f"  the flow: gflow.simulate (solver 'auto', rtol {params['rtol']:g} to t = {t_settled:g}, "
        f"{params['rtol_settled']:g} after) on GD's {t.size} save times"
    )
    start = time.perf_counter()
    # Above simulate's kink-path default of 2e6 steps per piece: the full size's second piece runs
    # to t = 1e6 (the quick size's, to 1e5, took 2.1e5).
    options = {"save_params": True, "progress": progress, "max_steps": 3_000_000}
    flow = simulate(
        problem, lam, t_settled, saveat=t[t <= t_settled], rtol=params["rtol"], atol=params["rtol"] * 1e-2, **options
    )
    if flow.ok and t_settled < t1:
        rtol = params["rtol_settled"]
        flow = simulate(problem, lam, t1, saveat=t[t > t_settled], start=flow, rtol=rtol, atol=rtol * 1e-2, **options)
    jax.block_until_ready(flow.final)
    wall_flow = time.perf_counter() - start
    if not flow.ok:
        raise RuntimeError(f"the flow stopped before t1 = {t1:g}: {flow.message}")
    echo(
        f"  {flow.solver}: {int(flow.stats['num_steps'])} steps, "
        f"{int(flow.stats['num_gradient_equivalents'])} gradients [{wall_flow:.1f} s]"
    )

    x_grid = np.asarray(problem.test["x"])
    y_grid = np.asarray(problem.test["y"])
    snap_t = np.array([0.0] + [seg["t"] for seg in segments])
    snap_index = [int(np.argmin(np.abs(t - when))) for when in snap_t]
    static = problem.split()[1]
    snap_models = [eqx.combine(jax.tree.map(lambda x, i=i: x[i], flow.params), static) for i in snap_index]
    threshold, merge = params["kink_threshold"], params["kink_merge"]
    kinks = [relu_kinks(mdl, threshold=threshold) for mdl in snap_models]
    distinct = [relu_kinks(mdl, threshold=threshold, merge=merge) for mdl in snap_models]
    f_grid = np.stack([np.asarray(jax.vmap(mdl)(problem.test["x"])) for mdl in snap_models])
    # Distinct kink positions per snap, padded with NaN to the largest count.
    n_slots = max(1, max(len(k) for k in distinct))
    distinct_pos = np.full((snap_t.size, n_slots), np.nan)
    for i, k in enumerate(distinct):
        distinct_pos[i, : len(k)] = k

    metrics = {name: np.asarray(values) for name, values in flow.metrics.items()}
    train = metrics["train_loss"]
    t_fit = crossing_time(t, train, 1e-3 * train[0])
    x_train, y_train = np.asarray(problem.train["x"]), np.asarray(problem.train["y"])
    gd_series = {f"gd_{name}": values for name, values in series.items() if name != "t"}
    norm_gap = np.abs(metrics["norm"] - gd_series["gd_norm"]) / gd_series["gd_norm"]

    ds = xr.Dataset(
        {name: ("time", values) for name, values in {**metrics, **gd_series}.items()},
        coords={"time": t, "t": ("time", t), "tau": ("time", lam * t), "snap": snap_t, "x": x_grid},
    )
    ds = ds.assign(
        n_kinks=("snap", np.array([len(k) for k in kinks])),
        n_distinct_kinks=("snap", np.array([len(k) for k in distinct])),
        distinct_kinks=(("snap", "kink_slot"), distinct_pos),
        final_kinks=("final_kink", distinct[-1]),
        eta=("snap", np.array([np.nan] + [seg["eta"] for seg in segments])),
        sharpness=("snap", np.array([np.nan] + [seg["sharpness"] for seg in segments])),
        f=(("snap", "x"), f_grid),
        teacher=("x", y_grid),
        x_train=("train", x_train),
        y_train=("train", y_train),
    )
    ds.attrs.update(
        params=json.dumps(params),
        lam=lam,
        method=(
            f"gflow.simulate (solver 'auto' -> {flow.solver}, rtol {params['rtol']:g} to t = {t_settled:g}, "
            f"{params['rtol_settled']:g} after; atol rtol*1e-2)"
        ),
        gd_method=f"gflow.gd segment by segment, eta = {params['c']} / sharpness at the segment start",
        convention="F = (1/2n) sum (f(x_i) - y_i)^2, F_lam = F + (lam/2)||theta||^2, t = ODE time (GD: sum of steps)",
        teacher="ReLU(x+1) - 2 ReLU(x) + 1.5 ReLU(x-1)",
        max_kinks=max(len(k) for k in kinks),
        solver=flow.solver,
        result=flow.message,
        flow_steps=int(flow.stats["num_steps"]),
        flow_gradients=int(flow.stats["num_gradient_equivalents"]),
        total_steps=sum(seg["steps"] for seg in segments),
        n_segments=len(segments),
        t_fit=t_fit,
        wall_flow_s=wall_flow,
        wall_gd_s=wall_gd,
        norm_gap_max=float(norm_gap.max()),
        test_loss_gap_final=float(abs(metrics["test_loss"][-1] / gd_series["gd_test_loss"][-1] - 1)),
    )
    return ds


def _snap_index(ds, when: float) -> int:
    return int(np.argmin(np.abs(ds["snap"].values - when)))


def _distinct(ds, i: int) -> np.ndarray:
    row = ds["distinct_kinks"].values[i]
    return row[np.isfinite(row)]


def summary(ds: xr.Dataset) -> list[tuple[str, str]]:
    """The key numbers the figure shows, as (quantity, value) rows."""
    from ..tasks import RELU_TEACHER_KINKS

    a = ds.attrs
    params = json.loads(a["params"])
    lam = params["lam"]
    t = ds["t"].values

    def at(name, when):
        return float(ds[name].values[np.argmin(np.abs(t - when))])

    rows = [
        (
            "flow (gflow.simulate)",
            f"{a['solver']} ({a['result']}), {a['flow_steps']} steps, {a['flow_gradients']} gradients, "
            f"{a['wall_flow_s']:.1f} s",
        ),
        (
            "GD beside it",
            f"{a['total_steps']} steps in {a['n_segments']} segments, η = {params['c']:g}/sharpness, "
            f"{a['wall_gd_s']:.1f} s",
        ),
        (
            "flow vs GD",
            f"‖θ‖ within {100 * a['norm_gap_max']:.2f}% at every save; "
            f"test loss at t1 {100 * a['test_loss_gap_final']:.2f}% apart",
        ),
        (
            "train loss ≤ 1e-3×initial from t",
            f"{a['t_fit']:.3g}; train loss at t = 1: {at('train_loss', 1.0):.2e}",
        ),
    ]
    for when in (1.0, 1 / lam, params["t1"]):
        i = _snap_index(ds, when)
        rows.append(
            (
                f"t = {when:g}: train, test, ‖θ‖, kinks (distinct)",
                f"{at('train_loss', when):.2e}, {at('test_loss', when):.2e}, {at('norm', when):.3f}, "
                f"{int(ds['n_kinks'].values[i])} ({int(ds['n_distinct_kinks'].values[i])})",
            )
        )
    rows.append(
        (
            "distinct kinks at the end",
            f"{np.array2string(ds['final_kinks'].values, precision=3)} (teacher: {RELU_TEACHER_KINKS})",
        )
    )
    rows.append(("training inputs", np.array2string(np.sort(ds["x_train"].values), precision=3)))
    return rows


def plot(ds: xr.Dataset):
    """Top: train/test loss, ‖θ‖ and the kink counts over log t (τ on top, t = 1/λ marked).
    Bottom: the network, the teacher and the distinct kinks at t = 1, t = 1/λ and t = t1."""
    import matplotlib.pyplot as plt

    a = ds.attrs
    params = json.loads(a["params"])
    lam, merge = params["lam"], params["kink_merge"]
    t = ds["t"].values
    train, test, norm = ds["train_loss"].values, ds["test_loss"].values, ds["norm"].values
    snap_t = ds["snap"].values
    n_kinks, n_distinct = ds["n_kinks"].values, ds["n_distinct_kinks"].values
    x_grid, y_grid, f_grid = ds["x"].values, ds["teacher"].values, ds["f"].values

    fig = plt.figure(figsize=(15, 8.5), layout="constrained")
    grid = fig.add_gridspec(2, 3)
    ax_loss, ax_norm, ax_kinks = (fig.add_subplot(grid[0, i]) for i in range(3))
    _boursier.curves(ax_loss, t, _boursier.loss_lines(train, test), _boursier.LOSS)
    _boursier.curves(ax_norm, t, [(norm, "tab:green", "‖θ‖ = ‖(u, v, b)‖")], "‖θ‖")
    # Gradient descent, the paper's method, drawn over the flow: where they agree it hides in it.
    keep = t > 0
    gd_label = f"GD, η = {params['c']:g}/sharpness"
    for ax, names in ((ax_loss, ("gd_train_loss", "gd_test_loss")), (ax_norm, ("gd_norm",))):
        for k, name in enumerate(names):
            ax.plot(t[keep], ds[name].values[keep], "k--", lw=0.9, label=gd_label if k == 0 else None)
    pos = snap_t > 0
    ax_kinks.plot(snap_t[pos], n_kinks[pos], "o-", color="tab:purple", label="kinks")
    ax_kinks.plot(
        snap_t[pos], n_distinct[pos], "s--", color="tab:orange", label=f"distinct kinks (merged within {merge:g})"
    )
    ax_kinks.set_ylabel("kinks of f in [−2, 2]")
    ax_kinks.set_ylim(bottom=0)
    _boursier.log_time_panels((ax_loss, ax_norm, ax_kinks), lam, "t (ODE time, log scale)")
    x_train, y_train = ds["x_train"].values, ds["y_train"].values
    lo, hi = y_grid.min() - 1.0, y_grid.max() + 1.0
    for col, i in enumerate((_snap_index(ds, 1.0), _snap_index(ds, 1 / lam), len(snap_t) - 1)):
        ax = fig.add_subplot(grid[1, col])
        ax.plot(x_grid, y_grid, color="0.6", lw=2.5, label="teacher f⋆")
        ax.plot(x_grid, f_grid[i], color="tab:blue", lw=1.3, label="network f")
        ax.plot(x_train, y_train, "ko", ms=5, label="train points")
        for kx in _distinct(ds, i):
            ax.axvline(kx, color="tab:orange", lw=0.6, alpha=0.6)
        ax.set_ylim(max(lo, f_grid[i].min() - 0.5), min(hi, f_grid[i].max() + 0.5))
        ax.set_title(
            f"t = {snap_t[i]:g} (τ = {lam * snap_t[i]:g}): {int(n_kinks[i])} kinks, {int(n_distinct[i])} distinct"
        )
        ax.set_xlabel("x")
        ax.grid(True, alpha=0.3)
        if col == 0:
            ax.set_ylabel("f(x)  (orange lines: distinct kinks)")
            ax.legend(fontsize=9, loc="upper left")
    fig.suptitle(
        f"Two-layer ReLU network (m = {params['width']}) on {params['n_train']} points, λ = {lam:g}: "
        "interpolation, then the norm decays and the kinks disappear (Boursier et al. Fig. 3)"
    )
    fig.get_layout_engine().set(rect=(0, 0.03, 1, 0.97))
    caption(
        fig,
        f"seed {params['seed']}; solid: the flow ({a['solver']}, rtol {params['rtol']:g} to t = "
        f"{min(params['t_settled'], params['t1']):g}, then {params['rtol_settled']:g}; "
        f"{a['flow_gradients']} gradients; kinks from it); dashed: GD, η = {params['c']:g}/sharpness per decade of t "
        f"({a['total_steps']} steps); the teacher and the 401-point test grid are our choices.",
        size=a.get("size"),
    )
    return fig
