r"""Rosenbrock-W integration of stiff gradient flows, with W-matrices that scale.

The flow θ' = f(θ) = −(∇F(θ) + λ m⊙θ)/s (s = 1 in fast time, s = λ in slow time) is stiff: its
fast phase has time scale 1/‖∇²F‖, its slow phase 1/λ. A Rosenbrock-W method solves only linear
systems with one matrix per step,

$$W = \frac{1}{h\gamma} I + P, \qquad P \approx -\frac{\partial f}{\partial\theta}
      = \frac{\nabla^2 F + \lambda M}{s},$$

and keeps its order for *any* P (the "W" property), so P may be an approximation chosen for
cost: the Gauss–Newton matrix JᵀJ/n (residual losses) or the generalised Gauss–Newton matrix
Jᵀ H_out J (cross-entropy, logistic; H_out the Hessian of the loss in the outputs), both
positive semi-definite, plus λM. This is the fast/slow structure of the flow: the fast (stiff)
dynamics live in the span of the output gradients (the normal space of the zero-loss manifold,
dimension ≤ N, the number of outputs), which is exactly the range of G; the slow drift lives in
its kernel, where W = 1/(hγ) + λ/s treats weight decay implicitly. Three ways to solve with W
(`AbstractWMatrix`):

- `GaussNewton(woodbury=True)`: J (N × d) from N vector–Jacobian products, then the Woodbury
  identity with an N × N Cholesky factor: the solve happens in the N-dimensional fast space, no
  d × d matrix.
- `GaussNewton(woodbury=False)`: matrix-free conjugate gradients; each product Wv costs one
  Jacobian–vector product and one vector–Jacobian product through the model (`jax.linearize`
  once per step, then its transpose).
- `ExactJacobian(dense=...)`: P = −∂f/∂θ exactly, from the vector field itself (Hessian–vector
  products); dense LU for small d, else conjugate gradients. This is the only choice for a
  custom scalar loss, and the one `Ros34PW2()` uses when built without a problem.

The method is ROS34PW2 (Rang & Angermann 2005): 4 stages, order 3 for any P, an embedded
order-2 solution for step control, L-stable, stiffly accurate. f(θ1) is the next step's first
stage (it costs nothing extra on accepted steps). Dense output (the observables at save times)
is a stage-based order-2 interpolant derived here (`_dense_output_weights`): it stays bounded on
stiff components, where the cubic Hermite interpolant through h·f(θ0), h·f(θ1) does not: those
carry hμ × (the stiff residual), and on a diagonal net at rtol 1e-4 Hermite put mid-step test
losses 600× off while the stage-based interpolant stayed within the solution's own error.

Evaluation counts are exact, rejected steps included: each step reports what it spent next to
its error estimate, and `CountingController` (a wrapper around Diffrax's PID controller, whose
state is not rolled back on rejection, unlike the solver's) adds them up.

??? cite "Reference"

    J. Rang and L. Angermann, "New Rosenbrock W-methods of order 3 for partial differential
    algebraic equations of index 1", BIT Numerical Mathematics 45 (2005) 761–787.
    E. Hairer and G. Wanner, "Solving Ordinary Differential Equations II", §IV.7 (the
    transformed variables u_i = Σ_j γ_ij k_j used below).
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar

import diffrax
import equinox as eqx
import jax
import jax.flatten_util
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import jax.tree_util as jtu
import numpy as np

from ._losses import AbstractGaussNewtonLoss
from ._problem import Problem

# ---------------------------------------------------------------------------------------------
# The tableau
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RosenbrockTableau:
    """Coefficients of a Rosenbrock-W method (a plain dataclass, not a pytree node).

    In the classical form the stages are (I − hγ P̃) k_i = h f(θ0 + Σ_j α_ij k_j) + h P̃ Σ_j γ_ij k_j
    with P̃ ≈ ∂f/∂θ, θ1 = θ0 + Σ b_i k_i. With u = Γk (Γ = (γ_ij), diagonal γ) this becomes

        (1/(hγ) − P̃) u_i = f(θ0 + Σ_{j<i} a_ij u_j) + Σ_{j<i} (c_ij/h) u_j,   θ1 = θ0 + Σ m_i u_i,

    with a = αΓ⁻¹, c = diag(1/γ) − Γ⁻¹, m = bΓ⁻¹ (Hairer & Wanner IV.7), so no product with P̃ is
    ever needed: one matrix, s solves.
    """

    name: str
    order: int
    gamma: float
    alpha: np.ndarray
    gammas: np.ndarray
    b: np.ndarray
    b_hat: np.ndarray

    def __post_init__(self):
        s = len(self.b)
        assert self.alpha.shape == self.gammas.shape == (s, s)
        assert np.all(np.triu(self.alpha) == 0), "alpha must be strictly lower triangular"
        assert np.all(np.triu(self.gammas, 1) == 0), "Gamma must be lower triangular"
        assert np.allclose(np.diag(self.gammas), self.gamma)
        assert abs(self.b.sum() - 1) < 1e-14 and abs(self.b_hat.sum() - 1) < 1e-14
        inv = np.linalg.inv(self.gammas)
        # Exact zeros above the diagonal (the inverse of a lower-triangular matrix is one).
        object.__setattr__(self, "a", np.tril(self.alpha @ inv, -1))
        object.__setattr__(self, "c", np.tril(np.diag(1.0 / np.diag(self.gammas)) - inv, -1))
        object.__setattr__(self, "m", self.b @ inv)
        object.__setattr__(self, "m_error", (self.b - self.b_hat) @ inv)
        object.__setattr__(self, "c_time", self.alpha.sum(axis=1))
        object.__setattr__(self, "dense", _dense_output_weights(self) @ inv)

    @property
    def stages(self) -> int:
        return len(self.b)


def _w_order_conditions(tab) -> tuple[list[np.ndarray], np.ndarray]:
    """The order-3 conditions of a W-method (any P̃), as Σ_i b_i φ_i = e.

    Expanding k_i in powers of h with P̃ ≠ ∂f/∂θ gives five elementary differentials at order 3
    (f'f'f, f''(f, f), f'P̃f, P̃f'f, P̃P̃f; f' and P̃ do not commute) with weights
    φ = (Σ_j α_ij α_j, α_i², Σ_j α_ij g_j, Σ_j γ_ij α_j, Σ_j γ_ij g_j), α_i = Σ_j α_ij,
    g_i = Σ_{j≤i} γ_ij, and targets e = (1/6, 1/3, 0, 0, 0).
    """
    alpha_i = tab.alpha.sum(axis=1)
    g_i = tab.gammas.sum(axis=1)
    phis = [tab.alpha @ alpha_i, alpha_i**2, tab.alpha @ g_i, tab.gammas @ alpha_i, tab.gammas @ g_i]
    return phis, np.array([1 / 6, 1 / 3, 0.0, 0.0, 0.0])


def _dense_output_weights(tab) -> np.ndarray:
    """Weights β (3 × s) of a stage-based dense output θ(t0 + ξh) = θ0 + Σ_i b_i(ξ) k_i with
    b(ξ) = ξβ1 + ξ²β2 + ξ³β3, b(1) = b.

    Order 2 for any P̃ (Σb(ξ) = ξ, Σb(ξ)α_i = ξ²/2, Σb(ξ)g_i = 0 at every ξ) is all four stages
    allow; the two free parameters minimise ∫₀¹ Σ (order-3 residuals)² dξ. Unlike the cubic
    Hermite interpolant it stays bounded on unresolved stiff components (the stages are W⁻¹-damped).
    """
    s = len(tab.b)
    alpha_i, g_i = tab.alpha.sum(axis=1), tab.gammas.sum(axis=1)
    phis, targets = _w_order_conditions(tab)
    cond = np.stack([np.ones(s), alpha_i, g_i])
    a_eq = np.zeros((6, 2 * s))
    a_eq[:3, :s] = cond
    a_eq[3:, s:] = cond
    b_eq = np.array([1.0, 0.0, 0.0, 0.0, 0.5, 0.0])
    # With β3 = b − β1 − β2 and Σ b φ = e, the order-3 residual at ξ is
    # (ξ − ξ³)φ·β1 + (ξ² − ξ³)φ·β2.
    nodes, weights = np.polynomial.legendre.leggauss(20)
    nodes, weights = 0.5 * (nodes + 1), 0.5 * weights
    quad = np.zeros((2 * s, 2 * s))
    for x, w in zip(nodes, weights, strict=True):
        for phi in phis:
            row = np.concatenate([(x - x**3) * phi, (x**2 - x**3) * phi])
            quad += w * np.outer(row, row)
    kkt = np.block([[2 * quad, a_eq.T], [a_eq, np.zeros((6, 6))]])
    sol = np.linalg.solve(kkt, np.concatenate([np.zeros(2 * s), b_eq]))
    beta1, beta2 = sol[:s], sol[s : 2 * s]
    return np.stack([beta1, beta2, tab.b - beta1 - beta2])


# Rang & Angermann (2005), ROS34PW2. Order 3 for any P̃ and 2 for the embedded method (checked in
# tests/test_stiff.py by the local-error slopes with P̃ = ∂f/∂θ, 0 and a random matrix, and the
# global convergence order against expm).
ROS34PW2 = RosenbrockTableau(
    name="ros34pw2",
    order=3,
    gamma=4.3586652150845900e-01,
    alpha=np.array(
        [
            [0.0, 0.0, 0.0, 0.0],
            [8.7173304301691801e-01, 0.0, 0.0, 0.0],
            [8.4457060015369423e-01, -1.1299064236484185e-01, 0.0, 0.0],
            [0.0, 0.0, 1.0, 0.0],
        ]
    ),
    gammas=np.array(
        [
            [4.3586652150845900e-01, 0.0, 0.0, 0.0],
            [-8.7173304301691801e-01, 4.3586652150845900e-01, 0.0, 0.0],
            [-9.0338057013044082e-01, 5.4180672388095326e-02, 4.3586652150845900e-01, 0.0],
            [2.4212380706095346e-01, -1.2232505839045147e00, 5.4526025533510214e-01, 4.3586652150845900e-01],
        ]
    ),
    b=np.array([2.4212380706095346e-01, -1.2232505839045147e00, 1.5452602553351020e00, 4.3586652150845900e-01]),
    b_hat=np.array([3.7810903145819369e-01, -9.6042292212423178e-02, 0.5, 2.1793326075422950e-01]),
)


# ---------------------------------------------------------------------------------------------
# Evaluation counters
# ---------------------------------------------------------------------------------------------

# - num_vf_evals: gradient evaluations ∇F (the vector field).
# - num_jvps / num_vjps: forward / reverse products with the output Jacobian J (one linearisation
#   by `jax.linearize` counts as a JVP; a batch of N products counts N).
# - num_hvps: products with the Hessian of F (forward-over-reverse; a `jax.linearize` of the
#   gradient counts as one).
# - num_krylov_iterations: conjugate-gradient iterations (their products are counted above).
COUNT_KEYS = ("num_vf_evals", "num_jvps", "num_vjps", "num_hvps", "num_krylov_iterations")


def zero_counts() -> dict[str, jax.Array]:
    return {k: jnp.zeros((), jnp.int32) for k in COUNT_KEYS}


def _add(counts: dict, **more) -> dict:
    return {k: v + more.get(k, 0) for k, v in counts.items()}


def gradient_equivalents(stats: dict):
    """Cost in gradient evaluations: ∇F, a JVP and a VJP count 1 each, an HVP counts 2.

    A conservative convention: a linearised JVP costs about one forward pass (≈ 1/3 of a
    gradient) and an HVP by forward-over-reverse about 2–4 gradients' worth of FLOPs.
    """
    return stats["num_vf_evals"] + stats.get("num_jvps", 0) + stats.get("num_vjps", 0) + 2 * stats.get("num_hvps", 0)


class WrappingController(diffrax.AbstractAdaptiveStepSizeController):
    """Base of controllers that wrap another adaptive one: its tolerances and norm are theirs
    (Diffrax reads them, e.g. for an implicit solver's root finder)."""

    controller: diffrax.AbstractAdaptiveStepSizeController

    @property
    def rtol(self):
        return self.controller.rtol

    @property
    def atol(self):
        return self.controller.atol

    @property
    def norm(self):
        return self.controller.norm


class CountingController(WrappingController):
    """A `diffrax.PIDController` that also adds up the evaluation counts each step reports.

    A Rosenbrock step returns its error estimate as `(error, counts)`. Diffrax rolls the solver
    state back when it rejects a step, but not the controller's, so the totals kept here include
    the work of rejected steps. Read them with `SaveAt(controller_state=True)`:
    `sol.controller_state[1]`.
    """

    def wrap(self, direction):
        return CountingController(self.controller.wrap(direction))

    def init(self, terms, t0, t1, y0, dt0, args, func, error_order):
        tnext, state = self.controller.init(terms, t0, t1, y0, dt0, args, func, error_order)
        return tnext, (state, zero_counts())

    def adapt_step_size(self, t0, t1, y0, y1_candidate, args, y_error, error_order, controller_state):
        error, counts = y_error
        state, totals = controller_state
        keep, next_t0, next_t1, made_jump, state, result = self.controller.adapt_step_size(
            t0, t1, y0, y1_candidate, args, error, error_order, state
        )
        # Diffrax maps NaN errors to inf leaf by leaf, which turns integer counts into floats.
        totals = {k: totals[k] + jnp.asarray(counts[k]).astype(totals[k].dtype) for k in COUNT_KEYS}
        return keep, next_t0, next_t1, made_jump, (state, totals), result


# ---------------------------------------------------------------------------------------------
# Conjugate gradients
# ---------------------------------------------------------------------------------------------


def conjugate_gradient(matvec, b, diag_inv, threshold, max_steps: int):
    """Solve Ax = b for symmetric A (positive definite where it matters) by Jacobi-preconditioned CG.

    Stops when ‖b − Ax‖_w ≤ 1, with the weighted RMS norm ‖r‖_w = RMS(r/threshold) (`threshold` a
    vector), or after `max_steps` products. Returns `(x, ok, steps)`; `ok` is False when it ran
    out of steps or met non-positive curvature pᵀAp ≤ 0 (then A is not positive definite and the
    caller rejects the step: a smaller step size makes W more diagonal dominant).
    """

    def wnorm(r):
        return jnp.sqrt(jnp.mean(jnp.square(r / threshold)))

    x0 = jnp.zeros_like(b)
    z0 = diag_inv * b
    state0 = (x0, b, z0, jnp.vdot(b, z0), jnp.zeros((), jnp.int32), jnp.array(True))

    def cond(state):
        _, r, _, _, k, fine = state
        return fine & (k < max_steps) & (wnorm(r) > 1)

    def body(state):
        x, r, p, rz, k, _ = state
        ap = matvec(p)
        pap = jnp.vdot(p, ap)
        fine = pap > 0
        alpha = jnp.where(fine, rz / jnp.where(fine, pap, 1), 0)
        x = x + alpha * p
        r = r - alpha * ap
        z = diag_inv * r
        rz_new = jnp.vdot(r, z)
        beta = rz_new / jnp.where(rz > 0, rz, 1)
        return x, r, z + beta * p, rz_new, k + 1, fine

    x, r, _, _, steps, fine = jax.lax.while_loop(cond, body, state0)
    return x, fine & (wnorm(r) <= 1), steps


# ---------------------------------------------------------------------------------------------
# W-matrices: how P ≈ −∂f/∂θ is formed and (σI + P)x = b solved
# ---------------------------------------------------------------------------------------------

# Iterative W-solves stop when the solution error bound ‖r‖/σ is below KRYLOV_TOL times the step's
# error threshold atol + rtol·|θ| (weighted RMS), or after KRYLOV_MAX_STEPS products (then the
# step is rejected and retried smaller, where W is better conditioned). On the modular-addition
# MLP (λ = 1e-3, rtol 1e-4, final error 1.2e-4) KRYLOV_TOL = 1e-1 / 1e-2 / 1e-3 moved the final
# state by 1.6e-5 / 1.5e-6 / 1.3e-7 for 6 275 / 8 592 / 10 919 CG iterations.
KRYLOV_TOL = 1e-2
KRYLOV_MAX_STEPS = 200

# The materialised W-matrices (Woodbury, dense) recompute their Jacobian every JACOBIAN_REFRESH
# accepted steps and reuse it in between (factoring it with each step's own σ). The W-property
# keeps the order, but a stale Gauss–Newton matrix misses the rotation of the stiff subspace: on a
# diagonal net (d = 1000, λ = 1e-5) reusing it for 3 (10) steps took 2.9× (4.3×) the steps, 40%
# of them rejected, for 25% (45%) fewer gradient-equivalents and twice the wall time. So: 1.
JACOBIAN_REFRESH = 1


class FlatField(eqx.Module):
    """The vector field on the flattened parameter vector, at a fixed time."""

    terms: Any
    t: Any
    args: Any
    unravel: Callable = eqx.field(static=True)

    def __call__(self, flat):
        return jax.flatten_util.ravel_pytree(self.terms.vf(self.t, self.unravel(flat), self.args))[0]


class AbstractWMatrix(eqx.Module):
    """How a Rosenbrock-W step builds P ≈ −∂f/∂θ and solves (σI + P)x = b.

    `prepare(field, θ0, σ, state)` returns `(solve, counts, state)`: `solve(b, threshold) ->
    (x, ok, counts)` is called once per stage; `threshold` (a vector) is the accuracy the step
    needs in x, elementwise, so an iterative solve may stop at residual ≤ σ·threshold in the
    weighted RMS norm. `state` (from `init`, carried in the solver state, rolled back with a
    rejected step) lets a W-matrix keep an old Jacobian: the W-property makes that safe for the
    order, and the error control guards stability.
    """

    def init(self, field: FlatField, flat0):
        del field, flat0
        return None

    @abc.abstractmethod
    def prepare(self, field: FlatField, flat0, sigma, state) -> tuple[Callable, dict, Any]:
        """See the class docstring."""

    def describe(self) -> str:
        return type(self).__name__


def _lagged(refresh_every: int, state, compute):
    """A Jacobian-like value kept for `refresh_every` accepted steps.

    `state` is None (`refresh_every` = 1: recompute every step, carry nothing) or `(value, age)`.
    Returns `(value, refreshed, new state)`.
    """
    if refresh_every == 1:
        return compute(), jnp.array(True), None
    old, age = state
    refreshed = age >= refresh_every
    value = jax.lax.cond(refreshed, compute, lambda: old)
    return value, refreshed, (value, jnp.where(refreshed, 1, age + 1).astype(age.dtype))


class ExactJacobian(AbstractWMatrix):
    """P = −∂f/∂θ exactly (for a gradient flow: (∇²F + λM)/s), from the vector field.

    `dense=True`: the d × d matrix from d Hessian–vector products (recomputed every
    `refresh_every` accepted steps), LU-factored with the step's σ (small d only).
    `dense=False`: conjugate gradients on Hessian–vector products (a `jax.linearize` of the
    field per step, then one forward-mode product per iteration). ∇²F may be indefinite; a CG
    breakdown rejects the step.
    """

    dense: bool = eqx.field(static=True, default=False)
    refresh_every: int = eqx.field(static=True, default_factory=lambda: JACOBIAN_REFRESH)
    krylov_tol: float = eqx.field(default_factory=lambda: KRYLOV_TOL)
    krylov_max_steps: int = eqx.field(static=True, default_factory=lambda: KRYLOV_MAX_STEPS)

    def describe(self):
        return "exact Jacobian, " + ("dense LU" if self.dense else "CG on Hessian-vector products")

    def init(self, field, flat0):
        if not self.dense or self.refresh_every == 1:
            return None
        d = flat0.size
        return jnp.zeros((d, d), flat0.dtype), jnp.asarray(self.refresh_every, jnp.int32)

    def prepare(self, field, flat0, sigma, state):
        d = flat0.size
        if self.dense:

            def compute():
                _, jvp = jax.linearize(field, flat0)
                return -jax.vmap(jvp)(jnp.eye(d, dtype=flat0.dtype)).T  # P = −∂f/∂θ

            p_mat, refreshed, state = _lagged(self.refresh_every, state, compute)
            lu = jsl.lu_factor(sigma * jnp.eye(d, dtype=flat0.dtype) + p_mat)
            counts = _add(zero_counts(), num_hvps=jnp.where(refreshed, d + 1, 0))

            def solve(b, threshold):
                del threshold
                return jsl.lu_solve(lu, b), jnp.array(True), zero_counts()

            return solve, counts, state

        _, jvp = jax.linearize(field, flat0)
        counts = _add(zero_counts(), num_hvps=1)

        def matvec(v):
            return sigma * v - jvp(v)

        def solve(b, threshold):
            x, ok, steps = conjugate_gradient(
                matvec, b, jnp.full_like(b, 1 / sigma), self.krylov_tol * sigma * threshold, self.krylov_max_steps
            )
            return x, ok, _add(zero_counts(), num_hvps=steps, num_krylov_iterations=steps)

        return solve, counts, None


class GaussNewton(AbstractWMatrix):
    r"""P = (G + λM)/s with G the (generalised) Gauss–Newton matrix of the problem's loss (an
    `AbstractGaussNewtonLoss`, which gives its outputs and their curvature H):

    - residual losses F = ½·mean(r²), r ∈ ℝᴺ: G = JᵀJ/N, J = ∂r/∂θ;
    - `"cross_entropy"`: G = Σ_i J_iᵀ (diag p_i − p_i p_iᵀ) J_i / n, J_i = ∂(logits_i)/∂θ;
    - `"logistic"`: G = Σ_i σ(y_i f_i)σ(−y_i f_i) ∇f_i ∇f_iᵀ / n.

    All are Jᵀ H J with H ⪰ 0 block diagonal, factored H = S Sᵀ, so G = BᵀB with B = SᵀJ
    (N × d). Then sW = D + BᵀB with D = sσ + λm (a vector).

    `woodbury=True`: B from N vector–Jacobian products and
    (D + BᵀB)⁻¹ = D⁻¹ − D⁻¹Bᵀ(I + BD⁻¹Bᵀ)⁻¹BD⁻¹ with an N × N Cholesky factor.
    `woodbury=False`: CG with products D v + Jᵀ(H(J v)) by `jax.linearize` (one per step) and
    its transpose, preconditioned by D. (A diagonal preconditioner D + diag G, with diag G from a
    Gauss–Newton–Bartlett estimate, made CG slower on the modular-addition MLP: 12 652 instead of
    8 592 iterations for one run.)

    `refresh_every` (Woodbury only): recompute B every this many accepted steps (see
    `JACOBIAN_REFRESH`).
    """

    problem: Problem
    static: Any
    lam: jax.Array
    slow: bool = eqx.field(static=True)
    woodbury: bool = eqx.field(static=True)
    refresh_every: int = eqx.field(static=True, default_factory=lambda: JACOBIAN_REFRESH)
    krylov_tol: float = eqx.field(default_factory=lambda: KRYLOV_TOL)
    krylov_max_steps: int = eqx.field(static=True, default_factory=lambda: KRYLOV_MAX_STEPS)

    def describe(self):
        return "Gauss-Newton, " + ("Woodbury (N x N Cholesky)" if self.woodbury else "matrix-free CG")

    # -- the problem's outputs and the Hessian of the loss in them ----------------------------

    def _outputs(self, unravel, flat):
        return self.problem.loss.outputs(eqx.combine(unravel(flat), self.static), self.problem.train)

    def _curvature(self, z):
        """(H·, Sᵀ·) of the loss at outputs z (`AbstractGaussNewtonLoss.output_curvature`)."""
        return self.problem.loss.output_curvature(z, self.problem.train)

    def _mask(self, unravel, flat0):
        ones = jtu.tree_map(jnp.ones_like, unravel(flat0))
        return jax.flatten_util.ravel_pytree(self.problem.decayed(ones))[0]

    def _rows(self, unravel, flat0):
        """B = SᵀJ (N × d) from N vector–Jacobian products."""
        z, vjp = jax.vjp(lambda fl: self._outputs(unravel, fl), flat0)
        n_out = z.size
        (jac,) = jax.vmap(vjp)(jnp.eye(n_out, dtype=z.dtype).reshape((n_out, *z.shape)))  # row k = ∂z_k/∂θ
        _, s_t = self._curvature(z)
        return s_t(jac.reshape((*z.shape, flat0.size))).reshape((n_out, flat0.size))

    def _grams(self, rows, mask):
        """B_M B_Mᵀ over the decayed parameters and B_U B_Uᵀ over the others (None if all decay)."""
        if all(self.problem.decay_leaves):
            return rows @ rows.T, None
        return (rows * mask[None, :]) @ rows.T, (rows * (1 - mask)[None, :]) @ rows.T

    def init(self, field, flat0):
        if not self.woodbury or self.refresh_every == 1:
            return None
        n_out = num_outputs(self.problem)
        d = flat0.size
        zeros = jnp.zeros((n_out, n_out), flat0.dtype)
        grams = (zeros, None if all(self.problem.decay_leaves) else zeros)
        return (jnp.zeros((n_out, d), flat0.dtype), grams), jnp.asarray(self.refresh_every, jnp.int32)

    def prepare(self, field, flat0, sigma, state):
        unravel = field.unravel
        scale = self.lam if self.slow else jnp.ones((), flat0.dtype)
        mask = self._mask(unravel, flat0)
        diag = scale * sigma + self.lam * mask  # D

        if self.woodbury:

            def compute():
                new_rows = self._rows(unravel, flat0)
                return new_rows, self._grams(new_rows, mask)

            (rows, grams), refreshed, state = _lagged(self.refresh_every, state, compute)
            n_out = rows.shape[0]
            counts = _add(zero_counts(), num_vjps=jnp.where(refreshed, n_out, 0))
            # I + B D⁻¹ Bᵀ with D = sσ + λ on decayed, sσ on undecayed parameters.
            decayed, undecayed = grams
            k_mat = jnp.eye(n_out, dtype=flat0.dtype) + decayed / (scale * sigma + self.lam)
            if undecayed is not None:
                k_mat = k_mat + undecayed / (scale * sigma)
            chol = jsl.cho_factor(k_mat, lower=True)
            dinv = 1 / diag

            def solve(b, threshold):
                del threshold
                t = scale * b * dinv
                w = jsl.cho_solve(chol, rows @ t)
                return t - dinv * (rows.T @ w), jnp.array(True), zero_counts()

            return solve, counts, state

        z, jvp = jax.linearize(lambda fl: self._outputs(unravel, fl), flat0)
        vjp = jax.linear_transpose(jvp, flat0)
        hess, _ = self._curvature(z)
        counts = _add(zero_counts(), num_jvps=1)

        def matvec(v):
            return diag * v + vjp(hess(jvp(v)))[0]

        def solve(b, threshold):
            x, ok, steps = conjugate_gradient(
                matvec, scale * b, 1 / diag, self.krylov_tol * scale * sigma * threshold, self.krylov_max_steps
            )
            return x, ok, _add(zero_counts(), num_jvps=steps, num_vjps=steps, num_krylov_iterations=steps)

        return solve, counts, None


def has_gauss_newton(problem: Problem) -> bool:
    """Whether `problem`'s loss has a (generalised) Gauss–Newton structure (`AbstractGaussNewtonLoss`)."""
    return isinstance(problem.loss, AbstractGaussNewtonLoss)


def num_outputs(problem: Problem) -> int:
    """N: the number of outputs the loss is a function of (residuals, or logits over the training set)."""
    out = eqx.filter_eval_shape(problem.loss.outputs, problem.model, problem.train)
    return int(np.prod(out.shape))


# ---------------------------------------------------------------------------------------------
# Dense output
# ---------------------------------------------------------------------------------------------


class CubicInterpolation(diffrax.AbstractLocalInterpolation):
    """θ(t) = Σ_k c_k ξ^k with ξ = (t − t0)/(t1 − t0): `coeffs` holds (c3, c2, c1, c0) per leaf."""

    t0: Any
    t1: Any
    coeffs: Any

    def evaluate(self, t0, t1=None, left=True):
        del left
        if t1 is not None:
            return jtu.tree_map(lambda a, b: a - b, self.evaluate(t1), self.evaluate(t0))
        span = self.t1 - self.t0
        xi = jnp.where(span == 0, 0, (t0 - self.t0) / jnp.where(span == 0, 1, span))

        def poly(c):
            xi_c = xi.astype(c.dtype)
            return ((c[0] * xi_c + c[1]) * xi_c + c[2]) * xi_c + c[3]

        return jtu.tree_map(poly, self.coeffs)


def _dense_coefficients(tab, flat0, us):
    """(4, d) cubic coefficients (highest power first) of the stage-based dense output."""
    c = [sum(float(tab.dense[p, j]) * us[j] for j in range(tab.stages)) for p in range(3)]
    return jnp.stack([c[2], c[1], c[0], flat0])


# ---------------------------------------------------------------------------------------------
# The solver
# ---------------------------------------------------------------------------------------------


class Ros34PW2(diffrax.AbstractAdaptiveSolver):
    r"""ROS34PW2, a linearly implicit Rosenbrock-W method for stiff gradient flows.

    Order 3 (embedded order 2 for step control), 4 stages, L-stable, stiffly accurate; one
    W-matrix per step (see `AbstractWMatrix`), whatever its approximation of the Jacobian.
    Dense output: an order-2 interpolant from the stages, bounded on stiff components.

    Its error estimate is a pair `(error, counts)`: use it with `CountingController`.

    **Arguments:**

    - `w_matrix`: an `AbstractWMatrix`. Default `ExactJacobian()`: matrix-free, exact Jacobian
      from the vector field, for any gradient flow. `gflow.simulate` passes a `GaussNewton`
      built from the problem where it can (see `gflow._simulate.make_solver`).
    - `rtol`, `atol`: the step's tolerances; iterative W-solves stop at `krylov_tol` of them.
      Defaults 1e-8 / 1e-10 (gflow's float64 defaults).
    """

    w_matrix: AbstractWMatrix = ExactJacobian()
    rtol: Any = 1e-8
    atol: Any = 1e-10

    term_structure: ClassVar = diffrax.AbstractTerm
    interpolation_cls: ClassVar = CubicInterpolation
    tableau: ClassVar[RosenbrockTableau] = ROS34PW2

    def order(self, terms):
        return self.tableau.order

    def startup_counts(self) -> dict[str, int]:
        """Work done by `init` (not seen by the step-size controller): f(θ0)."""
        return {"num_vf_evals": 1}

    def init(self, terms, t0, t1, y0, args):
        del t1
        flat0, unravel = jax.flatten_util.ravel_pytree(y0)
        f0 = jax.flatten_util.ravel_pytree(terms.vf(t0, y0, args))[0]
        return f0, self.w_matrix.init(FlatField(terms, t0, args, unravel), flat0)

    def func(self, terms, t0, y0, args):
        return terms.vf(t0, y0, args)

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        tab = self.tableau
        flat0, unravel = jax.flatten_util.ravel_pytree(y0)
        dtype = flat0.dtype
        h = jnp.asarray(t1 - t0, dtype)
        field_at = lambda t: FlatField(terms, t, args, unravel)
        counts = zero_counts()

        f0, w_state = solver_state
        if made_jump is not False:
            f0 = jax.lax.cond(made_jump, lambda: field_at(t0)(flat0), lambda: f0)
            counts = _add(counts, num_vf_evals=jnp.asarray(made_jump).astype(jnp.int32))

        sigma = 1 / (h * tab.gamma)
        solve, spent, w_state = self.w_matrix.prepare(field_at(t0), flat0, sigma, w_state)
        counts = _add(counts, **spent)
        threshold = self.atol + self.rtol * jnp.abs(flat0)

        us = []
        ok = jnp.array(True)
        for i in range(tab.stages):
            if i == 0:
                f_i = f0
            else:
                y_i = flat0 + sum(float(tab.a[i, j]) * us[j] for j in range(i))
                f_i = field_at(t0 + float(tab.c_time[i]) * h)(y_i)
                counts = _add(counts, num_vf_evals=1)
            rhs = f_i + sum((float(tab.c[i, j]) / h) * us[j] for j in range(i))
            u, ok_i, spent = solve(rhs, threshold)
            counts = _add(counts, **spent)
            ok = ok & ok_i
            us.append(u)

        flat1 = flat0 + sum(float(tab.m[j]) * us[j] for j in range(tab.stages))
        error = sum(float(tab.m_error[j]) * us[j] for j in range(tab.stages))
        # A failed W-solve rejects the step: the controller then shrinks h by its factormin.
        error = jnp.where(ok, error, jnp.inf)
        f1 = field_at(t1)(flat1)
        counts = _add(counts, num_vf_evals=1)

        y1 = unravel(flat1)
        coeffs = _dense_coefficients(tab, flat0, us)
        dense_info = dict(coeffs=jax.vmap(unravel)(coeffs))
        return y1, (unravel(error), counts), dense_info, (f1, w_state), diffrax.RESULTS.successful


Ros34PW2.__init__.__doc__ = """**Arguments:** `w_matrix`, `rtol`, `atol` (see the class docstring)."""
