"""`gd` as a strategy (issue 14): step-size schedules with t = Σ η_k, any optax optimiser (AdamW)
with λ traced, and saved parameters; each checked against a hand-written NumPy or optax loop."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gflow

N, D = 12, 5


def _data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N, D))
    return x, x @ rng.normal(size=D) + 0.1 * rng.normal(size=N)


def _problem():
    x, y = _data()
    return gflow.Problem(gflow.models.Linear(jnp.asarray(np.linspace(-1.0, 1.0, D))), {"x": x, "y": y}, loss="mse")


def _numpy_gd(etas, lam):
    """θ_{k+1} = θ_k − η_k (∇F + λθ) with F = ½·mean((Xθ − y)²), written out by hand."""
    x, y = _data()
    theta = np.linspace(-1.0, 1.0, D)
    for eta in etas:
        theta = theta - eta * (x.T @ (x @ theta - y) / N + lam * theta)
    return theta


def test_a_schedule_takes_its_step_sizes_and_accumulates_time():
    schedule = optax.piecewise_constant_schedule(0.2, {30: 0.25, 70: 2.0})  # 0.2, then 0.05, then 0.1
    etas = [float(schedule(k)) for k in range(100)]
    traj = gflow.gd(_problem(), 0.01, schedule, 100, save_every=10)
    np.testing.assert_allclose(np.asarray(traj.final.w), _numpy_gd(etas, 0.01), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(np.asarray(traj.ts), np.concatenate([[0.0], np.cumsum(etas)[9::10]]), rtol=1e-13)
    np.testing.assert_allclose(float(traj.t_final), sum(etas), rtol=1e-13)
    assert traj.time == "fast" and traj.solver == "gd" and bool(traj.ok)


def test_a_constant_step_is_the_same_as_before():
    traj = gflow.gd(_problem(), 0.01, 0.1, 50, save_every=5)
    np.testing.assert_allclose(np.asarray(traj.final.w), _numpy_gd([0.1] * 50, 0.01), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(traj.ts), 0.1 * np.arange(0, 51, 5), rtol=1e-13)


def _optax_loop(optimiser, steps):
    problem = _problem()
    params = problem.model
    state = optimiser.init(params)
    grad = jax.grad(lambda m: problem.loss(m, problem.train))
    for _ in range(steps):
        updates, state = optimiser.update(grad(params), state, params)
        params = optax.apply_updates(params, updates)
    return params


def test_adamw_matches_a_plain_optax_loop_and_counts_steps():
    make = lambda lam: optax.adamw(1e-2, b1=0.9, b2=0.98, weight_decay=lam)  # noqa: E731
    traj = gflow.gd(_problem(), 0.1, optimizer=make, steps=60, save_every=20)
    reference = _optax_loop(make(0.1), 60)
    np.testing.assert_allclose(np.asarray(traj.final.w), np.asarray(reference.w), rtol=1e-12, atol=1e-14)
    assert traj.time == "step" and traj.solver == "optax"
    np.testing.assert_array_equal(np.asarray(traj.ts), [0, 20, 40, 60])
    np.testing.assert_array_equal(np.asarray(traj.t), np.asarray(traj.ts))
    assert traj.to_xarray().attrs["time_variable"].startswith("step")
    # A GradientTransformation given directly works the same (λ then only enters the objective).
    direct = gflow.gd(_problem(), 0.1, optimizer=make(0.1), steps=60, save_every=20)
    np.testing.assert_allclose(np.asarray(direct.final.w), np.asarray(traj.final.w), rtol=1e-14)


def test_adamw_vmaps_over_a_traced_weight_decay():
    make = lambda lam: optax.adamw(1e-2, weight_decay=lam)  # noqa: E731
    lams = jnp.array([0.0, 0.1, 1.0])
    batch = jax.vmap(lambda lam: gflow.gd(_problem(), lam, optimizer=make, steps=40, save_every=20))(lams)
    for i, lam in enumerate(np.asarray(lams)):
        np.testing.assert_allclose(
            np.asarray(batch.final.w[i]), np.asarray(_optax_loop(make(float(lam)), 40).w), rtol=1e-11, atol=1e-14
        )


def test_save_params_records_every_save_and_nan_after_divergence():
    traj = gflow.gd(_problem(), 0.01, 0.1, 20, save_every=5, save_params=True)
    assert traj.params.w.shape == (5, D)
    np.testing.assert_allclose(np.asarray(traj.params.w[0]), np.linspace(-1.0, 1.0, D))
    np.testing.assert_allclose(np.asarray(traj.params.w[-1]), np.asarray(traj.final.w))
    np.testing.assert_allclose(np.asarray(traj.params.w[2]), _numpy_gd([0.1] * 10, 0.01), rtol=1e-12)
    # A step size far beyond 2/L diverges: saved parameters are NaN after the last finite iterate.
    blown = gflow.gd(_problem(), 0.0, 50.0, 400, save_every=10, save_params=True)
    assert blown.result == gflow.RESULTS.diverged
    finite = np.all(np.isfinite(np.asarray(blown.params.w)), axis=1)
    assert finite[0] and not finite[-1] and np.all(np.diff(finite.astype(int)) <= 0)
    np.testing.assert_allclose(float(blown.t_final), 50.0 * int(blown.stats["num_steps"]))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"lr": 0.1, "optimizer": optax.sgd(0.1)}, "with an optimizer, give the learning rate to the optimizer"),
        ({}, r"gd needs lr \(a step size > 0 or a schedule k -> lr_k\), or an optax optimizer="),
        ({"optimizer": "adam"}, "optimizer must be an optax.GradientTransformation or a function lam -> one"),
        ({"lr": 0.1, "save_params": 1}, "save_params must be True or False"),
        ({"lr": -0.1}, "lr must be > 0"),
    ],
)
def test_gd_strategy_errors(kwargs, message):
    with pytest.raises(gflow.ProblemError, match=message):
        gflow.gd(_problem(), 0.1, steps=10, **kwargs)


# -- solvers are objects too ------------------------------------------------------------------


@pytest.mark.parametrize("make", [lambda: __import__("diffrax").Bosh3(), lambda: __import__("diffrax").Kvaerno5()])
def test_a_diffrax_solver_object_integrates_the_flow(make):
    # Linear regression: θ(t) = θ* + expm(−(H + λI)t)(θ0 − θ*), with H = XᵀX/N.
    from scipy.linalg import expm

    x, y = _data()
    lam, t1 = 0.05, 3.0
    h = x.T @ x / N + lam * np.eye(D)
    star = np.linalg.solve(h, x.T @ y / N)
    exact = star + expm(-h * t1) @ (np.linspace(-1.0, 1.0, D) - star)
    solver = make()
    traj = gflow.simulate(_problem(), lam, t1, solver=solver, rtol=1e-10, atol=1e-12)
    assert bool(traj.ok) and traj.solver == type(solver).__name__
    # Bosh3 (4 stages, first same as last) counts 3 gradients a step; Kvaerno5 (implicit) is not counted.
    assert ("num_vf_evals" in traj.stats) == (type(solver).__name__ == "Bosh3")
    if "num_vf_evals" in traj.stats:
        assert int(traj.stats["num_vf_evals"]) == 2 + 3 * int(traj.stats["num_steps"])
    np.testing.assert_allclose(np.asarray(traj.final.w), exact, rtol=1e-7, atol=1e-9)


def test_a_solver_that_is_not_an_ode_solver_is_refused():
    import diffrax

    with pytest.raises(gflow.ProblemError, match="is not an ODE solver"):
        gflow.simulate(_problem(), 0.1, 1.0, solver=diffrax.SemiImplicitEuler())
    with pytest.raises(gflow.ProblemError, match=r"or pass a diffrax solver object \(e.g. diffrax.Kvaerno5\(\)\)"):
        gflow.simulate(_problem(), 0.1, 1.0, solver=object())


def test_relu_benchmark_crossing_interpolates_and_needs_the_value_to_stay():
    # benchmarks/relu_flows.py reads fit and grokking times with this helper: linear between the
    # two saves around the last upward crossing, NaN if the value never stays above.
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "relu_flows.py"
    spec = importlib.util.spec_from_file_location("relu_flows", path)
    relu_flows = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(relu_flows)
    ts = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    assert relu_flows.crossing(ts, [0.0, 0.6, 0.2, 0.4, 0.8, 0.9], 0.5) == pytest.approx(3.25)
    assert relu_flows.crossing(ts, [0.6, 0.7, 0.8, 0.9, 1.0, 1.0], 0.5) == 0.0
    assert np.isnan(relu_flows.crossing(ts, [0.0, 0.6, 0.7, 0.8, 0.9, 0.4], 0.5))
    assert relu_flows.crossing(ts, [0.0, 0.2, 0.4, 0.8, np.nan, np.nan], 0.5) == pytest.approx(2 + 1 / 4)
