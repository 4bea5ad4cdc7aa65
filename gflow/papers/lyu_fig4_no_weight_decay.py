"""Lyu et al. (ICLR 2024) Fig. 4 (App. B.1): grokking without weight decay, on a log-log time axis (papers.md E3.2).

What the paper's figure shows: the modular-addition MLP of Fig. 2 trained with λ = 0 and a
loss-normalised step η/𝓛(θ). The train accuracy reaches 100% quickly, but the test accuracy
climbs from ~0 to 100% only as the continuous time t = Σ_k η_k goes from about 10^(10²) to
10^(10⁴): grokking without weight decay, not sharp, on a log log t scale — consistent with the
slow O(log log t / log t) convergence of gradient flow on a homogeneous net to a max-margin
(KKT) direction.

Setup (E3.2, Lyu's code `train_mod_add_nowd.py`): the Fig. 2 network (`gflow.models.ModularMLP`
via `gflow.tasks.modular_arithmetic`, He init, W2 ≠ 0), mean cross-entropy 𝓛, λ = 0. The code
runs plain GD with lr 0.01 × 10 on 𝓛 while log 𝓛 > −5, then GD on log 𝓛 with lr η = 0.01,
i.e. θ ← θ − η∇𝓛/𝓛, and accumulates the continuous time in log space, t += η/𝓛.

What we integrate. dθ/ds = −∇log 𝓛 = −∇𝓛/𝓛 is gradient flow dθ/dt = −∇𝓛 after the time change
dt = ds/𝓛: the same curve, run at a speed that keeps up with the vanishing gradient. Two
`gflow.gd` stages, as in the paper's code:
1. GD on 𝓛 (`loss="cross_entropy"`) at lr 0.1 up to t1 (t = 0.1·step);
2. GD on log 𝓛 (a custom `gflow.Problem` loss, computed stably from per-example log-losses so
   it stays finite at 𝓛 = 10^(−10⁶)) at lr η = 0.01 (s = η·step), from stage 1's last iterate.
The clock t = t1 + Σ_k η/𝓛(θ_k) overflows float64 long before the end, so log t is accumulated
in log space from the saved log 𝓛 (linear interpolation between save points; the sum is
dominated by its last terms, where the interpolation is exact). ReLU networks have a
discontinuous gradient field (adaptive ODE solvers crawl at the kinks, see
`gflow.papers.lyu_fig2_modular_addition`), so both stages are fixed-step GD, the paper's own method.

Sizes (`FIGURE.sizes`; fields p, width, fraction, lr1, steps1, saves1, lr2, steps2, saves2, key):
- full: the paper's p = 97, width 1024, 40% train, stage 2 for 10⁷ steps (GPU).
- quick (the default): p = 23, width 128, 70% of the 529 pairs for training (370; 159 test),
  stage 1: 5000 steps (t1 = 500, train accuracy 100%), stage 2: 120 000 steps (s = 1200).
  80 s of CPU time (4 minutes wall on a 2-core machine at load 8).
- smoke: p = 11, width 32, a few thousand steps (seconds).
Choices the paper does not fix for the quick size: p, width, train fraction (at 40% of p = 23
the test accuracy stalls), the stage-1 length; the split and init come from
`jax.random.PRNGKey(0)`.

Measured at the quick size: train accuracy 100% from log₁₀ t = 2.5; test accuracy ≥ 0.1, 0.5,
0.9 for good from log₁₀ t = 242, 2382, 1.5·10⁵ (log₁₀ log₁₀ t = 2.4, 3.4, 5.2), and 1.000 at
the end (log₁₀ t = 2·10⁸); the paper's climb is over log₁₀ log₁₀ t ∈ [2, 4]. The normalised
margin rises to 4.2e−3 and keeps creeping up. Stage 2 at half the step (η = 0.005, twice the
steps) gives 207, 3186, 3.7·10⁵: the same curve to 0.1 in log₁₀ log₁₀ t up to 50%, 0.4 at 90% —
close to, not at, the flow's limit late in the run (the paper's η = 0.01 is kept). The
margin jitters from log₁₀ t ≈ 150 on: GD on log 𝓛 at η = 0.01 reaches its stability edge there
(at η = 0.005 the jitter starts near log₁₀ t ≈ 400 and is smaller).

Time convention: λ = 0, so there is no slow time; t is the gradient-flow time of 𝓛 (Lyu's
"continuous time"), s the time of the normalised flow. The figure's x axis is log₁₀ t on a log
scale, i.e. log log t.

Why the two stages stay two `gd` calls (issue 14) rather than one `gd` call with an optax
schedule: they descend different objectives (𝓛, then log 𝓛), and stage 2's step on 𝓛 is
η/𝓛(θ_k), a function of the iterate, not of the step index k that an optax schedule sees. Its
clock t = t1 + Σ_k η/𝓛(θ_k) also overflows float64 (log₁₀ t reaches 10⁸), so it cannot be `gd`'s
accumulated time: `log_clock` accumulates log t from the saved log 𝓛.
"""

