"""A linear model groks addition from the single sample 1 + 1 = 2 (Musat, Fig. 1; papers.md E2.1, A9).

What the paper's figure shows: ŷ = w1x1 + w2x2 trained on the one sample x = (1, 1), y = 2 from
(w1, w2) = (−1, 1) with weight decay λ ∈ {0.01, 0.1, 0.2}. The train loss is tiny after ≈ 10
steps, the test loss (100 Gaussian pairs, y = x1 + x2) only after a few hundred; smaller λ gives
a lower final loss and a longer wait. In the (w1, w2) plane the weights go fast to ≈ (0, 2) on
the zero-loss line w1 + w2 = 2, then slowly along it to ≈ (1, 1), the minimum-norm point.

Setup: `gflow.tasks.musat_addition` (2 weights, init (−1, 1), 100 test pairs from seed 0),
integrated by `gflow.simulate` (Tsit5, rtol 1e-12, atol 1e-14, float64), one run per λ.

Time and weight-decay convention (papers.md §1). Musat runs GD on 𝓛_λ = (ŷ − y)² + λ_M‖w‖²
(no ½); his flow is dw/dt_M = −∇𝓛_λ. gflow integrates dw/dt = −∇F_λ with F = ½(ŷ − y)²
(½·mean over the one sample) and F_λ = F + (λ/2)‖w‖². Since 𝓛_λ = 2F_{λ_M}, Musat's run at λ_M
is gflow's at **λ = λ_M in time t = 2 t_M**; slow time τ = λt = 2λ_M t_M is the same in both.
(papers.md §1's "λ_M = λ/2" holds for an unhalved F; with gflow's ½ it is λ = λ_M, t = 2t_M.)
Musat's train loss is (ŷ − y)² = 2F and his test loss mean((ŷ − y)²) = 2 × gflow's test_loss.
**Every axis of the figure is in Musat's time t_M** (= η·steps for GD at step η on his 𝓛), or
in his slow time 2λ_M t_M.

Exact solution [papers.md E2.1, INFERRED]: with s = (w1 + w2)/√2 and d = (w1 − w2)/√2,

    d(t_M) = −√2·e^{−2λ_M t_M}                                 (= −√2·e^{−λt} in gflow time)
    s(t_M) = s∞·(1 − e^{−(4 + 2λ_M) t_M}),  s∞ = 2√2/(2 + λ_M)   (= s∞(1 − e^{−(2 + λ)t}))

so w → w1 = w2 = 2/(2 + λ), the final train loss is (2λ/(2 + λ))² (Musat's, = 2F) and, on
the test set, mean((ŷ − y)²) → (w − 1)ᵀΣ̂(w − 1) with Σ̂ the test inputs' second moment. The
figure overlays this solution as dashed lines.

Details the paper does not give, and our choices (papers.md §10.4): the learning rate (we
integrate the flow; the top axis converts to GD steps at η = 0.1, the rate that makes "train
loss low after ≈ 10 steps" true [INFERRED]); the test inputs (seed 0 of `musat_addition`);
the "grokking time" (ours: the first t_M from which Musat's test MSE stays ≤ 0.1, 1/20 of its
plateau ≈ 2, interpolated in log t between save points). Expected: t_grok ∝ 1/λ (log-log slope
−1; the floor 2λ²/(2 + λ)² of the test loss bends it by ≈ 2% at λ = 0.2).

Sizes (`FIGURE.sizes`): the toy is already the paper's size at every size; they differ only in
the number of log-spaced save times per run (`saves`: smoke 40, quick 300, full 1000). Each run
ends at Musat slow time 2λt_M = `slow_end` (30: the drift is then √2·e^{−30} ≈ 1e−13), and the
report times 2λt_M ∈ `report_slow_times` are saved exactly, for the drift check.

The figure: (a) train and test loss against log t_M, (b) the weight path in the (w1, w2) plane,
(c) the drift |d| against slow time 2λt_M, all with the exact solution dashed. Dataset: dims
(lam, time), losses in Musat's convention.
"""

from __future__ import annotations

import json
import math

import numpy as np
import xarray as xr

