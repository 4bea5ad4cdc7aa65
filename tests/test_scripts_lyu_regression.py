"""Lyu et al. (ICLR 2024) figures (`gflow.papers`): smoke runs, and the acceptance numbers of papers.md A6
(matrix completion of the multiplication table) and A12 (collapse in slow time across λ).

Time conventions are the figures': Lyu's loss itself (mean squared error, no ½), so λ is the
paper's weight decay and t = η·step is the paper's continuous time; τ = λt.
"""

import math

import numpy as np
import pytest

import gflow
import gflow.analysis
import gflow.papers.lyu_fig2_modular_addition as f2
import gflow.papers.lyu_fig3_matrix_completion as f3
import gflow.papers.lyu_fig4_no_weight_decay as f4
from gflow.papers._common import gd_segments


def _smoke(name, figure_run):
    """The shared in-process `gflow run NAME --smoke`: its figure.nc and stdout."""
    run = figure_run(name)
    png = run.out / "figure.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    return run.ds, run.stdout


# ---------------------------------------------------------------------------------------------
# Fig. 3: matrix completion (E3.5, A6)
# ---------------------------------------------------------------------------------------------


def test_fig3_smoke(figure_run):
    ds, stdout = _smoke("lyu_fig3_matrix_completion", figure_run)
    for name in ("train_mse", "test_mse", "norm", "kernel_norm"):
        assert ds[name].dims == ("time",)
        assert np.all(np.isfinite(ds[name].values)), name
    assert ds["top_eigenvalues"].dims == ("time", "k")
    assert ds.sizes["time"] >= 20 and ds.sizes["eig"] == ds.attrs["d"]
    assert ds["test_mse"].values[0] > ds["test_mse"].values[-1]
    assert ds.attrs["result"] == "successful"
    # the kernel phase: the test MSE sits on the kernel predictor, the norm on ‖θ0‖e^(−λt)
    assert ds.attrs["plateau_test_mse"] == pytest.approx(ds.attrs["kernel_test_mse"], rel=1e-2)
    assert ds.attrs["norm_max_rel_dev_plateau"] < 0.01
    assert "kernel predictor" in stdout


@pytest.fixture(scope="module")
def a6():
    """The quick A6 run: d = 97, 5% observed, U = V = 10·I, λ = 1e-3 (Lyu's loss and time), τ ≤ 10."""
    lam = 1e-3
    problem = f3.lyu_problem(f3.SEED, d=97, fraction=0.05)
    traj = f3.run_flow(problem, lam, 10.0, saves=100, save_params=False)
    assert traj.message == "successful"
    kernel = gflow.analysis.kernel_predictor(problem.model, problem.train, problem.test, kind="regression")
    return traj, kernel, f3.summarise(traj, lam)


def test_a6_fast_fit_and_kernel_plateau(a6):
    traj, kernel, s = a6
    assert s["norm0"] == pytest.approx(10 * math.sqrt(2 * 97), rel=1e-12)  # 139.28
    # papers.md: train MSE 2e-5 by step 23 and 1.5e-7 by step 65 of GD at η = 0.1 (t = 2.3, 6.5)
    assert s["t_train_below_1e-5"] <= 3.5
    assert np.min(np.asarray(traj.metrics["train_loss"])) < 1e-6
    # The kernel predictor (zero fill + transpose copy): 0.1024 ± 0.0007 over masks (papers.md);
    # this mask (JAX key 35235125) gives 0.1034; the flow's plateau equals it.
    assert kernel.metrics["train_mse"] < 1e-20
    assert kernel.metrics["test_mse"] == pytest.approx(0.102, abs=0.002)
    assert s["plateau_test_mse"] == pytest.approx(kernel.metrics["test_mse"], rel=1e-3)
    # ‖θ‖ = 139.3·e^(−λt) within 1% on the plateau (τ ≤ 1.5); measured 2.2e-3
    assert s["norm_max_rel_dev_plateau"] < 0.01


def test_a6_late_drop(a6):
    _, kernel, s = a6
    plateau = kernel.metrics["test_mse"]
    # flat until λt ≈ 2 (papers.md); measured: 5% below the plateau from τ = 2.46, half at τ = 4.05
    assert 2.0 <= s["tau_drop_start"] <= 3.0
    assert 3.0 <= s["tau_half"] <= 5.0
    # papers.md (GD, another mask): 0.060 at τ = 3.5, 0.029 at 4.5, 0.0086 at 7.6, 0.0070 at 9.9;
    # measured 0.067, 0.035, 0.0067, 0.0038
    assert 0.04 <= s["test_mse_tau_3.5"] <= 0.08
    assert 0.015 <= s["test_mse_tau_4.5"] <= 0.05
    assert s["test_mse_tau_9.9"] <= 1e-2
    assert s["final_test_mse"] < 0.1 * plateau


# ---------------------------------------------------------------------------------------------
# A12: collapse in τ = λt across λ, and t_grok ∝ 1/λ (matrix completion, small)
# ---------------------------------------------------------------------------------------------

