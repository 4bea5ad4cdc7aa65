"""`simulate`: integrate dθ/dt = −∇F(θ) − λ m⊙θ with Diffrax and record observables."""

from __future__ import annotations

import dataclasses
import sys

import diffrax
import equinox as eqx
import jax
import jax.flatten_util
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np

from ._chebyshev import RKC, RKC1, _Chebyshev
from ._flow import metric_names, observables, tree_all_finite, tree_norm, vector_field
from ._problem import Problem, ProblemError, _is_concrete
from ._rosenbrock import (
    COUNT_KEYS,
    CountingController,
    ExactJacobian,
    GaussNewton,
    Ros34PW2,
    WrappingController,
    gradient_equivalents,
    has_gauss_newton,
    num_outputs,
)
from ._smoothness import nonsmooth_operations
from ._solution import RESULTS, Trajectory


@dataclasses.dataclass(frozen=True)
class SolverSpec:
    """How gflow builds, controls and counts one named solver (`SOLVERS`).

    - `cls`: the Diffrax solver class; every one builds with no arguments except the
      Rosenbrock-W ones, which get their W-matrix from the problem (`w_mode`: "auto" lets
      `choose_w_matrix` pick Woodbury, dense or CG; "krylov" always takes matrix-free CG).
    - `work`: how its gradient evaluations are counted: "tableau" (explicit Runge–Kutta: from
      the Butcher tableau, `_explicit_work`), "reported" (gflow's own solvers report the work of
      every step, rejected ones included, next to their error estimate, added up by
      `CountingController`), or "uncounted" (implicit solvers: their Newton iterations happen
      inside Diffrax).
    - `controller`: extra `diffrax.PIDController` coefficients.
    - `kink_tolerances`: given no tolerances, it runs at `AUTO_NONSMOOTH_RTOL`/`AUTO_NONSMOOTH_ATOL`
      (the kink path's 1e-3/1e-5) instead of the smooth defaults: RKC1, whose first-order step
      shrinks like √rtol, so at 1e-8 it crawls (3·10⁴ steps to t = 5 on `tasks.musat_addition`
      at λ = 0.1, against 121 at 1e-3, measured); it is meant for kinked flows.

    A solver object of a registered class gets its name's controller and tolerances
    (`solver_spec`: `gflow.RKC1()` as "rkc1").
    """

    cls: type
    work: str
    w_mode: str | None = None
    controller: tuple[tuple[str, float], ...] = ()
    kink_tolerances: bool = False

    def build(self, problem: Problem, lam, slow: bool, rtol, atol):
        """The solver object for `problem` at weight decay `lam`."""
        if self.w_mode is not None:
            return self.cls(choose_w_matrix(problem, lam, slow, self.w_mode), rtol=rtol, atol=atol)
        return self.cls()


# RKC1's step-size controller: proportional–integral. On Musat's summed-loss ReLU net at λ = 1e-4
# (rtol 1e-3, to t1 = 1e5) it cut RKC1's rejected steps from 7 534 (Diffrax's integral
# controller) to 1 548 and its gradients from 7.72e5 to 6.89e5, with the same grokking time
# (the PI row is `rkc1@1e-3` in benchmarks/results/relu_flows_musat_relu_lam0.0001.json).
RKC1_CONTROLLER = (("pcoeff", 0.3), ("icoeff", 0.4))
# The one registry of solver names. A proportional-integral controller stops Kvaerno5's step size
# from oscillating across its Newton convergence limit: on the demo, 1487 steps (327 rejected)
# instead of 3499 (1715 rejected) with the default integral-only controller. Kvaerno3 gains
# nothing (2948 steps vs 2608), so it keeps the default.
SOLVERS: dict[str, SolverSpec] = {
    "tsit5": SolverSpec(diffrax.Tsit5, "tableau"),
    "dopri5": SolverSpec(diffrax.Dopri5, "tableau"),
    "bosh3": SolverSpec(diffrax.Bosh3, "tableau"),
    "kvaerno3": SolverSpec(diffrax.Kvaerno3, "uncounted"),
    "kvaerno5": SolverSpec(diffrax.Kvaerno5, "uncounted", controller=(("pcoeff", 0.3), ("icoeff", 0.4))),
    "ros34pw2": SolverSpec(Ros34PW2, "reported", w_mode="auto"),
    "ros34pw2_krylov": SolverSpec(Ros34PW2, "reported", w_mode="krylov"),
    "rkc": SolverSpec(RKC, "reported"),
    "rkc1": SolverSpec(RKC1, "reported", controller=RKC1_CONTROLLER, kink_tolerances=True),
}
SOLVER_NAMES = (*SOLVERS, "auto")

