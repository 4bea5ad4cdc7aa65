"""Two training clocks in gradient flow: a depth-3 linear network with cross-entropy (papers.md A13).

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
  whose steps do not shrink with the gradient (Adam: see `tan_fig1_two_clocks.py`).
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

Writes `tan_deep_linear_two_clocks.png` and `tan_deep_linear_two_clocks.nc` into `--out`
(default: a new folder gflow-runs/tan-deep-linear-two-clocks-<timestamp>).

    python scripts/tan_deep_linear_two_clocks.py           # quick: large init + small-init contrast (about a minute)
    python scripts/tan_deep_linear_two_clocks.py --smoke   # large-init run only, fewer saves (seconds + compilation)
    python scripts/tan_deep_linear_two_clocks.py --full    # p = 16, K = 12, width 16, denser saves
"""

from __future__ import annotations

import math
import pathlib
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))  # scripts/ is not a package
import _figure  # noqa: E402

NAME = "tan_deep_linear_two_clocks"


SIZES = {
    "smoke": {"p": 10, "classes": 8, "width": 10, "saves": 150, "contrast": False},
    "quick": {"p": 10, "classes": 8, "width": 10, "saves": 300, "contrast": True},
    "full": {"p": 16, "classes": 12, "width": 16, "saves": 600, "contrast": True},
}
DEPTH = 3
LAM = 1e-8
T1 = 1e10
ALPHA = 4.0  # per-layer scale of the orthogonal (partial isometry) initialisation
SMALL_ALPHA = 0.3  # Gaussian small initialisation of the contrast run
EPS = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6)
EPS_REF = 1e-2  # T_rep and R are measured from T_cls(EPS_REF)
TAIL_EPS = 1e-3  # the local power law T_cls ∝ (1/ε)^slope is fitted on ε ≤ TAIL_EPS
TRAIN_FRACTION = 0.6
MARGIN_FILTER = 0.3
SEED = 0
RTOL, ATOL = 1e-6, 1e-8


def planted_pairs(p: int, classes: int, rng: np.random.Generator) -> dict:
    """Token pairs a ≤ b < p with x = e_a + e_b and labels of a planted rank-2 classifier (see the module docstring)."""
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
    keep = margin >= MARGIN_FILTER * np.median(margin)
    x, y = x[keep], y[keep]
    order = rng.permutation(y.size)
    n_train = int(TRAIN_FRACTION * y.size)
    tr, te = order[:n_train], order[n_train:]
    return {"train": (x[tr], y[tr]), "test": (x[te], y[te]), "teacher": teacher}


def orthogonal_weights(dims, alpha: float, rng: np.random.Generator) -> list[np.ndarray]:
    """W_ℓ = α·Q_ℓ, Q_ℓ (d_ℓ × d_{ℓ−1}) with orthonormal rows or columns."""
    ws = []
    for d_in, d_out in zip(dims[:-1], dims[1:]):
        q, _ = np.linalg.qr(rng.normal(size=(max(d_in, d_out), min(d_in, d_out))))
        ws.append(alpha * (q if d_out >= d_in else q.T))
    return ws


def build_problems(size: dict):
    """The task and its two initialisations (same shapes, so one compilation serves both)."""
    import jax
    import jax.numpy as jnp

    import gflow

    rng = np.random.default_rng(SEED)
    data = planted_pairs(size["p"], size["classes"], rng)
    dims = [size["p"]] + [size["width"]] * (DEPTH - 1) + [size["classes"]]
    train = {"x": jnp.asarray(data["train"][0]), "y": jnp.asarray(data["train"][1])}
    test = {"x": jnp.asarray(data["test"][0]), "y": jnp.asarray(data["test"][1])}
    large = gflow.models.DeepLinear(tuple(jnp.asarray(w) for w in orthogonal_weights(dims, ALPHA, rng)))
    small = gflow.models.DeepLinear.init(
        size["p"], size["width"], size["classes"], DEPTH, key=jax.random.PRNGKey(SEED), alpha=SMALL_ALPHA
    )
    problems = {"large_init": gflow.Problem(large, train, loss="cross_entropy", test=test)}
    if size["contrast"]:
        problems["small_init"] = gflow.Problem(small, train, loss="cross_entropy", test=test)
    return problems, data


