"""Analyses against independent computations: scaling fits on synthetic data with known slopes,
kernel predictors against pseudo-inverses and KKT/duality certificates, linear programs against
brute force, spectra of known matrices, Fourier measurements of synthetic circles, and Musat's
isolated first-layer dynamics (finite differences and papers.md A10).
"""

from __future__ import annotations

import itertools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gflow
from gflow import analysis, models, tasks

RNG = np.random.default_rng


# ---------------------------------------------------------------------------------------------
# Scaling fits
# ---------------------------------------------------------------------------------------------


def test_scaling_fit_recovers_known_slopes():
    rng = RNG(0)
    lams = np.array([1e-2, 5e-3, 3e-3, 2e-3, 1e-3, 5e-4])
    tau_star = 3.2
    times = tau_star / lams * np.exp(0.03 * rng.standard_normal(lams.size))
    fit = analysis.fit_inverse_lambda(times, lams)
    assert fit.covers(tau_star) and fit.n == 6
    assert fit.slope == pytest.approx(tau_star, rel=0.05)
    loglog = analysis.fit_inverse_lambda(times, lams, loglog=True)
    assert loglog.covers(-1.0) and loglog.slope_ci[1] - loglog.slope_ci[0] < 0.2
    # Lyu: λ·t = ln α − 1 + noise, slope 1 in ln α; at fixed λ the slope in t is 1/λ.
    alphas = np.array([4.0, 16.0, 64.0, 256.0, 1024.0])
    lam = 0.01
    t = (np.log(alphas) - 1.0 + 0.05 * rng.standard_normal(alphas.size)) / lam
    fit_a = analysis.fit_log_alpha(t, alphas, lams=np.full(alphas.size, lam))
    assert fit_a.covers(1.0) and fit_a.intercept_ci[0] <= -1.0 <= fit_a.intercept_ci[1]
    assert analysis.fit_log_alpha(t, alphas).covers(1.0 / lam)


def test_scaling_fit_interval_has_its_coverage():
    """Over 2000 synthetic experiments the 90% interval covers the true slope ≈ 90% of the time."""
    rng = RNG(1)
    x = np.linspace(0.0, 1.0, 5)
    hits = sum(
        analysis.scaling_fit(x, 2.0 * x + 1.0 + 0.3 * rng.standard_normal(5), confidence=0.9).covers(2.0)
        for _ in range(2000)
    )
    assert 0.87 <= hits / 2000 <= 0.93  # binomial sd 0.0067; a normal quantile would give ≈ 0.80


def test_scaling_fit_inputs():
    phases = [analysis.PhaseTimes(1.0, 100.0 / lam, lam, 1e-3, 1e-2, "test_loss") for lam in (0.1, 0.01, 0.001)]
    fit = analysis.fit_inverse_lambda(phases + [math.nan], [0.1, 0.01, 0.001, 1e-4])
    assert fit.n == 3 and fit.slope == pytest.approx(100.0) and fit.stderr == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(gflow.ProblemError, match=">= 3 finite points"):
        analysis.scaling_fit([1.0, 2.0], [1.0, 2.0])
    with pytest.raises(gflow.ProblemError, match="as many x as y"):
        analysis.scaling_fit([1.0, 2.0, 3.0], [1.0, 2.0])


def test_phase_times_on_a_dataset_and_measurements_over_time():
    rng = RNG(10)
    x = jnp.asarray(rng.standard_normal((6, 3)))
    y = jnp.asarray(rng.standard_normal((6, 2)))
    model = models.DeepLinear.init(3, 4, 2, 3, key=jax.random.PRNGKey(2), alpha=2.0)
    problem = gflow.Problem(model, {"x": x, "y": y}, loss="mse", test={"x": x, "y": y})
    traj = gflow.simulate(problem, 0.01, 50.0, solver="tsit5", saveat=np.linspace(0, 50, 6), save_params=True)
    a, b = analysis.phase_times(traj, fit_threshold=0.5), analysis.phase_times(traj.to_xarray(), fit_threshold=0.5)
    assert a == b and math.isfinite(a.t_fit)
    srank = analysis.over_time(traj, analysis.stable_rank)
    assert srank.shape == (6,)
    assert srank[0] == pytest.approx(analysis.stable_rank(model), rel=1e-12)
    assert srank[-1] == pytest.approx(analysis.stable_rank(traj.final), rel=1e-9)
    with pytest.raises(gflow.ProblemError, match="save_params=True"):
        analysis.over_time(eqx.tree_at(lambda tr: tr.params, traj, None), analysis.stable_rank)


