"""Named experiments: presets that `gflow run`, `gflow sweep`, `gflow list` and `gflow demo` use.

An experiment is data (`experiments.toml` beside this module): a task from `gflow.tasks` with its
arguments at a quick size (and the paper's size under `--full`), the run settings, and sweep
defaults. A configuration is the nested dict (or TOML file)

    experiment = "diagonal_squares"
    [task]            # keyword arguments of the task function
    n = 20
    alpha = 10.0
    [run]             # simulate settings
    lam = 0.01
    t1 = 3000.0

and `--set task.alpha=30 run.lam=1e-3` overrides any field, checked against its type.

`experiment` may also be `"module:function"`, a user's own problem factory `function(key) -> Problem`
or `function(key, alpha) -> Problem` (key a `jax.random.PRNGKey(run.seed)`). Its `[task]` table is
passed to it as keyword arguments (a `(key, alpha)` factory gets its α as `task.alpha` in a single
run); `[run]` is as for a preset. The module is imported from the current directory or `sys.path`.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.resources
import inspect
import json
import math
import os
import sys
import tomllib
from collections.abc import Mapping
from typing import Any

from . import tasks
from ._errors import GflowError


class ConfigError(GflowError):
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
    "max_steps": None,
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

# Integer task fields of the presets are sizes (samples, dimensions, widths, a modulus). Beyond this bound
# XLA aborts the whole process on an array shape it cannot represent, so refuse such values here.
MAX_SIZE = 10**8


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

    @property
    def is_user(self) -> bool:
        """A user's `module:function` factory rather than a preset (then `task` is that spec)."""
        return is_factory_spec(self.task)

    def make_problem(self, *, full: bool = False, alpha: bool | None = None) -> TaskFactory | UserFactory:
        """A `(key[, alpha])` factory for `gflow.sweep` (α is `alpha_arg` of the task, if any).

        For a user factory, `alpha` says whether the sweep passes α (default: when it requires one).
        """
        if self.is_user:
            if full:
                raise ConfigError(f"--full needs a named experiment; {self.task} has a single size")
            if alpha is None:
                alpha = _factory_takes_alpha(self.task) == "required"
            return UserFactory(self.task, (), alpha)
        kwargs = dict(self.config(full=full)["task"])
        if self.alpha_arg is not None:
            kwargs.pop(self.alpha_arg, None)
        return TaskFactory(self.task, tuple(sorted(kwargs.items())), self.alpha_arg)


def _presets() -> dict[str, Experiment]:
    # The presets are data: `experiments.toml` beside this module, one table of `Experiment` fields each.
    text = importlib.resources.files(__package__).joinpath("experiments.toml").read_text(encoding="utf-8")
    presets = {}
    for name, fields in tomllib.loads(text).items():
        sweeps = {key: tuple(fields[key]) for key in ("sweep_lam", "sweep_alpha") if key in fields}
        presets[name] = Experiment(name, **{**fields, **sweeps})
    return presets


EXPERIMENTS: dict[str, Experiment] = _presets()


def get_experiment(name: str) -> Experiment:
    """A preset by name, or a user's factory given as `module:function` (imported and checked here)."""
    if isinstance(name, str) and is_factory_spec(name):
        load_factory(name)
        return Experiment(
            name, f"your problem factory {name}", "-", "-", name, {}, {}, sweep_lam=(1e-3, 1e-2), runtime="-"
        )
    try:
        return EXPERIMENTS[name]
    except (KeyError, TypeError):
        from .papers import FIGURES

        if isinstance(name, str) and name in FIGURES:
            raise ConfigError(
                f"{name} is a figure experiment (several runs drawn in one figure): run it with "
                f"gflow run {name} [--smoke | --full]; gflow sweep takes: {', '.join(EXPERIMENTS)}"
            ) from None
        raise ConfigError(
            f"unknown experiment {name!r}; choose one of: {', '.join(EXPERIMENTS)} "
            "(or module:function for your own (key[, alpha]) -> gflow.Problem factory)"
        ) from None


# -- user problem factories (`module:function`) ---------------------------------------------


def is_factory_spec(name: str) -> bool:
    """`module:function` (a dotted module path, one colon, a function name); not a .toml path."""
    module, sep, attr = name.partition(":")
    return bool(sep) and not name.endswith(".toml") and all(p.isidentifier() for p in module.split(".") + [attr])


def _first_line(err: BaseException) -> str:
    # CLI errors are one line; jax and import errors can span many.
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


