"""`simulate`: integrate dθ/dt = −∇F(θ) − λ m⊙θ with Diffrax and record observables."""

from __future__ import annotations

import diffrax
import equinox as eqx
import jax
import jax.flatten_util
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np

from ._flow import observables, tree_all_finite, tree_norm, vector_field
from ._problem import Problem, ProblemError, _is_concrete
from ._rosenbrock import (
    COUNT_KEYS,
    CountingController,
    ExactJacobian,
    GaussNewton,
    Ros34PW2,
    gradient_equivalents,
    has_gauss_newton,
    num_outputs,
)
from ._solution import RESULTS, Trajectory

# Name -> (diffrax solver class, new vector-field evaluations per attempted step, or None when
# the count is not fixed: the implicit solvers' Newton iterations happen inside Diffrax, and the
# Rosenbrock-W solvers count their own work exactly, see `_rosenbrock.CountingController`).
# Every class builds with no arguments; `make_solver` gives the Rosenbrock ones the problem.
_SOLVERS: dict[str, tuple[type, int | None]] = {
    "tsit5": (diffrax.Tsit5, 6),
    "dopri5": (diffrax.Dopri5, 6),
    "kvaerno3": (diffrax.Kvaerno3, None),
    "kvaerno5": (diffrax.Kvaerno5, None),
    "ros34pw2": (Ros34PW2, None),
    "ros34pw2_krylov": (Ros34PW2, None),
}
SOLVER_NAMES = (*_SOLVERS, "auto")

# How each Rosenbrock-W name solves with its W-matrix: "auto" (`choose_w_matrix`) or "krylov"
# (always matrix-free conjugate gradients).
_W_MODES = {"ros34pw2": "auto", "ros34pw2_krylov": "krylov"}

# `solver="auto"`: explicit Tsit5 needs about stiffness/3 steps, where
# stiffness = (sharpness(θ0) + λ) × horizon; ROS34PW2 needs a number of steps that hardly
# depends on it (see benchmarks/README.md, "Long horizons"), so it wins once stiffness exceeds
# AUTO_STIFFNESS.
AUTO_STIFFNESS = 2e3
# Losses whose curvature vanishes with the loss: for cross-entropy and logistic losses
# ∇²F ≈ Jᵀ H_out J with H_out ~ the loss, so once the train set is fitted the sharpness falls
# to O(λ) on the slow manifold (there ‖∇F‖ = λ‖θ‖) and the flow is no longer stiff; the estimate
# at θ0 then overstates the stiffness of the whole horizon. Measured (benchmarks/README.md, "Long
# horizons"): on the cross-entropy MLP at λ = 1e-5 Tsit5 used 4.6× fewer gradient-equivalents
# than ROS34PW2; Lyu's sparse logistic classification took 86–90 Tsit5 steps against 322–334.
AUTO_EXPLICIT_LOSSES = ("cross_entropy", "logistic")
# Kept for callers that read it; ROS34PW2 forms no d × d matrix above AUTO_MAX_DENSE_PARAMS.
AUTO_MAX_DENSE_PARAMS = 500

# W-matrix choice for "ros34pw2" (`choose_w_matrix`): the Woodbury path costs N vector–Jacobian
# products, O(N²d) to form I + BD⁻¹Bᵀ and O(N³) to factor it per step, and holds N × d and N × N
# arrays, but it is exact and its cost does not depend on the conditioning; CG costs 2 products
# per iteration. Measured (benchmarks/README.md): Woodbury is ahead at N = 50 (diagonal net,
# d = 1000), level at N = 80 (matrix completion, d = 800), 10× behind at N = 649 (Musat's
# network, d = 2816: 0.1–0.4 s per step for the N × N factorisation vs 8–50 ms of CG).
# A dense d × d exact Jacobian is formed only for d ≤ AUTO_MAX_DENSE_PARAMS.
AUTO_MAX_WOODBURY_OUTPUTS = 128
AUTO_MAX_WOODBURY_WORK = 2e8  # N²·d

DEFAULT_NUM_SAVES = 200


