"""ReLU flows (issue 12): how accurately and how cheaply do ODE solvers integrate a ReLU network's
gradient flow, measured on what researchers read (fit time, grokking time, final test metrics)?

    python benchmarks/relu_flows.py                      # Lyu's quick MLP at λ = 1e-3 (tens of minutes)
    python benchmarks/relu_flows.py --lams 1e-3,1e-4     # also λ = 1e-4 (t1 = 10/λ = 1e5)
    python benchmarks/relu_flows.py --lams 1e-4 --methods auto,gd --ref-lr 0.075 --no-order-check
                                                         # λ = 1e-4 against GD at 0.15 and 0.075 (24 min here)
    python benchmarks/relu_flows.py --lams 1e-5 --methods auto --ref-lr 0.15 --single-reference
                                                         # λ = 1e-5 (t1 = 1e6) against GD at 0.15 alone (81 min)
    python benchmarks/relu_flows.py --problem musat_relu --lams 1e-3 --methods auto,gd,rkc@1e-3 --no-order-check
                                                         # Musat's ReLU embedding net, summed squared loss
    python benchmarks/relu_flows.py --smoke              # the quick problem at λ = 1e-2 (t1 = 1e3)
    python benchmarks/relu_flows.py --readme             # also write the table in benchmarks/README.md

Problem: `gflow.tasks.modular_arithmetic(0, p=23, width=128, train_fraction=0.9)`, Lyu's E3.1
two-layer ReLU MLP (concatenated one-hots, first-layer bias, He init), mean cross-entropy, integrated
to t1 = 10/λ. A ReLU network's vector field jumps wherever a pre-activation changes sign, so an
embedded error estimate can under-report the error of a step that crosses a kink (both embedded
solutions share its wrong stages); low-order pairs (Bogacki–Shampine 3(2), Heun–Euler 2(1)) carry
the jump in their difference at a lower order, which is why they are measured beside Tsit5 5(4).

Observables (on a fine log-spaced save grid; crossing times interpolated linearly between saves):
- fit time: the first time from which train accuracy ≥ 0.99 for good;
- grokking time: the first time from which test accuracy ≥ 0.5 for good;
- final test accuracy and test loss at t1.

Reference: gradient descent (`gflow.gd`) at 4η_ref, 2η_ref and η_ref, its fit and grokking times
Richardson-extrapolated to η → 0 (GD is Euler's method on the flow: first order in η), with the
ratio of successive differences recorded as the check of that order. Every method's observables
are compared with it (final metrics with GD at η_ref). Cost: gradient evaluations (GD: one per
step; explicit Runge–Kutta: from the tableau, rejected steps included) and wall time with
compilation apart (first call minus a second, identical call, each ended by
`block_until_ready`; calls over 30 s are not repeated, and their time includes the few seconds of
compilation: "compile s" is then "-").

Writes `results/relu_flows[_smoke][_lamΛ].json` (`_lamΛ` when `--lams` is given) and, with
`--readme`, the table under "## ReLU flows"
in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

FIT_ACCURACY, GROK_ACCURACY = 0.99, 0.5
# problem: {size: (task arguments, GD reference step, GD step of the "GD at its usual step" row,
# saves, step cap of the flows other than "auto")}. A GD step of None is 1/sharpness(θ0) (the
# reference step then half of it), issue 12's baseline. lyu_mlp keeps η = 0.15, the figure's
# step, for its "gd" row; its 1/sharpness(θ0) is 8 (sharpness 0.125): run `gd@8` for the baseline.
SIZES = {
    "lyu_mlp": {
        "quick": ({"p": 23, "width": 128, "train_fraction": 0.9}, 0.025, 0.15, 3000, 60_000),
        # The quick problem at λ = 1e-2 (t1 = 1000); smaller instances of this task do not grok at all.
        "smoke": ({"p": 23, "width": 128, "train_fraction": 0.9}, 0.025, 0.15, 400, 60_000),
    },
    # Musat's E2.4 embedding network with its ReLU and the paper's summed squared loss
    # (`problems.musat_embedding(relu=True)`): sharpness(θ0) ≈ 119, so GD's stable step is ≈ 0.017.
    "musat_relu": {
        "quick": ({"p": 11, "width": 128}, None, None, 3000, 200_000),
        "smoke": ({"p": 7, "width": 32}, None, None, 400, 200_000),
    },
}
METHODS = (
    "auto",
    "gd",
    "tsit5@1e-3",
    "tsit5@1e-4",
    "tsit5@1e-5",
    "bosh3@1e-3",
    "bosh3@1e-4",
    "bosh3@1e-5",
    "heun@1e-3",
    "rkc@1e-3",
    "rkc@1e-4",
    "rkc@1e-5",
    "rkc1@1e-3",
    "rkc1@1e-4",
)


def is_gd_step(method: str) -> bool:
    """ "gd@η": gradient descent at the step η (a positive number)."""
    try:
        return method.startswith("gd@") and float(method[3:]) > 0
    except ValueError:
        return False


def build(problem: str, size: str):
    import gflow

    if problem == "musat_relu":
        from problems import musat_embedding

        return musat_embedding(quick=size == "smoke", relu=True)
    return gflow.tasks.modular_arithmetic(0, **SIZES[problem][size][0])


def crossing(ts, values, threshold: float) -> float:
    """First time from which `values` ≥ `threshold` for good, interpolated between the two saves
    around the crossing (NaN if never)."""
    ts, values = np.asarray(ts, float), np.asarray(values, float)
    good = np.isfinite(values)
    ok = (values >= threshold) | ~good
    stays = np.flip(np.logical_and.accumulate(np.flip(ok))) & good
    idx = np.nonzero(stays)[0]
    if not idx.size:
        return math.nan
    i = idx[0]
    if i == 0 or not np.isfinite(values[i - 1]) or values[i] == values[i - 1]:
        return float(ts[i])
    frac = (threshold - values[i - 1]) / (values[i] - values[i - 1])
    return float(ts[i - 1] + np.clip(frac, 0.0, 1.0) * (ts[i] - ts[i - 1]))


def observables(ts, metrics) -> dict:
    return {
        "t_fit": crossing(ts, metrics["train_accuracy"], FIT_ACCURACY),
        "t_grok": crossing(ts, metrics["test_accuracy"], GROK_ACCURACY),
        "final_test_accuracy": float(np.asarray(metrics["test_accuracy"])[-1]),
        "final_test_loss": float(np.asarray(metrics["test_loss"])[-1]),
    }


def _timed(fn):
    import jax

    start = time.perf_counter()
    out = jax.block_until_ready(fn())
    first = time.perf_counter() - start
    if first > 30:  # too long to repeat: report the wall time with compilation included (a few s)
        return out, first, None
    start = time.perf_counter()
    out = jax.block_until_ready(fn())
    run = time.perf_counter() - start
    return out, run, max(first - run, 0.0)


def run_gd(problem, lam: float, t1: float, lr: float, saves: int) -> dict:
    import gflow

    steps = int(round(t1 / lr))
    save_every = max(1, steps // saves)
    steps = save_every * (steps // save_every)
    traj, run_s, compile_s = _timed(lambda: gflow.gd(problem, lam, lr, steps, save_every=save_every))
    row = {"method": f"gd@{lr:g}", "eta": lr, "gradients": int(traj.stats["num_vf_evals"]), "ok": bool(traj.ok)}
    row.update(observables(np.asarray(traj.ts), traj.metrics))
    row.update({"run_s": run_s, "compile_s": compile_s, "steps": steps})
    return row


def run_flow(problem, lam: float, t1: float, method: str, saves: int, max_steps: int) -> dict:
    import diffrax

    import gflow

    saveat = np.asarray(gflow.log_times(np.float64(t1), saves, 1e-2))
    if method == "auto":
        # `simulate` at its defaults: what a user gets (solver, tolerances and step budget).
        rtol = None
        traj, run_s, compile_s = _timed(lambda: gflow.simulate(problem, lam, t1, saveat=saveat))
    else:
        name, rtol = method.split("@")
        rtol = float(rtol)
        solver = {
            "tsit5": diffrax.Tsit5(),
            "bosh3": diffrax.Bosh3(),
            "heun": diffrax.Heun(),
            "rkc": gflow.RKC(),
            "rkc1": gflow.RKC1(),
        }[name]
        traj, run_s, compile_s = _timed(
            lambda: gflow.simulate(
                problem, lam, t1, solver=solver, rtol=rtol, atol=rtol * 1e-2, saveat=saveat, max_steps=max_steps
            )
        )
    row = {
        "method": method if method != "auto" else f"auto ({traj.solver})",
        "rtol": rtol,
        # RKC's power method adds Hessian–vector products (2 gradients each).
        "gradients": int(traj.stats.get("num_gradient_equivalents", traj.stats["num_vf_evals"])),
        "steps": int(traj.stats["num_steps"]),
        "rejected": int(traj.stats["num_rejected_steps"]),
        "ok": bool(traj.ok),
        "message": traj.message,
    }
    # The race of "auto" on a kinked flow that may be stiff (Bosh3 against RKC, `_probe_and_race`).
    row.update({k: float(traj.stats[k]) for k in ("num_races", "race_t", "rkc_steps") if k in traj.stats})
    row.update(observables(np.asarray(traj.ts), traj.metrics))
    row.update({"run_s": run_s, "compile_s": compile_s})
    return row


def reference(
    problem,
    lam: float,
    t1: float,
    lr: float,
    saves: int,
    echo=print,
    *,
    order_check: bool = True,
    single: bool = False,
) -> tuple[dict, list[dict]]:
    """Gradient descent at 4η (with `order_check`), 2η and η, Richardson-extrapolated to η → 0.

    GD's times converge like t(η) = t* + cη + O(η²) (it is Euler's method on the flow), so
    t* ≈ 2t(η) − t(2η). The ratio of successive differences, (t(4η) − t(2η))/(t(2η) − t(η)),
    should be near 2 for that to hold; it is recorded (with `order_check`), as is the size of the
    last correction |t(η) − t(2η)|, an estimate of the remaining error of t(η) itself. Final
    metrics come from η. Without `order_check` (long horizons, where 4η may be past GD's stable
    step) only 2η and η run. With `single` (horizons where even 2η is too costly) the reference is
    GD at η itself, not extrapolated.
    """
    if single:
        row = run_gd(problem, lam, t1, lr, saves)
        ref = dict(row, method=f"gd@{lr:g} (not extrapolated)")
        echo(f"    reference: gd η = {lr:g} alone → t_fit {ref['t_fit']:.5g}, t_grok {ref['t_grok']:.5g}")
        return ref, [ref]
    factors = (4, 2, 1) if order_check else (2, 1)
    rows = [run_gd(problem, lam, t1, k * lr, saves) for k in factors]
    ref = dict(rows[-1], method=f"gd→0 (Richardson, η = {lr:g}, {2 * lr:g})")
    for key in ("t_fit", "t_grok"):
        t2, t1_ = rows[-2][key], rows[-1][key]
        ref[key] = 2 * t1_ - t2
        ref[f"{key}_last_correction"] = abs(t1_ - t2) / abs(ref[key]) if ref[key] else math.nan
        line = f"    reference {key}: gd η = {2 * lr:g}, {lr:g} → {t2:.5g}, {t1_:.5g}; extrapolated {ref[key]:.5g}"
        if order_check:
            t4 = rows[0][key]
            ref[f"{key}_difference_ratio"] = (t4 - t2) / (t2 - t1_) if t2 != t1_ else math.nan
            line += f" (gd η = {4 * lr:g} → {t4:.5g}; difference ratio {ref[f'{key}_difference_ratio']:.2f})"
        echo(line)
    return ref, rows + [ref]


def measure(
    size: str,
    lams,
    methods,
    echo=print,
    previous=None,
    ref_lr: float | None = None,
    order_check: bool = True,
    problem_name: str = "lyu_mlp",
    single_reference: bool = False,
) -> list[dict]:
    """Rows of every λ: the reference, its checks and the methods. With `previous` (the rows of an
    earlier run of the same size), its reference rows at a λ are reused instead of recomputed,
    and its method rows not run now are kept."""
    import jax

    jax.config.update("jax_enable_x64", True)
    from gflow._simulate import choose_solver

    task, lr_ref, lr_usual, saves, max_steps = SIZES[problem_name][size]
    lr_ref = lr_ref if ref_lr is None else ref_lr
    problem = build(problem_name, size)
    if lr_usual is None:
        # 1/sharpness(θ0) (the estimate "auto" makes, at the first λ), issue 12's GD baseline
        lr_usual = float(f"{1 / choose_solver(problem, lams[0], 10 / lams[0])[1]:.3g}")
        echo(f"  GD's usual step 1/sharpness(θ0) = {lr_usual:g}")
    if lr_ref is None:
        lr_ref = lr_usual / 2
    rows = []
    for lam in lams:
        t1 = 10.0 / lam
        echo(f"  λ = {lam:g}, t1 = {t1:g}")
        earlier = [r for r in previous or () if r["lam"] == lam]
        # ("auto (bosh3+rkc1)" is the row of the method "auto")
        kept = [r for r in earlier if r["role"] != "method" or r["method"].split(" ")[0] not in methods]
        ref = next((r for r in kept if r["role"] == "reference"), None)
        if ref is None:
            ref, ref_rows = reference(
                problem, lam, t1, lr_ref, saves, echo, order_check=order_check, single=single_reference
            )
            results = [dict(r, role="reference" if r is ref else "reference check") for r in ref_rows]
        else:
            echo(f"    reference reused: t_fit {ref['t_fit']:.5g}, t_grok {ref['t_grok']:.5g}")
            results = kept
        for method in methods:
            if method == "gd" or is_gd_step(method):
                row = run_gd(problem, lam, t1, lr_usual if method == "gd" else float(method[3:]), saves)
            else:
                row = run_flow(problem, lam, t1, method, saves, max_steps)
            results.append(dict(row, role="method"))
        for row in results:
            row["lam"], row["t1"] = lam, t1
            for key in ("t_fit", "t_grok", "final_test_loss"):
                row[f"{key}_rel_error"] = abs(row[key] - ref[key]) / abs(ref[key]) if ref[key] else math.nan
            row["final_test_accuracy_error"] = abs(row["final_test_accuracy"] - ref["final_test_accuracy"])
            echo(
                f"    {row['method']:<14} grads {row['gradients']:>9,}  t_fit {row['t_fit']:.4g} "
                f"({100 * row['t_fit_rel_error']:.2f}%)  "
                f"t_grok {row['t_grok']:.4g} ({100 * row['t_grok_rel_error']:.2f}%)  "
                f"test acc {row['final_test_accuracy']:.3f}  run {row['run_s']:.1f} s"
            )
        rows += results
    return rows


def table(rows) -> str:
    lines = [
        "| λ | method | gradients | fit time (error) | grokking time (error) | final test acc "
        "| final test loss (error) | run s | compile s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["role"] == "reference check":
            continue
        compile_s = "-" if r["compile_s"] is None else f"{r['compile_s']:.1f}"
        name = r["method"] + (" (reference)" if r["role"] == "reference" else "")
        if not r.get("ok", True):
            # Times read from a run that stopped early cover only the part it integrated.
            name += " (stopped at the step cap before t1)"
        lines.append(
            f"| {r['lam']:g} | {name} | {r['gradients']:,} | {r['t_fit']:.4g} ({100 * r['t_fit_rel_error']:.1f}%) "
            f"| {r['t_grok']:.4g} ({100 * r['t_grok_rel_error']:.2f}%) | {r['final_test_accuracy']:.3f} "
            f"| {r['final_test_loss']:.3g} ({100 * r['final_test_loss_rel_error']:.1f}%) "
            f"| {r['run_s']:.1f} | {compile_s} |"
        )
    return "\n".join(lines)


def run_meta(size: str, **extra) -> dict:
    """The JSON's `meta`: date, platform, device, JAX version, size and `extra`."""
    import jax

    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "device": str(jax.devices()[0]),
        "jax": jax.__version__,
        "size": size,
        **extra,
    }


