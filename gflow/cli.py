"""The `gflow` command line. Runs in float64."""

from __future__ import annotations

import argparse
import datetime
import pathlib
import sys


def _fresh_run_dir(out: str | None, name: str) -> pathlib.Path:
    """The run folder: `out` if given (must be empty or absent), else a new timestamped one."""
    if out is None:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        base = pathlib.Path("gflow-runs") / f"{name}-{stamp}"
        path, i = base, 1
        while path.exists():
            path, i = base.with_name(f"{base.name}-{i}"), i + 1
    else:
        path = pathlib.Path(out)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise CliError(f"output folder {path} exists and is not empty; choose a new --out (runs are never overwritten)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CliError(f"cannot create output folder {path}: {err.strerror}; choose another --out") from None
    return path


class CliError(Exception):
    """A user error: printed as one line, exit code 2."""


def _cmd_demo(args) -> int:
    from ._demo import run_demo

    out = _fresh_run_dir(args.out, "demo")
    run_demo(out, smoke=args.smoke, solver=args.solver)
    return 0


def _cmd_sweep(args) -> int:
    import numpy as np

    from . import _problem, _sweep
    from .experiments import get_experiment
    from .plot import plot_sweep

    try:
        exp = get_experiment(args.experiment)
        lam = _sweep.log_range(args.lam) if args.lam else np.geomspace(exp.lam[0], exp.lam[-1], 3)
        alpha = None
        if exp.alpha is not None:
            alpha = _sweep.log_range(args.alpha) if args.alpha else np.asarray(exp.alpha)
        elif args.alpha:
            raise CliError(f"experiment {exp.name} has no init-scale axis; drop --alpha")
        if args.seeds < 1:
            raise CliError("--seeds must be at least 1")
        tau1 = exp.tau1 if args.tau1 is None else args.tau1
        out = pathlib.Path(args.out)
        store = out / "store"
        if out.exists() and not (store / "config.json").exists() and any(out.iterdir()):
            raise CliError(f"output folder {out} exists and holds no sweep store; choose a new --out")
        out.mkdir(parents=True, exist_ok=True)
        print(f"gflow sweep {exp.name}: {exp.description}")
        print(f"  lam = {', '.join(f'{v:.3g}' for v in lam)}; seeds 0..{args.seeds - 1}"
              + (f"; alpha = {', '.join(f'{v:.3g}' for v in alpha)}" if alpha is not None else "")
              + f"; tau1 = {tau1:g}")
        ds = _sweep.sweep(
            exp.make_problem, lam=lam, seed=np.arange(args.seeds), alpha=alpha, t1=tau1, time="slow",
            solver=args.solver, chunk_size=args.chunk_size, store=store, progress=not args.quiet,
        )
    except (_problem.ProblemError, _sweep.SweepStoreError) as err:
        raise CliError(str(err)) from None
    fig = plot_sweep(ds, metric=args.metric or exp.metric, title=f"gflow sweep {exp.name}: collapse in slow time")
    png = out / "sweep.png"
    fig.savefig(png, dpi=110)
    n_bad = int((~ds["ok"]).sum())
    print(f"  solver {ds.attrs['solver']}; {ds.attrs['chunks_computed']} chunk(s) computed, "
          f"{ds.attrs['chunks_loaded']} loaded from the store; {n_bad} run(s) not successful")
    print(f"  wrote {store} (Zarr chunks) and {png}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from ._simulate import SOLVER_NAMES

    parser = argparse.ArgumentParser(
        prog="gflow",
        description="Gradient flow with weight decay (dθ/dt = −∇F(θ) − λθ) as an ODE, for the study of grokking.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = sub.add_parser(
        "demo",
        help="run the built-in grokking experiment and write a figure and its data",
        description="Integrate a diagonal linear network that groks (test loss plateaus, then falls at "
        "t ≈ ln(α)/λ), print a summary, and write trajectory.png and trajectory.nc to a new run folder.",
    )
    demo.add_argument("--out", help="output folder (default: a new gflow-runs/demo-<timestamp>)")
    demo.add_argument("--solver", default="auto", choices=SOLVER_NAMES, help="ODE solver (default: auto)")
    demo.add_argument("--smoke", action="store_true", help="fewer save points, for a quick check")
    demo.set_defaults(func=_cmd_demo)

    sweep = sub.add_parser(
        "sweep",
        help="run an experiment over a grid of λ, seeds (and init scales) in one compiled call",
        description="Run EXPERIMENT for every (λ, seed[, α]) in slow time τ = λt, storing finished chunks "
        "in OUT/store (rerun the same command to resume a killed sweep) and plotting the metric against τ, "
        "one line per λ, in OUT/sweep.png. Grids: 'a:b:n' is n log-spaced values from a to b inclusive "
        "(1e-4:1e-2:3 = 1e-4, 1e-3, 1e-2); 'x,y' is a list.",
    )
    from .experiments import EXPERIMENTS

    sweep.add_argument("experiment", metavar="EXPERIMENT", help=f"one of: {', '.join(EXPERIMENTS)}")
    sweep.add_argument("--lam", help="weight decays, e.g. 1e-4:1e-2:7 (default: the experiment's range, 3 values)")
    sweep.add_argument("--seeds", type=int, default=1, help="number of seeds 0..N-1 (default 1)")
    sweep.add_argument("--alpha", help="init scales, e.g. 1:100:3 or 4,16 (experiments with an α axis)")
    sweep.add_argument("--tau1", type=float, help="final slow time τ1 = λ t1 (default: the experiment's)")
    sweep.add_argument("--solver", default="auto", choices=SOLVER_NAMES, help="ODE solver (default: auto)")
    sweep.add_argument("--chunk-size", type=int, help="runs per compiled call and per stored chunk")
    sweep.add_argument("--metric", help="metric to plot (default: the experiment's, usually test_loss)")
    sweep.add_argument("--out", required=True, help="output folder (holds store/ and sweep.png)")
    sweep.add_argument("--quiet", action="store_true", help="no progress bar")
    sweep.set_defaults(func=_cmd_sweep)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    import jax

    jax.config.update("jax_enable_x64", True)
    try:
        return args.func(args)
    except CliError as err:
        print(f"gflow: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
