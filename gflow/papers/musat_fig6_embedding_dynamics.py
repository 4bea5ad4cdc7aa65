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

Sizes (`FIGURE.sizes`): smoke p = 23, d_h = 256, 2 seeds, τ ≤ 2.5 (seconds); quick p = 37,
d_h = 512, 2 seeds, τ ≤ 3 (about 8 ms per Euler step on a quiet CPU core, a minute or two);
full p = 37, d_h = 512, 5 seeds, τ ≤ 5 (the paper's run).

Dataset: over `seed` × `tau` (accuracies, norms, Fourier measures along the run, the initial and
final embeddings) plus per-frequency Fourier measures over `seed` × `stage` × `k`.
"""

from __future__ import annotations

import json

import numpy as np
import xarray as xr

from . import FigureExperiment
from ._common import caption, require_float64, require_in

FIGURE = FigureExperiment.from_toml(__name__)


def check(params) -> None:
    """Refuse parameter combinations the runs cannot use (a `ConfigError` naming the field)."""
    from ..experiments import ConfigError

    if params["seeds"] < 1:
        raise ConfigError(f"figure.seeds must be at least 1, got {params['seeds']}")
    require_in(params, "dtau", 0, "tau1", ends="(]")
    require_in(params, "eta", 0, "dtau", ends="(]", what=" (the Euler step)")
    require_in(params, "train_fraction", 0, 1)


def seed_problem(params, seed: int):
    """Musat's E2.5 data and network for one seed (split and E from the seed)."""
    from .. import tasks

    return tasks.modular_arithmetic(
        seed,
        p=params["p"],
        pairs="unordered",
        train_fraction=params["train_fraction"],
        loss="mse",
        model="embedding",
        width=params["d_h"],
    )


def fourier_table(embedding) -> dict:
    """Per-frequency ‖Re F_k‖, ‖Im F_k‖, |cos(Re F_k, Im F_k)|, cos∠(|Re F_k|, |Im F_k|) and summaries."""
    from .. import analysis

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


def measure(params, *, progress: bool = False, echo=print) -> xr.Dataset:
    """The isolated first-layer flow for every seed, with Fourier measures at the start and end."""
    from .. import analysis

    require_float64(FIGURE.name)
    check(params)
    p, d_h, n_seeds, tau1, dtau, eta = (params[k] for k in ("p", "d_h", "seeds", "tau1", "dtau", "eta"))
    ts = np.round(np.arange(0.0, tau1 + dtau / 2, dtau), 10)
    echo(
        f"  E2.5: p = {p}, d_h = {d_h}, f_s = {params['train_fraction']}, Euler η = {eta:g} to τ = {tau1:g} "
        f"({int(round(tau1 / eta))} steps), {n_seeds} seeds"
    )
    runs, tables, n_train, num_steps = [], [], [], []
    for seed in range(n_seeds):
        problem = seed_problem(params, seed)
        ds = analysis.isolated_first_layer_flow(
            problem.model, problem.train, problem.test, tau1=tau1, saveat=ts, solver="euler", dt=eta
        )
        if ds.attrs["result"] != "successful":
            raise RuntimeError(f"seed {seed}: {ds.attrs['result']}")
        e0 = np.asarray(problem.model.embed)
        runs.append(ds.assign(embed_init=(("token", "hidden"), e0)))
        tables.append((fourier_table(e0), fourier_table(ds["embed_final"].values)))
        n_train.append(int(problem.train["x"].shape[0]))
        num_steps.append(int(ds.attrs["num_steps"]))
        echo(f"  seed {seed}: {num_steps[-1]} Euler steps, final test acc {ds['test_accuracy'].values[-1]:.3f}")

    ds = xr.concat(runs, dim="seed")
    ds = ds.assign_coords(seed=np.arange(n_seeds), step=("tau", np.round(ts / eta).astype(int)))
    ds["n_train"] = ("seed", np.asarray(n_train))
    ds["num_steps"] = ("seed", np.asarray(num_steps))
    k = np.arange(1, (p - 1) // 2 + 1)
    for name in ("re_norm", "im_norm", "abs_cos", "within"):
        ds[f"fourier_{name}"] = (("seed", "stage", "k"), np.array([[t[0][name], t[1][name]] for t in tables]))
    for name in ("across", "norm_cv", "mean_cos"):
        ds[f"fourier_{name}_summary"] = (("seed", "stage"), np.array([[t[0][name], t[1][name]] for t in tables]))
    ds = ds.assign_coords(k=k, stage=["initial", "final"])

    mean_test = ds["test_accuracy"].mean("seed").values
    ds.attrs.update(
        params=json.dumps(params),
        setup=f"Musat E2.5 (papers.md A10): p = {p}, d_h = {d_h}, unordered pairs, "
        f"f_s = {params['train_fraction']}, E ~ N(0, std p^-1/2), isolated first-layer dynamics Eq. (20) "
        "with W = H^+ Y",
        eta=eta,
        tau_convention="tau = 2*lam_M*t_M (Musat) = lam*t (gflow); Musat step = tau/eta",
        tau_test_half=crossing(ts, mean_test, 0.5),
        tau_test_99=crossing(ts, mean_test, 0.99),
    )
    return ds


def summary(ds: xr.Dataset) -> list[tuple[str, str]]:
    """Per seed: the split, the steps, the accuracy crossings and the norms; then the mean test
    accuracy at the report times and the Fourier measures at the start and end."""
    params = json.loads(ds.attrs["params"])
    ts = ds["tau"].values
    rows = []
    for i in range(ds.sizes["seed"]):
        s = ds.isel(seed=i)
        test = s["test_accuracy"].values
        embed, readout = s["embed_norm"].values, s["readout_norm"].values
        rows.append(
            (
                f"seed {int(s['seed'])}",
                f"n_train = {int(s['n_train'])}, {int(s['num_steps'])} steps; "
                f"min train acc {s['train_accuracy'].values.min():.3f}; "
                f"test acc ≥ 0.5 at τ = {crossing(ts, test, 0.5):.3g}, ≥ 0.99 at τ = {crossing(ts, test, 0.99):.3g}; "
                f"‖E‖ {embed[0]:.1f} → {embed.max():.1f} (max) → {embed[-1]:.1f}, "
                f"‖W‖ {readout[0]:.1f} → {readout[-1]:.1f}",
            )
        )
    mean_test = ds["test_accuracy"].mean("seed").values
    at = [f"τ = {t:g}: {mean_test[np.argmin(np.abs(ts - t))]:.3f}" for t in params["report_taus"] if t <= ts[-1]]
    rows.append(("mean test accuracy", ", ".join(at)))
    summ = {n: ds[f"fourier_{n}_summary"].values for n in ("mean_cos", "norm_cv", "across")}
    within = ds["fourier_within"].mean("k").values
    rows.append(
        (
            "Fourier (mean over seeds, initial → final)",
            f"mean |cos(Re F_k, Im F_k)| {summ['mean_cos'][:, 0].mean():.4f} → {summ['mean_cos'][:, 1].mean():.4f}; "
            f"norm CV {summ['norm_cv'][:, 0].mean():.4f} → {summ['norm_cv'][:, 1].mean():.4f}; "
            f"|·| similarity within k {within[:, 0].mean():.2f} → {within[:, 1].mean():.2f}, "
            f"across k {summ['across'][:, 0].mean():.2f} → {summ['across'][:, 1].mean():.2f}",
        )
    )
    return rows


def plot(ds: xr.Dataset):
    """Top: accuracies, norms and Fourier measures against τ (Musat's steps on top); bottom: seed
    0's Fourier features of E at the start and the end (`gflow.plot.plot_fourier`)."""
    import matplotlib.pyplot as plt

    from ..plot import plot_fourier

    params = json.loads(ds.attrs["params"])
    eta = params["eta"]

    tau = ds["tau"].values
    n_seeds = ds.sizes["seed"]
    p, d_h = ds.sizes["token"], ds.sizes["hidden"]
    fig = plt.figure(figsize=(15, 13), layout="constrained")
    fig.get_layout_engine().set(rect=(0, 0.015, 1, 0.985))  # room for the caption line
    top, bottom = fig.subfigures(2, 1, height_ratios=(1, 1.7))
    ax_acc, ax_norm, ax_four = top.subplots(1, 3)

    # Each seed thin and pale, their mean thick: (variable, colour, label of the mean) per panel.
    panels = (
        (
            ax_acc,
            (
                ("train_accuracy", "tab:blue", f"train accuracy (mean of {n_seeds})"),
                ("test_accuracy", "tab:red", f"test accuracy (mean of {n_seeds})"),
            ),
        ),
        (
            ax_norm,
            (("embed_norm", "tab:green", "‖E‖_F (first layer)"), ("readout_norm", "tab:orange", "‖W‖_F = ‖H⁺Y‖_F")),
        ),
        (
            ax_four,
            (
                ("fourier_cos", "tab:purple", "mean_k |cos(Re F_k, Im F_k)|"),
                ("fourier_norm_cv", "tab:brown", "CV of all ‖Re F_k‖, ‖Im F_k‖"),
            ),
        ),
    )
    for ax, curves in panels:
        for name, color, label in curves:
            vals = ds[name].values
            ax.plot(tau, vals.T, color=color, alpha=0.3, lw=0.8)
            ax.plot(tau, vals.mean(0), color=color, lw=2, label=label)
    ax_acc.axhline(1 / p, color="0.5", ls=":", lw=1, label=f"chance 1/p = {1 / p:.3f}")
    half = ds.attrs["tau_test_half"]
    if np.isfinite(half):
        ax_acc.axvline(half, color="tab:red", ls="--", lw=1, label=f"mean test acc ≥ 50% at τ = {half:.2f}")
    ax_acc.set_ylim(-0.02, 1.02)
    ax_acc.set_ylabel("accuracy (train loss exactly 0)")
    ax_acc.set_title("Fig. 6 top left: delayed generalisation")
    ax_norm.set_yscale("log")
    ax_norm.set_ylabel("Frobenius norm")
    ax_norm.set_title("norms (balanced at the end)")
    ax_four.set_yscale("log")
    ax_four.set_title("Fourier measures along the run")
    for ax in (ax_acc, ax_norm, ax_four):
        ax.set_xlabel("τ = 2λ_M t_M = λt (slow time)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        stepax = ax.secondary_xaxis("top", functions=(lambda t: t / eta, lambda s: s * eta))
        stepax.set_xlabel(f"Musat's steps (η = {eta:g})")
    plot_fourier(
        ds["embed_init"].values[0],
        ds["embed_final"].values[0],
        labels=("initial", f"final (τ = {tau[-1]:g})"),
        fig=bottom,
        title="Fig. 6: Fourier features of E, seed 0 — circles become round, orthogonal and use their own hidden units",
    )
    fig.suptitle(
        f"Musat E2.5: isolated first-layer dynamics dE/dτ = Xᵀ[(AYYᵀAH)⊙σ′(XE)] − E, W = H⁺Y\n"
        f"modular addition mod {p} (unordered pairs, {params['train_fraction']:.0%} train), d_h = {d_h}, "
        f"Euler η = {eta:g}, {n_seeds} seeds"
    )
    caption(
        fig,
        "Chosen unknowns: E ~ N(0, std p^-1/2); each seed draws its own split; Fourier bars for seed 0.",
        size=ds.attrs.get("size"),
    )
    return fig
