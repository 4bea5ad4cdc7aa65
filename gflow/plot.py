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
