"""Errors and failure paths.

Malformed input raises `gflow.ProblemError` (a `ValueError`) with a one-line message that says
what to do, before anything is compiled (and, for argument errors of `simulate`/`gd`, before the
loss is even traced). A run that diverges or runs out of steps does not raise: it returns its
result code, the last finite state, and NaN metrics after the stop.
"""

from __future__ import annotations

import contextlib
import re

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gflow

N, D = 6, 3


class Lin(eqx.Module):
    """f(x) = <w, x>: one scalar per example."""

    w: jax.Array

    def __call__(self, x):
        return jnp.dot(x, self.w)


class Mat(eqx.Module):
    """f(x) = x @ w with w of shape (D, k): k outputs per example."""

    w: jax.Array

    def __call__(self, x):
        return x @ self.w


class WithInt(eqx.Module):
    w: jax.Array
    extra: jax.Array

    def __call__(self, x):
        return jnp.dot(x, self.w)


def _x(key=0, n=N, d=D):
    return jax.random.normal(jax.random.PRNGKey(key), (n, d))


def _regression_data(n=N):
    x = _x(n=n)
    return {"x": x, "y": x @ jnp.arange(1.0, D + 1.0)}


@contextlib.contextmanager
def raises_one_line(match):
    """`pytest.raises(gflow.ProblemError, match=match)` that also checks the message is one line."""
    with pytest.raises(gflow.ProblemError, match=match) as info:
        yield info
    msg = str(info.value)
    assert "\n" not in msg, f"error message spans several lines: {msg!r}"
    assert msg.strip() == msg and msg, f"error message is empty or padded: {msg!r}"
    assert isinstance(info.value, ValueError)


# -- Problem: shapes between model output and data -------------------------------------------


def test_problem_error_is_a_value_error():
    assert issubclass(gflow.ProblemError, ValueError)


def test_mse_model_output_vs_y_shape():
    # The model returns shape (1,) per example while y is (n,): a silent (n, 1) - (n,) broadcast
    # to an (n, n) residual would be the classic bug.
    with raises_one_line(r"train data: the model outputs shape \(1,\).*data\['y'\] has shape \(6,\)") as info:
        gflow.Problem(Mat(jnp.ones((D, 1))), _regression_data(), loss="mse")
    assert "make them equal" in str(info.value) and "y[:, None]" in str(info.value)


def test_mse_shape_mismatch_as_residuals_name():
    with raises_one_line(r"model outputs shape \(2,\)"):
        gflow.Problem(Mat(jnp.ones((D, 2))), _regression_data(), residuals="mse")


def test_mse_shape_mismatch_in_test_split_only():
    train = _regression_data()
    test = {"x": _x(1), "y": jnp.zeros((N, 1))}
    with raises_one_line(r"^test data: .*make them equal"):
        gflow.Problem(Lin(jnp.ones(D)), train, loss="mse", test=test)


def test_builtin_loss_needs_dict_data():
    with raises_one_line(r"data\['x'\] and data\['y'\].*or give your own loss=/residuals="):
        gflow.Problem(Lin(jnp.ones(D)), (_x(), jnp.zeros(N)), loss="mse")


def test_cross_entropy_non_integer_labels():
    data = {"x": _x(), "y": jnp.zeros(N)}  # float labels
    with raises_one_line(r"cross_entropy labels must be integers, got float64"):
        gflow.Problem(Mat(jnp.ones((D, 4))), data, loss="cross_entropy")


def test_cross_entropy_wrong_logits_shape():
    data = {"x": _x(), "y": jnp.zeros(N, dtype=jnp.int32)}
    # One scalar per example is not a vector of logits.
    with raises_one_line(r"cross_entropy needs logits of shape \(n, classes\).*got logits \(6,\)"):
        gflow.Problem(Lin(jnp.ones(D)), data, loss="cross_entropy")


def test_cross_entropy_wrong_label_shape():
    data = {"x": _x(), "y": jnp.zeros((N, 1), dtype=jnp.int32)}
    with raises_one_line(r"labels of shape \(n,\); got logits \(6, 4\) and labels \(6, 1\)"):
        gflow.Problem(Mat(jnp.ones((D, 4))), data, loss="cross_entropy")


