"""Figures of Tan, Gai & Zhang, "Deciphering Two Training Clocks in Grokking" (papers.md §5; A13, A14).

Each figure runs once, at its smoke size, in process (`figure_run`, shared with the registry
tests); the deep-linear smoke run is the quick problem itself (only the small-init contrast run
and the save density differ), so the A13 acceptance numbers are read from it.
"""

import math

import numpy as np
import pytest

import gflow.papers.tan_deep_linear_two_clocks as deep_linear_module
import gflow.papers.tan_fig1_two_clocks as fig1_module
import gflow.papers.tan_fig3_stable_rank as fig3_module
from gflow.experiments import ConfigError

LAMS = (0.6, 0.7, 0.8, 0.9, 1.0)


def _check_png(run):
    png = run.out / "figure.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000


@pytest.fixture(scope="module")
def deep_linear(figure_run):
    run = figure_run("tan_deep_linear_two_clocks")
    _check_png(run)
    return run, run.ds


def test_deep_linear_smoke(deep_linear):
    run, ds = deep_linear
    assert list(ds["run"].values) == ["large_init"]
    assert ds["train_loss"].dims == ("run", "t") and ds.sizes["t"] == 150
    assert ds["t_cls"].dims == ("run", "eps") and ds.sizes["eps"] == 6
    for name in ("train_loss", "test_loss", "srank", "layer_energy", "schatten", "norm"):
        assert np.all(np.isfinite(ds[name].values)), name
    assert "T_cls" in run.stdout and "srank(A)" in run.stdout


def test_a13_classifier_clock_is_polynomial_in_gradient_flow(deep_linear):
    """A13, classifier clock. papers.md expected T_cls(ε) affine in ln(1/ε) (Tan Thm 3.5). Gradient
    flow on cross-entropy cannot grow margins linearly (the gradient is as small as the loss, Tan's
    Lemma 3.3), and here the loss decays like 1/t: T_cls ∝ 1/ε (measured slope 0.995 for
    ε ≤ 1e−3; the straight line in ln(1/ε) has R² = 0.50). This pins the measured law."""
    _, ds = deep_linear
    t_cls = ds["t_cls"].sel(run="large_init").values
    assert np.all(np.isfinite(t_cls)) and np.all(np.diff(t_cls) > 0), t_cls
    eps = ds["eps"].values
    tail = eps <= 1e-3
    slope = np.polyfit(np.log(1 / eps[tail]), np.log(t_cls[tail]), 1)[0]
    assert 0.9 <= slope <= 1.1, slope
    assert ds["affine_r2"].sel(run="large_init").item() < 0.8
    assert 1.0 <= t_cls[1] <= 20.0, t_cls  # T_cls(1e-2): the fit is fast (measured 4.4)
    # the regularised minimum's loss lies below the smallest ε
    assert ds["train_loss"].sel(run="large_init").values[-1] < 1e-7


def test_a13_stable_rank_falls_after_the_fit(deep_linear):
    """A13, representation clock: srank(A) is still high when the train set is fitted and falls
    only afterwards, on the slow clock τ = λt (measured: 8 → 3.58 at T_cls(1e−2) → 1.60; the
    midpoint is crossed at t = 3e6, 6.8e5 × T_cls(1e−2), τ = 0.03)."""
    _, ds = deep_linear
    run = ds.sel(run="large_init")
    lam = ds.attrs["lam"]
    t, srank = run["t"].values, run["srank"].values
    assert srank[0] == pytest.approx(ds.attrs["classes"], rel=1e-9)  # orthogonal init: K equal singular values
    s_ref, s_end = run["srank_ref"].item(), run["srank_end"].item()
    assert s_ref / s_end >= 1.5, (s_ref, s_end)
    assert run["ratio"].item() >= 1e3
    assert 1e-3 <= lam * run["t_rep"].item() <= 1.0
    # still above the midpoint level when the train loss has reached 1e-6
    t_fit = run["t_cls"].sel(eps=1e-6).item()
    level = s_end + 0.5 * (s_ref - s_end)
    assert np.interp(np.log(t_fit), np.log(t[1:]), srank[1:]) > level


def test_a13_schatten_energy_balances_on_the_slow_clock(deep_linear):
    """Layer energy (1/L)Σ‖W_ℓ‖² ≥ Σ s_i^{2/3} always, equal at balance (Tan eq. 2.7); the gap left
    by the unbalanced initialisation closes at τ = λt of order 1."""
    _, ds = deep_linear
    run = ds.sel(run="large_init")
    gap = run["layer_energy"].values - run["schatten"].values
    assert np.all(gap >= -1e-7 * run["schatten"].values)
    assert abs(gap[-1]) <= 1e-6 * run["schatten"].values[-1]
    t = run["t"].values
    half = t[np.argmax(gap < 0.5 * gap[np.searchsorted(t, run["t_cls"].sel(eps=1e-2).item())])]
    assert 0.05 <= ds.attrs["lam"] * half <= 5.0, half


def test_deep_linear_crossing_interpolates_between_saves():
    t = np.concatenate([[0.0], np.geomspace(1e-2, 1e6, 9)])
    values = 1.0 / (1.0 + t)
    assert deep_linear_module.crossing(t, values, 1e-3) == pytest.approx(999.0, rel=1e-2)


