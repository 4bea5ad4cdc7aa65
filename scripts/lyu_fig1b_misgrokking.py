"""Lyu et al. (ICLR 2024) Fig. 1b: misgrokking, test accuracy falls from ≈ 100% to ≈ 50% at t ≈ (1/λ) ln α.

The paper's figure: the same diagonal net as Fig. 1a, on data where the kernel (max-ℓ2-margin)
classifier generalises and the rich (max-ℓ1-margin) one does not. Train accuracy reaches 100% at
once and stays there; test accuracy is ≈ 100% in the kernel phase, then falls to ≈ 50% after
about (1/λ) ln α, when the rich regime takes over.

Setup (papers.md E3.4, acceptance A5): `gflow.tasks.misgrokking`. A uniformly random unit
direction w⋆; z ~ 𝒩(0, I_d), y = sign⟨z, w⋆⟩, x = z + (γ/2)·y·w⋆ (a margin γ along a dense
direction). Diagonal net f(x) = ⟨u² − v², x⟩ at u = v = (α/√(2d))·1 (‖θ(0)‖ = α, f(θ(0)) = 0),
mean logistic loss, weight decay λ. One `gflow.sweep` over seeds (and α if several are given).

Sizes:
- `--full`: the paper's d = 10⁵, n = 32, γ = 25, 10⁴ test points, with α = 128 and λ = 10⁻³
  (α and λ are not stated for this figure: papers.md's guess, Fig. 1a's values). GPU scale.
- default (quick): d = 2000, **n = 16, γ = 10**, α = 128, λ = 0.01, seeds 0, 1, 2, 2000 test points.
- `--smoke`: d = 500, n = 8, γ = 6, α = 32, λ = 0.05, one seed, 500 test points.

Why the quick size is not papers.md A5's (d = 2000 with the paper's n = 32, γ = 25): misgrokking
needs the max-ℓ1-margin classifier to be poor, and at d = 2000 it is not. A sparse classifier
on k ≈ n noise coordinates sees the signal (γ/2)·w⋆_j ~ γ/(2√d) per coordinate, so its
signal-to-noise ratio grows like √n·γ/(2√d), while the max-ℓ2-margin classifier's is about γ/2
times larger. With n = 32, γ = 25 the paper needs d ~ 10⁵ for the first to be small; at d = 2000
the measured max-ℓ1-margin test accuracy is 0.99–1.0 (seeds 0, 1), so there is nothing to
misgrok (the gradient flow's test accuracy stays ≥ 0.99; measured at α = 128, λ = 0.01). Keeping
d = 2000, n = 16 and γ = 10 (both ratios within a factor 2.5 of the paper's) gives a kernel
test accuracy ≈ 1.0 and a max-ℓ1-margin one of 0.63–0.68 (seeds 0–2), the paper's picture.
`--n`, `--gamma`, `--d` override the size's values. Measured at the quick size (seeds 0, 1, 2):
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
lyu_fig1a_sparse_classification.py; `--solver` picks another); the horizon t1 = (ln α + 10)/λ, by
which the rich phase has settled (to an ℓ1-regularised logistic fit: at λ > 0 the flow's limit is a stationary point of
F + (λ/2)‖θ‖², whose direction tends to the max-ℓ1-margin one as λ → 0).

Time convention: t is ODE time of dθ/dt = −∇F_λ(θ), F_λ = F + (λ/2)‖θ‖², F the mean logistic
loss; τ = λt. Lyu's `torch.optim.SGD(lr=η, weight_decay=λ)` is this flow in t = η·step.

Writes `lyu_fig1b_misgrokking.png` and `.nc` (xarray, `engine="scipy"`) into `--out`.

    python scripts/lyu_fig1b_misgrokking.py             # quick (~20 s of CPU; 1 min on a busy 2-core box)
    python scripts/lyu_fig1b_misgrokking.py --smoke     # seconds after compilation
    python scripts/lyu_fig1b_misgrokking.py --full      # the paper's size (GPU)
    python scripts/lyu_fig1b_misgrokking.py --n 32 --gamma 25   # the paper's n, γ at d = 2000: no misgrokking
"""

