"""Lyu et al. (ICLR 2024) Fig. 1b: misgrokking, test accuracy falls from ≈ 100% to ≈ 50% at t ≈ (1/λ) ln α.

The paper's figure: the same diagonal net as Fig. 1a, on data where the kernel (max-ℓ2-margin)
classifier generalises and the rich (max-ℓ1-margin) one does not. Train accuracy reaches 100% at
once and stays there; test accuracy is ≈ 100% in the kernel phase, then falls to ≈ 50% after
about (1/λ) ln α, when the rich regime takes over.

Setup (papers.md E3.4, acceptance A5): `gflow.tasks.misgrokking`. A uniformly random unit
direction w⋆; z ~ 𝒩(0, I_d), y = sign⟨z, w⋆⟩, x = z + (γ/2)·y·w⋆ (a margin γ along a dense
direction). Diagonal net f(x) = ⟨u² − v², x⟩ at u = v = (α/√(2d))·1 (‖θ(0)‖ = α, f(θ(0)) = 0),
mean logistic loss, weight decay λ. One `gflow.sweep` over seeds (and α if several are given).

Sizes (`FIGURE.sizes`; fields d, n, gamma, n_test, lam, alphas, seeds, solver):
- full: the paper's d = 10⁵, n = 32, γ = 25, 10⁴ test points, with α = 128 and λ = 10⁻³
  (α and λ are not stated for this figure: papers.md's guess, Fig. 1a's values). GPU scale.
- quick (the default): d = 2000, **n = 16, γ = 10**, α = 128, λ = 0.01, seeds 0, 1, 2, 2000 test points.
- smoke: d = 500, n = 8, γ = 6, α = 32, λ = 0.05, one seed, 500 test points.

Why the quick size is not papers.md A5's (d = 2000 with the paper's n = 32, γ = 25): misgrokking
needs the max-ℓ1-margin classifier to be poor, and at d = 2000 it is not. A sparse classifier
on k ≈ n noise coordinates sees the signal (γ/2)·w⋆_j ~ γ/(2√d) per coordinate, so its
signal-to-noise ratio grows like √n·γ/(2√d), while the max-ℓ2-margin classifier's is about γ/2
times larger. With n = 32, γ = 25 the paper needs d ~ 10⁵ for the first to be small; at d = 2000
the measured max-ℓ1-margin test accuracy is 0.99–1.0 (seeds 0, 1), so there is nothing to
misgrok (the gradient flow's test accuracy stays ≥ 0.99; measured at α = 128, λ = 0.01). Keeping
d = 2000, n = 16 and γ = 10 (both ratios within a factor 2.5 of the paper's) gives a kernel
test accuracy ≈ 1.0 and a max-ℓ1-margin one of 0.63–0.68 (seeds 0–2), the paper's picture.
`--set figure.n=32 --set figure.gamma=25` runs the paper's n, γ at d = 2000 (no misgrokking).
Measured at the quick size (seeds 0, 1, 2):
kernel plateau 0.998–0.9985 (= the kernel predictor's), train accuracy 1 throughout, the drop at
t = 552, 550, 604 against (1/λ) ln α = 485, final test accuracy 0.631, 0.711, 0.629 (max-ℓ1-margin
classifier: 0.643, 0.683, 0.631), cos(β, w⋆) from 0.47 to 0.06–0.10.

References (`gflow.analysis`): the kernel level is `kernel_predictor` (max-ℓ2-margin classifier
on the NTK features at initialisation), the rich level `max_l1_margin_classifier` on the inputs.
Measured: the kernel plateau (median test accuracy for t ∈ [1, T⁻_{1/2}], T⁻_c = (1 − c) ln α/λ),
the drop time (first time from which test accuracy stays below the midpoint of the two levels,
`crossing_time`) against the prediction (1/λ) ln α, the final accuracies and cos(β, w⋆).

Other choices (papers.md §4.4, §10): gradient flow instead of GD with an unstated step, with
Tsit5 (rtol 1e-6, atol 1e-9), as `solver="auto"` picks for logistic losses: the stiffness seen
at θ(0) lasts only until the logistic loss (and with it the curvature) has fallen, so Tsit5
takes 111 steps on the quick run against ros34pw2's 425 with the same curves (see
`gflow.papers.lyu_fig1a_sparse_classification`; `--set figure.solver=NAME` picks another); the
horizon t1 = (ln α + 10)/λ, by which the rich phase has settled (to an ℓ1-regularised logistic
fit: at λ > 0 the flow's limit is a stationary point of F + (λ/2)‖θ‖², whose direction tends to
the max-ℓ1-margin one as λ → 0). Saves: log-spaced from 1e-4 plus a linear grid of step 0.02/λ
across the drop, t ∈ [½ ln α_min/λ, (ln α_max + 3)/λ] (resolves t_drop).

Time convention: t is ODE time of dθ/dt = −∇F_λ(θ), F_λ = F + (λ/2)‖θ‖², F the mean logistic
loss; τ = λt. Lyu's `torch.optim.SGD(lr=η, weight_decay=λ)` is this flow in t = η·step.
"""

