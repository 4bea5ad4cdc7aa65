"""Losses as objects (`gflow.MSE`, `CrossEntropy`, `Logistic`, `Residuals`, `Scalar` and a user's
own `AbstractGaussNewtonLoss`): values against NumPy, the Gauss–Newton factor against the Hessian
of the loss in its outputs, names and objects giving the same compiled solve, and a user's loss
object driving the Rosenbrock-W solver's Woodbury W-matrix, checked against SciPy's Radau."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate
import scipy.special

import gflow
from gflow import _rosenbrock as ros
from gflow._simulate import choose_w_matrix

N, D_IN, CLASSES, WIDTH = 12, 4, 3, 5


class TanhMLP(eqx.Module):
    w1: jax.Array
    w2: jax.Array

    def __call__(self, x):
        return self.w2 @ jnp.tanh(self.w1 @ x)


def _mlp(rng, outputs):
    return TanhMLP(jnp.asarray(rng.normal(size=(WIDTH, D_IN))), jnp.asarray(rng.normal(size=(outputs, WIDTH))))


def _data(kind):
    rng = np.random.default_rng(11)
    x = rng.normal(size=(N, D_IN))
    y = {
        "mse": rng.normal(size=(N, 2)),
        "cross_entropy": rng.integers(0, CLASSES, size=N),
        "logistic": np.sign(rng.normal(size=N)),
    }[kind]
    outputs = {"mse": 2, "cross_entropy": CLASSES, "logistic": 1}[kind]
    model = _mlp(rng, outputs)
    if kind == "logistic":
        model = eqx.tree_at(lambda m: m.w2, model, model.w2[0])  # scalar output
    return model, {"x": jnp.asarray(x), "y": jnp.asarray(y)}


def _np_outputs(model, x):
    return np.tanh(x @ np.asarray(model.w1).T) @ np.asarray(model.w2).T


LOSS_OBJECTS = {"mse": gflow.MSE(), "cross_entropy": gflow.CrossEntropy(), "logistic": gflow.Logistic()}


@pytest.mark.parametrize("kind", ["mse", "cross_entropy", "logistic"])
def test_builtin_losses_match_numpy_and_their_names(kind):
    model, data = _data(kind)
    x, y = np.asarray(data["x"]), np.asarray(data["y"])
    z = _np_outputs(model, x)
    expected = {
        "mse": lambda: 0.5 * np.mean((z - y) ** 2),
        "cross_entropy": lambda: np.mean(scipy.special.logsumexp(z, axis=1) - z[np.arange(N), y]),
        "logistic": lambda: np.mean(np.log1p(np.exp(-y * z))),
    }[kind]()
    loss = LOSS_OBJECTS[kind]
    assert float(loss(model, data)) == pytest.approx(expected, rel=1e-12)
    by_name = gflow.Problem(model, data, loss=kind)
    by_object = gflow.Problem(model, data, loss=loss)
    assert by_name.loss == by_object.loss and by_name.loss_name == kind
    # Same static structure: one compiled solve serves both (no recompilation).
    assert jax.tree.structure(by_name) == jax.tree.structure(by_object)
    assert set(by_object.metric_items) == set(by_name.metric_items)


@pytest.mark.parametrize("kind", ["mse", "cross_entropy", "logistic"])
def test_gauss_newton_factor_is_the_hessian_in_the_outputs(kind):
    """H from `output_curvature` equals ∂²F/∂z² (by autodiff of F as a function of the outputs),
    and Sᵀ squares to it: (SᵀJ)ᵀ(SᵀJ) = JᵀHJ."""
    model, data = _data(kind)
    loss = LOSS_OBJECTS[kind]
    z = loss.outputs(model, data)

    def loss_of_outputs(zz):
        # The loss with the model replaced by the given outputs.
        if kind == "mse":
            return 0.5 * jnp.mean(zz**2)
        if kind == "cross_entropy":
            return jnp.mean(jax.nn.logsumexp(zz, axis=-1) - zz[jnp.arange(N), data["y"]])
        return jnp.mean(jax.nn.softplus(-data["y"] * zz))

    hess_exact = jax.hessian(loss_of_outputs)(z).reshape(z.size, z.size)
    hess, s_t = loss.output_curvature(z, data)
    basis = jnp.eye(z.size).reshape((z.size, *z.shape))
    hess_ours = jax.vmap(hess)(basis).reshape(z.size, z.size)
    np.testing.assert_allclose(hess_ours, hess_exact, atol=1e-14)
    jac = np.random.default_rng(0).normal(size=(*z.shape, 7))
    rows = np.asarray(s_t(jnp.asarray(jac))).reshape(z.size, 7)
    j2 = jac.reshape(z.size, 7)
    np.testing.assert_allclose(rows.T @ rows, j2.T @ np.asarray(hess_exact) @ j2, atol=1e-12)


def test_functions_become_residuals_and_scalar_objects():
    model, data = _data("mse")

    def resid(m, d):
        return gflow.MSE().residuals(m, d)

    def scalar(m, d):
        return gflow.MSE()(m, d)

    p_res = gflow.Problem(model, data, residuals=resid)
    p_scalar = gflow.Problem(model, data, loss=scalar)
    assert p_res.loss == gflow.Residuals(resid) and p_res.residuals_fn is not None
    assert p_scalar.loss == gflow.Scalar(scalar) and p_scalar.residuals_fn is None
    assert p_res.loss_name is None and p_scalar.loss_name is None
    ref = float(gflow.MSE()(model, data))
    assert float(p_res.loss(model, data)) == pytest.approx(ref, rel=1e-14)
    assert float(p_scalar.loss(model, data)) == pytest.approx(ref, rel=1e-14)
    assert ros.has_gauss_newton(p_res) and not ros.has_gauss_newton(p_scalar)


def test_loss_object_in_the_wrong_place_is_refused():
    model, data = _data("mse")
    with pytest.raises(gflow.ProblemError, match=r"pass the loss object MSE\(...\) as loss="):
        gflow.Problem(model, data, residuals=gflow.MSE())
    with pytest.raises(gflow.ProblemError, match="loss must be a function"):
        gflow.Problem(model, data, loss=3)
    with pytest.raises(gflow.ProblemError, match="cross_entropy labels must be integers"):
        gflow.Problem(model, {"x": data["x"], "y": data["y"][:, 0]}, loss=gflow.CrossEntropy())


class LogCosh(gflow.AbstractGaussNewtonLoss):
    """A user's robust regression loss F = mean_i log cosh(f(x_i) − y_i), scalar outputs:
    ℓ'' = sech² of the residual, so H = diag(sech²(r_i))/n and Sᵀ = diag(sech(r_i))/√n."""

    name = None
    curvature_vanishes_when_fitted = False

    def __call__(self, model, data):
        return jnp.mean(jnp.log(jnp.cosh(self.outputs(model, data) - data["y"])))

    def outputs(self, model, data):
        return jax.vmap(model)(data["x"])

    def output_curvature(self, z, data):
        sech = 1 / jnp.cosh(z - data["y"])
        n = z.shape[0]

        def hess(v):
            return sech**2 * v / n

        def s_t(rows):
            return (sech / jnp.sqrt(n))[:, None] * rows

        return hess, s_t

    def check(self, model, data, split):
        out = eqx.filter_eval_shape(self.outputs, model, data)
        if out.shape != data["y"].shape:
            raise gflow.ProblemError(f"{split}: LogCosh needs one output per example")

    def default_metrics(self):
        return {}


def test_users_gauss_newton_loss_drives_rosenbrock_woodbury_against_radau():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(N, D_IN))
    y = np.sin(x @ rng.normal(size=D_IN))
    model = eqx.tree_at(lambda m: m.w2, _mlp(rng, 1), jnp.asarray(rng.normal(size=WIDTH)))
    problem = gflow.Problem(model, {"x": jnp.asarray(x), "y": jnp.asarray(y)}, loss=LogCosh())
    lam, t1 = 0.05, 40.0
    w = choose_w_matrix(problem, jnp.asarray(lam), False)
    assert isinstance(w, ros.GaussNewton) and w.woodbury  # the user's H reached the W-matrix
    traj = gflow.simulate(problem, lam, t1, solver="ros34pw2", saveat=10, rtol=1e-9, atol=1e-11)
    assert bool(traj.ok), traj.message

    theta0, unravel = jax.flatten_util.ravel_pytree(problem.params)
    static = problem.split()[1]
    grad = jax.jit(jax.grad(lambda th: problem.objective(eqx.combine(unravel(th), static), lam)))
    sol = scipy.integrate.solve_ivp(
        lambda t, th: -np.asarray(grad(jnp.asarray(th))), (0, t1), np.asarray(theta0), method="Radau",
        rtol=1e-11, atol=1e-13,
    )  # fmt: skip
    final = np.asarray(jax.flatten_util.ravel_pytree(problem.partition(traj.final)[0])[0])
    assert np.linalg.norm(final - sol.y[:, -1]) <= 1e-6 * np.linalg.norm(sol.y[:, -1])
    assert np.linalg.norm(sol.y[:, -1] - np.asarray(theta0)) > 0.1 * np.linalg.norm(theta0)