def load_factory(spec: str):
    """Import `module` and return its callable `function`, or raise ConfigError saying what to fix."""
    module_name, _, attr = spec.partition(":")
    # As `python -m` does, so that `gflow run mymod:f` finds mymod.py in the current directory.
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(
            f"cannot import module {module_name!r} for {spec}: {_first_line(err)}; "
            "run gflow from the folder that holds it or add it to PYTHONPATH"
        ) from None
    except Exception as err:  # a module that fails while it runs: show why, no traceback
        raise ConfigError(f"importing module {module_name!r} for {spec} raised {_first_line(err)}") from None
    if not hasattr(module, attr):
        raise ConfigError(f"module {module_name!r} has no attribute {attr!r}; check the name after ':' in {spec}")
    fn = getattr(module, attr)
    if not callable(fn):
        raise ConfigError(
            f"{spec} is a {type(fn).__name__}, not a function; give a function (key[, alpha]) -> gflow.Problem"
        )
    return fn


def _factory_params(spec: str) -> tuple[dict[str, inspect.Parameter], bool]:
    """The factory's parameters after the key, and whether it takes **kwargs."""
    try:
        params = list(inspect.signature(load_factory(spec)).parameters.values())
    except (TypeError, ValueError):  # no signature (a builtin): accept any [task] keys
        return {}, True
    var_kw = any(p.kind == p.VAR_KEYWORD for p in params)
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if not positional and not any(p.kind == p.VAR_POSITIONAL for p in params):
        raise ConfigError(f"{spec} takes no positional key; define it as function(key[, alpha]) -> gflow.Problem")
    rest = [p for p in params[1:] if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    return {p.name: p for p in rest}, var_kw


def _factory_takes_alpha(spec: str) -> str | None:
    """'required' or 'optional' if the factory has a second positional parameter (α), else None."""
    try:
        params = list(inspect.signature(load_factory(spec)).parameters.values())
    except (TypeError, ValueError):
        return "optional"
    if any(p.kind == p.VAR_POSITIONAL for p in params):
        return "optional"
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) < 2:
        return None
    return "required" if positional[1].default is positional[1].empty else "optional"


def call_factory(spec: str, key, *args, **kwargs):
    """`function(key, *args, **kwargs)` of `module:function`, checked to be a gflow.Problem."""
    from ._problem import Problem

    fn = load_factory(spec)
    try:
        problem = fn(key, *args, **kwargs)
    except Exception as err:  # the user's code: report it in one line, as for any config error
        raise ConfigError(f"{spec} raised {_first_line(err)}") from None
    if not isinstance(problem, Problem):
        raise ConfigError(
            f"{spec} returned {type(problem).__name__}, not a gflow.Problem; "
            "return gflow.Problem(model, train, loss=...)"
        )
    return problem


@dataclasses.dataclass(frozen=True)
class UserFactory:
    """`(key[, alpha]) -> Problem` for sweeps from a user's `module:function`, with fixed keyword arguments.

    Hashable by value (the spec, not the function object), so sweeps reuse compilations and stores.
    """

    spec: str
    kwargs: tuple = ()
    takes_alpha: bool = False

    def __call__(self, key, alpha=None):
        args = (alpha,) if self.takes_alpha else ()
        return call_factory(self.spec, key, *args, **dict(self.kwargs))

    def _fingerprint_parts(self):
        # The sweep store's identity: the spec and arguments, and the function's code itself.
        return (self.spec, self.kwargs, self.takes_alpha, load_factory(self.spec))

    def __repr__(self):
        args = "".join(f", {k}={v!r}" for k, v in self.kwargs)
        return f"{self.spec}(key{', alpha' if self.takes_alpha else ''}{args})"


# Module-level factories kept for scripts and tests that sweep these tasks directly.
diagonal_squares = EXPERIMENTS["diagonal_squares"].make_problem()
diagonal_uv = EXPERIMENTS["diagonal_uv"].make_problem()
linear_regression = EXPERIMENTS["linear_regression"].make_problem()
musat_addition = EXPERIMENTS["musat_addition"].make_problem()


# -- configurations ------------------------------------------------------------------------


