"""gflow on models built from Equinox's own layers, checked against SciPy's Radau.

Each test builds a small float64 `gflow.Problem` from an `eqx.nn` library layer (MLP with tanh,
GELU and ReLU activations, a stack of `Linear` layers, `LayerNorm`, `Embedding` on integer
tokens with the cross-entropy loss, `MultiheadAttention`), integrates the gradient flow with
weight decay dθ/dt = −∇F(θ) − λ m⊙θ with `gflow.simulate`, and compares the final parameter
vector with `scipy.integrate.solve_ivp(method="Radau")` run on −∇F_λ computed by `jax.grad` of
`problem.objective` on the flattened parameters. Also covered: pytree decay masks, frozen
arrays (`trainable=`) and float32 models.
"""

from __future__ import annotations

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate
from jax.flatten_util import ravel_pytree

import gflow

LAM = 1e-2
N_TRAIN = 20
IN_SIZE = 3


def rel_err(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def radau_reference(problem, lam, t1, trainable_only=True):
    """θ(t1) of dθ/dt = −∇F_λ(θ) by SciPy's Radau (rtol 1e-10, atol 1e-12), as a flat vector.

    With `trainable_only` the state is `problem.split()[0]` (frozen arrays are constants); without,
    every floating-point array of the model is integrated, still under `problem.objective` (whose
    decay covers only the problem's trainable arrays).
    """
    if trainable_only:
        params, static = problem.split()
    else:
        params, static = eqx.partition(problem.model, eqx.is_inexact_array)
    v0, unravel = ravel_pytree(params)

    def objective(v):
        return problem.objective(eqx.combine(unravel(v), static), lam)

    def field(v):
        return -jax.grad(objective)(v)

    f = jax.jit(field)
    jac = jax.jit(jax.jacfwd(field))
    sol = scipy.integrate.solve_ivp(
        lambda t, v: np.asarray(f(jnp.asarray(v))),
        (0.0, float(t1)),
        np.asarray(v0, float),
        method="Radau",
        jac=lambda t, v: np.asarray(jac(jnp.asarray(v))),
        rtol=1e-10,
        atol=1e-12,
    )
    assert sol.success, sol.message
    return sol.y[:, -1]


def final_vector(problem, traj):
    """The trainable parameters of `traj.final` as one flat vector (same order as the reference)."""
    return np.asarray(ravel_pytree(problem.partition(traj.final)[0])[0])


def check_run(traj, t1):
    assert bool(traj.ok), traj.message
    assert float(traj.t_final) == pytest.approx(t1, rel=1e-12)
    for name, values in traj.metrics.items():
        assert np.all(np.isfinite(np.asarray(values))), name


def assert_matches_radau(problem, lam, t1, rtol=1e-6, ref=None, **kwargs):
    traj = gflow.simulate(problem, lam, t1, **kwargs)
    check_run(traj, t1)
    if ref is None:
        ref = radau_reference(problem, lam, t1)
    err = rel_err(final_vector(problem, traj), ref)
    assert err <= rtol, (err, traj.solver)
    return traj, ref


# ---------------------------------------------------------------------------------------------
# Data and models
# ---------------------------------------------------------------------------------------------


def regression_data(key, teacher, n=N_TRAIN, shape=(IN_SIZE,)):
    x = jax.random.normal(key, (n, *shape))
    return {"x": x, "y": jax.vmap(teacher)(x)}


@functools.cache
def mlp_problem(activation_name: str, mask: bool = False, dtype=jnp.float64):
    activation = {"tanh": jnp.tanh, "gelu": jax.nn.gelu, "relu": jax.nn.relu}[activation_name]
    teacher = eqx.nn.MLP(IN_SIZE, "scalar", 4, 1, activation=activation, key=jax.random.key(1))
    student = eqx.nn.MLP(IN_SIZE, "scalar", 5, 2, activation=activation, key=jax.random.key(2))
    train = regression_data(jax.random.key(3), teacher)
    test = regression_data(jax.random.key(4), teacher, n=30)
    if dtype != jnp.float64:
        student = jax.tree.map(lambda x: x.astype(dtype) if eqx.is_inexact_array(x) else x, student)
        train, test = jax.tree.map(lambda x: x.astype(dtype), (train, test))
    decay_mask = None
    if mask:
        bools = jax.tree.map(lambda _: True, student)
        decay_mask = eqx.tree_at(lambda m: m.layers[-1].bias, bools, False)
    return gflow.Problem(student, train, loss="mse", test=test, decay_mask=decay_mask)


# ---------------------------------------------------------------------------------------------
# 1. eqx.nn.MLP teacher–student regression
# ---------------------------------------------------------------------------------------------

MLP_T1 = 20.0


@functools.cache
def mlp_reference(activation: str, mask: bool = False):
    """The Radau θ(MLP_T1) of the float64 MLP problem (shared by several tests)."""
    return radau_reference(mlp_problem(activation, mask), LAM, MLP_T1)


@pytest.mark.parametrize("mask", [False, True], ids=["no_mask", "mask_last_bias"])
@pytest.mark.parametrize("activation", ["tanh", "gelu"])
def test_mlp_defaults_match_radau(activation, mask):
    problem = mlp_problem(activation, mask)
    assert gflow.count_params(problem) == 3 * 5 + 5 + 5 * 5 + 5 + 5 + 1
    # the mask really leaves the last bias out of the decay
    assert problem.decay_leaves == ((True,) * 5 + (not mask,))
    # solver="auto", default rtol/atol
    traj, _ = assert_matches_radau(problem, LAM, MLP_T1, ref=mlp_reference(activation, mask))
    loss = np.asarray(traj.metrics["train_loss"])
    assert loss[-1] < 0.5 * loss[0]
    # the objective reported is F_λ with the masked decay
    params = ravel_pytree(problem.partition(traj.final)[0])[0]
    last_bias = traj.final.layers[-1].bias
    decayed_sq = float(params @ params) - (float(jnp.sum(last_bias**2)) if mask else 0.0)
    assert float(traj.metrics["objective"][-1]) == pytest.approx(
        float(traj.metrics["train_loss"][-1]) + 0.5 * LAM * decayed_sq, rel=1e-10
    )


def test_mlp_mask_changes_the_flow():
    """Masked and unmasked flows differ by far more than the 1e-6 tolerance (the mask is seen)."""
    unmasked, masked = mlp_reference("tanh", False), mlp_reference("tanh", True)
    assert rel_err(masked, unmasked) > 1e-4


def test_mlp_relu_tsit5_runs_and_decreases_loss():
    problem = mlp_problem("relu")
    t1 = MLP_T1
    traj = gflow.simulate(problem, LAM, t1, solver="tsit5", rtol=1e-6, saveat=20)
    check_run(traj, t1)
    assert traj.solver == "tsit5"
    loss = np.asarray(traj.metrics["train_loss"])
    objective = np.asarray(traj.metrics["objective"])
    assert loss[-1] < 0.5 * loss[0]
    # gradient flow decreases F_λ along the path
    assert np.all(np.diff(objective) <= 1e-6 * objective[0])


# ---------------------------------------------------------------------------------------------
# 2. A stack of eqx.nn.Linear layers in a custom module
# ---------------------------------------------------------------------------------------------


class LinearStack(eqx.Module):
    layers: tuple

    def __init__(self, sizes, key):
        keys = jax.random.split(key, len(sizes) - 1)
        self.layers = tuple(
            eqx.nn.Linear(a, b, use_bias=True, key=k) for a, b, k in zip(sizes[:-1], sizes[1:], keys, strict=True)
        )

    def __call__(self, x):
        for layer in self.layers[:-1]:
            x = jnp.tanh(layer(x))
        return self.layers[-1](x)


def test_linear_stack_matches_radau():
    model = LinearStack((IN_SIZE, 4, 4, "scalar"), jax.random.key(5))
    teacher = eqx.nn.MLP(IN_SIZE, "scalar", 3, 1, activation=jnp.sin, key=jax.random.key(6))
    problem = gflow.Problem(model, regression_data(jax.random.key(7), teacher), loss="mse")
    assert gflow.count_params(problem) == (3 * 4 + 4) + (4 * 4 + 4) + (4 + 1)
    assert_matches_radau(problem, LAM, 20.0, solver="tsit5")


# ---------------------------------------------------------------------------------------------
# 3. eqx.nn.LayerNorm
# ---------------------------------------------------------------------------------------------


class NormNet(eqx.Module):
    inp: eqx.nn.Linear
    norm: eqx.nn.LayerNorm
    out: eqx.nn.Linear

    def __init__(self, key, width=5):
        k1, k2 = jax.random.split(key)
        self.inp = eqx.nn.Linear(IN_SIZE, width, key=k1)
        self.norm = eqx.nn.LayerNorm(width)
        self.out = eqx.nn.Linear(width, "scalar", key=k2)

    def __call__(self, x):
        return self.out(jnp.tanh(self.norm(self.inp(x))))


def test_layernorm_matches_radau():
    model = NormNet(jax.random.key(8))
    assert model.norm.weight is not None and model.norm.bias is not None
    teacher = eqx.nn.MLP(IN_SIZE, "scalar", 3, 1, activation=jnp.tanh, key=jax.random.key(9))
    problem = gflow.Problem(model, regression_data(jax.random.key(10), teacher), loss="mse")
    assert gflow.count_params(problem) == (3 * 5 + 5) + 2 * 5 + (5 + 1)
    traj, _ = assert_matches_radau(problem, LAM, 20.0, solver="tsit5")
    # the LayerNorm scale and shift were trained too
    assert not np.array_equal(np.asarray(traj.final.norm.weight), np.asarray(model.norm.weight))
    assert not np.array_equal(np.asarray(traj.final.norm.bias), np.asarray(model.norm.bias))


# ---------------------------------------------------------------------------------------------
# 4. eqx.nn.Embedding on integer tokens, cross-entropy
# ---------------------------------------------------------------------------------------------

VOCAB, EMBED, CLASSES = 5, 3, 3


class TokenNet(eqx.Module):
    embed: eqx.nn.Embedding
    head: eqx.nn.Linear

    def __init__(self, key):
        k1, k2 = jax.random.split(key)
        self.embed = eqx.nn.Embedding(VOCAB, EMBED, key=k1)
        self.head = eqx.nn.Linear(2 * EMBED, CLASSES, key=k2)

    def __call__(self, tokens):  # tokens: two integer indices
        e = jnp.concatenate([self.embed(tokens[0]), self.embed(tokens[1])])
        return self.head(e)


def token_data(key, n):
    x = jax.random.randint(key, (n, 2), 0, VOCAB)
    return {"x": x, "y": (x[:, 0] + x[:, 1]) % CLASSES}


def test_embedding_cross_entropy_matches_radau():
    model = TokenNet(jax.random.key(11))
    train, test = token_data(jax.random.key(12), 25), token_data(jax.random.key(13), 15)
    assert jnp.issubdtype(train["x"].dtype, jnp.integer)
    problem = gflow.Problem(model, train, loss="cross_entropy", test=test)
    assert gflow.count_params(problem) == VOCAB * EMBED + 2 * EMBED * CLASSES + CLASSES
    t1 = 5.0
    traj, _ = assert_matches_radau(problem, LAM, t1, solver="tsit5")
    for name in ("train_accuracy", "test_accuracy"):
        acc = np.asarray(traj.metrics[name])
        assert np.all((acc >= 0) & (acc <= 1)), name
    # the metric is the accuracy of the model at each save (checked at t_final)
    logits = jax.vmap(traj.final)(train["x"])
    expected = float(jnp.mean(jnp.argmax(logits, -1) == train["y"]))
    assert float(traj.metrics["train_accuracy"][-1]) == pytest.approx(expected, abs=1e-12)
    loss = np.asarray(traj.metrics["train_loss"])
    assert loss[-1] < loss[0]


# ---------------------------------------------------------------------------------------------
# 5. eqx.nn.MultiheadAttention
# ---------------------------------------------------------------------------------------------

SEQ, QUERY = 3, 8


class AttentionNet(eqx.Module):
    attn: eqx.nn.MultiheadAttention
    head: eqx.nn.Linear

    def __init__(self, key):
        k1, k2 = jax.random.split(key)
        self.attn = eqx.nn.MultiheadAttention(num_heads=2, query_size=QUERY, key=k1)
        self.head = eqx.nn.Linear(QUERY, "scalar", key=k2)

    def __call__(self, x):  # x: (SEQ, QUERY)
        return self.head(jnp.mean(self.attn(x, x, x), axis=0))


def test_multihead_attention_matches_radau():
    model = AttentionNet(jax.random.key(14))
    x = jax.random.normal(jax.random.key(15), (12, SEQ, QUERY))
    y = jnp.sin(jnp.sum(x[:, 0, :], axis=-1)) + 0.5 * jnp.mean(x[:, -1, :], axis=-1)
    problem = gflow.Problem(model, {"x": x, "y": y}, loss="mse")
    assert gflow.count_params(problem) == 4 * QUERY * QUERY + QUERY + 1
    assert_matches_radau(problem, LAM, 2.0, solver="tsit5")


# ---------------------------------------------------------------------------------------------
# 6. Frozen arrays: trainable=
# ---------------------------------------------------------------------------------------------


def freeze_first_layer(model):
    return eqx.tree_at(lambda m: m.layers[0], jax.tree.map(lambda _: True, model), False)


def test_trainable_freezes_first_layer():
    base = mlp_problem("tanh")
    model = base.model
    problem = gflow.Problem(model, base.train, loss="mse", test=base.test, trainable=freeze_first_layer(model))
    # a function of the model gives the same problem
    as_fn = gflow.Problem(model, base.train, loss="mse", test=base.test, trainable=freeze_first_layer)
    assert problem.trainable_leaves == as_fn.trainable_leaves == (False, False) + (True,) * 4
    n_trainable = sum(x.size for x in jax.tree.leaves(eqx.filter(model.layers[1:], eqx.is_inexact_array)))
    assert gflow.count_params(problem) == gflow.count_params(as_fn) == n_trainable == 5 * 5 + 5 + 5 + 1
    assert gflow.count_params(problem) == ravel_pytree(problem.split()[0])[0].size

    t1 = MLP_T1
    traj, ref = assert_matches_radau(problem, LAM, t1)  # solver="auto", default rtol/atol
    assert np.array_equal(np.asarray(traj.final.layers[0].weight), np.asarray(model.layers[0].weight))
    assert np.array_equal(np.asarray(traj.final.layers[0].bias), np.asarray(model.layers[0].bias))
    # norm at t = 0 counts the trainable arrays only
    trainable_norm = float(jnp.linalg.norm(ravel_pytree(problem.split()[0])[0]))
    full_norm = float(jnp.linalg.norm(ravel_pytree(eqx.filter(model, eqx.is_inexact_array))[0]))
    assert float(traj.ts[0]) == 0.0
    assert float(traj.metrics["norm"][0]) == pytest.approx(trainable_norm, rel=1e-12)
    assert abs(trainable_norm - full_norm) > 1e-3 * full_norm
    # freezing changes the flow of the other arrays: compare with the unfrozen problem's flow
    n_first = model.layers[0].weight.size + model.layers[0].bias.size
    assert rel_err(mlp_reference("tanh")[n_first:], ref) > 1e-4


# ---------------------------------------------------------------------------------------------
# 7. float32 models
# ---------------------------------------------------------------------------------------------


def test_float32_mlp_stays_float32():
    problem32 = mlp_problem("tanh", dtype=jnp.float32)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(problem32.split()[0]))
    traj = gflow.simulate(problem32, LAM, MLP_T1)
    check_run(traj, MLP_T1)
    for leaf in jax.tree.leaves(eqx.filter(traj.final, eqx.is_inexact_array)):
        assert leaf.dtype == jnp.float32
    assert traj.ts.dtype == jnp.float32
    assert all(v.dtype == jnp.float32 for v in traj.metrics.values())
    assert rel_err(final_vector(problem32, traj), mlp_reference("tanh")) <= 1e-3
