r"""Tan, Gai & Zhang, Fig. 1: grokking of addition mod p with AdamW at five weight decays (papers.md §5.5, A14).

The paper's only experiment: addition mod 113, a trainable token embedding (d = 128), the two
token embeddings combined symmetrically, a ReLU MLP and softmax cross-entropy, full batch,
an Adam-family optimiser with lr 1e−3, betas (0.9, 0.98) and decoupled weight decay
λ ∈ {0.6, 0.7, 0.8, 0.9, 1.0}, 15 000 epochs. Fig. 1 shows train and test loss (log scale)
against epochs: the train loss reaches ~1e−6 by ≈ 1500 epochs, the test loss drops later, in
≈ 4000–8500 epochs, earlier for larger λ (papers.md §8: [2nd], captions read).

**This figure is about the discrete optimiser, not gradient flow.** AdamW's decoupled decay
θ ← θ − lr·(m̂/(√v̂ + ε) + λθ) is not the gradient flow of F + (λ/2)‖θ‖² with any
preconditioning (papers.md §1, recommendation 1), so `measure` runs optax's `adamw` through
`gflow.gd(problem, λ, optimizer=lambda λ: optax.adamw(...))`: one jitted scan over epochs,
vmapped over λ (λ is traced: one compilation for all five). Time is the epoch count
(= optimiser steps, full batch); t = lr·epoch is drawn alongside, and the decay per epoch is
lr·λ (the norm of an unforced weight shrinks as e^{−lr·λ·epoch}).

Setup: `gflow.tasks.modular_arithmetic(model="embed_mlp", loss="cross_entropy")`: f(a, b) =
W2 ReLU(W1(E_a + E_b) + b1) (`gflow.models.EmbedMLP`, PyTorch-like init: E ~ 𝒩(0, 1), He for
W1, 1/√h for W2, b1 = 0), all ordered pairs (a, b), a random train split. optax
`adamw(lr, b1=0.9, b2=0.98, eps=1e−8, weight_decay=λ)` on every parameter (PyTorch
`AdamW(model.parameters())` decays all), no warm-up, no schedule.

Recorded at epoch 0 and every `log_every` epochs (as metrics of the problem, inside the scan):
train/test loss and accuracy, ‖θ‖, and the stable ranks srank(M) = ‖M‖²_F/‖M‖²₂ of the
embedding E (p × d), the first layer W1 (h × d), the head W2 (p × h), and the centred logit
table of all p² pairs (p² × p, each row minus its mean: softmax ignores that direction), the
network's end-to-end map on its whole input space (`tan_fig3_stable_rank` draws them).
‖M‖²₂ is found by repeated squaring of the smaller Gram matrix (`_srank`: matrix products
only; a batched LAPACK eigensolver under vmap inside the scan deadlocked XLA's CPU thread pool,
jaxlib 0.10.2, 2 cores).

Unknowns (papers.md §10.3) and our choices:
- train fraction: 0.3 of the p² ordered pairs at full size (Nanda et al.'s). The model is
  symmetric in (a, b), so a test pair whose mirror (b, a) is in the train set is answered from
  memory: with 30% train, about 30% of the test pairs are such mirrors.
- depth and width: one hidden ReLU layer of width 512 after the summed embedding (full size).
- seeds: split and initialisation from seed 0; the five λ runs share both.

Sizes (`FIGURE.sizes`): quick (ours, to run in minutes on 2 CPU cores) is p = 31, hidden
width 128, train fraction 0.5 (a smaller p needs a larger fraction to generalise), 5000
epochs, lr, betas and λ as in the paper; smoke is p = 11, d = 32, h = 64, 600 epochs (checks
the plumbing); full is the paper's size, p = 113, d = 128, h = 512, train fraction 0.3,
15 000 epochs (for a GPU).

Measured and marked: T̂_cls(ε), the first epoch from which the train loss stays ≤ ε (papers.md
§5.5's estimator with the window = the rest of the run) for ε = 1e−1 … 1e−6, with the fit of
T̂_cls against ln(1/ε) (Tan's Prop. 3.6: a per-step contraction of the loss makes this clock
logarithmic for discrete optimisers); and the test drop T_test, the first epoch from which the
test loss stays ≤ `test_drop` = 0.1 nats.

Measured (quick size, float64, seed 0; paper numbers at p = 113 in brackets): the train loss
reaches its AdamW floor 2–4e−7 by ≈ 1300 epochs [~1e−6 by ≈ 1500]; T̂_cls(1e−1 … 1e−6) =
175 … 1275 (λ = 0.6) to 200 … 1425 (λ = 1) epochs, about 250 epochs per decade of ε, a straight
line in ln(1/ε) with R² = 0.995–0.997 (Adam's normalised steps make the margins grow linearly,
unlike gradient flow: `tan_deep_linear_two_clocks`); T_test = 4275, 3575, 3125, 2700, 2425
epochs for λ = 0.6, 0.7, 0.8, 0.9, 1.0 [test drop ≈ 4000–8500, earlier for larger λ], i.e.
λ·T_test ≈ 2.4–2.6e3: T_test ∝ 1/λ; final test accuracy 0.996–1.000.
"""