def test_cross_entropy_labels_out_of_range():
    # Label 7 with 4 classes: take_along_axis fills out-of-range gathers, so the loss is a silent NaN.
    data = {"x": _x(), "y": jnp.array([0, 1, 2, 3, 0, 7])}
    with raises_one_line(r"(?i)label"):
        gflow.Problem(Mat(jnp.ones((D, 4))), data, loss="cross_entropy")


def test_logistic_shape_mismatch():
    data = {"x": _x(), "y": jnp.ones(N)}
    with raises_one_line(r"logistic loss needs one scalar output per example, shape \(6,\).*outputs \(6, 1\)"):
        gflow.Problem(Mat(jnp.ones((D, 1))), data, loss="logistic")


def test_logistic_labels_must_be_plus_minus_one():
    # 0/1 labels give a finite but wrong loss (and an accuracy metric that is never right on 0s).
    data = {"x": _x(), "y": jnp.array([0.0, 1.0, 0.0, 1.0, 1.0, 0.0])}
    with raises_one_line(r"(?i)label.*-1"):
        gflow.Problem(Lin(jnp.ones(D)), data, loss="logistic")


# -- Problem: data and parameter values -------------------------------------------------------


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_train_data(bad):
    data = _regression_data()
    data["x"] = data["x"].at[2, 1].set(bad)
    with raises_one_line(r"^train data \['x'\] contains NaN or inf; clean or drop those rows$"):
        gflow.Problem(Lin(jnp.ones(D)), data, loss="mse")


def test_non_finite_test_data_in_extra_key():
    test = {"x": _x(1), "y": jnp.zeros(N), "teacher": jnp.array([1.0, np.nan, 0.0])}
    with raises_one_line(r"^test data \['teacher'\] contains NaN or inf"):
        gflow.Problem(Lin(jnp.ones(D)), _regression_data(), loss="mse", test=test)


def test_non_finite_y_as_numpy():
    data = {"x": np.asarray(_x()), "y": np.array([0.0, 1.0, np.nan, 0.0, 1.0, 2.0])}
    with raises_one_line(r"train data \['y'\] contains NaN or inf"):
        gflow.Problem(Lin(jnp.ones(D)), data, loss="mse")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_initial_parameters(bad):
    with raises_one_line(r"model leaf \.w has non-finite initial values; fix the initialisation"):
        gflow.Problem(Lin(jnp.array([1.0, bad, 0.0])), _regression_data(), loss="mse")


@pytest.mark.parametrize(
    "extra, dtype",
    [(jnp.array(3), "int"), (np.arange(2), "int"), (jnp.array(True), "bool"), (jnp.zeros(2, bool), "bool")],
)
def test_integer_and_bool_parameters(extra, dtype):
    model = WithInt(jnp.ones(D), extra)
    with raises_one_line(rf"model leaf \.extra has dtype {dtype}.*floating-point.*static=True") as info:
        gflow.Problem(model, _regression_data(), loss="mse")
    assert "cast it" in str(info.value)


def test_all_integer_model():
    with raises_one_line(r"dtype int"):
        gflow.Problem(Lin(jnp.arange(D)), _regression_data(), loss="mse")


def test_model_without_parameters():
    with raises_one_line(r"no floating-point array leaves"):
        gflow.Problem(lambda x: jnp.sum(x), _regression_data(), loss="mse")


# -- Problem: the loss ---------------------------------------------------------------------


def test_neither_loss_nor_residuals():
    with raises_one_line(r"give exactly one of loss=.*or residuals="):
        gflow.Problem(Lin(jnp.ones(D)), _regression_data())


@pytest.mark.parametrize(
    "kwargs",
    [
        {"loss": lambda m, d: jnp.sum(m.w**2), "residuals": lambda m, d: m.w},
        {"loss": "mse", "residuals": "mse"},
        {"loss": lambda m, d: jnp.sum(m.w**2), "residuals": "mse"},
    ],
)
def test_both_loss_and_residuals(kwargs):
    with raises_one_line(r"give exactly one of loss=.*or residuals="):
        gflow.Problem(Lin(jnp.ones(D)), _regression_data(), **kwargs)


