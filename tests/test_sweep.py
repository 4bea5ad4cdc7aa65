"""Sweeps: vmap = loop, sharding, chunked store with kill-and-resume, per-member failures."""

import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr

import gflow
from gflow.experiments import diagonal_squares, musat_addition

METRICS = ("train_loss", "test_loss", "norm", "objective", "grad_norm")


def _member_problem(key, alpha):
    return gflow.tasks.diagonal_regression(key, n=6, d=12, k=2, alpha=alpha, parameterisation="uv")


@pytest.fixture(scope="module")
def small_sweep():
    lam, seed, alpha = [0.05, 0.2], [0, 3], [0.5, 1.5]
    ds = gflow.sweep(
        _member_problem, lam=lam, seed=seed, alpha=alpha, t1=4.0, solver="tsit5", saveat=25, progress=False
    )
    return ds, lam, seed, alpha


def test_sweep_equals_loop_of_simulate(small_sweep):
    ds, lam, seed, alpha = small_sweep
    assert dict(ds.sizes) == {"lam": 2, "seed": 2, "alpha": 2, "time": 25}
    for l in lam:
        for s in seed:
            for a in alpha:
                traj = gflow.simulate(
                    _member_problem(jax.random.PRNGKey(s), a),
                    l,
                    4.0,
                    solver="tsit5",
                    saveat=ds["time"].values,
                    time="slow",
                )
                member = ds.sel(lam=l, seed=s, alpha=a)
                for name in (*METRICS, "test_beta_error"):
                    np.testing.assert_allclose(
                        member[name].values,
                        np.asarray(traj.metrics[name]),
                        rtol=1e-9,
                        atol=1e-12,
                        err_msg=f"{name} at lam={l}, seed={s}, alpha={a}",
                    )
                assert int(member["stats_num_steps"]) == int(traj.stats["num_steps"])
                assert bool(member["ok"])
                np.testing.assert_allclose(member["time"].values, np.asarray(traj.ts), rtol=1e-12)


def test_sweep_dataset_layout(small_sweep):
    ds, lam, _, _ = small_sweep
    assert ds["test_loss"].dims == ("lam", "seed", "alpha", "time")
    assert ds["result"].dims == ("lam", "seed", "alpha")
    assert ds["t"].dims == ("lam", "time")
    np.testing.assert_allclose(ds["t"].sel(lam=lam[1]).values, ds["tau"].values / lam[1])
    assert ds["tau"].values[-1] == pytest.approx(4.0)
    # The shared τ grid starts early enough for the smallest λ's fast phase.
    assert ds["tau"].values[1] == pytest.approx(1e-2 * min(lam))
    for key in ("config", "gflow_version", "jax_version", "diffrax_version", "solver"):
        assert key in ds.attrs
    assert "successful" in ds["result"].attrs["meaning"]


def test_sweep_without_alpha_and_fast_time_per_member_t1():
    def t1(lam):
        return 2.0 / lam

    ds = gflow.sweep(
        musat_addition, lam=[0.1, 0.4], seed=[0], t1=t1, time="fast", solver="tsit5", saveat=12, progress=False
    )
    assert "alpha" not in ds.dims
    assert ds["t"].dims == ("lam", "time")
    np.testing.assert_allclose(ds["t"].isel(time=-1).values, [20.0, 5.0])
    np.testing.assert_allclose(ds["tau"].isel(time=-1).values, [2.0, 2.0])
    # Musat's antisymmetric weight decays exactly as e^{-λt}: test_min_norm_distance = √2 e^{-λt}
    # once the fast phase is over (t ≫ 1/4), up to the λ-dependent fixed-point offset.
    traj = gflow.simulate(musat_addition(jax.random.PRNGKey(0)), 0.4, 5.0, solver="tsit5", saveat=12)
    np.testing.assert_allclose(
        ds["test_min_norm_distance"].sel(lam=0.4, seed=0).values,
        np.asarray(traj.metrics["test_min_norm_distance"]),
        rtol=1e-9,
    )


def _signed_quadratic(key, alpha):
    """F = (α/2)‖w‖²: α < 0 makes the flow diverge (F unbounded below), α > 0 converges."""
    w0 = 1.0 + jax.random.uniform(key, (3,), dtype=jnp.zeros(()).dtype)
    return gflow.Problem(gflow.models.Linear(w0), {"y": jnp.zeros(1)}, loss=lambda m, d: 0.5 * alpha * jnp.sum(m.w**2))


