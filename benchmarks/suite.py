"""Long-horizon benchmark: gflow's stiff solvers against gradient descent and explicit/implicit Diffrax.

    python benchmarks/suite.py                 # the full suite (hours on 2 CPU cores)
    python benchmarks/suite.py --quick         # smoke run: one tiny problem, one λ (about a minute)
    python benchmarks/suite.py --problems diag1000 --lams 1e-5 --methods gd,ros34pw2

Each (problem, λ) is integrated to t1 = 10/λ by every method:

- `gd`: optax gradient descent (`gflow.gd`) at the largest stable step η = 1.9/sharpness, where
  sharpness is the largest top-Hessian eigenvalue (power iteration) at 12 points of the reference
  trajectory (θ0 included). The step is rounded down so that t1 is a whole number of steps.
- `tsit5`: Diffrax Tsit5 (explicit); `kvaerno5`: Diffrax Kvaerno5 (stiff, dense Jacobian, Diffrax's
  default stiff method); `ros34pw2` (Woodbury or CG, `solver="ros34pw2"`'s own choice) and
  `ros34pw2_krylov` (always matrix-free), at rtol 1e-6 (atol 1e-8); `ros34pw2@1e-4`: the same
  at rtol 1e-4 (atol 1e-6); `rkc` and `rkc@1e-4`: gflow's Runge–Kutta–Chebyshev solver (explicit,
  stabilized: stages per step from a power-method estimate of the sharpness) at the same two
  tolerances.

Per run, in a fresh subprocess (so that peak memory is the run's own): wall time of the run with
compilation apart (compile = first call − median of the repeated calls, each ended by
`block_until_ready`), gradient-equivalent evaluations (∇F, JVP and VJP = 1 each, HVP = 2:
`gflow._rosenbrock.gradient_equivalents`), peak resident memory (`ru_maxrss` of the subprocess, and
its value before the first call: JAX's CPU client keeps no device-memory statistics), and the
relative errors of the final θ and of the test-loss curve (sup over save times / sup of the
reference) against a reference: ROS34PW2 at rtol 1e-10 (1e-9 for the MLP), cross-checked by an
independent method where affordable.

Runs whose estimate exceeds `--budget` seconds (default 120) are not run to the end: gradient
descent's time is the step count times the time per step of a probe run, the ODE solvers run up to
a step cap that fits the budget and report how far they got. Such rows say "estimate".

Writes `results/long_horizons[_quick].json` (or `--out DIR`) and, with `--readme`, the table in
`benchmarks/README.md` under "## Long horizons".
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

LAMS = (1e-2, 1e-3, 1e-4, 1e-5)
METHODS = ("gd", "tsit5", "kvaerno5", "ros34pw2", "ros34pw2_krylov", "ros34pw2@1e-4", "rkc", "rkc@1e-4")
BENCH_RTOL, BENCH_ATOL = 1e-6, 1e-8
LOOSE_RTOL, LOOSE_ATOL = 1e-4, 1e-6
NUM_SAVES = 120
SHARPNESS_POINTS = 12
# Kvaerno5 materialises a d × d Jacobian (d Hessian–vector products) and LU-factors it every
# step: beyond this many parameters it is skipped (2 816 parameters: 1.5e10 flops per LU, seconds
# per step here; 11 200: 1 GiB per Jacobian and 1e12 flops per LU).
KVAERNO_MAX_PARAMS = 1500


def _jax():
    import jax

    jax.config.update("jax_enable_x64", True)
    return jax


def _maxrss_mb() -> float:
    # Linux reports kilobytes.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _flat(model):
    import equinox as eqx
    import numpy as np

    jax = _jax()
    return np.concatenate([np.ravel(np.asarray(x)) for x in jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array))])


def _call(fn):
    """(seconds, output) of one call, ended by `block_until_ready`."""
    jax = _jax()
    t = time.perf_counter()
    out = jax.block_until_ready(fn())
    return time.perf_counter() - t, out


def _repeat(fn, n: int, first_time: float, first_out):
    """Median time over `n` calls (the first one given: it must already be compiled)."""
    times, out = [first_time], first_out
    for _ in range(n - 1):
        t, out = _call(fn)
        times.append(t)
    return statistics.median(times), len(times), out


# ---------------------------------------------------------------------------------------------
# Worker: one (problem, λ, method) in its own process
# ---------------------------------------------------------------------------------------------


def _problem(name: str, quick: bool):
    from benchmarks.problems import PROBLEMS

    return PROBLEMS[name](quick)


def _reference_tol(problem_name: str) -> float:
    return 1e-9 if problem_name == "modular_mlp" else 1e-10


def worker_reference(spec: dict) -> dict:
    """Tight ROS34PW2 solve, its save grid and curves, and the sharpness along it."""
    import numpy as np

    jax = _jax()
    import equinox as eqx

    import gflow

    problem = _problem(spec["problem"], spec["quick"])
    lam, t1 = spec["lam"], 10.0 / spec["lam"]
    rtol = _reference_tol(spec["problem"])
    # Log-spaced times (the ODE solvers' curves) plus t1·k/100 (gradient descent's save times).
    grid = np.unique(np.concatenate([np.asarray(gflow.log_times(t1, NUM_SAVES)), t1 * np.arange(1, 101) / 100]))
    grid[-1] = t1
    log_idx = np.searchsorted(grid, np.asarray(gflow.log_times(t1, NUM_SAVES)))
    sharp_idx = np.unique(log_idx[np.linspace(0, NUM_SAVES - 1, SHARPNESS_POINTS).round().astype(int)])
    t = time.perf_counter()
    traj = gflow.simulate(
        problem,
        lam,
        t1,
        solver="ros34pw2",
        saveat=grid,
        rtol=rtol,
        atol=rtol * 1e-2,
        max_steps=2_000_000,
        save_params=True,
    )
    jax.block_until_ready(traj)
    wall = time.perf_counter() - t
    params, static = problem.split()
    sharp = []
    for i in sharp_idx:
        p_i = jax.tree.map(lambda x: x[i], traj.params)
        moved = eqx.tree_at(lambda pr: pr.model, problem, eqx.combine(p_i, static))
        sharp.append(float(gflow._simulate._top_hessian_eigenvalue(moved, iters=50)))
    out = {
        "ok": bool(traj.ok),
        "message": traj.message,
        "rtol": rtol,
        "wall_s": wall,
        "num_steps": int(traj.stats["num_steps"]),
        "grad_equivalents": int(traj.stats["num_gradient_equivalents"]),
        "sharpness": dict(zip([float(grid[i]) for i in sharp_idx], sharp, strict=True)),
        "sharpness_max": max(sharp),
        "sharpness_0": sharp[0],
    }
    np.savez(
        spec["cache"],
        theta=_flat(traj.final),
        ts=grid,
        test_loss=np.asarray(traj.metrics["test_loss"]),
        test_accuracy=np.asarray(traj.metrics.get("test_accuracy", np.full(len(grid), np.nan))),
    )
    # Independent cross-check where it is affordable: the matrix-free W path at the same
    # tolerance (a different linear algebra and step sequence), or Tsit5 at rtol 1e-10.
    check = spec.get("check")
    if check:
        solver, c_rtol = check
        t = time.perf_counter()
        other = gflow.simulate(
            problem, lam, t1, solver=solver, saveat=grid, rtol=c_rtol, atol=c_rtol * 1e-2, max_steps=2_000_000
        )
        jax.block_until_ready(other)
        a, b = _flat(other.final), _flat(traj.final)
        out["check"] = {
            "solver": solver,
            "rtol": c_rtol,
            "ok": bool(other.ok),
            "wall_s": time.perf_counter() - t,
            "final_rel_diff": float(np.linalg.norm(a - b) / np.linalg.norm(b)),
        }
    return out


def _errors(ref, theta, ts, curve):
    import numpy as np

    final = float(np.linalg.norm(theta - ref["theta"]) / np.linalg.norm(ref["theta"]))
    ref_curve = np.interp(ts, ref["ts"], ref["test_loss"]) if not np.array_equal(ts, ref["ts"]) else ref["test_loss"]
    scale = float(np.nanmax(np.abs(ref["test_loss"])))
    curve_err = float(np.nanmax(np.abs(np.asarray(curve) - ref_curve)) / scale)
    return final, curve_err


def worker_ode(spec: dict) -> dict:
    import numpy as np

    _jax()  # float64 before gflow is imported
    import gflow

    problem = _problem(spec["problem"], spec["quick"])
    lam, t1 = spec["lam"], 10.0 / spec["lam"]
    ref = dict(np.load(spec["cache"]))
    solver, rtol, atol = spec["solver"], spec["rtol"], spec["atol"]
    rss0 = _maxrss_mb()
    budget, repeats = spec["budget"], spec["repeats"]

    def run(max_steps):
        return lambda: gflow.simulate(
            problem, lam, t1, solver=solver, saveat=ref["ts"], rtol=rtol, atol=atol, max_steps=max_steps
        )

    probe = spec.get("probe_steps")
    cap = probe or 2_000_000
    first, traj = _call(run(cap))  # compilation + run
    if probe and not bool(traj.ok):
        # Explicit/dense solvers: time per step from the capped probe, then a run capped to the
        # budget. A new max_steps recompiles; the probe's compile time is subtracted from its first call.
        probe_wall, traj = _call(run(cap))
        compile_s = max(first - probe_wall, 0.0)
        per_step = probe_wall / max(int(traj.stats["num_steps"]), 1)
        cap = max(probe, min(int(budget / per_step), 2_000_000))
        first, traj = _call(run(cap))
        first_run = max(first - compile_s, 0.0)
    else:
        compile_s, first_run = None, None
    finished = bool(traj.ok)
    if finished:
        # Median of timed calls after compilation (one only when a call is long).
        n = repeats if (first_run or first) * repeats <= 3 * budget else 1
        times = []
        for _ in range(max(n, 1)):
            t_call, traj = _call(run(cap))
            times.append(t_call)
        wall, done = statistics.median(times), len(times)
        if compile_s is None or first_run is None:
            compile_s = max(first - wall, 0.0)
    else:
        wall, done = first_run if first_run is not None else first, 0
        if compile_s is None:
            compile_s = float("nan")
    stats = {k: int(v) for k, v in traj.stats.items() if k.startswith("num") or k == "max_steps"}
    row = {
        "status": "ok" if finished else "estimate",
        "wall_s": wall,
        "compile_s": compile_s,
        "repeats": done,
        "num_steps": stats.get("num_steps"),
        "num_rejected_steps": stats.get("num_rejected_steps"),
        "grad_equivalents": stats.get("num_gradient_equivalents", float("nan")),
        "counts": stats,
        "baseline_rss_mb": rss0,
        "peak_rss_mb": _maxrss_mb(),
        "t_reached": float(traj.t_final),
    }
    if solver == "kvaerno5":
        # Diffrax does not count Kvaerno5's Newton iterations; a lower bound: one dense Jacobian
        # (d Hessian–vector products) and one gradient per implicit stage (6) per step.
        d = gflow.count_params(problem.model)
        row["grad_equivalents"] = stats["num_steps"] * (2 * d + 6)
        row["grad_equivalents_note"] = "lower bound: steps x (2d + 6)"
    if finished:
        row["final_rel_error"], row["curve_rel_error"] = _errors(
            ref, _flat(traj.final), np.asarray(traj.ts), np.asarray(traj.metrics["test_loss"])
        )
    else:
        row["reason"] = (
            f"stopped at the step cap {cap} fitted to the {budget:.0f} s budget: reached t = {float(traj.t_final):.3g} "
            f"of {t1:.3g} after {stats['num_steps']} steps in {wall:.1f} s"
        )
        frac = float(traj.t_final) / t1
        if 0 < frac < 1:
            row["wall_s_estimate"] = wall / frac
            row["grad_equivalents_estimate"] = row["grad_equivalents"] / frac
            row["estimate_note"] = "linear extrapolation in t (steps are stability-limited, ~uniform in t)"
    return row


def worker_gd(spec: dict) -> dict:
    import numpy as np

    _jax()  # float64 before gflow is imported
    import gflow

    problem = _problem(spec["problem"], spec["quick"])
    lam, t1 = spec["lam"], 10.0 / spec["lam"]
    ref = dict(np.load(spec["cache"]))
    eta_stable = 1.9 / spec["sharpness_max"]
    steps = 100 * math.ceil(t1 / (100 * eta_stable))
    eta = t1 / steps
    rss0 = _maxrss_mb()
    probe_steps = min(steps, 5000)
    probe = lambda: gflow.gd(problem, lam, eta, probe_steps, save_every=probe_steps)
    first, _ = _call(probe)
    per, _, _ = _repeat(probe, 2, *_call(probe))
    per_step = per / probe_steps
    compile_s = max(first - per, 0.0)
    row = {
        "eta": eta,
        "eta_stable": eta_stable,
        "num_steps": steps,
        "grad_equivalents": steps,
        "baseline_rss_mb": rss0,
        "per_step_s": per_step,
        "compile_s": compile_s,
    }
    if steps * per_step > spec["budget"]:
        row.update(
            status="estimate",
            wall_s_estimate=steps * per_step,
            peak_rss_mb=_maxrss_mb(),
            reason=f"{steps:.3g} steps x {per_step * 1e6:.2f} us/step (probe of {probe_steps} steps) "
            f"= {steps * per_step:.0f} s > {spec['budget']:.0f} s budget",
        )
        return row
    full = lambda: gflow.gd(problem, lam, eta, steps, save_every=steps // 100)
    first_full, traj = _call(full)  # recompiles for the new step count
    wall = max(first_full - compile_s, 0.0)
    done = 1
    if wall * spec["repeats"] <= 3 * spec["budget"]:
        wall, done, traj = _repeat(full, spec["repeats"], *_call(full))
    final, curve = _errors(ref, _flat(traj.final), np.asarray(traj.ts), np.asarray(traj.metrics["test_loss"]))
    row.update(
        status="ok" if bool(traj.ok) else "failed",
        wall_s=wall,
        repeats=done,
        peak_rss_mb=_maxrss_mb(),
        final_rel_error=final,
        curve_rel_error=curve,
        curve_note="on GD's save times t = k·t1/100 (also reference save times)",
    )
    if not bool(traj.ok):
        row["reason"] = traj.message
    return row


def worker_main(spec_json: str) -> None:
    spec = json.loads(spec_json)
    kind = spec["kind"]
    out = {"reference": worker_reference, "ode": worker_ode, "gd": worker_gd}[kind](spec)
    print("RESULT " + json.dumps(out))


# ---------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------


def _spawn(spec: dict, timeout: float) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=HERE.parent)
    except subprocess.TimeoutExpired:
        return {"status": "skipped", "reason": f"worker exceeded {timeout:.0f} s"}
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    return {"status": "failed", "reason": (proc.stderr.strip().splitlines() or ["no output"])[-1][:300]}


def machine_info() -> dict:
    jax = _jax()
    import diffrax
    import equinox
    import numpy

    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor()
    try:
        mem = next(int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal")) / 2**20
    except (OSError, StopIteration):
        mem = float("nan")
    try:
        load = os.getloadavg()
    except OSError:
        load = (float("nan"),) * 3
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "memory_gib": round(mem, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "diffrax": diffrax.__version__,
        "equinox": equinox.__version__,
        "numpy": numpy.__version__,
        "devices": [str(d) for d in jax.devices()],
        "load_average_at_start": load,
        "dtype": "float64",
    }


def method_spec(method: str, problem: str, n_params: int, auto_is_krylov: bool) -> dict | str:
    """The worker spec of a method, or the reason it is not run."""
    if method == "gd":
        return {"kind": "gd"}
    if method == "ros34pw2_krylov" and auto_is_krylov:
        return "same as ros34pw2 (its W-matrix choice is already matrix-free CG here)"
    if method == "kvaerno5" and n_params > KVAERNO_MAX_PARAMS:
        gib = n_params**2 * 8 / 2**30
        return (
            f"dense {n_params}x{n_params} Jacobian ({gib:.1f} GiB) and ~{n_params**3 * 2 / 3:.1e} flops per LU, "
            "every step: not run"
        )
    if method.endswith("@1e-4"):
        return {"kind": "ode", "solver": method.split("@")[0], "rtol": LOOSE_RTOL, "atol": LOOSE_ATOL}
    spec = {"kind": "ode", "solver": method, "rtol": BENCH_RTOL, "atol": BENCH_ATOL}
    if method in ("tsit5", "kvaerno5"):
        spec["probe_steps"] = 2000 if method == "tsit5" else 50
    return spec


def run_suite(args) -> dict:
    _jax()  # float64 before gflow is imported
    import gflow
    from benchmarks.problems import PROBLEMS, describe

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    problems = args.problems.split(",") if args.problems else (["diag100"] if args.quick else list(PROBLEMS))
    lams = [float(x) for x in args.lams.split(",")] if args.lams else ([1e-2] if args.quick else list(LAMS))
    methods = (
        args.methods.split(",") if args.methods else (["gd", "tsit5", "ros34pw2"] if args.quick else list(METHODS))
    )
    if args.auto_only:
        methods = []
    repeats = 1 if args.quick else args.repeats
    result = {
        "config": {
            "quick": args.quick,
            "problems": problems,
            "lams": lams,
            "methods": methods,
            "repeats": repeats,
            "budget_s": args.budget,
            "t1": "10/lam",
            "rtol": BENCH_RTOL,
            "atol": BENCH_ATOL,
            "loose_rtol": LOOSE_RTOL,
            "num_saves": NUM_SAVES,
            "started": datetime.datetime.now().isoformat(timespec="seconds"),
        },
        "machine": machine_info(),
        "problems": {},
        "references": {},
        # What `solver="auto"` picks for each (problem, λ) at t1 = 10/λ, with the sharpness it read.
        "auto": {},
        "runs": [],
    }
    name = "long_horizons_quick.json" if args.quick else "long_horizons.json"
    path = out_dir / name

    def save():
        result["config"]["finished"] = datetime.datetime.now().isoformat(timespec="seconds")
        path.write_text(json.dumps(result, indent=1))

    for pname in problems:
        problem = PROBLEMS[pname](args.quick)
        info = describe(problem)
        w = gflow._simulate.choose_w_matrix(problem, 1e-3, False)
        info["ros34pw2_w_matrix"] = w.describe()
        auto_is_krylov = not getattr(w, "woodbury", False) and not getattr(w, "dense", False)
        result["problems"][pname] = info
        for lam in lams:
            key = f"{pname}@{lam:g}"
            solver, sharp = gflow._simulate.choose_solver(problem, lam, 10 / lam)
            result["auto"][key] = {"solver": solver, "sharpness_0": sharp}
            print(f"[{key}] solver='auto' takes {solver} (sharpness at θ0 {sharp:.3g})", flush=True)
            if args.auto_only:
                continue
            ref_file = cache / f"{pname}{'_quick' if args.quick else ''}_{lam:g}.npz"
            meta_file = ref_file.with_suffix(".json")
            if ref_file.exists() and meta_file.exists() and not args.fresh:
                ref = json.loads(meta_file.read_text())
            else:
                # An independent check: the other W-matrix path at the same tolerance, or Tsit5 where
                # explicit steps are affordable; else self-convergence against 10× the tolerance.
                if not auto_is_krylov:
                    check = ("ros34pw2_krylov", _reference_tol(pname))
                elif lam >= 1e-3:
                    check = ("tsit5", 1e-10)
                else:
                    check = ("ros34pw2", 10 * _reference_tol(pname))
                print(f"[{key}] reference ...", flush=True)
                ref = _spawn(
                    {
                        "kind": "reference",
                        "problem": pname,
                        "quick": args.quick,
                        "lam": lam,
                        "cache": str(ref_file),
                        "check": check,
                    },
                    timeout=args.ref_timeout,
                )
                if "sharpness_max" not in ref or not ref.get("ok"):
                    print(f"[{key}] reference failed: {ref}", flush=True)
                    result["references"][key] = ref
                    result["runs"] += [
                        {
                            "problem": pname,
                            "lam": lam,
                            "method": m,
                            "t1": 10 / lam,
                            "status": "skipped",
                            "reason": "no reference",
                        }
                        for m in methods
                    ]
                    save()
                    continue
                meta_file.write_text(json.dumps(ref))
            result["references"][key] = ref
            for method in methods:
                spec = method_spec(method, pname, info["params"], auto_is_krylov)
                row = {"problem": pname, "lam": lam, "method": method, "t1": 10 / lam}
                if isinstance(spec, str):
                    row.update(status="skipped", reason=spec)
                else:
                    spec.update(
                        problem=pname,
                        quick=args.quick,
                        lam=lam,
                        cache=str(ref_file),
                        budget=args.budget,
                        repeats=repeats,
                        sharpness_max=ref["sharpness_max"],
                    )
                    t = time.perf_counter()
                    row.update(_spawn(spec, timeout=args.worker_timeout))
                    row["process_s"] = time.perf_counter() - t
                print(
                    f"[{key}] {method}: {row.get('status')} wall={row.get('wall_s', row.get('wall_s_estimate'))} "
                    f"ge={row.get('grad_equivalents')} err={row.get('final_rel_error')}",
                    flush=True,
                )
                result["runs"].append(row)
                save()
    save()
    if args.readme:
        from benchmarks.report import update_readme

        update_readme(result, HERE / "README.md")
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: diag100 (40 parameters), lam 1e-2, gd/tsit5/ros34pw2"
    )
    parser.add_argument("--out", default=str(HERE / "results"), help="folder for the JSON (default benchmarks/results)")
    parser.add_argument(
        "--cache",
        default=None,
        help="reference cache folder (default $XDG_CACHE_HOME/gflow-benchmarks, or OUT/cache with --quick)",
    )
    parser.add_argument("--problems", help="comma list (default all)")
    parser.add_argument("--lams", help="comma list (default 1e-2,1e-3,1e-4,1e-5)")
    parser.add_argument("--methods", help=f"comma list of {', '.join(METHODS)}")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls after the first (median)")
    parser.add_argument("--budget", type=float, default=120.0, help="seconds a run may take before it is estimated")
    parser.add_argument("--worker-timeout", type=float, default=1800.0)
    parser.add_argument("--ref-timeout", type=float, default=7200.0)
    parser.add_argument("--fresh", action="store_true", help="recompute cached references")
    parser.add_argument(
        "--auto-only", action="store_true", help="record only what solver='auto' picks (no references, no runs)"
    )
    parser.add_argument("--readme", action="store_true", help="write the table into benchmarks/README.md")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker_main(args.worker)
        return
    if args.cache is None:
        base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "gflow-benchmarks"
        args.cache = str(Path(args.out) / "cache" if args.quick else base)
    run_suite(args)


if __name__ == "__main__":
    main()
