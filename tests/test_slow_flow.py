"""The slow phase: the flow limit Φ(θ0), the Riemannian slow flow on the manifold of minimisers,
and the O(λ) convergence of the full flow to it in slow time (papers.md §2.2–§2.4, A1–A3).

Conventions: dθ/dt = −∇F(θ) − λθ, τ = λt, slow flow dθ/dτ = −P(θ)θ from Φ(θ0). References are
closed forms, `scipy.optimize` (linprog, BFGS) and NumPy linear algebra, never gflow itself.
"""

from __future__ import annotations

import functools
import json

import equinox as eqx
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate
import scipy.linalg
import scipy.optimize
import scipy.special

import gflow
from gflow._manifold import build_manifold
from gflow._slow import (
    FLOW_NOT_CONVERGED,
    LEFT_MANIFOLD,
    FlowLimit,
    compare,
    flow_limit,
    project_tangent,
    slow_flow,
)

# Pinned solver: the "auto" rule is exercised where slow_flow computes Φ(θ0) itself.
LIMIT_TOLS = {"rtol": 1e-12, "atol": 1e-14, "solver": "kvaerno5"}
MANIFOLD_TOL = 1e-8


def rel_err(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def assert_on_manifold(traj, tol=MANIFOLD_TOL):
    res = np.asarray(traj.metrics["manifold_residual"])
    reached = np.isfinite(np.asarray(traj.metrics["train_loss"]))
    assert reached.any()
    assert np.all(res[reached] < tol), np.max(res[reached])


# ---------------------------------------------------------------------------------------------
# 1. Linear regression (A1): Φ is the projection onto {Xw = y}; the slow flow is e^{−τ} exactly
# ---------------------------------------------------------------------------------------------

LINEAR_TAUS = np.array([0.0, 0.1, 0.5, 1.0, 2.0, 5.0, 10.0])


@functools.cache
def linear_problem():
    return gflow.tasks.linear_regression(0, n=10, d=25, n_test=50)


@functools.cache
def linear_reference():
    p = linear_problem()
    x, y, w0 = (np.asarray(a, float) for a in (p.train["x"], p.train["y"], p.model.w))
    null = scipy.linalg.null_space(x)
    p_null = null @ null.T
    w_min = np.linalg.lstsq(x, y, rcond=None)[0]  # minimum-norm solution X⁺y
    return p_null, w_min, w0


@functools.cache
def linear_limit():
    return flow_limit(linear_problem(), **LIMIT_TOLS)


@functools.cache
def linear_slow(linear_solver, manifold="zero_loss"):
    return slow_flow(
        linear_problem(),
        LINEAR_TAUS[-1],
        start=linear_limit(),
        manifold=manifold,
        saveat=LINEAR_TAUS,
        save_params=True,
        linear_solver=linear_solver,
    )


def test_flow_limit_is_projection_onto_solution_set():
    p_null, w_min, w0 = linear_reference()
    limit = linear_limit()
    assert isinstance(limit, FlowLimit)
    assert bool(limit.ok), limit.message
    assert limit.message == "successful"
    assert float(limit.grad_norm) < 1e-10
    assert float(limit.t) > 1.0  # it had to flow, and stopped at the first ‖∇F‖ < tol
    phi = p_null @ w0 + w_min
    assert rel_err(limit.model.w, phi) < 1e-9
    assert np.linalg.norm(p_null @ w0) > 1.0  # the null-space part is not trivially small


@pytest.mark.parametrize(
    "linear_solver, manifold", [("dense", "zero_loss"), ("matrix_free", "zero_loss"), ("dense", "critical")]
)
def test_linear_slow_flow_is_exact(linear_solver, manifold):
    p_null, w_min, w0 = linear_reference()
    traj = linear_slow(linear_solver, manifold)
    assert bool(traj.ok), traj.message
    assert traj.time == "slow" and np.isnan(float(traj.lam))
    assert traj.solver == f"slow_flow/tsit5 ({manifold}, {linear_solver})"
    np.testing.assert_allclose(np.asarray(traj.ts), LINEAR_TAUS)
    np.testing.assert_allclose(np.asarray(traj.tau), LINEAR_TAUS)
    assert float(traj.t_final) == pytest.approx(LINEAR_TAUS[-1], rel=1e-14)
    ws = np.asarray(traj.params.w)
    for tau, w in zip(LINEAR_TAUS, ws, strict=True):
        expected = w_min + np.exp(-tau) * (p_null @ w0)  # row-space part fixed, null part e^{−τ}
        assert np.linalg.norm(w - expected) <= 1e-9 * np.linalg.norm(expected), tau
    null0 = np.linalg.norm(p_null @ w0)
    np.testing.assert_allclose(
        np.asarray(traj.metrics["test_null_norm"]), np.exp(-LINEAR_TAUS) * null0, rtol=1e-8, atol=1e-10
    )
    m = {k: np.asarray(v) for k, v in traj.metrics.items()}
    np.testing.assert_array_equal(m["objective"], m["train_loss"])  # λ = 0 on the slow flow
    assert np.all(m["train_loss"] < 1e-20)
    np.testing.assert_allclose(m["norm"], np.linalg.norm(ws, axis=1), rtol=1e-12)
    assert np.all(np.diff(m["norm"]) < 0)  # the slow flow decreases ‖θ‖
    assert_on_manifold(traj, 1e-10)
    ds = traj.to_xarray()
    assert "manifold_residual" in ds and ds.attrs["time_variable"].startswith("tau")


class Affine(eqx.Module):
    w: jax.Array
    b: jax.Array

    def __call__(self, x):
        return jnp.dot(x, self.w) + self.b


def test_decay_mask_slow_flow_limit_is_min_norm_with_free_bias():
    """Weight decay on w only: the slow flow dθ/dτ = −P(m⊙θ) ends at argmin ‖w‖ s.t. Xw + b = y,
    with b free (centred least squares). The start θ0 is off the manifold: the retraction
    (one Gauss–Newton step for residuals linear in θ) puts it there."""
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(6, 10)), rng.normal(size=6)
    model = Affine(jnp.asarray(rng.normal(size=10)), jnp.asarray(3.0))
    p = gflow.Problem(
        model, {"x": jnp.asarray(x), "y": jnp.asarray(y)}, loss="mse", decay_mask=lambda m: Affine(True, False)
    )
    traj = slow_flow(p, 40.0, start=p.model, saveat=8)
    assert bool(traj.ok), traj.message
    assert float(traj.stats["start_residual"]) > 1.0 and int(traj.stats["retraction_steps"]) >= 1
    assert_on_manifold(traj)
    xc = x - x.mean(axis=0)
    w = np.linalg.pinv(xc) @ (y - y.mean())
    b = y.mean() - x.mean(axis=0) @ w
    np.testing.assert_allclose(np.asarray(traj.final.w), w, atol=1e-9)
    assert float(traj.final.b) == pytest.approx(b, abs=1e-9)
    np.testing.assert_allclose(float(traj.metrics["norm"][-1]), np.linalg.norm(w), rtol=1e-9)  # ‖m⊙θ‖