def test_tan_fig1_smoke(figure_run):
    run = figure_run("tan_fig1_two_clocks")
    _check_png(run)
    ds = run.ds
    np.testing.assert_allclose(ds["lam"].values, LAMS)
    assert ds["train_loss"].dims == ("lam", "epoch") and ds["train_loss"].shape == (5, 31)
    assert ds["t_cls"].shape == (5, 6)
    for name in ("train_loss", "test_loss", "norm", "srank_embed", "srank_logits"):
        assert np.all(np.isfinite(ds[name].values)), name
    train = ds["train_loss"].values
    assert np.all(train[:, -1] < 0.2 * train[:, 0])
    # the traced λ reaches the optimiser: more decoupled decay, smaller final norm
    assert np.all(np.diff(ds["norm"].values[:, -1]) < 0)
    assert np.allclose(ds["norm"].values[:, 0], ds["norm"].values[0, 0])
    assert "T̂_cls" in run.stdout


def test_tan_fig1_flow_agrees_with_gradient_descent(figure_run):
    """The figure's gradient flow (`run_flow`: `gflow.sweep`, solver "auto") against full-batch GD
    at η = 0.2 on the same save times, at smoke size (p = 11, λ = 1e-2 and 2e-2, to t = 500).
    Measured: losses within 1.1% (train) and 0.75% (test), ‖θ‖ within 0.1%, the stable rank of the
    logit table (2.0–4.2) within 0.25 of GD's; the fit read one save apart (t = 8.8 and 11.2 against GD's
    11.2 and 13.6, saves 2.25 apart there)."""
    ds = figure_run("tan_fig1_two_clocks").ds
    np.testing.assert_allclose(ds["flow_lam"].values, [1e-2, 2e-2])
    assert ds["flow_train_loss"].dims == ("flow_lam", "flow_time") and ds.sizes["flow_time"] == 61
    assert ds.attrs["flow_solver"] == "bosh3" and ds.attrs["flow_rtol"] == 1e-3
    assert np.all(ds["flow_result"].values == 0) and np.all(ds["gd_result"].values == 0)
    assert int(ds["flow_step"].values[-1]) == 2500 and ds["flow_t"].values[-1] == pytest.approx(500.0)
    for name, rtol in (("train_loss", 0.03), ("test_loss", 0.02), ("norm", 0.005)):
        flow, gd = ds[f"flow_{name}"].values, ds[f"gd_{name}"].values
        np.testing.assert_allclose(flow, gd, rtol=rtol, err_msg=name)
    np.testing.assert_allclose(ds["flow_srank_logits"].values, ds["gd_srank_logits"].values, atol=0.5)
    t = ds["flow_t"].values
    for i in range(2):
        fit = np.searchsorted(t, [ds["flow_t_fit"].values[i], ds["gd_t_fit"].values[i]])
        assert np.all(np.isfinite(t[fit])) and abs(fit[0] - fit[1]) <= 1, fit
    assert np.all(ds["flow_gradients"].values > 0)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("flow_lams", [1e-3, -1e-3], "figure.flow_lams must be a list of positive weight decays"),
        ("flow_lams", [], "figure.flow_lams must be a list of positive weight decays"),
        ("flow_t", [30.0, 30.0], "figure.flow_t must be increasing positive times"),
        ("flow_lr", 0.0, "figure.flow_lr must be a positive step"),
        ("flow_saves", 0, "figure.flow_saves a positive count"),
    ],
)
def test_tan_fig1_refuses_bad_flow_fields(field, value, message):
    params = {**fig1_module.FIGURE.params("smoke"), field: value}
    with pytest.raises(ConfigError, match=message):
        fig1_module.check(params)


def test_tan_fig3_smoke(figure_run):
    run = figure_run("tan_fig3_stable_rank")
    _check_png(run)
    ds = run.ds
    assert ds["srank_logits"].shape == (5, 31)
    srank = ds[["srank_embed", "srank_w1", "srank_head", "srank_logits"]].to_array().values
    assert np.all(np.isfinite(srank)) and np.all(srank >= 1.0 - 1e-9)
    assert ds["t_rep_hat"].dims == ("lam",)
    shares = ds["fourier_share_embed"].values
    assert shares.shape == (5,) and shares.sum() == pytest.approx(1.0)
    assert ds["embed_final"].shape == (11, 32)
    # the flow's stable rank beside GD's (panel g): the same network rises from the init's 2.0
    flow, gd = ds["flow_srank_logits"].values, ds["gd_srank_logits"].values
    assert flow.shape == (2, 61) and np.all(np.isfinite(flow)) and np.all(flow >= 1.0 - 1e-9)
    assert np.all(flow[:, -1] > flow[:, 0] + 1.0)
    np.testing.assert_allclose(flow, gd, atol=0.5)
    assert "srank(logit table) init → at t_fit" in run.stdout


@pytest.mark.parametrize("k", [3, 7])
def test_fig3_cyclic_columns_relabel_by_the_generator(k):
    """Columns cos(2πkj/p + φ) read cos(2πm/p + φ) down the relabelled rows; noise columns are dropped."""
    p = 17
    rng = np.random.default_rng(0)
    phases = rng.uniform(0, 2 * math.pi, 6)
    j = np.arange(p)[:, None]
    rows = np.concatenate([np.cos(2 * math.pi * k * j / p + phases), rng.normal(size=(p, 10))], axis=1)
    image, tokens, share = fig3_module.cyclic_columns(rows, k, n=6)
    assert share == pytest.approx(1.0, abs=1e-9)
    assert tokens[1] == pow(k, -1, p) and sorted(tokens) == list(range(p))
    m = np.arange(p)
    for col, phase in zip(image.T, np.sort((phases + math.pi) % (2 * math.pi) - math.pi), strict=True):
        expected = np.cos(2 * math.pi * m / p + phase)
        np.testing.assert_allclose(col, expected / np.abs(expected).max(), atol=1e-9)
