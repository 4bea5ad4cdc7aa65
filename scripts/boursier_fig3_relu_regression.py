"""Boursier, Pesme & Dragomir, Fig. 3: grokking of a two-layer ReLU network on 1-D regression.

The paper's figure (papers.md §2.5 E1.2, §9 A8): f(x) = Σ_{j=1}^{100} u_j ReLU(v_j x + b_j)
fitted to n = 10 points of a teacher made of 3 ReLUs, initial weights i.i.d. 𝒩(0, 4), weight
decay λ = 1e−3, gradient descent with a small step for 10⁶ iterations. The train loss is ≈ 0
by t ≈ 1 while the function is a wiggly interpolant with many kinks; from t ≈ 1/λ = 10³ the
norm falls, and by t ≈ 10⁵ the network still interpolates, with a much smaller norm, a much
lower test loss and only a few kinks. ReLU is not C³: this is outside the paper's theory.

Setup (`gflow.tasks.teacher_relu_1d`, model `gflow.models.ReLU1D`): m = 100, n = 10 with
x_i ~ U[−2, 2], u, v, b ~ 𝒩(0, 4) (α = 2), F = (1/2n)Σ(f(x_i) − y_i)² (the paper's
convention), λ = 1e−3, one run (seed 0). Test loss on 401 equispaced points of [−2, 2].

Details the paper does not give, and our choices:
- Teacher: f⋆(x) = ReLU(x + 1) − 2 ReLU(x) + 1.5 ReLU(x − 1) (kinks at −1, 0, 1).
- Test set: 401 equispaced points of [−2, 2].
- Step size and solver. The gradient field of a ReLU network is discontinuous where a data
  point crosses a unit's kink, and late in training the flow slides along such kinks: adaptive
  ODE solvers crawl there (measured: ROS34PW2 spent 50 000 steps, 70% rejected, to reach
  t = 157). So we run the paper's own method, gradient descent (`gflow.gd`), which does not
  notice kinks, with a step that tracks the curvature: the time axis is cut at t = 0.01, 0.1,
  1, …, t1 and each segment runs GD at a fixed step η = c/s, s the largest Hessian eigenvalue
  of F at the segment's start (c = 0.5 quick, 0.2 full, 1 smoke; GD is stable for c < 2 and
  follows the flow to O(η)). A single η would be set by the initial sharpness (≈ 540 at
  variance 4), i.e. ≈ 1e−3, and t = 1e5 would cost 1e8 steps; the sharpness falls to ≈ 3 once
  the norm has decayed, so the schedule needs ~3e6.
- Horizon: t1 = 1e5 (quick, the paper's t₃), 1e6 (full), 1e4 (smoke).
- Kinks (`gflow.analysis.relu_kinks`): positions −b_j/v_j in [−2, 2] of units whose slope
  change |u_j v_j| is ≥ 1e−3 of the largest; "distinct" merges kinks within 0.02 of each other.

Time convention: F_λ = F + (λ/2)‖θ‖², GD step θ ← θ − η(∇F + λθ) at ODE time t = Σ η (the
paper's GD, t = η·iteration at a constant step); slow time τ = λt (top axis).

Writes `boursier_fig3_relu_regression.png` (train/test loss, ‖θ‖ and the number of kinks over
log t with t = 1/λ marked; the learned function at t = 1, t = 1/λ and t = t1) and
`boursier_fig3_relu_regression.nc` (xarray: metrics over `time`; per segment end (`snap`) the
kink counts, the step, the sharpness and f on the test grid) into `--out` (default: a new
folder gflow-runs/boursier-fig3-relu-regression-<timestamp>).

    python scripts/boursier_fig3_relu_regression.py           # quick: t1 = 1e5 (about a minute)
    python scripts/boursier_fig3_relu_regression.py --smoke   # t1 = 1e4, η = 1/sharpness (seconds + compilations)
    python scripts/boursier_fig3_relu_regression.py --full    # t1 = 1e6, η = 0.2/sharpness
"""

from __future__ import annotations

import math
import pathlib
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))  # scripts/ is not a package
import _figure  # noqa: E402

