"""Built-in tasks: functions `(key, ...) -> Problem` with train and test data and the metrics
their papers plot. Every task takes a PRNG key (or an int seed) first, so it can be vmapped
over seeds. Sizes are static; everything random comes from the key.

Loss convention: F = ½·mean(residual²) (gflow's `"mse"`); papers that use sums or no ½ are
converted in each docstring.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ._problem import Problem, ProblemError
from .models import DiagonalNet, Linear


def _key(key):
    if isinstance(key, int):
        return jax.random.PRNGKey(key)
    return key


def _float():
    return jnp.zeros(()).dtype  # float64 when x64 is enabled, else float32


def _weight_error(model, data):
    return jnp.linalg.norm(model.w - data["w_star"])


def _null_norm(model, data):
    return jnp.linalg.norm(data["p_null"] @ model.w)


def linear_regression(key=0, *, n: int = 40, d: int = 100, init_std: float = 2.0, n_test: int = 1000) -> Problem:
    r"""Rank-deficient linear regression (Boursier et al. App. C; papers.md §2.4, A1).

    X ∈ ℝ^{n×d} with i.i.d. 𝒩(0, 1) entries (n < d), a teacher w⋆ = Xᵀa/‖Xᵀa‖ in the row space
    of X, y = Xw⋆, w0 ~ 𝒩(0, init_std² I). F = ½·mean((Xw − y)²), i.e. A1's ½‖X̃w − ỹ‖² with
    X̃ = X/√n. The null-space coordinates of w decay exactly as e^{−λt}; the flow's λ → 0 limit
    is the projection of w0 onto {Xw = y} and the t → ∞ limit is the ridge solution.

    Test inputs are isotropic Gaussian, so test_loss ≈ ½‖w − w⋆‖². Metrics: `test_weight_error`
    ‖w − w⋆‖ and `test_null_norm` ‖P_null w‖. The train dict carries `x`, `y`; the test dict
    also `w_star` and `p_null` (the projector onto Ker X).
    """
    if n >= d:
        raise ProblemError(f"linear_regression is rank-deficient by design: need n < d, got n={n}, d={d}")
    k_x, k_a, k_w, k_t = jax.random.split(_key(key), 4)
    dt = _float()
    x = jax.random.normal(k_x, (n, d), dt)
    w_star = x.T @ jax.random.normal(k_a, (n,), dt)
    w_star = w_star / jnp.linalg.norm(w_star)
    p_null = jnp.eye(d, dtype=dt) - jnp.linalg.pinv(x) @ x
    x_test = jax.random.normal(k_t, (n_test, d), dt)
    return Problem(
        Linear(init_std * jax.random.normal(k_w, (d,), dt)),
        {"x": x, "y": x @ w_star},
        loss="mse",
        test={"x": x_test, "y": x_test @ w_star, "w_star": w_star, "p_null": p_null},
        metrics={"weight_error": _weight_error, "null_norm": _null_norm},
    )


def _min_norm_distance(model, data):
    return jnp.linalg.norm(model.w - data["w_min_norm"])


def musat_addition(key=0, *, n_weights: int = 2, init=None, n_test: int = 100) -> Problem:
    r"""Musat's single-sample addition: ŷ = ⟨w, x⟩ learns "1 + 1 = 2" (or "1 + 1 + 1 = 3").

    One training sample x = (1, …, 1) ∈ ℝ^{n_weights}, y = n_weights; `init` defaults to
    (−1, 1) (2 weights, E2.1) or (−1, 1, 2) (3 weights, E2.2). Test: `n_test` Gaussian inputs
    with y = Σx_i.

    Conventions: Musat minimises 𝓛 = (ŷ − y)² + λ_M‖w‖² (no ½). Here F = ½(ŷ − y)², so with
    λ = λ_M the flow is Musat's in time t = 2 t_M: the antisymmetric part (w1 − w2)/√2 decays as
    e^{−λt} = e^{−2λ_M t_M} and the fixed point is w_i = n/(n + λ) (2/(2 + λ) for two weights).
    Metric `test_min_norm_distance`: ‖w − (1, …, 1)‖, the distance to the minimum-norm
    interpolator.
    """
    if n_weights not in (2, 3):
        raise ProblemError(f"musat_addition has 2 or 3 weights (E2.1, E2.2), got {n_weights}")
    dt = _float()
    if init is None:
        init = (-1.0, 1.0) if n_weights == 2 else (-1.0, 1.0, 2.0)
    w0 = jnp.asarray(init, dt)
    if w0.shape != (n_weights,):
        raise ProblemError(f"init must have {n_weights} entries, got shape {w0.shape}")
    x_test = jax.random.normal(_key(key), (n_test, n_weights), dt)
    return Problem(
        Linear(w0),
        {"x": jnp.ones((1, n_weights), dt), "y": jnp.full((1,), float(n_weights), dt)},
        loss="mse",
        test={"x": x_test, "y": jnp.sum(x_test, axis=1), "w_min_norm": jnp.ones((n_weights,), dt)},
        metrics={"min_norm_distance": _min_norm_distance},
    )


def _beta_error(model, data):
    return jnp.linalg.norm(model.beta - data["beta_star"])


def _l1_norm(model, data):
    del data
    return jnp.sum(jnp.abs(model.beta))


def diagonal_regression(
    key=0,
    *,
    n: int = 20,
    d: int = 60,
    k: int = 3,
    alpha: float = 1.0,
    parameterisation: str = "uv",
    init: str | None = None,
    n_test: int = 500,
) -> Problem:
    r"""Sparse regression with a diagonal linear network (Boursier E1.3, Woodworth et al.).

    X ∈ ℝ^{n×d} with 𝒩(0, 1) entries, a k-sparse teacher β⋆ with 𝒩(0, 1) non-zeros (first k
    coordinates), y = Xβ⋆. F = ½·mean((⟨β, x⟩ − y)²). Model `DiagonalNet(parameterisation)`.

    Initialisation at scale α (`alpha`):
    - `init="gaussian"` (default for `"uv"`): u, v i.i.d. 𝒩(0, α²).
    - `init="uniform"` (default for `"squares"`): u = v = α·1, so β(0) = 0 for `"squares"`.

    The slow phase drives β toward the minimum-ℓ1 interpolator (for u⊙v: ‖u‖² + ‖v‖² = 2‖β‖₁
    at balance). Metrics: `test_beta_error` ‖β − β⋆‖, `train_l1_norm`/`test_l1_norm` ‖β‖₁.
    """
    if init is None:
        init = "gaussian" if parameterisation == "uv" else "uniform"
    if init not in ("gaussian", "uniform"):
        raise ProblemError(f"init must be 'gaussian' or 'uniform', got {init!r}")
    if not 0 < k <= d:
        raise ProblemError(f"need 0 < k <= d, got k={k}, d={d}")
    dt = _float()
    k_x, k_b, k_u, k_v, k_t = jax.random.split(_key(key), 5)
    x = jax.random.normal(k_x, (n, d), dt)
    beta_star = jnp.zeros((d,), dt).at[:k].set(jax.random.normal(k_b, (k,), dt))
    alpha = jnp.asarray(alpha, dt)
    if init == "gaussian":
        u = alpha * jax.random.normal(k_u, (d,), dt)
        v = alpha * jax.random.normal(k_v, (d,), dt)
    else:
        u = v = alpha * jnp.ones((d,), dt)
    x_test = jax.random.normal(k_t, (n_test, d), dt)
    return Problem(
        DiagonalNet(u, v, parameterisation),
        {"x": x, "y": x @ beta_star},
        loss="mse",
        test={"x": x_test, "y": x_test @ beta_star, "beta_star": beta_star},
        metrics={"beta_error": _beta_error, "l1_norm": _l1_norm},
    )