def _task_signature(task_name: str) -> dict[str, inspect.Parameter]:
    if is_factory_spec(task_name):
        return _factory_params(task_name)[0]
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
    from ._simulate import MAX_SAVES, MAX_STEPS, SOLVER_NAMES

    if not isinstance(cfg, Mapping):
        raise ConfigError(f"a config must be a table (dict), got {type(cfg).__name__}")
    for section in ("task", "run"):
        if not isinstance(cfg.get(section, {}), Mapping):
            raise ConfigError(
                f"[{section}] must be a table of fields (e.g. [{section}] then one field = value per line), "
                f"got {cfg[section]!r}"
            )
    unknown_top = set(cfg) - {"experiment", "task", "run"}
    if unknown_top:
        raise ConfigError(f"unknown config section(s) {', '.join(sorted(unknown_top))}; use experiment, [task], [run]")
    if "experiment" not in cfg:
        raise ConfigError('the config must name its experiment: experiment = "NAME" (see gflow list)')
    exp = get_experiment(cfg["experiment"])
    base = exp.config()
    out = {"experiment": exp.name, "task": dict(base["task"]), "run": dict(base["run"])}
    params = _task_signature(exp.task)
    any_key = exp.is_user and _factory_params(exp.task)[1]
    for key, value in dict(cfg.get("task", {})).items():
        if key not in params and not any_key:
            valid = ", ".join(params) if params else "none (it takes only the key)"
            raise ConfigError(f"unknown task field {key!r} for {exp.task}; valid: {valid}")
        default = base["task"].get(key, params[key].default if key in params else None)
        if default is inspect.Parameter.empty:
            default = None
        out["task"][key] = _coerce(f"task.{key}", value, default, float if isinstance(default, float) else None)
    if exp.is_user:
        missing = [k for k, p in params.items() if p.default is p.empty and k not in out["task"]]
        if missing:
            raise ConfigError(
                f"{exp.task} needs {', '.join(missing)}; "
                f"set it in the [task] table or with --set task.{missing[0]}=VALUE"
            )
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
        if run[key] is not None and run[key] <= 0:
            raise ConfigError(f"run.{key} must be > 0, got {run[key]}")
    if run["lam"] < 0:
        raise ConfigError(f"run.lam must be >= 0, got {run['lam']}")
    if run["saves"] < 2 or run["saves"] > MAX_SAVES:
        raise ConfigError(f"run.saves must be in [2, {MAX_SAVES}], got {run['saves']}")
    if run["max_steps"] is not None and run["max_steps"] > MAX_STEPS:
        raise ConfigError(f"run.max_steps must be at most {MAX_STEPS}, got {run['max_steps']}")
    if not 0 <= run["seed"] < 2**32:
        raise ConfigError(f"run.seed must be an integer in [0, 2**32), got {run['seed']}")
    for key in ("rtol", "atol"):
        if run[key] is not None and not run[key] > 0:
            raise ConfigError(f"run.{key} must be > 0, got {run[key]}")
    if run["t_min"] is not None and not 0 < run["t_min"] < run["t1"]:
        raise ConfigError(
            f"run.t_min (the first log-spaced save time) must be in (0, t1={run['t1']:g}), got {run['t_min']}"
        )
    if not exp.is_user:
        for key, value in out["task"].items():
            if isinstance(value, int) and not isinstance(value, bool) and not 1 <= value <= MAX_SIZE:
                raise ConfigError(f"task.{key} is a size and must be an integer in [1, {MAX_SIZE:.0e}], got {value}")
    return out


def parse_override(text: str) -> tuple[str, str, Any]:
    """`section.field=value` with a TOML value (numbers, true/false, "strings"; bare words are strings)."""
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise ConfigError(f"--set takes section.field=value (e.g. run.lam=1e-3 or task.alpha=30), got {text!r}")
    key, raw = text.split("=", 1)
    section, field = key.strip().split(".", 1)
    if section not in ("task", "run", "figure"):
        raise ConfigError(
            f"--set section must be task or run (figure for a figure experiment), got {section!r} in {text!r}"
        )
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()  # a bare word: a string such as run.solver=tsit5
    return section, field.strip(), value


def resolve_config(source: str, *, overrides=(), full: bool = False, smoke: bool = False) -> dict:
    """A configuration from a preset name or a TOML file, then `--full` or `--smoke`, then `--set` overrides.

    `smoke`: a figure experiment's smoke size; for a task preset (seconds already), 40 saves.
    """
    if full and smoke:
        raise ConfigError("give at most one of --smoke and --full")
    if not source.endswith(".toml") and _figure(source) is not None:
        return resolve_figure_config({"experiment": source}, overrides=overrides, full=full, smoke=smoke)
    if source.endswith(".toml"):
        try:
            with open(source, "rb") as f:
                raw = tomllib.load(f)
        except FileNotFoundError:
            raise ConfigError(f"config file {source} not found") from None
        except IsADirectoryError:
            raise ConfigError(f"config file {source} is a folder; give a .toml file (RUN/config.toml)") from None
        except OSError as err:
            raise ConfigError(f"cannot read config file {source}: {err.strerror}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"config file {source} is not UTF-8 text; TOML files must be UTF-8") from None
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"config file {source} is not valid TOML: {err}") from None
        for section in ("task", "run"):
            if not isinstance(raw.get(section, {}), dict):
                raise ConfigError(
                    f"in {source}, {section} must be a table ([{section}] then one field = value per line), "
                    f"got {raw[section]!r}"
                )
        name = raw.get("experiment")
        if _figure(name) is not None:
            return resolve_figure_config(raw, overrides=overrides, full=full, smoke=smoke, source=source)
        base = get_experiment(name).config(full=full) if isinstance(name, str) else {}
        if isinstance(name, str) and is_factory_spec(name) and full:
            raise ConfigError(f"--full needs a named experiment; {name} has a single size")
        cfg = {
            "experiment": name,
            "task": {**base.get("task", {}), **raw.get("task", {})},
            "run": {**base.get("run", {}), **raw.get("run", {})},
        }
        cfg.update({k: v for k, v in raw.items() if k not in ("task", "run", "experiment")})
    else:
        exp = get_experiment(source)
        if exp.is_user and full:
            raise ConfigError(f"--full needs a named experiment; {source} has a single size")
        cfg = exp.config(full=full)
    if smoke:
        cfg["run"]["saves"] = min(40, cfg["run"].get("saves", 40))
    for text in overrides:
        section, field, value = parse_override(text)
        if section == "figure":
            raise ConfigError(f"{cfg['experiment']} is a task preset: set its fields with task.FIELD or run.FIELD")
        cfg.setdefault(section, {})[field] = value
    return validate_config(cfg)


