"""`gd`: full-batch gradient descent with coupled weight decay, the discrete baseline."""

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
    problem: Problem, lam, lr, steps: int, *, save_every: int | None = None, divergence_norm=None, callback=None
) -> Trajectory:
    r"""Full-batch gradient descent on F_λ, as the papers ran it.

    $$\theta_{k+1} = \theta_k - \eta\,(\nabla F(\theta_k) + \lambda\, m\odot\theta_k)$$

    (optax: `add_decayed_weights(λ, mask)` then `sgd(η)`; this is PyTorch's
    `SGD(lr=η, weight_decay=λ)`). Step k is at ODE time t = η·k, so for small η the iterates
    follow `simulate(problem, lam, t)` with an O(η) error.

    **Arguments:**

    - `problem`, `lam`: as for `simulate` (λ traced: new values do not recompile).
    - `lr`: the step size η > 0 (traced).
    - `steps`: number of GD steps (static).
    - `save_every`: record the observables every this many steps (default: `steps // 200`,
      at least 1); `steps` must be a multiple of it.
    - `callback`: `callback(t, metrics)` on the host at every save, as for `simulate`.

    **Returns:** a `Trajectory` over t = η·k, with `stats["num_vf_evals"]` = gradient
    evaluations. If an iterate becomes non-finite or its norm exceeds `divergence_norm`
    (default 1e8·(1 + ‖θ0‖), as for `simulate`) the run stops there with `RESULTS.diverged`:
    `final` is the last iterate within bounds and later metrics are NaN.
    """
    if not isinstance(problem, Problem):
        raise ProblemError(f"gd needs a gflow.Problem, got {type(problem).__name__}")
    if not isinstance(steps, int) or steps < 1:
        raise ProblemError(f"steps must be a positive int, got {steps!r}")
    if save_every is None:
        save_every = max(1, steps // 200)
        while steps % save_every:
            save_every -= 1
    if not isinstance(save_every, int) or save_every < 1 or steps % save_every:
        raise ProblemError(f"save_every must be a positive int dividing steps={steps}, got {save_every!r}")
    dtype = _param_dtype(problem)
    lam = _scalar("lam", lam, dtype)
    lr = _scalar("lr", lr, dtype)
    check_lam(lam)
    if _is_concrete(lr) and float(lr) <= 0:
        raise ProblemError(f"lr must be > 0, got {float(lr)}")
    if divergence_norm is None:
        divergence_norm = default_divergence_norm(problem)
    divergence_norm = jnp.asarray(divergence_norm, dtype)
    if callback is not None and not callable(callback):
        raise ProblemError(f"callback must be a function (t, metrics) -> None, got {type(callback).__name__}")
    return _gd(problem, lam, lr, divergence_norm, steps=steps, save_every=save_every, callback=callback)


@eqx.filter_jit
def _gd(problem, lam, lr, divergence_norm, *, steps, save_every, callback=None):
    params, static = problem.split()
    mask = jtu.tree_unflatten(jtu.tree_structure(params), list(problem.decay_leaves))
    optimiser = optax.chain(optax.add_decayed_weights(lam, mask=mask), optax.sgd(lr))
    grad_fn = jax.grad(train_loss)

    def step(_, carry):
        p, opt_state, alive, n_done = carry
        updates, new_state = optimiser.update(grad_fn(p, static, problem), opt_state, p)
        new_p = optax.apply_updates(p, updates)
        # Keep the last iterate within bounds: once a step leaves them, freeze.
        good = alive & tree_all_finite(new_p) & (tree_norm(new_p) <= divergence_norm)
        p = jtu.tree_map(lambda a, b: jnp.where(good, a, b), new_p, p)
        opt_state = jtu.tree_map(lambda a, b: jnp.where(good, a, b), new_state, opt_state)
        return p, opt_state, good, n_done + good.astype(n_done.dtype)

    def chunk(carry, _):
        carry = jax.lax.fori_loop(0, save_every, step, carry)
        p, _, alive, n_done = carry
        obs = observables(p, static, problem, lam)
        obs = {k: jnp.where(alive, v, jnp.nan) for k, v in obs.items()}
        if callback is not None:
            jax.debug.callback(_host_callback(callback), lr * n_done.astype(lr.dtype), obs)
        return carry, obs

    n_saves = steps // save_every
    init = (params, optimiser.init(params), jnp.asarray(True), jnp.asarray(0))
    first = observables(params, static, problem, lam)
    if callback is not None:
        jax.debug.callback(_host_callback(callback), jnp.zeros((), lr.dtype), first)
    (p_final, _, alive, n_done), rest = jax.lax.scan(chunk, init, None, length=n_saves)
    metrics = {k: jnp.concatenate([first[k][None], rest[k]]) for k in first}
    ts = lr * jnp.arange(n_saves + 1, dtype=lr.dtype) * save_every
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
        t_final=lr * n_done.astype(lr.dtype),
        stats=stats,
        result=result,
        lam=lam,
        time="fast",
        solver="gd",
    )
