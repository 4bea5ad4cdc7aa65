r"""Two training clocks in gradient flow: a depth-3 linear network with cross-entropy (papers.md A13).

Tan, Gai & Zhang (papers.md §5) separate a fast *classifier clock* T_cls(ε) = inf{t : 𝓛_CE ≤ ε}
(Thm 3.5: O(log 1/ε) under a margin-growth assumption) from a slow *representation clock*: the
layerwise weight decay of a depth-L linear network A = W_L⋯W_1 acts on A as a Schatten-2/L
quasi-norm (eq. 2.7), whose flow kills small singular values first (Prop. 4.3), so the stable
rank srank(A) = ‖A‖²_F/‖A‖²₂ falls late. The paper has no experiment on this model; A13 is our
protocol (papers.md §9, [INFERRED]).

Setup (our choices; the paper gives none):
- Task: a planted low-rank linear classifier on one-hot token pairs. Tokens a ≤ b < p = 10,
  input x = e_a + e_b ∈ ℝ^p (the symmetric one-hot embedding of the pair), K = 8 classes, teacher
  logits ⟨u_c, v_a + v_b⟩ with u_c = (cos 2πc/K, sin 2πc/K) and v_a ~ 𝒩(0, I₂): a rank-2 map.
  Pairs with teacher margin below 0.3× the median margin are dropped (so a low-rank separator
  with margin exists); 60% of the rest train (26 pairs), 40% test (18). NumPy seed 0.
  (One-hot inputs of *independent* samples, e.g. x = e_i, make every labelling a class-collapse
  problem whose Schatten optimum is a rank-(K−1) simplex: its stable rank can only rise.)
- Model: `gflow.models.DeepLinear`, L = 3, widths p → 10 → 10 → K, mean cross-entropy.
- Initialisation: every W_ℓ = α·(random partial isometry), α = 4, so A(0) has K equal singular
  values α³ = 64 and srank(A(0)) = K. papers.md A13 asks for a *small* initialisation; we run
  it as the contrast (`small_init`: `DeepLinear.init(alpha=0.3)`, Gaussian 𝒩(0, α²/fan_in)):
  small-init gradient flow learns greedily, one direction at a time, so srank(A) is low
  (≈ 1.5–2) from the start and has nothing to lose later. The large init is the lazy start that
  gives a high-rank fitted classifier, as in the paper's AdamW experiment (PyTorch's default init).
- Weight decay λ = 1e−8, solver `ros34pw2` (stiff, Rosenbrock-W) to t1 = 1e10 = 100/λ, saved at
  log-spaced times. λ is that small so that the regularised minimum's train loss (≈ 3e−8) lies
  below the smallest ε = 1e−6.

Time convention: gflow's flow dθ/dt = −∇F − λθ with F_λ = F + (λ/2)Σ_ℓ‖W_ℓ‖²_F; t is ODE time,
τ = λt slow time. Tan et al.'s layerwise penalty λ_T Σ‖W_ℓ‖² is ours with λ = 2λ_T (papers.md §1:
the constant in front of eq. 2.7 is a reading, not seen). At a balanced factorisation the penalty
is (λL/2)‖A‖_{S_{2/L}}^{2/L} = (λL/2)Σ_i s_i(A)^{2/3}; ℰ(A) = F(A) + (λL/2)Σ_i s_i^{2/3} is the
smoothed energy of Tan's §4 and Δ(t) = ℰ(A_t) − ℰ(A_{t1}) its gap.

Measured (what A13 expected and what gradient flow does; quick run, float64):
- T_cls(ε) for ε = 1e−1 … 1e−6 (first time from which the train loss stays ≤ ε, log-interpolated
  between save times): 1.50, 4.42, 39.3, 390, 3.8e3, 3.8e4. A13 expected T_cls affine in
  log(1/ε) (Thm 3.5); that line has R² = 0.50. Gradient flow on an exponential-tailed loss cannot
  grow margins linearly (the loss gradient is as small as the loss: Tan's own Lemma 3.3), so the
  classifier clock is polynomial: T_cls ∝ (1/ε)^0.995 for ε ≤ 1e−3 in the lazy large-init run (a
  linearised, 1-homogeneous model: loss ~1/t), and T_cls ≈ C/(ε·ln(1/ε)^{4/3}) in the rich
  small-init run (Lyu & Li 2020's rate 1/(t (ln t)^{2−2/L}) for L = 3: ε·T·ln(1/ε)^{4/3} = 3.95,
  3.36, 3.17, 3.12 for ε = 1e−3 … 1e−6). The logarithmic clock of Thm 3.5 belongs to optimisers
  whose steps do not shrink with the gradient (Adam: see `gflow.papers.tan_fig1_two_clocks`).
- srank(A_t): 8 at t = 0 (orthogonal init), 3.58 at T_cls(1e−2) (the fit itself grows the top
  singular values), a slow logarithmic drift to 2.6 by t ≈ 3e6, then the weight-decay fall to
  1.60 at τ = λt ≈ 0.03–1. T_rep, the first time after T_cls(1e−2) from which srank stays below
  the midpoint between its values at T_cls(1e−2) and t1 (Tan's T̂_rep(η) of papers.md §5.5 with η
  at that midpoint), is 3.0e6 = 6.8e5 × T_cls(1e−2); at T_cls(1e−6) = 3.8e4 srank is still 2.95.
  Test accuracy 0.33 at the fit → 0.61 after the fall (18 test pairs). The small-init run has
  srank 2.4 → 1.4 at the fit → 1.6: never high, no late fall, and the same final srank.
- The Schatten energy (`gflow.analysis.schatten_energy`): layer energy (1/L)Σ‖W_ℓ‖²_F, the
  Schatten term Σ s_i^{2/3}, and their gap (zero exactly at balance): the gap of ≈ 20 left by the
  unbalanced initialisation closes at τ ≈ 0.3–1; Δ(t) = ℰ(A_t) − ℰ(A_{t1}).

Sizes (`FIGURE.sizes`): quick is the setup above, p = 10, K = 8, width 10, 300 saves, with the
small-init contrast run; smoke is the quick problem itself without the contrast run and with 150
saves (so the tests read the A13 acceptance numbers from it); full is p = 16, K = 12, width 16,
600 saves (the paper has no size for this model: ours, CPU-cheap).
"""