from . import FigureExperiment
from ._common import caption, require_float64
from ._musat import exact_weights, simulate_musat_time

FIGURE = FigureExperiment.from_toml(__name__)


def check(params) -> None:
    """Refuse parameter combinations the runs cannot use (a `ConfigError` naming the field)."""
    from ..experiments import ConfigError

    if not params["lams"] or min(params["lams"]) <= 0:
        raise ConfigError(f"figure.lams must be a list of positive weight decays, got {params['lams']}")
    if len(params["init"]) != 2:
        raise ConfigError(f"figure.init must have 2 entries (w1, w2), got {params['init']}")
    if params["saves"] < 2:
        raise ConfigError(f"figure.saves must be at least 2, got {params['saves']}")
    if not 0 < params["t_min"] < params["slow_end"] / (2 * max(params["lams"])):
        raise ConfigError(f"figure.t_min must be in (0, slow_end/(2 max λ)), got {params['t_min']}")


def save_times(lam: float, params) -> np.ndarray:
    """0, log-spaced Musat times from t_min to the end, and the report times 2λt_M ∈ report_slow_times."""
    end = params["slow_end"] / (2.0 * lam)
    extra = [s / (2.0 * lam) for s in params["report_slow_times"]]
    # The length does not depend on λ, so one compiled solve serves every λ.
    return np.unique(np.concatenate([[0.0], np.geomspace(params["t_min"], end, params["saves"]), extra]))


def grokking_time(t_m, test_mse, threshold: float) -> float:
    """First t_M from which `test_mse` stays ≤ threshold, interpolated linearly in (log t, log loss)."""
    from ..analysis import crossing_time

    t_m = np.asarray(t_m)
    test_mse = np.asarray(test_mse)
    t_cross = crossing_time(t_m, test_mse, threshold)
    if not math.isfinite(t_cross):
        return math.nan
    i = int(np.searchsorted(t_m, t_cross))
    if i == 0 or t_m[i - 1] <= 0:
        return t_cross
    x0, x1 = np.log(t_m[i - 1]), np.log(t_m[i])
    y0, y1 = np.log(test_mse[i - 1]), np.log(test_mse[i])
    return float(np.exp(x0 + (np.log(threshold) - y0) * (x1 - x0) / (y1 - y0)))


def simulate_runs(params) -> dict:
    """One gflow run per λ (λ_M = λ, t = 2t_M); everything in Musat's convention, arrays (lam, time)."""
    from .. import tasks

    lams, init = params["lams"], tuple(params["init"])
    problem = tasks.musat_addition(params["test_seed"], n_weights=2, init=init)
    x_test = np.asarray(problem.test["x"])
    y_test = np.asarray(problem.test["y"])
    out = {k: [] for k in ("t_m", "w", "train_mse", "test_mse", "num_steps")}
    for lam in lams:
        t_m = save_times(lam, params)
        traj = simulate_musat_time(problem, lam, t_m, params, f"λ = {lam}")
        out["t_m"].append(t_m)
        out["w"].append(np.asarray(traj.params.w))
        out["train_mse"].append(2.0 * np.asarray(traj.metrics["train_loss"]))  # (ŷ − y)² = 2F
        out["test_mse"].append(2.0 * np.asarray(traj.metrics["test_loss"]))  # mean((ŷ − y)²)
        out["num_steps"].append(int(traj.stats["num_steps"]))
    res = {k: np.asarray(v) for k, v in out.items()}
    res["lams"] = np.asarray(lams, float)
    res["w_exact"] = np.stack([exact_weights(init, lam, t) for lam, t in zip(lams, res["t_m"], strict=True)])
    res["train_mse_exact"] = (res["w_exact"].sum(-1) - 2.0) ** 2
    res["test_mse_exact"] = np.mean((res["w_exact"] @ x_test.T - y_test[None, None, :]) ** 2, axis=-1)
    res["grok_time"] = np.array(
        [grokking_time(t, v, params["grok_threshold"]) for t, v in zip(res["t_m"], res["test_mse"], strict=True)]
    )
    return res


