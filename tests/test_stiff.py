"""The stiff path: ROS34PW2 (Rosenbrock-W) with Gauss–Newton / exact W-matrices.

Checked here: the W-method order conditions and convergence order (fixed steps, against expm and
a tight SciPy solution, with exact, zero and random W-matrices); agreement with SciPy Radau
(rtol 1e-10) on diagonal networks (slow time, a decay mask), a cross-entropy MLP and a logistic
model, through both W-matrix paths; Woodbury = CG = a dense NumPy solve; no d × d intermediate
in a step's jaxpr when d ≫ N; exact evaluation counters (a host callback in the loss); the
`solver="auto"` rule; vmapped sweeps; the benchmark suite's smoke run.

References are NumPy/SciPy, never JAX (as in test_reference.py), except where a test checks one
gflow code path against another.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from pathlib import Path

import diffrax
import equinox as eqx
import jax
import jax.extend
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate
import scipy.linalg

import gflow
from gflow import _rosenbrock as ros
from gflow._flow import vector_field
from gflow._simulate import AUTO_STIFFNESS, _controller, choose_w_matrix, make_solver

TIGHT = {"rtol": 1e-10, "atol": 1e-12}
ROS_SOLVERS = ("ros34pw2", "ros34pw2_krylov")
REPO = Path(__file__).resolve().parents[1]


def rel_err(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def flat(model) -> np.ndarray:
    return np.concatenate([np.ravel(np.asarray(x)) for x in jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array))])


def test_solver_names_registered():
    assert set(ROS_SOLVERS) <= set(gflow.SOLVER_NAMES)
    problem = gflow.tasks.musat_addition(0)
    traj = gflow.simulate(problem, 0.1, 5.0, solver="ros34pw2", saveat=5)
    assert isinstance(traj, gflow.Trajectory) and traj.solver == "ros34pw2" and bool(traj.ok)
    for key in (
        "num_vf_evals",
        "num_jvps",
        "num_vjps",
        "num_hvps",
        "num_krylov_iterations",
        "num_gradient_equivalents",
    ):
        assert key in traj.stats


# ---------------------------------------------------------------------------------------------
# 1. The method: order conditions and convergence order
# ---------------------------------------------------------------------------------------------


def test_tableau_satisfies_w_order_conditions():
    tab = ros.ROS34PW2
    alpha_i = tab.alpha.sum(axis=1)
    g_i = tab.gammas.sum(axis=1)
    # order 1 and 2 (for any W-matrix), main and embedded
    for b in (tab.b, tab.b_hat):
        assert b.sum() == pytest.approx(1.0, abs=1e-14)
        assert b @ alpha_i == pytest.approx(0.5, abs=1e-14)
        assert b @ g_i == pytest.approx(0.0, abs=1e-14)
    # order 3 (five W-trees), main method only; the embedded one must fail one (it is order 2)
    phis, targets = ros._w_order_conditions(tab)
    for phi, e in zip(phis, targets, strict=True):
        assert tab.b @ phi == pytest.approx(e, abs=1e-14)
    assert max(abs(tab.b_hat @ phi - e) for phi, e in zip(phis, targets, strict=True)) > 1e-3
    # dense output: order 2 at every ξ and b(1) = b
    for xi in (0.1, 0.5, 0.9, 1.0):
        bx = tab.dense.T @ np.array([xi, xi**2, xi**3]) @ tab.gammas  # back from u- to k-weights
        assert bx.sum() == pytest.approx(xi, abs=1e-12)
        assert bx @ alpha_i == pytest.approx(xi**2 / 2, abs=1e-12)
        assert bx @ g_i == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(tab.dense.sum(axis=0), tab.m, atol=1e-12)


class FixedW(ros.AbstractWMatrix):
    """P given as a dense matrix (any P: the W-property says the order does not depend on it)."""

    matrix: jax.Array

    def prepare(self, field, flat0, sigma, state):
        lu = jax.scipy.linalg.lu_factor(sigma * jnp.eye(flat0.size) + self.matrix)

        def solve(b, threshold):
            return jax.scipy.linalg.lu_solve(lu, b), jnp.array(True), ros.zero_counts()

        return solve, ros.zero_counts(), state


def _fixed_step_run(term, y0, t1, n, w_matrix, save_ts):
    return diffrax.diffeqsolve(
        term,
        ros.Ros34PW2(w_matrix),
        jnp.asarray(0.0),
        jnp.asarray(t1),
        jnp.asarray(t1 / n),  # arrays, so that each n reuses the compiled solve
        y0,
        saveat=diffrax.SaveAt(ts=save_ts),
        stepsize_controller=diffrax.ConstantStepSize(),
        max_steps=10_000,
    ).ys


def _slope(ns, errors):
    return -np.polyfit(np.log(ns), np.log(errors), 1)[0]


def test_order_three_on_linear_problem_against_expm():
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    a = q @ np.diag([0.3, 0.7, 1.0, 2.0, 3.0, 4.0]) @ q.T
    c = rng.normal(size=6)
    y0 = rng.normal(size=6)
    t1 = 2.0
    # y' = −(a y − c): y(t) = a⁻¹c + expm(−at)(y0 − a⁻¹c)
    fixed = np.linalg.solve(a, c)
    exact = lambda t: fixed + scipy.linalg.expm(-a * t) @ (y0 - fixed)
    term = diffrax.ODETerm(lambda t, y, args: -(jnp.asarray(a) @ y - jnp.asarray(c)))
    ns = np.array([16, 32, 64, 128])
    w_mats = {
        "exact": ros.ExactJacobian(dense=True),
        "P = 0 (explicit)": FixedW(jnp.zeros((6, 6))),
        "P = a/2": FixedW(jnp.asarray(a / 2)),
        "P random": FixedW(jnp.asarray(rng.normal(size=(6, 6)))),
    }
    for name, w in w_mats.items():
        errs = []
        for n in ns:
            # an interior time in the middle of a step (ξ = 1/2) checks the dense output too
            save_ts = np.array([t1 * (n // 2 + 0.5) / n, t1])
            ys = np.asarray(_fixed_step_run(term, jnp.asarray(y0), t1, n, w, jnp.asarray(save_ts)))
            errs.append([np.abs(ys[i] - exact(t)).max() for i, t in enumerate(save_ts)])
        errs = np.array(errs)
        end, interior = _slope(ns, errs[:, 1]), _slope(ns, errs[:, 0])
        assert abs(end - 3.0) <= 0.3, (name, end, errs[:, 1])
        # The dense output is order 2 locally (O(h³) error), the same O(h³) as the global error.
        assert abs(interior - 3.0) <= 0.3, (name, interior, errs[:, 0])
        assert errs[-1, 1] < 1e-4, (name, errs[-1])


def test_order_three_on_nonlinear_problem_with_frozen_w():
    def f_np(y):
        return np.array([-y[0] * y[1] + np.sin(y[2]), y[0] ** 2 - 0.5 * y[1], -y[2] + 0.3 * y[0] * y[1]])

    def f_jax(t, y, args):
        return jnp.stack([-y[0] * y[1] + jnp.sin(y[2]), y[0] ** 2 - 0.5 * y[1], -y[2] + 0.3 * y[0] * y[1]])

    term = diffrax.ODETerm(f_jax)

    y0 = np.array([1.0, 0.5, 0.2])
    t1 = 1.0
    ref = scipy.integrate.solve_ivp(lambda t, y: f_np(y), (0, t1), y0, method="DOP853", rtol=1e-13, atol=1e-15).y[:, -1]
    ns = np.array([8, 16, 32, 64])
    rng = np.random.default_rng(1)
    for name, w in {
        "exact": ros.ExactJacobian(dense=True),
        "frozen random": FixedW(jnp.asarray(rng.normal(size=(3, 3)))),
    }.items():
        errs = np.array(
            [
                np.abs(np.asarray(_fixed_step_run(term, jnp.asarray(y0), t1, n, w, jnp.array([t1])))[0] - ref).max()
                for n in ns
            ]
        )
        assert abs(_slope(ns, errs) - 3.0) <= 0.3, (name, errs)


# ---------------------------------------------------------------------------------------------
# 2. Agreement with SciPy Radau (NumPy vector fields)
# ---------------------------------------------------------------------------------------------


@functools.cache
def diag_problem(masked: bool):
    p = gflow.tasks.diagonal_regression(1, n=6, d=10, k=2, parameterisation="squares", alpha=1.5, n_test=20)
    if masked:  # weight decay on u only
        p = gflow.Problem(
            p.model,
            p.train,
            loss="mse",
            test=p.test,
            decay_mask=lambda m: gflow.models.DiagonalNet(True, False, "squares"),
        )
    return p


def diag_reference(problem, lam, t1, ts, masked):
    x, y = np.asarray(problem.train["x"]), np.asarray(problem.train["y"])
    d = x.shape[1]
    mask = np.concatenate([np.ones(d), np.zeros(d) if masked else np.ones(d)])

    def field(t, z):
        u, v = z[:d], z[d:]
        g = x.T @ (x @ (u**2 - v**2) - y) / x.shape[0]
        return -(np.concatenate([2 * u * g, -2 * v * g]) + lam * mask * z)

    z0 = np.concatenate([np.asarray(problem.model.u), np.asarray(problem.model.v)])
    sol = scipy.integrate.solve_ivp(field, (0, t1), z0, method="Radau", rtol=1e-10, atol=1e-12, dense_output=True)
    assert sol.success
    return sol.sol(ts).T, mask


@pytest.mark.parametrize("solver", ROS_SOLVERS)
@pytest.mark.parametrize("case", ["slow_time", "decay_mask"])
def test_diagonal_network_matches_radau(case, solver):
    lam = 0.02
    masked = case == "decay_mask"
    problem = diag_problem(masked)
    if case == "slow_time":
        tau1 = 4.0
        traj = gflow.simulate(problem, lam, tau1, solver=solver, time="slow", saveat=30, **TIGHT)
        t_save = np.asarray(traj.ts) / lam
    else:
        traj = gflow.simulate(problem, lam, 200.0, solver=solver, saveat=30, **TIGHT)
        t_save = np.asarray(traj.ts)
    assert bool(traj.ok), traj.message
    zs, mask = diag_reference(problem, lam, t_save[-1], t_save, masked)
    assert rel_err(flat(traj.final), zs[-1]) <= 1e-6
    assert rel_err(zs[0], zs[-1]) > 0.1  # the flow moved
    np.testing.assert_allclose(np.asarray(traj.metrics["norm"]), np.linalg.norm(mask * zs, axis=1), rtol=1e-6)


@pytest.mark.parametrize("w_kind", ["gauss_newton_woodbury", "exact_dense"])
def test_lagged_jacobian_keeps_accuracy(w_kind):
    """A Jacobian kept for 4 accepted steps: the W-property keeps the order, error control the rest."""
    lam, t1 = 0.02, 200.0
    problem = diag_problem(False)
    params, static = problem.split()
    lam_a = jnp.asarray(lam)
    if w_kind == "gauss_newton_woodbury":
        w = ros.GaussNewton(problem, static, lam_a, slow=False, woodbury=True, refresh_every=4)
    else:
        w = ros.ExactJacobian(dense=True, refresh_every=4)
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(lambda t, y, a: vector_field(y, static, problem, lam_a, False)),
        ros.Ros34PW2(w, rtol=1e-10, atol=1e-12),
        0.0,
        t1,
        1e-3,
        params,
        saveat=diffrax.SaveAt(t1=True, controller_state=True),
        stepsize_controller=_controller("ros34pw2", 1e-10, 1e-12),
        max_steps=100_000,
    )
    final = np.concatenate([np.asarray(sol.ys.u[0]), np.asarray(sol.ys.v[0])])
    zs, _ = diag_reference(problem, lam, t1, np.array([t1]), False)
    assert rel_err(final, zs[-1]) <= 1e-6
    counts = {k: int(v) for k, v in sol.controller_state[1].items()}
    steps = int(sol.stats["num_steps"])
    builds = counts["num_vjps"] // 6 if w_kind == "gauss_newton_woodbury" else counts["num_hvps"] // 21
    assert 0 < builds < steps


# A tiny tanh MLP with 3 classes (cross-entropy), and a logistic linear model, written in NumPy.
N_CE, D_IN, WIDTH, CLASSES = 12, 4, 5, 3


class TanhMLP(eqx.Module):
    w1: jax.Array
    w2: jax.Array

    def __call__(self, x):
        return self.w2 @ jnp.tanh(self.w1 @ x)


@functools.cache
def ce_problem():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(N_CE, D_IN))
    y = rng.integers(0, CLASSES, size=N_CE)
    model = TanhMLP(jnp.asarray(rng.normal(size=(WIDTH, D_IN))), jnp.asarray(rng.normal(size=(CLASSES, WIDTH))))
    return gflow.Problem(model, {"x": jnp.asarray(x), "y": jnp.asarray(y)}, loss="cross_entropy")


def ce_field_np(problem, lam):
    x, y = np.asarray(problem.train["x"]), np.asarray(problem.train["y"])
    onehot = np.eye(CLASSES)[y]
    n1 = WIDTH * D_IN

    def field(t, z):
        w1, w2 = z[:n1].reshape(WIDTH, D_IN), z[n1:].reshape(CLASSES, WIDTH)
        h = np.tanh(x @ w1.T)
        logits = h @ w2.T
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        dlogits = (p - onehot) / x.shape[0]
        g2 = dlogits.T @ h
        g1 = ((dlogits @ w2) * (1 - h**2)).T @ x
        return -(np.concatenate([g1.ravel(), g2.ravel()]) + lam * z)

    return field


@functools.cache
def logistic_problem():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(15, 6))
    y = np.sign(x @ rng.normal(size=6) + 0.3 * rng.normal(size=15))
    return gflow.Problem(
        gflow.models.Linear(jnp.asarray(rng.normal(size=6))),
        {"x": jnp.asarray(x), "y": jnp.asarray(y)},
        loss="logistic",
    )


def logistic_field_np(problem, lam):
    x, y = np.asarray(problem.train["x"]), np.asarray(problem.train["y"])

    def field(t, w):
        m = y * (x @ w)
        return -(x.T @ (-y / (1 + np.exp(m))) / x.shape[0] + lam * w)

    return field


@pytest.mark.parametrize("solver", ROS_SOLVERS)
@pytest.mark.parametrize("which", ["cross_entropy", "logistic"])
def test_classification_losses_match_radau(which, solver):
    lam, t1 = 0.05, 60.0
    problem = ce_problem() if which == "cross_entropy" else logistic_problem()
    field = (ce_field_np if which == "cross_entropy" else logistic_field_np)(problem, lam)
    # These problems go through the generalised Gauss–Newton W-matrix (Woodbury or CG).
    w = choose_w_matrix(problem, jnp.asarray(lam), False, "auto" if solver == "ros34pw2" else "krylov")
    assert isinstance(w, ros.GaussNewton) and w.woodbury == (solver == "ros34pw2")
    traj = gflow.simulate(problem, lam, t1, solver=solver, saveat=20, **TIGHT)
    assert bool(traj.ok), traj.message
    z0 = flat(problem.model)
    sol = scipy.integrate.solve_ivp(field, (0, t1), z0, method="Radau", rtol=1e-10, atol=1e-12, dense_output=True)
    ts = np.asarray(traj.ts)
    zs = sol.sol(ts).T
    assert rel_err(flat(traj.final), zs[-1]) <= 1e-6
    assert rel_err(z0, zs[-1]) > 0.1
    np.testing.assert_allclose(np.asarray(traj.metrics["norm"]), np.linalg.norm(zs, axis=1), rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# 3. The W-solves: Woodbury = CG = dense NumPy; no d × d matrix
# ---------------------------------------------------------------------------------------------


def _solve_once(w_matrix, problem, lam, slow, sigma, b):
    params, static = problem.split()
    flat0, unravel = jax.flatten_util.ravel_pytree(params)
    field = ros.FlatField(
        diffrax.ODETerm(lambda t, y, a: vector_field(y, static, problem, lam, slow)), 0.0, None, unravel
    )
    solve, _, _ = w_matrix.prepare(field, flat0, sigma, w_matrix.init(field, flat0))
    x, ok, _ = solve(b, jnp.full_like(flat0, 1e-13))
    assert bool(ok)
    return np.asarray(x)


@pytest.mark.parametrize("which", ["mse_masked_slow", "cross_entropy", "logistic"])
def test_woodbury_and_cg_solve_the_same_system(which):
    lam = 0.03
    slow = which == "mse_masked_slow"
    problem = {
        "mse_masked_slow": lambda: diag_problem(True),
        "cross_entropy": ce_problem,
        "logistic": logistic_problem,
    }[which]()
    params, static = problem.split()
    flat0, unravel = jax.flatten_util.ravel_pytree(params)
    d = flat0.size
    # Dense NumPy reference: G from the Jacobian of the outputs and the loss Hessian in them.
    model = problem.model
    if problem.residuals_fn is not None:
        outputs = lambda fl: problem.residuals_fn(eqx.combine(unravel(fl), static), problem.train)
    else:
        outputs = lambda fl: jax.vmap(eqx.combine(unravel(fl), static))(problem.train["x"])
    z = np.asarray(outputs(flat0)).reshape(-1)
    jac = np.asarray(jax.jacobian(outputs)(flat0)).reshape(z.size, d)
    if which == "cross_entropy":
        p = np.exp(z.reshape(N_CE, CLASSES))
        p /= p.sum(axis=1, keepdims=True)
        h_out = scipy.linalg.block_diag(*[np.diag(pi) - np.outer(pi, pi) for pi in p]) / N_CE
    elif which == "logistic":
        q = 1 / (1 + np.exp(-np.asarray(problem.train["y"]) * z))
        h_out = np.diag(q * (1 - q)) / z.size
    else:
        h_out = np.eye(z.size) / z.size
    mask = flat(problem.decayed(model)) != 0 if which == "mse_masked_slow" else np.ones(d, bool)
    scale = lam if slow else 1.0
    sigma = 0.7
    p_mat = (jac.T @ h_out @ jac + lam * np.diag(mask)) / scale
    b = np.random.default_rng(0).normal(size=d)
    expected = np.linalg.solve(sigma * np.eye(d) + p_mat, b)
    for woodbury in (True, False):
        w = ros.GaussNewton(problem, static, jnp.asarray(lam), slow=slow, woodbury=woodbury)
        got = _solve_once(w, problem, jnp.asarray(lam), slow, jnp.asarray(sigma), jnp.asarray(b))
        assert rel_err(got, expected) <= 1e-9, (woodbury, rel_err(got, expected))


def _big_shapes(jaxpr, d):
    """Every intermediate shape in `jaxpr` (sub-jaxprs included) with two axes of length ≥ d."""
    found = []

    def visit(jx):
        for eqn in jx.eqns:
            for var in (*eqn.invars, *eqn.outvars):
                shape = getattr(getattr(var, "aval", None), "shape", ())
                if sum(1 for s in shape if s >= d) >= 2:
                    found.append((eqn.primitive.name, shape))
            for sub in jax.extend.core.jaxprs_in_params(eqn.params):
                visit(sub)

    visit(jaxpr.jaxpr)
    return found


@pytest.mark.parametrize("path", ["woodbury", "krylov", "exact_krylov", "cross_entropy_krylov"])
def test_step_never_forms_a_d_by_d_matrix(path):
    if path == "cross_entropy_krylov":
        rng = np.random.default_rng(5)
        model = TanhMLP(jnp.asarray(rng.normal(size=(40, 10))), jnp.asarray(rng.normal(size=(3, 40))))
        problem = gflow.Problem(
            model, {"x": jnp.asarray(rng.normal(size=(8, 10))), "y": jnp.arange(8) % 3}, loss="cross_entropy"
        )
    else:
        problem = gflow.tasks.diagonal_regression(0, n=10, d=300, k=3, parameterisation="squares", n_test=5)
    params, static = problem.split()
    d = gflow.count_params(problem.model)
    lam = jnp.asarray(1e-3)
    mode = "auto" if path == "woodbury" else "krylov"
    solver = make_solver("ros34pw2" if path == "woodbury" else "ros34pw2_krylov", problem, lam, False, 1e-6, 1e-8)
    if path == "exact_krylov":
        solver = ros.Ros34PW2(ros.ExactJacobian(dense=False))
    else:
        assert isinstance(solver.w_matrix, ros.GaussNewton) and solver.w_matrix.woodbury == (mode == "auto")
    term = diffrax.ODETerm(lambda t, y, a: vector_field(y, static, problem, lam, False))
    state = solver.init(term, 0.0, 1.0, params, None)
    jaxpr = jax.make_jaxpr(lambda y, s: solver.step(term, 0.0, 0.5, y, None, s, False))(params, state)
    assert _big_shapes(jaxpr, d) == [], _big_shapes(jaxpr, d)[:3]
    # Positive control: the dense path does form one, and the checker sees it.
    dense = ros.Ros34PW2(ros.ExactJacobian(dense=True))
    state = dense.init(term, 0.0, 1.0, params, None)
    jaxpr = jax.make_jaxpr(lambda y, s: dense.step(term, 0.0, 0.5, y, None, s, False))(params, state)
    assert any(shape == (d, d) for _, shape in _big_shapes(jaxpr, d))


# ---------------------------------------------------------------------------------------------
# 4. Exact evaluation counts
# ---------------------------------------------------------------------------------------------


def test_conjugate_gradient_counts_its_products():
    rng = np.random.default_rng(6)
    q, _ = np.linalg.qr(rng.normal(size=(30, 30)))
    a = jnp.asarray(q @ np.diag(np.logspace(0, 3, 30)) @ q.T)
    b = jnp.asarray(rng.normal(size=30))
    calls = []

    def matvec(v):
        jax.debug.callback(lambda: calls.append(1))
        return a @ v

    x, ok, steps = jax.jit(lambda: ros.conjugate_gradient(matvec, b, jnp.ones(30), jnp.full(30, 1e-10), 500))()
    jax.block_until_ready(x)
    assert bool(ok) and int(steps) == len(calls) > 5
    np.testing.assert_allclose(np.asarray(a @ x), np.asarray(b), atol=1e-8)
    # Indefinite matrices are refused (the step is then rejected), not silently "solved".
    _, ok, _ = ros.conjugate_gradient(lambda v: -v, b, jnp.ones(30), jnp.full(30, 1e-10), 50)
    assert not bool(ok)


def counted_solve(problem, solver, lam, t1):
    """A Diffrax solve of `problem`'s flow with a counting solver from a far too large first step
    (so the run starts with rejections); returns (solution, the controller's work counts)."""
    params, static = problem.split()
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(lambda t, y, a: vector_field(y, static, problem, lam, False)),
        solver,
        0.0,
        t1,
        5.0,
        params,
        saveat=diffrax.SaveAt(t1=True, controller_state=True),
        stepsize_controller=_controller(solver, 1e-7, 1e-9),
        max_steps=10_000,
    )
    jax.block_until_ready(sol.ys)
    return sol, {k: int(v) for k, v in sol.controller_state[1].items()}


