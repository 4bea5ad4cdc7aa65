r"""RKC and RKC1: Runge–Kutta–Chebyshev solvers (second and first order) for stiff gradient flows,
as Diffrax solvers.

Why it fits gradient flow. The Jacobian of dθ/dt = −∇F(θ) − λθ is −(∇²F + λI): symmetric, so
its spectrum is real. An explicit method with s stages built on Chebyshev polynomials is stable
on the real interval [−β(s), 0] with β(s) ≈ 0.653·s², so a step of size h over a flow of
spectral radius ρ needs only s ≈ √(1.54·hρ) gradients instead of the ≈ hρ/3 of a classical
explicit method, and no linear solve at all (Sommeijer, Shampine & Verwer 1997, "RKC: an
explicit solver for parabolic PDEs"; van der Houwen & Sommeijer 1980). Where Rosenbrock-W
methods pay for conjugate-gradient solves with many large Gauss–Newton eigenvalues, RKC pays
√(hρ) gradients per step whatever the conditioning; and, being explicit, it runs on losses with
ReLU kinks, where the W-matrix of a Rosenbrock method is not defined across a kink.

The scheme (s ≥ 2 stages, damping ε = 2/13, w0 = 1 + ε/s², w1 = T_s'(w0)/T_s''(w0), T_j the
Chebyshev polynomials, b_j = T_j''(w0)/T_j'(w0)² for j ≥ 2, b0 = b1 = b2, a_j = 1 − b_j T_j(w0)):

    Y0 = θ_n,   Y1 = Y0 + μ̃1 h f(Y0),   μ̃1 = b1 w1,
    Yj = (1 − μj − νj) Y0 + μj Y_{j−1} + νj Y_{j−2} + μ̃j h f(Y_{j−1}) + γ̃j h f(Y0),
    μj = 2 w0 bj / b_{j−1},  νj = −bj / b_{j−2},  μ̃j = 2 w1 bj / b_{j−1},  γ̃j = −a_{j−1} μ̃j,
    θ_{n+1} = Ys.

Its local error estimate is (1/15)·[12(θ_n − θ_{n+1}) + 6h(f(θ_n) + f(θ_{n+1}))] (order 3, the
same as the RKC code's), and f(θ_{n+1}) is reused as the next step's f(Y0). The stability
polynomial is bounded by 0.95–0.96 in modulus on [−β(s), −0.05]: stiff components are damped, not
annihilated (RKC is not L-stable), which suits a flow whose stiff modes sit at a slowly moving
equilibrium.

The spectral radius ρ comes from the power method on Jacobian–vector products (forward over
reverse: Hessian–vector products, counted as `num_hvps`): `initial_power_iterations` at θ0 from a
fixed random vector, then `power_iterations` per step from the last vector, so the estimate
follows the sharpness along the solve (it falls after the fit of a large initialisation, and the
stage count with it). Each step uses s = 1 + ⌊√(1 + 1.54·h·safety·ρ)⌋ stages, at least 2; a step
that would need more than `max_stages` is rejected (the controller then shrinks it).

RKC1, the first-order damped Chebyshev method (van der Houwen & Sommeijer 1980; Verwer,
Hundsdorfer & Sommeijer 1990, "Convergence properties of the Runge–Kutta–Chebyshev method";
Verwer 1996, "Explicit Runge–Kutta methods for parabolic partial differential equations"), gives
up the second order for a stability interval three times as long: with w0 = 1 + ε/s²,
w1 = T_s(w0)/T_s'(w0) and b_j = 1/T_j(w0),

    Y1 = Y0 + (w1/w0) h f(Y0),   Yj = μj Y_{j−1} + νj Y_{j−2} + μ̃j h f(Y_{j−1}),
    μj = 2 w0 bj / b_{j−1},  νj = −bj / b_{j−2},  μ̃j = 2 w1 bj / b_{j−1},  θ_{n+1} = Ys,

whose stability polynomial is T_s(w0 + w1 z)/T_s(w0): stable on [−β1(s), 0] with
β1(s) = (1 + w0)·T_s'(w0)/T_s(w0) ≈ 1.94·s² at ε = 0.05, and bounded by 1/T_s(w0) ≈ 0.95 in
modulus away from 0 (the same damping as RKC's). So a step of hρ takes s = ⌈√(0.52·hρ)⌉ stages,
0.58 times RKC's. Its error estimate θ_{n+1} − θ_n − (h/2)(f(θ_n) + f(θ_{n+1})) is the step's
distance from the trapezoidal rule, O(h²) on a smooth flow: the method's own local error to
leading order. Where the field has kinks (ReLU) no method is better than first order across a
kink, a stiff kinked flow's steps are held by the kinks and by the stiff components the error
estimate sees, not by the order, and RKC1 takes about as many steps as RKC at 0.58 times the
stages (benchmarks/README.md, "ReLU flows"): `solver="auto"` races it, not RKC, against Bosh3 on
such flows.
"""

