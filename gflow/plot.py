"""Figures for people: learning curves on a log-time axis with the phases marked."""

from __future__ import annotations

import math

import numpy as np

from ._solution import Trajectory
from .analysis import PhaseTimes


def plot_trajectory(traj: Trajectory, *, phases: PhaseTimes | None = None, title: str | None = None, fig=None):
    """Two panels against log ODE time t (slow time τ = λt on the top axis):
    train/test losses (log scale, plus any accuracies on a twin axis) and ‖θ‖.

    Phase times, when given, are marked with vertical lines; t = 1/λ is marked too.
    Returns the matplotlib Figure.
    """
    import matplotlib.pyplot as plt

    if traj.ts.ndim != 1:
        raise ValueError("plot_trajectory takes one run; index a member of a batched Trajectory")
    t = np.asarray(traj.t)
    keep = t > 0  # t = 0 has no place on a log axis
    t = t[keep]
    lam = float(traj.lam)
    m = {k: np.asarray(v)[keep] for k, v in traj.metrics.items()}

    if fig is None:
        fig = plt.figure(figsize=(9, 6.5), layout="constrained")
    ax_loss, ax_norm = fig.subplots(2, 1, sharex=True, height_ratios=(2, 1))

    ax_loss.plot(t, m["train_loss"], label="train loss F", color="tab:blue")
    if "test_loss" in m:
        ax_loss.plot(t, m["test_loss"], label="test loss", color="tab:red")
    ax_loss.set_yscale("log")
    ax_loss.set_ylabel("loss")
    accuracies = [k for k in m if "accuracy" in k]
    handles, labels = ax_loss.get_legend_handles_labels()
    if accuracies:
        ax_acc = ax_loss.twinx()
        for k, style in zip(accuracies, ("--", ":", "-.", "--")):
            ax_acc.plot(
                t, m[k], style, color="tab:red" if k.startswith("test") else "tab:blue", label=k.replace("_", " ")
            )
        ax_acc.set_ylabel("accuracy")
        ax_acc.set_ylim(-0.02, 1.02)
        h2, l2 = ax_acc.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2

    ax_norm.plot(t, m["norm"], color="tab:green", label="‖θ‖")
    ax_norm.set_ylabel("‖θ‖ (decayed parameters)")
    ax_norm.set_xscale("log")
    ax_norm.set_xlabel("t (ODE time, log scale)")

    for ax in (ax_loss, ax_norm):
        ax.grid(True, which="major", alpha=0.3)
        if lam > 0:
            ax.axvline(1.0 / lam, color="0.5", lw=1, ls=":")
    if lam > 0:
        ax_loss.text(1.0 / lam, 1.0, " t = 1/λ", transform=ax_loss.get_xaxis_transform(), va="top", color="0.4")
        top = ax_loss.secondary_xaxis("top", functions=(lambda x: x * lam, lambda x: x / lam))
        top.set_xlabel("τ = λt (slow time)")
    if phases is not None:
        for when, name, color in ((phases.t_fit, "fit", "tab:blue"), (phases.t_generalise, "generalise", "tab:red")):
            if math.isfinite(when):
                for ax in (ax_loss, ax_norm):
                    ax.axvline(when, color=color, lw=1.2, ls="--", alpha=0.8)
                handles.append(ax_loss.lines[-1])
                labels.append(f"{name}: t = {when:.3g}")
    ax_loss.legend(handles, labels, loc="lower left", fontsize=9)
    fig.suptitle(title or f"gradient flow with weight decay λ = {lam:g} ({traj.solver})")
    return fig


