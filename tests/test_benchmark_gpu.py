"""`benchmarks/gpu.py`, the prepared accelerator benchmark, at its smoke size on the CPU: every
part writes its rows (compile apart from run time, work counts, how far each flow got), a part
that runs out of its wall-clock share stops and says so, and the README block is rewritten in
place."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu") / "gpu.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu.py"), "--smoke", "--out", str(out)],
        capture_output=True, text=True, timeout=900, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(out.read_text()), proc.stdout


def test_smoke_writes_every_part(smoke):
    result, stdout = smoke
    parts = {row["part"] for row in result["rows"]}
    assert parts == {"lyu_fig2a", "sweep", "stiff", "transformer"}
    assert result["smoke"] is True and result["machine"]["device"]
    lyu_flow, lyu_gd = [r for r in result["rows"] if r["part"] == "lyu_fig2a"]
    # The ReLU MLP goes to the kink-robust explicit solver; GD's paper-length run is an estimate.
    assert lyu_flow["method"] == "bosh3" and lyu_flow["first_call_s"] > 0 and lyu_flow["t_reached"] > 0
    assert lyu_gd["estimated"] and lyu_gd["steps"] == round(lyu_gd["t1"] / 0.05) and lyu_gd["run_s"] > 0
    for row in result["rows"]:
        if "t_reached" in row:
            assert 0 < row["t_reached"] <= row["t1"] * (1 + 1e-9)
            assert row["finished"] == (row["t_reached"] >= row["t1"] * (1 - 1e-9) and row["result"] == "successful")
            assert row["grad_equivalents"] >= row["steps"] > 0
    sweep = [r for r in result["rows"] if r["part"] == "sweep" and "members_per_s" in r]
    assert sweep and all(r["all_ok"] and r["members_per_s"] > 0 for r in sweep)
    assert "| part | what | method |" in stdout and "smoke sizes" in stdout


def test_a_part_out_of_budget_stops_after_its_first_piece(benchmark_module):
    import jax

    gpu = benchmark_module("gpu")
    problem = benchmark_module("sweep_throughput").make_problem(jax.random.PRNGKey(0), 1.0)
    traj, row = gpu.flow_in_pieces(problem, 0.01, 300.0, budget_s=0.0, solver="tsit5")
    # One piece (to t1·1e-3) ran, then the budget stopped it: not finished, and it says how far.
    assert row["t_reached"] == pytest.approx(0.3) and not row["finished"]
    traj, row = gpu.flow_in_pieces(problem, 0.01, 300.0, budget_s=1e9, solver="tsit5")
    assert row["finished"] and row["t_reached"] == pytest.approx(300.0)


def test_readme_block_is_replaced_in_place(tmp_path, benchmark_module):
    gpu = benchmark_module("gpu")
    readme = tmp_path / "README.md"
    readme.write_text(f"# B\n\ntext\n{gpu.README_START}\nold\n{gpu.README_END}\nafter\n")
    gpu.write_readme("| new | table |", readme)
    assert readme.read_text() == f"# B\n\ntext\n{gpu.README_START}\n| new | table |\n{gpu.README_END}\nafter\n"
    assert gpu.README_START in (REPO / "benchmarks" / "README.md").read_text()
