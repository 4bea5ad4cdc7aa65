"""What Lyu et al.'s Fig. 1a (`lyu_fig1a_sparse_classification`, grokking) and Fig. 1b
(`lyu_fig1b_misgrokking`) share: a diagonal net f(x) = ⟨u² − v², x⟩ at ‖θ(0)‖ = α on ±1
labels, mean logistic loss, weight decay λ, swept over (seed, α) in one `gflow.sweep` call.

Both figures compare the test accuracy with two reference classifiers fitted per seed on the
same data (`gflow.analysis`): the kernel level, `kernel_predictor` (the max-ℓ2-margin classifier
on the NTK features at initialisation, the kernel regime's limit, Lyu Cor. 3.6), and the rich
level, `max_l1_margin_classifier` on the raw inputs (a KKT point of the max-ℓ1-margin problem,
Cor. 3.7). The kernel plateau is the median test accuracy over t ∈ [1, T⁻_c],
T⁻_c = (1 − c) ln α/λ (Thm 3.4, c = `KERNEL_C`), where the kernel theory holds.

Time convention: t is ODE time of dθ/dt = −∇F_λ(θ), F_λ = F + (λ/2)‖θ‖², F the mean logistic
loss; τ = λt.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import TYPE_CHECKING

import numpy as np

from ._common import caption, require_float64

if TYPE_CHECKING:
    from . import FigureExperiment

RTOL, ATOL = 1e-6, 1e-9
KERNEL_C = 0.5  # plateau window t in [1, T⁻_c], T⁻_c = (1 − c) ln α / λ (Lyu Thm 3.4)


def check_sweep(params, transition: str) -> None:
    """Refuse α ≤ 1, λ ≤ 0 and unknown solvers (a `ConfigError` naming the field); `transition`
    names the event at ln α/λ in the message ("transition", "drop")."""
    from .._simulate import SOLVER_NAMES
    from ..experiments import ConfigError

    if min(params["alphas"]) <= 1:
        raise ConfigError(
            f"figure.alphas must be initial norms > 1 (the {transition} is at ln α/λ), got {params['alphas']}"
        )
    if params["lam"] <= 0:
        raise ConfigError(f"figure.lam must be a positive weight decay, got {params['lam']}")
    if params["solver"] not in SOLVER_NAMES:
        raise ConfigError(f"figure.solver must be one of {', '.join(SOLVER_NAMES)}, got {params['solver']!r}")


@dataclasses.dataclass(frozen=True)
class Runs:
    """The runs of one of the two figures, `figure`: the problems `gflow.tasks.<task>(key,
    alpha=α, **fields)` with the configuration's `task_fields`, swept over its seeds and α in one
    `gflow.sweep`, and the reference classifiers per seed.

    The figure's module supplies the rest, by name: `check(params)`, `config(params)` (the
    configuration), `save_times(cfg)`, `measurements(ds, refs, cfg)` (which include the kernel
    plateau, `kernel_plateau`), `REFERENCES` (the reference numbers, see `reference_classifiers`)
    and `KEPT`, its measurements the dataset keeps beside the plateau, each with its definition
    (an attribute `NAME_definition`) or None; `ROW`, the summary's text per α (see `alpha_row`).
    """

    figure: FigureExperiment
    task: str
    task_fields: tuple[str, ...]

    def make_problem(self, cfg):
        """`(key, alpha) -> Problem` of the configuration."""
        from .. import tasks

        task, fields = getattr(tasks, self.task), {name: cfg[name] for name in self.task_fields}

        def make(key, alpha):
            return task(key, alpha=alpha, **fields)

        return make

    def simulate_grid(self, cfg, *, progress: bool = False):
        """The gradient flows of every (seed, α): one `gflow.sweep` call. Returns (Dataset, solver name)."""
        module = self.figure.implementation()
        return sweep_seeds_alphas(self.make_problem(cfg), cfg, module.save_times(cfg), progress=progress)

    def references(self, cfg) -> dict:
        """Per seed, the reference classifiers' numbers the module's `REFERENCES` names."""
        return reference_classifiers(self.make_problem(cfg), cfg, self.figure.implementation().REFERENCES)

    def measure(self, params, *, progress: bool = False, echo=print):
        """The figure's `measure`: the references per seed, the sweep over (seed, α) and the
        measurements, as one Dataset (`figure_dataset`): the sweep's curves on (seed, alpha, time),
        the references per seed, the kernel plateau and the module's `KEPT` measurements per seed or
        (seed, alpha); attributes: params, solver, tolerances and the definitions of those kept."""
        module = self.figure.implementation()
        require_float64(self.figure.name)
        module.check(params)
        cfg = module.config(params)
        task = ", ".join(f"{name} = {cfg[name]:g}" for name in self.task_fields)
        echo(
            f"  {self.figure.paper} {self.figure.figure}: {task}, λ = {cfg['lam']:g}, α ∈ {list(cfg['alphas'])}, "
            f"seeds {list(cfg['seeds'])}, t1 = {cfg['t1']:.4g}"
        )
        echo("  1/2 references: kernel predictor (max-ℓ2-margin NTK SVM) and max-ℓ1-margin classifier per seed")
        refs = self.references(cfg)
        echo(f"  2/2 sweep: {len(cfg['seeds']) * len(cfg['alphas'])} gradient flows ({cfg['solver']})")
        ds, solver = self.simulate_grid(cfg, progress=progress)
        meas = module.measurements(ds, refs, cfg)
        kept = {**PLATEAU, **module.KEPT}
        definitions = {f"{name}_definition": text for name, text in kept.items() if text is not None}
        return figure_dataset(ds, refs, meas, tuple(kept), cfg, params, solver, definitions)

    def results(self, ds):
        """(cfg, refs, meas) rebuilt from the dataset alone: the configuration of its params, the
        references read back, and the module's `measurements`."""
        module = self.figure.implementation()
        cfg = module.config(json.loads(ds.attrs["params"]))
        refs = {k: ds[k].values for k in module.REFERENCES}
        return cfg, refs, module.measurements(ds, refs, cfg)

    def summary(self, ds, *, more=None) -> list[tuple[str, str]]:
        """The key numbers as (quantity, value) rows: the reference classifiers and the sweep
        (`reference_rows`), a row per α (the module's `ROW`), then `more(meas)`'s rows if given."""
        cfg, refs, meas = self.results(ds)
        spec = self.figure.implementation().ROW
        rows = reference_rows(ds, refs)
        rows += [(alpha_label(alpha, cfg["lam"]), alpha_row(meas, i, spec)) for i, alpha in enumerate(cfg["alphas"])]
        return rows + (more(meas) if more is not None else [])


