"""Tan, Gai & Zhang, Fig. 1: grokking of addition mod p with AdamW at five weight decays (papers.md §5.5, A14).

The paper's only experiment: addition mod 113, a trainable token embedding (d = 128), the two
token embeddings combined symmetrically, a ReLU MLP and softmax cross-entropy, full batch,
an Adam-family optimiser with lr 1e−3, betas (0.9, 0.98) and decoupled weight decay
λ ∈ {0.6, 0.7, 0.8, 0.9, 1.0}, 15 000 epochs. Fig. 1 shows train and test loss (log scale)
against epochs: the train loss reaches ~1e−6 by ≈ 1500 epochs, the test loss drops later, in
≈ 4000–8500 epochs, earlier for larger λ (papers.md §8: [2nd], captions read).

**This figure is about the discrete optimiser, not gradient flow.** AdamW's decoupled decay
θ ← θ − lr·(m̂/(√v̂ + ε) + λθ) is not the gradient flow of F + (λ/2)‖θ‖² with any
preconditioning (papers.md §1, recommendation 1), so the script runs optax's `adamw` directly:
one jitted `lax.scan` over epochs, vmapped over λ (λ is traced: one compilation for all five).
Time is the epoch count (= optimiser steps, full batch); t = lr·epoch is printed alongside, and
the decay per epoch is lr·λ (the norm of an unforced weight shrinks as e^{−lr·λ·epoch}).

Setup: `gflow.tasks.modular_arithmetic(model="embed_mlp", loss="cross_entropy")`: f(a, b) =
W2 ReLU(W1(E_a + E_b) + b1) (`gflow.models.EmbedMLP`, PyTorch-like init: E ~ 𝒩(0, 1), He for
W1, 1/√h for W2, b1 = 0), all ordered pairs (a, b), a random train split. The loss is evaluated
in batch as ReLU(S E W1ᵀ + b1) W2ᵀ with S the (n × p) rows e_a + e_b, which is the model's
own formula (checked against `jax.vmap(model)` at start-up). optax `adamw(lr, b1=0.9, b2=0.98,
eps=1e−8, weight_decay=λ)` on every parameter (PyTorch `AdamW(model.parameters())` decays all),
no warm-up, no schedule.

Unknowns (papers.md §10.3) and our choices:
- train fraction: 0.3 of the p² ordered pairs at full size (Nanda et al.'s). The model is
  symmetric in (a, b), so a test pair whose mirror (b, a) is in the train set is answered from
  memory: with 30% train, about 30% of the test pairs are such mirrors.
- depth and width: one hidden ReLU layer of width 512 after the summed embedding (full size).
- seeds: split and initialisation from seed 0; the five λ runs share both.
- quick size (ours, to run in minutes on 2 CPU cores): p = 31, hidden width 128, train fraction
  0.5 (a smaller p needs a larger fraction to generalise), 5000 epochs, lr, betas and λ as in
  the paper. Smoke: p = 11, d = 32, h = 64, 600 epochs (checks the plumbing).

Measured and marked: T̂_cls(ε), the first epoch from which the train loss stays ≤ ε (papers.md
§5.5's estimator with the window = the rest of the run) for ε = 1e−1 … 1e−6, with the fit of
T̂_cls against ln(1/ε) (Tan's Prop. 3.6: a per-step contraction of the loss makes this clock
logarithmic for discrete optimisers); and the test drop T_test, the first epoch from which the
test loss stays ≤ 0.1 nats.

Measured (quick size, float64, seed 0; paper numbers at p = 113 in brackets): the train loss
reaches its AdamW floor 2–4e−7 by ≈ 1300 epochs [~1e−6 by ≈ 1500]; T̂_cls(1e−1 … 1e−6) =
175 … 1275 (λ = 0.6) to 200 … 1425 (λ = 1) epochs, about 250 epochs per decade of ε, a straight
line in ln(1/ε) with R² = 0.995–0.997 (Adam's normalised steps make the margins grow linearly,
unlike gradient flow: `tan_deep_linear_two_clocks.py`); T_test = 4275, 3575, 3125, 2700, 2425
epochs for λ = 0.6, 0.7, 0.8, 0.9, 1.0 [test drop ≈ 4000–8500, earlier for larger λ], i.e.
λ·T_test ≈ 2.4–2.6e3: T_test ∝ 1/λ; final test accuracy 0.996–1.000. Runtime of the quick run:
62 s wall (37 s CPU) on 2 cores at load ≈ 6, of which ≈ 10 s compilation.

Writes `tan_fig1_two_clocks.png` and `tan_fig1_two_clocks.nc` (losses, accuracies, ‖θ‖ and
stable ranks over epochs for every λ) into `--out` (default: a new folder
gflow-runs/tan-fig1-two-clocks-<timestamp>).

    python scripts/tan_fig1_two_clocks.py            # quick: p = 31, 5000 epochs (minutes on 2 CPU cores)
    python scripts/tan_fig1_two_clocks.py --smoke    # p = 11, 600 epochs (seconds + compilation)
    python scripts/tan_fig1_two_clocks.py --full     # the paper's size: p = 113, 15 000 epochs (GPU)
"""