def test_float32_parameters_stay_float32():
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(6, 10)), rng.normal(size=6)
    f32 = jnp.float32
    p = gflow.Problem(
        gflow.models.Linear(jnp.asarray(rng.normal(size=10), f32)),
        {"x": jnp.asarray(x, f32), "y": jnp.asarray(y, f32)},
        loss="mse",
    )
    traj = slow_flow(p, 5.0, start=p.model, saveat=5, save_params=True)
    assert bool(traj.ok), traj.message
    assert traj.final.w.dtype == f32 and traj.params.w.dtype == f32 and traj.ts.dtype == f32
    assert all(v.dtype == f32 for v in traj.metrics.values())
    assert_on_manifold(traj, 1e-3)  # the float32 default manifold_tol


def test_slow_flow_does_not_recompile_for_new_tau1_or_start():
    traces = [0]

    def residuals(model, data):
        traces[0] += 1
        return jax.vmap(model)(data["x"]) - data["y"]

    base = linear_problem()
    problem = gflow.Problem(base.model, base.train, residuals=residuals)
    kw = {"saveat": 5, "linear_solver": "dense"}
    first = slow_flow(problem, 1.0, **kw)  # start=None: Φ(θ0) first
    assert bool(first.ok), first.message
    assert traces[0] > 0
    other_start = eqx.tree_at(lambda m: m.w, linear_limit().model, linear_limit().model.w + 0.01)
    for tau1, start in ((2.0, None), (0.3, None), (np.float64(4.0), None), (jnp.asarray(1.5), other_start)):
        before = traces[0]
        traj = slow_flow(problem, tau1, start=start, **kw)
        jax.block_until_ready(traj)
        assert traces[0] == before, f"retraced for tau1={tau1}"
        assert bool(traj.ok)
        assert float(traj.t_final) == pytest.approx(float(tau1))
    assert float(first.stats["flow_limit_grad_norm"]) < 1e-10


# ---------------------------------------------------------------------------------------------
# 2. Diagonal network β = u⊙v (A2): O(λ) convergence of θ^λ(τ/λ) to θ°(τ), min-ℓ1 limit
# ---------------------------------------------------------------------------------------------

A2_TAUS = np.array([0.0, 0.1, 0.25, 0.5, 1.0, 2.0])
A2_LAMS = (1e-1, 1e-2, 1e-3, 1e-4)


def _sum_residuals(model, data):
    # F = ½·mean(r²) with r = √n (Xβ − y) is papers.md A2's F = ½‖Xβ − y‖² (the sum convention).
    return jnp.sqrt(data["x"].shape[0]) * (jax.vmap(model)(data["x"]) - data["y"])


