r"""Tan, Gai & Zhang, Fig. 1: grokking of addition mod p by AdamW at five weight decays and by the flow (A14).

The paper's only experiment: addition mod 113, a trainable token embedding (d = 128), the two
token embeddings combined symmetrically, a ReLU MLP and softmax cross-entropy, full batch,
an Adam-family optimiser with lr 1e−3, betas (0.9, 0.98) and decoupled weight decay
λ ∈ {0.6, 0.7, 0.8, 0.9, 1.0}, 15 000 epochs. Fig. 1 shows train and test loss (log scale)
against epochs: the train loss reaches ~1e−6 by ≈ 1500 epochs, the test loss drops later, in
≈ 4000–8500 epochs, earlier for larger λ (papers.md §8: [2nd], captions read).

**The upper panels (a, b) are about the discrete optimiser, not gradient flow.** AdamW's decoupled decay
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

**The lower panels (c, d) are the gradient flow** θ' = −∇F(θ) − λθ of the same network, data
and initialisation (`run_flow`): `gflow.sweep` over λ ∈ `flow_lams` with solver "auto" at its
defaults (it finds the ReLU and integrates with Bogacki–Shampine 3(2) at rtol 1e-3; on
cross-entropy it does not race RKC1), and full-batch gradient descent at η = `flow_lr` = 0.2 beside
it on the same save times (the sharpness at θ0 is 6.8, so η·sharpness = 1.35 < 2; `gd_chain`
spaces the saves close to logarithmically in t). Its λ is the flow's own scale, not AdamW's: at
λ = 1e-2 the decay holds the flow's train loss above 0.5 (AdamW's decay per epoch, lr·λ, is
6e−4 to 1e−3, on normalised steps). Clocks of the flow: t_fit, from which the train accuracy stays
≥ 0.99, and t_grok, from which the test accuracy stays ≥ 0.9, with τ_grok = λ·t_grok and the
exponent of t_grok ∝ λ^s fitted over the λ that grokked. Panel (d) draws the test accuracy
against τ = λt: the jumps line up where t_grok ∝ 1/λ. Its plateau at 0.505 is the test pairs
whose mirror (b, a) is a train pair (the model is symmetric in a and b).

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

Measured, the flow (quick size, λ = 1e-3, 2e-3, 4e-3, to t = 10⁴; GD at η = 0.2 in brackets):
the train set is fitted at t = 28.6 for every λ [28.6] (the fast clock does not depend on λ);
t_grok = 4049, 2325, 1200 [3933, 2280, 1200], i.e. τ_grok = 4.05, 4.65, 4.80 and t_grok ∝ λ^−0.88
[λ^−0.86] (the flow and GD one save apart at most: saves 117 and 45 apart there); final test
accuracy 0.996, 1.000, 0.990 [0.996, 1.000, 0.981], final train loss 0.035, 0.072, 0.164 (the
flow's minimiser with decay keeps a positive cross-entropy; AdamW's train loss reaches 2e−7).
Cost: 8 279, 13 370 and 23 474 gradient evaluations for the flow against GD's 49 980 steps per
member (2.1–6.0× fewer); wall time on 2 CPU cores, compilation included, 71 s for the flow's
three members (one per compiled call) and 207 s for GD's vmapped chain. At smoke size (p = 11,
λ = 1e-2 and 2e-2, to t = 500: no grokking) the flow's losses are within 1.1% of GD's and ‖θ‖
within 0.1% (a test), at 5 717 and 10 460 gradient evaluations against GD's 2 500 steps.
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
from ._common import add_tau_axis, caption, gd_chain, require_float64, require_multiple

# Stable ranks recorded at every log (see the module docstring).
SRANK_MATRICES = ("embed", "w1", "head", "logits")
SERIES = ("train_loss", "test_loss", "train_accuracy", "test_accuracy", "norm") + tuple(
    f"srank_{name}" for name in SRANK_MATRICES
)


# The gradient flow of the same network (`run_flow`): its curves (flow_<name>, GD beside it as
# gd_<name>) and its clocks, read off test and train accuracy.
FLOW_SERIES = ("train_loss", "test_loss", "train_accuracy", "test_accuracy", "norm", "srank_logits")
FIT_ACCURACY = 0.99  # the flow has fitted the train set: train accuracy at or above this, for good
GROK_ACCURACY = 0.9  # the flow has generalised: test accuracy at or above this, for good

FIGURE = FigureExperiment.from_toml(__name__)


def check(params) -> None:
    """Refuse parameter combinations the runs cannot use (a `ConfigError` naming the field)."""
    from ..experiments import ConfigError

    require_multiple(params, "epochs", "log_every")
    if not params["lams"] or min(params["lams"]) <= 0:
        raise ConfigError(f"figure.lams must be a list of positive weight decays, got {params['lams']}")
    if not params["eps"] or min(params["eps"]) <= 0:
        raise ConfigError(f"figure.eps must be a list of positive loss levels, got {params['eps']}")
    if not params["flow_lams"] or min(params["flow_lams"]) <= 0:
        raise ConfigError(f"figure.flow_lams must be a list of positive weight decays, got {params['flow_lams']}")
    ends = params["flow_t"]
    if not ends or ends[0] <= 0 or any(b <= a for a, b in zip(ends, ends[1:])):
        raise ConfigError(f"figure.flow_t must be increasing positive times, got {ends}")
    if params["flow_lr"] <= 0 or params["flow_saves"] < 1:
        raise ConfigError(
            f"figure.flow_lr must be a positive step and figure.flow_saves a positive count, got "
            f"{params['flow_lr']} and {params['flow_saves']}"
        )


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


def run_flow(problem, params, *, progress: bool = False) -> xr.Dataset:
    """The gradient flow θ' = −∇F(θ) − λθ of the same network, data and initialisation for every λ
    in `flow_lams`, with full-batch gradient descent beside it on the same times.

    Gradient descent: `gd_chain`, step `flow_lr` throughout, one `gd` call per entry of `flow_t`
    with `flow_saves` saves each (saves close to log-spaced in t = lr·step), vmapped over λ. The
    flow: `gflow.sweep` over λ with solver "auto" at its defaults (it finds the ReLU and takes
    Bogacki–Shampine 3(2) at rtol 1e-3; cross-entropy, so no race with RKC1), saved at GD's times,
    one member per compiled call on a CPU (a vmapped adaptive solve runs every member until the
    slowest ends).

    Returns a Dataset over (flow_lam, flow_time): flow_<name> and gd_<name> for every name of
    `FLOW_SERIES`; per λ the fit time (train accuracy ≥ `FIT_ACCURACY` for good) and the grokking
    time (test accuracy ≥ `GROK_ACCURACY` for good) of both, τ_grok = λ·t_grok of the flow, its
    gradient evaluations, steps and result codes.
    """
    import time

    from .._sweep import sweep

    lams = [float(v) for v in params["flow_lams"]]
    schedule = tuple((float(t_end), float(params["flow_lr"])) for t_end in params["flow_t"])
    start = time.perf_counter()
    t, step, gd_metrics, gd_result = gd_chain(problem, lams, schedule, params["flow_saves"])
    wall_gd = time.perf_counter() - start
    flow = sweep(
        lambda key: problem,
        lam=lams,
        t1=float(t[-1]),
        time="fast",
        saveat=t,
        chunk_size=1 if jax.default_backend() == "cpu" else None,
        progress=progress,
    )
    wall_flow = time.perf_counter() - start - wall_gd

    def member_values(name):  # (λ, seed, …) → (λ, …): one seed
        return np.asarray(flow[name].values)[:, 0]

    def recorded(metrics, name):  # the stable ranks are recorded on the test split (test_srank_*)
        return np.asarray(metrics[f"test_{name}" if name.startswith("srank") else name], float)

    flow_metrics = {k: member_values(k) for k in flow.data_vars}
    data = {}
    for name in FLOW_SERIES:
        data[f"flow_{name}"] = (("flow_lam", "flow_time"), recorded(flow_metrics, name))
        data[f"gd_{name}"] = (("flow_lam", "flow_time"), recorded(gd_metrics, name))
    out = xr.Dataset(
        data, coords={"flow_lam": np.asarray(lams), "flow_t": ("flow_time", t), "flow_step": ("flow_time", step)}
    )
    for prefix in ("flow", "gd"):
        train_acc, test_acc = out[f"{prefix}_train_accuracy"].values, out[f"{prefix}_test_accuracy"].values
        out[f"{prefix}_t_fit"] = (
            "flow_lam",
            np.array([crossing_time(t, a, FIT_ACCURACY, below=False) for a in train_acc]),
        )
        t_grok = np.array([crossing_time(t, a, GROK_ACCURACY, below=False) for a in test_acc])
        out[f"{prefix}_t_grok"] = ("flow_lam", t_grok)
        # t_grok ∝ λ^slope over the λ that grokked (NaN unless two did)
        ok = np.isfinite(t_grok)
        slope = scaling_fit(np.log(np.asarray(lams)[ok]), np.log(t_grok[ok])).slope if ok.sum() >= 2 else math.nan
        out.attrs[f"{prefix}_grok_slope"] = float(slope)
    out["flow_tau_grok"] = ("flow_lam", out["flow_t_grok"].values * np.asarray(lams))
    out["flow_gradients"] = ("flow_lam", flow_metrics["stats_num_gradient_equivalents"].astype(np.int64))
    out["flow_steps"] = ("flow_lam", flow_metrics["stats_num_steps"].astype(np.int64))
    out["flow_result"] = ("flow_lam", flow_metrics["result"].astype(np.int8))
    out["gd_result"] = ("flow_lam", np.asarray(gd_result).astype(np.int8))
    out.attrs.update(
        flow_solver=flow.attrs["solver"],
        flow_rtol=json.loads(flow.attrs["config"])["rtol"],
        wall_gd_s=wall_gd,
        wall_flow_s=wall_flow,
    )
    return out


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


def lams_text(params, field: str = "lams") -> str:
    return "{" + ", ".join(f"{v:g}" for v in params[field]) + "}"


def measure(params, *, progress: bool = False, echo=print) -> xr.Dataset:
    """Train AdamW for every λ (one vmapped scan) and measure the two clocks; then the gradient flow
    of the same network with gradient descent beside it (`run_flow`); returns one Dataset.

    AdamW: dimensions `lam`, `epoch` and `eps`: the recorded series over (lam, epoch), `t_cls` over
    (lam, eps), `t_test`, `cls_r2` and `cls_slope` over lam; `t` = lr·epoch. The flow: dimensions
    `flow_lam` and `flow_time` (`run_flow`).
    """
    import time

    require_float64(FIGURE.name)
    check(params)
    echo(
        f"  AdamW on addition mod {params['p']} (d = {params['embed']}, width {params['width']}), "
        f"λ ∈ {lams_text(params)}: {params['epochs']} epochs in one vmapped scan"
    )
    start = time.perf_counter()
    problem, epochs, logs, _ = train_adamw(params)
    wall_adamw = time.perf_counter() - start
    ds = to_dataset(problem, epochs, logs, clock_times(epochs, logs, params), params)
    ds.attrs["wall_adamw_s"] = wall_adamw
    return add_flow(ds, problem, params, progress=progress, echo=echo)


def add_flow(ds: xr.Dataset, problem, params, *, progress: bool = False, echo=print) -> xr.Dataset:
    """`ds` with the gradient flow of `problem` and GD beside it (`run_flow`) merged in, its
    attributes added; says what runs and what it cost on `echo` (Figs. 1 and 3 both draw it)."""
    echo(
        f"  the gradient flow of the same network, λ ∈ {lams_text(params, 'flow_lams')}, to t = "
        f"{params['flow_t'][-1]:g}, full-batch GD at η = {params['flow_lr']:g} beside it"
    )
    flow = run_flow(problem, params, progress=progress)
    echo(
        f"    the flow ({flow.attrs['flow_solver']}, rtol {flow.attrs['flow_rtol']:g}): "
        f"{', '.join(str(int(g)) for g in flow['flow_gradients'].values)} gradient evaluations "
        f"[{flow.attrs['wall_flow_s']:.1f} s]; GD {int(flow['flow_step'].values[-1])} steps per member "
        f"[{flow.attrs['wall_gd_s']:.1f} s]"
    )
    ds.update(flow)
    ds.attrs.update(flow.attrs)
    ds.attrs["flow"] = (
        "gradient flow dtheta/dt = -grad F - lam theta of the same network, data and init (gflow.sweep, "
        "solver auto); full-batch GD at step flow_lr beside it, t = lr*step"
    )
    return ds


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
    if "flow_lam" in ds.dims:
        rows += flow_summary(ds)
    return rows


def flow_summary(ds: xr.Dataset) -> list[tuple[str, str]]:
    """Per λ of the flow: fit and grokking times of the flow and of GD, τ_grok, the costs."""
    params = json.loads(ds.attrs["params"])
    rows = []
    for i, lam in enumerate(ds["flow_lam"].values):
        rows.append(
            (
                f"flow λ = {lam:g}: t_fit (train acc ≥ {FIT_ACCURACY:g}), t_grok (test acc ≥ {GROK_ACCURACY:g}); "
                f"GD at η = {params['flow_lr']:g}",
                f"{ds['flow_t_fit'].values[i]:.1f}, {ds['flow_t_grok'].values[i]:.0f} (τ = λt = "
                f"{ds['flow_tau_grok'].values[i]:.2f}); GD {ds['gd_t_fit'].values[i]:.1f}, "
                f"{ds['gd_t_grok'].values[i]:.0f}",
            )
        )
        rows.append(
            (
                f"flow λ = {lam:g}: final train / test loss, test accuracy (GD); gradient evaluations",
                f"{ds['flow_train_loss'].values[i, -1]:.3g} / {ds['flow_test_loss'].values[i, -1]:.3g}, "
                f"{ds['flow_test_accuracy'].values[i, -1]:.3f} ({ds['gd_train_loss'].values[i, -1]:.3g} / "
                f"{ds['gd_test_loss'].values[i, -1]:.3g}, {ds['gd_test_accuracy'].values[i, -1]:.3f}); "
                f"{int(ds['flow_gradients'].values[i])} (GD {int(ds['flow_step'].values[-1])} steps)",
            )
        )
    return rows


def plot(ds: xr.Dataset):
    """(a) train (dashed) and test loss over epochs for every λ with T_test marked; (b) T̂_cls(ε)
    against ln(1/ε) with the R² of a straight line; with the flow (`run_flow`): (c) its train and
    test loss over t with GD beneath, (d) its test accuracy over τ = λt."""
    import matplotlib.pyplot as plt

    params = json.loads(ds.attrs["params"])
    lams, epochs = ds["lam"].values, ds["epoch"].values
    test_drop = params["test_drop"]
    with_flow = "flow_lam" in ds.dims
    fig = plt.figure(figsize=(13, 11.5 if with_flow else 6.2), layout="constrained")
    fig.get_layout_engine().set(rect=(0, 0.018, 1, 0.982) if with_flow else (0, 0.03, 1, 0.97))
    axes = fig.subplots(2 if with_flow else 1, 2, width_ratios=(2.1, 1), squeeze=False)
    ax, ax_side = axes[0]
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
    if with_flow:
        _plot_flow(ds, params, *axes[1])
    fig.suptitle(
        f"Addition mod {params['p']}: embedding + ReLU MLP + cross-entropy, full-batch AdamW "
        f"(lr {params['lr']:g}, betas {betas}, decoupled weight decay λ) — Tan et al. Fig. 1"
        + (
            "\nbelow: the gradient flow of the same network, with full-batch gradient descent beside it"
            if with_flow
            else ""
        )
    )
    caption(
        fig,
        f"p = {params['p']}, d = {params['embed']}, width {params['width']}, train fraction "
        f"{params['train_fraction']:g} of ordered pairs, {params['epochs']} epochs, seed {params['seed']}; "
        "(a, b) discrete AdamW, not gradient flow; width, depth, train fraction and seed are our choices",
        size=ds.attrs.get("size"),
    )
    return fig


def _plot_flow(ds: xr.Dataset, params, ax, ax_side) -> None:
    """(c) the flow's train (dashed) and test loss over t for every λ, GD as a wide faint band
    beneath each, t_grok marked; (d) test accuracy over τ = λt: the curves meet where grokking
    time ∝ 1/λ."""
    import matplotlib.pyplot as plt

    lams, t = ds["flow_lam"].values, ds["flow_t"].values
    colors = plt.cm.plasma(np.linspace(0.0, 0.8, len(lams)))
    shown = t > 0  # log axis
    for i, (lam, c) in enumerate(zip(lams, colors, strict=True)):
        for name, style in (("train_loss", "--"), ("test_loss", "-")):
            ax.loglog(t[shown], ds[f"gd_{name}"].values[i][shown], color=c, lw=5, alpha=0.25, ls=style)
            ax.loglog(t[shown], ds[f"flow_{name}"].values[i][shown], color=c, lw=1.4, ls=style)
        ax.plot([], [], color=c, lw=1.4, label=f"λ = {lam:g}")
        t_grok = ds["flow_t_grok"].values[i]
        if math.isfinite(t_grok):
            ax.axvline(t_grok, color=c, ls=":", lw=1)
        ax_side.semilogx(lams[i] * t[shown], ds["gd_test_accuracy"].values[i][shown], color=c, lw=5, alpha=0.25)
        tau_grok = ds["flow_tau_grok"].values[i]
        ax_side.semilogx(
            lams[i] * t[shown],
            ds["flow_test_accuracy"].values[i][shown],
            color=c,
            lw=1.4,
            label=f"λ = {lam:g}: τ_grok = {tau_grok:.2f}",
        )
    ax.plot([], [], color="k", ls="--", lw=1.4, label="train loss (flow)")
    ax.plot([], [], color="k", lw=1.4, label="test loss (flow)")
    ax.plot([], [], color="k", lw=5, alpha=0.25, label=f"GD, η = {params['flow_lr']:g}")
    ax.plot([], [], color="k", ls=":", lw=1, label=f"t_grok (test accuracy ≥ {GROK_ACCURACY:g} for good)")
    ax.set_xlabel("t (ODE time; GD: t = η·step)")
    ax.set_ylabel("cross-entropy (log scale)")
    grokked = ds["flow_t_grok"].values[np.isfinite(ds["flow_t_grok"].values)]
    when = (
        f"generalised at t = {grokked.min():.0f} … {grokked.max():.0f}"
        if grokked.size
        else f"not generalised by t = {t[-1]:g}"
    )
    ax.set_title(
        f"(c) gradient flow ({ds.attrs['flow_solver']}, rtol {ds.attrs['flow_rtol']:g}): train set fitted by "
        f"t = {np.nanmax(ds['flow_t_fit'].values):.0f}, {when}"
    )
    ax.legend(fontsize=8, ncol=2, loc="lower left")
    ax.grid(True, alpha=0.3)
    ax_side.axhline(GROK_ACCURACY, color="0.6", lw=0.8)
    ax_side.text(
        0.08,
        0.56,
        "plateau: test pairs (a, b) whose mirror\n(b, a) is a train pair (f is symmetric)",
        transform=ax_side.transAxes,
        ha="left",
        fontsize=7,
        color="0.35",
    )
    ax_side.set_xlabel("τ = λt (slow time)")
    ax_side.set_ylabel("test accuracy (flow; GD as the wide band)")
    slope = ds.attrs.get("flow_grok_slope", math.nan)
    law = (
        f"t_grok ∝ λ^{slope:.2f} (GD: λ^{ds.attrs['gd_grok_slope']:.2f})"
        if math.isfinite(slope)
        else "(fewer than two λ generalised)"
    )
    ax_side.set_title(f"(d) the test accuracy over τ = λt:\n{law}")
    ax_side.legend(fontsize=8, loc="upper left")
    ax_side.grid(True, alpha=0.3)
