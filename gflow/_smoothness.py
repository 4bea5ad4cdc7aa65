"""Is a Problem's gradient field smooth? Find the operations that put kinks into the loss.

A ReLU network's loss is continuous but its gradient jumps wherever a pre-activation changes
sign, so the gradient-flow vector field −∇F − λθ is discontinuous there. Adaptive Runge–Kutta
solvers assume a smooth field: at each kink the local error of a step is O(h·|jump|) whatever the
method's order, and an error controller at a tight tolerance shrinks the step at every crossing
(the "crawl" of issue 12). `solver="auto"` reads the jaxpr of the training loss to tell such
models apart from smooth ones before choosing a method.

The analysis is a forward dependence pass ("which values depend on θ?") and a backward liveness
pass ("which values reach F without a `stop_gradient`?") over the jaxpr of θ ↦ F(θ), recursing
into `jit`, `custom_jvp`/`custom_vjp`, `cond`, `while`, `scan` and `remat` bodies. An equation is
a kink when its output reaches F and it is either
- a non-smooth primitive (`max`, `min`, `abs`, `sign`, `reduce_max`, `sort`, …) with an input
  that depends on θ, or
- a floating-point result that depends on a θ-dependent boolean or integer (`select_n` on a
  comparison, as in `jnp.where(x > 0, x, 0.01 * x)`, or a conversion of one to a float: a jump).

It is conservative: a loss built from non-smooth pieces that happen to combine smoothly is
reported, except for the library functions known to be smooth (`logaddexp`, hence `softplus`;
`logsumexp` cuts its `max` with `stop_gradient`), and `abs`, `sign` or `max(0, ·)` of values known
to be non-negative (sums of exponentials or squares, a variance: `eqx.nn.LayerNorm` clamps its
variance with `max(0, var)`, which never binds). A false alarm costs speed (the kink-robust path), a miss would cost
correctness.
"""

from __future__ import annotations

import jax
import jax.extend.core as jex_core
import jax.numpy as jnp
import numpy as np

from ._flow import train_loss
from ._problem import Problem

# Primitives whose derivative jumps where their inputs tie or cross zero.
NONSMOOTH_PRIMITIVES = frozenset(
    {
        "max",
        "min",
        "abs",
        "sign",
        "floor",
        "ceil",
        "round",
        "clamp",
        "reduce_max",
        "reduce_min",
        "argmax",
        "argmin",
        "sort",
        "cummax",
        "cummin",
        "rem",
        "reduce_precision",
    }
)
# Custom-derivative functions of JAX that are smooth although built from max/abs/select.
SMOOTH_CUSTOM_FUNCTIONS = frozenset({"logaddexp", "logaddexp2", "logsumexp", "softplus", "log_softmax", "softmax"})
# Sign bookkeeping, used to clear abs/sign/max(0, ·) of values that cannot be negative (a sum
# of exponentials in logsumexp, a variance in LayerNorm).
_NONNEG_FROM_ANY = frozenset({"exp", "exp2", "logistic", "square", "abs", "sqrt"})
_NONNEG_IF_ALL_NONNEG = frozenset(
    {
        "reduce_sum",
        "add",
        "mul",
        "div",
        "rsqrt",
        "broadcast_in_dim",
        "reshape",
        "squeeze",
        "expand_dims",
        "transpose",
        "convert_element_type",
        "reduce_max",
        "reduce_min",
        "min",
    }
)
# JAX's internal functions whose output is non-negative whatever their input (jnp.var).
_NONNEG_FUNCTIONS = frozenset({"_var"})
# Loops: the body runs repeatedly, so dependence is propagated conservatively (all or nothing).
_LOOPS = frozenset({"while", "scan"})


def _is_var(x) -> bool:
    return not isinstance(x, jex_core.Literal)


def _discrete(aval) -> bool:
    dtype = getattr(aval, "dtype", None)
    return dtype is not None and not jnp.issubdtype(dtype, jnp.inexact)


def _sub_jaxprs(eqn):
    found = []
    for value in eqn.params.values():
        items = value if isinstance(value, tuple | list) else (value,)
        for item in items:
            if isinstance(item, jex_core.ClosedJaxpr):
                found.append(item.jaxpr)
            elif isinstance(item, jex_core.Jaxpr):
                found.append(item)
    return found


def _mapped(eqn, sub) -> bool:
    # A call whose body takes the equation's inputs and returns its outputs one to one.
    return (
        eqn.primitive.name not in _LOOPS and len(sub.invars) == len(eqn.invars) and len(sub.outvars) == len(eqn.outvars)
    )


def _live_inputs(jaxpr, live_out: list[bool]) -> tuple[set, list[bool]]:
    """Backward pass: the variables of `jaxpr` whose value reaches a live output other than
    through `stop_gradient`, and which invars are live."""
    live = {v for v, keep in zip(jaxpr.outvars, live_out, strict=True) if keep and _is_var(v)}
    for eqn in reversed(jaxpr.eqns):
        if eqn.primitive.name == "stop_gradient" or not any(v in live for v in eqn.outvars):
            continue
        live.update(v for v in eqn.invars if _is_var(v))
    return live, [v in live for v in jaxpr.invars]


