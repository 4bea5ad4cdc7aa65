"""A λ sweep of a stiff ReLU network (issue 12): `gflow.sweep` racing Bosh3 against RKC1 member by
member, against the same sweep in one vmapped chunk, where the members share Bosh3 throughout
(what `sweep` did before it raced, and what it still does in a chunk of several members).

    python benchmarks/sweep_race.py            # Musat's ReLU embedding net, λ ∈ {1e-3, 2e-3, 4e-3} (≈ 10 min)
    python benchmarks/sweep_race.py --smoke    # its small instance, λ ∈ {1e-2, 2e-2} (seconds)
    python benchmarks/sweep_race.py --readme   # also write the table in benchmarks/README.md
    python benchmarks/sweep_race.py --reuse-shared   # rerun the race only, keep the JSON's shared sweep

Problem: Musat's E2.4 embedding network with its ReLU and the paper's summed squared loss
(`problems.musat_embedding(relu=True)`: sharpness(θ0) ≈ 119, stiff throughout its run), one seed,
every member to its own t1 = 10/λ (`sweep(t1=lambda lam: 10 / lam)`, 400 log-spaced saves each).

Two sweeps of the same grid, both with solver "auto" at its defaults:
- **race**: `chunk_size=None`, which on a CPU is one member per call for such a grid; each member
  races Bosh3 against RKC1 as `simulate` does (`gflow._simulate.raced_solve`);
- **shared**: `chunk_size=len(lams)`, one vmapped call: the members share one solver, Bosh3 at
  rtol 1e-3, and the call runs until its slowest member ends.

Per member: gradient-equivalents (the losing racers' and RKC1's power iterations included), steps,
races and RKC1 steps, the grokking time (test accuracy ≥ 0.5 for good, interpolated between saves,
as in `relu_flows.py`) and the final test loss; per sweep: wall time (compilation included: each
sweep compiles its own solves). Writes `results/sweep_race[_smoke].json` and, with `--readme`,
the table under "## Sweep race" in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

LAMS = {"quick": [1e-3, 2e-3, 4e-3], "smoke": [1e-2, 2e-2]}
SAVES = {"quick": 400, "smoke": 40}


def run(problem, lams, mode: str, saves: int) -> dict:
    """One sweep of `problem` over `lams` (t1 = 10/λ), "race" or "shared"; its rows per member."""
    from relu_flows import observables

    import gflow

    start = time.perf_counter()
    ds = gflow.sweep(
        lambda key: problem,
        lam=lams,
        t1=lambda lam: 10.0 / lam,
        time="fast",
        saveat=saves,
        chunk_size=None if mode == "race" else len(lams),
        progress=False,
    )
    wall = time.perf_counter() - start
    members = []
    for i, lam in enumerate(lams):
        member = ds.isel(lam=i, seed=0)
        metrics = {k: member[k].values for k in ("train_accuracy", "test_accuracy", "test_loss")}

        def stat(name, default=0.0, member=member):
            return float(member[f"stats_{name}"]) if f"stats_{name}" in member else default

        members.append(
            {
                "lam": lam,
                "gradients": int(stat("num_gradient_equivalents")),
                "steps": int(stat("num_steps")),
                "num_races": int(stat("num_races")),
                "rkc_steps": int(stat("rkc_steps")),
                "race_t": stat("race_t", float("nan")),
                "result": int(member["result"]),
                **observables(member["t"].values, metrics),
            }
        )
    return {"mode": mode, "solver": ds.attrs["solver"], "wall_s": wall, "members": members}


def table(sweeps) -> str:
    lines = [
        "| sweep | solver | λ | gradients | steps (RKC1) | races | grokking time | final test loss | sweep wall s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for sweep in sweeps:
        wall = f"{sweep['wall_s']:.0f}"
        for j, m in enumerate(sweep["members"]):
            lines.append(
                f"| {sweep['mode'] if j == 0 else ''} | {sweep['solver'] if j == 0 else ''} | {m['lam']:g} "
                f"| {m['gradients']:,} | {m['steps']:,} ({m['rkc_steps']:,}) | {m['num_races']} "
                f"| {m['t_grok']:.4g} | {m['final_test_loss']:.3g} | {wall if j == 0 else ''} |"
            )
    return "\n".join(lines)


def readme_section(meta, sweeps) -> str:
    totals = {s["mode"]: sum(m["gradients"] for m in s["members"]) for s in sweeps}
    walls = {s["mode"]: s["wall_s"] for s in sweeps}
    reused = "".join(
        f" The {s['mode']} sweep is the one run at {s['reused_from'][:16].replace('T', ' ')} UTC"
        " (`--reuse-shared`): it does not race."
        for s in sweeps
        if "reused_from" in s
    )
    verdict = (
        f" The race takes {totals['shared'] / totals['race']:.1f}× fewer gradient-equivalents and "
        f"{walls['shared'] / walls['race']:.1f}× less wall time (the shared chunk runs every member until "
        "its slowest ends). Each raced member is the run `simulate` gives alone (a test checks it); the "
        "grokking times are read on this sweep's 400 saves per member, so they differ from "
        "`relu_flows.py`'s (3 000 saves) by the interpolation between saves on 7 test pairs."
        if {"race", "shared"} <= set(totals)
        else ""
    )
    return (
        "## Sweep race\n\n"
        f"`python benchmarks/sweep_race.py` ({meta['date'][:10]}, {meta['device']}): Musat's ReLU embedding net "
        "(summed squared loss, sharpness(θ0) ≈ 119), one `gflow.sweep` over λ with t1 = 10/λ per member, solver "
        '"auto" at its defaults: "race" runs one member per call and races Bosh3 against RKC1 in each; "shared" '
        "runs the grid as one vmapped chunk, whose members share Bosh3 throughout. Wall times include "
        f"compilation.{reused} Gradient-equivalents over the grid: race {totals.get('race', 0):,}, shared "
        f"{totals.get('shared', 0):,}.{verdict}\n\n" + table(sweeps) + "\n"
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="the small instance (seconds)")
    parser.add_argument("--out", default=str(HERE / "results"), help="folder for the JSON")
    parser.add_argument("--readme", action="store_true", help="write the table into benchmarks/README.md")
    parser.add_argument(
        "--reuse-shared",
        action="store_true",
        help="run the race only and keep the shared sweep of the JSON in --out (it does not race)",
    )
    args = parser.parse_args(argv)
    size = "smoke" if args.smoke else "quick"
    out = Path(args.out)
    path = out / f"sweep_race{'_smoke' if args.smoke else ''}.json"
    kept = []
    if args.reuse_shared:
        if not path.exists():
            parser.error(f"--reuse-shared needs {path}; run without it first")
        stored = json.loads(path.read_text())
        kept = [dict(s, reused_from=s.get("reused_from", stored["meta"]["date"])) for s in stored["sweeps"]]
        kept = [s for s in kept if s["mode"] == "shared"]

    import jax

    jax.config.update("jax_enable_x64", True)
    from problems import musat_embedding

    problem = musat_embedding(quick=args.smoke, relu=True)
    modes = ("race",) if kept else ("race", "shared")
    sweeps = [run(problem, LAMS[size], mode, SAVES[size]) for mode in modes] + kept
    from relu_flows import run_meta, write_readme

    meta = run_meta(size, lams=LAMS[size])
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"meta": meta, "sweeps": sweeps}, indent=1) + "\n")
    print(f"wrote {path}")
    print(table(sweeps))
    if args.readme:
        write_readme(readme_section(meta, sweeps), heading="## Sweep race")
    return 0


if __name__ == "__main__":
    sys.exit(main())