from __future__ import annotations

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from .._problem import Problem
from .._simulate import simulate
from ..analysis import crossing_time, over_time, scaling_fit, schatten_energy, stable_rank
from ..models import DeepLinear
from . import FigureExperiment
from ._common import add_tau_axis, caption, require_float64, require_in

RUNS = ("large_init", "small_init")
SERIES = (
    "train_loss",
    "test_loss",
    "train_accuracy",
    "test_accuracy",
    "norm",
    "srank",
    "layer_energy",
    "schatten",
    "energy_gap",
)
PER_RUN = (
    "t_ref",
    "srank_ref",
    "srank_end",
    "srank_level",
    "t_rep",
    "ratio",
    "affine_r2",
    "power_slope",
    "power_r2",
    "tail_slope",
    "solver_steps",
)


FIGURE = FigureExperiment.from_toml(__name__)


def check(params) -> None:
    """Refuse parameter combinations the runs cannot use (a `ConfigError` naming the field)."""
    from ..experiments import ConfigError

    if not params["eps"] or min(params["eps"]) <= 0:
        raise ConfigError(f"figure.eps must be a list of positive loss levels, got {params['eps']}")
    if params["eps_ref"] not in params["eps"]:
        raise ConfigError(f"figure.eps_ref = {params['eps_ref']:g} must be one of figure.eps = {params['eps']}")
    if params["depth"] < 2:
        raise ConfigError(f"figure.depth must be at least 2, got {params['depth']}")
    require_in(params, "train_fraction", 0, 1)


