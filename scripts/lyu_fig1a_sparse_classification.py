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

Sizes:
- `--full`, the paper's: d = 10⁵, n = 256, α = 128, λ = 10⁻³, 10⁴ test points (GPU scale;
  ~8 GB of test inputs; runnable, not tested; the max-ℓ1-margin LP alone, 256 × 2·10⁵, took
  14 min on a busy 2-core CPU, ~5 min of CPU time, and found the teacher's support).
- default (quick), papers.md A4's quick variant: d = 2000, n = 100, λ = 0.01, α ∈ {16, 64, 256},
  seeds 0, 1, 2, 2000 test points. A4 [REPRO]: t90 = 174, 312, 450, i.e. a shift of
  ln 4/λ = 138.6 per ×4 in α, and a kernel plateau at 0.57–0.63.
- `--smoke`: d = 200, n = 40, λ = 0.05, α ∈ {16, 64}, one seed, 500 test points.

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
(d = 5000, n = 256). `--solver` picks another. The quick size and
λ are papers.md's A4 quick variant; the seeds and the 3 values of α are ours (the paper's figure
has one α).

Time convention: t is ODE time of dθ/dt = −∇F_λ(θ), F_λ = F + (λ/2)‖θ‖² with F the mean
logistic loss; τ = λt. Lyu's code runs `torch.optim.SGD(lr=η, weight_decay=λ)`, which is this
flow in t = η·step (its weight decay is our λ exactly): the paper's 10⁶ steps at η = 0.01 are
t = 10⁴, and the predicted transition (1/λ) ln 128 ≈ 4850 is ~4.9×10⁵ steps.

Writes `lyu_fig1a_sparse_classification.png` and `.nc` (xarray, `engine="scipy"`) into `--out`.

    python scripts/lyu_fig1a_sparse_classification.py            # quick (~30 s of CPU; 1.5 min on a busy 2-core box)
    python scripts/lyu_fig1a_sparse_classification.py --smoke    # seconds after compilation
    python scripts/lyu_fig1a_sparse_classification.py --full     # the paper's size (GPU)
    python scripts/lyu_fig1a_sparse_classification.py --alphas 16,256 --seeds 0
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

NAME = "lyu_fig1a_sparse_classification"
SIZES = {
    "smoke": {"d": 200, "n": 40, "k": 3, "n_test": 500, "lam": 0.05, "alphas": (16.0, 64.0), "seeds": (0,)},
    "quick": {
        "d": 2000,
        "n": 100,
        "k": 3,
        "n_test": 2000,
        "lam": 0.01,
        "alphas": (16.0, 64.0, 256.0),
        "seeds": (0, 1, 2),
    },
    "full": {"d": 100_000, "n": 256, "k": 3, "n_test": 10_000, "lam": 1e-3, "alphas": (128.0,), "seeds": (0,)},
}
RTOL, ATOL = 1e-6, 1e-9
SOLVER = "tsit5"  # see the module docstring: the stiffness is an initial transient only
GENERALISED = 0.9  # t90: the first time from which test accuracy stays >= 0.9 (papers.md A4)
KERNEL_C = 0.5  # plateau window t in [1, T⁻_c], T⁻_c = (1 − c) ln α / λ (Lyu Thm 3.4)


def config(size: str = "quick", **overrides) -> dict:
    """The run's configuration: a size of `SIZES` with overrides (e.g. `seeds=(0,)`)."""
    cfg = {"size": size, **SIZES[size], "solver": SOLVER, **{k: v for k, v in overrides.items() if v is not None}}
    cfg["alphas"] = tuple(float(a) for a in cfg["alphas"])
    cfg["seeds"] = tuple(int(s) for s in cfg["seeds"])
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


def make_problem(cfg):
    from gflow import tasks

    def make(key, alpha):
        return tasks.sparse_classification(key, n=cfg["n"], d=cfg["d"], k=cfg["k"], alpha=alpha, n_test=cfg["n_test"])

    return make


def simulate_grid(cfg, *, progress: bool = False):
    """The gradient flows of every (seed, α): one `gflow.sweep` call. Returns (Dataset, solver name)."""
    return sweep_seeds_alphas(make_problem(cfg), cfg, save_times(cfg), progress=progress)


