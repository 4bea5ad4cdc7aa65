"""Lyu et al. (ICLR 2024) Fig. 3: grokking in the completion of the multiplication table (papers.md E3.5, A6).

What the paper's figure shows: gradient descent on the over-parameterised symmetric factorisation
W = UUᵀ − VVᵀ fits the 5% observed entries of X⋆_ij = ij/d² within ~10 steps, while the test
loss stays at the level of the kernel (NTK) predictor; only after ~10⁶ steps (λ = 1e-4) does the
test loss drop sharply, to the rich-regime (minimum-nuclear-norm) solution. The parameter norm
decays as ‖θ0‖e^{−λt} throughout the kernel phase.

Setup (papers.md §4.4 E3.5, Lyu's official code `train_mc.py`): d = 97, X⋆ = uuᵀ with
u = (0, 1/d, …, (d−1)/d); n = ⌊0.05·d²⌋ = 470 observed ordered entries (train), the other 8939
entries are the test set; U = V = αI with α = 10 (so W(0) = 0 and ‖θ0‖ = α√(2d) = 139.28);
loss mean((W_ij − X⋆_ij)²) (PyTorch `MSELoss`) plus (λ/2)(‖U‖²_F + ‖V‖²_F) (`SGD(weight_decay=λ)`).
Task: `gflow.tasks.multiplication_table`; the references are `gflow.analysis.kernel_predictor`
(Cor. 3.11: every observed entry copied to its transpose, zeros elsewhere) and
`gflow.analysis.min_nuclear_norm_completion` (the λ → 0 rich limit, Thm 3.10), plus the exact
rich limit at this λ (see below).

Time convention. gflow integrates dθ/dt = −∇F_λ with F_λ = F + (λ/2)‖θ‖². Here F is Lyu's loss
itself, mean((W_ij − y)²) (no ½): the task's residuals are multiplied by √2 so that gflow's
½·mean(r²) equals it. So λ is the paper's weight decay and t is the paper's continuous time
t = η·step (η = 0.1: step = 10·t); slow time τ = λt. (The task as built uses F = ½·mean: that is
this flow at λ/2 in time 2t, with the same τ; see its docstring.)

Sizes (`FIGURE.sizes`; fields d, fraction, lam, tau1, saves, solver, seed, alpha):
- full: the paper's run, d = 97, λ = 1e-4, to τ = 12 (t = 1.2·10⁵, i.e. 1.2·10⁶ steps).
  Cheap on a CPU too (7212 solver steps, under a minute on 2 cores plus up to a minute for
  the λ-regularised reference): the explicit solver needs ~sharpness(θ0)/(2λ) steps.
  Measured: the test MSE leaves the plateau at τ = 2.40 (t = 2.4·10⁴, step 2.4·10⁵; papers.md:
  2–5·10⁵ steps, "~10⁶" on the paper's log axis) and is halved at τ = 3.81.
- quick (the default): d = 97, λ = 1e-3 (papers.md's [REPRO] numbers, A6 quick), to τ = 12
  (17 s on a quiet 2-core machine).
- smoke: d = 16, 20% observed, λ = 1e-2, to τ = 8, few saves (seconds).

Choices the paper does not fix (papers.md §10): the observed entries come from
`jax.random.PRNGKey(35235125)` (field `seed`) (Lyu's data seed, but JAX's generator, not torch's: a different
mask, whose kernel plateau is 0.1034 rather than papers.md's mask average 0.1024 ± 0.0007).
Solver: explicit Tsit5 (adaptive), not a stiff one. The flow is stiff only at the start: the
sharpness of F scales with ‖θ‖² ∝ e^{−2λt}, so the explicit step grows as the norm decays.
Measured at the quick size: Tsit5 needs 909 steps (5456 gradients); ROS34PW2 needs 1675 steps
and 23 523 CG iterations (55 423 gradient equivalents), about 4× the time. `--set figure.solver=NAME` changes it.

The exact rich limit at λ > 0: over the factorisations of a symmetric W,
min ½(‖U‖² + ‖V‖²) = ½‖W‖_* (U Uᵀ = W₊, V Vᵀ = W₋). So the flow's limit minimises the convex
mean((W_Ω − y)²) + (λ/2)‖W‖_* over symmetric W (Burer–Monteiro with d × d factors has no
spurious minima), and ‖θ‖² → ‖W‖_*. `nuclear_regularised_completion` finds it by accelerated
proximal gradient (eigenvalue soft-thresholding). As λ → 0 it tends to the minimum-nuclear-norm
completion. The figure draws both.

Measured at the quick size (this mask, Tsit5): train MSE < 1e-5 from t ≈ 3 (papers.md: ~30
GD steps); test-MSE plateau 0.1034 = the kernel predictor's value; ‖θ‖ within 0.22% of
139.28·e^{−λt} for τ ≤ 1.5; the test MSE leaves the plateau (−5%) at τ = 2.46, is halved at
τ = 4.05, and reads 0.067, 0.035, 0.0067, 0.0038 at τ = 3.5, 4.5, 7.6, 9.9 (papers.md, GD on
torch's mask: 0.060, 0.029, 0.0086, 0.0070). At τ = 12 the test MSE is 0.0031 and still
falling toward the rich limit at this λ (0.0025; min-nuclear-norm completion: 3.4e-5), and W
is rank one to |λ₂/λ₁| = 4e-3 (top eigenvalue 27.6; X⋆'s is 31.8, shrunk by the weight decay).

Saves: 0, log-spaced t from 1e-2 to τ1/λ (`saves` of them), a linear grid of `saves`/2 points in
τ, and the slow times papers.md reports test MSEs at (2.7, 3.5, 4.5, 7.6, 9.9) and λt = 2.

The references iterate thousands of small (d × d) eigenvalue decompositions; one BLAS thread is
fastest for them (threads spinning on a busy 2-core machine made them 40× slower): set
OPENBLAS_NUM_THREADS=1 in the environment before Python starts (a library cannot change it
once NumPy is loaded).
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import xarray as xr

from . import FigureExperiment
from ._common import add_tau_axis, caption, require_float64, require_in

ETA = 0.1  # the paper's GD step: step = t/η
# papers.md E3.5 [REPRO] test MSE at these slow times (d = 97, λ = 1e-3, GD η = 0.1).
PAPERS_MD_TEST_MSE = {2.7: 0.089, 3.5: 0.060, 4.5: 0.029, 7.6: 0.0086, 9.9: 0.0070}
DROP_MARK_TAU = 2.0  # papers.md: the test MSE is flat until λt ≈ 2

FIGURE = FigureExperiment.from_toml(__name__)
SEED = FIGURE.sizes["quick"]["seed"]  # Lyu's data seed (train_mc.py), used as a JAX key
ALPHA = FIGURE.sizes["quick"]["alpha"]


def check(params) -> None:
    """Refuse parameter combinations the runs cannot use (a `ConfigError` naming the field)."""
    from .._simulate import SOLVER_NAMES
    from ..experiments import ConfigError

    if params["lam"] <= 0:
        raise ConfigError(f"figure.lam must be a positive weight decay, got {params['lam']}")
    if params["tau1"] <= 0:
        raise ConfigError(f"figure.tau1 must be a positive slow time, got {params['tau1']}")
    require_in(params, "fraction", 0, 1, ends="(]")
    if params["d"] < 2:
        raise ConfigError(f"figure.d must be at least 2, got {params['d']}")
    if params["saves"] < 2:
        raise ConfigError(f"figure.saves must be at least 2, got {params['saves']}")
    if params["solver"] not in SOLVER_NAMES:
        raise ConfigError(f"figure.solver must be one of {', '.join(SOLVER_NAMES)}, got {params['solver']!r}")


def build_problem(params):
    """The figure's Problem: Lyu's matrix completion (`lyu_problem`) at key `seed`."""
    return lyu_problem(params["seed"], d=params["d"], fraction=params["fraction"], alpha=params["alpha"])


def lyu_problem(key=SEED, *, d: int = 97, fraction: float = 0.05, alpha: float = ALPHA):
    """`gflow.tasks.multiplication_table` with Lyu's loss F = mean((W_ij − y)²) (no ½).

    Residuals √2·(W_ij − y) under gflow's F = ½·mean(r²); the task's metrics are kept
    (`test_mse`, `test_relative_error`, `test_nuclear_norm`). Traceable (sweeps may vmap it).
    """
    import jax
    import jax.numpy as jnp

    from .. import tasks
    from .._problem import Problem

    base = tasks.multiplication_table(key, d=d, fraction=fraction, alpha=alpha)

    def lyu_residuals(model, data):
        r = jax.vmap(model)(data["x"]) - data["y"]
        return jnp.sqrt(jnp.asarray(2.0, r.dtype)) * r

    metrics = {name.split("_", 1)[1]: fn for name, split, fn in base.metric_items if split == "test"}
    return Problem(base.model, base.train, residuals=lyu_residuals, test=base.test, metrics=metrics)


def save_times(lam: float, tau1: float, saves: int) -> np.ndarray:
    """0, log-spaced t from 1e-2 to τ1/λ, a linear grid in τ, and the papers.md report times."""
    t1 = tau1 / lam
    grid = [[0.0], np.geomspace(1e-2, t1, saves), np.linspace(0.0, tau1, saves // 2 + 1)[1:] / lam]
    grid.append(np.array([tau for tau in (*PAPERS_MD_TEST_MSE, DROP_MARK_TAU) if tau <= tau1]) / lam)
    ts = np.unique(np.concatenate(grid))
    ts[-1] = t1
    return ts


def run_flow(problem, lam: float, tau1: float, *, saves: int = 160, solver: str = "tsit5", save_params: bool = True):
    """The flow up to t = τ1/λ on `save_times` (float64 expected)."""
    from .._simulate import simulate

    ts = save_times(lam, tau1, saves)
    return simulate(problem, lam, ts[-1], solver=solver, saveat=ts, save_params=save_params)


@dataclasses.dataclass(frozen=True)
class RegularisedCompletion:
    matrix: np.ndarray
    objective: float
    nuclear_norm: float
    iterations: int
    converged: bool


def nuclear_regularised_completion(
    d: int, rows, cols, values, lam: float, *, tol: float = 1e-10, max_iter: int = 10_000
) -> RegularisedCompletion:
    r"""argmin over symmetric W of (1/n)Σ_k (W_{r_k c_k} − v_k)² + (λ/2)‖W‖_* (FISTA).

    The exact t → ∞ limit of Lyu's regularised flow on W = UUᵀ − VVᵀ (see the module docstring).
    On symmetric matrices the gradient of the data term is Δ ↦ ((c + cᵀ)/n) ⊙ Δ-Lipschitz, with
    c_ij the number of times (i, j) is observed: step 1/L with L = max(c + cᵀ)/n. The prox is
    soft-thresholding of the eigenvalues by (λ/2)/L, sign kept. Stops when the iterates move
    less than `tol`·‖W‖_F.
    """
    rows, cols, values = np.asarray(rows, int), np.asarray(cols, int), np.asarray(values, float)
    n = values.size
    counts = np.zeros((d, d))
    np.add.at(counts, (rows, cols), 1.0)
    lip = float((counts + counts.T).max()) / n
    step = 1.0 / lip

    def objective(w):
        return float(np.mean((w[rows, cols] - values) ** 2) + 0.5 * lam * np.abs(np.linalg.eigvalsh(w)).sum())

    def grad(w):
        g = np.zeros((d, d))
        np.add.at(g, (rows, cols), 2.0 * (w[rows, cols] - values) / n)
        return 0.5 * (g + g.T)

    w = np.zeros((d, d))
    z, s = w, 1.0
    converged = False
    it = 0
    for it in range(1, max_iter + 1):
        e, q = np.linalg.eigh(z - step * grad(z))
        e = np.sign(e) * np.maximum(np.abs(e) - step * 0.5 * lam, 0.0)
        w_new = (q * e) @ q.T
        s_new = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * s * s))
        z = w_new + ((s - 1.0) / s_new) * (w_new - w)
        moved = np.linalg.norm(w_new - w)
        w, s = w_new, s_new
        if moved <= tol * max(np.linalg.norm(w), 1e-300):
            converged = True
            break
    return RegularisedCompletion(
        matrix=w,
        objective=objective(w),
        nuclear_norm=float(np.abs(np.linalg.eigvalsh(w)).sum()),
        iterations=it,
        converged=converged,
    )


def _entries(problem):
    """Observed index pairs and values, test index pairs and values, as NumPy arrays."""
    x = np.asarray(problem.train["x"])
    y = np.asarray(problem.train["y"], float)
    xt = np.asarray(problem.test["x"])
    yt = np.asarray(problem.test["y"], float)
    return x, y, xt, yt


def references(problem, lam: float, *, max_iter: int = 2000) -> dict:
    """Test MSE of the kernel predictor, of the min-nuclear-norm completion and of the λ-regularised limit."""
    from .. import analysis

    x, y, xt, yt = _entries(problem)
    d = int(np.asarray(problem.test["m_star"]).shape[0])
    kp = analysis.kernel_predictor(problem.model, problem.train, problem.test, kind="regression")
    rows = np.concatenate([x[:, 0], x[:, 1]])
    cols = np.concatenate([x[:, 1], x[:, 0]])
    # Douglas–Rachford converges linearly but slowly here; 2000 iterations leave a duality gap
    # of ~1e-3 (relative 3e-5) and fix its test MSE to three digits.
    nuc = analysis.min_nuclear_norm_completion((d, d), rows, cols, np.concatenate([y, y]), max_iter=max_iter)
    reg = nuclear_regularised_completion(d, x[:, 0], x[:, 1], y, lam, max_iter=50_000)

    def test_mse(w):
        return float(np.mean((w[xt[:, 0], xt[:, 1]] - yt) ** 2))

    return {
        "kernel_test_mse": float(kp.metrics["test_mse"]),
        "kernel_train_mse": float(kp.metrics["train_mse"]),
        "min_nuclear_test_mse": test_mse(nuc.matrix),
        "min_nuclear_norm": nuc.nuclear_norm,
        "min_nuclear_gap": nuc.gap,
        "min_nuclear_iterations": nuc.iterations,
        "regularised_test_mse": test_mse(reg.matrix),
        "regularised_train_mse": float(np.mean((reg.matrix[x[:, 0], x[:, 1]] - y) ** 2)),
        "regularised_nuclear_norm": reg.nuclear_norm,
        "regularised_iterations": reg.iterations,
        "regularised_converged": int(reg.converged),
        "regularised_matrix": reg.matrix,
        "star_top_eigenvalue": float(np.linalg.eigvalsh(np.asarray(problem.test["m_star"], float))[-1]),
    }


def matrices(traj) -> np.ndarray:
    """W(t) = UUᵀ − VVᵀ at every save time, shape (time, d, d)."""
    u = np.asarray(traj.params.u)
    v = np.asarray(traj.params.v)
    return np.einsum("tik,tjk->tij", u, u) - np.einsum("tik,tjk->tij", v, v)


def summarise(traj, lam: float) -> dict:
    """The numbers A6 checks, from a run of `run_flow`."""
    from .. import analysis

    t = np.asarray(traj.t)
    tau = lam * t
    train = np.asarray(traj.metrics["train_loss"])  # = train MSE (Lyu's loss)
    test = np.asarray(traj.metrics["test_loss"])
    norm = np.asarray(traj.metrics["norm"])
    norm0 = float(norm[0])
    plateau_mask = (tau >= 0.05) & (tau <= 1.5)
    kernel_norm = norm0 * np.exp(-tau)
    out = {
        "norm0": norm0,
        # first time below (the train MSE rises again to the λ-bias of the rich limit later)
        "t_train_below_1e-5": float(t[np.argmax(train < 1e-5)]) if np.any(train < 1e-5) else math.nan,
        "plateau_test_mse": float(np.median(test[plateau_mask])),
        "norm_max_rel_dev_plateau": float(np.max(np.abs(norm[plateau_mask] / kernel_norm[plateau_mask] - 1))),
        "final_test_mse": float(test[-1]),
        "final_train_mse": float(train[-1]),
        "final_norm": float(norm[-1]),
        "t_final": float(traj.t_final),
    }
    plateau = out["plateau_test_mse"]
    # The drop "begins" where the test MSE leaves the plateau by 5%, for good.
    out["tau_drop_start"] = lam * analysis.crossing_time(t, test, 0.95 * plateau, after=1.0 / lam * 0.05)
    out["tau_half"] = lam * analysis.crossing_time(t, test, 0.5 * plateau)
    for tau_r in PAPERS_MD_TEST_MSE:
        if tau_r <= tau[-1]:
            out[f"test_mse_tau_{tau_r:g}"] = float(np.interp(tau_r, tau, test))
    return out


def measure(params, *, progress: bool = False, echo=print) -> xr.Dataset:
    """The flow to τ1, its A6 numbers (`summarise`), the references, and W(t)'s spectrum, as one
    Dataset on `time` (coordinates t, τ = λt, paper step = t/η), with the top eigenvalues of W(t)
    (`k`) and the final and rich-limit spectra (`eig`); scalars are attributes."""
    import jax

    require_float64(FIGURE.name)
    check(params)
    lam, d, solver = params["lam"], params["d"], params["solver"]
    echo(
        f"  E3.5/A6: d = {d}, {params['fraction']:.0%} observed, U = V = {params['alpha']:g}·I, λ = {lam:g}, "
        f"τ1 = {params['tau1']:g} (t1 = {params['tau1'] / lam:g}), solver {solver}"
    )
    problem = build_problem(params)
    echo("  1/2 flow")
    traj = run_flow(problem, lam, params["tau1"], saves=params["saves"], solver=solver)
    jax.block_until_ready(traj)
    echo("  2/2 references: kernel predictor, min-nuclear-norm completion, rich limit at λ (FISTA)")
    refs = references(problem, lam)
    summary_ = summarise(traj, lam)

    t = np.asarray(traj.t)
    tau = lam * t
    ws = matrices(traj)
    eig = np.linalg.eigvalsh(ws)  # ascending, (time, d)
    order = np.argsort(-np.abs(eig), axis=1)
    eig_sorted = np.take_along_axis(eig, order, axis=1)
    k_top = min(8, d)
    reg_eig = np.linalg.eigvalsh(refs["regularised_matrix"])
    reg_eig = reg_eig[np.argsort(-np.abs(reg_eig))]

    ds = xr.Dataset(
        {
            "train_mse": ("time", np.asarray(traj.metrics["train_loss"])),
            "test_mse": ("time", np.asarray(traj.metrics["test_loss"])),
            "norm": ("time", np.asarray(traj.metrics["norm"])),
            "kernel_norm": ("time", summary_["norm0"] * np.exp(-tau)),
            "test_relative_error": ("time", np.asarray(traj.metrics["test_relative_error"])),
            "test_nuclear_norm": ("time", np.asarray(traj.metrics["test_nuclear_norm"])),
            "top_eigenvalues": (("time", "k"), eig_sorted[:, :k_top]),
            "final_eigenvalues": ("eig", eig_sorted[-1]),
            "regularised_eigenvalues": ("eig", reg_eig),
        },
        coords={"time": t, "t": ("time", t), "tau": ("time", tau), "step": ("time", t / ETA)},
    )
    scalars = {k: v for k, v in {**summary_, **refs}.items() if np.ndim(v) == 0}
    ds.attrs.update({k: float(v) for k, v in scalars.items()})
    ds.attrs.update(
        params=json.dumps(params),
        d=d,
        fraction=params["fraction"],
        alpha=params["alpha"],
        lam=lam,
        tau1=params["tau1"],
        seed=params["seed"],
        solver=solver,
        result=traj.message,
        num_steps=int(traj.stats["num_steps"]),
        num_gradients=int(traj.stats["num_vf_evals"]),
        zero_predictor_test_mse=float(np.mean(np.asarray(problem.test["y"], float) ** 2)),
        final_distance_to_regularised=float(np.linalg.norm(ws[-1] - refs["regularised_matrix"])),
        convention="F = mean((W_ij - y)^2) (Lyu's MSELoss) + (lam/2)||theta||^2, lam = paper weight decay, "
        "t = eta*step (eta = 0.1); tau = lam*t",
    )
    return ds


def summary(ds: xr.Dataset) -> list[tuple[str, str]]:
    """The key numbers as (quantity, value) rows: the fit, the kernel plateau, the norm's decay,
    the drop and the test MSE at papers.md's slow times, the end state and the references."""
    a = ds.attrs
    d, lam = int(a["d"]), a["lam"]
    final_eig = ds["final_eigenvalues"].values
    star = a["star_top_eigenvalue"]
    rows = [
        ("flow", f"{a['solver']}: {a['result']}, {a['num_steps']} steps, {a['num_gradients']} gradients"),
        ("‖θ0‖ (α√(2d))", f"{a['norm0']:.2f} ({a['alpha'] * math.sqrt(2 * d):.2f})"),
        (
            "train MSE < 1e-5 from t",
            f"{a['t_train_below_1e-5']:.3g} (step {a['t_train_below_1e-5'] / ETA:.0f} at η = {ETA:g}; "
            "papers.md: ≈ 30 steps)",
        ),
        (
            "test MSE plateau; kernel predictor; zero predictor",
            f"{a['plateau_test_mse']:.4f}; {a['kernel_test_mse']:.4f} (papers.md: 0.1024 ± 0.0007 over masks); "
            f"{a['zero_predictor_test_mse']:.4f}",
        ),
        ("max |‖θ‖/(‖θ0‖e^(−λt)) − 1| for τ ∈ [0.05, 1.5]", f"{a['norm_max_rel_dev_plateau']:.2e}"),
        ("test drop starts (−5%) / halfway at τ", f"{a['tau_drop_start']:.2f} / {a['tau_half']:.2f}"),
    ]
    reported = [
        f"τ = {k:g}: {a[f'test_mse_tau_{k:g}']:.4f} (papers.md {v:g})"
        for k, v in PAPERS_MD_TEST_MSE.items()
        if f"test_mse_tau_{k:g}" in a
    ]
    if reported:
        rows.append(("test MSE", "; ".join(reported)))
    rows += [
        (
            f"end (τ = {lam * ds['t'].values[-1]:g})",
            f"test MSE {a['final_test_mse']:.4g}, train MSE {a['final_train_mse']:.3g}, ‖θ‖ = {a['final_norm']:.4g}",
        ),
        (
            f"rich limit at this λ (FISTA, {int(a['regularised_iterations'])} it."
            f"{'' if a['regularised_converged'] else ', not converged'})",
            f"test MSE {a['regularised_test_mse']:.4g}, train MSE {a['regularised_train_mse']:.3g}, "
            f"√‖W‖_* = {math.sqrt(a['regularised_nuclear_norm']):.4g}; "
            f"‖W(t1) − W_λ‖_F = {a['final_distance_to_regularised']:.2e}",
        ),
        (
            "min-nuclear-norm completion",
            f"test MSE {a['min_nuclear_test_mse']:.2e} (‖W‖_* = {a['min_nuclear_norm']:.4f}, "
            f"gap {a['min_nuclear_gap']:.1e}; ‖X⋆‖_* = {star:.4f})",
        ),
        (
            "final W: eigenvalues by |·|",
            f"{', '.join(f'{e:.4g}' for e in final_eig[:4])} (X⋆: {star:.4f}, rank 1); "
            f"|λ2/λ1| = {abs(final_eig[1] / final_eig[0]):.2e}",
        ),
    ]
    return rows


