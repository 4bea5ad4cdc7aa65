"""The `Problem`: a model, its data, a loss and what to measure. Pure data, no solver."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np

from ._errors import GflowError as GflowError, ProblemError as ProblemError
from ._losses import (
    AbstractLoss,
    AbstractResidualLoss,
    argmax_accuracy as argmax_accuracy,
    as_loss,
    batched_outputs as batched_outputs,
    mse_residuals as mse_residuals,
)


def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


class Problem(eqx.Module):
    r"""A gradient-flow problem: an Equinox model holding the initial parameters, data, a loss.

    The flow integrated by `gflow.simulate` is

    $$\dot\theta = -\nabla F(\theta) - \lambda\, m \odot \theta, \qquad
      F_\lambda(\theta) = F(\theta) + \tfrac{\lambda}{2}\lVert m \odot \theta\rVert^2,$$

    where θ are the floating-point array leaves of `model` and m is the weight-decay mask.

    **Arguments:**

    - `model`: an `eqx.Module` (or any pytree) whose floating-point arrays are the initial
      parameters θ0. Its non-array parts (activations, sizes) are static.
    - `train`, `test`: pytrees of arrays. The built-in losses read dicts `{"x": ..., "y": ...}`;
      extra keys are carried along for metrics (e.g. a teacher vector in `test`).
    - `loss`: a loss object (`gflow.MSE()`, `gflow.CrossEntropy()`, `gflow.Logistic()`,
      `gflow.Residuals(fn)`, `gflow.Scalar(fn)`; see `gflow._losses`), a name (`"mse"`: F =
      ½·mean((f(x)−y)²) as residuals; `"cross_entropy"`: integer labels; `"logistic"`: labels ±1)
      or a function `loss(model, data) -> scalar` (taken as `Scalar(loss)`).
    - `residuals`: `residuals(model, data) -> vector r` (taken as `Residuals(residuals)`): F =
      ½·mean(r²). Give exactly one of `loss` and `residuals`. Residual problems expose their
      Jacobian to the slow flow and its zero-loss manifold.
    - `metrics`: `{name: fn(model, data) -> scalar}`. Each is evaluated on the test data (as
      `test_<name>`) and on the train data (as `train_<name>`) wherever the split has the keys
      it reads. Classification losses add `accuracy` by default.
    - `decay_mask`: which parameters weight decay acts on: a pytree of bools with the structure
      of `model` (or a prefix of it: a bool stands for every array beneath it; entries at
      non-array leaves such as activations are ignored), a function `model -> such pytree`, or
      None (all parameters decay). An Equinox module given as the mask is a pytree, never called.
    - `trainable`: which floating-point arrays are parameters, in the same three forms as
      `decay_mask` (default None: all). Frozen arrays are constants of the flow: not part of the
      ODE state θ, never decayed, not counted in `norm` or `count_params`, and bit-identical in
      `traj.final`.

    The model is called as `model(x_i)` on one example for the built-in losses.
    """

    model: Any
    train: Any
    test: Any
    loss: AbstractLoss = eqx.field(static=True)
    metric_items: tuple = eqx.field(static=True)
    decay_leaves: tuple = eqx.field(static=True)
    trainable_leaves: tuple = eqx.field(static=True)

    def __init__(
        self,
        model,
        train,
        *,
        loss: Callable | str | None = None,
        residuals: Callable | str | None = None,
        test=None,
        metrics: Mapping[str, Callable] | None = None,
        decay_mask=None,
        trainable=None,
    ):
        loss = as_loss(loss, residuals)
        _check_parameters(model)
        _check_data(train, "train")
        if test is not None:
            _check_data(test, "test")

        all_metrics = dict(loss.default_metrics())
        all_metrics.update(metrics or {})
        for name, fn in all_metrics.items():
            if not isinstance(name, str) or not callable(fn):
                raise ProblemError("metrics must map names (str) to functions fn(model, data) -> scalar")

        self.model = model
        self.train = train
        self.test = test
        self.loss = loss
        self.trainable_leaves = _mask_per_array(model, trainable, "trainable")
        if not any(self.trainable_leaves):
            raise ProblemError("trainable= freezes every array of the model: nothing to integrate")
        decay_all = _mask_per_array(model, decay_mask, "decay_mask")
        self.decay_leaves = tuple(d for d, t in zip(decay_all, self.trainable_leaves, strict=True) if t)

        # Shape checks by abstract evaluation: no compilation, no FLOPs.
        splits = [("train", train)] + ([("test", test)] if test is not None else [])
        for split, data in splits:
            loss.check(model, data, split)
        items = []
        for name, fn in all_metrics.items():
            if name == "loss":
                # It would be recorded as train_loss/test_loss, which are the built-in losses.
                raise ProblemError("metric name 'loss' clashes with the built-in train_loss/test_loss; rename it")
            missing = []
            for split, data in splits:
                try:
                    out = eqx.filter_eval_shape(fn, model, data)
                except (KeyError, IndexError, TypeError) as err:
                    if isinstance(err, TypeError) and "indices" not in str(err):
                        raise
                    missing.append(f"{split}: {type(err).__name__} {err}")
                    continue  # the metric reads something this split does not carry
                if getattr(out, "shape", None) != ():
                    raise ProblemError(f"metric {name!r} must return a scalar, got shape {getattr(out, 'shape', out)}")
                items.append((f"{split}_{name}", split, fn))
            if len(missing) == len(splits):
                raise ProblemError(
                    f"metric {name!r} reads data that no split carries ({'; '.join(missing)}); "
                    "add the key to train/test or drop the metric"
                )
        self.metric_items = tuple(items)

    # -- the objective ---------------------------------------------------------------

    @property
    def params(self):
        """The trainable floating-point arrays of the model: the ODE state θ."""
        return self.split()[0]

    def split(self):
        """`(params, static)` with `eqx.combine(params, static)` giving the model back.

        `params` holds the trainable floating-point arrays (the ODE state); `static` holds
        everything else, frozen arrays included (they enter the flow as constants).
        """
        return self.partition(self.model)

    def partition(self, model):
        """Split any model of this problem's structure (e.g. a saved `traj.final`) like `split`."""
        leaves, treedef = jtu.tree_flatten(model)
        spec = [eqx.is_inexact_array(x) for x in leaves]
        if sum(spec) != len(self.trainable_leaves):
            raise ProblemError(
                f"the model has {sum(spec)} floating-point arrays but this problem's has "
                f"{len(self.trainable_leaves)}; pass a model of the same structure"
            )
        flags = iter(self.trainable_leaves)
        spec = [is_array and next(flags) for is_array in spec]
        return eqx.partition(model, jtu.tree_unflatten(treedef, spec))

    @property
    def loss_name(self) -> str | None:
        """The built-in loss's name ("mse", "cross_entropy", "logistic"), None for a user's function."""
        return self.loss.name

    @property
    def residuals_fn(self) -> Callable | None:
        """`residuals(model, data) -> r` for a residual loss (F = ½·mean(r²)), else None."""
        return self.loss.residuals if isinstance(self.loss, AbstractResidualLoss) else None

    def decayed(self, params):
        """The decayed part m ⊙ θ of a parameter pytree (undecayed leaves set to zero)."""
        leaves, treedef = jtu.tree_flatten(params)
        return jtu.tree_unflatten(
            treedef, [x if keep else jnp.zeros_like(x) for x, keep in zip(leaves, self.decay_leaves, strict=True)]
        )

    def objective(self, model, lam) -> jax.Array:
        """F_λ(θ) = F(θ) + (λ/2)‖m ⊙ θ‖² on the training data."""
        params = self.partition(model)[0]
        return self.loss(model, self.train) + 0.5 * lam * _sq_norm(self.decayed(params))