from __future__ import annotations

from typing import ClassVar

import diffrax
import equinox as eqx
import jax
import jax.flatten_util
import jax.numpy as jnp

from ._rosenbrock import FlatField, _add, zero_counts

# ε of Sommeijer et al.: damping that keeps the stability polynomial below ≈ 1 − ε/3 in modulus on
# the stability interval away from 0 (at a 2ε/15 ≈ 2% shorter interval than ε = 0 would give).
DAMPING = 2.0 / 13.0
# s = 1 + ⌊√(1 + STAGE_FACTOR·hρ)⌋ gives β(s) ≈ 0.653·s² ≥ hρ (the RKC code's rule).
STAGE_FACTOR = 1.54
# RKC1: ε = 0.05 bounds the polynomial by 1/T_s(1 + ε/s²) ≈ 1/cosh(√(2ε)) ≈ 0.95 away from 0, as
# RKC's ε = 2/13 does, at β1(s) ≥ 1.936·s² (1 − 2ε/3 of the undamped 2s²). s = ⌈√(0.52·hρ)⌉
# gives s² ≥ 0.52·hρ > hρ/1.936, so β1(s) ≥ 1.936·s² ≥ hρ (tested).
DAMPING_FIRST_ORDER = 0.05
STAGE_FACTOR_FIRST_ORDER = 0.52
# Default stage caps (`max_stages=None`) by the state's precision.
MAX_STAGES_FLOAT64 = 1000
MAX_STAGES_FLOAT32 = 100


def power_iterations(field: FlatField, flat, v, iterations: int):
    """`iterations` steps of the power method on J = ∂f/∂θ at `flat`, from the unit vector `v`.

    Returns (v, ‖Jv‖): the new unit vector and the norm of the last product, a lower bound on the
    spectral radius of J that converges to it. For a gradient flow J is symmetric, so ‖Jv‖ is
    closer to ρ than the Rayleigh quotient vᵀJv. A zero product (a null direction) keeps `v`.
    """

    def body(_, carry):
        v, _ = carry
        w = jax.jvp(field, (flat,), (v,))[1]
        norm = jnp.linalg.norm(w)
        return jnp.where(norm > 0, w / jnp.where(norm > 0, norm, 1), v), norm

    return jax.lax.fori_loop(0, iterations, body, (v, jnp.zeros((), flat.dtype)))


def stage_count(h_rho, max_stages: int, order: int = 2):
    """(s, too_stiff): the stages for a step of hρ (clipped to [2, max_stages] for RKC,
    [1, max_stages] for RKC1, `order=1`) and whether it would need more than `max_stages`."""
    if order == 1:
        wanted = jnp.maximum(jnp.ceil(jnp.sqrt(STAGE_FACTOR_FIRST_ORDER * h_rho)), 1)
    else:
        wanted = 1 + jnp.floor(jnp.sqrt(1 + STAGE_FACTOR * h_rho))
    return jnp.clip(wanted, order, max_stages).astype(jnp.int32), wanted > max_stages