@pytest.mark.parametrize("path", ["woodbury", "krylov", "dense"])
def test_evaluation_counters_are_exact(path):
    """A host callback in the loss counts every forward pass: gradients (num_vf_evals), and one
    per Jacobian batch (Woodbury), linearisation (Krylov) or Hessian build (dense)."""
    calls = []
    base = gflow.tasks.diagonal_regression(2, n=6, d=10, k=2, parameterisation="squares", alpha=2.0, n_test=5)

    def loss(model, data):
        jax.debug.callback(lambda: calls.append(1))
        r = jax.vmap(model)(data["x"]) - data["y"]
        return 0.5 * jnp.mean(r**2)

    def residuals(model, data):
        jax.debug.callback(lambda: calls.append(1))
        return jax.vmap(model)(data["x"]) - data["y"]

    if path == "dense":  # a custom scalar loss: no Gauss–Newton structure, dense exact Jacobian
        problem = gflow.Problem(base.model, base.train, loss=loss)
    else:
        problem = gflow.Problem(base.model, base.train, residuals=residuals)
    lam, t1 = jnp.asarray(0.05), 40.0
    params, static = problem.split()
    solver = make_solver("ros34pw2_krylov" if path == "krylov" else "ros34pw2", problem, lam, False, 1e-7, 1e-9)
    expected_w = {"woodbury": ros.GaussNewton, "krylov": ros.GaussNewton, "dense": ros.ExactJacobian}[path]
    assert isinstance(solver.w_matrix, expected_w)
    sol, counts = counted_solve(problem, solver, lam, t1)
    steps = int(sol.stats["num_steps"])
    assert int(sol.stats["num_rejected_steps"]) > 0
    assert counts["num_vf_evals"] == 4 * steps  # 3 new stages and f(θ1) per attempted step
    d, n = 20, 6
    if path == "woodbury":
        builds = counts["num_vjps"] // n
        assert counts["num_vjps"] == n * steps and counts["num_jvps"] == counts["num_hvps"] == 0
    elif path == "krylov":
        builds = counts["num_jvps"] - counts["num_krylov_iterations"]
        assert builds == steps and counts["num_vjps"] == counts["num_krylov_iterations"] > 0
    else:
        builds = counts["num_hvps"] // (d + 1)
        assert counts["num_hvps"] == (d + 1) * steps
    # +1: the solver's first f(θ0) in `init`.
    assert len(calls) == 1 + counts["num_vf_evals"] + builds


