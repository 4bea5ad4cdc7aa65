"""Named experiments: presets that `gflow run`, `gflow sweep`, `gflow list` and `gflow demo` use.

An experiment is data: a task from `gflow.tasks` with its arguments at a quick size (and the
paper's size under `--full`), the run settings, and sweep defaults. A configuration is the
nested dict (or TOML file)

    experiment = "diagonal_squares"
    [task]            # keyword arguments of the task function
    n = 20
    alpha = 10.0
    [run]             # simulate settings
    lam = 0.01
    t1 = 3000.0

and `--set task.alpha=30 run.lam=1e-3` overrides any field, checked against its type.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import tomllib
from collections.abc import Mapping
from typing import Any

from . import tasks
from ._problem import ProblemError


class ConfigError(ProblemError):
    """A configuration (preset, TOML file or --set override) is invalid."""


# The run settings every experiment has, with their defaults. `None` means "gflow's default".
RUN_DEFAULTS: dict[str, Any] = {
    "lam": 1e-2,
    "t1": 1000.0,
    "time": "fast",
    "solver": "auto",
    "saves": 200,
    "t_min": None,
    "seed": 0,
    "rtol": None,
    "atol": None,
    "max_steps": 200_000,
}
_RUN_TYPES = {
    "lam": float,
    "t1": float,
    "time": str,
    "solver": str,
    "saves": int,
    "t_min": float,
    "seed": int,
    "rtol": float,
    "atol": float,
    "max_steps": int,
}
_RUN_CHOICES = {"time": ("fast", "slow")}


@dataclasses.dataclass(frozen=True)
class TaskFactory:
    """`(key[, alpha]) -> Problem` for sweeps: a task with fixed keyword arguments.

    Hashable by value, so sweeps of the same experiment reuse compilations and stores.
    """

    task: str
    kwargs: tuple
    alpha_arg: str | None = None

    @property
    def takes_alpha(self) -> bool:
        return self.alpha_arg is not None

    def __call__(self, key, alpha=None):
        kwargs = dict(self.kwargs)
        if self.alpha_arg is not None:
            kwargs[self.alpha_arg] = alpha
        return getattr(tasks, self.task)(key, **kwargs)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.kwargs)
        return f"gflow.tasks.{self.task}({args})" + (f" swept over {self.alpha_arg}" if self.alpha_arg else "")


@dataclasses.dataclass(frozen=True)
class Experiment:
    """A named preset. `task_args`/`run` are the quick size; `full` overrides them for the paper's size
    (keys like "task.d" or "run.lam"). `runtime` is the measured quick-size wall time on a 2-core CPU."""

    name: str
    description: str
    paper: str
    figure: str
    task: str
    task_args: Mapping[str, Any]
    run: Mapping[str, Any]
    full: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    sweep_lam: tuple[float, float] = (1e-3, 1e-2)
    sweep_alpha: tuple[float, ...] | None = None
    tau1: float = 10.0
    alpha_arg: str | None = None
    metric: str = "test_loss"
    runtime: str = "?"

    def config(self, *, full: bool = False) -> dict:
        """The resolved configuration dict (quick size unless `full`)."""
        cfg = {"experiment": self.name, "task": dict(self.task_args), "run": {**RUN_DEFAULTS, **self.run}}
        if full:
            for key, value in self.full.items():
                section, field = key.split(".")
                cfg[section][field] = value
        return cfg

    def make_problem(self, *, full: bool = False) -> TaskFactory:
        """A `(key[, alpha])` factory for `gflow.sweep` (α is `alpha_arg` of the task, if any)."""
        kwargs = dict(self.config(full=full)["task"])
        if self.alpha_arg is not None:
            kwargs.pop(self.alpha_arg, None)
        return TaskFactory(self.task, tuple(sorted(kwargs.items())), self.alpha_arg)


EXPERIMENTS: dict[str, Experiment] = {
    e.name: e
    for e in (
        Experiment(
            "diagonal_squares",
            "diagonal net β = u² − v²: kernel fit, plateau, then the sparse (rich) solution (the demo)",
            "Lyu et al. 2024 (diagonal nets); Woodworth et al. 2020",
            "gflow demo",
            "diagonal_regression",
            {"n": 20, "d": 60, "k": 3, "alpha": 10.0, "parameterisation": "squares"},
            {"lam": 1e-2, "t1": 3000.0, "saves": 300, "t_min": 1e-5},
            full={"task.d": 500, "task.n": 100, "task.k": 5, "run.lam": 1e-3, "run.t1": 30000.0},
            sweep_lam=(1e-3, 1e-2),
            sweep_alpha=(10.0,),
            tau1=15.0,
            alpha_arg="alpha",
            runtime="10 s",
        ),
        Experiment(
            "diagonal_uv",
            "diagonal net β = u ⊙ v: fit, then the slow drift to the minimum-ℓ1 interpolator",
            "Boursier et al. 2025",
            "E1.3 (App. D.2)",
            "diagonal_regression",
            {"n": 20, "d": 60, "k": 3, "alpha": 0.3, "parameterisation": "uv"},
            {"lam": 1e-3, "t1": 3e4, "saves": 300, "t_min": 1e-3},
            full={"task.d": 500, "task.n": 100, "run.lam": 1e-4, "run.t1": 3e5},
            sweep_lam=(1e-3, 1e-2),
            sweep_alpha=(0.3,),
            tau1=30.0,
            alpha_arg="alpha",
            runtime="15 s",
        ),
        Experiment(
            "linear_regression",
            "rank-deficient linear regression: null-space part decays as e^{-λt}, limit X⁺y",
            "Boursier et al. 2025",
            "App. C (A1)",
            "linear_regression",
            {"n": 40, "d": 100},
            {"lam": 1e-3, "t1": 1e4, "saves": 200, "t_min": 1e-3},
            full={"run.lam": 1e-4, "run.t1": 1e5},
            sweep_lam=(1e-4, 1e-2),
            tau1=10.0,
            runtime="5 s",
        ),
        Experiment(
            "musat_addition",
            "single-sample addition 1 + 1 = 2: fast fit to (0, 2), slow drift to (1, 1)",
            "Musat 2025",
            "Fig. 1 (E2.1, A9)",
            "musat_addition",
            {"n_weights": 2},
            {"lam": 1e-2, "t1": 2000.0, "saves": 200, "t_min": 1e-2},
            full={},
            sweep_lam=(1e-2, 1e-1),
            tau1=8.0,
            runtime="3 s",
        ),
    )
}


def get_experiment(name: str) -> Experiment:
    try:
        return EXPERIMENTS[name]
    except KeyError:
        raise ConfigError(f"unknown experiment {name!r}; choose one of: {', '.join(EXPERIMENTS)}") from None


# Module-level factories kept for scripts and tests that sweep these tasks directly.
diagonal_squares = EXPERIMENTS["diagonal_squares"].make_problem()
diagonal_uv = EXPERIMENTS["diagonal_uv"].make_problem()
linear_regression = EXPERIMENTS["linear_regression"].make_problem()
musat_addition = EXPERIMENTS["musat_addition"].make_problem()


# -- configurations ------------------------------------------------------------------------


def _task_signature(task_name: str) -> dict[str, inspect.Parameter]:
    fn = getattr(tasks, task_name)
    return {k: p for k, p in inspect.signature(fn).parameters.items() if p.kind == p.KEYWORD_ONLY}


def _coerce(where: str, value, default, expected: type | None):
    """Check/convert `value` to the type of the field (from its default or annotation)."""
    kind = expected or (type(default) if default is not None else None)
    if kind is None:
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(f"{where} must be finite, got {value!r}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return value
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return value
    return value


def validate_config(cfg: Mapping) -> dict:
    """Check a configuration dict against its experiment's fields and types; return it resolved."""
    from ._simulate import SOLVER_NAMES

    unknown_top = set(cfg) - {"experiment", "task", "run"}
    if unknown_top:
        raise ConfigError(f"unknown config section(s) {', '.join(sorted(unknown_top))}; use experiment, [task], [run]")
    if "experiment" not in cfg:
        raise ConfigError('the config must name its experiment: experiment = "NAME" (see gflow list)')
    exp = get_experiment(cfg["experiment"])
    base = exp.config()
    out = {"experiment": exp.name, "task": dict(base["task"]), "run": dict(base["run"])}
    params = _task_signature(exp.task)
    for key, value in dict(cfg.get("task", {})).items():
        if key not in params:
            raise ConfigError(f"unknown task field {key!r} for {exp.task}; valid: {', '.join(params)}")
        default = base["task"].get(key, params[key].default)
        out["task"][key] = _coerce(f"task.{key}", value, default, float if isinstance(default, float) else None)
    for key, value in dict(cfg.get("run", {})).items():
        if key not in RUN_DEFAULTS:
            raise ConfigError(f"unknown run field {key!r}; valid: {', '.join(RUN_DEFAULTS)}")
        out["run"][key] = None if value is None else _coerce(f"run.{key}", value, None, _RUN_TYPES[key])
    run = out["run"]
    if run["solver"] not in SOLVER_NAMES:
        raise ConfigError(f"run.solver must be one of {', '.join(SOLVER_NAMES)}, got {run['solver']!r}")
    for key, choices in _RUN_CHOICES.items():
        if run[key] not in choices:
            raise ConfigError(f"run.{key} must be one of {', '.join(choices)}, got {run[key]!r}")
    for key in ("t1", "saves", "max_steps"):
        if run[key] <= 0:
            raise ConfigError(f"run.{key} must be > 0, got {run[key]}")
    if run["lam"] < 0:
        raise ConfigError(f"run.lam must be >= 0, got {run['lam']}")
    return out


