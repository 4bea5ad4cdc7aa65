"""Numerical reference tests: gflow against closed forms and independent SciPy solutions.

Conventions checked here: dθ/dt = −∇F(θ) − λθ, F_λ = F + (λ/2)‖θ‖², and for "mse" problems
F = ½·mean(residual²). Every reference is computed in NumPy/SciPy, never with JAX.
"""

from __future__ import annotations

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate
import scipy.linalg

import gflow

TIGHT = {"rtol": 1e-10, "atol": 1e-12}
# Every solver gflow offers is checked below at rtol 1e-10, except RKC1: a first-order method's
# step shrinks like √rtol, so there it needs ~10⁵ steps per unit of t (it ran out of 200 000 steps
# at t < 1 of 300 on the diagonal network). It is checked against Radau and DOP853 at its own
# tolerances in test_chebyshev.py. These five at least must be offered.
SOLVERS = tuple(name for name in gflow.SOLVER_NAMES if name != "rkc1")


def test_solver_names():
    assert set(SOLVERS) >= {"tsit5", "dopri5", "kvaerno3", "kvaerno5", "auto"}


def rel_err(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


# ---------------------------------------------------------------------------------------------
# Small problems (module-level caches so compiled functions and runs are shared between tests)
# ---------------------------------------------------------------------------------------------


@functools.cache
def linear_problem():
    return gflow.tasks.linear_regression(0, n=10, d=25, n_test=50)


@functools.cache
def diag_problem(parameterisation: str):
    return gflow.tasks.diagonal_regression(0, n=5, d=8, k=2, parameterisation=parameterisation, n_test=20)


@functools.cache
def musat_problem():
    return gflow.tasks.musat_addition(0)


def linear_arrays():
    p = linear_problem()
    x = np.asarray(p.train["x"], float)
    y = np.asarray(p.train["y"], float)
    w0 = np.asarray(p.model.w, float)
    return x, y, w0


class LinearReference:
    """θ' = −(XᵀX/n + λI)θ + Xᵀy/n solved exactly (matrix exponential of an augmented matrix)."""

    def __init__(self, lam):
        x, y, w0 = linear_arrays()
        n, d = x.shape
        self.x, self.y, self.w0, self.lam = x, y, w0, lam
        self.a = x.T @ x / n + lam * np.eye(d)
        self.b = x.T @ y / n
        # Projector onto Ker X from an SVD-based orthonormal basis (independent of gflow's pinv).
        null = scipy.linalg.null_space(x)
        assert null.shape == (d, d - n)
        self.p_null = null @ null.T
        p = linear_problem()
        self.w_star = np.asarray(p.test["w_star"], float)

    def theta(self, t):
        d = self.w0.size
        m = np.zeros((d + 1, d + 1))
        m[:d, :d] = -self.a
        m[:d, d] = self.b
        z = scipy.linalg.expm(m * t) @ np.append(self.w0, 1.0)
        return z[:d]

    def ridge(self):
        return np.linalg.solve(self.a, self.b)

    def observables(self, w):
        r = self.x @ w - self.y
        loss = 0.5 * np.mean(r**2)
        return {
            "train_loss": loss,
            "objective": loss + 0.5 * self.lam * w @ w,
            "norm": np.linalg.norm(w),
            "grad_norm": np.linalg.norm(self.x.T @ r / self.x.shape[0]),
            "test_null_norm": np.linalg.norm(self.p_null @ w),
            "test_weight_error": np.linalg.norm(w - self.w_star),
        }


# ---------------------------------------------------------------------------------------------
# 1. Linear regression: exact solution by the matrix exponential
# ---------------------------------------------------------------------------------------------

SAVE_FRACTIONS = np.array([0.0, 1e-3, 0.05, 0.2, 0.5, 1.0])


@pytest.mark.parametrize("lam", [1e-2, 1e-3, 1e-4])
def test_linear_regression_matches_matrix_exponential(lam):
    ref = LinearReference(lam)
    problem = linear_problem()
    null0 = np.linalg.norm(ref.p_null @ ref.w0)
    assert null0 > 1.0  # the null-space component is not trivially zero
    for t1 in (1.0, 0.5 / lam, 1.0 / lam, 5.0 / lam):
        save_ts = t1 * SAVE_FRACTIONS
        traj = gflow.simulate(problem, lam, t1, solver="auto", saveat=save_ts, **TIGHT)
        assert bool(traj.ok), traj.message
        np.testing.assert_allclose(np.asarray(traj.ts), save_ts, rtol=1e-14)
        assert float(traj.t_final) == pytest.approx(t1, rel=1e-14)
        w = np.asarray(traj.final.w)
        assert rel_err(w, ref.theta(t1)) <= 1e-6, (t1, traj.solver)
        for i, s in enumerate(save_ts):
            ws = ref.theta(s)
            expected = ref.observables(ws)
            for name, value in expected.items():
                got = float(traj.metrics[name][i])
                assert got == pytest.approx(value, rel=1e-6, abs=1e-13), (name, s, traj.solver)
            # Null-space coordinates decay exactly as e^{−λt}.
            null_t = float(traj.metrics["test_null_norm"][i])
            assert null_t == pytest.approx(np.exp(-lam * s) * null0, rel=1e-6), (s, traj.solver)


@pytest.mark.parametrize("lam", [1e-2, 1e-3, 1e-4])
def test_linear_regression_long_time_limit_is_ridge(lam):
    ref = LinearReference(lam)
    t1 = 50.0 / lam
    traj = gflow.simulate(linear_problem(), lam, t1, solver="auto", saveat=t1 * SAVE_FRACTIONS, **TIGHT)
    assert bool(traj.ok), traj.message
    ridge = ref.ridge()
    # the ridge solution lies in the row space of X
    assert np.linalg.norm(ref.p_null @ ridge) <= 1e-10 * np.linalg.norm(ridge)
    assert rel_err(traj.final.w, ridge) <= 1e-6
    # at the fixed point the regularised gradient vanishes: ∇F = −λθ
    assert float(traj.metrics["grad_norm"][-1]) == pytest.approx(lam * np.linalg.norm(ridge), rel=1e-5)
    assert float(traj.metrics["objective"][-1]) == pytest.approx(ref.observables(ridge)["objective"], rel=1e-9)


# ---------------------------------------------------------------------------------------------
# 2. Diagonal networks against SciPy's Radau on a hand-written NumPy vector field
# ---------------------------------------------------------------------------------------------

DIAG_LAM = 1e-2
DIAG_T1 = 300.0


class DiagReference:
    def __init__(self, parameterisation, lam):
        p = diag_problem(parameterisation)
        self.par = parameterisation
        self.lam = lam
        self.x = np.asarray(p.train["x"], float)
        self.y = np.asarray(p.train["y"], float)
        self.u0 = np.asarray(p.model.u, float)
        self.v0 = np.asarray(p.model.v, float)
        self.d = self.u0.size

    def beta(self, u, v):
        return u * v if self.par == "uv" else u**2 - v**2

    def field(self, t, z):
        del t
        u, v = z[: self.d], z[self.d :]
        r = self.x @ self.beta(u, v) - self.y
        g = self.x.T @ r / self.x.shape[0]  # ∂F/∂β for F = ½·mean(r²)
        if self.par == "uv":
            gu, gv = v * g, u * g
        else:
            gu, gv = 2.0 * u * g, -2.0 * v * g
        return -np.concatenate([gu + self.lam * u, gv + self.lam * v])

    def objective(self, z):
        u, v = z[: self.d], z[self.d :]
        r = self.x @ self.beta(u, v) - self.y
        return 0.5 * np.mean(r**2) + 0.5 * self.lam * (z @ z)

    @functools.cached_property
    def solution(self):
        sol = scipy.integrate.solve_ivp(
            self.field,
            (0.0, DIAG_T1),
            np.concatenate([self.u0, self.v0]),
            method="Radau",
            rtol=1e-10,
            atol=1e-12,
            dense_output=True,
        )
        assert sol.success, sol.message
        return sol


@functools.cache
def diag_reference(parameterisation):
    return DiagReference(parameterisation, DIAG_LAM)


@functools.cache
def diag_run(parameterisation, solver):
    return gflow.simulate(diag_problem(parameterisation), DIAG_LAM, DIAG_T1, solver=solver, **TIGHT)


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("parameterisation", ["uv", "squares"])
def test_diagonal_network_matches_radau(parameterisation, solver):
    ref = diag_reference(parameterisation)
    traj = diag_run(parameterisation, solver)
    assert bool(traj.ok), traj.message
    assert traj.solver in SOLVERS and traj.solver != "auto"
    if solver != "auto":
        assert traj.solver == solver
    final = np.concatenate([np.asarray(traj.final.u), np.asarray(traj.final.v)])
    expected = ref.solution.sol(DIAG_T1)
    assert rel_err(final, expected) <= 1e-6
    # The flow moved well away from its start, so the comparison is not vacuous.
    start = np.concatenate([ref.u0, ref.v0])
    assert rel_err(start, expected) > 0.1
    # Observables along the run: objective F_λ and ‖θ‖ at every save time.
    ts = np.asarray(traj.ts)
    zs = ref.solution.sol(ts).T
    obj = np.array([ref.objective(z) for z in zs])
    np.testing.assert_allclose(np.asarray(traj.metrics["objective"]), obj, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(np.asarray(traj.metrics["norm"]), np.linalg.norm(zs, axis=1), rtol=1e-6)
    beta_star = np.asarray(diag_problem(parameterisation).test["beta_star"], float)
    beta_final = ref.beta(final[: ref.d], final[ref.d :])
    assert float(traj.metrics["test_beta_error"][-1]) == pytest.approx(np.linalg.norm(beta_final - beta_star), rel=1e-6)


# ---------------------------------------------------------------------------------------------
# 3. Gradient descent converges to the flow at rate O(η)
# ---------------------------------------------------------------------------------------------


def _flat(model):
    return np.concatenate([np.ravel(np.asarray(x)) for x in jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array))])