def test_simulate_reports_the_counts():
    problem = diag_problem(False)
    traj = gflow.simulate(problem, 0.02, 100.0, solver="ros34pw2", saveat=10, rtol=1e-7, atol=1e-9)
    s = {k: int(v) for k, v in traj.stats.items()}
    # simulate adds the dt0 evaluation and the solver's first f(θ0).
    assert s["num_vf_evals"] == 2 + 4 * s["num_steps"]
    assert s["num_gradient_equivalents"] == s["num_vf_evals"] + s["num_jvps"] + s["num_vjps"] + 2 * s["num_hvps"]
    tsit = gflow.simulate(problem, 0.02, 100.0, solver="tsit5", saveat=10)
    assert int(tsit.stats["num_gradient_equivalents"]) == int(tsit.stats["num_vf_evals"])


# ---------------------------------------------------------------------------------------------
# 5. The auto rules, vmap, dtype
# ---------------------------------------------------------------------------------------------


def test_auto_rule_decisions():
    # Linear regression to 5/λ with λ = 1e-4: stiffness ≈ sharpness × 5e4 ≫ AUTO_STIFFNESS.
    stiff = gflow.tasks.linear_regression(0, n=10, d=25, n_test=20)
    name, sharp = gflow.choose_solver(stiff, 1e-4, 5e4)
    assert name == "ros34pw2" and sharp > 1.0
    traj = gflow.simulate(stiff, 1e-4, 5e4, saveat=5, rtol=1e-8, atol=1e-10)
    assert traj.solver == "ros34pw2" and bool(traj.ok)
    assert float(traj.stats["sharpness_estimate"]) == pytest.approx(sharp, rel=1e-6)
    assert float(traj.stats["stiffness_ratio"]) == pytest.approx((sharp + 1e-4) * 5e4, rel=1e-6)
    # Musat's two-weight addition to t = 1: stiffness ≈ 2 × 1, explicit is cheapest.
    name, sharp = gflow.choose_solver(gflow.tasks.musat_addition(0), 0.1, 1.0)
    assert name == "tsit5" and sharp == pytest.approx(2.0, rel=1e-6)
    # Logistic loss: stiff at θ0 (ratio ≫ AUTO_STIFFNESS), but its curvature collapses once the
    # train set is fitted, so the rule takes the explicit solver; the estimate is still recorded.
    logistic = gflow.tasks.sparse_classification(0, n=20, d=50, alpha=16.0, n_test=10)
    name, sharp = gflow.choose_solver(logistic, 1e-3, 1e4)
    assert name == "tsit5" and sharp * 1e4 > 10 * AUTO_STIFFNESS
    traj = gflow.simulate(logistic, 1e-3, 1e4, saveat=5, rtol=1e-6, atol=1e-9)
    assert traj.solver == "tsit5" and bool(traj.ok)
    assert float(traj.stats["stiffness_ratio"]) == pytest.approx((sharp + 1e-3) * 1e4, rel=1e-6)


