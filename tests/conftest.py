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


@pytest.fixture(scope="session")
def figure_run(tmp_path_factory):
    """`figure_run(name, size="smoke", *overrides)`: `gflow run NAME --SIZE --set ...` in process,
    once per session for each argument tuple (the registry tests and a figure's own acceptance
    tests share the run). Returns `out` (the run folder), `ds` (its figure.nc, loaded), `stdout`
    and `stderr` (stderr is not a terminal here: plain progress lines)."""
    import contextlib
    import io
    import types

    import xarray as xr

    from gflow import cli

    done = {}

    def run(name: str, size: str = "smoke", *overrides: str):
        key = (name, size, overrides)
        if key not in done:
            out = tmp_path_factory.mktemp(name) / "run"
            argv = ["run", name, "--out", str(out), *(["--" + size] if size != "quick" else [])]
            for text in overrides:
                argv += ["--set", text]
            stdout, stderr = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
                rc = cli.main(argv)
            assert rc == 0, stderr.getvalue()
            ds = xr.open_dataset(out / "figure.nc", engine="scipy").load()
            done[key] = types.SimpleNamespace(out=out, ds=ds, stdout=stdout.getvalue(), stderr=stderr.getvalue())
        return done[key]

    return run


@pytest.fixture(scope="session")
def benchmark_module():
    """`benchmark_module("gpu")`: the module `benchmarks/gpu.py`. The benchmark scripts are run
    from the repository root, not installed, so their folder is put on `sys.path` for the import
    (as the scripts do themselves)."""
    import importlib
    import sys
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[1])

    def load(name: str):
        if root not in sys.path:
            sys.path.insert(0, root)
        return importlib.import_module(f"benchmarks.{name}")

    return load