from __future__ import annotations

import math

import numpy as np
import xarray as xr

from . import FigureExperiment, _lyu_diagonal as diag
from ._common import add_tau_axis

FIGURE = FigureExperiment.from_toml(__name__)

SETTLE = 10.0  # t1 = (ln α_max + SETTLE)/λ
REFERENCES = ("kernel_test_accuracy", "l1_test_accuracy", "l1_support", "l1_teacher_cosine")


def check(params) -> None:
    """Refuse parameter combinations the runs cannot use (a `ConfigError` naming the field)."""
    diag.check_sweep(params, "drop")


def config(params) -> dict:
    """The run's configuration: the figure's parameters with the horizon t1."""
    cfg = diag.sweep_config(params)
    cfg["t1"] = (math.log(max(cfg["alphas"])) + SETTLE) / cfg["lam"]
    return cfg


def save_times(cfg) -> np.ndarray:
    # Log-spaced saves plus a linear grid of step 0.02/λ across the drop (resolves t_drop).
    lam, a_min, a_max = cfg["lam"], min(cfg["alphas"]), max(cfg["alphas"])
    linear = np.arange(math.floor(0.5 * math.log(a_min) / lam), (math.log(a_max) + 3.0) / lam, 0.02 / lam)
    return np.unique(np.concatenate([[0.0], np.geomspace(1e-4, cfg["t1"], 160), linear, [cfg["t1"]]]))


def measurements(ds, refs, cfg) -> dict:
    """Kernel plateau, drop time, final accuracies, per (seed, α)."""
    from .. import analysis

    lam, alphas, t, test, train = diag.curves(ds, cfg)
    cosine = ds["test_teacher_cosine"].values
    n_s, n_a = test.shape[:2]
    kernel = refs["kernel_test_accuracy"]
    midpoint = 0.5 * (kernel + refs["l1_test_accuracy"])
    t_drop = np.full((n_s, n_a), np.nan)
    for a in range(n_a):
        for s in range(n_s):
            t_drop[s, a] = analysis.crossing_time(t, test[s, a], midpoint[s], below=True, after=1.0)
    return {
        **diag.kernel_plateau(t, test, kernel, alphas, lam, cosine=cosine),
        "drop_threshold": midpoint,
        "t_drop": t_drop,
        "lam_t_drop_minus_ln_alpha": lam * t_drop - np.log(alphas)[None, :],
        "final_test_accuracy": test[:, :, -1],
        "final_teacher_cosine": cosine[:, :, -1],
        "min_train_accuracy_after_fit": diag.min_train_accuracy_after_fit(t, train),
    }


# The runs (the misgrokking task swept over (seed, α), the reference classifiers, the latter's
# cosine with w⋆) and `measure`: see `_lyu_diagonal.Runs`. The dataset keeps the drop time and its
# threshold beside the kernel plateau.
RUNS = diag.Runs(FIGURE, "misgrokking", ("n", "d", "gamma", "n_test"))
simulate_grid, references, measure = RUNS.simulate_grid, RUNS.references, RUNS.measure
KEPT = {
    "t_drop": "first save time from which test accuracy stays below (kernel + l1 accuracy)/2",
    "drop_threshold": None,
}


# The summary (`_lyu_diagonal.Runs.summary`): the reference classifiers, the solver, and per α
# (`_lyu_diagonal.alpha_row`) the plateau, the drop time, the final test accuracy, the lowest train
# accuracy after t = 1 and cos(β, w⋆), one entry per seed, rounded to these digits.
ROW = (
    ("plateau = {}", ("plateau", 4)),
    ("drop at t = {} (λt − ln α = {})", ("t_drop", 1), ("lam_t_drop_minus_ln_alpha", 2)),
    ("final test = {}", ("final_test_accuracy", 4)),
    ("min train after t = 1: {}", ("min_train_accuracy_after_fit", None)),
    ("cos(β, w⋆): {} → {}", ("plateau_teacher_cosine", 3), ("final_teacher_cosine", 3)),
)
summary = RUNS.summary