def _sq_norm(tree) -> jax.Array:
    leaves = jtu.tree_leaves(tree)
    return sum((jnp.sum(jnp.square(x)) for x in leaves), start=jnp.zeros((), leaves[0].dtype if leaves else float))


def _path_str(path) -> str:
    return jtu.keystr(path) or "<root>"


def _check_parameters(model):
    leaves = jtu.tree_leaves_with_path(model)
    floats = 0
    for path, leaf in leaves:
        if eqx.is_array(leaf):
            dtype = leaf.dtype
            if jnp.issubdtype(dtype, jnp.integer) or jnp.issubdtype(dtype, jnp.bool_):
                raise ProblemError(
                    f"model leaf {_path_str(path)} has dtype {dtype}: gradient flow needs floating-point "
                    "parameters; cast it (jnp.asarray(x, float)) or mark the field eqx.field(static=True)"
                )
            if jnp.issubdtype(dtype, jnp.complexfloating):
                raise ProblemError(f"model leaf {_path_str(path)} is complex; gflow integrates real parameters")
            floats += 1
            if _is_concrete(leaf) and not bool(np.all(np.isfinite(np.asarray(leaf)))):
                raise ProblemError(
                    f"model leaf {_path_str(path)} has non-finite initial values; fix the initialisation"
                )
    if floats == 0:
        raise ProblemError("the model has no floating-point array leaves: nothing to integrate")