def crossing(t, values, level: float, *, after: float = 0.0) -> float:
    """`gflow.analysis.crossing_time`, refined by interpolating ln(value) against ln t between saves."""
    from gflow.analysis import crossing_time

    tc = crossing_time(t, values, level, after=after)
    if not math.isfinite(tc):
        return math.nan
    i = int(np.searchsorted(t, tc))
    if i == 0 or t[i - 1] <= 0 or t[i - 1] < after or not values[i - 1] > level > 0:
        return tc
    f = (math.log(values[i - 1]) - math.log(level)) / (math.log(values[i - 1]) - math.log(values[i]))
    return math.exp(math.log(t[i - 1]) + f * (math.log(t[i]) - math.log(t[i - 1])))


def measure(traj, lam: float) -> dict:
    """Clock times, stable rank and Schatten energies of one run."""
    from gflow.analysis import over_time, scaling_fit, schatten_energy, stable_rank

    t = np.asarray(traj.t)
    train = np.asarray(traj.metrics["train_loss"])
    srank = over_time(traj, stable_rank)
    layer = over_time(traj, lambda m: schatten_energy(m).layer_energy)
    schatten = over_time(traj, lambda m: schatten_energy(m).schatten)
    energy = train + lam * DEPTH / 2 * schatten  # ℰ(A) = F + (λL/2)‖A‖_{S_{2/L}}^{2/L}
    t_cls = np.array([crossing(t, train, eps) for eps in EPS])
    eps = np.asarray(EPS)
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
        "lyu_li_constant": eps * t_cls * np.log(1 / eps) ** (2 - 2 / DEPTH),
        "solver_steps": int(traj.stats["num_steps"]),
        "result": traj.message,
    }
    ok = np.isfinite(t_cls)
    if ok.sum() >= 3:
        affine = scaling_fit(np.log(1 / eps[ok]), t_cls[ok], x_name="ln(1/eps)", y_name="T_cls")
        power = scaling_fit(np.log(1 / eps[ok]), np.log(t_cls[ok]), x_name="ln(1/eps)", y_name="ln T_cls")
        out.update(affine_slope=affine.slope, affine_r2=affine.rvalue**2)
        out.update(power_slope=power.slope, power_r2=power.rvalue**2)
        tail = ok & (eps <= TAIL_EPS)
        if tail.sum() >= 2:
            out["tail_slope"] = float(np.polyfit(np.log(1 / eps[tail]), np.log(t_cls[tail]), 1)[0])
    t_ref = t_cls[EPS.index(EPS_REF)]
    s_ref = float(np.interp(np.log(t_ref), np.log(t[1:]), srank[1:])) if math.isfinite(t_ref) else math.nan
    s_end = float(srank[-1])
    level = s_end + 0.5 * (s_ref - s_end)
    t_rep = crossing(t, srank, level, after=t_ref) if math.isfinite(t_ref) and s_ref > s_end else math.nan
    out.update(t_ref=t_ref, srank_ref=s_ref, srank_end=s_end, srank_level=level, t_rep=t_rep, ratio=t_rep / t_ref)
    return out


