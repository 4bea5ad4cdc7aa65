"""After memorisation, the weights move along the norm-minimising tangent direction of the
zero-loss set (Musat, *The Geometry of Grokking*, §4.6, App. D, Figs. 5 and 7; papers.md E2.4, A11).

Setup (papers.md E2.4): modular addition mod n = 11 on unordered pairs a ≤ b, input e_a + e_b,
one-hot target of (a + b) mod 11; two-layer ReLU network Ŷ = σ(XE)W with h = 128 hidden units,
no biases, PyTorch's default initialisation (`gflow.models.EmbeddingNet`, `init="torch"`); MSE
loss; full-batch gradient descent with η = 1, weight decay λ = 1e−4, no momentum; five seeds.

Two runs per seed, drawn together:
- **the gradient flow** (the figure's main curves): `gflow.simulate` with solver "auto", which
  finds the ReLU in the loss and integrates through its kinks with Bogacki–Shampine 3(2), here at
  rtol 1e-4 (field `rtol`; see the TOML for why not the default 1e-3), to t = η_g·steps, θ saved at
  every checkpoint and η_g·c before it. Its direction of motion is its displacement over the time
  GD's c steps span, θ(t) − θ(t − η_g·c); not its velocity θ'(t) = −∇F(θ_t) − λ_g θ_t, which
  chatters where the flow slides along kinks (`run_seed_flow`).
- **gradient descent**, the paper's own method (`gflow.gd`, θ saved every c steps); its direction
  of motion is the update over c = 10 steps, Δθ_t = θ_t − θ_{t−10} (c·η_g·θ'(t) to first order).
At checkpoints every K steps (K = 500, 250, 50 for smoke, quick, full), at θ_t of each run:
- θ′_t: 100 GD steps from θ_t on the unregularised loss, η = 1, momentum 0.9 (optax) — the
  paper's estimate of proj_𝒵(θ_t);
- g̃_t = (I − J⁺J)(−θ_t) with J the Jacobian of all train outputs at θ′_t
  (`gflow.project_tangent`, whose dense path builds J from per-example Jacobians, one small
  p × d block per training pair);
- the cosine of the direction of motion with g̃_t, averaged over seeds.
Plotted: seed-averaged train/test loss (Fig. 5 left), train/test accuracy (Fig. 7 left), and
the cosine (right), the flow's seeds transparent and GD's seed mean as a wide faint band; the
flow's memorisation step, the window in which its seed-averaged test accuracy rises from 10% to
90%, and its cosine's maximum are marked.

Details the paper does not give, and what we chose (papers.md §10):
- Data size. App. D says "n(n+1)/2 = 77 pairs, 7 test, 70 train", but for n = 11 there are
  66 unordered pairs (77 is not n(n+1)/2 for any n). We keep the 7 test pairs and train on the
  other 59 (a random split per seed).
- Loss normalisation. Eq. (1) defines 𝓛 as a sum over samples, but full-batch GD with η = 1 on
  the summed MSE diverges from PyTorch's initialisation here (measured: ‖θ‖ 6.8 → 1.8e5 within
  1600 steps, every ReLU dead, train accuracy 0.10). We use PyTorch's `MSELoss()` (mean over
  all n·p entries) with `SGD(lr=1, weight_decay=1e-4)`, the reading under which η = 1 is stable
  and the network groks.
- Seeds also draw the train/test split; the test metric is the 7 held-out pairs (accuracy
  moves in steps of 1/7, as in the paper).
- Fig. 5's axes (step range, log or linear) are not given: we plot steps on a log axis.

Time convention. PyTorch's step θ ← θ − η(∇mean((f − y)²) + λθ) is gflow's
θ ← θ − η_g(∇F + λ_g θ) with F = ½·mean((f − y)²), η_g = 2η, λ_g = λ/2; step k is at ODE time
t = 2ηk and slow time τ = λ_g t = ληk (τ = 1 at step 10⁴ here).

Measured (quick run, 5 seeds; the flow, GD alike unless said): train accuracy 1 by step 250,
train loss settled by step ≈ 2500 (τ ≈ 0.25); the seed-mean test accuracy rises from 10% to 90%
over steps 9000–28500 (τ ≈ 0.9–2.9), the same steps for both. The seed-mean cosine rises from −0.1
to its maximum 0.784 at step 2250 (GD 0.783 at step 2500), just as the train loss settles and the
test loss starts to fall, and decays to ≈ 0.2 by step 40 000: high (0.3–0.6) during the accuracy
rise but largest before it, so papers.md A11's inferred criterion ("maximum inside the 10%→90%
accuracy window") does not hold in this reading of the setup; by the test loss (Fig. 5's own
measure) the maximum sits at the start of the drop. Per-seed maxima of the flow's cosine are
within 0.008 of GD's. Cost: the flow took 103 172–109 400 gradient evaluations per seed to
t = 8·10⁴ against GD's 40 000 steps (η = 1 is GD's stable step here, so GD is cheap); the figure
took 11 min (flow 6 min, GD 5 min with the cosines), with two other jobs on the two cores.

Sizes (`FIGURE.sizes`): smoke 2 seeds, 3 000 steps, cosine every 500 (seconds); quick 5 seeds,
40 000 steps, cosine every 250 (minutes); full 5 seeds, 100 000 steps, cosine every 50.

The figure: seed-averaged train/test loss (Fig. 5 left), accuracy (Fig. 7 left) and the cosine
(right) against log step, τ on top. Dataset over `seed` × `step`: losses, accuracies, ‖θ‖,
`cos`, the projection point's loss and residual norm (the flow's; GD's as `gd_<name>`), the
flow's `gradients` and `flow_steps` per seed; the marked steps are attributes (GD's as
`gd_<name>`).
"""