def sweep_config(params) -> dict:
    """A copy of the figure's parameters with α and the seeds as tuples of float and int."""
    cfg = dict(params)
    cfg["alphas"] = tuple(float(a) for a in cfg["alphas"])
    cfg["seeds"] = tuple(int(s) for s in cfg["seeds"])
    return cfg


def sweep_seeds_alphas(make, cfg, saves, *, progress: bool = False):
    """`gflow.sweep` of `make(key, alpha)` over cfg's seeds and α at λ = cfg["lam"] to cfg["t1"] (ODE
    time), saved at `saves`, with cfg["solver"]. Returns (Dataset without the λ axis, solver name)."""
    import jax

    from .._simulate import choose_solver
    from .._sweep import sweep

    solver = cfg["solver"]
    if solver == "auto":  # sweep's own "auto" looks at the first α; the stiffest member has the largest
        probe = make(jax.random.PRNGKey(cfg["seeds"][0]), max(cfg["alphas"]))
        solver, _ = choose_solver(probe, cfg["lam"], cfg["t1"])
    ds = sweep(
        make,
        lam=[cfg["lam"]],
        seed=list(cfg["seeds"]),
        alpha=list(cfg["alphas"]),
        t1=cfg["t1"],
        time="fast",
        solver=solver,
        saveat=saves,
        rtol=RTOL,
        atol=ATOL,
        progress=progress,
    )
    return ds.isel(lam=0), solver


