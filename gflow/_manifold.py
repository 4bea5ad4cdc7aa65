r"""Geometry of the slow phase: the manifold of minimisers, its tangent projection and pull-back.

Two manifolds are offered (papers.md §2.1, §2.3, §3.1):

- `"zero_loss"`: M = {θ : r(θ) = 0} for a residual problem (F = ½·mean(r²)), with J = ∂r/∂θ
  (n × d). At a regular point (J of full row rank) T_θM = Ker J and the tangent projection is
  P = I − J⁺J = I − Jᵀ(JJᵀ)⁻¹J. The manifold residual is ‖r(θ)‖.
- `"critical"`: M = a connected set of critical points {∇F = 0} that is Morse–Bott (a smooth
  manifold with Ker ∇²F = T_θM and the other Hessian eigenvalues ≥ η > 0; papers.md §2.1,
  Assumption 2). Any loss. P is the projection onto Ker ∇²F(θ); the manifold residual is ‖∇F(θ)‖.

Every computation works on the flattened parameter vector (`jax.flatten_util.ravel_pytree`) and
never forms a d × d matrix, except the dense Hessian of the `"critical"` manifold for small d.
"""

from __future__ import annotations

import abc
from collections.abc import Callable

import equinox as eqx
import jax
import jax.flatten_util
import jax.numpy as jnp
import lineax as lx

from ._losses import MSE
from ._problem import Problem, ProblemError

MANIFOLDS = ("zero_loss", "critical")
LINEAR_SOLVERS = ("auto", "dense", "matrix_free")

# `linear_solver="auto"` (see `choose_linear_solver`): the dense paths cost O(n²d + n³)
# (zero_loss) or O(d³) (critical) per vector-field evaluation, and hold an n × d Jacobian or a
# d × d Hessian; beyond these sizes the matrix-free paths (CG, Lanczos) are cheaper.
AUTO_MAX_DENSE_RESIDUALS = 2000
AUTO_MAX_DENSE_JACOBIAN = 10_000_000  # entries of J (n·d)
AUTO_MAX_DENSE_HESSIAN = 300  # d

# Power iterations that estimate λ_max(JJᵀ) for the Tikhonov scale of the CG path.
_POWER_ITERS = 8


def default_rcond(dtype) -> float:
    """Tikhonov cut-off of the zero_loss pseudo-inverse, relative to λ_max(JJᵀ)."""
    return 1e-12 if jnp.finfo(dtype).bits >= 64 else 1e-6


def default_kernel_rtol(dtype) -> float:
    """Hessian eigenvalues at or below this fraction of the largest count as kernel (critical)."""
    return 1e-8 if jnp.finfo(dtype).bits >= 64 else 1e-4


def default_cg_rtol(dtype) -> float:
    return 1e-12 if jnp.finfo(dtype).bits >= 64 else 1e-6


def check_manifold(problem: Problem, manifold: str) -> None:
    if manifold not in MANIFOLDS:
        raise ProblemError(
            f"unknown manifold {manifold!r}; choose 'zero_loss' (residual problems) or 'critical' (any loss)"
        )
    if manifold == "zero_loss" and problem.residuals_fn is None:
        what = f"loss={problem.loss_name!r}" if problem.loss_name else "a custom loss="
        raise ProblemError(
            f"manifold='zero_loss' needs a residual problem (loss='mse' or residuals=...), but this Problem has "
            f"{what}, whose zero loss is reached only at infinity (or cannot be read off a scalar loss); use "
            "manifold='critical' on a problem with finite minimisers, or give residuals="
        )