def test_w_matrix_choice():
    lam = jnp.asarray(1e-3)
    diag = gflow.tasks.diagonal_regression(0, n=10, d=300, k=3, parameterisation="squares", n_test=5)
    w = choose_w_matrix(diag, lam, False)
    assert isinstance(w, ros.GaussNewton) and w.woodbury  # N = 10 outputs
    w = choose_w_matrix(diag, lam, False, "krylov")
    assert isinstance(w, ros.GaussNewton) and not w.woodbury
    # Many outputs: 300 one-dimensional outputs of a 600-parameter model → CG.
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(300, 600)))
    big = gflow.Problem(gflow.models.Linear(jnp.zeros(600)), {"x": x, "y": x[:, 0]}, loss="mse")
    w = choose_w_matrix(big, lam, False)
    assert isinstance(w, ros.GaussNewton) and not w.woodbury
    # A custom scalar loss: exact Jacobian, dense only while d is small.
    custom = lambda m, data: jnp.mean((jax.vmap(m)(data["x"]) - data["y"]) ** 4)
    small = gflow.Problem(gflow.models.Linear(jnp.zeros(5)), {"x": x[:10, :5], "y": x[:10, 0]}, loss=custom)
    w = choose_w_matrix(small, lam, False)
    assert isinstance(w, ros.ExactJacobian) and w.dense
    large = gflow.Problem(gflow.models.Linear(jnp.zeros(600)), {"x": x[:10], "y": x[:10, 0]}, loss=custom)
    w = choose_w_matrix(large, lam, False)
    assert isinstance(w, ros.ExactJacobian) and not w.dense


