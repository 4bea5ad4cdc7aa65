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

Writes `musat_fig1_single_sample.png` ((a) train and test loss against log t_M, (b) the weight
path in the (w1, w2) plane, (c) the drift |d| against slow time 2λt_M, all with the exact
solution dashed) and `musat_fig1_single_sample.nc` (xarray, dims (lam, time)) into `--out`.

    python scripts/musat_fig1_single_sample.py            # quick (= the paper's size): seconds after compilation
    python scripts/musat_fig1_single_sample.py --smoke    # fewer save points
    python scripts/musat_fig1_single_sample.py --full     # more save points (the toy is already full size)
"""

from __future__ import annotations

import math
import pathlib
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))  # scripts/ is not a package
import _figure  # noqa: E402

NAME = "musat_fig1_single_sample"


LAMS = (0.01, 0.1, 0.2)  # Musat's λ_M, which is also gflow's λ (see the docstring)
INIT = (-1.0, 1.0)
TEST_SEED = 0
SLOW_END = 30.0  # each run ends at Musat slow time 2λ t_M = 30 (the drift is e^{−30}·√2 ≈ 1e−13)
T_MIN = 1e-3  # first non-zero save time, in t_M (the fast phase has rate 4 + 2λ ≈ 4)
REPORT_SLOW_TIMES = (0.1, 0.5, 1.0, 2.0, 5.0, 10.0)  # 2λ t_M values saved exactly, for the drift check
GROK_THRESHOLD = 0.1  # Musat's test MSE; its plateau after the fast phase is ≈ 2
ETA_INFERRED = 0.1  # GD step that matches "train loss low after ≈ 10 steps"; axis labels only
SIZES = {"smoke": 40, "quick": 300, "full": 1000}  # log-spaced save times per run
RTOL, ATOL = 1e-12, 1e-14


def exact_weights(w0, lam: float, t_m) -> np.ndarray:
    """Closed-form gradient flow of 𝓛_λ = (⟨w, 1⟩ − n)² + λ‖w‖² in Musat's time t_M, shape (T, n).

    ⟨w, 1⟩ relaxes at rate 2(n + λ) to n²/(n + λ) (so w_i → n/(n + λ)); the component of w
    orthogonal to 1 decays as e^{−2λ t_M}. For n = 2 this is papers.md E2.1.
    """
    w0 = np.asarray(w0, float)
    n = w0.size
    t_m = np.asarray(t_m, float)[:, None]
    a0 = w0.sum()
    a_inf = n * n / (n + lam)
    a = a_inf + (a0 - a_inf) * np.exp(-2.0 * (n + lam) * t_m)  # ⟨w, 1⟩
    u0 = w0 - a0 / n
    return u0 * np.exp(-2.0 * lam * t_m) + a / n


def save_times(lam: float, n: int) -> np.ndarray:
    """0, log-spaced Musat times from T_MIN to the end, and the report times 2λt_M ∈ REPORT_SLOW_TIMES."""
    end = SLOW_END / (2.0 * lam)
    extra = [s / (2.0 * lam) for s in REPORT_SLOW_TIMES]
    # The length does not depend on λ, so one compiled solve serves every λ.
    return np.unique(np.concatenate([[0.0], np.geomspace(T_MIN, end, n), extra]))


def grokking_time(t_m, test_mse, threshold: float = GROK_THRESHOLD) -> float:
    """First t_M from which `test_mse` stays ≤ threshold, interpolated linearly in (log t, log loss)."""
    from gflow.analysis import crossing_time

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


def simulate_runs(lams=LAMS, n_saves: int = SIZES["quick"]) -> dict:
    """One gflow run per λ (λ_M = λ, t = 2t_M); everything in Musat's convention, arrays (lam, time)."""
    import jax.numpy as jnp

    import gflow

    problem = gflow.tasks.musat_addition(TEST_SEED, n_weights=2, init=INIT)
    x_test = np.asarray(problem.test["x"])
    y_test = np.asarray(problem.test["y"])
    out = {k: [] for k in ("t_m", "w", "train_mse", "test_mse", "num_steps")}
    for lam in lams:
        t_m = save_times(lam, n_saves)
        traj = gflow.simulate(
            problem,
            lam,
            2.0 * t_m[-1],
            solver="tsit5",
            saveat=jnp.asarray(2.0 * t_m),
            save_params=True,
            rtol=RTOL,
            atol=ATOL,
        )
        if not bool(traj.ok):
            raise RuntimeError(f"λ = {lam}: {traj.message}")
        out["t_m"].append(t_m)
        out["w"].append(np.asarray(traj.params.w))
        out["train_mse"].append(2.0 * np.asarray(traj.metrics["train_loss"]))  # (ŷ − y)² = 2F
        out["test_mse"].append(2.0 * np.asarray(traj.metrics["test_loss"]))  # mean((ŷ − y)²)
        out["num_steps"].append(int(traj.stats["num_steps"]))
    res = {k: np.asarray(v) for k, v in out.items()}
    res["lams"] = np.asarray(lams, float)
    res["w_exact"] = np.stack([exact_weights(INIT, lam, t) for lam, t in zip(lams, res["t_m"], strict=True)])
    res["train_mse_exact"] = (res["w_exact"].sum(-1) - 2.0) ** 2
    res["test_mse_exact"] = np.mean((res["w_exact"] @ x_test.T - y_test) ** 2, axis=-1)
    res["grok_time"] = np.array([grokking_time(t, v) for t, v in zip(res["t_m"], res["test_mse"], strict=True)])
    return res


