"""Lyu et al. (ICLR 2024) Fig. 2a–c: grokking of modular addition by a two-layer ReLU MLP (papers.md E3.1).

What the paper's figure shows (full-batch GD, η = 0.002, cross-entropy, p = 97, 40% of the
9409 pairs for training, width 1024):
- (a) He initialisation, λ = 1e-4: train accuracy reaches 100% by ~10⁶ steps while the test
  accuracy stays near chance; about one decade later (~10⁷ steps) it jumps to 100%.
- (b) init scale He ×1, ×10, ×100 with the last layer zero (W2 = 0, so f(θ0) = 0): the larger
  α, the later the jump (Lyu's transition at t ≈ (1/λ)(ln α + O(1))); the norm decays first.
- (c) λ ∈ {1, 3, 10, 30}×1e-4: larger λ, earlier jump, as 1/λ; above a threshold the training
  accuracy itself collapses (too much regularisation).

Setup (E3.1 and Lyu's code `train_mod_add.py`): f(a, b) = W2 ReLU(W1 [e_a; e_b] + b1)
(`gflow.models.ModularMLP`, bias in the first layer only), He/Kaiming normal init times α
(`gflow.tasks.modular_arithmetic`), mean cross-entropy, PyTorch `SGD(lr=η, weight_decay=λ)`,
i.e. gradient descent on F + (λ/2)‖θ‖² (`gflow.gd`, the same convention: λ is the paper's
weight decay and t = η·step its continuous time; τ = λt).

Method: the curves are the **gradient flow** θ' = −∇F(θ) − λθ, integrated by `gflow.sweep`
(`run_flow_grid`) with solver "auto" at its defaults: it finds the ReLU in the loss's jaxpr and
takes the kink-robust path, Bogacki–Shampine 3(2) at rtol 1e-3 (a ReLU network's field jumps
where a pre-activation changes sign; at smooth tolerances every adaptive solver crawls there).
Beside it, drawn as a faint band under each curve, **gradient descent**, the paper's own
optimiser: each panel's grid (α or λ) is one vmapped, compiled chain of `gd` calls, one per
entry of a step-size schedule, saved close to log-spaced in t; the flow is saved at the same
times. The members share the data split and the initialisation direction. Accuracy of the flow
on this problem (benchmarks/README.md, "ReLU flows", against GD extrapolated to η → 0): at
λ = 1e-3 the time test accuracy reaches 0.5 for good is 4.8% late, GD at η = 0.15 6.0% late;
at λ = 1e-4, 0.02%.

GD's step sizes. GD follows gradient flow (t = Σ_k η_k) while η·sharpness < 2. The sharpness
at initialisation grows as α² (W2 = 0): 799 at α = 100 on the quick problem, against ≈ 0.2 for
He ×1. The paper's fixed η = 0.002 handles that at its size; at the quick size it would take
5·10⁶ steps. So the quick run of (b) raises η as the sharpness falls (measured along the
α = 100 run: 169 at t = 20, 34 at t = 200, 19 at t = 1000, 4.9 at t = 2000, 0.14 at the end):
η = 0.001 to t = 20, 0.01 to 200, 0.05 to 2000, 0.15 after; (a, c) use η = 0.15 throughout.
(He ×1 with W2 ≠ 0, panels a and c, has sharpness 0.125 at θ0: GD is stable up to η ≈ 8 there,
and η = 1.2–2.4 reads the transition times about as well as 0.15 does; benchmarks/README.md,
"GD's step on this problem". The figure keeps 0.15, so GD's band stays close to the flow.)
Each schedule entry is one `gd` call, which also spaces the saves roughly logarithmically in t.
The flow needs no schedule: its steps follow the stiffness and the kinks on their own.

Sizes (`FIGURE.sizes`; fields p, width, fraction, the schedules schedule_c_t/schedule_c_lr (panels
a, c) and schedule_b_t/schedule_b_lr (panel b) — η = schedule_*_lr[i] until t = schedule_*_t[i] —,
saves per schedule entry, lam_a, alphas_b, lams_c, key):
- full: the paper's p = 97, h = 1024, 40% train, η = 0.002 throughout, λ = 1e-4 for
  (a, b), the paper's α and λ grids; 2.5·10⁷ (a, c) and 3.5·10⁷ (b) steps of 2.3 GFLOP per
  member: GPU hours for GD (`sweep` runs the flow's members in one call there); not run.
- quick (the default): p = 23, h = 128, **90%** of the 529 pairs for training (476; 53 test
  pairs, so test accuracy moves in steps of 1/53), α ∈ {1, 10, 100} as in the paper, but
  **λ ten times larger** (a, b: 1e-3; c: {1, 3, 10, 30}×1e-3) so that the transition comes by
  t ≈ 10⁴. 24 minutes wall on a 2-core machine shared with two other jobs (the flow and GD,
  measured below).
- smoke: p = 11, h = 32, t ≤ 400 (20 s): too small to grok or even fit at λ = 1e-2, a check of
  the machinery; there the flow crawls along kinks (23 153 gradient evaluations at λ = 1e-2
  against GD's 2 000 steps) while matching GD's losses within 0.33%.

Choices the paper does not fix for the quick size (papers.md §10): p, width, train fraction
(40% and 70% at p = 23 memorise but generalise only partly, 50–75% test accuracy by t = 10⁴
in our runs — too few pairs per residue), λ (×10), the step-size schedule (above). The data
split and the init come from `jax.random.PRNGKey(0)`. Transition times are read where the test
accuracy reaches 0.5 for good (the 53-pair test set makes 0.9 a noisy threshold).

Measured at the quick size (the flow; GD beside it where it differs): (a) train accuracy ≥ 0.99
from t = 426, test accuracy ≥ 0.5 from t = 2921 (GD 3069; τ = 2.9) and ≥ 0.9 from t = 6336 (GD
6187), final 0.98. (b) test ≥ 0.5 at t = 2395, 3975, 6083 for α = 1, 10, 100 (GD the same, to the
save grid): delays of 1580 and 2107 per factor 10 in α, against Lyu's ln 10/λ = 2303; the norms
start at 16, 160, 1594 and all end at 33. (c) λ = 3e-3 reaches 0.5 at t = 1584 (final 0.93, GD
0.89); ln(t_half − t_fit) against ln λ has slope −0.82 between 1e-3 and 3e-3 (GD −0.88); λ = 1e-2
and 3e-2 never fit the training set (Lyu: "training accuracy eventually collapses"; at 3e-2 the
weights decay to ≈ 0, where the argmax of near-zero logits, and so the test accuracy, flickers).
Cost of the flow per member: 111 167, 335 339, 96 713 and 755 gradient evaluations for
λ = 1e-3 … 3e-2 against GD's 66 000 steps; 114 071, 84 149 and 144 776 for α = 1, 10, 100
against GD's scheduled 126 660. Wall time 24 min for the whole figure (flow 14 min, GD 11 min),
measured with two other single-threaded jobs on the machine's two cores.

Why the schedule stays a chain of `gd` calls (issue 14) rather than one `gd` call with an optax
schedule (`lr=` a `k -> η_k` function): `gd` saves every `save_every` steps, uniformly in k, and
the figure needs saves close to log-spaced in t (the fit at t ≈ 400 and the jump at t ≈ 3000–6000
on one log axis up to t ≈ 10⁴, and panel (a, c) runs one constant η, so a schedule would not
space them either). One call per schedule entry, each with `saves` saves, gives that spacing and
keeps the save grid (and the transition times read off it) as before.
"""

