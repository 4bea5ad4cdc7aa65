"""`gflow demo` end to end, the run folder rules, and the analysis/plot helpers it uses."""

import math
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr

import gflow
from gflow.analysis import crossing_time, phase_times
from gflow.plot import plot_trajectory


def _gflow(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "gflow.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=600
    )


def test_demo_smoke_writes_png_and_data(tmp_path):
    out = tmp_path / "run"
    proc = _gflow("demo", "--smoke", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "generalised" in proc.stdout and "result: successful" in proc.stdout
    png = out / "trajectory.png"
    assert png.stat().st_size > 10_000
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ds = xr.open_dataset(out / "trajectory.nc", engine="scipy")
    for name in ("train_loss", "test_loss", "norm", "grad_norm", "objective", "test_beta_error"):
        assert name in ds
    assert ds.attrs["result"] == "successful"
    # The demo groks: a test-loss plateau after the fit, then a drop of > 100x late.
    t = ds["t"].values
    test = ds["test_loss"].values
    plateau = test[np.searchsorted(t, 1.0)]
    assert test[-1] < 1e-2 * plateau
    assert ds["train_loss"].values[np.searchsorted(t, 1.0)] < 1e-6
    assert ds["norm"].values[-1] < 0.05 * ds["norm"].values[0]


def test_demo_refuses_nonempty_out(tmp_path):
    (tmp_path / "keep.txt").write_text("old run")
    proc = _gflow("demo", "--smoke", "--out", str(tmp_path))
    assert proc.returncode == 2
    assert "not empty" in proc.stderr and "Traceback" not in proc.stderr
    assert (tmp_path / "keep.txt").read_text() == "old run"


def test_cli_rejects_unknown_solver(tmp_path):
    proc = _gflow("demo", "--solver", "euler", "--out", str(tmp_path / "x"))
    assert proc.returncode == 2
    assert "invalid choice" in proc.stderr and "tsit5" in proc.stderr


def test_crossing_time_requires_staying_below():
    ts = np.arange(6.0)
    values = np.array([5.0, 0.5, 3.0, 0.4, 0.3, 0.2])
    assert crossing_time(ts, values, 1.0) == 3.0
    assert crossing_time(ts, values, 1.0, after=4.0) == 4.0
    assert math.isnan(crossing_time(ts, values, 0.1))
    assert crossing_time(ts, 1 - values / 5, 0.9, below=False) == 3.0


def test_phase_times_and_plot_on_musat_addition(tmp_path):
    problem = gflow.tasks.musat_addition(0)
    lam = 0.01
    traj = gflow.simulate(problem, lam, 2000.0, solver="tsit5")
    phases = phase_times(traj)
    # Fast phase: r = w1 + w2 - 2 obeys r' = -2r, so F = r²/2 falls 1000x by t = ln(1000)/4 = 1.73.
    # Slow phase: the test loss ~ ½‖w - (1, 1)‖² ~ e^{-2λt} falls 100x by t = ln(100)/(2λ) = 230.
    assert 1.5 < phases.t_fit < 2.2
    assert 200 < phases.t_generalise < 270
    assert phases.tau_generalise == pytest.approx(lam * phases.t_generalise)
    fig = plot_trajectory(traj, phases=phases, title="musat addition")
    ax_loss, ax_norm = fig.axes[:2]
    assert ax_loss.get_yscale() == "log" and ax_norm.get_xscale() == "log"
    assert "t (ODE time" in ax_norm.get_xlabel()
    assert fig._suptitle.get_text() == "musat addition"
    path = tmp_path / "f.png"
    fig.savefig(path)
    assert path.stat().st_size > 5_000
