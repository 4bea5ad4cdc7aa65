r"""Losses as objects: F(model, data) and, where the loss has one, its Gauss–Newton factor.

A loss is a strategy object held by a `Problem` (`Problem(model, train, loss=gflow.CrossEntropy())`;
the names "mse", "cross_entropy", "logistic" and plain functions are accepted too and become these
objects). Calling it gives the unregularised loss F on a data split:

- `MSE()`: F = ½·mean((f(x_i) − y_i)²) over every entry (examples × outputs);
- `Residuals(fn)`: F = ½·mean(r²) for a user's residual vector r = fn(model, data);
- `CrossEntropy()`: F = mean_i [logsumexp(z_i) − z_{i,y_i}], logits z_i = f(x_i), integer labels;
- `Logistic()`: F = mean_i log(1 + exp(−y_i f(x_i))), labels ±1, scalar outputs;
- `Scalar(fn)`: F = fn(model, data), any scalar function.

The first four are `AbstractGaussNewtonLoss`es: F = Σ_i ℓ(z_i) over outputs z = `outputs(model,
data)` with ℓ convex, so ∇²F = Jᵀ H J + Σ (∂ℓ/∂z)·∇²z, and the generalised Gauss–Newton matrix
G = Jᵀ H J (H = ∂²ℓ/∂z², positive semi-definite, block diagonal) is what the Rosenbrock-W
solver's W-matrix and its Woodbury factorisation are built on. `output_curvature` gives H and a
square root Sᵀ (H = S Sᵀ) of it. The residual losses (`AbstractResidualLoss`) also define the
zero-loss manifold of the slow flow, {θ : r(θ) = 0}.

Losses are static parts of a `Problem` (hashed, not traced): the same loss object (or two equal
ones: `MSE() == MSE()`, `Residuals(fn) == Residuals(fn)`) reuses compilations; data arrays a loss
needs belong in the data splits, which are traced.
"""

import abc
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp

from ._errors import ProblemError


def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def batched_outputs(model, data):
    """The model applied to every example: `vmap(model)(data["x"])`."""
    try:
        x = data["x"]
    except (TypeError, KeyError, IndexError):
        raise ProblemError(
            "built-in losses read data['x'] and data['y']: pass train/test as dicts "
            "{'x': inputs, 'y': targets}, or give your own loss=/residuals= function"
        ) from None
    return jax.vmap(model)(x)


def mse_residuals(model, data):
    """Residuals `model(x_i) − y_i`, flattened over examples and outputs (example-major)."""
    return jnp.reshape(batched_outputs(model, data) - data["y"], (-1,))


# Module-level functions, not lambdas: metrics are static fields of a Problem, so a fresh lambda
# per Problem would make every new Problem of the same shapes recompile the solve.
def argmax_accuracy(model, data):
    """Fraction of examples whose largest logit is the integer label (cross-entropy problems)."""
    return jnp.mean(jnp.argmax(batched_outputs(model, data), -1) == data["y"])


def sign_accuracy(model, data):
    """Fraction of examples whose output sign is the ±1 label (logistic problems)."""
    return jnp.mean(jnp.sign(batched_outputs(model, data)) == data["y"])


def _check_scalar_loss(value, split: str) -> None:
    if getattr(value, "shape", None) != ():
        raise ProblemError(
            f"loss must return a scalar on the {split} data, got shape {getattr(value, 'shape', value)}; "
            "reduce it with jnp.mean or jnp.sum (or pass it as residuals=)"
        )
    if not jnp.issubdtype(value.dtype, jnp.floating):
        raise ProblemError(f"the loss on the {split} data has dtype {value.dtype}; it must be floating point")


class AbstractLoss(eqx.Module):
    """A loss F(model, data) -> scalar.

    `name` is the built-in name ("mse", "cross_entropy", "logistic") or None for a user's
    function. `curvature_vanishes_when_fitted` says whether ∇²F shrinks with F once the training
    set is fitted (cross-entropy, logistic: H ~ the loss), which makes `solver="auto"` keep an
    explicit solver even when the flow starts stiff.
    """

    name: eqx.AbstractClassVar[str | None]
    curvature_vanishes_when_fitted: eqx.AbstractClassVar[bool]

    @abc.abstractmethod
    def __call__(self, model, data) -> jax.Array:
        """The loss F on `data`, a floating-point scalar."""

    @abc.abstractmethod
    def check(self, model, data, split: str) -> None:
        """Raise a one-line `ProblemError` if `model` and `data` do not fit this loss (shapes,
        labels), by abstract evaluation only. `split` ("train"/"test") names the data."""

    @abc.abstractmethod
    def default_metrics(self) -> dict[str, Callable]:
        """Metrics a Problem with this loss records unless the user names them (e.g. accuracy)."""


