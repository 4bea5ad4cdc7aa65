"""Measurements on trajectories: when the train set is fitted and when the model generalises."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from ._solution import Trajectory


def crossing_time(ts, values, threshold: float, *, below: bool = True, after: float = 0.0) -> float:
    """First save time ≥ `after` from which `values` stays below (or above) `threshold`.

    "Stays" means for every later save time with a finite value, so a metric that dips
    across the threshold and comes back does not count. Returns NaN if it never does.
    The time is a save time, so its resolution is that of the save grid.
    """
    ts = np.asarray(ts)
    values = np.asarray(values)
    good = np.isfinite(values)
    ok = (values <= threshold) if below else (values >= threshold)
    ok = ok | ~good
    # stays_ok[i]: every saved value from i on satisfies the condition.
    stays_ok = np.flip(np.logical_and.accumulate(np.flip(ok)))
    candidates = np.nonzero(stays_ok & good & (ts >= after))[0]
    return float(ts[candidates[0]]) if candidates.size else math.nan


@dataclasses.dataclass(frozen=True)
class PhaseTimes:
    """Fit and generalisation times of a run, in ODE time t and slow time τ = λt."""

    t_fit: float
    t_generalise: float
    lam: float
    fit_threshold: float
    generalise_threshold: float
    generalise_metric: str

    @property
    def tau_fit(self) -> float:
        return self.lam * self.t_fit

    @property
    def tau_generalise(self) -> float:
        return self.lam * self.t_generalise


def phase_times(
    traj: Trajectory,
    *,
    fit_threshold: float | None = None,
    generalise_threshold: float | None = None,
    metric: str = "test_loss",
) -> PhaseTimes:
    """Time to fit the train set and time to generalise.

    - fit: first time from which `train_loss` stays ≤ `fit_threshold` (default: 1e-3 × the
      initial train loss);
    - generalise: first time after the fit from which `metric` stays ≤ `generalise_threshold`
      for losses, or ≥ it for metrics whose name contains "accuracy" (default for losses:
      1e-2 × the value of `metric` at the fit time, i.e. a hundredfold drop from the plateau;
      for accuracies 0.9).
    """
    if traj.ts.ndim != 1:
        raise ValueError("phase_times takes one run; index a member of a batched Trajectory")
    if metric not in traj.metrics:
        raise ValueError(f"unknown metric {metric!r}; this run has {', '.join(sorted(traj.metrics))}")
    t = np.asarray(traj.t)
    train = np.asarray(traj.metrics["train_loss"])
    if fit_threshold is None:
        fit_threshold = 1e-3 * float(train[0])
    t_fit = crossing_time(t, train, fit_threshold)
    values = np.asarray(traj.metrics[metric])
    is_accuracy = "accuracy" in metric
    if generalise_threshold is None:
        if is_accuracy:
            generalise_threshold = 0.9
        elif math.isfinite(t_fit):
            generalise_threshold = 1e-2 * float(values[np.searchsorted(t, t_fit)])
        else:
            generalise_threshold = math.nan
    t_gen = math.nan
    if math.isfinite(t_fit) and math.isfinite(generalise_threshold):
        t_gen = crossing_time(t, values, generalise_threshold, below=not is_accuracy, after=t_fit)
    return PhaseTimes(t_fit, t_gen, float(traj.lam), float(fit_threshold), float(generalise_threshold), metric)
