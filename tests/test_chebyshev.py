"""RKC and RKC1, the Runge–Kutta–Chebyshev solvers of order two and one (`solver="rkc"`,
`gflow.RKC`; `solver="rkc1"`, `gflow.RKC1`).

Checked here: the stability interval β(s) ≈ 0.653·s² and the damping of the stability polynomial;
R_s(z) = e^z + O(z³) (second order); second-order convergence with fixed steps on a stiff forced
linear flow against SciPy Radau (final state and dense output); the power method against
`numpy.linalg.eigvalsh`; agreement with SciPy Radau on a diagonal network and with DOP853 on a
leaky-ReLU neuron (a loss with kinks); exact work counters (a host callback in the loss); float32;
a vmapped sweep equal to a loop; a step cap that forces rejections; bad arguments refused.
RKC1: its stability interval β1(s) ≈ 1.94·s² and damping, first order (polynomial and fixed
steps), an error estimate that is the true local error to leading order, the leaky-ReLU neuron,
exact counters, and a solver object that gets its name's controller.
"""

from __future__ import annotations

import diffrax
import equinox as eqx
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate
import scipy.linalg
from test_nonsmooth_flows import neuron  # noqa: F401  (a module fixture: the leaky-ReLU reference)
from test_stiff import counted_solve, diag_problem, diag_reference, flat, rel_err

import gflow
from gflow import _chebyshev as chb
from gflow._rosenbrock import FlatField


def test_stability_interval_and_damping():
    for s in (2, 5, 10, 40, 200):
        beta = float(chb.stability_bound(s))
        if s >= 10:  # β(s) → (2/3)(1 − 2ε/15)·s² ≈ 0.653·s²
            assert beta == pytest.approx(0.653 * s**2, rel=0.02)
        z = np.linspace(-beta, 0.0, 4001)
        r = np.abs(np.asarray(chb.stability_polynomial(z, s)))
        assert r.max() <= 1.0 + 1e-9  # stable on the whole interval
        # damped where the Chebyshev argument w0 + w1·z is in [−1, 1] (all but z ≳ −0.05): there
        # |R| ≤ a_s + b_s, 0.964 at s = 2 and → 0.951 (≈ 1 − ε/3) for many stages
        w0 = 1 + chb.DAMPING / s**2
        _, ds, es = chb.chebyshev_at(jnp.asarray(w0), s)
        away = z <= (1 - w0) * float(es / ds)
        assert r[away].max() <= (0.965 if s < 10 else 0.952), (s, r[away].max())
        # and unstable not far past β(s): the stage rule must not overstate it
        beyond = np.linspace(-1.5 * beta, -beta, 200)
        assert np.abs(np.asarray(chb.stability_polynomial(beyond, s))).max() > 1.0
        # the stage rule keeps hρ inside the interval
        for h_rho in (0.5 * beta, beta, 3.0 * beta):
            s_rule, _ = chb.stage_count(jnp.asarray(h_rho), 10_000)
            assert float(chb.stability_bound(int(s_rule))) >= h_rho


def test_stability_polynomial_is_second_order():
    z = np.array([-1e-2, -2e-2, -4e-2])
    for s in (3, 17):
        err = np.abs(np.asarray(chb.stability_polynomial(z, s)) - np.exp(z))
        slope = np.polyfit(np.log(-z), np.log(err), 1)[0]
        assert abs(slope - 3.0) < 0.1, (s, slope, err)  # local error O(z³): order 2