from __future__ import annotations

import dataclasses
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import xarray as xr

from .. import tasks
from .._gd import gd
from ..analysis import crossing_time, scaling_fit
from . import FigureExperiment
from ._common import add_tau_axis, caption, require_float64, require_multiple

# Stable ranks recorded at every log (see the module docstring).
SRANK_MATRICES = ("embed", "w1", "head", "logits")
SERIES = ("train_loss", "test_loss", "train_accuracy", "test_accuracy", "norm") + tuple(
    f"srank_{name}" for name in SRANK_MATRICES
)


FIGURE = FigureExperiment.from_toml(__name__)


def check(params) -> None:
    """Refuse parameter combinations the runs cannot use (a `ConfigError` naming the field)."""
    from ..experiments import ConfigError

    require_multiple(params, "epochs", "log_every")
    if not params["lams"] or min(params["lams"]) <= 0:
        raise ConfigError(f"figure.lams must be a list of positive weight decays, got {params['lams']}")
    if not params["eps"] or min(params["eps"]) <= 0:
        raise ConfigError(f"figure.eps must be a list of positive loss levels, got {params['eps']}")


def _srank(a, squarings: int = 10):
    """‖A‖²_F/‖A‖²₂ with ‖A‖²₂ the top eigenvalue of the smaller Gram matrix G, by repeated squaring.

    G^(2^k), rescaled to unit trace after each product, tends to the projector on the top
    eigenspace; its largest column u gives ‖A‖²₂ = uᵀGu/uᵀu up to a relative error of order
    (λ₂/λ₁)^(2^(k+1)) (degenerate top eigenvalues, e.g. the pairs of a Fourier solution, are exact).
    Matrix products only: a batched LAPACK eigensolver (`eigvalsh`/`svd`) under vmap inside the
    scan deadlocked XLA's CPU thread pool (jaxlib 0.10.2, 2 cores).
    """
    g = a.T @ a if a.shape[0] >= a.shape[1] else a @ a.T
    trace = jnp.trace(g)
    h = g / trace
    for _ in range(squarings):
        h = h @ h
        h = h / jnp.trace(h)
    u = h[:, jnp.argmax(jnp.sum(h * h, axis=0))]
    return trace * (u @ u) / (u @ g @ u)


# The stable ranks are metrics of the problem, so that `gd` records them inside its scan. A metric
# is evaluated on every split holding the keys it reads; these read `all_pairs`, which only the
# test split carries, so each is computed once per save (recorded as `test_srank_*`).
# Module-level functions: a Problem's metrics are static (no recompilation).
def _full_table_only(data) -> None:
    if "all_pairs" not in data:
        raise KeyError("all_pairs")


def _srank_embed(model, data):
    _full_table_only(data)
    return _srank(model.embed)


