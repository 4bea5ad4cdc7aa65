"""Paper figures as data: each figure of the seed papers is a registered experiment with its
sizes, and one module of this package that measures and draws it. `gflow run NAME [--smoke |
--full] [--set figure.FIELD=VALUE] [--out DIR]` runs it into a run folder; `gflow list` lists
them; `scripts/NAME.py` is a thin entry point to the same thing.

A figure experiment differs from a task preset (`gflow.experiments.EXPERIMENTS`, one `simulate`
call) in that it combines several runs (flows, their discrete baselines, sweeps, references) into
one figure. Its module, `gflow.papers.NAME` (named after the figure: `musat_fig1_single_sample`),
defines

- `FIGURE`: its `FigureExperiment` (name, paper, figure, description, sizes, quick runtime), read
  from `NAME.toml`;
- `measure(params, *, progress=False, echo=print) -> xarray.Dataset`: every run and
  measurement; whatever `plot` and `summary` need is in the dataset (variables and attributes);
- `plot(ds) -> matplotlib.figure.Figure`: the figure, from the dataset alone (so `gflow plot
  RUN` redraws it from the stored NetCDF);
- `summary(ds) -> list[tuple[str, str]]`: the key numbers as (quantity, value) rows;
- optionally `check(params)`, which refuses parameter combinations the runs cannot use with a
  one-line `ConfigError`, and `build_problem(params)`, which builds the main Problem so that a
  bad task fails before any folder is made.

`params` is a flat dict of the figure's fields (numbers, strings, booleans, lists of them); a
size ("smoke": seconds, what the tests run; "quick": minutes on a 2-core CPU, the default;
"full": the paper's size) is one such dict, and `--set figure.FIELD=VALUE` overrides a field
(checked against the type of its value in the size).

The sizes are data, not code: they live in `NAME.toml` beside the module (shipped in the wheel),
with the figure's entry in `gflow list` (description, paper, figure, runtime). Its `[quick]` table
holds every field, with the comments that document them; `[smoke]` and `[full]` hold only the
fields that differ from quick; `extends = "OTHER"` starts every size from figure OTHER's. The
module reads it with `FIGURE = FigureExperiment.from_toml(__name__)`.

The runner (`gflow._runner.run_figure`) owns the run folder: `figure.nc`, `figure.png`,
`summary.md`, `config.toml`, `metadata.json`. Package code never changes `jax.config`: the command
line enables float64 before it runs one.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.resources
import pkgutil
import tomllib
from collections.abc import Mapping
from typing import Any

SIZES = ("smoke", "quick", "full")


@dataclasses.dataclass(frozen=True)
class FigureExperiment:
    """A paper figure: `sizes` maps "smoke"/"quick"/"full" to the parameter dict of `module`
    (`gflow.papers.<module>`, which defines `measure`, `plot` and `summary`).

    `runtime` is the measured wall time of the quick size on a 2-core CPU (compilation included).
    """

    name: str
    description: str
    paper: str
    figure: str
    module: str
    sizes: Mapping[str, Mapping[str, Any]]
    runtime: str

    def __post_init__(self):
        if set(self.sizes) != set(SIZES):
            raise ValueError(f"{self.name}: sizes must be exactly {SIZES}, got {tuple(self.sizes)}")
        fields = set(self.sizes["quick"])
        for size, values in self.sizes.items():
            if set(values) != fields:
                raise ValueError(f"{self.name}: size {size!r} has other fields than 'quick': {set(values) ^ fields}")

    @classmethod
    def from_toml(cls, module: str) -> FigureExperiment:
        """The figure of module `module` (its `__name__`, `gflow.papers.NAME`), read from `NAME.toml`
        beside it: the keys description, paper, figure, runtime (and optionally extends), then the
        tables [smoke], [quick] and [full] (see the package's docstring)."""
        name = module.rpartition(".")[2]
        entry = _read_toml(name)
        return cls(
            name, entry["description"], entry["paper"], entry["figure"], name, _sizes(name, entry), entry["runtime"]
        )

    def params(self, size: str = "quick") -> dict:
        """The parameter dict of a size (a deep copy of its lists: callers may change it)."""
        return {k: list(v) if isinstance(v, list) else v for k, v in self.sizes[size].items()}

    def implementation(self):
        """The module that measures and draws this figure."""
        return importlib.import_module(f"{__name__}.{self.module}")

    def check(self, params: Mapping) -> None:
        """The module's own checks of a parameter dict (a `ConfigError` naming the field), if it has any."""
        check = getattr(self.implementation(), "check", None)
        if check is not None:
            check(params)


_KEYS = ("description", "paper", "figure", "runtime", *SIZES)  # and optionally "extends"


def _read_toml(name: str) -> dict:
    """The table of `NAME.toml` (a `ValueError` if a key is missing or unknown)."""
    entry = tomllib.loads(importlib.resources.files(__name__).joinpath(f"{name}.toml").read_text(encoding="utf-8"))
    if set(entry) - {"extends"} != set(_KEYS):
        raise ValueError(f"{name}.toml must hold exactly {', '.join(_KEYS)} (and optionally extends): {list(entry)}")
    return entry


def _sizes(name: str, entry: Mapping) -> dict[str, dict[str, Any]]:
    # smoke and full are merged over quick (in quick's order of fields), each over `extends`'s same size.
    sizes = {size: {**entry["quick"], **entry[size]} for size in SIZES}
    if "extends" in entry:
        base = _sizes(entry["extends"], _read_toml(entry["extends"]))
        sizes = {size: {**base[size], **values} for size, values in sizes.items()}
    return sizes


def _discover() -> dict[str, FigureExperiment]:
    # Every public module of this package is one figure (its FIGURE), so adding a figure is adding
    # a module: no list to edit beside it.
    found = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        figure = importlib.import_module(f"{__name__}.{info.name}").FIGURE
        if figure.module != info.name:
            raise ValueError(f"gflow.papers.{info.name}.FIGURE names module {figure.module!r}")
        found[figure.name] = figure
    return found


FIGURES: dict[str, FigureExperiment] = _discover()
