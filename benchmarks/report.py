"""Markdown tables from `suite.py`'s JSON, and the "## Long horizons" section of benchmarks/README.md.

    python benchmarks/report.py benchmarks/results/long_horizons.json [--readme]
    python benchmarks/report.py part1.json part2.json --merge-to results/long_horizons.json [--readme]

Runs of the suite made separately (for example one problem at a time) merge into one result:
the machine description and configuration of the first, the union of problems, λ values, methods,
references and runs, and every part's start time and load average kept under "parts". A run of a
later part replaces an earlier run of the same (problem, λ, method), so a row can be re-measured
(say on a quieter machine) without redoing the rest; every run records its part.

`--summary FILE` puts the Markdown of FILE (what the numbers mean, the goals) under the machine
line of the README section.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.suite import METHODS  # noqa: E402  (the suite imports only the standard library at load)

SECTION = "## Long horizons"


def _num(x, fmt="{:.3g}"):
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return fmt.format(x)


def _wall(row):
    if row.get("status") == "ok":
        return f"{row['wall_s']:.3g}"
    if "wall_s_estimate" in row:
        return f"~{row['wall_s_estimate']:.3g} (est.)"
    return "–"


def _ge(row):
    if row.get("status") == "ok" or row.get("method") == "gd":
        ge = row.get("grad_equivalents")
        prefix = "≥" if row.get("grad_equivalents_note") else ""
        return prefix + _num(ge, "{:.3g}") if ge is not None else "–"
    if "grad_equivalents_estimate" in row:
        return f"~{row['grad_equivalents_estimate']:.3g} (est.)"
    return "–"


def runs_table(result: dict) -> str:
    lines = [
        "| problem | λ | method | status | wall [s] | compile [s] | grad-equiv. | steps (rej.) | peak RSS [MB] | "
        "final θ rel. err | test-loss curve rel. err | part | note |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["runs"]:
        steps = r.get("num_steps")
        rej = r.get("num_rejected_steps")
        steps_s = "–" if steps is None else (f"{steps:.3g}" if rej is None else f"{steps} ({rej})")
        note = r.get("reason", "") if r.get("status") != "ok" else r.get("grad_equivalents_note", "")
        if r["method"] == "gd" and "eta" in r:
            note = (note + "; " if note else "") + f"η = {r['eta']:.3g}"
        lines.append(
            f"| {r['problem']} | {r['lam']:g} | {r['method']} | {r.get('status')} | {_wall(r)} | "
            f"{_num(r.get('compile_s'), '{:.2g}')} | {_ge(r)} | {steps_s} | {_num(r.get('peak_rss_mb'), '{:.0f}')} | "
            f"{_num(r.get('final_rel_error'), '{:.1e}')} | {_num(r.get('curve_rel_error'), '{:.1e}')} | "
            f"{r.get('part', 1)} | {note} |"
        )
    return "\n".join(lines)


def _row(result, problem, lam, method):
    for r in result["runs"]:
        if r["problem"] == problem and r["lam"] == lam and r["method"] == method:
            return r
    return None


def _cost(row, key):
    """(value, is_estimate) of 'wall' or 'ge' for a row, or (None, False)."""
    if row is None:
        return None, False
    if key == "wall":
        if row.get("status") == "ok":
            return row["wall_s"], False
        return row.get("wall_s_estimate"), True
    if row.get("status") == "ok" or row["method"] == "gd":
        return row.get("grad_equivalents"), row.get("status") != "ok"
    return row.get("grad_equivalents_estimate"), True


def speedups_table(result: dict, method: str = "ros34pw2") -> str:
    lines = [
        f"| problem | λ | GD grad-equiv. | {method} grad-equiv. | ratio | GD wall [s] | {method} wall [s] | ratio | "
        f"{method} final err |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for problem in result["problems"]:
        for lam in result["config"]["lams"]:
            gd, ros = _row(result, problem, lam, "gd"), _row(result, problem, lam, method)
            if gd is None or ros is None or ros.get("status") != "ok":
                continue
            g_ge, g_ge_est = _cost(gd, "ge")
            g_w, g_w_est = _cost(gd, "wall")
            r_ge, r_w = ros["grad_equivalents"], ros["wall_s"]
            est = lambda flag: " (est.)" if flag else ""
            lines.append(
                f"| {problem} | {lam:g} | {_num(g_ge)}{est(g_ge_est)} | {_num(r_ge)} | "
                f"{_num(g_ge / r_ge if g_ge else None, '{:.3g}×')} | {_num(g_w)}{est(g_w_est)} | {_num(r_w)} | "
                f"{_num(g_w / r_w if g_w else None, '{:.3g}×')} | {_num(ros.get('final_rel_error'), '{:.1e}')} |"
            )
    return "\n".join(lines)


# The ODE methods `solver="auto"` chooses between, at the suite's tolerance (rtol 1e-6).
AUTO_CANDIDATES = ("tsit5", "kvaerno5", "ros34pw2", "ros34pw2_krylov", "rkc")


def auto_table(result: dict) -> str:
    """Per (problem, λ): the solver `"auto"` picks, its cost, and the cheapest of the ODE methods
    run at the same tolerance (by wall time; estimated rows count at their estimate)."""
    lines = [
        '| problem | λ | sharpness(θ0) | `"auto"` takes | its wall [s] | cheapest | its wall [s] | wall ratio | '
        "grad-equiv. ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for problem in result["problems"]:
        for lam in result["config"]["lams"]:
            choice = result.get("auto", {}).get(f"{problem}@{lam:g}")
            if choice is None:
                continue
            costs = {}
            for method in AUTO_CANDIDATES:
                wall, _ = _cost(_row(result, problem, lam, method), "wall")
                if wall is not None:
                    costs[method] = wall
            if not costs or choice["solver"] not in costs:
                continue
            best = min(costs, key=costs.get)
            ge_auto, _ = _cost(_row(result, problem, lam, choice["solver"]), "ge")
            ge_best, _ = _cost(_row(result, problem, lam, best), "ge")
            ge_ratio = ge_auto / ge_best if ge_auto and ge_best else None
            lines.append(
                f"| {problem} | {lam:g} | {choice['sharpness_0']:.3g} | {choice['solver']} | "
                f"{_wall(_row(result, problem, lam, choice['solver']))} | {best} | "
                f"{_wall(_row(result, problem, lam, best))} | {costs[choice['solver']] / costs[best]:.2f}× | "
                f"{_num(ge_ratio, '{:.2f}×')} |"
            )
    return "\n".join(lines)


def machine_text(result: dict) -> str:
    m = result["machine"]
    cfg = result["config"]
    load = ", ".join(f"{x:.1f}" for x in m.get("load_average_at_start", []))
    return (
        f"Machine: {m['cpu']}, {m['cpu_count']} CPU cores, {m['memory_gib']} GiB, {m['platform']}; Python "
        f"{m['python']}, JAX {m['jax']}, Diffrax {m['diffrax']}, Equinox {m['equinox']}; float64 on "
        f"{', '.join(m['devices'])}. Load average at start: {load}. Run {cfg['started']} – {cfg.get('finished', '?')}; "
        f"t1 = 10/λ; ODE tolerances rtol {cfg['rtol']:g}, atol {cfg['atol']:g} (`ros34pw2@1e-4`: rtol "
        f"{cfg['loose_rtol']:g}); median of {cfg['repeats']} timed calls after the compiling one; budget "
        f"{cfg['budget_s']:.0f} s per run before a row is estimated." + parts_text(result)
    )


def parts_text(result: dict) -> str:
    """One sentence per part of a merged result: when it ran, at what load, and what it covered."""
    parts = result.get("parts", [])
    if len(parts) < 2:
        return ""
    items = []
    for number, part in enumerate(parts, start=1):
        load = ", ".join(f"{x:.1f}" for x in part.get("load_average_at_start") or [])
        if not part["methods"]:
            items.append(f'part {number}: what `solver="auto"` takes for every row (`--auto-only`), {part["started"]}')
            continue
        items.append(
            f"part {number}: {', '.join(part['problems'])} at λ = {', '.join(f'{v:g}' for v in part['lams'])}, "
            f"{', '.join(part['methods'])}; started {part['started']}, load average {load}"
        )
    return " Merged from " + f'{len(parts)} parts (column "part" of "Every run"): ' + "; ".join(items) + "."


def problems_text(result: dict) -> str:
    lines = [
        "| problem | parameters d | outputs N | loss | sharpness at θ0 → max (λ = smallest) |",
        "|---|---|---|---|---|",
    ]
    lam_min = min(result["config"]["lams"])
    for name, info in result["problems"].items():
        ref = result["references"].get(f"{name}@{lam_min:g}", {})
        lines.append(
            f"| {name} | {info['params']} | {info['outputs']} | {info['loss']} | "
            f"{_num(ref.get('sharpness_0'))} → {_num(ref.get('sharpness_max'))} |"
        )
    return "\n".join(lines)


def references_text(result: dict) -> str:
    lines = [
        "| problem @ λ | reference (ROS34PW2) | steps | wall [s] | independent check | rel. difference |",
        "|---|---|---|---|---|---|",
    ]
    for key, ref in result["references"].items():
        check = ref.get("check")
        chk = f"{check['solver']} rtol {check['rtol']:g}" if check else "–"
        diff = _num(check.get("final_rel_diff"), "{:.1e}") if check else "–"
        lines.append(f"| {key} | rtol {ref['rtol']:g} | {ref['num_steps']} | {ref['wall_s']:.3g} | {chk} | {diff} |")
    return "\n".join(lines)


def section(result: dict, summary: str = "") -> str:
    parts = [
        SECTION,
        "",
        "`python benchmarks/suite.py` (the whole grid; `--quick` is the smoke run the tests use). Written by "
        "`benchmarks/report.py` from `results/long_horizons.json`.",
        "",
        machine_text(result),
        "",
    ]
    if summary:
        parts += [summary, ""]
    parts += [
        "### Problems",
        "",
        problems_text(result),
        "",
        "### ROS34PW2 against gradient descent at its stable step",
        "",
        speedups_table(result),
        "",
        "### ROS34PW2 at rtol 1e-4 against gradient descent",
        "",
        "The goals ask for a final-state error ≤ 1e-3; `ros34pw2@1e-4` is the same solver at rtol 1e-4, atol 1e-6.",
        "",
        speedups_table(result, "ros34pw2@1e-4"),
        "",
        "### RKC against gradient descent at its stable step",
        "",
        "`rkc`: gflow's Runge–Kutta–Chebyshev solver (explicit; s stages reach eigenvalues down to "
        "−0.653·s²/h, s chosen per step from a power-method sharpness; no linear solves), rtol 1e-6; "
        "`rkc@1e-4` below it at rtol 1e-4.",
        "",
        speedups_table(result, "rkc"),
        "",
        speedups_table(result, "rkc@1e-4"),
        "",
        "### Tsit5 against gradient descent at its stable step",
        "",
        "Where the curvature collapses after the fit (cross-entropy) the explicit solver's step grows with it, "
        "while gradient descent's stays pinned by the largest sharpness along the path.",
        "",
        speedups_table(result, "tsit5"),
        "",
        '### `solver="auto"` against the cheapest method',
        "",
        'What `solver="auto"` (`gflow._simulate.choose_solver`) takes for each row, from the sharpness at θ0 '
        "(power iteration), t1, the loss and the number of outputs, against the cheapest of "
        f"{', '.join(AUTO_CANDIDATES)} at the same tolerance (rtol 1e-6). Gradient descent is left out: it "
        "does not meet a tolerance.",
        "",
        auto_table(result),
        "",
        "### Every run",
        "",
        "Memory is the peak resident set of the run's own process (JAX's CPU client has no device-memory "
        "statistics; the process holds the JAX runtime, ≈ 300–400 MB before any solve). Grad-equivalents count "
        "∇F, JVPs and VJPs as 1 and HVPs as 2; for Kvaerno5 they are a lower bound (Diffrax does not report its "
        'Newton iterations). "est." rows did not run to t1 within the budget: gradient descent\'s time is its '
        "step count times the measured time per step, an ODE solver's is extrapolated linearly in t from how "
        "far it got.",
        "",
        runs_table(result),
        "",
        "### References",
        "",
        references_text(result),
        "",
    ]
    return "\n".join(parts)


def update_readme(result: dict, path: Path, summary: str = "") -> None:
    """Replace (or append) the "## Long horizons" section; every other section stays as it is."""
    path = Path(path)
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    new = section(result, summary).rstrip() + "\n"
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == SECTION), None)
    if start is None:
        path.write_text(text.rstrip() + "\n\n" + new)
        return
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    rest = "".join(lines[end:])
    path.write_text("".join(lines[:start]) + new + ("\n" + rest if rest else ""))


def merge(results: list[dict]) -> dict:
    """One result from several suite runs (see the module docstring)."""
    out = json.loads(json.dumps(results[0]))
    out["parts"] = []
    for number, part in enumerate(results, start=1):
        out["parts"].append(
            {
                "started": part["config"]["started"],
                "finished": part["config"].get("finished"),
                "problems": part["config"]["problems"],
                "lams": part["config"]["lams"],
                "methods": part["config"]["methods"],
                "load_average_at_start": part["machine"].get("load_average_at_start"),
            }
        )
        if number == 1:
            for run in out["runs"]:
                run["part"] = 1
            continue
        cfg = out["config"]
        for key in ("problems", "lams", "methods"):
            cfg[key] = cfg[key] + [v for v in part["config"][key] if v not in cfg[key]]
        cfg["finished"] = part["config"].get("finished", cfg.get("finished"))
        out["problems"].update(part["problems"])
        out["references"].update(part["references"])
        out.setdefault("auto", {}).update(part.get("auto", {}))
        replaced = {(r["problem"], r["lam"], r["method"]) for r in part["runs"]}
        out["runs"] = [r for r in out["runs"] if (r["problem"], r["lam"], r["method"]) not in replaced]
        out["runs"] += [{**r, "part": number} for r in part["runs"]]
    # Canonical order whatever the order of the parts: problems by size, λ falling, methods as in
    # the suite.
    out["problems"] = dict(sorted(out["problems"].items(), key=lambda item: item[1]["params"]))
    out["config"]["lams"] = sorted(out["config"]["lams"], reverse=True)
    methods = [m for m in METHODS if m in out["config"]["methods"]]
    out["config"]["methods"] = methods + [m for m in out["config"]["methods"] if m not in methods]
    problems, lams, methods = list(out["problems"]), out["config"]["lams"], out["config"]["methods"]
    out["runs"].sort(key=lambda r: (problems.index(r["problem"]), lams.index(r["lam"]), methods.index(r["method"])))
    return out


def main(argv: list[str]) -> None:
    paths = [a for a in argv if not a.startswith("--") and not a.endswith(".json.out")]
    merge_to = summary = None
    if "--merge-to" in argv:
        merge_to = argv[argv.index("--merge-to") + 1]
        paths = [a for a in paths if a != merge_to]
    if "--summary" in argv:
        summary_path = argv[argv.index("--summary") + 1]
        summary = Path(summary_path).read_text().strip()
        paths = [a for a in paths if a != summary_path]
    data = merge([json.loads(Path(a).read_text()) for a in paths])
    if merge_to:
        Path(merge_to).write_text(json.dumps(data, indent=1))
    if "--readme" in argv:
        update_readme(data, Path(__file__).resolve().parent / "README.md", summary or "")
    else:
        print(section(data, summary or ""))


if __name__ == "__main__":
    main(sys.argv[1:])