def test_sweep_with_rosenbrock_equals_loop():
    def make(key, alpha):
        return gflow.tasks.diagonal_regression(key, n=5, d=8, k=2, alpha=alpha, parameterisation="squares", n_test=10)

    ds = gflow.sweep(
        make,
        lam=[0.05, 0.2],
        seed=[0],
        alpha=[1.0, 2.0],
        t1=3.0,
        solver="ros34pw2",
        saveat=8,
        progress=False,
        rtol=1e-9,
        atol=1e-11,
    )
    for lam in (0.05, 0.2):
        for alpha in (1.0, 2.0):
            traj = gflow.simulate(
                make(jax.random.PRNGKey(0), alpha),
                lam,
                3.0,
                solver="ros34pw2",
                time="slow",
                saveat=ds["time"].values,
                rtol=1e-9,
                atol=1e-11,
            )
            member = ds.sel(lam=lam, seed=0, alpha=alpha)
            np.testing.assert_allclose(member["test_loss"].values, np.asarray(traj.metrics["test_loss"]), rtol=1e-8)
            assert int(member["stats_num_vjps"]) == int(traj.stats["num_vjps"])


def test_float32_run_keeps_its_dtype():
    p64 = gflow.tasks.diagonal_regression(0, n=5, d=8, k=2, parameterisation="squares", n_test=10)
    model32 = jax.tree.map(lambda x: x.astype(jnp.float32) if eqx.is_inexact_array(x) else x, p64.model)
    data32 = jax.tree.map(lambda x: x.astype(jnp.float32), p64.train)
    p32 = gflow.Problem(model32, data32, loss="mse")
    traj = gflow.simulate(p32, 0.05, 50.0, solver="ros34pw2", saveat=5)
    assert bool(traj.ok) and traj.final.u.dtype == jnp.float32
    ref = gflow.simulate(p64, 0.05, 50.0, solver="ros34pw2", saveat=5)
    assert rel_err(flat(traj.final), flat(ref.final)) <= 1e-3


