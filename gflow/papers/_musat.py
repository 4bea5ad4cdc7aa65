"""What the Musat toy figures (`musat_fig1_single_sample`, `musat_fig2_three_numbers`,
`musat_fig3_landscapes`) share: the conversion to Musat's time and the closed-form flow of the
linear model on one sample.

Convention (papers.md §1): Musat runs GD on 𝓛_λ = (ŷ − y)² + λ_M‖w‖² (no ½), whose flow is
dw/dt_M = −∇𝓛_λ. gflow integrates dw/dt = −∇F_λ with F = ½(ŷ − y)², F_λ = F + (λ/2)‖w‖². Since
𝓛_λ = 2F_{λ_M}, Musat's run at λ_M is gflow's at λ = λ_M in time t = 2 t_M; the slow time
τ = λt = 2λ_M t_M is the same in both.
"""

from __future__ import annotations

import numpy as np


def exact_weights(w0, lam: float, t_m) -> np.ndarray:
    """Closed-form gradient flow of 𝓛_λ = (⟨w, 1⟩ − n)² + λ‖w‖² in Musat's time t_M, shape (T, n).

    ⟨w, 1⟩ relaxes at rate 2(n + λ) to n²/(n + λ) (so w_i → n/(n + λ)); the component of w
    orthogonal to 1 decays as e^{−2λ t_M}. For n = 2 this is papers.md E2.1.
    """
    w0 = np.asarray(w0, float)
    n = w0.size
    t_m = np.asarray(t_m, float)[:, None]
    a0 = w0.sum()
    a_inf = n * n / (n + lam)
    a = a_inf + (a0 - a_inf) * np.exp(-2.0 * (n + lam) * t_m)  # ⟨w, 1⟩
    u0 = w0 - a0 / n
    return u0[None, :] * np.exp(-2.0 * lam * t_m) + a / n


def simulate_musat_time(problem, lam: float, t_m, params, what: str):
    """The gflow run of `problem` at λ (= Musat's λ_M) saved at Musat times `t_m` (gflow t = 2 t_M),
    with its parameters, by Tsit5 at params' rtol and atol. A failed run raises RuntimeError
    naming `what`."""
    import jax.numpy as jnp

    from .._simulate import simulate

    traj = simulate(
        problem,
        lam,
        2.0 * t_m[-1],
        solver="tsit5",
        saveat=jnp.asarray(2.0 * t_m),
        save_params=True,
        rtol=params["rtol"],
        atol=params["atol"],
    )
    if not bool(traj.ok):
        raise RuntimeError(f"{what}: {traj.message}")
    return traj