def test_unknown_loss_name():
    with raises_one_line(r"unknown loss 'hinge'; choose one of mse, cross_entropy, logistic, a gflow loss object"):
        gflow.Problem(Lin(jnp.ones(D)), _regression_data(), loss="hinge")


def test_unknown_residuals_name():
    with raises_one_line(r"unknown residuals 'l1'.*'mse'"):
        gflow.Problem(Lin(jnp.ones(D)), _regression_data(), residuals="l1")


def test_loss_not_callable():
    with raises_one_line(r"loss must be a function \(model, data\)"):
        gflow.Problem(Lin(jnp.ones(D)), _regression_data(), loss=3.0)


def test_loss_returning_a_vector():
    with raises_one_line(r"loss must return a scalar on the train data, got shape \(6,\); reduce it with jnp\.mean"):
        gflow.Problem(Lin(jnp.ones(D)), _regression_data(), loss=lambda m, d: (jax.vmap(m)(d["x"]) - d["y"]) ** 2)


def test_residuals_returning_a_matrix():
    def residuals(model, data):
        return (jax.vmap(model)(data["x"]) - data["y"])[:, None]

    with raises_one_line(r"residuals must return a vector \(1-D\) on the train data, got shape \(6, 1\); flatten"):
        gflow.Problem(Lin(jnp.ones(D)), _regression_data(), residuals=residuals)


def test_residuals_returning_a_scalar():
    with raises_one_line(r"residuals must return a vector \(1-D\).*got shape \(\)"):
        gflow.Problem(Lin(jnp.ones(D)), _regression_data(), residuals=lambda m, d: jnp.sum(m.w))


def test_loss_shape_checked_on_test_split():
    # A loss that is a scalar on the train data but not on the test data: named as the test split.
    def loss(model, data):
        return jnp.mean((jax.vmap(model)(data["x"]) - data["y"]) ** 2) * data["scale"]

    train = {**_regression_data(), "scale": jnp.array(1.0)}
    test = {"x": _x(1), "y": jnp.zeros(N), "scale": jnp.ones(2)}
    with raises_one_line(r"loss must return a scalar on the test data, got shape \(2,\)"):
        gflow.Problem(Lin(jnp.ones(D)), train, loss=loss, test=test)


def test_metric_returning_non_scalar():
    with raises_one_line(r"metric 'weights' must return a scalar, got shape \(3,\)"):
        gflow.Problem(Lin(jnp.ones(D)), _regression_data(), loss="mse", metrics={"weights": lambda m, d: m.w})


def test_metric_not_callable():
    with raises_one_line(r"metrics must map names \(str\) to functions"):
        gflow.Problem(Lin(jnp.ones(D)), _regression_data(), loss="mse", metrics={"bad": 1.0})


# -- Problem errors happen before the loss is traced, where they can ------------------------------


def _counting_residuals():
    count = {"traces": 0}

    def residuals(model, data):
        count["traces"] += 1
        return jax.vmap(model)(data["x"]) - data["y"]

    return residuals, count


@pytest.mark.parametrize(
    "case",
    ["nan_data", "nan_test_data", "nan_params", "int_params", "both"],
)
def test_value_errors_raised_before_tracing(case):
    residuals, count = _counting_residuals()
    data = _regression_data()
    model = Lin(jnp.ones(D))
    kwargs = {"residuals": residuals}
    if case == "nan_data":
        data["y"] = data["y"].at[0].set(np.nan)
    elif case == "nan_test_data":
        kwargs["test"] = {"x": _x(1).at[0, 0].set(np.inf), "y": jnp.zeros(N)}
    elif case == "nan_params":
        model = Lin(jnp.array([np.nan, 1.0, 1.0]))
    elif case == "int_params":
        model = WithInt(jnp.ones(D), jnp.array(1))
    elif case == "both":
        kwargs["loss"] = "mse"
    with pytest.raises(gflow.ProblemError):
        gflow.Problem(model, data, **kwargs)
    assert count["traces"] == 0


# -- simulate / gd arguments: errors before any tracing or compilation ----------------------------


