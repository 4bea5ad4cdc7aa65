r"""Boursier, Pesme & Dragomir, App. D.2 (Fig. 4): grokking of a diagonal linear network on sparse regression.

The paper's figure (papers.md §2.5 E1.3): β = u ⊙ v, f(x) = ⟨β, x⟩, a sparse teacher,
Gaussian initialisation of variance 0.1, weight decay λ = 1e−4. By t₂ ≈ 10² the train loss is
≈ 0: the unregularised flow has interpolated, at the interpolator its implicit bias picks
(Woodworth et al.), whose norm is not small and which does not generalise. From t ≈ 1/λ = 10⁴
the norm ‖u‖² + ‖v‖² falls, and by t₃ ≈ 10⁵ the weights reach the minimum-norm interpolator,
whose β is the minimum-ℓ1 interpolator (‖u‖² + ‖v‖² = 2‖β‖₁ at balance |u_i| = |v_i|), and
the test loss is ≈ 0 (ℓ1 minimisation recovers the sparse teacher).

Setup (`gflow.tasks.diagonal_regression`, parameterisation "uv"): X ∈ ℝ^{n×d} with i.i.d.
𝒩(0, 1) entries, n = 20, d = 60, a k = 3-sparse teacher β⋆ with 𝒩(0, 1) non-zeros, y = Xβ⋆,
u, v ~ 𝒩(0, 0.1·I) (`init_variance`; α = √0.1), F = ½·mean((⟨β, x_i⟩ − y_i)²), λ = 1e−4, one
run (`seed` 0), 500 Gaussian test inputs. Integrated with `gflow.simulate` (solver "auto": the
stiffness ratio (sharpness + λ)·t1 is ~1e6, so it takes the Rosenbrock-W solver ROS34PW2, which
crosses the long slow phase in a few thousand steps), saved at `saves` log-spaced times from
`t_min` to `t1`. The minimum-ℓ1 interpolator comes from `gflow.analysis.min_l1_interpolator`
(a linear program).

Details the paper does not give, and our choices:
- Teacher and features: the paper fits a sparse Fourier series (feature map, d and n unknown);
  we use a Gaussian design (n = 20, d = 60, k = 3; full: n = 100, d = 500, k = 5, t1 = 1e6,
  300 saves, rtol 1e−10), for which the minimum-ℓ1 interpolator is exactly β⋆ (checked and
  reported in the summary).
- Loss normalisation ½·mean (gflow's); the paper's is unknown. The horizon: t1 = 3e5 (τ = 30).
- Tolerances: gflow's float64 defaults (rtol 1e−8, atol 1e−10) at the quick size; the smoke
  size is the quick one with 40 saves and rtol 1e−6, atol 1e−9.

Events: t_fit is the first save from which the train loss stays ≤ 1e−3 of its initial value;
the test plateau is the test loss there; t_test_half the first save after t_fit from which the
test loss stays ≤ half of it; t_close_l1 the first from which ‖β − β_ℓ1‖ ≤ 1% of ‖β_ℓ1‖.

Time convention: F_λ = F + (λ/2)(‖u‖² + ‖v‖²), dθ/dt = −∇F_λ, ODE time t; slow time τ = λt
(top axis).

The figure: train/test loss, ‖u‖² + ‖v‖² against 2‖β_ℓ1‖₁, ‖β(t) − β_ℓ1‖, and the
coordinates β_i(t), all over log t with t = 1/λ marked. The dataset holds the metrics over
`time`, `beta` (time, coord), `distance_l1`, `norm_sq`, `beta_l1` and `beta_star`.
"""

from __future__ import annotations

import json

import numpy as np
import xarray as xr

from . import FigureExperiment, _boursier
from ._common import caption, require_float64, require_in

FIGURE = FigureExperiment.from_toml(__name__)


def check(params) -> None:
    """Refuse parameter combinations the run cannot use (a `ConfigError` naming the field)."""
    from ..experiments import ConfigError

    require_in(params, "k", 1, "d", ends="[]")
    if params["init_variance"] <= 0:
        raise ConfigError(f"figure.init_variance must be > 0, got {params['init_variance']}")
    require_in(params, "t_min", 0, "t1")


def build_problem(params):
    """The E1.3 problem: `gflow.tasks.diagonal_regression` with the "uv" parameterisation."""
    from .. import tasks

    return tasks.diagonal_regression(
        params["seed"],
        n=params["n"],
        d=params["d"],
        k=params["k"],
        alpha=float(np.sqrt(params["init_variance"])),
        parameterisation="uv",
        init="gaussian",
    )


def measure(params, *, progress: bool = False, echo=print) -> xr.Dataset:
    """The minimum-ℓ1 interpolator and the flow with its β(t); returns one Dataset over `time`
    (and `coord` for β)."""
    from ..analysis import crossing_time, min_l1_interpolator

    require_float64(FIGURE.name)
    check(params)
    lam, t1 = params["lam"], params["t1"]
    problem = build_problem(params)
    x, y = np.asarray(problem.train["x"]), np.asarray(problem.train["y"])
    beta_star = np.asarray(problem.test["beta_star"])
    echo(f"  1/2 min-ℓ1 interpolator (linear program, n = {params['n']}, d = {params['d']})")
    beta_l1 = min_l1_interpolator(x, y)
    l1 = float(np.abs(beta_l1).sum())
    recovery = float(np.linalg.norm(beta_l1 - beta_star))

    echo(f"  2/2 flow: simulate to t = {t1:g} at λ = {lam:g}")
    traj, wall = _boursier.simulate_timed(problem, params, save_params=True, progress=progress)

    ds = traj.to_xarray()
    t = ds["t"].values
    beta = np.asarray(traj.params.u) * np.asarray(traj.params.v)
    distance = np.linalg.norm(beta - beta_l1[None, :], axis=1)
    norm_sq = ds["norm"].values ** 2
    train, test = ds["train_loss"].values, ds["test_loss"].values
    events = _boursier.fit_events(t, train, test)
    events["t_test_half"] = _boursier.drop_time(t, test, events, 0.5)
    t_close = crossing_time(t, distance, 1e-2 * np.linalg.norm(beta_l1))

    ds = ds.assign(
        norm_sq=("time", norm_sq),
        distance_l1=("time", distance),
        beta=(("time", "coord"), beta),
        beta_l1=("coord", beta_l1),
        beta_star=("coord", beta_star),
    )
    ds.attrs.update(
        **_boursier.setup_attrs(params, ("n", "d", "k", "init_variance", "seed")),
        loss="F = 0.5 * mean((<beta, x_i> - y_i)^2)",
        l1_norm_min=l1,
        two_l1_norm_min=2 * l1,
        l1_recovery_error=recovery,
        **events,
        t_close_l1=t_close,
        wall_simulate_s=wall,
    )
    return ds