from __future__ import annotations

import json
import math

import numpy as np
import xarray as xr

from . import FigureExperiment
from ._common import add_tau_axis, caption, gd_chain, require_float64, require_in

GROK_ACCURACY = 0.9  # "generalised": test accuracy at or above this, for good
HALF_ACCURACY = 0.5  # the middle of the jump (robust to the 1/53 granularity of the quick test set)
FIT_ACCURACY = 0.99
METRICS = ("train_accuracy", "test_accuracy", "train_loss", "test_loss", "norm")
TIMES = ("t_fit", "t_half", "t_grok")
# The flow's curves and transition times under their own names, gradient descent's as gd_<name>.
PANEL_VARS = (*METRICS, *(f"gd_{k}" for k in METRICS))
MEMBER_VARS = (*TIMES, "tau_grok", "result", "gradients", "steps", *(f"gd_{k}" for k in TIMES), "gd_result")

FIGURE = FigureExperiment.from_toml(__name__)


def schedule(params, panel: str) -> tuple:
    """A panel's GD step-size schedule ((t_end, η), …): "c" for panels (a, c), "b" for panel (b)."""
    return tuple(zip(params[f"schedule_{panel}_t"], params[f"schedule_{panel}_lr"], strict=True))


def check(params) -> None:
    """Refuse parameter combinations the runs cannot use (a `ConfigError` naming the field)."""
    from ..experiments import ConfigError

    for panel in ("c", "b"):
        ts, lrs = params[f"schedule_{panel}_t"], params[f"schedule_{panel}_lr"]
        if len(ts) != len(lrs):
            raise ConfigError(
                f"figure.schedule_{panel}_t and figure.schedule_{panel}_lr must have the same length, "
                f"got {len(ts)} and {len(lrs)}"
            )
        if min(lrs) <= 0:
            raise ConfigError(f"figure.schedule_{panel}_lr must be positive step sizes, got {lrs}")
        if min(ts) <= 0 or any(b <= a for a, b in zip(ts, ts[1:])):
            raise ConfigError(f"figure.schedule_{panel}_t must be increasing positive times, got {ts}")
    if params["saves"] < 1:
        raise ConfigError(f"figure.saves must be a positive number of saves per schedule entry, got {params['saves']}")
    if params["lam_a"] < 0 or min(params["lams_c"]) < 0:
        raise ConfigError("figure.lam_a and figure.lams_c must be weight decays ≥ 0")
    if min(params["alphas_b"]) <= 0:
        raise ConfigError(f"figure.alphas_b must be positive init scales, got {params['alphas_b']}")
    require_in(params, "fraction", 0, 1)


