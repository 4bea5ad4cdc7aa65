r"""Nanda et al.'s grokking transformer as a gradient flow, beside its discrete baselines.

The experiment (papers.md §6, A15): a one-layer transformer (`gflow.models.Transformer1L`) on
a + b mod p, trained full-batch on a fraction of the p² pairs. Nanda et al. train it with AdamW
(lr 1e−3, β = (0.9, 0.98), weight decay 1): it memorises by ~1.4k steps and generalises in a
"cleanup" phase at 9.4k–14k steps, through a few key Fourier frequencies. The seed papers'
theory says the same should happen under the gradient flow with weight decay,

$$\dot\theta = -\nabla F(\theta) - \lambda\theta, \qquad F_\lambda = F + \tfrac{\lambda}{2}\lVert\theta\rVert^2,$$

with a fast phase that fits the training set and a generalisation at slow time τ = λt of
order one. `measure` runs

1. the flow (`gflow.simulate`, parameters saved at log-spaced times t);
2. gradient descent on F_λ at step η = `gd_lr` (`gflow.gd`: time t = kη, the same axis);
3. AdamW, Nanda's optimiser (`gflow.gd(optimizer=...)`; its axis is the step index);
4. a sweep of the flow over λ in slow time (`gflow.sweep`: one compilation; on a CPU one member
   per chunk, `sweep_chunk_size = 1`, since a vmapped adaptive solve runs every member of a chunk
   until its slowest ends; 0 = the sweep's default, the whole grid at once on a GPU), the
   grokking time t(λ) fitted as ln t = slope·ln λ + c (`analysis.fit_inverse_lambda`; the
   theory and Omnigrok's App. C say slope −1);

and along runs 1–3 Nanda's progress measures (`analysis.progress_measures`: restricted and
excluded loss, Gini coefficients, the stable rank of the logit table) with the key frequencies
of the flow's final embedding, and the Fourier energy shares of the embedding per frequency.

Events: "fitted" is the first save from which the train accuracy stays ≥ `fit_accuracy`;
"grokked" the first from which the test accuracy stays ≥ `grok_accuracy` (both at save-grid
resolution).

Sizes (`FIGURE.sizes`): quick is p = 31 with half of the 961
pairs training, d_model 32, 4 heads, d_mlp 128, a **GELU** MLP (the flow of a ReLU MLP is
non-smooth and costs about 7 times as many steps: 115k bosh3 steps against 7k tsit5 steps at
this size) in **float32**; full is Nanda's p = 113, 30%, 128/4/512, ReLU, for a GPU, its flow by
Bogacki–Shampine at rtol 1e−3 (`solver="auto"`'s rule for kinks: RKC crawls at ReLU kinks, see
`nanda_transformer.toml`).

Solver (quick size): `rkc` (`gflow.RKC`, Runge–Kutta–Chebyshev) for the flow and the sweep. The flow stays
stiff after the fit: cross-entropy with weight decay never reaches zero loss, and the sharpness
(top Hessian eigenvalue, power method) measured along the quick run at λ = 2e−3 rises from 2.2
at θ0 to 24 at the fit and 34 at τ = 10, i.e. 1.7·10⁴ in slow-time units (at λ = 1e−3 it peaks
at 18 at the fit and falls to 0.7 by τ = 10), so an explicit Runge–Kutta method is held at
h ≲ 3/sharpness. Measured on the quick size (float32, rtol 1e−4,
2 CPU cores): the flow at λ = 1e−3 to t = 10⁴ took 4.7·10³ gradient-equivalents with RKC
against 4.2·10⁴ with Tsit5 (`solver="auto"`'s choice for cross-entropy), 20 s against 70 s,
with the same fit and grokking times on the save grid; the λ = 2e−3 member of the sweep to τ = 10
took 1.0·10⁴ against 1.9·10⁵ (50 s against 384 s), every saved accuracy equal to 3 digits.

Gradient descent at the quick size's η = 0.5 is past its stable step 2/sharpness ≈ 0.11 around
the fit (sharpness 18 at λ = 1e−3): there it runs at the edge of stability rather than along the
flow, and it groks 2.4 times earlier (t = 1.6·10³ against the flow's 3.9·10³; fit times 200 and
189). A step below 0.1 would follow the flow but needs ten times the quick size's 2·10⁴ steps.
"""