@pytest.mark.parametrize("which", ["linear", "diag_uv"])
def test_gd_is_first_order_approximation_of_the_flow(which):
    problem = linear_problem() if which == "linear" else diag_problem("uv")
    lam, t_end = 0.1, 5.0
    save_ts = np.linspace(0.0, t_end, 6)
    flow = gflow.simulate(problem, lam, t_end, solver="tsit5", saveat=save_ts, rtol=1e-11, atol=1e-13)
    assert bool(flow.ok), flow.message
    target = _flat(flow.final)
    etas = np.array([0.02, 0.01, 0.005])
    errors = []
    for eta in etas:
        steps = int(round(t_end / eta))
        run = gflow.gd(problem, lam, eta, steps, save_every=steps // 5)
        assert bool(run.ok), run.message
        assert float(run.t_final) == pytest.approx(t_end, rel=1e-12)
        np.testing.assert_allclose(np.asarray(run.ts), save_ts, rtol=1e-12, atol=1e-12)
        errors.append(rel_err(_flat(run.final), target))
        # the recorded objective follows the flow's at the same times, to O(η) as well
        np.testing.assert_allclose(
            np.asarray(run.metrics["objective"]), np.asarray(flow.metrics["objective"]), rtol=20 * eta
        )
    errors = np.array(errors)
    slope = np.polyfit(np.log(etas), np.log(errors), 1)[0]
    assert 0.85 <= slope <= 1.15, (slope, errors)
    assert errors[-1] <= 5e-3, errors
    assert np.all(np.diff(errors) < 0), errors


def test_gd_matches_hand_written_iteration():
    """gd's update is θ ← θ − η(∇F(θ) + λθ), checked step by step in NumPy (linear regression)."""
    x, y, w0 = linear_arrays()
    lam, eta, steps = 0.05, 0.03, 40
    w = w0.copy()
    for _ in range(steps):
        w = w - eta * (x.T @ (x @ w - y) / x.shape[0] + lam * w)
    run = gflow.gd(linear_problem(), lam, eta, steps, save_every=steps)
    assert rel_err(run.final.w, w) <= 1e-12


# ---------------------------------------------------------------------------------------------
# 4. F_λ is non-increasing along every trajectory
# ---------------------------------------------------------------------------------------------

MONOTONE_CASES = {
    # name: (problem factory, λ, t1)
    "linear": (linear_problem, 1e-2, 300.0),
    "diag_uv": (lambda: diag_problem("uv"), DIAG_LAM, DIAG_T1),
    "diag_squares": (lambda: diag_problem("squares"), DIAG_LAM, DIAG_T1),
    "musat": (musat_problem, 0.1, 100.0),
}


def assert_non_increasing(objective, what):
    obj = np.asarray(objective, float)
    assert np.all(np.isfinite(obj)), what
    tol = 1e-9 * np.abs(obj[:-1]) + 1e-15
    worst = np.max(np.diff(obj) - tol)
    assert worst <= 0.0, (what, worst)
    assert obj[-1] < obj[0], what  # and it did decrease


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("case", list(MONOTONE_CASES))
def test_objective_non_increasing_along_flow(case, solver):
    factory, lam, t1 = MONOTONE_CASES[case]
    if case.startswith("diag_"):
        traj = diag_run(case.removeprefix("diag_"), solver)
    else:
        traj = gflow.simulate(factory(), lam, t1, solver=solver, **TIGHT)
    assert bool(traj.ok), traj.message
    assert np.asarray(traj.ts).shape == (gflow._simulate.DEFAULT_NUM_SAVES,)
    assert_non_increasing(traj.metrics["objective"], (case, solver))
    # objective = train_loss + (λ/2)·norm² exactly as recorded
    m = {k: np.asarray(v) for k, v in traj.metrics.items()}
    np.testing.assert_allclose(m["objective"], m["train_loss"] + 0.5 * lam * m["norm"] ** 2, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("case", list(MONOTONE_CASES))
def test_objective_non_increasing_along_gd(case):
    factory, lam, _ = MONOTONE_CASES[case]
    run = gflow.gd(factory(), lam, 0.01, 4000, save_every=10)
    assert bool(run.ok), run.message
    assert_non_increasing(run.metrics["objective"], case)


# ---------------------------------------------------------------------------------------------
# 5. No recompilation for new λ, t1, data or initial values of the same shapes
# ---------------------------------------------------------------------------------------------

_TRACES = [0]


def _counting_mse(model, data):
    _TRACES[0] += 1  # runs only while JAX traces the loss
    r = jax.vmap(model)(data["x"]) - data["y"]
    return 0.5 * jnp.mean(r**2)


def _counting_problem(seed):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=(6, 4)))
    y = jnp.asarray(rng.normal(size=(6,)))
    w0 = jnp.asarray(rng.normal(size=(4,)))
    return gflow.Problem(gflow.models.Linear(w0), {"x": x, "y": y}, loss=_counting_mse)


