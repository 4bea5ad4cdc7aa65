"""Boursier, Pesme & Dragomir, App. D.2 (Fig. 4): grokking of a diagonal linear network on sparse regression.

The paper's figure (papers.md §2.5 E1.3): β = u ⊙ v, f(x) = ⟨β, x⟩, a sparse teacher,
Gaussian initialisation of variance 0.1, weight decay λ = 1e−4. By t₂ ≈ 10² the train loss is
≈ 0: the unregularised flow has interpolated, at the interpolator its implicit bias picks
(Woodworth et al.), whose norm is not small and which does not generalise. From t ≈ 1/λ = 10⁴
the norm ‖u‖² + ‖v‖² falls, and by t₃ ≈ 10⁵ the weights reach the minimum-norm interpolator,
whose β is the minimum-ℓ1 interpolator (‖u‖² + ‖v‖² = 2‖β‖₁ at balance |u_i| = |v_i|), and
the test loss is ≈ 0 (ℓ1 minimisation recovers the sparse teacher).

Setup (`gflow.tasks.diagonal_regression`, parameterisation "uv"): X ∈ ℝ^{n×d} with i.i.d.
𝒩(0, 1) entries, n = 20, d = 60, a k = 3-sparse teacher β⋆ with 𝒩(0, 1) non-zeros, y = Xβ⋆,
u, v ~ 𝒩(0, 0.1·I) (α = √0.1), F = ½·mean((⟨β, x_i⟩ − y_i)²), λ = 1e−4, one run (seed 0),
500 Gaussian test inputs. Integrated with `gflow.simulate` (solver "auto": the stiffness ratio
(sharpness + λ)·t1 is ~1e6, so it takes the Rosenbrock-W solver ROS34PW2, which crosses the
long slow phase in a few thousand steps). The minimum-ℓ1 interpolator comes from
`gflow.analysis.min_l1_interpolator` (a linear program).

Details the paper does not give, and our choices:
- Teacher and features: the paper fits a sparse Fourier series (feature map, d and n unknown);
  we use a Gaussian design (n = 20, d = 60, k = 3; full: n = 100, d = 500, k = 5), for which
  the minimum-ℓ1 interpolator is exactly β⋆ (checked and printed).
- Loss normalisation ½·mean (gflow's); the paper's is unknown. The horizon: t1 = 3e5 (τ = 30).

Time convention: F_λ = F + (λ/2)(‖u‖² + ‖v‖²), dθ/dt = −∇F_λ, ODE time t; slow time τ = λt
(top axis).

Writes `boursier_fig4_diagonal_sparse.png` (train/test loss, ‖u‖² + ‖v‖² against 2‖β_ℓ1‖₁,
‖β(t) − β_ℓ1‖, and the coordinates β_i(t), all over log t with t = 1/λ marked) and
`boursier_fig4_diagonal_sparse.nc` (xarray: the metrics over `time`, `beta` (time, coord),
`distance_l1`, `beta_l1`, `beta_star`) into `--out` (default: a new folder
gflow-runs/boursier-fig4-diagonal-sparse-<timestamp>).

    python scripts/boursier_fig4_diagonal_sparse.py           # quick: n = 20, d = 60, t1 = 3e5 (under a minute)
    python scripts/boursier_fig4_diagonal_sparse.py --smoke   # same size, 40 saves, rtol 1e-6 (seconds + compilation)
    python scripts/boursier_fig4_diagonal_sparse.py --full    # n = 100, d = 500, k = 5, t1 = 1e6
"""

from __future__ import annotations

import pathlib
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))  # scripts/ is not a package
import _figure  # noqa: E402

NAME = "boursier_fig4_diagonal_sparse"
LAM = 1e-4
INIT_VARIANCE = 0.1
SEED = 0
# size -> data sizes, horizon t1, number of saves, tolerances (None: gflow's float64 defaults).
SIZES = {
    "smoke": {"n": 20, "d": 60, "k": 3, "t1": 3e5, "saves": 40, "rtol": 1e-6, "atol": 1e-9},
    "quick": {"n": 20, "d": 60, "k": 3, "t1": 3e5, "saves": 150, "rtol": None, "atol": None},
    "full": {"n": 100, "d": 500, "k": 5, "t1": 1e6, "saves": 300, "rtol": 1e-10, "atol": 1e-12},
}