def test_one_diverging_member_leaves_the_others_intact():
    ds = gflow.sweep(
        _signed_quadratic,
        lam=[0.1],
        seed=[0, 1],
        alpha=[-1.0, 1.0],
        t1=100.0,
        time="fast",
        solver="tsit5",
        saveat=30,
        progress=False,
    )
    bad = ds.sel(alpha=-1.0).isel(lam=0)
    assert np.all(bad["result"].values == int(gflow.RESULTS.diverged._value))
    assert not bad["ok"].any()
    assert np.all(bad["t_final"].values < 100.0)
    good = ds.sel(alpha=1.0).isel(lam=0)
    assert good["ok"].all()
    for s in (0, 1):
        traj = gflow.simulate(_signed_quadratic(jax.random.PRNGKey(s), 1.0), 0.1, 100.0, solver="tsit5", saveat=30)
        np.testing.assert_allclose(
            good["norm"].sel(seed=s).values, np.asarray(traj.metrics["norm"]), rtol=1e-9, atol=1e-14
        )
        # The diverging member is cut at t_final: finite before, NaN after.
        member = bad.sel(seed=s)
        before = member["t"].values <= member["t_final"].values
        assert np.all(np.isfinite(member["norm"].values[before]))
        assert np.all(np.isnan(member["norm"].values[~before]))


def test_no_recompilation_when_values_change():
    traces = {"n": 0}

    def make(key, alpha):
        if isinstance(key, jax.core.Tracer):
            traces["n"] += 1
        return _member_problem(key, alpha)

    kwargs = dict(t1=1.0, solver="tsit5", saveat=10, progress=False)
    gflow.sweep(make, lam=[0.1, 0.2], seed=[0, 1], alpha=[1.0], **kwargs)
    assert traces["n"] == 1
    gflow.sweep(make, lam=[0.3, 0.05], seed=[7, 9], alpha=[2.0], **kwargs)
    assert traces["n"] == 1
    # A different grid shape with the same chunk shape (chunk_size) compiles nothing new either.
    gflow.sweep(make, lam=[0.3, 0.05, 0.07, 0.01], seed=[7], alpha=[2.0], chunk_size=2, **kwargs)
    gflow.sweep(make, lam=[0.3], seed=[1, 2], alpha=[0.5, 1.0], chunk_size=2, **kwargs)
    assert traces["n"] == 2  # the first call with chunk_size=2 is the one new shape


def test_store_roundtrip_and_mismatch(tmp_path):
    store = tmp_path / "store"
    kwargs = dict(
        lam=[0.05, 0.2], seed=[0, 1], alpha=[1.0], t1=2.0, solver="tsit5", saveat=10, progress=False, chunk_size=3
    )
    first = gflow.sweep(_member_problem, store=store, **kwargs)
    assert first.attrs["chunks_computed"] == 2 and first.attrs["chunks_loaded"] == 0
    again = gflow.sweep(_member_problem, store=store, **kwargs)
    assert again.attrs["chunks_computed"] == 0 and again.attrs["chunks_loaded"] == 2
    xr.testing.assert_identical(first.drop_attrs(), again.drop_attrs())
    xr.testing.assert_identical(gflow.load_sweep(store).drop_attrs(), first.drop_attrs())
    assert gflow.load_sweep(store, partial=True).sizes["member"] == 4
    with pytest.raises(gflow.SweepStoreError, match=r"different sweep \(differs in: lam\); use a new store path"):
        gflow.sweep(_member_problem, store=store, **{**kwargs, "lam": [0.05, 0.3]})
    with pytest.raises(gflow.SweepStoreError, match="chunk_size"):
        gflow.sweep(_member_problem, store=store, **{**kwargs, "chunk_size": 2})
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("x")
    with pytest.raises(gflow.SweepStoreError, match="not a gflow sweep store"):
        gflow.sweep(_member_problem, store=tmp_path / "other", **kwargs)


def test_partial_chunk_without_marker_is_recomputed(tmp_path):
    store = tmp_path / "store"
    kwargs = dict(
        lam=[0.05, 0.2], seed=[0], alpha=[1.0], t1=2.0, solver="tsit5", saveat=10, progress=False, chunk_size=1
    )
    reference = gflow.sweep(_member_problem, **kwargs)
    gflow.sweep(_member_problem, store=store, **kwargs)
    # Simulate a kill during the write of chunk 1: data half there, no completion marker.
    (store / "chunk-00001.done").unlink()
    (store / "chunk-00001.zarr" / "zarr.json").write_text("{ truncated")
    assert gflow.load_sweep(store, partial=True).sizes["member"] == 1
    with pytest.raises(gflow.SweepStoreError, match="1 of 2 chunks finished; rerun the sweep"):
        gflow.load_sweep(store)
    resumed = gflow.sweep(_member_problem, store=store, **kwargs)
    assert resumed.attrs["chunks_loaded"] == 1 and resumed.attrs["chunks_computed"] == 1
    xr.testing.assert_identical(reference.drop_attrs(), resumed.drop_attrs())


SWEEP_SCRIPT = """
import sys
import jax
jax.config.update("jax_enable_x64", True)
import gflow
from gflow.experiments import diagonal_squares
ds = gflow.sweep(diagonal_squares, lam=[1e-2, 2e-2, 3e-2, 5e-2, 7e-2, 1e-1], seed=[0], alpha=[2.0, 3.0],
                 t1=3.0, solver="tsit5", saveat=15, chunk_size=1, store=sys.argv[1], progress=False)
"""


