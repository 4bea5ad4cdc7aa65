"""Boursier, Pesme & Dragomir, Fig. 2: grokking in low-rank matrix completion with W = UVᵀ.

The paper's figure (papers.md §2.5 E1.1, §9 A7): regularised gradient flow on a rank-3 matrix
completion problem with an "extremely over-parameterised" factorisation W = UVᵀ (r = m + n
columns) and weight decay λ = 1e−3. The train loss falls to ~0 quickly while the singular
values of UVᵀ are large (t ≲ 1); from t ≈ 1/λ = 10³ the norm ‖U‖²_F + ‖V‖²_F falls, all but
three singular values decay to 0, the top three settle at those of the ground truth M⋆, and
the test loss drops (by t ≈ 10⁴): the slow flow minimises ‖U‖²_F + ‖V‖²_F ≥ 2‖W‖_* on the
interpolating set, a drift to the minimum-nuclear-norm completion.

Setup (`gflow.tasks.matrix_completion`): M⋆ = ABᵀ/√3 with A, B i.i.d. 𝒩(0, 1) (20×20, rank 3),
a uniformly random 70% of the entries observed, U, V entries i.i.d. 𝒩(0, 1), one run (seed 0),
integrated with `gflow.simulate` (solver "auto", which picks the stiff Rosenbrock-W solver).

Details the paper does not give, and our choices (papers.md §10.1):
- Size: 20×20 rank 3 (a paper note) vs ten singular-value curves (a paper card). We run 20×20
  and plot the top ten singular values: the two statements agree if the figure shows only the
  top ten. `--smoke` runs 10×10.
- Observed fraction: 70%. papers.md A7 suggests 50%, but at 20×20 rank 3 the minimum-nuclear-
  norm completion of 50% of the entries is not M⋆ (relative error 0.07–0.36 over seeds 0–4,
  `gflow.analysis.min_nuclear_norm_completion`); at 70% it is M⋆ for 4 of 5 seeds (seed 0
  included), so the slow-phase limit is the ground truth, as in the paper's figure. The script
  prints the completion's error.
- Loss normalisation: F = ½·Σ over observed entries (`--loss sum`, default) rather than gflow's
  ½·mean (`--loss mean`). With the sum, λ = 1e−3 shrinks each singular value by ≈ λ/(observed
  fraction), so the limit is M⋆ to ~1e−3 and the train MSE goes to ~1e−8, as in the paper's
  "zero train loss, equals the ground truth". With the mean the effective penalty is |Ω| times
  larger (λ|Ω| = 0.28): measured, the singular values end 0.4–0.5 (4–7%) low, the train MSE
  stays 1.4e−3 and the fit takes until t ≈ 30 instead of t ≈ 0.1.
- Initialisation scale: entries 𝒩(0, 1) (O(1), so Φ(θ0) has a large norm and there is a second
  phase at all); the paper's scale is unknown.

Time convention: F_λ = F + (λ/2)(‖U‖²_F + ‖V‖²_F), dθ/dt = −∇F_λ, ODE time t; slow time τ = λt
(top axis). The paper's λ is ours (its F_λ has the same ½); its t is gradient-flow time.

Writes `boursier_fig2_matrix_completion.png` (train/test MSE, ‖U‖²+‖V‖² against 2‖M⋆‖_*, the
top ten singular values against σ⋆, all over log t with t = 1/λ marked) and
`boursier_fig2_matrix_completion.nc` (xarray: every metric over `time`, `singular_values`
(time, index), `sigma_star`, the configuration in attrs) into `--out` (default: a new folder
gflow-runs/boursier-fig2-matrix-completion-<timestamp>).

    python scripts/boursier_fig2_matrix_completion.py           # quick: 20×20, t1 = 3e4 (about a minute)
    python scripts/boursier_fig2_matrix_completion.py --smoke   # 10×10, loose tolerances (seconds + compilation)
    python scripts/boursier_fig2_matrix_completion.py --full    # 20×20, t1 = 1e5, 400 saves, rtol 1e-10
"""

from __future__ import annotations

import pathlib
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))  # scripts/ is not a package
import _figure  # noqa: E402

NAME = "boursier_fig2_matrix_completion"
LAM = 1e-3
RANK = 3
ALPHA = 1.0
SEED = 0
N_SINGULAR = 10
# size -> matrix side, observed fraction, horizon t1, number of saves, tolerances (None: gflow's).
SIZES = {
    "smoke": {"side": 10, "fraction": 0.8, "t1": 3e4, "saves": 60, "rtol": 1e-6, "atol": 1e-8},
    "quick": {"side": 20, "fraction": 0.7, "t1": 3e4, "saves": 150, "rtol": None, "atol": None},
    "full": {"side": 20, "fraction": 0.7, "t1": 1e5, "saves": 400, "rtol": 1e-10, "atol": 1e-12},
}