def sweep_seeds_alphas(make, cfg, saves, *, progress: bool = False):
    """`gflow.sweep` of `make(key, alpha)` over cfg's seeds and α at λ = cfg["lam"] to cfg["t1"] (ODE
    time), saved at `saves`, with cfg["solver"]. Returns (Dataset without the λ axis, solver name).
    Shared with lyu_fig1b_misgrokking.py."""
    import jax

    import gflow

    solver = cfg["solver"]
    if solver == "auto":  # sweep's own "auto" looks at the first α; the stiffest member has the largest
        probe = make(jax.random.PRNGKey(cfg["seeds"][0]), max(cfg["alphas"]))
        solver, _ = gflow.choose_solver(probe, cfg["lam"], cfg["t1"])
    ds = gflow.sweep(
        make,
        lam=[cfg["lam"]],
        seed=list(cfg["seeds"]),
        alpha=list(cfg["alphas"]),
        t1=cfg["t1"],
        time="fast",
        solver=solver,
        saveat=saves,
        rtol=RTOL,
        atol=ATOL,
        progress=progress,
    )
    return ds.isel(lam=0), solver


def references(cfg) -> dict:
    """Per seed: the kernel (max-ℓ2-margin NTK) and rich (max-ℓ1-margin) classifiers' accuracies."""
    import jax

    from gflow import analysis

    make = make_problem(cfg)
    out = {"kernel_test_accuracy": [], "kernel_train_accuracy": [], "l1_test_accuracy": [], "l1_support": []}
    for seed in cfg["seeds"]:
        problem = make(jax.random.PRNGKey(seed), max(cfg["alphas"]))  # the data do not depend on α
        kernel = analysis.kernel_predictor(problem).metrics
        x, y = np.asarray(problem.train["x"]), np.asarray(problem.train["y"])
        l1 = analysis.max_l1_margin_classifier(x, y)
        xt, yt = np.asarray(problem.test["x"]), np.asarray(problem.test["y"])
        out["kernel_test_accuracy"].append(kernel["test_accuracy"])
        out["kernel_train_accuracy"].append(kernel["train_accuracy"])
        out["l1_test_accuracy"].append(float(np.mean(np.sign(xt @ l1.w) == yt)))
        out["l1_support"].append(int(np.sum(np.abs(l1.w) > 1e-8 * np.abs(l1.w).max())))
    return {k: np.asarray(v) for k, v in out.items()}