A12_LAMS = (1e-2, 3e-3, 1e-3, 3e-4)


@pytest.fixture(scope="module")
def a12():
    """Lyu's matrix completion at d = 30, 20% observed, U = V = 10·I, swept over λ in slow time."""

    def make_problem(key):
        return f3.lyu_problem(key, d=30, fraction=0.2)

    taus = np.unique(np.concatenate([np.asarray(gflow.log_times(10.0, 40, 1e-4)), np.linspace(0.0, 10.0, 201)]))
    ds = gflow.sweep(
        make_problem,
        lam=list(A12_LAMS),
        seed=[f3.SEED],
        t1=10.0,
        time="slow",
        solver="tsit5",
        saveat=taus,
        progress=False,
    )
    assert bool(ds["ok"].all())
    return ds.isel(seed=0)


def test_a12_collapse_in_slow_time(a12):
    tau = a12["tau"].values
    test = a12["test_loss"].values  # (lam, time): Lyu's test MSE; λ decreasing along axis 0
    ref = test[-1]  # the smallest λ
    # kernel phase (τ ≤ 1.5): every λ on the same curve (measured: within 3e-3 relative)
    kernel_phase = (tau >= 0.05) & (tau <= 1.5)
    assert np.max(np.abs(test[:, kernel_phase] / ref[kernel_phase] - 1)) < 5e-3
    plateau = ref[(tau >= 0.05) & (tau <= 0.5)].mean()
    # the drop at the same slow time: τ where the test MSE crosses ¾, ½, ¼ of the plateau.
    # Measured (λ = 1e-2, 3e-3, 1e-3, 3e-4): ¾ at 2.9, 2.6, 2.55, 2.55; ½ at 3.6, 3.1, 3.04, 3.0;
    # ¼ at 4.8, 3.8, 3.65, 3.6 — an O(λ) drift, later for larger λ.
    for level in (0.75, 0.5, 0.25):
        taus = np.array([gflow.analysis.crossing_time(tau, row, level * plateau) for row in test])
        assert np.all(np.isfinite(taus)), level
        assert np.all(np.diff(taus) <= 1e-9), (level, taus)
        assert np.ptp(taus[1:]) < 0.1 * taus[-1], (level, taus)  # λ ≤ 3e-3: within 10%
        if level >= 0.5:
            assert np.ptp(taus) < 0.25 * taus[-1], (level, taus)  # λ = 1e-2 too: within 25%


def test_a12_grokking_time_scales_as_inverse_lambda(a12):
    lams = a12["lam"].values
    fit_times, grok_times = [], []
    for i, lam in enumerate(lams):
        t = a12["tau"].values / lam
        train = a12["train_loss"].values[i]
        test = a12["test_loss"].values[i]
        fit_times.append(t[np.argmax(train < 1e-3)])  # first fit (λ = 1e-2 later rises to its bias)
        plateau = test[np.searchsorted(t, 0.5 / lam)]
        grok_times.append(gflow.analysis.crossing_time(t, test, 0.5 * plateau))
    fit_times, grok_times = np.array(fit_times), np.array(grok_times)
    assert np.all(fit_times < 1.0) and np.all(grok_times > 100 * fit_times)
    fit = gflow.analysis.fit_inverse_lambda(grok_times - fit_times, lams, loglog=True)
    assert fit.slope == pytest.approx(-1.0, abs=0.1), fit  # measured −0.95
    # and in the other form: t_grok = τ⋆/λ with τ⋆ ≈ 3 (the transition's slow time)
    lin = gflow.analysis.fit_inverse_lambda(grok_times, lams)
    assert 2.5 < lin.slope < 3.5, lin


# ---------------------------------------------------------------------------------------------
# Fig. 2: modular addition with weight decay (E3.1)
# ---------------------------------------------------------------------------------------------


def test_fig2_smoke(figure_run):
    ds, stdout = _smoke("lyu_fig2_modular_addition", figure_run)
    for tag, coord in (("c", "lam"), ("b", "alpha")):
        for name in ("train_accuracy", "test_accuracy", "train_loss", "norm"):
            v = ds[f"{name}_{tag}"]
            assert v.dims == (coord, f"time_{tag}")
            assert np.all(np.isfinite(v.values)), (name, tag)
        acc = ds[f"train_accuracy_{tag}"].values
        assert np.all((acc >= 0) & (acc <= 1))
        assert np.all(ds[f"result_{tag}"].values == 0)
        t = ds[f"t_{tag}"].values
        assert t[0] == 0 and np.all(np.diff(t) > 0)
        assert t[1] < 1e-2 * t[-1]  # close to log-spaced saves (the fast phase is resolved)
    # panel (b): W2 = 0 and the init norm scales with α
    norm0 = ds["norm_b"].values[:, 0]
    alphas = ds["alpha"].values
    np.testing.assert_allclose(norm0 / norm0[0], alphas / alphas[0], rtol=1e-12)
    assert "test acc ≥ 0.5" in stdout


