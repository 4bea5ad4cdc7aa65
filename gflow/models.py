r"""Equinox models of the seed papers. Each is called on one example `x`.

Every model is an `eqx.Module` whose floating-point arrays are the parameters θ (the ODE state);
sizes and activations are static. Each has a classmethod `init(*sizes, key, alpha, ...)`:
`key` is keyword-only, `alpha` multiplies every parameter of the reference initialisation (so
‖θ0‖ is exactly proportional to α) and, where the paper uses one, an option gives a
zero-output initialisation f(θ0; x) = 0 (Lyu et al.'s θ̄_init). Deterministic initialisations
accept `key=None`.

| model | f(θ; x) | paper |
|---|---|---|
| `Linear` | ⟨w, x⟩ | Boursier App. C, Musat E2.1 |
| `TwoLayerLinear` | w2 · (W1 x) | Musat Fig. 3 (curved zero set, singular origin) |
| `LeakyReLUNeuron` | σ(⟨w, x⟩), σ leaky ReLU of slope 1/10 | Musat Fig. 3 |
| `DiagonalNet` | ⟨u⊙v, x⟩ or ⟨u² − v², x⟩ | Boursier E1.3, Lyu E3.3/E3.4 |
| `MatrixFactorisation` | (UVᵀ)_ij on an index pair (i, j) | Boursier E1.1 |
| `SymmetricFactorisation` | (UUᵀ − VVᵀ)_ij on (i, j) | Lyu E3.5 |
| `DeepLinear` | W_L ⋯ W_1 x | Tan et al. (Schatten-2/L) |
| `ReLU1D` | Σ_j u_j ReLU(v_j x + b_j), x scalar | Boursier E1.2 |
| `ModularMLP` | W2 ReLU(W1 [e_a; e_b] + b1) | Lyu E3.1 |
| `EmbeddingNet` | ReLU((e_a + e_b)ᵀE) W | Musat E2.4/E2.5 |
| `EmbedMLP` | W2 ReLU(W1(E_a + E_b) + b1) | Tan et al. (two clocks) |
| `Transformer1L` | 1-layer transformer on "a b =" (4 heads, ReLU MLP, no LayerNorm) | Nanda et al. 2023 (§6) |

Token-pair models (`ModularMLP`, `EmbeddingNet`, `EmbedMLP`) take `x` as an integer pair (a, b)
and index their weights, which equals multiplying by the one-hot encoding without forming it;
`ModularMLP` and `EmbeddingNet` also accept the dense float encoding.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp

from ._problem import ProblemError


def _dtype(dtype):
    return jnp.zeros(()).dtype if dtype is None else dtype  # float64 when x64 is on


def _normal(key, shape, std, dtype):
    return std * jax.random.normal(key, shape, _dtype(dtype))


def _split(key, n):
    if key is None:
        raise ProblemError("this initialisation is random: pass key=jax.random.PRNGKey(...)")
    if isinstance(key, int):
        key = jax.random.PRNGKey(key)
    return jax.random.split(key, n)


def _pair_rows(weight, x, *, concat: bool):
    """`weight` (h, ·) applied to the encoding of a token pair `x`.

    Integer `x` = (a, b) selects columns: [e_a; e_b] (concatenated one-hots, `weight` of shape
    (h, 2p)) when `concat`, else e_a + e_b (`weight` of shape (h, p)). Float `x` is the dense
    encoding itself: weight @ x.
    """
    if jnp.issubdtype(x.dtype, jnp.integer):
        if concat:
            return weight[:, x[0]] + weight[:, weight.shape[1] // 2 + x[1]]
        return weight[:, x[0]] + weight[:, x[1]]
    return weight @ x.astype(weight.dtype)


# ---------------------------------------------------------------------------------------------
# Linear models and toys
# ---------------------------------------------------------------------------------------------


class Linear(eqx.Module):
    """f(x) = ⟨w, x⟩: linear regression with weight vector `w` of shape (d,).

    `Linear.init(d, key=..., alpha=1.0)`: w ~ 𝒩(0, α² I).
    """

    w: jax.Array

    @classmethod
    def init(cls, d: int, *, key, alpha=1.0, dtype=None) -> Linear:
        (k,) = _split(key, 1)
        return cls(_normal(k, (d,), alpha, dtype))

    def __call__(self, x):
        return jnp.dot(x, self.w)


class TwoLayerLinear(eqx.Module):
    r"""Two-layer linear network f(x) = w2 · (W1 x) (Musat Fig. 3).

    With one input and one hidden unit, f(x) = w2 w1 x: the zero-loss set of one sample
    {w1 w2 = y/x} is a curved hyperbola, and for y = 0 it is the union of the two axes, singular
    at the origin (where the Jacobian of the outputs vanishes).

    `w1` has shape (h, d); `w2` shape (h,) (scalar output) or (k, h).
    `init(d, h, k=None, key=..., alpha=1.0, zero_last=False)`: entries 𝒩(0, α²/fan_in);
    `zero_last=True` sets w2 = 0 (zero output).
    """

    w1: jax.Array
    w2: jax.Array

    @classmethod
    def init(cls, d: int, h: int, k: int | None = None, *, key, alpha=1.0, zero_last: bool = False, dtype=None):
        k1, k2 = _split(key, 2)
        w1 = _normal(k1, (h, d), alpha / math.sqrt(d), dtype)
        shape2 = (h,) if k is None else (k, h)
        w2 = _normal(k2, shape2, alpha / math.sqrt(h), dtype)
        if zero_last:
            w2 = jnp.zeros_like(w2)
        return cls(w1, w2)

    def __call__(self, x):
        return self.w2 @ (self.w1 @ jnp.atleast_1d(x))


class LeakyReLUNeuron(eqx.Module):
    r"""A single leaky-ReLU unit f(x) = σ(⟨w, x⟩), σ(z) = max(z, s·z) with slope s = 1/10.

    Musat Fig. 3: this one-layer net still groks "1 + 1 = 2" (the zero-loss set is two half
    lines glued at a kink). `init(d, key=..., alpha=1.0)`: w ~ 𝒩(0, α² I).
    """

    w: jax.Array
    slope: float = eqx.field(static=True, default=0.1)

    @classmethod
    def init(cls, d: int, *, key, alpha=1.0, slope: float = 0.1, dtype=None):
        (k,) = _split(key, 1)
        return cls(_normal(k, (d,), alpha, dtype), slope)

    def __call__(self, x):
        z = jnp.dot(x, self.w)
        return jnp.where(z >= 0, z, self.slope * z)


class DiagonalNet(eqx.Module):
    r"""Diagonal linear network f(x) = ⟨β, x⟩ with β = u ⊙ v (`"uv"`) or β = u² − v² (`"squares"`).

    The `"uv"` form is Boursier et al.'s (its interpolating set is a manifold of dimension
    2d − n away from zero coordinates); the `"squares"` form is Lyu et al.'s 2-homogeneous
    model, whose init u = v = α gives f ≡ 0 (zero-output initialisation), with NTK features
    φ(x) = 2α(x, −x): its kernel predictors are the minimum-ℓ2 interpolator and the
    max-ℓ2-margin classifier.

    `init(d, key=None, alpha=1.0, parameterisation="squares", init="uniform")`: `"uniform"`
    sets u = v = α·1 (zero output for `"squares"`, no key needed); `"gaussian"` draws u, v
    i.i.d. 𝒩(0, α²).
    """

    u: jax.Array
    v: jax.Array
    parameterisation: str = eqx.field(static=True, default="uv")

    def __check_init__(self):
        if self.parameterisation not in ("uv", "squares"):
            raise ProblemError(f"parameterisation must be 'uv' or 'squares', got {self.parameterisation!r}")

    @classmethod
    def init(cls, d: int, *, key=None, alpha=1.0, parameterisation: str = "squares", init: str = "uniform", dtype=None):
        if init == "uniform":
            u = alpha * jnp.ones((d,), _dtype(dtype))
            return cls(u, u, parameterisation)
        if init != "gaussian":
            raise ProblemError(f"init must be 'uniform' or 'gaussian', got {init!r}")
        k1, k2 = _split(key, 2)
        return cls(_normal(k1, (d,), alpha, dtype), _normal(k2, (d,), alpha, dtype), parameterisation)

    @property
    def beta(self) -> jax.Array:
        if self.parameterisation == "uv":
            return self.u * self.v
        return self.u**2 - self.v**2

    def __call__(self, x):
        return jnp.dot(x, self.beta)


# ---------------------------------------------------------------------------------------------
# Matrix factorisations (called on an index pair)
# ---------------------------------------------------------------------------------------------


class MatrixFactorisation(eqx.Module):
    r"""W = UVᵀ with U ∈ ℝ^{m×r}, V ∈ ℝ^{n×r}; called on an integer pair (i, j), returns W_ij.

    Boursier E1.1 takes the "extremely over-parameterised" r = m + n; on the zero-loss set the
    slow flow minimises ‖U‖²_F + ‖V‖²_F ≥ 2‖W‖_* (equality at balanced factors), a drift to low
    rank. W_ij = ⟨U_i, V_j⟩ costs O(r) per entry (the full matrix is never formed in a loss).

    `init(m, n, r=None, key=..., alpha=1.0)`: r defaults to m + n; entries i.i.d. 𝒩(0, α²).
    Boursier's initialisation scale is not known (papers.md §2.5); entry std α = 1 is our choice.
    """

    u: jax.Array
    v: jax.Array

    @classmethod
    def init(cls, m: int, n: int, r: int | None = None, *, key, alpha=1.0, dtype=None):
        r = m + n if r is None else r
        k1, k2 = _split(key, 2)
        return cls(_normal(k1, (m, r), alpha, dtype), _normal(k2, (n, r), alpha, dtype))

    @property
    def matrix(self) -> jax.Array:
        return self.u @ self.v.T

    def __call__(self, x):
        return jnp.dot(self.u[x[0]], self.v[x[1]])


class SymmetricFactorisation(eqx.Module):
    r"""W = UUᵀ − VVᵀ with U, V ∈ ℝ^{d×r} (Lyu E3.5); called on (i, j), returns W_ij.

    2-homogeneous; U = V gives W = 0 (zero output). At θ̄ = (I, I) the NTK feature of entry
    (i, j) is (E_ij + E_ji, −(E_ij + E_ji)), so the kernel (min-norm) predictor copies every
    observed entry to its transpose and fills the rest with zeros (Lyu Cor. 3.11).

    `init(d, r=None, key=None, alpha=1.0, noise=0.0)`: U = V = α I_{d×r} (r defaults to d),
    plus i.i.d. 𝒩(0, noise²) perturbations of each entry when `noise > 0` (Lyu Thm 3.12's
    𝒩(α·1{i=j}, σ²); needs a key). With `noise = 0` no key is needed.
    """

    u: jax.Array
    v: jax.Array

    @classmethod
    def init(cls, d: int, r: int | None = None, *, key=None, alpha=1.0, noise=0.0, dtype=None):
        r = d if r is None else r
        eye = alpha * jnp.eye(d, r, dtype=_dtype(dtype))
        if noise == 0:
            return cls(eye, eye)
        k1, k2 = _split(key, 2)
        return cls(eye + _normal(k1, (d, r), noise, dtype), eye + _normal(k2, (d, r), noise, dtype))

    @property
    def matrix(self) -> jax.Array:
        return self.u @ self.u.T - self.v @ self.v.T

    def __call__(self, x):
        i, j = x[0], x[1]
        return jnp.dot(self.u[i], self.u[j]) - jnp.dot(self.v[i], self.v[j])


class DeepLinear(eqx.Module):
    r"""Deep linear network f(x) = A x with A = W_L ⋯ W_1 (end-to-end map; Tan et al.).

    Layerwise weight decay (λ/2)Σ‖W_ℓ‖²_F acts on A as the Schatten quasi-norm
    (λL/2)‖A‖_{S_{2/L}}^{2/L} at balanced factorisations, since
    ‖A‖_{S_{2/L}}^{2/L} = (1/L) min_{W_L⋯W_1 = A} Σ_ℓ‖W_ℓ‖²_F (see
    `gflow.analysis.schatten_energy`).

    `weights` is a tuple (W_1, …, W_L), W_ℓ of shape (d_ℓ, d_{ℓ−1}).
    `init(d_in, width, d_out, depth, key=..., alpha=1.0, zero_last=False)`: entries
    𝒩(0, α²/fan_in); `zero_last` sets W_L = 0.
    """

    weights: tuple

    @classmethod
    def init(cls, d_in: int, width: int, d_out: int, depth: int, *, key, alpha=1.0, zero_last=False, dtype=None):
        if depth < 1:
            raise ProblemError(f"depth must be >= 1, got {depth}")
        dims = [d_in] + [width] * (depth - 1) + [d_out]
        keys = _split(key, depth)
        ws = [_normal(k, (dims[i + 1], dims[i]), alpha / math.sqrt(dims[i]), dtype) for i, k in enumerate(keys)]
        if zero_last:
            ws[-1] = jnp.zeros_like(ws[-1])
        return cls(tuple(ws))

    @property
    def depth(self) -> int:
        return len(self.weights)

    @property
    def matrix(self) -> jax.Array:
        """The end-to-end map A = W_L ⋯ W_1."""
        a = self.weights[0]
        for w in self.weights[1:]:
            a = w @ a
        return a

    def __call__(self, x):
        for w in self.weights:
            x = w @ x
        return x


# ---------------------------------------------------------------------------------------------
# ReLU networks
# ---------------------------------------------------------------------------------------------


class ReLU1D(eqx.Module):
    r"""f(x) = Σ_{j=1}^m u_j ReLU(v_j x + b_j) on scalar x (Boursier E1.2), parameters (u, v, b).

    The kinks sit at x = −b_j/v_j. `init(m, key=..., alpha=2.0, zero_last=False)`: u, v, b
    i.i.d. 𝒩(0, α²); Boursier's "variance 4" is the default α = 2. ReLU is not C³, so this is
    outside the theory; gradient flow uses ReLU′(0) = 0 (JAX's convention).
    """

    u: jax.Array
    v: jax.Array
    b: jax.Array

    @classmethod
    def init(cls, m: int, *, key, alpha=2.0, zero_last: bool = False, dtype=None):
        ku, kv, kb = _split(key, 3)
        u = _normal(ku, (m,), alpha, dtype)
        if zero_last:
            u = jnp.zeros_like(u)
        return cls(u, _normal(kv, (m,), alpha, dtype), _normal(kb, (m,), alpha, dtype))

    def __call__(self, x):
        return jnp.dot(self.u, jax.nn.relu(self.v * x + self.b))


class ModularMLP(eqx.Module):
    r"""Two-layer ReLU MLP on concatenated one-hots (Lyu E3.1): f(a, b) = W2 ReLU(W1 [e_a; e_b] + b1).

    W1 ∈ ℝ^{h×2p}, b1 ∈ ℝ^h, W2 ∈ ℝ^{k×h} (k = p logits); bias only in the first layer.
    `x` is an integer pair (a, b) (or the dense 2p-vector).

    `init(p, h, k=None, key=..., alpha=1.0, zero_last=False)`: He/Kaiming normal as in Lyu's
    code: W1 ~ 𝒩(0, 2/(2p)) (ReLU gain), W2 ~ 𝒩(0, 1/h) (linear gain), b1 = 0; then every weight
    is multiplied by α ("init scale ×α"), and `zero_last=True` sets W2 = 0 so that f(θ0) = 0
    (Lyu's `--last-layer-zero-init`).
    """

    w1: jax.Array
    b1: jax.Array
    w2: jax.Array

    @classmethod
    def init(cls, p: int, h: int, k: int | None = None, *, key, alpha=1.0, zero_last: bool = False, dtype=None):
        k = p if k is None else k
        k1, k2 = _split(key, 2)
        w1 = _normal(k1, (h, 2 * p), alpha * math.sqrt(2.0 / (2 * p)), dtype)
        w2 = _normal(k2, (k, h), alpha / math.sqrt(h), dtype)
        if zero_last:
            w2 = jnp.zeros_like(w2)
        return cls(w1, jnp.zeros((h,), w1.dtype), w2)

    def __call__(self, x):
        return self.w2 @ jax.nn.relu(_pair_rows(self.w1, x, concat=True) + self.b1)


class EmbeddingNet(eqx.Module):
    r"""Musat's two-layer network Ŷ = σ(XE)W on X_i = e_a + e_b, no biases (E2.4/E2.5).

    E ∈ ℝ^{p×d_h} (the first layer, "embedding"), W ∈ ℝ^{d_h×k}; σ = ReLU. For a = b the input
    is 2e_a. `x` is an integer pair (a, b) (or the dense p-vector X_i).

    `init(p, d_h, k=None, key=..., alpha=1.0, init="gaussian", zero_last=False)`:
    - `"gaussian"` (E2.5): E ~ 𝒩(0, 1/p) (std p^{−1/2}; papers.md §10.4: std, not variance,
      reproduces the reported timing), W ~ 𝒩(0, 1/d_h);
    - `"torch"` (E2.4, PyTorch `nn.Linear` default): E ~ U(±1/√p), W ~ U(±1/√d_h).
    Every weight is then multiplied by α; `zero_last` sets W = 0.
    """

    embed: jax.Array
    w: jax.Array

    @classmethod
    def init(
        cls,
        p: int,
        d_h: int,
        k: int | None = None,
        *,
        key,
        alpha=1.0,
        init: str = "gaussian",
        zero_last: bool = False,
        dtype=None,
    ):
        k = p if k is None else k
        k1, k2 = _split(key, 2)
        dt = _dtype(dtype)
        if init == "gaussian":
            e = _normal(k1, (p, d_h), 1.0 / math.sqrt(p), dt)
            w = _normal(k2, (d_h, k), 1.0 / math.sqrt(d_h), dt)
        elif init == "torch":
            e = jax.random.uniform(k1, (p, d_h), dt, -1.0, 1.0) / math.sqrt(p)
            w = jax.random.uniform(k2, (d_h, k), dt, -1.0, 1.0) / math.sqrt(d_h)
        else:
            raise ProblemError(f"init must be 'gaussian' or 'torch', got {init!r}")
        w = jnp.zeros_like(w) if zero_last else alpha * w
        return cls(alpha * e, w)

    def hidden(self, x):
        """σ(x E) for one example: the hidden activations H_i."""
        return jax.nn.relu(_pair_rows(self.embed.T, x, concat=False))

    def __call__(self, x):
        return self.hidden(x) @ self.w


class EmbedMLP(eqx.Module):
    r"""Token embeddings combined symmetrically, then a ReLU MLP (Tan et al.'s two-clocks model).

    f(a, b) = W2 ReLU(W1 (E_a + E_b) + b1), E ∈ ℝ^{p×d} trainable embeddings, W1 ∈ ℝ^{h×d},
    b1 ∈ ℝ^h, W2 ∈ ℝ^{k×h} (k = p logits). The paper's depth and width are unknown (papers.md
    §10.3): one hidden layer and the sum E_a + E_b are our choices.

    `init(p, d, h, k=None, key=..., alpha=1.0, zero_last=False)`: E ~ 𝒩(0, 1) (PyTorch
    `nn.Embedding`), W1 ~ 𝒩(0, 2/(2d)) (He, for the input E_a + E_b of variance 2 per entry),
    W2 ~ 𝒩(0, 1/h), b1 = 0; all weights times α; `zero_last` sets W2 = 0.
    """

    embed: jax.Array
    w1: jax.Array
    b1: jax.Array
    w2: jax.Array

    @classmethod
    def init(cls, p: int, d: int, h: int, k: int | None = None, *, key, alpha=1.0, zero_last: bool = False, dtype=None):
        k = p if k is None else k
        ke, k1, k2 = _split(key, 3)
        e = _normal(ke, (p, d), alpha, dtype)
        w1 = _normal(k1, (h, d), alpha * math.sqrt(1.0 / d), dtype)
        w2 = _normal(k2, (k, h), alpha / math.sqrt(h), dtype)
        if zero_last:
            w2 = jnp.zeros_like(w2)
        return cls(e, w1, jnp.zeros((h,), e.dtype), w2)

    def __call__(self, x):
        z = self.embed[x[0]] + self.embed[x[1]]
        return self.w2 @ jax.nn.relu(self.w1 @ z + self.b1)


# ---------------------------------------------------------------------------------------------
# The one-layer transformer of Nanda et al. (modular addition)
# ---------------------------------------------------------------------------------------------

TRANSFORMER_ACTIVATIONS = {"relu": jax.nn.relu, "gelu": jax.nn.gelu}


class Transformer1L(eqx.Module):
    r"""Nanda et al.'s one-layer transformer on the sequence "a b =" (papers.md §6, A15).

    Vocabulary p + 1 (the numbers 0 … p−1 and "=" = p), context 3. With h_i = W_E[token_i] +
    W_pos[i] (the residual stream, d_model wide):

        r = h_3 + Attn(h_3; h_1, h_2, h_3),   r ← r + W_out σ(W_in r + b_in) + b_out,
        f(a, b) = W_U r  ∈ ℝ^p,

    with `n_heads` heads of size d_model/n_heads (scores scaled by 1/√d_head), no biases in the
    attention, σ = ReLU (or GELU, for a smooth flow), no LayerNorm. The logits are read at the
    "=" position only; a causal mask does not change them (the last position sees every
    position), and in one layer the other positions' outputs never reach that read-out, so only
    the "=" query is computed. Nanda's W_U also has a column for "="; here f has the p answer
    logits only (a p-class problem like the other modular models).

    Parts are `eqx.nn` modules: `token_embed` (Embedding), `attention` (MultiheadAttention),
    `mlp_in`, `mlp_out`, `unembed` (Linear); `pos_embed` is an array. `embed` is the (p, d_model)
    token-embedding table of the numbers, so `gflow.analysis.key_frequencies(model)` reads W_E.

    `init(p, d_model=128, n_heads=4, d_mlp=512, key=..., alpha=1.0, activation="relu")`:
    Nanda's code's initialisation, every weight 𝒩(0, 1/d_model) except W_U ~ 𝒩(0, 1/(p+1)),
    biases zero; then every weight is multiplied by α. Nanda's sizes are the defaults (p = 113).
    """

    token_embed: eqx.nn.Embedding
    pos_embed: jax.Array
    attention: eqx.nn.MultiheadAttention
    mlp_in: eqx.nn.Linear
    mlp_out: eqx.nn.Linear
    unembed: eqx.nn.Linear
    activation: str = eqx.field(static=True)

    @classmethod
    def init(
        cls,
        p: int,
        d_model: int = 128,
        n_heads: int = 4,
        d_mlp: int = 512,
        *,
        key,
        alpha=1.0,
        activation: str = "relu",
        dtype=None,
    ) -> Transformer1L:
        if activation not in TRANSFORMER_ACTIVATIONS:
            raise ProblemError(f"activation must be one of {', '.join(TRANSFORMER_ACTIVATIONS)}, got {activation!r}")
        if d_model % n_heads:
            raise ProblemError(f"d_model={d_model} must be a multiple of n_heads={n_heads}")
        dt = _dtype(dtype)
        keys = _split(key, 8)
        std = alpha / math.sqrt(d_model)
        vocab = p + 1
        attention = eqx.nn.MultiheadAttention(n_heads, d_model, key=keys[0], dtype=dt)
        mlp_in = eqx.nn.Linear(d_model, d_mlp, key=keys[1], dtype=dt)
        mlp_out = eqx.nn.Linear(d_mlp, d_model, key=keys[2], dtype=dt)
        unembed = eqx.nn.Linear(d_model, p, use_bias=False, key=keys[3], dtype=dt)
        model = cls(
            eqx.nn.Embedding(weight=_normal(keys[4], (vocab, d_model), std, dt)),
            _normal(keys[5], (3, d_model), std, dt),
            attention,
            mlp_in,
            mlp_out,
            unembed,
            activation,
        )
        # eqx.nn's constructors draw uniform weights (keys 0–3); replace them by Nanda's Gaussians
        # and zero biases.
        where = lambda m: (  # noqa: E731
            m.attention.query_proj.weight,
            m.attention.key_proj.weight,
            m.attention.value_proj.weight,
            m.attention.output_proj.weight,
            m.mlp_in.weight,
            m.mlp_in.bias,
            m.mlp_out.weight,
            m.mlp_out.bias,
            m.unembed.weight,
        )
        wkeys = jax.random.split(keys[6], 6)
        new = (
            _normal(wkeys[0], (d_model, d_model), std, dt),
            _normal(wkeys[1], (d_model, d_model), std, dt),
            _normal(wkeys[2], (d_model, d_model), std, dt),
            _normal(wkeys[3], (d_model, d_model), std, dt),
            _normal(wkeys[4], (d_mlp, d_model), std, dt),
            jnp.zeros((d_mlp,), dt),
            _normal(wkeys[5], (d_model, d_mlp), std, dt),
            jnp.zeros((d_model,), dt),
            _normal(keys[7], (p, d_model), alpha / math.sqrt(vocab), dt),
        )
        return eqx.tree_at(where, model, new)

    @property
    def p(self) -> int:
        return self.unembed.out_features

    @property
    def embed(self) -> jax.Array:
        """W_E restricted to the p number tokens, shape (p, d_model)."""
        return self.token_embed.weight[: self.p]

    def residual(self, x):
        """The residual stream at "=" after attention and MLP, shape (d_model,)."""
        tokens = jnp.stack([x[0], x[1], jnp.asarray(self.p, x.dtype)])
        h = jax.vmap(self.token_embed)(tokens) + self.pos_embed
        r = h[2] + self.attention(h[2:], h, h)[0]
        hidden = TRANSFORMER_ACTIVATIONS[self.activation](self.mlp_in(r))
        return r + self.mlp_out(hidden)

    def __call__(self, x):
        return self.unembed(self.residual(x))

    @property
    def neuron_logit_map(self) -> jax.Array:
        """W_L = W_U W_out, the map from MLP neurons to answer logits, shape (p, d_mlp)."""
        return self.unembed.weight @ self.mlp_out.weight
