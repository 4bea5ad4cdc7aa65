"""The benchmark problems of `suite.py`: `PROBLEMS[name](quick) -> gflow.Problem`.

Data and initialisations come from `gflow.tasks`; the two networks swap the papers' ReLU for GELU
(same weights, same init), because a ReLU network's gradient field is discontinuous: the flow
slides along activation kinks and every adaptive ODE solver crawls there. (Measured on Musat's
ReLU embedding net, p = 11, λ = 1e-3: Tsit5 and ROS34PW2 both spent 200 000 steps, 17–22%
rejected, without reaching t = 10/λ.) Gradient descent does not notice kinks, so with ReLU the
comparison would measure the kinks, not the solvers.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp

import gflow


class GeluMLP(eqx.Module):
    """Lyu's modular-addition MLP f(a, b) = W2 gelu(W1 [e_a; e_b] + b1) (`gflow.models.ModularMLP`
    with GELU)."""

    w1: jax.Array
    b1: jax.Array
    w2: jax.Array

    def __call__(self, x):
        p = self.w1.shape[1] // 2
        return self.w2 @ jax.nn.gelu(self.w1[:, x[0]] + self.w1[:, p + x[1]] + self.b1)


class GeluEmbeddingNet(eqx.Module):
    """Musat's embedding network gelu((e_a + e_b)ᵀE)W, no biases (`gflow.models.EmbeddingNet`
    with GELU)."""

    embed: jax.Array
    w: jax.Array

    def __call__(self, x):
        return jax.nn.gelu(self.embed[x[0]] + self.embed[x[1]]) @ self.w


def diagonal_network(n_params: int, alpha: float = 3.0) -> gflow.Problem:
    """Lyu's 2-homogeneous diagonal net β = u² − v² at u = v = α (zero output), 5-sparse regression.

    features = n_params/2, n = max(20, features/10) training examples.
    """
    d = n_params // 2
    return gflow.tasks.diagonal_regression(
        0, n=max(20, d // 10), d=d, k=min(5, d), alpha=alpha, parameterisation="squares", n_test=500
    )


def matrix_completion(quick: bool = False) -> gflow.Problem:
    """Lyu's multiplication-table completion (E3.5) at a quick size: d = 20 (800 parameters),
    20% of the entries observed, U = V = 10·I (`gflow.tasks.multiplication_table`)."""
    return gflow.tasks.multiplication_table(0, d=12 if quick else 20, fraction=0.2, alpha=10.0)


def _sum_residuals(model, data):
    # F = ½·Σ over all n·p entries (Musat's sum normalisation, without his factor 2): residuals
    # scaled by √(n·p) under gflow's F = ½·mean(r²).
    r = jax.vmap(model)(data["x"]) - data["y"]
    return jnp.sqrt(jnp.asarray(r.size, r.dtype)) * jnp.ravel(r)


def musat_embedding(quick: bool = False, relu: bool = False) -> gflow.Problem:
    """Musat's E2.4 network: addition mod 11 on unordered pairs (66; 59 train), inputs e_a + e_b,
    width 128, no biases, PyTorch-default init, squared loss on one-hot targets summed over
    entries as in the paper (F = ½Σ, not gflow's mean: with the mean the net barely trains at
    λ ≥ 1e-5), 2 816 parameters, 649 residuals. GELU for the suite; `relu=True`: the paper's
    ReLU (`gflow.models.EmbeddingNet` itself; benchmarks/relu_flows.py)."""
    p, width = (7, 32) if quick else (11, 128)
    base = gflow.models.EmbeddingNet.init(p, width, key=jax.random.PRNGKey(0), init="torch")
    model = base if relu else GeluEmbeddingNet(base.embed, base.w)
    task = gflow.tasks.modular_arithmetic(0, p=p, pairs="unordered", train_fraction=0.9, loss="mse", model=model)
    accuracy = lambda m, d: jnp.mean(jnp.argmax(jax.vmap(m)(d["x"]), axis=-1) == d["label"])
    return gflow.Problem(
        task.model, task.train, residuals=_sum_residuals, test=task.test, metrics={"accuracy": accuracy}
    )


def modular_mlp(quick: bool = False) -> gflow.Problem:
    """Lyu's E3.1 MLP scaled down: addition mod 23 on all ordered pairs, 80% train (423), width
    160, He init ×10 with W2 = 0 (Lyu's large-scale zero-output init): 11 200 parameters,
    cross-entropy."""
    p, width = (7, 16) if quick else (23, 160)
    base = gflow.models.ModularMLP.init(p, width, key=jax.random.PRNGKey(0), alpha=10.0, zero_last=True)
    return gflow.tasks.modular_arithmetic(
        0, p=p, train_fraction=0.8, loss="cross_entropy", model=GeluMLP(base.w1, base.b1, base.w2)
    )


def teacher_student_tanh(quick: bool = False) -> gflow.Problem:
    """A user's own model: an `eqx.nn.MLP` student (tanh, width 32, depth 2, 1 441 parameters)
    fitting a smaller tanh teacher (width 4, depth 1) on 100 Gaussian inputs in 10 dimensions,
    mean squared error, 200 test inputs. Nothing here comes from `gflow.tasks`: it is the
    teacher–student regression a researcher writes in a few lines."""
    in_size, width, n_train = (4, 8, 20) if quick else (10, 32, 100)
    keys = jax.random.split(jax.random.key(0), 4)
    teacher = eqx.nn.MLP(in_size, "scalar", 4, 1, activation=jnp.tanh, key=keys[0])
    student = eqx.nn.MLP(in_size, "scalar", width, 2, activation=jnp.tanh, key=keys[1])

    def data(key, n):
        x = jax.random.normal(key, (n, in_size))
        return {"x": x, "y": jax.vmap(teacher)(x)}

    return gflow.Problem(student, data(keys[2], n_train), loss="mse", test=data(keys[3], 2 * n_train))


PROBLEMS = {
    "diag100": lambda quick: diagonal_network(40 if quick else 100),
    "diag1000": lambda quick: diagonal_network(1000),
    "matrix_completion": matrix_completion,
    "musat_embedding": musat_embedding,
    "modular_mlp": modular_mlp,
    "teacher_student_tanh": teacher_student_tanh,
}


def describe(problem: gflow.Problem) -> dict:
    from gflow._rosenbrock import num_outputs

    return {
        "params": gflow.count_params(problem.model),
        "outputs": num_outputs(problem),
        "train_examples": int(jax.tree.leaves(problem.train)[0].shape[0]),
        "loss": problem.loss_name or "custom",
        "log10_params": round(math.log10(gflow.count_params(problem.model)), 2),
    }
