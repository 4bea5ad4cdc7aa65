r"""Full flows θ^λ(τ/λ) collapse onto the slow flow θ°(τ) as λ → 0, at rate O(λ) (papers.md A2).

Setup (Boursier et al., Prop. 2; papers.md §9 A2): diagonal network β = u⊙v, n = 3, d = 8,
X ~ 𝒩(0, 1), β⋆ = (1, −0.7, 0, …), y = Xβ⋆, w0 = (u0, v0) ~ 𝒩(0, I₁₆) (NumPy `seed` 3), and
F = ½‖Xβ − y‖² (the sum convention of A2: gflow's F = ½·mean(r²) with residuals r = √n(Xβ − y)).

`measure` runs
1. the flow limit Φ(θ0) (`gflow.flow_limit`, rtol `limit_rtol` = 1e−12, atol `limit_atol`
   = 1e−14) and from it the slow flow dθ/dτ = −P(θ)θ on the manifold of minimisers
   (`gflow.slow_flow`) to τ1, saved on a τ grid: 0, `saves` log-spaced slow times from 1e−4
   to τ1, and the reported slow times `report_taus` below τ1;
2. for each λ in `lams`, the full flow dθ/dt = −∇F − λθ with the stiff solver Kvaerno5 (rtol
   `full_rtol` = 1e−11, atol `full_atol` = 1e−13) up to t = τ1/λ, saved at t = τ/λ on the slow
   flow's τ grid, so the distances are exact (no interpolation);

and compares them (`gflow._slow.compare`): ‖θ^λ(τ/λ) − θ°(τ)‖ per λ and τ, and the fitted order
of convergence in λ (the least-squares slope of log distance against log λ per τ; 1 for O(λ)),
reported at `report_taus`. The distances reach 1e−5, so the figure needs float64.

Sizes: quick is λ ∈ {1e−1, 1e−2, 1e−3, 1e−4}, τ1 = 3, 60 log-spaced saves; smoke is
λ ∈ {1e−1, 1e−2}, τ1 = 1, 12 saves. The script had no larger size: full equals quick (the
problem is the paper's A2 size already).

Time convention: F_λ = F + (λ/2)‖θ‖², dθ/dt = −∇F_λ, ODE time t; slow time τ = λt.

The figure: ‖θ‖ against τ for every λ and the slow flow, the distance against λ on a log-log
inset (one line per reported τ, a slope-1 guide), the distance against τ below. The dataset
holds `distance`, `exact` (int8), the metric differences and `full_norm` over (`lam`, `tau`),
`order` over `tau`, `order_at` over `tau_at`, and the slow flow's `slow_norm` and
`slow_manifold_residual`.
"""

from __future__ import annotations

import json
import time

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from . import FigureExperiment
from ._common import caption, require_float64

FIGURE = FigureExperiment.from_toml(__name__)


def check(params) -> None:
    """Refuse parameter combinations the runs cannot use (a `ConfigError` naming the field)."""
    from ..experiments import ConfigError

    if len(params["lams"]) < 2 or min(params["lams"]) <= 0:
        raise ConfigError(f"figure.lams must be at least two positive weight decays, got {params['lams']}")
    if not params["tau1"] > 1e-4:
        raise ConfigError(f"figure.tau1 must be > 1e-4 (the first log-spaced save), got {params['tau1']}")
    if not params["report_taus"] or not all(0 < t <= params["tau1"] for t in params["report_taus"]):
        raise ConfigError(
            f"figure.report_taus must be slow times in (0, tau1 = {params['tau1']:g}], got {params['report_taus']}"
        )
    if params["saves"] < 2:
        raise ConfigError(f"figure.saves must be ≥ 2, got {params['saves']}")


def build_problem(params):
    """The A2 problem: β = u⊙v, n = 3, d = 8, F = ½‖Xβ − y‖², from NumPy seed `seed`."""
    from .. import models
    from .._problem import Problem

    rng = np.random.default_rng(params["seed"])
    n, d = 3, 8
    x = rng.normal(size=(n, d))
    beta_star = np.zeros(d)
    beta_star[:2] = (1.0, -0.7)
    w0 = rng.normal(size=2 * d)

    def sum_residuals(model, data):
        # F = ½·mean(r²) with r = √n (Xβ − y) is ½‖Xβ − y‖².
        return jnp.sqrt(data["x"].shape[0]) * (jax.vmap(model)(data["x"]) - data["y"])

    model = models.DiagonalNet(jnp.asarray(w0[:d]), jnp.asarray(w0[d:]), "uv")
    return Problem(model, {"x": jnp.asarray(x), "y": jnp.asarray(x @ beta_star)}, residuals=sum_residuals)


def tau_grid(tau1: float, num: int, report_taus) -> np.ndarray:
    """0, log-spaced slow times from 1e-4 to τ1, and the reported τ values."""
    grid = np.concatenate([[0.0], np.geomspace(1e-4, tau1, num), [t for t in report_taus if t < tau1]])
    return np.unique(grid)