def build_problem(side: int, fraction: float, *, loss: str = "sum", seed: int = SEED):
    """The E1.1 problem: `gflow.tasks.matrix_completion`, with F = ½·Σ (loss="sum") or ½·mean."""
    import jax
    import jax.numpy as jnp

    import gflow

    problem = gflow.tasks.matrix_completion(
        seed, m=side, n=side, rank=RANK, fraction=fraction, alpha=ALPHA, n_singular=min(side, N_SINGULAR)
    )
    if loss == "mean":
        return problem
    if loss != "sum":
        raise ValueError(f"loss must be 'sum' or 'mean', got {loss!r}")

    def sum_residuals(model, data):
        # gflow's F = ½·mean(r²) with r = √|Ω|·(W_ij − M⋆_ij) is ½·Σ_Ω (W_ij − M⋆_ij)².
        r = jax.vmap(model)(data["x"]) - data["y"]
        return jnp.sqrt(jnp.asarray(r.size, r.dtype)) * r

    metrics = {name[len(split) + 1 :]: fn for name, split, fn in problem.metric_items}
    return gflow.Problem(problem.model, problem.train, residuals=sum_residuals, test=problem.test, metrics=metrics)


def run(out: pathlib.Path, *, size: str = "quick", loss: str = "sum", echo=print) -> dict:
    import jax

    jax.config.update("jax_enable_x64", True)  # before any array is made

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import gflow
    from gflow.analysis import crossing_time, min_nuclear_norm_completion
    from gflow.plot import plot_singular_values

    cfg = SIZES[size]
    side, t1 = cfg["side"], cfg["t1"]
    problem = build_problem(side, cfg["fraction"], loss=loss)
    m_star = np.asarray(problem.test["m_star"])
    sigma_star = np.linalg.svd(m_star, compute_uv=False)
    nuclear_star = float(sigma_star.sum())
    obs = np.asarray(problem.train["x"])
    completion = min_nuclear_norm_completion(m_star.shape, obs[:, 0], obs[:, 1], np.asarray(problem.train["y"]))
    completion_error = float(np.linalg.norm(completion.matrix - m_star) / np.linalg.norm(m_star))
    n_params = gflow.count_params(problem.model)
    echo(
        f"E1.1 ({size}): {side}×{side} rank {RANK}, {len(obs)} of {side * side} entries observed, r = {2 * side}, "
        f"{n_params} parameters, λ = {LAM:g}, F = ½·{loss} over observed entries, t1 = {t1:g}"
    )
    echo(
        f"  σ⋆ = {np.array2string(sigma_star[:RANK], precision=4)}, 2‖M⋆‖_* = {2 * nuclear_star:.4f}; "
        f"min-nuclear-norm completion: relative error {completion_error:.1e}, ‖·‖_* = {completion.nuclear_norm:.4f}"
    )

    start = time.perf_counter()
    traj = gflow.simulate(
        problem,
        LAM,
        t1,
        solver="auto",
        saveat=gflow.log_times(t1, cfg["saves"], 1e-3),
        rtol=cfg["rtol"],
        atol=cfg["atol"],
    )
    jax.block_until_ready(traj)
    elapsed = time.perf_counter() - start
    steps = int(traj.stats["num_steps"])
    echo(f"  simulate: {traj.message} ({traj.solver}, {steps} steps) [{elapsed:.1f} s incl. compilation]")

    ds = traj.to_xarray()
    t = ds["t"].values
    n_sv = min(side, N_SINGULAR)
    svs = np.stack([ds[f"test_sv{i}"].values for i in range(n_sv)], axis=1)
    norm_sq = ds["norm"].values ** 2
    train_mse, test_mse = ds["train_mse"].values, ds["test_mse"].values
    t_fit = crossing_time(t, train_mse, 1e-3 * train_mse[0])
    plateau = float(test_mse[np.searchsorted(t, t_fit)]) if np.isfinite(t_fit) else np.nan
    t_half = crossing_time(t, test_mse, 0.5 * plateau, after=t_fit) if np.isfinite(t_fit) else np.nan
    t_drop = crossing_time(t, test_mse, 1e-3 * plateau, after=t_fit) if np.isfinite(t_fit) else np.nan
    final = {
        "train_mse": float(train_mse[-1]),
        "test_mse": float(test_mse[-1]),
        "relative_error": float(ds["test_relative_error"].values[-1]),
        "norm_sq": float(norm_sq[-1]),
    }
    echo(
        f"  train MSE ≤ 1e-3×initial from t = {t_fit:.3g}; test MSE plateau {plateau:.3g}, "
        f"half of it from t = {t_half:.3g} (λt = {LAM * t_half:.3g}), 1e-3 of it from t = {t_drop:.3g}"
    )
    echo(
        f"  final (t = {t[-1]:g}): train MSE {final['train_mse']:.2e}, test MSE {final['test_mse']:.2e}, "
        f"‖W − M⋆‖/‖M⋆‖ = {final['relative_error']:.2e}"
    )
    echo(
        f"  ‖U‖²+‖V‖²: {norm_sq[0]:.2f} at t = 0, {final['norm_sq']:.4f} at the end vs 2‖M⋆‖_* = "
        f"{2 * nuclear_star:.4f} (ratio {final['norm_sq'] / (2 * nuclear_star):.5f})"
    )
    echo(
        f"  singular values at the end: top {RANK} {np.array2string(svs[-1, :RANK], precision=4)} vs σ⋆ "
        f"{np.array2string(sigma_star[:RANK], precision=4)}; the others ≤ {svs[-1, RANK:].max():.2e}"
    )

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6), layout="constrained")
    ax_loss, ax_norm, ax_sv = axes
    keep = t > 0
    ax_loss.plot(t[keep], train_mse[keep], color="tab:blue", label="train MSE")
    ax_loss.plot(t[keep], test_mse[keep], color="tab:red", label="test MSE")
    ax_loss.set_yscale("log")
    ax_loss.set_ylabel("mean squared error")
    ax_norm.plot(t[keep], norm_sq[keep], color="tab:green", label="‖U‖²_F + ‖V‖²_F")
    ax_norm.axhline(2 * nuclear_star, color="k", ls="--", lw=1, label=f"2‖M⋆‖_* = {2 * nuclear_star:.2f}")
    ax_norm.set_yscale("log")
    ax_norm.set_ylabel("‖U‖²_F + ‖V‖²_F (Frobenius)")
    plot_singular_values(t, svs, reference=sigma_star[:RANK], lam=LAM, ax=ax_sv)
    ax_sv.set_ylabel(f"top {n_sv} singular values of UVᵀ")
    ax_sv.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: curves fill the panel
    for ax in (ax_loss, ax_norm):
        ax.set_xscale("log")
        ax.set_xlabel("t (ODE time, log scale)")
        ax.axvline(1 / LAM, color="0.5", lw=1, ls=":")
        ax.text(1 / LAM, 1.0, " t = 1/λ", transform=ax.get_xaxis_transform(), va="top", color="0.4")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=9, loc="lower left")
    for ax in axes:
        top = ax.secondary_xaxis("top", functions=(lambda x: x * LAM, lambda x: x / LAM))
        top.set_xlabel("τ = λt")
    fig.suptitle(
        f"Matrix completion W = UVᵀ, λ = {LAM:g}: fit, then the drift to the minimum-nuclear-norm (rank-{RANK}) "
        "solution (Boursier et al. Fig. 2)"
    )
    fig.get_layout_engine().set(rect=(0, 0.06, 1, 0.94))
    fig.text(
        0.01,
        0.01,
        f"{size} run: {side}×{side}, rank {RANK}, {int(100 * cfg['fraction'])}% observed, r = {2 * side}, "
        f"entries of U, V ~ N(0, {ALPHA:g}), F = ½·{loss} of squared errors on observed entries, seed {SEED}; "
        f"{traj.solver}. Our choices (unknown in the paper): size, observed fraction, init scale, loss normalisation.",
        fontsize=8,
        color="0.3",
    )
    png = out / f"{NAME}.png"
    fig.savefig(png, dpi=120)
    plt.close(fig)

    ds = (
        ds.drop_vars([f"test_sv{i}" for i in range(n_sv)])
        .assign(
            norm_sq=("time", norm_sq),
            singular_values=(("time", "index"), svs),
            sigma_star=("index", sigma_star[:n_sv]),
        )
        .assign_coords(index=np.arange(1, n_sv + 1))
    )
    ds.attrs.update(
        experiment="Boursier et al. Fig. 2 (papers.md E1.1, A7): matrix completion W = U V^T, r = m + n",
        size=size,
        side=side,
        rank=RANK,
        fraction=cfg["fraction"],
        n_observed=len(obs),
        alpha=ALPHA,
        seed=SEED,
        loss=f"F = 0.5 * {loss} over observed entries of (W_ij - M*_ij)^2",
        two_nuclear_star=2 * nuclear_star,
        completion_relative_error=completion_error,
        completion_nuclear_norm=completion.nuclear_norm,
        t_fit=t_fit,
        t_test_half=t_half,
        t_test_drop=t_drop,
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
        smoke="10×10, loose tolerances (seconds after compilation)",
        full="20×20 (the paper's size), t1 = 1e5, tight tolerances",
    )
    parser.add_argument("--loss", choices=("sum", "mean"), default="sum", help="normalisation of F (default: sum)")
    args = parser.parse_args(argv)
    size = _figure.size(args)
    return _figure.run_in_new_folder(args.out, NAME, lambda out: run(out, size=size, loss=args.loss))


if __name__ == "__main__":
    sys.exit(main())
