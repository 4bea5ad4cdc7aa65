r"""Measurements on trajectories, models and data: the quantities the seed papers plot.

- **Phases**: `crossing_time`, `phase_times` (when the train set is fitted, when the model
  generalises); `over_time` (any measurement of the model along a run with saved parameters).
- **Scaling laws**: `scaling_fit`, `fit_inverse_lambda`, `fit_log_alpha` (slope of a time
  against 1/λ or ln α over runs, with a t-distribution confidence interval).
- **Kernel and rich references** (Lyu et al.): `ntk_features`, `ntk_predict`,
  `min_norm_interpolator` (K2), `max_margin_classifier` (K1), `kernel_predictor`;
  `min_l1_interpolator`, `max_l1_margin_classifier` (linear programs),
  `min_nuclear_norm_completion`.
- **Fourier features of embeddings**: `fourier_coefficients`, `fourier_measures` (Musat's three
  measurements), `key_frequencies` (Nanda).
- **Progress measures of modular addition** (Nanda et al.): `logit_table`, `progress_measures`
  (restricted and excluded loss, Gini coefficients, stable rank of the logit table).
- **Spectra**: `singular_values`, `stable_rank`, `schatten_energy` (Tan et al.), `relu_kinks`
  (Boursier E1.2).
- **Musat's isolated first-layer dynamics**: `first_layer_potential`, `first_layer_field`,
  `isolated_first_layer_flow`.

Results are NumPy arrays, floats and small frozen dataclasses; nothing here changes JAX's
configuration (run in float64 for the tolerances quoted in the docstrings).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import diffrax
import equinox as eqx
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import scipy.linalg
import scipy.optimize
import scipy.stats

from ._problem import Problem, ProblemError
from ._solution import Trajectory


def crossing_time(ts, values, threshold: float, *, below: bool = True, after: float = 0.0) -> float:
    """First save time ≥ `after` from which `values` stays below (or above) `threshold`.

    "Stays" means for every later save time with a finite value, so a metric that dips
    across the threshold and comes back does not count. Returns NaN if it never does.
    The time is a save time, so its resolution is that of the save grid.
    """
    ts = np.asarray(ts)
    values = np.asarray(values)
    good = np.isfinite(values)
    ok = (values <= threshold) if below else (values >= threshold)
    ok = ok | ~good
    # stays_ok[i]: every saved value from i on satisfies the condition.
    stays_ok = np.flip(np.logical_and.accumulate(np.flip(ok)))
    candidates = np.nonzero(stays_ok & good & (ts >= after))[0]
    return float(ts[candidates[0]]) if candidates.size else math.nan


@dataclasses.dataclass(frozen=True)
class PhaseTimes:
    """Fit and generalisation times of a run, in ODE time t and slow time τ = λt."""

    t_fit: float
    t_generalise: float
    lam: float
    fit_threshold: float
    generalise_threshold: float
    generalise_metric: str

    @property
    def tau_fit(self) -> float:
        return self.lam * self.t_fit

    @property
    def tau_generalise(self) -> float:
        return self.lam * self.t_generalise


def phase_times(
    traj: Trajectory,
    *,
    fit_threshold: float | None = None,
    generalise_threshold: float | None = None,
    metric: str = "test_loss",
) -> PhaseTimes:
    """Time to fit the train set and time to generalise.

    - fit: first time from which `train_loss` stays ≤ `fit_threshold` (default: 1e-3 × the
      initial train loss);
    - generalise: first time after the fit from which `metric` stays ≤ `generalise_threshold`
      for losses, or ≥ it for metrics whose name contains "accuracy" (default for losses:
      1e-2 × the value of `metric` at the fit time, i.e. a hundredfold drop from the plateau;
      for accuracies 0.9).

    `traj` is a `Trajectory` or its `to_xarray()` Dataset (e.g. read back from NetCDF).
    """
    t, metrics, lam = _run_series(traj)
    if metric not in metrics:
        raise ValueError(f"unknown metric {metric!r}; this run has {', '.join(sorted(metrics))}")
    train = np.asarray(metrics["train_loss"])
    if fit_threshold is None:
        fit_threshold = 1e-3 * float(train[0])
    t_fit = crossing_time(t, train, fit_threshold)
    values = np.asarray(metrics[metric])
    is_accuracy = "accuracy" in metric
    if generalise_threshold is None:
        if is_accuracy:
            generalise_threshold = 0.9
        elif math.isfinite(t_fit):
            generalise_threshold = 1e-2 * float(values[np.searchsorted(t, t_fit)])
        else:
            generalise_threshold = math.nan
    t_gen = math.nan
    if math.isfinite(t_fit) and math.isfinite(generalise_threshold):
        t_gen = crossing_time(t, values, generalise_threshold, below=not is_accuracy, after=t_fit)
    return PhaseTimes(t_fit, t_gen, lam, float(fit_threshold), float(generalise_threshold), metric)


def _run_series(run):
    """(t, {metric: values}, λ) of one run, from a `Trajectory` or its xarray Dataset."""
    if isinstance(run, Trajectory):
        if run.ts.ndim != 1:
            raise ValueError("phase_times takes one run; index a member of a batched Trajectory")
        return np.asarray(run.t), run.metrics, float(run.lam)
    if hasattr(run, "data_vars") and "t" in run.coords and "lam" in run.attrs:
        return np.asarray(run["t"]), {k: np.asarray(v) for k, v in run.data_vars.items()}, float(run.attrs["lam"])
    raise ValueError("pass a gflow.Trajectory or the xarray Dataset of Trajectory.to_xarray()")


def over_time(traj: Trajectory, fn) -> np.ndarray:
    """The scalar `fn(model)` at every save time of a run made with `save_params=True`.

    E.g. `over_time(traj, stable_rank)` or `over_time(traj, lambda m: fourier_measures(m).mean_cos)`.
    Save times after `traj.t_final` (NaN parameters) give NaN.
    """
    if traj.params is None:
        raise ProblemError("this run has no saved parameters: simulate(..., save_params=True)")
    if traj.ts.ndim != 1:
        raise ProblemError("over_time takes one run; index a member of a batched Trajectory")
    out = []
    for i in range(traj.ts.shape[0]):
        params = jax.tree.map(lambda x: x[i], traj.params)
        finite = all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(params))
        # The saved parameters where there are some, the final model elsewhere (static parts and
        # frozen arrays, which never change).
        out.append(np.asarray(fn(eqx.combine(params, traj.final)), float) if finite else math.nan)
    return np.array(out)


# ---------------------------------------------------------------------------------------------
# Scaling fits
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ScalingFit:
    """Least-squares line y = slope·x + intercept with a two-sided t confidence interval.

    `slope_ci` = slope ± t_{n−2, (1+confidence)/2}·stderr (scipy.stats.linregress's standard
    error). `n` counts the finite points used; `x_name`/`y_name` say what was fitted.
    """

    slope: float
    intercept: float
    stderr: float
    intercept_stderr: float
    rvalue: float
    n: int
    confidence: float
    slope_ci: tuple[float, float]
    intercept_ci: tuple[float, float]
    x_name: str = "x"
    y_name: str = "y"

    def covers(self, slope: float) -> bool:
        """Whether `slope` lies in the confidence interval."""
        return self.slope_ci[0] <= slope <= self.slope_ci[1]


def _as_times(times) -> np.ndarray:
    """Floats, or `PhaseTimes` (their generalisation time t)."""
    return np.array([t.t_generalise if isinstance(t, PhaseTimes) else float(t) for t in times], float)


def scaling_fit(x, y, *, confidence: float = 0.95, x_name: str = "x", y_name: str = "y") -> ScalingFit:
    """Fit y = slope·x + intercept (scipy.stats.linregress) with confidence intervals.

    Points where x or y is not finite (e.g. a run that never generalised, NaN) are dropped;
    at least 3 finite points are needed for an interval.
    """
    x = np.asarray(x, float).ravel()
    y = np.asarray(y, float).ravel()
    if x.shape != y.shape:
        raise ProblemError(f"scaling_fit needs as many x as y values, got {x.size} and {y.size}")
    if not 0 < confidence < 1:
        raise ProblemError(f"confidence must be in (0, 1), got {confidence}")
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if x.size < 3 or np.ptp(x) == 0:
        raise ProblemError(f"a scaling fit needs >= 3 finite points at distinct x, got {x.size}; add runs")
    res = scipy.stats.linregress(x, y)
    q = float(scipy.stats.t.ppf(0.5 + confidence / 2, x.size - 2))
    return ScalingFit(
        slope=float(res.slope),
        intercept=float(res.intercept),
        stderr=float(res.stderr),
        intercept_stderr=float(res.intercept_stderr),
        rvalue=float(res.rvalue),
        n=int(x.size),
        confidence=confidence,
        slope_ci=(float(res.slope - q * res.stderr), float(res.slope + q * res.stderr)),
        intercept_ci=(float(res.intercept - q * res.intercept_stderr), float(res.intercept + q * res.intercept_stderr)),
        x_name=x_name,
        y_name=y_name,
    )


def fit_inverse_lambda(times, lams, *, loglog: bool = False, confidence: float = 0.95) -> ScalingFit:
    r"""Scaling of a time (e.g. the grokking time) with weight decay, over runs.

    - `loglog=False`: t = slope·(1/λ) + intercept; the slope is the slow time τ⋆ at which the
      event happens (the theory: t_grok = τ⋆/λ).
    - `loglog=True`: ln t = slope·ln λ + intercept; the theory predicts slope −1 (papers.md
      A12, Omnigrok's t ∝ γ⁻¹).

    `times`: floats or `PhaseTimes` (their `t_generalise`); `lams`: the λ of each run.
    """
    t = _as_times(times)
    lams = np.asarray(lams, float)
    if loglog:
        with np.errstate(divide="ignore", invalid="ignore"):
            return scaling_fit(np.log(lams), np.log(t), confidence=confidence, x_name="ln lam", y_name="ln t")
    return scaling_fit(1.0 / lams, t, confidence=confidence, x_name="1/lam", y_name="t")


def fit_log_alpha(times, alphas, *, lams=None, confidence: float = 0.95) -> ScalingFit:
    r"""Scaling of a time with the initialisation scale α, over runs (Lyu et al.).

    Without `lams`: t = slope·ln α + intercept, slope ≈ 1/λ at fixed λ. With `lams` (one per
    run): λt = slope·ln α + intercept, slope ≈ 1 (Lyu's transition at (1/λ)(ln α + O(1));
    papers.md A4 found λ·t90 ≈ ln α − 1.0).
    """
    t = _as_times(times)
    log_alpha = np.log(np.asarray(alphas, float))
    if lams is None:
        return scaling_fit(log_alpha, t, confidence=confidence, x_name="ln alpha", y_name="t")
    return scaling_fit(log_alpha, np.asarray(lams, float) * t, confidence=confidence, x_name="ln alpha", y_name="lam*t")


# ---------------------------------------------------------------------------------------------
# Kernel (NTK) predictors and rich-regime references
# ---------------------------------------------------------------------------------------------


def _flat_model(model):
    params, static = eqx.partition(model, eqx.is_inexact_array)
    flat, unravel = jax.flatten_util.ravel_pytree(params)

    def apply(theta, x):
        return eqx.combine(unravel(theta), static)(x)

    return flat, apply


@eqx.filter_jit
def _jacobian(model, x):
    flat, apply = _flat_model(model)
    return jax.vmap(jax.jacrev(apply), in_axes=(None, 0))(flat, x)


@eqx.filter_jit
def _jvp(model, h, x):
    flat, apply = _flat_model(model)
    return jax.jvp(lambda th: jax.vmap(apply, in_axes=(None, 0))(th, x), (flat,), (h.astype(flat.dtype),))


def ntk_features(model, x) -> np.ndarray:
    r"""NTK features φ(x_i) = ∇_θ f(θ; x_i) at the model's parameters, shape (n, *out, P).

    θ are the model's floating-point arrays (`eqx.partition`), flattened in
    `jax.flatten_util.ravel_pytree` order (P of them). For Lyu's kernel predictors pass the
    model at its initialisation θ0 = αθ̄_init: for an L-homogeneous model φ at αθ̄ is α^{L−1}
    times φ at θ̄, which changes neither the min-norm interpolant's predictions nor the
    max-margin direction.
    """
    return np.asarray(_jacobian(model, jnp.asarray(x)))


def ntk_predict(model, h, x) -> np.ndarray:
    """⟨φ(x_i), h⟩ for every example (a Jacobian-vector product; φ is never formed)."""
    return np.asarray(_jvp(model, jnp.asarray(h), jnp.asarray(x))[1])


def _gram_factor(a):
    """(s, V) with AAᵀ = V diag(s) Vᵀ, eigenvalues below n·eps·max dropped (A of shape (n, P))."""
    s, v = np.linalg.eigh(a @ a.T)  # an n×n problem even when P ≫ n
    keep = s > a.shape[0] * np.finfo(float).eps * max(s.max(initial=0.0), np.finfo(float).tiny)
    return s[keep], v[:, keep]


def min_norm_interpolator(features, y) -> np.ndarray:
    r"""K2: h⋆ = argmin ½‖h‖² s.t. ⟨φ_i, h⟩ = y_i, i.e. Φ⁺y (features Φ of shape (n, P)).

    Computed in the row space of Φ through the n×n Gram matrix, h = Φᵀ(ΦΦᵀ)⁺y (an eigenvalue
    decomposition, so repeated rows with consistent targets are fine), plus one step of
    iterative refinement; far cheaper than an SVD of Φ when P ≫ n. The residual is at the
    level cond(Φ)²·eps before refinement and near cond(Φ)·eps after it.
    """
    phi = np.asarray(features, float)
    y = np.asarray(y, float)
    if phi.ndim != 2 or y.shape != phi.shape[:1]:
        raise ProblemError(f"need features (n, P) and targets (n,), got {phi.shape} and {y.shape}")
    s, v = _gram_factor(phi)

    def solve(rhs):
        return phi.T @ (v @ ((v.T @ rhs) / s))

    h = solve(y)
    return h + solve(y - phi @ h)


@dataclasses.dataclass(frozen=True)
class MaxMargin:
    r"""A hard-margin classifier w: min ‖w‖ s.t. y_i⟨z_i, w⟩ ≥ 1 (`norm` = "l2" or "l1").

    `margin` = min_i y_i⟨z_i, w⟩/‖w‖ is the normalised margin (= 1/‖w‖ at the optimum).
    `dual` are the multipliers α_i ≥ 0 (for ℓ2, w = Σ α_i y_i z_i), `support` the indices of
    the active constraints y_i⟨z_i, w⟩ = 1.
    """

    w: np.ndarray
    margin: float
    dual: np.ndarray
    support: np.ndarray
    norm: str

    @property
    def direction(self) -> np.ndarray:
        """w/‖w‖ (the unit-norm classifier, in the same norm)."""
        return self.w / (np.linalg.norm(self.w) if self.norm == "l2" else np.abs(self.w).sum())


def _margin_rows(features, y):
    phi = np.asarray(features, float)
    y = np.asarray(y, float)
    if phi.ndim != 2 or y.shape != phi.shape[:1]:
        raise ProblemError(f"need features (n, P) and labels (n,), got {phi.shape} and {y.shape}")
    if not np.all(np.abs(y) == 1):
        raise ProblemError("labels must be -1 or +1; map 0/1 labels with y = 2*y - 1")
    return y[:, None] * phi


def max_margin_classifier(features, y, *, support_tol: float = 1e-8) -> MaxMargin:
    r"""K1: the max-ℓ2-margin linear classifier without bias, argmin ½‖h‖² s.t. y_i⟨φ_i, h⟩ ≥ 1.

    A least-distance program, solved exactly (finite active-set method) with Lawson & Hanson's
    reduction to non-negative least squares (*Solving Least Squares Problems*, ch. 23): with
    G = diag(y)Φ and any R with RᵀR = GGᵀ (here R = diag(√s)Vᵀ from the eigendecomposition of
    the n×n Gram matrix, so P ≫ n is cheap), ‖Gᵀu‖ = ‖Ru‖; solve
    u = argmin_{u ≥ 0} ‖[R; 1ᵀ]u − e_{n+1}‖ (`scipy.optimize.nnls`); then the dual multipliers
    are α = u/(1 − 1ᵀu) ≥ 0 and h = Gᵀα. A zero residual means the data are not separable
    (raised as an error). The KKT conditions (margins ≥ 1, equality where α > 0) hold to
    rounding error amplified by the Gram matrix's conditioning.
    """
    g = _margin_rows(features, y)
    n = g.shape[0]
    s, v = _gram_factor(g)
    e = np.vstack([np.sqrt(s)[:, None] * v.T, np.ones((1, n))])
    f = np.zeros(e.shape[0])
    f[-1] = 1.0
    u, _ = scipy.optimize.nnls(e, f, maxiter=50 * n)
    denom = 1.0 - u.sum()
    if denom <= 1e-12:
        raise ProblemError("the features are not linearly separable with a margin: no max-margin classifier")
    alpha = u / denom
    w = g.T @ alpha
    margins = g @ w
    support = np.nonzero(alpha > support_tol * max(1.0, alpha.max()))[0]
    return MaxMargin(w=w, margin=float(margins.min() / np.linalg.norm(w)), dual=alpha, support=support, norm="l2")


def min_l1_interpolator(x, y) -> np.ndarray:
    r"""argmin ‖β‖₁ s.t. Xβ = y, as the linear program min 1ᵀ(β⁺ + β⁻), X(β⁺ − β⁻) = y, β± ≥ 0.

    Solved with `scipy.optimize.linprog` (HiGHS); the rich-regime limit of diagonal networks
    on regression (Boursier, Woodworth et al.).
    """
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    d = x.shape[1]
    res = scipy.optimize.linprog(np.ones(2 * d), A_eq=np.hstack([x, -x]), b_eq=y, bounds=(0, None), method="highs")
    if res.status != 0:
        raise ProblemError(f"min-l1 interpolation LP failed ({res.message}); is Xb = y solvable?")
    return res.x[:d] - res.x[d:]


def max_l1_margin_classifier(x, y, *, support_tol: float = 1e-8) -> MaxMargin:
    r"""The max-ℓ1-margin classifier argmin ‖β‖₁ s.t. y_i⟨x_i, β⟩ ≥ 1, as a linear program.

    min 1ᵀ(β⁺ + β⁻) s.t. −diag(y)X(β⁺ − β⁻) ≤ −1, β± ≥ 0 (`scipy.optimize.linprog`, HiGHS).
    The rich-regime limit of Lyu's diagonal network on classification (Cor. 3.7); `dual`
    are the LP multipliers of the margin constraints.
    """
    g = _margin_rows(x, y)
    n, d = g.shape
    res = scipy.optimize.linprog(
        np.ones(2 * d), A_ub=-np.hstack([g, -g]), b_ub=-np.ones(n), bounds=(0, None), method="highs"
    )
    if res.status != 0:
        raise ProblemError(f"max-l1-margin LP failed ({res.message}); are the data separable?")
    w = res.x[:d] - res.x[d:]
    dual = -np.asarray(res.ineqlin.marginals)
    support = np.nonzero(dual > support_tol * max(1.0, dual.max()))[0]
    return MaxMargin(w=w, margin=float((g @ w).min() / np.abs(w).sum()), dual=dual, support=support, norm="l1")


@dataclasses.dataclass(frozen=True)
class KernelPredictor:
    r"""The kernel-regime predictor f(θ0; x) + ⟨φ(x), h⟩ of a problem and its metrics.

    `h` is the (flattened) parameter direction; `train_pred`/`test_pred` the predictions;
    `metrics` has `train_mse`, `test_mse` (mean squared error, no ½), `test_loss` (gflow's
    ½·mean) for regression, `train_accuracy`, `test_accuracy`, `margin` for classification.
    """

    kind: str
    h: np.ndarray
    train_pred: np.ndarray
    test_pred: np.ndarray | None
    metrics: dict


def kernel_predictor(model, train=None, test=None, *, kind: str | None = None) -> KernelPredictor:
    r"""Lyu et al.'s kernel predictor (K1 or K2) with NTK features at the model's parameters.

    Call as `kernel_predictor(problem)` or `kernel_predictor(model, train, test, kind=...)`.
    - `kind="regression"` (K2; default for "mse" problems): h = min-norm solution of
      ⟨φ(x_i), h⟩ = y_i − f(θ0; x_i), prediction f(θ0; x) + ⟨φ(x), h⟩: the linearised model's
      gradient-flow limit (for Lyu's zero-output θ0 the offset is 0, Thm 3.9).
    - `kind="classification"` (K1; default for "logistic" problems): h = max-ℓ2-margin
      direction on the features (labels ±1), prediction sign⟨φ(x), h⟩ (Thm 3.4; assumes
      f(θ0) = 0, the offset is ignored).
    Only scalar-output models. Test predictions use Jacobian-vector products, so a large test
    set costs no more memory than a forward pass.
    """
    if isinstance(model, Problem):
        problem = model
        model, train, test = problem.model, problem.train, problem.test
        if kind is None:
            kind = {"mse": "regression", "logistic": "classification"}.get(problem.loss_name)
    if kind not in ("regression", "classification"):
        raise ProblemError("kind must be 'regression' or 'classification' (or pass an 'mse'/'logistic' Problem)")
    x, y = jnp.asarray(train["x"]), np.asarray(train["y"], float)
    phi = ntk_features(model, x)
    if phi.ndim != 2:
        raise ProblemError(f"kernel predictors need a scalar-output model; features have shape {phi.shape}")
    f0 = np.asarray(eqx.filter_vmap(model)(x), float)
    metrics = {}
    if kind == "regression":
        h = min_norm_interpolator(phi, y - f0)
        train_pred = f0 + phi @ h
        metrics["train_mse"] = float(np.mean((train_pred - y) ** 2))
    else:
        svm = max_margin_classifier(phi, y)
        h = svm.w
        train_pred = phi @ h
        metrics["train_accuracy"] = float(np.mean(np.sign(train_pred) == y))
        metrics["margin"] = svm.margin
    test_pred = None
    if test is not None:
        xt, yt = jnp.asarray(test["x"]), np.asarray(test["y"], float)
        f0t, jv = _jvp(model, jnp.asarray(h), xt)
        if kind == "regression":
            test_pred = np.asarray(f0t, float) + np.asarray(jv, float)
            metrics["test_mse"] = float(np.mean((test_pred - yt) ** 2))
            metrics["test_loss"] = 0.5 * metrics["test_mse"]
        else:
            test_pred = np.asarray(jv, float)
            metrics["test_accuracy"] = float(np.mean(np.sign(test_pred) == yt))
    return KernelPredictor(kind=kind, h=h, train_pred=train_pred, test_pred=test_pred, metrics=metrics)


@dataclasses.dataclass(frozen=True)
class NuclearCompletion:
    r"""Result of `min_nuclear_norm_completion`.

    `matrix` matches the observed entries exactly; `nuclear_norm` is its ‖·‖_*; `lower_bound`
    a certified lower bound on the optimal value (weak duality with a dual certificate
    supported on the observed entries), so `gap` = nuclear_norm − lower_bound ≥ 0 bounds the
    suboptimality. `iterations` and `converged` describe the iteration.
    """

    matrix: np.ndarray
    nuclear_norm: float
    lower_bound: float
    iterations: int
    converged: bool

    @property
    def gap(self) -> float:
        return self.nuclear_norm - self.lower_bound


def _svt(a, thresh):
    u, s, vt = np.linalg.svd(a, full_matrices=False)
    return (u * np.maximum(s - thresh, 0.0)) @ vt


def min_nuclear_norm_completion(
    shape, rows, cols, values, *, step: float | None = None, tol: float = 1e-10, max_iter: int = 20_000
) -> NuclearCompletion:
    r"""argmin ‖W‖_* s.t. W_{r_k c_k} = v_k, by Douglas–Rachford splitting (NumPy).

    The iteration alternates the projection P onto the affine set of matrices with the
    observed entries and singular-value soft-thresholding S_γ (the prox of γ‖·‖_*):
    z ← z + S_γ(2P(z) − z) − P(z), W = P(z); it converges for any step γ > 0 (default: the
    root-mean-square observed value). It stops when ‖S_γ(2P(z) − z) − P(z)‖_F ≤ tol·‖W‖_F.
    At the fixed point Y = (W − z)/γ is supported on the observed entries with ‖Y‖₂ ≤ 1 and
    ⟨Y, W⟩ = ‖W‖_*: the dual certificate behind `lower_bound` (Y rescaled to spectral norm
    ≤ 1, so the bound is valid at any iterate). On small well-posed instances the gap falls
    below 1e−8·‖W‖_* in a few thousand iterations; an SVD per iteration limits it to matrices
    of a few hundred rows. For a symmetric completion (Lyu's W = UUᵀ − VVᵀ) pass both (i, j)
    and (j, i); the optimum is then symmetric.
    """
    rows = np.asarray(rows, int)
    cols = np.asarray(cols, int)
    values = np.asarray(values, float)
    mask = np.zeros(shape, bool)
    mask[rows, cols] = True
    target = np.zeros(shape)
    target[rows, cols] = values
    if step is None:
        step = float(np.sqrt(np.mean(values**2))) or 1.0

    def project(z):
        return np.where(mask, target, z)

    z = target.copy()
    converged = False
    it = 0
    for it in range(1, max_iter + 1):
        w = project(z)
        v = _svt(2 * w - z, step)
        diff = v - w
        z = z + diff
        if np.linalg.norm(diff) <= tol * max(np.linalg.norm(w), 1e-300):
            converged = True
            break
    w = project(z)
    nuc = float(np.linalg.svd(w, compute_uv=False).sum())
    cert = np.where(mask, (w - z) / step, 0.0)
    spec = float(np.linalg.norm(cert, 2))
    lower = float(np.sum(cert * target) / max(spec, 1.0))
    return NuclearCompletion(matrix=w, nuclear_norm=nuc, lower_bound=lower, iterations=it, converged=converged)


# ---------------------------------------------------------------------------------------------
# Fourier features of embeddings (Musat §7, Nanda et al.)
# ---------------------------------------------------------------------------------------------


def _embedding(embedding):
    e = getattr(embedding, "embed", embedding)
    e = jnp.asarray(e)
    if e.ndim != 2:
        raise ProblemError(f"need an embedding matrix (p tokens, d) or a model with .embed, got shape {e.shape}")
    return e


def _fourier_parts(e):
    """Re F_k and Im F_k, k = 1 … (p−1)//2, each (K, d): F_k = (1/p)Σ_j e^{−2πijk/p} E_j."""
    p = e.shape[0]
    k = np.arange(1, (p - 1) // 2 + 1)
    angle = 2 * np.pi * np.outer(k, np.arange(p)) / p
    cos = jnp.asarray(np.cos(angle) / p, e.dtype)
    sin = jnp.asarray(np.sin(angle) / p, e.dtype)
    return cos @ e, -(sin @ e)


def _fourier_summary(e):
    """Mean |cos(Re F_k, Im F_k)| over k and the CV of all 2K norms (jit-friendly)."""
    re, im = _fourier_parts(e)
    nre, nim = jnp.linalg.norm(re, axis=1), jnp.linalg.norm(im, axis=1)
    cos = jnp.abs(jnp.sum(re * im, axis=1)) / (nre * nim)
    norms = jnp.concatenate([nre, nim])
    return jnp.mean(cos), jnp.std(norms) / jnp.mean(norms)


def fourier_coefficients(embedding) -> np.ndarray:
    r"""F_k = (1/p)Σ_{j=0}^{p−1} e^{−2πijk/p} E_j for k = 1 … ⌊(p−1)/2⌋, complex, shape (K, d).

    `embedding`: a (p, d) matrix whose row j is token j's vector, or a model with `.embed`
    (`EmbeddingNet`, `EmbedMLP`). Frequencies k and p − k are conjugate, so K = ⌊(p−1)/2⌋
    carry everything but the mean (k = 0).
    """
    re, im = _fourier_parts(_embedding(embedding))
    return np.asarray(re) + 1j * np.asarray(im)


@dataclasses.dataclass(frozen=True)
class FourierMeasures:
    r"""Musat's three measurements of the circles span{Re F_k, Im F_k} (§7, Fig. 6).

    - `cos[k]` = |cos∠(Re F_k, Im F_k)|: 0 when each circle lies in an orthogonal pair of
      directions (measurement 2);
    - `pair_cv[k]` = coefficient of variation (population std/mean) of {‖Re F_k‖, ‖Im F_k‖}:
      0 for round circles (aspect ratio 1; measurement 1), and `norm_cv` the same over all 2K
      norms (0 when every circle has the same radius; papers.md A10 quotes this one: 0.028 at
      initialisation → 0.008);
    - `within[k]` = cos∠(|Re F_k|, |Im F_k|) (elementwise absolute values over the hidden
      units) and `across` its mean over pairs of different frequencies (all Re/Im
      combinations): within ≫ across when each circle uses its own hidden units
      (measurement 3).
    `frequencies` are k = 1 … K.
    """

    frequencies: np.ndarray
    cos: np.ndarray
    pair_cv: np.ndarray
    norm_cv: float
    within: np.ndarray
    across: float

    @property
    def mean_cos(self) -> float:
        return float(np.mean(self.cos))

    @property
    def mean_pair_cv(self) -> float:
        return float(np.mean(self.pair_cv))

    @property
    def mean_within(self) -> float:
        return float(np.mean(self.within))


def fourier_measures(embedding) -> FourierMeasures:
    """Musat's Fourier measurements of an embedding matrix (rows = tokens); see `FourierMeasures`."""
    re, im = (np.asarray(a, float) for a in _fourier_parts(_embedding(embedding)))
    k = re.shape[0]
    nre, nim = np.linalg.norm(re, axis=1), np.linalg.norm(im, axis=1)
    cos = np.abs(np.sum(re * im, axis=1)) / (nre * nim)
    pair = np.stack([nre, nim])
    pair_cv = pair.std(axis=0) / pair.mean(axis=0)
    norms = np.concatenate([nre, nim])
    a = np.concatenate([np.abs(re), np.abs(im)])  # rows 0..K−1: |Re F_k|, K..2K−1: |Im F_k|
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    sim = a @ a.T
    freq = np.concatenate([np.arange(k), np.arange(k)])
    within = sim[np.arange(k), np.arange(k) + k]
    across = float(sim[freq[:, None] != freq[None, :]].mean()) if k > 1 else math.nan
    return FourierMeasures(
        frequencies=np.arange(1, k + 1),
        cos=cos,
        pair_cv=pair_cv,
        norm_cv=float(norms.std() / norms.mean()),
        within=within,
        across=across,
    )


@dataclasses.dataclass(frozen=True)
class KeyFrequencies:
    r"""Fourier energy of an embedding per frequency (Nanda et al.'s progress measure).

    `energy[k−1]` = ‖Re F_k‖² + ‖Im F_k‖² for k = 1 … K (proportional to the squared norm of the
    cos and sin components of frequency k); `shares` = energy/Σenergy; `key` the frequencies,
    largest share first, that together carry at least `fraction` of the non-constant Fourier
    norm; `gini` the Gini coefficient of the shares (0: spread evenly, → 1: concentrated).
    """

    key: np.ndarray
    energy: np.ndarray
    shares: np.ndarray
    fraction: float
    gini: float


def key_frequencies(embedding, *, fraction: float = 0.8) -> KeyFrequencies:
    """The few frequencies carrying most of an embedding's Fourier norm (see `KeyFrequencies`)."""
    if not 0 < fraction <= 1:
        raise ProblemError(f"fraction must be in (0, 1], got {fraction}")
    re, im = (np.asarray(a, float) for a in _fourier_parts(_embedding(embedding)))
    energy = np.sum(re**2, axis=1) + np.sum(im**2, axis=1)
    shares = energy / energy.sum()
    order = np.argsort(-shares, kind="stable")
    count = int(np.searchsorted(np.cumsum(shares[order]), fraction - 1e-12) + 1)
    s = np.sort(shares)
    n = s.size
    gini = float((2 * np.arange(1, n + 1) - n - 1) @ s / (n * s.sum()))
    return KeyFrequencies(key=order[:count] + 1, energy=energy, shares=shares, fraction=fraction, gini=gini)


def _pairs_and_labels(problem) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pairs (N, 2), labels (N,), is_train (N,)) over the train and test splits of a modular task."""
    splits = [problem.train] + ([problem.test] if problem.test is not None else [])
    for split in splits:
        if not isinstance(split, dict) or "x" not in split or "label" not in split:
            raise ProblemError("need a modular-arithmetic Problem (gflow.tasks.modular_arithmetic/_transformer)")
    pairs = np.concatenate([np.asarray(s["x"]) for s in splits])
    labels = np.concatenate([np.asarray(s["label"]) for s in splits])
    is_train = np.zeros(len(labels), bool)
    is_train[: len(np.asarray(problem.train["label"]))] = True
    if pairs.ndim != 2 or pairs.shape[1] != 2 or not np.issubdtype(pairs.dtype, np.integer):
        raise ProblemError(f"need integer token pairs x of shape (N, 2), got {pairs.dtype} {pairs.shape}")
    return pairs, labels, is_train


@eqx.filter_jit
def _batched_outputs(model, x):
    return jax.vmap(model)(x)


def logit_table(model, p: int) -> np.ndarray:
    """The model's outputs on every pair (a, b) ∈ [0, p)²: an array (p, p, k), `[a, b]` = f(a, b)."""
    a, b = np.meshgrid(np.arange(p), np.arange(p), indexing="ij")
    x = jnp.asarray(np.stack([a.ravel(), b.ravel()], axis=1))
    out = np.asarray(_batched_outputs(model, x))
    return out.reshape(p, p, -1)


def _sum_components(table, frequencies):
    r"""Σ_k the projections of each output's (p, p) logit table onto cos(w_k(a+b)) and sin(w_k(a+b))."""
    p = table.shape[0]
    s = np.add.outer(np.arange(p), np.arange(p))
    out = np.zeros_like(table)
    for k in frequencies:
        for wave in (np.cos(2 * np.pi * k * s / p), np.sin(2 * np.pi * k * s / p)):
            coef = np.einsum("ab,abc->c", wave, table) / np.sum(wave**2)
            out += wave[:, :, None] * coef[None, None, :]
    return out


def _cross_entropy(logits, labels) -> float:
    z = logits - logits.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-np.mean(logp[np.arange(len(labels)), labels]))


@dataclasses.dataclass(frozen=True)
class ProgressMeasures:
    r"""Nanda et al.'s progress measures of a modular-addition model (§5.1 of their paper).

    With L[a, b, c] the logits on the full p × p table and, for each output c, P_k the projection
    of L[·, ·, c] onto span{cos(w_k(a+b)), sin(w_k(a+b))} (w_k = 2πk/p, over the p² grid):

    - `restricted_loss`: cross-entropy over **all** pairs of the logits mean_{a,b} L + Σ_{k∈K} P_k L
      (only the key frequencies K kept): low once the Fourier circuit exists;
    - `excluded_loss`: cross-entropy over the **training** pairs of L − Σ_{k∈K} P_k L (the key
      frequencies removed): rises when memorisation is no longer what fits the training set;
    - `train_loss`, `test_loss`: the plain cross-entropies of L on the two splits;
    - `embed_gini`, `logit_map_gini`: Gini coefficients of the Fourier energies of the token
      embedding (`model.embed`) and of the neuron-to-logit map (`model.neuron_logit_map`),
      NaN for a model without one (→ 1 as the model concentrates on few frequencies);
    - `logit_stable_rank`: `stable_rank` of L as a (p², k) matrix (2|K| for a pure "clock"
      table Σ_{k∈K} cos(w_k(a+b−c)), larger for a memorising one).
    `frequencies` is K. Restricting with only the cos/sin(a+b) terms follows Nanda et al.'s
    description; their code's per-neuron variant of the restricted loss is not reproduced.
    """

    frequencies: np.ndarray
    restricted_loss: float
    excluded_loss: float
    train_loss: float
    test_loss: float
    embed_gini: float
    logit_map_gini: float
    logit_stable_rank: float


def progress_measures(model, problem: Problem, *, frequencies=None, fraction: float = 0.8) -> ProgressMeasures:
    """`ProgressMeasures` of `model` on a modular task `problem` (its train/test pairs and labels).

    `frequencies`: the key frequencies K (1 ≤ k ≤ (p−1)/2); default the `key_frequencies` of
    `model.embed` carrying `fraction` of its Fourier energy. Works for any model mapping a
    token pair to p logits; the Gini coefficients need `.embed` / `.neuron_logit_map`.
    """
    pairs, labels, is_train = _pairs_and_labels(problem)
    p = int(pairs.max()) + 1
    p = max(p, int(labels.max()) + 1)
    table = logit_table(model, p)
    embed = getattr(model, "embed", None)
    if frequencies is None:
        if embed is None:
            raise ProblemError("this model has no .embed: pass frequencies=[k1, k2, ...]")
        frequencies = key_frequencies(embed, fraction=fraction).key
    frequencies = np.unique(np.asarray(frequencies, int))
    if frequencies.size == 0 or frequencies.min() < 1 or 2 * frequencies.max() >= p:
        raise ProblemError(f"frequencies must lie in 1 … {(p - 1) // 2}, got {frequencies.tolist()}")
    key_part = _sum_components(table, frequencies)
    mean = table.mean(axis=(0, 1), keepdims=True)
    a, b = pairs[:, 0], pairs[:, 1]
    restricted = (mean + key_part)[a, b]
    excluded = (table - key_part)[a, b]
    logits = table[a, b]
    logit_map = getattr(model, "neuron_logit_map", None)
    return ProgressMeasures(
        frequencies=frequencies,
        restricted_loss=_cross_entropy(restricted, labels),
        excluded_loss=_cross_entropy(excluded[is_train], labels[is_train]),
        train_loss=_cross_entropy(logits[is_train], labels[is_train]),
        test_loss=_cross_entropy(logits[~is_train], labels[~is_train]) if (~is_train).any() else math.nan,
        embed_gini=key_frequencies(embed).gini if embed is not None else math.nan,
        logit_map_gini=key_frequencies(logit_map).gini if logit_map is not None else math.nan,
        logit_stable_rank=stable_rank(table.reshape(p * p, -1)),
    )


# ---------------------------------------------------------------------------------------------
# Spectra: singular values, stable rank, Schatten energy; ReLU kinks
# ---------------------------------------------------------------------------------------------


def _matrix(a) -> np.ndarray:
    m = getattr(a, "matrix", a)  # factorisation and deep linear models expose their matrix
    m = np.asarray(m, float)
    if m.ndim != 2:
        raise ProblemError(f"need a matrix or a model with .matrix, got shape {m.shape}")
    return m


def singular_values(a) -> np.ndarray:
    """Singular values, largest first, of a matrix or of a model's `.matrix` (UVᵀ, UUᵀ − VVᵀ, W_L⋯W_1)."""
    return np.linalg.svd(_matrix(a), compute_uv=False)


def stable_rank(a) -> float:
    r"""srank(A) = ‖A‖²_F/‖A‖²₂ (Tan et al. eq. 2.3): between 1 and rank(A); NaN for A = 0."""
    s = singular_values(a)
    return float(np.sum(s**2) / s[0] ** 2) if s.size and s[0] > 0 else math.nan


@dataclasses.dataclass(frozen=True)
class SchattenEnergy:
    r"""Layer energy (1/L)Σ_ℓ‖W_ℓ‖²_F and the Schatten term ‖A‖_{S_{2/L}}^{2/L} = Σ_i s_i(A)^{2/L}.

    `layer_energy ≥ schatten` always, with equality exactly at balanced factorisations
    (Tan et al. eq. 2.7); `gap` = layer_energy − schatten.
    """

    layer_energy: float
    schatten: float
    depth: int

    @property
    def gap(self) -> float:
        return self.layer_energy - self.schatten


def schatten_energy(weights) -> SchattenEnergy:
    """`SchattenEnergy` of a `DeepLinear` model or a sequence (W_1, …, W_L) with A = W_L⋯W_1."""
    ws = getattr(weights, "weights", weights)
    if not isinstance(ws, Sequence) or not ws:
        raise ProblemError("need a DeepLinear model or a non-empty sequence of weight matrices (W_1, ..., W_L)")
    ws = [np.asarray(w, float) for w in ws]
    a = ws[0]
    for w in ws[1:]:
        a = w @ a
    depth = len(ws)
    s = np.linalg.svd(a, compute_uv=False)
    return SchattenEnergy(
        layer_energy=float(sum(np.sum(w**2) for w in ws) / depth),
        schatten=float(np.sum(s ** (2.0 / depth))),
        depth=depth,
    )


def relu_kinks(model, *, interval=(-2.0, 2.0), threshold: float = 1e-3, merge: float = 1e-6) -> np.ndarray:
    r"""Kink positions −b_j/v_j of a `ReLU1D` inside `interval` that matter, sorted.

    Unit j changes the slope of f by |u_j v_j| at its kink; kinks whose slope change is below
    `threshold`·max_j |u_j v_j| are ignored, and kinks closer than `merge` to the previous one
    are merged (Boursier E1.2: the rich regime leaves few kinks; late in training several
    units share a kink up to ~1e−3, so count distinct kinks with e.g. `merge=1e-2`).
    """
    u, v, b = (np.asarray(a, float) for a in (model.u, model.v, model.b))
    strength = np.abs(u * v)
    with np.errstate(divide="ignore", invalid="ignore"):
        pos = -b / v
    keep = (strength > threshold * strength.max()) & np.isfinite(pos) & (pos >= interval[0]) & (pos <= interval[1])
    pos = np.sort(pos[keep])
    if pos.size:
        pos = pos[np.concatenate([[True], np.diff(pos) > merge])]
    return pos


# ---------------------------------------------------------------------------------------------
# Musat's isolated first-layer dynamics (§6–7, App. E; papers.md §3.2, E2.5, A10)
# ---------------------------------------------------------------------------------------------


def _musat_data(e, data):
    """(x, Y, labels): token pairs or dense inputs, one-hot targets, integer labels."""
    x = jnp.asarray(data["x"])
    y = jnp.asarray(data["y"])
    k = e.shape[0]
    if y.ndim == 1:
        labels = y.astype(jnp.int32)
        y = jax.nn.one_hot(labels, k, dtype=e.dtype)
    else:
        y = y.astype(e.dtype)
        labels = jnp.asarray(data["label"]) if "label" in data else jnp.argmax(y, axis=1)
    return x, y, labels


def _musat_pre(e, x):
    """XE: rows E_a + E_b for integer pairs (X_i = e_a + e_b), or the dense product."""
    if jnp.issubdtype(x.dtype, jnp.integer):
        return e[x[:, 0]] + e[x[:, 1]]
    return x.astype(e.dtype) @ e


def _musat_transpose(g, x, p):
    """Xᵀ G without forming X (a scatter-add for integer pairs)."""
    if jnp.issubdtype(x.dtype, jnp.integer):
        return jnp.zeros((p, g.shape[1]), g.dtype).at[x[:, 0]].add(g).at[x[:, 1]].add(g)
    return x.astype(g.dtype).T @ g


def _musat_solve(h, y):
    """A Y = (HHᵀ)⁻¹Y by Cholesky (HHᵀ is positive definite when d_h ≥ n and H has full rank)."""
    chol = jax.scipy.linalg.cho_factor(h @ h.T)
    return jax.scipy.linalg.cho_solve(chol, y)


def _musat_field(e, x, y):
    z = _musat_pre(e, x)
    h = jax.nn.relu(z)
    ay = _musat_solve(h, y)
    g = (ay @ (ay.T @ h)) * (z > 0).astype(e.dtype)  # (A Y Yᵀ A H) ⊙ σ′(XE)
    return _musat_transpose(g, x, e.shape[0]) - e


@eqx.filter_jit
def _musat_potential(e, x, y):
    h = jax.nn.relu(_musat_pre(e, x))
    return jnp.sum(y * _musat_solve(h, y))


def first_layer_potential(embedding, data) -> float:
    r"""Tr(Yᵀ(HHᵀ)⁻¹Y) = Tr(YYᵀA), H = σ(XE): the squared norm ‖W‖²_F of the minimum-norm
    second layer W = Hᵀ(HHᵀ)⁻¹Y (Musat §6). `data` = {"x": pairs or X, "y": labels or one-hots}.
    """
    e = _embedding(embedding)
    x, y, _ = _musat_data(e, data)
    return float(_musat_potential(e, x, y))


def first_layer_field(embedding, data) -> np.ndarray:
    r"""Musat's first-layer velocity dE/dτ = Xᵀ[(AYYᵀAH) ⊙ σ′(XE)] − E (sign corrected).

    A = (HHᵀ)⁻¹, H = σ(XE), σ = ReLU with σ′(0) = 0. With the zero-loss second layer
    W = Hᵀ(HHᵀ)⁻¹Y the reduced cost is 𝓡(E) = λ(‖E‖²_F + Tr(YYᵀA)) and
    ∇_E Tr(YYᵀA) = −2Xᵀ[(AYYᵀAH) ⊙ σ′(XE)]; so this is −∇𝓡/(2λ), the flow in τ = 2λ_M t_M
    (papers.md §3.2: App. E of the paper prints both signs flipped). τ is also gflow's slow
    time λt for Musat's task (`gflow.tasks.modular_arithmetic(loss="mse")`).
    """
    e = _embedding(embedding)
    x, y, _ = _musat_data(e, data)
    return np.asarray(eqx.filter_jit(_musat_field)(e, x, y))


_MUSAT_SOLVERS = {"euler": diffrax.Euler, "heun": diffrax.Heun, "tsit5": diffrax.Tsit5}


@eqx.filter_jit
def _musat_solve_flow(e0, x, y, lab, xt, lab_t, ts, dt, rtol, atol, *, solver, max_steps):
    def accuracies(e):
        h = jax.nn.relu(_musat_pre(e, x))
        ay = _musat_solve(h, y)
        w = h.T @ ay  # W = Hᵀ(HHᵀ)⁻¹Y: zero train loss
        out = {
            # cast before averaging: a mean of booleans is taken in float32
            "train_accuracy": jnp.mean((jnp.argmax(h @ w, axis=1) == lab).astype(e.dtype)),
            "potential": jnp.sum(y * ay),
            "embed_norm": jnp.linalg.norm(e),
            "readout_norm": jnp.linalg.norm(w),
        }
        if xt is not None:
            ht = jax.nn.relu(_musat_pre(e, xt))
            out["test_accuracy"] = jnp.mean((jnp.argmax(ht @ w, axis=1) == lab_t).astype(e.dtype))
        out["fourier_cos"], out["fourier_norm_cv"] = _fourier_summary(e)
        return out

    adaptive = solver != "euler"
    controller = diffrax.PIDController(rtol=rtol, atol=atol) if adaptive else diffrax.ConstantStepSize()
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(lambda t, e, args: _musat_field(e, x, y)),
        _MUSAT_SOLVERS[solver](),
        t0=jnp.zeros((), e0.dtype),
        t1=ts[-1],
        dt0=None if adaptive else dt,
        y0=e0,
        saveat=diffrax.SaveAt(
            subs=[diffrax.SubSaveAt(ts=ts, fn=lambda t, e, args: accuracies(e)), diffrax.SubSaveAt(t1=True)]
        ),
        stepsize_controller=controller,
        max_steps=max_steps,
        throw=False,
    )
    return sol.ys[0], sol.ys[1][0], sol.result, sol.stats["num_steps"]


def isolated_first_layer_flow(
    embedding,
    train,
    test=None,
    *,
    tau1: float = 5.0,
    saveat=None,
    solver: str = "euler",
    dt: float = 1e-3,
    rtol: float = 1e-6,
    atol: float = 1e-8,
    max_steps: int = 100_000,
):
    r"""Integrate Musat's isolated first-layer dynamics in τ and record accuracies (E2.5, A10).

    dE/dτ = Xᵀ[(AYYᵀAH) ⊙ σ′(XE)] − E (`first_layer_field`), with the second layer always at
    its zero-train-loss value W = Hᵀ(HHᵀ)⁻¹Y (so the train accuracy is 1 throughout), from
    E(0) = `embedding` (a (p, d_h) matrix or an `EmbeddingNet`) to τ = `tau1`. `train`/`test`:
    dicts {"x": integer pairs (a, b) or dense X, "y": integer labels or one-hot rows} (the
    splits of `gflow.tasks.modular_arithmetic`, either loss). Needs d_h ≥ n_train.

    Solvers: `"euler"` with step `dt` (default 1e−3) is Musat's own discrete update
    E ← E + η·dE/dτ with η = 10⁻³; `"heun"`/`"tsit5"` are adaptive (`rtol`, `atol`). The field
    jumps wherever an entry of XE changes sign (σ′ is a step) and is stiff when HHᵀ is nearly
    singular, so adaptive explicit solvers crawl (Tsit5 at rtol 1e−3 did not reach τ = 2.5 at
    p = 37 in 20 minutes).

    Step size matters at Musat's size. At p = 37, d_h = 512 (n = 492 train rows, so HHᵀ has
    smallest eigenvalue ≈ 7e−4 against a largest ≈ 2.5e3 at initialisation) Euler with
    η = 1e−3 reproduces papers.md A10 (seed-0 numpy data: test accuracy 0.024, 0.204, 0.531,
    0.863, 0.995, 1.000 at τ = 1, 1.5, 1.75, 2, 2.25, 2.5; mean |cos| 0.029 → 0.006, norm CV
    0.028 → 0.007; ‖E‖ 22.5 → 45.1 → 12.0), but the same run with η = 5e−4 generalises earlier
    (0.085, 0.32, 0.74, 1.0 at τ = 1, 1.25, 1.5, 1.75) and η = 3e−3 later (0.27 at τ = 2.5):
    η = 1e−3 is not yet the continuous flow there, and the delay it shows is partly
    discretisation. At p = 23, d_h = 256 (HHᵀ better conditioned) η from 2e−3 to 2.5e−4 gives
    the same curve to within a test point or two.

    Returns an `xarray.Dataset` over `tau` (`saveat`: None = 51 equispaced times on [0, τ1],
    an int = that many, or an array) with `train_accuracy`, `test_accuracy` (with test data),
    `potential` (Tr(YYᵀA) = ‖W‖²_F), `embed_norm` ‖E‖_F, `readout_norm` ‖W‖_F,
    `fourier_cos` (mean over k of |cos(Re F_k, Im F_k)|) and `fourier_norm_cv` (CV of all
    ‖Re F_k‖, ‖Im F_k‖; see `FourierMeasures`), plus `embed_final` (token × hidden) and the
    attributes `solver`, `num_steps`, `result`.
    """
    import xarray as xr

    if solver not in _MUSAT_SOLVERS:
        raise ProblemError(f"unknown solver {solver!r}; choose one of {', '.join(_MUSAT_SOLVERS)}")
    e0 = _embedding(embedding)
    if not jnp.issubdtype(e0.dtype, jnp.floating):
        raise ProblemError(f"the embedding must be floating point, got {e0.dtype}")
    x, y, lab = _musat_data(e0, train)
    if e0.shape[1] < x.shape[0]:
        raise ProblemError(
            f"HHᵀ is singular with d_h={e0.shape[1]} hidden units < n_train={x.shape[0]}: widen the embedding"
        )
    xt = lab_t = None
    if test is not None:
        xt, _, lab_t = _musat_data(e0, test)
    if saveat is None or isinstance(saveat, int):
        ts = jnp.linspace(0.0, tau1, 51 if saveat is None else saveat, dtype=e0.dtype)
    else:
        ts = jnp.asarray(saveat, e0.dtype)
    out, e_final, result, steps = _musat_solve_flow(
        e0, x, y, lab, xt, lab_t, ts, jnp.asarray(dt, e0.dtype), rtol, atol, solver=solver, max_steps=max_steps
    )
    msg = diffrax.RESULTS[result] or "successful"
    data = {k: ("tau", np.asarray(v)) for k, v in out.items()}
    data["embed_final"] = (("token", "hidden"), np.asarray(e_final))
    return xr.Dataset(
        data,
        coords={"tau": np.asarray(ts)},
        attrs={
            "solver": solver,
            "num_steps": int(steps),
            "result": msg,
            "time_variable": "tau = 2*lam_M*t_M (Musat) = lam*t (gflow, loss='mse')",
        },
    )