@functools.cache
def a2_problem():
    """A2: n = 3, d = 8, X ~ 𝒩(0, 1), β⋆ = (1, −0.7, 0, …), w0 ~ 𝒩(0, I₁₆) (NumPy seed 3)."""
    rng = np.random.default_rng(3)
    n, d = 3, 8
    x = rng.normal(size=(n, d))
    beta_star = np.zeros(d)
    beta_star[:2] = (1.0, -0.7)
    w0 = rng.normal(size=2 * d)
    model = gflow.models.DiagonalNet(jnp.asarray(w0[:d]), jnp.asarray(w0[d:]), "uv")
    return gflow.Problem(model, {"x": jnp.asarray(x), "y": jnp.asarray(x @ beta_star)}, residuals=_sum_residuals)


@functools.cache
def a2_limit():
    return flow_limit(a2_problem(), **LIMIT_TOLS)


@functools.cache
def a2_slow():
    return slow_flow(a2_problem(), A2_TAUS[-1], start=a2_limit(), saveat=A2_TAUS, save_params=True)


@functools.cache
def a2_full(lam):
    return gflow.simulate(
        a2_problem(),
        lam,
        A2_TAUS[-1] / lam,
        solver="kvaerno5",
        saveat=A2_TAUS / lam,
        save_params=True,
        rtol=1e-11,
        atol=1e-13,
    )


def min_l1_interpolator(x, y):
    """argmin ‖β‖₁ s.t. Xβ = y, as the LP over β = β⁺ − β⁻ ≥ 0."""
    d = x.shape[1]
    res = scipy.optimize.linprog(
        np.ones(2 * d), A_eq=np.hstack([x, -x]), b_eq=y, bounds=[(0, None)] * (2 * d), method="highs"
    )
    assert res.success, res.message
    return res.x[:d] - res.x[d:]


def test_a2_full_flow_converges_to_slow_flow_at_rate_lambda():
    slow = a2_slow()
    assert bool(slow.ok), slow.message
    assert_on_manifold(slow)
    fulls = [a2_full(lam) for lam in A2_LAMS]
    for f in fulls:
        assert bool(f.ok), f.message
    ds = compare(fulls, slow, at=[0.5, 1.0])
    assert ds["distance"].dims == ("lam", "tau")
    assert bool(ds["exact"].all())  # saved at τ/λ, so no interpolation
    dist = ds["distance"].sel(tau=0.5).values
    # papers.md A2 (LSODA, rtol 1e-10): 1.1e-2, 1.1e-3, 1.1e-4, 1.1e-5 at τ = 0.5
    np.testing.assert_allclose(dist, 0.11 * np.asarray(A2_LAMS), rtol=0.1)
    for tau in (0.1, 0.25, 0.5, 1.0, 2.0):
        order = float(ds["order"].sel(tau=tau))
        assert 0.85 <= order <= 1.15, (tau, order, ds["distance"].sel(tau=tau).values)
    np.testing.assert_allclose(ds["order_at"].values, ds["order"].sel(tau=[0.5, 1.0]).values)
    # Not uniform at τ = 0: θ^λ(0) = θ0 while θ°(0) = Φ(θ0), for every λ (Prop. 2).
    at0 = ds["distance"].sel(tau=0.0).values
    expected0 = np.linalg.norm(
        np.concatenate(
            [
                np.asarray(a2_problem().model.u) - np.asarray(a2_limit().model.u),
                np.asarray(a2_problem().model.v) - np.asarray(a2_limit().model.v),
            ]
        )
    )
    np.testing.assert_allclose(at0, expected0, rtol=1e-12)
    assert expected0 > 0.5
    # Metric differences are O(λ) too (norm), and the full flow's objective carries (λ/2)‖θ‖².
    norm_diff = np.abs(ds["norm_diff"].sel(tau=1.0).values)
    assert np.all(norm_diff < 0.2 * np.asarray(A2_LAMS))


def test_compare_single_run_and_interpolation():
    slow = a2_slow()
    ds = compare(a2_full(1e-3), slow)
    assert ds["distance"].dims == ("tau",) and ds.attrs["lam"] == 1e-3
    assert "order" not in ds
    # A full flow saved on another (fine, log-spaced) grid is interpolated in log τ, and says so;
    # the interpolation error is O((Δ log τ)²), small against the O(λ) distance at λ = 0.1.
    fine = gflow.simulate(
        a2_problem(),
        0.1,
        A2_TAUS[-1] / 0.1,
        solver="tsit5",
        saveat=np.geomspace(1e-3, 2.0, 200) / 0.1,
        save_params=True,
        rtol=1e-11,
        atol=1e-13,
    )
    di = compare(fine, slow)
    exact = compare(a2_full(0.1), slow)
    assert not bool(di["exact"].sel(tau=0.5)) and bool(di["exact"].sel(tau=2.0))
    assert np.isnan(float(di["distance"].sel(tau=0.0)))  # before the first save time
    np.testing.assert_allclose(
        di["distance"].sel(tau=[0.25, 0.5, 1.0]), exact["distance"].sel(tau=[0.25, 0.5, 1.0]), rtol=0.05
    )
    # A batched Trajectory (members stacked on a leading axis) reads like the sequence.
    batched = jax.tree.map(lambda *xs: jnp.stack(xs), a2_full(1e-1), a2_full(1e-2))
    stacked = compare(batched, slow)
    listed = compare([a2_full(1e-1), a2_full(1e-2)], slow)
    np.testing.assert_array_equal(stacked["distance"].values, listed["distance"].values)
    np.testing.assert_allclose(stacked["lam"].values, [1e-1, 1e-2])
    with pytest.raises(gflow.ProblemError, match="save_params=True"):
        compare(gflow.simulate(a2_problem(), 1e-1, 5.0, solver="tsit5"), slow)