from __future__ import annotations

import json
import math
import pathlib
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))  # scripts/ is not a package
import _figure  # noqa: E402

fig1a = _figure.load_script("lyu_fig1a_sparse_classification")  # the shared sweep and NetCDF helpers

NAME = "lyu_fig1b_misgrokking"
SIZES = {
    "smoke": {"d": 500, "n": 8, "gamma": 6.0, "n_test": 500, "lam": 0.05, "alphas": (32.0,), "seeds": (0,)},
    "quick": {"d": 2000, "n": 16, "gamma": 10.0, "n_test": 2000, "lam": 0.01, "alphas": (128.0,), "seeds": (0, 1, 2)},
    "full": {"d": 100_000, "n": 32, "gamma": 25.0, "n_test": 10_000, "lam": 1e-3, "alphas": (128.0,), "seeds": (0,)},
}
RTOL, ATOL = 1e-6, 1e-9
SOLVER = "tsit5"  # see the module docstring: the stiffness is an initial transient only
KERNEL_C = 0.5  # plateau window t in [1, T⁻_c], T⁻_c = (1 − c) ln α / λ (Lyu Thm 3.4)
SETTLE = 10.0  # t1 = (ln α_max + SETTLE)/λ


def config(size: str = "quick", **overrides) -> dict:
    """The run's configuration: a size of `SIZES` with overrides (e.g. `seeds=(0,)`)."""
    cfg = {"size": size, **SIZES[size], "solver": SOLVER, **{k: v for k, v in overrides.items() if v is not None}}
    cfg["alphas"] = tuple(float(a) for a in cfg["alphas"])
    cfg["seeds"] = tuple(int(s) for s in cfg["seeds"])
    cfg["t1"] = (math.log(max(cfg["alphas"])) + SETTLE) / cfg["lam"]
    return cfg


def save_times(cfg) -> np.ndarray:
    # Log-spaced saves plus a linear grid of step 0.02/λ across the drop (resolves t_drop).
    lam, a_min, a_max = cfg["lam"], min(cfg["alphas"]), max(cfg["alphas"])
    linear = np.arange(math.floor(0.5 * math.log(a_min) / lam), (math.log(a_max) + 3.0) / lam, 0.02 / lam)
    return np.unique(np.concatenate([[0.0], np.geomspace(1e-4, cfg["t1"], 160), linear, [cfg["t1"]]]))


def make_problem(cfg):
    from gflow import tasks

    def make(key, alpha):
        return tasks.misgrokking(key, n=cfg["n"], d=cfg["d"], gamma=cfg["gamma"], alpha=alpha, n_test=cfg["n_test"])

    return make


def simulate_grid(cfg, *, progress: bool = False):
    """The gradient flows of every (seed, α): one `gflow.sweep` call. Returns (Dataset, solver name)."""
    return fig1a.sweep_seeds_alphas(make_problem(cfg), cfg, save_times(cfg), progress=progress)


def references(cfg) -> dict:
    """Per seed: the kernel (max-ℓ2-margin NTK) and rich (max-ℓ1-margin) classifiers' accuracies."""
    import jax

    from gflow import analysis

    make = make_problem(cfg)
    out = {"kernel_test_accuracy": [], "l1_test_accuracy": [], "l1_support": [], "l1_teacher_cosine": []}
    for seed in cfg["seeds"]:
        problem = make(jax.random.PRNGKey(seed), max(cfg["alphas"]))  # the data do not depend on α
        out["kernel_test_accuracy"].append(analysis.kernel_predictor(problem).metrics["test_accuracy"])
        x, y = np.asarray(problem.train["x"]), np.asarray(problem.train["y"])
        l1 = analysis.max_l1_margin_classifier(x, y)
        xt, yt = np.asarray(problem.test["x"]), np.asarray(problem.test["y"])
        w_star = np.asarray(problem.test["w_star"])
        out["l1_test_accuracy"].append(float(np.mean(np.sign(xt @ l1.w) == yt)))
        out["l1_support"].append(int(np.sum(np.abs(l1.w) > 1e-8 * np.abs(l1.w).max())))
        out["l1_teacher_cosine"].append(float(l1.w @ w_star / np.linalg.norm(l1.w)))
    return {k: np.asarray(v) for k, v in out.items()}