# `solver="auto"`: explicit Tsit5 needs up to about stiffness/3 steps, where
# stiffness = (sharpness(θ0) + λ) × horizon; the stiff solvers (ROS34PW2, RKC) need a number of
# steps that hardly depends on it, so they win once stiffness exceeds AUTO_STIFFNESS. Measured on
# the suite (benchmarks/README.md, "Long horizons", rtol 1e-6): Tsit5 was 2.9× faster than RKC on
# matrix completion at stiffness 1.0e4, and 5.1× slower on Musat's network at the suite's quick
# size at 1.48e4 (its sharpness rises from 15 at θ0 to 60 during the fit) and 5.3× slower on the tanh
# teacher–student at 2.2e4. The threshold sits in that narrow band (it was 2e3, which sent matrix
# completion at λ = 1e-2 to ROS34PW2 at 14× Tsit5's wall time). It errs low on purpose: on the
# rows measured a misplaced RKC run cost at most 2.9× Tsit5, while a misplaced Tsit5 run's cost
# grows with the stiffness.
AUTO_STIFFNESS = 1.2e4
# Losses whose curvature vanishes with the loss (`AbstractLoss.curvature_vanishes_when_fitted`:
# `CrossEntropy`, `Logistic`): for cross-entropy and logistic losses
# ∇²F ≈ Jᵀ H_out J with H_out ~ the loss, so once the train set is fitted the sharpness falls
# to O(λ) on the slow manifold (there ‖∇F‖ = λ‖θ‖) and the flow is no longer stiff; the estimate
# at θ0 then overstates the stiffness of the whole horizon. Measured (benchmarks/README.md, "Long
# horizons"): on the cross-entropy MLP at λ = 1e-5 Tsit5 used 4.6× fewer gradient-equivalents
# than ROS34PW2; Lyu's sparse logistic classification took 86–90 Tsit5 steps against 322–334.
# Non-smooth losses (`nonsmooth_operations` finds a kink: ReLU, abs, max, where on θ): the
# vector field jumps where a pre-activation changes sign, every step across a kink has local
# error O(h·|jump|) whatever the order, and at the smooth default tolerances every adaptive
# solver crawls (issue 12: Tsit5 at rtol 1e-8 spent 200 000 steps and never reached t1 = 10/λ on
# Lyu's ReLU MLP). Bogacki–Shampine 3(2) at rtol 1e-3 finishes, and its lower-order embedded
# pair carries part of each jump into the error estimate. Measured on that MLP at λ = 1e-3
# (benchmarks/README.md, "ReLU flows"): grokking time 4.8% late with 1.1e5 gradients, against
# 9.8% late for Tsit5 at the same rtol and 6.0% late for gradient descent at η = 0.15 (6.7e4).
# Where Bosh3 loses (benchmarks/README.md, "ReLU flows: later single runs"): on a stiff kinked flow
# its step is held by stability. Musat's summed-loss ReLU net (sharpness 119): 2.1e6 gradients at
# λ = 1e-3 against RKC1's 2.9e5 at rtol 1e-3, and at λ = 1e-4 it runs out of its 2e6-step budget
# at 31% of t1 where RKC1 finishes with 6.9e5. Hence the race below.
AUTO_NONSMOOTH_SOLVER = "bosh3"
AUTO_NONSMOOTH_RTOL = 1e-3
AUTO_NONSMOOTH_ATOL = 1e-5
# The race on the kink path (`_probe_and_race`), for kinked flows that may be stiff (a loss whose
# curvature does not vanish once fitted, stiffness ratio over AUTO_STIFFNESS): Bosh3 for
# AUTO_NONSMOOTH_PROBE_STEPS steps; if that does not reach t1, Bosh3 and RKC1 race from there for
# AUTO_NONSMOOTH_RACE_STEPS steps each and the cheaper (time advanced per gradient-equivalent)
# goes on, for AUTO_NONSMOOTH_RKC_PIECE_STEPS steps (RKC1) or a doubling number (Bosh3), then
# races again. The sharpness at θ0 cannot choose: Boursier's ReLU regression (sharpness 543 at
# θ0, stiffness 5.4e7 to t1 = 1e5) is stiff until its norm has decayed and then slides along
# kinks (RKC1 throughout: 1.8e6 gradients, Bosh3 throughout 1.08e6, the race 8.0e5); Musat's
# summed-loss ReLU net (sharpness 119) stays stiff, where Bosh3 is held by stability (2.1e6
# gradients at λ = 1e-3, RKC1 2.9e5, the race 3.4e5). Why RKC1 and not RKC: on a kinked field
# first order loses nothing and its stability interval is three times RKC's; on Musat's net it
# took as many steps for 0.58 times the stages (the race with RKC: 5.4e5 gradients at λ = 1e-3,
# 3.4e6 at λ = 1e-5; with RKC1 3.4e5 and 2.0e6). Measured in benchmarks/README.md, "ReLU flows".
AUTO_NONSMOOTH_PROBE_STEPS = 20_000
AUTO_NONSMOOTH_RACE_STEPS = 1_000
AUTO_NONSMOOTH_RKC_PIECE_STEPS = 20_000
AUTO_STIFF_KINK_SOLVER = "rkc1"
# The step budget when `max_steps` is not given. The kink-robust solve takes many short steps where
# the flow slides along kinks: Boursier's ReLU 1-D regression at the paper's size (m = 100,
# λ = 1e-3) took 359 278 Bosh3 steps to t = 1e5 (1.1e6 gradients, 8 s; the paper's GD needs 2.8e6
# steps), beyond the smooth default.
DEFAULT_MAX_STEPS = 200_000
AUTO_NONSMOOTH_MAX_STEPS = 2_000_000
# Stiff flows whose W-matrix ROS34PW2 would have to solve by conjugate gradients (many outputs on
# a squared loss, a custom loss beyond AUTO_MAX_DENSE_PARAMS) go to RKC instead: its stages cost
# one gradient each whatever the conditioning, where CG's iterations grow with the number of
# large Gauss–Newton eigenvalues. Measured on Musat's embedding network (d = 2 816, N = 649;
# benchmarks/README.md, "Long horizons"): at rtol 1e-6 RKC took 5–9× less wall time than ROS34PW2
# at λ = 1e-2 … 1e-4. With a factored W-matrix (few outputs) ROS34PW2 stays: on the diagonal network
# (d = 1000, N = 50) it took 0.45 s against RKC's 0.82 s at λ = 1e-4 and 0.72 s against 3.0 s at
# λ = 1e-5, at equal error.
AUTO_MATRIX_FREE_STIFF_SOLVER = "rkc"
# Stiff flows with a factored (Woodbury) W-matrix: RKC or ROS34PW2? Per step ROS34PW2 pays ≈ N + 4
# gradient-equivalents (N vector–Jacobian products to form the Gauss–Newton factor, then its
# stages), RKC pays its s stages, where 0.653·s² ≥ h·sharpness; at the same tolerance both take a
# few hundred to 1 500 steps. So RKC is cheaper when the sharpness is small against (N + 4)².
# The crossover measured on the suite (benchmarks/README.md, "Long horizons": sharpness(θ0) /
# (N + 4)² of 0.67 and 0.41 on the diagonal networks, where ROS34PW2 was up to 22× and 4× faster,
# 1.4e-3 on matrix completion, where RKC was 2.4–5× faster) lies between; this is its geometric
# middle. The sharpness at θ0 stands for the whole solve, which it does not describe: by t1 = 10/λ
# at λ = 1e-5 it has fallen 140-fold on matrix completion and 170-fold on the diagonal network.
# The threshold is an empirical crossover between those problems, not a per-step cost model.
AUTO_RKC_SHARPNESS_PER_OUTPUT_SQUARED = 0.03
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
# Bounds on sizes that become array shapes or loop bounds: beyond them XLA aborts the process
# (an int64 shape overflows) instead of raising, so they are refused first.
MAX_SAVES = 1_000_000
MAX_STEPS = 2**31 - 1


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


def count_params(model_or_problem) -> int:
    """Number of scalar parameters: the floating-point array entries of a model, or for a
    `Problem` the trainable ones (the size of the ODE state; data and frozen arrays excluded)."""
    if isinstance(model_or_problem, Problem):
        params = model_or_problem.params
    else:
        params = eqx.filter(model_or_problem, eqx.is_inexact_array)
    return sum(int(np.prod(x.shape)) for x in jtu.tree_leaves(params))


def _param_dtype(problem: Problem):
    return jnp.result_type(*jtu.tree_leaves(problem.params))


def _scalar(name: str, value, dtype) -> jax.Array:
    if (
        value is None
        or isinstance(value, str | bool | np.bool_)
        or (not isinstance(value, jax.Array | np.ndarray | np.generic | int | float))
    ):
        raise ProblemError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    arr = jnp.asarray(value)
    if arr.ndim != 0:
        raise ProblemError(
            f"{name} must be a scalar, got shape {arr.shape}; run one value per call (gflow.sweep runs grids)"
        )
    if not (jnp.issubdtype(arr.dtype, jnp.floating) or jnp.issubdtype(arr.dtype, jnp.integer)):
        raise ProblemError(f"{name} must be a real number, got {value!r} of dtype {arr.dtype}")
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


