"""Equinox models used by the built-in tasks. Each is called on one example `x`."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp


class Linear(eqx.Module):
    """f(x) = ⟨w, x⟩: linear regression with weight vector `w` of shape (d,)."""

    w: jax.Array

    def __call__(self, x):
        return jnp.dot(x, self.w)


class DiagonalNet(eqx.Module):
    r"""Diagonal linear network f(x) = ⟨β, x⟩ with β = u ⊙ v (`"uv"`) or β = u² − v² (`"squares"`).

    The `"uv"` form is Boursier et al.'s (its interpolating set is a manifold of dimension
    2d − n away from zero coordinates); the `"squares"` form is Lyu et al.'s 2-homogeneous
    model, whose init u = v = α gives f ≡ 0 (zero-output initialisation).
    """

    u: jax.Array
    v: jax.Array
    parameterisation: str = eqx.field(static=True, default="uv")

    def __check_init__(self):
        if self.parameterisation not in ("uv", "squares"):
            raise ValueError(f"parameterisation must be 'uv' or 'squares', got {self.parameterisation!r}")

    @property
    def beta(self) -> jax.Array:
        if self.parameterisation == "uv":
            return self.u * self.v
        return self.u**2 - self.v**2

    def __call__(self, x):
        return jnp.dot(x, self.beta)
