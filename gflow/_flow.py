"""The regularised gradient field and the observables recorded along a run."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu

from ._problem import Problem, _sq_norm


def train_loss(params, static, problem: Problem) -> jax.Array:
    """F(θ) on the training data, as a function of the parameter pytree."""
    return problem.loss(eqx.combine(params, static), problem.train)


def regularised_gradient(params, static, problem: Problem, lam) -> tuple[jax.Array, ...]:
    """∇F_λ(θ) = ∇F(θ) + λ m⊙θ, as a pytree like `params`."""
    grad = jax.grad(train_loss)(params, static, problem)
    return jtu.tree_map(lambda g, x: g + lam * x, grad, problem.decayed(params))


def vector_field(params, static, problem: Problem, lam, slow: bool):
    """dθ/dt = −∇F_λ(θ); in slow time τ = λt, dθ/dτ = −∇F_λ(θ)/λ."""
    grad = regularised_gradient(params, static, problem, lam)
    scale = -1.0 / lam if slow else -1.0
    return jtu.tree_map(lambda g: (scale * g).astype(g.dtype), grad)


BUILTIN_METRICS = ("train_loss", "objective", "norm", "grad_norm", "test_loss")


def metric_names(problem: Problem) -> tuple[str, ...]:
    """The names `observables` records for `problem`, in order."""
    builtin = BUILTIN_METRICS if problem.test is not None else BUILTIN_METRICS[:-1]
    return builtin + tuple(name for name, _, _ in problem.metric_items)


def observables(params, static, problem: Problem, lam, names=None) -> dict[str, jax.Array]:
    """Every scalar a `Trajectory` records at a save time (see `Trajectory.metrics`).

    `names` (a tuple of `metric_names`) computes only those: a stop condition evaluated at
    every step then costs what its metric costs (a test forward pass, say), not a gradient.
    """
    want = set(metric_names(problem) if names is None else names)
    model = eqx.combine(params, static)
    out = {}
    dtype = jnp.result_type(*jtu.tree_leaves(params))
    if "grad_norm" in want:
        loss, grad = jax.value_and_grad(train_loss)(params, static, problem)
        out["grad_norm"] = jnp.sqrt(_sq_norm(grad))
    elif want & {"train_loss", "objective"}:
        loss = train_loss(params, static, problem)
    if want & {"objective", "norm"}:
        sq = _sq_norm(problem.decayed(params))
    if "train_loss" in want:
        out["train_loss"] = loss
    if "objective" in want:
        out["objective"] = loss + 0.5 * lam * sq
    if "norm" in want:
        out["norm"] = jnp.sqrt(sq)
    if "test_loss" in want and problem.test is not None:
        out["test_loss"] = problem.loss(model, problem.test)
    for name, split, fn in problem.metric_items:
        if name in want:
            data = problem.train if split == "train" else problem.test
            out[name] = jnp.asarray(fn(model, data), dtype=dtype)
    # Always the same order (metric_names), whatever was asked.
    return {k: out[k] for k in metric_names(problem) if k in out}


def tree_all_finite(tree) -> jax.Array:
    leaves = jtu.tree_leaves(tree)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


def tree_norm(tree) -> jax.Array:
    return jnp.sqrt(_sq_norm(tree))
