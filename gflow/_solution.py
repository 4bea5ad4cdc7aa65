"""What a run returns: the `Trajectory` pytree and the `RESULTS` codes."""

from __future__ import annotations

from typing import Any

import diffrax
import equinox as eqx
import jax
import numpy as np


class RESULTS(diffrax.RESULTS):  # pyright: ignore[reportGeneralTypeIssues]
    """Outcome codes: diffrax's (successful, max_steps_reached, …) plus gflow's own."""

    diverged = (
        "The parameters diverged (norm above the divergence bound, or inf/nan). The state returned "
        "is the last finite one; check that the loss is bounded below, or lower the step size (gd)."
    )
    non_finite_field = (
        "The vector field −∇F(θ) − λθ became non-finite (NaN or inf) at the last state: every smaller step was "
        "rejected. The state returned is the last finite one, at t_final; check the model and loss there for "
        "log(0), division by zero, sqrt of a negative, or overflow (float32 overflows sooner)."
    )
    flow_not_converged = (
        "The gradient flow did not reach a critical point (‖∇F‖ ≤ tol) by t_max. Raise t_max or loosen tol; the flow "
        "may converge only polynomially (a degenerate minimum) or not at all (minimisers at infinity, e.g. separable "
        "classification)."
    )
    left_manifold = (
        "The slow flow left the manifold of minimisers (residual above manifold_tol), became non-finite, or its step "
        "size collapsed: typically a singular point where J (or the Hessian) loses rank, or a start the retraction "
        "could not bring onto the manifold (no zero-loss set: try manifold='critical'). `final` is the last state "
        "reached."
    )


# A run that used its whole step budget before this fraction of the horizon "crawled".
CRAWL_FRACTION = 0.5