def _srank_w1(model, data):
    _full_table_only(data)
    return _srank(model.w1)


def _srank_head(model, data):
    _full_table_only(data)
    return _srank(model.w2)


def _srank_logits(model, data):
    table = jax.vmap(model)(data["all_pairs"])
    return _srank(table - jnp.mean(table, axis=1, keepdims=True))


_SRANK_METRICS = {
    "srank_embed": _srank_embed,
    "srank_w1": _srank_w1,
    "srank_head": _srank_head,
    "srank_logits": _srank_logits,
}


def build_problem(params):
    """The task (`modular_arithmetic`, embed_mlp, cross-entropy, seed `seed`) with the stable ranks as
    metrics: its test split also carries `all_pairs`, the p² ordered pairs of the logit table."""
    from .._problem import Problem

    base = tasks.modular_arithmetic(
        params["seed"],
        p=params["p"],
        op="+",
        pairs="ordered",
        train_fraction=params["train_fraction"],
        loss="cross_entropy",
        model="embed_mlp",
        embed_dim=params["embed"],
        width=params["width"],
    )
    p = params["p"]
    a, b = np.meshgrid(np.arange(p), np.arange(p), indexing="ij")
    all_pairs = jnp.asarray(np.stack([a.ravel(), b.ravel()], axis=1), base.test["x"].dtype)
    metrics = {name[len("train_") :]: fn for name, split, fn in base.metric_items if split == "train"}
    return Problem(
        base.model,
        base.train,
        loss="cross_entropy",
        test={**base.test, "all_pairs": all_pairs},
        metrics={**metrics, **_SRANK_METRICS},
    )


@dataclasses.dataclass(frozen=True)
class _AdamW:
    """`lam -> optax.adamw(lr, b1, b2, eps, weight_decay=lam)`, equal for equal settings: `gd` compiles
    once per optimiser (a static argument), so Figs. 1 and 3 at the same size share the compilation."""

    lr: float
    b1: float
    b2: float
    eps: float

    def __call__(self, lam):
        return optax.adamw(self.lr, b1=self.b1, b2=self.b2, eps=self.eps, weight_decay=lam)


def train_adamw(params):
    """AdamW on the full batch for every weight decay in `params["lams"]`: `gflow.gd` with an optax
    optimiser of the traced λ, vmapped over λ (one compilation).

    Returns (problem, epochs logged, logs, final): `logs` maps each of `SERIES` to an array
    (λ, log) logged at epoch 0 and every `log_every` epochs; `final` is the model after the last
    epoch with a leading λ axis on every parameter.
    """
    problem = build_problem(params)
    dtype = problem.model.embed.dtype

    adamw = _AdamW(params["lr"], params["beta1"], params["beta2"], params["adam_eps"])

    def one(lam):
        return gd(problem, lam, optimizer=adamw, steps=params["epochs"], save_every=params["log_every"])

    traj = jax.block_until_ready(jax.vmap(one)(jnp.asarray(params["lams"], dtype)))
    metrics = {k.removeprefix("test_") if k.startswith("test_srank") else k: v for k, v in traj.metrics.items()}
    logs = {k: np.asarray(metrics[k], float) for k in SERIES}
    epochs = np.asarray(traj.ts[0], float)
    return problem, epochs, logs, traj.final


def first_stay(epochs, values, threshold: float, *, after: float = 0.0, window: int | None = None) -> float:
    """First logged epoch ≥ `after` from which `values` ≤ `threshold` for `window` logs (None: to the end)."""
    if window is None:
        return crossing_time(epochs, values, threshold, after=after)
    ok = np.asarray(values) <= threshold
    for i in range(len(epochs)):
        if epochs[i] >= after and i + window <= len(epochs) and ok[i : i + window].all():
            return float(epochs[i])
    return math.nan