from __future__ import annotations

import json
import math
import time

import equinox as eqx
import jax
import numpy as np
import optax
import xarray as xr

from .. import tasks
from .._gd import gd
from .._simulate import simulate
from .._sweep import sweep
from ..analysis import crossing_time, fit_inverse_lambda, key_frequencies, progress_measures
from ..experiments import TaskFactory
from . import FigureExperiment
from ._common import require_in, require_multiple

TASK_FIELDS = ("p", "train_fraction", "d_model", "n_heads", "d_mlp", "activation", "loss", "alpha", "dtype")
RUNS = ("flow", "gd", "adamw")
# Nanda's progress measures kept per save (fields of analysis.ProgressMeasures).
MEASURES = ("restricted_loss", "excluded_loss", "embed_gini", "logit_map_gini", "logit_stable_rank")


FIGURE = FigureExperiment.from_toml(__name__)


def task_kwargs(params) -> dict:
    """The keyword arguments of `gflow.tasks.modular_transformer` among the figure's parameters."""
    return {k: params[k] for k in TASK_FIELDS}


def build_problem(params):
    """The figure's Problem: `modular_transformer` at key PRNGKey(seed)."""
    return tasks.modular_transformer(jax.random.PRNGKey(params["seed"]), **task_kwargs(params))


def check(params) -> None:
    """Refuse parameter combinations the runs cannot use (a `ConfigError` saying what to change)."""
    from ..experiments import ConfigError

    steps = params["t1"] / params["gd_lr"]
    if params["gd_lr"] <= 0 or abs(steps - round(steps)) > 1e-6 * steps or round(steps) % params["gd_saves"]:
        raise ConfigError(
            f"figure.t1/figure.gd_lr = {steps:g} GD steps must be an integer multiple of figure.gd_saves "
            f"= {params['gd_saves']}; change gd_lr or gd_saves"
        )
    require_multiple(params, "adamw_steps", "adamw_saves")
    if not params["sweep_lam"] or min(params["sweep_lam"]) <= 0:
        raise ConfigError(f"figure.sweep_lam must be a list of positive weight decays, got {params['sweep_lam']}")
    require_in(params, "t_min", 0, "t1")


def _saved_models(traj):
    """The model at every save of a run made with `save_params=True` (None where not finite)."""
    for i in range(traj.ts.shape[0]):
        params = jax.tree.map(lambda x: x[i], traj.params)
        finite = all(bool(np.all(np.isfinite(np.asarray(x)))) for x in jax.tree.leaves(params))
        yield eqx.combine(params, traj.final) if finite else None


def _measures_along(traj, problem, frequencies, n_freq) -> dict[str, np.ndarray]:
    """Progress measures and the embedding's Fourier energy shares at every save of `traj`."""
    n = traj.ts.shape[0]
    out = {name: np.full(n, np.nan) for name in MEASURES}
    out["frequency_share"] = np.full((n, n_freq), np.nan)
    for i, model in enumerate(_saved_models(traj)):
        if model is None:
            continue
        pm = progress_measures(model, problem, frequencies=frequencies)
        for name in MEASURES:
            out[name][i] = getattr(pm, name)
        out["frequency_share"][i] = key_frequencies(model.embed).shares
    return out


def _event_times(t, metrics, params) -> tuple[float, float]:
    t_fit = crossing_time(t, np.asarray(metrics["train_accuracy"]), params["fit_accuracy"], below=False)
    t_grok = crossing_time(t, np.asarray(metrics["test_accuracy"]), params["grok_accuracy"], below=False)
    return t_fit, t_grok