def choose_solver(
    problem: Problem, lam, horizon, *, detect_kinks: bool = True, matrix_free_rkc: bool = True
) -> tuple[str, float]:
    """The `solver="auto"` rule. Returns (name, estimated sharpness at θ0).

    - `bosh3` (Bogacki–Shampine 3(2), used at `AUTO_NONSMOOTH_RTOL` unless tolerances are given)
      when the loss is not smooth in θ (`nonsmooth_operations(problem)` is not empty: ReLU,
      abs, max, `where` on parameters) and `detect_kinks`. `simulate` then races it against
      RKC1 (first-order Runge–Kutta–Chebyshev) along the solve when the flow may be stiff
      (`_probe_and_race`); this function names the solver the solve starts with;
    - else `tsit5` for losses whose curvature collapses once the train set is fitted
      (`loss.curvature_vanishes_when_fitted`: cross-entropy, logistic);
    - else `tsit5` when the stiffness ratio (sharpness(θ0) + λ) × horizon is at most
      `AUTO_STIFFNESS`;
    - else `rkc` (Runge–Kutta–Chebyshev, `AUTO_MATRIX_FREE_STIFF_SOLVER`) if ROS34PW2 would need
      conjugate gradients for its W-matrix, or if it would factor it by Woodbury over N outputs
      but sharpness(θ0) + λ ≤ `AUTO_RKC_SHARPNESS_PER_OUTPUT_SQUARED`·(N + 4)² (RKC's stages
      then cost less than forming the N-output factor each step);
    - else `ros34pw2` (Rosenbrock-W: Woodbury for few outputs and a sharp loss, dense for small
      models).

    `horizon` is the final ODE time t1 (τ1/λ in slow time). `matrix_free_rkc=False` keeps
    `ros34pw2` for every stiff smooth flow (`flow_limit` does: reading the W-matrix kind traces the
    loss once per call).
    """
    sharp = float(_top_hessian_eigenvalue(problem))
    if detect_kinks and nonsmooth_operations(problem):
        return AUTO_NONSMOOTH_SOLVER, sharp
    if problem.loss.curvature_vanishes_when_fitted:
        return "tsit5", sharp
    stiffness = (sharp + float(lam)) * float(horizon)
    if stiffness <= AUTO_STIFFNESS:
        return "tsit5", sharp
    if not matrix_free_rkc:
        return "ros34pw2", sharp
    w = choose_w_matrix(problem, jnp.asarray(lam, _param_dtype(problem)), slow=False)
    if getattr(w, "dense", False):
        return "ros34pw2", sharp
    if not getattr(w, "woodbury", False):
        return AUTO_MATRIX_FREE_STIFF_SOLVER, sharp
    if sharp + float(lam) <= AUTO_RKC_SHARPNESS_PER_OUTPUT_SQUARED * (num_outputs(problem) + 4) ** 2:
        return AUTO_MATRIX_FREE_STIFF_SOLVER, sharp
    return "ros34pw2", sharp


def choose_w_matrix(problem: Problem, lam, slow: bool, mode: str = "auto"):
    """The W-matrix of a Rosenbrock-W solve (`_rosenbrock.AbstractWMatrix`).

    With a Gauss–Newton structure (residuals, cross-entropy, logistic), N outputs and d
    parameters: Woodbury when N ≤ `AUTO_MAX_WOODBURY_OUTPUTS` and N²d ≤ `AUTO_MAX_WOODBURY_WORK`;
    else the dense exact Jacobian when d ≤ `AUTO_MAX_DENSE_PARAMS` and d ≤ N; else matrix-free
    CG. Without one (a custom scalar loss): the dense exact Jacobian when d ≤
    `AUTO_MAX_DENSE_PARAMS`, else CG on Hessian–vector products. `mode="krylov"` always takes
    the matrix-free path.
    """
    d = count_params(problem)
    if has_gauss_newton(problem):
        n = num_outputs(problem)
        woodbury = mode == "auto" and n <= AUTO_MAX_WOODBURY_OUTPUTS and float(n) ** 2 * d <= AUTO_MAX_WOODBURY_WORK
        if mode == "auto" and not woodbury and d <= min(n, AUTO_MAX_DENSE_PARAMS):
            return ExactJacobian(dense=True)
        static = problem.split()[1]
        return GaussNewton(problem, static, lam, slow=slow, woodbury=woodbury)
    return ExactJacobian(dense=mode == "auto" and d <= AUTO_MAX_DENSE_PARAMS)


def solver_name(solver) -> str:
    """A solver's name: itself for a name of `SOLVER_NAMES`, the class name for a solver object."""
    return solver if isinstance(solver, str) else type(solver).__name__


def make_solver(solver, problem: Problem, lam, slow: bool, rtol, atol):
    """The Diffrax solver object for a name of `SOLVERS`, given the problem it will solve (a
    solver object given by the user is used as it is)."""
    if not isinstance(solver, str):
        return solver
    return SOLVERS[solver].build(problem, lam, slow, rtol, atol)


def check_options(time: str, solver: str, max_steps: int | None) -> None:
    if time not in ("fast", "slow"):
        raise ProblemError(f"time must be 'fast' (ODE time t) or 'slow' (tau = lam*t), got {time!r}")
    if isinstance(solver, diffrax.AbstractSolver):
        if isinstance(solver, diffrax.AbstractSRK | diffrax.SemiImplicitEuler):
            raise ProblemError(f"{type(solver).__name__} is not an ODE solver for dθ/dt = f(θ); give an ODE solver")
        return
    if not isinstance(solver, str) or solver not in SOLVER_NAMES:
        raise ProblemError(
            f"unknown solver {solver!r}; choose one of {', '.join(SOLVER_NAMES)} or pass a diffrax solver object "
            "(e.g. diffrax.Kvaerno5())"
        )
    if max_steps is not None and (
        isinstance(max_steps, bool) or not isinstance(max_steps, int) or not 1 <= max_steps <= MAX_STEPS
    ):
        raise ProblemError(f"max_steps must be an int in [1, {MAX_STEPS}], got {max_steps!r}")


def default_max_steps(max_steps: int | None, *, nonsmooth: bool = False) -> int:
    """`max_steps` if given, else `DEFAULT_MAX_STEPS`, or `AUTO_NONSMOOTH_MAX_STEPS` for the
    kink-robust solve of `solver="auto"` on a non-smooth loss (`nonsmooth=True`)."""
    if max_steps is not None:
        return max_steps
    return AUTO_NONSMOOTH_MAX_STEPS if nonsmooth else DEFAULT_MAX_STEPS


def default_tolerances(dtype, rtol, atol, *, nonsmooth: bool = False) -> tuple[jax.Array, jax.Array]:
    """(rtol, atol) as arrays of `dtype`: 1e-8/1e-10 in float64, 1e-5/1e-7 in float32 by default;
    `AUTO_NONSMOOTH_RTOL`/`AUTO_NONSMOOTH_ATOL` (`nonsmooth=True`) for the kink-robust solve of
    `solver="auto"` on a non-smooth loss and for solvers registered with `kink_tolerances` (RKC1,
    whose first-order steps shrink like √rtol: `loose_default_tolerances`). Given values are
    kept."""
    is64 = jnp.finfo(dtype).bits >= 64
    if nonsmooth:
        rtol = AUTO_NONSMOOTH_RTOL if rtol is None else rtol
        atol = AUTO_NONSMOOTH_ATOL if atol is None else atol
    rtol = (1e-8 if is64 else 1e-5) if rtol is None else rtol
    atol = (1e-10 if is64 else 1e-7) if atol is None else atol
    rtol, atol = _scalar("rtol", rtol, dtype), _scalar("atol", atol, dtype)
    # A negative tolerance makes every step "accepted" and returns garbage marked successful.
    for name, value in (("rtol", rtol), ("atol", atol)):
        if _is_concrete(value) and not float(value) > 0:
            raise ProblemError(f"{name} must be > 0, got {float(value)}")
    return rtol, atol


