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


def observables(params, static, problem: Problem, lam) -> dict[str, jax.Array]:
    """Every scalar a `Trajectory` records at a save time (see `Trajectory.metrics`)."""
    model = eqx.combine(params, static)
    loss, grad = jax.value_and_grad(train_loss)(params, static, problem)
    sq = _sq_norm(problem.decayed(params))
    out = {
        "train_loss": loss,
        "objective": loss + 0.5 * lam * sq,
        "norm": jnp.sqrt(sq),
        "grad_norm": jnp.sqrt(_sq_norm(grad)),
    }
    if problem.test is not None:
        out["test_loss"] = problem.loss(model, problem.test)
    for name, split, fn in problem.metric_items:
        data = problem.train if split == "train" else problem.test
        out[name] = jnp.asarray(fn(model, data), dtype=loss.dtype)
    return out


def tree_all_finite(tree) -> jax.Array:
    leaves = jtu.tree_leaves(tree)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


def tree_norm(tree) -> jax.Array:
    return jnp.sqrt(_sq_norm(tree))