@pytest.fixture
def counted():
    """A valid Problem whose residual function counts how often it is traced (from 0 after construction)."""
    residuals, count = _counting_residuals()
    problem = gflow.Problem(
        Lin(jnp.ones(D)), _regression_data(), residuals=residuals, test={"x": _x(1), "y": jnp.zeros(N)}
    )
    # Construction checks shapes by abstract evaluation, which traces: proof the counter counts.
    assert count["traces"] > 0
    count["traces"] = 0
    return problem, count


SIMULATE_ERRORS = [
    ({"lam": -0.1}, r"^weight decay lam must be >= 0, got -0\.1$"),
    ({"lam": -1}, r"lam must be >= 0"),
    ({"lam": np.nan}, r"lam must be finite"),
    ({"lam": jnp.array([0.1, 0.2])}, r"lam must be a scalar, got shape \(2,\)"),
    ({"t1": 0.0}, r"^t1 must be > 0, got 0\.0$"),
    ({"t1": -5.0}, r"t1 must be > 0, got -5\.0"),
    ({"t1": np.inf}, r"t1 must be finite"),
    ({"t1": np.ones((2, 2))}, r"t1 must be a scalar, got shape \(2, 2\)"),
    ({"solver": "rk4"}, rf"^unknown solver 'rk4'; choose one of {', '.join(gflow.SOLVER_NAMES)} or pass a diffrax"),
    ({"solver": "Tsit5"}, r"unknown solver 'Tsit5'; choose one of"),
    ({"solver": diffrax.SemiImplicitEuler()}, r"SemiImplicitEuler is not an ODE solver"),
    ({"time": "ode"}, r"^time must be 'fast' \(ODE time t\) or 'slow' \(tau = lam\*t\), got 'ode'$"),
    ({"time": "slow", "lam": 0.0}, r"time='slow'.*needs lam > 0; use time='fast' for lam = 0"),
    ({"max_steps": 0}, r"max_steps must be an int in \[1, 2147483647\], got 0"),
    ({"max_steps": 10.5}, r"max_steps must be an int in \[1, 2147483647\]"),
    ({"saveat": [0.0, 0.5, 2.0]}, r"saveat times must be increasing and lie in \[0, t1=1\.0\]"),
    ({"saveat": [-0.1, 0.5]}, r"saveat times must be increasing and lie in \[0, t1"),
    ({"saveat": [0.0, 0.5, 0.2]}, r"saveat times must be increasing"),
    ({"saveat": [[0.0, 0.5]]}, r"saveat must be None, an int, or a 1-D array of times"),
    ({"saveat": 1}, r"saveat as an int is the number of save times and must be in \[2, 1000000\], got 1"),
]


def _case_id(kwargs):
    def short(v):
        if isinstance(v, list):
            return repr(v).replace(" ", "")
        if np.ndim(v):
            return f"shape{tuple(np.shape(v))}"
        return repr(v) if isinstance(v, str | float | int) else type(v).__name__

    return ",".join(f"{k}={short(v)}" for k, v in kwargs.items())


@pytest.mark.parametrize("kwargs, match", SIMULATE_ERRORS, ids=[_case_id(k) for k, _ in SIMULATE_ERRORS])
def test_simulate_argument_errors_before_tracing(counted, kwargs, match):
    problem, count = counted
    kwargs = dict(kwargs)
    lam = kwargs.pop("lam", 0.1)
    t1 = kwargs.pop("t1", 1.0)
    # solver="auto" by default: its sharpness estimate would trace the loss if it ran first.
    with raises_one_line(match):
        gflow.simulate(problem, lam, t1, **kwargs)
    assert count["traces"] == 0


def test_simulate_slow_time_with_negative_lam_reports_lam(counted):
    problem, count = counted
    with raises_one_line(r"lam must be >= 0"):
        gflow.simulate(problem, -0.5, 1.0, time="slow")
    assert count["traces"] == 0


def test_simulate_needs_a_problem():
    with raises_one_line(r"simulate needs a gflow\.Problem, got Lin"):
        gflow.simulate(Lin(jnp.ones(D)), 0.1, 1.0)