def measure(ds, refs, cfg) -> dict:
    """Kernel plateau, drop time, final accuracies, per (seed, α)."""
    from gflow import analysis

    lam = cfg["lam"]
    t = ds["t"].values
    test = ds["test_accuracy"].values  # (seed, alpha, time)
    train = ds["train_accuracy"].values
    cosine = ds["test_teacher_cosine"].values
    alphas = np.asarray(cfg["alphas"])
    n_s, n_a = test.shape[:2]
    kernel = refs["kernel_test_accuracy"]
    midpoint = 0.5 * (kernel + refs["l1_test_accuracy"])
    plateau = np.full((n_s, n_a), np.nan)
    plateau_dev = np.full((n_s, n_a), np.nan)
    plateau_cos = np.full((n_s, n_a), np.nan)
    t_drop = np.full((n_s, n_a), np.nan)
    for a, alpha in enumerate(alphas):
        window = (t >= 1.0) & (t <= (1 - KERNEL_C) * math.log(alpha) / lam)
        if window.any():
            plateau[:, a] = np.median(test[:, a, window], axis=1)
            plateau_dev[:, a] = np.max(np.abs(test[:, a, window] - kernel[:, None]), axis=1)
            plateau_cos[:, a] = np.median(cosine[:, a, window], axis=1)
        for s in range(n_s):
            t_drop[s, a] = analysis.crossing_time(t, test[s, a], midpoint[s], below=True, after=1.0)
    return {
        "plateau": plateau,
        "plateau_max_deviation": plateau_dev,
        "plateau_teacher_cosine": plateau_cos,
        "drop_threshold": midpoint,
        "t_drop": t_drop,
        "lam_t_drop_minus_ln_alpha": lam * t_drop - np.log(alphas)[None, :],
        "final_test_accuracy": test[:, :, -1],
        "final_teacher_cosine": cosine[:, :, -1],
        "min_train_accuracy_after_fit": np.min(np.where(t[None, None, :] >= 1.0, train, 1.0), axis=2),
    }


