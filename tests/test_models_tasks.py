"""The seed papers' models and tasks: shapes, initialisations, data sizes, labels, vmap over seeds,
and short gradient-flow runs that show each paper's qualitative behaviour.

Every reference is computed independently in NumPy (dense one-hots, full matrices, explicit
formulas), never by calling the code under test a second way.
"""

from __future__ import annotations

import functools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gflow
from gflow import analysis, models, tasks

KEY = jax.random.PRNGKey(7)


def param_norm(model) -> float:
    leaves = jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array))
    return float(np.sqrt(sum(np.sum(np.asarray(x) ** 2) for x in leaves)))


def outputs(model, x):
    return np.asarray(jax.vmap(model)(jnp.asarray(x)))


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------

# name -> (constructor(alpha, zero) -> model, example batch of inputs, per-example output shape)
PAIRS = np.array([[0, 1], [2, 2], [4, 3]])
MODEL_CASES = {
    "linear": (lambda a, z: models.Linear.init(5, key=KEY, alpha=a), np.ones((3, 5)), ()),
    "two_layer_linear": (
        lambda a, z: models.TwoLayerLinear.init(4, 6, key=KEY, alpha=a, zero_last=z),
        np.ones((3, 4)),
        (),
    ),
    "two_layer_linear_vector": (
        lambda a, z: models.TwoLayerLinear.init(4, 6, 2, key=KEY, alpha=a, zero_last=z),
        np.ones((3, 4)),
        (2,),
    ),
    "leaky_relu": (lambda a, z: models.LeakyReLUNeuron.init(2, key=KEY, alpha=a), np.ones((3, 2)), ()),
    "diagonal_squares": (
        lambda a, z: models.DiagonalNet.init(6, alpha=a, parameterisation="squares"),
        np.ones((3, 6)),
        (),
    ),
    "diagonal_uv": (
        lambda a, z: models.DiagonalNet.init(6, key=KEY, alpha=a, parameterisation="uv", init="gaussian"),
        np.ones((3, 6)),
        (),
    ),
    "matrix_factorisation": (lambda a, z: models.MatrixFactorisation.init(5, 4, key=KEY, alpha=a), PAIRS, ()),
    "symmetric_factorisation": (lambda a, z: models.SymmetricFactorisation.init(5, alpha=a), PAIRS, ()),
    "symmetric_factorisation_noisy": (
        lambda a, z: models.SymmetricFactorisation.init(5, key=KEY, alpha=a, noise=0.1 * a),
        PAIRS,
        (),
    ),
    "deep_linear": (
        lambda a, z: models.DeepLinear.init(4, 6, 3, 3, key=KEY, alpha=a, zero_last=z),
        np.ones((3, 4)),
        (3,),
    ),
    "relu_1d": (lambda a, z: models.ReLU1D.init(7, key=KEY, alpha=a, zero_last=z), np.linspace(-2, 2, 3), ()),
    "modular_mlp": (lambda a, z: models.ModularMLP.init(5, 8, key=KEY, alpha=a, zero_last=z), PAIRS, (5,)),
    "embedding_net": (lambda a, z: models.EmbeddingNet.init(5, 8, key=KEY, alpha=a, zero_last=z), PAIRS, (5,)),
    "embedding_net_torch": (
        lambda a, z: models.EmbeddingNet.init(5, 8, key=KEY, alpha=a, init="torch", zero_last=z),
        PAIRS,
        (5,),
    ),
    "embed_mlp": (lambda a, z: models.EmbedMLP.init(5, 4, 8, key=KEY, alpha=a, zero_last=z), PAIRS, (5,)),
}
# Models whose initialisation gives f(θ0) = 0: always (True) or with zero_last (the rest with a zero_last option).
ALWAYS_ZERO = {"diagonal_squares", "symmetric_factorisation"}
ZERO_LAST = {
    "two_layer_linear",
    "two_layer_linear_vector",
    "deep_linear",
    "relu_1d",
    "modular_mlp",
    "embedding_net",
    "embedding_net_torch",
    "embed_mlp",
}


