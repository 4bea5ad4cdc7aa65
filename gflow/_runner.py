"""Run folders: run one configured experiment and write everything a reader needs to repeat it.

A run folder holds
- `config.toml`: the fully resolved configuration (`gflow run RUN/config.toml` repeats the run);
- `trajectory.nc`: the metrics over time (NetCDF, `xarray.open_dataset(path, engine="scipy")`);
- `final.eqx`: the final parameters (`equinox.tree_deserialise_leaves` into the task's model);
- `trajectory.png`: learning curves and ‖θ‖ against log t, phases marked;
- `summary.md`: the key numbers; `metadata.json`: versions, device, date, wall time, command.

The experiment is a preset name or a user's `module:function` factory (see `gflow.experiments`).
Progress: a tqdm bar on stderr when it is a terminal; otherwise (logs, pipes, CI) one plain line
when the integration starts and one when it ends, so that no carriage returns reach the log.
"""

from __future__ import annotations

import datetime
import json
import pathlib
import platform
import sys
import time

import equinox as eqx
import jax
import numpy as np
import xarray as xr

from . import tasks
from ._files import write_atomic, write_manifest
from ._problem import GflowError
from ._simulate import count_params, log_times, simulate
from .analysis import phase_times
from .experiments import call_factory, get_experiment, to_toml, validate_config
from .plot import plot_trajectory

RUN_FILES = ("config.toml", "trajectory.nc", "final.eqx", "trajectory.png", "summary.md", "metadata.json")
# A figure experiment's folder (gflow.papers): its dataset and figure instead of one trajectory.
FIGURE_FILES = ("config.toml", "figure.nc", "figure.png", "summary.md", "metadata.json")


def build_problem(cfg):
    """The Problem of a resolved configuration: the task (or user factory) at key PRNGKey(run.seed),
    with the [task] table as keyword arguments."""
    exp = get_experiment(cfg["experiment"])
    key = jax.random.PRNGKey(cfg["run"]["seed"])
    if exp.is_user:
        return call_factory(exp.task, key, **cfg["task"])
    try:
        return getattr(tasks, exp.task)(key, **cfg["task"])
    except GflowError:
        raise
    except (TypeError, ValueError) as err:  # a [task] value of a type the task cannot use
        from .experiments import ConfigError, _first_line

        args = ", ".join(f"{k}={v!r}" for k, v in cfg["task"].items())
        raise ConfigError(
            f"gflow.tasks.{exp.task}({args}) failed: {_first_line(err)}; check the [task] values"
        ) from None


def build_figure_problem(cfg):
    """Check a figure configuration by building its problem (when its module has one) before any folder exists."""
    from .papers import FIGURES

    module = FIGURES[cfg["experiment"]].implementation()
    build = getattr(module, "build_problem", None)
    if build is None:
        return None
    try:
        return build(cfg["figure"])
    except GflowError:
        raise
    except (TypeError, ValueError) as err:
        from .experiments import ConfigError, _first_line

        raise ConfigError(f"{cfg['experiment']}: {_first_line(err)}; check the [figure] values") from None


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False