def test_plot_slow_flow_draws_every_lambda_and_inset():
    import matplotlib.pyplot as plt

    fig = gflow.plot_slow_flow([a2_full(lam) for lam in A2_LAMS], a2_slow(), at=[0.5])
    ax, ax_dist = fig.axes[:2]
    assert ax.get_xscale() == "log" and ax_dist.get_xlabel() == "τ = λt (slow time)"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert sum(lab.startswith("full flow, λ") for lab in labels) == len(A2_LAMS)
    inset = ax.child_axes[0]
    assert inset.get_xscale() == "log" and inset.get_yscale() == "log"
    plt.close(fig)


def test_a2_slow_flow_limit_is_min_l1_through_the_singular_limit():
    """β → the minimum-ℓ1 interpolator β⋆, which has 2 < n = 3 non-zeros: JJᵀ = X diag(u² + v²) Xᵀ
    loses rank as τ → ∞ (a singular point). The regularised pseudo-inverse keeps the flow finite
    and on the manifold all the way to τ = 300, where λ_min(JJᵀ)/λ_max is at rounding level."""
    p = a2_problem()
    x, y = np.asarray(p.train["x"]), np.asarray(p.train["y"])
    beta_l1 = min_l1_interpolator(x, y)
    np.testing.assert_allclose(beta_l1[:2], (1.0, -0.7), atol=1e-9)  # ℓ1 recovers β⋆ here
    taus = np.array([0.0, 1.0, 10.0, 40.0, 100.0, 300.0])
    traj = slow_flow(p, taus[-1], start=a2_limit(), saveat=taus, save_params=True)
    assert bool(traj.ok), traj.message
    assert_on_manifold(traj)
    u, v = np.asarray(traj.params.u), np.asarray(traj.params.v)
    beta = u * v
    assert np.max(np.abs(beta[0] - beta_l1)) > 0.1  # Φ(θ0) is not the min-ℓ1 point
    for i in (3, 4, 5):  # τ ≥ 40
        assert np.max(np.abs(beta[i] - beta_l1)) < 1e-4, (taus[i], beta[i])
        # balanced: ‖θ‖² = ‖u‖² + ‖v‖² = 2‖β‖₁ (3.4 here)
        assert float(traj.metrics["norm"][i]) ** 2 == pytest.approx(2 * np.abs(beta_l1).sum(), rel=1e-6)
    assert 2 * np.abs(beta_l1).sum() == pytest.approx(3.4, rel=1e-9)
    gram = x @ np.diag(u[-1] ** 2 + v[-1] ** 2) @ x.T
    evals = np.linalg.eigvalsh(gram)
    assert evals[0] < 1e-12 * evals[-1]  # numerically singular J at the end
    assert np.all(np.isfinite(u)) and np.all(np.isfinite(v))


@functools.cache
def a2_mid_point():
    """A point on the zero-loss manifold away from Φ(θ0): the slow flow at τ = 0.5."""
    slow = a2_slow()
    i = int(np.searchsorted(A2_TAUS, 0.5))
    return gflow.models.DiagonalNet(slow.params.u[i], slow.params.v[i], "uv")


