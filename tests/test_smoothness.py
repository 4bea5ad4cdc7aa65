"""`gflow.nonsmooth_operations`: which losses have kinks (ReLU, abs, max, where on θ), read off
the jaxpr, on the models users bring (eqx.nn modules with each activation, attention, layer
norm, embeddings, user-written functions, control flow) and on every built-in task."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import pytest

import gflow

KEY = jax.random.PRNGKey(0)
X = jax.random.normal(KEY, (12, 3))
Y_REG = jax.random.normal(jax.random.PRNGKey(1), (12, 1))
Y_CLS = jnp.arange(12) % 2


def mlp_problem(activation, loss="mse"):
    out = 1 if loss == "mse" else 2
    model = eqx.nn.MLP(3, out, 6, 2, activation=activation, key=KEY)
    return gflow.Problem(model, {"x": X, "y": Y_REG if loss == "mse" else Y_CLS}, loss=loss)


SMOOTH = {
    "tanh": jnp.tanh,
    "gelu": jax.nn.gelu,
    "softplus": jax.nn.softplus,
    "silu": jax.nn.silu,
    "sigmoid": jax.nn.sigmoid,
}
KINKED = {
    "relu": (jax.nn.relu, "max (in relu)"),
    "leaky_relu": (jax.nn.leaky_relu, "select_n (in leaky_relu)"),
    "abs": (jnp.abs, "abs"),
    "relu6": (jax.nn.relu6, "max (in relu6)"),
    "maximum": (lambda z: jnp.maximum(z, 0.1 * z), "max"),
}


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
@pytest.mark.parametrize("name", sorted(SMOOTH))
def test_smooth_activations_are_smooth(name, loss):
    # cross_entropy's logsumexp takes a max of the logits, behind stop_gradient: not a kink.
    assert gflow.nonsmooth_operations(mlp_problem(SMOOTH[name], loss)) == ()


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
@pytest.mark.parametrize("name", sorted(KINKED))
def test_kinked_activations_are_named(name, loss):
    activation, expected = KINKED[name]
    assert expected in gflow.nonsmooth_operations(mlp_problem(activation, loss))


def test_library_blocks_attention_layernorm_embedding_are_smooth():
    class Block(eqx.Module):
        embed: eqx.nn.Embedding
        attn: eqx.nn.MultiheadAttention
        norm: eqx.nn.LayerNorm
        out: eqx.nn.Linear

        def __init__(self, key):
            k1, k2, k3 = jax.random.split(key, 3)
            self.embed = eqx.nn.Embedding(7, 8, key=k1)
            self.attn = eqx.nn.MultiheadAttention(2, 8, key=k2)
            self.norm = eqx.nn.LayerNorm(8)
            self.out = eqx.nn.Linear(8, 7, key=k3)

        def __call__(self, tokens):
            h = jax.vmap(self.embed)(tokens)
            h = h + self.attn(h, h, h)
            h = jax.vmap(self.norm)(h)
            return self.out(h[-1])

    tokens = jax.random.randint(KEY, (10, 3), 0, 7)
    problem = gflow.Problem(Block(KEY), {"x": tokens, "y": tokens[:, 0]}, loss="cross_entropy")
    # The embedding gathers rows at the data's token ids: indices that do not depend on θ.
    assert gflow.nonsmooth_operations(problem) == ()


def test_where_and_control_flow_on_parameters():
    w0 = {"w": jnp.array([0.5, -0.2])}

    def where_loss(params, data):
        z = data["x"][:, :2] @ params["w"]
        return jnp.mean(jnp.where(z > 0, z, 0.0) ** 2)

    def cond_loss(params, data):
        s = jnp.sum(params["w"])
        return jax.lax.cond(s > 0, lambda v: v**2, lambda v: -v, s)

    def scan_loss(params, data):
        def body(c, x):
            return jnp.maximum(c, x @ params["w"]), None

        return jax.lax.scan(body, 0.0, data["x"][:, :2])[0]

    def data_where_loss(params, data):
        # The branch depends on the data only: smooth in θ.
        return jnp.mean(jnp.where(data["x"][:, 0] > 0, data["x"][:, :2] @ params["w"], 0.0) ** 2)

    def stopped_loss(params, data):
        # A kink behind stop_gradient contributes nothing to ∇F.
        return jnp.sum(params["w"] ** 2) * jax.lax.stop_gradient(jnp.max(jnp.abs(params["w"])))

    found = {
        name: gflow.nonsmooth_operations(gflow.Problem(w0, {"x": X}, loss=fn))
        for name, fn in [
            ("where", where_loss),
            ("cond", cond_loss),
            ("scan", scan_loss),
            ("data_where", data_where_loss),
            ("stopped", stopped_loss),
        ]
    }
    assert found["where"] and found["cond"] and found["scan"], found
    assert found["data_where"] == () and found["stopped"] == (), found


@pytest.mark.parametrize(
    "task, kinked",
    [
        ("modular_arithmetic", True),
        ("teacher_relu_1d", True),
        ("diagonal_regression", False),
        ("linear_regression", False),
        ("matrix_completion", False),
        ("misgrokking", False),
        ("sparse_classification", False),
        ("multiplication_table", False),
        ("musat_addition", False),
    ],
)
def test_builtin_tasks(task, kinked):
    # The papers' ReLU models are kinked; the diagonal nets, matrix sensing, the bilinear
    # multiplication table and Musat's smooth embedding net are not.
    found = gflow.nonsmooth_operations(getattr(gflow.tasks, task)(0))
    assert found == (("max (in relu)",) if kinked else ()), found