def choose_linear_solver(problem: Problem, manifold: str, linear_solver: str) -> str:
    """Resolve `linear_solver="auto"` to `"dense"` or `"matrix_free"`.

    zero_loss: dense when the residual vector has at most `AUTO_MAX_DENSE_RESIDUALS` entries and
    J has at most `AUTO_MAX_DENSE_JACOBIAN` entries; critical: dense when d ≤ `AUTO_MAX_DENSE_HESSIAN`.
    """
    if linear_solver not in LINEAR_SOLVERS:
        raise ProblemError(f"unknown linear_solver {linear_solver!r}; choose one of {', '.join(LINEAR_SOLVERS)}")
    if linear_solver != "auto":
        return linear_solver
    d = sum(int(x.size) for x in jax.tree.leaves(problem.params))
    if manifold == "zero_loss":
        n = eqx.filter_eval_shape(problem.residuals_fn, problem.model, problem.train).shape[0]
        return "dense" if n <= AUTO_MAX_DENSE_RESIDUALS and n * d <= AUTO_MAX_DENSE_JACOBIAN else "matrix_free"
    return "dense" if d <= AUTO_MAX_DENSE_HESSIAN else "matrix_free"


class AbstractManifold(eqx.Module):
    r"""The manifold of minimisers seen from a flat parameter vector θ ∈ ℝ^d.

    Concrete manifolds implement `residual` and `correction`; the tangent projection, the slow
    vector field and the Newton-type retraction step are all built from `correction`.
    """

    @abc.abstractmethod
    def residual(self, flat) -> jax.Array:
        """The distance-like residual: ‖r(θ)‖ (zero_loss) or ‖∇F(θ)‖ (critical)."""

    @abc.abstractmethod
    def correction(self, flat, u, gain) -> tuple[jax.Array, jax.Array]:
        r"""`(residual, w)` with w = (I − P)u − gain·N(θ), where I − P projects onto the normal
        space and N(θ) is the Newton-type step back to M (J⁺r or (∇²F)⁺∇F).

        Then P u = u − w(gain=0), the stabilised slow field is −u + w(u=m⊙θ, gain=c), and a
        retraction step is θ ← θ + w(u=0, gain=1).
        """

    def tangent(self, flat, v) -> jax.Array:
        return v - self.correction(flat, v, jnp.zeros((), flat.dtype))[1]


class ZeroLossManifold(AbstractManifold):
    r"""M = {r(θ) = 0}, with the regularised pseudo-inverse J⁺_ε = Jᵀ(JJᵀ + εI)⁻¹.

    ε = rcond·λ_max(JJᵀ) (plus the dtype's smallest normal number, so that J = 0 is finite):
    at a regular point this changes P by O(rcond·cond(JJᵀ)); near a singular point (J losing
    rank, e.g. diagonal-network coordinates → 0) it keeps every quantity bounded,
    ‖J⁺_ε‖ ≤ 1/(2√ε).

    `dense=True`: J (n × d), then JJᵀ (n × n) eigendecomposed. J comes from `jacobian` when it is
    given (for the built-in MSE residuals r = vec(f(x_i) − y_i): per-example Jacobians ∂f(x_i)/∂θ,
    `jax.vmap` over examples of `jax.jacrev`, which costs about one backward pass per output over
    the whole batch), else from n vector-Jacobian products of r (`jax.vmap` of the VJP: each a
    backward pass through the whole batch, so O(n) times more work when r is per example).
    `dense=False`: JJᵀ + εI as a `lineax.FunctionLinearOperator` (a JVP after a VJP), solved by
    `lineax.CG`; λ_max from a few power iterations.
    """

    residuals: Callable
    jacobian: Callable | None
    n: int = eqx.field(static=True)
    dense: bool = eqx.field(static=True)
    rcond: jax.Array
    cg_rtol: jax.Array
    cg_max_steps: int = eqx.field(static=True)

    def residual(self, flat):
        return jnp.linalg.norm(self.residuals(flat))

    def correction(self, flat, u, gain):
        if self.dense:
            if self.jacobian is not None:
                r, jac = self.residuals(flat), self.jacobian(flat)
            else:
                r, vjp = jax.vjp(self.residuals, flat)
                (jac,) = jax.vmap(vjp)(jnp.eye(self.n, dtype=r.dtype))  # rows ∇r_i: n × d
            evals, evecs = jnp.linalg.eigh(jac @ jac.T)
            eps = self.rcond * jnp.max(evals) + jnp.finfo(r.dtype).tiny
            rhs = jac @ u - gain * r
            z = evecs @ ((evecs.T @ rhs) / (jnp.maximum(evals, 0.0) + eps))
            return jnp.linalg.norm(r), jac.T @ z
        r, jvp = jax.linearize(self.residuals, flat)
        vjp = jax.linear_transpose(jvp, flat)

        def gram(v):
            return jvp(vjp(v)[0])

        v = jnp.ones_like(r) / jnp.sqrt(jnp.asarray(self.n, r.dtype))
        for _ in range(_POWER_ITERS):  # a short fixed loop: λ_max only sets the Tikhonov scale
            w = gram(v)
            v = w / jnp.maximum(jnp.linalg.norm(w), jnp.finfo(r.dtype).tiny)
        eps = self.rcond * jnp.vdot(v, gram(v)) + jnp.finfo(r.dtype).tiny
        op = lx.FunctionLinearOperator(
            lambda x: gram(x) + eps * x, jax.ShapeDtypeStruct(r.shape, r.dtype), tags=lx.positive_semidefinite_tag
        )
        rhs = jvp(u) - gain * r
        scale = jnp.max(jnp.abs(rhs))
        solver = lx.CG(rtol=self.cg_rtol, atol=self.cg_rtol * scale, max_steps=self.cg_max_steps)
        # throw=False: an unconverged CG still returns its best iterate, and the pull-back
        # corrects what it leaves; a NaN would surface in the manifold residual instead.
        z = lx.linear_solve(op, rhs, solver, throw=False).value
        return jnp.linalg.norm(r), vjp(z)[0]