def build_problem(params):
    """The figure's base Problem: He init ×1 on the data split of key `key` (`base_problem`)."""
    return base_problem(params)


def describe(schedule) -> str:
    """'η = 0.001 to t = 20, 0.01 to t = 200, …' (or 'η = 0.15 to t = 9900' for a constant step)."""
    if len({lr for _, lr in schedule}) == 1:
        return f"η = {schedule[0][1]:g} to t = {schedule[-1][0]:g}"
    return "η = " + ", ".join(f"{lr:g} to t = {t:g}" for t, lr in schedule)


def base_problem(params):
    """He init ×1 (W2 ≠ 0) on the figure's data split: the members rescale it."""
    from .. import tasks

    return tasks.modular_arithmetic(
        params["key"], p=params["p"], width=params["width"], train_fraction=params["fraction"], alpha=1.0, model="mlp"
    )


def scaled(problem, alpha, zero_last):
    """`problem` with every weight times α, and W2 times (1 − zero_last) (traced: vmappable)."""
    import equinox as eqx

    m = problem.model
    model = eqx.tree_at(lambda n: (n.w1, n.b1, n.w2), m, (alpha * m.w1, alpha * m.b1, alpha * (1 - zero_last) * m.w2))
    return eqx.tree_at(lambda pr: pr.model, problem, model)


def run_grid(problem, alphas, lams, zero_last, schedule, saves: int):
    """`gflow.gd` over members (α_i, λ_i, zero_last_i), vmapped and compiled once (`gd_chain`: one
    `gd` call per entry of the step-size schedule, so the saves are close to log-spaced in t).

    Returns (t, cumulative step, {metric: (member, time)}, result codes).
    """
    return gd_chain(problem, lams, schedule, saves, member=scaled, member_args=(alphas, zero_last))


def member_times(t, train_acc, test_acc):
    """(t_fit, t_half, t_grok): first times from which train accuracy ≥ 0.99, test accuracy ≥ 0.5
    and test accuracy ≥ 0.9 hold for good (NaN if never)."""
    from .. import analysis

    t_fit = analysis.crossing_time(t, train_acc, FIT_ACCURACY, below=False)
    t_half = analysis.crossing_time(t, test_acc, HALF_ACCURACY, below=False)
    t_grok = analysis.crossing_time(t, test_acc, GROK_ACCURACY, below=False)
    return t_fit, t_half, t_grok