def planted_pairs(params, rng: np.random.Generator) -> dict:
    """Token pairs a ≤ b < p with x = e_a + e_b and labels of a planted rank-2 classifier (see the module docstring)."""
    p, classes = params["p"], params["classes"]
    v = rng.normal(size=(p, 2))
    angle = 2 * np.pi * np.arange(classes) / classes
    teacher = np.stack([np.cos(angle), np.sin(angle)], axis=1) @ v.T  # (K, p), rank 2
    a, b = np.triu_indices(p)
    x = np.zeros((a.size, p))
    np.add.at(x, (np.arange(a.size), a), 1.0)
    np.add.at(x, (np.arange(a.size), b), 1.0)
    z = x @ teacher.T
    y = np.argmax(z, axis=1)
    top = np.sort(z, axis=1)
    margin = top[:, -1] - top[:, -2]
    keep = margin >= params["margin_filter"] * np.median(margin)
    x, y = x[keep], y[keep]
    order = rng.permutation(y.size)
    n_train = int(params["train_fraction"] * y.size)
    tr, te = order[:n_train], order[n_train:]
    return {"train": (x[tr], y[tr]), "test": (x[te], y[te]), "teacher": teacher}


def orthogonal_weights(dims, alpha: float, rng: np.random.Generator) -> list[np.ndarray]:
    """W_ℓ = α·Q_ℓ, Q_ℓ (d_ℓ × d_{ℓ−1}) with orthonormal rows or columns."""
    ws = []
    for d_in, d_out in zip(dims[:-1], dims[1:], strict=True):
        q, _ = np.linalg.qr(rng.normal(size=(max(d_in, d_out), min(d_in, d_out))))
        ws.append(alpha * (q if d_out >= d_in else q.T))
    return ws


def build_problems(params):
    """The task and its two initialisations (same shapes, so one compilation serves both)."""
    rng = np.random.default_rng(params["seed"])
    data = planted_pairs(params, rng)
    depth = params["depth"]
    dims = [params["p"]] + [params["width"]] * (depth - 1) + [params["classes"]]
    train = {"x": jnp.asarray(data["train"][0]), "y": jnp.asarray(data["train"][1])}
    test = {"x": jnp.asarray(data["test"][0]), "y": jnp.asarray(data["test"][1])}
    large = DeepLinear(tuple(jnp.asarray(w) for w in orthogonal_weights(dims, params["alpha"], rng)))
    problems = {"large_init": Problem(large, train, loss="cross_entropy", test=test)}
    if params["contrast"]:
        small = DeepLinear.init(
            params["p"],
            params["width"],
            params["classes"],
            depth,
            key=jax.random.PRNGKey(params["seed"]),
            alpha=params["small_alpha"],
        )
        problems["small_init"] = Problem(small, train, loss="cross_entropy", test=test)
    return problems, data


def build_problem(params):
    """The figure's main Problem: the large (orthogonal) initialisation."""
    return build_problems(params)[0]["large_init"]


def crossing(t, values, level: float, *, after: float = 0.0) -> float:
    """`gflow.analysis.crossing_time`, refined by interpolating ln(value) against ln t between saves."""
    tc = crossing_time(t, values, level, after=after)
    if not math.isfinite(tc):
        return math.nan
    i = int(np.searchsorted(t, tc))
    if i == 0 or t[i - 1] <= 0 or t[i - 1] < after or not values[i - 1] > level > 0:
        return tc
    f = (math.log(values[i - 1]) - math.log(level)) / (math.log(values[i - 1]) - math.log(values[i]))
    return math.exp(math.log(t[i - 1]) + f * (math.log(t[i]) - math.log(t[i - 1])))