from __future__ import annotations

import json
import math

import numpy as np
import xarray as xr

from . import FigureExperiment
from ._common import caption, require_float64, require_in, require_multiple

LOG10 = math.log(10.0)

FIGURE = FigureExperiment.from_toml(__name__)


def check(params) -> None:
    """Refuse parameter combinations the runs cannot use (a `ConfigError` naming the field)."""
    from ..experiments import ConfigError

    for stage in ("1", "2"):
        if params[f"lr{stage}"] <= 0:
            raise ConfigError(f"figure.lr{stage} must be a positive step size, got {params[f'lr{stage}']}")
        require_multiple(params, f"steps{stage}", f"saves{stage}")
    require_in(params, "fraction", 0, 1)


def build_problem(params):
    """The stage-1 Problem (GD on the cross-entropy 𝓛)."""
    return problems(params)[0]


def log_cross_entropy(model, data):
    """log 𝓛 with 𝓛 = mean cross-entropy, finite even when 𝓛 underflows float64.

    Per example, ℓ_i = log(1 + Σ_{j≠y} e^{z_j − z_y}) = softplus(r_i) with r_i = logsumexp_{j≠y}(z_j − z_y),
    so log ℓ_i = log softplus(r_i) (≈ r_i once r_i < −30); log 𝓛 = logsumexp_i(log ℓ_i) − log n.
    """
    import jax
    import jax.numpy as jnp

    logits = jax.vmap(model)(data["x"])
    y = data["y"]
    correct = jnp.take_along_axis(logits, y[:, None], axis=1)
    wrong = jax.nn.one_hot(y, logits.shape[1], dtype=bool)
    r = jax.nn.logsumexp(jnp.where(wrong, -jnp.inf, logits - correct), axis=1)
    tiny = r < -30.0
    r_safe = jnp.where(tiny, 0.0, r)  # keeps the unused branch (and its gradient) finite
    log_l = jnp.where(tiny, r, jnp.log(jax.nn.softplus(r_safe)))
    return jax.nn.logsumexp(log_l) - jnp.log(jnp.asarray(log_l.shape[0], log_l.dtype))


def normalised_margin(model, data):
    """min_i (z_{y_i} − max_{j≠y_i} z_j)/‖θ‖²: the margin of the 2-homogeneous net (W1, b1, W2)."""
    import jax
    import jax.numpy as jnp

    logits = jax.vmap(model)(data["x"])
    y = data["y"]
    correct = jnp.take_along_axis(logits, y[:, None], axis=1)[:, 0]
    other = jnp.max(jnp.where(jax.nn.one_hot(y, logits.shape[1], dtype=bool), -jnp.inf, logits), axis=1)
    sq = jnp.sum(model.w1**2) + jnp.sum(model.b1**2) + jnp.sum(model.w2**2)
    return jnp.min(correct - other) / sq


def problems(params):
    """(stage-1 problem on 𝓛, a function model -> stage-2 problem on log 𝓛)."""
    from .. import tasks
    from .._problem import Problem

    base = tasks.modular_arithmetic(
        params["key"], p=params["p"], width=params["width"], train_fraction=params["fraction"]
    )
    metrics = {name.split("_", 1)[1]: fn for name, split, fn in base.metric_items if split == "train"}
    metrics["margin"] = normalised_margin
    stage1 = Problem(base.model, base.train, loss="cross_entropy", test=base.test, metrics=metrics)

    def stage2(model):
        return Problem(model, base.train, loss=log_cross_entropy, test=base.test, metrics=metrics)

    return stage1, stage2


def log_clock(log_t1: float, lr2: float, every: int, log_loss: np.ndarray) -> np.ndarray:
    """log t at the stage-2 save points: t = t1 + Σ_k lr2/𝓛(θ_k), log 𝓛 interpolated linearly in k."""
    k = np.arange(every * (log_loss.size - 1))
    g = -np.interp(k, np.arange(log_loss.size) * every, log_loss)  # −log 𝓛 at every step
    cum = np.logaddexp.accumulate(np.concatenate([[log_t1], math.log(lr2) + g]))
    return cum[np.arange(log_loss.size) * every]