from __future__ import annotations

import math
import pathlib
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))  # scripts/ is not a package
import _figure  # noqa: E402

NAME = "tan_fig1_two_clocks"


SIZES = {
    "smoke": {"p": 11, "embed": 32, "width": 64, "train_fraction": 0.5, "epochs": 600, "log_every": 20},
    "quick": {"p": 31, "embed": 128, "width": 128, "train_fraction": 0.5, "epochs": 5000, "log_every": 25},
    "full": {"p": 113, "embed": 128, "width": 512, "train_fraction": 0.3, "epochs": 15000, "log_every": 50},
}
LAMS = (0.6, 0.7, 0.8, 0.9, 1.0)
LR = 1e-3
BETAS = (0.9, 0.98)
ADAM_EPS = 1e-8
SEED = 0
EPS = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6)
TEST_DROP = 0.1  # nats: T_test = first epoch from which the test loss stays below this
# Stable ranks recorded at every log: the embedding E (p × d), the first layer W1 (h × d), the
# head W2 (p × h), and the centred logit table of all p² pairs (p² × p, each row minus its mean:
# softmax ignores that direction), the network's end-to-end map on its whole input space.
SRANK_MATRICES = ("embed", "w1", "head", "logits")


def make_problem(size: dict, seed: int = SEED):
    import gflow

    return gflow.tasks.modular_arithmetic(
        seed,
        p=size["p"],
        op="+",
        pairs="ordered",
        train_fraction=size["train_fraction"],
        loss="cross_entropy",
        model="embed_mlp",
        embed_dim=size["embed"],
        width=size["width"],
    )


def _pair_sums(x, p: int, dtype):
    import jax

    return jax.nn.one_hot(x[:, 0], p, dtype=dtype) + jax.nn.one_hot(x[:, 1], p, dtype=dtype)


def batched_logits(model, s):
    """Logits of `EmbedMLP` for the rows s_i = e_a + e_b of S: W2 ReLU(W1(E_a + E_b) + b1), batched."""
    import jax

    return jax.nn.relu(s @ (model.embed @ model.w1.T) + model.b1) @ model.w2.T


def _cross_entropy(logits, labels):
    import jax
    import jax.numpy as jnp

    picked = jnp.take_along_axis(logits, labels[:, None], axis=-1)[:, 0]
    return jnp.mean(jax.nn.logsumexp(logits, axis=-1) - picked)


def _srank(a, squarings: int = 10):
    """‖A‖²_F/‖A‖²₂ with ‖A‖²₂ the top eigenvalue of the smaller Gram matrix G, by repeated squaring.

    G^(2^k), rescaled to unit trace after each product, tends to the projector on the top
    eigenspace; its largest column u gives ‖A‖²₂ = uᵀGu/uᵀu up to a relative error of order
    (λ₂/λ₁)^(2^(k+1)) (degenerate top eigenvalues, e.g. the pairs of a Fourier solution, are exact).
    Matrix products only: a batched LAPACK eigensolver (`eigvalsh`/`svd`) under vmap inside the
    scan deadlocked XLA's CPU thread pool (jaxlib 0.10.2, 2 cores).
    """
    import jax.numpy as jnp

    g = a.T @ a if a.shape[0] >= a.shape[1] else a @ a.T
    trace = jnp.trace(g)
    h = g / trace
    for _ in range(squarings):
        h = h @ h
        h = h / jnp.trace(h)
    u = h[:, jnp.argmax(jnp.sum(h * h, axis=0))]
    return trace * (u @ u) / (u @ g @ u)