def plot_singular_values(ts, singular_values, *, reference=None, lam=None, ax=None, log_y: bool = False, title=None):
    """Singular values of a matrix against log ODE time t, one line per index (largest first).

    - `ts`: save times t, shape (T,); t ≤ 0 and non-finite values are left out (log axis).
    - `singular_values`: shape (T, k), column i the (i+1)-th largest singular value over time.
    - `reference`: target singular values (e.g. σ⋆ of the ground truth), drawn as dashed
      horizontal lines in the colours of the first `len(reference)` curves.
    - `lam`: weight decay λ > 0; marks t = 1/λ with a dotted vertical line.
    - `log_y`: logarithmic singular-value axis (default linear, as in Boursier et al. Fig. 2).

    Draws into `ax` (default: a new figure) and returns the matplotlib Axes.
    """
    import matplotlib.pyplot as plt

    t = np.asarray(ts, float)
    s = np.asarray(singular_values, float)
    if s.ndim != 2 or s.shape[0] != t.shape[0]:
        raise ValueError(f"singular_values must have shape (len(ts), k) = ({t.shape[0]}, k), got {s.shape}")
    if ax is None:
        ax = plt.figure(figsize=(6, 4), layout="constrained").subplots()
    keep = t > 0
    colors = plt.cm.tab10(np.arange(s.shape[1]) % 10)
    for i in range(s.shape[1]):
        ax.plot(t[keep], s[keep, i], color=colors[i], lw=1.3, label=f"σ{i + 1}" if s.shape[1] <= 10 else None)
    if reference is not None:
        for i, value in enumerate(np.atleast_1d(np.asarray(reference, float))):
            ax.axhline(value, color=colors[i % len(colors)], ls="--", lw=1, alpha=0.7)
        ax.plot([], [], color="0.4", ls="--", lw=1, label="reference σ⋆")
    if lam is not None and lam > 0:
        ax.axvline(1.0 / lam, color="0.5", lw=1, ls=":")
        ax.text(1.0 / lam, 1.0, " t = 1/λ", transform=ax.get_xaxis_transform(), va="top", color="0.4")
    ax.set_xscale("log")
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel("t (ODE time, log scale)")
    ax.set_ylabel("singular values")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, ncol=2, loc="best")
    if title:
        ax.set_title(title)
    return ax


def plot_sweep(ds, *, metric: str = "test_loss", alpha=None, title: str | None = None, fig=None):
    """A metric against slow time τ = λt (log scale), one line per λ: the collapse plot.

    Lines are the median over seeds, with the seed range shaded. With an α axis, `alpha`
    picks the init scale (default: the first). Returns the matplotlib Figure.
    """
    import matplotlib.pyplot as plt

    if metric not in ds:
        names = ", ".join(k for k in ds.data_vars if "time" in ds[k].dims)
        raise ValueError(f"unknown metric {metric!r}; this sweep has {names}")
    if "alpha" in ds.dims:
        ds = ds.sel(alpha=ds["alpha"].values[0] if alpha is None else alpha)
    if fig is None:
        fig = plt.figure(figsize=(8, 5), layout="constrained")
    ax = fig.subplots()
    colors = plt.cm.viridis(np.linspace(0, 0.9, ds.sizes["lam"]))
    for color, lam in zip(colors, ds["lam"].values):
        member = ds.sel(lam=lam)
        tau = np.asarray(member["tau"])
        if tau.ndim > 1:
            tau = tau.reshape(-1, tau.shape[-1])[0]
        values = np.asarray(member[metric]).reshape(-1, tau.size)  # (seeds, time)
        keep = tau > 0
        with np.errstate(all="ignore"):
            mid = np.nanmedian(values, axis=0)
            lo, hi = np.nanmin(values, axis=0), np.nanmax(values, axis=0)
        ax.plot(tau[keep], mid[keep], color=color, label=f"λ = {lam:.3g}")
        if values.shape[0] > 1:
            ax.fill_between(tau[keep], lo[keep], hi[keep], color=color, alpha=0.2, lw=0)
    ax.set_xscale("log")
    if "accuracy" not in metric:
        ax.set_yscale("log")
    ax.set_xlabel("τ = λt (slow time, log scale)")
    ax.set_ylabel(metric.replace("_", " "))
    ax.grid(True, alpha=0.3)
    n_seeds = ds.sizes.get("seed", 1)
    ax.legend(title=f"median of {n_seeds} seed{'s' if n_seeds > 1 else ''}", fontsize=9)
    fig.suptitle(title or f"{metric.replace('_', ' ')} against slow time, one line per λ")
    return fig


