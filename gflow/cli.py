"""The `gflow` command line: list, run, sweep, plot, demo. Runs in float64.

`gflow run` and `gflow sweep` take a preset name, or `module:function` naming the user's own
`(key) -> gflow.Problem` or `(key, alpha) -> gflow.Problem` factory (imported from the current
directory or sys.path); `gflow run` also takes a config .toml naming either.

User errors (unknown experiment, config key or value, output folder problems, a factory that cannot
be imported, raises or returns no Problem) print one line naming the valid choices and exit with
code 2, without a traceback. Progress bars are drawn only when stderr is a terminal; otherwise
gflow writes plain lines (no carriage returns) so that logs stay readable.
"""

from __future__ import annotations

import argparse
import math
import pathlib
import sys


class CliError(Exception):
    """A user error: printed as one line, exit code 2."""


def _cmd_list(args) -> int:
    """list the experiments (paper, figure, quick runtime)

    List the named experiments with their paper, figure, expected runtime at the quick size, and a
    one-line description.
    """
    from .experiments import EXPERIMENTS
    from .papers import FIGURES

    rows = [(e.name, f"{e.paper}, {e.figure}", e.runtime, e.description) for e in EXPERIMENTS.values()]
    rows += [(e.name, f"{e.paper}, {e.figure}", e.runtime, f"[figure] {e.description}") for e in FIGURES.values()]
    widths = [max(len(r[i]) for r in rows + [("EXPERIMENT", "PAPER, FIGURE", "QUICK", "")]) for i in range(3)]
    print(f"{'EXPERIMENT':<{widths[0]}}  {'PAPER, FIGURE':<{widths[1]}}  {'QUICK':<{widths[2]}}  DESCRIPTION")
    for r in rows:
        print(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}")
    print(
        "\nQUICK = wall time at the default (quick) size on a 2-core CPU, compilation included. "
        "Run one with: gflow run NAME [--set run.lam=1e-3] [--smoke | --full]. [figure] experiments combine "
        "several runs (flow, GD, AdamW, sweeps) in one figure; set their fields with --set figure.FIELD=VALUE."
    )
    return 0


def _cmd_run(args) -> int:
    """run one experiment (a name, module:function or a config .toml) into a run folder

    Run EXPERIMENT (a name from 'gflow list'; module:function, your own factory function(key) ->
    gflow.Problem or function(key, alpha) -> gflow.Problem, imported from the current directory; or
    a config .toml with experiment = NAME or "module:function" and [task]/[run] tables, [task] being
    the factory's keyword arguments) and write a run folder: config.toml (the resolved config: rerun
    it with 'gflow run FOLDER/config.toml'), trajectory.nc, final.eqx, trajectory.png, summary.md,
    metadata.json. A [figure] experiment writes figure.nc and figure.png instead of the trajectory
    files. The progress bar is drawn only when stderr is a terminal.
    """
    from ._files import staged_folder, target_folder
    from ._runner import build_problem, run_config
    from .experiments import resolve_config

    cfg = resolve_config(args.experiment, overrides=args.set or (), full=args.full, smoke=args.smoke)
    name = cfg["experiment"].replace(":", "-").replace(".", "-")
    if "figure" in cfg:
        from ._runner import build_figure_problem, run_figure

        build_figure_problem(cfg)  # a failing task leaves no folder behind
        out = target_folder(args.out, name, overwrite=args.overwrite)
        with staged_folder(out) as stage:
            run_figure(cfg, stage, progress=not args.quiet, shown_as=out)
        return 0
    # Build the problem before making the folder, so a failing task or factory leaves nothing behind.
    problem = build_problem(cfg)
    out = target_folder(args.out, name, overwrite=args.overwrite)
    # Written into a sibling that replaces `out` only once the run has succeeded.
    with staged_folder(out) as stage:
        run_config(cfg, stage, progress=not args.quiet, problem=problem, shown_as=out)
    return 0


def _cmd_demo(args) -> int:
    """run the built-in grokking experiment and write a figure and its data

    Integrate a diagonal linear network that groks (test loss plateaus, then falls at t ≈ ln(α)/λ),
    print a summary, and write a run folder (trajectory.png, trajectory.nc, summary.md, ...).
    """
    from ._files import staged_folder, target_folder
    from ._runner import run_config
    from .experiments import resolve_config

    overrides = ["run.saves=80"] if args.smoke else []
    if args.solver:
        overrides.append(f"run.solver={args.solver}")
    cfg = resolve_config("diagonal_squares", overrides=overrides)
    out = target_folder(args.out, "demo")
    print("gflow demo: a diagonal linear network that groks (the 'diagonal_squares' experiment)")
    with staged_folder(out) as stage:
        run_config(cfg, stage, progress=not args.quiet, shown_as=out)
    return 0