def plot(results: dict, size_name: str, size: dict, path: pathlib.Path) -> None:
    import matplotlib.pyplot as plt

    main = results["large_init"]
    fig, axes = plt.subplots(2, 2, figsize=(13, 9.5), layout="constrained")
    (ax_loss, ax_rank), (ax_cls, ax_energy) = axes
    t = main["t"]
    keep = t > 0
    eps = np.asarray(EPS)

    def mark(ax, label=True):
        ax.axvline(1 / LAM, color="0.5", ls=":", lw=1, label="t = 1/λ" if label else None)
        ref_label = f"T_cls({EPS_REF:g}) = {main['t_ref']:.3g}" if label else None
        ax.axvline(main["t_ref"], color="tab:blue", ls="--", lw=1, label=ref_label)
        if math.isfinite(main["t_rep"]):
            rep_label = f"T_rep = {main['t_rep']:.3g}" if label else None
            ax.axvline(main["t_rep"], color="tab:purple", ls="--", lw=1, label=rep_label)

    ax_loss.loglog(t[keep], main["train_loss"][keep], color="tab:blue", label="train loss (cross-entropy)")
    ax_loss.loglog(t[keep], main["test_loss"][keep], color="tab:red", label="test loss")
    ax_loss.plot(main["t_cls"], eps, "o", color="tab:blue", ms=5, label="T_cls(ε), ε = 1e−1 … 1e−6")
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

    ax_rank.semilogx(t[keep], main["srank"][keep], color="tab:purple", label=f"srank(A), orthogonal init α = {ALPHA:g}")
    if "small_init" in results:
        small = results["small_init"]
        ax_rank.semilogx(
            t[keep],
            small["srank"][keep],
            color="0.4",
            lw=1.2,
            label=f"srank(A), small Gaussian init α = {SMALL_ALPHA:g}",
        )
    ax_rank.axhline(main["srank_level"], color="tab:purple", lw=0.8, ls=":", label="midpoint level (defines T_rep)")
    mark(ax_rank, label=True)
    ax_rank.set_xlabel("t (ODE time, log scale)")
    ax_rank.set_ylabel("stable rank ‖A‖²_F / ‖A‖²₂")
    ax_rank.set_title(f"(b) srank(A) falls on the slow clock: T_rep = {main['ratio']:.2g} × T_cls({EPS_REF:g})")
    ax_rank.legend(fontsize=8)
    top = ax_rank.secondary_xaxis("top", functions=(lambda x: x * LAM, lambda x: x / LAM))
    top.set_xlabel("τ = λt")

    ax_cls.loglog(
        1 / eps, main["t_cls"], "o", color="tab:purple", label=f"T_cls(ε), orthogonal init α = {ALPHA:g} (lazy)"
    )
    xs = np.geomspace(1 / eps.max(), 1 / eps.min(), 50)
    tail = eps <= TAIL_EPS
    if "tail_slope" in main:
        fitted = main["t_cls"][tail][-1] * (xs * eps[tail][-1]) ** main["tail_slope"]
        ax_cls.loglog(
            xs,
            fitted,
            color="tab:purple",
            ls="--",
            lw=1,
            label=f"power law fitted for ε ≤ {TAIL_EPS:g}: slope {main['tail_slope']:.2f}",
        )
    if "small_init" in results:
        small = results["small_init"]
        ax_cls.loglog(
            1 / eps, small["t_cls"], "s", color="0.4", label=f"T_cls(ε), small init α = {SMALL_ALPHA:g} (rich)"
        )
        c = small["lyu_li_constant"][-1]
        ax_cls.loglog(
            xs,
            c * xs / np.log(xs) ** (2 - 2 / DEPTH),
            color="0.4",
            ls="--",
            lw=1,
            label=f"C/(ε ln(1/ε)^{{4/3}}) (Lyu & Li rate at L = 3), C = {c:.3g}",
        )
    if "affine_r2" in main:
        slope = main.get("tail_slope", math.nan)
        ax_cls.set_title(f"(c) T_cls(ε) is polynomial in 1/ε, not O(log 1/ε) (slope {slope:.2f})")
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
    ax_energy.loglog(t[keep], main["schatten"][keep], color="tab:olive", label="Schatten term Σ s_i(A)^{2/3}")
    gap = main["layer_energy"] - main["schatten"]
    ax_energy.loglog(t[keep], np.where(gap > 0, gap, np.nan)[keep], color="tab:cyan", label="their gap (0 at balance)")
    delta = main["energy_gap"]
    ax_energy.loglog(
        t[keep], np.where(delta > 0, delta, np.nan)[keep], color="k", lw=1, label="Δ(t) = ℰ(A_t) − ℰ(A_{t1})"
    )
    mark(ax_energy, label=False)
    ax_energy.set_xlabel("t (ODE time, log scale)")
    ax_energy.set_title("(d) Schatten-2/3 energy: the factorisation balances on the slow clock")
    ax_energy.legend(fontsize=8)

    fig.suptitle(
        "Two clocks in gradient flow: depth-3 linear network A = W₃W₂W₁, cross-entropy, "
        "weight decay λ = 1e−8 (papers.md A13)"
    )
    fig.supxlabel(
        f"size: {size_name} (p = {size['p']} tokens, K = {size['classes']} classes, width {size['width']}); "
        "task: planted rank-2 "
        "classifier on x = e_a + e_b (our choice); orthogonal init α = 4 (small-init contrast α = 0.3); ros34pw2, "
        f"rtol {RTOL:g}; F_λ = F + (λ/2)Σ‖W_ℓ‖²",
        fontsize=8,
        color="0.3",
    )
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(out: pathlib.Path, *, size_name: str = "quick", echo=print) -> dict:
    import jax

    jax.config.update("jax_enable_x64", True)

    import xarray as xr

    import gflow

    size = SIZES[size_name]
    problems, data = build_problems(size)
    n_train, n_test = len(data["train"][1]), len(data["test"][1])
    echo(
        f"A13: depth-{DEPTH} linear net, p = {size['p']}, K = {size['classes']}, width {size['width']}, "
        f"{n_train} train / {n_test} test pairs, λ = {LAM:g}, t1 = {T1:g}, size {size_name}"
    )
    results = {}
    for name, problem in problems.items():
        start = time.perf_counter()
        traj = gflow.simulate(
            problem,
            LAM,
            T1,
            solver="ros34pw2",
            saveat=size["saves"],
            save_params=True,
            rtol=RTOL,
            atol=ATOL,
            max_steps=50_000,
        )
        jax.block_until_ready(traj)
        res = measure(traj, LAM)
        results[name] = res
        echo(f"  {name}: {traj.message}, {res['solver_steps']} steps  [{time.perf_counter() - start:.1f} s]")
        echo("    T_cls(ε): " + ", ".join(f"{e:g}: {v:.4g}" for e, v in zip(EPS, res["t_cls"], strict=True)))
        if "affine_r2" in res:
            echo(
                f"    affine in ln(1/ε): R² = {res['affine_r2']:.3f}; "
                f"ln T_cls vs ln(1/ε): slope {res['power_slope']:.3f} "
                f"(R² = {res['power_r2']:.3f}), for ε ≤ {TAIL_EPS:g}: {res.get('tail_slope', math.nan):.3f}; "
                "ε·T·ln(1/ε)^(4/3) = " + ", ".join(f"{v:.3g}" for v in res["lyu_li_constant"])
            )
        echo(
            f"    srank(A): {res['srank'][0]:.2f} at t = 0, {res['srank_ref']:.2f} at T_cls({EPS_REF:g}), "
            f"{res['srank_end']:.2f} at t1; T_rep = {res['t_rep']:.3g} (R = {res['ratio']:.3g}); "
            f"test accuracy {res['test_accuracy'][0]:.2f} → "
            f"{res['test_accuracy'][np.searchsorted(res['t'], res['t_ref'])]:.2f} "
            f"(fit) → {res['test_accuracy'][-1]:.2f} (t1)"
        )

    names = list(results)
    t = results[names[0]]["t"]
    series = (
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
    ds = xr.Dataset(
        {k: (("run", "t"), np.stack([results[n][k] for n in names])) for k in series},
        coords={"run": names, "t": t, "eps": np.asarray(EPS)},
    )
    ds["t_cls"] = (("run", "eps"), np.stack([results[n]["t_cls"] for n in names]))
    ds["lyu_li_constant"] = (("run", "eps"), np.stack([results[n]["lyu_li_constant"] for n in names]))
    for k in (
        "t_ref",
        "srank_ref",
        "srank_end",
        "t_rep",
        "ratio",
        "affine_r2",
        "power_slope",
        "power_r2",
        "tail_slope",
        "solver_steps",
    ):
        ds[k] = ("run", np.array([results[n].get(k, math.nan) for n in names], float))
    ds.attrs.update(
        experiment="papers.md A13: depth-3 linear net A = W3 W2 W1, planted rank-2 classifier on x = e_a + e_b, "
        "cross-entropy, weight decay (lam/2) sum ||W_l||^2",
        size=size_name,
        p=size["p"],
        classes=size["classes"],
        width=size["width"],
        depth=DEPTH,
        lam=LAM,
        t1=T1,
        alpha_orthogonal=ALPHA,
        alpha_small_gaussian=SMALL_ALPHA,
        train_fraction=TRAIN_FRACTION,
        margin_filter=MARGIN_FILTER,
        seed=SEED,
        n_train=n_train,
        n_test=n_test,
        solver="ros34pw2",
        rtol=RTOL,
        atol=ATOL,
        eps_ref=EPS_REF,
        t_rep_definition="first t after T_cls(eps_ref) from which srank stays below the midpoint of "
        "srank(T_cls(eps_ref)) and srank(t1)",
        **_figure.provenance(),
    )
    png = out / "tan_deep_linear_two_clocks.png"
    plot(results, size_name, size, png)
    nc = out / "tan_deep_linear_two_clocks.nc"
    ds.to_netcdf(nc, engine="scipy")
    echo(f"  wrote {png} and {nc}")
    return {"dataset": ds, "results": results, "png": png, "data": nc}


def main(argv=None) -> int:
    parser = _figure.parser(
        __doc__,
        "tan_deep_linear_two_clocks",
        smoke="the large-init run only, fewer saves (seconds)",
        full="p = 16, K = 12, width 16",
    )
    args = parser.parse_args(argv)
    size_name = _figure.size(args)
    return _figure.run_in_new_folder(args.out, NAME, lambda out: run(out, size_name=size_name))


if __name__ == "__main__":
    sys.exit(main())