def drift_errors(res: dict, report_slow_times) -> np.ndarray:
    """max relative error of d = (w1 − w2)/√2 against −√2 e^{−2λt_M} at the report times, per λ."""
    errs = []
    for lam, t_m, w in zip(res["lams"], res["t_m"], res["w"], strict=True):
        idx = [int(np.argmin(np.abs(2 * lam * t_m - s))) for s in report_slow_times]
        d = (w[idx, 0] - w[idx, 1]) / math.sqrt(2)
        exact = -math.sqrt(2) * np.exp(-2 * lam * t_m[idx])
        errs.append(np.max(np.abs(d / exact - 1)))
    return np.asarray(errs)


def measure(params, *, progress: bool = False, echo=print) -> xr.Dataset:
    """One flow per λ against the closed form; returns the Dataset (dims lam, time) of the figure."""
    from ..analysis import fit_inverse_lambda

    require_float64(FIGURE.name)  # the checks go to 1e-9
    check(params)
    lam_list = ", ".join(f"{lam:g}" for lam in params["lams"])
    echo(
        f"  E2.1/A9: ŷ = w1x1 + w2x2, sample (1, 1) → 2, init {tuple(params['init'])}, λ ∈ {{{lam_list}}} "
        "(Musat's λ_M = gflow's λ)"
    )
    res = simulate_runs(params)
    echo(f"  simulated {len(params['lams'])} runs (Tsit5, rtol {params['rtol']:g}), steps {res['num_steps'].tolist()}")
    errs = drift_errors(res, params["report_slow_times"])
    fit = fit_inverse_lambda(res["grok_time"], res["lams"], loglog=True)
    w_fast = exact_weights(params["init"], params["lams"][0], [2.0])[0]

    threshold = params["grok_threshold"]
    dims = ("lam", "time")
    return xr.Dataset(
        {
            "t_m": (dims, res["t_m"], {"long_name": "Musat time t_M (gflow t = 2 t_M)"}),
            "w1": (dims, res["w"][..., 0]),
            "w2": (dims, res["w"][..., 1]),
            "w1_exact": (dims, res["w_exact"][..., 0]),
            "w2_exact": (dims, res["w_exact"][..., 1]),
            "train_mse": (dims, res["train_mse"], {"long_name": "(y_hat - y)^2 on the training sample"}),
            "test_mse": (dims, res["test_mse"], {"long_name": "mean (y_hat - y)^2 over the test pairs"}),
            "train_mse_exact": (dims, res["train_mse_exact"]),
            "test_mse_exact": (dims, res["test_mse_exact"]),
            "grok_time": ("lam", res["grok_time"], {"long_name": f"first t_M with test_mse <= {threshold}"}),
            "drift_rel_error": ("lam", errs),
            "num_steps": ("lam", res["num_steps"]),
        },
        coords={"lam": res["lams"], "time": np.arange(res["t_m"].shape[1])},
        attrs={
            "params": json.dumps(params),
            "convention": "Musat L = (y_hat - y)^2 + lam ||w||^2 is gflow 2 F_lam: gflow lam = Musat lam, t = 2 t_M; "
            "losses stored in Musat's convention",
            "solver": f"tsit5, rtol {params['rtol']}, atol {params['atol']}",
            "grok_threshold": threshold,
            "grok_loglog_slope": fit.slope,
            "grok_loglog_slope_ci": np.asarray(fit.slope_ci, float),
            "w_fast_exact": np.asarray(w_fast, float),
        },
    )


def _results(ds: xr.Dataset) -> dict:
    """The dict of arrays the plotting code reads, rebuilt from the dataset."""
    w = np.stack([ds["w1"].values, ds["w2"].values], axis=-1)
    w_exact = np.stack([ds["w1_exact"].values, ds["w2_exact"].values], axis=-1)
    res = {k: ds[k].values for k in ("t_m", "train_mse", "test_mse", "train_mse_exact", "test_mse_exact")}
    res.update(lams=ds["lam"].values, w=w, w_exact=w_exact, grok_time=ds["grok_time"].values)
    return res


