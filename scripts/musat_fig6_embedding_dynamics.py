"""Musat's isolated first-layer dynamics groks modular addition at zero train loss and grows
Fourier circles (Musat, *The Geometry of Grokking*, §6–7, Fig. 6; papers.md E2.5, A10).

Setup (papers.md E2.5): modular addition mod p = 37 on all unordered pairs a ≤ b (703), a random
70% (492) train, the rest (211) test; X_i = e_a + e_b, Y_i = e_{(a+b) mod p}; Ŷ = σ(XE)W with
E ∈ ℝ^{p×512}, σ = ReLU. Only E evolves, by Eq. (20) (sign corrected, papers.md §3.2):

    dE/dτ = Xᵀ[(AYYᵀAH) ⊙ σ′(XE)] − E,   H = σ(XE), A = (HHᵀ)⁻¹,

while the second layer is always its zero-train-loss value W = Hᵀ(HHᵀ)⁻¹Y, so the train
accuracy is 1 throughout. Integrated by `gflow.analysis.isolated_first_layer_flow` with explicit
Euler at η = 10⁻³, Musat's own update E ← E + ηΔE (its docstring: at p = 37 the delay depends
on η, so η is kept as in the paper rather than an adaptive solver). Five seeds (`--full`).
Plotted: train/test accuracy against τ (Musat's steps = τ/η on the top axis), ‖E‖_F and ‖W‖_F,
the mean |cos(Re F_k, Im F_k)| and the coefficient of variation of the Fourier norms along the
run, and, for seed 0, Musat's three Fourier measurements at initialisation and at the end as bar
charts (`gflow.plot.plot_fourier`).

Details the paper does not give, and what we chose (papers.md §10):
- E ~ 𝒩(0, p^{−1/2}) is read as standard deviation p^{−1/2} (`EmbeddingNet.init`, "gaussian";
  papers.md §10.4: the variance reading does not give the reported timing).
- Each seed draws both the initialisation and the 70/30 split (the paper does not say whether
  its five runs share a split).
- The Fourier bar charts are for one run (seed 0), as in the paper; the .nc has every seed.

Time convention. With Musat's 𝓛_λ = Σ‖f − y‖² + λ_M‖θ‖², Eq. (20) is the gradient flow of the
reduced cost in τ = 2λ_M t_M; in gflow's convention (`tasks.modular_arithmetic(loss="mse")`,
F = ½·mean, λ = λ_M/(n·p), t = 2np·t_M) it is the same τ = λt. Musat's step s is at τ = ηs:
his 5000 steps are τ = 5, "chance for 500 steps, perfect after ≈ 2000" is τ ≈ 0.5 → 2.

Sizes: `--smoke` p = 23, d_h = 256, 2 seeds, τ ≤ 2.5 (seconds); default (quick) p = 37,
d_h = 512, 2 seeds, τ ≤ 3 (about 8 ms per Euler step on a quiet CPU core, a minute or two);
`--full` p = 37, d_h = 512, 5 seeds, τ ≤ 5 (the paper's run).

Writes `musat_fig6_embedding_dynamics.png` and `musat_fig6_embedding_dynamics.nc` (xarray over
`seed` × `tau` plus per-frequency Fourier measures over `seed` × `stage` × `k`) into `--out`.

    python scripts/musat_fig6_embedding_dynamics.py            # quick: p = 37, 2 seeds, τ ≤ 3
    python scripts/musat_fig6_embedding_dynamics.py --smoke    # p = 23, d_h = 256, 2 seeds, τ ≤ 2.5
    python scripts/musat_fig6_embedding_dynamics.py --full     # p = 37, 5 seeds, τ ≤ 5
"""

from __future__ import annotations

import pathlib
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))  # scripts/ is not a package
import _figure  # noqa: E402

NAME = "musat_fig6_embedding_dynamics"


TRAIN_FRACTION = 0.7
ETA = 1e-3  # Musat's step size = Euler step in τ
SIZES = {
    # name: (p, d_h, seeds, τ1, save every Δτ)
    "smoke": (23, 256, 2, 2.5, 0.125),
    "quick": (37, 512, 2, 3.0, 0.05),
    "full": (37, 512, 5, 5.0, 0.05),
}
REPORT_TAUS = (0.5, 1.0, 1.25, 1.5, 1.75, 2.0, 2.25, 2.5, 3.0, 5.0)


def build_problem(seed: int, p: int, d_h: int):
    """Musat's E2.5 data and network for one seed (split and E from the seed)."""
    import gflow

    return gflow.tasks.modular_arithmetic(
        seed, p=p, pairs="unordered", train_fraction=TRAIN_FRACTION, loss="mse", model="embedding", width=d_h
    )