def chebyshev_at(x, s):
    """(T_s(x), T_s'(x), T_s''(x)) by the three-term recurrence, for a traced integer s ≥ 1."""

    def body(_, c):
        t1, t0, d1, d0, e1, e0 = c
        return 2 * x * t1 - t0, t1, 2 * t1 + 2 * x * d1 - d0, d1, 4 * d1 + 2 * x * e1 - e0, e1

    one, zero = jnp.ones_like(x), jnp.zeros_like(x)
    t, _, d, _, e, _ = jax.lax.fori_loop(2, s + 1, body, (x, one, one, zero, zero, zero))
    return t, d, e


def stability_bound(s, damping: float | None = None, order: int = 2):
    """β(s): the s-stage method is stable for real eigenvalues hμ ∈ [−β(s), 0].
    RKC: β(s) = (1 + w0)·T_s''(w0)/T_s'(w0) ≈ 0.653·s² at ε = 2/13;
    RKC1 (`order=1`): β1(s) = (1 + w0)·T_s'(w0)/T_s(w0) ≈ 1.94·s² at ε = 0.05."""
    damping = _default_damping(order) if damping is None else damping
    s = jnp.asarray(s)
    w0 = 1 + damping / s.astype(jnp.result_type(float)) ** 2
    t, d, e = chebyshev_at(w0, s)
    return (1 + w0) * (e / d if order == 2 else d / t)


def stability_polynomial(z, s, damping: float | None = None, order: int = 2):
    """The factor by which one step multiplies the component of an eigenvalue μ of J, z = hμ:
    R_s(z) = a_s + b_s·T_s(w0 + w1 z) for RKC, T_s(w0 + w1 z)/T_s(w0) for RKC1 (for tests and
    plots)."""
    damping = _default_damping(order) if damping is None else damping
    z = jnp.asarray(z)
    w0 = 1 + damping / float(s) ** 2
    ts, ds, es = chebyshev_at(jnp.asarray(w0, z.dtype), s)
    t_of = jax.vmap(lambda x: chebyshev_at(x, s)[0]) if z.ndim else (lambda x: chebyshev_at(x, s)[0])
    if order == 1:
        return t_of(w0 + (ts / ds) * z) / ts
    b = es / ds**2
    return 1 - b * ts + b * t_of(w0 + (ds / es) * z)


def _default_damping(order: int) -> float:
    return DAMPING if order == 2 else DAMPING_FIRST_ORDER


class _Chebyshev(diffrax.AbstractAdaptiveSolver):
    """What RKC and RKC1 share: the fields, the power method, the stage rule, the error pair with
    work counts and the cubic Hermite dense output; a subclass gives `_stages` and `_error`."""

    damping: eqx.AbstractVar[float]
    max_stages: int | None = eqx.field(static=True, default=None)
    safety: float = eqx.field(static=True, default=1.2)
    power_iterations: int = eqx.field(static=True, default=1)
    initial_power_iterations: int = eqx.field(static=True, default=20)

    term_structure: ClassVar = diffrax.AbstractTerm
    interpolation_cls: ClassVar = diffrax.ThirdOrderHermitePolynomialInterpolation.from_k

    def __check_init__(self):
        name, least = type(self).__name__, self.order(None)  # RKC needs two stages, RKC1 one
        if self.max_stages is not None and not (isinstance(self.max_stages, int) and self.max_stages >= least):
            raise ValueError(f"{name} needs max_stages >= {least}, got {self.max_stages!r}")
        if not 0 <= self.damping < 1:
            raise ValueError(f"{name} damping must be in [0, 1), got {self.damping!r}")
        if not self.safety >= 1:
            raise ValueError(f"{name} safety must be >= 1, got {self.safety!r}")

    def startup_counts(self) -> dict[str, int]:
        """Work done by `init` (not seen by the step-size controller): f(θ0) and the power method."""
        return {"num_vf_evals": 1, "num_hvps": self.initial_power_iterations}

    def init(self, terms, t0, t1, y0, args):
        del t1
        flat0, unravel = jax.flatten_util.ravel_pytree(y0)
        field = FlatField(terms, t0, args, unravel)
        f0 = field(flat0)
        # A fixed random start: a structured one (all ones) can be orthogonal to the top
        # eigenvector of a symmetric network.
        v0 = jax.random.normal(jax.random.PRNGKey(0), flat0.shape, flat0.dtype)
        v0 = v0 / jnp.linalg.norm(v0)
        v, rho = power_iterations(field, flat0, v0, self.initial_power_iterations)
        return f0, v, rho

    def func(self, terms, t0, y0, args):
        return terms.vf(t0, y0, args)

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        flat0, unravel = jax.flatten_util.ravel_pytree(y0)
        dtype = flat0.dtype
        h = jnp.asarray(t1 - t0, dtype)
        field_at = lambda t: FlatField(terms, t, args, unravel)
        counts = zero_counts()

        f0, v, rho = solver_state
        if made_jump is not False:
            f0 = jax.lax.cond(made_jump, lambda: field_at(t0)(flat0), lambda: f0)
            counts = _add(counts, num_vf_evals=jnp.asarray(made_jump).astype(jnp.int32))

        v, rho = power_iterations(field_at(t0), flat0, v, self.power_iterations)
        counts = _add(counts, num_hvps=self.power_iterations)
        max_stages = self.max_stages
        if max_stages is None:
            max_stages = MAX_STAGES_FLOAT64 if jnp.finfo(dtype).bits >= 64 else MAX_STAGES_FLOAT32
        s, too_stiff = stage_count(h * self.safety * rho, max_stages, self.order(terms))
        last = jnp.where(too_stiff, 1, s)  # a step beyond max_stages runs one stage, then is rejected
        flat1 = self._stages(field_at, t0, h, flat0, f0, s, last)
        f1 = field_at(t1)(flat1)
        counts = _add(counts, num_vf_evals=last)

        error = jnp.where(too_stiff, jnp.inf, self._error(flat0, flat1, f0, f1, h))
        y1_tree = unravel(flat1)
        k = jax.vmap(unravel)(jnp.stack([h * f0, h * f1]))
        dense_info = dict(y0=y0, y1=y1_tree, k=k)
        return y1_tree, (unravel(error), counts), dense_info, (f1, v, rho), diffrax.RESULTS.successful