def measure(params, *, progress: bool = False, echo=print) -> xr.Dataset:
    """Run the figure's four runs and measurements (see the module docstring); returns one Dataset.

    Dimensions: `flow_t`, `gd_t` (ODE time), `adamw_step`, `frequency` (k = 1 … (p−1)/2),
    `sweep_lam` and `sweep_tau`. Variables are prefixed by their run (`flow_test_accuracy`,
    `adamw_excluded_loss`, `sweep_test_accuracy`, …); attributes hold the event times, the key
    frequencies, the λ fit, solver statistics and wall times.
    """
    check(params)
    problem = build_problem(params)
    lam, t1, rtol = params["lam"], params["t1"], params["rtol"]
    atol = rtol * 1e-3
    walls = {}

    echo(f"  1/4 flow: simulate to t = {t1:g} at λ = {lam:g} ({params['solver']}, rtol {rtol:g})")
    start = time.perf_counter()
    saveat = np.concatenate([[0.0], np.geomspace(params["t_min"], t1, params["saves"] - 1)])
    flow = simulate(
        problem, lam, t1, solver=params["solver"], saveat=saveat, rtol=rtol, atol=atol,
        max_steps=params["max_steps"], save_params=True, progress=progress,
    )  # fmt: skip
    jax.block_until_ready(flow)
    walls["flow"] = time.perf_counter() - start

    echo(f"  2/4 gd: {round(t1 / params['gd_lr'])} steps of η = {params['gd_lr']:g} at λ = {lam:g}")
    start = time.perf_counter()
    steps = round(t1 / params["gd_lr"])
    descent = gd(
        problem, lam, lr=params["gd_lr"], steps=steps, save_every=steps // params["gd_saves"], save_params=True
    )
    jax.block_until_ready(descent)
    walls["gd"] = time.perf_counter() - start

    echo(
        f"  3/4 adamw: {params['adamw_steps']} steps, lr {params['adamw_lr']:g}, "
        f"weight decay {params['adamw_weight_decay']:g}"
    )
    start = time.perf_counter()

    def adamw(weight_decay):
        return optax.adamw(params["adamw_lr"], b1=0.9, b2=0.98, weight_decay=weight_decay)

    adam = gd(
        problem,
        params["adamw_weight_decay"],
        optimizer=adamw,
        steps=params["adamw_steps"],
        save_every=params["adamw_steps"] // params["adamw_saves"],
        save_params=True,
    )
    jax.block_until_ready(adam)
    walls["adamw"] = time.perf_counter() - start

    echo(f"  4/4 sweep: λ ∈ {params['sweep_lam']} to τ = {params['sweep_tau1']:g}")
    start = time.perf_counter()
    tau1 = params["sweep_tau1"]
    # Log-spaced in τ from where the fast phase of the largest λ is under way.
    tau_grid = np.concatenate([[0.0], np.geomspace(tau1 * 1e-3, tau1, params["sweep_saves"] - 1)])
    grid = sweep(
        TaskFactory("modular_transformer", tuple(sorted(task_kwargs(params).items()))),
        lam=np.asarray(params["sweep_lam"], float),
        seed=[params["seed"]],
        t1=tau1,
        time="slow",
        solver=params["solver"],
        saveat=tau_grid,
        rtol=rtol,
        atol=atol,
        max_steps=params["max_steps"],
        chunk_size=params["sweep_chunk_size"] or None,
        progress=progress,
    ).isel(seed=0)
    walls["sweep"] = time.perf_counter() - start

    start = time.perf_counter()
    key = key_frequencies(flow.final.embed).key
    n_freq = (params["p"] - 1) // 2
    per_run = {"flow": flow, "gd": descent, "adamw": adam}
    data, coords = {}, {"frequency": np.arange(1, n_freq + 1)}
    attrs = {"params": json.dumps(params), "key_frequencies": np.asarray(sorted(key.tolist()), np.int64)}
    for name, traj in per_run.items():
        axis = "adamw_step" if name == "adamw" else f"{name}_t"
        t = np.asarray(traj.ts, float)
        coords[axis] = t
        for metric, values in traj.metrics.items():
            data[f"{name}_{metric}"] = (axis, np.asarray(values, float))
        for measure_name, values in _measures_along(traj, problem, key, n_freq).items():
            dims = (axis, "frequency") if values.ndim == 2 else (axis,)
            data[f"{name}_{measure_name}"] = (dims, values)
        t_fit, t_grok = _event_times(t, traj.metrics, params)
        attrs[f"{name}_t_fit"], attrs[f"{name}_t_grok"] = t_fit, t_grok
        attrs[f"{name}_result"] = traj.message
        # Gradient-equivalents where the solver counts more than gradients (RKC's power
        # iterations: an HVP counts 2); a plain gradient count otherwise.
        attrs[f"{name}_grad_evals"] = int(traj.stats.get("num_gradient_equivalents", traj.stats["num_vf_evals"]))
        attrs[f"{name}_final_test_accuracy"] = float(traj.metrics["test_accuracy"][-1])
    attrs["flow_solver"] = flow.solver
    attrs["flow_steps"] = int(flow.stats["num_steps"])
    attrs["flow_key_frequency_share"] = float(key_frequencies(flow.final.embed).shares[key - 1].sum())

    lams = np.asarray(grid["lam"].values, float)
    coords["sweep_lam"], coords["sweep_tau"] = lams, np.asarray(grid["tau"].values, float)
    for metric in ("train_accuracy", "test_accuracy", "train_loss", "test_loss", "norm"):
        data[f"sweep_{metric}"] = (("sweep_lam", "sweep_tau"), np.asarray(grid[metric].values, float))
    sweep_fit, sweep_grok = [], []
    for i in range(lams.size):
        t = coords["sweep_tau"] / lams[i]
        metrics = {m: grid[m].values[i] for m in ("train_accuracy", "test_accuracy")}
        t_fit, t_grok = _event_times(t, metrics, params)
        sweep_fit.append(t_fit)
        sweep_grok.append(t_grok)
    data["sweep_t_fit"] = ("sweep_lam", np.asarray(sweep_fit))
    data["sweep_t_grok"] = ("sweep_lam", np.asarray(sweep_grok))
    data["sweep_ok"] = ("sweep_lam", np.asarray(grid["ok"].values, bool).astype(np.int8))
    if np.isfinite(sweep_grok).sum() >= 3:
        fit = fit_inverse_lambda(np.asarray(sweep_grok), lams, loglog=True)
        attrs["sweep_slope"], attrs["sweep_slope_ci"] = fit.slope, np.asarray(fit.slope_ci)
    else:  # a line through two points has no confidence interval; through fewer, no slope
        finite = np.isfinite(sweep_grok)
        attrs["sweep_slope"] = (
            float(np.diff(np.log(np.asarray(sweep_grok)[finite]))[0] / np.diff(np.log(lams[finite]))[0])
            if finite.sum() == 2
            else math.nan
        )
        attrs["sweep_slope_ci"] = np.asarray([math.nan, math.nan])
    walls["measures"] = time.perf_counter() - start
    attrs.update({f"wall_{k}_s": v for k, v in walls.items()})
    return xr.Dataset(data, coords=coords, attrs=attrs)


