"""Lyu et al. (ICLR 2024) Fig. 1a: a diagonal net on sparse ±1 classification groks at t ≈ (1/λ) ln α.

The paper's figure: train accuracy reaches 100% at once while test accuracy sits on a low
plateau (the kernel regime, whose classifier is the max-ℓ2-margin SVM on the NTK features); after
about (1/λ) ln α of training the test accuracy jumps to 100% (the rich regime, whose classifier
is a KKT point of the max-ℓ1-margin problem: the 3-sparse teacher), while the parameter norm
decays as α e^{−λt}.

Setup (papers.md E3.3, acceptance A4): `gflow.tasks.sparse_classification`. x ~ unif{±1}^d,
teacher y = sign(⟨x_{1:3}, w⋆⟩) with w⋆_{1:3} ∈ {±1}³, diagonal net f(x) = ⟨u² − v², x⟩ at
u = v = (α/√(2d))·1 (‖θ(0)‖ = α, f(θ(0)) = 0), mean logistic loss, weight decay λ. One
`gflow.sweep` over α × seeds (one compiled call); the data depend on the seed only, so every α of
a seed sees the same train and test sets.

Sizes (`FIGURE.sizes`; fields d, n, k, n_test, lam, alphas, seeds, solver):
- full, the paper's: d = 10⁵, n = 256, α = 128, λ = 10⁻³, 10⁴ test points (GPU scale;
  ~8 GB of test inputs; runnable, not tested; the max-ℓ1-margin LP alone, 256 × 2·10⁵, took
  14 min on a busy 2-core CPU, ~5 min of CPU time, and found the teacher's support).
- quick (the default), papers.md A4's quick variant: d = 2000, n = 100, λ = 0.01, α ∈ {16, 64, 256},
  seeds 0, 1, 2, 2000 test points. A4 [REPRO]: t90 = 174, 312, 450, i.e. a shift of
  ln 4/λ = 138.6 per ×4 in α, and a kernel plateau at 0.57–0.63.
- smoke: d = 200, n = 40, λ = 0.05, α ∈ {16, 64}, one seed, 500 test points.

Measured at the quick size (seeds 0, 1, 2): t90 = (160, 298, 437), (176, 314, 454), (242, 380, 518)
for α = 16, 64, 256, i.e. shifts of 138–140 = (0.995–1.010)·ln 4/λ; λ·t90 − ln α = −1.17, −1.01,
−0.36 (constant in α to ±0.01 within each seed); kernel predictor test accuracy 0.575, 0.567,
0.580 and simulated plateaus 0.561–0.594; max-ℓ1-margin classifier = the teacher (support 3, test
accuracy 1); final test accuracy 1 (0.9995 for seed 2 at α ≥ 64).

References drawn on the figure (`gflow.analysis`): the kernel level is `kernel_predictor` (the
max-ℓ2-margin classifier on the NTK features at initialisation, K1, Cor. 3.6), the rich level is
`max_l1_margin_classifier` on the raw inputs (Cor. 3.7). Measured: t90, the first time from which
the test accuracy stays ≥ 0.9 (`crossing_time`), its shift per ×4 in α, the plateau (median test
accuracy for t ∈ [1, T⁻_{1/2}], T⁻_c = (1 − c) ln α/λ, where the kernel theory holds).

Horizon and saves: t1 = (ln α_max + 3)/λ; saves log-spaced from 1e-4 (the fit takes t ~ 1e-2)
plus a linear grid of step 0.02/λ across every transition, t ∈ [½ ln α_min/λ, (ln α_max + 1)/λ],
so t90 (a save time) is resolved to 0.02/λ ≈ 1.4% of the ln 4/λ shift.

Details the paper does not give, and our choices (papers.md §4.4, §10): the paper's GD step
η is not stated (code default 0.01); we integrate the gradient flow itself, with Tsit5 (rtol
1e-6, atol 1e-9; the logistic loss is smooth, no kinks). Tsit5 is also what `solver="auto"` picks for logistic and
cross-entropy losses (`gflow.choose_solver`): the sharpness at θ(0) (≈ 950 at α = 256, d = 2000;
stiffness ratio ≈ 8×10⁵) would call for the stiff ros34pw2, but it lasts only for the initial
fit: the logistic loss's curvature is ℓ″ = σ(m)σ(−m) ≈ ℓ at margins m ≫ 1, and the loss falls
below 1e-3 by t ≈ 1 and stays small (≤ 0.02 through the transition). Measured on the quick grid
(seed 0): Tsit5 takes 86–90 steps per run and ros34pw2 322–334, with identical t90 and
accuracies on the save grid, and Tsit5 costs 11 s of CPU against 17 s (compilation included);
at λ = 10⁻³, α = 128, t1 = 7850 it is 114 vs 322 steps (d = 2000, n = 100) and 135 vs 319
(d = 5000, n = 256). `--set figure.solver=NAME` picks another (or "auto"). The quick size and
λ are papers.md's A4 quick variant; the seeds and the 3 values of α are ours (the paper's figure
has one α).

Time convention: t is ODE time of dθ/dt = −∇F_λ(θ), F_λ = F + (λ/2)‖θ‖² with F the mean
logistic loss; τ = λt. Lyu's code runs `torch.optim.SGD(lr=η, weight_decay=λ)`, which is this
flow in t = η·step (its weight decay is our λ exactly): the paper's 10⁶ steps at η = 0.01 are
t = 10⁴, and the predicted transition (1/λ) ln 128 ≈ 4850 is ~4.9×10⁵ steps.

The sweep, the reference classifiers, the plateau and the dataset's plumbing are shared with
`lyu_fig1b_misgrokking` (`gflow.papers._lyu_diagonal`).
"""