def test_kill_and_resume_equals_uninterrupted(tmp_path):
    store = tmp_path / "store"
    script = tmp_path / "run_sweep.py"
    script.write_text(SWEEP_SCRIPT)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(store)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    deadline = time.time() + 300
    try:
        while not list(store.glob("chunk-*.done")):
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.time() < deadline, "the sweep wrote no chunk in 300 s"
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    done_before = len(list(store.glob("chunk-*.done")))
    assert 1 <= done_before < 12, "the kill must land mid-sweep"

    kwargs = dict(
        lam=[1e-2, 2e-2, 3e-2, 5e-2, 7e-2, 1e-1],
        seed=[0],
        alpha=[2.0, 3.0],
        t1=3.0,
        solver="tsit5",
        saveat=15,
        chunk_size=1,
        progress=False,
    )
    resumed = gflow.sweep(diagonal_squares, store=store, **kwargs)
    assert resumed.attrs["chunks_loaded"] == done_before
    assert resumed.attrs["chunks_computed"] == 12 - done_before
    uninterrupted = gflow.sweep(diagonal_squares, **kwargs)
    xr.testing.assert_identical(uninterrupted.drop_attrs(), resumed.drop_attrs())


SHARDED_SCRIPT = """
import os, sys
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
import jax
jax.config.update("jax_enable_x64", True)
assert len(jax.devices()) == 4, jax.devices()
import gflow
from gflow.experiments import musat_addition
ds = gflow.sweep(musat_addition, lam=[0.01, 0.02, 0.05, 0.1, 0.2, 0.3], seed=[0], t1=3.0, solver="tsit5",
                 saveat=20, progress=False)
ds.drop_attrs().to_netcdf(sys.argv[1], engine="scipy")
"""


def test_sharded_over_four_devices_equals_single_device(tmp_path):
    script = tmp_path / "sharded.py"
    script.write_text(SHARDED_SCRIPT)
    out = tmp_path / "sharded.nc"
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    proc = subprocess.run([sys.executable, str(script), str(out)], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    sharded = xr.open_dataset(out, engine="scipy").load()
    single = gflow.sweep(
        musat_addition,
        lam=[0.01, 0.02, 0.05, 0.1, 0.2, 0.3],
        seed=[0],
        t1=3.0,
        solver="tsit5",
        saveat=20,
        progress=False,
    )
    for name in (*METRICS, "test_min_norm_distance", "stats_num_steps", "result"):
        np.testing.assert_allclose(sharded[name].values, single[name].values, rtol=1e-10, err_msg=name)


def test_log_range_and_grid_errors():
    np.testing.assert_allclose(gflow.log_range("1e-4:1e-2:3"), [1e-4, 1e-3, 1e-2])
    np.testing.assert_allclose(gflow.log_range("0.1,0.3"), [0.1, 0.3])
    with pytest.raises(gflow.ProblemError, match="a:b:n"):
        gflow.log_range("1e-4:1e-2")
    with pytest.raises(gflow.ProblemError, match="lam must be >= 0|values must be > 0"):
        gflow.sweep(musat_addition, lam=[-0.1], t1=1.0, time="fast", solver="tsit5", progress=False)
    with pytest.raises(gflow.ProblemError, match="distinct"):
        gflow.sweep(musat_addition, lam=[0.1, 0.1], t1=1.0, solver="tsit5", progress=False)
    with pytest.raises(gflow.ProblemError, match="pass alpha"):
        gflow.sweep(diagonal_squares, lam=[0.1], t1=1.0, solver="tsit5", progress=False)
    with pytest.raises(gflow.ProblemError, match="takes only a key"):
        gflow.sweep(musat_addition, lam=[0.1], alpha=[1.0], t1=1.0, solver="tsit5", progress=False)
    with pytest.raises(gflow.ProblemError, match="tau grid"):
        gflow.sweep(musat_addition, lam=[0.1], t1=lambda lam: 1 / lam, solver="tsit5", progress=False)


def test_cli_sweep_writes_store_and_figure_and_resumes(tmp_path, capsys):
    # The first call runs the real entry point; the resumes and refusals run in-process (no start-up).
    from gflow import cli

    out = tmp_path / "run"
    args = ["sweep", "musat_addition", "--lam", "1e-2:1e-1:2", "--seeds", "2", "--tau1", "5", "--chunk-size", "2"]
    args += ["--quiet", "--out", str(out)]
    first = subprocess.run([sys.executable, "-m", "gflow.cli", *args], capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr
    assert "2 chunk(s) computed, 0 loaded" in first.stdout
    assert pathlib.Path(out / "sweep.png").stat().st_size > 10_000
    assert cli.main(args) == 0
    assert "0 chunk(s) computed, 2 loaded" in capsys.readouterr().out
    assert cli.main(args[:3] + ["1e-2:1e-1:3"] + args[4:]) == 2
    err = capsys.readouterr().err
    assert "different sweep" in err and "Traceback" not in err
    assert cli.main(["sweep", "nope", "--out", str(tmp_path / "x")]) == 2
    assert "unknown experiment 'nope'" in capsys.readouterr().err
