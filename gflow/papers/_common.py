"""What the figure modules of `gflow.papers` share: float64 checks, the τ axis, the caption line.

Run folders, NetCDF writes, timing and console summaries belong to the runner
(`gflow._runner.run_figure`), not here.
"""

from __future__ import annotations

import jax


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
