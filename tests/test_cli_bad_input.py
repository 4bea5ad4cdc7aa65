"""Every CLI input error is one line and exit code 2 (issue 15), and every accepted `--set` value
round-trips through config.toml. In-process: each case fails before any integration starts."""

import pathlib
import tomllib

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import gflow
from gflow import cli
from gflow._runner import build_problem
from gflow.experiments import RUN_DEFAULTS, resolve_config, to_toml, validate_config


def _write(path: pathlib.Path, content: str | bytes) -> str:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return str(path)


CASES = [
    ("task-not-a-table", 'experiment = "musat_addition"\ntask = [1, 2]\n', "task must be a table"),
    ("run-not-a-table", 'experiment = "musat_addition"\nrun = 3\n', "run must be a table"),
    ("experiment-a-list", 'experiment = ["musat_addition"]\n', "unknown experiment ['musat_addition']"),
    ("not-utf8", b'experiment = "\xff\xfe"\n', "is not UTF-8 text"),
    ("list-for-a-number", 'experiment = "musat_addition"\n[run]\nlam = [1, 2]\n', "run.lam must be a number"),
]


@pytest.mark.parametrize("name, content, message", CASES, ids=[c[0] for c in CASES])
def test_bad_config_files_are_one_line(tmp_path, capsys, name, content, message):
    rc = cli.main(["run", _write(tmp_path / f"{name}.toml", content), "--quiet", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o").exists()


def test_a_config_path_that_is_a_folder_is_one_line(tmp_path, capsys):
    (tmp_path / "dir.toml").mkdir()
    assert cli.main(["run", str(tmp_path / "dir.toml"), "--quiet"]) == 2
    assert "is a folder; give a .toml file" in capsys.readouterr().err


@pytest.mark.parametrize(
    "override, message",
    [
        (f"run.saves={2**62}", "run.saves must be in [2, 1000000]"),  # used to abort the process in XLA
        (f"run.max_steps={2**70}", "run.max_steps must be at most 2147483647"),
        ("task.n_test=-1", "task.n_test is a size and must be an integer in [1, 1e+08]"),  # an MLIR error before
        (f"task.n_test={2**62}", "task.n_test is a size"),
        ("run.seed=-1", "run.seed must be an integer in [0, 2**32)"),
        (f"run.seed={2**32}", "run.seed must be an integer in [0, 2**32)"),
        ("run.rtol=-1e-6", "run.rtol must be > 0"),
        ("run.atol=0", "run.atol must be > 0"),
        ("run.t_min=-1", "run.t_min (the first log-spaced save time) must be in (0, t1="),
        ("run.t_min=1e9", "run.t_min (the first log-spaced save time) must be in (0, t1="),
        ("run.lam=inf", "run.lam must be finite"),
        ('task.init="abc"', "gflow.tasks.musat_addition(n_weights=2, init='abc') failed"),
    ],
)
def test_bad_values_are_one_line_before_any_compute(tmp_path, capsys, override, message):
    rc = cli.main(["run", "musat_addition", "--quiet", "--set", override, "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o").exists()


def test_sweep_out_a_file_and_unknown_metric_are_refused_before_computing(tmp_path, capsys):
    _write(tmp_path / "afile", "x")
    assert cli.main(["sweep", "musat_addition", "--out", str(tmp_path / "afile"), "--quiet"]) == 2
    assert "is a file; give a folder for the sweep" in capsys.readouterr().err
    rc = cli.main(["sweep", "musat_addition", "--metric", "bogus", "--out", str(tmp_path / "s"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "unknown metric 'bogus' for musat_addition; it records train_loss" in err
    assert not (tmp_path / "s").exists()  # refused before the sweep ran, so no store either
    assert cli.main(["sweep", "musat_addition", "--tau1", "nan", "--out", str(tmp_path / "s"), "--quiet"]) == 2
    assert "--tau1 must be a finite number > 0" in capsys.readouterr().err


# -- property: any --set value is refused in one line, or accepted and round-trips -------------

_FIELDS = [f"run.{k}" for k in RUN_DEFAULTS] + ["task.n_weights", "task.init", "task.n_test", "task.bogus", "run.x"]
_VALUES = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["true", "false", '"tsit5"', "slow", "fast", "[1.0, -2.0]", "[]", "{a = 1}", "1e-3", "0", '""']),
    st.lists(st.floats(-10, 10, allow_nan=False), max_size=4).map(repr),
    st.text(max_size=8),
)


@settings(max_examples=120, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(field=st.sampled_from(_FIELDS), raw=_VALUES)
def test_any_set_value_is_refused_in_one_line_or_round_trips(field, raw):
    try:
        cfg = resolve_config("musat_addition", overrides=[f"{field}={raw}"])
        problem = build_problem(cfg)
    except gflow.GflowError as err:
        assert len(str(err).strip().splitlines()) == 1, str(err)
        return
    assert isinstance(problem, gflow.Problem)
    # What gflow run would write to config.toml reads back as the same configuration.
    assert validate_config(tomllib.loads(to_toml(cfg))) == cfg
