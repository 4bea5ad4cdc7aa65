"""Tiny user problem factories for tests/test_cli_user_problem.py (`gflow run user_problems:NAME`).

Imported by gflow from the current directory, as a user's own module would be.
"""

import equinox as eqx
import jax
import jax.numpy as jnp

import gflow


def regression(key, *, n: int = 8, d: int = 4, scale: float = 1.0):
    """Full-rank linear regression y = X w⋆ with a bias-free eqx.nn.Linear: fits fast, λ shrinks it."""
    k_x, k_w, k_m, k_t = jax.random.split(key, 4)
    x = jax.random.normal(k_x, (n, d))
    w_star = jax.random.normal(k_w, (d,))
    x_test = jax.random.normal(k_t, (16, d))
    model = eqx.nn.Linear(d, "scalar", use_bias=False, key=k_m)
    model = eqx.tree_at(lambda m: m.weight, model, scale * model.weight)
    return gflow.Problem(model, {"x": x, "y": x @ w_star}, loss="mse", test={"x": x_test, "y": x_test @ w_star})


def regression_alpha(key, alpha):
    """`(key, alpha)`: the initial weights scaled by α."""
    return regression(key, scale=alpha)


def raises(key):
    raise ValueError("no data for this seed")


def returns_dict(key):
    return {"model": jnp.zeros(3)}


not_callable = 42
