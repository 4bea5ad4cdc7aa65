"""The figure-experiment machinery (`gflow.papers`, `gflow run NAME`) on `nanda_transformer`: its
smoke run end to end, the configuration round trip and redraw, consistency between its runs, and
bad input. (What every registered figure must do is in test_figure_registry.py.)"""

import json
import tomllib

import numpy as np
import pytest
import xarray as xr

import gflow
from gflow.experiments import ConfigError, resolve_config, to_toml
from gflow.papers import FIGURES


def _gflow_here(capsys, *args):
    import types

    from gflow import cli

    capsys.readouterr()
    rc = cli.main([str(a) for a in args])
    captured = capsys.readouterr()
    return types.SimpleNamespace(returncode=rc, stdout=captured.out, stderr=captured.err)


@pytest.fixture(scope="module")
def smoke_run(figure_run):
    run = figure_run("nanda_transformer")
    return run.out, run.stdout, run.stderr


def test_smoke_run_writes_a_complete_folder(smoke_run):
    out, stdout, stderr = smoke_run
    for name in ("config.toml", "figure.nc", "figure.png", "summary.md", "metadata.json", "gflow-manifest.json"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "figure.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Piped stderr: plain lines, no carriage returns (no progress bar off a terminal).
    assert "\r" not in stderr and "not a terminal" in stderr
    assert "key frequencies" in stdout and "slope of ln t_grok" in stdout
    summary = (out / "summary.md").read_text()
    assert "| flow: fitted / grokked (t) |" in summary and "| quantity | value |" in summary
    meta = json.loads((out / "metadata.json").read_text())
    assert {"gflow", "jax", "diffrax", "equinox", "date"} <= set(meta)


def test_smoke_dataset_is_consistent_between_its_runs(smoke_run):
    out, _, _ = smoke_run
    ds = xr.open_dataset(out / "figure.nc", engine="scipy").load()
    params = json.loads(ds.attrs["params"])
    assert params == FIGURES["nanda_transformer"].params("smoke")
    p = params["p"]
    n_freq = (p - 1) // 2
    assert ds.sizes["frequency"] == n_freq
    assert ds.sizes["flow_t"] == params["saves"] and ds.sizes["gd_t"] == params["gd_saves"] + 1
    assert ds.sizes["adamw_step"] == params["adamw_saves"] + 1
    for run in ("flow", "gd", "adamw"):
        shares = ds[f"{run}_frequency_share"].values
        finite = np.isfinite(shares).all(axis=1)
        np.testing.assert_allclose(shares[finite].sum(axis=1), 1.0, rtol=1e-6)
        acc = ds[f"{run}_test_accuracy"].values
        assert np.all((acc[np.isfinite(acc)] >= 0) & (acc[np.isfinite(acc)] <= 1))
        assert ds.attrs[f"{run}_result"] == "successful"
    key = np.atleast_1d(ds.attrs["key_frequencies"])
    assert 1 <= key.min() and key.max() <= n_freq
    # Both start from the same parameters: the progress measures agree at t = 0 ...
    for name in ("restricted_loss", "excluded_loss", "embed_gini", "logit_stable_rank"):
        np.testing.assert_allclose(ds[f"flow_{name}"].values[0], ds[f"gd_{name}"].values[0], rtol=1e-5)
    # The sweep's member at the main λ over τ ≤ λ·t1 is the flow itself, rerun inside a vmapped
    # solve: the same final accuracies (its end point is the same time t1).
    lam, t1 = params["lam"], params["t1"]
    i = int(np.argmin(np.abs(ds["sweep_lam"].values - lam)))
    assert ds["sweep_lam"].values[i] == pytest.approx(lam) and params["sweep_tau1"] == pytest.approx(lam * t1)
    np.testing.assert_allclose(
        ds["sweep_train_loss"].values[i, -1], ds["flow_train_loss"].values[-1], rtol=2e-3
    )  # fmt: skip
    # GD at a small step follows the flow: the same train loss at t1 to within a few percent.
    np.testing.assert_allclose(ds["gd_train_loss"].values[-1], ds["flow_train_loss"].values[-1], rtol=0.05)


def test_config_round_trips_and_plot_redraws(smoke_run, capsys):
    out, _, _ = smoke_run
    cfg = resolve_config(str(out / "config.toml"))
    assert cfg["size"] == "smoke" and cfg["figure"] == FIGURES["nanda_transformer"].params("smoke")
    assert tomllib.loads(to_toml(cfg))["figure"] == cfg["figure"]
    before = (out / "figure.png").stat().st_mtime_ns
    proc = _gflow_here(capsys, "plot", out)
    assert proc.returncode == 0, proc.stderr
    assert "figure.png" in proc.stdout and (out / "figure.png").stat().st_mtime_ns >= before


def test_list_and_help_name_the_figure(capsys):
    proc = _gflow_here(capsys, "list")
    assert proc.returncode == 0 and "nanda_transformer" in proc.stdout and "[figure]" in proc.stdout


@pytest.mark.parametrize(
    "override, message",
    [
        ("figure.nope=1", "unknown figure field 'nope' for nanda_transformer; valid: p,"),
        ("task.p=5", "is a figure experiment: set its fields with --set figure.FIELD=VALUE"),
        ("figure.p=7.5", "figure.p must be an integer"),
        ("figure.gd_saves=7", "must be an integer multiple of figure.gd_saves = 7"),
        ("figure.sweep_lam=[]", "figure.sweep_lam must be a non-empty list"),
        ("figure.sweep_lam=[0.01, -1.0]", "figure.sweep_lam must be a list of positive weight decays"),
        ("figure.activation=swish", "activation"),
    ],
)
def test_bad_figure_input_is_refused_in_one_line(tmp_path, capsys, override, message):
    out = tmp_path / "never"
    proc = _gflow_here(capsys, "run", "nanda_transformer", "--smoke", "--set", override, "--out", out)
    assert proc.returncode == 2
    line = proc.stderr.strip()
    assert "\n" not in line and message in line, line
    assert not out.exists()  # nothing is written for a refused configuration


def test_smoke_and_full_together_are_refused(capsys):
    with pytest.raises(SystemExit):
        _gflow_here(capsys, "run", "nanda_transformer", "--smoke", "--full")
    assert "not allowed with argument" in capsys.readouterr().err


def test_sweep_and_task_sections_point_to_the_figure_usage(capsys):
    proc = _gflow_here(capsys, "sweep", "nanda_transformer", "--out", "x")
    assert proc.returncode == 2 and "gflow run nanda_transformer [--smoke | --full]" in proc.stderr
    with pytest.raises(ConfigError, match="musat_addition is a task preset"):
        resolve_config("musat_addition", overrides=["figure.p=3"])


def test_smoke_flag_on_a_task_preset_keeps_its_size_with_fewer_saves():
    cfg = resolve_config("musat_addition", smoke=True)
    assert cfg["run"]["saves"] == 40 and cfg["task"] == gflow.experiments.EXPERIMENTS["musat_addition"].config()["task"]


def test_sizes_are_complete_and_full_is_nandas_run():
    exp = FIGURES["nanda_transformer"]
    assert set(exp.sizes) == {"smoke", "quick", "full"}
    assert all(set(size) == set(exp.sizes["quick"]) for size in exp.sizes.values())
    full = exp.params("full")
    assert (full["p"], full["train_fraction"], full["d_model"], full["n_heads"], full["d_mlp"]) == (
        113,
        0.3,
        128,
        4,
        512,
    )
    assert full["activation"] == "relu" and full["adamw_weight_decay"] == 1.0 and full["adamw_lr"] == 1e-3
    for size in exp.sizes:  # every size passes its own checks
        exp.check(exp.params(size))


def test_adamw_at_the_quick_size_memorises_then_generalises():
    """Nanda's optimiser on the quick task (p = 31, half the pairs): the training set is fitted in
    a few hundred steps and the test set only ~15 000 steps later (the quick run measured 300 and
    1.5e4 on a 300-step save grid), the order that makes it grokking."""
    import optax

    from gflow.analysis import crossing_time
    from gflow.papers import nanda_transformer as nanda

    params = FIGURES["nanda_transformer"].params("quick")
    problem = nanda.build_problem(params)
    traj = gflow.gd(
        problem,
        params["adamw_weight_decay"],
        optimizer=lambda wd: optax.adamw(params["adamw_lr"], b1=0.9, b2=0.98, weight_decay=wd),
        steps=18_000,
        save_every=300,
    )
    steps = np.asarray(traj.ts)
    t_fit = crossing_time(steps, np.asarray(traj.metrics["train_accuracy"]), params["fit_accuracy"], below=False)
    t_grok = crossing_time(steps, np.asarray(traj.metrics["test_accuracy"]), params["grok_accuracy"], below=False)
    assert traj.time == "step" and t_fit <= 1_000
    assert 8_000 <= t_grok <= 18_000 and t_grok >= 10 * t_fit
    assert float(traj.metrics["test_accuracy"][0]) < 0.1  # chance level (1/31) at the start
