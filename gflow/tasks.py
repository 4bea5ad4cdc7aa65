"""Built-in tasks: functions `(key, *, sizes..., alpha=...) -> Problem` with train and test data
and the metrics their papers plot. Every task takes a PRNG key (or an int seed) first, so it can
be vmapped over seeds (`eqx.filter_vmap(lambda k: task(k, ...))(jax.random.split(key, n))`).
Sizes are static; everything random comes from the key.

Loss convention: F = ½·mean(residual²) (gflow's `"mse"`), F_λ = F + (λ/2)‖θ‖²; papers that use
sums or no ½ are converted in each docstring. The general rule: a paper loss c·F with penalty
(λ_p/2)‖θ‖² is our flow with λ = λ_p/c in time t = c·t_p, and slow time τ = λt = λ_p t_p is the
same in both.

| task | paper |
|---|---|
| `linear_regression` | Boursier App. C (A1) |
| `musat_addition` | Musat E2.1/E2.2 (A9) |
| `diagonal_regression` | Boursier E1.3 |
| `sparse_classification` | Lyu E3.3 (A4) |
| `misgrokking` | Lyu E3.4 (A5) |
| `multiplication_table` | Lyu E3.5 (A6) |
| `matrix_completion` | Boursier E1.1 (A7) |
| `modular_arithmetic` | Lyu E3.1, Musat E2.4/E2.5, Tan et al. (A10, A11, A14) |
| `teacher_relu_1d` | Boursier E1.2 (A8) |
| `modular_transformer` | Nanda et al. 2023, Omnigrok App. C (A15) |
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._problem import Problem, ProblemError
from .models import (
    DiagonalNet,
    EmbeddingNet,
    EmbedMLP,
    Linear,
    MatrixFactorisation,
    ModularMLP,
    ReLU1D,
    SymmetricFactorisation,
    Transformer1L,
)


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


# ---------------------------------------------------------------------------------------------
# Lyu et al.: sparse classification, misgrokking, the multiplication table
# ---------------------------------------------------------------------------------------------


def _teacher_cosine(model, data):
    beta = model.beta
    return jnp.dot(beta, data["w_star"]) / (jnp.linalg.norm(beta) * jnp.linalg.norm(data["w_star"]))


def _sign_accuracy(model, data):
    out = jax.vmap(model)(data["x"])
    # cast before averaging: a mean of booleans is taken in float32 (0.99999994 for 492 hits)
    return jnp.mean((jnp.sign(out) == data["y"]).astype(out.dtype))


def _lyu_diagonal_problem(sample, w_star, k_x, n, k_t, n_test, alpha, dt) -> Problem:
    """Lyu's diagonal net on ±1 labels: train `sample(k_x, n)`, test `sample(k_t, n_test)` carrying
    the teacher `w_star`; logistic loss, sign accuracy and cos(β, w⋆)."""
    d = w_star.shape[0]
    test = sample(k_t, n_test)
    test["w_star"] = w_star
    return Problem(
        # u = v = α/√(2d)·1: ‖θ0‖ = α exactly (Lyu's "initial parameter norm"), β(0) = 0.
        DiagonalNet.init(d, alpha=jnp.asarray(alpha, dt) / math.sqrt(2 * d), parameterisation="squares", dtype=dt),
        sample(k_x, n),
        loss="logistic",
        test=test,
        metrics={"accuracy": _sign_accuracy, "teacher_cosine": _teacher_cosine},
    )


def sparse_classification(
    key=0, *, n: int = 100, d: int = 2000, k: int = 3, alpha: float = 128.0, n_test: int = 2000
) -> Problem:
    r"""Sparse ±1 classification with a diagonal network and logistic loss (Lyu E3.3, A4).

    x ~ unif{±1}^d, a teacher on the first k coordinates with weights uniform in {±1}
    (k odd, so no ties), y = sign(⟨x_{1:k}, w⋆_{1:k}⟩) ∈ {±1}. Model `DiagonalNet("squares")`,
    β = u² − v², at Lyu's initialisation u = v = (α/√(2d))·1: ‖θ0‖ = α and f(θ0) = 0.
    F = mean logistic loss log(1 + e^{−y f(x)}), Lyu's convention exactly (λ = torch's
    weight decay, t = η·step).

    Expected (papers.md A4): the kernel phase classifies like the max-ℓ2-margin SVM (test
    accuracy ≈ 0.6 at the quick size), then near t ≈ (ln α − 1)/λ the test accuracy jumps to
    1 (the max-ℓ1-margin classifier). Paper size: d = 10⁵, n = 256, α = 128, λ = 1e−3; the
    defaults are papers.md's quick variant (d = 2000, n = 100) with the paper's α = 128.

    Metrics: `accuracy` (train and test), `test_teacher_cosine` cos(β, w⋆). The test dict
    carries `w_star`.
    """
    if k % 2 == 0 or not 0 < k <= d:
        raise ProblemError(f"k must be odd and 0 < k <= d so that labels sign(<x, w*>) are never 0; got k={k}, d={d}")
    dt = _float()
    k_x, k_w, k_t = jax.random.split(_key(key), 3)
    w_star = jnp.zeros((d,), dt).at[:k].set(jax.random.rademacher(k_w, (k,), dt))

    def sample(kk, m):
        x = jax.random.rademacher(kk, (m, d), dt)
        return {"x": x, "y": jnp.sign(x @ w_star)}

    return _lyu_diagonal_problem(sample, w_star, k_x, n, k_t, n_test, alpha, dt)


def misgrokking(
    key=0, *, n: int = 32, d: int = 2000, gamma: float = 25.0, alpha: float = 128.0, n_test: int = 2000
) -> Problem:
    r"""Misgrokking data (Lyu E3.4, A5): the kernel predictor generalises, the rich one does not.

    A uniformly random unit direction w⋆; z ~ 𝒩(0, I_d); label y = sign⟨z, w⋆⟩ and input
    x = z + (γ/2)·y·w⋆ (a margin γ along w⋆). Same model, initialisation and loss as
    `sparse_classification` (u = v = α/√(2d), logistic loss). The paper's α and λ for this
    figure are unknown (papers.md §10.2); α = 128 (as in E3.3) is our default, and d = 2000
    is the quick size (paper 10⁵).

    Expected: test accuracy ≈ 1 in the kernel phase (max-ℓ2 margin ≈ w⋆), then a fall toward
    ≈ 0.5 after t ≈ (ln α)/λ (the max-ℓ1-margin classifier picks a few noise coordinates)
    while the train accuracy stays 1. Metrics: `accuracy`, `test_teacher_cosine`.
    """
    dt = _float()
    k_w, k_x, k_t = jax.random.split(_key(key), 3)
    w_star = jax.random.normal(k_w, (d,), dt)
    w_star = w_star / jnp.linalg.norm(w_star)
    gamma = jnp.asarray(gamma, dt)

    def sample(kk, m):
        z = jax.random.normal(kk, (m, d), dt)
        y = jnp.sign(z @ w_star)
        y = jnp.where(y == 0, 1.0, y).astype(dt)  # a measure-zero tie, kept away from label 0
        return {"x": z + 0.5 * gamma * y[:, None] * w_star[None, :], "y": y}

    return _lyu_diagonal_problem(sample, w_star, k_x, n, k_t, n_test, alpha, dt)


def _mse(model, data):
    """Mean squared error mean((f − y)²), without gflow's ½ (the papers' 'MSE')."""
    return jnp.mean((jax.vmap(model)(data["x"]) - data["y"]) ** 2)


def _relative_error(model, data):
    return jnp.linalg.norm(model.matrix - data["m_star"]) / jnp.linalg.norm(data["m_star"])


def _on_test_split(data):
    # Model-only metrics read a key only the test split carries, so they are recorded once
    # (as test_<name>) rather than twice with identical values.
    return data["m_star"]


def _nuclear_norm(model, data):
    _on_test_split(data)
    return jnp.sum(jnp.linalg.svd(model.matrix, compute_uv=False))


def multiplication_table(key=0, *, d: int = 97, fraction: float = 0.05, alpha: float = 10.0) -> Problem:
    r"""Completion of the multiplication table X⋆_ij = ij/d² (Lyu E3.5, A6).

    i, j ∈ {0, …, d−1}; the train set is a uniformly random subset of n = ⌊fraction·d²⌋ ordered
    entries (470 of 9409 at d = 97), the test set all the other entries. Model
    `SymmetricFactorisation` W = UUᵀ − VVᵀ (U, V ∈ ℝ^{d×d}) at U = V = αI, α = 10:
    ‖θ0‖ = α√(2d) ≈ 139.3 and W(0) = 0.

    Conventions: Lyu minimises mean((W_ij − y)²) + (λ_L/2)‖θ‖² (PyTorch `MSELoss`, no ½), twice
    our F = ½·mean(r²). So Lyu's run at λ_L is ours at **λ = λ_L/2 in time t = 2·t_L**
    (t_L = η·step); slow time τ = λt = λ_L t_L is the same, and so is every statement in τ:
    ‖θ‖ = 139.3·e^{−τ} on the plateau, test drop at τ ≈ 2–8 (papers.md A6 at λ_L = 1e−3 is
    λ = 5e−4 here).

    Expected: train MSE → 0 within t ~ 1; a test-MSE plateau at the kernel predictor
    (zero fill plus symmetric copy, 0.1024 ± 0.0007 over masks); then the rich regime
    (minimum nuclear norm) drives the test MSE toward 0.

    Metrics: `mse` (mean((W_ij − X⋆_ij)²), Lyu's "MSE", train and test), `test_relative_error`
    ‖W − X⋆‖_F/‖X⋆‖_F and `test_nuclear_norm` ‖W‖_*. Data `x` are integer index pairs (n, 2);
    the test dict carries `m_star` (= X⋆).
    """
    n_obs = int(fraction * d * d)
    if not 0 < n_obs < d * d:
        raise ProblemError(f"fraction={fraction} observes {n_obs} of {d * d} entries; choose 0 < fraction < 1")
    dt = _float()
    grid = jnp.arange(d, dtype=dt) / d
    m_star = jnp.outer(grid, grid)
    order = jax.random.permutation(_key(key), d * d)
    pairs = jnp.stack([order // d, order % d], axis=1)

    def split(idx):
        return {"x": idx, "y": m_star[idx[:, 0], idx[:, 1]]}

    test = split(pairs[n_obs:])
    test["m_star"] = m_star
    return Problem(
        SymmetricFactorisation.init(d, alpha=jnp.asarray(alpha, dt), dtype=dt),
        split(pairs[:n_obs]),
        loss="mse",
        test=test,
        metrics={"mse": _mse, "relative_error": _relative_error, "nuclear_norm": _nuclear_norm},
    )


# ---------------------------------------------------------------------------------------------
# Boursier et al.: matrix completion and 1-D ReLU regression
# ---------------------------------------------------------------------------------------------


class _SingularValue(eqx.Module):
    """Metric: the `index`-th largest singular value of `model.matrix` (test split only).

    A module rather than a closure so that two problems with the same metrics hash equal and
    reuse the compiled solve (metrics are static fields of a `Problem`).
    """

    index: int = eqx.field(static=True)

    def __call__(self, model, data):
        _on_test_split(data)
        return jnp.linalg.svd(model.matrix, compute_uv=False)[self.index]


def matrix_completion(
    key=0,
    *,
    m: int = 20,
    n: int = 20,
    rank: int = 3,
    fraction: float = 0.5,
    alpha: float = 1.0,
    r: int | None = None,
    n_singular: int | None = None,
) -> Problem:
    r"""Low-rank matrix completion with W = UVᵀ (Boursier E1.1, A7).

    M⋆ = ABᵀ/√rank with A ∈ ℝ^{m×rank}, B ∈ ℝ^{n×rank} i.i.d. 𝒩(0, 1) (entries of unit
    variance); a uniformly random ⌊fraction·mn⌋ of the entries is observed (train), the rest
    is the test set. Model `MatrixFactorisation` with r = m + n factors (the paper's "extreme
    over-parameterisation") and entries 𝒩(0, α²). F = ½·mean over observed entries of
    (W_ij − M⋆_ij)².

    The paper's size (20×20 or 10×10), observed fraction, initialisation scale and loss
    normalisation are unknown (papers.md §10.1); 20×20, rank 3, 50% observed (so that the
    minimum-nuclear-norm completion is exact) and α = 1 are our choices. Expected: fit by
    t ≈ 1; at λ = 1e−3 the norm falls from t ≈ 10²–10³; all but `rank` singular values decay
    and ‖U‖²_F + ‖V‖²_F → 2‖M⋆‖_* (balanced minimum-nuclear-norm solution).

    Metrics: `mse` (mean((W_ij − M⋆_ij)²), train and test), `test_relative_error`,
    `test_nuclear_norm`, and `test_sv<i>` the i-th largest singular value of W for
    i < `n_singular` (default min(m, n, 10), as in the paper's figure). The test dict carries
    `m_star`.
    """
    n_obs = int(fraction * m * n)
    if not 0 < n_obs < m * n:
        raise ProblemError(f"fraction={fraction} observes {n_obs} of {m * n} entries; choose 0 < fraction < 1")
    if not 0 < rank <= min(m, n):
        raise ProblemError(f"rank must be in [1, min(m, n)] = [1, {min(m, n)}], got {rank}")
    n_singular = min(m, n, 10) if n_singular is None else n_singular
    dt = _float()
    k_a, k_b, k_mask, k_model = jax.random.split(_key(key), 4)
    a = jax.random.normal(k_a, (m, rank), dt)
    b = jax.random.normal(k_b, (n, rank), dt)
    m_star = a @ b.T / math.sqrt(rank)
    order = jax.random.permutation(k_mask, m * n)
    pairs = jnp.stack([order // n, order % n], axis=1)

    def split(idx):
        return {"x": idx, "y": m_star[idx[:, 0], idx[:, 1]]}

    test = split(pairs[n_obs:])
    test["m_star"] = m_star
    metrics = {"mse": _mse, "relative_error": _relative_error, "nuclear_norm": _nuclear_norm}
    metrics.update({f"sv{i}": _SingularValue(i) for i in range(n_singular)})
    return Problem(
        MatrixFactorisation.init(m, n, r, key=k_model, alpha=jnp.asarray(alpha, dt), dtype=dt),
        split(pairs[:n_obs]),
        loss="mse",
        test=test,
        metrics=metrics,
    )


# Teacher of `teacher_relu_1d`: Σ_k a_k ReLU(x − c_k), kinks at −1, 0, 1 (our choice; the paper's
# teacher is "a sum of 3 ReLUs" with unstated parameters).
RELU_TEACHER_KINKS = (-1.0, 0.0, 1.0)
RELU_TEACHER_WEIGHTS = (1.0, -2.0, 1.5)


def teacher_relu_1d(
    key=0, *, m: int = 100, n: int = 10, alpha: float = 2.0, n_test: int = 401, zero_last: bool = False
) -> Problem:
    r"""1-D regression with a two-layer ReLU network with biases (Boursier E1.2, A8).

    Student f(x) = Σ_{j=1}^m u_j ReLU(v_j x + b_j) (`ReLU1D`), u, v, b i.i.d. 𝒩(0, α²)
    (the paper's variance 4 is α = 2). Teacher f⋆(x) = ReLU(x + 1) − 2 ReLU(x) + 1.5 ReLU(x − 1)
    (three kinks at −1, 0, 1: our choice, the paper does not give its teacher). Train: n
    points x_i ~ U[−2, 2], y_i = f⋆(x_i). Test: `n_test` equispaced points on [−2, 2] (the
    paper's test set is not described). F = (1/2n)Σ(f(x_i) − y_i)², the paper's convention
    exactly.

    Expected at λ = 1e−3: train loss ≈ 0 by t ≈ 1, the norm falls from t ≈ 10³, and by
    t ≈ 10⁵ the test loss is much lower and the function has few kinks
    (`gflow.analysis.relu_kinks`). Metric: `mse` mean((f − y)²) on both splits.
    """
    dt = _float()
    k_x, k_model = jax.random.split(_key(key))
    kinks = jnp.asarray(RELU_TEACHER_KINKS, dt)
    weights = jnp.asarray(RELU_TEACHER_WEIGHTS, dt)

    def teacher(x):
        return jax.nn.relu(x[:, None] - kinks[None, :]) @ weights

    x = jax.random.uniform(k_x, (n,), dt, -2.0, 2.0)
    x_test = jnp.linspace(-2.0, 2.0, n_test, dtype=dt)
    return Problem(
        ReLU1D.init(m, key=k_model, alpha=jnp.asarray(alpha, dt), zero_last=zero_last, dtype=dt),
        {"x": x, "y": teacher(x)},
        loss="mse",
        test={"x": x_test, "y": teacher(x_test)},
        metrics={"mse": _mse},
    )


# ---------------------------------------------------------------------------------------------
# Modular arithmetic
# ---------------------------------------------------------------------------------------------

MODULAR_OPS = ("+", "-", "*", "/")
MODULAR_MODELS = ("mlp", "embedding", "embed_mlp")
_DEFAULT_WIDTH = {"mlp": 1024, "embedding": 512, "embed_mlp": 512}


def modular_pairs(p: int, op: str = "+", pairs: str = "ordered") -> tuple[np.ndarray, np.ndarray]:
    """All inputs (a, b) of `a op b mod p` and their answers, as NumPy int arrays (N, 2), (N,).

    `"ordered"`: every (a, b) ∈ [0, p)² (p² pairs; for "/" b ≠ 0, p(p − 1) pairs). `"unordered"`:
    a ≤ b (p(p + 1)/2 pairs), only for the commutative "+" and "*". Division is a·b^{p−2}
    (Fermat), so p must be prime for "/".
    """
    if op not in MODULAR_OPS:
        raise ProblemError(f"unknown op {op!r}; choose one of {', '.join(MODULAR_OPS)}")
    if pairs not in ("ordered", "unordered"):
        raise ProblemError(f"pairs must be 'ordered' or 'unordered', got {pairs!r}")
    if pairs == "unordered" and op in ("-", "/"):
        raise ProblemError(f"op {op!r} is not commutative: use pairs='ordered'")
    if op == "/" and (p < 2 or any(p % q == 0 for q in range(2, math.isqrt(p) + 1))):
        raise ProblemError(f"division mod p needs a prime p, got {p}")
    a, b = np.meshgrid(np.arange(p), np.arange(p), indexing="ij")
    a, b = a.ravel(), b.ravel()
    keep = (a <= b) if pairs == "unordered" else np.ones_like(a, bool)
    if op == "/":
        keep &= b != 0
    a, b = a[keep], b[keep]
    if op == "+":
        c = (a + b) % p
    elif op == "-":
        c = (a - b) % p
    elif op == "*":
        c = (a * b) % p
    else:
        c = (a * np.array([pow(int(v), p - 2, p) for v in b], dtype=np.int64)) % p
    return np.stack([a, b], axis=1), c


def _label_accuracy(model, data):
    logits = jax.vmap(model)(data["x"])
    return jnp.mean((jnp.argmax(logits, axis=-1) == data["label"]).astype(logits.dtype))


def modular_arithmetic(
    key=0,
    *,
    p: int = 97,
    op: str = "+",
    pairs: str = "ordered",
    train_fraction: float = 0.4,
    loss: str = "cross_entropy",
    model="mlp",
    width: int | None = None,
    embed_dim: int = 128,
    alpha: float = 1.0,
    zero_last: bool = False,
) -> Problem:
    r"""Modular arithmetic c = a ∘ b mod p, ∘ ∈ {+, −, ×, ÷}, as a p-class problem.

    Data (`modular_pairs`): all ordered pairs (Lyu, Power, Nanda) or unordered pairs a ≤ b
    (Musat); a uniformly random ⌊train_fraction·N⌋ of them train, the rest test (40% of
    9409 = 3763 for Lyu's p = 97; 70% of 703 = 492 for Musat's p = 37). Inputs `x` are integer
    pairs (a, b); the models index their weights (= one-hot encodings).

    Losses:
    - `"cross_entropy"` (Lyu E3.1, Tan): mean softmax cross-entropy, labels `y` ∈ [0, p);
      Lyu's convention exactly (his λ is ours).
    - `"mse"` (Musat): one-hot targets `y` (n, p), F = ½·mean over all n·p entries. Musat's
      𝓛 = Σ_i‖f(x_i) − y_i‖² + λ_M‖θ‖² is **our flow at λ = λ_M/(n·p) in time
      t = 2np·t_M**, with the same slow time τ = λt = 2λ_M t_M (his Eq. (20) time).

    Models (`model`; or pass any Equinox module taking a token pair):
    - `"mlp"`: `ModularMLP` (Lyu: concatenated one-hots, first-layer bias, He init ×α, width
      h = 1024 by default, `zero_last` for W2 = 0);
    - `"embedding"`: `EmbeddingNet` σ((e_a + e_b)ᵀE)W (Musat: no biases, E std p^{−1/2}, d_h = 512);
    - `"embed_mlp"`: `EmbedMLP` (Tan: embeddings of dimension `embed_dim` = 128 summed, one
      ReLU layer of width 512 — depth and width are not in the paper).

    Metrics: `accuracy` (argmax = label) on both splits; train/test loss are recorded by
    `simulate`. The data carry `label` (integer answers) for both losses.
    """
    if not 0 < train_fraction < 1:
        raise ProblemError(f"train_fraction must be in (0, 1), got {train_fraction}")
    if loss not in ("cross_entropy", "mse"):
        raise ProblemError(f"loss must be 'cross_entropy' or 'mse', got {loss!r}")
    xs, cs = modular_pairs(p, op, pairs)
    n_all = len(cs)
    n_train = int(train_fraction * n_all)
    if not 0 < n_train < n_all:
        raise ProblemError(f"train_fraction={train_fraction} leaves {n_train} of {n_all} pairs for training")
    dt = _float()
    k_split, k_model = jax.random.split(_key(key))
    if isinstance(model, str):
        if model not in MODULAR_MODELS:
            raise ProblemError(f"unknown model {model!r}; choose one of {', '.join(MODULAR_MODELS)} or pass a module")
        h = _DEFAULT_WIDTH[model] if width is None else width
        alpha = jnp.asarray(alpha, dt)
        if model == "mlp":
            net = ModularMLP.init(p, h, key=k_model, alpha=alpha, zero_last=zero_last, dtype=dt)
        elif model == "embedding":
            net = EmbeddingNet.init(p, h, key=k_model, alpha=alpha, zero_last=zero_last, dtype=dt)
        else:
            net = EmbedMLP.init(p, embed_dim, h, key=k_model, alpha=alpha, zero_last=zero_last, dtype=dt)
    elif isinstance(model, eqx.Module):
        net = model
    else:
        raise ProblemError(f"model must be one of {', '.join(MODULAR_MODELS)} or an eqx.Module, got {model!r}")
    order = jax.random.permutation(k_split, n_all)
    xs, cs = jnp.asarray(xs), jnp.asarray(cs)

    def split(idx):
        label = cs[idx]
        y = label if loss == "cross_entropy" else jax.nn.one_hot(label, p, dtype=dt)
        return {"x": xs[idx], "y": y, "label": label}

    return Problem(
        net,
        split(order[:n_train]),
        loss=loss,
        test=split(order[n_train:]),
        metrics={"accuracy": _label_accuracy},
    )


def modular_transformer(
    key=0,
    *,
    p: int = 113,
    op: str = "+",
    train_fraction: float = 0.3,
    d_model: int = 128,
    n_heads: int = 4,
    d_mlp: int = 512,
    activation: str = "relu",
    loss: str = "cross_entropy",
    alpha: float = 1.0,
    dtype: str | None = None,
) -> Problem:
    r"""Nanda et al.'s grokking experiment: a one-layer transformer (`Transformer1L`) on a ∘ b mod p.

    Defaults are Nanda's: p = 113, a + b, 30% of the p² ordered pairs train (3 830 of 12 769),
    d_model = 128, 4 heads of 32, a ReLU MLP of 512, full batch, cross-entropy. The published
    run is AdamW (lr 1e−3, weight decay 1, β = (0.9, 0.98)): use `gflow.gd(problem, lam=1.0,
    optimizer=...)`; the gradient flow θ' = −∇F − λθ is `simulate`. `activation="gelu"` gives
    a smooth flow (ReLU's kinks make the flow non-smooth: `solver="auto"` then integrates it
    with bosh3; with GELU and cross-entropy it picks tsit5). `loss="mse"` takes one-hot targets,
    Musat's setting, where an interpolating manifold exists for the slow flow (not yet run with
    this model).

    The data and metrics are those of `modular_arithmetic` (`accuracy` on both splits, the
    integer answers under `label`); `alpha` multiplies every initial weight. `dtype`:
    `"float32"` or `"float64"` for the parameters and float data (default: JAX's default float,
    float64 once x64 is enabled); float32 runs the quick-size flow about 3.7 times faster on a CPU
    (76 s against 284 s for the flow of the `nanda_transformer` experiment's quick size, 2 cores).
    """
    if dtype is None:
        dt = _float()
    elif dtype in ("float32", "float64"):
        dt = jnp.dtype(dtype)
    else:
        raise ProblemError(f"dtype must be 'float32', 'float64' or None (JAX's default float), got {dtype!r}")
    k_split, k_model = jax.random.split(_key(key))
    net = Transformer1L.init(
        p, d_model, n_heads, d_mlp, key=k_model, alpha=jnp.asarray(alpha, dt), activation=activation, dtype=dt
    )
    # The split uses the same key stream as `modular_arithmetic`, so both tasks see the same pairs.
    problem = modular_arithmetic(key, p=p, op=op, train_fraction=train_fraction, loss=loss, model=net)
    if dt == _float():
        return problem
    # One-hot targets (loss="mse") are built in the default float: give them the model's dtype.
    return jax.tree.map(lambda x: x.astype(dt) if eqx.is_inexact_array(x) else x, problem)