@pytest.mark.parametrize("name", sorted(MODEL_CASES))
def test_model_shapes_alpha_scaling_and_zero_output(name):
    make, x, out_shape = MODEL_CASES[name]
    model = make(1.0, False)
    out = outputs(model, x)
    assert out.shape == (len(x), *out_shape)
    assert np.all(np.isfinite(out))
    # α multiplies every parameter of the reference initialisation: ‖θ0‖ ∝ α exactly.
    for alpha in (0.1, 3.0):
        assert param_norm(make(alpha, False)) == pytest.approx(alpha * param_norm(model), rel=1e-12)
    if name in ALWAYS_ZERO:
        assert np.max(np.abs(out)) <= 1e-12
    if name in ZERO_LAST:
        assert np.max(np.abs(out)) > 1e-3
        zero = make(2.0, True)
        assert np.max(np.abs(outputs(zero, x))) == 0.0
        assert param_norm(zero) > 0
    # The model is a valid ODE state for gflow (floating-point leaves only).
    gflow.Problem(model, {"x": jnp.asarray(x), "y": jnp.asarray(out)}, loss="mse")


def test_factorisations_index_their_matrix():
    mf = models.MatrixFactorisation.init(5, 4, key=KEY)
    assert mf.u.shape == (5, 9) and mf.v.shape == (4, 9)  # r = m + n by default
    full = np.asarray(mf.u) @ np.asarray(mf.v).T
    pairs = np.array([[i, j] for i in range(5) for j in range(4)])
    np.testing.assert_allclose(outputs(mf, pairs), full[pairs[:, 0], pairs[:, 1]], rtol=1e-13)
    np.testing.assert_allclose(np.asarray(mf.matrix), full, rtol=1e-13)

    sf = models.SymmetricFactorisation.init(5, key=KEY, alpha=2.0, noise=0.3)
    u, v = np.asarray(sf.u), np.asarray(sf.v)
    w = u @ u.T - v @ v.T
    pairs = np.array([[i, j] for i in range(5) for j in range(5)])
    np.testing.assert_allclose(outputs(sf, pairs), w.ravel(), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(np.asarray(sf.matrix), w.T, atol=1e-13)
    # Lyu's θ̄_init = (αI, αI): ‖θ0‖ = α√(2d) (139.28 at d = 97, α = 10).
    assert param_norm(models.SymmetricFactorisation.init(97, alpha=10.0)) == pytest.approx(10 * math.sqrt(194))


def test_token_models_equal_their_one_hot_definitions():
    p, h = 5, 8
    pairs = np.array([[a, b] for a in range(p) for b in range(p)])
    eye = np.eye(p)

    mlp = models.ModularMLP.init(p, h, key=KEY, alpha=1.5)
    w1, b1, w2 = (np.asarray(a) for a in (mlp.w1, mlp.b1, mlp.w2))
    dense = np.concatenate([eye[pairs[:, 0]], eye[pairs[:, 1]]], axis=1)  # [e_a; e_b]
    ref = np.maximum(dense @ w1.T + b1, 0) @ w2.T
    np.testing.assert_allclose(outputs(mlp, pairs), ref, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(outputs(mlp, dense), ref, rtol=1e-12, atol=1e-13)
    assert np.all(b1 == 0)

    net = models.EmbeddingNet.init(p, h, key=KEY)
    e, w = np.asarray(net.embed), np.asarray(net.w)
    x_sum = eye[pairs[:, 0]] + eye[pairs[:, 1]]  # e_a + e_b (2e_a when a = b)
    ref = np.maximum(x_sum @ e, 0) @ w
    np.testing.assert_allclose(outputs(net, pairs), ref, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(outputs(net, x_sum), ref, rtol=1e-12, atol=1e-13)

    emb = models.EmbedMLP.init(p, 4, h, key=KEY)
    e, w1, b1, w2 = (np.asarray(a) for a in (emb.embed, emb.w1, emb.b1, emb.w2))
    ref = np.maximum((e[pairs[:, 0]] + e[pairs[:, 1]]) @ w1.T + b1, 0) @ w2.T
    np.testing.assert_allclose(outputs(emb, pairs), ref, rtol=1e-12, atol=1e-13)
    # symmetric combination: f(a, b) = f(b, a)
    np.testing.assert_allclose(outputs(emb, pairs), outputs(emb, pairs[:, ::-1]), rtol=1e-13)


def test_initialisation_statistics():
    # He init of Lyu's MLP: std √(2/fan_in) for W1 (fan_in = 2p), 1/√h for W2; biases 0.
    p, h = 97, 1024
    mlp = models.ModularMLP.init(p, h, key=KEY)
    assert float(jnp.std(mlp.w1)) == pytest.approx(math.sqrt(2 / (2 * p)), rel=0.02)
    assert float(jnp.std(mlp.w2)) == pytest.approx(1 / math.sqrt(h), rel=0.02)
    # Musat E2.5: E ~ 𝒩(0, std p^{-1/2}).
    net = models.EmbeddingNet.init(37, 512, key=KEY)
    assert float(jnp.std(net.embed)) == pytest.approx(37**-0.5, rel=0.03)
    torch_net = models.EmbeddingNet.init(37, 512, key=KEY, init="torch")
    assert float(jnp.max(jnp.abs(torch_net.embed))) <= 37**-0.5
    assert float(jnp.std(torch_net.embed)) == pytest.approx((3 * 37) ** -0.5, rel=0.03)
    # Boursier E1.2: u, v, b with variance 4.
    relu = models.ReLU1D.init(20_000, key=KEY)
    for leaf in (relu.u, relu.v, relu.b):
        assert float(jnp.var(leaf)) == pytest.approx(4.0, rel=0.05)


def test_small_models_compute_their_formulas():
    x = np.array([[1.0, 1.0], [2.0, -3.0]])
    leaky = models.LeakyReLUNeuron(jnp.array([1.0, 2.0]))
    np.testing.assert_allclose(outputs(leaky, x), [3.0, 0.1 * (2.0 - 6.0)])

    relu = models.ReLU1D(jnp.array([1.0, -2.0]), jnp.array([1.0, 2.0]), jnp.array([0.5, -1.0]))
    xs = np.array([-1.0, 0.0, 1.0, 2.0])
    ref = np.maximum(xs + 0.5, 0) - 2 * np.maximum(2 * xs - 1.0, 0)
    np.testing.assert_allclose(outputs(relu, xs), ref)
    np.testing.assert_allclose(analysis.relu_kinks(relu), [-0.5, 0.5])

    deep = models.DeepLinear.init(4, 5, 3, 4, key=KEY)
    ws = [np.asarray(w) for w in deep.weights]
    a = ws[3] @ ws[2] @ ws[1] @ ws[0]
    np.testing.assert_allclose(np.asarray(deep.matrix), a, rtol=1e-12)
    np.testing.assert_allclose(outputs(deep, np.eye(4)), a.T, rtol=1e-12)
    assert deep.depth == 4 and [w.shape for w in ws] == [(5, 4), (5, 5), (5, 5), (3, 5)]

    # Musat Fig. 3's two-layer linear toy f(x) = w2·w1·x: the output Jacobian vanishes at the origin.
    toy = models.TwoLayerLinear(jnp.zeros((1, 1)), jnp.zeros((1,)))
    jac = jax.jacobian(lambda m: m(jnp.array([1.0])))(toy)
    assert float(jnp.abs(jac.w1).sum() + jnp.abs(jac.w2).sum()) == 0.0


def test_model_errors():
    with pytest.raises(gflow.ProblemError, match="pass key"):
        models.Linear.init(3, key=None)
    with pytest.raises(gflow.ProblemError, match="init must be"):
        models.DiagonalNet.init(3, init="normal")
    with pytest.raises(gflow.ProblemError, match="depth must be"):
        models.DeepLinear.init(3, 3, 3, 0, key=KEY)


# ---------------------------------------------------------------------------------------------
# Tasks: sizes, labels, conventions
# ---------------------------------------------------------------------------------------------


def test_multiplication_table_data():
    problem = tasks.multiplication_table(0)
    x, y = np.asarray(problem.train["x"]), np.asarray(problem.train["y"])
    xt, yt = np.asarray(problem.test["x"]), np.asarray(problem.test["y"])
    assert x.shape == (470, 2) and xt.shape == (9409 - 470, 2)  # 5% of 97², Lyu E3.5
    flat = np.concatenate([x[:, 0] * 97 + x[:, 1], xt[:, 0] * 97 + xt[:, 1]])
    assert np.array_equal(np.sort(flat), np.arange(97 * 97))  # disjoint, covering every entry
    np.testing.assert_allclose(y, x[:, 0] * x[:, 1] / 97**2, rtol=1e-15)
    np.testing.assert_allclose(yt, xt[:, 0] * xt[:, 1] / 97**2, rtol=1e-15)
    assert param_norm(problem.model) == pytest.approx(139.2839, rel=1e-5)
    assert np.max(np.abs(outputs(problem.model, x))) == 0.0
    assert {name for name, _, _ in problem.metric_items} == {
        "train_mse",
        "test_mse",
        "test_relative_error",
        "test_nuclear_norm",
    }


def test_matrix_completion_data():
    problem = tasks.matrix_completion(3, m=12, n=10, rank=2, fraction=0.5)
    m_star = np.asarray(problem.test["m_star"])
    assert np.linalg.matrix_rank(m_star) == 2
    x, xt = np.asarray(problem.train["x"]), np.asarray(problem.test["x"])
    assert len(x) == 60 and len(xt) == 60
    np.testing.assert_allclose(np.asarray(problem.train["y"]), m_star[x[:, 0], x[:, 1]])
    assert problem.model.u.shape == (12, 22) and problem.model.v.shape == (10, 22)
    names = {name for name, _, _ in problem.metric_items}
    assert {f"test_sv{i}" for i in range(10)} <= names and "train_sv0" not in names


def test_sparse_classification_data():
    d, n, k, alpha = 300, 40, 3, 64.0
    problem = tasks.sparse_classification(1, n=n, d=d, k=k, alpha=alpha, n_test=200)
    x, y = np.asarray(problem.train["x"]), np.asarray(problem.train["y"])
    w_star = np.asarray(problem.test["w_star"])
    assert x.shape == (n, d) and set(np.unique(x)) == {-1.0, 1.0}
    assert set(np.unique(np.abs(w_star[:k]))) == {1.0} and np.all(w_star[k:] == 0)
    np.testing.assert_array_equal(y, np.sign(x[:, :k] @ w_star[:k]))
    assert set(np.unique(y)) == {-1.0, 1.0}
    # Lyu's initialisation: u = v = α/√(2d), so ‖θ0‖ = α and f(θ0) = 0.
    assert param_norm(problem.model) == pytest.approx(alpha, rel=1e-12)
    assert np.all(outputs(problem.model, x) == 0)
    assert problem.loss_name == "logistic"
    with pytest.raises(gflow.ProblemError, match="odd"):
        tasks.sparse_classification(0, k=2)


def test_misgrokking_data():
    gamma = 25.0
    problem = tasks.misgrokking(2, n=32, d=200, gamma=gamma, n_test=100)
    x, y = np.asarray(problem.train["x"]), np.asarray(problem.train["y"])
    w_star = np.asarray(problem.test["w_star"])
    assert np.linalg.norm(w_star) == pytest.approx(1.0)
    # x = z + (γ/2) y w⋆ with y = sign⟨z, w⋆⟩: every margin along w⋆ is at least γ/2.
    assert np.min(y * (x @ w_star)) >= gamma / 2
    assert set(np.unique(y)) == {-1.0, 1.0} and x.shape == (32, 200)


def test_teacher_relu_1d_data():
    problem = tasks.teacher_relu_1d(0)
    x, y = np.asarray(problem.train["x"]), np.asarray(problem.train["y"])
    assert x.shape == (10,) and np.all(np.abs(x) <= 2)
    teacher = lambda s: np.maximum(s + 1, 0) - 2 * np.maximum(s, 0) + 1.5 * np.maximum(s - 1, 0)
    np.testing.assert_allclose(y, teacher(x), rtol=1e-14)
    xt = np.asarray(problem.test["x"])
    np.testing.assert_allclose(xt, np.linspace(-2, 2, 401), atol=1e-15)
    assert problem.model.u.shape == (100,)


def _apply(op, a, b, p):
    if op == "+":
        return (a + b) % p
    if op == "-":
        return (a - b) % p
    if op == "*":
        return (a * b) % p
    return None


@pytest.mark.parametrize("op", ["+", "-", "*", "/"])
def test_modular_pairs_labels(op):
    p = 11
    xs, cs = tasks.modular_pairs(p, op)
    n_expected = p * (p - 1) if op == "/" else p * p
    assert xs.shape == (n_expected, 2) and cs.shape == (n_expected,)
    assert len({tuple(r) for r in xs}) == n_expected
    assert np.all((cs >= 0) & (cs < p))
    a, b = xs[:, 0], xs[:, 1]
    if op == "/":
        assert np.all((cs * b) % p == a)  # c = a/b ⇔ c·b = a mod p
    else:
        assert np.array_equal(cs, _apply(op, a, b, p))


@pytest.mark.parametrize(
    ("kwargs", "n_train", "n_test"),
    [
        ({"p": 37, "pairs": "unordered", "train_fraction": 0.7, "loss": "mse", "model": "embedding"}, 492, 211),
        ({"p": 97, "train_fraction": 0.4, "model": "mlp", "width": 16}, 3763, 5646),  # Lyu E3.1
        ({"p": 23, "op": "/", "train_fraction": 0.5, "model": "embed_mlp", "width": 8, "embed_dim": 4}, 253, 253),
    ],
)
def test_modular_arithmetic_problems(kwargs, n_train, n_test):
    problem = tasks.modular_arithmetic(0, **kwargs)
    p = kwargs["p"]
    x, lab = np.asarray(problem.train["x"]), np.asarray(problem.train["label"])
    xt, lab_t = np.asarray(problem.test["x"]), np.asarray(problem.test["label"])
    assert len(x) == n_train and len(xt) == n_test
    assert np.all((lab >= 0) & (lab < p)) and np.all((lab_t >= 0) & (lab_t < p))
    pairs = {tuple(r) for r in np.concatenate([x, xt])}
    assert len(pairs) == n_train + n_test  # train and test are disjoint
    if kwargs.get("pairs") == "unordered":
        assert np.all(x[:, 0] <= x[:, 1]) and p * (p + 1) // 2 == 703
    op = kwargs.get("op", "+")
    if op == "+":
        assert np.array_equal(lab, (x[:, 0] + x[:, 1]) % p)
    if kwargs.get("loss") == "mse":
        y = np.asarray(problem.train["y"])
        assert y.shape == (n_train, p) and np.array_equal(np.argmax(y, 1), lab) and np.all(y.sum(1) == 1)
    else:
        assert np.array_equal(np.asarray(problem.train["y"]), lab)
    names = {name for name, _, _ in problem.metric_items}
    assert {"train_accuracy", "test_accuracy"} <= names


def test_modular_arithmetic_options_and_errors():
    zero = tasks.modular_arithmetic(0, p=7, model="mlp", width=8, alpha=10.0, zero_last=True)
    assert np.all(outputs(zero.model, zero.train["x"]) == 0)
    custom = models.EmbeddingNet.init(7, 30, key=KEY)
    assert tasks.modular_arithmetic(0, p=7, model=custom).model is custom
    with pytest.raises(gflow.ProblemError, match="not commutative"):
        tasks.modular_arithmetic(0, p=7, op="-", pairs="unordered")
    with pytest.raises(gflow.ProblemError, match="prime"):
        tasks.modular_pairs(9, "/")
    with pytest.raises(gflow.ProblemError, match="unknown model"):
        tasks.modular_arithmetic(0, p=7, model="transformer")
    with pytest.raises(gflow.ProblemError, match="unknown op"):
        tasks.modular_pairs(7, "^")


SMALL_TASKS = {
    "sparse_classification": lambda k: tasks.sparse_classification(k, n=10, d=30, n_test=20),
    "misgrokking": lambda k: tasks.misgrokking(k, n=8, d=30, n_test=20),
    "multiplication_table": lambda k: tasks.multiplication_table(k, d=11, fraction=0.3),
    "matrix_completion": lambda k: tasks.matrix_completion(k, m=6, n=5, rank=2, n_singular=2),
    "teacher_relu_1d": lambda k: tasks.teacher_relu_1d(k, m=12, n=5, n_test=9),
    "modular_arithmetic": lambda k: tasks.modular_arithmetic(k, p=7, model="embed_mlp", width=8, embed_dim=4),
}


@pytest.mark.parametrize("name", sorted(SMALL_TASKS))
def test_tasks_vmap_over_seeds(name):
    make = SMALL_TASKS[name]
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    batched = eqx.filter_vmap(make)(keys)
    arrays = jax.tree.leaves(eqx.filter(batched, eqx.is_array))
    assert all(a.shape[0] == 3 for a in arrays)
    # member 1 of the batch is the task built from keys[1] alone
    single = jax.tree.leaves(eqx.filter(make(keys[1]), eqx.is_array))
    for a, b in zip(arrays, single, strict=True):
        np.testing.assert_array_equal(np.asarray(a[1]), np.asarray(b))
    # different seeds give different data or initialisations
    assert any(not np.array_equal(np.asarray(a[0]), np.asarray(a[2])) for a in arrays)


# ---------------------------------------------------------------------------------------------
# Short gradient-flow runs: each paper's qualitative behaviour
# ---------------------------------------------------------------------------------------------


@functools.cache
def multiplication_run():
    problem = tasks.multiplication_table(0)
    lam = 1e-3
    ts = gflow.log_times(1e3, 22, 1e-2)
    traj = gflow.simulate(problem, lam, 1e3, solver="tsit5", saveat=ts, rtol=1e-6, atol=1e-9)
    return problem, traj


def test_multiplication_table_kernel_plateau():
    """Lyu E3.5 / A6 at λ = 1e-3 (Lyu's 2e-3): fast fit, then the kernel predictor's test MSE."""
    problem, traj = multiplication_run()
    assert bool(traj.ok), traj.message
    t = np.asarray(traj.t)
    # The kernel predictor (Lyu Cor. 3.11): observed entries and their transposes, zeros elsewhere.
    x, y = np.asarray(problem.train["x"]), np.asarray(problem.train["y"])
    w = np.zeros((97, 97))
    w[x[:, 0], x[:, 1]] = y
    w[x[:, 1], x[:, 0]] = y
    xt, yt = np.asarray(problem.test["x"]), np.asarray(problem.test["y"])
    kernel = np.mean((w[xt[:, 0], xt[:, 1]] - yt) ** 2)
    assert kernel == pytest.approx(0.1024, abs=0.0025)  # papers.md: 0.1024 ± 0.0007 over masks
    window = (t >= 10) & (t <= 300)
    assert np.all(np.asarray(traj.metrics["train_mse"])[window] < 1e-5)
    np.testing.assert_allclose(np.asarray(traj.metrics["test_mse"])[window], kernel, rtol=2e-3)
    # The kernel phase: ‖θ‖ = ‖θ0‖e^{−λt} (= 139.28 e^{−τ}) within 1%.
    norm = np.asarray(traj.metrics["norm"])
    np.testing.assert_allclose(norm[t <= 1e3], 139.2839 * np.exp(-1e-3 * t[t <= 1e3]), rtol=1e-2)


def test_teacher_relu_fits_fast():
    """Boursier E1.2 / A8, fast phase: the train loss is ~0 by t ≈ 1 with λ small."""
    problem = tasks.teacher_relu_1d(0, n_test=101)
    # ReLU kinks crossing data points make the field discontinuous: a looser tolerance.
    traj = gflow.simulate(
        problem, 1e-3, 10.0, solver="tsit5", saveat=np.array([0.0, 1.0, 3.0, 10.0]), rtol=1e-6, atol=1e-8
    )
    assert bool(traj.ok), traj.message
    loss = np.asarray(traj.metrics["train_loss"])
    assert loss[1] < 1e-3 * loss[0] and loss[3] < 1e-4 * loss[0]
    assert float(traj.metrics["test_mse"][3]) > 10 * float(traj.metrics["train_mse"][3])


def test_sparse_classification_groks_from_the_kernel_plateau():
    """Lyu E3.3 / A4, small: train accuracy 1 at once, test accuracy on the max-ℓ2-margin (kernel)
    plateau, then the rich regime's sparse classifier at t ≈ (ln α + O(1))/λ."""
    problem = tasks.sparse_classification(0, n=40, d=200, n_test=500, alpha=16.0)
    kernel = analysis.kernel_predictor(problem).metrics["test_accuracy"]
    lam = 0.05
    traj = gflow.simulate(
        problem, lam, 200.0, solver="tsit5", saveat=gflow.log_times(200.0, 31, 1e-2), rtol=1e-6, atol=1e-9
    )
    assert bool(traj.ok), traj.message
    t = np.asarray(traj.t)
    train, test = np.asarray(traj.metrics["train_accuracy"]), np.asarray(traj.metrics["test_accuracy"])
    assert np.all(train[t >= 0.1] == 1.0)
    plateau = (t >= 0.05) & (t <= 10)
    np.testing.assert_allclose(test[plateau], kernel, atol=0.03)
    assert kernel < 0.7 and test[-1] >= 0.95
    t_rich = t[np.argmax(test >= 0.8)]
    assert 0.5 * math.log(16.0) / lam <= t_rich <= 2 * math.log(16.0) / lam
