"""Figures for people: learning curves on a log-time axis with the phases marked."""

from __future__ import annotations

import math

import numpy as np

from ._solution import Trajectory
from .analysis import PhaseTimes


def plot_trajectory(traj: Trajectory, *, phases: PhaseTimes | None = None, title: str | None = None, fig=None):
    """Two panels against log ODE time t (slow time τ = λt on the top axis):
    train/test losses (log scale, plus any accuracies on a twin axis) and ‖θ‖.

    Phase times, when given, are marked with vertical lines; t = 1/λ is marked too.
    Returns the matplotlib Figure.
    """
    import matplotlib.pyplot as plt

    if traj.ts.ndim != 1:
        raise ValueError("plot_trajectory takes one run; index a member of a batched Trajectory")
    t = np.asarray(traj.t)
    keep = t > 0  # t = 0 has no place on a log axis
    t = t[keep]
    lam = float(traj.lam)
    m = {k: np.asarray(v)[keep] for k, v in traj.metrics.items()}

    if fig is None:
        fig = plt.figure(figsize=(9, 6.5), layout="constrained")
    ax_loss, ax_norm = fig.subplots(2, 1, sharex=True, height_ratios=(2, 1))

    ax_loss.plot(t, m["train_loss"], label="train loss F", color="tab:blue")
    if "test_loss" in m:
        ax_loss.plot(t, m["test_loss"], label="test loss", color="tab:red")
    ax_loss.set_yscale("log")
    ax_loss.set_ylabel("loss")
    accuracies = [k for k in m if "accuracy" in k]
    handles, labels = ax_loss.get_legend_handles_labels()
    if accuracies:
        ax_acc = ax_loss.twinx()
        for k, style in zip(accuracies, ("--", ":", "-.", "--")):
            ax_acc.plot(t, m[k], style, color="tab:red" if k.startswith("test") else "tab:blue", label=k.replace("_", " "))
        ax_acc.set_ylabel("accuracy")
        ax_acc.set_ylim(-0.02, 1.02)
        h2, l2 = ax_acc.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2

    ax_norm.plot(t, m["norm"], color="tab:green", label="‖θ‖")
    ax_norm.set_ylabel("‖θ‖ (decayed parameters)")
    ax_norm.set_xscale("log")
    ax_norm.set_xlabel("t (ODE time, log scale)")

    for ax in (ax_loss, ax_norm):
        ax.grid(True, which="major", alpha=0.3)
        if lam > 0:
            ax.axvline(1.0 / lam, color="0.5", lw=1, ls=":")
    if lam > 0:
        ax_loss.text(1.0 / lam, 1.0, " t = 1/λ", transform=ax_loss.get_xaxis_transform(), va="top", color="0.4")
        top = ax_loss.secondary_xaxis("top", functions=(lambda x: x * lam, lambda x: x / lam))
        top.set_xlabel("τ = λt (slow time)")
    if phases is not None:
        for when, name, color in ((phases.t_fit, "fit", "tab:blue"), (phases.t_generalise, "generalise", "tab:red")):
            if math.isfinite(when):
                for ax in (ax_loss, ax_norm):
                    ax.axvline(when, color=color, lw=1.2, ls="--", alpha=0.8)
                handles.append(ax_loss.lines[-1])
                labels.append(f"{name}: t = {when:.3g}")
    ax_loss.legend(handles, labels, loc="lower left", fontsize=9)
    fig.suptitle(title or f"gradient flow with weight decay λ = {lam:g} ({traj.solver})")
    return fig


def plot_sweep(ds, *, metric: str = "test_loss", alpha=None, title: str | None = None, fig=None):
    """A metric against slow time τ = λt (log scale), one line per λ: the collapse plot.

    Lines are the median over seeds, with the seed range shaded. With an α axis, `alpha`
    picks the init scale (default: the first). Returns the matplotlib Figure.
    """
    import matplotlib.pyplot as plt

    if metric not in ds:
        names = ", ".join(k for k in ds.data_vars if "time" in ds[k].dims)
        raise ValueError(f"unknown metric {metric!r}; this sweep has {names}")
    if "alpha" in ds.dims:
        ds = ds.sel(alpha=ds["alpha"].values[0] if alpha is None else alpha)
    if fig is None:
        fig = plt.figure(figsize=(8, 5), layout="constrained")
    ax = fig.subplots()
    colors = plt.cm.viridis(np.linspace(0, 0.9, ds.sizes["lam"]))
    for color, lam in zip(colors, ds["lam"].values):
        member = ds.sel(lam=lam)
        tau = np.asarray(member["tau"])
        if tau.ndim > 1:
            tau = tau.reshape(-1, tau.shape[-1])[0]
        values = np.asarray(member[metric]).reshape(-1, tau.size)  # (seeds, time)
        keep = tau > 0
        with np.errstate(all="ignore"):
            mid = np.nanmedian(values, axis=0)
            lo, hi = np.nanmin(values, axis=0), np.nanmax(values, axis=0)
        ax.plot(tau[keep], mid[keep], color=color, label=f"λ = {lam:.3g}")
        if values.shape[0] > 1:
            ax.fill_between(tau[keep], lo[keep], hi[keep], color=color, alpha=0.2, lw=0)
    ax.set_xscale("log")
    if "accuracy" not in metric:
        ax.set_yscale("log")
    ax.set_xlabel("τ = λt (slow time, log scale)")
    ax.set_ylabel(metric.replace("_", " "))
    ax.grid(True, alpha=0.3)
    n_seeds = ds.sizes.get("seed", 1)
    ax.legend(title=f"median of {n_seeds} seed{'s' if n_seeds > 1 else ''}", fontsize=9)
    fig.suptitle(title or f"{metric.replace('_', ' ')} against slow time, one line per λ")
    return fig