def test_first_order_stability_interval_damping_and_stage_rule():
    for s in (1, 2, 5, 10, 40, 200):
        beta = float(chb.stability_bound(s, order=1))
        if s >= 2:  # β1(s) → (2 − 4ε/3)·s² ≈ 1.93·s² at ε = 0.05: three times RKC's 0.653·s²
            assert 1.93 * s**2 <= beta <= 1.95 * s**2
        z = np.linspace(-beta, 0.0, 4001)
        r = np.abs(np.asarray(chb.stability_polynomial(z, s, order=1)))
        assert r.max() <= 1.0 + 1e-9
        # damped by 1/T_s(w0) ≈ 0.95 wherever w0 + w1·z is in [−1, 1] (for s ≥ 2)
        w0 = 1 + chb.DAMPING_FIRST_ORDER / s**2
        ts, ds, _ = chb.chebyshev_at(jnp.asarray(w0), s)
        away = z <= (1 - w0) * float(ds / ts)  # (1 − w0)/w1
        assert r[away].max() <= 1.0 / float(ts) + 1e-12 and (s == 1 or r[away].max() <= 0.953)
        beyond = np.linspace(-1.5 * beta, -1.001 * beta, 200)
        assert np.abs(np.asarray(chb.stability_polynomial(beyond, s, order=1))).max() > 1.0
        for h_rho in (0.3 * beta, beta, 3.0 * beta):
            s_rule, _ = chb.stage_count(jnp.asarray(h_rho), 10_000, order=1)
            assert float(chb.stability_bound(int(s_rule), order=1)) >= h_rho
            # and about 0.58 times the stages RKC takes for the same step
            s_rkc, _ = chb.stage_count(jnp.asarray(h_rho), 10_000)
            assert int(s_rule) <= 0.62 * int(s_rkc) + 1
    # small steps: one stage (explicit Euler), where RKC takes two
    assert int(chb.stage_count(jnp.asarray(0.5), 100, order=1)[0]) == 1


def test_first_order_stability_polynomial_and_error_estimate():
    """R_s(z) = e^z + O(z²); and RKC1's error estimate θ_{n+1} − θ_n − (h/2)(f_n + f_{n+1}) is the
    step's true local error to leading order (the trapezoidal rule is one order higher): on a
    smooth linear flow their ratio → 1 as h → 0, its distance from 1 halving with h."""
    z = np.array([-1e-2, -2e-2, -4e-2])
    for s in (3, 17):
        err = np.abs(np.asarray(chb.stability_polynomial(z, s, order=1)) - np.exp(z))
        slope = np.polyfit(np.log(-z), np.log(err), 1)[0]
        assert abs(slope - 2.0) < 0.1, (s, slope, err)
    rng = np.random.default_rng(3)
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    a = q @ np.diag([0.5, 1.0, 2.0, 5.0, 20.0, 40.0]) @ q.T
    term = diffrax.ODETerm(lambda t, y, args: -(jnp.asarray(a) @ y))
    y0 = jnp.asarray(rng.normal(size=6))
    solver = gflow.RKC1()
    state = solver.init(term, 0.0, 1.0, y0, None)
    ratios = []
    for h in (0.01, 0.005, 0.0025):
        y1, (error, _), _, _, _ = solver.step(term, 0.0, h, y0, None, state, False)
        exact = scipy.linalg.expm(-a * h) @ np.asarray(y0)
        ratios.append(np.linalg.norm(np.asarray(error)) / np.linalg.norm(np.asarray(y1) - exact))
    off = np.abs(np.array(ratios) - 1.0)
    assert off[-1] < 0.05 and np.all((off[:-1] / off[1:] > 1.8) & (off[:-1] / off[1:] < 2.2)), ratios


def _fixed_step_run(term, y0, t1, n, save_ts, solver=None):
    sol = diffrax.diffeqsolve(
        term,
        gflow.RKC() if solver is None else solver,
        0.0,
        t1,
        t1 / n,
        y0,
        saveat=diffrax.SaveAt(ts=save_ts),
        stepsize_controller=diffrax.ConstantStepSize(),
        max_steps=10 * n,
    )
    return sol.ys