def drift_errors(res: dict) -> np.ndarray:
    """max relative error of d = (w1 − w2)/√2 against −√2 e^{−2λt_M} at the report times, per λ."""
    errs = []
    for lam, t_m, w in zip(res["lams"], res["t_m"], res["w"], strict=True):
        idx = [int(np.argmin(np.abs(2 * lam * t_m - s))) for s in REPORT_SLOW_TIMES]
        d = (w[idx, 0] - w[idx, 1]) / math.sqrt(2)
        exact = -math.sqrt(2) * np.exp(-2 * lam * t_m[idx])
        errs.append(np.max(np.abs(d / exact - 1)))
    return np.asarray(errs)


def plot(res: dict, *, size: str):
    import matplotlib.pyplot as plt

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
    axes["test"].plot([], [], color="0.3", lw=1, ls="-.", label=f"t_grok: test MSE ≤ {GROK_THRESHOLD:g} from here on")
    axes["test"].axhline(GROK_THRESHOLD, color="0.5", lw=0.8, ls=":")
    axes["train"].sharex(axes["test"])
    axes["train"].tick_params(labelbottom=False)
    axes["test"].set_xlabel("Musat time t_M = t/2 (log scale)")
    axes["train"].legend(fontsize=8, loc="lower left")
    axes["test"].legend(fontsize=8, loc="lower left")
    top = axes["train"].secondary_xaxis("top", functions=(lambda x: x / ETA_INFERRED, lambda x: x * ETA_INFERRED))
    top.set_xlabel(f"GD steps at η = {ETA_INFERRED:g} (inferred; the paper's η is not given)", fontsize=8)

    # (b) the path in the weight plane, over Musat's train loss
    g = np.linspace(-1.5, 2.5, 300)
    w1g, w2g = np.meshgrid(g, g)
    ax_path.contourf(w1g, w2g, np.log10((w1g + w2g - 2.0) ** 2 + 1e-6), levels=20, cmap="Greys_r", alpha=0.6)
    ax_path.plot(g, 2.0 - g, color="k", lw=1.2, label="zero-loss line w1 + w2 = 2")
    for i, (lam, c) in enumerate(zip(res["lams"], colors, strict=True)):
        w, we = res["w"][i], res["w_exact"][i]
        ax_path.plot(w[:, 0], w[:, 1], color=c, lw=2.2, label=f"λ = {lam:g} → ({w[-1, 0]:.3f}, {w[-1, 1]:.3f})")
        ax_path.plot(we[:, 0], we[:, 1], color="k", lw=0.8, ls="--")
    marks = ((INIT, "init (−1, 1)"), ((0.0, 2.0), "≈ (0, 2): after the fast phase"), ((1.0, 1.0), "(1, 1): min norm"))
    for pt, name in marks:
        ax_path.plot(*pt, "o", color="tab:red", ms=5)
        ax_path.annotate(name, pt, textcoords="offset points", xytext=(6, -12 if pt == INIT else 6), fontsize=8)
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
    s = np.linspace(0, SLOW_END, 200)
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
    fig.text(
        0.005,
        0.008,
        f"size: {size}. Musat's L = (ŷ − y)² + λ‖w‖² = gflow's 2F_λ: gflow λ = λ_M, t = 2t_M. "
        "Flow, not GD (η unknown). "
        f"Test: 100 Gaussian pairs (seed {TEST_SEED}); t_grok threshold {GROK_THRESHOLD:g} is our choice. "
        "Dashed: exact solution.",
        fontsize=8,
        color="0.3",
    )
    return fig