def solver_spec(solver) -> SolverSpec | None:
    """The registry entry of a solver name, or of a solver object whose class is registered (the
    first name with that class: `gflow.RKC1()` as "rkc1"); None for "auto" and other objects."""
    if isinstance(solver, str):
        return SOLVERS.get(solver)
    return next((spec for spec in SOLVERS.values() if type(solver) is spec.cls), None)


def loose_default_tolerances(solver) -> bool:
    """Whether `solver` (a name or an object) runs at the kink path's tolerances when none are
    given (`SolverSpec.kink_tolerances`)."""
    spec = solver_spec(solver)
    return spec is not None and spec.kink_tolerances


def save_spec(saveat, dtype, t1=None, name: str = "t1", t0=None) -> tuple[int | None, jax.Array | None]:
    """`saveat` as (number of log-spaced save times, None) or (None, explicit times in [t0, t1])."""
    if saveat is None:
        return DEFAULT_NUM_SAVES, None
    if isinstance(saveat, bool):
        raise ProblemError("saveat must be None, an int (number of save times), or a 1-D array of times; got a bool")
    if isinstance(saveat, int):
        if not 2 <= saveat <= MAX_SAVES:
            raise ProblemError(
                f"saveat as an int is the number of save times and must be in [2, {MAX_SAVES}], got {saveat}"
            )
        return saveat, None
    save_ts = jnp.asarray(saveat, dtype)
    if save_ts.ndim != 1 or save_ts.size < 1:
        raise ProblemError("saveat must be None, an int, or a 1-D array of times")
    if _is_concrete(save_ts) and t1 is not None and _is_concrete(t1):
        s = np.asarray(save_ts)
        lo = 0.0 if t0 is None or not _is_concrete(t0) else float(t0)
        if not np.all(np.isfinite(s)):
            raise ProblemError("saveat times must be finite numbers")
        if np.any(np.diff(s) < 0) or s[0] < lo or s[-1] > float(np.max(t1)):
            raise ProblemError(f"saveat times must be increasing and lie in [{lo:g}, {name}={float(np.max(t1))}]")
    return None, save_ts


def default_save_times(t0, t1, num_saves: int, lam, slow: bool) -> jax.Array:
    """`num_saves` save times: 0 and log-spaced up to t1 (from min(1e-2·λ, 1e-3·τ1) in slow
    time), or, for a continuation from t0 > 0, log-spaced from t0 (itself the first save) to t1."""
    t0 = jnp.zeros((), t1.dtype) if t0 is None else t0
    t_min = jnp.minimum(1e-2 * lam, t1 * 1e-3) if slow else None
    fresh = log_times(t1, num_saves, t_min)
    safe_t0 = jnp.where(t0 > 0, t0, 1.0)
    onward = safe_t0 * (t1 / safe_t0) ** jnp.linspace(0.0, 1.0, num_saves, dtype=t1.dtype)
    onward = onward.at[0].set(t0).at[-1].set(t1)
    return jnp.where(t0 > 0, onward, fresh)


def default_divergence_norm(problem: Problem) -> jax.Array:
    """1e8·(1 + ‖θ0‖): far beyond any bounded flow (with F ≥ 0 and λ > 0, ‖θ‖² ≤ 2F_λ(θ0)/λ)."""
    return 1e8 * (1.0 + tree_norm(problem.params))


_STOP_OPS = {">=": jnp.greater_equal, ">": jnp.greater, "<=": jnp.less_equal, "<": jnp.less}


def stop_spec(problem: Problem, stop) -> tuple[tuple[tuple[str, str], ...], jax.Array | None]:
    """`stop` as (static ((metric, op), ...), traced thresholds), checked against the problem."""
    if stop is None:
        return (), None
    if not isinstance(stop, dict) or not stop:
        raise ProblemError(
            'stop must be a dict {metric: (op, value)}, e.g. stop={"test_accuracy": (">=", 0.99)}, or None'
        )
    names = metric_names(problem)
    spec, values = [], []
    for name, cond in stop.items():
        if name not in names:
            raise ProblemError(f"stop names unknown metric {name!r}; this problem records {', '.join(names)}")
        if not (isinstance(cond, tuple | list) and len(cond) == 2 and cond[0] in _STOP_OPS):
            raise ProblemError(
                f"stop[{name!r}] must be (op, value) with op one of {', '.join(_STOP_OPS)}, got {cond!r}"
            )
        value = cond[1]
        if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer | jax.Array):
            raise ProblemError(f"stop[{name!r}] threshold must be a real number, got {value!r}")
        if _is_concrete(value) and not np.isfinite(float(value)):
            raise ProblemError(f"stop[{name!r}] threshold must be finite, got {value!r}")
        spec.append((name, cond[0]))
        values.append(value)
    return tuple(spec), jnp.asarray(values, _param_dtype(problem))


def _progress_mode(progress) -> str:
    # A tqdm bar redraws with carriage returns: fine on a terminal, a flood in a log file or a
    # pipe. Off a terminal, print a plain line every 10% of the time span instead.
    if not progress:
        return "none"
    return "bar" if sys.stderr.isatty() else "text"