def run_flow_grid(problem, lams, alphas, zero_last: float, t, *, progress: bool = False):
    """The gradient flow of every member (λ_i, α_j) of the grid `lams` × `alphas` (W2 times
    1 − `zero_last`), by `gflow.sweep` with solver "auto" at its defaults, saved at the times `t`.

    "auto" finds the ReLU in the loss's jaxpr and integrates with Bogacki–Shampine 3(2) at rtol
    1e-3 (`gflow.simulate`'s kink-robust path). One compiled call per chunk: members in one call
    on an accelerator; one member per call on a CPU, where a vmapped adaptive solve runs every
    member until its slowest ends (at t = 0 the sharpness is 799 at α = 100, 0.08 at α = 1, W2 = 0).

    Returns ({metric: (member, time)}, result codes, gradient evaluations, steps, "solver, rtol"), members
    λ-major (one of the two grids has one value in this figure).
    """
    import jax

    from .._sweep import sweep

    def member_problem(key, alpha):
        return scaled(problem, alpha, zero_last)

    ds = sweep(
        member_problem,
        lam=list(lams),
        alpha=list(alphas),
        t1=float(t[-1]),
        time="fast",
        saveat=np.asarray(t, float),
        chunk_size=1 if jax.default_backend() == "cpu" else None,
        progress=progress,
    )
    n = len(lams) * len(alphas)

    def flat(name):
        v = ds[name].values
        return v.reshape(n, *v.shape[3:])

    metrics = {k: flat(k) for k in METRICS}
    solver = f"{ds.attrs['solver']}, rtol {json.loads(ds.attrs['config'])['rtol']:g}"
    return metrics, flat("result"), flat("stats_num_gradient_equivalents"), flat("stats_num_steps"), solver


def panel_dataset(gd_grid, flow, coord: str, values, lams):
    """A panel's runs over (coord, time): the flow (`run_flow_grid`'s output) under the metric
    names and gradient descent (`run_grid`'s output, on the same times) as gd_<metric>, with
    both their transition times; `lams`: the members' λ (for τ_grok)."""
    t, step, gd_metrics, gd_result = gd_grid
    metrics, result, gradients, steps, _ = flow
    data = {k: ((coord, "time"), metrics[k]) for k in METRICS}
    data.update({f"gd_{k}": ((coord, "time"), gd_metrics[k]) for k in METRICS})
    ds = xr.Dataset(
        data, coords={coord: np.asarray(values, float), "time": t, "t": ("time", t), "step": ("time", step)}
    )
    for prefix in ("", "gd_"):
        times = [
            member_times(t, ds[f"{prefix}train_accuracy"].values[i], ds[f"{prefix}test_accuracy"].values[i])
            for i in range(len(values))
        ]
        for name, column in zip(TIMES, zip(*times, strict=True), strict=True):
            ds[f"{prefix}{name}"] = (coord, np.asarray(column))
    ds["tau_grok"] = (coord, ds["t_grok"].values * np.asarray(lams, float))
    ds["result"] = (coord, np.asarray(result).astype(np.int8))
    ds["gd_result"] = (coord, np.asarray(gd_result).astype(np.int8))
    ds["gradients"] = (coord, np.asarray(gradients, np.int64))
    ds["steps"] = (coord, np.asarray(steps, np.int64))
    return ds