def measure_run(traj, params) -> dict:
    """Clock times, stable rank and Schatten energies of one run."""
    lam, depth = params["lam"], params["depth"]
    t = np.asarray(traj.t)
    train = np.asarray(traj.metrics["train_loss"])
    srank = over_time(traj, stable_rank)
    layer = over_time(traj, lambda m: schatten_energy(m).layer_energy)
    schatten = over_time(traj, lambda m: schatten_energy(m).schatten)
    energy = train + lam * depth / 2 * schatten  # ℰ(A) = F + (λL/2)‖A‖_{S_{2/L}}^{2/L}
    eps = np.asarray(params["eps"], float)
    t_cls = np.array([crossing(t, train, e) for e in eps])
    out = {
        "t": t,
        "train_loss": train,
        "test_loss": np.asarray(traj.metrics["test_loss"]),
        "test_accuracy": np.asarray(traj.metrics["test_accuracy"]),
        "train_accuracy": np.asarray(traj.metrics["train_accuracy"]),
        "norm": np.asarray(traj.metrics["norm"]),
        "srank": srank,
        "layer_energy": layer,
        "schatten": schatten,
        "energy_gap": energy - energy[-1],
        "t_cls": t_cls,
        "lyu_li_constant": eps * t_cls * np.log(1 / eps) ** (2 - 2 / depth),
        "solver_steps": int(traj.stats["num_steps"]),
        "result": traj.message,
    }
    ok = np.isfinite(t_cls)
    if ok.sum() >= 3:
        affine = scaling_fit(np.log(1 / eps[ok]), t_cls[ok], x_name="ln(1/eps)", y_name="T_cls")
        power = scaling_fit(np.log(1 / eps[ok]), np.log(t_cls[ok]), x_name="ln(1/eps)", y_name="ln T_cls")
        out.update(affine_slope=affine.slope, affine_r2=affine.rvalue**2)
        out.update(power_slope=power.slope, power_r2=power.rvalue**2)
        tail = ok & (eps <= params["tail_eps"])
        if tail.sum() >= 2:
            out["tail_slope"] = float(np.polyfit(np.log(1 / eps[tail]), np.log(t_cls[tail]), 1)[0])
    t_ref = t_cls[params["eps"].index(params["eps_ref"])]
    s_ref = float(np.interp(np.log(t_ref), np.log(t[1:]), srank[1:])) if math.isfinite(t_ref) else math.nan
    s_end = float(srank[-1])
    level = s_end + 0.5 * (s_ref - s_end)
    t_rep = crossing(t, srank, level, after=t_ref) if math.isfinite(t_ref) and s_ref > s_end else math.nan
    out.update(t_ref=t_ref, srank_ref=s_ref, srank_end=s_end, srank_level=level, t_rep=t_rep, ratio=t_rep / t_ref)
    return out


def measure(params, *, progress: bool = False, echo=print) -> xr.Dataset:
    """The flow of each initialisation to t1 and its clocks, stable rank and Schatten energies.

    Dimensions `run` (large_init, and small_init when `contrast`), `t` (the save times, shared)
    and `eps`: the series over (run, t), `t_cls` and `lyu_li_constant` over (run, eps), the
    per-run numbers (`t_ref`, `t_rep`, `ratio`, the fits, …) over run.
    """
    require_float64(FIGURE.name)
    check(params)
    problems, data = build_problems(params)
    results = {}
    for name, problem in problems.items():
        echo(f"  {name}: {params['solver']} to t1 = {params['t1']:g} at λ = {params['lam']:g}")
        traj = simulate(
            problem,
            params["lam"],
            params["t1"],
            solver=params["solver"],
            saveat=params["saves"],
            save_params=True,
            rtol=params["rtol"],
            atol=params["atol"],
            max_steps=params["max_steps"],
            progress=progress,
        )
        jax.block_until_ready(traj)
        results[name] = measure_run(traj, params)

    names = list(results)
    ds = xr.Dataset(
        {k: (("run", "t"), np.stack([results[n][k] for n in names])) for k in SERIES},
        coords={"run": names, "t": results[names[0]]["t"], "eps": np.asarray(params["eps"], float)},
    )
    ds["t_cls"] = (("run", "eps"), np.stack([results[n]["t_cls"] for n in names]))
    ds["lyu_li_constant"] = (("run", "eps"), np.stack([results[n]["lyu_li_constant"] for n in names]))
    for k in PER_RUN:
        ds[k] = ("run", np.array([results[n].get(k, math.nan) for n in names], float))
    ds.attrs.update(
        params=json.dumps(params),
        # the setup as numbers (also in params), for readers of figure.nc
        p=params["p"],
        classes=params["classes"],
        width=params["width"],
        depth=params["depth"],
        lam=params["lam"],
        t1=params["t1"],
        n_train=len(data["train"][1]),
        n_test=len(data["test"][1]),
        results=", ".join(f"{n}: {results[n]['result']}" for n in names),
        t_rep_definition="first t after T_cls(eps_ref) from which srank stays below the midpoint of "
        "srank(T_cls(eps_ref)) and srank(t1)",
    )
    return ds