GD_ERRORS = [
    ({"lam": -0.1}, r"^weight decay lam must be >= 0, got -0\.1$"),
    ({"lam": jnp.ones(3)}, r"lam must be a scalar, got shape \(3,\)"),
    ({"lr": 0.0}, r"^lr must be > 0, got 0\.0$"),
    ({"lr": -0.1}, r"lr must be > 0, got -0\.1"),
    ({"lr": np.nan}, r"lr must be finite"),
    ({"lr": jnp.array([0.1, 0.2])}, r"lr must be a scalar, got shape \(2,\)"),
    ({"steps": 0}, r"^steps must be a positive int, got 0$"),
    ({"steps": -10}, r"steps must be a positive int, got -10"),
    ({"steps": 10.0}, r"steps must be a positive int, got 10\.0"),
    ({"save_every": 3}, r"^save_every must be a positive int dividing steps=10, got 3$"),
    ({"save_every": 0}, r"save_every must be a positive int dividing steps=10, got 0"),
    ({"save_every": 20}, r"save_every must be a positive int dividing steps=10, got 20"),
]


@pytest.mark.parametrize("kwargs, match", GD_ERRORS, ids=[_case_id(k) for k, _ in GD_ERRORS])
def test_gd_argument_errors_before_tracing(counted, kwargs, match):
    problem, count = counted
    kwargs = dict(kwargs)
    args = (kwargs.pop("lam", 0.1), kwargs.pop("lr", 0.1), kwargs.pop("steps", 10))
    with raises_one_line(match):
        gflow.gd(problem, *args, **kwargs)
    assert count["traces"] == 0


def test_gd_needs_a_problem():
    with raises_one_line(r"gd needs a gflow\.Problem, got dict"):
        gflow.gd({"w": jnp.ones(D)}, 0.1, 0.1, 10)


def test_log_times_needs_two_points():
    with raises_one_line(r"need at least 2 save times, got 1"):
        gflow.log_times(1.0, 1)


# -- failure paths: divergence and max_steps return a result, never raise ------------------------


def _finite_tree(tree):
    return all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(eqx.filter(tree, eqx.is_inexact_array)))


def _check_metrics_stop_at(traj):
    """Metrics at save times up to `t_final` are finite; after it they are NaN (not garbage)."""
    ts = np.asarray(traj.ts)
    t_final = float(traj.t_final)
    before, after = ts <= t_final, ts > t_final
    assert before.sum() >= 2 and after.sum() >= 1
    for name, values in traj.metrics.items():
        values = np.asarray(values)
        assert values.shape == ts.shape, name
        assert np.all(np.isfinite(values[before])), f"{name} is not finite before t_final"
        assert np.all(np.isnan(values[after])), f"{name} is not NaN after t_final"


def _diverging_problem():
    # F = -1/2 ||w||^2 is unbounded below: with lam = 0 the flow is w(t) = e^t w0.
    return gflow.Problem(
        Lin(jnp.array([1.0, -0.5, 0.25])),
        {"x": _x(), "y": jnp.zeros(N)},
        loss=lambda m, d: -0.5 * jnp.sum(m.w**2),
        test={"x": _x(1), "y": jnp.zeros(N)},
        metrics={"w0": lambda m, d: m.w[0]},
    )


@pytest.fixture(scope="module")
def diverged_simulation():
    return gflow.simulate(_diverging_problem(), 0.0, 100.0)


def test_simulate_divergence_returns_result(diverged_simulation):
    traj = diverged_simulation
    assert traj.result == gflow.RESULTS.diverged
    assert not bool(traj.ok)
    assert "diverg" in traj.message.lower()
    assert _finite_tree(traj.final)
    t_final = float(traj.t_final)
    # The default bound is 1e8 (1 + ||w0||): crossed near t = log(1e8 (1 + ||w0||) / ||w0||) ~ 19.
    assert 10.0 < t_final < 100.0
    norm0 = float(jnp.linalg.norm(_diverging_problem().model.w))
    np.testing.assert_allclose(np.asarray(traj.final.w), np.exp(t_final) * np.array([1.0, -0.5, 0.25]), rtol=1e-4)
    assert float(jnp.linalg.norm(traj.final.w)) > 1e8 * (1 + norm0)
    _check_metrics_stop_at(traj)
    assert set(traj.metrics) >= {"train_loss", "objective", "norm", "grad_norm", "test_loss", "train_w0", "test_w0"}
    for key in ("num_steps", "num_accepted_steps", "num_rejected_steps"):
        assert int(traj.stats[key]) >= 0
    assert 0 < int(traj.stats["num_steps"]) < int(traj.stats["max_steps"])