def fourier_table(embedding) -> dict:
    """Per-frequency ‖Re F_k‖, ‖Im F_k‖, |cos(Re F_k, Im F_k)|, cos∠(|Re F_k|, |Im F_k|) and summaries."""
    from gflow import analysis

    c = analysis.fourier_coefficients(embedding)
    m = analysis.fourier_measures(embedding)
    return {
        "re_norm": np.linalg.norm(c.real, axis=1),
        "im_norm": np.linalg.norm(c.imag, axis=1),
        "abs_cos": m.cos,
        "within": m.within,
        "across": m.across,
        "norm_cv": m.norm_cv,
        "mean_cos": m.mean_cos,
    }


def crossing(tau, values, level) -> float:
    """First τ at which `values` ≥ level (NaN if never)."""
    hit = np.nonzero(values >= level)[0]
    return float(tau[hit[0]]) if hit.size else float("nan")


def run(out: pathlib.Path, *, size: str, echo=print) -> dict:
    import jax

    jax.config.update("jax_enable_x64", True)

    import xarray as xr

    from gflow import analysis

    p, d_h, n_seeds, tau1, dtau = SIZES[size]
    ts = np.round(np.arange(0.0, tau1 + dtau / 2, dtau), 10)
    echo(
        f"E2.5: p = {p}, d_h = {d_h}, f_s = {TRAIN_FRACTION}, Euler η = {ETA:g} to τ = {tau1:g} "
        f"({int(round(tau1 / ETA))} steps), {n_seeds} seeds [{size}]"
    )
    runs, tables = [], []
    for seed in range(n_seeds):
        t0 = time.perf_counter()
        problem = build_problem(seed, p, d_h)
        ds = analysis.isolated_first_layer_flow(
            problem.model, problem.train, problem.test, tau1=tau1, saveat=ts, solver="euler", dt=ETA
        )
        if ds.attrs["result"] != "successful":
            raise RuntimeError(f"seed {seed}: {ds.attrs['result']}")
        e0 = np.asarray(problem.model.embed)
        runs.append(ds.assign(embed_init=(("token", "hidden"), e0)))
        tables.append((fourier_table(e0), fourier_table(ds["embed_final"].values)))
        test = ds["test_accuracy"].values
        echo(
            f"  seed {seed}: n_train = {problem.train['x'].shape[0]}, {ds.attrs['num_steps']} steps; "
            f"min train acc {ds['train_accuracy'].values.min():.3f}; "
            f"test acc ≥ 0.5 at τ = {crossing(ts, test, 0.5):.3g}, "
            f"≥ 0.99 at τ = {crossing(ts, test, 0.99):.3g}; ‖E‖ {ds['embed_norm'].values[0]:.1f} → "
            f"{ds['embed_norm'].values.max():.1f} (max) → {ds['embed_norm'].values[-1]:.1f}, ‖W‖ "
            f"{ds['readout_norm'].values[0]:.1f} → {ds['readout_norm'].values[-1]:.1f}  "
            f"[{time.perf_counter() - t0:.1f} s]"
        )

    ds = xr.concat(runs, dim="seed")
    ds = ds.assign_coords(seed=np.arange(n_seeds), step=("tau", np.round(ts / ETA).astype(int)))
    k = np.arange(1, (p - 1) // 2 + 1)
    for name in ("re_norm", "im_norm", "abs_cos", "within"):
        ds[f"fourier_{name}"] = (("seed", "stage", "k"), np.array([[t[0][name], t[1][name]] for t in tables]))
    for name in ("across", "norm_cv", "mean_cos"):
        ds[f"fourier_{name}_summary"] = (("seed", "stage"), np.array([[t[0][name], t[1][name]] for t in tables]))
    ds = ds.assign_coords(k=k, stage=["initial", "final"])

    mean_test = ds["test_accuracy"].mean("seed").values
    at = [f"τ = {t:g}: {mean_test[np.argmin(np.abs(ts - t))]:.3f}" for t in REPORT_TAUS if t <= tau1]
    echo("  mean test accuracy: " + ", ".join(at))
    summ = {n: ds[f"fourier_{n}_summary"].values for n in ("mean_cos", "norm_cv", "across")}
    within = ds["fourier_within"].mean("k").values
    echo(
        "  Fourier (mean over seeds, initial → final): mean |cos(Re F_k, Im F_k)| "
        f"{summ['mean_cos'][:, 0].mean():.4f} → {summ['mean_cos'][:, 1].mean():.4f}; "
        f"norm CV {summ['norm_cv'][:, 0].mean():.4f} → {summ['norm_cv'][:, 1].mean():.4f}; "
        f"|·| similarity within k {within[:, 0].mean():.2f} → {within[:, 1].mean():.2f}, across k "
        f"{summ['across'][:, 0].mean():.2f} → {summ['across'][:, 1].mean():.2f}"
    )
    ds.attrs.update(
        experiment=f"Musat E2.5 (papers.md A10): p = {p}, d_h = {d_h}, unordered pairs, f_s = {TRAIN_FRACTION}, "
        "E ~ N(0, std p^-1/2), isolated first-layer dynamics Eq. (20) with W = H^+ Y",
        size=size,
        eta=ETA,
        tau_convention="tau = 2*lam_M*t_M (Musat) = lam*t (gflow); Musat step = tau/eta",
        tau_test_half=crossing(ts, mean_test, 0.5),
        tau_test_99=crossing(ts, mean_test, 0.99),
        **_figure.provenance(),
    )
    fig = plot(ds, size=size)
    png = out / "musat_fig6_embedding_dynamics.png"
    fig.savefig(png, dpi=110)
    path = out / "musat_fig6_embedding_dynamics.nc"
    ds.to_netcdf(path, engine="scipy")
    echo(f"  wrote {png} and {path}")
    return {"dataset": ds, "png": png, "data": path}


def plot(ds, *, size: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from gflow.plot import plot_fourier

    tau = ds["tau"].values
    n_seeds = ds.sizes["seed"]
    p, d_h = ds.sizes["token"], ds.sizes["hidden"]
    fig = plt.figure(figsize=(15, 13), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=(1, 1.7))
    ax_acc, ax_norm, ax_four = top.subplots(1, 3)
    for name, color, label in (("train_accuracy", "tab:blue", "train"), ("test_accuracy", "tab:red", "test")):
        vals = ds[name].values
        ax_acc.plot(tau, vals.T, color=color, alpha=0.3, lw=0.8)
        ax_acc.plot(tau, vals.mean(0), color=color, lw=2, label=f"{label} accuracy (mean of {n_seeds})")
    ax_acc.axhline(1 / p, color="0.5", ls=":", lw=1, label=f"chance 1/p = {1 / p:.3f}")
    half = ds.attrs["tau_test_half"]
    if np.isfinite(half):
        ax_acc.axvline(half, color="tab:red", ls="--", lw=1, label=f"mean test acc ≥ 50% at τ = {half:.2f}")
    ax_acc.set_ylim(-0.02, 1.02)
    ax_acc.set_ylabel("accuracy (train loss exactly 0)")
    ax_acc.set_title("Fig. 6 top left: delayed generalisation")
    for name, color, label in (
        ("embed_norm", "tab:green", "‖E‖_F (first layer)"),
        ("readout_norm", "tab:orange", "‖W‖_F = ‖H⁺Y‖_F"),
    ):
        vals = ds[name].values
        ax_norm.plot(tau, vals.T, color=color, alpha=0.3, lw=0.8)
        ax_norm.plot(tau, vals.mean(0), color=color, lw=2, label=label)
    ax_norm.set_yscale("log")
    ax_norm.set_ylabel("Frobenius norm")
    ax_norm.set_title("norms (balanced at the end)")
    for name, color, label in (
        ("fourier_cos", "tab:purple", "mean_k |cos(Re F_k, Im F_k)|"),
        ("fourier_norm_cv", "tab:brown", "CV of all ‖Re F_k‖, ‖Im F_k‖"),
    ):
        vals = ds[name].values
        ax_four.plot(tau, vals.T, color=color, alpha=0.3, lw=0.8)
        ax_four.plot(tau, vals.mean(0), color=color, lw=2, label=label)
    ax_four.set_yscale("log")
    ax_four.set_title("Fourier measures along the run")
    for ax in (ax_acc, ax_norm, ax_four):
        ax.set_xlabel("τ = 2λ_M t_M = λt (slow time)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        stepax = ax.secondary_xaxis("top", functions=(lambda t: t / ETA, lambda s: s * ETA))
        stepax.set_xlabel(f"Musat's steps (η = {ETA:g})")
    plot_fourier(
        ds["embed_init"].values[0],
        ds["embed_final"].values[0],
        labels=("initial", f"final (τ = {tau[-1]:g})"),
        fig=bottom,
        title="Fig. 6: Fourier features of E, seed 0 — circles become round, orthogonal and use their own hidden units",
    )
    fig.suptitle(
        f"Musat E2.5: isolated first-layer dynamics dE/dτ = Xᵀ[(AYYᵀAH)⊙σ′(XE)] − E, W = H⁺Y\n"
        f"modular addition mod {p} (unordered pairs, 70% train), d_h = {d_h}, Euler η = {ETA:g}, {n_seeds} seeds"
    )
    fig.supxlabel(
        f"size: {size}. Chosen unknowns: E ~ N(0, std p^-1/2); each seed draws its own split; Fourier bars for seed 0.",
        fontsize=8,
        color="0.3",
    )
    return fig


def main(argv=None) -> int:
    parser = _figure.parser(
        __doc__,
        "musat_fig6_embedding_dynamics",
        smoke="p = 23, d_h = 256, 2 seeds, τ ≤ 2.5 (seconds)",
        full="the paper's run: p = 37, 5 seeds, τ ≤ 5",
    )
    args = parser.parse_args(argv)
    size = _figure.size(args)
    return _figure.run_in_new_folder(args.out, NAME, lambda out: run(out, size=size))


if __name__ == "__main__":
    sys.exit(main())