def log_times(t1, n: int = DEFAULT_NUM_SAVES, t_min=None) -> jax.Array:
    """`0` followed by `n − 1` log-spaced times from `t_min` to `t1` (inclusive).

    The default `t_min` is `min(1e-2, t1·1e-3)`: early enough to resolve a fast phase of
    time scale ~1/sharpness in ODE time.
    """
    if n < 2:
        raise ProblemError(f"need at least 2 save times, got {n}")
    t1 = jnp.asarray(t1)
    if t_min is None:
        t_min = jnp.minimum(1e-2, t1 * 1e-3)
    t_min = jnp.asarray(t_min, t1.dtype)
    expo = jnp.linspace(0.0, 1.0, n - 1, dtype=t1.dtype)
    grid = t_min * (t1 / t_min) ** expo
    # Pin the last point exactly at t1 (pow can be off by an ulp, and diffrax needs ts <= t1).
    grid = grid.at[-1].set(t1)
    return jnp.concatenate([jnp.zeros((1,), t1.dtype), grid])


def count_params(model) -> int:
    return sum(int(np.prod(x.shape)) for x in jtu.tree_leaves(eqx.filter(model, eqx.is_inexact_array)))


def _param_dtype(problem: Problem):
    return jnp.result_type(*jtu.tree_leaves(problem.params))


def _scalar(name: str, value, dtype) -> jax.Array:
    arr = jnp.asarray(value)
    if arr.ndim != 0:
        raise ProblemError(
            f"{name} must be a scalar, got shape {arr.shape}; run one value per call (gflow.sweep is not there yet)"
        )
    if _is_concrete(arr) and not bool(jnp.isfinite(arr)):
        raise ProblemError(f"{name} must be finite, got {value}")
    return arr.astype(dtype)


def check_lam(lam) -> None:
    if _is_concrete(lam) and float(lam) < 0:
        raise ProblemError(f"weight decay lam must be >= 0, got {float(lam)}")


@eqx.filter_jit
def _top_hessian_eigenvalue(problem: Problem, iters: int = 30) -> jax.Array:
    """Largest |eigenvalue| of ∇²F(θ0) by power iteration on Hessian-vector products."""
    params, static = problem.split()
    flat, unravel = jax.flatten_util.ravel_pytree(params)

    def loss_flat(v):
        return problem.loss(eqx.combine(unravel(v), static), problem.train)

    def hvp(v):
        return jax.jvp(jax.grad(loss_flat), (flat,), (v,))[1]

    v0 = jnp.ones_like(flat) / jnp.sqrt(flat.size)

    def body(_, v):
        w = hvp(v)
        return w / jnp.maximum(jnp.linalg.norm(w), jnp.finfo(w.dtype).tiny)

    v = jax.lax.fori_loop(0, iters, body, v0)
    return jnp.abs(jnp.vdot(v, hvp(v)))


def choose_solver(problem: Problem, lam, horizon) -> tuple[str, float]:
    """The `solver="auto"` rule. Returns (name, estimated sharpness at θ0).

    `ros34pw2` (Rosenbrock-W, stiff, no d × d matrix beyond `AUTO_MAX_DENSE_PARAMS`) when the
    stiffness ratio (sharpness(θ0) + λ) × horizon exceeds `AUTO_STIFFNESS`; `tsit5` otherwise,
    and always `tsit5` for the losses of `AUTO_EXPLICIT_LOSSES` (cross-entropy, logistic), whose
    curvature collapses once the train set is fitted. `horizon` is the final ODE time t1 (τ1/λ in
    slow time).
    """
    sharp = float(_top_hessian_eigenvalue(problem))
    if problem.loss_name in AUTO_EXPLICIT_LOSSES:
        return "tsit5", sharp
    stiffness = (sharp + float(lam)) * float(horizon)
    if stiffness > AUTO_STIFFNESS:
        return "ros34pw2", sharp
    return "tsit5", sharp