def clock_times(epochs, logs, params) -> dict:
    """T̂_cls(ε) for every λ and ε, the test drop T_test, and the fit of T̂_cls against ln(1/ε)."""
    n = len(params["lams"])
    t_cls = np.array([[first_stay(epochs, logs["train_loss"][i], e) for e in params["eps"]] for i in range(n)])
    t_test = np.array([first_stay(epochs, logs["test_loss"][i], params["test_drop"]) for i in range(n)])
    x = np.log(1 / np.asarray(params["eps"]))
    r2 = np.full(n, math.nan)
    slope = np.full(n, math.nan)
    for i in range(n):
        ok = np.isfinite(t_cls[i])
        if ok.sum() >= 3 and np.ptp(t_cls[i][ok]) > 0:
            fit = scaling_fit(x[ok], t_cls[i][ok])
            r2[i], slope[i] = fit.rvalue**2, fit.slope
    return {"t_cls": t_cls, "t_test": t_test, "cls_r2": r2, "cls_slope": slope}


def to_dataset(problem, epochs, logs, clocks, params) -> xr.Dataset:
    """The runs over epochs for every λ, the clocks, and the setup as attributes."""
    ds = xr.Dataset(
        {k: (("lam", "epoch"), v) for k, v in logs.items()},
        coords={"lam": np.asarray(params["lams"], float), "epoch": epochs, "eps": np.asarray(params["eps"], float)},
    )
    ds["t"] = ("epoch", params["lr"] * epochs)
    ds["t_cls"] = (("lam", "eps"), clocks["t_cls"])
    ds["t_test"] = ("lam", clocks["t_test"])
    ds["cls_r2"] = ("lam", clocks["cls_r2"])
    ds["cls_slope"] = ("lam", clocks["cls_slope"])
    ds.attrs.update(
        params=json.dumps(params),
        n_train=int(problem.train["y"].shape[0]),
        n_test=int(problem.test["y"].shape[0]),
        optimiser=f"optax.adamw(lr={params['lr']}, b1={params['beta1']}, b2={params['beta2']}, "
        f"eps={params['adam_eps']}, weight_decay=lam), full batch, all parameters decayed, no warm-up",
        time="epoch (= optimiser step); t = lr*epoch; decoupled decay per epoch lr*lam",
    )
    return ds


def lams_text(params) -> str:
    return "{" + ", ".join(f"{v:g}" for v in params["lams"]) + "}"


def measure(params, *, progress: bool = False, echo=print) -> xr.Dataset:
    """Train AdamW for every λ (one vmapped scan) and measure the two clocks; returns one Dataset.

    Dimensions `lam`, `epoch` and `eps`: the recorded series over (lam, epoch), `t_cls` over
    (lam, eps), `t_test`, `cls_r2` and `cls_slope` over lam; `t` = lr·epoch.
    """
    del progress  # one compiled scan: no progress to report
    require_float64(FIGURE.name)
    check(params)
    echo(
        f"  AdamW on addition mod {params['p']} (d = {params['embed']}, width {params['width']}), "
        f"λ ∈ {lams_text(params)}: {params['epochs']} epochs in one vmapped scan"
    )
    problem, epochs, logs, _ = train_adamw(params)
    return to_dataset(problem, epochs, logs, clock_times(epochs, logs, params), params)


def summary(ds: xr.Dataset) -> list[tuple[str, str]]:
    """Per λ: T̂_cls(ε) and its fit in ln(1/ε), T_test, the final losses and test accuracy."""
    params = json.loads(ds.attrs["params"])
    eps = ds["eps"].values
    rows = [("train / test pairs", f"{ds.attrs['n_train']} / {ds.attrs['n_test']}")]
    for i, lam in enumerate(ds["lam"].values):
        t_cls = ", ".join(f"{v:.0f}" for v in ds["t_cls"].values[i])
        rows.append(
            (
                f"λ = {lam:g}: T̂_cls({eps[0]:g} … {eps[-1]:g}) (epochs)",
                f"{t_cls} (affine in ln(1/ε): R² = {ds['cls_r2'].values[i]:.3f})",
            )
        )
        rows.append(
            (
                f"λ = {lam:g}: T_test (test loss stays ≤ {params['test_drop']:g}); final train / test loss, "
                "test accuracy",
                f"{ds['t_test'].values[i]:.0f}; {ds['train_loss'].values[i, -1]:.2e} / "
                f"{ds['test_loss'].values[i, -1]:.2e}, {ds['test_accuracy'].values[i, -1]:.3f}",
            )
        )
    return rows


