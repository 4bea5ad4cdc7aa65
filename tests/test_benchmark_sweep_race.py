"""`benchmarks/sweep_race.py` at its smoke size: a λ sweep of Musat's small ReLU net, racing Bosh3
against RKC1 member by member beside one vmapped chunk sharing Bosh3 (its own file, so that
pytest-xdist's `--dist loadfile` can run it beside the long `test_nonsmooth_flows.py`)."""

from __future__ import annotations

import json

import pytest


def test_sweep_race_benchmark_smoke(benchmark_module, tmp_path):
    """`benchmarks/sweep_race.py --smoke`: Musat's small ReLU net over λ = 1e-2, 2e-2, racing
    member by member and sharing Bosh3 in one chunk. Measured: one race per member, won by Bosh3
    (109 575 and 75 750 gradient-equivalents against 105 461 and 71 654 shared), final test
    losses 2.20 / 2.28 against 2.20 / 2.25."""
    bench = benchmark_module("sweep_race")
    assert bench.main(["--smoke", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "sweep_race_smoke.json").read_text())
    race, shared = data["sweeps"]
    assert (race["mode"], shared["mode"]) == ("race", "shared")
    for raced, alone in zip(race["members"], shared["members"], strict=True):
        assert raced["result"] == alone["result"] == 0
        assert raced["num_races"] >= 1 and alone["num_races"] == 0
        assert 0.9 < raced["gradients"] / alone["gradients"] < 1.2
        assert raced["final_test_loss"] == pytest.approx(alone["final_test_loss"], rel=0.03)
    assert "| race |" in bench.table(data["sweeps"])
    # --reuse-shared runs the race again and keeps the shared sweep as it was, saying so.
    assert bench.main(["--smoke", "--out", str(tmp_path), "--reuse-shared"]) == 0
    again = json.loads((tmp_path / "sweep_race_smoke.json").read_text())
    assert [s["mode"] for s in again["sweeps"]] == ["race", "shared"]
    assert again["sweeps"][1]["members"] == shared["members"]
    assert again["sweeps"][1]["reused_from"] == data["meta"]["date"]
    assert [m["gradients"] for m in again["sweeps"][0]["members"]] == [m["gradients"] for m in race["members"]]
    assert "(`--reuse-shared`)" in bench.readme_section(again["meta"], again["sweeps"])
    with pytest.raises(SystemExit):
        bench.main(["--smoke", "--out", str(tmp_path / "empty"), "--reuse-shared"])
