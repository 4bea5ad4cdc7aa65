"""Nanda et al.'s one-layer transformer, its task and the progress measures (issue 17).

References are independent: the forward pass is re-implemented in NumPy from the equations
(full causal attention over the three positions, read at "="), gradients are checked by
central differences, and the progress measures are checked on hand-built logit tables whose
Fourier content is known exactly.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gflow
from gflow import analysis, models, tasks

P = 11


def small_transformer(activation="relu", alpha=1.0, key=0):
    return models.Transformer1L.init(P, 16, 4, 24, key=jax.random.PRNGKey(key), alpha=alpha, activation=activation)


def numpy_forward(model, a, b):
    """Nanda's equations in NumPy: embeddings + positions, causal 4-head attention over all three
    positions, residual, ReLU/GELU MLP, residual, unembed; the logits at the last position."""
    we = np.asarray(model.token_embed.weight)
    h = we[[a, b, model.p]] + np.asarray(model.pos_embed)
    att = model.attention
    n_heads = att.num_heads
    q = h @ np.asarray(att.query_proj.weight).T
    k = h @ np.asarray(att.key_proj.weight).T
    v = h @ np.asarray(att.value_proj.weight).T
    d_head = q.shape[1] // n_heads
    q, k, v = (m.reshape(3, n_heads, d_head) for m in (q, k, v))
    scores = np.einsum("ihd,jhd->hij", q, k) / math.sqrt(d_head)
    scores = np.where(np.tril(np.ones((3, 3), bool))[None], scores, -np.inf)
    weights = np.exp(scores - scores.max(axis=-1, keepdims=True))
    weights /= weights.sum(axis=-1, keepdims=True)
    z = np.einsum("hij,jhd->ihd", weights, v).reshape(3, n_heads * d_head)
    r = (h + z @ np.asarray(att.output_proj.weight).T)[2]
    pre = np.asarray(model.mlp_in.weight) @ r + np.asarray(model.mlp_in.bias)
    if model.activation == "relu":
        hidden = np.maximum(pre, 0.0)
    else:  # jax.nn.gelu's default tanh approximation
        hidden = 0.5 * pre * (1 + np.tanh(math.sqrt(2 / math.pi) * (pre + 0.044715 * pre**3)))
    r = r + np.asarray(model.mlp_out.weight) @ hidden + np.asarray(model.mlp_out.bias)
    return np.asarray(model.unembed.weight) @ r


def flat_params(model):
    return jnp.concatenate([x.ravel() for x in jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array))])


@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_forward_matches_numpy_equations(activation):
    model = small_transformer(activation)
    # Perturb the zero biases so that they are exercised too.
    model = eqx.tree_at(lambda m: (m.mlp_in.bias, m.mlp_out.bias), model, (jnp.full(24, 0.1), jnp.full(16, -0.2)))
    for a, b in [(0, 0), (3, 7), (10, 1)]:
        got = np.asarray(model(jnp.array([a, b])))
        assert got.shape == (P,)
        np.testing.assert_allclose(got, numpy_forward(model, a, b), rtol=1e-12, atol=1e-12)


def test_init_sizes_scale_and_parts():
    model = models.Transformer1L.init(113, key=jax.random.PRNGKey(0))
    # Nanda's sizes: 114 × 128 embeddings, 3 positions, 4 heads of 32, MLP 512, unembed to 113.
    assert isinstance(model.token_embed, eqx.nn.Embedding)
    assert isinstance(model.attention, eqx.nn.MultiheadAttention)
    assert model.token_embed.weight.shape == (114, 128) and model.pos_embed.shape == (3, 128)
    assert model.attention.num_heads == 4 and model.attention.qk_size == 32
    assert model.mlp_in.weight.shape == (512, 128) and model.unembed.weight.shape == (113, 128)
    assert model.embed.shape == (113, 128) and model.neuron_logit_map.shape == (113, 512)
    n_params = flat_params(model).size
    assert n_params == 114 * 128 + 3 * 128 + 4 * 128 * 128 + (512 * 128 + 512) + (128 * 512 + 128) + 113 * 128
    # Nanda's Gaussian initialisation: std 1/√d_model, the unembedding 1/√(p+1).
    np.testing.assert_allclose(np.std(np.asarray(model.attention.key_proj.weight)), 1 / math.sqrt(128), rtol=0.02)
    np.testing.assert_allclose(np.std(np.asarray(model.unembed.weight)), 1 / math.sqrt(114), rtol=0.03)
    assert float(jnp.abs(model.mlp_in.bias).max()) == 0.0
    # α multiplies every weight: ‖θ0(α)‖ = α‖θ0(1)‖ exactly, same key.
    base, scaled = small_transformer(alpha=1.0), small_transformer(alpha=3.0)
    np.testing.assert_allclose(flat_params(scaled), 3.0 * flat_params(base), rtol=1e-14)


@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_gradient_matches_central_differences(activation):
    problem = tasks.modular_transformer(0, p=P, d_model=16, n_heads=4, d_mlp=24, activation=activation)
    params, static = eqx.partition(problem.model, eqx.is_inexact_array)
    flat, unravel = jax.flatten_util.ravel_pytree(params)

    def loss(v):
        return problem.loss(eqx.combine(unravel(v), static), problem.train)

    grad = jax.grad(loss)(flat)
    rng = np.random.default_rng(1)
    for _ in range(3):
        direction = jnp.asarray(rng.standard_normal(flat.size))
        eps = 1e-6
        fd = (loss(flat + eps * direction) - loss(flat - eps * direction)) / (2 * eps)
        np.testing.assert_allclose(float(grad @ direction), float(fd), rtol=1e-6)


def test_task_split_and_defaults_are_nandas():
    problem = tasks.modular_transformer(0, p=113, d_model=8, n_heads=2, d_mlp=8)
    # 30% of the 113² ordered pairs train: 3830 of 12769.
    assert problem.train["x"].shape == (3830, 2) and problem.test["x"].shape == (12769 - 3830, 2)
    x = np.asarray(problem.train["x"])
    np.testing.assert_array_equal(np.asarray(problem.train["label"]), (x[:, 0] + x[:, 1]) % 113)
    # Same pairs as modular_arithmetic with the same key (so MLP and transformer runs compare).
    other = tasks.modular_arithmetic(0, p=113, train_fraction=0.3, width=8)
    np.testing.assert_array_equal(x, np.asarray(other.train["x"]))
    assert isinstance(problem.model, models.Transformer1L) and problem.loss_name == "cross_entropy"
    with pytest.raises(gflow.ProblemError, match="activation"):
        tasks.modular_transformer(0, p=P, activation="tanh")
    with pytest.raises(gflow.ProblemError, match="multiple of n_heads"):
        tasks.modular_transformer(0, p=P, d_model=10, n_heads=4)


# ---------------------------------------------------------------------------------------------
# Progress measures on hand-built tables
# ---------------------------------------------------------------------------------------------


class TableModel(eqx.Module):
    """A token-pair model that looks its logits up in a fixed (p, p, p) table."""

    table: jax.Array
    embed: jax.Array

    def __call__(self, x):
        return self.table[x[0], x[1]]


class NoEmbedding(eqx.Module):
    table: jax.Array

    def __call__(self, x):
        return self.table[x[0], x[1]]


def clock_table(p, freqs, scale):
    a, b, c = np.meshgrid(np.arange(p), np.arange(p), np.arange(p), indexing="ij")
    return scale * sum(np.cos(2 * np.pi * k * (a + b - c) / p) for k in freqs)


def pure_frequency_embedding(p, freqs, d=8):
    j = np.arange(p)[:, None]
    cols = [np.cos(2 * np.pi * k * j / p) for k in freqs] + [np.sin(2 * np.pi * k * j / p) for k in freqs]
    e = np.concatenate(cols, axis=1)
    return np.pad(e, ((0, 0), (0, d - e.shape[1])))


@pytest.fixture(scope="module")
def addition_problem():
    return tasks.modular_arithmetic(0, p=P, train_fraction=0.5, width=4)


def test_clock_table_keeps_its_loss_when_restricted_and_loses_it_when_excluded(addition_problem):
    freqs = [2, 4, 5]
    model = TableModel(jnp.asarray(clock_table(P, freqs, 4.0)), jnp.asarray(pure_frequency_embedding(P, freqs)))
    pm = analysis.progress_measures(model, addition_problem)
    np.testing.assert_array_equal(pm.frequencies, freqs)  # found from the embedding
    # The table is exactly its key-frequency part: restricting changes nothing...
    np.testing.assert_allclose(pm.restricted_loss, pm.train_loss, rtol=1e-10)
    np.testing.assert_allclose(pm.restricted_loss, pm.test_loss, rtol=1e-10)
    # ...and excluding leaves constant logits: uniform predictions, loss log p.
    np.testing.assert_allclose(pm.excluded_loss, math.log(P), rtol=1e-10)
    # Independent value of the loss: logit of the answer 4·3, the others 4·Σ_k cos(w_k(s−c)).
    c = np.arange(P)
    z = 4.0 * sum(np.cos(2 * np.pi * k * c / P) for k in freqs)
    np.testing.assert_allclose(pm.train_loss, -(z[0] - np.log(np.exp(z).sum())), rtol=1e-10)
    # L as a (p², p) matrix has 2|K| equal singular values: stable rank 2|K|.
    np.testing.assert_allclose(pm.logit_stable_rank, 6.0, rtol=1e-10)
    # Energy shared equally by 3 of the 5 frequencies: Gini 1 − 3/5.
    np.testing.assert_allclose(pm.embed_gini, 0.4, rtol=1e-10)
    assert math.isnan(pm.logit_map_gini)


def test_memorising_table_has_no_circuit(addition_problem):
    rng = np.random.default_rng(0)
    # A lookup table: large logit on the right answer for training pairs, noise elsewhere.
    table = 0.1 * rng.standard_normal((P, P, P))
    x, label = np.asarray(addition_problem.train["x"]), np.asarray(addition_problem.train["label"])
    table[x[:, 0], x[:, 1], label] += 10.0
    model = TableModel(jnp.asarray(table), jnp.asarray(rng.standard_normal((P, 8))))
    pm = analysis.progress_measures(model, addition_problem, frequencies=[1, 3])
    assert pm.train_loss < 1e-3 and pm.test_loss > math.log(P)
    # Removing two frequencies leaves most of a lookup table intact; keeping only them does not fit.
    assert pm.excluded_loss < 0.01 and pm.restricted_loss > 100 * pm.excluded_loss
    assert pm.logit_stable_rank > 6.0
    # The restricted logits are the mean plus the key-frequency projections, as computed here.
    s = np.add.outer(np.arange(P), np.arange(P))
    restricted = table.mean(axis=(0, 1), keepdims=True) + 0 * table
    for k in (1, 3):
        for wave in (np.cos(2 * np.pi * k * s / P), np.sin(2 * np.pi * k * s / P)):
            restricted += wave[:, :, None] * (np.einsum("ab,abc->c", wave, table) / np.sum(wave**2))
    pairs = np.concatenate([x, np.asarray(addition_problem.test["x"])])
    labels = np.concatenate([label, np.asarray(addition_problem.test["label"])])
    logits = restricted[pairs[:, 0], pairs[:, 1]]
    ref = -np.mean(logits[np.arange(len(labels)), labels] - np.log(np.exp(logits).sum(axis=1)))
    np.testing.assert_allclose(pm.restricted_loss, ref, rtol=1e-10)


def test_progress_measures_of_a_transformer_and_bad_input(addition_problem):
    model = small_transformer()
    pm = analysis.progress_measures(model, addition_problem)
    assert 0 <= pm.embed_gini < 1 and 0 <= pm.logit_map_gini < 1 and pm.logit_stable_rank >= 1
    train_loss = float(addition_problem.loss(model, addition_problem.train))
    np.testing.assert_allclose(pm.train_loss, train_loss, rtol=1e-10)
    with pytest.raises(gflow.ProblemError, match="frequencies must lie"):
        analysis.progress_measures(model, addition_problem, frequencies=[6])
    with pytest.raises(gflow.ProblemError, match="no .embed"):
        analysis.progress_measures(NoEmbedding(jnp.zeros((P, P, P))), addition_problem)


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_task_dtype_float32_makes_every_float_float32_and_keeps_the_split(loss):
    # The nanda_transformer figure runs its flow in float32 while x64 is on (3.7× faster on CPU):
    # parameters, one-hot targets and float data must all follow, or JAX would promote back.
    kwargs = dict(p=7, train_fraction=0.5, d_model=8, n_heads=2, d_mlp=16, loss=loss)
    single = tasks.modular_transformer(0, dtype="float32", **kwargs)
    double = tasks.modular_transformer(0, **kwargs)
    floats = [x for x in jax.tree.leaves(single) if eqx.is_inexact_array(x)]
    assert floats and all(x.dtype == jnp.float32 for x in floats)
    assert all(x.dtype == jnp.float64 for x in jax.tree.leaves(double) if eqx.is_inexact_array(x))
    np.testing.assert_array_equal(single.train["x"], double.train["x"])  # the same pairs
    if loss == "cross_entropy":  # one float32 solve (the other loss adds only its compile time)
        traj = gflow.simulate(single, 1e-2, 5.0, saveat=3)
        assert traj.ok and np.asarray(traj.metrics["train_loss"]).dtype == np.float32
    with pytest.raises(gflow.ProblemError, match="dtype must be 'float32', 'float64' or None"):
        tasks.modular_transformer(0, dtype="float16", **kwargs)