NAME = "boursier_fig3_relu_regression"
LAM = 1e-3
WIDTH = 100
N_TRAIN = 10
ALPHA = 2.0  # init variance 4
SEED = 0
T_FIRST = 1e-2  # end of the first segment; later segments are decades
MERGE = 2e-2  # kinks closer than this count once ("distinct kinks")
# size -> horizon t1, step factor c (η = c/sharpness), saves per decade.
SIZES = {
    "smoke": {"t1": 1e4, "c": 1.0, "saves": 6},
    "quick": {"t1": 1e5, "c": 0.5, "saves": 18},
    "full": {"t1": 1e6, "c": 0.2, "saves": 36},
}


def build_problem(seed: int = SEED):
    import gflow

    return gflow.tasks.teacher_relu_1d(seed, m=WIDTH, n=N_TRAIN, alpha=ALPHA)


def sharpness_fn(problem):
    """A jitted θ ↦ largest |eigenvalue| of ∇²F(θ) (dense Hessian: 3m parameters)."""
    import equinox as eqx
    import jax
    import jax.flatten_util
    import jax.numpy as jnp

    static = problem.split()[1]
    train = problem.train

    @jax.jit
    def top_eigenvalue(params):
        flat, unravel = jax.flatten_util.ravel_pytree(params)
        hess = jax.hessian(lambda v: problem.loss(eqx.combine(unravel(v), static), train))(flat)
        return jnp.max(jnp.abs(jnp.linalg.eigvalsh(hess)))

    return top_eigenvalue


def segment_edges(t1: float) -> list[float]:
    """0, T_FIRST, 10·T_FIRST, … up to t1 (the last edge is t1)."""
    edges = [0.0, T_FIRST]
    while edges[-1] * 10 < t1 * (1 + 1e-9):
        edges.append(edges[-1] * 10)
    if edges[-1] < t1 * (1 - 1e-9):
        edges.append(t1)
    return edges


def scheduled_gd(problem, lam: float, t1: float, *, c: float, saves_per_segment: int, echo=print):
    """`gflow.gd` segment by segment (see the module docstring): returns a dict of NumPy series
    and the per-segment record (end time, η, sharpness, final model)."""
    import equinox as eqx
    import jax

    import gflow

    top_eigenvalue = sharpness_fn(problem)
    edges = segment_edges(t1)
    series: dict[str, list] = {}
    segments = []
    q = problem
    for k, (a, b) in enumerate(zip(edges[:-1], edges[1:])):
        s = float(top_eigenvalue(q.params)) + lam
        n_saves = saves_per_segment
        dt_save = (b - a) / n_saves
        save_every = max(1, math.ceil(dt_save * s / c))
        eta = dt_save / save_every
        start = time.perf_counter()
        traj = gflow.gd(q, lam, eta, n_saves * save_every, save_every=save_every)
        jax.block_until_ready(traj)
        if not bool(traj.ok):
            raise RuntimeError(f"gd failed on [{a:g}, {b:g}] at η = {eta:.3g}: {traj.message}")
        first = 0 if k == 0 else 1  # the first save of a segment repeats the last of the previous one
        series.setdefault("t", []).append(a + np.asarray(traj.t)[first:])
        for name, values in traj.metrics.items():
            series.setdefault(name, []).append(np.asarray(values)[first:])
        segments.append({"t": b, "eta": eta, "sharpness": s, "steps": n_saves * save_every, "model": traj.final})
        echo(
            f"  t ∈ [{a:g}, {b:g}]: sharpness {s:.3g}, η = {eta:.3g}, {n_saves * save_every} steps, "
            f"‖θ‖ = {float(traj.metrics['norm'][-1]):.3f}  [{time.perf_counter() - start:.1f} s]"
        )
        q = eqx.tree_at(lambda p: p.model, q, traj.final)
    return {name: np.concatenate(parts) for name, parts in series.items()}, segments