def plot(ds, refs, meas, cfg, solver, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lam = cfg["lam"]
    alphas = np.asarray(cfg["alphas"])
    t = ds["t"].values
    keep = t > 0
    tk = t[keep]
    colors = ["tab:red"] if alphas.size == 1 else plt.cm.viridis(np.linspace(0.0, 0.85, alphas.size))
    fig = plt.figure(figsize=(11, 9), layout="constrained")
    ax_acc, ax_cos, ax_norm = fig.subplots(3, 1, sharex=True, height_ratios=(1.7, 0.9, 0.9))
    n_s = ds.sizes["seed"]
    for i, (alpha, color) in enumerate(zip(alphas, colors)):
        suffix = "" if alphas.size == 1 else f", α = {alpha:g}"
        for s in range(n_s):
            first = s == 0
            ax_acc.plot(
                tk,
                ds["test_accuracy"].values[s, i, keep],
                color=color,
                lw=1.8,
                alpha=0.85,
                label=f"test accuracy{suffix}" if first else None,
            )
            ax_acc.plot(
                tk,
                ds["train_accuracy"].values[s, i, keep],
                color="tab:blue" if alphas.size == 1 else color,
                lw=1.2,
                ls="--",
                label=f"train accuracy{suffix}" if first else None,
            )
            ax_cos.plot(
                tk,
                ds["test_teacher_cosine"].values[s, i, keep],
                color=color,
                lw=1.5,
                label=f"cos(β, w⋆){suffix}" if first else None,
            )
            ax_norm.plot(
                tk, ds["norm"].values[s, i, keep], color=color, lw=1.8, label=f"‖θ(t)‖{suffix}" if first else None
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
    kernel = float(np.mean(refs["kernel_test_accuracy"]))
    l1 = float(np.mean(refs["l1_test_accuracy"]))
    ax_acc.axhline(kernel, color="k", lw=1.2, ls="-.", label=f"kernel predictor (max-ℓ2-margin NTK SVM): {kernel:.3f}")
    ax_acc.axhline(l1, color="tab:purple", lw=1.2, ls=(0, (6, 3)), label=f"max-ℓ1-margin classifier: {l1:.3f}")
    ax_acc.axhline(0.5, color="0.6", lw=1, label="chance")
    ax_acc.plot([], [], color="0.3", ls=":", label="predicted transition t = (1/λ) ln α")
    ax_acc.set_ylabel("accuracy")
    ax_acc.set_ylim(0.4, 1.03)
    ax_acc.legend(fontsize=8, loc="lower left")
    ax_acc.set_title("Train accuracy stays 1; test accuracy falls from the kernel level toward chance after (1/λ) ln α")
    top = ax_acc.secondary_xaxis("top", functions=(lambda x: x * lam, lambda x: x / lam))
    top.set_xlabel("τ = λt (slow time)")
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
    fig.text(
        0.005,
        0.002,
        f"{cfg['size']} run: d = {cfg['d']}, n = {cfg['n']}, γ = {cfg['gamma']:g}, {cfg['n_test']} test points, "
        f"λ = {lam:g}, α ∈ {{{', '.join(f'{a:g}' for a in alphas)}}} (α, λ not given by the paper), seeds "
        f"{list(cfg['seeds'])}; gradient flow ({solver}, rtol {RTOL:g}), logistic loss, ‖θ(0)‖ = α",
        fontsize=8,
        color="0.3",
    )
    fig.get_layout_engine().set(h_pad=0.12)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def to_dataset(ds, refs, meas, cfg, solver):
    out = fig1a.netcdf_ready(ds).assign(
        kernel_test_accuracy=("seed", refs["kernel_test_accuracy"]),
        l1_test_accuracy=("seed", refs["l1_test_accuracy"]),
        l1_support=("seed", refs["l1_support"].astype("int32")),
        l1_teacher_cosine=("seed", refs["l1_teacher_cosine"]),
        plateau=(("seed", "alpha"), meas["plateau"]),
        plateau_max_deviation=(("seed", "alpha"), meas["plateau_max_deviation"]),
        t_drop=(("seed", "alpha"), meas["t_drop"]),
        drop_threshold=("seed", meas["drop_threshold"]),
        predicted_transition=("alpha", np.log(np.asarray(cfg["alphas"])) / cfg["lam"]),
    )
    out["seed"] = out["seed"].astype("int32")
    out.attrs = {
        "experiment": "Lyu et al. ICLR 2024 Fig. 1b (papers.md E3.4, A5): misgrokking, diagonal net u^2 - v^2, "
        "x = z + (gamma/2) y w*, logistic loss, u = v = alpha/sqrt(2d)",
        "size": cfg["size"],
        "config": json.dumps(cfg, default=list),
        "solver": solver,
        "rtol": RTOL,
        "atol": ATOL,
        "lam": cfg["lam"],
        "time_variable": "t (ODE time; paper GD steps = t/eta); tau = lam*t",
        "convention": "F_lam = mean logistic loss + (lam/2)*||theta||^2, dtheta/dt = -grad F_lam",
        "t_drop_definition": "first save time from which test accuracy stays below (kernel + l1 accuracy)/2",
        "plateau_definition": f"median test accuracy over t in [1, (1 - {KERNEL_C}) ln(alpha)/lam]",
        **_figure.provenance(),
    }
    return out


def run(out: pathlib.Path, cfg: dict, *, echo=print) -> dict:
    import jax

    jax.config.update("jax_enable_x64", True)  # before any array is made

    lam = cfg["lam"]
    echo(
        f"Lyu Fig. 1b ({cfg['size']}): d = {cfg['d']}, n = {cfg['n']}, γ = {cfg['gamma']:g}, λ = {lam:g}, "
        f"α ∈ {list(cfg['alphas'])}, seeds {list(cfg['seeds'])}, t1 = {cfg['t1']:.4g}"
    )
    start = time.perf_counter()
    refs = references(cfg)
    echo(
        "  kernel predictor (max-ℓ2-margin NTK SVM) test accuracy: "
        f"{np.round(refs['kernel_test_accuracy'], 4).tolist()}; "
        f"max-ℓ1-margin classifier: {np.round(refs['l1_test_accuracy'], 4).tolist()} "
        f"(support {refs['l1_support'].tolist()})  [{time.perf_counter() - start:.1f} s]"
    )
    start = time.perf_counter()
    ds, solver = simulate_grid(cfg)
    echo(
        f"  sweep: {ds.sizes['seed'] * ds.sizes['alpha']} runs, {solver}, "
        f"steps {ds['stats_num_steps'].values.ravel().tolist()}, "
        f"all ok: {bool(ds['ok'].all())}  [{time.perf_counter() - start:.1f} s]"
    )
    meas = measure(ds, refs, cfg)
    for i, alpha in enumerate(cfg["alphas"]):
        echo(
            f"  α = {alpha:<6g} ln α/λ = {math.log(alpha) / lam:7.1f}  "
            f"plateau = {np.round(meas['plateau'][:, i], 4).tolist()}  "
            f"drop at t = {np.round(meas['t_drop'][:, i], 1).tolist()} (λt − ln α = "
            f"{np.round(meas['lam_t_drop_minus_ln_alpha'][:, i], 2).tolist()})  "
            f"final test = {np.round(meas['final_test_accuracy'][:, i], 4).tolist()}  "
            f"min train after t = 1: {meas['min_train_accuracy_after_fit'][:, i].tolist()}  "
            f"cos(β, w⋆): {np.round(meas['plateau_teacher_cosine'][:, i], 3).tolist()} → "
            f"{np.round(meas['final_teacher_cosine'][:, i], 3).tolist()}"
        )
    png = out / f"{NAME}.png"
    plot(ds, refs, meas, cfg, solver, png)
    data = out / f"{NAME}.nc"
    result = to_dataset(ds, refs, meas, cfg, solver)
    result.to_netcdf(data, engine="scipy")
    echo(f"  wrote {png} and {data}")
    return {"dataset": result, "measures": meas, "references": refs, "png": png, "data": data}


def _floats(text):
    return tuple(float(v) for v in text.split(",")) if text else None


def _ints(text):
    return tuple(int(v) for v in text.split(",")) if text else None


def main(argv=None) -> int:
    import gflow

    parser = _figure.parser(
        __doc__,
        NAME,
        smoke="tiny size (seconds after compilation)",
        full="the paper's size: d = 1e5, n = 32, γ = 25 (GPU)",
    )
    parser.add_argument("--alphas", help="comma-separated initial norms α (overrides the size's)")
    parser.add_argument("--seeds", help="comma-separated seeds (overrides the size's)")
    parser.add_argument("--d", type=int, help="input dimension (overrides the size's)")
    parser.add_argument("--n", type=int, help="number of training points (overrides the size's)")
    parser.add_argument("--gamma", type=float, help="margin γ along w⋆ (overrides the size's)")
    parser.add_argument("--solver", choices=gflow.SOLVER_NAMES, help=f"gflow solver, or 'auto' (default {SOLVER})")
    args = parser.parse_args(argv)
    cfg = config(
        _figure.size(args),
        alphas=_floats(args.alphas),
        seeds=_ints(args.seeds),
        solver=args.solver,
        d=args.d,
        n=args.n,
        gamma=args.gamma,
    )
    return _figure.run_in_new_folder(args.out, NAME, lambda out: run(out, cfg))


if __name__ == "__main__":
    sys.exit(main())
