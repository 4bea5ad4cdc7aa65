"""Named experiments: what `gflow sweep NAME` (and the demo) run.

Each entry builds a Problem from a PRNG key (and an init scale α where it has one) with a
module-level function, so sweeps compile once per grid shape and stores can check identity.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from . import tasks
from ._problem import ProblemError


@dataclasses.dataclass(frozen=True)
class Experiment:
    """A named experiment: how to build its Problem and sensible sweep defaults."""

    name: str
    description: str
    paper: str
    make_problem: Callable
    lam: tuple[float, ...]
    tau1: float
    alpha: tuple[float, ...] | None = None
    metric: str = "test_loss"


def diagonal_squares(key, alpha):
    """The demo's task: β = u² − v², 3-sparse regression (n = 20, d = 60), init u = v = α."""
    return tasks.diagonal_regression(key, n=20, d=60, k=3, alpha=alpha, parameterisation="squares")


def diagonal_uv(key, alpha):
    """β = u ⊙ v, 3-sparse regression (n = 20, d = 60), Gaussian init of scale α."""
    return tasks.diagonal_regression(key, n=20, d=60, k=3, alpha=alpha, parameterisation="uv")


def linear_regression(key):
    """Rank-deficient linear regression, n = 40, d = 100, w0 ~ N(0, 4I)."""
    return tasks.linear_regression(key)


def musat_addition(key):
    """Musat's single-sample addition 1 + 1 = 2 with two weights, init (−1, 1)."""
    return tasks.musat_addition(key)


EXPERIMENTS: dict[str, Experiment] = {
    e.name: e
    for e in (
        Experiment(
            "diagonal_squares",
            "diagonal network β = u² − v², kernel-then-rich sparse regression (the demo)",
            "Lyu et al. 2024 (diagonal nets); Woodworth et al.",
            diagonal_squares,
            lam=(1e-3, 1e-2),
            tau1=15.0,
            alpha=(10.0,),
        ),
        Experiment(
            "diagonal_uv",
            "diagonal network β = u ⊙ v, sparse regression toward the minimum-ℓ1 interpolator",
            "Boursier et al. 2025, E1.3",
            diagonal_uv,
            lam=(1e-3, 1e-2),
            tau1=15.0,
            alpha=(1.0,),
        ),
        Experiment(
            "linear_regression",
            "rank-deficient linear regression: the null space decays as e^{-λt}",
            "Boursier et al. 2025, App. C (A1)",
            linear_regression,
            lam=(1e-4, 1e-2),
            tau1=10.0,
        ),
        Experiment(
            "musat_addition",
            "single-sample addition 1 + 1 = 2: fast fit, slow drift to the minimum-norm weights",
            "Musat 2025, E2.1 (A9)",
            musat_addition,
            lam=(1e-2, 1e-1),
            tau1=8.0,
        ),
    )
}


def get_experiment(name: str) -> Experiment:
    try:
        return EXPERIMENTS[name]
    except KeyError:
        raise ProblemError(f"unknown experiment {name!r}; choose one of {', '.join(EXPERIMENTS)}") from None