def choose_w_matrix(problem: Problem, lam, slow: bool, mode: str = "auto"):
    """The W-matrix of a Rosenbrock-W solve (`_rosenbrock.AbstractWMatrix`).

    With a Gauss–Newton structure (residuals, cross-entropy, logistic), N outputs and d
    parameters: Woodbury when N ≤ `AUTO_MAX_WOODBURY_OUTPUTS` and N²d ≤ `AUTO_MAX_WOODBURY_WORK`;
    else the dense exact Jacobian when d ≤ `AUTO_MAX_DENSE_PARAMS` and d ≤ N; else matrix-free
    CG. Without one (a custom scalar loss): the dense exact Jacobian when d ≤
    `AUTO_MAX_DENSE_PARAMS`, else CG on Hessian–vector products. `mode="krylov"` always takes
    the matrix-free path.
    """
    d = count_params(problem.model)
    if has_gauss_newton(problem):
        n = num_outputs(problem)
        woodbury = mode == "auto" and n <= AUTO_MAX_WOODBURY_OUTPUTS and float(n) ** 2 * d <= AUTO_MAX_WOODBURY_WORK
        if mode == "auto" and not woodbury and d <= min(n, AUTO_MAX_DENSE_PARAMS):
            return ExactJacobian(dense=True)
        static = problem.split()[1]
        return GaussNewton(problem, static, lam, slow=slow, woodbury=woodbury)
    return ExactJacobian(dense=mode == "auto" and d <= AUTO_MAX_DENSE_PARAMS)


def make_solver(solver: str, problem: Problem, lam, slow: bool, rtol, atol):
    """The Diffrax solver object for a name of `_SOLVERS`, given the problem it will solve."""
    cls, _ = _SOLVERS[solver]
    if cls is Ros34PW2:
        return Ros34PW2(choose_w_matrix(problem, lam, slow, _W_MODES[solver]), rtol=rtol, atol=atol)
    return cls()


def check_options(time: str, solver: str, max_steps: int) -> None:
    if time not in ("fast", "slow"):
        raise ProblemError(f"time must be 'fast' (ODE time t) or 'slow' (tau = lam*t), got {time!r}")
    if not isinstance(solver, str) or solver not in SOLVER_NAMES:
        raise ProblemError(f"unknown solver {solver!r}; choose one of {', '.join(SOLVER_NAMES)}")
    if not isinstance(max_steps, int) or max_steps < 1:
        raise ProblemError(f"max_steps must be a positive int, got {max_steps!r}")


def default_tolerances(dtype, rtol, atol) -> tuple[jax.Array, jax.Array]:
    """(rtol, atol) as arrays of `dtype`: 1e-8/1e-10 in float64, 1e-5/1e-7 in float32 by default."""
    is64 = jnp.finfo(dtype).bits >= 64
    rtol = (1e-8 if is64 else 1e-5) if rtol is None else rtol
    atol = (1e-10 if is64 else 1e-7) if atol is None else atol
    return jnp.asarray(rtol, dtype), jnp.asarray(atol, dtype)


def save_spec(saveat, dtype, t1=None, name: str = "t1") -> tuple[int | None, jax.Array | None]:
    """`saveat` as (number of log-spaced save times, None) or (None, explicit times)."""
    if saveat is None:
        return DEFAULT_NUM_SAVES, None
    if isinstance(saveat, int):
        if saveat < 2:
            raise ProblemError(f"saveat as an int is the number of save times and must be >= 2, got {saveat}")
        return saveat, None
    save_ts = jnp.asarray(saveat, dtype)
    if save_ts.ndim != 1 or save_ts.size < 1:
        raise ProblemError("saveat must be None, an int, or a 1-D array of times")
    if _is_concrete(save_ts) and t1 is not None and _is_concrete(t1):
        s = np.asarray(save_ts)
        if np.any(np.diff(s) < 0) or s[0] < 0 or s[-1] > float(np.max(t1)):
            raise ProblemError(f"saveat times must be increasing and lie in [0, {name}={float(np.max(t1))}]")
    return None, save_ts


def default_divergence_norm(problem: Problem) -> jax.Array:
    """1e8·(1 + ‖θ0‖): far beyond any bounded flow (with F ≥ 0 and λ > 0, ‖θ‖² ≤ 2F_λ(θ0)/λ)."""
    return 1e8 * (1.0 + tree_norm(problem.params))


