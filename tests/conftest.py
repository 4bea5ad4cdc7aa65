"""Tests run in float64 with strict promotion rules (never set inside the package)."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")

import jax

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")


import pytest


@pytest.fixture(autouse=True, scope="module")
def _fresh_jax_caches_per_module():
    # Compiled executables of every module would otherwise stay alive for the whole session
    # (hundreds of solves); one run of the suite once crashed inside XLA's CPU compiler late in
    # the session. A module that needs a solve another module compiled recompiles it (seconds).
    yield
    jax.clear_caches()