def _traced_during(fn):
    before = _TRACES[0]
    out = fn()
    jax.block_until_ready(out)
    return _TRACES[0] - before, out


def test_simulate_does_not_recompile():
    p0, p1, p2 = (_counting_problem(s) for s in range(3))
    kw = {"solver": "tsit5", "rtol": 1e-8, "atol": 1e-10}
    n_first, first = _traced_during(lambda: gflow.simulate(p0, 0.1, 2.0, **kw))
    assert n_first > 0  # the counter sees the first trace
    assert bool(first.ok)
    calls = {
        "new lam": lambda: gflow.simulate(p0, 0.3, 2.0, **kw),
        "new t1": lambda: gflow.simulate(p0, 0.1, 7.0, **kw),
        "new lam and t1": lambda: gflow.simulate(p0, 1e-3, 0.5, **kw),
        "numpy lam": lambda: gflow.simulate(p0, np.float64(0.2), np.float64(3.0), **kw),
        "jax lam": lambda: gflow.simulate(p0, jnp.asarray(0.2), jnp.asarray(3.0), **kw),
        "new data and init": lambda: gflow.simulate(p1, 0.1, 2.0, **kw),
        "new data, lam, t1": lambda: gflow.simulate(p2, 0.05, 4.0, **kw),
        "new tolerances": lambda: gflow.simulate(p2, 0.05, 4.0, solver="tsit5", rtol=1e-9, atol=1e-11),
    }
    for what, call in calls.items():
        n, traj = _traced_during(call)
        assert n == 0, f"simulate retraced for {what}"
        assert bool(traj.ok), what
    # and the cached computation really used the new values
    a = gflow.simulate(p0, 0.1, 2.0, **kw)
    b = gflow.simulate(p1, 0.1, 2.0, **kw)
    c = gflow.simulate(p0, 0.3, 2.0, **kw)
    assert not np.allclose(np.asarray(a.final.w), np.asarray(b.final.w))
    assert not np.allclose(np.asarray(a.final.w), np.asarray(c.final.w))
    np.testing.assert_allclose(np.asarray(a.final.w), np.asarray(first.final.w), rtol=1e-14)
    # a saveat array of the same length with other times is traced too
    ts = np.linspace(0.0, 2.0, 5)
    _traced_during(lambda: gflow.simulate(p0, 0.1, 2.0, saveat=ts, **kw))
    n, _ = _traced_during(lambda: gflow.simulate(p1, 0.2, 3.0, saveat=ts * 1.5, **kw))
    assert n == 0, "simulate retraced for new saveat times of the same shape"