def plot_fourier(*embeddings, labels=None, title: str | None = None, fig=None):
    r"""Musat's three Fourier measurements (§7, Fig. 6) of token embeddings, per frequency.

    Each embedding E is a (p, d) matrix whose row j is token j's vector, or a model with `.embed`;
    F_k = (1/p)Σ_j e^{−2πijk/p} E_j for k = 1 … ⌊(p−1)/2⌋ (`gflow.analysis.fourier_coefficients`).
    Bars are grouped by k, one colour per embedding (typically `plot_fourier(E_init, E_final)`):

    - top left: ‖Re F_k‖ (solid) and ‖Im F_k‖ (hatched), each divided by the mean of the 2K norms
      of its embedding — equal bars mean round circles of one size;
    - top centre: |cos∠(Re F_k, Im F_k)| — 0 when each circle spans two orthogonal directions;
    - top right: cos∠(|Re F_k|, |Im F_k|) (absolute values over the hidden units) within k, with
      the mean over pairs of different frequencies as a dashed line — within ≫ across when each
      circle uses its own hidden units (`gflow.analysis.FourierMeasures`);
    - bottom row, one per embedding: the 2K × 2K matrix of those cosines between all vectors
      |Re F_1|, |Im F_1|, |Re F_2|, … (2 × 2 blocks on the diagonal = one frequency).

    `labels`: one per embedding (default "initial", "final" for two, else "E0", "E1", …).
    `fig`: a Figure or SubFigure to draw into. Returns it (a new Figure by default).
    """
    import matplotlib.pyplot as plt

    from .analysis import fourier_coefficients, fourier_measures

    if not embeddings:
        raise ValueError("plot_fourier needs at least one embedding, e.g. plot_fourier(E_init, E_final)")
    if labels is None:
        labels = ("initial", "final") if len(embeddings) == 2 else tuple(f"E{i}" for i in range(len(embeddings)))
    if len(labels) != len(embeddings):
        raise ValueError(f"got {len(embeddings)} embeddings but {len(labels)} labels")
    coeffs = [fourier_coefficients(e) for e in embeddings]
    if len({c.shape[0] for c in coeffs}) != 1:
        raise ValueError("the embeddings must have the same number of tokens p")
    measures = [fourier_measures(e) for e in embeddings]
    n = len(embeddings)
    k = measures[0].frequencies
    width = 0.8 / n
    colors = plt.cm.tab10(np.arange(n) % 10)

    if fig is None:
        fig = plt.figure(figsize=(max(12, 4 * n), 8), layout="constrained")
    grid = fig.add_gridspec(2, max(3, n), height_ratios=(1, 1.1))
    ax_norm, ax_cos, ax_abs = (fig.add_subplot(grid[0, i]) for i in range(3))
    for i, (c, m, label, color) in enumerate(zip(coeffs, measures, labels, colors)):
        nre, nim = np.linalg.norm(c.real, axis=1), np.linalg.norm(c.imag, axis=1)
        scale = np.mean(np.concatenate([nre, nim]))
        x = k + (i - (n - 1) / 2) * width
        ax_norm.bar(x - width / 4, nre / scale, width / 2, color=color, label=f"{label}: Re (norm CV {m.norm_cv:.3f})")
        ax_norm.bar(x + width / 4, nim / scale, width / 2, color=color, hatch="///", alpha=0.6, label=f"{label}: Im")
        ax_cos.bar(x, m.cos, width, color=color, label=f"{label} (mean {m.mean_cos:.3f})")
        ax_abs.bar(x, m.within, width, color=color, label=f"{label} within k (mean {m.mean_within:.2f})")
        ax_abs.axhline(m.across, color=color, ls="--", lw=1.2, label=f"{label} across k ({m.across:.2f})")
    # Zoom in: the spread of the radii (a few per cent) is the measurement, so the axis starts above 0.
    tops = np.array([b.get_height() for b in ax_norm.patches])
    spread = max(tops.max() - tops.min(), 1e-3)
    ax_norm.set_ylim(max(0.0, tops.min() - 1.5 * spread), tops.max() + 1.5 * spread)
    ax_norm.set_ylabel("‖Re F_k‖, ‖Im F_k‖ / mean over k (axis not from 0)")
    ax_cos.set_ylabel("|cos∠(Re F_k, Im F_k)|")
    ax_abs.set_ylabel("cos∠(|Re F_k|, |Im F_k|)")
    ax_norm.set_title("circle radii (aspect ratio, size)")
    ax_cos.set_title("orthogonality of the circle's plane")
    ax_abs.set_title("hidden units used per frequency")
    for ax in (ax_norm, ax_cos, ax_abs):
        ax.set_xlabel("frequency k")
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize=7)
        if k.size <= 25:
            ax.set_xticks(k)
        ax.tick_params(axis="x", labelsize=7)

    for i, (c, label) in enumerate(zip(coeffs, labels)):
        a = np.abs(np.stack([c.real, c.imag], axis=1).reshape(2 * k.size, -1))  # rows |Re F_1|, |Im F_1|, ...
        a = a / np.linalg.norm(a, axis=1, keepdims=True)
        ax = fig.add_subplot(grid[1, i])
        im = ax.imshow(a @ a.T, vmin=0, vmax=1, cmap="viridis")
        ticks = np.arange(0, k.size, max(1, k.size // 6))
        ax.set_xticks(2 * ticks + 0.5, k[ticks])
        ax.set_yticks(2 * ticks + 0.5, k[ticks])
        ax.set_xlabel("frequency k (|Re F_k|, |Im F_k|)")
        ax.set_title(f"{label}: cos∠ between |Re F_k|, |Im F_k|", fontsize=9)
    fig.colorbar(im, ax=ax, shrink=0.8)
    fig.suptitle(title or "Fourier features of the embedding (Musat §7)")
    return fig


def plot_slow_flow(full, slow: Trajectory, *, metric: str = "norm", at=None, title: str | None = None, fig=None):
    r"""Full flows at several λ against the slow flow, in slow time τ = λt: `plot_comparison` of
    `gflow.compare(full, slow, at=at)`. Both runs need `save_params=True` (see `compare`).
    Returns the matplotlib Figure.
    """
    from ._problem import ProblemError
    from ._slow import _members, compare

    if metric not in slow.metrics:
        raise ProblemError(f"metric {metric!r} is not recorded; choose one of {', '.join(slow.metrics)}")
    title = title or f"full flows against the slow flow in slow time ({slow.solver})"
    return plot_comparison(compare(_members(full), slow, at=at), metric=metric, title=title, fig=fig)


def plot_comparison(ds, *, metric: str = "norm", title: str | None = None, fig=None):
    r"""The figure of a `gflow.compare` Dataset (or any Dataset with its variables): top,
    `full_<metric>` of every λ against τ (log axis) with `slow_<metric>` dashed in black, and an
    inset with the distance ‖θ^λ(τ/λ) − θ°(τ)‖ against λ (log-log, one line per reported slow
    time, a slope-1 guide, the fitted `order` in the legend); bottom, the distance against τ for
    every λ. The reported slow times are the Dataset's `tau_at` (`compare(..., at=...)`), or else
    the 25%, 50% and 90% quantiles of the τ values where every distance is finite.
    Returns the matplotlib Figure.
    """
    import matplotlib.pyplot as plt

    tau = ds["tau"].values
    lams = np.atleast_1d(ds["lam"].values) if "lam" in ds.dims else np.atleast_1d(ds.attrs["lam"])
    dist = np.atleast_2d(ds["distance"].values)
    full = np.atleast_2d(ds[f"full_{metric}"].values)
    order = np.argsort(-lams)  # largest λ first
    if "tau_at" in ds.coords:
        at = np.atleast_1d(ds["tau_at"].values)
    else:
        finite = np.all(np.isfinite(dist) & (dist > 0), axis=0) & (tau > 0)
        cand = tau[finite]
        at = np.array(sorted({float(cand[int(q * (cand.size - 1))]) for q in (0.25, 0.5, 0.9)}) if cand.size else [])

    if fig is None:
        fig = plt.figure(figsize=(8.5, 8), layout="constrained")
    ax, ax_dist = fig.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    colors = plt.get_cmap("viridis")(np.linspace(0.0, 0.85, lams.size))
    keep = tau > 0  # τ = 0 has no place on a log axis
    shown = []
    for i, color in zip(order, colors, strict=True):
        shown.append(full[i][keep])
        ax.plot(tau[keep], shown[-1], color=color, lw=1.6, label=f"full flow, λ = {lams[i]:.0e}")
    shown.append(ds[f"slow_{metric}"].values[keep])
    ax.plot(tau[keep], shown[-1], "k--", lw=2, label="slow flow θ°(τ) (λ → 0)")
    ax.set_xscale("log")
    ax.set_ylabel({"norm": "‖θ‖", "train_loss": "train loss F", "test_loss": "test loss"}.get(metric, metric))
    # Headroom above the curves for the legend and the inset, so neither hides a curve.
    values = np.concatenate(shown)
    values = values[np.isfinite(values)]
    log_y = metric.endswith("loss") and values.size and np.all(values > 0)
    if values.size:
        lo, hi = (np.log10(values.min()), np.log10(values.max())) if log_y else (values.min(), values.max())
        span = max(hi - lo, 1e-12 + 1e-3 * abs(hi))
        lo, hi = lo - 0.05 * span, hi + 0.95 * span
        if log_y:
            ax.set_yscale("log")
            lo, hi = 10.0**lo, 10.0**hi
        ax.set_ylim(lo, hi)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="upper left", fontsize=9)

    for i, color in zip(order, colors, strict=True):
        ok = keep & np.isfinite(dist[i]) & (dist[i] > 0)
        ax_dist.plot(tau[ok], dist[i][ok], color=color, lw=1.6, label=f"λ = {lams[i]:.0e}")
    ax_dist.set_xscale("log")
    ax_dist.set_yscale("log")
    ax_dist.set_xlabel("τ = λt (slow time)")
    ax_dist.set_ylabel(r"$\|\theta^\lambda(\tau/\lambda) - \theta^\circ(\tau)\|$")
    ax_dist.grid(True, which="major", alpha=0.3)
    ax_dist.legend(loc="lower left", fontsize=8, ncols=lams.size)

    if at.size and lams.size >= 2:
        inset = ax.inset_axes((0.63, 0.57, 0.35, 0.4))
        lam_sorted = lams[order]
        for a, marker in zip(at, "osD^v<>", strict=False):
            j = int(np.argmin(np.abs(tau - a)))
            label = f"τ = {tau[j]:.2g}: slope {ds['order'].values[j]:.2f}"
            line = inset.loglog(lam_sorted, dist[order, j], marker=marker, ms=4, lw=1, label=label)
            ax_dist.axvline(tau[j], color=line[0].get_color(), ls=":", lw=1)
        ref = dist[order, int(np.argmin(np.abs(tau - at[0])))]
        if np.all(np.isfinite(ref)):
            inset.loglog(
                lam_sorted, 0.3 * ref[-1] * lam_sorted / lam_sorted[-1], ":", color="0.4", lw=1.2, label="slope 1"
            )
        inset.set_xlabel("λ", fontsize=8, labelpad=1)
        inset.set_ylabel("distance", fontsize=8, labelpad=1)
        inset.tick_params(labelsize=7)
        inset.legend(fontsize=6.5, loc="lower right")
        inset.grid(True, which="major", alpha=0.3)
    if title:
        fig.suptitle(title)
    return fig