def _fmt(t: float) -> str:
    return "never" if not math.isfinite(t) else f"{t:.3g}"


def summary(ds: xr.Dataset) -> list[tuple[str, str]]:
    """The figure's key numbers as (quantity, value) rows."""
    a = ds.attrs
    params = json.loads(a["params"])
    lam = params["lam"]
    rows = [
        (
            "key frequencies (flow, final embedding)",
            ", ".join(str(int(k)) for k in np.atleast_1d(a["key_frequencies"])),
        ),
        ("their share of the embedding's Fourier energy", f"{a['flow_key_frequency_share']:.2f}"),
    ]
    for run, unit in (("flow", "t"), ("gd", "t"), ("adamw", "step")):
        fit, grok = a[f"{run}_t_fit"], a[f"{run}_t_grok"]
        where = f" (τ = {lam * fit:.3g} / {lam * grok:.3g})" if unit == "t" else ""
        rows.append(
            (
                f"{run}: fitted / grokked ({unit})",
                f"{_fmt(fit)} / {_fmt(grok)}{where}; final test accuracy {a[f'{run}_final_test_accuracy']:.3f}",
            )
        )
    rows.append(
        ("flow solver", f"{a['flow_solver']}: {a['flow_steps']} steps, {a['flow_grad_evals']} gradient-equivalents")
    )
    rows.append(("gd / adamw gradient evaluations", f"{a['gd_grad_evals']} / {a['adamw_grad_evals']}"))
    lams = ds["sweep_lam"].values
    groks = ds["sweep_t_grok"].values
    rows.append(
        (
            "sweep: grokking time t (τ) per λ",
            ", ".join(f"λ={lm:g}: {_fmt(g)} ({_fmt(lm * g)})" for lm, g in zip(lams, groks, strict=True)),
        )
    )
    lo, hi = np.asarray(a["sweep_slope_ci"], float)
    ci = f", 95% CI [{lo:.2f}, {hi:.2f}]" if np.isfinite(lo) else ""
    rows.append(("sweep: slope of ln t_grok against ln λ (theory −1)", f"{a['sweep_slope']:.2f}{ci}"))
    rows.append(
        (
            "wall time (s): flow, gd, adamw, sweep",
            ", ".join(f"{a[f'wall_{k}_s']:.0f}" for k in ("flow", "gd", "adamw", "sweep")),
        )
    )
    return rows