class AbstractGaussNewtonLoss(AbstractLoss):
    r"""A loss F = Σ_i ℓ(z_i) of model outputs z = `outputs(model, data)` with ℓ convex: its
    generalised Gauss–Newton matrix is G = Jᵀ H J, J = ∂z/∂θ, H = ∂²ℓ/∂z² ⪰ 0."""

    @abc.abstractmethod
    def outputs(self, model, data) -> jax.Array:
        """The outputs z the loss is a convex function of (residuals, logits, margins)."""

    @abc.abstractmethod
    def output_curvature(self, z, data):
        r"""`(hess, s_t)` at outputs `z`: `hess(v)` = H v for an output-shaped v, and `s_t(rows)` =
        Sᵀ applied along the output axes of `rows` (shape `(*z.shape, d)`), with H = S Sᵀ."""


class AbstractResidualLoss(AbstractGaussNewtonLoss):
    r"""F = ½·mean(r²) of a residual vector r ∈ ℝᴺ: G = JᵀJ/N, and the zero-loss manifold
    {r = 0} is where the slow flow of `manifold="zero_loss"` lives."""

    curvature_vanishes_when_fitted = False

    @abc.abstractmethod
    def residuals(self, model, data) -> jax.Array:
        """The residual vector r (1-D)."""

    def __call__(self, model, data):
        return 0.5 * jnp.mean(self.residuals(model, data) ** 2)

    def outputs(self, model, data):
        return self.residuals(model, data)

    def output_curvature(self, z, data):
        n = z.size

        def hess(v):
            return v / n

        def s_t(rows):  # rows: (N, d)
            return rows / jnp.sqrt(jnp.asarray(n, rows.dtype))

        return hess, s_t

    def default_metrics(self):
        return {}


class MSE(AbstractResidualLoss):
    r"""Mean squared error, halved: F = ½·mean over examples and outputs of (f(x_i) − y_i)², as
    residuals r = f(x_i) − y_i. Reads `data["x"]`, `data["y"]`; `y` has the batched output shape."""

    name = "mse"

    def residuals(self, model, data):
        return mse_residuals(model, data)

    def check(self, model, data, split):
        # filter_eval_shape, not jax.eval_shape: models hold non-array leaves (activations, sizes).
        out = eqx.filter_eval_shape(batched_outputs, model, data)
        y = data["y"]
        if out.shape != y.shape:
            raise ProblemError(
                f"{split} data: the model outputs shape {out.shape[1:]} per example "
                f"(batched {out.shape}) but data['y'] has shape {y.shape}; make them equal "
                "(e.g. y[:, None] for one output, or a model that returns a scalar)"
            )


class Residuals(AbstractResidualLoss):
    r"""A user's residuals: F = ½·mean(r²) with r = `fn(model, data)`, a 1-D vector."""

    fn: Callable
    name = None

    def residuals(self, model, data):
        return self.fn(model, data)

    def check(self, model, data, split):
        out = eqx.filter_eval_shape(self.fn, model, data)
        if getattr(out, "ndim", None) != 1:
            raise ProblemError(
                f"residuals must return a vector (1-D) on the {split} data, got shape {getattr(out, 'shape', out)}; "
                "flatten with jnp.ravel"
            )
        if not jnp.issubdtype(out.dtype, jnp.floating):
            raise ProblemError(f"the residuals on the {split} data have dtype {out.dtype}; they must be floating point")


class CrossEntropy(AbstractGaussNewtonLoss):
    r"""Mean softmax cross-entropy F = mean_i [logsumexp(z_i) − z_{i, y_i}] of logits z_i = f(x_i)
    against integer labels y_i ∈ [0, C). Output curvature H_i = (diag p_i − p_i p_iᵀ)/n with
    p_i = softmax(z_i), square root S_iᵀ = diag(√p_i) − √p_i p_iᵀ. Records `accuracy` (argmax)."""

    name = "cross_entropy"
    curvature_vanishes_when_fitted = True

    def __call__(self, model, data):
        logits = batched_outputs(model, data)
        logz = jax.nn.logsumexp(logits, axis=-1)
        picked = jnp.take_along_axis(logits, data["y"][:, None], axis=-1)[:, 0]
        return jnp.mean(logz - picked)

    def outputs(self, model, data):
        return batched_outputs(model, data)

    def output_curvature(self, z, data):
        n = z.shape[0]
        p = jax.nn.softmax(z, axis=-1)
        sq = jnp.sqrt(p)

        def hess(v):  # v: (n, C)
            return (p * v - p * jnp.sum(p * v, axis=-1, keepdims=True)) / n

        def s_t(rows):  # rows: (n, C, d)
            pj = jnp.sum(p[:, :, None] * rows, axis=1, keepdims=True)
            return (sq[:, :, None] * rows - sq[:, :, None] * pj) / jnp.sqrt(jnp.asarray(n, rows.dtype))

        return hess, s_t

    def check(self, model, data, split):
        out = eqx.filter_eval_shape(batched_outputs, model, data)
        y = data["y"]
        if out.ndim != 2 or y.shape != out.shape[:1]:
            raise ProblemError(
                f"{split} data: cross_entropy needs logits of shape (n, classes) and integer "
                f"labels of shape (n,); got logits {out.shape} and labels {y.shape}"
            )
        if not jnp.issubdtype(y.dtype, jnp.integer):
            raise ProblemError(f"{split} data: cross_entropy labels must be integers, got {y.dtype}")
        n_classes = out.shape[1]
        if _is_concrete(y) and y.size and not bool(jnp.all((y >= 0) & (y < n_classes))):
            raise ProblemError(
                f"{split} data: cross_entropy labels must lie in [0, {n_classes}) for {n_classes} logits; "
                "fix the labels or widen the model's output"
            )

    def default_metrics(self):
        return {"accuracy": argmax_accuracy}