@pytest.mark.parametrize("which", ["limit", "mid"])
def test_projections_agree_dense_matrix_free_and_critical(which):
    p = a2_problem()
    point = a2_limit().model if which == "limit" else a2_mid_point()
    flat = lambda m: np.concatenate([np.asarray(m.u), np.asarray(m.v)])  # noqa: E731
    dense, res = project_tangent(p, point, linear_solver="dense")
    cg, _ = project_tangent(p, point, linear_solver="matrix_free")
    crit_dense, grad_norm = project_tangent(p, point, manifold="critical", linear_solver="dense")
    crit_lanczos, _ = project_tangent(p, point, manifold="critical", linear_solver="matrix_free", krylov_dim=8)
    assert float(res) < 1e-8 and float(grad_norm) < 1e-8
    # Independent reference: P = I − J⁺J from NumPy's pinv of the explicit Jacobian.
    x = np.asarray(p.train["x"])
    u, v = np.asarray(point.u), np.asarray(point.v)
    jac = np.sqrt(3.0) * np.hstack([x * v, x * u])
    theta = np.concatenate([u, v])
    reference = theta - np.linalg.pinv(jac) @ (jac @ theta)
    scale = np.linalg.norm(reference)
    assert scale > 0.1
    for got in (dense, cg, crit_dense, crit_lanczos):
        assert np.linalg.norm(flat(got) - reference) <= 1e-8 * scale
    # and a vector other than θ
    vec = gflow.models.DiagonalNet(jnp.arange(8.0), -jnp.ones(8), "uv")
    dense_v, _ = project_tangent(p, point, vec, linear_solver="dense")
    cg_v, _ = project_tangent(p, point, vec, linear_solver="matrix_free")
    np.testing.assert_allclose(flat(cg_v), flat(dense_v), atol=1e-8 * np.linalg.norm(flat(dense_v)))
    assert np.linalg.norm(jac @ flat(dense_v)) < 1e-12 * np.linalg.norm(jac) * np.linalg.norm(flat(vec))  # J P v = 0


def test_per_example_jacobian_projection_for_mse():
    """The dense zero_loss path builds J from per-example Jacobians for the built-in MSE residuals
    (several outputs per example here); it must equal the generic path (one VJP per residual, taken
    by the same residuals given as a custom function), CG, and NumPy's I − J⁺J."""
    net = gflow.models.EmbeddingNet.init(5, 8, key=jax.random.PRNGKey(1), init="torch")
    mse = gflow.tasks.modular_arithmetic(0, p=5, pairs="unordered", train_fraction=0.6, loss="mse", model=net)
    custom = gflow.Problem(mse.model, mse.train, test=mse.test, residuals=lambda m, d: mse.residuals_fn(m, d))
    n_res = mse.residuals_fn(mse.model, mse.train).shape[0]
    flat0, unravel = jax.flatten_util.ravel_pytree(mse.params)
    assert n_res == 9 * 5 and n_res < flat0.size  # 9 pairs × 5 outputs, 80 parameters
    vec = unravel(jax.random.normal(jax.random.PRNGKey(2), flat0.shape, flat0.dtype))
    per_example, res = project_tangent(mse, mse.model, vec, linear_solver="dense")
    generic, res_generic = project_tangent(custom, custom.model, vec, linear_solver="dense")
    cg, _ = project_tangent(mse, mse.model, vec, linear_solver="matrix_free")
    got = {
        name: np.asarray(jax.flatten_util.ravel_pytree(t)[0])
        for name, t in (("per_example", per_example), ("generic", generic), ("cg", cg))
    }
    jac = np.asarray(jax.jacfwd(lambda f: mse.residuals_fn(eqx.combine(unravel(f), mse.split()[1]), mse.train))(flat0))
    v = np.asarray(jax.flatten_util.ravel_pytree(vec)[0])
    reference = v - np.linalg.pinv(jac) @ (jac @ v)
    assert float(res) == pytest.approx(float(res_generic), rel=1e-12)
    for name, value in got.items():
        assert np.linalg.norm(value - reference) <= 1e-8 * np.linalg.norm(reference), name
    assert np.linalg.norm(jac @ got["per_example"]) < 1e-10 * np.linalg.norm(jac) * np.linalg.norm(v)
    # The pull-back pairs J's rows with r's entries, so their order matters there (the projection
    # alone cannot see a permutation): the Newton step −J⁺r of both paths, at a point off M.
    steps = []
    for problem in (mse, custom):
        params, static = problem.split()
        geometry = build_manifold(
            problem,
            static,
            unravel,
            manifold="zero_loss",
            path="dense",
            rcond=jnp.asarray(1e-12),
            kernel_rtol=None,
            krylov_dim=1,
            cg_rtol=None,
            cg_max_steps=1,
        )
        assert (geometry.jacobian is not None) == (problem is mse)
        steps.append(np.asarray(geometry.correction(flat0, jnp.zeros_like(flat0), jnp.asarray(1.0))[1]))
    r = np.asarray(mse.residuals_fn(mse.model, mse.train))
    assert np.linalg.norm(r) > 0.1
    np.testing.assert_allclose(steps[0], -np.linalg.pinv(jac) @ r, atol=1e-8 * np.linalg.norm(steps[1]))
    np.testing.assert_allclose(steps[0], steps[1], atol=1e-10 * np.linalg.norm(steps[1]))