def simulate(
    problem: Problem,
    lam,
    t1,
    *,
    solver: str = "auto",
    saveat=None,
    rtol=None,
    atol=None,
    max_steps: int | None = None,
    time: str = "fast",
    divergence_norm=None,
    save_params: bool = False,
    progress: bool = False,
    stop=None,
    start=None,
    t0=None,
    callback=None,
) -> Trajectory:
    r"""Integrate the gradient flow with weight decay of `problem` up to `t1`.

    $$\frac{d\theta}{dt} = -\nabla F(\theta) - \lambda\, m\odot\theta,\qquad \theta(t_0) = \theta_0,$$

    i.e. gradient flow on F_λ = F + (λ/2)‖m⊙θ‖². With `time="slow"` the same flow is
    integrated in slow time τ = λt (dθ/dτ = −∇F_λ/λ), and `t1` means τ1.

    **Main arguments:**

    - `problem`: a `gflow.Problem`.
    - `lam`: weight decay λ ≥ 0 (a scalar; traced, so new values do not recompile).
    - `t1`: final time (> 0), in ODE time t, or τ with `time="slow"`.
    - `solver`: `"tsit5"`, `"dopri5"`, `"bosh3"` (explicit, adaptive), `"kvaerno3"`, `"kvaerno5"` (stiff,
      dense Jacobian: for small parameter counts), `"ros34pw2"`, `"ros34pw2_krylov"`
      (Rosenbrock-W, stiff, no d × d matrix) or `"auto"` (see `choose_solver`); or a configured
      Diffrax ODE solver object, e.g. `diffrax.Kvaerno5()` or `diffrax.Bosh3()`, used with a
      `diffrax.PIDController(rtol, atol)`. An explicit Runge–Kutta object's gradient count comes
      from its Butcher tableau; for other objects `stats` has no `num_vf_evals`. `traj.solver`
      is its class name.
    - `saveat`: `None` (200 times: 0 and log-spaced up to t1), an int (that many such times),
      or an increasing array of times in [t0, t1].

    **Stopping and continuing:**

    - `stop`: `{metric: (op, value)}` with op one of `>=`, `>`, `<=`, `<`, e.g.
      `{"test_accuracy": (">=", 0.99)}`: end the solve at the first accepted step where any
      condition holds (a Diffrax event). The metric is evaluated after every step (its cost:
      a test forward pass for a test metric, a gradient for `grad_norm`). The run is still
      `successful`; `traj.t_final` is the stop time, `traj.stop_reason` names the condition and
      later saves are NaN.
    - `start`: a `Trajectory` of this problem (finished or stopped) to continue: the solve starts
      from `start.final` at `start.t_final` with the clock running on, and the returned
      Trajectory joins the saves of both pieces on one time axis (stats added up). It must have
      the same λ and time variable. Or a model (like `problem.model`) with `t0`, the time it is
      at: the solve runs from there and returns only the new piece. Default save times of a
      continuation: 200 log-spaced times from t0 to t1.
    - `t0`: the start time with a model `start` (default 0).

    **Other arguments:**

    - `rtol`, `atol`: tolerances of the PID step-size controller; default 1e-8/1e-10 in
      float64 and 1e-5/1e-7 in float32 (from the parameters' dtype), except when
      `solver="auto"` finds the loss non-smooth (ReLU, abs, max: `nonsmooth_operations`) and
      takes `bosh3`: then 1e-3/1e-5 (`AUTO_NONSMOOTH_RTOL`, `AUTO_NONSMOOTH_ATOL`), since a
      tight tolerance makes every adaptive solver crawl at the kinks; `stats["nonsmooth"]` says
      which rule was taken. `solver="rkc1"` (or `gflow.RKC1()`) also defaults to 1e-3/1e-5: it
      is first order. If such a flow may be stiff (a loss whose curvature does not vanish
      once fitted, stiffness ratio above `AUTO_STIFFNESS`) and Bosh3 has not reached t1 after
      `AUTO_NONSMOOTH_PROBE_STEPS` steps, Bosh3 and RKC1 race from there and the cheaper goes on,
      racing again at intervals (`_probe_and_race`; `traj.solver` "bosh3+rkc1" once RKC1 ran,
      `stats["num_races"]`, `stats["race_t"]`, `stats["rkc_steps"]`: the steps by RKC1).
      `gflow.sweep` races each member the same way where it runs one member per call (its
      default on a CPU then).
    - `max_steps`: step budget; reaching it returns `RESULTS.max_steps_reached`. Default
      200 000 (`DEFAULT_MAX_STEPS`), or 2 000 000 (`AUTO_NONSMOOTH_MAX_STEPS`) when
      `solver="auto"` takes the kink-robust path, whose steps are short where the flow slides
      along kinks.
    - `divergence_norm`: stop with `RESULTS.diverged` when ‖θ‖ exceeds this (default
      1e8·(1 + ‖θ0‖)) or θ stops being finite.
    - `save_params`: also return θ at every save time (`Trajectory.params`); off by default,
      since observables are usually all one needs and parameters can be large.
    - `progress`: show progress over time: Diffrax's tqdm bar on a terminal, a plain line per
      10% of the time span when stderr is not a terminal (no carriage returns in logs).
    - `callback`: `callback(t, metrics)` called on the host at every save time reached, with
      `t` the save time (run's time variable) and `metrics` a dict of NumPy scalars, for
      streaming to TensorBoard, CSV or W&B. It runs through `jax.debug.callback`: each call is a
      device-to-host transfer and a Python call (negligible next to a save of a large model's
      observables, but not free), calls are not guaranteed to arrive in order, and the function
      is part of the compiled solve (pass the same function object to reuse it). Off (None) by
      default.

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
    if callback is not None and not callable(callback):
        raise ProblemError(f"callback must be a function (t, metrics) -> None, got {type(callback).__name__}")
    stops, stop_values = stop_spec(problem, stop)

    previous = None
    if isinstance(start, Trajectory):
        if t0 is not None:
            raise ProblemError("start=traj carries its own time (traj.t_final); drop t0")
        previous = _check_continuation(start, lam, time)
        init_model, t0 = start.final, start.t_final
    else:
        init_model = start
        t0 = 0.0 if t0 is None else t0
    t0 = _scalar("t0", t0, dtype)
    if _is_concrete(t0) and _is_concrete(t1) and not 0 <= float(t0) < float(t1):
        raise ProblemError(f"the start time t0 = {float(t0)} must lie in [0, t1 = {float(t1)})")
    original = problem
    if init_model is not None:
        problem = _with_start(problem, init_model)
    num_saves, save_ts = save_spec(saveat, dtype, t1, t0=t0)

    stats_extra = {}
    kink_robust = False
    if solver == "auto":
        if not (_is_concrete(lam) and _is_concrete(t1)):
            raise ProblemError("solver='auto' needs concrete lam and t1; name a solver inside jit/vmap")
        horizon = (float(t1) - float(t0)) / float(lam) if slow else float(t1) - float(t0)
        solver, sharpness = choose_solver(problem, lam, horizon)
        stats_extra["sharpness_estimate"] = jnp.asarray(sharpness, dtype)
        stats_extra["stiffness_ratio"] = jnp.asarray((sharpness + float(lam)) * horizon, dtype)
        kink_robust = solver == AUTO_NONSMOOTH_SOLVER
        stats_extra["nonsmooth"] = jnp.asarray(kink_robust)
    rtol, atol = default_tolerances(dtype, rtol, atol, nonsmooth=kink_robust or loose_default_tolerances(solver))
    max_steps = default_max_steps(max_steps, nonsmooth=kink_robust)

    if divergence_norm is None:
        # From the problem's own θ0, so that a continuation keeps the bound of the first piece.
        divergence_norm = default_divergence_norm(original)
    divergence_norm = jnp.asarray(divergence_norm, dtype)
    common = {
        "divergence_norm": divergence_norm,
        "rtol": rtol,
        "atol": atol,
        "stop_values": stop_values,
        "max_steps": max_steps,
        "slow": slow,
        "save_params": bool(save_params),
        "progress": _progress_mode(progress),
        "stops": stops,
        "callback": callback,
    }

    if kink_robust and races(problem, float(stats_extra["stiffness_ratio"]), max_steps):
        if save_ts is None:
            save_ts = default_save_times(t0, t1, num_saves, lam, slow)
        traj = raced_solve(problem, lam, t1, t0, save_ts, common)
    else:
        traj = _simulate(problem, lam, t1, save_ts, t0=t0, solver=solver, num_saves=num_saves, **common)
    if stats_extra:
        traj = eqx.tree_at(lambda tr: tr.stats, traj, {**traj.stats, **stats_extra})
    if previous is not None:
        traj = join(previous, traj)
    return traj


def races(problem: Problem, stiffness_ratio: float, max_steps: int) -> bool:
    """Whether `solver="auto"`, having taken the kink path (`AUTO_NONSMOOTH_SOLVER`), races it
    against RKC1 (`raced_solve`): when the loss's curvature does not vanish once fitted (a
    squared-type loss), the stiffness ratio (sharpness + λ)·horizon is above `AUTO_STIFFNESS`,
    and the step budget leaves room for the probe and one race."""
    return (
        not problem.loss.curvature_vanishes_when_fitted
        and stiffness_ratio > AUTO_STIFFNESS
        and max_steps > AUTO_NONSMOOTH_PROBE_STEPS + 2 * AUTO_NONSMOOTH_RACE_STEPS
    )


def raced_solve(problem: Problem, lam, t1, t0, save_ts, common: dict) -> Trajectory:
    """One run of `problem` by Bosh3 raced against RKC1 (`_probe_and_race`), saved at `save_ts`;
    `common` holds `_simulate`'s other keyword arguments (tolerances, `max_steps`, stops, …)."""

    def piece(model, t_start, saves, solver: str, steps: int) -> Trajectory:
        # One compiled solve per solver for every piece: the same save count, the static
        # budget max_steps, and the piece's own budget traced.
        return _simulate(
            _with_start(problem, model),
            lam,
            t1,
            saves,
            t0=t_start,
            solver=solver,
            num_saves=None,
            step_budget=jnp.asarray(steps),
            **common,
        )

    return _probe_and_race(piece, problem.model, t0, save_ts, common["max_steps"], common["callback"])