def simulate(
    problem: Problem,
    lam,
    t1,
    *,
    solver: str = "auto",
    saveat=None,
    rtol=None,
    atol=None,
    max_steps: int = 200_000,
    time: str = "fast",
    divergence_norm=None,
    save_params: bool = False,
    progress: bool = False,
) -> Trajectory:
    r"""Integrate the gradient flow with weight decay of `problem` up to `t1`.

    $$\frac{d\theta}{dt} = -\nabla F(\theta) - \lambda\, m\odot\theta,\qquad \theta(0) = \theta_0,$$

    i.e. gradient flow on F_λ = F + (λ/2)‖m⊙θ‖². With `time="slow"` the same flow is
    integrated in slow time τ = λt (dθ/dτ = −∇F_λ/λ), and `t1` means τ1.

    **Main arguments:**

    - `problem`: a `gflow.Problem`.
    - `lam`: weight decay λ ≥ 0 (a scalar; traced, so new values do not recompile).
    - `t1`: final time (> 0), in ODE time t, or τ with `time="slow"`.
    - `solver`: `"tsit5"`, `"dopri5"` (explicit, adaptive), `"kvaerno3"`, `"kvaerno5"` (stiff,
      dense Jacobian: for small parameter counts) or `"auto"` (see `choose_solver`).
    - `saveat`: `None` (200 times: 0 and log-spaced up to t1), an int (that many such times),
      or an increasing array of times in [0, t1].

    **Other arguments:**

    - `rtol`, `atol`: tolerances of the PID step-size controller; default 1e-8/1e-10 in
      float64 and 1e-5/1e-7 in float32 (from the parameters' dtype).
    - `max_steps`: step budget; reaching it returns `RESULTS.max_steps_reached`.
    - `divergence_norm`: stop with `RESULTS.diverged` when ‖θ‖ exceeds this (default
      1e8·(1 + ‖θ0‖)) or θ stops being finite.
    - `save_params`: also return θ at every save time (`Trajectory.params`); off by default,
      since observables are usually all one needs and parameters can be large.
    - `progress`: show a tqdm progress bar over time (Diffrax's `TqdmProgressMeter`).

    **Returns:** a `gflow.Trajectory`. Failures never raise from inside the solve: the result
    code says what happened and `final` holds the last finite state.
    """
    if not isinstance(problem, Problem):
        raise ProblemError(f"simulate needs a gflow.Problem, got {type(problem).__name__}")
    check_options(time, solver, max_steps)
    dtype = _param_dtype(problem)
    lam = _scalar("lam", lam, dtype)
    t1 = _scalar("t1", t1, dtype)
    check_lam(lam)
    if _is_concrete(t1) and float(t1) <= 0:
        raise ProblemError(f"t1 must be > 0, got {float(t1)}")
    slow = time == "slow"
    if slow and _is_concrete(lam) and float(lam) == 0:
        raise ProblemError("time='slow' rescales by tau = lam*t and needs lam > 0; use time='fast' for lam = 0")
    rtol, atol = default_tolerances(dtype, rtol, atol)
    num_saves, save_ts = save_spec(saveat, dtype, t1)

    stats_extra = {}
    if solver == "auto":
        if not (_is_concrete(lam) and _is_concrete(t1)):
            raise ProblemError("solver='auto' needs concrete lam and t1; name a solver inside jit/vmap")
        horizon = float(t1) / float(lam) if slow else float(t1)
        solver, sharpness = choose_solver(problem, lam, horizon)
        stats_extra["sharpness_estimate"] = jnp.asarray(sharpness, dtype)
        stats_extra["stiffness_ratio"] = jnp.asarray((sharpness + float(lam)) * horizon, dtype)

    if divergence_norm is None:
        divergence_norm = default_divergence_norm(problem)
    divergence_norm = jnp.asarray(divergence_norm, dtype)

    traj = _simulate(
        problem,
        lam,
        t1,
        save_ts,
        divergence_norm,
        rtol,
        atol,
        solver=solver,
        num_saves=num_saves,
        max_steps=max_steps,
        slow=slow,
        save_params=bool(save_params),
        progress=bool(progress),
    )
    if stats_extra:
        traj = eqx.tree_at(lambda tr: tr.stats, traj, {**traj.stats, **stats_extra})
    return traj


def _controller(solver: str, rtol, atol):
    if solver == "kvaerno5":
        # A proportional-integral controller stops Kvaerno5's step size from oscillating across
        # its Newton convergence limit: on the demo, 1487 steps (327 rejected) instead of 3499
        # (1715 rejected) with the default integral-only controller. Kvaerno3 gains nothing
        # (2948 steps vs 2608), so it keeps the default.
        return diffrax.PIDController(rtol=rtol, atol=atol, pcoeff=0.3, icoeff=0.4)
    if solver in _W_MODES:
        # The Rosenbrock-W steps report their evaluation counts next to the error estimate.
        return CountingController(diffrax.PIDController(rtol=rtol, atol=atol))
    return diffrax.PIDController(rtol=rtol, atol=atol)