def measure(params, *, progress: bool = False, echo=print) -> xr.Dataset:
    """Panels (a, c) (He init over λ; (a) is the member λ = lam_a) and (b) (W2 = 0 over α at
    λ = lam_a): per panel, gradient descent (one vmapped chain of `gd` calls) and then the flow
    (`run_flow_grid`) saved at GD's times, as one Dataset. Each panel keeps its own time axis
    (`time_c`, `t_c`, `step_c` and `time_b`, …), its curves on (lam, time_c) and (alpha, time_b)
    (the flow's as `train_accuracy_c`, …, GD's as `gd_train_accuracy_c`, …) and its transition
    times and costs per member (`t_fit_c`, `gd_t_half_b`, `gradients_c`, …)."""
    import time

    require_float64(FIGURE.name)
    check(params)
    problem = base_problem(params)
    n_train = int(problem.train["x"].shape[0])
    n_test = int(problem.test["x"].shape[0])
    saves = params["saves"]
    schedule_c, schedule_b = schedule(params, "c"), schedule(params, "b")
    echo(
        f"  E3.1: p = {params['p']}, width {params['width']}, {n_train} train / {n_test} test pairs, "
        f"GD (a, c) {describe(schedule_c)}; (b) {describe(schedule_b)}"
    )
    lams_c = tuple(sorted(set(params["lams_c"]) | {params["lam_a"]}))
    alphas_b, lam_a = params["alphas_b"], params["lam_a"]
    panels, walls = [], {}
    for tag, label, coord, lams, alphas, zero_last, sched in (
        # (a) and (c): He init over λ; (a) is the member λ = lam_a of (c).
        ("c", "(a, c) He init", "lam", lams_c, (1.0,), 0.0, schedule_c),
        ("b", f"(b) W2 = 0, λ = {lam_a:g},", "alpha", (lam_a,), tuple(alphas_b), 1.0, schedule_b),
    ):
        values = lams if coord == "lam" else alphas
        members = [(lam, alpha) for lam in lams for alpha in alphas]  # sweep's order: λ-major
        member_lams, member_alphas = zip(*members, strict=True)
        echo(f"  {label} {'λ' if coord == 'lam' else 'α'} ∈ {{{', '.join(f'{v:g}' for v in values)}}}")
        start = time.perf_counter()
        gd_grid = run_grid(problem, member_alphas, member_lams, [zero_last] * len(members), sched, saves)
        walls[f"wall_gd_{tag}_s"] = time.perf_counter() - start
        echo(f"    gradient descent: {int(gd_grid[1][-1])} steps per member [{walls[f'wall_gd_{tag}_s']:.1f} s]")
        start = time.perf_counter()
        flow = run_flow_grid(problem, lams, alphas, zero_last, gd_grid[0], progress=progress)
        walls[f"wall_flow_{tag}_s"] = time.perf_counter() - start
        solver = flow[4]
        echo(
            f"    the flow ({solver}): {', '.join(str(int(g)) for g in flow[2])} gradient evaluations "
            f"[{walls[f'wall_flow_{tag}_s']:.1f} s]"
        )
        panels.append((tag, panel_dataset(gd_grid, flow, coord, values, member_lams)))

    # each panel keeps its own time axis (panel b may run longer): time_c, t_c, … and time_b, t_b, …
    ds = xr.merge(
        [part.rename({k: f"{k}_{tag}" for k in (*part.data_vars, "time", "t", "step")}) for tag, part in panels],
        compat="no_conflicts",
        join="outer",
    )
    ds_c, ds_b = (part for _, part in panels)
    # panel (c) runs He init (α = 1, W2 ≠ 0) over λ; panel (b) W2 = 0 over α at λ = lam_a
    ds.attrs.update(
        params=json.dumps(params),
        model="modular addition mod p, concatenated one-hots, ReLU MLP with first-layer bias, He init x alpha "
        "(W2 = 0 in panel b), mean cross-entropy with weight decay lam: the gradient flow "
        "dtheta/dt = -grad F - lam theta (gflow.sweep, solver auto) and full-batch GD (t = sum of the step sizes)",
        solver=solver,
        n_train=n_train,
        n_test=n_test,
        schedule_c=describe(schedule_c),
        schedule_b=describe(schedule_b),
        steps_c=int(ds_c["step"].values[-1]),
        steps_b=int(ds_b["step"].values[-1]),
        grok_accuracy=GROK_ACCURACY,
        half_accuracy=HALF_ACCURACY,
        fit_accuracy=FIT_ACCURACY,
        **walls,
    )
    return ds


def _panels(ds):
    """(params, panel (a, c) Dataset, panel (b) Dataset) with the names `panel_dataset` gives."""
    params = json.loads(ds.attrs["params"])
    out = []
    for tag, coord in (("c", "lam"), ("b", "alpha")):
        names = [f"{k}_{tag}" for k in (*PANEL_VARS, *MEMBER_VARS)]
        part = ds[names].rename({f"{k}_{tag}": k for k in (*PANEL_VARS, *MEMBER_VARS, "time", "t", "step")})
        out.append(part.drop_vars([c for c in part.coords if c not in (coord, "time", "t", "step")]))
    return params, out[0], out[1]


