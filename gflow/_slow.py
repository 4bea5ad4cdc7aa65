r"""The slow phase of gradient flow with weight decay (Boursier et al. 2025; papers.md §2.2–§2.4, §3.1).

For small λ the flow dθ/dt = −∇F(θ) − λ m⊙θ has two clocks. In fast time it follows plain
gradient flow onto a manifold M of minimisers, landing at the flow limit Φ(θ0) = lim_{t→∞} of
the λ = 0 flow. In slow time τ = λt it then drifts along M, minimising ½‖m⊙θ‖²:

$$\frac{d\theta}{d\tau} = -P_{T_\theta M}\,(m\odot\theta), \qquad \theta(0) = \Phi(\theta_0),$$

and θ^λ(τ/λ) → θ°(τ) uniformly on [ε, T] as λ → 0, with error O(λ) (papers.md A2). This module
computes Φ (`flow_limit`), integrates θ° (`slow_flow`), and measures the convergence
(`compare`; its figure is `gflow.plot.plot_slow_flow`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import diffrax
import equinox as eqx
import jax
import jax.flatten_util
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np

from ._flow import observables, tree_all_finite, tree_norm, vector_field
from ._manifold import (
    LINEAR_SOLVERS,
    MANIFOLDS,
    build_manifold,
    check_manifold,
    choose_linear_solver,
    default_cg_rtol,
    default_kernel_rtol,
    default_rcond,
    flat_decay_mask,
)
from ._problem import Problem, ProblemError, _is_concrete
from ._simulate import (
    SOLVERS,
    _controller,
    _param_dtype,
    _scalar,
    choose_solver,
    log_times,
    make_solver,
    save_spec,
)
from ._solution import RESULTS, Trajectory

__all__ = [
    "FLOW_NOT_CONVERGED",
    "LEFT_MANIFOLD",
    "LINEAR_SOLVERS",
    "MANIFOLDS",
    "FlowLimit",
    "compare",
    "flow_limit",
    "project_tangent",
    "slow_flow",
]


#: `flow_limit` reached t_max with ‖∇F‖ still above tol.
FLOW_NOT_CONVERGED = RESULTS.flow_not_converged
#: `slow_flow` stopped because the state left the manifold (residual > manifold_tol), stopped
#: being finite, or its step size collapsed: a singular point the flow cannot pass, or a start
#: the retraction could not bring onto M.
LEFT_MANIFOLD = RESULTS.left_manifold

_SLOW_SOLVERS = {"tsit5": (diffrax.Tsit5, 6), "dopri5": (diffrax.Dopri5, 6), "dopri8": (diffrax.Dopri8, None)}

#: Gain c of the pull-back (slow-time rate at which a residual decays back to the manifold).
DEFAULT_GAIN = 10.0
#: Gauss–Newton (or Newton) steps at most in the retraction of the start onto the manifold.
MAX_RETRACTION_STEPS = 20
#: Smallest slow-time step, relative to min(1, τ1). The slow flow is smooth with rates O(1) and
#: c on a regular manifold; a step size collapsing below this means a singular point (a cusp,
#: a crossing) that the flow cannot pass, and the run stops with `LEFT_MANIFOLD`.
MIN_STEP = 1e-9


def _default_tols(dtype) -> tuple[float, float]:
    is64 = jnp.finfo(dtype).bits >= 64
    return (1e-10, 1e-12) if is64 else (1e-5, 1e-7)


def _default_manifold_tol(dtype) -> float:
    return 1e-8 if jnp.finfo(dtype).bits >= 64 else 1e-3


# ---------------------------------------------------------------------------------------------
# Φ(θ0): the limit of the λ = 0 flow
# ---------------------------------------------------------------------------------------------


class FlowLimit(eqx.Module):
    r"""The flow limit Φ(θ0) = lim_{t→∞} θ^GF(t) of dθ/dt = −∇F(θ), as reached by `flow_limit`.

    **Attributes:**

    - `model`: the model at the last time reached: Φ(θ0) up to ‖∇F‖ ≤ `tol` when `ok`.
    - `t`: the ODE time at which ‖∇F‖ first fell below `tol` (or the last time reached).
    - `grad_norm`: ‖∇F‖ at `model`.
    - `result`: a `gflow.RESULTS` code: `successful`; `FLOW_NOT_CONVERGED` (t_max reached first);
      `diverged` (‖θ‖ above the divergence bound or non-finite); `max_steps_reached`.
    - `stats`: `num_steps`, `num_accepted_steps`, `num_rejected_steps`, `max_steps`.
    - `solver`: the integrator's name.
    """

    model: object
    t: jax.Array
    grad_norm: jax.Array
    result: RESULTS
    stats: dict
    solver: str = eqx.field(static=True)

    @property
    def ok(self) -> jax.Array:
        return self.result == RESULTS.successful

    @property
    def message(self) -> str:
        if np.ndim(self.result._value) != 0:
            raise ValueError("this FlowLimit is batched; index one member first")
        return RESULTS[self.result] or "successful"


_LIMIT_OPTIONS = frozenset({"tol", "t_max", "solver", "rtol", "atol", "max_steps", "divergence_norm"})


def flow_limit(
    problem: Problem,
    *,
    tol=None,
    t_max=1e4,
    solver: str = "auto",
    rtol=None,
    atol=None,
    max_steps: int = 200_000,
    divergence_norm=None,
) -> FlowLimit:
    r"""Φ(θ0): integrate the unregularised flow dθ/dt = −∇F(θ) until ‖∇F(θ)‖ < `tol`.

    This is where the fast phase of the flow with weight decay lands as λ → 0 (papers.md §2.1:
    the "projection" of θ0 onto the critical set). The solve stops at the first accepted step
    with ‖∇F‖ < `tol` (a Diffrax steady-state event).

    **Arguments:**

    - `problem`: a `gflow.Problem`; its model holds θ0.
    - `tol`: gradient-norm threshold (default 1e-10 in float64, 1e-5 in float32). It must sit
      above what the integrator resolves, about sharpness × `atol`: near the limit an explicit
      solver keeps ‖∇F‖ at that level.
    - `t_max`: give up at this ODE time: the result is then `FLOW_NOT_CONVERGED` (no exception),
      with the state reached. Degenerate minima (polynomial convergence) and minimisers at
      infinity (separable classification) end this way.
    - `solver`: as in `gflow.simulate` (`"auto"` uses the horizon `t_max`).
    - `rtol`, `atol`: step-size tolerances (default 1e-10/1e-12 in float64, 1e-5/1e-7 in float32:
      tighter than `gflow.simulate`'s, since Φ(θ0) is a starting point for what follows).
    - `max_steps`, `divergence_norm`: as in `gflow.simulate`.

    **Returns:** a `FlowLimit`.
    """
    if not isinstance(problem, Problem):
        raise ProblemError(f"flow_limit needs a gflow.Problem, got {type(problem).__name__}")
    if not isinstance(solver, str) or solver not in (*SOLVERS, "auto"):
        raise ProblemError(f"unknown solver {solver!r}; choose one of {', '.join((*SOLVERS, 'auto'))}")
    if not isinstance(max_steps, int) or max_steps < 1:
        raise ProblemError(f"max_steps must be a positive int, got {max_steps!r}")
    dtype = _param_dtype(problem)
    is64 = jnp.finfo(dtype).bits >= 64
    tol = _scalar("tol", (1e-10 if is64 else 1e-5) if tol is None else tol, dtype)
    t_max = _scalar("t_max", t_max, dtype)
    if _is_concrete(tol) and float(tol) <= 0:
        raise ProblemError(f"tol must be > 0, got {float(tol)}")
    if _is_concrete(t_max) and float(t_max) <= 0:
        raise ProblemError(f"t_max must be > 0, got {float(t_max)}")
    rtol_default, atol_default = _default_tols(dtype)
    rtol = rtol_default if rtol is None else rtol
    atol = atol_default if atol is None else atol
    if solver == "auto":
        if not _is_concrete(t_max):
            raise ProblemError("solver='auto' needs a concrete t_max; name a solver inside jit/vmap")
        # The flow-limit solve keeps the smooth rule: its own solvers have no kink-robust path.
        # The fixed-point search keeps its measured rule (ROS34PW2 when stiff); deciding RKC vs
        # ROS34PW2 would trace the loss on every call, which its no-retrace promise forbids.
        solver, _ = choose_solver(problem, 0.0, float(t_max), detect_kinks=False, matrix_free_rkc=False)
    if divergence_norm is None:
        divergence_norm = 1e8 * (1.0 + tree_norm(problem.params))
    return _flow_limit(
        problem,
        tol,
        t_max,
        jnp.asarray(rtol, dtype),
        jnp.asarray(atol, dtype),
        jnp.asarray(divergence_norm, dtype),
        solver=solver,
        max_steps=max_steps,
    )


@eqx.filter_jit
def _flow_limit(problem, tol, t_max, rtol, atol, divergence_norm, *, solver, max_steps):
    params, static = problem.split()
    zero = jnp.zeros((), t_max.dtype)

    def field(t, y, args):
        del t, args
        return vector_field(y, static, problem, zero, False)

    def diverging(t, y, args, **kwargs):
        del t, args, kwargs
        return jnp.logical_not(tree_all_finite(y)) | (tree_norm(y) > divergence_norm)

    # With λ = 0 the vector field is −∇F, so the steady-state test ‖f(θ)‖ < atol is ‖∇F‖ < tol.
    converged = diffrax.steady_state_event(rtol=0.0, atol=tol, norm=tree_norm)
    # Initial step as in `gflow.simulate`: the time for θ to move by 0.1% of (1 + ‖θ0‖).
    speed = tree_norm(field(zero, params, None))
    dt0 = jnp.minimum(t_max, 1e-3 * (1.0 + tree_norm(params)) / jnp.maximum(speed, jnp.finfo(t_max.dtype).tiny))
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(field),
        make_solver(solver, problem, zero, False, rtol, atol),
        t0=zero,
        t1=t_max,
        dt0=dt0,
        y0=params,
        saveat=diffrax.SaveAt(t1=True),
        stepsize_controller=_controller(solver, rtol, atol),
        event=diffrax.Event((converged, diverging)),
        max_steps=max_steps,
        throw=False,
    )
    final = jtu.tree_map(lambda x: x[0], sol.ys)
    hit_tol, blew_up = sol.event_mask
    result = RESULTS.promote(sol.result)
    result = RESULTS.where(result == RESULTS.successful, FLOW_NOT_CONVERGED, result)
    result = RESULTS.where(blew_up, RESULTS.diverged, result)
    result = RESULTS.where(hit_tol, RESULTS.successful, result)
    grad = jax.grad(lambda p: problem.loss(eqx.combine(p, static), problem.train))(final)
    stats = {k: sol.stats[k] for k in ("num_steps", "num_accepted_steps", "num_rejected_steps")}
    stats["max_steps"] = jnp.asarray(max_steps)
    return FlowLimit(
        model=eqx.combine(final, static),
        t=sol.ts[0],
        grad_norm=tree_norm(grad),
        result=result,
        stats=stats,
        solver=solver,
    )


# ---------------------------------------------------------------------------------------------
# The slow flow
# ---------------------------------------------------------------------------------------------


def _check_start(problem: Problem, start, what: str = "start must be None, a FlowLimit, or a model"):
    params = problem.params
    try:
        given = problem.partition(start)[0]
    except ProblemError:
        given = None
    if (
        given is None
        or jtu.tree_structure(given) != jtu.tree_structure(params)
        or any(a.shape != b.shape for a, b in zip(jtu.tree_leaves(given), jtu.tree_leaves(params), strict=True))
    ):
        raise ProblemError(
            f"{what} with the structure and shapes of problem.model "
            "(e.g. eqx.tree_at(lambda m: m.w, problem.model, new_w))"
        )
    return jtu.tree_map(lambda a, b: jnp.asarray(a, b.dtype), given, params)


def slow_flow(
    problem: Problem,
    tau1,
    *,
    start=None,
    manifold: str = "zero_loss",
    saveat=None,
    solver: str = "tsit5",
    rtol=None,
    atol=None,
    max_steps: int = 100_000,
    save_params: bool = False,
    linear_solver: str = "auto",
    gain=DEFAULT_GAIN,
    rcond=None,
    kernel_rtol=None,
    krylov_dim: int | None = None,
    manifold_tol=None,
    cg_max_steps: int | None = None,
    limit_options: dict | None = None,
) -> Trajectory:
    r"""Integrate the Riemannian slow flow on the manifold of minimisers, in slow time τ = λt.

    $$\frac{d\theta}{d\tau} = -P(\theta)\,(m\odot\theta) \;-\; c\,N(\theta), \qquad
      \theta(0) = \Phi(\theta_0),$$

    the λ → 0 limit of θ^λ(τ/λ) for dθ/dt = −∇F − λ m⊙θ (Boursier et al., Eq. 6 and Prop. 2).
    P(θ) is the orthogonal projection onto the tangent space of M and m the weight-decay mask, so
    the flow is the Riemannian gradient flow of ½‖m⊙θ‖² on M; its limits are KKT points of
    min_{θ∈M} ‖m⊙θ‖² (the minimum-norm interpolator X⁺y for linear regression, the minimum-ℓ1
    interpolator for β = u⊙v, ‖U‖²_F + ‖V‖²_F = 2‖UVᵀ‖_* for factorisations).

    The second term is a stabilising pull-back that vanishes on M (the exact projected field
    drifts off M at second order, and the integrator's errors add up): c·N(θ) with gain c
    (`gain`, default 10) and N the Gauss–Newton/Newton step to M. Its exact effect on the
    residual is d r/dτ = −c r, so integration errors decay at rate c instead of accumulating.

    **Manifolds** (`manifold`):

    - `"zero_loss"` (needs a residual problem: `loss="mse"` or `residuals=`): M = {r(θ) = 0},
      J = ∂r/∂θ (n × d), P = I − J⁺J, N = J⁺r, with J⁺ = Jᵀ(JJᵀ + εI)⁻¹ and
      ε = `rcond`·λ_max(JJᵀ) (default rcond 1e-12 in float64). Computed from Jacobian-vector
      products: P u = u − Jᵀz with (JJᵀ + εI) z = J u; no d × d matrix is formed. Near a singular
      point (J losing rank, e.g. diagonal-network coordinates → 0) the Tikhonov term keeps the
      field bounded. Manifold residual: ‖r(θ)‖ (the raw residual vector, not the loss).
    - `"critical"` (any loss, e.g. cross-entropy on non-separable data, or a residual problem
      with F > 0 on its minimisers): P = projection onto Ker ∇²F(θ), N = (∇²F)⁺∇F, from
      Hessian-vector products. Eigenvalues ≤ `kernel_rtol`·max|eigenvalue| (default 1e-8 in
      float64) count as kernel. Valid where the critical set is Morse–Bott (papers.md §2.1,
      Assumption 2: a smooth manifold with rank ∇²F = d − dim M on it); there the two manifolds
      agree whenever F = 0 on M. Manifold residual: ‖∇F(θ)‖.

    **Linear algebra** (`linear_solver`): `"dense"` (zero_loss: J by `jax.vmap` of VJPs and an
    eigendecomposition of the n × n JJᵀ; critical: the d × d Hessian, `eigh`), `"matrix_free"`
    (zero_loss: `lineax.CG` on JJᵀ + εI as a PSD `FunctionLinearOperator`; critical: Lanczos with
    full reorthogonalisation, `krylov_dim` steps) or `"auto"`: dense up to 2000 residuals and
    10⁷ Jacobian entries (zero_loss) or d ≤ 300 (critical), matrix-free beyond
    (`gflow._manifold.choose_linear_solver`).

    **Main arguments:**

    - `problem`: a `gflow.Problem`.
    - `tau1`: final slow time τ1 > 0 (traced: new values do not recompile).
    - `start`: `None` (Φ(θ0) by `flow_limit(problem, **limit_options)`), a `FlowLimit`, or a
      model shaped like `problem.model`. The start is first retracted onto M by at most 20
      Gauss–Newton (zero_loss) or Newton (critical) steps with the same pseudo-inverse.
    - `manifold`: `"zero_loss"` or `"critical"` (above).
    - `saveat`: `None` (200 slow times: 0 and log-spaced from min(1e-2, τ1/1000) to τ1), an
      int (that many), or an increasing array of slow times in [0, τ1].
    - `save_params`: also return θ at every save time (`Trajectory.params`, for `compare`).

    **Other arguments:**

    - `solver`: `"tsit5"` (default), `"dopri5"` or `"dopri8"`: explicit, since the slow flow
      has rates O(1) and c along and across M.
    - `rtol`, `atol`: step-size tolerances (default 1e-10/1e-12 in float64, 1e-5/1e-7 in float32).
    - `max_steps`: step budget (`RESULTS.max_steps_reached` when spent).
    - `gain`: c above. `rcond`, `kernel_rtol`: the cut-offs above.
    - `krylov_dim`: Lanczos steps (critical, matrix-free; default min(d, 128)); it must exceed
      the number of distinct non-kernel Hessian eigenvalues, else the projection is wrong and the
      manifold residual grows until the run stops.
    - `cg_max_steps`: CG iteration cap (zero_loss, matrix-free; default 10·n).
    - `manifold_tol`: stop with `LEFT_MANIFOLD` as soon as the manifold residual exceeds this
      (or θ is not finite); default 1e-8 in float64, 1e-3 in float32.
    - `limit_options`: keyword arguments for `flow_limit` when `start=None` (its rtol/atol
      default to this call's).

    **Returns:** a `gflow.Trajectory` with `time="slow"` (`ts` are slow times τ), `lam` NaN (the
    slow flow has no λ; `traj.t` is NaN too), `solver` e.g. `"slow_flow/tsit5 (zero_loss, dense)"`.
    Metrics are those of `gflow.simulate` evaluated with λ = 0 (so `objective` equals
    `train_loss`, F; `norm` = ‖m⊙θ‖ is what the slow flow decreases) plus `manifold_residual`.
    `stats` adds `start_residual` (before the retraction), `retraction_steps` and, when Φ was
    computed here, `flow_limit_t`, `flow_limit_grad_norm`, `flow_limit_steps`. Never raises
    from inside the solve: a failed flow limit passes its code on (the slow flow still runs
    from where it got), leaving the manifold gives `LEFT_MANIFOLD` with `final` the first state
    off it and NaN metrics after `t_final`.
    """
    if not isinstance(problem, Problem):
        raise ProblemError(f"slow_flow needs a gflow.Problem, got {type(problem).__name__}")
    check_manifold(problem, manifold)
    if not isinstance(solver, str) or solver not in _SLOW_SOLVERS:
        raise ProblemError(f"unknown slow-flow solver {solver!r}; choose one of {', '.join(_SLOW_SOLVERS)}")
    path = choose_linear_solver(problem, manifold, linear_solver)
    if not isinstance(max_steps, int) or max_steps < 1:
        raise ProblemError(f"max_steps must be a positive int, got {max_steps!r}")
    dtype = _param_dtype(problem)
    tau1 = _scalar("tau1", tau1, dtype)
    if _is_concrete(tau1) and float(tau1) <= 0:
        raise ProblemError(f"tau1 must be > 0, got {float(tau1)}")
    gain = _scalar("gain", gain, dtype)
    if _is_concrete(gain) and float(gain) < 0:
        raise ProblemError(f"gain must be >= 0, got {float(gain)}")
    d = sum(int(x.size) for x in jtu.tree_leaves(problem.params))
    if krylov_dim is None:
        krylov_dim = min(d, 128)
    if not isinstance(krylov_dim, int) or krylov_dim < 1:
        raise ProblemError(f"krylov_dim must be a positive int, got {krylov_dim!r}")
    krylov_dim = min(krylov_dim, d)
    if cg_max_steps is not None and (not isinstance(cg_max_steps, int) or cg_max_steps < 1):
        raise ProblemError(f"cg_max_steps must be a positive int, got {cg_max_steps!r}")
    num_saves, save_ts = save_spec(saveat, dtype, tau1, "tau1")

    rtol_default, atol_default = _default_tols(dtype)
    rtol = rtol_default if rtol is None else rtol
    atol = atol_default if atol is None else atol
    rcond = _scalar("rcond", default_rcond(dtype) if rcond is None else rcond, dtype)
    kernel_rtol = _scalar("kernel_rtol", default_kernel_rtol(dtype) if kernel_rtol is None else kernel_rtol, dtype)
    if manifold_tol is None:
        manifold_tol = _default_manifold_tol(dtype)
    manifold_tol = _scalar("manifold_tol", manifold_tol, dtype)

    stats_extra = {}
    if start is None:
        if limit_options is not None and not isinstance(limit_options, dict):
            raise ProblemError(f"limit_options must be a dict of flow_limit arguments, got {limit_options!r}")
        unknown = sorted(set(limit_options or {}) - _LIMIT_OPTIONS)
        if unknown:
            raise ProblemError(
                f"unknown limit_options {', '.join(map(repr, unknown))}; "
                f"flow_limit takes {', '.join(sorted(_LIMIT_OPTIONS))}"
            )
        options = {"rtol": rtol, "atol": atol, **(limit_options or {})}
        start = flow_limit(problem, **options)
        stats_extra = {
            "flow_limit_t": start.t,
            "flow_limit_grad_norm": start.grad_norm,
            "flow_limit_steps": start.stats["num_steps"],
        }
    elif limit_options is not None:
        raise ProblemError("limit_options apply only with start=None (Φ(θ0) computed here)")
    if isinstance(start, FlowLimit):
        limit_result = start.result
        start = start.model
    else:
        limit_result = RESULTS.successful
    start_params = _check_start(problem, start)

    traj = _slow_flow(
        problem,
        start_params,
        tau1,
        save_ts,
        jnp.asarray(rtol, dtype),
        jnp.asarray(atol, dtype),
        gain,
        rcond,
        kernel_rtol,
        manifold_tol,
        jnp.asarray(default_cg_rtol(dtype), dtype),
        limit_result,
        manifold=manifold,
        path=path,
        krylov_dim=krylov_dim,
        cg_max_steps=cg_max_steps,
        solver=solver,
        num_saves=num_saves,
        max_steps=max_steps,
        save_params=bool(save_params),
    )
    if stats_extra:
        traj = eqx.tree_at(lambda tr: tr.stats, traj, {**traj.stats, **stats_extra})
    return traj


@eqx.filter_jit
def _slow_flow(
    problem,
    start_params,
    tau1,
    save_ts,
    rtol,
    atol,
    gain,
    rcond,
    kernel_rtol,
    manifold_tol,
    cg_rtol,
    limit_result,
    *,
    manifold,
    path,
    krylov_dim,
    cg_max_steps,
    solver,
    num_saves,
    max_steps,
    save_params,
):
    _, static = problem.split()
    flat0, unravel = jax.flatten_util.ravel_pytree(start_params)
    dtype = flat0.dtype
    geometry = build_manifold(
        problem,
        static,
        unravel,
        manifold=manifold,
        path=path,
        rcond=rcond,
        kernel_rtol=kernel_rtol,
        krylov_dim=krylov_dim,
        cg_rtol=cg_rtol,
        cg_max_steps=cg_max_steps,
    )
    mask = flat_decay_mask(problem, start_params).astype(dtype)
    zero = jnp.zeros((), dtype)
    if save_ts is None:
        save_ts = log_times(tau1, num_saves)

    # Retraction: Gauss–Newton (Newton) steps θ ← θ − N(θ) with the field's own regularised
    # pseudo-inverse (so it works on every linear-algebra path), kept only while they help.
    start_residual = geometry.residual(flat0)
    target = 1e-3 * manifold_tol

    def retract_cond(carry):
        it, _, res, improving = carry
        return improving & (it < MAX_RETRACTION_STEPS) & (res > target)

    def retract_body(carry):
        it, x, res, _ = carry
        _, step = geometry.correction(x, jnp.zeros_like(x), jnp.ones((), dtype))
        x_new = x + step
        res_new = geometry.residual(x_new)
        better = res_new < res  # False for NaN
        return it + 1, jnp.where(better, x_new, x), jnp.where(better, res_new, res), better

    retraction_steps, y0, _, _ = jax.lax.while_loop(
        retract_cond, retract_body, (jnp.asarray(0), flat0, start_residual, jnp.asarray(True))
    )

    def field(t, y, args):
        del t, args
        u = mask * y
        _, w = geometry.correction(y, u, gain)
        return -u + w

    def observe(t, y, args):
        del t, args
        out = observables(unravel(y), static, problem, zero)
        out["manifold_residual"] = geometry.residual(y)
        return out

    def off_manifold(t, y, args, **kwargs):
        del t, args, kwargs
        return jnp.logical_not(jnp.all(jnp.isfinite(y)) & (geometry.residual(y) <= manifold_tol))

    subs = [diffrax.SubSaveAt(ts=save_ts, fn=observe), diffrax.SubSaveAt(t1=True)]
    if save_params:
        subs.append(diffrax.SubSaveAt(ts=save_ts, fn=lambda t, y, args: unravel(y)))
    solver_cls, evals_per_step = _SLOW_SOLVERS[solver]
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(field),
        solver_cls(),
        t0=zero,
        t1=tau1,
        dt0=None,
        y0=y0,
        saveat=diffrax.SaveAt(subs=subs),
        stepsize_controller=diffrax.PIDController(
            rtol=rtol, atol=atol, dtmin=MIN_STEP * jnp.minimum(1.0, tau1), force_dtmin=False
        ),
        event=diffrax.Event(off_manifold),
        max_steps=max_steps,
        throw=False,
    )
    saved_ts, final_ts = sol.ts[:2]
    observed, final_flat = sol.ys[:2]
    reached = jnp.isfinite(saved_ts)
    metrics = {k: jnp.where(reached, v, jnp.nan) for k, v in observed.items()}
    saved_params = None
    if save_params:
        saved_params = jtu.tree_map(
            lambda x: jnp.where(reached.reshape((-1,) + (1,) * (x.ndim - 1)), x, jnp.nan), sol.ys[2]
        )
    result = RESULTS.promote(sol.result)
    result = RESULTS.where(sol.event_mask | (result == RESULTS.dt_min_reached), LEFT_MANIFOLD, result)
    result = RESULTS.where(limit_result == RESULTS.successful, result, limit_result)
    stats = {
        "num_steps": sol.stats["num_steps"],
        "num_accepted_steps": sol.stats["num_accepted_steps"],
        "num_rejected_steps": sol.stats["num_rejected_steps"],
        "max_steps": jnp.asarray(max_steps),
        "start_residual": start_residual,
        "retraction_steps": retraction_steps,
    }
    if evals_per_step is not None:
        stats["num_vf_evals"] = 2 + evals_per_step * sol.stats["num_steps"]
    return Trajectory(
        ts=save_ts,
        metrics=metrics,
        final=eqx.combine(unravel(final_flat[0]), static),
        t_final=final_ts[0],
        stats=stats,
        result=result,
        lam=jnp.full((), jnp.nan, dtype),
        time="slow",
        solver=f"slow_flow/{solver} ({manifold}, {path})",
        params=saved_params,
    )


def project_tangent(
    problem: Problem,
    model=None,
    vector=None,
    *,
    manifold: str = "zero_loss",
    linear_solver: str = "auto",
    rcond=None,
    kernel_rtol=None,
    krylov_dim: int | None = None,
):
    r"""P(θ)v: the tangent projection `slow_flow` uses, at one point, for inspection and tests.

    **Arguments:**

    - `problem`: a `gflow.Problem`; `model`: the point θ (default `problem.model`).
    - `vector`: a pytree like the model's parameters (default m⊙θ, so the result is minus the
      slow-flow velocity without the pull-back).
    - `manifold`, `linear_solver`, `rcond`, `kernel_rtol`, `krylov_dim`: as in `slow_flow`.

    **Returns:** `(projected, residual)`: P(θ)v as a pytree like the parameters, and the
    manifold residual at θ.
    """
    if not isinstance(problem, Problem):
        raise ProblemError(f"project_tangent needs a gflow.Problem, got {type(problem).__name__}")
    check_manifold(problem, manifold)
    path = choose_linear_solver(problem, manifold, linear_solver)
    dtype = _param_dtype(problem)
    params = _check_start(problem, problem.model if model is None else model, "model must be a model")
    if vector is not None:
        vector = _check_start(problem, vector, "vector must be a pytree like the model")
    d = sum(int(x.size) for x in jtu.tree_leaves(params))
    krylov_dim = min(d, 128) if krylov_dim is None else min(int(krylov_dim), d)
    rcond = _scalar("rcond", default_rcond(dtype) if rcond is None else rcond, dtype)
    kernel_rtol = _scalar("kernel_rtol", default_kernel_rtol(dtype) if kernel_rtol is None else kernel_rtol, dtype)
    return _project_tangent(
        problem,
        params,
        vector,
        rcond,
        kernel_rtol,
        jnp.asarray(default_cg_rtol(dtype), dtype),
        manifold=manifold,
        path=path,
        krylov_dim=krylov_dim,
    )


@eqx.filter_jit
def _project_tangent(problem, params, vector, rcond, kernel_rtol, cg_rtol, *, manifold, path, krylov_dim):
    _, static = problem.split()
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    geometry = build_manifold(
        problem,
        static,
        unravel,
        manifold=manifold,
        path=path,
        rcond=rcond,
        kernel_rtol=kernel_rtol,
        krylov_dim=krylov_dim,
        cg_rtol=cg_rtol,
        cg_max_steps=None,
    )
    if vector is None:
        v = flat_decay_mask(problem, params).astype(flat.dtype) * flat
    else:
        v = jax.flatten_util.ravel_pytree(vector)[0]
    return unravel(geometry.tangent(flat, v)), geometry.residual(flat)


# ---------------------------------------------------------------------------------------------
# Full flow against slow flow
# ---------------------------------------------------------------------------------------------


def _flat_params(traj: Trajectory) -> np.ndarray:
    leaves = jtu.tree_leaves(traj.params)
    n = np.shape(traj.ts)[-1]
    return np.concatenate([np.asarray(x, float).reshape(n, -1) for x in leaves], axis=1)


def _members(full) -> list[Trajectory]:
    if isinstance(full, Trajectory):
        if np.ndim(full.ts) == 1:
            return [full]
        return [jtu.tree_map(lambda x, i=i: x[i], full) for i in range(np.shape(full.ts)[0])]
    if isinstance(full, Sequence) and full and all(isinstance(f, Trajectory) for f in full):
        return [m for f in full for m in _members(f)]
    raise ProblemError("full must be a Trajectory (from gflow.simulate(..., save_params=True)) or a sequence of them")


def _align(tau_src, values, tau_dst):
    """Values at `tau_dst`: exact where a source time matches (relative 1e-9), else linear in
    log τ between the neighbouring finite source times; NaN outside their range."""
    tau_src = np.asarray(tau_src, float)
    good = np.isfinite(tau_src) & np.all(np.isfinite(values), axis=1)
    tau_src, values = tau_src[good], values[good]
    out = np.full((tau_dst.size, values.shape[1]), np.nan)
    exact = np.zeros(tau_dst.size, bool)
    if tau_src.size == 0:
        return out, exact
    pos = tau_src > 0
    log_src = np.log(tau_src[pos])
    for i, tau in enumerate(tau_dst):
        j = np.argmin(np.abs(tau_src - tau))
        if abs(tau_src[j] - tau) <= 1e-9 * abs(tau):
            out[i], exact[i] = values[j], True
        elif tau > 0 and log_src.size >= 2 and log_src[0] <= math.log(tau) <= log_src[-1]:
            k = min(np.searchsorted(log_src, math.log(tau)), log_src.size - 1)
            k = max(k, 1)
            a = (math.log(tau) - log_src[k - 1]) / (log_src[k] - log_src[k - 1])
            out[i] = (1 - a) * values[pos][k - 1] + a * values[pos][k]
    return out, exact


def _fit_order(lams, dist):
    """Slope of log distance against log λ, per column of `dist` (lam × tau)."""
    lams = np.asarray(lams, float)
    order = np.full(dist.shape[1], np.nan)
    for i in range(dist.shape[1]):
        d = dist[:, i]
        ok = np.isfinite(d) & (d > 0)
        if ok.sum() >= 2:
            order[i] = np.polyfit(np.log(lams[ok]), np.log(d[ok]), 1)[0]
    return order


def compare(full, slow: Trajectory, *, at=None):
    r"""Distance between full flows θ^λ(τ/λ) and the slow flow θ°(τ) on the slow flow's τ grid.

    **Arguments:**

    - `full`: a `Trajectory` from `gflow.simulate(..., save_params=True)` (fast time), a batched
      one, or a sequence of them at several λ.
    - `slow`: a `Trajectory` from `slow_flow(..., save_params=True)`.
    - `at`: slow times at which to report the fitted order (nearest point of the slow grid).

    **Alignment.** The full flow is read at each slow time τ_i exactly where it was saved at
    t = τ_i/λ (up to relative 1e-9), so for convergence studies run it with
    `saveat=np.asarray(slow.ts) / lam`; elsewhere it is interpolated linearly in log τ between
    its neighbouring save times (error O((Δ log τ)²), fine for pictures, not for O(λ)
    distances; the `exact` variable says which). τ = 0 compares θ0 with Φ(θ0): the convergence
    is uniform only on [ε, T] (papers.md §2.2, Prop. 2).

    **Returns:** an `xarray.Dataset` over `tau` (the slow grid) with `distance`
    (‖θ^λ(τ/λ) − θ°(τ)‖ over all parameters), `exact`, and for every metric both record
    `full_<metric>` (the full flow on the slow grid, aligned as above), `slow_<metric>` and
    `<metric>_diff` (full − slow; the full flow's `objective` includes (λ/2)‖θ‖², the slow flow's
    does not). With several λ every variable gains a leading `lam` dimension, and `order` (per τ:
    the least-squares slope of log distance against log λ; 1 for O(λ) convergence) is added;
    with `at`, also `order_at` over `tau_at`.
    """
    import xarray as xr

    single = isinstance(full, Trajectory) and np.ndim(full.ts) == 1
    runs = _members(full)
    if not isinstance(slow, Trajectory) or slow.time != "slow" or slow.params is None:
        raise ProblemError("slow must be a Trajectory from slow_flow(..., save_params=True)")
    tau = np.asarray(slow.ts, float)
    slow_flat = _flat_params(slow)
    names = [k for k in slow.metrics if k != "manifold_residual"]
    lams, dists, exacts, diffs, fulls = [], [], [], {k: [] for k in names}, {k: [] for k in names}
    for run in runs:
        if run.time != "fast" or run.params is None:
            raise ProblemError("each full Trajectory must come from gflow.simulate(..., save_params=True) in fast time")
        flat = _flat_params(run)
        if flat.shape[1] != slow_flat.shape[1]:
            raise ProblemError(
                f"full and slow runs have different parameter counts ({flat.shape[1]} vs {slow_flat.shape[1]})"
            )
        lam = float(run.lam)
        run_tau = np.asarray(run.ts, float) * lam
        aligned, exact = _align(run_tau, flat, tau)
        lams.append(lam)
        dists.append(np.linalg.norm(aligned - slow_flat, axis=1))
        exacts.append(exact)
        for k in names:
            if k in run.metrics:
                m = np.asarray(run.metrics[k], float)[:, None]
                fulls[k].append(_align(run_tau, m, tau)[0][:, 0])
                diffs[k].append(fulls[k][-1] - np.asarray(slow.metrics[k], float))
    names = [k for k in names if len(diffs[k]) == len(runs)]
    attrs = {
        "slow_solver": slow.solver,
        "slow_result": slow.message,
        "convention": "tau = lam * t; distance over all parameters",
    }
    if single:
        data = {"distance": ("tau", dists[0]), "exact": ("tau", exacts[0])}
        data.update({f"{k}_diff": ("tau", diffs[k][0]) for k in names})
        data.update({f"full_{k}": ("tau", fulls[k][0]) for k in names})
        data.update({f"slow_{k}": ("tau", np.asarray(slow.metrics[k], float)) for k in names})
        return xr.Dataset(data, coords={"tau": tau}, attrs={**attrs, "lam": lams[0]})
    dist = np.stack(dists)
    data = {"distance": (("lam", "tau"), dist), "exact": (("lam", "tau"), np.stack(exacts))}
    data.update({f"{k}_diff": (("lam", "tau"), np.stack(diffs[k])) for k in names})
    data.update({f"full_{k}": (("lam", "tau"), np.stack(fulls[k])) for k in names})
    data.update({f"slow_{k}": ("tau", np.asarray(slow.metrics[k], float)) for k in names})
    order = _fit_order(lams, dist)
    data["order"] = ("tau", order)
    coords = {"lam": np.asarray(lams), "tau": tau}
    if at is not None:
        at = np.atleast_1d(np.asarray(at, float))
        idx = np.array([np.argmin(np.abs(tau - a)) for a in at])
        data["order_at"] = ("tau_at", order[idx])
        data["tau_at_grid"] = ("tau_at", tau[idx])
        coords["tau_at"] = at
    return xr.Dataset(data, coords=coords, attrs=attrs)