def plot(ds: xr.Dataset):
    """(a) train (dashed) and test loss over epochs for every λ with T_test marked; (b) T̂_cls(ε)
    against ln(1/ε) with the R² of a straight line."""
    import matplotlib.pyplot as plt

    params = json.loads(ds.attrs["params"])
    lams, epochs = ds["lam"].values, ds["epoch"].values
    test_drop = params["test_drop"]
    fig = plt.figure(figsize=(13, 6.2), layout="constrained")
    fig.get_layout_engine().set(rect=(0, 0.03, 1, 0.97))
    ax, ax_side = fig.subplots(1, 2, width_ratios=(2.1, 1))
    colors = plt.cm.viridis(np.linspace(0.0, 0.85, len(lams)))
    for i, (lam, c) in enumerate(zip(lams, colors, strict=True)):
        ax.semilogy(epochs, ds["train_loss"].values[i], color=c, ls="--", lw=1)
        ax.semilogy(epochs, ds["test_loss"].values[i], color=c, lw=1.6, label=f"λ = {lam:g}")
        if math.isfinite(ds["t_test"].values[i]):
            ax.axvline(ds["t_test"].values[i], color=c, ls=":", lw=1)
    ax.axhline(test_drop, color="0.6", lw=0.8)
    ax.text(epochs[-1], test_drop, f"test drop level {test_drop:g} ", ha="right", va="bottom", fontsize=8, color="0.4")
    ax.plot([], [], color="k", ls="--", lw=1, label="train loss")
    ax.plot([], [], color="k", lw=1.6, label="test loss")
    ax.plot([], [], color="k", ls=":", lw=1, label=f"T_test (test loss stays < {test_drop:g})")
    ax.set_xlabel("epoch (full batch: one AdamW step per epoch)")
    ax.set_ylabel("cross-entropy (log scale)")
    ax.set_title("(a) train and test loss: the test loss drops later, and earlier for larger λ")
    ax.legend(fontsize=8, ncol=2, loc="center right")
    ax.grid(True, alpha=0.3)
    add_tau_axis(ax, params["lr"], label="t = lr·epoch")

    x = np.log(1 / ds["eps"].values)
    for i, (lam, c) in enumerate(zip(lams, colors, strict=True)):
        ax_side.plot(
            x, ds["t_cls"].values[i], "o-", color=c, ms=4, lw=1, label=f"λ = {lam:g}: R² = {ds['cls_r2'].values[i]:.3f}"
        )
    ax_side.set_xlabel("ln(1/ε)")
    ax_side.set_ylabel("T̂_cls(ε) (epochs): train loss stays ≤ ε")
    ax_side.set_title("(b) classifier clock of AdamW: affine in ln(1/ε)\n(R² of a straight-line fit; Tan Prop. 3.6)")
    ax_side.legend(fontsize=8)
    ax_side.grid(True, alpha=0.3)
    betas = (params["beta1"], params["beta2"])
    fig.suptitle(
        f"Addition mod {params['p']}: embedding + ReLU MLP + cross-entropy, full-batch AdamW "
        f"(lr {params['lr']:g}, betas {betas}, decoupled weight decay λ) — Tan et al. Fig. 1"
    )
    caption(
        fig,
        f"p = {params['p']}, d = {params['embed']}, width {params['width']}, train fraction "
        f"{params['train_fraction']:g} of ordered pairs, {params['epochs']} epochs, seed {params['seed']}; "
        "discrete AdamW, not gradient flow; width, depth, train fraction and seed are our choices",
        size=ds.attrs.get("size"),
    )
    return fig