def test_gd_does_not_recompile():
    p0, p1 = _counting_problem(10), _counting_problem(11)
    n_first, first = _traced_during(lambda: gflow.gd(p0, 0.1, 0.05, 50, save_every=5))
    assert n_first > 0
    assert bool(first.ok)
    calls = {
        "new lam": lambda: gflow.gd(p0, 0.3, 0.05, 50, save_every=5),
        "new lr": lambda: gflow.gd(p0, 0.1, 0.01, 50, save_every=5),
        "numpy lam/lr": lambda: gflow.gd(p0, np.float64(0.2), np.float64(0.02), 50, save_every=5),
        "jax lam/lr": lambda: gflow.gd(p0, jnp.asarray(0.2), jnp.asarray(0.02), 50, save_every=5),
        "new data and init": lambda: gflow.gd(p1, 0.1, 0.05, 50, save_every=5),
    }
    for what, call in calls.items():
        n, run = _traced_during(call)
        assert n == 0, f"gd retraced for {what}"
        assert bool(run.ok), what
    b = gflow.gd(p1, 0.1, 0.05, 50, save_every=5)
    assert not np.allclose(np.asarray(first.final.w), np.asarray(b.final.w))


# ---------------------------------------------------------------------------------------------
# 6. Musat's two-weight addition: closed form
# ---------------------------------------------------------------------------------------------