@pytest.mark.parametrize("order", [2, 1])
def test_order_with_fixed_steps_on_a_stiff_forced_flow(order):
    """y' = −A(y − g(t)) with A's eigenvalues from 0.5 to 1000 and g(t) = sin(t + k): the stiff
    components sit at a moving equilibrium (as they do in a gradient flow's slow phase) and steps
    reach hρ = 100 … 12.5 (13 … 5 stages), far past explicit stability. Exercises the stage times
    too (the field depends on t). Reference: SciPy Radau at rtol 1e-12."""
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    a = q @ np.diag([0.5, 1.0, 2.0, 3.0, 50.0, 200.0, 600.0, 1000.0]) @ q.T
    phase = np.arange(8.0)
    g, dg = (lambda t: np.sin(t + phase)), (lambda t: np.cos(t + phase))
    y0, t1 = g(0.0) - np.linalg.solve(a, dg(0.0)), 2.0  # on the slow manifold, up to O(g''/μ²)
    ref = scipy.integrate.solve_ivp(
        lambda t, y: -a @ (y - g(t)), (0.0, t1), y0, method="Radau", rtol=1e-12, atol=1e-14, dense_output=True
    )
    aj, pj = jnp.asarray(a), jnp.asarray(phase)
    term = diffrax.ODETerm(lambda t, y, args: -(aj @ (y - jnp.sin(t + pj))))
    ns = np.array([20, 40, 80, 160])
    errs = []
    for n in ns:
        save_ts = np.array([t1 * (n // 2 + 0.5) / n, t1])  # mid-step: the dense output too
        solver = gflow.RKC() if order == 2 else gflow.RKC1()
        ys = np.asarray(_fixed_step_run(term, jnp.asarray(y0), t1, int(n), jnp.asarray(save_ts), solver))
        errs.append([np.abs(ys[i] - ref.sol(t)).max() for i, t in enumerate(save_ts)])
    errs = np.array(errs)
    for k in (0, 1):
        slope = -np.polyfit(np.log(ns), np.log(errs[:, k]), 1)[0]
        assert abs(slope - order) <= 0.3, (k, slope, errs[:, k])
    assert errs[-1].max() < (1e-4 if order == 2 else 1e-2)


def test_power_method_finds_the_spectral_radius():
    rng = np.random.default_rng(1)
    m = rng.normal(size=(30, 30))
    a = m @ m.T + np.eye(30)
    term = diffrax.ODETerm(lambda t, y, args: -(jnp.asarray(a) @ y))
    y0 = jnp.asarray(rng.normal(size=30))
    f0, v, rho = gflow.RKC(initial_power_iterations=200).init(term, 0.0, 1.0, y0, None)
    np.testing.assert_allclose(np.asarray(f0), -a @ np.asarray(y0), rtol=1e-12)
    top = np.linalg.eigvalsh(a)[-1]
    assert float(rho) == pytest.approx(top, rel=1e-3)
    assert float(rho) <= top * (1 + 1e-12)  # from below: why the solver multiplies by `safety`
    field = FlatField(term, 0.0, None, lambda x: x)
    _, rho_more = chb.power_iterations(field, y0, v, 5)
    assert float(rho_more) == pytest.approx(top, rel=1e-4)


@pytest.mark.parametrize("case", ["slow_time", "decay_mask"])
def test_diagonal_network_matches_radau(case):
    lam = 0.02
    masked = case == "decay_mask"
    problem = diag_problem(masked)
    tight = {"rtol": 1e-10, "atol": 1e-12}
    if case == "slow_time":
        traj = gflow.simulate(problem, lam, 4.0, solver="rkc", time="slow", saveat=30, **tight)
        t_save = np.asarray(traj.ts) / lam
    else:
        traj = gflow.simulate(problem, lam, 200.0, solver="rkc", saveat=30, **tight)
        t_save = np.asarray(traj.ts)
    assert bool(traj.ok), traj.message
    assert traj.solver == "rkc"
    zs, mask = diag_reference(problem, lam, t_save[-1], t_save, masked)
    assert rel_err(flat(traj.final), zs[-1]) <= 1e-6
    assert rel_err(zs[0], zs[-1]) > 0.1  # the flow moved
    np.testing.assert_allclose(np.asarray(traj.metrics["norm"]), np.linalg.norm(mask * zs, axis=1), rtol=1e-6)


def test_error_falls_with_the_tolerance_and_the_stages_rise_with_the_stiffness():
    problem = gflow.tasks.linear_regression(0, n=20, d=40, n_test=20)
    ref = gflow.simulate(problem, 1e-3, 3000.0, solver="ros34pw2", rtol=1e-12, atol=1e-14, saveat=3)
    errors, per_step, runs = [], [], {}
    for rtol in (1e-4, 1e-6, 1e-8):
        traj = runs[rtol] = gflow.simulate(problem, 1e-3, 3000.0, solver="rkc", rtol=rtol, atol=rtol * 1e-2, saveat=3)
        assert bool(traj.ok), traj.message
        errors.append(rel_err(flat(traj.final), flat(ref.final)))
        per_step.append(int(traj.stats["num_vf_evals"]) / int(traj.stats["num_steps"]))
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] <= 1e-5
    # A looser tolerance takes longer steps over the same spectrum, hence more stages per step.
    assert per_step[0] > per_step[1] > per_step[2]
    # Far fewer gradients than Tsit5, which is held to ≈ 3.3/ρ per step by stability.
    tsit = gflow.simulate(problem, 1e-3, 3000.0, solver="tsit5", rtol=1e-6, atol=1e-8, saveat=3)
    assert int(runs[1e-6].stats["num_gradient_equivalents"]) * 3 < int(tsit.stats["num_gradient_equivalents"])


@pytest.mark.parametrize("name", ["rkc", "rkc1"])
def test_evaluation_counters_are_exact(name):
    """A host callback in the loss counts every forward pass: one per gradient (num_vf_evals)
    and one per Hessian–vector product of the power method (num_hvps)."""
    calls = []
    base = gflow.tasks.diagonal_regression(2, n=6, d=10, k=2, parameterisation="squares", alpha=2.0, n_test=5)

    def residuals(model, data):
        jax.debug.callback(lambda: calls.append(1))
        return jax.vmap(model)(data["x"]) - data["y"]

    problem = gflow.Problem(base.model, base.train, residuals=residuals)
    lam, t1 = jnp.asarray(0.05), 40.0
    solver = gflow.RKC() if name == "rkc" else gflow.RKC1()
    sol, counts = counted_solve(problem, solver, lam, t1)
    steps = int(sol.stats["num_steps"])
    assert int(sol.stats["num_rejected_steps"]) > 0
    assert counts["num_hvps"] == steps * solver.power_iterations
    assert counts["num_vf_evals"] >= (2 if name == "rkc" else 1) * steps  # RKC: two stages at least
    assert counts["num_jvps"] == counts["num_vjps"] == counts["num_krylov_iterations"] == 0
    startup = solver.startup_counts()
    assert len(calls) == startup["num_vf_evals"] + startup["num_hvps"] + counts["num_vf_evals"] + counts["num_hvps"]

    traj = gflow.simulate(problem, lam, t1, solver=name, saveat=5, rtol=1e-7, atol=1e-9)
    s = {k: int(v) for k, v in traj.stats.items()}
    assert s["num_hvps"] == startup["num_hvps"] + s["num_steps"]
    assert s["num_gradient_equivalents"] == s["num_vf_evals"] + 2 * s["num_hvps"]


@pytest.mark.parametrize("name", ["rkc", "rkc1"])
def test_leaky_relu_neuron_converges_to_dop853(neuron, name):  # noqa: F811
    problem, w_ref, loss_ref = neuron
    errors = []
    for rtol in (1e-4, 1e-6):
        traj = gflow.simulate(
            problem, 1e-2, 200.0, solver=name, rtol=rtol, atol=rtol * 1e-2, saveat=np.linspace(0, 200, 41)
        )
        assert bool(traj.ok), traj.message
        errors.append(float(np.linalg.norm(np.asarray(traj.final.w) - w_ref) / np.linalg.norm(w_ref)))
        # the loss falls 500-fold: its error is relative to its start
        np.testing.assert_allclose(np.asarray(traj.metrics["train_loss"]), loss_ref, atol=100 * rtol * loss_ref[0])
    assert errors[1] < errors[0] / 10 and errors[1] <= 1e-4


def test_float32_run_keeps_its_dtype_and_accuracy():
    p64 = gflow.tasks.linear_regression(0, n=20, d=40, n_test=20)
    to32 = lambda tree: jax.tree.map(lambda x: x.astype(jnp.float32) if eqx.is_inexact_array(x) else x, tree)
    p32 = gflow.Problem(to32(p64.model), to32(p64.train), loss="mse")
    traj = gflow.simulate(p32, 1e-3, 3000.0, solver="rkc", saveat=5)
    assert bool(traj.ok), traj.message
    assert jax.tree.leaves(traj.final)[0].dtype == jnp.float32
    # saveat=3: the reference solve compiled by the tolerance test above (the final state is compared).
    ref = gflow.simulate(p64, 1e-3, 3000.0, solver="ros34pw2", rtol=1e-10, atol=1e-12, saveat=3)
    assert rel_err(flat(traj.final), flat(ref.final)) <= 1e-3


def test_a_stage_cap_forces_shorter_steps_but_keeps_the_answer():
    problem = gflow.tasks.linear_regression(0, n=20, d=40, n_test=20)
    free = gflow.simulate(problem, 1e-3, 3000.0, solver="rkc", rtol=1e-5, atol=1e-7, saveat=3)
    capped = gflow.simulate(problem, 1e-3, 3000.0, solver=gflow.RKC(max_stages=4), rtol=1e-5, atol=1e-7, saveat=3)
    assert bool(free.ok) and bool(capped.ok)
    assert capped.solver == "RKC"
    # β(4) ≈ 9: steps at most ≈ 9/ρ, so many more of them, several rejected for stability
    assert int(capped.stats["num_steps"]) > 2 * int(free.stats["num_steps"])
    assert int(capped.stats["num_rejected_steps"]) > int(free.stats["num_rejected_steps"])
    assert rel_err(flat(capped.final), flat(free.final)) <= 1e-4


def test_sweep_with_rkc_equals_loop():
    def make(key, alpha):
        return gflow.tasks.diagonal_regression(key, n=5, d=8, k=2, alpha=alpha, parameterisation="squares", n_test=10)

    options = {"rtol": 1e-9, "atol": 1e-11}
    ds = gflow.sweep(
        make, lam=[0.05, 0.2], seed=[0], alpha=[1.0, 3.0], t1=3.0, solver="rkc", saveat=8, progress=False, **options
    )
    for lam in (0.05, 0.2):
        for alpha in (1.0, 3.0):
            traj = gflow.simulate(
                make(jax.random.PRNGKey(0), alpha),
                lam,
                3.0,
                solver="rkc",
                time="slow",
                saveat=ds["time"].values,
                **options,
            )
            member = ds.sel(lam=lam, seed=0, alpha=alpha)
            np.testing.assert_allclose(member["test_loss"].values, np.asarray(traj.metrics["test_loss"]), rtol=1e-8)
            assert int(member["stats_num_vf_evals"]) == int(traj.stats["num_vf_evals"])


@pytest.mark.parametrize(
    "kwargs, message",
    [({"max_stages": 1}, "max_stages"), ({"damping": 1.5}, "damping"), ({"safety": 0.5}, "safety")],
)
def test_bad_arguments_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        gflow.RKC(**kwargs)
    if "max_stages" in kwargs:  # RKC1 takes one stage (explicit Euler), not none
        gflow.RKC1(max_stages=1)
        kwargs = {"max_stages": 0}
    with pytest.raises(ValueError, match="RKC1 .*" + message):
        gflow.RKC1(**kwargs)


def test_registered_for_simulate_and_the_command_line():
    assert "rkc" in gflow.SOLVER_NAMES and "rkc1" in gflow.SOLVER_NAMES
    problem = gflow.tasks.musat_addition(0)
    traj = gflow.simulate(problem, 0.1, 5.0, solver="rkc", saveat=5)
    assert bool(traj.ok) and traj.solver == "rkc"
    assert int(traj.stats["num_hvps"]) > 0
    # RKC1 by name and as an object: the same steps, so the object gets the name's
    # proportional–integral controller (its own default would be Diffrax's integral one).
    loose = {"rtol": 1e-5, "atol": 1e-7}  # tighter than its default 1e-3, so that many steps tell the controllers apart
    by_name = gflow.simulate(problem, 0.1, 5.0, solver="rkc1", saveat=5, **loose)
    by_object = gflow.simulate(problem, 0.1, 5.0, solver=gflow.RKC1(), saveat=5, **loose)
    assert bool(by_name.ok) and by_name.solver == "rkc1" and by_object.solver == "RKC1"
    assert {k: int(v) for k, v in by_name.stats.items() if k.startswith("num_")} == {
        k: int(v) for k, v in by_object.stats.items() if k.startswith("num_")
    }
    np.testing.assert_allclose(flat(by_name.final), flat(by_object.final), rtol=1e-12)
    # Without tolerances RKC1 runs at the kink path's 1e-3/1e-5, not the smooth 1e-8/1e-10 (where
    # this run takes 3·10⁴ steps): the same steps as those given explicitly.
    default = gflow.simulate(problem, 0.1, 5.0, solver=gflow.RKC1(), saveat=5)
    given = gflow.simulate(problem, 0.1, 5.0, solver="rkc1", saveat=5, rtol=1e-3, atol=1e-5)
    assert bool(default.ok) and int(default.stats["num_steps"]) == int(given.stats["num_steps"]) < 1000


def test_auto_takes_rkc_where_rosenbrock_would_need_conjugate_gradients():
    """Many outputs on a squared loss (300 residuals, 600 parameters: no Woodbury, no dense W):
    `"auto"` takes RKC, and its answer matches the closed form θ(t) = θ* + e^{−(H+λI)t}(θ0 − θ*)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 600))
    y = x @ rng.normal(size=600) / 25.0
    theta0 = rng.normal(size=600)
    problem = gflow.Problem(
        gflow.models.Linear(jnp.asarray(theta0)), {"x": jnp.asarray(x), "y": jnp.asarray(y)}, loss="mse"
    )
    lam, t1 = 1e-3, 5e3
    name, sharp = gflow.choose_solver(problem, lam, t1)
    assert name == "rkc" and (sharp + lam) * t1 > 2e4
    traj = gflow.simulate(problem, lam, t1, saveat=3, rtol=1e-8, atol=1e-10)
    assert traj.solver == "rkc" and bool(traj.ok), traj.message
    h, b = x.T @ x / 300, x.T @ y / 300
    evals, evecs = np.linalg.eigh(h + lam * np.eye(600))
    star = evecs @ ((evecs.T @ b) / evals)
    exact = star + evecs @ (np.exp(-evals * t1) * (evecs.T @ (theta0 - star)))
    # (‖θ‖ has fallen tenfold from θ0 by t1: the error is relative to the smaller final state)
    assert rel_err(flat(traj.final), exact) <= 1e-5
    # A few outputs on the same model: the factored (Woodbury) W-matrix, so ROS34PW2.
    few = gflow.Problem(problem.model, {"x": jnp.asarray(x[:20]), "y": jnp.asarray(y[:20])}, loss="mse")
    assert gflow.choose_solver(few, lam, t1)[0] == "ros34pw2"


def test_auto_weighs_rkc_stages_against_the_woodbury_factor():
    """With a factored (Woodbury) W-matrix over N outputs, `"auto"` takes RKC when
    sharpness(θ0) + λ ≤ AUTO_RKC_SHARPNESS_PER_OUTPUT_SQUARED·(N + 4)² and ROS34PW2 above it, and
    Tsit5 at a stiffness ratio ≤ AUTO_STIFFNESS: the suite's matrix completion (sharpness 10,
    N = 80, where RKC took 2.4–5× less wall time than ROS34PW2) and diagonal network
    (sharpness 388, N = 20, where ROS34PW2 was 2–22× faster). The RKC solve it picks matches
    Tsit5 at rtol 1e-11."""
    from gflow._rosenbrock import num_outputs
    from gflow._simulate import AUTO_RKC_SHARPNESS_PER_OUTPUT_SQUARED, AUTO_STIFFNESS

    completion = gflow.tasks.multiplication_table(0, d=20, fraction=0.2, alpha=10.0)
    n = num_outputs(completion)
    name, sharp = gflow.choose_solver(completion, 1e-2, 2e3)
    assert n == 80 and sharp == pytest.approx(10.0, rel=1e-3)
    assert name == "rkc" and (sharp + 1e-2) * 2e3 > AUTO_STIFFNESS
    assert sharp < AUTO_RKC_SHARPNESS_PER_OUTPUT_SQUARED * (n + 4) ** 2
    # A shorter horizon at the same λ is below the stiffness threshold: Tsit5.
    assert gflow.choose_solver(completion, 1e-2, 1e3)[0] == "tsit5"
    diagonal = gflow.tasks.diagonal_regression(0, n=20, d=50, k=5, alpha=3.0, parameterisation="squares")
    name, sharp = gflow.choose_solver(diagonal, 1e-3, 1e4)
    assert name == "ros34pw2" and sharp > AUTO_RKC_SHARPNESS_PER_OUTPUT_SQUARED * (num_outputs(diagonal) + 4) ** 2
    traj = gflow.simulate(completion, 1e-2, 2e3, saveat=5, rtol=1e-8, atol=1e-10)
    assert traj.solver == "rkc" and bool(traj.ok), traj.message
    tight = gflow.simulate(completion, 1e-2, 2e3, solver="tsit5", saveat=5, rtol=1e-11, atol=1e-13)
    assert rel_err(flat(traj.final), flat(tight.final)) <= 1e-6