# ---------------------------------------------------------------------------------------------
# 6. The benchmark suite's smoke run
# ---------------------------------------------------------------------------------------------


def test_benchmark_quick_smoke(tmp_path, benchmark_module):
    out = tmp_path / "bench"
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "suite.py"), "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    files = list(out.glob("*.json"))
    assert len(files) == 1
    data = json.loads(files[0].read_text())
    assert data["machine"]["cpu_count"] >= 1 and data["config"]["quick"] is True
    rows = data["runs"]
    methods = {r["method"] for r in rows}
    assert {"gd", "tsit5", "ros34pw2"} <= methods
    for r in rows:
        assert set(r) >= {"problem", "lam", "method", "status"}
        if r["status"] == "ok":
            for key in ("wall_s", "compile_s", "grad_equivalents", "final_rel_error", "curve_rel_error", "peak_rss_mb"):
                assert np.isfinite(r[key]), (r["method"], key)
            assert r["final_rel_error"] < 0.05, r
        else:
            assert r["reason"]
    # report.py: a later part's run replaces the same (problem, λ, method) of an earlier part, and
    # every run says which part it came from; the README section carries both.
    report = benchmark_module("report")

    rerun = json.loads(json.dumps(data))
    rerun["config"]["started"] = "later"
    rerun["runs"] = [{**r, "wall_s": 123.0} for r in rerun["runs"] if r["method"] == "tsit5"]
    merged = report.merge([data, rerun])
    assert len(merged["runs"]) == len(rows)
    tsit5 = [r for r in merged["runs"] if r["method"] == "tsit5"]
    assert [(r["wall_s"], r["part"]) for r in tsit5] == [(123.0, 2)] * len(tsit5)
    assert {r["part"] for r in merged["runs"] if r["method"] != "tsit5"} == {1}
    text = report.section(merged, "SUMMARY LINE")
    assert "Merged from 2 parts" in text and "SUMMARY LINE" in text and "| 123 |" in text
    # The suite records what solver="auto" takes for each row; the report sets it against the
    # cheapest ODE method of the row (gradient descent, which meets no tolerance, left out).
    choice = data["auto"]["diag100@0.01"]
    assert choice["solver"] in ("tsit5", "ros34pw2", "rkc") and choice["sharpness_0"] > 0
    runs = [("tsit5", 1.0, 100), ("ros34pw2", 3.0, 600), ("gd", 0.1, 10)]
    synthetic = {
        "problems": {"p": {}},
        "config": {"lams": [0.1]},
        "auto": {"p@0.1": {"solver": "ros34pw2", "sharpness_0": 5.0}},
        "runs": [
            {"problem": "p", "lam": 0.1, "method": m, "status": "ok", "wall_s": w, "grad_equivalents": g}
            for m, w, g in runs
        ],
    }
    assert "| p | 0.1 | 5 | ros34pw2 | 3 | tsit5 | 1 | 3.00× | 6.00× |" in report.auto_table(synthetic)