def summary(ds: xr.Dataset) -> list[tuple[str, str]]:
    """Per λ: the final weights against 2/(2 + λ), the final train MSE against (2λ/(2 + λ))², the
    drift's error, the grokking time; then the log-log slope of t_grok against λ."""
    params = json.loads(ds.attrs["params"])
    res = _results(ds)
    rows = []
    for i, lam in enumerate(res["lams"]):
        w = res["w"][i][-1]
        t_grok = res["grok_time"][i]
        rows.append(
            (
                f"λ = {lam:g}: final w1, w2 (2/(2+λ) = {2 / (2 + lam):.10f})",
                f"({w[0]:.10f}, {w[1]:.10f}); train MSE {res['train_mse'][i][-1]:.6e} "
                f"((2λ/(2+λ))² = {(2 * lam / (2 + lam)) ** 2:.6e}); "
                f"drift rel. err {ds['drift_rel_error'].values[i]:.1e}; "
                f"t_grok {t_grok:.4g} t_M (2λ·t_grok = {2 * lam * t_grok:.3f})",
            )
        )
    rows.append(
        (
            f"fast phase: w at t_M = 2 (exact), λ = {params['lams'][0]:g}",
            f"{np.array2string(np.asarray(ds.attrs['w_fast_exact']), precision=3)} (≈ (0, 2))",
        )
    )
    lo, hi = np.asarray(ds.attrs["grok_loglog_slope_ci"], float)
    rows.append(
        (
            "grokking time vs λ: log-log slope (theory −1)",
            f"{ds.attrs['grok_loglog_slope']:.3f} (95% CI {lo:.3f} … {hi:.3f})",
        )
    )
    rows.append(("solver steps per λ", f"{ds.attrs['solver']}: {ds['num_steps'].values.tolist()}"))
    return rows


