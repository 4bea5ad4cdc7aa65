"""`gd`: full-batch gradient descent with coupled weight decay (the discrete baseline), or any optax optimiser."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import optax

from ._flow import observables, train_loss, tree_all_finite, tree_norm
from ._problem import Problem, ProblemError, _is_concrete
from ._simulate import _host_callback, _param_dtype, _scalar, check_lam, default_divergence_norm
from ._solution import RESULTS, Trajectory


def gd(
    problem: Problem,
    lam,
    lr=None,
    steps: int | None = None,
    *,
    optimizer=None,
    save_every: int | None = None,
    save_params: bool = False,
    divergence_norm=None,
    callback=None,
) -> Trajectory:
    r"""Full-batch gradient descent on F_λ, as the papers ran it, or any optax optimiser.

    By default (`optimizer=None`), gradient descent with coupled weight decay:

    $$\theta_{k+1} = \theta_k - \eta_k\,(\nabla F(\theta_k) + \lambda\, m\odot\theta_k)$$

    (optax: `add_decayed_weights(λ, mask)` then `sgd(η)`; this is PyTorch's
    `SGD(lr=η, weight_decay=λ)`). Step k is at ODE time t_k = η_0 + … + η_{k−1}, accumulated in
    the scan, so for small steps the iterates follow `simulate(problem, lam, t)` with an O(η) error.

    **Arguments:**

    - `problem`, `lam`: as for `simulate` (λ traced: new values do not recompile).
    - `lr`: the step size: a number η > 0 (traced), or a schedule `k -> η_k` (an
      `optax.Schedule` such as `optax.piecewise_constant_schedule(0.1, {1000: 0.5})`; static:
      pass the same function to reuse the compilation).
    - `steps`: number of steps (static).
    - `optimizer`: instead of gradient descent, an optax optimiser applied to ∇F, which then owns
      the learning rate and the weight decay: an `optax.GradientTransformation`, or a function
      `lam -> optax.GradientTransformation` so that λ stays traced (e.g.
      `lambda lam: optax.adamw(1e-3, b1=0.9, b2=0.98, weight_decay=lam)`, PyTorch's
      `AdamW(lr=1e-3, betas=(0.9, 0.98), weight_decay=λ)`; note that AdamW's decay is
      decoupled and scaled by its learning rate). λ also enters the `objective` metric. An
      optimiser step has no ODE time: the run's time axis is the step index (`time="step"`).
    - `save_every`: record the observables every this many steps (default: `steps // 200`,
      at least 1); `steps` must be a multiple of it.
    - `save_params`: also return the parameters at every save in `traj.params` (a pytree of
      the model's floating-point arrays with a leading save axis; NaN after a divergence).
    - `callback`: `callback(t, metrics)` on the host at every save, as for `simulate`.

    **Returns:** a `Trajectory` over t_k (or the step index k with an `optimizer`), with
    `stats["num_vf_evals"]` = gradient evaluations. If an iterate becomes non-finite or its norm
    exceeds `divergence_norm` (default 1e8·(1 + ‖θ0‖), as for `simulate`) the run stops there
    with `RESULTS.diverged`: `final` is the last iterate within bounds and later metrics are NaN.
    """
    if not isinstance(problem, Problem):
        raise ProblemError(f"gd needs a gflow.Problem, got {type(problem).__name__}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ProblemError(f"steps must be a positive int, got {steps!r}")
    if save_every is None:
        save_every = max(1, steps // 200)
        while steps % save_every:
            save_every -= 1
    if isinstance(save_every, bool) or not isinstance(save_every, int) or save_every < 1 or steps % save_every:
        raise ProblemError(f"save_every must be a positive int dividing steps={steps}, got {save_every!r}")
    if not isinstance(save_params, bool):
        raise ProblemError(f"save_params must be True or False, got {save_params!r}")
    dtype = _param_dtype(problem)
    lam = _scalar("lam", lam, dtype)
    check_lam(lam)
    schedule = None
    if optimizer is not None:
        if lr is not None:
            raise ProblemError(
                "with an optimizer, give the learning rate to the optimizer (e.g. optax.adamw(1e-3)); drop lr"
            )
        if not (_is_optax(optimizer) or callable(optimizer)):
            raise ProblemError(
                f"optimizer must be an optax.GradientTransformation or a function lam -> one, got {optimizer!r}"
            )
        lr = jnp.ones((), dtype)  # unused: one step is one unit of the step-index time axis
    elif lr is None:
        raise ProblemError("gd needs lr (a step size > 0 or a schedule k -> lr_k), or an optax optimizer=")
    elif callable(lr) and not isinstance(lr, jax.Array):
        schedule, lr = lr, jnp.ones((), dtype)
    else:
        lr = _scalar("lr", lr, dtype)
        if _is_concrete(lr) and float(lr) <= 0:
            raise ProblemError(f"lr must be > 0, got {float(lr)}")
    if divergence_norm is None:
        divergence_norm = default_divergence_norm(problem)
    divergence_norm = jnp.asarray(divergence_norm, dtype)
    if callback is not None and not callable(callback):
        raise ProblemError(f"callback must be a function (t, metrics) -> None, got {type(callback).__name__}")
    return _gd(
        problem,
        lam,
        lr,
        divergence_norm,
        steps=steps,
        save_every=save_every,
        schedule=schedule,
        optimizer=optimizer,
        save_params=save_params,
        callback=callback,
    )


def _is_optax(obj) -> bool:
    return isinstance(obj, optax.GradientTransformation) or (hasattr(obj, "init") and hasattr(obj, "update"))


@eqx.filter_jit
def _gd(problem, lam, lr, divergence_norm, *, steps, save_every, schedule, optimizer, save_params, callback=None):
    params, static = problem.split()
    dtype = lr.dtype
    if optimizer is None:
        mask = jtu.tree_unflatten(jtu.tree_structure(params), list(problem.decay_leaves))
        optimiser = optax.chain(
            optax.add_decayed_weights(lam, mask=mask), optax.sgd(lr if schedule is None else schedule)
        )

        def step_size(n):
            # optax's own step counter equals n: a frozen (diverged) run restores its state too.
            return lr if schedule is None else jnp.asarray(schedule(n), dtype)
    else:
        optimiser = optimizer if _is_optax(optimizer) else optimizer(lam)

        def step_size(n):
            del n
            return jnp.ones((), dtype)

    grad_fn = jax.grad(train_loss)

    def step(_, carry):
        p, opt_state, alive, n_done, clock, t_reached = carry
        updates, new_state = optimiser.update(grad_fn(p, static, problem), opt_state, p)
        new_p = optax.apply_updates(p, updates)
        # Keep the last iterate within bounds: once a step leaves them, freeze. The clock runs on
        # (step k is at t_k whether or not the run is still alive); `t_reached` stops with it.
        good = alive & tree_all_finite(new_p) & (tree_norm(new_p) <= divergence_norm)
        p = jtu.tree_map(lambda a, b: jnp.where(good, a, b), new_p, p)
        opt_state = jtu.tree_map(lambda a, b: jnp.where(good, a, b), new_state, opt_state)
        clock = (clock[0] + 1, clock[1] + step_size(clock[0]))
        t_reached = jnp.where(good, clock[1], t_reached)
        return p, opt_state, good, n_done + good.astype(n_done.dtype), clock, t_reached

    def record(p, alive, t):
        obs = observables(p, static, problem, lam)
        obs = {k: jnp.where(alive, v, jnp.nan) for k, v in obs.items()}
        if callback is not None:
            jax.debug.callback(_host_callback(callback), t, obs)
        saved = jtu.tree_map(lambda x: jnp.where(alive, x, jnp.nan), p) if save_params else None
        return obs, saved, t

    def chunk(carry, _):
        carry = jax.lax.fori_loop(0, save_every, step, carry)
        p, _, alive, _, clock, _ = carry
        return carry, record(p, alive, clock[1])

    n_saves = steps // save_every
    t0 = jnp.zeros((), dtype)
    init = (params, optimiser.init(params), jnp.asarray(True), jnp.asarray(0), (jnp.asarray(0), t0), t0)
    first = record(params, jnp.asarray(True), t0)
    (p_final, _, alive, n_done, _, t_final), rest = jax.lax.scan(chunk, init, None, length=n_saves)
    (metrics, saved, ts) = jtu.tree_map(lambda a, b: jnp.concatenate([a[None], b]), first, rest)
    result = RESULTS.where(alive, RESULTS.successful, RESULTS.diverged)
    stats = {
        "num_steps": n_done,
        "num_accepted_steps": n_done,
        "num_rejected_steps": jnp.asarray(0),
        "max_steps": jnp.asarray(steps),
        "num_vf_evals": n_done + (~alive).astype(n_done.dtype),
    }
    return Trajectory(
        ts=ts,
        metrics=metrics,
        final=eqx.combine(p_final, static),
        t_final=t_final,
        stats=stats,
        result=result,
        lam=lam,
        time="fast" if optimizer is None else "step",
        solver="gd" if optimizer is None else "optax",
        params=saved,
    )