def run(out: pathlib.Path, *, size: str = "quick", echo=print) -> dict:
    import jax

    jax.config.update("jax_enable_x64", True)  # before any array is made

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import xarray as xr

    from gflow.analysis import crossing_time, relu_kinks
    from gflow.tasks import RELU_TEACHER_KINKS

    cfg = SIZES[size]
    t1 = cfg["t1"]
    problem = build_problem()
    echo(
        f"E1.2 ({size}): two-layer ReLU net, m = {WIDTH}, n = {N_TRAIN}, init 𝒩(0, {ALPHA**2:g}), λ = {LAM:g}, "
        f"GD with η = {cfg['c']:g}/sharpness per segment, t1 = {t1:g}"
    )
    start = time.perf_counter()
    series, segments = scheduled_gd(problem, LAM, t1, c=cfg["c"], saves_per_segment=cfg["saves"], echo=echo)
    elapsed = time.perf_counter() - start
    steps = sum(seg["steps"] for seg in segments)
    echo(f"  {steps} GD steps in {len(segments)} segments [{elapsed:.1f} s incl. compilations]")

    x_grid = np.asarray(problem.test["x"])
    y_grid = np.asarray(problem.test["y"])
    snap_models = [problem.model] + [seg["model"] for seg in segments]
    snap_t = np.array([0.0] + [seg["t"] for seg in segments])
    kinks = [relu_kinks(mdl) for mdl in snap_models]
    distinct = [relu_kinks(mdl, merge=MERGE) for mdl in snap_models]
    f_grid = np.stack([np.asarray(jax.vmap(mdl)(problem.test["x"])) for mdl in snap_models])

    t = series["t"]
    train, test, norm = series["train_loss"], series["test_loss"], series["norm"]
    t_fit = crossing_time(t, train, 1e-3 * train[0])
    i_1, i_lam = (int(np.argmin(np.abs(snap_t - when))) for when in (1.0, 1 / LAM))
    at = lambda values, when: float(values[np.argmin(np.abs(t - when))])
    echo(f"  train loss ≤ 1e-3×initial from t = {t_fit:.3g}; train loss at t = 1: {at(train, 1.0):.2e}")
    for when in (1.0, 1 / LAM, t1):
        i = int(np.argmin(np.abs(snap_t - when)))
        echo(
            f"  t = {when:<8g} train {at(train, when):.2e}  test {at(test, when):.2e}  ‖θ‖ {at(norm, when):.3f}  "
            f"kinks {len(kinks[i])} (distinct {len(distinct[i])})"
        )
    echo(f"  distinct kinks at the end: {np.array2string(distinct[-1], precision=3)} (teacher: {RELU_TEACHER_KINKS})")
    echo(f"  training inputs: {np.array2string(np.sort(np.asarray(problem.train['x'])), precision=3)}")

    fig = plt.figure(figsize=(15, 8.5), layout="constrained")
    grid = fig.add_gridspec(2, 3)
    ax_loss, ax_norm, ax_kinks = (fig.add_subplot(grid[0, i]) for i in range(3))
    keep = t > 0
    ax_loss.plot(t[keep], train[keep], color="tab:blue", label="train loss F")
    ax_loss.plot(t[keep], test[keep], color="tab:red", label="test loss")
    ax_loss.set_yscale("log")
    ax_loss.set_ylabel("loss (½·mean squared error)")
    ax_norm.plot(t[keep], norm[keep], color="tab:green", label="‖θ‖ = ‖(u, v, b)‖")
    ax_norm.set_yscale("log")
    ax_norm.set_ylabel("‖θ‖")
    pos = snap_t > 0
    ax_kinks.plot(snap_t[pos], [len(k) for k, p in zip(kinks, pos) if p], "o-", color="tab:purple", label="kinks")
    ax_kinks.plot(
        snap_t[pos],
        [len(k) for k, p in zip(distinct, pos) if p],
        "s--",
        color="tab:orange",
        label=f"distinct kinks (merged within {MERGE:g})",
    )
    ax_kinks.set_ylabel("kinks of f in [−2, 2]")
    ax_kinks.set_ylim(bottom=0)
    for ax in (ax_loss, ax_norm, ax_kinks):
        ax.set_xscale("log")
        ax.set_xlabel("t (ODE time = Σ η, log scale)")
        ax.axvline(1 / LAM, color="0.5", lw=1, ls=":")
        ax.text(1 / LAM, 1.0, " t = 1/λ", transform=ax.get_xaxis_transform(), va="top", color="0.4")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=9, loc="lower left")
        top = ax.secondary_xaxis("top", functions=(lambda x: x * LAM, lambda x: x / LAM))
        top.set_xlabel("τ = λt")
    x_train, y_train = np.asarray(problem.train["x"]), np.asarray(problem.train["y"])
    lo, hi = y_grid.min() - 1.0, y_grid.max() + 1.0
    for col, i in enumerate((i_1, i_lam, len(snap_t) - 1)):
        ax = fig.add_subplot(grid[1, col])
        ax.plot(x_grid, y_grid, color="0.6", lw=2.5, label="teacher f⋆")
        ax.plot(x_grid, f_grid[i], color="tab:blue", lw=1.3, label="network f")
        ax.plot(x_train, y_train, "ko", ms=5, label="train points")
        for kx in distinct[i]:
            ax.axvline(kx, color="tab:orange", lw=0.6, alpha=0.6)
        ax.set_ylim(max(lo, f_grid[i].min() - 0.5), min(hi, f_grid[i].max() + 0.5))
        ax.set_title(f"t = {snap_t[i]:g} (τ = {LAM * snap_t[i]:g}): {len(kinks[i])} kinks, {len(distinct[i])} distinct")
        ax.set_xlabel("x")
        ax.grid(True, alpha=0.3)
        if col == 0:
            ax.set_ylabel("f(x)  (orange lines: distinct kinks)")
            ax.legend(fontsize=9, loc="upper left")
    fig.suptitle(
        f"Two-layer ReLU network (m = {WIDTH}) on {N_TRAIN} points, λ = {LAM:g}: interpolation, then the norm "
        "decays and the kinks disappear (Boursier et al. Fig. 3)"
    )
    fig.get_layout_engine().set(rect=(0, 0.03, 1, 0.97))
    fig.text(
        0.01,
        0.005,
        f"{size} run: seed {SEED}; GD at η = {cfg['c']:g}/sharpness, re-chosen at t = 0.01, 0.1, 1, …; "
        f"teacher ReLU(x+1) − 2ReLU(x) + 1.5ReLU(x−1) and 401 equispaced test points are our choices "
        "(not given in the paper).",
        fontsize=8,
        color="0.3",
    )
    png = out / f"{NAME}.png"
    fig.savefig(png, dpi=110)
    plt.close(fig)

    ds = xr.Dataset(
        {name: ("time", values) for name, values in series.items() if name != "t"},
        coords={"time": t, "t": ("time", t), "tau": ("time", LAM * t), "snap": snap_t, "x": x_grid},
    )
    n_max = max(len(k) for k in kinks)
    ds = ds.assign(
        n_kinks=("snap", np.array([len(k) for k in kinks])),
        n_distinct_kinks=("snap", np.array([len(k) for k in distinct])),
        final_kinks=("final_kink", distinct[-1]),
        eta=("snap", np.array([np.nan] + [seg["eta"] for seg in segments])),
        sharpness=("snap", np.array([np.nan] + [seg["sharpness"] for seg in segments])),
        f=(("snap", "x"), f_grid),
        teacher=("x", y_grid),
        x_train=("train", x_train),
        y_train=("train", y_train),
    )
    ds.attrs.update(
        experiment="Boursier et al. Fig. 3 (papers.md E1.2, A8): two-layer ReLU net on 1-D regression",
        size=size,
        lam=LAM,
        width=WIDTH,
        n_train=N_TRAIN,
        init_variance=ALPHA**2,
        seed=SEED,
        t1=t1,
        method=f"gflow.gd segment by segment, eta = {cfg['c']} / sharpness at the segment start",
        convention="F = (1/2n) sum (f(x_i) - y_i)^2, F_lam = F + (lam/2)||theta||^2, t = sum of GD steps",
        teacher="ReLU(x+1) - 2 ReLU(x) + 1.5 ReLU(x-1)",
        kink_threshold=1e-3,
        kink_merge=MERGE,
        max_kinks=n_max,
        total_steps=steps,
        t_fit=t_fit,
        wall_s=elapsed,
        **_figure.provenance(),
    )
    data = out / f"{NAME}.nc"
    ds.to_netcdf(data, engine="scipy")
    echo(f"  wrote {png} and {data}")
    return {"dataset": ds, "png": png, "data": data}


def main(argv=None) -> int:
    parser = _figure.parser(
        __doc__,
        NAME,
        smoke="t1 = 1e4, η = 1/sharpness (seconds after compilation)",
        full="t1 = 1e6, η = 0.2/sharpness",
    )
    args = parser.parse_args(argv)
    size = _figure.size(args)
    return _figure.run_in_new_folder(args.out, NAME, lambda out: run(out, size=size))


if __name__ == "__main__":
    sys.exit(main())