def _probe_and_race(piece, model, t0, save_ts, max_steps: int, callback=None) -> Trajectory:
    """`solver="auto"` on a kinked flow that may be stiff: Bosh3 or RKC1, whichever is measured to
    be cheaper along the solve.

    1. Bosh3 (`AUTO_NONSMOOTH_SOLVER`) for at most `AUTO_NONSMOOTH_PROBE_STEPS` steps; a solve
       that ends within them (reached t1, a stop condition, a failure) is returned as it is.
    2. A race: Bosh3 and RKC1 (`AUTO_STIFF_KINK_SOLVER`) each go on from where the solve stopped
       for `AUTO_NONSMOOTH_RACE_STEPS` steps; the one that advanced further in time per
       gradient-equivalent wins, and its piece is kept.
    3. The winner goes on for a piece (`AUTO_NONSMOOTH_RKC_PIECE_STEPS` RKC1 steps, or Bosh3
       steps starting at `AUTO_NONSMOOTH_PROBE_STEPS` and doubling with every race Bosh3 wins),
       then races again, until t1 or the step budget `max_steps` (the losing racers' steps count).

    Why measure: an explicit step is held by stability where h·sharpness exceeds its stability
    interval (≈ 2.5 for Bosh3), and by the kinks where the flow slides along them. RKC1 buys
    stability with √(0.52·hρ) stages (first-order damped Chebyshev: van der Houwen & Sommeijer
    1980, Verwer 1996; first order costs nothing across kinks, where no method is better), but
    its error estimate, which compares f at both ends of a step, rejects more steps at kinks.
    Which of the two holds changes along a solve (Boursier's ReLU regression is stiff until its norm has decayed, then
    slides along kinks) and cannot be read off θ0. ODE codes have long switched between a
    non-stiff and a stiff method along the solve (Petzold 1983, LSODA; stiffness detection in
    explicit Runge–Kutta codes: Shampine 1977, Hairer & Wanner, "Solving ODEs II", §IV.2); here
    the switch is decided by the cost measured on the problem itself, in a race.

    `piece(model, t_start, saves, solver, steps)` runs one piece (`_simulate` with a traced step
    budget); every piece saves on the full save grid clamped to its start time, so all pieces of
    one solver share one compiled solve. A `callback` hears each save time once, in order: it is
    muted while the racers run, and the winner's saves in the race are replayed to it from its
    trajectory (`_CALLBACK_GATE`). Returns one Trajectory over all pieces (`join`); the
    losing racers' work is added to the work counts; `solver` is "bosh3", or "bosh3+rkc1" once
    RKC1 has run; `stats` gains `num_races`, `rkc_steps` (RKC1's) and, if there was a race,
    `race_t` (the first race's time).
    """
    bosh3, rkc = AUTO_NONSMOOTH_SOLVER, AUTO_STIFF_KINK_SOLVER
    piece_steps = {bosh3: AUTO_NONSMOOTH_PROBE_STEPS, rkc: AUTO_NONSMOOTH_RKC_PIECE_STEPS}

    def go_on(first: Trajectory, solver: str, steps: int) -> Trajectory:
        # The full save grid clamped to where `first` stopped: saves at or before it are dropped
        # by `join`, and every piece has the same shapes.
        saves = jnp.maximum(save_ts, first.t_final)
        jax.effects_barrier()
        _CALLBACK_GATE["last"] = max(_CALLBACK_GATE["last"], float(first.t_final))  # not the clamped saves
        return join(first, piece(first.final, first.t_final, saves, solver, steps))

    def steps_of(traj: Trajectory) -> int:
        return int(traj.stats["num_steps"])

    def mute(muted: bool) -> None:
        jax.effects_barrier()  # the callbacks of the pieces run so far have run
        _CALLBACK_GATE["muted"] = muted

    _CALLBACK_GATE.update(active=True, muted=False, last=-np.inf)
    try:
        traj = piece(model, t0, save_ts, bosh3, min(piece_steps[bosh3], max_steps))
        spent, rkc_steps, race_ts = steps_of(traj), 0, []
        lost = {k: 0 for k in COUNT_KEYS}  # the losing racers' work
        while traj.result == RESULTS.max_steps_reached and spent + 2 * AUTO_NONSMOOTH_RACE_STEPS <= max_steps:
            race_ts.append(float(traj.t_final))
            mute(True)
            raced = {solver: go_on(traj, solver, AUTO_NONSMOOTH_RACE_STEPS) for solver in (bosh3, rkc)}
            mute(False)
            rate = {
                solver: (float(run.t_final) - race_ts[-1])
                / max(float(gradient_equivalents(run.stats) - gradient_equivalents(traj.stats)), 1.0)
                for solver, run in raced.items()
            }
            winner = max(rate, key=rate.get)
            loser = rkc if winner == bosh3 else bosh3
            lost = {k: lost[k] + raced[loser].stats.get(k, 0) - traj.stats.get(k, 0) for k in COUNT_KEYS}
            spent += sum(steps_of(run) - steps_of(traj) for run in raced.values())
            rkc_steps += steps_of(raced[rkc]) - steps_of(traj) if winner == rkc else 0
            traj = raced[winner]
            if callback is not None:
                # The winner's saves in the race, which the muted callback did not hear.
                ts, reached = np.asarray(traj.ts), float(traj.t_final)
                for i in np.nonzero((ts > race_ts[-1]) & (ts <= reached))[0]:
                    _host_callback(callback)(ts[i], {k: v[i] for k, v in traj.metrics.items()})
            if traj.result != RESULTS.max_steps_reached or spent >= max_steps:
                break
            if winner == bosh3:
                # Doubling Bosh3's pieces while it keeps winning bounds the races' share of a long
                # solve that never turns stiff (a race wastes up to 1 000 RKC1 steps).
                piece_steps[bosh3] *= 2
            before = steps_of(traj)
            traj = go_on(traj, winner, min(piece_steps[winner], max_steps - spent))
            spent += steps_of(traj) - before
            rkc_steps += steps_of(traj) - before if winner == rkc else 0
    finally:
        jax.effects_barrier()
        _CALLBACK_GATE.update(active=False, muted=False, last=-np.inf)

    stats = dict(traj.stats)
    for k in COUNT_KEYS:
        stats[k] = stats.get(k, 0) + lost[k]
    stats["num_gradient_equivalents"] = gradient_equivalents(stats)
    stats["max_steps"] = jnp.asarray(max_steps)  # the budget of the whole solve, not of a piece
    stats["num_races"] = jnp.asarray(len(race_ts))
    if race_ts:
        stats["race_t"] = jnp.asarray(race_ts[0], jnp.asarray(traj.t_final).dtype)
    stats["rkc_steps"] = jnp.asarray(rkc_steps)
    return dataclasses.replace(traj, stats=stats, solver=f"{bosh3}+{rkc}" if rkc_steps else bosh3)