class Logistic(AbstractGaussNewtonLoss):
    r"""Mean logistic loss F = mean_i log(1 + exp(−y_i f(x_i))) for labels y_i ∈ {−1, +1} and
    scalar outputs. Output curvature H_i = σ(y_i f_i)σ(−y_i f_i)/n. Records `accuracy` (sign)."""

    name = "logistic"
    curvature_vanishes_when_fitted = True

    def __call__(self, model, data):
        return jnp.mean(jax.nn.softplus(-data["y"] * batched_outputs(model, data)))

    def outputs(self, model, data):
        return batched_outputs(model, data)

    def output_curvature(self, z, data):
        n = z.shape[0]
        q = jax.nn.sigmoid(data["y"].astype(z.dtype) * z)
        h = q * (1 - q) / n

        def hess(v):
            return h * v

        def s_t(rows):  # rows: (n, d)
            return jnp.sqrt(h)[:, None] * rows

        return hess, s_t

    def check(self, model, data, split):
        out = eqx.filter_eval_shape(batched_outputs, model, data)
        y = data["y"]
        if out.shape != y.shape:
            raise ProblemError(
                f"{split} data: logistic loss needs one scalar output per example, shape {y.shape}, "
                f"but the model outputs {out.shape}"
            )
        if _is_concrete(y) and not bool(jnp.all(jnp.abs(y) == 1)):
            raise ProblemError(f"{split} data: logistic labels must be -1 or +1; map 0/1 labels with y = 2*y - 1")

    def default_metrics(self):
        return {"accuracy": sign_accuracy}


class Scalar(AbstractLoss):
    """A user's loss function F = `fn(model, data)`, a floating-point scalar. No Gauss–Newton
    structure: stiff solvers use Hessian–vector products (or the dense Hessian) instead."""

    fn: Callable
    name = None
    curvature_vanishes_when_fitted = False

    def __call__(self, model, data):
        return self.fn(model, data)

    def check(self, model, data, split):
        _check_scalar_loss(eqx.filter_eval_shape(self.fn, model, data), split)

    def default_metrics(self):
        return {}


BUILTIN_LOSSES: dict[str, AbstractLoss] = {"mse": MSE(), "cross_entropy": CrossEntropy(), "logistic": Logistic()}


def as_loss(loss, residuals) -> AbstractLoss:
    """The loss object of `Problem(loss=..., residuals=...)`: exactly one of them is given, as a
    name, a function or (for `loss`) a loss object."""
    if (loss is None) == (residuals is None):
        raise ProblemError("give exactly one of loss=(model, data) -> scalar or residuals=(model, data) -> vector")
    if residuals is not None:
        if isinstance(residuals, str):
            if residuals != "mse":
                raise ProblemError(f"unknown residuals {residuals!r}; the built-in one is 'mse'")
            return MSE()
        if isinstance(residuals, AbstractLoss):
            raise ProblemError(f"pass the loss object {type(residuals).__name__}(...) as loss=, not residuals=")
        if not callable(residuals):
            raise ProblemError(f"residuals must be a function (model, data) -> ..., got {type(residuals).__name__}")
        return Residuals(residuals)
    if isinstance(loss, AbstractLoss):
        return loss
    if isinstance(loss, str):
        if loss not in BUILTIN_LOSSES:
            raise ProblemError(
                f"unknown loss {loss!r}; choose one of {', '.join(BUILTIN_LOSSES)}, a gflow loss object "
                "(gflow.MSE(), gflow.CrossEntropy(), ...) or pass a function"
            )
        return BUILTIN_LOSSES[loss]
    if not callable(loss):
        raise ProblemError(f"loss must be a function (model, data) -> ..., got {type(loss).__name__}")
    return Scalar(loss)