def write_readme(text: str, heading: str = "## ReLU flows") -> None:
    """Put `text` in benchmarks/README.md in place of the section that starts with `heading`
    (up to the next "## "), or at the end if there is none."""
    readme = HERE / "README.md"
    content = readme.read_text()
    start = content.find(heading)
    section = text.rstrip() + "\n"
    if start < 0:
        content = content.rstrip() + "\n\n" + section
    else:
        end = content.find("\n## ", start + 1)
        content = content[:start] + section + ("" if end < 0 else content[end + 1 :])
    readme.write_text(content)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a tiny instance (seconds)")
    parser.add_argument(
        "--problem", default="lyu_mlp", choices=sorted(SIZES), help="Lyu's ReLU MLP or Musat's ReLU embedding net"
    )
    parser.add_argument("--lams", default=None, help="weight decays, e.g. 1e-3,1e-4 (default 1e-3; smoke 1e-2)")
    parser.add_argument(
        "--methods",
        default=",".join(METHODS),
        help=f"comma-separated, from {', '.join(METHODS)}, or gd@η (gradient descent at the step η)",
    )
    parser.add_argument("--out", default=str(HERE / "results"), help="folder for the JSON")
    parser.add_argument("--readme", action="store_true", help="write the table into benchmarks/README.md")
    parser.add_argument(
        "--reuse", action="store_true", help="reuse the reference rows (and other methods' rows) of the JSON in --out"
    )
    parser.add_argument(
        "--ref-lr",
        type=float,
        default=None,
        help="the reference's smallest GD step η (lyu_mlp: 0.025; musat_relu: half of 1/sharpness)",
    )
    parser.add_argument(
        "--no-order-check", action="store_true", help="run the reference at 2η and η only (not 4η as well)"
    )
    parser.add_argument(
        "--single-reference", action="store_true", help="the reference is GD at --ref-lr alone, not extrapolated"
    )
    args = parser.parse_args(argv)
    size = "smoke" if args.smoke else "quick"
    lams = [float(v) for v in (args.lams or ("1e-2" if args.smoke else "1e-3")).split(",")]
    methods = [m for m in args.methods.split(",") if m]
    unknown = [m for m in methods if m not in METHODS and not is_gd_step(m)]
    if unknown:
        parser.error(f"unknown methods {unknown}; choose from {', '.join(METHODS)} or gd@η")
    if args.readme and args.problem != "lyu_mlp":
        parser.error("--readme writes the lyu_mlp table; copy other problems' tables from the output")
    task = SIZES[args.problem][size][0]
    print(f"ReLU flows benchmark ({args.problem}, {size}): {task}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # Another λ list than the default gets its own file, so the default run's JSON is kept.
    lam_part = "" if args.lams is None else "_lam" + "_".join(f"{lam:g}" for lam in lams)
    problem_part = "" if args.problem == "lyu_mlp" else f"_{args.problem}"
    path = out / f"relu_flows{problem_part}{'_smoke' if args.smoke else ''}{lam_part}.json"
    previous = None
    if args.reuse and path.exists():
        stored = json.loads(path.read_text())
        if stored["meta"].get("task") == task:
            previous = stored["rows"]
    rows = measure(
        size,
        lams,
        methods,
        previous=previous,
        ref_lr=args.ref_lr,
        order_check=not args.no_order_check,
        problem_name=args.problem,
        single_reference=args.single_reference,
    )
    meta = run_meta(size, problem=args.problem, task=task)
    path.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    print(f"wrote {path}")
    print(table(rows))
    if args.readme:
        write_readme(readme_section(meta, size, rows))
    return 0


def readme_section(meta, size, rows) -> str:
    return (
        "## ReLU flows\n\n"
        f"`python benchmarks/relu_flows.py` ({meta['date'][:10]}, {meta['device']}): Lyu's two-layer ReLU MLP, "
        f"`modular_arithmetic(0, {', '.join(f'{k}={v}' for k, v in SIZES['lyu_mlp'][size][0].items())})`, t1 = 10/λ, "
        "errors against gradient descent Richardson-extrapolated to η → 0 (from η = 0.05 and 0.025; "
        "final metrics at η = 0.025). Gradients: gradient evaluations, rejected steps included. "
        f"Flows are capped at {SIZES['lyu_mlp'][size][4]:,} steps.\n\n" + table(rows) + "\n"
    )


if __name__ == "__main__":
    sys.exit(main())
