"""The built-in default experiment behind `gflow demo`."""

from __future__ import annotations

import time

import jax

from . import tasks
from ._simulate import count_params, log_times, simulate
from .analysis import phase_times
from .plot import plot_trajectory


DEMO = {
    "n": 20,
    "d": 60,
    "k": 3,
    "alpha": 10.0,
    "lam": 1e-2,
    "t1": 3000.0,
}


def describe(cfg=DEMO) -> str:
    return (
        f"diagonal linear network β = u² − v² on {cfg['k']}-sparse linear regression "
        f"(n = {cfg['n']} samples, d = {cfg['d']}), zero-output init u = v = α = {cfg['alpha']:g}, "
        f"weight decay λ = {cfg['lam']:g}, t1 = {cfg['t1']:g}"
    )


def run_demo(out_dir, *, smoke: bool = False, solver: str = "auto", echo=print) -> dict:
    """Run the demo into `out_dir` (which must exist): a PNG and a NetCDF file. Returns a summary.

    The experiment is Lyu et al.'s kernel-then-rich dichotomy on a diagonal network: with a
    large zero-output initialisation the flow first interpolates like the minimum-ℓ2 (kernel)
    predictor, whose test loss stays high; weight decay shrinks ‖θ‖ as e^{−λt} until, at
    t ≈ ln(α)/λ, the dynamics turn rich and find the sparse (minimum-ℓ1) interpolator.
    `smoke` keeps the experiment and saves fewer points (for tests).
    """
    cfg = DEMO
    problem = tasks.diagonal_regression(
        0, n=cfg["n"], d=cfg["d"], k=cfg["k"], alpha=cfg["alpha"], parameterisation="squares"
    )
    echo(f"gflow demo: {describe(cfg)}")
    start = time.perf_counter()
    # The kernel-regime fit takes t ~ 1/(α² ‖X‖²/n) ~ 1e-3: start the log grid well before it.
    saveat = log_times(cfg["t1"], 80 if smoke else 300, t_min=1e-5)
    traj = simulate(problem, cfg["lam"], cfg["t1"], solver=solver, saveat=saveat)
    jax.block_until_ready(traj)
    wall = time.perf_counter() - start
    phases = phase_times(traj)
    m = {k: float(v[-1]) for k, v in traj.metrics.items()}
    n_params = count_params(problem.model)
    lines = [
        f"  solver {traj.solver}: {int(traj.stats['num_steps'])} steps "
        f"({int(traj.stats['num_rejected_steps'])} rejected), {wall:.1f} s wall including compilation; "
        f"{n_params} parameters; result: {traj.message}",
        f"  train set fitted (train loss ≤ {phases.fit_threshold:.2g}) at t = {phases.t_fit:.3g} "
        f"(τ = λt = {phases.tau_fit:.3g})",
        f"  generalised (test loss ≤ {phases.generalise_threshold:.2g}, 1% of its plateau) at "
        f"t = {phases.t_generalise:.3g} (τ = {phases.tau_generalise:.3g})",
        f"  final: train loss {m['train_loss']:.3g}, test loss {m['test_loss']:.3g}, "
        f"‖β − β⋆‖ {m['test_beta_error']:.3g}, ‖θ‖ {m['norm']:.3g} (from {float(traj.metrics['norm'][0]):.3g})",
    ]
    for line in lines:
        echo(line)

    subtitle = (
        f"β = u² − v², {cfg['k']}-sparse regression (n = {cfg['n']}, d = {cfg['d']}), "
        f"init u = v = α = {cfg['alpha']:g}, λ = {cfg['lam']:g}"
    )
    fig = plot_trajectory(traj, phases=phases, title="gflow demo: grokking in a diagonal linear network\n" + subtitle)
    png = out_dir / "trajectory.png"
    fig.savefig(png, dpi=110)
    data = out_dir / "trajectory.nc"
    ds = traj.to_xarray()
    ds.attrs["experiment"] = describe(cfg)
    ds.to_netcdf(data, engine="scipy")
    echo(f"  wrote {png} and {data}")
    return {"trajectory": traj, "phases": phases, "png": png, "data": data, "wall_s": wall}