def test_simulate_divergence_custom_bound():
    traj = gflow.simulate(_diverging_problem(), 0.0, 100.0, solver="tsit5", divergence_norm=10.0, saveat=50)
    assert traj.result == gflow.RESULTS.diverged
    assert _finite_tree(traj.final)
    # ||w(t)|| = e^t ||w0|| crosses 10 at t = log(10 / ||w0||) ~ 2.3; the event fires at that step's end.
    t_cross = np.log(10.0 / float(jnp.linalg.norm(_diverging_problem().model.w)))
    assert t_cross <= float(traj.t_final) < 5.0
    _check_metrics_stop_at(traj)


@pytest.mark.parametrize("solver", ["tsit5", "ros34pw2"])
def test_simulate_vector_field_nan_in_finite_time(solver):
    # F = sum sqrt(w): w' = -1/(2 sqrt w) reaches w = 0 at t = 4/3 and is NaN after. Reported as a
    # non-finite vector field at t = 4/3 (not as a step budget exhausted by rejections), with a
    # finite last state and no NaN recorded before the stop.
    problem = gflow.Problem(Lin(jnp.ones(D)), {"x": _x(), "y": jnp.zeros(N)}, loss=lambda m, d: jnp.sum(jnp.sqrt(m.w)))
    traj = gflow.simulate(problem, 0.0, 10.0, solver=solver)
    assert traj.result == gflow.RESULTS.non_finite_field
    assert not bool(traj.ok)
    assert "became non-finite" in traj.message and "max_steps" not in traj.message
    assert f"t = {float(traj.t_final):.6g}" in traj.message
    assert _finite_tree(traj.final)
    np.testing.assert_allclose(float(traj.t_final), 4 / 3, rtol=1e-6)
    assert int(traj.stats["num_steps"]) < 2000  # of the default budget of 200 000
    _check_metrics_stop_at(traj)


def test_simulate_vector_field_nan_at_the_start():
    # ∇F is NaN at θ0 itself (sqrt at 0): the first steps all fail, and the run says so at t = 0.
    problem = gflow.Problem(Lin(jnp.zeros(D)), {"x": _x(), "y": jnp.zeros(N)}, loss=lambda m, d: jnp.sum(jnp.sqrt(m.w)))
    traj = gflow.simulate(problem, 0.0, 10.0, solver="tsit5")
    assert traj.result == gflow.RESULTS.non_finite_field
    assert float(traj.t_final) == 0.0 and _finite_tree(traj.final)


@pytest.fixture(scope="module")
def diverged_gd():
    # F = 1/2 ||w||^2 has curvature 1; with lr = 10 each step multiplies w by -9 until it overflows.
    problem = gflow.Problem(
        Lin(jnp.array([1.0, 2.0, -1.0])), {"x": _x(), "y": jnp.zeros(N)}, loss=lambda m, d: 0.5 * jnp.sum(m.w**2)
    )
    return gflow.gd(problem, 0.0, 10.0, 1000, save_every=5)


def test_gd_divergence_returns_result(diverged_gd):
    traj = diverged_gd
    assert traj.result == gflow.RESULTS.diverged
    assert not bool(traj.ok)
    assert "diverg" in traj.message.lower()
    assert _finite_tree(traj.final)
    assert 0.0 < float(traj.t_final) < 10.0 * 1000
    for key, value in traj.stats.items():
        assert np.all(np.isfinite(np.asarray(value))), key
    n_done = int(traj.stats["num_steps"])
    assert 0 < n_done < 1000
    np.testing.assert_allclose(float(traj.t_final), 10.0 * n_done)
    ts = np.asarray(traj.ts)
    for name, values in traj.metrics.items():
        values = np.asarray(values)
        assert np.isfinite(values[0]), name
        assert np.all(np.isnan(values[ts > float(traj.t_final)])), name