from __future__ import annotations

import math

import numpy as np
import xarray as xr

from . import FigureExperiment, _lyu_diagonal as diag
from ._common import add_tau_axis, require_in

FIGURE = FigureExperiment.from_toml(__name__)

GENERALISED = 0.9  # t90: the first time from which test accuracy stays >= 0.9 (papers.md A4)
REFERENCES = ("kernel_test_accuracy", "kernel_train_accuracy", "l1_test_accuracy", "l1_support")


def check(params) -> None:
    """Refuse parameter combinations the runs cannot use (a `ConfigError` naming the field)."""
    diag.check_sweep(params, "transition")
    require_in(params, "k", 1, "d", ends="[]")


def config(params) -> dict:
    """The run's configuration: the figure's parameters with the horizon t1 and the save grid's
    linear window (see the module docstring)."""
    cfg = diag.sweep_config(params)
    lam, a_min, a_max = cfg["lam"], min(cfg["alphas"]), max(cfg["alphas"])
    cfg["t1"] = (math.log(a_max) + 3.0) / lam
    # Saves: log-spaced from 1e-4 (the fit takes t ~ 1e-2) plus a linear grid of step 0.02/λ across
    # every transition, so t90 (a save time) is resolved to 0.02/λ ≈ 1.4% of the ln 4/λ shift.
    cfg["window"] = (0.5 * math.log(a_min) / lam, (math.log(a_max) + 1.0) / lam)
    cfg["linear_step"] = 0.02 / lam
    return cfg


def save_times(cfg) -> np.ndarray:
    lo, hi = cfg["window"]
    linear = np.arange(math.floor(lo), hi, cfg["linear_step"])
    return np.unique(np.concatenate([[0.0], np.geomspace(1e-4, cfg["t1"], 120), linear, [cfg["t1"]]]))