def reference_classifiers(make, cfg, names) -> dict:
    """Per seed, the reference classifiers' numbers listed in `names` (arrays over cfg's seeds):
    kernel_test_accuracy, kernel_train_accuracy (the kernel predictor's accuracies),
    l1_test_accuracy, l1_support (non-zeros above 1e-8 of the largest) and l1_teacher_cosine
    (cos(w_ℓ1, w⋆)) of the max-ℓ1-margin classifier w_ℓ1. The data do not depend on α."""
    import jax

    from .. import analysis

    out = {name: [] for name in names}
    for seed in cfg["seeds"]:
        problem = make(jax.random.PRNGKey(seed), max(cfg["alphas"]))
        kernel = analysis.kernel_predictor(problem).metrics
        x, y = np.asarray(problem.train["x"]), np.asarray(problem.train["y"])
        l1 = analysis.max_l1_margin_classifier(x, y)
        xt, yt = np.asarray(problem.test["x"]), np.asarray(problem.test["y"])
        w_star = np.asarray(problem.test["w_star"])
        values = {
            "kernel_test_accuracy": kernel["test_accuracy"],
            "kernel_train_accuracy": kernel["train_accuracy"],
            "l1_test_accuracy": float(np.mean(np.sign(xt @ l1.w) == yt)),
            "l1_support": int(np.sum(np.abs(l1.w) > 1e-8 * np.abs(l1.w).max())),
            "l1_teacher_cosine": float(l1.w @ w_star / np.linalg.norm(l1.w)),
        }
        for name in names:
            out[name].append(values[name])
    return {k: np.asarray(v) for k, v in out.items()}


# The kernel plateau's measurements every figure keeps, with their definitions (see `Runs`).
PLATEAU = {
    "plateau": f"median test accuracy over t in [1, (1 - {KERNEL_C}) ln(alpha)/lam]",
    "plateau_max_deviation": None,
}


def curves(ds, cfg):
    """(λ, α, t, test accuracy, train accuracy) of the sweep's Dataset `ds`; the accuracies on
    (seed, alpha, time)."""
    test, train = ds["test_accuracy"].values, ds["train_accuracy"].values
    return cfg["lam"], np.asarray(cfg["alphas"]), ds["t"].values, test, train


def after_start(ds):
    """The Dataset `ds` at its save times t > 0 (a log t axis has no t = 0)."""
    return ds.isel(time=ds["t"].values > 0)


def kernel_plateau(t, test, kernel, alphas, lam, cosine=None) -> dict:
    """Per (seed, α), over the window t ∈ [1, T⁻_c]: the median test accuracy ("plateau"), its
    largest distance to the kernel predictor's (`kernel`, per seed; "plateau_max_deviation") and,
    if `cosine` (seed, α, time) is given, its median ("plateau_teacher_cosine"). NaN where the
    window holds no save time."""
    n_s, n_a = test.shape[:2]
    out = {"plateau": np.full((n_s, n_a), np.nan), "plateau_max_deviation": np.full((n_s, n_a), np.nan)}
    if cosine is not None:
        out["plateau_teacher_cosine"] = np.full((n_s, n_a), np.nan)
    for a, alpha in enumerate(alphas):
        window = (t >= 1.0) & (t <= (1 - KERNEL_C) * math.log(alpha) / lam)
        if window.any():
            out["plateau"][:, a] = np.median(test[:, a, window], axis=1)
            out["plateau_max_deviation"][:, a] = np.max(np.abs(test[:, a, window] - kernel[:, None]), axis=1)
            if cosine is not None:
                out["plateau_teacher_cosine"][:, a] = np.median(cosine[:, a, window], axis=1)
    return out


def min_train_accuracy_after_fit(t, train) -> np.ndarray:
    """The lowest train accuracy from t = 1 on, per (seed, α)."""
    return np.min(np.where(t[None, None, :] >= 1.0, train, 1.0), axis=2)


def netcdf_ready(ds):
    """The sweep's Dataset without its solver statistics, in types NetCDF3 can hold."""
    out = ds.drop_vars([v for v in ds.data_vars if v.startswith("stats_")] + ["ok"])
    out = out.assign(
        ok=ds["ok"].astype("int8"),  # NetCDF3 has no booleans
        num_steps=ds["stats_num_steps"].astype("int32"),
        result=ds["result"].astype("int32"),
    )
    out["seed"] = out["seed"].astype("int32")
    return out