def test_tangent_projection_benchmark_smoke(tmp_path, benchmark_module):
    # `benchmarks/tangent_projection.py --quick` in this process (its main(argv), as the script
    # runs it), without a fresh interpreter's start-up and JAX import.
    import contextlib
    import io

    tangent_projection = benchmark_module("tangent_projection")
    out = tmp_path / "tangent_projection.json"
    # The script runs without the suite's strict rank promotion (conftest.py), as on its own.
    with contextlib.redirect_stdout(io.StringIO()), jax.numpy_rank_promotion("allow"):
        tangent_projection.main(["--quick", "--out", str(out)])
    (row,) = json.loads(out.read_text())["rows"]
    assert row["residuals"] == 13 * 5 and row["params"] == 2 * 5 * 512
    assert row["max_rel_diff"] < 1e-10 and row["per_example_run_s"] > 0 and row["generic_run_s"] > 0


def test_matrix_free_slow_flow_matches_dense_on_a2():
    dense = a2_slow()
    cg = slow_flow(
        a2_problem(), A2_TAUS[-1], start=a2_limit(), saveat=A2_TAUS, save_params=True, linear_solver="matrix_free"
    )
    crit = slow_flow(
        a2_problem(),
        A2_TAUS[-1],
        start=a2_limit(),
        saveat=A2_TAUS,
        save_params=True,
        manifold="critical",
    )
    for traj in (cg, crit):
        assert bool(traj.ok), traj.message
        assert_on_manifold(traj)
        for a, b in zip(jax.tree.leaves(traj.params), jax.tree.leaves(dense.params), strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-8)


# ---------------------------------------------------------------------------------------------
# 3. Matrix factorisation UVᵀ, fully observed: balanced limit with ‖U‖² + ‖V‖² = 2‖M‖_*
# ---------------------------------------------------------------------------------------------


class Factorisation(eqx.Module):
    u: jax.Array  # (m, r)
    v: jax.Array  # (n, r)

    def __call__(self, x):
        return x


def _factor_residuals(model, data):
    return jnp.ravel(model.u @ model.v.T - data["m"])


def test_matrix_factorisation_slow_limit_is_balanced_nuclear_norm():
    rng = np.random.default_rng(0)
    m_rows, n_cols, r = 4, 3, 4  # rank M = 3 ≤ r
    target = rng.normal(size=(m_rows, n_cols))
    model = Factorisation(jnp.asarray(rng.normal(size=(m_rows, r))), jnp.asarray(rng.normal(size=(n_cols, r))))
    p = gflow.Problem(model, {"m": jnp.asarray(target)}, residuals=_factor_residuals)
    traj = slow_flow(p, 30.0, saveat=np.array([0.0, 1.0, 10.0, 30.0]), limit_options=LIMIT_TOLS)
    assert bool(traj.ok), traj.message
    assert_on_manifold(traj)
    assert float(traj.stats["flow_limit_grad_norm"]) < 1e-10
    u, v = np.asarray(traj.final.u), np.asarray(traj.final.v)
    np.testing.assert_allclose(u @ v.T, target, atol=1e-9)
    np.testing.assert_allclose(u.T @ u, v.T @ v, atol=1e-6)  # balanced
    nuclear = np.linalg.svd(target, compute_uv=False).sum()
    assert np.sum(u**2) + np.sum(v**2) == pytest.approx(2 * nuclear, rel=1e-6)
    norms = np.asarray(traj.metrics["norm"])
    assert norms[0] ** 2 > 2 * nuclear * 1.05  # Φ(θ0) is not yet the balanced minimum


# ---------------------------------------------------------------------------------------------
# 4. The critical manifold where F > 0 on it: balanced limit 2‖β̂‖₁ for β = u⊙v
# ---------------------------------------------------------------------------------------------


def _logistic_problem():
    rng = np.random.default_rng(1)
    n, d = 40, 3
    x = rng.normal(size=(n, d))
    y = np.sign(x @ np.array([1.0, -0.5, 0.3]) + rng.normal(size=n))  # noisy labels: not separable
    w0 = rng.normal(size=2 * d)
    model = gflow.models.DiagonalNet(jnp.asarray(w0[:d]), jnp.asarray(w0[d:]), "uv")
    return gflow.Problem(model, {"x": jnp.asarray(x), "y": jnp.asarray(y)}, loss="logistic"), x, y


def test_critical_slow_flow_logistic_loss_balances_to_l1_norm():
    p, x, y = _logistic_problem()

    def nll(b):
        return np.mean(np.logaddexp(0.0, -y * (x @ b)))

    def grad(b):
        s = scipy.special.expit(-y * (x @ b))
        return -np.mean(x * (y * s)[:, None], axis=0)

    beta_hat = scipy.optimize.minimize(nll, np.zeros(3), jac=grad, method="BFGS", options={"gtol": 1e-13}).x
    assert np.linalg.norm(grad(beta_hat)) < 1e-10 and np.min(np.abs(beta_hat)) > 0.1
    taus = np.array([0.0, 1.0, 10.0, 30.0])
    traj = slow_flow(p, taus[-1], manifold="critical", saveat=taus, save_params=True, limit_options=LIMIT_TOLS)
    assert bool(traj.ok), traj.message
    assert_on_manifold(traj)
    u, v = np.asarray(traj.params.u), np.asarray(traj.params.v)
    np.testing.assert_allclose(u * v, np.broadcast_to(beta_hat, u.shape), atol=1e-7)  # stays on M = {u⊙v = β̂}
    assert np.max(np.abs(np.abs(u[0]) - np.abs(v[0]))) > 0.1
    np.testing.assert_allclose(np.abs(u[-1]), np.abs(v[-1]), atol=1e-9)
    assert float(traj.metrics["norm"][-1]) ** 2 == pytest.approx(2 * np.abs(beta_hat).sum(), rel=1e-7)
    assert float(traj.metrics["train_loss"][-1]) == pytest.approx(nll(beta_hat), rel=1e-12)
    # accuracy metric from the built-in logistic loss rides along
    assert "train_accuracy" in traj.metrics