def summary(ds: xr.Dataset) -> list[tuple[str, str]]:
    """The key numbers as (quantity, value) rows: per member the fit, the jump (test accuracy ≥ 0.5
    and ≥ 0.9 for good), the final accuracies and norms; (b)'s delay per step in α against
    ln(α/α')/λ; (c)'s slope of ln(t_half − t_fit) against ln λ."""
    from .. import analysis

    params, ds_c, ds_b = _panels(ds)
    lam_a, alphas_b = params["lam_a"], params["alphas_b"]
    rows = [
        (
            "setup",
            f"p = {params['p']}, width {params['width']}, "
            f"{ds.attrs['n_train']} train / {ds.attrs['n_test']} test pairs; "
            f"GD (a, c) {ds.attrs['schedule_c']} ({ds.attrs['steps_c']} steps); (b) {ds.attrs['schedule_b']} "
            f"({ds.attrs['steps_b']} steps)",
        ),
        (
            f"the flow (gflow.sweep, solver auto -> {ds.attrs['solver']}): gradient evaluations per member",
            f"(a, c) {', '.join(f'{int(g):,}' for g in ds_c['gradients'].values)} "
            f"against GD's {ds.attrs['steps_c']:,}; (b) {', '.join(f'{int(g):,}' for g in ds_b['gradients'].values)} "
            f"against {ds.attrs['steps_b']:,}",
        ),
    ]
    for label, part, coord in (("(a, c)", ds_c, "lam"), ("(b)", ds_b, "alpha")):
        for i, v in enumerate(part[coord].values):
            lam = float(v) if coord == "lam" else lam_a
            t_half, t_grok = part["t_half"].values[i], part["t_grok"].values[i]
            rows.append(
                (
                    f"{label} {coord} = {v:g}",
                    f"train acc ≥ {FIT_ACCURACY} from t = {part['t_fit'].values[i]:.4g}; "
                    f"test acc ≥ {HALF_ACCURACY} from t = {t_half:.4g} (τ = {lam * t_half:.3g}), ≥ {GROK_ACCURACY} "
                    f"from t = {t_grok:.4g} (τ = {lam * t_grok:.3g}); final train/test acc "
                    f"{part['train_accuracy'].values[i, -1]:.3f}/{part['test_accuracy'].values[i, -1]:.3f}, "
                    f"‖θ‖ {part['norm'].values[i, 0]:.1f} → {part['norm'].values[i, -1]:.1f}",
                )
            )
            rows.append(
                (
                    f"{label} {coord} = {v:g}, GD beside the flow",
                    f"train acc ≥ {FIT_ACCURACY} from t = {part['gd_t_fit'].values[i]:.4g}; "
                    f"test acc ≥ {HALF_ACCURACY} from t = {part['gd_t_half'].values[i]:.4g}, ≥ {GROK_ACCURACY} "
                    f"from t = {part['gd_t_grok'].values[i]:.4g}; final test acc "
                    f"{part['gd_test_accuracy'].values[i, -1]:.3f}, ‖θ‖ → {part['gd_norm'].values[i, -1]:.1f}",
                )
            )
    half_b = ds_b["t_half"].values
    if len(alphas_b) > 1 and np.all(np.isfinite(half_b)):
        shifts = ", ".join(
            f"α = {a:g}: {half_b[i] - half_b[i - 1]:+.4g} (ln(α/α')/λ = {math.log(a / alphas_b[i - 1]) / lam_a:.4g})"
            for i, a in enumerate(alphas_b)
            if i > 0
        )
        rows.append((f"(b) delay of the jump (test acc ≥ {HALF_ACCURACY}) against the previous α", shifts))
    span = ds_c["t_half"].values - ds_c["t_fit"].values  # A12's "from fit to halfway"
    ok = np.isfinite(span)
    if ok.sum() >= 2:
        lam_ok, span_ok = ds_c["lam"].values[ok], span[ok]
        if ok.sum() >= 3:
            slope = analysis.fit_inverse_lambda(span_ok, lam_ok, loglog=True).slope
        else:
            slope = math.log(span_ok[1] / span_ok[0]) / math.log(lam_ok[1] / lam_ok[0])
        rows.append(
            (
                f"(c) slope of ln(t_half − t_fit) against ln λ over the {int(ok.sum())} λ that generalise (theory −1)",
                f"{slope:.3f}",
            )
        )
    failed = ds_c["lam"].values[~np.isfinite(ds_c["t_fit"].values)]
    if failed.size:
        rows.append(
            ("(c) λ that never fit the training set (too much weight decay)", ", ".join(f"{v:g}" for v in failed))
        )
    return rows