def test_fig2_flow_agrees_with_the_papers_gradient_descent(figure_run):
    """The curves are the flow (`gflow.sweep`, "auto" → Bosh3 through the ReLU kinks), GD the
    paper's optimiser beside it on the same times: they agree save by save (measured at the smoke
    size: losses within 0.33%, norms within 0.28%, train accuracy within 3 of 108 pairs)."""
    ds = figure_run("lyu_fig2_modular_addition").ds
    assert ds.attrs["solver"].startswith("bosh3")
    for tag in ("c", "b"):
        assert np.all(ds[f"result_{tag}"].values == 0) and np.all(ds[f"gd_result_{tag}"].values == 0)
        assert np.all(ds[f"gradients_{tag}"].values > ds[f"steps_{tag}"].values)  # three stages a step
        for name in ("train_loss", "test_loss", "norm"):
            flow, gd = ds[f"{name}_{tag}"].values, ds[f"gd_{name}_{tag}"].values
            np.testing.assert_allclose(flow, gd, rtol=0.01, err_msg=f"{name}_{tag}")
        for name in ("train_accuracy", "test_accuracy"):
            gap = np.abs(ds[f"{name}_{tag}"].values - ds[f"gd_{name}_{tag}"].values)
            assert gap.max() <= 0.05, (name, tag, gap.max())
    # the flow's own transition times sit beside GD's (panel b fits within the run at α = 3)
    assert ds["t_fit_b"].values[1] == pytest.approx(ds["gd_t_fit_b"].values[1], rel=0.1)


def test_fig2_scaled_init():
    problem = f2.base_problem(f2.FIGURE.params("smoke"))
    big = f2.scaled(problem, 10.0, 1.0)
    np.testing.assert_allclose(np.asarray(big.model.w1), 10.0 * np.asarray(problem.model.w1))
    assert not np.any(np.asarray(big.model.w2))  # zero output: Lyu's θ̄_init
    logits = np.asarray(gflow.models.ModularMLP.__call__(big.model, problem.train["x"][0]))
    assert not np.any(logits)
    schedule = f2.schedule(f2.FIGURE.params("quick"), "b")
    parts = gd_segments(schedule, 60)
    assert all(n % 60 == 0 for _, n in parts)
    ends = np.cumsum([lr * n for lr, n in parts])
    np.testing.assert_allclose(ends, [t for t, _ in schedule], rtol=0.01)


# ---------------------------------------------------------------------------------------------
# Fig. 4: no weight decay, loss-normalised steps (E3.2)
# ---------------------------------------------------------------------------------------------


def test_fig4_smoke(figure_run):
    ds, stdout = _smoke("lyu_fig4_no_weight_decay", figure_run)
    for name in ("train_accuracy", "test_accuracy", "log_loss", "normalised_margin", "norm"):
        assert ds[name].dims == ("save",)
        assert np.all(np.isfinite(ds[name].values)), name
    stage2 = ds["stage"].values == 2
    log_t = ds["log_t"].values[stage2]
    assert np.all(np.diff(log_t) > 0) and np.all(np.diff(ds["log_loss"].values[stage2]) < 0)
    # t grows at least as fast as the normalised time s: dt = ds/L with L < 1 in stage 2
    assert ds["log10_t"].values[-1] > ds["log10_t"].values[stage2][0]
    assert "test accuracy" in stdout


def test_fig4_log_loss_and_clock():
    import jax
    import jax.numpy as jnp

    stage1, _ = f4.problems(f4.FIGURE.params("smoke"))
    model, train = stage1.model, stage1.train
    direct = float(jnp.log(gflow.CrossEntropy()(model, train)))
    assert float(f4.log_cross_entropy(model, train)) == pytest.approx(direct, rel=1e-12)
    # margins of 1000: the cross-entropy (≈ e^(−1000)) underflows to 0 in float64; its log, and
    # the gradient of log L (the normalised flow's field), stay finite and exact
    n, p = 5, 7
    labels = jnp.arange(n) % p
    table = 1000.0 * jax.nn.one_hot(labels, p, dtype=jnp.float64)
    data = {"x": jnp.arange(n), "y": labels}

    def log_l(table):
        return f4.log_cross_entropy(lambda i: table[i], data)

    value, grad = jax.value_and_grad(log_l)(table)
    assert float(jnp.exp(value)) == 0.0
    assert float(value) == pytest.approx(-1000.0 + math.log(p - 1), rel=1e-14)
    assert np.all(np.isfinite(np.asarray(grad)))
    np.testing.assert_allclose(np.asarray(grad).sum(axis=1), 0.0, atol=1e-12)  # logit shifts do nothing
    # the clock: with a constant loss L, t = t1 + k·lr/L exactly
    log_loss = np.full(11, -50.0)
    log_t = f4.log_clock(math.log(3.0), 0.01, 7, log_loss)
    expected = np.log(3.0 + 0.01 * np.exp(50.0) * 7 * np.arange(11))
    np.testing.assert_allclose(log_t, expected, rtol=1e-12)