def plot(ds: xr.Dataset):
    """(a) train and test loss against log t_M, (b) the weight path in the (w1, w2) plane, (c) the
    drift |d| against slow time 2λt_M, all with the exact solution dashed."""
    import matplotlib.pyplot as plt

    params = json.loads(ds.attrs["params"])
    res = _results(ds)
    init = tuple(params["init"])
    threshold, eta = params["grok_threshold"], params["eta_inferred"]

    fig = plt.figure(figsize=(16, 7), layout="constrained")
    fig.get_layout_engine().set(rect=(0, 0.03, 1, 0.97))  # room for the caption line
    axes = fig.subplot_mosaic([["train", "path", "drift"], ["test", "path", "drift"]], width_ratios=(1.3, 1, 1))
    ax_path, ax_drift = axes["path"], axes["drift"]
    colors = plt.get_cmap("viridis")(np.linspace(0.0, 0.8, len(res["lams"])))

    titles = {"train": "(a) train loss: fitted by t_M ≈ 2, whatever λ", "test": "(a′) test loss: only at t_M ∝ 1/λ"}
    for name, title in titles.items():
        ax = axes[name]
        for i, (lam, c) in enumerate(zip(res["lams"], colors, strict=True)):
            t = res["t_m"][i]
            keep = t > 0
            ax.plot(t[keep], res[f"{name}_mse"][i][keep], color=c, lw=2.5, alpha=0.85, label=f"λ = {lam:g}")
            ax.plot(t[keep], res[f"{name}_mse_exact"][i][keep], color="k", lw=0.8, ls="--")
            if math.isfinite(res["grok_time"][i]):
                ax.axvline(res["grok_time"][i], color=c, lw=1, ls="-.")
        ax.plot([], [], color="k", lw=0.8, ls="--", label="exact gradient flow")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_ylim(1e-6 if name == "train" else 1e-5, 30)
        ax.set_ylabel(f"{name} loss, Musat's (ŷ − y)²" if name == "train" else "test MSE mean((ŷ − y)²)")
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="major", alpha=0.3)
    axes["test"].plot([], [], color="0.3", lw=1, ls="-.", label=f"t_grok: test MSE ≤ {threshold:g} from here on")
    axes["test"].axhline(threshold, color="0.5", lw=0.8, ls=":")
    axes["train"].sharex(axes["test"])
    axes["train"].tick_params(labelbottom=False)
    axes["test"].set_xlabel("Musat time t_M = t/2 (log scale)")
    axes["train"].legend(fontsize=8, loc="lower left")
    axes["test"].legend(fontsize=8, loc="lower left")
    top = axes["train"].secondary_xaxis("top", functions=(lambda x: x / eta, lambda x: x * eta))
    top.set_xlabel(f"GD steps at η = {eta:g} (inferred; the paper's η is not given)", fontsize=8)

    # (b) the path in the weight plane, over Musat's train loss
    g = np.linspace(-1.5, 2.5, 300)
    w1g, w2g = np.meshgrid(g, g)
    ax_path.contourf(w1g, w2g, np.log10((w1g + w2g - 2.0) ** 2 + 1e-6), levels=20, cmap="Greys_r", alpha=0.6)
    ax_path.plot(g, 2.0 - g, color="k", lw=1.2, label="zero-loss line w1 + w2 = 2")
    for i, (lam, c) in enumerate(zip(res["lams"], colors, strict=True)):
        w, we = res["w"][i], res["w_exact"][i]
        ax_path.plot(w[:, 0], w[:, 1], color=c, lw=2.2, label=f"λ = {lam:g} → ({w[-1, 0]:.3f}, {w[-1, 1]:.3f})")
        ax_path.plot(we[:, 0], we[:, 1], color="k", lw=0.8, ls="--")
    marks = (
        (init, f"init ({init[0]:g}, {init[1]:g})".replace("-", "−")),
        ((0.0, 2.0), "≈ (0, 2): after the fast phase"),
        ((1.0, 1.0), "(1, 1): min norm"),
    )
    for pt, name in marks:
        ax_path.plot(*pt, "o", color="tab:red", ms=5)
        ax_path.annotate(name, pt, textcoords="offset points", xytext=(6, -12 if pt == init else 6), fontsize=8)
    ax_path.set_xlim(-1.5, 2.5)
    ax_path.set_ylim(-0.5, 2.6)
    ax_path.set_aspect("equal")
    ax_path.set_xlabel("w1")
    ax_path.set_ylabel("w2")
    ax_path.set_title("(b) fast to the zero-loss line, slow along it")
    ax_path.legend(fontsize=7.5, loc="lower left")

    # (c) the drift collapses onto −√2 e^{−2λt_M} in slow time
    for i, (lam, c) in enumerate(zip(res["lams"], colors, strict=True)):
        slow = 2 * lam * res["t_m"][i]
        d = np.abs(res["w"][i][:, 0] - res["w"][i][:, 1]) / math.sqrt(2)
        ax_drift.plot(slow, d, color=c, lw=4 - 1.2 * i, alpha=0.8, label=f"λ = {lam:g}")
    s = np.linspace(0, params["slow_end"], 200)
    ax_drift.plot(s, math.sqrt(2) * np.exp(-s), color="k", lw=0.9, ls="--", label="√2·exp(−2λ t_M) (exact)")
    ax_drift.set_yscale("log")
    ax_drift.set_xlim(0, 15)
    ax_drift.set_ylim(1e-7, 3)
    ax_drift.axvline(1.0, color="0.5", lw=0.8, ls=":")
    ax_drift.set_xlabel("Musat slow time 2λ t_M  (= gflow's τ = λt)")
    ax_drift.set_ylabel("|w1 − w2|/√2 (distance to the min-norm line w1 = w2)")
    ax_drift.set_title("(c) drift along the zero-loss line,\nthe same for every λ in slow time", fontsize=10)
    ax_drift.legend(fontsize=8)

    fig.suptitle("Musat Fig. 1: ŷ = w1x1 + w2x2 groks addition from the single sample 1 + 1 = 2 (gradient flow)")
    caption(
        fig,
        "Musat's L = (ŷ − y)² + λ‖w‖² = gflow's 2F_λ: gflow λ = λ_M, t = 2t_M. "
        "Flow, not GD (η unknown). "
        f"Test: 100 Gaussian pairs (seed {params['test_seed']}); t_grok threshold {threshold:g} is our choice. "
        "Dashed: exact solution.",
        size=ds.attrs.get("size"),
    )
    return fig