def musat_exact(lam, t):
    """w(t) for w0 = (−1, 1): a = (w1 − w2)/√2 = −√2 e^{−λt}, s = (w1 + w2)/√2 → 2√2/(2 + λ)."""
    a = -np.sqrt(2.0) * np.exp(-lam * t)
    s_inf = 2.0 * np.sqrt(2.0) / (2.0 + lam)
    s = s_inf * (1.0 - np.exp(-(2.0 + lam) * t))  # s(0) = 0
    return np.array([(s + a) / np.sqrt(2.0), (s - a) / np.sqrt(2.0)])


@pytest.mark.parametrize("lam", [0.01, 0.1, 0.2])
def test_musat_addition_closed_form(lam):
    problem = musat_problem()
    np.testing.assert_array_equal(np.asarray(problem.model.w), [-1.0, 1.0])
    fractions = np.array([0.0, 0.01, 0.1, 0.3, 0.7, 1.0])
    for t1 in (1.0, 1.0 / lam, 3.0 / lam):
        save_ts = t1 * fractions
        traj = gflow.simulate(problem, lam, t1, solver="tsit5", saveat=save_ts, **TIGHT)
        assert bool(traj.ok), traj.message
        w = np.asarray(traj.final.w)
        antisym = (w[0] - w[1]) / np.sqrt(2.0)
        assert antisym == pytest.approx(-np.sqrt(2.0) * np.exp(-lam * t1), rel=1e-6)
        assert rel_err(w, musat_exact(lam, t1)) <= 1e-6
        ws = np.array([musat_exact(lam, s) for s in save_ts])
        np.testing.assert_allclose(np.asarray(traj.metrics["norm"]), np.linalg.norm(ws, axis=1), rtol=1e-6)
        np.testing.assert_allclose(
            np.asarray(traj.metrics["train_loss"]), 0.5 * (ws.sum(axis=1) - 2.0) ** 2, rtol=1e-6, atol=1e-14
        )
        np.testing.assert_allclose(
            np.asarray(traj.metrics["test_min_norm_distance"]), np.linalg.norm(ws - 1.0, axis=1), rtol=1e-6
        )
    # long-time limit: w_i → 2/(2 + λ)
    t_long = 40.0 / lam
    traj = gflow.simulate(problem, lam, t_long, solver="auto", saveat=t_long * fractions, **TIGHT)
    assert bool(traj.ok), traj.message
    np.testing.assert_allclose(np.asarray(traj.final.w), np.full(2, 2.0 / (2.0 + lam)), rtol=1e-8)


def test_slow_time_initial_step_on_a_stiff_polynomial_model():
    """Regression: Diffrax's automatic first step (dt0=None) overflowed on this problem in slow
    time and returned dt0 = 0, so the solve never advanced (0 accepted steps, max_steps hit)."""
    problem = gflow.tasks.diagonal_regression(
        jax.random.PRNGKey(0), n=10, d=30, k=2, alpha=10.0, parameterisation="squares"
    )
    traj = gflow.simulate(problem, 0.01, 0.05, solver="tsit5", saveat=5, time="slow")
    assert traj.message == "successful"
    assert int(traj.stats["num_accepted_steps"]) > 10
    reference = gflow.simulate(problem, 0.01, 5.0, solver="tsit5", saveat=np.array([0.0, 5.0]))
    np.testing.assert_allclose(np.asarray(traj.final.u), np.asarray(reference.final.u), rtol=1e-6)