def run(out: pathlib.Path, *, size: str, echo=print) -> dict:
    import jax

    jax.config.update("jax_enable_x64", True)  # before any array is made: checks to 1e-9 need float64

    from gflow.analysis import fit_inverse_lambda

    lam_list = ", ".join(f"{lam:g}" for lam in LAMS)
    echo(f"E2.1/A9: ŷ = w1x1 + w2x2, sample (1, 1) → 2, init {INIT}, λ ∈ {{{lam_list}}} (Musat's λ_M = gflow's λ)")
    start = time.perf_counter()
    res = simulate_runs(LAMS, SIZES[size])
    echo(
        f"  simulated {len(LAMS)} runs (Tsit5, rtol {RTOL:g}), steps {res['num_steps'].tolist()}  "
        f"[{time.perf_counter() - start:.1f} s incl. compilation]"
    )
    errs = drift_errors(res)
    fit = fit_inverse_lambda(res["grok_time"], res["lams"], loglog=True)
    echo(
        "  λ      final w1, w2            2/(2+λ)     train MSE      (2λ/(2+λ))²   drift rel.err  t_grok (t_M)  "
        "2λ·t_grok"
    )
    for i, lam in enumerate(res["lams"]):
        w = res["w"][i][-1]
        echo(
            f"  {lam:<6g} ({w[0]:.10f}, {w[1]:.10f})  {2 / (2 + lam):.10f}  {res['train_mse'][i][-1]:.6e}  "
            f"{(2 * lam / (2 + lam)) ** 2:.6e}  {errs[i]:.1e}        {res['grok_time'][i]:<12.4g}  "
            f"{2 * lam * res['grok_time'][i]:.3f}"
        )
    echo(
        f"  fast phase: w at t_M = 2 (exact): λ = {LAMS[0]:g}: "
        f"{np.array2string(exact_weights(INIT, LAMS[0], [2.0])[0], precision=3)} (≈ (0, 2))"
    )
    echo(
        f"  grokking time vs λ: log-log slope {fit.slope:.3f} (95% CI {fit.slope_ci[0]:.3f} … {fit.slope_ci[1]:.3f}; "
        "theory −1)"
    )

    fig = plot(res, size=size)
    png = out / "musat_fig1_single_sample.png"
    fig.savefig(png, dpi=110)

    import xarray as xr

    n_time = res["t_m"].shape[1]
    dims = ("lam", "time")
    ds = xr.Dataset(
        {
            "t_m": (dims, res["t_m"], {"long_name": "Musat time t_M (gflow t = 2 t_M)"}),
            "w1": (dims, res["w"][..., 0]),
            "w2": (dims, res["w"][..., 1]),
            "w1_exact": (dims, res["w_exact"][..., 0]),
            "w2_exact": (dims, res["w_exact"][..., 1]),
            "train_mse": (dims, res["train_mse"], {"long_name": "(y_hat - y)^2 on the training sample"}),
            "test_mse": (dims, res["test_mse"], {"long_name": "mean (y_hat - y)^2 over 100 test pairs"}),
            "train_mse_exact": (dims, res["train_mse_exact"]),
            "test_mse_exact": (dims, res["test_mse_exact"]),
            "grok_time": ("lam", res["grok_time"], {"long_name": f"first t_M with test_mse <= {GROK_THRESHOLD}"}),
            "drift_rel_error": ("lam", errs),
            "num_steps": ("lam", res["num_steps"]),
        },
        coords={"lam": res["lams"], "time": np.arange(n_time)},
        attrs={
            "experiment": "papers.md E2.1 / A9 (Musat Fig. 1): y_hat = w1 x1 + w2 x2, one sample (1,1) -> 2, "
            f"init {INIT}, 100 Gaussian test pairs (musat_addition seed {TEST_SEED})",
            "convention": "Musat L = (y_hat - y)^2 + lam ||w||^2 is gflow 2 F_lam: gflow lam = Musat lam, t = 2 t_M; "
            "losses stored in Musat's convention",
            "solver": f"tsit5, rtol {RTOL}, atol {ATOL}",
            "grok_threshold": GROK_THRESHOLD,
            "grok_loglog_slope": fit.slope,
            "size": size,
            **_figure.provenance(),
        },
    )
    data = out / "musat_fig1_single_sample.nc"
    ds.to_netcdf(data, engine="scipy")
    echo(f"  wrote {png} and {data}")
    return {"dataset": ds, "png": png, "data": data, "fit": fit}


def main(argv=None) -> int:
    parser = _figure.parser(
        __doc__,
        "musat_fig1_single_sample",
        smoke="few save points (seconds)",
        full="many save points (the toy is already the paper's size)",
    )
    args = parser.parse_args(argv)
    size = _figure.size(args)
    return _figure.run_in_new_folder(args.out, NAME, lambda out: run(out, size=size))


if __name__ == "__main__":
    sys.exit(main())