def _check_continuation(start: Trajectory, lam, time: str) -> Trajectory:
    if np.ndim(start.ts) != 1:
        raise ProblemError("start must be one run; index a member of a batched Trajectory")
    if start.time != time:
        raise ProblemError(f"start was run with time={start.time!r}; continue it with the same time variable")
    if _is_concrete(lam) and float(start.lam) != float(lam):
        raise ProblemError(
            f"start ran at lam = {float(start.lam)}, not {float(lam)}; to change lam mid-run pass "
            "start=traj.final, t0=traj.t_final (the new piece is returned alone)"
        )
    return start


def _with_start(problem: Problem, model) -> Problem:
    """`problem` with its model replaced by `model` (same structure), checked."""
    if model is None:
        return problem
    ref = jtu.tree_leaves(problem.model)
    try:
        new = jtu.tree_leaves(model)
        same = jtu.tree_structure(model) == jtu.tree_structure(problem.model) and all(
            (a.shape, a.dtype) == (b.shape, b.dtype) if eqx.is_array(a) else True for a, b in zip(new, ref, strict=True)
        )
    except ValueError:
        same = False
    if not same:
        raise ProblemError(
            "start must be a Trajectory or a model with the structure, shapes and dtypes of problem.model "
            "(e.g. traj.final)"
        )
    return eqx.tree_at(lambda p: p.model, problem, model)


def join(first: Trajectory, second: Trajectory) -> Trajectory:
    """One Trajectory from a run and its continuation (`simulate(..., start=first)`).

    The saves of `first` up to its `t_final` are followed by those of `second` after it; stats
    that count work are added; `final`, `t_final`, `result` and the stop are the second's;
    `solver` names the solvers of both ("bosh3+rkc1").
    """
    keep = np.asarray(first.ts) <= float(first.t_final)
    later = np.asarray(second.ts) > float(first.t_final)
    ts = jnp.concatenate([first.ts[keep], second.ts[later]])
    metrics = {k: jnp.concatenate([first.metrics[k][keep], v[later]]) for k, v in second.metrics.items()}
    params = None
    if first.params is not None and second.params is not None:
        params = jtu.tree_map(lambda a, b: jnp.concatenate([a[keep], b[later]]), first.params, second.params)
    # Work counters add up across the pieces (COUNT_KEYS already holds num_vf_evals); a counter
    # that only one piece's solver keeps (RKC1's num_hvps after a Bosh3 piece) is kept.
    counted = ("num_steps", "num_accepted_steps", "num_rejected_steps", *COUNT_KEYS)
    stats = dict(second.stats)
    for k in counted:
        if k in first.stats:
            stats[k] = first.stats[k] + second.stats.get(k, 0)
    if "num_vf_evals" in stats:
        stats["num_gradient_equivalents"] = gradient_equivalents(stats)
    joined = eqx.tree_at(
        lambda tr: (tr.ts, tr.metrics, tr.stats, tr.params),
        second,
        (ts, metrics, stats, params),
        is_leaf=lambda x: x is None,
    )
    # The solvers of both pieces, in order of first use ("bosh3+rkc1" joined to "bosh3" stays so).
    solvers = list(dict.fromkeys([*first.solver.split("+"), *second.solver.split("+")]))
    return dataclasses.replace(joined, solver="+".join(solvers))


# While `_probe_and_race` runs, a user's callback hears each save time once, in order: the racers'
# pieces are muted (the winner's saves are replayed from its trajectory) and a piece's saves at
# or before its start time (the clamped grid) are skipped. One gate for the process: solves with
# callbacks run from several threads at once while one of them races would share it.
_CALLBACK_GATE = {"active": False, "muted": False, "last": -np.inf}


def _host_callback(callback):
    def call(t, metrics):
        t = np.asarray(t).item()
        gate = _CALLBACK_GATE
        if gate["active"]:
            if gate["muted"] or t <= gate["last"]:
                return
            gate["last"] = t
        callback(t, {k: np.asarray(v).item() for k, v in metrics.items()})

    return call


NON_FINITE_PATIENCE = 25


class NonFiniteGuard(WrappingController):
    """Wraps an adaptive controller; ends the solve when the vector field stays non-finite.

    Diffrax treats a NaN error estimate as an infinite error: it rejects the step and shrinks
    it, which is right when an explicit stage overshoots into a region where F is not defined,
    and hopeless when ∇F is NaN or infinite at the current state itself (log(0), 1/0, overflow,
    a finite-time blow-up). After `patience` consecutive rejected steps whose candidate or error
    is non-finite (the step has then shrunk by 0.2^patience), or one such rejection of a step
    already at the float resolution of t, the solve stops with diffrax's `dt_min_reached`, the
    state's flag is set, and `simulate` reports
    `RESULTS.non_finite_field` with the last finite state, instead of spending its whole
    step budget on rejections and advising a larger `max_steps`.

    `step_budget` (a traced int, optional): end the solve with `max_steps_reached` after that
    many attempted steps, below Diffrax's static `max_steps` (the pieces of `_probe_and_race`).
    """

    step_budget: jax.Array | None = None
    patience: int = eqx.field(static=True, default=NON_FINITE_PATIENCE)

    def wrap(self, direction):
        return NonFiniteGuard(self.controller.wrap(direction), self.step_budget, self.patience)

    def init(self, terms, t0, t1, y0, dt0, args, func, error_order):
        tnext, state = self.controller.init(terms, t0, t1, y0, dt0, args, func, error_order)
        return tnext, (state, jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))

    def adapt_step_size(self, t0, t1, y0, y1_candidate, args, y_error, error_order, controller_state):
        state, streak, steps = controller_state
        keep, next_t0, next_t1, made_jump, state, result = self.controller.adapt_step_size(
            t0, t1, y0, y1_candidate, args, y_error, error_order, state
        )
        # Diffrax has already replaced NaN errors by inf, so "not finite" covers both.
        bad = ~(tree_all_finite(y1_candidate) & tree_all_finite(y_error))
        streak = jnp.where(keep | ~bad, 0, streak + 1)
        # Or a non-finite candidate from a step already at the float resolution of t: near a
        # singularity that the flow reaches in finite time, steps alternate between accepted and
        # non-finite ever closer to it (a Zeno crawl) without a long run of rejections.
        eps = jnp.finfo(jnp.result_type(t0)).eps
        at_resolution = (t1 - t0) <= 64 * eps * (1 + jnp.abs(t0))
        stuck = bad & ~keep & at_resolution
        streak = jnp.where(stuck, jnp.maximum(streak, self.patience), streak)
        given_up = streak >= self.patience
        result = diffrax.RESULTS.where(given_up, diffrax.RESULTS.dt_min_reached, result)
        steps = steps + 1
        if self.step_budget is not None:
            # A step budget below Diffrax's static max_steps, traced: the pieces of a solve with
            # different budgets share one compiled solve (`_probe_and_race`).
            spent = (steps >= self.step_budget) & (result == diffrax.RESULTS.successful)
            result = diffrax.RESULTS.where(spent, diffrax.RESULTS.max_steps_reached, result)
        return keep, next_t0, next_t1, made_jump, (state, streak, steps), result


