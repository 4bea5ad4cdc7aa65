"""Lyu et al. (ICLR 2024) Fig. 2a–c: grokking of modular addition by a two-layer ReLU MLP (papers.md E3.1).

What the paper's figure shows (full-batch GD, η = 0.002, cross-entropy, p = 97, 40% of the
9409 pairs for training, width 1024):
- (a) He initialisation, λ = 1e-4: train accuracy reaches 100% by ~10⁶ steps while the test
  accuracy stays near chance; about one decade later (~10⁷ steps) it jumps to 100%.
- (b) init scale He ×1, ×10, ×100 with the last layer zero (W2 = 0, so f(θ0) = 0): the larger
  α, the later the jump (Lyu's transition at t ≈ (1/λ)(ln α + O(1))); the norm decays first.
- (c) λ ∈ {1, 3, 10, 30}×1e-4: larger λ, earlier jump, as 1/λ; above a threshold the training
  accuracy itself collapses (too much regularisation).

Setup (E3.1 and Lyu's code `train_mod_add.py`): f(a, b) = W2 ReLU(W1 [e_a; e_b] + b1)
(`gflow.models.ModularMLP`, bias in the first layer only), He/Kaiming normal init times α
(`gflow.tasks.modular_arithmetic`), mean cross-entropy, PyTorch `SGD(lr=η, weight_decay=λ)`,
i.e. gradient descent on F + (λ/2)‖θ‖² (`gflow.gd`, the same convention: λ is the paper's
weight decay and t = η·step its continuous time; τ = λt).

Method: `gflow.gd` — full-batch gradient descent, the paper's own optimiser — not an ODE
solver. The ReLU network's gradient field jumps whenever a pre-activation changes sign, and
adaptive ODE solvers crawl at those kinks: Tsit5 at rtol 1e-4 on the quick problem (α = 10,
λ = 3e-3) spent 30 000 steps to reach t = 1900 (a mean step of 0.06, against the 0.4 its
stability allows), while GD at η = 0.15 needs 12 700 steps for the same t. A GELU surrogate
would integrate smoothly (`benchmarks/problems.py`), but it is not homogeneous, and Lyu's
mechanism — the ln α delay of (b) — is a statement about homogeneous networks. Each panel's
grid (α or λ) is one vmapped, compiled chain of `gd` calls; the members share the data split
and the initialisation direction.

Step sizes. GD follows gradient flow (t = Σ_k η_k) while η·sharpness < 2. The sharpness at
initialisation grows as α² (W2 = 0): 799 at α = 100 on the quick problem, against ≈ 0.2 for
He ×1. The paper's fixed η = 0.002 handles that at its size; at the quick size it would take
5·10⁶ steps. So the quick run of (b) raises η as the sharpness falls (measured along the
α = 100 run: 169 at t = 20, 34 at t = 200, 19 at t = 1000, 4.9 at t = 2000, 0.14 at the end):
η = 0.001 to t = 20, 0.01 to 200, 0.05 to 2000, 0.15 after; (a, c) use η = 0.15 throughout.
Each schedule entry is one `gd` call, which also spaces the saves roughly logarithmically in t.
Check: panel (a) at η = 0.075 instead of 0.15 fits at the same t = 426, reaches test accuracy
0.5 at t = 2921 instead of 3069 and 0.9 at the same t = 6188: GD at η = 0.15 is the flow to ~5%.

Sizes:
- `--full`: the paper's p = 97, h = 1024, 40% train, η = 0.002 throughout, λ = 1e-4 for
  (a, b), the paper's α and λ grids; 2.5·10⁷ (a, c) and 3.5·10⁷ (b) steps of 2.3 GFLOP per
  member: GPU hours.
- default (quick): p = 23, h = 128, **90%** of the 529 pairs for training (476; 53 test
  pairs, so test accuracy moves in steps of 1/53), α ∈ {1, 10, 100} as in the paper, but
  **λ ten times larger** (a, b: 1e-3; c: {1, 3, 10, 30}×1e-3) so that the transition comes by
  t ≈ 10⁴. 9 minutes of CPU time (10 minutes wall on a 2-core machine at load 2–4).
- `--smoke`: p = 11, h = 32, t ≤ 400 (seconds after compilation).

Choices the paper does not fix for the quick size (papers.md §10): p, width, train fraction
(40% and 70% at p = 23 memorise but generalise only partly, 50–75% test accuracy by t = 10⁴
in our runs — too few pairs per residue), λ (×10), the step-size schedule (above). The data
split and the init come from `jax.random.PRNGKey(0)`. Transition times are read where the test
accuracy reaches 0.5 for good (the 53-pair test set makes 0.9 a noisy threshold).

Measured at the quick size: (a) train accuracy ≥ 0.99 from t = 426, test accuracy ≥ 0.5 from
t = 3069 (τ = 3.1) and ≥ 0.9 from t = 6188, final 0.98. (b) test ≥ 0.5 at t = 2395, 3975, 6083
for α = 1, 10, 100: delays of 1580 and 2107 per factor 10 in α, against Lyu's ln 10/λ = 2303;
the norms start at 16, 160, 1594 and all end at 33. (c) λ = 3e-3 reaches 0.5 at t = 1584 (final
0.89); ln(t_half − t_fit) against ln λ has slope −0.88 between 1e-3 and 3e-3; λ = 1e-2 and 3e-2
never fit the training set (Lyu: "training accuracy eventually collapses").

Writes `lyu_fig2_modular_addition.png` and `.nc` (xarray, `engine="scipy"`) into `--out`:

    python scripts/lyu_fig2_modular_addition.py            # quick (about 10 minutes of CPU)
    python scripts/lyu_fig2_modular_addition.py --full     # the paper's size (GPU)
    python scripts/lyu_fig2_modular_addition.py --smoke    # seconds
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))  # scripts/ is not a package
import _figure  # noqa: E402

NAME = "lyu_fig2_modular_addition"
KEY = 0
GROK_ACCURACY = 0.9  # "generalised": test accuracy at or above this, for good
HALF_ACCURACY = 0.5  # the middle of the jump (robust to the 1/53 granularity of the quick test set)
FIT_ACCURACY = 0.99


@dataclasses.dataclass(frozen=True)
class Size:
    """A run size. `schedule_*` are GD step-size schedules ((t_end, η), …): η until t_end, one
    `gd` call (with `saves` saves) per entry; c is for panels (a, c), b for panel (b)."""

    name: str
    p: int
    width: int
    fraction: float
    schedule_c: tuple
    schedule_b: tuple
    saves: int
    lam_a: float
    alphas_b: tuple
    lams_c: tuple


SIZES = {
    "smoke": Size(
        "smoke",
        p=11,
        width=32,
        fraction=0.9,
        schedule_c=((4.0, 0.2), (40.0, 0.2), (400.0, 0.2)),
        schedule_b=((4.0, 0.02), (40.0, 0.2), (400.0, 0.2)),
        saves=20,
        lam_a=1e-2,
        alphas_b=(1.0, 3.0),
        lams_c=(1e-2, 3e-2),
    ),
    # η·sharpness < 2 along the α = 100 run: sharpness 799 at t = 0, 169 at t = 20, 34 at t = 200,
    # 19 at t = 1000, 4.9 at t = 2000 (measured).
    "quick": Size(
        "quick",
        p=23,
        width=128,
        fraction=0.9,
        schedule_c=((99.0, 0.15), (990.0, 0.15), (9900.0, 0.15)),
        schedule_b=((20.0, 0.001), (200.0, 0.01), (2000.0, 0.05), (9900.0, 0.15)),
        saves=60,
        lam_a=1e-3,
        alphas_b=(1.0, 10.0, 100.0),
        lams_c=(1e-3, 3e-3, 1e-2, 3e-2),
    ),
    # the paper: η = 0.002 throughout, 2.5·10⁷ steps (a, c) and 3.5·10⁷ steps (b)
    "full": Size(
        "full",
        p=97,
        width=1024,
        fraction=0.4,
        schedule_c=((500.0, 0.002), (5000.0, 0.002), (50_000.0, 0.002)),
        schedule_b=((700.0, 0.002), (7000.0, 0.002), (70_000.0, 0.002)),
        saves=100,
        lam_a=1e-4,
        alphas_b=(1.0, 10.0, 100.0),
        lams_c=(1e-4, 3e-4, 1e-3, 3e-3),
    ),
}


def describe(schedule) -> str:
    """'η = 0.001 to t = 20, 0.01 to t = 200, …' (or 'η = 0.15 to t = 9900' for a constant step)."""
    if len({lr for _, lr in schedule}) == 1:
        return f"η = {schedule[0][1]:g} to t = {schedule[-1][0]:g}"
    return "η = " + ", ".join(f"{lr:g} to t = {t:g}" for t, lr in schedule)


def segments(schedule, saves: int) -> list[tuple[float, int]]:
    """(η, steps) of the consecutive `gd` calls of a schedule ((t_end, η), …).

    Each call makes a multiple of `saves` steps, as close as possible to (t_end − t_start)/η.
    """
    out, t = [], 0.0
    for t_end, lr in schedule:
        n = max(saves, int(round((t_end - t) / lr / saves)) * saves)
        out.append((float(lr), n))
        t += n * lr
    return out


def base_problem(size: Size):
    """He init ×1 (W2 ≠ 0) on the size's data split: the members rescale it."""
    import gflow

    return gflow.tasks.modular_arithmetic(
        KEY, p=size.p, width=size.width, train_fraction=size.fraction, alpha=1.0, model="mlp"
    )


