"""Property-based fuzzing of `simulate`'s arguments (Hypothesis, a bounded number of examples).

Whatever a user passes for λ, t1, the tolerances and the save times, the answer is either a
one-line `gflow.GflowError` raised before any solve, or a run whose final state is finite and,
when the run reports success, agrees with the closed-form flow of a linear regression
(w(t) = w⋆ + e^{−At}(w0 − w⋆), A = XᵀX/n + λI, w⋆ = A⁻¹Xᵀy/n).
"""

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from hypothesis import HealthCheck, given, settings, strategies as st

import gflow

_RNG = np.random.default_rng(0)
_X = _RNG.normal(size=(8, 3))
_Y = _RNG.normal(size=8)
_W0 = _RNG.normal(size=3)
PROBLEM = gflow.Problem(gflow.models.Linear(jnp.asarray(_W0)), {"x": jnp.asarray(_X), "y": jnp.asarray(_Y)}, loss="mse")


def _closed_form(lam, t1):
    a = _X.T @ _X / len(_Y) + lam * np.eye(3)
    w_star = np.linalg.solve(a, _X.T @ _Y / len(_Y))
    return w_star + scipy.linalg.expm(-a * t1) @ (_W0 - w_star)


_BAD_NUMBERS = st.sampled_from([float("nan"), float("inf"), -float("inf"), None, "0.1", 1j, [0.1], True, -1.0, 0.0])
_LAM = st.one_of(st.floats(0.0, 10.0), _BAD_NUMBERS)
_T1 = st.one_of(st.floats(1e-3, 50.0), _BAD_NUMBERS)
_RTOL = st.one_of(st.none(), st.floats(1e-10, 1e-3), _BAD_NUMBERS)
_ATOL = st.one_of(st.none(), st.floats(1e-12, 1e-6), _BAD_NUMBERS)
_SAVEAT = st.one_of(
    st.none(),
    st.integers(-2, 6),
    st.lists(st.one_of(st.floats(-1.0, 60.0), st.sampled_from([float("nan"), float("inf")])), min_size=0, max_size=4),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(lam=_LAM, t1=_T1, rtol=_RTOL, atol=_ATOL, saveat=_SAVEAT)
def test_simulate_arguments_give_a_clear_error_or_a_correct_result(lam, t1, rtol, atol, saveat):
    if isinstance(saveat, list):
        saveat = np.asarray(saveat, float)
    try:
        traj = gflow.simulate(PROBLEM, lam, t1, solver="tsit5", rtol=rtol, atol=atol, saveat=saveat, max_steps=4096)
    except gflow.GflowError as err:
        assert str(err) and "\n" not in str(err)
        return
    final = np.asarray(traj.final.w)
    assert np.all(np.isfinite(final))
    if bool(traj.ok):
        expected = _closed_form(float(lam), float(t1))
        tol = 1e3 * float(rtol if rtol is not None else 1e-8) + 1e-8
        np.testing.assert_allclose(final, expected, rtol=tol, atol=tol)
        assert float(traj.t_final) == pytest.approx(float(t1))
    else:
        assert traj.message != "successful"