def _results(ds: xr.Dataset) -> dict:
    """The per-run dicts of `measure_run` (the numbers the figure draws) from the dataset."""
    out = {}
    for name in ds["run"].values:
        run = ds.sel(run=name)
        res = {"t": ds["t"].values, "eps": ds["eps"].values}
        res.update({k: run[k].values for k in (*SERIES, "t_cls", "lyu_li_constant")})
        res.update({k: run[k].item() for k in PER_RUN})
        out[str(name)] = res
    return out


def summary(ds: xr.Dataset) -> list[tuple[str, str]]:
    """Per run: the solver, T_cls(ε) and its fits, and the stable rank at the fit and at t1, T_rep, R."""
    params = json.loads(ds.attrs["params"])
    eps_ref = params["eps_ref"]
    rows = [("train / test pairs", f"{ds.attrs['n_train']} / {ds.attrs['n_test']}")]
    for name, res in _results(ds).items():
        rows.append((f"{name}: solver", f"{params['solver']}, {res['solver_steps']:.0f} steps"))
        rows.append(
            (
                f"{name}: T_cls(ε)",
                ", ".join(f"{e:g}: {v:.4g}" for e, v in zip(res["eps"], res["t_cls"], strict=True)),
            )
        )
        if math.isfinite(res["affine_r2"]):
            rows.append(
                (
                    f"{name}: T_cls affine in ln(1/ε) (R²); slope of ln T_cls vs ln(1/ε) (R²), for ε ≤ "
                    f"{params['tail_eps']:g}; ε·T·ln(1/ε)^(2−2/L)",
                    f"R² = {res['affine_r2']:.3f}; {res['power_slope']:.3f} ({res['power_r2']:.3f}), "
                    f"{res['tail_slope']:.3f}; " + ", ".join(f"{v:.3g}" for v in res["lyu_li_constant"]),
                )
            )
        i_fit = np.searchsorted(res["t"], res["t_ref"])
        rows.append(
            (
                f"{name}: srank(A) at t = 0, T_cls({eps_ref:g}), t1; T_rep (R = T_rep/T_cls({eps_ref:g}))",
                f"{res['srank'][0]:.2f}, {res['srank_ref']:.2f}, {res['srank_end']:.2f}; "
                f"{res['t_rep']:.3g} (R = {res['ratio']:.3g})",
            )
        )
        rows.append(
            (
                f"{name}: test accuracy at t = 0, the fit, t1",
                f"{res['test_accuracy'][0]:.2f} → {res['test_accuracy'][min(i_fit, res['t'].size - 1)]:.2f} → "
                f"{res['test_accuracy'][-1]:.2f}",
            )
        )
    return rows