def plot(ds: xr.Dataset):
    """Three panels of accuracy against log t (test solid, train dashed, the jump marked; the flow
    thin, GD a wide faint band under it): (a) He init at λ = lam_a with its norm (τ on top); (b)
    the init scale α with W2 = 0; (c) λ."""
    import matplotlib.pyplot as plt

    params, ds_c, ds_b = _panels(ds)
    lam_a = params["lam_a"]
    fig = plt.figure(figsize=(17, 5.8), layout="constrained")
    fig.get_layout_engine().set(rect=(0, 0.06, 1, 0.94))  # room for the two-line caption
    axes = fig.subplots(1, 3, sharey=True)

    def curves(ax, part, i, color, label, norm_ax=None):
        t = part["t"].values
        keep = t > 0
        # Gradient descent as a wide faint band under each flow curve: where they agree, the
        # flow's line runs inside it.
        for name, ls in (("gd_test_accuracy", "-"), ("gd_train_accuracy", "--")):
            ax.plot(t[keep], part[name].values[i, keep], color=color, lw=5, ls=ls, alpha=0.25, solid_capstyle="butt")
        ax.plot(t[keep], part["test_accuracy"].values[i, keep], color=color, lw=1.8, label=f"{label} test")
        ax.plot(t[keep], part["train_accuracy"].values[i, keep], color=color, lw=1.0, ls="--", label=f"{label} train")
        if norm_ax is not None:
            norm_ax.plot(t[keep], part["norm"].values[i, keep], color=color, lw=1.0, ls=":")
        t_half = part["t_half"].values[i]
        if math.isfinite(t_half):
            ax.axvline(t_half, color=color, lw=0.8, alpha=0.6)

    # (a): the He-init member at lam_a
    ax = axes[0]
    i_a = int(np.argmin(np.abs(ds_c["lam"].values - lam_a)))
    norm_a = ax.twinx()
    curves(ax, ds_c, i_a, "tab:red", "", norm_a)
    norm_a.set_ylabel("‖θ‖ (dotted)")
    ax.axvline(1 / lam_a, color="0.5", ls=":", lw=1.2)
    ax.text(1 / lam_a, 0.5, " t = 1/λ", transform=ax.get_xaxis_transform(), color="0.4")
    add_tau_axis(ax, lam_a, label="τ = λt")
    ax.set_title(f"(a) He init, λ = {lam_a:g}: memorise, then grok")

    ax = axes[1]
    norm_b = ax.twinx()
    colors = plt.cm.viridis(np.linspace(0, 0.85, ds_b.sizes["alpha"]))
    for i, a in enumerate(ds_b["alpha"].values):
        curves(ax, ds_b, i, colors[i], f"He ×{a:g}", norm_b)
    norm_b.set_yscale("log")
    norm_b.set_ylabel("‖θ‖ (dotted, log)")
    ax.set_title(f"(b) init scale α (W2 = 0), λ = {lam_a:g}: larger α, later")

    ax = axes[2]
    colors = plt.cm.plasma(np.linspace(0, 0.85, ds_c.sizes["lam"]))
    for i, lam in enumerate(ds_c["lam"].values):
        curves(ax, ds_c, i, colors[i], f"λ = {lam:g}")
    ax.set_title("(c) weight decay λ (He init): larger λ, earlier")

    for ax in axes:
        ax.set_xscale("log")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(True, which="major", alpha=0.3)
        ax.set_xlabel("t (the flow's time; Σ η for GD; log scale)")
        ax.legend(fontsize=7, loc="upper left", ncol=1 if ax is axes[0] else 2)
    axes[0].set_ylabel("accuracy (solid: test, dashed: train)")
    fig.suptitle(
        "Lyu et al. Fig. 2: ReLU MLP on modular addition with weight decay. Lines: the gradient flow; "
        "faint bands: full-batch GD; vertical lines: test accuracy ≥ 0.5 from then on",
        fontsize=12,
    )
    caption(
        fig,
        f"p = {params['p']}, width {params['width']}, {ds.attrs['n_train']} train / {ds.attrs['n_test']} test pairs "
        f"({params['fraction']:.0%}; paper: p = 97, width 1024, 40%), flow: {ds.attrs['solver']};\n"
        f"GD (a, c) {ds.attrs['schedule_c']}, "
        f"(b) {ds.attrs['schedule_b']} (paper: η = 0.002), "
        f"λ_a = {lam_a:g} (paper 1e-4), α ∈ {{{', '.join(f'{a:g}' for a in params['alphas_b'])}}} "
        f"(paper 1, 10, 100), JAX key {params['key']}",
        size=ds.attrs.get("size"),
    )
    return fig