class CriticalManifold(AbstractManifold):
    r"""M = a Morse–Bott set of critical points; P = projection onto Ker ∇²F(θ).

    Eigenvalues μ of ∇²F(θ) with μ ≤ κ = kernel_rtol·max|μ| count as kernel (negative ones too,
    off M), the others span the normal space: P = I − Σ_{μ_i > κ} v_i v_iᵀ, and the pull-back is
    (∇²F)⁺_κ ∇F = Σ_{μ_i > κ} v_i v_iᵀ∇F / μ_i.

    `dense=True`: the d × d Hessian (`jax.hessian`) and `jnp.linalg.eigh`. `dense=False`: Lanczos
    with full reorthogonalisation on Hessian-vector products, `krylov_dim` steps from the vector
    being projected (and again from ∇F), Ritz pairs in place of eigenpairs. This is exact once
    `krylov_dim` exceeds the number of distinct non-kernel eigenvalues the vector excites (at
    most rank ∇²F, ≤ the number of residuals on a zero-loss manifold).
    """

    loss: Callable
    dense: bool = eqx.field(static=True)
    kernel_rtol: jax.Array
    krylov_dim: int = eqx.field(static=True)

    def residual(self, flat):
        return jnp.linalg.norm(jax.grad(self.loss)(flat))

    def correction(self, flat, u, gain):
        if self.dense:
            grad_fn = jax.grad(self.loss)
            g = grad_fn(flat)
            hess = jax.jacfwd(grad_fn)(flat)
            evals, evecs = jnp.linalg.eigh(0.5 * (hess + hess.T))
            keep = evals > self.kernel_rtol * jnp.max(jnp.abs(evals))
            inv = jnp.where(keep, 1.0 / jnp.where(keep, evals, 1.0), 0.0)
            coeffs = jnp.where(keep, evecs.T @ u, 0.0) - gain * inv * (evecs.T @ g)
            return jnp.linalg.norm(g), evecs @ coeffs
        g, hvp = jax.linearize(jax.grad(self.loss), flat)
        ritz_u, vecs_u, first_u = _lanczos(hvp, u, self.krylov_dim)
        ritz_g, vecs_g, first_g = _lanczos(hvp, g, self.krylov_dim)
        cut = self.kernel_rtol * jnp.maximum(jnp.max(jnp.abs(ritz_u)), jnp.max(jnp.abs(ritz_g)))
        keep_u, keep_g = ritz_u > cut, ritz_g > cut
        inv_g = jnp.where(keep_g, 1.0 / jnp.where(keep_g, ritz_g, 1.0), 0.0)
        w = vecs_u @ jnp.where(keep_u, first_u, 0.0) - gain * (vecs_g @ (inv_g * first_g))
        return jnp.linalg.norm(g), w