def _explicit_work(solver) -> tuple[int, int] | None:
    """(gradient evaluations at the start, new ones per attempted step) of an explicit Runge–Kutta
    solver, from its Butcher tableau (s stages, one fewer per step when first-same-as-last), or
    None when the count is not known in advance (implicit and Rosenbrock solvers count otherwise)."""
    if isinstance(solver, str):
        spec = SOLVERS[solver]
        solver = spec.cls() if spec.work == "tableau" else None
    if not isinstance(solver, diffrax.AbstractERK) or isinstance(solver, diffrax.AbstractImplicitSolver):
        return None
    tableau = solver.tableau
    fsal = int(bool(tableau.fsal))
    return 1 + fsal, len(tableau.c) + 1 - fsal


def _counts_work(solver) -> bool:
    """Whether the step reports `(error, counts)` (gflow's Rosenbrock-W, RKC and RKC1), read by
    `CountingController`."""
    if isinstance(solver, str):
        return SOLVERS[solver].work == "reported"
    return isinstance(solver, Ros34PW2 | _Chebyshev)


def _startup_counts(solver) -> dict[str, int]:
    """Work a counting solver does before its first step (not seen by `CountingController`):
    the evaluation that picks dt0 plus the solver's own `init`."""
    own = (SOLVERS[solver].cls() if isinstance(solver, str) else solver).startup_counts()
    return {**own, "num_vf_evals": own.get("num_vf_evals", 0) + 1}


def _controller(solver, rtol, atol):
    spec = solver_spec(solver)  # a solver object gets the controller of its name
    pid = diffrax.PIDController(rtol=rtol, atol=atol, **dict(spec.controller if spec else ()))
    # gflow's own steps report their evaluation counts next to the error estimate, on purpose:
    # Diffrax rolls the solver state back when it rejects a step, so counts kept in the state
    # would miss the rejected steps' work.
    return CountingController(pid) if _counts_work(solver) else pid


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
    progress="none",
    t0=None,
    stop_values=None,
    stops=(),
    callback=None,
    step_budget=None,
):
    explicit_work = _explicit_work(solver)
    counted = _counts_work(solver)
    params, static = problem.split()
    t0 = jnp.zeros((), t1.dtype) if t0 is None else t0
    if save_ts is None:
        save_ts = default_save_times(t0, t1, num_saves, lam, slow)

    def field(t, y, args):
        del t, args
        return vector_field(y, static, problem, lam, slow)

    def observe(t, y, args):
        del args
        obs = observables(y, static, problem, lam)
        if callback is not None:
            jax.debug.callback(_host_callback(callback), t, obs)
        return obs

    def stop_hits(y):
        values = observables(y, static, problem, lam, names=tuple(name for name, _ in stops))
        return jnp.stack([_STOP_OPS[op](values[name], stop_values[i]) for i, (name, op) in enumerate(stops)])

    def stopping(t, y, args, **kwargs):
        del t, args, kwargs
        return jnp.any(stop_hits(y))

    def diverging(t, y, args, **kwargs):
        del t, args, kwargs
        return jnp.logical_not(tree_all_finite(y)) | (tree_norm(y) > divergence_norm)

    subs = [diffrax.SubSaveAt(ts=save_ts, fn=observe), diffrax.SubSaveAt(t1=True)]
    if save_params:
        subs.append(diffrax.SubSaveAt(ts=save_ts))
    saveat = diffrax.SaveAt(subs=subs, controller_state=True)
    # Initial step: the time for θ to move by 0.1% of (1 + ‖θ0‖). Diffrax's own choice
    # (dt0=None) extrapolates with a second evaluation that can overflow on stiff polynomial
    # models in slow time, returning dt0 = 0 and a solve that never advances.
    speed = tree_norm(field(t1, params, None))
    tiny = jnp.finfo(t1.dtype).tiny
    dt0 = jnp.minimum(t1 - t0, 1e-3 * (1.0 + tree_norm(params)) / jnp.maximum(speed, tiny))
    conditions = {"diverged": diverging}
    if stops:
        conditions["stop"] = stopping
    meters = {
        "none": diffrax.NoProgressMeter(),
        "bar": diffrax.TqdmProgressMeter(),
        "text": diffrax.TextProgressMeter(minimum_increase=0.1),
    }
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(field),
        make_solver(solver, problem, lam, slow, rtol, atol),
        t0=t0,
        t1=t1,
        dt0=dt0,
        y0=params,
        saveat=saveat,
        stepsize_controller=NonFiniteGuard(_controller(solver, rtol, atol), step_budget),
        event=diffrax.Event(conditions),
        max_steps=max_steps,
        throw=False,
        progress_meter=meters[progress],
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
    inner_state, non_finite_streak, _ = sol.controller_state
    result = RESULTS.where(non_finite_streak >= NON_FINITE_PATIENCE, RESULTS.non_finite_field, result)
    stopped_by = jnp.asarray(-1)
    if sol.event_mask is not None:
        result = RESULTS.where(sol.event_mask["diverged"], RESULTS.diverged, result)
        if stops:
            # Which condition ended the solve: the first that holds at the final state.
            hits = stop_hits(jtu.tree_map(lambda x: x[0], final_params))
            stopped = sol.event_mask["stop"] & ~sol.event_mask["diverged"]
            stopped_by = jnp.where(stopped, jnp.argmax(hits), -1)
            result = RESULTS.where(stopped, RESULTS.successful, result)

    stats = {
        "num_steps": sol.stats["num_steps"],
        "num_accepted_steps": sol.stats["num_accepted_steps"],
        "num_rejected_steps": sol.stats["num_rejected_steps"],
        "max_steps": jnp.asarray(max_steps),
    }
    if explicit_work is not None:
        # One evaluation picks dt0 (and an FSAL method evaluates f(θ0) once more), then every
        # attempted step (rejected ones included) evaluates its new stages.
        at_start, per_step = explicit_work
        stats["num_vf_evals"] = at_start + per_step * sol.stats["num_steps"]
    if counted:
        # Exact counts from the controller (rejected steps included), plus the evaluation that
        # picks dt0 and the solver's start-up work (its first f(θ0), RKC's power method).
        counts, startup = inner_state[1], _startup_counts(solver)
        stats.update({k: counts[k] + startup.get(k, 0) for k in COUNT_KEYS})
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
        solver=solver_name(solver),
        params=saved_params,
        stopped_by=stopped_by,
        stop_conditions=tuple(f"{name} {op} {{}}" for name, op in stops),
        stop_values=stop_values,
    )
