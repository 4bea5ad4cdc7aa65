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