def train_adamw(problem, lams, *, epochs: int, log_every: int, lr: float = LR, betas=BETAS):
    """AdamW (optax) on the full batch, one jitted scan over epochs, vmapped over the weight decays `lams`.

    Returns (epochs_logged, logs, final): `logs` maps each observable to an array (λ, log) logged
    at epoch 0 and every `log_every` epochs; `final` is the model after the last epoch with a
    leading λ axis on every parameter.
    """
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import optax

    if epochs % log_every:
        raise ValueError(f"epochs={epochs} must be a multiple of log_every={log_every}")
    params, static = problem.split()
    model0 = eqx.combine(params, static)
    dtype = model0.embed.dtype
    p = model0.embed.shape[0]
    a_all, b_all = np.meshgrid(np.arange(p), np.arange(p), indexing="ij")
    # Data and initial parameters are arguments of the jitted function, not closed-over constants:
    # XLA would otherwise constant-fold whole evaluations at compile time (the p² × p logit table).
    data = {
        "s_train": _pair_sums(problem.train["x"], p, dtype),
        "s_test": _pair_sums(problem.test["x"], p, dtype),
        "y_train": problem.train["y"],
        "y_test": problem.test["y"],
        "s_all": _pair_sums(jnp.asarray(np.stack([a_all.ravel(), b_all.ravel()], axis=1)), p, dtype),
    }
    reference = jax.vmap(model0)(problem.train["x"][:16])
    check = jnp.max(jnp.abs(batched_logits(model0, data["s_train"][:16]) - reference))
    if not float(check) <= 1e-6 * (1.0 + float(jnp.max(jnp.abs(reference)))):
        raise RuntimeError(f"batched logits differ from the model's own by {float(check):.3g}")

    def accuracy(logits, labels):
        return jnp.mean((jnp.argmax(logits, axis=-1) == labels).astype(logits.dtype))

    def observe(prm, data):
        m = eqx.combine(prm, static)
        lg_train, lg_test = batched_logits(m, data["s_train"]), batched_logits(m, data["s_test"])
        table = batched_logits(m, data["s_all"])
        table = table - jnp.mean(table, axis=1, keepdims=True)
        return {
            "train_loss": _cross_entropy(lg_train, data["y_train"]),
            "test_loss": _cross_entropy(lg_test, data["y_test"]),
            "train_accuracy": accuracy(lg_train, data["y_train"]),
            "test_accuracy": accuracy(lg_test, data["y_test"]),
            "norm": jnp.sqrt(sum(jnp.sum(leaf**2) for leaf in jax.tree.leaves(prm))),
            "srank_embed": _srank(m.embed),
            "srank_w1": _srank(m.w1),
            "srank_head": _srank(m.w2),
            "srank_logits": _srank(table),
        }

    def run_one(lam, prm0, data):
        opt = optax.adamw(lr, b1=betas[0], b2=betas[1], eps=ADAM_EPS, weight_decay=lam)

        def loss(prm):
            return _cross_entropy(batched_logits(eqx.combine(prm, static), data["s_train"]), data["y_train"])

        def step(carry, _):
            prm, state = carry
            grads = jax.grad(loss)(prm)
            updates, state = opt.update(grads, state, prm)
            return (optax.apply_updates(prm, updates), state), None

        def block(carry, _):
            carry, _ = jax.lax.scan(step, carry, None, length=log_every)
            return carry, observe(carry[0], data)

        (final, _), logs = jax.lax.scan(block, (prm0, opt.init(prm0)), None, length=epochs // log_every)
        first = observe(prm0, data)
        logs = {k: jnp.concatenate([first[k][None], v]) for k, v in logs.items()}
        return logs, final

    run = jax.jit(jax.vmap(run_one, in_axes=(0, None, None)))
    logs, final = run(jnp.asarray(lams, dtype), params, data)
    logs = {k: np.asarray(v) for k, v in jax.block_until_ready(logs).items()}
    return np.arange(epochs // log_every + 1) * log_every, logs, eqx.combine(final, static)


def first_stay(epochs, values, threshold: float, *, after: float = 0.0, window: int | None = None) -> float:
    """First logged epoch ≥ `after` from which `values` ≤ `threshold` for `window` logs (None: to the end)."""
    from gflow.analysis import crossing_time

    if window is None:
        return crossing_time(epochs, values, threshold, after=after)
    ok = np.asarray(values) <= threshold
    for i in range(len(epochs)):
        if epochs[i] >= after and i + window <= len(epochs) and ok[i : i + window].all():
            return float(epochs[i])
    return math.nan


def clock_times(epochs, logs, lams) -> dict:
    """T̂_cls(ε) for every λ and ε, the test drop T_test, and the fit of T̂_cls against ln(1/ε)."""
    from gflow.analysis import scaling_fit

    t_cls = np.array([[first_stay(epochs, logs["train_loss"][i], e) for e in EPS] for i in range(len(lams))])
    t_test = np.array([first_stay(epochs, logs["test_loss"][i], TEST_DROP) for i in range(len(lams))])
    x = np.log(1 / np.asarray(EPS))
    r2 = np.full(len(lams), math.nan)
    slope = np.full(len(lams), math.nan)
    for i in range(len(lams)):
        ok = np.isfinite(t_cls[i])
        if ok.sum() >= 3 and np.ptp(t_cls[i][ok]) > 0:
            fit = scaling_fit(x[ok], t_cls[i][ok])
            r2[i], slope[i] = fit.rvalue**2, fit.slope
    return {"t_cls": t_cls, "t_test": t_test, "cls_r2": r2, "cls_slope": slope}


def to_dataset(epochs, logs, lams, size_name: str, size: dict, clocks: dict, extra_attrs=None):
    import xarray as xr

    ds = xr.Dataset(
        {k: (("lam", "epoch"), v) for k, v in logs.items()},
        coords={"lam": np.asarray(lams, float), "epoch": epochs, "eps": np.asarray(EPS)},
    )
    ds["t"] = ("epoch", LR * epochs.astype(float))
    ds["t_cls"] = (("lam", "eps"), clocks["t_cls"])
    ds["t_test"] = ("lam", clocks["t_test"])
    ds["cls_r2"] = ("lam", clocks["cls_r2"])
    ds["cls_slope"] = ("lam", clocks["cls_slope"])
    ds.attrs.update(
        size=size_name,
        p=size["p"],
        embed_dim=size["embed"],
        width=size["width"],
        train_fraction=size["train_fraction"],
        epochs=size["epochs"],
        log_every=size["log_every"],
        seed=SEED,
        optimiser=f"optax.adamw(lr={LR}, b1={BETAS[0]}, b2={BETAS[1]}, eps={ADAM_EPS}, weight_decay=lam), full batch, "
        "all parameters decayed, no warm-up",
        time="epoch (= optimiser step); t = lr*epoch; decoupled decay per epoch lr*lam",
        test_drop_threshold_nats=TEST_DROP,
        **_figure.provenance(),
        **(extra_attrs or {}),
    )
    return ds


def plot(epochs, logs, lams, clocks, size_name: str, size: dict, path: pathlib.Path) -> None:
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(13, 6.2), layout="constrained")
    ax, ax_side = fig.subplots(1, 2, width_ratios=(2.1, 1))
    colors = plt.cm.viridis(np.linspace(0.0, 0.85, len(lams)))
    for i, (lam, c) in enumerate(zip(lams, colors, strict=True)):
        ax.semilogy(epochs, logs["train_loss"][i], color=c, ls="--", lw=1)
        ax.semilogy(epochs, logs["test_loss"][i], color=c, lw=1.6, label=f"λ = {lam:g}")
        if math.isfinite(clocks["t_test"][i]):
            ax.axvline(clocks["t_test"][i], color=c, ls=":", lw=1)
    ax.axhline(TEST_DROP, color="0.6", lw=0.8)
    ax.text(epochs[-1], TEST_DROP, f"test drop level {TEST_DROP:g} ", ha="right", va="bottom", fontsize=8, color="0.4")
    ax.plot([], [], color="k", ls="--", lw=1, label="train loss")
    ax.plot([], [], color="k", lw=1.6, label="test loss")
    ax.plot([], [], color="k", ls=":", lw=1, label="T_test (test loss stays < 0.1)")
    ax.set_xlabel("epoch (full batch: one AdamW step per epoch)")
    ax.set_ylabel("cross-entropy (log scale)")
    ax.set_title("(a) train and test loss: the test loss drops later, and earlier for larger λ")
    ax.legend(fontsize=8, ncol=2, loc="center right")
    ax.grid(True, alpha=0.3)
    top = ax.secondary_xaxis("top", functions=(lambda e: e * LR, lambda t: t / LR))
    top.set_xlabel("t = lr·epoch")

    x = np.log(1 / np.asarray(EPS))
    for i, (lam, c) in enumerate(zip(lams, colors, strict=True)):
        ax_side.plot(
            x, clocks["t_cls"][i], "o-", color=c, ms=4, lw=1, label=f"λ = {lam:g}: R² = {clocks['cls_r2'][i]:.3f}"
        )
    ax_side.set_xlabel("ln(1/ε)")
    ax_side.set_ylabel("T̂_cls(ε) (epochs): train loss stays ≤ ε")
    ax_side.set_title("(b) classifier clock of AdamW: affine in ln(1/ε)\n(R² of a straight-line fit; Tan Prop. 3.6)")
    ax_side.legend(fontsize=8)
    ax_side.grid(True, alpha=0.3)
    fig.suptitle(
        f"Addition mod {size['p']}: embedding + ReLU MLP + cross-entropy, full-batch AdamW "
        f"(lr {LR:g}, betas {BETAS}, decoupled weight decay λ) — Tan et al. Fig. 1"
    )
    fig.supxlabel(
        f"size: {size_name} (p = {size['p']}, d = {size['embed']}, width {size['width']}, train fraction "
        f"{size['train_fraction']:g} of ordered pairs, {size['epochs']} epochs, seed {SEED}); "
        "discrete AdamW, not gradient flow; width, depth, train fraction and seed are our choices",
        fontsize=8,
        color="0.3",
    )
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(out: pathlib.Path, *, size_name: str = "quick", echo=print) -> dict:
    import jax

    jax.config.update("jax_enable_x64", True)

    size = SIZES[size_name]
    problem = make_problem(size)
    echo(
        f"Tan Fig. 1: addition mod {size['p']}, d = {size['embed']}, width {size['width']}, "
        f"{problem.train['y'].shape[0]} train / {problem.test['y'].shape[0]} test pairs, AdamW lr {LR:g} "
        f"betas {BETAS}, λ ∈ {{{', '.join(f'{v:g}' for v in LAMS)}}}, {size['epochs']} epochs, size {size_name}"
    )
    start = time.perf_counter()
    epochs, logs, _ = train_adamw(problem, LAMS, epochs=size["epochs"], log_every=size["log_every"])
    echo(f"  trained {len(LAMS)} runs in one vmapped scan  [{time.perf_counter() - start:.1f} s incl. compilation]")
    clocks = clock_times(epochs, logs, LAMS)
    for i, lam in enumerate(LAMS):
        t_cls = ", ".join(f"{v:.0f}" for v in clocks["t_cls"][i])
        echo(
            f"  λ = {lam:g}: T̂_cls(1e-1 … 1e-6) = {t_cls} epochs (affine in ln(1/ε): R² = {clocks['cls_r2'][i]:.3f}); "
            f"T_test = {clocks['t_test'][i]:.0f}; final train/test loss {logs['train_loss'][i, -1]:.2e}/"
            f"{logs['test_loss'][i, -1]:.2e}, test accuracy {logs['test_accuracy'][i, -1]:.3f}"
        )
    ds = to_dataset(
        epochs,
        logs,
        LAMS,
        size_name,
        size,
        clocks,
        {"experiment": "Tan, Gai & Zhang Fig. 1 (papers.md 5.5, A14): addition mod p with AdamW"},
    )
    png = out / "tan_fig1_two_clocks.png"
    plot(epochs, logs, LAMS, clocks, size_name, size, png)
    nc = out / "tan_fig1_two_clocks.nc"
    ds.to_netcdf(nc, engine="scipy")
    echo(f"  wrote {png} and {nc}")
    return {"dataset": ds, "png": png, "data": nc}


def main(argv=None) -> int:
    parser = _figure.parser(
        __doc__,
        "tan_fig1_two_clocks",
        smoke="p = 11, 600 epochs (seconds)",
        full="the paper's size: p = 113, 15 000 epochs (GPU)",
    )
    args = parser.parse_args(argv)
    return _figure.run_in_new_folder(args.out, NAME, lambda out: run(out, size_name=_figure.size(args)))


if __name__ == "__main__":
    sys.exit(main())