def test_gd_divergence_metrics_finite_until_stop(diverged_gd):
    # As for simulate: what is recorded before the stop is finite, and the last state is usable
    # (its loss is finite). Without a norm bound, gd runs on until the iterate itself overflows, so
    # its loss is already inf for dozens of saves before the run is flagged.
    traj = diverged_gd
    _check_metrics_stop_at(traj)
    assert np.isfinite(float(0.5 * jnp.sum(traj.final.w**2)))


@pytest.fixture(scope="module")
def linreg():
    return gflow.tasks.linear_regression()


@pytest.fixture(scope="module", params=["tsit5", "auto"])
def out_of_steps(request, linreg):
    return gflow.simulate(linreg, 1e-3, 1e4, solver=request.param, max_steps=50)


def test_max_steps_returns_result(out_of_steps):
    traj = out_of_steps
    assert traj.result == gflow.RESULTS.max_steps_reached
    assert not bool(traj.ok)
    assert "max_steps" in traj.message
    assert _finite_tree(traj.final)
    assert 0.0 < float(traj.t_final) < 1e4
    assert int(traj.stats["num_steps"]) == 50 == int(traj.stats["max_steps"])
    _check_metrics_stop_at(traj)


def test_max_steps_final_state_matches_last_save(linreg):
    # The final state is the state at t_final >= the last save: F_lam decreases along the flow, so
    # its objective is at most the last recorded one.
    traj = gflow.simulate(linreg, 1e-3, 1e4, solver="tsit5", max_steps=50)
    final_objective = float(linreg.objective(traj.final, 1e-3))
    recorded = np.asarray(traj.metrics["objective"])
    last = recorded[np.isfinite(recorded)][-1]
    assert np.isfinite(final_objective) and final_objective <= last


# -- reading a failed run -------------------------------------------------------------------


def test_message_is_readable(diverged_simulation, out_of_steps):
    for traj in (diverged_simulation, out_of_steps):
        msg = traj.message
        assert isinstance(msg, str) and len(msg) > 20
        assert "\n" not in msg
        assert not re.search(r"RESULTS|<|EnumerationItem", msg)


def test_message_of_successful_run():
    problem = gflow.Problem(Lin(jnp.ones(D)), _regression_data(), loss="mse")
    traj = gflow.gd(problem, 0.1, 0.01, 10)
    assert bool(traj.ok)
    assert traj.message == "successful"


def test_batched_message_asks_for_a_member(diverged_simulation):
    batched = jax.tree.map(lambda x: jnp.stack([x, x]), diverged_simulation)
    with pytest.raises(ValueError, match="index one member"):
        batched.message


@pytest.mark.parametrize("which", ["diverged", "max_steps"])
def test_to_xarray_on_failed_run(which, diverged_simulation, out_of_steps):
    traj = diverged_simulation if which == "diverged" else out_of_steps
    ds = traj.to_xarray()
    assert ds.attrs["result"] == traj.message
    assert ("diverg" if which == "diverged" else "max_steps") in ds.attrs["result"]
    assert ds.attrs["t_final"] == pytest.approx(float(traj.t_final))
    assert ds.attrs["stats_num_steps"] == int(traj.stats["num_steps"])
    loss = ds["train_loss"]
    assert loss.sizes["time"] == traj.ts.shape[0]
    after = ds["time"].values > ds.attrs["t_final"]
    assert np.all(np.isnan(loss.values[after])) and np.all(np.isfinite(loss.values[~after]))


def test_to_xarray_on_diverged_gd(diverged_gd):
    ds = diverged_gd.to_xarray()
    assert "diverg" in ds.attrs["result"]
    assert ds.attrs["solver"] == "gd"
    assert ds.attrs["stats_num_steps"] == int(diverged_gd.stats["num_steps"])


def test_to_xarray_keeps_float_stats(linreg):
    # solver="auto" records its sharpness estimate (a float) in stats; the attrs must not truncate it.
    traj = gflow.simulate(linreg, 1e-3, 1e4, solver="auto", max_steps=50)
    sharp = float(traj.stats["sharpness_estimate"])
    assert sharp != int(sharp)
    assert traj.to_xarray().attrs["stats_sharpness_estimate"] == pytest.approx(sharp)