def figure_dataset(ds, refs, meas, names, cfg, params, solver, definitions: dict):
    """The figure's Dataset: the sweep's curves (`netcdf_ready`), the references per seed, the
    measurements `names` (per seed, or per (seed, alpha)) and the predicted transition ln α/λ per
    α; attributes: params, solver, tolerances, λ, t1, the conventions and the `definitions`
    (name: text)."""
    lam = cfg["lam"]
    out = netcdf_ready(ds).assign(
        **{k: ("seed", v.astype("int32") if k == "l1_support" else v) for k, v in refs.items()},
        **{k: (("seed", "alpha")[: meas[k].ndim], meas[k]) for k in names},
        predicted_transition=("alpha", np.log(np.asarray(cfg["alphas"])) / lam),
    )
    out.attrs = {
        "params": json.dumps(params),
        "solver": solver,
        "rtol": RTOL,
        "atol": ATOL,
        "lam": lam,
        "t1": cfg["t1"],
        "time_variable": "t (ODE time; paper GD steps = t/eta); tau = lam*t",
        "convention": "F_lam = mean logistic loss + (lam/2)*||theta||^2, dtheta/dt = -grad F_lam",
        **definitions,
    }
    return out


def rounded(values, digits):
    """`values` rounded to `digits` decimals, as a list (for the summary)."""
    return np.round(np.asarray(values, float), digits).tolist()


def reference_rows(ds, refs) -> list[tuple[str, str]]:
    """The summary's first rows: the two reference classifiers per seed and the sweep's solver."""
    return [
        (
            "kernel predictor (max-ℓ2-margin NTK SVM) test accuracy, per seed",
            str(rounded(refs["kernel_test_accuracy"], 4)),
        ),
        (
            "max-ℓ1-margin classifier test accuracy (support), per seed",
            f"{rounded(refs['l1_test_accuracy'], 4)} ({np.asarray(refs['l1_support']).tolist()})",
        ),
        (
            "sweep",
            f"{ds.sizes['seed'] * ds.sizes['alpha']} runs, {ds.attrs['solver']}, "
            f"steps {ds['num_steps'].values.ravel().tolist()}, all ok: {bool(np.all(ds['ok'].values == 1))}",
        ),
    ]


def alpha_row(meas, i, spec) -> str:
    """The summary's text for α number `i`: the entries (text, (measurement, digits), …) of `spec`
    joined by ", ", each text with the measurements' values at that α in its {} fields (lists over
    the seeds, rounded to `digits` decimals, or as they are where digits is None)."""

    def values(name, digits):
        column = meas[name][:, i]
        return column.tolist() if digits is None else rounded(column, digits)

    return ", ".join(text.format(*(values(*m) for m in measured)) for text, *measured in spec)


def draw_reference_levels(ax, refs, **l1_style) -> None:
    """The kernel predictor's and the max-ℓ1-margin classifier's test accuracies (means over
    seeds) as horizontal lines on `ax`, the latter in `l1_style`."""
    kernel = float(np.mean(refs["kernel_test_accuracy"]))
    l1 = float(np.mean(refs["l1_test_accuracy"]))
    ax.axhline(kernel, color="k", lw=1.2, ls="-.", label=f"kernel predictor (max-ℓ2-margin NTK SVM): {kernel:.3f}")
    ax.axhline(l1, **l1_style, label=f"max-ℓ1-margin classifier: {l1:.3f}")


def alpha_label(alpha, lam) -> str:
    """The summary's name of an α row, with its predicted transition ln α/λ."""
    return f"α = {alpha:g} (ln α/λ = {math.log(alpha) / lam:.1f})"


def finish_figure(fig, ds, cfg, task: str, *, alpha_note: str = "", seeds_note: str = "") -> None:
    """The caption line (`task`, test points, λ, α, seeds, solver) and the layout's margins."""
    alphas = ", ".join(f"{a:g}" for a in cfg["alphas"])
    caption(
        fig,
        f"{task}, {cfg['n_test']} test points, λ = {cfg['lam']:g}, α ∈ {{{alphas}}}{alpha_note}, seeds "
        f"{list(cfg['seeds'])}{seeds_note}; gradient flow ({ds.attrs['solver']}, rtol {RTOL:g}), logistic loss, "
        "‖θ(0)‖ = α",
        size=ds.attrs.get("size"),
    )
    fig.get_layout_engine().set(h_pad=0.12, rect=(0, 0.03, 1, 0.97))
