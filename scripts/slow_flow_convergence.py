"""Full flows θ^λ(τ/λ) collapse onto the slow flow θ°(τ) as λ → 0, at rate O(λ) (papers.md A2).

Setup (Boursier et al., Prop. 2; papers.md §9 A2): diagonal network β = u⊙v, n = 3, d = 8,
X ~ 𝒩(0, 1), β⋆ = (1, −0.7, 0, …), y = Xβ⋆, w0 = (u0, v0) ~ 𝒩(0, I₁₆) (NumPy seed 3), and
F = ½‖Xβ − y‖² (the sum convention of A2: gflow's F = ½·mean(r²) with residuals r = √n(Xβ − y)).
The full flow dθ/dt = −∇F − λθ is run for each λ with the stiff solver up to t = τ1/λ, saved at
t = τ/λ on the slow flow's τ grid, so the distances are exact (no interpolation).

Writes `slow_flow_convergence.png` (‖θ‖ against τ for every λ and the slow flow, the distance
against λ on a log-log inset, the distance against τ below) and `slow_flow_convergence.nc`
(NetCDF: `xarray.open_dataset(path, engine="scipy")`) into `--out` (default: a new folder
gflow-runs/slow-flow-convergence-<timestamp>).

    python scripts/slow_flow_convergence.py            # quick: 4 values of λ, τ1 = 3 (about a minute)
    python scripts/slow_flow_convergence.py --smoke    # 2 values of λ, few save points (seconds + compilation)
"""

from __future__ import annotations

import pathlib
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))  # scripts/ is not a package
import _figure  # noqa: E402

NAME = "slow_flow_convergence"


LAMS = (1e-1, 1e-2, 1e-3, 1e-4)
SMOKE_LAMS = (1e-1, 1e-2)
REPORT_TAUS = (0.5, 1.0)
SEED = 3


def build_problem(seed: int = SEED):
    import jax
    import jax.numpy as jnp

    import gflow

    rng = np.random.default_rng(seed)
    n, d = 3, 8
    x = rng.normal(size=(n, d))
    beta_star = np.zeros(d)
    beta_star[:2] = (1.0, -0.7)
    w0 = rng.normal(size=2 * d)

    def sum_residuals(model, data):
        # F = ½·mean(r²) with r = √n (Xβ − y) is ½‖Xβ − y‖².
        return jnp.sqrt(data["x"].shape[0]) * (jax.vmap(model)(data["x"]) - data["y"])

    model = gflow.models.DiagonalNet(jnp.asarray(w0[:d]), jnp.asarray(w0[d:]), "uv")
    return gflow.Problem(model, {"x": jnp.asarray(x), "y": jnp.asarray(x @ beta_star)}, residuals=sum_residuals)


def tau_grid(tau1: float, num: int) -> np.ndarray:
    """0, log-spaced slow times from 1e-4 to τ1, and the reported τ values."""
    grid = np.concatenate([[0.0], np.geomspace(1e-4, tau1, num), [t for t in REPORT_TAUS if t < tau1]])
    return np.unique(grid)


def run(out: pathlib.Path, *, smoke: bool, echo=print) -> dict:
    import jax

    jax.config.update("jax_enable_x64", True)  # before any array is made: the O(λ) distances reach 1e-5

    import gflow
    from gflow._slow import compare, flow_limit, plot_slow_flow, slow_flow

    lams = SMOKE_LAMS if smoke else LAMS
    tau1 = 1.0 if smoke else 3.0
    taus = tau_grid(tau1, 12 if smoke else 60)
    problem = build_problem()
    echo(f"A2: β = u⊙v, n = 3, d = 8, F = ½‖Xβ − y‖², λ ∈ {{{', '.join(f'{lam:g}' for lam in lams)}}}, τ1 = {tau1:g}")

    start = time.perf_counter()
    limit = flow_limit(problem, rtol=1e-12, atol=1e-14)
    slow = slow_flow(problem, tau1, start=limit, saveat=taus, save_params=True)
    jax.block_until_ready(slow)
    echo(
        f"  Φ(θ0): {limit.message} at t = {float(limit.t):.3g} (‖∇F‖ = {float(limit.grad_norm):.1e}, {limit.solver}); "
        f"slow flow: {slow.message}, {int(slow.stats['num_steps'])} steps, max manifold residual "
        f"{np.nanmax(np.asarray(slow.metrics['manifold_residual'])):.1e}  [{time.perf_counter() - start:.1f} s]"
    )
    fulls = []
    for lam in lams:
        t0 = time.perf_counter()
        full = gflow.simulate(
            problem, lam, tau1 / lam, solver="kvaerno5", saveat=taus / lam, save_params=True, rtol=1e-11, atol=1e-13
        )
        jax.block_until_ready(full)
        fulls.append(full)
        echo(
            f"  full flow λ = {lam:g}: t1 = {tau1 / lam:g}, {full.message}, {int(full.stats['num_steps'])} steps  "
            f"[{time.perf_counter() - t0:.1f} s]"
        )

    ds = compare(fulls, slow, at=list(REPORT_TAUS))
    echo("  ‖θ^λ(τ/λ) − θ°(τ)‖:")
    echo("    " + "λ".ljust(8) + "".join(f"τ = {t:<10g}" for t in REPORT_TAUS))
    for i, lam in enumerate(lams):
        row = "".join(f"{ds['distance'].values[i, np.argmin(np.abs(taus - t))]:<14.3e}" for t in REPORT_TAUS)
        echo(f"    {lam:<8g}{row}")
    orders = ", ".join(f"{o:.3f} at τ = {t:g}" for t, o in zip(REPORT_TAUS, ds["order_at"].values, strict=True))
    echo(f"  fitted order of convergence in λ (log-log slope): {orders}")

    fig = plot_slow_flow(
        fulls,
        slow,
        metric="norm",
        at=list(REPORT_TAUS),
        title="Full flows with weight decay collapse onto the slow flow in τ = λt\n"
        "diagonal network β = u⊙v, n = 3, d = 8 (papers.md A2)",
    )
    png = out / "slow_flow_convergence.png"
    fig.savefig(png, dpi=120)

    ds = ds.assign(
        exact=ds["exact"].astype("int8"),  # NetCDF3 has no booleans
        slow_norm=("tau", np.asarray(slow.metrics["norm"])),
        slow_manifold_residual=("tau", np.asarray(slow.metrics["manifold_residual"])),
        full_norm=(("lam", "tau"), np.stack([np.asarray(f.metrics["norm"]) for f in fulls])),
    )
    ds.attrs.update(
        experiment="papers.md A2: beta = u*v, n = 3, d = 8, X ~ N(0,1), beta* = (1, -0.7, 0, ...), w0 ~ N(0, I16), "
        f"numpy seed {SEED}; F = 0.5*||X beta - y||^2 (sum convention)",
        full_solver="kvaerno5, rtol 1e-11, atol 1e-13, saved at t = tau/lam",
        flow_limit_t=float(limit.t),
        smoke=int(smoke),
        **_figure.provenance(),
    )
    data = out / "slow_flow_convergence.nc"
    ds.to_netcdf(data, engine="scipy")
    echo(f"  wrote {png} and {data}")
    return {"dataset": ds, "png": png, "data": data}


def main(argv=None) -> int:
    parser = _figure.parser(__doc__, NAME, smoke="two values of λ and few save points (seconds)")
    args = parser.parse_args(argv)
    return _figure.run_in_new_folder(args.out, NAME, lambda out: run(out, smoke=args.smoke))


if __name__ == "__main__":
    sys.exit(main())
