"""Musat's toy figures (papers.md E2.1–E2.3, A9, claim 3.4(a)): the figure experiments
`gflow.papers.musat_fig{1,2,3}_*` against closed forms, and their smoke runs (`gflow run NAME
--smoke`, shared with tests/test_figure_registry.py through the `figure_run` fixture).

Convention (papers.md §1): Musat's 𝓛_λ = (ŷ − y)² + λ_M‖w‖² is gflow's 2F_λ with
F = ½(ŷ − y)², so his run at λ_M is gflow's at λ = λ_M in time t = 2t_M. The references below
are closed forms written out here, never gflow or the figure modules' own helpers.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from gflow.analysis import fit_inverse_lambda

LAMS = (0.01, 0.1, 0.2)


def _smoke(figure_run, name: str):
    """The shared in-process smoke run of a figure (`gflow run NAME --smoke`): its figure.nc and stdout."""
    run = figure_run(name)
    png = run.out / "figure.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    return run.ds, run.stdout


# ---------------------------------------------------------------------------------------------
# A9: single-sample addition (Fig. 1)
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fig1():
    import gflow.papers.musat_fig1_single_sample as module

    params = {**module.FIGURE.params("quick"), "saves": 200}
    assert tuple(params["lams"]) == LAMS
    return module, module.simulate_runs(params)


def test_a9_drift_is_exact_exponential(fig1):
    """d = (w1 − w2)/√2 = −√2·e^{−2λ t_M} (Musat) = −√2·e^{−λt} (gflow, t = 2t_M), rel. err ≤ 1e−6."""
    module, res = fig1
    for i, lam in enumerate(LAMS):
        t_m, w = res["t_m"][i], res["w"][i]
        slow = 2 * lam * t_m
        # From the fast phase on (2λt_M ≥ 0.01) down to |d| ≈ 1e−6 (below, the solver's atol dominates).
        sel = (slow >= 0.01) & (slow <= 14.0)
        assert sel.sum() >= 50
        d = (w[sel, 0] - w[sel, 1]) / math.sqrt(2)
        np.testing.assert_allclose(d, -math.sqrt(2) * np.exp(-2 * lam * t_m[sel]), rtol=1e-6, atol=0)
        np.testing.assert_allclose(d, -math.sqrt(2) * np.exp(-lam * (2 * t_m[sel])), rtol=1e-6, atol=0)
        # The script's report times are saved exactly: 2λt_M ∈ {0.1, …, 10}.
        for s in module.FIGURE.params("quick")["report_slow_times"]:
            j = int(np.argmin(np.abs(slow - s)))
            assert abs(slow[j] - s) < 1e-12
            assert abs((w[j, 0] - w[j, 1]) / math.sqrt(2) / (-math.sqrt(2) * math.exp(-s)) - 1) <= 1e-6


def test_a9_whole_path_matches_closed_form(fig1):
    """Both phases: s = (w1 + w2)/√2 = s∞(1 − e^{−(4 + 2λ)t_M}), s∞ = 2√2/(2 + λ), from w0 = (−1, 1)."""
    _, res = fig1
    for i, lam in enumerate(LAMS):
        t_m, w = res["t_m"][i], res["w"][i]
        s_inf = 2 * math.sqrt(2) / (2 + lam)
        s = s_inf * (1 - np.exp(-(4 + 2 * lam) * t_m))
        d = -math.sqrt(2) * np.exp(-2 * lam * t_m)
        exact = np.stack([(s + d) / math.sqrt(2), (s - d) / math.sqrt(2)], axis=1)
        np.testing.assert_allclose(w, exact, rtol=0, atol=1e-9)
    # After the fast phase, before the slow one: w ≈ (0, 2) at t_M = 2 for the smallest λ.
    w_fast = res["w"][0][np.argmin(np.abs(res["t_m"][0] - 2.0))]
    np.testing.assert_allclose(w_fast, [0.0, 2.0], atol=0.06)


def test_a9_fixed_point_and_final_train_loss(fig1):
    """w1 = w2 = 2/(2 + λ); final train loss (ŷ − y)² = (2λ/(2 + λ))² (Musat's, = 2F)."""
    _, res = fig1
    for i, lam in enumerate(LAMS):
        np.testing.assert_allclose(res["w"][i][-1], [2 / (2 + lam)] * 2, rtol=1e-9, atol=0)
        np.testing.assert_allclose(res["train_mse"][i][-1], (2 * lam / (2 + lam)) ** 2, rtol=1e-6, atol=0)
    # papers.md A9 quotes "2.5e−5 for λ = 0.01"; the formula gives 9.90e−5 (a factor 4 off there).
    assert res["train_mse"][0][-1] == pytest.approx(9.9007e-5, rel=1e-4)


def test_a9_grokking_time_scales_as_one_over_lambda(fig1):
    """Train loss is fitted by t_M ≈ 3 for every λ; the test loss drops at t_M ∝ 1/λ (log-log slope −1)."""
    _, res = fig1
    for i in range(len(LAMS)):
        j = int(np.argmin(np.abs(res["t_m"][i] - 3.0)))
        assert res["train_mse"][i][j] <= 1.01 * res["train_mse"][i][-1] + 1e-6
    j = int(np.argmin(np.abs(res["t_m"][0] - 3.0)))
    assert res["test_mse"][0][j] > 1.0  # λ = 0.01: memorised, not generalised
    t_grok = res["grok_time"]
    assert np.all(np.isfinite(t_grok)) and np.all(np.diff(t_grok) < 0)
    fit = fit_inverse_lambda(t_grok, LAMS, loglog=True)
    assert -1.1 <= fit.slope <= -0.9, fit
    products = 2 * np.asarray(LAMS) * t_grok  # Musat slow time of the drop
    assert products.max() / products.min() <= 1.06, products
    # Expected value: test MSE ≈ (w − 1)ᵀΣ̂(w − 1) ≈ 2e^{−4λt_M} + floor crosses 0.1 at 2λt_M ≈ ½ln 20 ≈ 1.5.
    assert np.all((products > 1.3) & (products < 1.8)), products


def test_fig1_smoke(figure_run):
    ds, stdout = _smoke(figure_run, "musat_fig1_single_sample")
    assert ds.sizes["lam"] == 3 and ds.sizes["time"] >= 40
    for name in ("w1", "w2", "w1_exact", "train_mse", "test_mse", "test_mse_exact", "t_m"):
        assert ds[name].dims == ("lam", "time") and np.all(np.isfinite(ds[name].values)), name
    np.testing.assert_allclose(ds["w1"].values, ds["w1_exact"].values, atol=1e-9)
    assert np.all(ds["drift_rel_error"].values <= 1e-6)
    assert np.all(np.isfinite(ds["grok_time"].values))
    assert "slope" in stdout


# ---------------------------------------------------------------------------------------------
# E2.2: three-number addition (Fig. 2)
# ---------------------------------------------------------------------------------------------


def test_fig2_smoke_paths_are_straight_to_min_norm(figure_run):
    ds, _ = _smoke(figure_run, "musat_fig2_three_numbers")
    lam = ds.attrs["lam_musat"]
    assert ds["w"].dims == ("init", "time", "component") and ds.sizes["init"] == 4 and ds.sizes["component"] == 3
    assert np.all(np.isfinite(ds["w"].values))
    w, w0, t_m = ds["w"].values, ds["w0"].values, ds["t_m"].values
    # Exact flow: the in-plane part e^{−2λt_M}·P w0, the sum → 9/(3 + λ) at rate 2(3 + λ).
    u0 = w0 - w0.mean(axis=1, keepdims=True)
    a = 9 / (3 + lam) + (w0.sum(1)[:, None] - 9 / (3 + lam)) * np.exp(-2 * (3 + lam) * t_m)[None, :]
    exact = u0[:, None, :] * np.exp(-2 * lam * t_m)[None, :, None] + a[..., None] / 3
    np.testing.assert_allclose(w, exact, rtol=0, atol=1e-9)
    np.testing.assert_allclose(ds["dist_min_norm"].values[:, -1], math.sqrt(3) * lam / (3 + lam), rtol=1e-6)
    assert np.all(ds["max_angle_off_line"].values < 1e-6)  # straight in the plane
    assert np.all(ds["t_plane"].values < 2.0) and np.all(ds["t_half"].values > 10 * ds["t_plane"].values)


# ---------------------------------------------------------------------------------------------
# E2.3: landscapes (Fig. 3) and gradient orthogonality (Fig. 4, claim 3.4(a))
# ---------------------------------------------------------------------------------------------


def test_claim_3_4a_gradient_cosine_is_linear_in_distance():
    """On 𝒵 = {y = x²} of 𝓛 = (y − x²)²: |cos∠(∇𝓛(q), tangent at proj q)| = O(dist), slope 1."""
    import gflow.papers.musat_fig3_landscapes as module

    dists = np.geomspace(1e-5, 1e-2, 7)
    for x0 in (0.3, 1.0, 2.0):
        n = np.array([2 * x0, -1.0]) / math.sqrt(1 + 4 * x0**2)
        qs = np.array([x0, x0**2])[None, :] + dists[:, None] * n[None, :]
        for q in qs:  # the foot point really is the nearest point of the parabola
            xs = np.roots([4.0, 0.0, 2.0 - 4.0 * q[1], -2.0 * q[0]])
            xs = xs[np.abs(xs.imag) < 1e-9].real
            nearest = xs[np.argmin((xs - q[0]) ** 2 + (xs**2 - q[1]) ** 2)]
            assert nearest == pytest.approx(x0, abs=1e-10)
        cos, _ = module.gradient_cosines(x0, dists)
        # Closed form: ∇𝓛 ∝ (−2x, 1), tangent ∝ (1, 2x0).
        grad = np.stack([-2 * qs[:, 0], np.ones_like(dists)], axis=1)
        tangent = np.array([1.0, 2 * x0]) / math.sqrt(1 + 4 * x0**2)
        expected = np.abs(grad @ tangent) / np.linalg.norm(grad, axis=1)
        np.testing.assert_allclose(cos, expected, rtol=1e-6)
        slope = np.polyfit(np.log(dists), np.log(cos), 1)[0]
        assert slope == pytest.approx(1.0, abs=0.01)
    # At the vertex the gradient is exactly normal (symmetry): cos = 0.
    cos0, _ = module.gradient_cosines(0.0, dists[:2])
    assert np.all(cos0 < 1e-10)  # 0 up to the Tikhonov term rcond = 1e−12 of the projection


def test_fig3_smoke(figure_run):
    ds, _ = _smoke(figure_run, "musat_fig3_landscapes")
    lam = ds.attrs["lam_musat"]
    assert ds["w"].dims == ("panel", "init", "time", "component")
    assert ds.sizes["panel"] == 3 and ds.sizes["init"] == 4 and ds.sizes["component"] == 2
    assert np.all(np.isfinite(ds["w"].values))
    end = ds["w"].isel(time=-1)
    # (a) f = w1w2 on 1 → 1: balanced minimum w1 = w2 = ±√(1 − λ); (b) the singular origin;
    # (c) the leaky-ReLU neuron on (1, 1) → 2: w1 = w2 = 2/(2 + λ) (positive branch).
    np.testing.assert_allclose(np.abs(end.sel(panel="curved").values), math.sqrt(1 - lam), atol=1e-4)
    np.testing.assert_allclose(end.sel(panel="singular").values, 0.0, atol=1e-4)
    np.testing.assert_allclose(end.sel(panel="leaky").values, 2 / (2 + lam), atol=2e-6)  # drift e^{−15}
    assert np.all(ds["train_loss_musat"].isel(time=-1).values < 1e-3)
    slopes = ds["slope"].values
    assert np.all(np.abs(slopes - 1.0) < 0.01), slopes
    np.testing.assert_allclose(ds["cos"].values, ds["cos_exact"].values, rtol=1e-6)
    assert np.all(np.diff(ds["cos_abc"].values) < 0)