# ---------------------------------------------------------------------------------------------
# Kernel predictors and linear-programming references
# ---------------------------------------------------------------------------------------------


def test_min_norm_interpolator_is_the_pseudo_inverse_solution():
    rng = RNG(2)
    phi = rng.standard_normal((8, 30))
    y = rng.standard_normal(8)
    h = analysis.min_norm_interpolator(phi, y)
    np.testing.assert_allclose(h, np.linalg.pinv(phi) @ y, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(h, phi.T @ np.linalg.solve(phi @ phi.T, y), rtol=1e-10, atol=1e-12)
    # Repeated rows with consistent targets (e.g. (i, j) and (j, i) of a symmetric matrix).
    phi2, y2 = np.vstack([phi, phi[:3]]), np.concatenate([y, y[:3]])
    np.testing.assert_allclose(analysis.min_norm_interpolator(phi2, y2), h, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(("n", "p"), [(30, 8), (15, 200)])
def test_max_margin_classifier_satisfies_kkt(n, p):
    rng = RNG(n)
    phi = rng.standard_normal((n, p))
    y = np.sign(phi @ rng.standard_normal(p))  # separable through the origin
    svm = analysis.max_margin_classifier(phi, y)
    margins = y * (phi @ svm.w)
    assert np.all(svm.dual >= 0)
    assert margins.min() >= 1 - 1e-9  # primal feasibility
    np.testing.assert_allclose(margins[svm.support], 1.0, atol=1e-9)  # complementary slackness
    np.testing.assert_allclose(svm.w, phi.T @ (svm.dual * y), rtol=1e-12)  # stationarity
    assert 1 <= svm.support.size <= min(n, p)
    assert svm.margin == pytest.approx(1 / np.linalg.norm(svm.w), rel=1e-9)
    # strong duality: ½‖w‖² = Σα − ½‖w‖², i.e. ‖w‖² = Σα
    assert np.linalg.norm(svm.w) ** 2 == pytest.approx(svm.dual.sum(), rel=1e-9)
    with pytest.raises(gflow.ProblemError, match="not linearly separable"):
        analysis.max_margin_classifier(np.vstack([phi[:1], -phi[:1]]), np.array([1.0, 1.0]))


def test_min_l1_interpolator_matches_brute_force():
    rng = RNG(3)
    n, d = 3, 8
    x = rng.standard_normal((n, d))
    y = x @ np.array([1.0, -0.7, 0, 0, 0, 0, 0, 0.2]) + 0.1 * rng.standard_normal(n)
    beta = analysis.min_l1_interpolator(x, y)
    np.testing.assert_allclose(x @ beta, y, atol=1e-9)
    # An optimal vertex of the LP has at most n non-zeros: try every support of size n.
    best = min(np.abs(np.linalg.solve(x[:, s], y)).sum() for s in map(list, itertools.combinations(range(d), n)))
    assert np.abs(beta).sum() == pytest.approx(best, rel=1e-9)


def test_max_l1_margin_classifier_has_a_dual_certificate():
    rng = RNG(4)
    x = rng.choice([-1.0, 1.0], size=(40, 50))
    y = np.sign(x[:, :3].sum(1))
    res = analysis.max_l1_margin_classifier(x, y)
    g = y[:, None] * x
    assert np.min(g @ res.w) >= 1 - 1e-9
    # LP duality: max Σα s.t. ‖Gᵀα‖_∞ ≤ 1, α ≥ 0 has the same value ‖w‖₁.
    assert np.all(res.dual >= -1e-12) and np.max(np.abs(g.T @ res.dual)) <= 1 + 1e-9
    assert np.abs(res.w).sum() == pytest.approx(res.dual.sum(), rel=1e-9)
    # the sparse teacher x1 + x2 + x3 has margin 1 in ℓ1-norm 3, so the max ℓ1 margin is ≥ 1/3
    assert res.margin >= 1 / 3 - 1e-9


def test_kernel_predictors_on_problems():
    # Diagonal net u = v = c: φ(x) = 2c(x, −x), so K1 is the max-ℓ2-margin SVM on x itself.
    problem = tasks.sparse_classification(0, n=40, d=200, n_test=500)
    kp = analysis.kernel_predictor(problem)
    x, y = np.asarray(problem.train["x"]), np.asarray(problem.train["y"])
    svm = analysis.max_margin_classifier(x, y)
    xt, yt = np.asarray(problem.test["x"]), np.asarray(problem.test["y"])
    assert kp.kind == "classification" and kp.metrics["train_accuracy"] == 1.0
    assert kp.metrics["test_accuracy"] == pytest.approx(np.mean(np.sign(xt @ svm.w) == yt))
    assert 0.5 < kp.metrics["test_accuracy"] < 0.8  # near chance at n ≪ d (papers.md A4)
    # ... and the rich-regime max-ℓ1-margin classifier finds the 3-sparse teacher.
    l1 = analysis.max_l1_margin_classifier(x, y)
    assert np.mean(np.sign(xt @ l1.w) == yt) > 0.95

    # Regression (K2) on a diagonal net with random (non-zero-output) init: the linearised
    # model's min-norm fit of the residual targets, checked through explicit features.
    reg = tasks.diagonal_regression(0, n=6, d=10, k=2, parameterisation="uv", n_test=15)
    kr = analysis.kernel_predictor(reg)
    u, v = np.asarray(reg.model.u), np.asarray(reg.model.v)
    xr, yr = np.asarray(reg.train["x"]), np.asarray(reg.train["y"])
    phi = np.hstack([xr * v, xr * u])  # ∂⟨u⊙v, x⟩/∂(u, v)
    np.testing.assert_allclose(analysis.ntk_features(reg.model, reg.train["x"]), phi, rtol=1e-13)
    h = np.linalg.pinv(phi) @ (yr - xr @ (u * v))
    xt = np.asarray(reg.test["x"])
    pred = xt @ (u * v) + np.hstack([xt * v, xt * u]) @ h
    np.testing.assert_allclose(kr.test_pred, pred, rtol=1e-9, atol=1e-11)
    assert kr.metrics["train_mse"] < 1e-20


def test_multiplication_table_kernel_predictor_is_zero_fill_with_symmetric_copy():
    """Lyu Cor. 3.11 / papers.md E3.5: NTK min-norm predictor at θ̄ = (I, I), test MSE ≈ 0.102."""
    problem = tasks.multiplication_table(0)
    # Features at θ̄ = (I, I), the direction of Lyu's θ0 = (10I, 10I).
    kp = analysis.kernel_predictor(
        models.SymmetricFactorisation.init(97), problem.train, problem.test, kind="regression"
    )
    x, y = np.asarray(problem.train["x"]), np.asarray(problem.train["y"])
    w = np.zeros((97, 97))
    w[x[:, 0], x[:, 1]] = y
    w[x[:, 1], x[:, 0]] = y
    xt, yt = np.asarray(problem.test["x"]), np.asarray(problem.test["y"])
    np.testing.assert_allclose(kp.test_pred, w[xt[:, 0], xt[:, 1]], atol=1e-12)
    assert kp.metrics["test_mse"] == pytest.approx(np.mean((w[xt[:, 0], xt[:, 1]] - yt) ** 2), rel=1e-10)
    assert kp.metrics["test_mse"] == pytest.approx(0.1024, abs=0.0025)  # 0.1024 ± 0.0007 over masks
    assert kp.metrics["test_loss"] == pytest.approx(kp.metrics["test_mse"] / 2)


@pytest.mark.parametrize("seed", [0, 1])
def test_min_nuclear_norm_completion(seed):
    rng = RNG(seed)
    m_star = rng.standard_normal((30, 2)) @ rng.standard_normal((2, 30))
    mask = rng.random((30, 30)) < 0.5
    rows, cols = np.nonzero(mask)
    res = analysis.min_nuclear_norm_completion(m_star.shape, rows, cols, m_star[rows, cols])
    assert res.converged
    np.testing.assert_allclose(res.matrix[rows, cols], m_star[rows, cols], atol=1e-12)
    # Optimal to the certified gap, and no worse than the feasible point M⋆.
    assert 0 <= res.gap <= 1e-8 * res.nuclear_norm
    assert res.nuclear_norm == pytest.approx(np.linalg.svd(res.matrix, compute_uv=False).sum())
    assert res.nuclear_norm <= np.linalg.svd(m_star, compute_uv=False).sum() * (1 + 1e-9)
    if seed == 0:  # this instance is exactly recoverable: the optimum is M⋆ itself
        assert np.linalg.norm(res.matrix - m_star) <= 1e-7 * np.linalg.norm(m_star)
    else:  # this one is not (30×30 is small): a different matrix of smaller nuclear norm
        assert np.linalg.norm(res.matrix - m_star) > 1e-2 * np.linalg.norm(m_star)


# ---------------------------------------------------------------------------------------------
# Spectra
# ---------------------------------------------------------------------------------------------


def test_stable_rank_and_singular_values_of_known_matrices():
    assert analysis.stable_rank(np.diag([3.0, 4.0])) == pytest.approx(25 / 16)
    assert analysis.stable_rank(np.eye(7)) == pytest.approx(7.0)
    assert analysis.stable_rank(np.outer([1.0, 2.0, 3.0], [1.0, -1.0])) == pytest.approx(1.0)
    assert math.isnan(analysis.stable_rank(np.zeros((3, 3))))
    rot = np.linalg.qr(RNG(6).standard_normal((5, 5)))[0]
    np.testing.assert_allclose(analysis.singular_values(rot @ np.diag([5.0, 4, 3, 2, 1])), [5, 4, 3, 2, 1])
    model = models.DeepLinear.init(4, 6, 3, 3, key=jax.random.PRNGKey(0))
    np.testing.assert_allclose(
        analysis.singular_values(model), np.linalg.svd(np.asarray(model.matrix), compute_uv=False)
    )
    sym = models.SymmetricFactorisation.init(6, alpha=2.0)
    assert math.isnan(analysis.stable_rank(sym))  # W = UUᵀ − VVᵀ = 0 at Lyu's init


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_schatten_energy_equality_at_balanced_factorisation(depth):
    rng = RNG(depth)
    a = rng.standard_normal((4, 4))
    u, s, vt = np.linalg.svd(a)
    root = np.diag(s ** (1 / depth))
    ws = [root @ vt] + [root] * (depth - 2) + [u @ root] if depth > 1 else [a]
    energy = analysis.schatten_energy(ws)
    np.testing.assert_allclose(np.linalg.multi_dot(ws[::-1]) if depth > 1 else ws[0], a, atol=1e-12)
    assert energy.schatten == pytest.approx(np.sum(s ** (2 / depth)))
    assert energy.gap == pytest.approx(0.0, abs=1e-10)
    if depth == 2:
        assert energy.schatten == pytest.approx(np.sum(s))  # ‖A‖_* = min ½(‖U‖² + ‖V‖²)
    # an unbalanced factorisation of the same product has strictly more layer energy
    if depth > 1:
        c = np.diag(rng.uniform(0.5, 2.0, 4))
        skew = [c @ ws[0]] + ws[1:-1] + [ws[-1] @ np.linalg.inv(c)]
        assert analysis.schatten_energy(skew).gap > 1e-3


def test_schatten_energy_of_a_deep_linear_model():
    model = models.DeepLinear.init(3, 5, 2, 3, key=jax.random.PRNGKey(1))
    energy = analysis.schatten_energy(model)
    ws = [np.asarray(w) for w in model.weights]
    assert energy.depth == 3
    assert energy.layer_energy == pytest.approx(sum(np.sum(w**2) for w in ws) / 3)
    assert energy.gap > 0


# ---------------------------------------------------------------------------------------------
# Fourier features
# ---------------------------------------------------------------------------------------------


def synthetic_circles(p=31, freqs=(3, 7, 11), amplitude=None, aspect=None, noise=0.0, seed=0):
    """E_j = Σ_k a_k [cos(2πkj/p) u_k + s_k sin(2πkj/p) v_k]: circle k on hidden units 4k … 4k+3,
    u_k ⊥ v_k with |u_k| = |v_k| elementwise (the same units); s_k the aspect ratio (default 1)."""
    amplitude = amplitude or (1.0,) * len(freqs)
    aspect = aspect or (1.0,) * len(freqs)
    d_h = 4 * (max(freqs) + 1)
    e = np.zeros((p, d_h))
    j = np.arange(p)
    for k, a, s in zip(freqs, amplitude, aspect, strict=True):
        u = np.zeros(d_h)
        v = np.zeros(d_h)
        u[4 * k : 4 * k + 4] = [0.5, 0.5, 0.5, 0.5]
        v[4 * k : 4 * k + 4] = [0.5, -0.5, 0.5, -0.5]
        e += a * (np.outer(np.cos(2 * np.pi * k * j / p), u) + s * np.outer(np.sin(2 * np.pi * k * j / p), v))
    return e + noise * RNG(seed).standard_normal(e.shape)


def test_fourier_coefficients_match_the_fft():
    e = RNG(7).standard_normal((13, 5))
    f = analysis.fourier_coefficients(e)
    np.testing.assert_allclose(f, np.fft.fft(e, axis=0)[1:7] / 13, atol=1e-14)
    assert analysis.fourier_coefficients(models.EmbeddingNet.init(13, 4, key=jax.random.PRNGKey(0))).shape == (6, 4)


def test_fourier_measures_of_synthetic_circles():
    # Every frequency of p = 11 present, as round circles in orthogonal planes of equal radius.
    m = analysis.fourier_measures(synthetic_circles(p=11, freqs=(1, 2, 3, 4, 5)))
    assert np.array_equal(m.frequencies, [1, 2, 3, 4, 5])
    assert np.max(m.cos) < 1e-12 and np.max(m.pair_cv) < 1e-12 and m.norm_cv < 1e-12
    np.testing.assert_allclose(m.within, 1.0, rtol=1e-12)  # the same hidden units within a frequency
    assert abs(m.across) < 1e-12  # disjoint units across frequencies
    # An ellipse of aspect 2 at k = 2: CV of (r, 2r) = (r/2)/(3r/2) = 1/3; other k stay round.
    m2 = analysis.fourier_measures(synthetic_circles(p=11, freqs=(1, 2, 3, 4, 5), aspect=(1, 2, 1, 1, 1)))
    assert m2.pair_cv[1] == pytest.approx(1 / 3) and np.max(np.delete(m2.pair_cv, 1)) < 1e-12
    assert m2.norm_cv > 0.1 and np.max(m2.cos) < 1e-12
    # A random embedding has no such structure: cos and CVs of order (2·d_h)^{-1/2}.
    rand = analysis.fourier_measures(models.EmbeddingNet.init(37, 512, key=jax.random.PRNGKey(0)))
    assert 0.005 < rand.mean_cos < 0.1 and 0.01 < rand.norm_cv < 0.08
    assert rand.mean_within < 0.9 and rand.across > 0.5  # |·| of random vectors overlap


def test_key_frequencies_recovered():
    e = synthetic_circles(p=37, freqs=(4, 9, 17), amplitude=(3.0, 2.0, 1.0), noise=0.01)
    kf = analysis.key_frequencies(e, fraction=0.95)
    assert list(kf.key) == [4, 9, 17]
    assert kf.shares[3] == pytest.approx(9 / 14, rel=1e-2)  # energy ∝ amplitude²
    assert kf.gini > 0.8
    flat = analysis.key_frequencies(RNG(8).standard_normal((37, 2000)))
    assert flat.gini < 0.1 and flat.key.size > 10


# ---------------------------------------------------------------------------------------------
# Musat's isolated first-layer dynamics
# ---------------------------------------------------------------------------------------------


def test_first_layer_gradient_matches_finite_differences():
    """∇_E Tr(YYᵀ(HHᵀ)⁻¹) = −2Xᵀ[(AYYᵀAH) ⊙ σ′(XE)] (papers.md §3.2, sign corrected)."""
    problem = tasks.modular_arithmetic(
        0, p=11, pairs="unordered", train_fraction=0.7, loss="mse", model="embedding", width=64
    )
    e = np.asarray(problem.model.embed)
    grad = -2 * (analysis.first_layer_field(e, problem.train) + e)
    rng = RNG(9)
    eps = 1e-6
    for _ in range(3):
        direction = rng.standard_normal(e.shape)
        plus = analysis.first_layer_potential(e + eps * direction, problem.train)
        minus = analysis.first_layer_potential(e - eps * direction, problem.train)
        fd = (plus - minus) / (2 * eps)
        assert fd == pytest.approx(np.sum(grad * direction), rel=1e-6)
    # Tr(YᵀAY) = ‖W‖²_F for the zero-loss second layer W = Hᵀ(HHᵀ)⁻¹Y.
    x, y = np.asarray(problem.train["x"]), np.asarray(problem.train["y"])
    h = np.maximum(e[x[:, 0]] + e[x[:, 1]], 0)
    w = h.T @ np.linalg.solve(h @ h.T, y)
    np.testing.assert_allclose(h @ w, y, atol=1e-8)
    assert analysis.first_layer_potential(e, problem.train) == pytest.approx(np.sum(w**2), rel=1e-9)


def test_isolated_first_layer_flow_groks():
    """Musat E2.5 / papers.md A10, scaled down to p = 23, d_h = 256 (p = 37 needs d_h ≥ 492 and
    costs ~10× more per step): W = H⁺Y keeps the train accuracy at 1 while the test accuracy sits
    at chance, then rises to 1; the Fourier circles become round and orthogonal."""
    problem = tasks.modular_arithmetic(
        0, p=23, pairs="unordered", train_fraction=0.7, loss="mse", model="embedding", width=256
    )
    assert problem.train["x"].shape == (193, 2)  # 0.7 of 276 unordered pairs
    ds = analysis.isolated_first_layer_flow(problem.model, problem.train, problem.test, tau1=2.5, saveat=11)
    assert ds.attrs["result"] == "successful" and ds.attrs["num_steps"] == 2500  # Musat's η = 1e-3
    tau, test = ds["tau"].values, ds["test_accuracy"].values
    np.testing.assert_array_equal(ds["train_accuracy"].values, 1.0)
    assert np.all(test[tau <= 0.5] <= 0.05)  # chance is 1/23 = 0.043
    assert test[-1] >= 0.99
    t_half = tau[np.argmax(test >= 0.5)]
    assert 1.0 <= t_half <= 2.0
    # Gradient flow of Φ(E) = ½‖E‖²_F + ½Tr(YᵀAY): Φ decreases along the run.
    phi = 0.5 * ds["embed_norm"].values ** 2 + 0.5 * ds["potential"].values
    assert np.all(np.diff(phi) < 0)
    # Fourier features (Musat §7): rounder and more orthogonal circles, own hidden units.
    assert ds["fourier_cos"].values[-1] < 0.6 * ds["fourier_cos"].values[0]
    assert ds["fourier_norm_cv"].values[-1] < 0.6 * ds["fourier_norm_cv"].values[0]
    start, end = analysis.fourier_measures(problem.model), analysis.fourier_measures(ds["embed_final"].values)
    assert end.mean_pair_cv < 0.5 * start.mean_pair_cv
    assert abs(start.mean_within - start.across) < 0.05  # no structure at initialisation
    assert end.across < end.mean_within - 0.2
    np.testing.assert_allclose(ds["embed_final"].values.shape, (23, 256))


def test_isolated_first_layer_flow_errors():
    problem = tasks.modular_arithmetic(
        0, p=7, pairs="unordered", train_fraction=0.7, loss="mse", model="embedding", width=8
    )
    with pytest.raises(gflow.ProblemError, match="widen the embedding"):
        analysis.isolated_first_layer_flow(problem.model, problem.train)
    with pytest.raises(gflow.ProblemError, match="unknown solver"):
        analysis.isolated_first_layer_flow(problem.model, problem.train, solver="rk4")