def run_config(cfg, out_dir, *, progress: bool = True, echo=print, problem=None, shown_as=None) -> dict:
    """Run a resolved configuration into the (existing, empty) folder `out_dir`.

    Every file is written atomically (`gflow._files.write_atomic`) and listed in the folder's
    `gflow-manifest.json`, the only files a later `--overwrite` may delete.

    `problem`: the already built `build_problem(cfg)`, if the caller checked it before making the folder.
    `progress`: a tqdm bar if stderr is a terminal, else a plain start and end line on stderr.
    `shown_as`: the folder's name in messages (the CLI writes into a staging sibling that is renamed
    to it on success).
    """
    cfg = validate_config(cfg)
    out_dir = pathlib.Path(out_dir)
    shown_as = out_dir if shown_as is None else pathlib.Path(shown_as)
    exp = get_experiment(cfg["experiment"])
    run = cfg["run"]
    write_atomic(out_dir / "config.toml", to_toml(cfg))

    if problem is None:
        problem = build_problem(cfg)
    bar = progress and _stderr_is_terminal()
    echo(f"gflow run {exp.name}: {exp.description}")
    echo(
        f"  {exp.task}({', '.join(f'{k}={v}' for k, v in cfg['task'].items())}); "
        f"λ = {run['lam']:g}, t1 = {run['t1']:g} ({'τ' if run['time'] == 'slow' else 't'}), "
        f"{count_params(problem)} parameters"
    )
    saveat = run["saves"]
    if run["t_min"] is not None:
        saveat = log_times(np.float64(run["t1"]), run["saves"], run["t_min"])
    if progress and not bar:
        # tqdm redraws its bar with carriage returns, which fill logs and pipes: say start and end instead.
        print(
            f"gflow: {exp.name}: integrating to {'τ' if run['time'] == 'slow' else 't'} = {run['t1']:g} "
            "(no progress bar: stderr is not a terminal)",
            file=sys.stderr,
            flush=True,
        )
    start = time.perf_counter()
    traj = simulate(
        problem,
        run["lam"],
        run["t1"],
        solver=run["solver"],
        saveat=saveat,
        rtol=run["rtol"],
        atol=run["atol"],
        max_steps=run["max_steps"],
        time=run["time"],
        progress=bar,
    )
    jax.block_until_ready(traj)
    wall = time.perf_counter() - start
    if progress and not bar:
        print(f"gflow: {exp.name}: integrated in {wall:.1f} s (compilation included)", file=sys.stderr, flush=True)

    ds = traj.to_xarray()
    ds.attrs["experiment"] = exp.name
    write_atomic(out_dir / "trajectory.nc", bytes(ds.to_netcdf(engine="scipy")))
    write_atomic(out_dir / "final.eqx", lambda fh: eqx.tree_serialise_leaves(fh, traj.final))
    summary = _summary(exp, cfg, traj, wall)
    write_atomic(out_dir / "summary.md", summary["markdown"])
    write_atomic(out_dir / "metadata.json", _metadata(wall))
    plot_run(out_dir, traj=traj)
    write_manifest(out_dir, RUN_FILES)
    for line in summary["lines"]:
        echo(line)
    echo(f"  wrote {shown_as}/ ({', '.join(RUN_FILES)})")
    return {"trajectory": traj, "phases": summary["phases"], "wall_s": wall, "out": shown_as}


def _metadata(wall: float) -> str:
    meta = {
        "gflow": _version(),
        "jax": jax.__version__,
        "diffrax": _version("diffrax"),
        "equinox": eqx.__version__,
        "device": str(jax.devices()[0]),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "wall_seconds_including_compilation": wall,
        "command": " ".join(sys.argv),
    }
    return json.dumps(meta, indent=2) + "\n"


def run_figure(cfg, out_dir, *, progress: bool = True, echo=print, shown_as=None) -> dict:
    """Run a figure experiment's resolved configuration (`experiments.resolve_figure_config`) into
    the (existing, empty) folder `out_dir`: `figure.nc` (the module's Dataset), `figure.png`,
    `summary.md`, `config.toml`, `metadata.json`, each written atomically and listed in the manifest.
    """
    from .papers import FIGURES

    out_dir = pathlib.Path(out_dir)
    shown_as = out_dir if shown_as is None else pathlib.Path(shown_as)
    exp = FIGURES[cfg["experiment"]]
    module = exp.implementation()
    write_atomic(out_dir / "config.toml", to_toml(cfg))
    echo(f"gflow run {exp.name} ({cfg['size']} size): {exp.description}")
    if progress and not _stderr_is_terminal():
        print(f"gflow: {exp.name}: running (no progress bars: stderr is not a terminal)", file=sys.stderr, flush=True)
    start = time.perf_counter()
    ds = module.measure(cfg["figure"], progress=progress and _stderr_is_terminal(), echo=echo)
    wall = time.perf_counter() - start
    ds.attrs.update(experiment=exp.name, size=cfg["size"], wall_seconds_including_compilation=wall)
    write_atomic(out_dir / "figure.nc", bytes(ds.to_netcdf(engine="scipy")))
    rows = module.summary(ds)
    md = [f"# {exp.name} ({cfg['size']} size)", "", f"{exp.description}. Paper: {exp.paper}, {exp.figure}.", ""]
    md += ["| quantity | value |", "|---|---|"] + [f"| {q} | {v} |" for q, v in rows]
    md += ["", f"Wall time {wall:.1f} s including compilation. Data: figure.nc (xarray, engine='scipy').", ""]
    write_atomic(out_dir / "summary.md", "\n".join(md))
    write_atomic(out_dir / "metadata.json", _metadata(wall))
    plot_run(out_dir, figure_data=ds)
    write_manifest(out_dir, FIGURE_FILES)
    for q, v in rows:
        echo(f"  {q}: {v}")
    echo(f"  {wall:.1f} s; wrote {shown_as}/ ({', '.join(FIGURE_FILES)})")
    return {"dataset": ds, "wall_s": wall, "out": shown_as}