# -- figure experiments (gflow.papers): several runs in one figure ------------------------------


def _figure(name):
    """The `gflow.papers.FigureExperiment` called `name`, or None."""
    from .papers import FIGURES

    return FIGURES.get(name) if isinstance(name, str) else None


def resolve_figure_config(raw: Mapping, *, overrides=(), full=False, smoke=False, source=None) -> dict:
    """A figure experiment's configuration `{"experiment", "size", "figure": {field: value}}`.

    The size's fields, then the `[figure]` table of `raw` (a config file), then `--set figure.FIELD=VALUE`.
    `--full`/`--smoke` replace the size named in `raw` (default "quick").
    """
    exp = _figure(raw["experiment"])
    where = f"in {source}, " if source else ""
    unknown = set(raw) - {"experiment", "size", "figure"}
    if unknown:
        raise ConfigError(
            f"{where}unknown config section(s) {', '.join(sorted(unknown))}; use experiment, size, [figure]"
        )
    size = "full" if full else "smoke" if smoke else raw.get("size", "quick")
    if size not in exp.sizes:
        raise ConfigError(f"{where}size must be one of {', '.join(exp.sizes)}, got {size!r}")
    table = raw.get("figure", {})
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where}figure must be a table ([figure] then one field = value per line), got {table!r}")
    base = exp.params(size)
    values = dict(table)
    for text in overrides:
        section, field, value = parse_override(text)
        if section != "figure":
            raise ConfigError(
                f"{exp.name} is a figure experiment: set its fields with --set figure.FIELD=VALUE "
                f"(fields: {', '.join(base)})"
            )
        values[field] = value
    for key, value in values.items():
        if key not in base:
            raise ConfigError(f"unknown figure field {key!r} for {exp.name}; valid: {', '.join(base)}")
        default = base[key]
        if isinstance(default, list):
            if not isinstance(value, list) or not value:
                raise ConfigError(f"figure.{key} must be a non-empty list like {default!r}, got {value!r}")
            base[key] = [_coerce(f"figure.{key}", v, default[0], None) for v in value]
        else:
            base[key] = _coerce(f"figure.{key}", value, default, None)
        if isinstance(base[key], int) and not isinstance(base[key], bool) and not 0 <= base[key] <= MAX_SIZE:
            raise ConfigError(f"figure.{key} must be an integer in [0, {MAX_SIZE:.0e}], got {base[key]}")
    exp.check(base)
    return {"experiment": exp.name, "size": size, "figure": base}


def _toml_key(key) -> str:
    key = str(key)
    return key if key and all(c.isalnum() or c in "_-" for c in key) else json.dumps(key, ensure_ascii=False)


def to_toml(cfg: Mapping) -> str:
    """Write a resolved configuration as TOML (None values are left out: they mean the default)."""

    def value(v):
        # Every value TOML can hold round-trips: `gflow run RUN/config.toml` must rebuild the same run.
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int):
            return repr(v)
        if isinstance(v, float):
            return repr(v) if math.isfinite(v) else ("nan" if math.isnan(v) else ("inf" if v > 0 else "-inf"))
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, Mapping):
            return "{" + ", ".join(f"{_toml_key(k)} = {value(x)}" for k, x in v.items()) + "}"
        if isinstance(v, str):
            return json.dumps(v, ensure_ascii=False)  # a JSON string is a valid TOML basic string
        raise ConfigError(f"cannot write {v!r} ({type(v).__name__}) to config.toml; use numbers, strings or lists")

    lines = [f"experiment = {value(cfg['experiment'])}"]
    lines += [f"{k} = {value(v)}" for k, v in cfg.items() if k != "experiment" and not isinstance(v, Mapping)]
    for section in [k for k, v in cfg.items() if isinstance(v, Mapping)]:
        lines += ["", f"[{section}]"]
        lines += [f"{_toml_key(k)} = {value(v)}" for k, v in cfg[section].items() if v is not None]
    return "\n".join(lines) + "\n"