def _nonneg_result(eqn, nonneg) -> bool:
    name = eqn.primitive.name
    if name in _NONNEG_FROM_ANY:
        return True
    if name == "integer_pow":
        return eqn.params["y"] % 2 == 0
    if name == "mul" and len(eqn.invars) == 2 and eqn.invars[0] is eqn.invars[1]:
        return _is_var(eqn.invars[0])
    if name == "max":
        return any(nonneg(v) for v in eqn.invars)
    return name in _NONNEG_IF_ALL_NONNEG and all(nonneg(v) for v in eqn.invars)


def _scan(jaxpr, depends_in: list[bool], nonneg_in: list[bool], live_out: list[bool], where: str, found: list):
    """Forward pass over `jaxpr`; appends kinks to `found`; returns which outputs depend on θ and
    which are known to be non-negative."""
    live, _ = _live_inputs(jaxpr, live_out)
    depends = {v for v, d in zip(jaxpr.invars, depends_in, strict=True) if d}
    nonneg_vars = {v for v, p in zip(jaxpr.invars, nonneg_in, strict=True) if p}

    def dep(v):
        return _is_var(v) and v in depends

    def nonneg(v):
        if not _is_var(v):
            return bool(np.all(np.asarray(v.val) >= 0))
        return v in nonneg_vars

    def nonpositive_literal(v):
        return not _is_var(v) and bool(np.all(np.asarray(v.val) <= 0))

    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == "stop_gradient":
            continue
        dep_in = [dep(v) for v in eqn.invars]
        if not any(dep_in):
            continue
        reaches = any(v in live for v in eqn.outvars)
        inner = eqn.params.get("name")
        # Name a kink after the outermost public function around it (leaky_relu, not _where).
        label = str(inner) if inner and not str(inner).startswith("_") else where
        subs = _sub_jaxprs(eqn)
        if subs:
            # A branch index (cond) or loop predicate (while) that depends on θ switches the
            # computation: the loss jumps or kinks where it flips.
            switch = name == "while" or (name == "cond" and dep_in[0])
            if switch and reaches:
                found.append(f"{name} (in {label})" if label != "loss" else name)
            out_nonneg = [inner in _NONNEG_FUNCTIONS] * len(eqn.outvars)
            if name == "custom_jvp_call" and label in SMOOTH_CUSTOM_FUNCTIONS:
                out_dep = [True] * len(eqn.outvars)
            elif len(subs) == 1 and _mapped(eqn, subs[0]):
                out_dep, sub_nonneg = _scan(
                    subs[0],
                    dep_in,
                    [nonneg(v) for v in eqn.invars],
                    [v in live for v in eqn.outvars],
                    label,
                    found,
                )
                out_nonneg = [a or b for a, b in zip(out_nonneg, sub_nonneg, strict=True)]
            else:
                for sub in subs:
                    _scan(
                        sub,
                        [True] * len(sub.invars),
                        [False] * len(sub.invars),
                        [reaches] * len(sub.outvars),
                        label,
                        found,
                    )
                out_dep = [True] * len(eqn.outvars)
            depends.update(v for v, d in zip(eqn.outvars, out_dep, strict=True) if d)
            nonneg_vars.update(v for v, p in zip(eqn.outvars, out_nonneg, strict=True) if p)
            continue
        depends.update(eqn.outvars)
        if _nonneg_result(eqn, nonneg):
            nonneg_vars.update(eqn.outvars)
        if not reaches:
            continue
        kink = False
        if name in ("abs", "sign"):
            kink = not all(nonneg(v) for v in eqn.invars)
        elif name == "max":
            # max(0, v) with v ≥ 0 is v: the clamp never binds.
            variables = [v for v in eqn.invars if _is_var(v)]
            literals = [v for v in eqn.invars if not _is_var(v)]
            clamp = (
                len(variables) == 1 and nonneg(variables[0]) and literals and all(map(nonpositive_literal, literals))
            )
            kink = not clamp
        elif name in NONSMOOTH_PRIMITIVES:
            kink = True
        elif any(_discrete(v.aval) for v, d in zip(eqn.invars, dep_in, strict=True) if d):
            # A θ-dependent boolean or integer steering a floating-point result: a jump.
            kink = any(not _discrete(v.aval) for v in eqn.outvars)
        if kink:
            found.append(f"{name} (in {label})" if label != "loss" else name)
    return [dep(v) for v in jaxpr.outvars], [nonneg(v) for v in jaxpr.outvars]


def nonsmooth_operations(problem: Problem) -> tuple[str, ...]:
    """The operations that make the training loss F(θ) non-smooth in θ, e.g. `("max (in relu)",)`
    for a ReLU network; `()` when F is smooth (its gradient field continuous), as far as its
    jaxpr shows.

    Traced once (no compilation). Used by `solver="auto"`: a non-empty answer sends the problem to
    the kink-robust solver (`choose_solver`).
    """
    params, static = problem.split()
    closed = jax.make_jaxpr(lambda p: train_loss(p, static, problem))(params)
    found: list[str] = []
    n_in = len(closed.jaxpr.invars)
    _scan(closed.jaxpr, [True] * n_in, [False] * n_in, [True] * len(closed.jaxpr.outvars), "loss", found)
    return tuple(dict.fromkeys(found))