def build_problem(n: int, d: int, k: int, *, seed: int = SEED):
    import gflow

    return gflow.tasks.diagonal_regression(
        seed, n=n, d=d, k=k, alpha=float(np.sqrt(INIT_VARIANCE)), parameterisation="uv", init="gaussian"
    )


def run(out: pathlib.Path, *, size: str = "quick", echo=print) -> dict:
    import jax

    jax.config.update("jax_enable_x64", True)  # before any array is made

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import gflow
    from gflow.analysis import crossing_time, min_l1_interpolator

    cfg = SIZES[size]
    t1 = cfg["t1"]
    problem = build_problem(cfg["n"], cfg["d"], cfg["k"])
    x, y = np.asarray(problem.train["x"]), np.asarray(problem.train["y"])
    beta_star = np.asarray(problem.test["beta_star"])
    beta_l1 = min_l1_interpolator(x, y)
    l1 = float(np.abs(beta_l1).sum())
    recovery = float(np.linalg.norm(beta_l1 - beta_star))
    echo(
        f"E1.3 ({size}): β = u⊙v, n = {cfg['n']}, d = {cfg['d']}, {cfg['k']}-sparse teacher, "
        f"init 𝒩(0, {INIT_VARIANCE:g}), λ = {LAM:g}, t1 = {t1:g}"
    )
    echo(f"  min-ℓ1 interpolator: ‖β_ℓ1‖₁ = {l1:.4f}, ‖β_ℓ1 − β⋆‖ = {recovery:.1e}")

    start = time.perf_counter()
    traj = gflow.simulate(
        problem,
        LAM,
        t1,
        solver="auto",
        saveat=gflow.log_times(t1, cfg["saves"], 1e-2),
        rtol=cfg["rtol"],
        atol=cfg["atol"],
        save_params=True,
    )
    jax.block_until_ready(traj)
    elapsed = time.perf_counter() - start
    steps = int(traj.stats["num_steps"])
    echo(f"  simulate: {traj.message} ({traj.solver}, {steps} steps) [{elapsed:.1f} s incl. compilation]")

    ds = traj.to_xarray()
    t = ds["t"].values
    beta = np.asarray(traj.params.u) * np.asarray(traj.params.v)
    distance = np.linalg.norm(beta - beta_l1[None, :], axis=1)
    norm_sq = ds["norm"].values ** 2
    train, test = ds["train_loss"].values, ds["test_loss"].values
    t_fit = crossing_time(t, train, 1e-3 * train[0])
    plateau = float(test[np.searchsorted(t, t_fit)]) if np.isfinite(t_fit) else np.nan
    t_half = crossing_time(t, test, 0.5 * plateau, after=t_fit) if np.isfinite(t_fit) else np.nan
    t_close = crossing_time(t, distance, 1e-2 * np.linalg.norm(beta_l1))
    echo(
        f"  train loss ≤ 1e-3×initial from t = {t_fit:.3g}; test loss there {plateau:.3g}, half of it from "
        f"t = {t_half:.3g} (λt = {LAM * t_half:.3g}); ‖β − β_ℓ1‖ ≤ 1% of ‖β_ℓ1‖ from t = {t_close:.3g}"
    )
    echo(
        f"  final (t = {t[-1]:g}): train {train[-1]:.2e}, test {test[-1]:.2e}, ‖β − β_ℓ1‖ = {distance[-1]:.2e}, "
        f"‖u‖²+‖v‖² = {norm_sq[-1]:.5f} vs 2‖β_ℓ1‖₁ = {2 * l1:.5f}; at t = 0 ‖u‖²+‖v‖² = {norm_sq[0]:.3f}, "
        f"max over t {norm_sq.max():.3f}"
    )

    fig, axes = plt.subplots(2, 2, figsize=(13, 8.5), layout="constrained")
    (ax_loss, ax_norm), (ax_dist, ax_beta) = axes
    keep = t > 0
    ax_loss.plot(t[keep], train[keep], color="tab:blue", label="train loss F")
    ax_loss.plot(t[keep], test[keep], color="tab:red", label="test loss")
    ax_loss.set_yscale("log")
    ax_loss.set_ylabel("loss (½·mean squared error)")
    ax_norm.plot(t[keep], norm_sq[keep], color="tab:green", label="‖u‖² + ‖v‖²")
    ax_norm.axhline(2 * l1, color="k", ls="--", lw=1, label=f"2‖β_ℓ1‖₁ = {2 * l1:.3f}")
    ax_norm.set_ylabel("‖u‖² + ‖v‖²")
    ax_dist.plot(t[keep], distance[keep], color="tab:purple", label="‖β(t) − β_ℓ1‖")
    ax_dist.set_yscale("log")
    ax_dist.set_ylabel("distance to the min-ℓ1 interpolator")
    support = np.abs(beta_star) > 0
    for i in np.nonzero(~support)[0]:
        ax_beta.plot(t[keep], beta[keep, i], color="0.6", lw=0.6)
    for i in np.nonzero(support)[0]:
        ax_beta.plot(t[keep], beta[keep, i], lw=1.8)
        ax_beta.axhline(beta_star[i], color="k", ls=":", lw=0.8)
    ax_beta.plot([], [], color="0.6", lw=0.6, label="β_i off the teacher's support")
    ax_beta.plot([], [], color="tab:blue", lw=1.8, label="β_i on the support (coloured; dotted: β⋆_i)")
    ax_beta.set_ylabel("coordinates β_i = u_i v_i")
    for ax in axes.ravel():
        ax.set_xscale("log")
        ax.set_xlabel("t (ODE time, log scale)")
        ax.axvline(1 / LAM, color="0.5", lw=1, ls=":")
        ax.text(1 / LAM, 1.0, " t = 1/λ", transform=ax.get_xaxis_transform(), va="top", color="0.4")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=9, loc="lower left")
        top = ax.secondary_xaxis("top", functions=(lambda v: v * LAM, lambda v: v / LAM))
        top.set_xlabel("τ = λt")
    fig.suptitle(
        f"Diagonal network β = u⊙v, sparse regression, λ = {LAM:g}: interpolation by t ≈ 10², then the drift to the "
        "minimum-ℓ1 interpolator (Boursier et al. App. D.2)"
    )
    fig.get_layout_engine().set(rect=(0, 0.03, 1, 0.97))
    fig.text(
        0.01,
        0.005,
        f"{size} run: n = {cfg['n']}, d = {cfg['d']}, k = {cfg['k']}, Gaussian features and teacher (our choice; "
        f"the paper uses an unspecified sparse Fourier series), u, v ~ N(0, {INIT_VARIANCE:g}), seed {SEED}; "
        f"{traj.solver}.",
        fontsize=8,
        color="0.3",
    )
    png = out / f"{NAME}.png"
    fig.savefig(png, dpi=110)
    plt.close(fig)

    ds = ds.assign(
        norm_sq=("time", norm_sq),
        distance_l1=("time", distance),
        beta=(("time", "coord"), beta),
        beta_l1=("coord", beta_l1),
        beta_star=("coord", beta_star),
    )
    ds.attrs.update(
        experiment="Boursier et al. App. D.2 (papers.md E1.3): diagonal network beta = u*v, sparse regression",
        size=size,
        n=cfg["n"],
        d=cfg["d"],
        k=cfg["k"],
        init_variance=INIT_VARIANCE,
        seed=SEED,
        loss="F = 0.5 * mean((<beta, x_i> - y_i)^2)",
        l1_norm_min=l1,
        two_l1_norm_min=2 * l1,
        l1_recovery_error=recovery,
        t_fit=t_fit,
        t_test_half=t_half,
        t_close_l1=t_close,
        test_plateau=plateau,
        rtol=str(cfg["rtol"]),
        atol=str(cfg["atol"]),
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
        smoke="40 saves, rtol 1e-6 (seconds after compilation)",
        full="n = 100, d = 500, k = 5, t1 = 1e6",
    )
    args = parser.parse_args(argv)
    size = _figure.size(args)
    return _figure.run_in_new_folder(args.out, NAME, lambda out: run(out, size=size))


if __name__ == "__main__":
    sys.exit(main())