from __future__ import annotations

import json

import equinox as eqx
import numpy as np
import xarray as xr

from . import FigureExperiment
from ._common import caption, require_float64, require_in, require_multiple

FIGURE = FigureExperiment.from_toml(__name__)


def check(params) -> None:
    """Refuse parameter combinations the runs cannot use (a `ConfigError` naming the field)."""
    from ..experiments import ConfigError

    require_multiple(params, "every", "window")
    if params["every"] <= params["window"] or params["steps"] % params["every"]:
        raise ConfigError(
            f"figure.steps = {params['steps']} must be a multiple of figure.every = {params['every']} (> window)"
        )
    if params["seeds"] < 1:
        raise ConfigError(f"figure.seeds must be at least 1, got {params['seeds']}")
    require_in(params, "n_test", 0, params["p"] * (params["p"] + 1) // 2)  # the pairs a + b, a ≤ b
    require_in(params, "rtol", 0, 1)


def seed_problem(params, seed: int):
    """Musat's E2.4 problem for one seed: the split and PyTorch-style init both come from `seed`."""
    import jax

    from .. import models, tasks

    p, n_test = params["p"], params["n_test"]
    n_pairs = p * (p + 1) // 2
    key = jax.random.PRNGKey(seed)
    net = models.EmbeddingNet.init(p, params["hidden"], key=jax.random.fold_in(key, 1), init="torch")
    problem = tasks.modular_arithmetic(
        key, p=p, pairs="unordered", train_fraction=(n_pairs - n_test + 0.5) / n_pairs, loss="mse", model=net
    )
    if problem.test["x"].shape[0] != n_test:
        raise RuntimeError(f"the split has {problem.test['x'].shape[0]} test pairs, not {n_test}")
    return problem


def gflow_rates(params) -> tuple[float, float]:
    """(λ_g, η_g) of `gflow.gd` for PyTorch SGD(lr, weight_decay) on the mean MSE (F = ½·mean)."""
    return params["weight_decay"] / 2, 2 * params["lr"]


@eqx.filter_jit
def _alignments(problem, thetas, directions, lr_g: float, proj_steps: int, momentum: float):
    """cos(d_t, g̃_t), F(θ′_t) and ‖r(θ′_t)‖ for a batch of checkpoints (flat θ_t and directions of
    motion d_t: GD's Δθ_t = θ_t − θ_{t−c}, or the flow's θ(t) − θ(t − η_g·c))."""
    import jax
    import jax.numpy as jnp
    import optax
    from jax.flatten_util import ravel_pytree

    from .._slow import project_tangent

    params0, static = eqx.partition(problem.model, eqx.is_inexact_array)
    _, unravel = ravel_pytree(params0)
    opt = optax.sgd(lr_g, momentum=momentum)

    def loss(flat):
        return problem.loss(eqx.combine(unravel(flat), static), problem.train)

    def one(theta, d):
        def step(_, carry):
            p, s = carry
            u, s = opt.update(jax.grad(loss)(p), s, p)
            return optax.apply_updates(p, u), s

        theta_p, _ = jax.lax.fori_loop(0, proj_steps, step, (theta, opt.init(theta)))
        projected, _ = project_tangent(problem, eqx.combine(unravel(theta_p), static), unravel(-theta))
        g = ravel_pytree(projected)[0]
        cos = jnp.vdot(g, d) / (jnp.linalg.norm(g) * jnp.linalg.norm(d))
        resid = problem.residuals_fn(eqx.combine(unravel(theta_p), static), problem.train)
        return cos, loss(theta_p), jnp.linalg.norm(resid)

    return jax.vmap(one)(thetas, directions)


def run_seed(params, seed: int):
    """Train one network with one `gflow.gd` call saving θ every c steps; then the cosines at the checkpoints.

    Returns (metrics at steps 0, K, 2K, …; cos, F(θ′), ‖r(θ′)‖ at steps K, 2K, …)."""
    import jax
    from jax.flatten_util import ravel_pytree

    from .._gd import gd

    steps, every, window = params["steps"], params["every"], params["window"]
    problem = seed_problem(params, seed)
    lam_g, lr_g = gflow_rates(params)
    traj = gd(problem, lam_g, lr_g, steps, save_every=window, save_params=True)
    if traj.message != "successful":
        raise RuntimeError(f"seed {seed}: GD stopped ({traj.message})")
    # Save i is step i·c: checkpoint j (step jK) is save jK/c, and θ_{jK−c} the save before it.
    at = np.arange(1, steps // every + 1) * (every // window)
    flat = jax.vmap(lambda p: ravel_pytree(p)[0])(traj.params)
    cos, f_proj, r_proj = (
        np.asarray(a)
        for a in _alignments(
            problem, flat[at], flat[at] - flat[at - 1], lr_g, params["proj_steps"], params["proj_momentum"]
        )
    )
    rows = np.concatenate([[0], at])
    metrics = {k: np.asarray(v)[rows] for k, v in traj.metrics.items()}
    return metrics, cos, f_proj, r_proj


def run_seed_flow(params, seed: int):
    """The gradient flow of the same problem (`gflow.simulate`, solver "auto": Bosh3 through the
    ReLU kinks) to t = η_g·steps, θ saved at the checkpoints t_j = η_g·K·j and at t_j − η_g·c;
    the cosines between the flow's displacement over that window, Δθ_j = θ(t_j) − θ(t_j − η_g·c),
    and g̃ at θ(t_j): the window GD's Δθ spans in time.

    Not the velocity θ'(t_j) = −∇F − λθ itself: where the flow slides along ReLU kinks, the field
    jumps between the two sides of a kink and the motion is their average (a Filippov solution),
    so one evaluation of the field points far off the motion. Measured at the smoke size from step
    1500 on: cos of θ'(t_j) with g̃ 0.16–0.52 (rtol 1e-3, where the losses agree with GD's to 4
    digits), of the displacement 0.56–0.80 (rtol 1e-4), of GD's Δθ 0.56–0.80.

    Returns what `run_seed` returns, plus the flow's cost: (metrics, cos, F(θ′), ‖r(θ′)‖, stats)."""
    import jax
    from jax.flatten_util import ravel_pytree

    from .._simulate import simulate

    steps, every, window = params["steps"], params["every"], params["window"]
    problem = seed_problem(params, seed)
    lam_g, lr_g = gflow_rates(params)
    checkpoints = lr_g * every * np.arange(1, steps // every + 1)
    # saves 0, t_1 − η_g·c, t_1, t_2 − η_g·c, t_2, …: checkpoint j is save 2j, its window start save 2j − 1
    saveat = np.concatenate([[0.0], np.stack([checkpoints - lr_g * window, checkpoints], 1).ravel()])
    rtol = params["rtol"]
    traj = simulate(problem, lam_g, saveat[-1], saveat=saveat, save_params=True, rtol=rtol, atol=1e-2 * rtol)
    if not traj.ok:
        raise RuntimeError(f"seed {seed}: the flow stopped ({traj.message})")
    flat = jax.vmap(lambda p: ravel_pytree(p)[0])(traj.params)
    cos, f_proj, r_proj = (
        np.asarray(a)
        for a in _alignments(
            problem, flat[2::2], flat[2::2] - flat[1::2], lr_g, params["proj_steps"], params["proj_momentum"]
        )
    )
    metrics = {k: np.asarray(v)[::2] for k, v in traj.metrics.items()}
    stats = {"solver": traj.solver, **{k: int(v) for k, v in traj.stats.items() if np.ndim(v) == 0}}
    return metrics, cos, f_proj, r_proj, stats


def accuracy_window(steps, acc, low: float = 0.1, high: float = 0.9, *, start: float = 0.0) -> tuple[float, float]:
    """The steps (≥ `start`) from which `acc` stays at or above `low`, and above `high` (NaN if never).

    "Stays" makes the window robust to chance-level blips (1 of 7 test pairs right by luck).
    """

    def settled(th):
        ok = (acc >= th) & (steps >= start)
        below = np.nonzero(~ok)[0]
        i = below[-1] + 1 if below.size else 0
        return float(steps[i]) if i < len(steps) else float("nan")

    return settled(low), settled(high)


def markers(ds: xr.Dataset, prefix: str = "") -> dict:
    """The marked steps of one run (the flow: `prefix` ""; GD: "gd_"): memorisation (every seed
    at train accuracy 1), the 10%→90% window of the seed-mean test accuracy and of the fall of
    the seed-mean test loss after memorisation, and the peak of the seed-mean cosine."""
    step = ds["step"].values
    mean_cos = ds[f"{prefix}cos"].mean("seed").values
    mean_test = ds[f"{prefix}test_accuracy"].mean("seed").values
    memorised = ds[f"{prefix}train_accuracy"].min("seed").values >= 1.0
    step_mem = float(step[np.argmax(memorised)]) if memorised.any() else float("nan")
    lo, hi = accuracy_window(step, mean_test, start=step_mem)
    peak = float(step[np.nanargmax(mean_cos)])
    test_loss = ds[f"{prefix}test_loss"].mean("seed").values
    after = step >= step_mem
    i_top = np.argmax(np.where(after, test_loss, -np.inf))
    drop = test_loss[i_top] - test_loss[-1]
    lo_l, hi_l = accuracy_window(step, (test_loss[i_top] - test_loss) / drop, start=step[i_top])
    out = {
        "step_memorised": step_mem,
        "step_test_acc_10": lo,
        "step_test_acc_90": hi,
        "step_cos_peak": peak,
        "cos_peak": float(np.nanmax(mean_cos)),
        "peak_inside_window": int(lo <= peak <= hi),
        "step_test_loss_drop_10": lo_l,
        "step_test_loss_drop_90": hi_l,
    }
    return {f"{prefix}{k}": v for k, v in out.items()}


def measure(params, *, progress: bool = False, echo=print) -> xr.Dataset:
    """Every seed's gradient flow (`run_seed_flow`) and GD (`run_seed`), with the cosines at the
    checkpoints; returns one Dataset over (seed, step): the flow's variables under their names
    (at t = η_g·step), GD's as gd_<name>, and each run's marked steps as attributes."""
    import time

    require_float64(FIGURE.name)
    check(params)
    n_seeds, steps, every = params["seeds"], params["steps"], params["every"]
    lam_g, lr_g = gflow_rates(params)
    rate = params["lr"] * params["weight_decay"]  # τ per step
    p, n_test = params["p"], params["n_test"]
    echo(
        f"  E2.4: n = {p}, h = {params['hidden']}, {p * (p + 1) // 2 - n_test}/{n_test} split, "
        f"GD η = {params['lr']:g}, λ = {params['weight_decay']:g} "
        f"(gflow.gd lr = {lr_g:g}, lam = {lam_g:g}) and the flow to t = {lr_g * steps:g}; "
        f"{n_seeds} seeds, {steps} steps, cosine every {every}"
    )
    flows, gds, wall_flow, wall_gd = [], [], 0.0, 0.0
    for seed in range(n_seeds):
        start = time.perf_counter()
        flows.append(run_seed_flow(params, seed))
        wall_flow += time.perf_counter() - start
        start = time.perf_counter()
        gds.append(run_seed(params, seed))
        wall_gd += time.perf_counter() - start
        for name, (metrics, cos, _, r_proj, *rest) in (("flow", flows[-1]), ("GD", gds[-1])):
            cost = f", {rest[0]['num_gradient_equivalents']} gradients" if rest else f", {steps} steps"
            echo(
                f"  seed {seed} {name}: final train acc {metrics['train_accuracy'][-1]:.2f}, "
                f"test acc {metrics['test_accuracy'][-1]:.2f}, max cos {np.nanmax(cos):.3f}, "
                f"max ‖r(θ′)‖ {np.nanmax(r_proj):.1e}{cost}"
            )

    step = np.arange(steps // every + 1) * every
    pad = np.full((n_seeds, 1), np.nan)  # no cosine at step 0
    data = {}
    for prefix, runs in (("", flows), ("gd_", gds)):
        data.update({f"{prefix}{k}": (("seed", "step"), np.stack([r[0][k] for r in runs])) for k in runs[0][0]})
        for i, name in enumerate(("cos", "proj_train_loss", "proj_residual_norm")):
            data[f"{prefix}{name}"] = (("seed", "step"), np.concatenate([pad, np.stack([r[i + 1] for r in runs])], 1))
    data["gradients"] = ("seed", np.asarray([r[4]["num_gradient_equivalents"] for r in flows]))
    data["flow_steps"] = ("seed", np.asarray([r[4]["num_steps"] for r in flows]))
    coords = {"seed": np.arange(n_seeds), "step": step, "t": ("step", lr_g * step), "tau": ("step", rate * step)}
    ds = xr.Dataset(data, coords=coords)
    ds.attrs.update(
        params=json.dumps(params),
        setup=f"Musat E2.4 (papers.md A11): n = {p} unordered pairs, {n_test} test, h = {params['hidden']}, "
        f"no biases, torch init, PyTorch MSELoss (mean) with SGD(lr={params['lr']:g}, "
        f"weight_decay={params['weight_decay']:g}) = gflow.gd(lr={lr_g:g}, lam={lam_g:g}); the flow "
        f"dtheta/dt = -grad F - lam theta (gflow.simulate, solver auto) at t = {lr_g:g} * step",
        solver=f"{flows[0][4]['solver']}, rtol {params['rtol']:g}",
        window=params["window"],
        proj_steps=params["proj_steps"],
        proj_momentum=params["proj_momentum"],
        wall_flow_s=wall_flow,
        wall_gd_s=wall_gd,
        tau_convention="tau = lam_g * t = weight_decay * lr * step",
        **markers(ds),
        **markers(ds, "gd_"),
    )
    return ds


def summary(ds: xr.Dataset) -> list[tuple[str, str]]:
    """Per seed and run (the flow, GD): final accuracies, the largest cosine and projection
    residual; then for each run the memorisation step, the 10%→90% window of the mean test
    accuracy, and where the mean cosine peaks (A11); the flow's cost against GD's steps."""
    params = json.loads(ds.attrs["params"])
    rate = params["lr"] * params["weight_decay"]
    a = ds.attrs
    rows = [
        (
            f"the flow (gflow.simulate, solver auto -> {a['solver']}): gradient evaluations per seed",
            f"{', '.join(f'{int(g):,}' for g in ds['gradients'].values)} against GD's {params['steps']:,} steps "
            f"[{a['wall_flow_s']:.0f} s against {a['wall_gd_s']:.0f} s, cosines included]",
        )
    ]
    for seed in ds["seed"].values:
        s = ds.sel(seed=seed)
        for label, prefix in (("flow", ""), ("GD", "gd_")):
            rows.append(
                (
                    f"seed {int(seed)}, {label}",
                    f"final train acc {s[f'{prefix}train_accuracy'].values[-1]:.2f}, "
                    f"test acc {s[f'{prefix}test_accuracy'].values[-1]:.2f}, "
                    f"max cos {np.nanmax(s[f'{prefix}cos'].values):.3f}, "
                    f"max ‖r(θ′)‖ {np.nanmax(s[f'{prefix}proj_residual_norm'].values):.1e}",
                )
            )
    for label, prefix in (("flow", ""), ("GD", "gd_")):
        lo, hi = a[f"{prefix}step_test_acc_10"], a[f"{prefix}step_test_acc_90"]
        peak = a[f"{prefix}step_cos_peak"]
        rows.append((f"{label}: memorised (all seeds train acc 1) by step", f"{a[f'{prefix}step_memorised']:g}"))
        rows.append(
            (f"{label}: mean test acc 10% → 90%: steps", f"{lo:g} → {hi:g} (τ {rate * lo:.2f} → {rate * hi:.2f})")
        )
        rows.append(
            (
                f"{label}: mean cos: max",
                f"{a[f'{prefix}cos_peak']:.3f} at step {peak:g} (τ {rate * peak:.2f}), "
                f"{'inside' if a[f'{prefix}peak_inside_window'] else 'outside'} the 10%→90% accuracy window (A11)",
            )
        )
        rows.append(
            (
                f"{label}: mean test loss falls 10% → 90% of its post-memorisation drop: steps",
                f"{a[f'{prefix}step_test_loss_drop_10']:g} → {a[f'{prefix}step_test_loss_drop_90']:g}",
            )
        )
    return rows


def plot(ds: xr.Dataset):
    """Seed-averaged loss (Fig. 5 left), accuracy (Fig. 7 left) and the cosine of the direction of
    motion with g̃_t (right) against log step, τ on top: the flow's seeds thin and their mean
    thick, GD's mean as a wide faint band under it; the flow's memorisation, 10%→90% accuracy
    window and cosine peak marked."""
    import matplotlib
    import matplotlib.pyplot as plt

    params = json.loads(ds.attrs["params"])
    rate = params["lr"] * params["weight_decay"]  # τ per step

    step = ds["step"].values
    keep = step > 0
    x = step[keep]
    fig = plt.figure(figsize=(13, 5.2), layout="constrained")
    fig.get_layout_engine().set(rect=(0, 0.05, 1, 0.95))  # room for the two caption lines
    ax_loss, ax_acc, ax_cos = fig.subplots(1, 3)
    # PyTorch's MSELoss (mean over entries) = 2F in gflow's convention.
    for name, color, label in (("train_loss", "tab:blue", "train"), ("test_loss", "tab:red", "test")):
        vals = 2 * ds[name].values[:, keep]
        ax_loss.plot(x, vals.T, color=color, alpha=0.25, lw=0.8)
        ax_loss.plot(x, vals.mean(0), color=color, lw=2, label=f"{label} (mean of {vals.shape[0]})")
        ax_loss.plot(x, 2 * ds[f"gd_{name}"].values[:, keep].mean(0), color=color, lw=7, alpha=0.2)
        acc_name = name.replace("loss", "accuracy")
        acc = ds[acc_name].values[:, keep]
        ax_acc.plot(x, acc.T, color=color, alpha=0.25, lw=0.8)
        ax_acc.plot(x, acc.mean(0), color=color, lw=2, label=f"{label} accuracy (mean)")
        ax_acc.plot(x, ds[f"gd_{acc_name}"].values[:, keep].mean(0), color=color, lw=7, alpha=0.2)
    cos = ds["cos"].values[:, keep]
    ax_cos.plot(x, cos.T, color="tab:purple", alpha=0.25, lw=0.8)
    ax_cos.plot(x, np.nanmean(cos, 0), color="tab:purple", lw=2, label="flow: cos(Δθ_t, g̃_t), mean")
    gd_cos = np.nanmean(ds["gd_cos"].values[:, keep], 0)
    ax_cos.plot(x, gd_cos, color="tab:purple", lw=7, alpha=0.2, label="GD: cos(Δθ_t, g̃_t), mean")
    ax_cos.axhline(0, color="0.6", lw=0.8)
    ax_loss.set_yscale("log")
    ax_loss.set_ylabel("MSE (mean over entries, PyTorch convention)")
    ax_acc.set_ylabel("accuracy")
    ax_acc.set_ylim(-0.02, 1.02)
    ax_cos.set_ylabel("cosine similarity")
    lo, hi = ds.attrs["step_test_acc_10"], ds.attrs["step_test_acc_90"]
    for ax in (ax_loss, ax_acc, ax_cos):
        ax.set_xscale("log")
        ax.set_xlabel(f"GD step (η = {params['lr']:g}); the flow at t = {2 * params['lr']:g}·step")
        ax.grid(True, alpha=0.3)
        if np.isfinite(ds.attrs["step_memorised"]):
            ax.axvline(ds.attrs["step_memorised"], color="tab:blue", ls="--", lw=1)
        if np.isfinite(lo):
            ax.axvspan(lo, hi if np.isfinite(hi) else x[-1], color="tab:red", alpha=0.08)
        ax.axvline(ds.attrs["step_cos_peak"], color="tab:purple", ls=":", lw=1.2)
        top = ax.secondary_xaxis("top", functions=(lambda s: s * rate, lambda t: t / rate))
        top.set_xlabel("τ = λ·η·step (slow time)")
    handles = [
        plt.Line2D([], [], color="tab:blue", ls="--", label=f"memorised (step {ds.attrs['step_memorised']:g})"),
        matplotlib.patches.Patch(color="tab:red", alpha=0.15, label=f"mean test acc 10%→90% (steps {lo:g}–{hi:g})"),
        plt.Line2D(
            [],
            [],
            color="tab:purple",
            ls=":",
            label=f"max mean cos {ds.attrs['cos_peak']:.2f} (step {ds.attrs['step_cos_peak']:g})",
        ),
    ]
    ax_loss.legend(fontsize=8, loc="lower left")
    ax_acc.legend(fontsize=8, loc="center left")
    ax_cos.legend(handles=ax_cos.get_legend_handles_labels()[0] + handles, fontsize=7, loc="lower right")
    ax_loss.set_title("Fig. 5 left: average loss")
    ax_acc.set_title("Fig. 7 left: average accuracy")
    ax_cos.set_title("Figs. 5/7 right: cos(Δθ_t, g̃_t)")
    fig.suptitle(
        "Musat E2.4: after memorisation the weights move along the norm-minimising tangent direction of the "
        f"zero-loss set\nmod {params['p']}, h = {params['hidden']}, λ = {params['weight_decay']:g}. Lines: the "
        f"gradient flow ({ds.sizes['seed']} seeds thin, mean thick); faint bands: GD, η = {params['lr']:g} (mean)"
    )
    n_pairs = params["p"] * (params["p"] + 1) // 2
    caption(
        fig,
        f"Chosen unknowns: {n_pairs - params['n_test']}/{params['n_test']} split of the {n_pairs} unordered pairs "
        "(paper: 70/7 of '77'); PyTorch MSELoss (mean)\n"
        f"— the summed loss diverges at η = 1; flow: {ds.attrs['solver']}; Δθ over c = {params['window']} steps "
        f"(flow: over t = {2 * params['lr'] * params['window']:g}); "
        f"θ′ = {params['proj_steps']} GD steps (λ = 0, momentum {params['proj_momentum']:g}); "
        "g̃ = (I − J⁺J)(−θ_t) with J at θ′.",
        size=ds.attrs.get("size"),
    )
    return fig
