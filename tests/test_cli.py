"""`gflow demo` end to end, the run folder rules, and the analysis/plot helpers it uses."""

import json
import math
import subprocess
import sys

import equinox as eqx
import numpy as np
import pytest
import xarray as xr

import gflow
import gflow.experiments
import gflow.plot
from gflow.analysis import crossing_time, phase_times
from gflow.plot import plot_trajectory


def _gflow(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "gflow.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=600
    )


def _gflow_here(capsys, *args):
    """`gflow ARGS` in this process: the same result fields as a subprocess, without its start-up."""
    import types

    from gflow import cli

    capsys.readouterr()
    rc = cli.main([str(a) for a in args])
    captured = capsys.readouterr()
    return types.SimpleNamespace(returncode=rc, stdout=captured.out, stderr=captured.err)


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


def test_list_names_every_experiment():
    proc = _gflow("list")
    assert proc.returncode == 0
    for name in gflow.experiments.EXPERIMENTS:
        assert name in proc.stdout
    assert "QUICK" in proc.stdout and "Musat 2025" in proc.stdout


def test_run_then_plot_and_rerun_from_config(tmp_path, capsys):
    # In-process (the entry point itself is run as a subprocess by the demo and list tests).
    out = tmp_path / "run"
    proc = _gflow_here(
        capsys, "run", "musat_addition", "--set", "run.lam=0.05", "--set", "run.saves=60", "--quiet", "--out", str(out)
    )
    assert proc.returncode == 0, proc.stderr
    for name in ("config.toml", "trajectory.nc", "final.eqx", "trajectory.png", "summary.md", "metadata.json"):
        assert (out / name).stat().st_size > 0, name
    config = (out / "config.toml").read_text()
    assert 'experiment = "musat_addition"' in config and "lam = 0.05" in config and "saves = 60" in config
    summary = (out / "summary.md").read_text()
    assert "time generalised" in summary and "| result | successful |" in summary
    meta = json.loads((out / "metadata.json").read_text())
    assert {"gflow", "jax", "diffrax", "device", "date"} <= set(meta)
    # The final parameters load back into the task's model.
    model = gflow.tasks.musat_addition(0).model
    final = eqx.tree_deserialise_leaves(out / "final.eqx", model)
    np.testing.assert_allclose(final.w, 2 / (2 + 0.05), rtol=1e-3)
    # gflow plot redraws the figure from the stored data.
    first_png = (out / "trajectory.png").read_bytes()
    (out / "trajectory.png").unlink()
    proc = _gflow_here(capsys, "plot", str(out))
    assert proc.returncode == 0, proc.stderr
    assert (out / "trajectory.png").stat().st_size > 10_000
    assert abs(len((out / "trajectory.png").read_bytes()) - len(first_png)) < 0.05 * len(first_png)
    # Repeating from the written config gives the same numbers.
    again = tmp_path / "again"
    proc = _gflow_here(capsys, "run", str(out / "config.toml"), "--quiet", "--out", str(again))
    assert proc.returncode == 0, proc.stderr
    a = xr.open_dataset(out / "trajectory.nc", engine="scipy")
    b = xr.open_dataset(again / "trajectory.nc", engine="scipy")
    np.testing.assert_allclose(a["test_loss"].values, b["test_loss"].values, rtol=1e-12)
    # Never overwritten unless asked.
    proc = _gflow_here(capsys, "run", "musat_addition", "--quiet", "--out", str(out))
    assert proc.returncode == 2 and "--overwrite" in proc.stderr
    proc = _gflow_here(
        capsys, "run", "musat_addition", "--quiet", "--set", "run.saves=20", "--overwrite", "--out", str(out)
    )
    assert proc.returncode == 0 and "saves = 20" in (out / "config.toml").read_text()


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "nope"], "unknown experiment 'nope'; choose one of: diagonal_squares"),
        (["run", "musat_addition", "--set", "run.lam=abc"], "run.lam must be a number, got 'abc'"),
        (["run", "musat_addition", "--set", "run.lam=-1"], "run.lam must be >= 0"),
        (["run", "musat_addition", "--set", "run.saves=2.5"], "run.saves must be an integer"),
        (["run", "musat_addition", "--set", "task.foo=1"], "unknown task field 'foo' for musat_addition; valid:"),
        (["run", "musat_addition", "--set", "run.bar=1"], "unknown run field 'bar'; valid: lam, t1"),
        (["run", "musat_addition", "--set", "run.solver=rk4"], "run.solver must be one of tsit5"),
        (["run", "musat_addition", "--set", "lam=1"], "--set takes section.field=value"),
        (["run", "missing.toml"], "config file missing.toml not found"),
        (["plot", "no-such-folder"], "run folder no-such-folder not found"),
        (["sweep", "nope", "--out", "x"], "unknown experiment 'nope'"),
    ],
)
def test_user_errors_are_one_line_with_exit_code_2(tmp_path, args, message):
    proc = _gflow(*args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in proc.stderr
    assert not any(tmp_path.iterdir()), "a failed command must not leave folders behind"


def test_plot_rejects_a_folder_that_is_not_a_run(tmp_path):
    proc = _gflow("plot", str(tmp_path))
    assert proc.returncode == 2 and "not a gflow run folder" in proc.stderr


def test_unwritable_output_folder(tmp_path):
    (tmp_path / "file").write_text("x")
    proc = _gflow("run", "musat_addition", "--out", str(tmp_path / "file" / "sub"))
    assert proc.returncode == 2 and "cannot write to output folder" in proc.stderr


def test_toml_config_with_overrides(tmp_path):
    cfg = tmp_path / "exp.toml"
    cfg.write_text('experiment = "linear_regression"\n[task]\nn = 10\nd = 30\n[run]\nlam = 0.01\nt1 = 500.0\n')
    resolved = gflow.experiments.resolve_config(str(cfg), overrides=["run.lam=0.02", "run.solver=tsit5"])
    assert resolved["task"]["n"] == 10 and resolved["run"]["lam"] == 0.02 and resolved["run"]["solver"] == "tsit5"
    assert resolved["run"]["saves"] == 200  # from the preset
    text = gflow.experiments.to_toml(resolved)
    (tmp_path / "back.toml").write_text(text)
    assert gflow.experiments.resolve_config(str(tmp_path / "back.toml")) == resolved
    with pytest.raises(gflow.experiments.ConfigError, match="task.n must be an integer"):
        gflow.experiments.resolve_config(str(cfg), overrides=["task.n=1.5"])


def test_plot_sweep_axes():
    ds = gflow.sweep(
        gflow.experiments.musat_addition,
        lam=[0.05, 0.2],
        seed=[0, 1],
        t1=4.0,
        solver="tsit5",
        saveat=30,
        progress=False,
    )
    fig = gflow.plot.plot_sweep(ds)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert ax.get_xlabel().startswith("τ = λt")
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["λ = 0.05", "λ = 0.2"]
    with pytest.raises(ValueError, match="unknown metric 'nope'"):
        gflow.plot.plot_sweep(ds, metric="nope")