def _lanczos(matvec, b, m: int):
    """Rayleigh–Ritz on the Krylov space K_m(H, b): returns (Ritz values ρ (m,), Ritz vectors
    Y (d × m), Yᵀb (m,)). Full reorthogonalisation (classical Gram–Schmidt, twice)."""
    dtype = b.dtype
    nb = jnp.linalg.norm(b)
    q0 = b / jnp.where(nb > 0, nb, 1.0)
    basis = jnp.zeros((m + 1, b.size), dtype).at[0].set(q0)
    tiny = jnp.finfo(dtype).tiny

    def body(j, carry):
        basis, alpha, beta = carry
        q = basis[j]
        w = matvec(q)
        a = jnp.vdot(q, w)
        # Removing every stored direction (rows after j are still zero) includes the three-term
        # recurrence's α q_j and β q_{j−1}; the second pass restores orthogonality lost to rounding.
        w = w - basis.T @ (basis @ w)
        w = w - basis.T @ (basis @ w)
        nw = jnp.linalg.norm(w)
        # An invariant subspace leaves w = 0 exactly only in exact arithmetic; a zero row then
        # adds zero Ritz values whose vectors carry nothing (they count as kernel).
        q_next = jnp.where(nw > tiny, w / jnp.where(nw > tiny, nw, 1.0), 0.0)
        return basis.at[j + 1].set(q_next), alpha.at[j].set(a), beta.at[j].set(nw)

    basis, alpha, beta = jax.lax.fori_loop(0, m, body, (basis, jnp.zeros((m,), dtype), jnp.zeros((m,), dtype)))
    tri = jnp.diag(alpha) + jnp.diag(beta[:-1], 1) + jnp.diag(beta[:-1], -1)
    ritz, s = jnp.linalg.eigh(tri)
    vecs = basis[:m].T @ s
    return ritz, vecs, nb * s[0]


def build_manifold(
    problem: Problem,
    static,
    unravel,
    *,
    manifold: str,
    path: str,
    rcond,
    kernel_rtol,
    krylov_dim: int,
    cg_rtol,
    cg_max_steps: int | None,
) -> AbstractManifold:
    """The geometry of `manifold` for `problem`, as functions of the flat parameter vector.

    `cg_max_steps=None`: 10·N conjugate-gradient iterations for N residuals (zero_loss, matrix-free).
    """
    if manifold == "zero_loss":

        def residuals(flat):
            return problem.residuals_fn(eqx.combine(unravel(flat), static), problem.train)

        jacobian = None
        if isinstance(problem.loss, MSE):

            def jacobian(flat):
                # Row i·k + c is ∂f_c(x_i)/∂θ, the order of mse_residuals' flattening.
                def outputs(flat_, x):
                    return jnp.reshape(eqx.combine(unravel(flat_), static)(x), (-1,))

                per_example = jax.vmap(jax.jacrev(outputs), in_axes=(None, 0))(flat, problem.train["x"])
                return jnp.reshape(per_example, (-1, flat.size))

        n = eqx.filter_eval_shape(problem.residuals_fn, problem.model, problem.train).shape[0]
        cg_max_steps = 10 * n if cg_max_steps is None else cg_max_steps
        return ZeroLossManifold(residuals, jacobian, n, path == "dense", rcond, cg_rtol, cg_max_steps)

    def loss(flat):
        return problem.loss(eqx.combine(unravel(flat), static), problem.train)

    return CriticalManifold(loss, path == "dense", kernel_rtol, krylov_dim)


def flat_decay_mask(problem: Problem, params) -> jax.Array:
    """The weight-decay mask m as a flat 0/1 vector aligned with `ravel_pytree(params)`."""
    ones = jax.tree.map(jnp.ones_like, params)
    return jax.flatten_util.ravel_pytree(problem.decayed(ones))[0]
