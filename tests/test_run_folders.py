"""Run folders are never a way to lose files: `--overwrite` replaces only gflow's own run folders,
only after the new run succeeded, and no write goes through a symbolic link (issue 15)."""

import os
import pathlib
import stat

import numpy as np
import pytest
import xarray as xr

from gflow import _files, _runner, cli

QUICK = ["--quiet", "--set", "run.saves=20", "--set", "run.t1=200.0"]


def _run(capsys, *argv) -> tuple[int, str]:
    rc = cli.main(list(argv))
    err = capsys.readouterr().err
    return rc, err


@pytest.fixture
def run_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, err = _run(capsys, "run", "musat_addition", *QUICK, "--out", "runs/a")
    assert rc == 0, err
    return tmp_path / "runs" / "a"


def _snapshot(folder: pathlib.Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_a_run_folder_lists_its_files_and_nothing_is_left_beside_it(run_folder):
    listed = _files.read_manifest(run_folder)
    assert listed == set(_runner.RUN_FILES) | {_files.MANIFEST}
    assert {p.name for p in run_folder.iterdir()} == listed
    # The staging sibling was renamed into place: no temporary folders or files remain.
    assert [p.name for p in run_folder.parent.iterdir()] == ["a"]
    assert not [p for p in run_folder.iterdir() if p.name.startswith(".")]
    # Files get the mode an ordinary write gives (mkstemp alone would make them private).
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((run_folder / "summary.md").stat().st_mode) == 0o666 & ~umask


def test_overwrite_replaces_a_run_folder_only_after_success(run_folder, capsys):
    rc, err = _run(capsys, "run", "musat_addition", *QUICK, "--set", "run.lam=0.05", "--overwrite", "--out", "runs/a")
    assert rc == 0, err
    assert "lam = 0.05" in (run_folder / "config.toml").read_text()
    assert [p.name for p in run_folder.parent.iterdir()] == ["a"]


def test_a_failing_rerun_leaves_the_old_folder_as_it_was(run_folder, capsys, monkeypatch):
    before = _snapshot(run_folder)

    def broken_plot(*args, **kwargs):
        raise OSError(28, "No space left on device", "trajectory.png")

    monkeypatch.setattr(_runner, "plot_run", broken_plot)
    rc, err = _run(capsys, "run", "musat_addition", *QUICK, "--overwrite", "--out", "runs/a")
    assert rc == 2 and "No space left on device" in err and len(err.strip().splitlines()) == 1
    assert _snapshot(run_folder) == before
    assert [p.name for p in run_folder.parent.iterdir()] == ["a"]  # the half-written sibling is gone


def test_overwrite_refuses_folders_with_files_gflow_did_not_write(run_folder, capsys):
    (run_folder / "thesis.tex").write_text("three years of work")
    before = _snapshot(run_folder)
    rc, err = _run(capsys, "run", "musat_addition", *QUICK, "--overwrite", "--out", "runs/a")
    assert rc == 2 and "did not write (thesis.tex)" in err
    assert _snapshot(run_folder) == before


def test_overwrite_refuses_a_folder_without_a_manifest(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "summary.md").write_text("mine")
    rc, err = _run(capsys, "run", "musat_addition", *QUICK, "--overwrite", "--out", "notes")
    assert rc == 2 and "not a gflow run folder" in err
    assert (notes / "summary.md").read_text() == "mine"


@pytest.mark.parametrize("where", [".", "..", "HOME", "/"])
def test_the_current_home_and_root_folders_are_never_run_folders(tmp_path, capsys, monkeypatch, where):
    work = tmp_path / "work"
    work.mkdir()
    (work / "data.csv").write_text("1,2,3")
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(tmp_path))
    out = str(tmp_path) if where == "HOME" else where
    rc, err = _run(capsys, "run", "musat_addition", *QUICK, "--overwrite", "--out", out)
    assert rc == 2 and "give a new subfolder with --out" in err
    assert (work / "data.csv").read_text() == "1,2,3"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work"]


def test_a_symlinked_out_folder_is_refused(run_folder, tmp_path, capsys):
    link = tmp_path / "link"
    link.symlink_to(run_folder, target_is_directory=True)
    before = _snapshot(run_folder)
    rc, err = _run(capsys, "run", "musat_addition", *QUICK, "--overwrite", "--out", str(link))
    assert rc == 2 and "symbolic link" in err
    assert _snapshot(run_folder) == before


def test_plot_replaces_a_symlinked_figure_instead_of_writing_through_it(run_folder, tmp_path, capsys):
    victim = tmp_path / "precious.png"
    victim.write_bytes(b"not yours")
    (run_folder / "trajectory.png").unlink()
    (run_folder / "trajectory.png").symlink_to(victim)
    rc, err = _run(capsys, "plot", str(run_folder))
    assert rc == 0, err
    assert victim.read_bytes() == b"not yours"
    png = run_folder / "trajectory.png"
    assert not png.is_symlink() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # And --overwrite treats the planted link as a foreign file.
    (run_folder / "trajectory.png").unlink()
    (run_folder / "trajectory.png").symlink_to(victim)
    rc, err = _run(capsys, "run", "musat_addition", *QUICK, "--overwrite", "--out", str(run_folder))
    assert rc == 2 and "did not write (trajectory.png)" in err


@pytest.mark.parametrize(
    "damage, message",
    [
        ("trajectory.nc", "trajectory.nc is unreadable or not written by gflow"),
        ("store/config.json", "unreadable config.json"),
    ],
)
def test_plot_of_a_damaged_folder_is_one_line(tmp_path, capsys, damage, message):
    path = tmp_path / "run" / damage
    path.parent.mkdir(parents=True)
    path.write_text("garbage{")
    rc, err = _run(capsys, "plot", str(tmp_path / "run"))
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1


def test_plot_survives_a_damaged_config_toml(run_folder, capsys):
    (run_folder / "config.toml").write_bytes(b"\xff\xfe not toml")
    rc, err = _run(capsys, "plot", str(run_folder))
    assert rc == 0, err


def test_a_list_valued_task_field_round_trips_through_config_toml(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = ["run", "musat_addition", *QUICK, "--set", "task.init=[-2.0, 1.0]"]
    rc, err = _run(capsys, *argv, "--out", "first")
    assert rc == 0, err
    assert "init = [-2.0, 1.0]" in (tmp_path / "first" / "config.toml").read_text()
    rc, err = _run(capsys, "run", "first/config.toml", "--quiet", "--out", "again")
    assert rc == 0, err
    a = xr.open_dataset(tmp_path / "first" / "trajectory.nc", engine="scipy")
    b = xr.open_dataset(tmp_path / "again" / "trajectory.nc", engine="scipy")
    np.testing.assert_array_equal(a["train_loss"].values, b["train_loss"].values)