def measure(params, *, progress: bool = False, echo=print) -> xr.Dataset:
    """Stage 1 (GD on 𝓛) then stage 2 (GD on log 𝓛) with the log-space clock, as one Dataset on
    `save` (coordinates log t, log₁₀ t, s; `stage` 1 or 2): accuracies, log 𝓛, the normalised
    margin and ‖θ‖; the times from which the accuracies stay above their levels are attributes."""
    from .. import analysis
    from .._gd import gd

    require_float64(FIGURE.name)
    check(params)
    stage1, stage2 = problems(params)
    n_train, n_test = int(stage1.train["x"].shape[0]), int(stage1.test["x"].shape[0])
    lr1, steps1, lr2, steps2 = params["lr1"], params["steps1"], params["lr2"], params["steps2"]
    echo(
        f"  E3.2: p = {params['p']}, width {params['width']}, {n_train} train / {n_test} test pairs, λ = 0; "
        f"stage 1: GD on 𝓛, lr {lr1:g} × {steps1}; stage 2: GD on log 𝓛, lr {lr2:g} × {steps2}"
    )
    echo("  1/2 stage 1: GD on 𝓛")
    tr1 = gd(stage1, 0.0, lr1, steps1, save_every=steps1 // params["saves1"])
    echo("  2/2 stage 2: GD on log 𝓛")
    every2 = steps2 // params["saves2"]
    tr2 = gd(stage2(tr1.final), 0.0, lr2, steps2, save_every=every2)

    m1 = {k: np.asarray(v) for k, v in tr1.metrics.items()}
    m2 = {k: np.asarray(v) for k, v in tr2.metrics.items()}
    t1 = lr1 * steps1
    with np.errstate(divide="ignore"):
        log_t_1 = np.log(np.asarray(tr1.ts))  # −inf at t = 0
    log_t_2 = log_clock(math.log(t1), lr2, every2, m2["train_loss"])
    log_loss = np.concatenate([np.log(m1["train_loss"]), m2["train_loss"][1:]])
    log_t = np.concatenate([log_t_1, log_t_2[1:]])
    stage = np.concatenate([np.ones(log_t_1.size, np.int8), np.full(log_t_2.size - 1, 2, np.int8)])
    s = np.concatenate([np.full(log_t_1.size, np.nan), np.asarray(tr2.ts)[1:]])

    def series(name):
        return np.concatenate([m1[name], m2[name][1:]])

    test_acc, train_acc = series("test_accuracy"), series("train_accuracy")
    margin, norm = series("train_margin"), series("norm")
    log10_t = log_t / LOG10

    def stays_above(values, level):
        return analysis.crossing_time(log10_t, values, level, below=False, after=0.0)

    summary_ = {
        "log10_t_train_fit": stays_above(train_acc, 1.0),
        **{f"log10_t_test_{int(100 * a)}": stays_above(test_acc, a) for a in (0.1, 0.5, 0.9)},
        "final_test_accuracy": float(test_acc[-1]),
        "final_log10_t": float(log10_t[-1]),
        "final_margin": float(margin[-1]),
        "stage1_final_log_loss": float(np.log(m1["train_loss"][-1])),
    }
    ds = xr.Dataset(
        {
            "train_accuracy": ("save", train_acc),
            "test_accuracy": ("save", test_acc),
            "log_loss": ("save", log_loss),
            "normalised_margin": ("save", margin),
            "norm": ("save", norm),
            "stage": ("save", stage),
        },
        coords={
            "save": np.arange(log_t.size),
            "log_t": ("save", log_t),
            "log10_t": ("save", log10_t),
            "s": ("save", s),
        },
    )
    ds.attrs.update({k: float(v) for k, v in summary_.items()})
    ds.attrs.update(
        params=json.dumps(params),
        model="Fig. 2's ReLU MLP (He init) on modular addition, lam = 0; stage 1 GD on the cross-entropy L, "
        "stage 2 GD on log L (dtheta/ds = -grad L / L, dt = ds / L); t = continuous GF time",
        n_train=n_train,
        n_test=n_test,
        stage1_result=tr1.message,
        stage2_result=tr2.message,
    )
    return ds


def summary(ds: xr.Dataset) -> list[tuple[str, str]]:
    """The key numbers as (quantity, value) rows: the stages' results, when train accuracy is 100%
    and test accuracy ≥ 10/50/90% for good (log₁₀ t and log₁₀ log₁₀ t), the end state."""
    a = ds.attrs
    rows = [
        ("stage 1 / stage 2", f"{a['stage1_result']} / {a['stage2_result']}"),
        (
            "train accuracy 100% for good from log10 t",
            f"{a['log10_t_train_fit']:.3g}; stage 1 ends at log 𝓛 = {a['stage1_final_log_loss']:.2f} "
            "(paper's switch: −5)",
        ),
    ]
    for level in (10, 50, 90):
        v = a[f"log10_t_test_{level}"]
        loglog = math.log10(v) if v > 0 else math.nan
        rows.append((f"test accuracy ≥ {level}% for good from log10 t", f"{v:.4g} (log10 log10 t = {loglog:.3g})"))
    rows.append(
        (
            "end",
            f"log10 t = {a['final_log10_t']:.4g} (log10 log10 t = {math.log10(a['final_log10_t']):.3g}), "
            f"test accuracy {a['final_test_accuracy']:.3f}, normalised margin {a['final_margin']:.3e}; "
            "paper: test 0 → 100% over log10 log10 t ∈ [2, 4]",
        )
    )
    return rows


def plot(ds: xr.Dataset):
    """Accuracies against log₁₀ t on a log axis (log log t), with the paper's climb shaded and the
    switch to the normalised step marked; the normalised margin with ‖θ‖."""
    import matplotlib.pyplot as plt

    params = json.loads(ds.attrs["params"])
    log10_t = ds["log10_t"].values
    stage = ds["stage"].values
    train_acc, test_acc = ds["train_accuracy"].values, ds["test_accuracy"].values
    margin, norm = ds["normalised_margin"].values, ds["norm"].values
    keep = np.isfinite(log10_t) & (log10_t > 0)  # t > 1: log10 t on a log axis
    x = log10_t[keep]
    fig = plt.figure(figsize=(13, 5.2), layout="constrained")
    fig.get_layout_engine().set(rect=(0, 0.04, 1, 0.96))
    ax_acc, ax_margin = fig.subplots(1, 2)

    ax_acc.plot(x, test_acc[keep], color="tab:red", lw=1.8, label="test accuracy")
    ax_acc.plot(x, train_acc[keep], color="tab:blue", lw=1.2, ls="--", label="train accuracy")
    ax_acc.axvspan(100, 10_000, color="0.9", zorder=0, label="paper: test 0 → 100% here")
    switch = log10_t[stage == 2][0]
    ax_acc.axvline(switch, color="0.5", ls=":", lw=1)
    ax_acc.text(
        switch, 0.5, " normalised step (s) from here", color="0.4", fontsize=8, transform=ax_acc.get_xaxis_transform()
    )
    ax_acc.set_ylim(-0.02, 1.02)
    ax_acc.set_ylabel("accuracy")
    ax_acc.set_title("test accuracy climbs over log log t (λ = 0)")
    ax_acc.legend(loc="upper left", fontsize=9)

    ax_margin.plot(x, margin[keep], color="tab:green", label="normalised margin min_i q_i/‖θ‖² (< 0 before the fit)")
    ax_margin.set_ylabel("normalised margin")
    ax_margin.set_ylim(0, 1.15 * max(np.nanmax(margin), 1e-12))
    ax_norm = ax_margin.twinx()
    ax_norm.plot(x, norm[keep], color="0.4", ls=":", label="‖θ‖")
    ax_norm.set_yscale("log")
    ax_norm.set_ylabel("‖θ‖ (dotted)")
    ax_margin.set_title("the margin keeps improving while ‖θ‖ → ∞")
    ax_margin.legend(loc="upper left", fontsize=9)

    for ax in (ax_acc, ax_margin):
        ax.set_xscale("log")
        ax.grid(True, which="major", alpha=0.3)
        ax.set_xlabel("log₁₀ t (log scale: the axis is log log t; t = gradient-flow time of L)")
    fig.suptitle(
        "Lyu et al. Fig. 4: grokking without weight decay, ReLU MLP on modular addition, "
        "loss-normalised gradient descent",
        fontsize=12,
    )
    caption(
        fig,
        f"p = {params['p']}, width {params['width']}, {ds.attrs['n_train']} train / {ds.attrs['n_test']} test pairs "
        f"({params['fraction']:.0%}; paper: p = 97, width 1024, 40%); GD on L (lr {params['lr1']:g}) × "
        f"{params['steps1']}, then on log L (lr {params['lr2']:g}) × {params['steps2']}; JAX key {params['key']}",
        size=ds.attrs.get("size"),
    )
    return fig
