"""`gflow run/sweep module:function`: a user's own problem factory, its refusals, and plain progress lines."""

import pathlib
import subprocess
import sys

import equinox as eqx
import jax
import numpy as np
import pytest
import xarray as xr

from gflow.cli import main

TESTS = pathlib.Path(__file__).parent
RUN = ["--set", "run.lam=0.05", "--set", "run.t1=200.0", "--set", "run.saves=20"]


@pytest.fixture
def user_dir(monkeypatch):
    """Run from tests/ (which holds user_problems.py) with it off sys.path: gflow must add the cwd itself."""
    monkeypatch.chdir(TESTS)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(TESTS))])
    return TESTS


def _final_metrics(run_dir):
    ds = xr.open_dataset(run_dir / "trajectory.nc", engine="scipy")
    return {k: ds[k].values[-1] for k in ds.data_vars}


def test_run_module_function_writes_folder_and_its_config_reruns(user_dir, tmp_path, capsys):
    out, again = tmp_path / "run", tmp_path / "again"
    assert main(["run", "user_problems:regression", *RUN, "--set", "task.n=10", "--quiet", "--out", str(out)]) == 0
    for name in ("config.toml", "trajectory.nc", "final.eqx", "trajectory.png", "summary.md", "metadata.json"):
        assert (out / name).stat().st_size > 0, name
    config = (out / "config.toml").read_text()
    assert 'experiment = "user_problems:regression"' in config and "n = 10" in config and "lam = 0.05" in config
    assert "| result | successful |" in (out / "summary.md").read_text()
    import user_problems  # importable now: gflow put the current directory on sys.path

    model = user_problems.regression(jax.random.PRNGKey(0), n=10).model
    final = eqx.tree_deserialise_leaves(out / "final.eqx", model)
    assert final.weight.shape == model.weight.shape and not np.allclose(final.weight, model.weight)

    assert main(["run", str(out / "config.toml"), "--quiet", "--out", str(again)]) == 0
    a, b = _final_metrics(out), _final_metrics(again)
    assert set(a) == set(b) and "test_loss" in a
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-12, err_msg=k)


def test_toml_config_with_task_table_as_keyword_arguments(user_dir, tmp_path, capsys):
    cfg = tmp_path / "mine.toml"
    cfg.write_text(
        'experiment = "user_problems:regression_alpha"\n[task]\nalpha = 0.5\n'
        '[run]\nlam = 0.05\nt1 = 200.0\nsaves = 20\nsolver = "tsit5"\n'
    )
    out = tmp_path / "run"
    assert main(["run", str(cfg), "--quiet", "--out", str(out)]) == 0
    written = (out / "config.toml").read_text()
    assert 'experiment = "user_problems:regression_alpha"' in written and "alpha = 0.5" in written
    assert 'solver = "tsit5"' in written
    # A (key, alpha) factory without its alpha is refused before any folder is made.
    cfg.write_text('experiment = "user_problems:regression_alpha"\n[run]\nlam = 0.05\n')
    assert main(["run", str(cfg), "--quiet", "--out", str(tmp_path / "none")]) == 2
    assert "needs alpha; set it in the [task] table or with --set task.alpha=VALUE" in capsys.readouterr().err
    assert main(["run", "user_problems:regression", "--set", "task.foo=1", "--out", str(tmp_path / "none")]) == 2
    assert "unknown task field 'foo' for user_problems:regression; valid: n, d, scale" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()


def test_sweep_module_function(user_dir, tmp_path, capsys):
    out = tmp_path / "sweep"
    args = ["sweep", "user_problems:regression", "--lam", "0.05,0.1", "--seeds", "1", "--tau1", "2", "--out"]
    assert main([*args, str(out)]) == 0
    assert (out / "store" / "config.json").exists() and (out / "sweep.png").stat().st_size > 5_000
    captured = capsys.readouterr()
    assert "0 run(s) not successful" in captured.out
    # Not a terminal: plain start and end lines, no tqdm redraws.
    assert "\r" not in captured.err and "sweep finished in" in captured.err
    # A (key, alpha) factory needs --alpha; a (key) one refuses it.
    assert main(["sweep", "user_problems:regression_alpha", "--out", str(tmp_path / "a")]) == 2
    assert "takes (key, alpha); give init scales with --alpha" in capsys.readouterr().err
    assert main(["sweep", "user_problems:regression", "--alpha", "1,2", "--out", str(tmp_path / "b")]) == 2
    assert "takes only a key; drop --alpha" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["run", "sweep"])
@pytest.mark.parametrize(
    "spec, message",
    [
        (
            "no_such_module_xyz:make",
            "cannot import module 'no_such_module_xyz' for no_such_module_xyz:make: "
            "ModuleNotFoundError: No module named 'no_such_module_xyz'",
        ),
        ("user_problems:missing", "module 'user_problems' has no attribute 'missing'"),
        ("user_problems:not_callable", "user_problems:not_callable is a int, not a function"),
        ("user_problems:raises", "user_problems:raises raised ValueError: no data for this seed"),
        ("user_problems:returns_dict", "user_problems:returns_dict returned dict, not a gflow.Problem"),
        ("nope", "unknown experiment 'nope'; choose one of: diagonal_squares"),
    ],
)
def test_bad_factories_are_refused_in_one_line(user_dir, tmp_path, capsys, command, spec, message):
    out = tmp_path / "out"
    assert main([command, spec, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in err, err
    if spec == "nope":
        assert "module:function" in lines[0]
    assert not out.exists(), "a refused factory must not leave a folder behind"


def test_module_in_the_current_directory_and_its_import_errors(tmp_path, monkeypatch, capsys):
    (tmp_path / "cwd_mod_gflow_test.py").write_text(
        "import jax.numpy as jnp\nimport gflow\n\nclass W(__import__('equinox').Module):\n    w: object\n"
        "    def __call__(self, x):\n        return x @ self.w\n\n"
        "def make(key):\n    x = jnp.eye(3)\n    return gflow.Problem(W(jnp.ones(3)), {'x': x, 'y': jnp.arange(3.0)}, "
        "loss='mse')\n"
    )
    (tmp_path / "cwd_bad_dep_gflow_test.py").write_text("import not_installed_dep_xyz\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    try:
        out = tmp_path / "run"
        assert (
            main(
                [
                    "run",
                    "cwd_mod_gflow_test:make",
                    "--set",
                    "run.t1=50.0",
                    "--set",
                    "run.saves=10",
                    "--quiet",
                    "--out",
                    str(out),
                ]
            )
            == 0
        )
        assert (out / "trajectory.nc").exists()
        assert main(["run", "cwd_bad_dep_gflow_test:make", "--out", str(tmp_path / "x")]) == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert "cannot import module 'cwd_bad_dep_gflow_test'" in err and "not_installed_dep_xyz" in err
    finally:
        sys.modules.pop("cwd_mod_gflow_test", None)
        sys.modules.pop("cwd_bad_dep_gflow_test", None)


def test_piped_run_writes_no_carriage_returns(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "gflow.cli", "run", "user_problems:regression", *RUN, "--out", str(tmp_path / "r")],
        capture_output=True,
        text=True,
        cwd=TESTS,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "\r" not in proc.stderr and "\r" not in proc.stdout
    assert "no progress bar: stderr is not a terminal" in proc.stderr and "integrated in" in proc.stderr
