"""One accelerator, one call, meant to fit 8 minutes: the runs that decide whether paper-size work is cheap.

    python benchmarks/gpu.py              # on the GPU machine: results/gpu.json and a table on stdout
    python benchmarks/gpu.py --readme     # also writes the table into benchmarks/README.md ("GPU")
    python benchmarks/gpu.py --smoke      # toy sizes, about a minute on a CPU: what the tests run

Parts (float64 except the transformer, which is float32 like its figure):

1. `lyu_fig2a`: Lyu et al.'s Fig. 2a problem at the paper's size: a + b mod 97, 40% of the pairs,
   a ReLU MLP of width 1024, cross-entropy, λ = 1e-4, to t1 = 5·10⁴ (the paper's 2.5·10⁷ steps of
   η = 0.002). The flow by `solver="auto"` (Bosh3 at rtol 1e-3 on a ReLU field), and gradient
   descent at the paper's η = 0.002, timed on a segment and extrapolated to the paper's steps.
2. `sweep`: members per second of one vmapped `gflow.sweep` call at 64 and 512 members (the
   grid and diagonal network of `sweep_throughput.py`), against `simulate` called member by
   member (timed on one member per λ, scaled to the grid).
3. `stiff`: the suite's largest rows (`problems.py`): the modular MLP (GELU, 11 200 parameters)
   at λ = 1e-5 by ROS34PW2, RKC and Tsit5 at rtol 1e-6, and Musat's embedding network at
   λ = 1e-4 by ROS34PW2 and RKC, to t1 = 10/λ; each row's final state against the problem's
   ROS34PW2 row (`rel_diff_to_ros34pw2`).
4. `transformer`: the flow of `gflow run nanda_transformer --full` (p = 113, 128/4/512, ReLU,
   float32, λ = 1e-3 to t1 = 10⁴, Bogacki–Shampine at rtol 1e-3), read from the figure's sizes.

How the budget holds: every part has a share of run time after its compiling calls
(`BUDGET_S`). A flow runs in pieces (`simulate(start=traj)`, one compiled solve reused by every
piece, one decade of time each); after each piece the script checks its share and stops there,
recording how far it got (`t_reached`, `finished`); the JSON is written after every part, so a
killed run keeps what it measured. Each row separates compilation (`first_call_s`: the first piece, or
a call on a short horizon, compilation included) from run time (`run_s`), calls
`block_until_ready`, and counts gradient-equivalents (`traj.stats`).
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:  # `python benchmarks/gpu.py` from the repository root
    sys.path.insert(0, str(HERE.parent))

import gflow  # noqa: E402

# Run-time share of each part, seconds, after its first (compiling) calls: 5 minutes of running,
# leaving about 3 for compiling. Compile times on a GPU are not measured yet; on the CPU at the
# smoke sizes a part's first calls took 5-12 s.
BUDGET_S = {"lyu_fig2a": 110.0, "sweep": 40.0, "stiff": 100.0, "transformer": 50.0}
SMOKE_BUDGET_S = {"lyu_fig2a": 5.0, "sweep": 5.0, "stiff": 5.0, "transformer": 5.0}
SAVES_PER_PIECE = 10


def _sizes(smoke: bool) -> dict:
    if smoke:
        return {
            "lyu": {"p": 11, "width": 32, "lam": 1e-2, "t1": 500.0, "gd_lr": 0.05, "gd_segment": 200},
            "sweep_members": (4, 8),
            "stiff": {"quick": True, "cases": [("modular_mlp", 1e-2, ("ros34pw2", "rkc"))]},
            "transformer": "smoke",
        }
    return {
        "lyu": {"p": 97, "width": 1024, "lam": 1e-4, "t1": 5e4, "gd_lr": 0.002, "gd_segment": 20_000},
        "sweep_members": (64, 512),
        "stiff": {
            "quick": False,
            "cases": [
                ("modular_mlp", 1e-5, ("ros34pw2", "rkc", "tsit5")),
                ("musat_embedding", 1e-4, ("ros34pw2", "rkc")),
            ],
        },
        "transformer": "full",
    }


def flow_in_pieces(problem, lam, t1, *, budget_s, solver, rtol=None, atol=None, t_first=None):
    """`simulate` from t = 0 to `t1` in pieces of one decade each (the first to `t_first`, default
    t1·1e-3), each continuing the last (`start=traj`: the compiled solve is reused), until t1 or
    until the pieces after the first (compiling) one have run `budget_s` seconds. Returns
    (trajectory, row)."""
    t_first = t1 * 1e-3 if t_first is None else t_first
    ends = [min(t_first * 10.0**k, t1) for k in range(int(math.ceil(math.log10(t1 / t_first))) + 1)]
    kwargs = {"solver": solver, "rtol": rtol, "atol": atol, "saveat": SAVES_PER_PIECE, "max_steps": 2_000_000}
    start = time.perf_counter()
    traj = jax.block_until_ready(gflow.simulate(problem, lam, ends[0], **kwargs))
    first_call = time.perf_counter() - start
    for end in ends[1:]:
        if time.perf_counter() - start - first_call > budget_s or not bool(traj.ok):
            break
        traj = jax.block_until_ready(gflow.simulate(problem, lam, end, start=traj, **kwargs))
    wall = time.perf_counter() - start
    row = {
        "method": traj.solver,
        "rtol": rtol,
        "t1": float(t1),
        "t_reached": float(traj.t_final),
        "finished": bool(traj.ok) and float(traj.t_final) >= float(t1) * (1 - 1e-9),
        "result": traj.message,
        "first_call_s": first_call,
        "run_s": wall - first_call,
        "steps": int(traj.stats["num_steps"]),
        "grad_equivalents": int(traj.stats.get("num_gradient_equivalents", traj.stats.get("num_vf_evals", -1))),
    }
    return traj, row


def _events(traj) -> dict:
    from gflow.analysis import crossing_time

    t = np.asarray(traj.ts, float)
    out = {}
    for name, metric, level in (("t_fit", "train_accuracy", 0.99), ("t_grok", "test_accuracy", 0.9)):
        if metric in traj.metrics:
            out[name] = float(crossing_time(t, np.asarray(traj.metrics[metric], float), level, below=False))
    return out


def part_lyu(sizes, budget_s) -> list[dict]:
    cfg = sizes["lyu"]
    problem = gflow.tasks.modular_arithmetic(0, p=cfg["p"], width=cfg["width"], train_fraction=0.4)
    traj, row = flow_in_pieces(problem, cfg["lam"], cfg["t1"], budget_s=0.85 * budget_s, solver="auto")
    rows = [{"part": "lyu_fig2a", "what": f"flow, p = {cfg['p']}, width {cfg['width']}", **row, **_events(traj)}]

    # Gradient descent at the paper's step: a compiling call, then a timed one of the same shape.
    seg = cfg["gd_segment"]
    start = time.perf_counter()
    jax.block_until_ready(gflow.gd(problem, cfg["lam"], lr=cfg["gd_lr"], steps=seg, save_every=seg))
    first = time.perf_counter() - start
    start = time.perf_counter()
    jax.block_until_ready(gflow.gd(problem, cfg["lam"], lr=cfg["gd_lr"], steps=seg, save_every=seg))
    per_step = (time.perf_counter() - start) / seg
    paper_steps = round(cfg["t1"] / cfg["gd_lr"])
    rows.append(
        {
            "part": "lyu_fig2a",
            "what": f"GD η = {cfg['gd_lr']:g}: {seg} steps timed, {paper_steps:.2e} steps to t1 estimated",
            "method": "gd",
            "t1": cfg["t1"],
            "first_call_s": first,
            "run_s": per_step * paper_steps,
            "estimated": True,
            "steps": paper_steps,
            "grad_equivalents": paper_steps,
        }
    )
    return rows


def part_sweep(sizes, budget_s) -> list[dict]:
    from benchmarks import sweep_throughput as st

    rows, spent = [], 0.0  # run time of the timed calls so far
    for members in sizes["sweep_members"]:
        if spent > budget_s:
            rows.append({"part": "sweep", "what": f"{members} members", "method": "skipped (budget)"})
            continue
        # sweep_throughput.py's grid and task, the whole grid as one call (the accelerator default).
        start = time.perf_counter()
        st.run_sweep(members, chunk_size=members)
        first = time.perf_counter() - start
        start = time.perf_counter()
        ds = st.run_sweep(members, chunk_size=members)
        run = time.perf_counter() - start
        # The loop a user would write (one compiled simulate, reused), timed on one member per λ
        # (the members of a λ cost alike) and scaled to the grid.
        st.run_loop(1, ds["time"].values)
        start = time.perf_counter()
        st.run_loop(4, ds["time"].values)
        per_member = (time.perf_counter() - start) / 4
        spent += run + 4 * per_member
        rows.append(
            {
                "part": "sweep",
                "what": f"{members} members in one vmapped call",
                "method": st.SOLVER,
                "first_call_s": first,
                "run_s": run,
                "members_per_s": members / run,
                "loop_members_per_s": 1.0 / per_member,
                "speedup_over_loop": per_member * members / run,
                "all_ok": bool(ds["ok"].values.all()),
            }
        )
    return rows


def part_stiff(sizes, budget_s) -> list[dict]:
    from benchmarks.problems import PROBLEMS
    from benchmarks.suite import _flat

    cfg = sizes["stiff"]
    rows, spent = [], 0.0  # run time after the first calls so far
    for name, lam, methods in cfg["cases"]:
        problem = PROBLEMS[name](cfg["quick"])
        finals = {}
        for method in methods:
            left = budget_s - spent
            if left <= 0:
                rows.append({"part": "stiff", "what": f"{name}, λ = {lam:g}", "method": f"{method}: skipped (budget)"})
                continue
            traj, row = flow_in_pieces(problem, lam, 10.0 / lam, budget_s=left, solver=method, rtol=1e-6, atol=1e-8)
            spent += row["run_s"]
            finals[method] = _flat(traj.final) if row["finished"] else None
            rows.append({"part": "stiff", "what": f"{name}, λ = {lam:g}", **row})
        reference = finals.get("ros34pw2")
        for row in rows:
            method = row.get("method", "")
            mine = row["what"].startswith(name) and method != "ros34pw2"
            if mine and finals.get(method) is not None and reference is not None:
                row["rel_diff_to_ros34pw2"] = float(
                    np.linalg.norm(finals[method] - reference) / np.linalg.norm(reference)
                )  # fmt: skip
    return rows


def part_transformer(sizes, budget_s) -> list[dict]:
    from gflow.papers import FIGURES
    from gflow.papers.nanda_transformer import build_problem

    # The figure's own size (`gflow run nanda_transformer --full`, or its smoke size): its task,
    # λ, horizon, solver and tolerance.
    cfg = FIGURES["nanda_transformer"].params(sizes["transformer"])
    problem = build_problem(cfg)
    rtol = cfg["rtol"]
    traj, row = flow_in_pieces(
        problem, cfg["lam"], cfg["t1"], budget_s=budget_s, solver=cfg["solver"], rtol=rtol, atol=rtol * 1e-3
    )
    shape = f"{cfg['d_model']}/{cfg['n_heads']}/{cfg['d_mlp']}"
    what = f"flow, p = {cfg['p']}, {shape}, {cfg['activation']}, {cfg['dtype']}, {cfg['solver']}"
    return [{"part": "transformer", "what": what, **row, **_events(traj)}]


PARTS = {"lyu_fig2a": part_lyu, "sweep": part_sweep, "stiff": part_stiff, "transformer": part_transformer}


def machine() -> dict:
    """suite.py's machine description plus the accelerator's name."""
    from benchmarks.suite import machine_info

    device = jax.devices()[0]
    return {**machine_info(), "device": getattr(device, "device_kind", str(device)), "platform": device.platform}


def _fmt(x, digits=3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:.3g}" if abs(x) >= 1e5 else str(x)
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    return str(x)


def table(result: dict) -> str:
    """The Markdown table of a result: one line per row."""
    head = (
        "| part | what | method | first call [s] | run [s] | t reached / t1 | steps | grad-equiv. | notes |\n"
        "|---|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for r in result["rows"]:
        reach = f"{_fmt(r.get('t_reached'))} / {_fmt(r.get('t1'))}" if "t_reached" in r else "–"
        notes = []
        if r.get("estimated"):
            notes.append("run time estimated from the timed segment")
        for key in ("t_fit", "t_grok", "rel_diff_to_ros34pw2", "members_per_s", "loop_members_per_s"):
            if key in r:
                notes.append(f"{key} {_fmt(r[key])}")
        if "speedup_over_loop" in r:
            notes.append(f"{r['speedup_over_loop']:.1f}× the loop")
        if r.get("result") and r["result"] != "successful":
            notes.append(r["result"])
        lines.append(
            f"| {r['part']} | {r['what']} | {r.get('method', '')} | {_fmt(r.get('first_call_s'))} | "
            f"{_fmt(r.get('run_s'))} | {reach} | {_fmt(r.get('steps'))} | {_fmt(r.get('grad_equivalents'))} | "
            f"{'; '.join(notes)} |"
        )
    m = result["machine"]
    return f"Device: {m['device']} ({m['platform']}), JAX {m['jax']}, {result['date']}; " + (
        f"{'smoke sizes' if result['smoke'] else 'paper sizes'}; wall time {result['wall_s']:.0f} s.\n\n"
        + "\n".join(lines)
    )


README_START = "<!-- gpu.py table: start -->"
README_END = "<!-- gpu.py table: end -->"


def write_readme(text: str, path: pathlib.Path = HERE / "README.md") -> None:
    """Replace the table between the GPU markers of benchmarks/README.md."""
    readme = path.read_text()
    if README_START not in readme or README_END not in readme:
        raise SystemExit(f"{path} has no {README_START} … {README_END} block to write the table into")
    head, rest = readme.split(README_START, 1)
    tail = rest.split(README_END, 1)[1]
    path.write_text(f"{head}{README_START}\n{text}\n{README_END}{tail}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="toy sizes and budgets (seconds on a CPU)")
    parser.add_argument("--parts", help=f"comma list of {', '.join(PARTS)} (default all)")
    parser.add_argument("--out", default=str(HERE / "results" / "gpu.json"), help="the JSON file to write")
    parser.add_argument("--readme", action="store_true", help="write the table into benchmarks/README.md")
    args = parser.parse_args(argv)
    parts = args.parts.split(",") if args.parts else list(PARTS)
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown parts {unknown}; choose from {', '.join(PARTS)}")
    sizes = _sizes(args.smoke)
    budgets = SMOKE_BUDGET_S if args.smoke else BUDGET_S
    begin = time.perf_counter()
    result = {"machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M"), "smoke": args.smoke, "rows": []}
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for name in parts:
        print(f"gpu.py: {name} (budget {budgets[name]:.0f} s)", file=sys.stderr, flush=True)
        result["rows"].extend(PARTS[name](sizes, budgets[name]))
        result["wall_s"] = time.perf_counter() - begin
        out.write_text(json.dumps(result, indent=1))  # after every part: a killed run keeps what it measured
    text = table(result)
    print(text)
    if args.readme:
        write_readme(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
