"""The habits researchers bring: masks in every form, frozen parameters, stopping on a metric,
continuing a run, logging callbacks, counting parameters, and no recompilation for a new
Problem of the same shapes, whoever built it (issue 13).

Models are `eqx.nn` modules wherever possible; references are independent (a run in one piece,
a hand-computed objective, the compiled-function cache).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np
import pytest

import gflow

LAM = 1e-2


def _teacher_student(seed=0, n=24, width=12, activation=jnp.tanh, loss="mse"):
    key = jax.random.PRNGKey(seed)
    kx, kt, ks = jax.random.split(key, 3)
    x = jax.random.normal(kx, (n, 3))
    teacher = eqx.nn.MLP(3, "scalar", 6, 1, activation=jnp.tanh, key=kt)
    y = jax.vmap(teacher)(x)
    student = eqx.nn.MLP(3, "scalar", width, 2, activation=activation, key=ks)
    return student, {"x": x, "y": y}


def _flat(model):
    return np.concatenate([np.ravel(np.asarray(x)) for x in jtu.tree_leaves(eqx.filter(model, eqx.is_inexact_array))])


def _last_bias_off(model):
    bools = jax.tree.map(lambda _: True, model)
    return eqx.tree_at(lambda m: m.layers[-1].bias, bools, False)


# -- decay_mask and trainable: three forms each ---------------------------------------------------


def test_decay_mask_in_all_three_forms_gives_the_same_flow():
    model, data = _teacher_student()
    as_tree = gflow.Problem(model, data, loss="mse", decay_mask=_last_bias_off(model))
    as_function = gflow.Problem(model, data, loss="mse", decay_mask=_last_bias_off)
    everywhere = gflow.Problem(model, data, loss="mse", decay_mask=None)
    n = len(everywhere.decay_leaves)
    assert everywhere.decay_leaves == (True,) * n
    assert as_tree.decay_leaves == as_function.decay_leaves == (True,) * (n - 1) + (False,)
    # The objective carries (λ/2)‖m⊙θ‖² over the decayed leaves only.
    params = as_tree.params
    sq = sum(float(jnp.sum(x**2)) for x in jtu.tree_leaves(params)) - float(jnp.sum(model.layers[-1].bias ** 2))
    f = float(as_tree.loss(model, data))
    np.testing.assert_allclose(float(as_tree.objective(model, 0.3)), f + 0.15 * sq, rtol=1e-13)
    kw = {"solver": "tsit5", "saveat": 5}
    a = gflow.simulate(as_tree, 0.5, 5.0, **kw)
    b = gflow.simulate(as_function, 0.5, 5.0, **kw)
    c = gflow.simulate(everywhere, 0.5, 5.0, **kw)
    np.testing.assert_array_equal(_flat(a.final), _flat(b.final))
    # The undecayed bias ends elsewhere than the decayed one.
    assert abs(float(a.final.layers[-1].bias[0]) - float(c.final.layers[-1].bias[0])) > 1e-4


def test_a_prefix_mask_covers_every_array_beneath_it():
    model, data = _teacher_student()
    bools = eqx.tree_at(lambda m: m.layers[0], jax.tree.map(lambda _: True, model), False)
    problem = gflow.Problem(model, data, loss="mse", decay_mask=bools)
    assert problem.decay_leaves == (False, False, True, True, True, True)


def test_a_malformed_mask_is_refused_in_one_line():
    model, data = _teacher_student()
    with pytest.raises(gflow.ProblemError, match="decay_mask must have the structure of the model") as err:
        gflow.Problem(model, data, loss="mse", decay_mask=[True, False])
    assert "\n" not in str(err.value)
    with pytest.raises(gflow.ProblemError, match="trainable must hold a bool"):
        gflow.Problem(model, data, loss="mse", trainable=jax.tree.map(lambda _: "yes", model))
    with pytest.raises(gflow.ProblemError, match="nothing to integrate"):
        gflow.Problem(model, data, loss="mse", trainable=lambda m: False)


def _first_layer_frozen(model):
    return eqx.tree_at(lambda m: m.layers[0], jax.tree.map(lambda _: True, model), False)


@pytest.mark.parametrize("form", ["tree", "function"])
def test_frozen_layer_stays_bit_identical_and_is_not_counted(form):
    model, data = _teacher_student()
    trainable = _first_layer_frozen(model) if form == "tree" else _first_layer_frozen
    problem = gflow.Problem(model, data, loss="mse", trainable=trainable)
    n_frozen = model.layers[0].weight.size + model.layers[0].bias.size
    assert gflow.count_params(problem) == gflow.count_params(model) - n_frozen
    traj = gflow.simulate(problem, 0.2, 10.0, solver="tsit5", saveat=4)
    assert bool(traj.ok)
    assert np.array_equal(np.asarray(traj.final.layers[0].weight), np.asarray(model.layers[0].weight))
    assert np.array_equal(np.asarray(traj.final.layers[0].bias), np.asarray(model.layers[0].bias))
    assert not np.array_equal(np.asarray(traj.final.layers[1].weight), np.asarray(model.layers[1].weight))
    # norm counts the trainable (decayed) arrays only.
    trainable_sq = sum(float(jnp.sum(x**2)) for x in jtu.tree_leaves(problem.params))
    np.testing.assert_allclose(float(traj.metrics["norm"][0]), np.sqrt(trainable_sq), rtol=1e-13)


def test_frozen_layer_flow_equals_the_flow_of_a_model_without_that_layer_as_parameters():
    """Reference: the same flow written by hand with the first layer closed over as a constant."""
    model, data = _teacher_student()
    problem = gflow.Problem(model, data, loss="mse", trainable=_first_layer_frozen)
    first = model.layers[0]

    class Tail(eqx.Module):
        layers: tuple

        def __call__(self, x):
            h = jnp.tanh(first(x))
            h = jnp.tanh(self.layers[0](h))
            return self.layers[1](h)

    reference = gflow.Problem(Tail((model.layers[1], model.layers[2])), data, loss="mse")
    kw = {"solver": "tsit5", "saveat": 4, "rtol": 1e-10, "atol": 1e-12}
    a = gflow.simulate(problem, 0.1, 8.0, **kw)
    b = gflow.simulate(reference, 0.1, 8.0, **kw)
    np.testing.assert_allclose(np.asarray(a.final.layers[1].weight), np.asarray(b.final.layers[0].weight), rtol=1e-9)
    np.testing.assert_allclose(np.asarray(a.metrics["train_loss"]), np.asarray(b.metrics["train_loss"]), rtol=1e-9)


# -- count_params ----------------------------------------------------------------------------------


def test_count_params_counts_parameters_not_data():
    model, data = _teacher_student()
    problem = gflow.Problem(model, data, loss="mse", test=data)
    expected = sum(x.size for x in jtu.tree_leaves(eqx.filter(model, eqx.is_inexact_array)))
    assert gflow.count_params(model) == expected
    assert gflow.count_params(problem) == expected


def test_plot_and_analysis_are_attributes_of_gflow():
    assert callable(gflow.plot.plot_trajectory)
    assert callable(gflow.analysis.phase_times)


# -- stop ------------------------------------------------------------------------------------------


def test_stop_ends_the_run_where_the_metric_crosses():
    model, data = _teacher_student()
    problem = gflow.Problem(model, data, loss="mse")
    full = gflow.simulate(problem, LAM, 50.0, solver="tsit5", saveat=np.linspace(0.0, 50.0, 2001))
    threshold = 0.5 * float(full.metrics["train_loss"][0])
    stopped = gflow.simulate(problem, LAM, 50.0, solver="tsit5", stop={"train_loss": ("<=", threshold)})
    assert bool(stopped.ok)
    assert stopped.stop_reason == f"train_loss <= {threshold:g}"
    assert "stopped at t =" in stopped.message and "train_loss <=" in stopped.message
    t_stop = float(stopped.t_final)
    # The crossing time of the full run: the first point of its dense grid (spacing 0.025) past it.
    crossing = float(gflow.analysis.crossing_time(full.t, full.metrics["train_loss"], threshold))
    assert crossing - 0.025 <= t_stop
    loss_at_stop = np.interp(t_stop, np.asarray(full.t), np.asarray(full.metrics["train_loss"]))
    assert loss_at_stop <= threshold
    assert loss_at_stop > 0.9 * threshold  # stopped at the first step past the crossing
    # Saves after the stop are NaN; the final state satisfies the condition.
    after = np.asarray(stopped.ts) > t_stop
    assert after.any() and np.all(np.isnan(np.asarray(stopped.metrics["train_loss"])[after]))
    assert float(problem.loss(stopped.final, data)) <= threshold


def test_stop_on_test_accuracy_of_a_classifier_and_the_reason_among_several():
    key = jax.random.PRNGKey(3)
    x = jax.random.normal(key, (40, 2))
    labels = (x[:, 0] > 0).astype(jnp.int32)
    model = eqx.nn.MLP(2, 2, 8, 1, activation=jax.nn.gelu, key=jax.random.PRNGKey(4))
    data = {"x": x, "y": labels}
    problem = gflow.Problem(model, data, loss="cross_entropy", test=data)
    stop = {"test_accuracy": (">=", 0.95), "train_loss": ("<", 1e-6)}
    traj = gflow.simulate(problem, LAM, 1e3, solver="tsit5", stop=stop)
    assert bool(traj.ok) and float(traj.t_final) < 1e3
    assert traj.stop_reason == "test_accuracy >= 0.95"
    assert float(gflow._problem.argmax_accuracy(traj.final, data)) >= 0.95


def test_stop_is_refused_clearly_when_malformed():
    model, data = _teacher_student()
    problem = gflow.Problem(model, data, loss="mse")
    cases = [
        ({"test_accuracy": (">=", 0.9)}, "unknown metric 'test_accuracy'"),
        ({"train_loss": ("=>", 0.1)}, "must be \\(op, value\\)"),
        ({"train_loss": ("<=", "small")}, "threshold must be a real number"),
        ({"train_loss": ("<=", float("nan"))}, "threshold must be finite"),
        ([("train_loss", "<=", 0.1)], "stop must be a dict"),
    ]
    for stop, message in cases:
        with pytest.raises(gflow.ProblemError, match=message):
            gflow.simulate(problem, LAM, 1.0, solver="tsit5", stop=stop)


def test_stop_works_per_member_of_a_sweep():
    def make_problem(key):
        model, data = _teacher_student()
        return gflow.Problem(model, data, loss="mse")

    problem = make_problem(None)
    # saveat=5: the solve test_decay_mask_in_all_three_forms_gives_the_same_flow compiled (no new compile).
    norm0 = float(gflow.simulate(problem, 1.0, 1.0, solver="tsit5", saveat=5).metrics["norm"][0])
    stop = {"norm": ("<=", 0.5 * norm0)}
    ds = gflow.sweep(
        make_problem, lam=[1e-2, 1.0], t1=20.0, time="fast", solver="tsit5", saveat=6, stop=stop, progress=False
    )
    stopped_by = ds["stopped_by"].values.ravel()
    t_final = ds["t_final"].values.ravel()
    # Weight decay λ = 1 halves the norm within t ≈ ln 2 and stops; λ = 1e-2 runs on to t1.
    assert stopped_by.tolist() == [-1, 0]
    assert t_final[0] == pytest.approx(20.0) and t_final[1] < 2.0
    alone = gflow.simulate(problem, 1.0, 20.0, solver="tsit5", stop=stop)
    np.testing.assert_allclose(t_final[1], float(alone.t_final), rtol=1e-6)


# -- continuing ------------------------------------------------------------------------------------


def test_a_run_continued_in_two_pieces_equals_one_run():
    model, data = _teacher_student()
    problem = gflow.Problem(model, data, loss="mse", test=data)
    kw = {"solver": "tsit5", "rtol": 1e-10, "atol": 1e-12}
    whole = gflow.simulate(problem, LAM, 200.0, **kw)
    first = gflow.simulate(problem, LAM, 20.0, **kw)
    joined = gflow.simulate(problem, LAM, 200.0, start=first, **kw)
    assert bool(joined.ok)
    np.testing.assert_allclose(_flat(joined.final), _flat(whole.final), rtol=1e-7, atol=1e-10)
    ts = np.asarray(joined.ts)
    assert ts[0] == 0.0 and ts[-1] == 200.0 and np.all(np.diff(ts) > 0)
    assert ts.size == first.ts.size + 199  # the continuation's first save (t0) is not repeated
    # One time axis for everything downstream: metrics on it agree with the one-piece run.
    loss = np.interp(np.asarray(whole.ts), ts, np.asarray(joined.metrics["train_loss"]))
    np.testing.assert_allclose(loss[1:], np.asarray(whole.metrics["train_loss"])[1:], rtol=2e-2)
    assert int(joined.stats["num_steps"]) == int(first.stats["num_steps"]) + int(
        gflow.simulate(problem, LAM, 200.0, start=first.final, t0=first.t_final, **kw).stats["num_steps"]
    )
    phases = gflow.analysis.phase_times(joined)
    assert phases is not None
    ds = joined.to_xarray()
    assert ds.sizes["time"] == ts.size


def test_a_continued_stiff_run_adds_its_work_counts_once():
    model, data = _teacher_student()
    problem = gflow.Problem(model, data, loss="mse")
    first = gflow.simulate(problem, LAM, 5.0, solver="ros34pw2", saveat=3)
    joined = gflow.simulate(problem, LAM, 20.0, solver="ros34pw2", saveat=3, start=first)
    piece = gflow.simulate(problem, LAM, 20.0, solver="ros34pw2", saveat=3, start=first.final, t0=first.t_final)
    for key in ("num_steps", "num_vf_evals", "num_vjps"):
        assert int(joined.stats[key]) == int(first.stats[key]) + int(piece.stats[key]), key
    assert joined.solver == "ros34pw2"
    # Continued with another solver: both are named, and a counter only the first kept (the
    # Rosenbrock steps' VJPs) is kept, not dropped.
    mixed = gflow.simulate(problem, LAM, 20.0, solver="tsit5", saveat=3, start=first)
    assert mixed.solver == "ros34pw2+tsit5"
    assert int(mixed.stats["num_vjps"]) == int(first.stats["num_vjps"])
    assert int(mixed.stats["num_vf_evals"]) > int(first.stats["num_vf_evals"])


def test_continuing_a_stopped_run_and_from_a_model():
    model, data = _teacher_student()
    problem = gflow.Problem(model, data, loss="mse")
    kw = {"solver": "tsit5", "rtol": 1e-10, "atol": 1e-12}
    threshold = 0.5 * float(problem.loss(model, data))
    stopped = gflow.simulate(problem, LAM, 100.0, stop={"train_loss": ("<=", threshold)}, **kw)
    rest = gflow.simulate(problem, LAM, 100.0, start=stopped, **kw)
    whole = gflow.simulate(problem, LAM, 100.0, **kw)
    np.testing.assert_allclose(_flat(rest.final), _flat(whole.final), rtol=1e-7, atol=1e-10)
    assert not np.any(np.isnan(np.asarray(rest.metrics["train_loss"])))
    # A model and t0: only the new piece comes back, saved from t0 to t1.
    piece = gflow.simulate(problem, LAM, 100.0, start=stopped.final, t0=stopped.t_final, saveat=5, **kw)
    assert float(piece.ts[0]) == pytest.approx(float(stopped.t_final)) and float(piece.ts[-1]) == 100.0
    np.testing.assert_allclose(_flat(piece.final), _flat(whole.final), rtol=1e-7, atol=1e-10)


def test_continuing_is_refused_for_a_mismatched_start():
    model, data = _teacher_student()
    problem = gflow.Problem(model, data, loss="mse")
    first = gflow.simulate(problem, LAM, 5.0, solver="tsit5", saveat=5)  # the solve compiled above
    with pytest.raises(gflow.ProblemError, match="to change lam mid-run"):
        gflow.simulate(problem, 2 * LAM, 10.0, solver="tsit5", start=first)
    with pytest.raises(gflow.ProblemError, match="start time t0"):
        gflow.simulate(problem, LAM, 4.0, solver="tsit5", start=first)
    with pytest.raises(gflow.ProblemError, match="same time variable"):
        gflow.simulate(problem, LAM, 4.0, solver="tsit5", start=first, time="slow")
    other, _ = _teacher_student(width=5)
    with pytest.raises(gflow.ProblemError, match="structure, shapes and dtypes"):
        gflow.simulate(problem, LAM, 10.0, solver="tsit5", start=other, t0=1.0)


# -- callback ---------------------------------------------------------------------------------------


def test_callback_receives_every_save():
    model, data = _teacher_student()
    problem = gflow.Problem(model, data, loss="mse", test=data)
    seen = []

    def log(t, metrics):
        seen.append((t, metrics))

    traj = gflow.simulate(problem, LAM, 10.0, solver="tsit5", saveat=7, callback=log)
    seen.sort(key=lambda item: item[0])
    assert [t for t, _ in seen] == pytest.approx(np.asarray(traj.ts).tolist(), rel=1e-12)
    assert set(seen[0][1]) == set(traj.metrics)
    np.testing.assert_allclose([m["test_loss"] for _, m in seen], np.asarray(traj.metrics["test_loss"]), rtol=1e-12)
    # A stopped run calls back only for the saves it reached.
    seen.clear()
    threshold = 0.6 * float(problem.loss(model, data))
    stopped = gflow.simulate(
        problem, LAM, 10.0, solver="tsit5", saveat=50, callback=log, stop={"train_loss": ("<=", threshold)}
    )
    assert len(seen) == int(np.sum(np.isfinite(np.asarray(stopped.metrics["train_loss"]))))
    # gd takes the same hook.
    seen.clear()
    run = gflow.gd(problem, LAM, 0.05, 100, save_every=10, callback=log)
    assert sorted(t for t, _ in seen) == pytest.approx(np.asarray(run.ts).tolist())
    with pytest.raises(gflow.ProblemError, match="callback must be a function"):
        gflow.simulate(problem, LAM, 1.0, callback="print")


def test_progress_off_a_terminal_prints_lines_not_carriage_returns(capfd):
    model, data = _teacher_student()
    problem = gflow.Problem(model, data, loss="mse")
    gflow.simulate(problem, LAM, 10.0, solver="tsit5", saveat=3, progress=True)
    out, err = capfd.readouterr()
    assert "\r" not in out + err
    assert "100.00%" in out


# -- no recompilation for a new Problem of the same shapes ------------------------------------------


def _static_key(problem):
    """What `eqx.filter_jit` caches a compiled solve on: the tree structure, the non-array leaves
    (functions compared by identity) and the shapes/dtypes of the arrays."""
    arrays, static = eqx.partition(problem, eqx.is_array)
    leaves, treedef = jtu.tree_flatten(static)
    shapes = [(x.shape, x.dtype) for x in jtu.tree_leaves(arrays)]
    return treedef, leaves, shapes


SMALL_TASKS = {
    "linear_regression": lambda s: gflow.tasks.linear_regression(s, n=8, d=10, n_test=20),
    "musat_addition": lambda s: gflow.tasks.musat_addition(s),
    "diagonal_regression_uv": lambda s: gflow.tasks.diagonal_regression(s, n=8, d=12, parameterisation="uv"),
    "diagonal_regression_squares": lambda s: gflow.tasks.diagonal_regression(s, n=8, d=12, parameterisation="squares"),
    "sparse_classification": lambda s: gflow.tasks.sparse_classification(s, d=12, n=8, alpha=4.0),
    "misgrokking": lambda s: gflow.tasks.misgrokking(s, d=12, n=8),
    "multiplication_table": lambda s: gflow.tasks.multiplication_table(s, d=9, fraction=0.3),
    "matrix_completion": lambda s: gflow.tasks.matrix_completion(s, m=6, n=6, rank=2),
    "teacher_relu_1d": lambda s: gflow.tasks.teacher_relu_1d(s, m=10, n=6),
    "modular_mlp_ce": lambda s: gflow.tasks.modular_arithmetic(s, p=5, width=8, loss="cross_entropy"),
    "modular_embedding_mse": lambda s: gflow.tasks.modular_arithmetic(s, p=5, width=8, model="embedding"),
    "modular_embed_mlp": lambda s: gflow.tasks.modular_arithmetic(s, p=5, width=8, model="embed_mlp"),
}


def test_every_task_of_two_seeds_shares_one_compiled_solve():
    for name, make in SMALL_TASKS.items():
        a, b = make(0), make(1)
        ka, kb = _static_key(a), _static_key(b)
        assert ka[0] == kb[0], f"{name}: tree structure differs between seeds"
        assert ka[2] == kb[2], f"{name}: array shapes differ between seeds"
        for x, y in zip(ka[1], kb[1], strict=True):
            assert x == y, f"{name}: a non-array part differs between seeds ({x!r} vs {y!r}): it would recompile"


@eqx.filter_jit
def _objective_and_metrics(problem):
    # A cheap stand-in for the solve with the same caching rule (eqx.filter_jit on the Problem):
    # it compiles in well under a second per task, where a whole solve takes several.
    params, static = problem.split()
    return gflow._flow.observables(params, static, problem, 0.1)


def test_every_task_rebuilt_with_a_new_seed_compiles_nothing_new():
    compiled = 0
    for name, make in SMALL_TASKS.items():
        # Tasks of one structure (sparse_classification and misgrokking) share the first compile.
        compiled += _compilations(lambda: _objective_and_metrics(make(0)))
        assert compiled > 0  # the counter sees compilations
        assert _compilations(lambda: _objective_and_metrics(make(1))) == 0, f"{name} recompiled for a new seed"


def _compilations(fn):
    events = []

    def listen(name, duration, **kwargs):
        if name == "/jax/core/compile/backend_compile_duration":
            events.append(name)

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        jax.block_until_ready(fn())
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    return len(events)


def _user_problem(seed, loss):
    key = jax.random.PRNGKey(seed)
    x = jax.random.normal(key, (12, 3))
    model = eqx.nn.MLP(3, 2 if loss == "cross_entropy" else "scalar", 5, 1, activation=jnp.tanh, key=key)
    if loss == "cross_entropy":
        y = (x[:, 0] > 0).astype(jnp.int32)
    elif loss == "logistic":
        y = jnp.where(x[:, 0] > 0, 1.0, -1.0)
    else:
        y = jnp.sin(x[:, 0])
    return gflow.Problem(model, {"x": x, "y": y}, loss=loss, test={"x": x, "y": y})


@pytest.mark.parametrize("loss", ["mse", "cross_entropy", "logistic"])
def test_a_user_problem_rebuilt_with_new_data_does_not_recompile(loss):
    kw = {"solver": "tsit5", "saveat": 4}
    assert _compilations(lambda: gflow.simulate(_user_problem(0, loss), LAM, 1.0, **kw).ts) > 0
    assert _compilations(lambda: gflow.simulate(_user_problem(1, loss), 2 * LAM, 3.0, **kw).ts) == 0


def test_matrix_completion_with_a_new_seed_does_not_recompile():
    make = SMALL_TASKS["matrix_completion"]
    kw = {"solver": "tsit5", "saveat": 4}
    assert _compilations(lambda: gflow.simulate(make(0), LAM, 1.0, **kw).ts) > 0
    assert _compilations(lambda: gflow.simulate(make(5), LAM, 1.0, **kw).ts) == 0


# -- an eqx.nn.MLP through every entry point -------------------------------------------------------


def test_an_eqx_mlp_runs_through_gd_flow_limit_and_the_slow_flow():
    kx, kt, ks = jax.random.split(jax.random.PRNGKey(0), 3)
    x = jax.random.normal(kx, (6, 3))
    teacher = eqx.nn.MLP(3, "scalar", 4, 1, activation=jnp.tanh, key=kt)
    student = eqx.nn.MLP(3, "scalar", 8, 1, activation=jnp.tanh, key=ks)
    problem = gflow.Problem(student, {"x": x, "y": jax.vmap(teacher)(x)}, loss="mse")
    # gd follows the flow with an O(lr) error.
    flow = gflow.simulate(problem, 0.1, 2.0, solver="tsit5", saveat=np.linspace(0.0, 2.0, 5), rtol=1e-10)
    errors = []
    for lr in (0.02, 0.01):
        run = gflow.gd(problem, 0.1, lr, int(round(2.0 / lr)), save_every=int(round(0.5 / lr)))
        errors.append(np.max(np.abs(np.asarray(run.metrics["train_loss"]) - np.asarray(flow.metrics["train_loss"]))))
    assert errors[1] < 0.6 * errors[0]
    # Six examples, 41 parameters: a zero-loss manifold; the slow flow drifts along it and shrinks the norm.
    limit = gflow.flow_limit(problem)
    assert float(limit.grad_norm) < 1e-8
    slow = gflow.slow_flow(problem, 1.0, start=limit, saveat=5)
    assert bool(slow.ok), slow.message
    norm = np.asarray(slow.metrics["norm"])
    assert np.all(np.diff(norm) < 0)
    assert float(np.nanmax(np.asarray(slow.metrics["manifold_residual"]))) < 1e-8