@functools.cache
def _noisy_problem():
    """An overdetermined residual problem: F > 0 on its minimisers {u⊙v = β_LS}."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(12, 4))
    y = x @ np.array([0.8, -1.2, 0.5, 0.3]) + 0.3 * rng.normal(size=12)
    w0 = rng.normal(size=8)
    model = gflow.models.DiagonalNet(jnp.asarray(w0[:4]), jnp.asarray(w0[4:]), "uv")
    return gflow.Problem(model, {"x": jnp.asarray(x), "y": jnp.asarray(y)}, loss="mse"), x, y


def test_non_interpolating_residual_problem_critical_works_zero_loss_stops():
    p, x, y = _noisy_problem()
    beta_ls = np.linalg.lstsq(x, y, rcond=None)[0]
    limit = flow_limit(p, **LIMIT_TOLS)
    assert bool(limit.ok), limit.message
    crit = slow_flow(p, 30.0, start=limit, manifold="critical")
    assert bool(crit.ok), crit.message
    assert_on_manifold(crit)
    u, v = np.asarray(crit.final.u), np.asarray(crit.final.v)
    np.testing.assert_allclose(u * v, beta_ls, atol=1e-9)
    assert np.sum(u**2 + v**2) == pytest.approx(2 * np.abs(beta_ls).sum(), rel=1e-8)
    # There is no zero-loss set here: the retraction cannot reach r = 0, and the run stops at once.
    zero = slow_flow(p, 30.0, start=limit, manifold="zero_loss")
    assert bool(zero.result == LEFT_MANIFOLD) and not bool(zero.ok)
    assert float(zero.t_final) == 0.0
    assert float(zero.stats["start_residual"]) > 0.1
    assert np.all(np.isnan(np.asarray(zero.metrics["train_loss"])))
    np.testing.assert_allclose(np.asarray(zero.final.u), np.asarray(limit.model.u), rtol=1e-12)


# ---------------------------------------------------------------------------------------------
# 5. Singular points, failures and bad input
# ---------------------------------------------------------------------------------------------


class Point(eqx.Module):
    w: jax.Array

    def __call__(self, x):
        return x


def _cusp_residuals(model, data):
    del data
    u, v = model.w
    return jnp.stack([v**2 - (u - 1.0) ** 3])


def test_singular_cusp_stops_with_left_manifold():
    """M = {v² = (u − 1)³}: from (2, 1) on the upper branch the slow flow reaches the cusp (1, 0),
    where J = 0, in finite slow time τ* and cannot go on; it stops there with LEFT_MANIFOLD."""
    p = gflow.Problem(Point(jnp.array([2.0, 1.0])), {"x": jnp.zeros((1,))}, residuals=_cusp_residuals)
    taus = np.linspace(0.0, 3.0, 31)
    traj = slow_flow(p, 3.0, start=p.model, saveat=taus)
    assert bool(traj.result == LEFT_MANIFOLD) and not bool(traj.ok)

    # On the branch v = s³, u = 1 + s²: dθ/dτ = −(θ·T)T with T ∝ (1, 1.5s), so
    # du/dτ = −(u + 1.5 s⁴)/(1 + 2.25 s²) and τ* = ∫₁² (1 + 2.25(u − 1))/(u + 1.5(u − 1)²) du.
    tau_star = scipy.integrate.quad(lambda u: (1 + 2.25 * (u - 1)) / (u + 1.5 * (u - 1) ** 2), 1.0, 2.0)[0]
    assert float(traj.t_final) == pytest.approx(tau_star, abs=2e-3)
    final = np.asarray(traj.final.w)
    assert np.all(np.isfinite(final)) and np.linalg.norm(final - np.array([1.0, 0.0])) < 1e-3
    before = taus < float(traj.t_final)
    res = np.asarray(traj.metrics["manifold_residual"])
    assert np.all(res[before] < MANIFOLD_TOL) and np.all(np.isnan(res[~before]))


def test_flow_limit_reports_non_convergence():
    """Separable logistic regression has its minimisers at infinity: no Φ(θ0)."""
    x = jnp.asarray(np.random.default_rng(0).normal(size=(8, 2)))
    y = jnp.sign(x[:, 0])
    p = gflow.Problem(gflow.models.Linear(jnp.zeros(2)), {"x": x, "y": y}, loss="logistic")
    limit = flow_limit(p, t_max=50.0, solver="tsit5")
    assert bool(limit.result == FLOW_NOT_CONVERGED) and not bool(limit.ok)
    assert "t_max" in limit.message
    assert float(limit.t) == pytest.approx(50.0) and float(limit.grad_norm) > 1e-10
    # the slow flow passes the code on instead of pretending
    traj = slow_flow(p, 1.0, manifold="critical", saveat=3, limit_options={"t_max": 50.0, "solver": "tsit5"})
    assert bool(traj.result == FLOW_NOT_CONVERGED)


@pytest.mark.parametrize("loss", ["cross_entropy", "logistic", "custom"])
def test_zero_loss_needs_a_residual_problem(loss):
    x = jnp.asarray(np.random.default_rng(0).normal(size=(6, 2)))
    if loss == "cross_entropy":
        model = eqx.nn.Linear(2, 3, key=jax.random.PRNGKey(0))
        p = gflow.Problem(model, {"x": x, "y": jnp.array([0, 1, 2, 0, 1, 2])}, loss="cross_entropy")
    elif loss == "logistic":
        p = gflow.Problem(gflow.models.Linear(jnp.ones(2)), {"x": x, "y": jnp.sign(x[:, 0])}, loss="logistic")
    else:
        p = gflow.Problem(gflow.models.Linear(jnp.ones(2)), {"x": x, "y": x[:, 0]}, loss=lambda m, d: jnp.sum(m.w**2))
    match = r"manifold='zero_loss' needs a residual problem.*manifold='critical'"
    with pytest.raises(gflow.ProblemError, match=match) as info:
        slow_flow(p, 1.0)
    assert "\n" not in str(info.value)
    with pytest.raises(gflow.ProblemError, match="zero_loss"):
        project_tangent(p)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"manifold": "sphere"}, "unknown manifold"),
        ({"linear_solver": "qr"}, "unknown linear_solver"),
        ({"solver": "kvaerno5"}, "unknown slow-flow solver"),
        ({"tau1": 0.0}, "tau1 must be > 0"),
        ({"tau1": -1.0}, "tau1 must be > 0"),
        ({"start": gflow.models.Linear(jnp.ones(3))}, "start must be None, a FlowLimit, or a model"),
        ({"krylov_dim": 0}, "krylov_dim must be a positive int"),
        ({"start": "model", "limit_options": {"t_max": 1.0}}, "limit_options apply only with start=None"),
        ({"limit_options": {"tmax": 1.0}}, "unknown limit_options 'tmax'; flow_limit takes atol, divergence_norm"),
        ({"limit_options": [1.0]}, r"limit_options must be a dict of flow_limit arguments, got \[1.0\]"),
        ({"saveat": 1}, "saveat as an int"),
        ({"saveat": [0.0, 2.0]}, r"saveat times must be increasing and lie in \[0, tau1"),
        ({"gain": -1.0}, "gain must be >= 0"),
    ],
)
def test_slow_flow_input_errors(kwargs, match):
    p = linear_problem()
    kwargs = dict(kwargs)
    tau1 = kwargs.pop("tau1", 1.0)
    if kwargs.get("start") == "model":
        kwargs["start"] = p.model
    with pytest.raises(gflow.ProblemError, match=match) as info:
        slow_flow(p, tau1, **kwargs)
    assert "\n" not in str(info.value)


def test_flow_limit_input_errors():
    p = linear_problem()
    with pytest.raises(gflow.ProblemError, match="tol must be > 0"):
        flow_limit(p, tol=0.0)
    with pytest.raises(gflow.ProblemError, match="t_max must be > 0"):
        flow_limit(p, t_max=-1.0)
    with pytest.raises(gflow.ProblemError, match="unknown solver"):
        flow_limit(p, solver="euler")
    with pytest.raises(gflow.ProblemError, match="needs a gflow.Problem"):
        flow_limit(p.model)


# ---------------------------------------------------------------------------------------------
# 6. The convergence figure
# ---------------------------------------------------------------------------------------------


def test_convergence_figure_smoke(figure_run):
    # The figure experiment gflow.papers.slow_flow_convergence (scripts/slow_flow_convergence.py
    # is `gflow run slow_flow_convergence`), its smoke run shared with test_figure_registry.py.
    run = figure_run("slow_flow_convergence")
    png = run.out / "figure.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    ds = run.ds
    assert ds["distance"].dims == ("lam", "tau")
    assert ds.sizes["lam"] >= 2
    order = ds["order"].sel(tau=0.5, method="nearest").item()
    assert 0.85 <= order <= 1.15, order
    assert "order" in run.stdout