def _cmd_plot(args) -> int:
    """redraw the figures of a run or sweep folder from its stored data

    Redraw trajectory.png (run folders) and sweep.png (sweep folders) from the stored data, without
    running anything.
    """
    from ._runner import plot_run

    path = pathlib.Path(args.run_dir)
    if not path.is_dir():
        raise CliError(f"run folder {path} not found; give a folder written by gflow run, sweep or demo")
    for png in plot_run(path):
        print(f"wrote {png}")
    return 0


def _cmd_sweep(args) -> int:
    """run an experiment over a grid of λ, seeds (and init scales) in one compiled call

    Run EXPERIMENT for every (λ, seed[, α]) in slow time τ = λt, storing finished chunks in
    OUT/store (rerun the same command to resume a killed sweep) and plotting the metric against τ,
    one line per λ, in OUT/sweep.png. Grids: 'a:b:n' is n log-spaced values from a to b inclusive
    (1e-4:1e-2:3 = 1e-4, 1e-3, 1e-2); 'x,y' is a list. EXPERIMENT may be module:function, your own
    factory (key) -> gflow.Problem (or (key, alpha) with --alpha), built with jax (it is traced
    under vmap).
    """
    import time

    import jax
    import numpy as np

    from . import _sweep
    from ._files import write_atomic
    from ._runner import _stderr_is_terminal, sweep_metric
    from .experiments import _factory_takes_alpha, get_experiment
    from .plot import plot_sweep

    exp = get_experiment(args.experiment)
    lam = _sweep.log_range(args.lam) if args.lam else np.geomspace(exp.sweep_lam[0], exp.sweep_lam[-1], 3)
    alpha = None
    if exp.is_user:
        takes = _factory_takes_alpha(exp.task)
        if args.alpha and takes is None:
            raise CliError(f"{exp.name} takes only a key; drop --alpha or define it as function(key, alpha)")
        if not args.alpha and takes == "required":
            raise CliError(f"{exp.name} takes (key, alpha); give init scales with --alpha, e.g. --alpha 1:100:3")
        alpha = _sweep.log_range(args.alpha) if args.alpha else None
    elif exp.sweep_alpha is not None:
        alpha = _sweep.log_range(args.alpha) if args.alpha else np.asarray(exp.sweep_alpha)
    elif args.alpha:
        raise CliError(f"experiment {exp.name} has no init-scale axis; drop --alpha")
    if not 1 <= args.seeds <= 2**32:
        raise CliError(f"--seeds must be in [1, 2**32] (seeds 0..N-1), got {args.seeds}")
    make_problem = exp.make_problem(full=args.full, alpha=alpha is not None) if exp.is_user else None
    if exp.is_user:
        # One concrete call first: a factory that raises or returns no Problem is refused before any folder
        # is made, with its own message rather than a trace from inside the vmapped sweep.
        make_problem(jax.random.PRNGKey(0), *(() if alpha is None else (float(alpha[0]),)))
    if args.metric is not None:
        # Checked on one member now, not after the whole sweep has been computed.
        from ._flow import metric_names

        probe = make_problem if exp.is_user else exp.make_problem(full=args.full)
        names = metric_names(probe(jax.random.PRNGKey(0), *(() if alpha is None else (float(alpha[0]),))))
        if args.metric not in names:
            raise CliError(f"unknown metric {args.metric!r} for {exp.name}; it records {', '.join(names)}")
    tau1 = exp.tau1 if args.tau1 is None else args.tau1
    if not (math.isfinite(tau1) and tau1 > 0):
        raise CliError(f"--tau1 must be a finite number > 0, got {tau1}")
    out = pathlib.Path(args.out)
    if out.exists() and not out.is_dir():
        raise CliError(f"--out {out} is a file; give a folder for the sweep (it will hold store/ and sweep.png)")
    store = out / "store"
    if out.exists() and not (store / "config.json").exists() and any(out.iterdir()):
        raise CliError(f"output folder {out} exists and holds no sweep store; choose a new --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CliError(f"cannot create output folder {out}: {err.strerror}; choose another --out") from None
    print(f"gflow sweep {exp.name}: {exp.description}")
    print(
        f"  lam = {', '.join(f'{v:.3g}' for v in lam)}; seeds 0..{args.seeds - 1}"
        + (f"; alpha = {', '.join(f'{v:.3g}' for v in alpha)}" if alpha is not None else "")
        + f"; tau1 = {tau1:g}"
    )
    # tqdm redraws its bar with carriage returns: draw it only on a terminal, else plain lines.
    bar = not args.quiet and _stderr_is_terminal()
    if not args.quiet and not bar:
        print("gflow: sweep started (no progress bar: stderr is not a terminal)", file=sys.stderr, flush=True)
    start = time.perf_counter()
    ds = _sweep.sweep(
        make_problem if exp.is_user else exp.make_problem(full=args.full),
        lam=lam,
        seed=np.arange(args.seeds),
        alpha=alpha,
        t1=tau1,
        time="slow",
        solver=args.solver,
        chunk_size=args.chunk_size,
        store=store,
        progress=bar,
    )
    if not args.quiet and not bar:
        print(f"gflow: sweep finished in {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
    metric = sweep_metric(ds, args.metric or (None if exp.is_user else exp.metric))
    fig = plot_sweep(ds, metric=metric, title=f"gflow sweep {exp.name}: collapse in slow time")
    png = write_atomic(out / "sweep.png", lambda fh: fig.savefig(fh, format="png", dpi=110))
    n_bad = int((~ds["ok"]).sum())
    print(
        f"  solver {ds.attrs['solver']}; {ds.attrs['chunks_computed']} chunk(s) computed, "
        f"{ds.attrs['chunks_loaded']} loaded from the store; {n_bad} run(s) not successful"
    )
    print(f"  wrote {store} (Zarr chunks) and {png}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from ._simulate import SOLVER_NAMES
    from .experiments import EXPERIMENTS
    from .papers import FIGURES

    names = ", ".join(EXPERIMENTS)
    run_names = ", ".join([*EXPERIMENTS, *FIGURES])
    parser = argparse.ArgumentParser(
        prog="gflow",
        description="Gradient flow with weight decay, dθ/dt = −∇F(θ) − λθ, integrated as an ODE, for the study "
        "of grokking. Time t is ODE time; τ = λt is slow time.",
        epilog="Start with 'gflow demo', then 'gflow list' and 'gflow run NAME'. Each command has --help.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    _command(sub, _cmd_list)

    p = _command(sub, _cmd_run)
    p.add_argument(
        "experiment",
        metavar="EXPERIMENT|MODULE:FUNCTION|CONFIG.toml",
        help=f"one of: {run_names}; or module:function; or a .toml file",
    )
    p.add_argument(
        "--set",
        action="append",
        metavar="SECTION.FIELD=VALUE",
        help="override a field, e.g. --set run.lam=1e-3 --set task.alpha=30 (checked against its type)",
    )
    sizes = p.add_mutually_exclusive_group()
    sizes.add_argument("--full", action="store_true", help="the paper's size instead of the quick one")
    sizes.add_argument(
        "--smoke", action="store_true", help="seconds: a figure's smoke size; 40 saves for a task preset"
    )
    p.add_argument("--out", help="run folder (default: a new gflow-runs/NAME-<timestamp>)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it is not empty")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = _command(sub, _cmd_sweep)
    p.add_argument("experiment", metavar="EXPERIMENT|MODULE:FUNCTION", help=f"one of: {names}; or module:function")
    p.add_argument("--lam", help="weight decays, e.g. 1e-4:1e-2:7 (default: the experiment's range, 3 values)")
    p.add_argument("--seeds", type=int, default=1, help="number of seeds 0..N-1 (default 1)")
    p.add_argument("--alpha", help="init scales, e.g. 1:100:3 or 4,16 (experiments with an α axis)")
    p.add_argument("--tau1", type=float, help="final slow time τ1 = λ t1 (default: the experiment's)")
    p.add_argument("--solver", default="auto", choices=SOLVER_NAMES, help="ODE solver (default: auto)")
    p.add_argument("--chunk-size", type=int, help="runs per compiled call and per stored chunk")
    p.add_argument("--metric", help="metric to plot (default: the experiment's, usually test_loss)")
    p.add_argument("--full", action="store_true", help="the paper's problem size instead of the quick one")
    p.add_argument("--out", required=True, help="output folder (holds store/ and sweep.png)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = _command(sub, _cmd_plot)
    p.add_argument("run_dir", metavar="RUN_DIR", help="a folder written by gflow run, sweep or demo")

    p = _command(sub, _cmd_demo)
    p.add_argument("--out", help="output folder (default: a new gflow-runs/demo-<timestamp>)")
    p.add_argument("--solver", choices=SOLVER_NAMES, help="ODE solver (default: auto)")
    p.add_argument("--smoke", action="store_true", help="fewer save points, for a quick check")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def _command(sub, func) -> argparse.ArgumentParser:
    """The subcommand that `func` (`_cmd_NAME`) runs: NAME, its help the first line of the docstring
    and its description the rest (argparse joins the lines)."""
    brief, _, description = func.__doc__.partition("\n\n")
    p = sub.add_parser(func.__name__.removeprefix("_cmd_"), help=brief.strip(), description=description)
    p.set_defaults(func=func)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    import jax

    jax.config.update("jax_enable_x64", True)
    from ._problem import GflowError

    try:
        return args.func(args)
    except (CliError, GflowError) as err:
        print(f"gflow: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except OSError as err:
        # A disk that fills up or a folder that turns read-only mid-run: say which file, not a traceback.
        where = f" ({err.filename})" if err.filename else ""
        print(f"gflow: error: {err.strerror or err}{where}", file=sys.stderr)
        return 2


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())


if __name__ == "__main__":
    sys.exit(main())
