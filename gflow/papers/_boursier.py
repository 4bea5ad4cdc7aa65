"""What the Boursier, Pesme & Dragomir figures (`boursier_fig2_matrix_completion`,
`boursier_fig3_relu_regression`, `boursier_fig4_diagonal_sparse`) share: one timed gradient flow
saved on a log grid, the fit and test-drop events, and the log-t panels with t = 1/λ marked.

Events (papers.md §9): t_fit is the first save from which the train loss stays ≤ 1e−3 of its
initial value; the test plateau is the test loss there; later events are the first saves after
t_fit from which the test loss stays ≤ a fraction of that plateau (`gflow.analysis.crossing_time`).

Time convention: F_λ = F + (λ/2)‖θ‖², dθ/dt = −∇F_λ, ODE time t; slow time τ = λt.
"""

from __future__ import annotations

import json
import time

import numpy as np

from ._common import add_tau_axis

FIT_FRACTION = 1e-3  # t_fit: train loss <= FIT_FRACTION × its initial value, for good


def simulate_timed(problem, params, *, progress: bool = False, **kwargs):
    """`gflow.simulate` of `problem` at λ = params["lam"] to params["t1"] (solver "auto", rtol and
    atol from params), saved at params["saves"] log-spaced times from params["t_min"]. Returns
    (Trajectory, wall seconds until its results are ready)."""
    import jax

    from .._simulate import log_times, simulate

    t1 = params["t1"]
    start = time.perf_counter()
    traj = simulate(
        problem,
        params["lam"],
        t1,
        solver="auto",
        saveat=log_times(t1, params["saves"], params["t_min"]),
        rtol=params["rtol"],
        atol=params["atol"],
        progress=progress,
        **kwargs,
    )
    jax.block_until_ready(traj)
    return traj, time.perf_counter() - start


def fit_events(t, train, test) -> dict:
    """{"t_fit", "test_plateau"}: the first save from which `train` stays ≤ 1e−3 of its initial
    value, and `test` there (NaN if the fit never happens)."""
    from ..analysis import crossing_time

    t_fit = crossing_time(t, train, FIT_FRACTION * train[0])
    plateau = float(test[np.searchsorted(t, t_fit)]) if np.isfinite(t_fit) else np.nan
    return {"t_fit": t_fit, "test_plateau": plateau}


def drop_time(t, test, events, fraction: float) -> float:
    """The first save after events' t_fit from which `test` stays ≤ `fraction` × the test plateau
    (NaN if there was no fit)."""
    from ..analysis import crossing_time

    t_fit = events["t_fit"]
    return crossing_time(t, test, fraction * events["test_plateau"], after=t_fit) if np.isfinite(t_fit) else np.nan


def setup_attrs(params, names) -> dict:
    """The run's first attributes: `params` as JSON and its fields `names` as numbers (for readers
    of figure.nc)."""
    return {"params": json.dumps(params), **{name: params[name] for name in names}}


def simulate_row(attrs) -> tuple[str, str]:
    """The summary row of the flow: its result, solver and step count."""
    return ("simulate", f"{attrs['result']} ({attrs['solver']}, {attrs['stats_num_steps']} steps)")


LOSS = "loss (½·mean squared error)"  # the y label of the train/test loss panel (`loss_lines`)


def loss_lines(train, test) -> tuple:
    """The `curves` of the train loss F (blue) and the test loss (red)."""
    return ((train, "tab:blue", "train loss F"), (test, "tab:red", "test loss"))


def curves(ax, t, lines, ylabel: str, *, log: bool = True, level=None) -> None:
    """`lines` ((values over t, colour, label), …) at the save times t > 0 (a log t axis has no
    t = 0), labelled `ylabel`, on a log y axis if `log`; `level` = (value, label) adds a dashed
    black horizontal line."""
    keep = t > 0
    for values, color, label in lines:
        ax.plot(t[keep], values[keep], color=color, label=label)
    if level is not None:
        ax.axhline(level[0], color="k", ls="--", lw=1, label=level[1])
    if log:
        ax.set_yscale("log")
    ax.set_ylabel(ylabel)


def log_time_panels(axes, lam: float, xlabel: str, *, tau: bool = True) -> None:
    """Log t axes labelled `xlabel`, t = 1/λ marked, grid, legend in the lower left and (if `tau`)
    slow time τ = λt on top."""
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.axvline(1 / lam, color="0.5", lw=1, ls=":")
        ax.text(1 / lam, 1.0, " t = 1/λ", transform=ax.get_xaxis_transform(), va="top", color="0.4")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=9, loc="lower left")
        if tau:
            add_tau_axis(ax, lam, label="τ = λt")