def plot(ds: xr.Dataset):
    """(a) the losses with T_cls(ε) marked; (b) srank(A) with T_rep, on the slow clock τ = λt on top;
    (c) T_cls(ε) against 1/ε (log-log) with the affine fit of Thm 3.5 in an inset; (d) the
    Schatten-2/3 energy and the layer energy."""
    import matplotlib.pyplot as plt

    params = json.loads(ds.attrs["params"])
    lam, depth, eps_ref, tail_eps = params["lam"], params["depth"], params["eps_ref"], params["tail_eps"]
    alpha, small_alpha = params["alpha"], params["small_alpha"]
    results = _results(ds)
    main = results["large_init"]
    fig, axes = plt.subplots(2, 2, figsize=(13, 9.5), layout="constrained")
    fig.get_layout_engine().set(rect=(0, 0.03, 1, 0.97))
    (ax_loss, ax_rank), (ax_cls, ax_energy) = axes
    t = main["t"]
    keep = t > 0
    eps = main["eps"]

    def mark(ax, label=True):
        ax.axvline(1 / lam, color="0.5", ls=":", lw=1, label="t = 1/λ" if label else None)
        ref_label = f"T_cls({eps_ref:g}) = {main['t_ref']:.3g}" if label else None
        ax.axvline(main["t_ref"], color="tab:blue", ls="--", lw=1, label=ref_label)
        if math.isfinite(main["t_rep"]):
            rep_label = f"T_rep = {main['t_rep']:.3g}" if label else None
            ax.axvline(main["t_rep"], color="tab:purple", ls="--", lw=1, label=rep_label)

    ax_loss.loglog(t[keep], main["train_loss"][keep], color="tab:blue", label="train loss (cross-entropy)")
    ax_loss.loglog(t[keep], main["test_loss"][keep], color="tab:red", label="test loss")
    ax_loss.plot(main["t_cls"], eps, "o", color="tab:blue", ms=5, label=f"T_cls(ε), ε = {eps[0]:g} … {eps[-1]:g}")
    mark(ax_loss)
    ax_acc = ax_loss.twinx()
    ax_acc.semilogx(t[keep], main["test_accuracy"][keep], color="tab:red", ls="-.", lw=1, label="test accuracy")
    ax_acc.set_ylim(-0.02, 1.02)
    ax_acc.set_ylabel("test accuracy")
    ax_loss.set_xlabel("t (ODE time, log scale)")
    ax_loss.set_ylabel("loss")
    ax_loss.set_title("(a) the classifier clock: train loss ~1/t, done long before t = 1/λ")
    h1, l1 = ax_loss.get_legend_handles_labels()
    h2, l2 = ax_acc.get_legend_handles_labels()
    ax_loss.legend(h1 + h2, l1 + l2, fontsize=7, loc="lower left")

    ax_rank.semilogx(t[keep], main["srank"][keep], color="tab:purple", label=f"srank(A), orthogonal init α = {alpha:g}")
    if "small_init" in results:
        small = results["small_init"]
        ax_rank.semilogx(
            t[keep],
            small["srank"][keep],
            color="0.4",
            lw=1.2,
            label=f"srank(A), small Gaussian init α = {small_alpha:g}",
        )
    ax_rank.axhline(main["srank_level"], color="tab:purple", lw=0.8, ls=":", label="midpoint level (defines T_rep)")
    mark(ax_rank, label=True)
    ax_rank.set_xlabel("t (ODE time, log scale)")
    ax_rank.set_ylabel("stable rank ‖A‖²_F / ‖A‖²₂")
    ax_rank.set_title(f"(b) srank(A) falls on the slow clock: T_rep = {main['ratio']:.2g} × T_cls({eps_ref:g})")
    ax_rank.legend(fontsize=8)
    add_tau_axis(ax_rank, lam, label="τ = λt")

    ax_cls.loglog(
        1 / eps, main["t_cls"], "o", color="tab:purple", label=f"T_cls(ε), orthogonal init α = {alpha:g} (lazy)"
    )
    xs = np.geomspace(1 / eps.max(), 1 / eps.min(), 50)
    tail = eps <= tail_eps
    if math.isfinite(main["tail_slope"]):
        fitted = main["t_cls"][tail][-1] * (xs * eps[tail][-1]) ** main["tail_slope"]
        ax_cls.loglog(
            xs,
            fitted,
            color="tab:purple",
            ls="--",
            lw=1,
            label=f"power law fitted for ε ≤ {tail_eps:g}: slope {main['tail_slope']:.2f}",
        )
    if "small_init" in results:
        small = results["small_init"]
        ax_cls.loglog(
            1 / eps, small["t_cls"], "s", color="0.4", label=f"T_cls(ε), small init α = {small_alpha:g} (rich)"
        )
        c = small["lyu_li_constant"][-1]
        ax_cls.loglog(
            xs,
            c * xs / np.log(xs) ** (2 - 2 / depth),
            color="0.4",
            ls="--",
            lw=1,
            label=f"C/(ε ln(1/ε)^{{{2 - 2 / depth:.3g}}}) (Lyu & Li rate at L = {depth}), C = {c:.3g}",
        )
    if math.isfinite(main["affine_r2"]):
        ax_cls.set_title(f"(c) T_cls(ε) is polynomial in 1/ε, not O(log 1/ε) (slope {main['tail_slope']:.2f})")
        inset = ax_cls.inset_axes((0.6, 0.08, 0.38, 0.34))
        x = np.log(1 / eps)
        ok = np.isfinite(main["t_cls"])
        coef = np.polyfit(x[ok], main["t_cls"][ok], 1)
        inset.plot(x, main["t_cls"], "o", color="tab:purple", ms=4)
        inset.plot(x, np.polyval(coef, x), color="tab:orange", lw=1)
        inset.set_xlabel("ln(1/ε)", fontsize=7)
        inset.set_ylabel("T_cls (linear)", fontsize=7)
        inset.tick_params(labelsize=6)
        inset.set_title(f"affine fit (Thm 3.5 shape): R² = {main['affine_r2']:.2f}", fontsize=7, color="tab:orange")
    ax_cls.set_xlabel("1/ε")
    ax_cls.set_ylabel("T_cls(ε) (ODE time)")
    ax_cls.legend(fontsize=8, loc="upper left")

    ax_energy.loglog(t[keep], main["layer_energy"][keep], color="tab:brown", label="layer energy (1/L)Σ‖W_ℓ‖²_F")
    ax_energy.loglog(t[keep], main["schatten"][keep], color="tab:olive", label=f"Schatten term Σ s_i(A)^{{2/{depth}}}")
    gap = main["layer_energy"] - main["schatten"]
    ax_energy.loglog(t[keep], np.where(gap > 0, gap, np.nan)[keep], color="tab:cyan", label="their gap (0 at balance)")
    delta = main["energy_gap"]
    ax_energy.loglog(
        t[keep], np.where(delta > 0, delta, np.nan)[keep], color="k", lw=1, label="Δ(t) = ℰ(A_t) − ℰ(A_{t1})"
    )
    mark(ax_energy, label=False)
    ax_energy.set_xlabel("t (ODE time, log scale)")
    ax_energy.set_title(f"(d) Schatten-2/{depth} energy: the factorisation balances on the slow clock")
    ax_energy.legend(fontsize=8)

    fig.suptitle(
        f"Two clocks in gradient flow: depth-{depth} linear network A = W_L⋯W₁ (L = {depth}), cross-entropy, "
        f"weight decay λ = {lam:g} (papers.md A13)"
    )
    caption(
        fig,
        f"p = {params['p']} tokens, K = {params['classes']} classes, width {params['width']}; task: planted rank-2 "
        f"classifier on x = e_a + e_b (our choice); orthogonal init α = {alpha:g} (small-init contrast "
        f"α = {small_alpha:g}); {params['solver']}, rtol {params['rtol']:g}; F_λ = F + (λ/2)Σ‖W_ℓ‖²",
        size=ds.attrs.get("size"),
    )
    return fig