def _check_data(data, split):
    leaves = jtu.tree_leaves_with_path(data)
    if not leaves:
        raise ProblemError(f"{split} data is empty (no arrays); pass e.g. {{'x': inputs, 'y': targets}}")
    for path, leaf in leaves:
        if not eqx.is_array_like(leaf):
            continue
        arr = leaf
        if np.ndim(arr) >= 1 and np.shape(arr)[0] == 0:
            raise ProblemError(
                f"{split} data {_path_str(path)} has no examples (shape {np.shape(arr)}); give at least one"
            )
        if _is_concrete(arr):
            arr = np.asarray(arr)
            if np.issubdtype(arr.dtype, np.inexact) and not np.all(np.isfinite(arr)):
                raise ProblemError(f"{split} data {_path_str(path)} contains NaN or inf; clean or drop those rows")


def _mask_per_array(model, mask, what: str) -> tuple[bool, ...]:
    """One bool per floating-point array of `model` (flatten order) from a mask in any form.

    `mask`: None (all True), a function `model -> pytree` (an Equinox module is a pytree, not a
    function, even though modules are callable), or a pytree of bools shaped like `model` or
    like a prefix of it, where a bool covers every array beneath it. Entries at positions holding
    no floating-point array (activations, sizes, integer buffers) are ignored whatever they are.
    """
    n = sum(1 for x in jtu.tree_leaves(model) if eqx.is_inexact_array(x))
    if mask is None:
        return (True,) * n
    if callable(mask) and not isinstance(mask, eqx.Module):
        mask = mask(model)

    def per_position(m, sub):
        arrays = [x for x in jtu.tree_leaves(sub) if eqx.is_inexact_array(x)]
        if not arrays:
            return []
        if isinstance(m, (bool, np.bool_)) or (eqx.is_array(m) and m.shape == () and m.dtype == bool):
            return [bool(m)] * len(arrays)
        raise ProblemError(
            f"{what} must hold a bool for every floating-point array of the model, got {type(m).__name__}; "
            f"build it with jax.tree.map(lambda _: True, model) and set entries to False"
        )

    try:
        per = jtu.tree_map(
            per_position, mask, model, is_leaf=lambda x: isinstance(x, (bool, np.bool_)) or eqx.is_array(x)
        )
    except (ValueError, TypeError) as err:
        raise ProblemError(
            f"{what} must have the structure of the model (or a prefix of it) with a bool per array, "
            f"e.g. jax.tree.map(lambda _: True, model); {str(err).splitlines()[0]}"
        ) from None
    flags = tuple(jtu.tree_leaves(per))
    if len(flags) != n:
        raise ProblemError(f"{what} must give one bool for every floating-point array of the model")
    return flags