def summary(ds: xr.Dataset) -> list[tuple[str, str]]:
    """The key numbers the figure shows, as (quantity, value) rows."""
    a = ds.attrs
    lam = json.loads(a["params"])["lam"]
    t = ds["t"].values
    train, test = ds["train_loss"].values, ds["test_loss"].values
    norm_sq, distance = ds["norm_sq"].values, ds["distance_l1"].values
    return [
        (
            "min-ℓ1 interpolator: ‖β_ℓ1‖₁, ‖β_ℓ1 − β⋆‖",
            f"{a['l1_norm_min']:.4f}, {a['l1_recovery_error']:.1e}",
        ),
        _boursier.simulate_row(a),
        (
            "train loss ≤ 1e-3×initial from t",
            f"{a['t_fit']:.3g}; test loss there {a['test_plateau']:.3g}",
        ),
        (
            "test loss ≤ half of that from t",
            f"{a['t_test_half']:.3g} (λt = {lam * a['t_test_half']:.3g})",
        ),
        ("‖β − β_ℓ1‖ ≤ 1% of ‖β_ℓ1‖ from t", f"{a['t_close_l1']:.3g}"),
        (
            f"final (t = {t[-1]:g}): train, test, ‖β − β_ℓ1‖",
            f"{train[-1]:.2e}, {test[-1]:.2e}, {distance[-1]:.2e}",
        ),
        (
            "‖u‖²+‖v‖²: final vs 2‖β_ℓ1‖₁; at t = 0, max over t",
            f"{norm_sq[-1]:.5f} vs {a['two_l1_norm_min']:.5f}; {norm_sq[0]:.3f}, {norm_sq.max():.3f}",
        ),
    ]


def plot(ds: xr.Dataset):
    """Four panels over log t (τ on top, t = 1/λ marked): train/test loss; ‖u‖²+‖v‖² against
    2‖β_ℓ1‖₁; the distance to the minimum-ℓ1 interpolator; the coordinates β_i(t)."""
    import matplotlib.pyplot as plt

    a = ds.attrs
    params = json.loads(a["params"])
    lam = params["lam"]
    t = ds["t"].values
    beta, beta_star = ds["beta"].values, ds["beta_star"].values
    two_l1 = float(a["two_l1_norm_min"])
    fig, axes = plt.subplots(2, 2, figsize=(13, 8.5), layout="constrained")
    (ax_loss, ax_norm), (ax_dist, ax_beta) = axes
    _boursier.curves(ax_loss, t, _boursier.loss_lines(ds["train_loss"].values, ds["test_loss"].values), _boursier.LOSS)
    norm = (ds["norm_sq"].values, "tab:green", "‖u‖² + ‖v‖²")
    level = (two_l1, f"2‖β_ℓ1‖₁ = {two_l1:.3f}")
    _boursier.curves(ax_norm, t, [norm], "‖u‖² + ‖v‖²", log=False, level=level)
    distance = (ds["distance_l1"].values, "tab:purple", "‖β(t) − β_ℓ1‖")
    _boursier.curves(ax_dist, t, [distance], "distance to the min-ℓ1 interpolator")
    keep = t > 0
    support = np.abs(beta_star) > 0
    for i in np.nonzero(~support)[0]:
        ax_beta.plot(t[keep], beta[keep, i], color="0.6", lw=0.6)
    for i in np.nonzero(support)[0]:
        ax_beta.plot(t[keep], beta[keep, i], lw=1.8)
        ax_beta.axhline(beta_star[i], color="k", ls=":", lw=0.8)
    ax_beta.plot([], [], color="0.6", lw=0.6, label="β_i off the teacher's support")
    ax_beta.plot([], [], color="tab:blue", lw=1.8, label="β_i on the support (coloured; dotted: β⋆_i)")
    ax_beta.set_ylabel("coordinates β_i = u_i v_i")
    _boursier.log_time_panels(axes.ravel(), lam, "t (ODE time, log scale)")
    fig.suptitle(
        f"Diagonal network β = u⊙v, sparse regression, λ = {lam:g}: interpolation by t ≈ 10², then the drift to the "
        "minimum-ℓ1 interpolator (Boursier et al. App. D.2)"
    )
    fig.get_layout_engine().set(rect=(0, 0.03, 1, 0.97))
    caption(
        fig,
        f"n = {params['n']}, d = {params['d']}, k = {params['k']}, Gaussian features and teacher (our choice; "
        f"the paper uses an unspecified sparse Fourier series), u, v ~ N(0, {params['init_variance']:g}), "
        f"seed {params['seed']}; {a['solver']}.",
        size=a.get("size"),
    )
    return fig