def _version(name="gflow"):
    import importlib.metadata

    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _phase_times(traj):
    # User problems may have no test set: then "generalised" is read off the train loss.
    metrics = traj.metrics if hasattr(traj, "metrics") else traj.data_vars
    return phase_times(traj, metric="test_loss" if "test_loss" in metrics else "train_loss")


def _summary(exp, cfg, traj, wall) -> dict:
    phases = _phase_times(traj)
    last = {k: float(v[-1]) for k, v in traj.metrics.items()}
    stats = {k: (float(v) if np.issubdtype(np.asarray(v).dtype, np.inexact) else int(v)) for k, v in traj.stats.items()}
    lines = [
        f"  solver {traj.solver}: {stats['num_steps']} steps ({stats['num_rejected_steps']} rejected), "
        f"{wall:.1f} s wall including compilation; result: {traj.message}",
        f"  train set fitted (train loss ≤ {phases.fit_threshold:.2g}) at t = {phases.t_fit:.3g} "
        f"(τ = λt = {phases.tau_fit:.3g})",
        f"  generalised ({phases.generalise_metric} ≤ {phases.generalise_threshold:.2g}, 1% of its plateau) at "
        f"t = {phases.t_generalise:.3g} (τ = {phases.tau_generalise:.3g})",
        "  final: " + ", ".join(f"{k} {v:.3g}" for k, v in last.items() if k not in ("objective",)),
    ]
    md = [
        f"# {exp.name}",
        "",
        f"{exp.description}. Paper: {exp.paper}, {exp.figure}.",
        "",
        "| quantity | value |",
        "|---|---|",
        f"| weight decay λ | {cfg['run']['lam']:g} |",
        f"| time fitted (train loss ≤ {phases.fit_threshold:.2g}) | t = {phases.t_fit:.4g}, τ = {phases.tau_fit:.4g} |",
        f"| time generalised ({phases.generalise_metric} ≤ {phases.generalise_threshold:.2g}) | "
        f"t = {phases.t_generalise:.4g}, τ = {phases.tau_generalise:.4g} |",
        f"| result | {traj.message} |",
        f"| solver | {traj.solver} |",
        f"| wall time (s, incl. compilation) | {wall:.2f} |",
    ]
    md += [f"| {k} | {v:.4g} |" for k, v in last.items()]
    md += [f"| stats.{k} | {v:.4g} |" if isinstance(v, float) else f"| stats.{k} | {v} |" for k, v in stats.items()]
    md += ["", "Times are ODE time t (τ = λt); the flow is dθ/dt = −∇F(θ) − λθ, F_λ = F + (λ/2)‖θ‖².", ""]
    return {"lines": lines, "markdown": "\n".join(md), "phases": phases}