class RKC(_Chebyshev):
    r"""Second-order Runge–Kutta–Chebyshev (RKC) with a variable number of stages per step.

    Explicit, stabilized for real (symmetric-Jacobian) spectra: s stages reach real eigenvalues
    down to −0.653·s²/h, and s is chosen every step from a power-method estimate of the spectral
    radius (see the module docstring for the scheme). No linear solves and no Jacobian is formed.
    Dense output: cubic Hermite from θ and f at both ends of the step.

    Its error estimate is a pair `(error, counts)` (gradient evaluations and Hessian–vector
    products of the step, rejected steps included): use it with
    `gflow._rosenbrock.CountingController`, as `gflow.simulate` does.

    **Arguments** (all static):

    - `damping`: ε (default 2/13).
    - `max_stages`: the most stages per step; default (None) 1000 in float64 (a stability interval
      of ≈ 6.5·10⁵/h) and 100 in float32 (≈ 6.5·10³/h), where round-off in the three-term
      recurrence, which grows like s²·eps on the stiff components, would otherwise exceed the
      default float32 tolerances.
    - `safety`: factor on the estimated spectral radius (default 1.2): the power method
      approaches ρ from below.
    - `power_iterations`: power-method products per step (default 1, warm-started).
    - `initial_power_iterations`: products at θ0 (default 20).
    """

    damping: float = eqx.field(static=True, default=DAMPING)

    def order(self, terms):
        return 2

    def _stages(self, field_at, t0, h, flat0, f0, s, last):
        dtype = flat0.dtype
        w0 = 1 + self.damping / s.astype(dtype) ** 2
        _, ds, es = chebyshev_at(w0, s)
        w1 = ds / es
        b2 = 1 / (4 * w0**2)  # T_2''/T_2'² = 4/(4 w0)²; b0 = b1 = b2
        mu1 = b2 * w1
        one, zero = jnp.ones((), dtype), jnp.zeros((), dtype)

        def stage(j, carry):
            y_1, y_2, t_1, t_2, d_1, d_2, e_1, e_2, b_1, b_2, c_1, c_2 = carry
            t_j = 2 * w0 * t_1 - t_2
            d_j = 2 * t_1 + 2 * w0 * d_1 - d_2
            e_j = 4 * d_1 + 2 * w0 * e_1 - e_2
            b_j = e_j / d_j**2
            mu = 2 * w0 * b_j / b_1
            nu = -b_j / b_2
            mu_t = 2 * w1 * b_j / b_1
            gamma_t = -(1 - b_1 * t_1) * mu_t
            f_1 = field_at(t0 + c_1 * h)(y_1)
            y_j = (1 - mu - nu) * flat0 + mu * y_1 + nu * y_2 + (mu_t * h) * f_1 + (gamma_t * h) * f0
            c_j = mu * c_1 + nu * c_2 + mu_t + gamma_t
            return y_j, y_1, t_j, t_1, d_j, d_1, e_j, e_1, b_j, b_1, c_j, c_1

        y1 = flat0 + (mu1 * h) * f0
        # Chebyshev values start at j = 1 (T_1 = w0, T_1' = 1, T_1'' = 0) and j = 0 (1, 0, 0).
        carry = (y1, flat0, w0, one, one, zero, zero, zero, b2, b2, mu1, zero)
        return jax.lax.fori_loop(2, last + 1, stage, carry)[0]

    def _error(self, flat0, flat1, f0, f1, h):
        return (0.8 * (flat0 - flat1)) + (0.4 * h) * (f0 + f1)