def measurements(ds, refs, cfg) -> dict:
    """t90 per (seed, α), its shift per ×4 in α, the kernel plateau and the final accuracies."""
    from .. import analysis

    lam, alphas, t, test, train = diag.curves(ds, cfg)
    n_s, n_a = test.shape[:2]
    t90 = np.array(
        [[analysis.crossing_time(t, test[s, a], GENERALISED, below=False) for a in range(n_a)] for s in range(n_s)]
    )
    t_fit = np.array(
        [[analysis.crossing_time(t, train[s, a], 1.0, below=False) for a in range(n_a)] for s in range(n_s)]
    )
    # The shift of t90 between consecutive α, in units of the predicted ln(α_{i+1}/α_i)/λ.
    predicted = np.log(alphas[1:] / alphas[:-1]) / lam
    shift = np.diff(t90, axis=1)
    return {
        "t90": t90,
        "lam_t90_minus_ln_alpha": lam * t90 - np.log(alphas)[None, :],
        "t_fit": t_fit,
        "shift": shift,
        "shift_ratio": shift / predicted[None, :] if predicted.size else shift,
        **diag.kernel_plateau(t, test, refs["kernel_test_accuracy"], alphas, lam),
        "final_test_accuracy": test[:, :, -1],
        "final_train_accuracy": train[:, :, -1],
        "min_train_accuracy_after_fit": diag.min_train_accuracy_after_fit(t, train),
    }


# The runs (the sparse classification task swept over (seed, α), the reference classifiers) and
# `measure`: see `_lyu_diagonal.Runs`. The figure's dataset keeps t90 beside the kernel plateau.
RUNS = diag.Runs(FIGURE, "sparse_classification", ("n", "d", "k", "n_test"))
simulate_grid, references, measure = RUNS.simulate_grid, RUNS.references, RUNS.measure
KEPT = {"t90": f"first save time from which test accuracy stays >= {GENERALISED}"}


# The summary's row per α (`_lyu_diagonal.alpha_row`): one entry per seed, rounded to these digits.
ROW = (
    ("t90 = {}", ("t90", 1)),
    ("λ·t90 − ln α = {}", ("lam_t90_minus_ln_alpha", 3)),
    ("plateau = {}", ("plateau", 4)),
    ("final test = {}", ("final_test_accuracy", None)),
)


def summary(ds: xr.Dataset) -> list[tuple[str, str]]:
    """The key numbers as (quantity, value) rows: the reference classifiers, the solver, per α the
    t90, λ·t90 − ln α, the plateau and the final test accuracy (`ROW`), then the t90 shift."""
    return RUNS.summary(ds, more=_shift_rows)


def _shift_rows(meas) -> list[tuple[str, str]]:
    if not meas["shift"].size:
        return []
    shift = f"{diag.rounded(meas['shift'], 1)} = {diag.rounded(meas['shift_ratio'], 4)}"
    return [("t90 shift per step in α (in units of ln(step)/λ; prediction 1)", shift)]