@eqx.filter_jit
def _simulate(
    problem,
    lam,
    t1,
    save_ts,
    divergence_norm,
    rtol,
    atol,
    *,
    solver,
    num_saves,
    max_steps,
    slow,
    save_params,
    progress=False,
):
    _, evals_per_step = _SOLVERS[solver]
    counted = solver in _W_MODES
    params, static = problem.split()
    if save_ts is None:
        t_min = jnp.minimum(1e-2 * lam, t1 * 1e-3) if slow else None
        save_ts = log_times(t1, num_saves, t_min)

    def field(t, y, args):
        del t, args
        return vector_field(y, static, problem, lam, slow)

    def observe(t, y, args):
        del t, args
        return observables(y, static, problem, lam)

    def diverging(t, y, args, **kwargs):
        del t, args, kwargs
        return jnp.logical_not(tree_all_finite(y)) | (tree_norm(y) > divergence_norm)

    subs = [diffrax.SubSaveAt(ts=save_ts, fn=observe), diffrax.SubSaveAt(t1=True)]
    if save_params:
        subs.append(diffrax.SubSaveAt(ts=save_ts))
    saveat = diffrax.SaveAt(subs=subs, controller_state=counted)
    # Initial step: the time for θ to move by 0.1% of (1 + ‖θ0‖). Diffrax's own choice
    # (dt0=None) extrapolates with a second evaluation that can overflow on stiff polynomial
    # models in slow time, returning dt0 = 0 and a solve that never advances.
    speed = tree_norm(field(t1, params, None))
    tiny = jnp.finfo(t1.dtype).tiny
    dt0 = jnp.minimum(t1, 1e-3 * (1.0 + tree_norm(params)) / jnp.maximum(speed, tiny))
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(field),
        make_solver(solver, problem, lam, slow, rtol, atol),
        t0=jnp.zeros((), t1.dtype),
        t1=t1,
        dt0=dt0,
        y0=params,
        saveat=saveat,
        stepsize_controller=_controller(solver, rtol, atol),
        event=diffrax.Event(diverging),
        max_steps=max_steps,
        throw=False,
        progress_meter=diffrax.TqdmProgressMeter() if progress else diffrax.NoProgressMeter(),
    )
    saved_ts, final_ts = sol.ts[:2]
    observed, final_params = sol.ys[:2]
    reached = jnp.isfinite(saved_ts)
    saved_params = None
    if save_params:
        saved_params = jtu.tree_map(
            lambda x: jnp.where(reached.reshape((-1,) + (1,) * (x.ndim - 1)), x, jnp.nan), sol.ys[2]
        )
    metrics = {k: jnp.where(reached, v, jnp.nan) for k, v in observed.items()}
    final = eqx.combine(jtu.tree_map(lambda x: x[0], final_params), static)

    result = RESULTS.promote(sol.result)
    if sol.event_mask is not None:
        result = RESULTS.where(sol.event_mask, RESULTS.diverged, result)

    stats = {
        "num_steps": sol.stats["num_steps"],
        "num_accepted_steps": sol.stats["num_accepted_steps"],
        "num_rejected_steps": sol.stats["num_rejected_steps"],
        "max_steps": jnp.asarray(max_steps),
    }
    if evals_per_step is not None:
        # One evaluation picks dt0, one starts the FSAL Runge–Kutta method, then
        # `evals_per_step` new stages per attempted step (rejected ones included).
        stats["num_vf_evals"] = 2 + evals_per_step * sol.stats["num_steps"]
    if counted:
        # Exact counts from the controller (rejected steps included), plus the evaluation that
        # picks dt0 and the solver's first f(θ0).
        counts = sol.controller_state[1]
        stats.update({k: counts[k] + (2 if k == "num_vf_evals" else 0) for k in COUNT_KEYS})
    if "num_vf_evals" in stats:
        stats["num_gradient_equivalents"] = gradient_equivalents(stats)
    return Trajectory(
        ts=save_ts,
        metrics=metrics,
        final=final,
        t_final=final_ts[0],
        stats=stats,
        result=result,
        lam=lam,
        time="slow" if slow else "fast",
        solver=solver,
        params=saved_params,
    )
