"""Every registered figure experiment (`gflow.papers.FIGURES`): its sizes, its checks, and
`gflow run NAME --smoke` in process, writing a complete run folder that `gflow plot` redraws.

The smoke runs are shared with each figure's own acceptance tests (the `figure_run` fixture runs
each once per session)."""

import json
import pathlib

import pytest

from gflow.papers import FIGURES, SIZES

SCRIPTS = pathlib.Path(__file__).resolve().parents[1] / "scripts"
FOLDER = ("config.toml", "figure.nc", "figure.png", "summary.md", "metadata.json", "gflow-manifest.json")


def test_every_script_is_a_registered_figure():
    # scripts/ holds only thin entry points, one per figure (the issue-14 shape).
    scripts = {p.stem for p in SCRIPTS.glob("*.py")}
    assert scripts == set(FIGURES)
    for name in scripts:
        text = (SCRIPTS / f"{name}.py").read_text()
        assert f'main(["run", "{name}", *sys.argv[1:]])' in text, name
        assert len(text.splitlines()) < 40, f"{name}.py is not a thin entry point"


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_sizes_and_checks(name):
    exp = FIGURES[name]
    assert tuple(exp.sizes) == SIZES or set(exp.sizes) == set(SIZES)
    for size in SIZES:
        exp.check(exp.params(size))  # each size passes its own checks
        for key, value in exp.params(size).items():
            assert isinstance(value, (bool, int, float, str, list)), (name, size, key, value)
    assert exp.runtime and exp.paper and exp.figure and exp.description
    module = exp.implementation()
    assert all(callable(getattr(module, f)) for f in ("measure", "plot", "summary")), name
    assert module.__doc__ and len(module.__doc__) > 200, f"{name}: the docstring carries the experiment"


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_smoke_run_writes_a_complete_folder_and_redraws(name, figure_run, capsys):
    from gflow import cli

    run = figure_run(name)
    for file in FOLDER:
        assert (run.out / file).stat().st_size > 0, (name, file)
    assert set(json.loads((run.out / "gflow-manifest.json").read_text())["files"]) >= set(FOLDER) - {
        "gflow-manifest.json"
    }
    assert (run.out / "figure.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "\r" not in run.stderr  # stderr is not a terminal here: plain lines only
    assert run.ds.attrs["experiment"] == name and run.ds.attrs["size"] == "smoke"
    rows = FIGURES[name].implementation().summary(run.ds)
    assert rows and all(isinstance(q, str) and isinstance(v, str) for q, v in rows)
    assert "| quantity | value |" in (run.out / "summary.md").read_text()
    capsys.readouterr()
    assert cli.main(["plot", str(run.out)]) == 0
    assert "figure.png" in capsys.readouterr().out