class Trajectory(eqx.Module):
    """A gradient-flow (or gradient-descent) run, as a pytree (it vmaps and stacks).

    **Attributes:**

    - `ts`: the save times, in the run's time variable: ODE time t (`time="fast"`), or slow
      time τ = λt (`time="slow"`). For `gd`, t = η_0 + … + η_{k−1} after k steps; for `gd` with an
      optax `optimizer` (`time="step"`) the step index k, which `t` also returns (and `tau` = λk).
    - `metrics`: dict of arrays over `ts`. Always `train_loss` (F), `objective`
      (F_λ = F + (λ/2)‖m⊙θ‖²), `norm` (‖m⊙θ‖, the decayed leaves), `grad_norm` (‖∇F‖ on
      the training data); with test data `test_loss`; and `train_<name>`/`test_<name>` for every
      metric of the Problem. Values after `t_final` (a run stopped early) are NaN.
    - `final`: the model at the last time reached (always finite).
    - `t_final`: that time, in the run's time variable.
    - `stats`: dict with `num_steps`, `num_accepted_steps`, `num_rejected_steps`, `max_steps`
      and, where it is exact, `num_vf_evals` (gradient evaluations of the integrator, save
      points excluded).
    - `result`: a `RESULTS` code; `.message` reads it.
    - `lam`: λ. `time`: "fast", "slow" or "step". `solver`: the method's name.
    - `params`: with `save_params=True`, the model's parameters at every save time (a pytree
      like the model's floating-point arrays, each with a leading time axis; NaN after
      `t_final`); otherwise None.
    - `stopped_by`: with `simulate(..., stop=...)`, the index of the stop condition that ended
      the run (−1: none did); `stop_reason` says it in words. `stop_conditions`, `stop_values`:
      the conditions and thresholds.
    """

    ts: jax.Array
    metrics: dict[str, jax.Array]
    final: Any
    t_final: jax.Array
    stats: dict[str, jax.Array]
    result: RESULTS
    lam: jax.Array
    time: str = eqx.field(static=True)
    solver: str = eqx.field(static=True)
    params: Any = None
    stopped_by: Any = None
    stop_conditions: tuple = eqx.field(static=True, default=())
    stop_values: Any = None

    @property
    def t(self) -> jax.Array:
        """Save times in ODE time t."""
        return self.ts if self.time in ("fast", "step") else self.ts / self.lam[..., None]

    @property
    def tau(self) -> jax.Array:
        """Save times in slow time τ = λt."""
        return self.ts * self.lam[..., None] if self.time in ("fast", "step") else self.ts

    @property
    def ok(self) -> jax.Array:
        """True where the run finished successfully."""
        return self.result == RESULTS.successful

    @property
    def stop_reason(self) -> str | None:
        """The stop condition that ended the run, e.g. "test_accuracy >= 0.99", or None."""
        if self.stopped_by is None or not self.stop_conditions:
            return None
        if np.ndim(self.stopped_by) != 0:
            raise ValueError("this Trajectory is batched; index one member first (jax.tree.map(lambda x: x[i], traj))")
        i = int(self.stopped_by)
        if i < 0:
            return None
        return self.stop_conditions[i].format(f"{float(self.stop_values[i]):g}")

    @property
    def message(self) -> str:
        """The result in words ("successful" when it is; a stop says why and when)."""
        if np.ndim(self.result._value) != 0:
            raise ValueError("this Trajectory is batched; index one member first (jax.tree.map(lambda x: x[i], traj))")
        msg = RESULTS[self.result]
        if self.result == RESULTS.non_finite_field:
            return f"{msg} (t_final: {self.time_symbol} = {float(self.t_final):.6g})"
        if not msg and self.stop_reason is not None:
            return f"successful: stopped at {self.time_symbol} = {float(self.t_final):.6g} because {self.stop_reason}"
        if self.result == RESULTS.max_steps_reached and "num_steps" in self.stats:
            return f"{msg} {self._crawl_note()}"
        return msg or "successful"

    def _crawl_note(self) -> str:
        # Where the step budget went: a solve that ran out of steps far short of t1 crawled.
        symbol, reached, end = self.time_symbol, float(self.t_final), float(np.asarray(self.ts)[-1])
        steps, rejected = int(self.stats["num_steps"]), int(self.stats.get("num_rejected_steps", 0))
        note = (
            f"It reached {symbol} = {reached:.4g} of {end:.4g} ({100 * reached / end:.2g}%) in {steps} steps "
            f"({rejected} rejected)."
        )
        if reached >= CRAWL_FRACTION * end:
            return note
        if bool(self.stats.get("nonsmooth", False)):
            # solver="auto" already took the kink path: its explicit steps are held by the kinks or,
            # on a stiff flow, by stability (Musat's summed-loss ReLU net, benchmarks/README.md).
            sharpness = float(self.stats.get("sharpness_estimate", np.nan))
            races = int(self.stats.get("num_races", 0))
            note += (
                f" The solver crawled on solver='auto''s kink path ({self.solver}; sharpness(theta0) ~ {sharpness:.3g})"
            )
            if races:
                # It already raced bosh3 against RKC1 and went on with the cheaper one.
                return note + (
                    f" after racing bosh3 against RKC1 {races} time(s) and keeping the cheaper: raise max_steps, "
                    "loosen rtol (1e-3 is the default here), or use gflow.gd at a step below 2/sharpness."
                )
            note += (
                ". If the flow is stiff (h * sharpness > 2.5 for the step h you need), use "
                "solver=gflow.RKC1() at rtol=1e-3 (7x fewer gradients than bosh3 on a stiff squared-loss ReLU "
                "net); otherwise raise max_steps, or use gflow.gd at a step below 2/sharpness."
            )
        else:
            note += (
                " The solver crawled. If the model has kinks (ReLU, abs, max: gflow.nonsmooth_operations(problem) "
                "lists them), tight tolerances shrink the step at every kink: use solver='auto' (it takes bosh3 at "
                "rtol 1e-3 there), a low-order solver at rtol >= 1e-3, or gflow.gd. If it is stiff, use "
                "solver='ros34pw2'."
            )
        return note

    @property
    def time_symbol(self) -> str:
        return {"fast": "t", "slow": "tau", "step": "step"}[self.time]

    def to_xarray(self):
        """An `xarray.Dataset` with coordinate `time` (and `t`, `tau`), one variable per metric.

        Attributes record λ, the time convention, the solver, the result and the solver stats.
        """
        import xarray as xr

        if np.ndim(self.ts) != 1:
            raise ValueError("to_xarray() takes one run; for batches use gflow.sweep (or index a member)")
        ts = np.asarray(self.ts)
        coords = {"time": ts, "t": ("time", np.asarray(self.t)), "tau": ("time", np.asarray(self.tau))}
        data = {name: ("time", np.asarray(v)) for name, v in self.metrics.items()}
        attrs = {
            "lam": float(self.lam),
            "time_variable": {
                "fast": "t (ODE time)",
                "slow": "tau = lam * t (slow time)",
                "step": "step (optimiser step index, not ODE time)",
            }[self.time],
            "convention": "F_lam = F + (lam/2)*||m*theta||^2, dtheta/dt = -grad F_lam",
            "solver": self.solver,
            "result": self.message,
            "t_final": float(self.t_final),
        }
        if self.stop_reason is not None:
            attrs["stop_reason"] = self.stop_reason
        attrs.update(
            {
                f"stats_{k}": float(v) if np.issubdtype(np.asarray(v).dtype, np.inexact) else int(v)
                for k, v in self.stats.items()
            }
        )
        return xr.Dataset(data, coords=coords, attrs=attrs)