def plot(ds: xr.Dataset):
    """Train and test MSE against log t (τ on top) with the kernel, rich-limit and
    min-nuclear-norm levels; the norm against ‖θ0‖e^{−λt}; the top eigenvalues of W(t); the final
    spectrum against the rich limit's and X⋆'s."""
    import matplotlib.pyplot as plt

    refs = ds.attrs
    lam = refs["lam"]
    t = ds["t"].values
    top_eig = ds["top_eigenvalues"].values
    final_eig = ds["final_eigenvalues"].values
    reg_eig = ds["regularised_eigenvalues"].values
    star_eig = refs["star_top_eigenvalue"]
    keep = t > 0
    tk = t[keep]
    train = ds["train_mse"].values[keep]
    test = ds["test_mse"].values[keep]
    norm = ds["norm"].values[keep]
    fig = plt.figure(figsize=(13, 8.5), layout="constrained")
    fig.get_layout_engine().set(rect=(0, 0.025, 1, 0.975))  # room for the caption line
    grid = fig.add_gridspec(2, 3, width_ratios=(1.6, 1.6, 1))
    ax_mse = fig.add_subplot(grid[0, :2])
    ax_norm = fig.add_subplot(grid[1, 0], sharex=ax_mse)
    ax_eig_t = fig.add_subplot(grid[1, 1], sharex=ax_mse)
    ax_spec = fig.add_subplot(grid[:, 2])

    ax_mse.plot(tk, train, color="tab:blue", label="train MSE")
    ax_mse.plot(tk, test, color="tab:red", label="test MSE")
    floor = max(refs["min_nuclear_test_mse"], 1e-12)
    for level, color, ls, label in (
        (
            refs["kernel_test_mse"],
            "tab:purple",
            "--",
            f"kernel predictor (Cor. 3.11): {refs['kernel_test_mse']:.4f}",
        ),
        (
            refs["regularised_test_mse"],
            "tab:green",
            "-.",
            f"rich limit at λ (min MSE + (λ/2)‖W‖_*): {refs['regularised_test_mse']:.2g}",
        ),
        (floor, "k", ":", f"min-nuclear-norm completion (λ → 0): {refs['min_nuclear_test_mse']:.1e}"),
    ):
        ax_mse.axhline(level, color=color, ls=ls, lw=1.2, label=label)
    ax_mse.set_yscale("log")
    ax_mse.set_ylim(max(1e-12, 0.3 * min(np.nanmin(train[train > 0]), floor)), 0.5)
    ax_mse.set_ylabel("MSE  mean((W_ij − X⋆_ij)²)")
    ax_mse.set_title(
        "train and test MSE against t: fit at t ≈ 1, test plateau at the kernel predictor, drop after λt ≈ 2"
    )

    ax_norm.plot(tk, norm, color="tab:green", label="‖θ‖")
    ax_norm.plot(
        tk,
        refs["norm0"] * np.exp(-lam * tk),
        color="k",
        ls="--",
        lw=1,
        label=f"‖θ0‖e^(−λt), ‖θ0‖ = {refs['norm0']:.1f}",
    )
    ax_norm.axhline(
        math.sqrt(refs["regularised_nuclear_norm"]), color="tab:green", ls="-.", lw=1, label="√‖W_λ‖_* (rich limit)"
    )
    ax_norm.set_yscale("log")
    ax_norm.set_ylim(0.3 * np.nanmin(norm), 2 * norm[0])
    ax_norm.set_ylabel("‖θ‖ = (‖U‖²_F + ‖V‖²_F)^½")
    ax_norm.set_title("parameter norm")

    for j in range(top_eig.shape[1]):
        ax_eig_t.plot(
            tk,
            np.abs(top_eig[keep, j]),
            lw=1.6 if j == 0 else 0.9,
            color=plt.cm.viridis(j / max(1, top_eig.shape[1] - 1)),
        )
    ax_eig_t.axhline(star_eig, color="k", ls=":", lw=1, label=f"X⋆'s eigenvalue {star_eig:.2f}")
    ax_eig_t.set_yscale("log")
    ax_eig_t.set_ylim(1e-4, 2 * max(star_eig, np.nanmax(np.abs(top_eig))))
    ax_eig_t.set_ylabel("|eigenvalues| of W (top 8)")
    ax_eig_t.set_title("spectrum of W(t): many → one")

    for ax in (ax_mse, ax_norm, ax_eig_t):
        ax.set_xscale("log")
        ax.grid(True, which="major", alpha=0.3)
        ax.axvline(DROP_MARK_TAU / lam, color="0.4", ls=":", lw=1.2)
        ax.axvline(1 / lam, color="0.75", ls="-", lw=0.8)
        ax.set_xlabel(f"t = η·step (ODE time; paper step = t/{ETA:g})")
    ax_mse.text(DROP_MARK_TAU / lam, 0.97, " λt = 2", transform=ax_mse.get_xaxis_transform(), va="top", color="0.3")
    ax_mse.text(1 / lam, 0.05, "t = 1/λ ", transform=ax_mse.get_xaxis_transform(), ha="right", color="0.5")
    add_tau_axis(ax_mse, lam)
    ax_mse.legend(loc="lower left", fontsize=9)
    ax_norm.legend(loc="lower left", fontsize=8)
    ax_eig_t.legend(loc="lower right", fontsize=8)

    idx = np.arange(1, final_eig.size + 1)
    ax_spec.semilogy(idx, np.abs(final_eig), "o", ms=4, color="tab:red", label=f"W(t1), τ = {lam * t[-1]:g}")
    ax_spec.semilogy(idx, np.abs(reg_eig), "x", ms=5, color="tab:green", label="W_λ (rich limit at λ; the rest are 0)")
    ax_spec.axhline(star_eig, color="k", ls=":", lw=1, label="X⋆ (rank 1)")
    ax_spec.set_ylim(max(1e-14, 0.3 * np.min(np.abs(final_eig[final_eig != 0]))), 3 * star_eig)
    ax_spec.set_xlabel("index (sorted by |eigenvalue|)")
    ax_spec.set_ylabel("|eigenvalue|")
    ax_spec.set_title("final spectrum: rank one")
    ax_spec.grid(True, alpha=0.3)
    ax_spec.legend(fontsize=8)

    fig.suptitle(
        "Lyu et al. Fig. 3: grokking in completing the multiplication table X⋆_ij = ij/d², W = UUᵀ − VVᵀ",
        fontsize=13,
    )
    caption(
        fig,
        f"d = {int(refs['d'])}, {refs['fraction']:.0%} of entries observed, U = V = {refs['alpha']:g}·I, "
        f"λ = {lam:g} (paper: 1e-4), F = mean((W_ij − y)²) + (λ/2)‖θ‖², gradient flow ({refs['solver']}); "
        f"mask from JAX key {int(refs['seed'])} (not the paper's torch mask)",
        size=refs.get("size"),
    )
    return fig