class RKC1(_Chebyshev):
    r"""First-order damped Runge–Kutta–Chebyshev (RKC1) with a variable number of stages per step.

    The explicit Chebyshev method of order one: s stages reach real eigenvalues down to
    −1.94·s²/h (RKC's 0.653·s² at order two), so a step takes 0.58 times RKC's stages; the
    scheme, its error estimate (the step against the trapezoidal rule) and its literature are in
    the module docstring. For kinked (ReLU) flows, across whose kinks no method is better than
    first order: `solver="auto"` races it against Bosh3 where such a flow may be stiff. On a
    smooth flow at a tight tolerance RKC's second order takes far fewer steps.

    Same work counting, dense output and **arguments** as `RKC`, except `damping`: ε (default
    0.05) and `max_stages` ≥ 1 (one stage is explicit Euler).
    """

    damping: float = eqx.field(static=True, default=DAMPING_FIRST_ORDER)

    def order(self, terms):
        return 1

    def _stages(self, field_at, t0, h, flat0, f0, s, last):
        dtype = flat0.dtype
        w0 = 1 + self.damping / s.astype(dtype) ** 2
        ts, ds, _ = chebyshev_at(w0, s)
        w1 = ts / ds

        def stage(j, carry):
            # With b_j = 1/T_j(w0) the ratios b_j/b_{j−1} = T_{j−1}(w0)/T_j(w0) need T_j(w0) only.
            y_1, y_2, t_1, t_2, c_1, c_2 = carry
            t_j = 2 * w0 * t_1 - t_2
            mu, nu, mu_t = 2 * w0 * t_1 / t_j, -t_2 / t_j, 2 * w1 * t_1 / t_j
            f_1 = field_at(t0 + c_1 * h)(y_1)
            y_j = mu * y_1 + nu * y_2 + (mu_t * h) * f_1
            return y_j, y_1, t_j, t_1, mu * c_1 + nu * c_2 + mu_t, c_1

        mu1 = w1 / w0
        y1 = flat0 + (mu1 * h) * f0
        # T_1(w0) = w0, T_0 = 1; the stage times c_1 = μ̃1, c_0 = 0.
        carry = (y1, flat0, w0, jnp.ones((), dtype), mu1, jnp.zeros((), dtype))
        return jax.lax.fori_loop(2, last + 1, stage, carry)[0]

    def _error(self, flat0, flat1, f0, f1, h):
        return (flat1 - flat0) - (0.5 * h) * (f0 + f1)


_ARGS_DOC = """**Arguments:** `damping`, `max_stages`, `safety`, `power_iterations`,
`initial_power_iterations` (see the class docstring)."""
RKC.__init__.__doc__ = _ARGS_DOC
RKC1.__init__.__doc__ = _ARGS_DOC