def plot(ds: xr.Dataset):
    """Accuracies per seed with the kernel, max-ℓ1-margin and chance levels, the predicted
    transition and the measured drops (log t, τ on top); cos(β, w⋆); the norm against α e^{−λt}."""
    import matplotlib.pyplot as plt

    cfg, refs, meas = RUNS.results(ds)
    later = diag.after_start(ds)
    lam, alphas, tk, test, train = diag.curves(later, cfg)
    colors = ["tab:red"] if alphas.size == 1 else plt.cm.viridis(np.linspace(0.0, 0.85, alphas.size))
    fig = plt.figure(figsize=(11, 9), layout="constrained")
    ax_acc, ax_cos, ax_norm = fig.subplots(3, 1, sharex=True, height_ratios=(1.7, 0.9, 0.9))
    n_s = ds.sizes["seed"]
    for i, (alpha, color) in enumerate(zip(alphas, colors, strict=True)):
        suffix = "" if alphas.size == 1 else f", α = {alpha:g}"
        for s in range(n_s):
            first = s == 0
            ax_acc.plot(
                tk,
                test[s, i],
                color=color,
                lw=1.8,
                alpha=0.85,
                label=f"test accuracy{suffix}" if first else None,
            )
            ax_acc.plot(
                tk,
                train[s, i],
                color="tab:blue" if alphas.size == 1 else color,
                lw=1.2,
                ls="--",
                label=f"train accuracy{suffix}" if first else None,
            )
            ax_cos.plot(
                tk,
                later["test_teacher_cosine"].values[s, i],
                color=color,
                lw=1.5,
                label=f"cos(β, w⋆){suffix}" if first else None,
            )
            ax_norm.plot(
                tk, later["norm"].values[s, i], color=color, lw=1.8, label=f"‖θ(t)‖{suffix}" if first else None
            )
        ax_norm.plot(
            tk,
            alpha * np.exp(-lam * tk),
            color=color,
            lw=1,
            ls=":",
            label=r"$\alpha\, e^{-\lambda t}$ (kernel phase)" if i == 0 else None,
        )
        for ax in (ax_acc, ax_cos, ax_norm):
            ax.axvline(math.log(alpha) / lam, color="0.3", lw=1.2, ls=":")
        for s in range(n_s):
            td = meas["t_drop"][s, i]
            if math.isfinite(td):
                ax_acc.plot(
                    [td],
                    [meas["drop_threshold"][s]],
                    marker="v",
                    ms=8,
                    color=color,
                    ls="none",
                    label="measured drop (stays below the midpoint)" if s == 0 and i == 0 else None,
                )
    diag.draw_reference_levels(ax_acc, refs, color="tab:purple", lw=1.2, ls=(0, (6, 3)))
    ax_acc.axhline(0.5, color="0.6", lw=1, label="chance")
    ax_acc.plot([], [], color="0.3", ls=":", label="predicted transition t = (1/λ) ln α")
    ax_acc.set_ylabel("accuracy")
    ax_acc.set_ylim(0.4, 1.03)
    ax_acc.legend(fontsize=8, loc="lower left")
    ax_acc.set_title("Train accuracy stays 1; test accuracy falls from the kernel level toward chance after (1/λ) ln α")
    add_tau_axis(ax_acc, lam)
    ax_cos.axhline(
        float(np.mean(refs["l1_teacher_cosine"])),
        color="tab:purple",
        lw=1.2,
        ls=(0, (6, 3)),
        label="max-ℓ1-margin classifier",
    )
    ax_cos.set_ylabel("cos(β, w⋆)")
    ax_cos.legend(fontsize=8, loc="lower left")
    ax_norm.set_yscale("log")
    ax_norm.set_ylim(bottom=0.3 * float(np.nanmin(ds["norm"].values)))  # the α e^{−λt} guide falls far below
    ax_norm.set_ylabel("parameter norm ‖θ‖")
    ax_norm.set_xlabel("t (ODE time, log scale; paper's GD steps = t/η)")
    ax_norm.legend(fontsize=8, loc="lower left")
    for ax in (ax_acc, ax_cos, ax_norm):
        ax.set_xscale("log")
        ax.grid(True, alpha=0.3)
    fig.suptitle("Lyu et al. Fig. 1b: misgrokking of a diagonal net (kernel classifier generalises, rich one does not)")
    task = f"d = {cfg['d']}, n = {cfg['n']}, γ = {cfg['gamma']:g}"
    diag.finish_figure(fig, ds, cfg, task, alpha_note=" (α, λ not given by the paper)")
    return fig
