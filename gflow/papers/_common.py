"""What the figure modules of `gflow.papers` share: float64 checks, one-line parameter checks, the τ
axis, the caption line, and gradient descent saved close to log-spaced in t (`gd_chain`).

Run folders, NetCDF writes, timing and console summaries belong to the runner
(`gflow._runner.run_figure`), not here.
"""

from __future__ import annotations

import jax
import numpy as np


def require_float64(name: str) -> None:
    """Refuse to measure a figure whose reference checks need float64 when JAX runs in float32.

    Package code never changes `jax.config` (a library must not flip a process-wide switch); the
    command line enables float64 before it runs a figure, and a Python caller must do the same.
    """
    if not jax.config.jax_enable_x64:
        from ..experiments import ConfigError

        raise ConfigError(
            f"{name} compares against references in float64: call "
            'jax.config.update("jax_enable_x64", True) before measuring it (the gflow command does)'
        )


def add_tau_axis(ax, lam: float, *, label: str = "τ = λt (slow time)"):
    """A secondary x axis on top of `ax` (ODE time t) in slow time τ = λt."""
    top = ax.secondary_xaxis("top", functions=(lambda t: lam * t, lambda tau: tau / lam))
    top.set_xlabel(label)
    return top


def caption(fig, text: str, *, size: str | None = None) -> None:
    """The grey caption line at the bottom of a figure: the size it was run at and the details the
    paper leaves open (what the figure chose). Leave room for it with
    `fig.get_layout_engine().set(rect=(0, 0.03, 1, 0.97))` under a constrained layout."""
    prefix = f"size: {size}. " if size else ""
    fig.text(0.005, 0.008, prefix + text, fontsize=8, color="0.3")


def _shown(params, bound) -> str:
    """A bound of a message: a number, or "NAME = VALUE" for the name of another field."""
    if isinstance(bound, str):
        value = params[bound]
        return f"{bound} = {value:g}" if isinstance(value, float) else f"{bound} = {value}"
    return f"{bound}"


def require_in(params, field: str, low, high, *, ends: str = "()", what: str = "") -> None:
    """Refuse `params[field]` outside the interval from `low` to `high` with the one-line
    `ConfigError` "figure.FIELD must be in (LOW, HIGH), got VALUE".

    `low` and `high` are numbers or the names of other fields (shown as "NAME = VALUE"); `ends` is
    the pair of brackets, "(" / ")" for an open end and "[" / "]" for a closed one; `what` follows
    the field's name in the message ("figure.eta (the Euler step) must be …").
    """
    value = params[field]
    lo = params[low] if isinstance(low, str) else low
    hi = params[high] if isinstance(high, str) else high
    above = lo <= value if ends[0] == "[" else lo < value
    below = value <= hi if ends[1] == "]" else value < hi
    if not (above and below):
        from ..experiments import ConfigError

        interval = f"{ends[0]}{_shown(params, low)}, {_shown(params, high)}{ends[1]}"
        raise ConfigError(f"figure.{field}{what} must be in {interval}, got {value}")


def require_multiple(params, total: str, part: str) -> None:
    """Refuse `params[total]` unless it is a positive multiple of `params[part]` (itself ≥ 1), with the
    one-line `ConfigError` "figure.TOTAL = … must be a positive multiple of figure.PART = …"."""
    if params[part] < 1 or params[total] < 1 or params[total] % params[part]:
        from ..experiments import ConfigError

        raise ConfigError(
            f"figure.{total} = {params[total]} must be a positive multiple of figure.{part} = {params[part]}"
        )


def gd_segments(schedule, saves: int) -> list[tuple[float, int]]:
    """(η, steps) of the consecutive `gd` calls of a step-size schedule ((t_end, η), …): η until
    t_end, then the next entry's η.

    Each call makes a multiple of `saves` steps, as close as possible to (t_end − t_start)/η.
    """
    out, t = [], 0.0
    for t_end, lr in schedule:
        n = max(saves, int(round((t_end - t) / lr / saves)) * saves)
        out.append((float(lr), n))
        t += n * lr
    return out


def gd_chain(problem, lams, schedule, saves: int, *, member=None, member_args=()):
    """Full-batch gradient descent (`gflow.gd`) for every member, vmapped and compiled once.

    Member i runs on `member(problem, *(a[i] for a in member_args))` (default: `problem` itself)
    with weight decay `lams[i]`. The run is a chain of `gd` calls, one per entry (t_end, η) of the
    step-size schedule (`gd_segments`), each from the last iterate of the one before and each
    with `saves` saves, so a constant η with entries t_end = 10, 100, 1000 saves close to
    log-spaced in t (one `gd` call saves uniformly in its steps).

    Returns (t, cumulative step, {metric: (member, time)}, result codes per member (0 = successful)),
    with t = Σ η over the steps taken and the initial point as the first save.
    """
    import equinox as eqx
    import jax.numpy as jnp

    from .._gd import gd

    parts = gd_segments(schedule, saves)

    def run(problem, lam, *args):
        current = problem if member is None else member(problem, *args)
        out = []
        for lr, n in parts:
            traj = gd(current, lam, lr, n, save_every=n // saves)
            out.append(traj)
            current = eqx.tree_at(lambda pr: pr.model, current, traj.final)
        return out

    @eqx.filter_jit
    def grid(problem, lams, *args):
        return jax.vmap(run, in_axes=(None, 0, *(0,) * len(args)))(problem, lams, *args)

    dt = jnp.zeros(()).dtype
    trajs = grid(problem, jnp.asarray(lams, dt), *(jnp.asarray(a, dt) for a in member_args))
    trajs = jax.device_get(trajs)
    t, step, t_off, step_off, metrics = [np.zeros(1)], [np.zeros(1)], 0.0, 0, {}
    for (lr, n), traj in zip(parts, trajs, strict=True):
        ts = np.asarray(traj.ts[0])
        t.append(t_off + ts[1:])
        step.append(step_off + np.arange(1, saves + 1) * (n // saves))
        t_off, step_off = t_off + ts[-1], step_off + n
        for k, v in traj.metrics.items():
            v = np.asarray(v)
            metrics.setdefault(k, [v[:, :1]]).append(v[:, 1:])
    result = np.max(np.stack([np.asarray(tr.result._value) for tr in trajs]), axis=0)  # 0 = successful
    return (np.concatenate(t), np.concatenate(step), {k: np.concatenate(v, axis=1) for k, v in metrics.items()}, result)