def plot(ds: xr.Dataset):
    """Accuracies (median over seeds, band = range) with the kernel and max-ℓ1-margin levels, the
    predicted transitions (1/λ) ln α and the measured t90 (log t, τ on top); the norm against
    α e^{−λt}; λ·t90 against ln α."""
    import matplotlib.pyplot as plt

    cfg, refs, meas = RUNS.results(ds)
    later = diag.after_start(ds)
    lam, alphas, tk, test, train = diag.curves(later, cfg)
    colors = plt.cm.viridis(np.linspace(0.0, 0.85, alphas.size))
    fig = plt.figure(figsize=(13, 7.8), layout="constrained")
    grid = fig.add_gridspec(2, 2, width_ratios=(2.6, 1), height_ratios=(1.6, 1))
    ax_acc = fig.add_subplot(grid[0, 0])
    ax_norm = fig.add_subplot(grid[1, 0], sharex=ax_acc)
    ax_law = fig.add_subplot(grid[:, 1])

    def band(ax, values, color, **kw):
        line = ax.plot(tk, np.median(values, axis=0), color=color, **kw)
        if values.shape[0] > 1:
            ax.fill_between(tk, values.min(axis=0), values.max(axis=0), color=color, alpha=0.18, lw=0)
        return line

    for i, (alpha, color) in enumerate(zip(alphas, colors, strict=True)):
        band(ax_acc, test[:, i], color, lw=2, label=f"test, α = {alpha:g}")
        band(ax_acc, train[:, i], color, lw=1, ls="--", label=f"train, α = {alpha:g}")
        band(ax_norm, later["norm"].values[:, i], color, lw=2, label=f"‖θ(t)‖, α = {alpha:g}")
        ax_norm.plot(tk, alpha * np.exp(-lam * tk), color=color, lw=1, ls=":")
        for ax in (ax_acc, ax_norm):
            ax.axvline(math.log(alpha) / lam, color=color, lw=1.2, ls=":")
        t90 = np.nanmedian(meas["t90"][:, i])
        if math.isfinite(t90):
            ax_acc.plot([t90], [GENERALISED], marker="v", ms=9, color=color, ls="none")
    diag.draw_reference_levels(ax_acc, refs, color="tab:red", lw=1, ls=(0, (2, 4)), zorder=1)
    ax_acc.plot([], [], color="0.4", ls=":", label="predicted transition t = (1/λ) ln α")
    ax_acc.plot([], [], color="0.4", marker="v", ls="none", label=f"measured t90 (test acc. stays ≥ {GENERALISED:g})")
    ax_acc.set_ylabel("accuracy")
    ax_acc.set_ylim(0.4, 1.03)
    ax_acc.set_xscale("log")
    ax_acc.grid(True, alpha=0.3)
    ax_acc.legend(fontsize=8, loc="center left", ncol=1)
    add_tau_axis(ax_acc, lam)
    ax_acc.set_title("Train accuracy is 1 at once; test accuracy leaves the kernel plateau near t = (1/λ) ln α")
    ax_norm.plot([], [], color="0.4", ls=":", label=r"$\alpha\, e^{-\lambda t}$ (kernel phase)")
    ax_norm.set_xscale("log")
    ax_norm.set_yscale("log")
    ax_norm.set_ylim(bottom=0.3 * float(np.nanmin(ds["norm"].values)))  # the α e^{−λt} guide falls far below
    ax_norm.set_xlabel("t (ODE time, log scale; paper's GD steps = t/η)")
    ax_norm.set_ylabel("parameter norm ‖θ‖")
    ax_norm.grid(True, alpha=0.3)
    ax_norm.legend(fontsize=8, loc="lower left")
    plt.setp(ax_acc.get_xticklabels(), visible=False)

    la = np.log(alphas)
    for s, seed in enumerate(cfg["seeds"]):
        ax_law.plot(la, lam * meas["t90"][s], "o-", color=plt.cm.tab10(s % 10), alpha=0.8, label=f"λ·t90, seed {seed}")
    offset = np.nanmean(meas["lam_t90_minus_ln_alpha"])
    xs = np.linspace(la.min() - 0.3, la.max() + 0.3, 2)
    ax_law.plot(xs, xs, color="0.4", ls=":", label="ln α (prediction, slope 1)")
    if math.isfinite(offset):
        ax_law.plot(xs, xs + offset, color="k", lw=1, label=f"ln α {offset:+.2f} (slope 1, mean offset)")
    ax_law.set_xlabel("ln α")
    ax_law.set_ylabel("λ · t90 (slow time of the jump)")
    ax_law.grid(True, alpha=0.3)
    ax_law.legend(fontsize=8, loc="upper left")
    if meas["shift_ratio"].size:
        ratio = np.nanmean(meas["shift_ratio"])
        ax_law.set_title(f"t90 shift per step in α, in units of ln(step)/λ: {ratio:.3f} (prediction 1)", fontsize=9)
    fig.suptitle("Lyu et al. Fig. 1a: diagonal net on sparse ±1 classification groks at t ≈ (1/λ) ln α")
    task = f"d = {cfg['d']}, n = {cfg['n']}, k = {cfg['k']}"
    diag.finish_figure(fig, ds, cfg, task, seeds_note=" (median, band = range)")
    return fig