def scaled(problem, alpha, zero_last):
    """`problem` with every weight times α, and W2 times (1 − zero_last) (traced: vmappable)."""
    import equinox as eqx

    m = problem.model
    model = eqx.tree_at(lambda n: (n.w1, n.b1, n.w2), m, (alpha * m.w1, alpha * m.b1, alpha * (1 - zero_last) * m.w2))
    return eqx.tree_at(lambda pr: pr.model, problem, model)


def run_grid(problem, alphas, lams, zero_last, schedule, saves: int):
    """`gflow.gd` over members (α_i, λ_i, zero_last_i), vmapped and compiled once.

    Returns (t, cumulative step, {metric: (member, time)}, result codes). The run is a chain of
    `gd` calls, one per entry of the step-size schedule (`segments`), each starting from the
    last iterate of the one before, so the saves are close to log-spaced in t.
    """
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    import gflow

    parts = segments(schedule, saves)

    def member(problem, a, lam, z):
        current = scaled(problem, a, z)
        out = []
        for lr, n in parts:
            traj = gflow.gd(current, lam, lr, n, save_every=n // saves)
            out.append(traj)
            current = eqx.tree_at(lambda pr: pr.model, current, traj.final)
        return out

    @eqx.filter_jit
    def grid(problem, alphas, lams, zero_last):
        return jax.vmap(member, in_axes=(None, 0, 0, 0))(problem, alphas, lams, zero_last)

    dt = jnp.zeros(()).dtype
    trajs = grid(problem, jnp.asarray(alphas, dt), jnp.asarray(lams, dt), jnp.asarray(zero_last, dt))
    trajs = jax.device_get(trajs)
    t, step, t_off, step_off, metrics = [np.zeros(1)], [np.zeros(1)], 0.0, 0, {}
    for (lr, n), traj in zip(parts, trajs):
        ts = np.asarray(traj.ts[0])
        t.append(t_off + ts[1:])
        step.append(step_off + np.arange(1, saves + 1) * (n // saves))
        t_off, step_off = t_off + ts[-1], step_off + n
        for k, v in traj.metrics.items():
            v = np.asarray(v)
            metrics.setdefault(k, [v[:, :1]]).append(v[:, 1:])
    result = np.max(np.stack([np.asarray(tr.result._value) for tr in trajs]), axis=0)  # 0 = successful
    return (np.concatenate(t), np.concatenate(step), {k: np.concatenate(v, axis=1) for k, v in metrics.items()}, result)


def member_times(t, train_acc, test_acc):
    """(t_fit, t_half, t_grok): first times from which train accuracy ≥ 0.99, test accuracy ≥ 0.5
    and test accuracy ≥ 0.9 hold for good (NaN if never)."""
    import gflow.analysis

    t_fit = gflow.analysis.crossing_time(t, train_acc, FIT_ACCURACY, below=False)
    t_half = gflow.analysis.crossing_time(t, test_acc, HALF_ACCURACY, below=False)
    t_grok = gflow.analysis.crossing_time(t, test_acc, GROK_ACCURACY, below=False)
    return t_fit, t_half, t_grok


def panel_dataset(grid, coord: str, values, lams):
    """A panel's runs (`run_grid`'s output) over (coord, time); `lams`: the members' λ (for τ_grok)."""
    import xarray as xr

    t, step, metrics, result = grid
    data = {
        k: ((coord, "time"), metrics[k]) for k in ("train_accuracy", "test_accuracy", "train_loss", "test_loss", "norm")
    }
    ds = xr.Dataset(
        data, coords={coord: np.asarray(values, float), "time": t, "t": ("time", t), "step": ("time", step)}
    )
    fits, halves, groks = zip(
        *(member_times(t, ds["train_accuracy"].values[i], ds["test_accuracy"].values[i]) for i in range(len(values)))
    )
    ds["t_fit"] = (coord, np.asarray(fits))
    ds["t_half"] = (coord, np.asarray(halves))
    ds["t_grok"] = (coord, np.asarray(groks))
    ds["tau_grok"] = (coord, np.asarray(groks) * np.asarray(lams, float))
    ds["result"] = (coord, np.asarray(result).astype(np.int8))
    return ds


def run(out: pathlib.Path, size: Size, *, echo=print) -> dict:
    import jax

    jax.config.update("jax_enable_x64", True)

    import xarray as xr

    import gflow.analysis

    problem = base_problem(size)
    n_train = int(problem.train["x"].shape[0])
    n_test = int(problem.test["x"].shape[0])
    echo(
        f"E3.1 ({size.name}): p = {size.p}, width {size.width}, {n_train} train / {n_test} test pairs, "
        f"GD (a, c) {describe(size.schedule_c)}; (b) {describe(size.schedule_b)}"
    )

    # (a) and (c): He init; (a) is the member λ = lam_a of (c) when it is on the grid.
    lams_c = tuple(sorted(set(size.lams_c) | {size.lam_a}))
    start = time.perf_counter()
    traj_c = run_grid(problem, [1.0] * len(lams_c), lams_c, [0.0] * len(lams_c), size.schedule_c, size.saves)
    echo(f"  (a, c) He init, λ ∈ {{{', '.join(f'{v:g}' for v in lams_c)}}}  [{time.perf_counter() - start:.1f} s]")
    ds_c = panel_dataset(traj_c, "lam", lams_c, lams_c)

    start = time.perf_counter()
    n_b = len(size.alphas_b)
    traj_b = run_grid(problem, size.alphas_b, [size.lam_a] * n_b, [1.0] * n_b, size.schedule_b, size.saves)
    echo(
        f"  (b) W2 = 0, α ∈ {{{', '.join(f'{a:g}' for a in size.alphas_b)}}}, λ = {size.lam_a:g}  "
        f"[{time.perf_counter() - start:.1f} s]"
    )
    ds_b = panel_dataset(traj_b, "alpha", size.alphas_b, [size.lam_a] * n_b)

    for label, ds, coord in (("(a, c)", ds_c, "lam"), ("(b)", ds_b, "alpha")):
        for i, v in enumerate(ds[coord].values):
            lam = float(v) if coord == "lam" else size.lam_a
            t_half, t_grok = ds["t_half"].values[i], ds["t_grok"].values[i]
            echo(
                f"  {label} {coord} = {v:g}: train acc ≥ {FIT_ACCURACY} from t = {ds['t_fit'].values[i]:.4g}; "
                f"test acc ≥ {HALF_ACCURACY} from t = {t_half:.4g} (τ = {lam * t_half:.3g}), ≥ {GROK_ACCURACY} from "
                f"t = {t_grok:.4g} (τ = {lam * t_grok:.3g}); final train/test acc "
                f"{ds['train_accuracy'].values[i, -1]:.3f}/{ds['test_accuracy'].values[i, -1]:.3f}, "
                f"‖θ‖ {ds['norm'].values[i, 0]:.1f} → {ds['norm'].values[i, -1]:.1f}"
            )
    half_b = ds_b["t_half"].values
    if n_b > 1 and np.all(np.isfinite(half_b)):
        shifts = ", ".join(
            f"α = {a:g}: {half_b[i] - half_b[i - 1]:+.4g} "
            f"(ln(α/α')/λ = {math.log(a / size.alphas_b[i - 1]) / size.lam_a:.4g})"
            for i, a in enumerate(size.alphas_b)
            if i > 0
        )
        echo(f"  (b) delay of the jump (test acc ≥ {HALF_ACCURACY}) against the previous α: {shifts}")
    span = ds_c["t_half"].values - ds_c["t_fit"].values  # A12's "from fit to halfway"
    ok = np.isfinite(span)
    if ok.sum() >= 2:
        lam_ok, span_ok = ds_c["lam"].values[ok], span[ok]
        if ok.sum() >= 3:
            slope = gflow.analysis.fit_inverse_lambda(span_ok, lam_ok, loglog=True).slope
        else:
            slope = math.log(span_ok[1] / span_ok[0]) / math.log(lam_ok[1] / lam_ok[0])
        echo(
            f"  (c) ln(t_half − t_fit) against ln λ over the {int(ok.sum())} λ that generalise: slope {slope:.3f} "
            "(theory −1)"
        )
    failed = ds_c["lam"].values[~np.isfinite(ds_c["t_fit"].values)]
    if failed.size:
        echo(f"  (c) λ ∈ {{{', '.join(f'{v:g}' for v in failed)}}} never fit the training set (too much weight decay)")

    fig = plot(ds_c, ds_b, size, n_train, n_test)
    png = out / f"{NAME}.png"
    fig.savefig(png, dpi=120)

    # each panel keeps its own time axis (panel b may run longer): time_c, t_c, … and time_b, t_b, …
    ds = xr.merge(
        [
            part.rename({k: f"{k}_{tag}" for k in (*part.data_vars, "time", "t", "step")})
            for part, tag in ((ds_c, "c"), (ds_b, "b"))
        ],
        compat="no_conflicts",
        join="outer",
    )
    # panel (c) runs He init (α = 1, W2 ≠ 0) over λ; panel (b) W2 = 0 over α at λ = lam_a
    ds.attrs.update(
        experiment="papers.md E3.1: modular addition mod p, concatenated one-hots, ReLU MLP with first-layer bias, "
        "He init x alpha (W2 = 0 in panel b), mean cross-entropy, full-batch GD with coupled weight decay lam; "
        "t = sum of the step sizes",
        size=size.name,
        p=size.p,
        width=size.width,
        train_fraction=size.fraction,
        n_train=n_train,
        n_test=n_test,
        schedule_c=describe(size.schedule_c),
        schedule_b=describe(size.schedule_b),
        steps_c=int(ds_c["step"].values[-1]),
        steps_b=int(ds_b["step"].values[-1]),
        lam_a=size.lam_a,
        key=KEY,
        grok_accuracy=GROK_ACCURACY,
        half_accuracy=HALF_ACCURACY,
        fit_accuracy=FIT_ACCURACY,
        **_figure.provenance(),
    )
    data = out / f"{NAME}.nc"
    ds.to_netcdf(data, engine="scipy")
    echo(f"  wrote {png} and {data}")
    return {"dataset": ds, "png": png, "data": data}


def plot(ds_c, ds_b, size: Size, n_train: int, n_test: int):
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(17, 5.6), layout="constrained")
    fig.get_layout_engine().set(rect=(0, 0.04, 1, 0.96))
    axes = fig.subplots(1, 3, sharey=True)

    def curves(ax, ds, i, color, label, norm_ax=None):
        t = ds["t"].values
        keep = t > 0
        ax.plot(t[keep], ds["test_accuracy"].values[i, keep], color=color, lw=1.8, label=f"{label} test")
        ax.plot(t[keep], ds["train_accuracy"].values[i, keep], color=color, lw=1.0, ls="--", label=f"{label} train")
        if norm_ax is not None:
            norm_ax.plot(t[keep], ds["norm"].values[i, keep], color=color, lw=1.0, ls=":")
        t_half = ds["t_half"].values[i]
        if math.isfinite(t_half):
            ax.axvline(t_half, color=color, lw=0.8, alpha=0.6)

    # (a): the He-init member at lam_a
    ax = axes[0]
    i_a = int(np.argmin(np.abs(ds_c["lam"].values - size.lam_a)))
    norm_a = ax.twinx()
    curves(ax, ds_c, i_a, "tab:red", "", norm_a)
    norm_a.set_ylabel("‖θ‖ (dotted)")
    ax.axvline(1 / size.lam_a, color="0.5", ls=":", lw=1.2)
    ax.text(1 / size.lam_a, 0.5, " t = 1/λ", transform=ax.get_xaxis_transform(), color="0.4")
    top = ax.secondary_xaxis("top", functions=(lambda x: x * size.lam_a, lambda x: x / size.lam_a))
    top.set_xlabel("τ = λt")
    ax.set_title(f"(a) He init, λ = {size.lam_a:g}: memorise, then grok")

    ax = axes[1]
    norm_b = ax.twinx()
    colors = plt.cm.viridis(np.linspace(0, 0.85, ds_b.sizes["alpha"]))
    for i, a in enumerate(ds_b["alpha"].values):
        curves(ax, ds_b, i, colors[i], f"He ×{a:g}", norm_b)
    norm_b.set_yscale("log")
    norm_b.set_ylabel("‖θ‖ (dotted, log)")
    ax.set_title(f"(b) init scale α (W2 = 0), λ = {size.lam_a:g}: larger α, later")

    ax = axes[2]
    colors = plt.cm.plasma(np.linspace(0, 0.85, ds_c.sizes["lam"]))
    for i, lam in enumerate(ds_c["lam"].values):
        curves(ax, ds_c, i, colors[i], f"λ = {lam:g}")
    ax.set_title("(c) weight decay λ (He init): larger λ, earlier")

    for ax in axes:
        ax.set_xscale("log")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(True, which="major", alpha=0.3)
        ax.set_xlabel("t = Σ η (GD's continuous time; log scale)")
        ax.legend(fontsize=7, loc="upper left", ncol=1 if ax is axes[0] else 2)
    axes[0].set_ylabel("accuracy (solid: test, dashed: train)")
    fig.suptitle(
        "Lyu et al. Fig. 2: two-layer ReLU MLP on modular addition, full-batch GD with weight decay "
        "(vertical lines: test accuracy ≥ 0.5 from then on)",
        fontsize=12,
    )
    fig.text(
        0.005,
        0.005,
        f"size: {size.name} — p = {size.p}, width {size.width}, {n_train} train / {n_test} test pairs "
        f"({size.fraction:.0%}; paper: p = 97, width 1024, 40%), GD (a, c) {describe(size.schedule_c)}, "
        f"(b) {describe(size.schedule_b)} (paper: η = 0.002), "
        f"λ_a = {size.lam_a:g} (paper 1e-4), α ∈ {{{', '.join(f'{a:g}' for a in size.alphas_b)}}} "
        f"(paper 1, 10, 100), JAX key {KEY}",
        fontsize=8,
        color="0.3",
    )
    return fig


def main(argv=None) -> int:
    parser = _figure.parser(
        __doc__,
        NAME,
        smoke="p = 11, width 32, 2000 steps (seconds)",
        full="the paper's size (GPU hours)",
    )
    args = parser.parse_args(argv)
    size = SIZES[_figure.size(args)]
    return _figure.run_in_new_folder(args.out, NAME, lambda out: run(out, size))


if __name__ == "__main__":
    sys.exit(main())