def measure(params, *, progress: bool = False, echo=print) -> xr.Dataset:
    """The slow flow from Φ(θ0), the full flow at each λ, and their distances; returns one
    Dataset over (`lam`, `tau`)."""
    from .._simulate import simulate
    from .._slow import compare, flow_limit, slow_flow

    require_float64(FIGURE.name)
    check(params)
    lams, tau1 = [float(lam) for lam in params["lams"]], float(params["tau1"])
    report = [float(t) for t in params["report_taus"]]
    taus = tau_grid(tau1, params["saves"], report)
    problem = build_problem(params)

    echo(f"  1/{1 + len(lams)} flow limit Φ(θ0) and the slow flow to τ1 = {tau1:g}")
    start = time.perf_counter()
    limit = flow_limit(problem, rtol=params["limit_rtol"], atol=params["limit_atol"])
    slow = slow_flow(problem, tau1, start=limit, saveat=taus, save_params=True)
    jax.block_until_ready(slow)
    walls = {"slow": time.perf_counter() - start}
    fulls = []
    for k, lam in enumerate(lams):
        echo(f"  {k + 2}/{1 + len(lams)} full flow λ = {lam:g} to t1 = {tau1 / lam:g}")
        start = time.perf_counter()
        full = simulate(
            problem,
            lam,
            tau1 / lam,
            solver="kvaerno5",
            saveat=taus / lam,
            save_params=True,
            rtol=params["full_rtol"],
            atol=params["full_atol"],
            progress=progress,
        )
        jax.block_until_ready(full)
        fulls.append(full)
        walls[f"full_{k}"] = time.perf_counter() - start

    ds = compare(fulls, slow, at=report)
    ds = ds.assign(
        exact=ds["exact"].astype("int8"),  # NetCDF3 has no booleans
        slow_manifold_residual=("tau", np.asarray(slow.metrics["manifold_residual"])),
        full_steps=("lam", np.array([int(f.stats["num_steps"]) for f in fulls])),
        full_ok=("lam", np.array([bool(f.ok) for f in fulls]).astype(np.int8)),
    )
    ds.attrs.update(
        params=json.dumps(params),
        problem="beta = u*v, n = 3, d = 8, X ~ N(0,1), beta* = (1, -0.7, 0, ...), w0 ~ N(0, I16), "
        f"numpy seed {params['seed']}; F = 0.5*||X beta - y||^2 (sum convention)",
        full_solver=f"kvaerno5, rtol {params['full_rtol']:g}, atol {params['full_atol']:g}, saved at t = tau/lam",
        full_results="; ".join(f.message for f in fulls),
        flow_limit_t=float(limit.t),
        flow_limit_result=limit.message,
        flow_limit_grad_norm=float(limit.grad_norm),
        flow_limit_solver=limit.solver,
        slow_steps=int(slow.stats["num_steps"]),
        slow_max_manifold_residual=float(np.nanmax(np.asarray(slow.metrics["manifold_residual"]))),
        wall_slow_s=walls["slow"],
        wall_full_s=np.asarray([walls[f"full_{k}"] for k in range(len(lams))]),
    )
    return ds


def summary(ds: xr.Dataset) -> list[tuple[str, str]]:
    """The key numbers: Φ(θ0), the slow flow, the distances at the reported τ and the fitted orders."""
    a = ds.attrs
    tau = ds["tau"].values
    tau_at = np.atleast_1d(ds["tau_at"].values)
    rows = [
        (
            "Φ(θ0)",
            f"{a['flow_limit_result']} at t = {a['flow_limit_t']:.3g} (‖∇F‖ = {a['flow_limit_grad_norm']:.1e}, "
            f"{a['flow_limit_solver']})",
        ),
        (
            "slow flow",
            f"{a['slow_result']}, {a['slow_steps']} steps, max manifold residual {a['slow_max_manifold_residual']:.1e}",
        ),
    ]
    for i, lam in enumerate(ds["lam"].values):
        dists = ", ".join(f"{ds['distance'].values[i, np.argmin(np.abs(tau - t))]:.3e} (τ = {t:g})" for t in tau_at)
        rows.append(
            (
                f"λ = {lam:g}: ‖θ^λ(τ/λ) − θ°(τ)‖",
                f"{dists}; full flow {int(ds['full_steps'].values[i])} steps",
            )
        )
    orders = ", ".join(f"{o:.3f} at τ = {t:g}" for t, o in zip(tau_at, ds["order_at"].values, strict=True))
    rows.append(("fitted order of convergence in λ (log-log slope)", orders))
    return rows


def plot(ds: xr.Dataset):
    """`gflow.plot.plot_comparison`'s figure of the dataset: ‖θ‖ of every full flow and of the
    slow flow against τ, with an inset of the distance against λ (log-log, one line per reported
    τ, a slope-1 guide); below, the distance against τ for every λ."""
    from ..plot import plot_comparison

    fig = plot_comparison(ds, metric="norm")
    fig.suptitle(
        "Full flows with weight decay collapse onto the slow flow in τ = λt\n"
        "diagonal network β = u⊙v, n = 3, d = 8 (papers.md A2)"
    )
    fig.get_layout_engine().set(rect=(0, 0.03, 1, 0.97))
    params = json.loads(ds.attrs["params"])
    caption(
        fig,
        f"full flows: {ds.attrs['full_solver']}; slow flow from Φ(θ0) ({ds.attrs['slow_solver']}); "
        f"NumPy seed {params['seed']}.",
        size=ds.attrs.get("size"),
    )
    return fig