def parse_override(text: str) -> tuple[str, str, Any]:
    """`section.field=value` with a TOML value (numbers, true/false, "strings"; bare words are strings)."""
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise ConfigError(f"--set takes section.field=value (e.g. run.lam=1e-3 or task.alpha=30), got {text!r}")
    key, raw = text.split("=", 1)
    section, field = key.strip().split(".", 1)
    if section not in ("task", "run"):
        raise ConfigError(f"--set section must be task or run, got {section!r} in {text!r}")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()  # a bare word: a string such as run.solver=tsit5
    return section, field.strip(), value


def resolve_config(source: str, *, overrides=(), full: bool = False) -> dict:
    """A configuration from a preset name or a TOML file, then `--full`, then `--set` overrides."""
    if source.endswith(".toml"):
        try:
            with open(source, "rb") as f:
                raw = tomllib.load(f)
        except FileNotFoundError:
            raise ConfigError(f"config file {source} not found") from None
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"config file {source} is not valid TOML: {err}") from None
        name = raw.get("experiment")
        base = get_experiment(name).config(full=full) if isinstance(name, str) else {}
        cfg = {
            "experiment": name,
            "task": {**base.get("task", {}), **raw.get("task", {})},
            "run": {**base.get("run", {}), **raw.get("run", {})},
        }
        cfg.update({k: v for k, v in raw.items() if k not in ("task", "run", "experiment")})
    else:
        cfg = get_experiment(source).config(full=full)
    for text in overrides:
        section, field, value = parse_override(text)
        cfg.setdefault(section, {})[field] = value
    return validate_config(cfg)


def to_toml(cfg: Mapping) -> str:
    """Write a resolved configuration as TOML (None values are left out: they mean the default)."""

    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines = [f"experiment = {value(cfg['experiment'])}"]
    for section in ("task", "run"):
        lines += ["", f"[{section}]"]
        lines += [f"{k} = {value(v)}" for k, v in cfg[section].items() if v is not None]
    return "\n".join(lines) + "\n"
