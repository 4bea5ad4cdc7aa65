"""Inputs that used to pass silently and give wrong results are refused in one line, before any
compilation: non-positive or non-numeric tolerances, complex or string λ/t1, NaN save times, a
metric that would replace a built-in loss or reads no split, empty data (issue 15, the part that
concerns `Problem` and `simulate`)."""

import jax.numpy as jnp
import numpy as np
import pytest

import gflow


def _problem(**kw):
    x = jnp.asarray(np.linspace(-1.0, 1.0, 12).reshape(6, 2))
    data = {"x": x, "y": x[:, 0] - 0.5 * x[:, 1]}
    return gflow.Problem(gflow.models.Linear(jnp.zeros(2)), data, loss="mse", **kw)


def _refused(match, fn):
    with pytest.raises(gflow.ProblemError, match=match) as err:
        fn()
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"rtol": -1e-6}, "rtol must be > 0"),
        ({"atol": -1e-9}, "atol must be > 0"),
        ({"rtol": 0.0}, "rtol must be > 0"),
        ({"rtol": "1e-6"}, "rtol must be a real number"),
        ({"atol": [1e-9]}, "atol must be a real number"),
        ({"saveat": np.array([0.0, np.nan, 1.0])}, "saveat times must be finite"),
    ],
)
def test_bad_solver_options_are_refused(kw, match):
    _refused(match, lambda: gflow.simulate(_problem(), 0.1, 1.0, solver="tsit5", **kw))


@pytest.mark.parametrize(
    ("lam", "t1", "match"),
    [
        (1j, 1.0, "lam must be a real number"),
        (np.complex128(0.1), 1.0, "lam must be a real number"),
        ("0.1", 1.0, "lam must be a real number"),
        (None, 1.0, "lam must be a real number"),
        (0.1, "10", "t1 must be a real number"),
        (0.1, [1.0, 2.0], "t1 must be a real number"),
        (True, 1.0, "lam must be a real number"),
    ],
)
def test_lam_and_t1_must_be_real_numbers(lam, t1, match):
    _refused(match, lambda: gflow.simulate(_problem(), lam, t1, solver="tsit5"))


def test_gd_refuses_a_string_step():
    _refused("lr must be a real number", lambda: gflow.gd(_problem(), 0.1, "0.1", 10))


def test_a_metric_named_loss_is_refused():
    _refused("clashes with the built-in", lambda: _problem(metrics={"loss": lambda m, d: jnp.sum(m.w)}))


def _reads_teacher(model, data):
    return jnp.sum((model.w - data["teacher"]) ** 2)


def test_a_metric_that_reads_no_split_is_refused_with_the_key_named():
    _refused(
        "metric 'teacher_error' reads data that no split carries.*teacher",
        lambda: _problem(metrics={"teacher_error": _reads_teacher}),
    )
    # With the key on the test split it is recorded there (and only there).
    x = jnp.ones((3, 2))
    problem = gflow.Problem(
        gflow.models.Linear(jnp.zeros(2)),
        {"x": x, "y": jnp.ones(3)},
        loss="mse",
        test={"x": x, "y": jnp.ones(3), "teacher": jnp.ones(2)},
        metrics={"teacher_error": _reads_teacher},
    )
    assert [name for name, _, _ in problem.metric_items] == ["test_teacher_error"]


def test_empty_data_is_refused():
    model = gflow.models.Linear(jnp.zeros(2))
    empty = {"x": jnp.zeros((0, 2)), "y": jnp.zeros((0,))}
    full = {"x": jnp.ones((3, 2)), "y": jnp.ones(3)}
    _refused("train data .* has no examples", lambda: gflow.Problem(model, empty, loss="mse"))
    _refused("test data .* has no examples", lambda: gflow.Problem(model, full, loss="mse", test=empty))
    _refused("train data is empty", lambda: gflow.Problem(model, {}, loss=lambda m, d: jnp.sum(m.w**2)))