def _event_lines(ax, ds, run, color, *, scale=1.0):
    for key, style in (("t_fit", ":"), ("t_grok", "--")):
        t = ds.attrs[f"{run}_{key}"]
        if math.isfinite(t) and t > 0:
            ax.axvline(t * scale, color=color, ls=style, lw=0.9, alpha=0.8)


def plot(ds: xr.Dataset):
    """The 2×3 figure: accuracies of the flow and GD (log t, τ on top) and of AdamW (log step);
    the embedding's Fourier energy per frequency along the flow; the progress measures along the
    flow and along AdamW; the sweep over λ in slow time with its fitted exponent."""
    import matplotlib.pyplot as plt

    params = json.loads(ds.attrs["params"])
    lam = params["lam"]
    key = set(int(k) for k in np.atleast_1d(ds.attrs["key_frequencies"]))
    fig, axes = plt.subplots(2, 3, figsize=(16, 9), constrained_layout=True)

    ax = axes[0, 0]
    for run, color in (("flow", "C0"), ("gd", "C1")):
        t = ds[f"{run}_t"].values
        label = "flow" if run == "flow" else f"GD η = {params['gd_lr']:g}"
        ax.plot(t[1:], ds[f"{run}_train_accuracy"].values[1:], color=color, ls="--", label=f"{label}: train")
        ax.plot(t[1:], ds[f"{run}_test_accuracy"].values[1:], color=color, label=f"{label}: test")
        _event_lines(ax, ds, run, color)
    ax.set_xscale("log")
    ax.set_xlabel("t (ODE time; GD: t = kη)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"(a) gradient flow with weight decay λ = {lam:g}")
    ax.legend(fontsize=8, loc="upper left")
    top = ax.secondary_xaxis("top", functions=(lambda t: lam * t, lambda tau: tau / lam))
    top.set_xlabel("τ = λt")

    ax = axes[0, 1]
    step = ds["adamw_step"].values
    ax.plot(step[1:], ds["adamw_train_accuracy"].values[1:], color="C2", ls="--", label="train")
    ax.plot(step[1:], ds["adamw_test_accuracy"].values[1:], color="C2", label="test")
    _event_lines(ax, ds, "adamw", "C2")
    ax.set_xscale("log")
    ax.set_xlabel("AdamW step")
    ax.set_ylabel("accuracy")
    ax.set_title(
        f"(b) AdamW (Nanda): lr {params['adamw_lr']:g}, weight decay {params['adamw_weight_decay']:g}"
    )  # fmt: skip
    ax.legend(fontsize=8, loc="upper left")

    ax = axes[0, 2]
    t = ds["flow_t"].values
    shares = ds["flow_frequency_share"].values
    for j, k in enumerate(ds["frequency"].values):
        if int(k) in key:
            ax.plot(t[1:], shares[1:, j], lw=2, label=f"k = {int(k)}")
        else:
            ax.plot(t[1:], shares[1:, j], color="0.7", lw=0.7)
    ax.axhline(1 / shares.shape[1], color="k", ls=":", lw=0.8, label="uniform share")
    _event_lines(ax, ds, "flow", "C0")
    ax.set_xscale("log")
    ax.set_xlabel("t (ODE time)")
    ax.set_ylabel("share of the embedding's Fourier energy")
    ax.set_title("(c) flow: embedding's Fourier energy per frequency")
    ax.legend(fontsize=8, loc="upper left")

    for ax, run, axis, xlabel, title in (
        (axes[1, 0], "flow", "flow_t", "t (ODE time)", "(d) flow: progress measures"),
        (axes[1, 1], "adamw", "adamw_step", "AdamW step", "(e) AdamW: progress measures"),
    ):
        x = ds[axis].values[1:]
        ax.plot(x, ds[f"{run}_train_loss"].values[1:], color="C0", label="train loss")
        ax.plot(x, ds[f"{run}_test_loss"].values[1:], color="C3", label="test loss")
        ax.plot(x, ds[f"{run}_restricted_loss"].values[1:], color="C2", label="restricted loss (key freqs only)")
        ax.plot(x, ds[f"{run}_excluded_loss"].values[1:], color="C4", label="excluded loss (key freqs removed)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("cross-entropy")
        ax.set_title(title)
        _event_lines(ax, ds, run, "0.3")
        right = ax.twinx()
        right.plot(
            x, ds[f"{run}_embed_gini"].values[1:], color="k", ls="-.", lw=1, label="Gini of W_E's Fourier energy"
        )
        right.set_ylim(0, 1)
        right.set_ylabel("Gini coefficient")
        lines = ax.get_lines()[:4] + right.get_lines()
        ax.legend(lines, [ln.get_label() for ln in lines], fontsize=7, loc="lower left")
    if lam > 0:
        top = axes[1, 0].secondary_xaxis("top", functions=(lambda t: lam * t, lambda tau: tau / lam))
        top.set_xlabel("τ = λt")

    ax = axes[1, 2]
    tau = ds["sweep_tau"].values
    for i, lm in enumerate(ds["sweep_lam"].values):
        ax.plot(tau[1:], ds["sweep_test_accuracy"].values[i, 1:], color=f"C{i}", label=f"λ = {lm:g}: test")
        ax.plot(tau[1:], ds["sweep_train_accuracy"].values[i, 1:], color=f"C{i}", ls="--", lw=0.8)
        g = ds["sweep_t_grok"].values[i]
        if math.isfinite(g):
            ax.axvline(lm * g, color=f"C{i}", ls="--", lw=0.9)  # grokked, as in the other panels
    lo, hi = np.asarray(ds.attrs["sweep_slope_ci"], float)
    ci = f" [{lo:.2f}, {hi:.2f}]" if np.isfinite(lo) else ""
    ax.set_xscale("log")
    ax.set_xlabel("τ = λt (slow time)")
    ax.set_ylabel("accuracy (dashed: train)")
    ax.set_title(
        f"(f) flow over λ, slow time: slope of ln t_grok\nagainst ln λ {ds.attrs['sweep_slope']:.2f}{ci} (theory −1)"
    )
    ax.legend(fontsize=8, loc="upper left")

    fig.suptitle(
        f"Nanda's transformer on a + b mod {params['p']} ({params['train_fraction']:.0%} of pairs train; "
        f"d_model {params['d_model']}, {params['n_heads']} heads, {params['activation']} MLP {params['d_mlp']}, "
        f"{params['dtype']}). Dotted: fitted (train acc ≥ {params['fit_accuracy']:g}); "
        f"dashed: grokked (test acc ≥ {params['grok_accuracy']:g})",
        fontsize=11,
    )
    return fig