def measure(ds, refs, cfg) -> dict:
    """t90 per (seed, α), its shift per ×4 in α, the kernel plateau and the final accuracies."""
    from gflow import analysis

    lam = cfg["lam"]
    t = ds["t"].values
    test = ds["test_accuracy"].values  # (seed, alpha, time)
    train = ds["train_accuracy"].values
    alphas = np.asarray(cfg["alphas"])
    n_s, n_a = test.shape[:2]
    t90 = np.array(
        [[analysis.crossing_time(t, test[s, a], GENERALISED, below=False) for a in range(n_a)] for s in range(n_s)]
    )
    t_fit = np.array(
        [[analysis.crossing_time(t, train[s, a], 1.0, below=False) for a in range(n_a)] for s in range(n_s)]
    )
    plateau = np.full((n_s, n_a), np.nan)
    plateau_dev = np.full((n_s, n_a), np.nan)
    for a, alpha in enumerate(alphas):
        window = (t >= 1.0) & (t <= (1 - KERNEL_C) * math.log(alpha) / lam)
        if window.any():
            plateau[:, a] = np.median(test[:, a, window], axis=1)
            plateau_dev[:, a] = np.max(np.abs(test[:, a, window] - refs["kernel_test_accuracy"][:, None]), axis=1)
    # The shift of t90 between consecutive α, in units of the predicted ln(α_{i+1}/α_i)/λ.
    predicted = np.log(alphas[1:] / alphas[:-1]) / lam
    shift = np.diff(t90, axis=1)
    return {
        "t90": t90,
        "lam_t90_minus_ln_alpha": lam * t90 - np.log(alphas)[None, :],
        "t_fit": t_fit,
        "shift": shift,
        "shift_ratio": shift / predicted[None, :] if predicted.size else shift,
        "plateau": plateau,
        "plateau_max_deviation": plateau_dev,
        "final_test_accuracy": test[:, :, -1],
        "final_train_accuracy": train[:, :, -1],
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
    colors = plt.cm.viridis(np.linspace(0.0, 0.85, alphas.size))
    fig = plt.figure(figsize=(13, 7.8), layout="constrained")
    grid = fig.add_gridspec(2, 2, width_ratios=(2.6, 1), height_ratios=(1.6, 1))
    ax_acc = fig.add_subplot(grid[0, 0])
    ax_norm = fig.add_subplot(grid[1, 0], sharex=ax_acc)
    ax_law = fig.add_subplot(grid[:, 1])

    def band(ax, values, color, **kw):
        vals = values[:, keep]
        line = ax.plot(tk, np.median(vals, axis=0), color=color, **kw)
        if vals.shape[0] > 1:
            ax.fill_between(tk, vals.min(axis=0), vals.max(axis=0), color=color, alpha=0.18, lw=0)
        return line

    for i, (alpha, color) in enumerate(zip(alphas, colors)):
        band(ax_acc, ds["test_accuracy"].values[:, i], color, lw=2, label=f"test, α = {alpha:g}")
        band(ax_acc, ds["train_accuracy"].values[:, i], color, lw=1, ls="--", label=f"train, α = {alpha:g}")
        band(ax_norm, ds["norm"].values[:, i], color, lw=2, label=f"‖θ(t)‖, α = {alpha:g}")
        ax_norm.plot(tk, alpha * np.exp(-lam * tk), color=color, lw=1, ls=":")
        for ax in (ax_acc, ax_norm):
            ax.axvline(math.log(alpha) / lam, color=color, lw=1.2, ls=":")
        t90 = np.nanmedian(meas["t90"][:, i])
        if math.isfinite(t90):
            ax_acc.plot([t90], [GENERALISED], marker="v", ms=9, color=color, ls="none")
    kernel = float(np.mean(refs["kernel_test_accuracy"]))
    l1 = float(np.mean(refs["l1_test_accuracy"]))
    ax_acc.axhline(kernel, color="k", lw=1.2, ls="-.", label=f"kernel predictor (max-ℓ2-margin NTK SVM): {kernel:.3f}")
    ax_acc.axhline(l1, color="tab:red", lw=1, ls=(0, (2, 4)), zorder=1, label=f"max-ℓ1-margin classifier: {l1:.3f}")
    ax_acc.plot([], [], color="0.4", ls=":", label="predicted transition t = (1/λ) ln α")
    ax_acc.plot([], [], color="0.4", marker="v", ls="none", label=f"measured t90 (test acc. stays ≥ {GENERALISED:g})")
    ax_acc.set_ylabel("accuracy")
    ax_acc.set_ylim(0.4, 1.03)
    ax_acc.set_xscale("log")
    ax_acc.grid(True, alpha=0.3)
    ax_acc.legend(fontsize=8, loc="center left", ncol=1)
    top = ax_acc.secondary_xaxis("top", functions=(lambda x: x * lam, lambda x: x / lam))
    top.set_xlabel("τ = λt (slow time)")
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
    fig.text(
        0.005,
        0.002,
        f"{cfg['size']} run: d = {cfg['d']}, n = {cfg['n']}, k = {cfg['k']}, {cfg['n_test']} test points, "
        f"λ = {lam:g}, α ∈ {{{', '.join(f'{a:g}' for a in alphas)}}}, seeds {list(cfg['seeds'])} "
        f"(median, band = range); gradient flow ({solver}, rtol {RTOL:g}), logistic loss, ‖θ(0)‖ = α",
        fontsize=8,
        color="0.3",
    )
    fig.get_layout_engine().set(h_pad=0.12)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def netcdf_ready(ds):
    """The sweep's Dataset without its solver statistics, in types NetCDF3 can hold. Shared with
    lyu_fig1b_misgrokking.py."""
    out = ds.drop_vars([v for v in ds.data_vars if v.startswith("stats_")] + ["ok"])
    return out.assign(
        ok=ds["ok"].astype("int8"),  # NetCDF3 has no booleans
        num_steps=ds["stats_num_steps"].astype("int32"),
        result=ds["result"].astype("int32"),
    )


def to_dataset(ds, refs, meas, cfg, solver):
    out = netcdf_ready(ds).assign(
        kernel_test_accuracy=("seed", refs["kernel_test_accuracy"]),
        kernel_train_accuracy=("seed", refs["kernel_train_accuracy"]),
        l1_test_accuracy=("seed", refs["l1_test_accuracy"]),
        l1_support=("seed", refs["l1_support"].astype("int32")),
        t90=(("seed", "alpha"), meas["t90"]),
        plateau=(("seed", "alpha"), meas["plateau"]),
        plateau_max_deviation=(("seed", "alpha"), meas["plateau_max_deviation"]),
        predicted_transition=("alpha", np.log(np.asarray(cfg["alphas"])) / cfg["lam"]),
    )
    out["seed"] = out["seed"].astype("int32")
    out.attrs = {
        "experiment": "Lyu et al. ICLR 2024 Fig. 1a (papers.md E3.3, A4): diagonal net u^2 - v^2, sparse +-1 "
        "classification, logistic loss, u = v = alpha/sqrt(2d)",
        "size": cfg["size"],
        "config": json.dumps({k: v for k, v in cfg.items()}, default=list),
        "solver": solver,
        "rtol": RTOL,
        "atol": ATOL,
        "lam": cfg["lam"],
        "time_variable": "t (ODE time; paper GD steps = t/eta); tau = lam*t",
        "convention": "F_lam = mean logistic loss + (lam/2)*||theta||^2, dtheta/dt = -grad F_lam",
        "t90_definition": f"first save time from which test accuracy stays >= {GENERALISED}",
        "plateau_definition": f"median test accuracy over t in [1, (1 - {KERNEL_C}) ln(alpha)/lam]",
        **_figure.provenance(),
    }
    return out


def run(out: pathlib.Path, cfg: dict, *, echo=print) -> dict:
    import jax

    jax.config.update("jax_enable_x64", True)  # before any array is made

    lam = cfg["lam"]
    echo(
        f"Lyu Fig. 1a ({cfg['size']}): d = {cfg['d']}, n = {cfg['n']}, λ = {lam:g}, α ∈ {list(cfg['alphas'])}, "
        f"seeds {list(cfg['seeds'])}, t1 = {cfg['t1']:.4g}"
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
            f"t90 = {np.round(meas['t90'][:, i], 1).tolist()}  "
            f"λ·t90 − ln α = {np.round(meas['lam_t90_minus_ln_alpha'][:, i], 3).tolist()}  "
            f"plateau = {np.round(meas['plateau'][:, i], 4).tolist()}  "
            f"final test = {meas['final_test_accuracy'][:, i].tolist()}"
        )
    if meas["shift"].size:
        echo(
            f"  t90 shift per step in α: {np.round(meas['shift'], 1).tolist()} "
            f"= {np.round(meas['shift_ratio'], 4).tolist()} × ln(step)/λ (prediction 1)"
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
        full="the paper's size: d = 1e5, n = 256, α = 128, λ = 1e-3 (GPU)",
    )
    parser.add_argument("--alphas", help="comma-separated initial norms α (overrides the size's)")
    parser.add_argument("--seeds", help="comma-separated seeds (overrides the size's)")
    parser.add_argument("--solver", choices=gflow.SOLVER_NAMES, help=f"gflow solver, or 'auto' (default {SOLVER})")
    args = parser.parse_args(argv)
    cfg = config(_figure.size(args), alphas=_floats(args.alphas), seeds=_ints(args.seeds), solver=args.solver)
    return _figure.run_in_new_folder(args.out, NAME, lambda out: run(out, cfg))


if __name__ == "__main__":
    sys.exit(main())