def plot_run(run_dir, *, traj=None, figure_data=None) -> list[pathlib.Path]:
    """(Re)draw a run folder's figures from its stored data; returns the PNG paths."""
    import matplotlib.pyplot as plt

    run_dir = pathlib.Path(run_dir)
    written = []
    if figure_data is not None or (run_dir / "figure.nc").exists():
        written.append(_plot_figure(run_dir, figure_data))
    if (run_dir / "trajectory.nc").exists():
        if traj is None:
            try:
                traj = _trajectory_from_netcdf(run_dir / "trajectory.nc")
            except Exception as err:  # any damage: truncated, not NetCDF, missing attributes
                from ._problem import ProblemError

                raise ProblemError(
                    f"{run_dir / 'trajectory.nc'} is unreadable or not written by gflow "
                    f"({type(err).__name__}); rerun it with gflow run {run_dir / 'config.toml'}"
                ) from None
        exp_name = _experiment_name(run_dir)
        phases = _phase_times(traj)
        fig = plot_trajectory(traj, phases=phases, title=f"{exp_name}: learning curves (λ = {float(traj.lam):g})")
        path = write_atomic(run_dir / "trajectory.png", lambda fh: fig.savefig(fh, format="png", dpi=110))
        plt.close(fig)
        written.append(path)
    if (run_dir / "store" / "config.json").exists():
        from ._sweep import load_sweep
        from .plot import plot_sweep

        ds = load_sweep(run_dir / "store")
        fig = plot_sweep(ds, metric=sweep_metric(ds), title=f"{_experiment_name(run_dir)}: collapse in slow time")
        path = write_atomic(run_dir / "sweep.png", lambda fh: fig.savefig(fh, format="png", dpi=110))
        plt.close(fig)
        written.append(path)
    if not written:
        from ._problem import ProblemError

        raise ProblemError(
            f"{run_dir} is not a gflow run folder (no trajectory.nc, figure.nc or store/); "
            "give a folder made by gflow run/sweep/demo"
        )
    return written


def sweep_metric(ds, metric: str | None = None) -> str:
    """The metric a sweep plot shows: `metric`, else test_loss, else train_loss (problems without a test set)."""
    if metric is not None:
        if metric not in ds:
            from .experiments import ConfigError

            names = ", ".join(k for k in ds.data_vars if k not in ("result", "ok", "t_final") and "stats" not in k)
            raise ConfigError(f"unknown metric {metric!r}; this sweep has {names}")
        return metric
    return "test_loss" if "test_loss" in ds else "train_loss"


def _experiment_name(run_dir: pathlib.Path) -> str:
    import tomllib

    try:
        name = tomllib.loads((run_dir / "config.toml").read_text()).get("experiment")
    except (OSError, ValueError):  # absent or damaged: the figure title falls back to the folder name
        name = None
    return name if isinstance(name, str) else run_dir.name


def _trajectory_from_netcdf(path):
    """A Trajectory (metrics only: `final` is None) rebuilt from a run's NetCDF file."""
    import jax.numpy as jnp

    from ._solution import RESULTS, Trajectory

    ds = xr.open_dataset(path, engine="scipy").load()
    slow = ds.attrs["time_variable"].startswith("tau")
    # The file stores the result's message; map it back to its code.
    by_message = {(RESULTS[item] or "successful"): item for item in RESULTS._name_to_item.values()}
    result = by_message.get(ds.attrs["result"], RESULTS.internal_error)
    return Trajectory(
        ts=jnp.asarray(ds["time"].values),
        metrics={k: jnp.asarray(v.values) for k, v in ds.data_vars.items()},
        final=None,
        t_final=jnp.asarray(ds.attrs["t_final"]),
        stats={k[len("stats_") :]: jnp.asarray(v) for k, v in ds.attrs.items() if k.startswith("stats_")},
        result=result,
        lam=jnp.asarray(ds.attrs["lam"]),
        time="slow" if slow else "fast",
        solver=ds.attrs["solver"],
    )


def _plot_figure(run_dir: pathlib.Path, ds=None) -> pathlib.Path:
    """Draw a figure experiment's `figure.png` from its Dataset (read from `figure.nc` if not given)."""
    import matplotlib.pyplot as plt

    from ._problem import ProblemError
    from .papers import FIGURES

    if ds is None:
        try:
            ds = xr.open_dataset(run_dir / "figure.nc", engine="scipy").load()
            exp = FIGURES[ds.attrs["experiment"]]
        except Exception as err:  # any damage: truncated, not NetCDF, no or unknown experiment
            raise ProblemError(
                f"{run_dir / 'figure.nc'} is unreadable or not written by gflow ({type(err).__name__}); "
                f"rerun it with gflow run {run_dir / 'config.toml'}"
            ) from None
    else:
        exp = FIGURES[ds.attrs["experiment"]]
    fig = exp.implementation().plot(ds)
    path = write_atomic(run_dir / "figure.png", lambda fh: fig.savefig(fh, format="png", dpi=110))
    plt.close(fig)
    return path
