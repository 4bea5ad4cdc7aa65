r"""Tan, Gai & Zhang, Figs. 3 and 2: test loss with the stable rank, and the cyclic embeddings (papers.md §5.5, A14).

Fig. 3 of the paper plots the test loss (log scale) together with the stable rank
srank(M) = ‖M‖²_F/‖M‖²₂ of a matrix over epochs: the stable rank drops from ≈ 36 to ≈ 10–12
during the generalisation window, right after the train loss saturates (papers.md §8, [2nd]).
Fig. 2 shows the embeddings and output weights after relabelling the tokens by a generator:
cyclic (Fourier) structure. Both come from the AdamW runs of Fig. 1; this figure repeats that
training (`gflow.papers.tan_fig1_two_clocks.train_adamw`: same task, sizes, optimiser and seed)
and adds the structural measurements.

**Discrete optimiser, not gradient flow**: AdamW (optax, through `gflow.gd(optimizer=...)`) with
decoupled weight decay, one jitted scan over epochs vmapped over λ ∈ {0.6, …, 1.0}; time =
epochs (papers.md §1). See `gflow.papers.tan_fig1_two_clocks` for the setup and the sizes
(quick: p = 31, width 128, train fraction 0.5, 5000 epochs; smoke: p = 11, d = 32, width 64,
600 epochs; full: the paper's p = 113, width 512, 0.3, 15 000 epochs); this figure's sizes are
Fig. 1's plus the estimator fields below.

**The bottom row (g, h) is the gradient flow** of Fig. 1's lower panels (`tan_fig1_two_clocks.run_flow`:
the same network, data and initialisation, λ ∈ `flow_lams`, `gflow.sweep` with solver "auto",
full-batch GD at η = `flow_lr` beside it): the stable rank of its logit table over t, ▼ at the
fit and ■ at the grokking time, and its test loss over τ = λt.

Which matrix (not stated in the paper; our choice): the **centred logit table** L ∈ ℝ^{p²×p},
the network's outputs on all p² pairs with each row's mean removed (softmax ignores it): the
end-to-end map of the network on its whole input space, read as Tan's "output-effective
dimension". A Fourier-feature solution with k key frequencies has rank 2k, a memorising one has
random logits on unseen pairs and a high stable rank. The embedding E (p × d), the first layer
W1 and the head W2 (p × h) are recorded too and drawn for λ = `show_lam` = 1 in panel (c).

Clock estimators (papers.md §5.5, proposed implementable version): T̂_cls(ε) = the first epoch
from which the train loss stays ≤ ε for w = `window` = 5 consecutive logs, ε = `eps_cls` = 1e−5
(the train loss has saturated: AdamW's floor is ≈ 2–5e−7); T̂_rep(η) = the first epoch after
T̂_cls from which srank(L)(t)/srank(L)(T̂_cls) ≤ η for w consecutive logs, η = `eta_rep` = 0.85;
R̂ = T̂_rep/T̂_cls.

Fig. 2 panels (λ = 1, end of training), `gflow.analysis.key_frequencies`: the Fourier energy per
frequency of the embedding rows E_j, of E W1ᵀ (token j's input to every hidden unit: the
embedding as the MLP sees it, without the part of E that W1 ignores) and of the head rows W2_c;
then E W1ᵀ and W2 with the tokens (classes) relabelled by the generator g = k⁻¹ mod p of their
top key frequency k, on the hidden units whose energy is most concentrated at ±k, sorted by
phase: a unit ≈ cos(2πkj/p + φ) reads cos(2πm/p + φ) down the relabelled rows m = 0, 1, …, so
cyclic structure shows as one smooth period per column (a diagonal band), noise as noise; the
titles compare the units' energy share at ±k with the same pick from a Gaussian matrix. (The
projection onto span{Re F_k, Im F_k} is not used: it draws a circle for any matrix with nearly
orthogonal rows, trained or not, since ⟨E_j, F_k⟩ ∝ e^{2πijk/p}‖E_j‖².)

Measured (quick size, float64, seed 0): srank of the logit table is 2.3 at epoch 0, rises to
12.7–13.0 while the train set is memorised, peaks at ≈ 1100–1700 epochs, and falls to 9.4–9.9 by
epoch 5000 [paper, p = 113: ≈ 36 → 10–12]; T̂_cls(1e−5) = 1025–1125 epochs; T̂_rep(0.85) = 4350,
3900, 3150, 2675, 2825 for λ = 0.6 … 1.0, close to the test drops T_test = 4275 … 2425 of Fig. 1;
R̂ = 4.2 … 2.5. The stable ranks of E, W1 and W2 stay at 16–17.5 after the fit and hardly fall
(the random part of E that W1 ignores survives AdamW). Fourier (λ = 1): E W1ᵀ has key
frequencies 6, 2, 10, 5, 3, 13, 14, 11 (Gini 0.42), and its 24 units most concentrated at k = 6
put 0.52 of their energy there (the same pick from a Gaussian matrix: 0.19); raw E is spread
(Gini 0.26). At p = 31 the network uses about half of the 15 frequencies: no five-frequency
circuit as in Nanda et al.'s p = 113.

Measured, the flow (quick size, λ = 1e-3, 2e-3, 4e-3): the stable rank of the logit table goes
2.3 at t = 0 → 7.4–7.6 at the fit (t = 28.6) → a peak of 10.7, 10.6, 10.2 at t = 1110, 615, 295
(τ = λt = 1.1, 1.2, 1.2, while the train set is fitted and the test accuracy sits at its 0.505
plateau) → 7.9, 8.3, 7.5 at t = 10⁴, falling as the test accuracy jumps (t_grok = 4049, 2325,
1200); GD's ends at 7.9, 8.2, 7.5. The same two clocks as AdamW's, on the flow's own λ scale.
Where GD's band lags the flow in panel (g), GD is the one off: at λ = 1e-3 the stable rank falls
below 9 (after its peak) at t = 2595 for the flow, 2775 for GD at η = 0.2 and 2617 for GD at
η = 0.1 (a scratch run).
"""

from __future__ import annotations

import json
import math

import numpy as np
import xarray as xr

from ..analysis import key_frequencies
from . import FigureExperiment, tan_fig1_two_clocks as fig1
from ._common import caption, require_float64, require_in

CHOSEN = "logits"  # the matrix of the main stable-rank curve (see the module docstring)
# The Fig. 2 panels: (dataset variable of the final matrix, its name in the figure).
MATRICES = (("embed_final", "embedding E"), ("first_layer_final", "E W1ᵀ"), ("head_final", "head W2"))
N_UNITS = 24  # hidden units kept in the relabelled images (panels e, f)


FIGURE = FigureExperiment.from_toml(__name__)


def check(params) -> None:
    """Fig. 1's checks, and the estimator fields (a `ConfigError` naming the field)."""
    from ..experiments import ConfigError

    fig1.check(params)
    if params["window"] < 1:
        raise ConfigError(f"figure.window must be a positive number of logs, got {params['window']}")
    require_in(params, "eta_rep", 0, 1)


def estimators(epochs, logs, params) -> dict:
    """T̂_cls(eps_cls), T̂_rep(eta_rep) on srank of the chosen matrix, and R̂, for every λ."""
    n, window = len(params["lams"]), params["window"]
    t_cls = np.array(
        [fig1.first_stay(epochs, logs["train_loss"][i], params["eps_cls"], window=window) for i in range(n)]
    )
    srank = logs[f"srank_{CHOSEN}"]
    s_ref = np.full(n, math.nan)
    t_rep = np.full(n, math.nan)
    for i in range(n):
        if math.isfinite(t_cls[i]):
            s_ref[i] = srank[i][np.searchsorted(epochs, t_cls[i])]
            t_rep[i] = fig1.first_stay(epochs, srank[i] / s_ref[i], params["eta_rep"], after=t_cls[i], window=window)
    return {"t_cls_hat": t_cls, "t_rep_hat": t_rep, "srank_ref": s_ref, "ratio": t_rep / t_cls}


def cyclic_columns(rows: np.ndarray, k: int, n: int = N_UNITS) -> tuple[np.ndarray, np.ndarray, float]:
    """Rows relabelled by the generator of frequency k, on the `n` columns most concentrated at k.

    `rows` is (p, m) with one row per token (or class). Each column's share of its Fourier energy
    (rows centred) at frequencies ±k is computed; the `n` columns with the largest share are kept,
    sorted by their phase at k, and the rows are reordered as 0, g, 2g, … with g = k⁻¹ mod p. A
    column ≈ cos(2πkj/p + φ) then reads cos(2πm/p + φ) down the relabelled rows m: one period, a
    diagonal band across the sorted columns. Returns (image (p, n), the relabelled tokens, the mean
    share of the kept columns; a structureless column has share 2/(p − 1) on average, and the
    selection alone raises that: compare with the same call on a Gaussian matrix).
    """
    p = rows.shape[0]
    centred = rows - rows.mean(axis=0)
    spec = np.abs(np.fft.fft(centred, axis=0)) ** 2
    share = (spec[k] + spec[p - k]) / np.maximum(spec.sum(axis=0), np.finfo(float).tiny)
    top = np.argsort(-share)[:n]
    order = top[np.argsort(np.angle(np.fft.fft(centred[:, top], axis=0)[k]))]
    tokens = (np.arange(p) * pow(k, -1, p)) % p
    image = centred[tokens][:, order]
    image = image / np.maximum(np.abs(image).max(axis=0), np.finfo(float).tiny)
    return image, tokens, float(share[top].mean())


def _cyclic(rows: np.ndarray) -> dict:
    """`cyclic_columns` at the top key frequency of `rows`, with the share of the same pick from a
    Gaussian matrix of the same shape (what picking the most concentrated units gives without any
    structure)."""
    k = int(key_frequencies(rows).key[0])
    image, tokens, share = cyclic_columns(rows, k)
    baseline = cyclic_columns(np.random.default_rng(0).normal(size=rows.shape), k)[2]
    return {"k": k, "image": image, "tokens": tokens, "share": share, "baseline": baseline}


def measure(params, *, progress: bool = False, echo=print) -> xr.Dataset:
    """Fig. 1's training, its clocks, the estimators T̂_cls, T̂_rep, R̂, and the Fourier structure of
    the λ = show_lam run at the end, then Fig. 1's gradient flow with GD beside it
    (`tan_fig1_two_clocks.run_flow`); returns one Dataset (Fig. 1's variables, the estimators over
    `lam`, the Fourier energy shares over `frequency`, the final E, E W1ᵀ and W2, and the flow's
    variables over `flow_lam` and `flow_time`)."""
    require_float64(FIGURE.name)
    check(params)
    echo(
        f"  AdamW on addition mod {params['p']} (d = {params['embed']}, width {params['width']}), "
        f"λ ∈ {fig1.lams_text(params)}: {params['epochs']} epochs in one vmapped scan"
    )
    problem, epochs, logs, final = fig1.train_adamw(params)
    ds = fig1.to_dataset(problem, epochs, logs, fig1.clock_times(epochs, logs, params), params)
    est = estimators(epochs, logs, params)
    for k in ("t_cls_hat", "t_rep_hat", "srank_ref", "ratio"):
        ds[k] = ("lam", est[k])

    i_show = int(np.argmin(np.abs(np.asarray(params["lams"]) - params["show_lam"])))
    embed = np.asarray(final.embed[i_show])
    finals = {
        "embed_final": (("token", "embed_dim"), embed),
        # (p, h): token j's input to every hidden unit
        "first_layer_final": (("token", "hidden"), embed @ np.asarray(final.w1[i_show]).T),
        "head_final": (("class", "hidden"), np.asarray(final.w2[i_show])),
    }
    ds = ds.assign(finals)
    ds = ds.assign_coords(frequency=np.arange(1, (params["p"] - 1) // 2 + 1))
    short = {"embed_final": "embed", "first_layer_final": "first_layer", "head_final": "head"}
    for var, _ in MATRICES:
        kf = key_frequencies(ds[var].values)
        ds[f"fourier_share_{short[var]}"] = ("frequency", kf.shares)
        ds.attrs[f"key_frequencies_{short[var]}"] = np.asarray(kf.key, np.int64)
        ds.attrs[f"gini_{short[var]}"] = float(kf.gini)
        if var != "embed_final":
            cyc = _cyclic(ds[var].values)
            ds.attrs[f"cyclic_share_{short[var]}"] = cyc["share"]
            ds.attrs[f"cyclic_baseline_{short[var]}"] = cyc["baseline"]
    ds.attrs.update(
        chosen_matrix="centred logit table of all p^2 pairs (p^2 x p), rows minus their mean",
        show_lam_index=i_show,
    )
    return fig1.add_flow(ds, problem, params, progress=progress, echo=echo)


def summary(ds: xr.Dataset) -> list[tuple[str, str]]:
    """Per λ: srank of the logit table (init, max, end), T̂_cls, T̂_rep, R̂, T_test and the final
    stable ranks of E, W1, W2; at λ = show_lam, the key frequencies of E, E W1ᵀ and W2."""
    params = json.loads(ds.attrs["params"])
    rows = [("train / test pairs", f"{ds.attrs['n_train']} / {ds.attrs['n_test']}")]
    srank = ds[f"srank_{CHOSEN}"].values
    for i, lam in enumerate(ds["lam"].values):
        rows.append(
            (
                f"λ = {lam:g}: srank(logit table) init → max → end",
                f"{srank[i, 0]:.1f} → {np.nanmax(srank[i]):.1f} → {srank[i, -1]:.1f}",
            )
        )
        rows.append(
            (
                f"λ = {lam:g}: T̂_cls({params['eps_cls']:g}), T̂_rep({params['eta_rep']:g}), R̂; T_test (epochs)",
                f"{ds['t_cls_hat'].values[i]:.0f}, {ds['t_rep_hat'].values[i]:.0f}, {ds['ratio'].values[i]:.2f}; "
                f"{ds['t_test'].values[i]:.0f}",
            )
        )
        rows.append(
            (
                f"λ = {lam:g}: srank E / W1 / W2 at the end",
                f"{ds['srank_embed'].values[i, -1]:.1f} / {ds['srank_w1'].values[i, -1]:.1f} / "
                f"{ds['srank_head'].values[i, -1]:.1f}",
            )
        )
    lam_show = ds["lam"].values[ds.attrs["show_lam_index"]]
    for var, name in MATRICES:
        short = var.removesuffix("_final")
        keys = ", ".join(str(int(k)) for k in np.atleast_1d(ds.attrs[f"key_frequencies_{short}"]))
        extra = ""
        if f"cyclic_share_{short}" in ds.attrs:
            extra = (
                f"; share of the top-{N_UNITS} units at ±k {ds.attrs[f'cyclic_share_{short}']:.2f} "
                f"(noise: {ds.attrs[f'cyclic_baseline_{short}']:.2f})"
            )
        rows.append(
            (
                f"λ = {lam_show:g}, {name}: key frequencies",
                f"{keys}; Gini {ds.attrs[f'gini_{short}']:.2f}{extra}",
            )
        )
    if "flow_lam" in ds.dims:
        rows += flow_rank_summary(ds)
    return rows


def flow_rank_summary(ds: xr.Dataset) -> list[tuple[str, str]]:
    """Per λ of the flow: srank of its logit table at 0, at the fit, at its peak and at the end
    (GD's end beside it), and when the peak and the grokking come."""
    t = ds["flow_t"].values
    rows = []
    for i, lam in enumerate(ds["flow_lam"].values):
        srank = ds["flow_srank_logits"].values[i]
        t_fit, t_grok = ds["flow_t_fit"].values[i], ds["flow_t_grok"].values[i]
        at_fit = srank[np.searchsorted(t, t_fit)] if math.isfinite(t_fit) else math.nan
        peak = int(np.argmax(srank))
        rows.append(
            (
                f"flow λ = {lam:g}: srank(logit table) init → at t_fit → max → end (GD's end); t of the max, t_grok",
                f"{srank[0]:.1f} → {at_fit:.1f} → {srank[peak]:.1f} → {srank[-1]:.1f} "
                f"({ds['gd_srank_logits'].values[i, -1]:.1f}); {t[peak]:.0f}, {t_grok:.0f}",
            )
        )
    return rows


def plot(ds: xr.Dataset):
    """(a) test loss and (b) srank of the logit table with T̂_cls/T̂_rep marked; (c) the stable ranks
    of the candidate matrices at λ = show_lam; (d) the Fourier energy of E, E W1ᵀ and W2 per
    frequency; (e, f) E W1ᵀ and W2 relabelled by the generator of their top key frequency."""
    import matplotlib.pyplot as plt

    params = json.loads(ds.attrs["params"])
    lams, epochs = ds["lam"].values, ds["epoch"].values
    eps_cls, eta_rep = params["eps_cls"], params["eta_rep"]
    with_flow = "flow_lam" in ds.dims
    fig = plt.figure(figsize=(16, 14 if with_flow else 9.5), layout="constrained")
    fig.get_layout_engine().set(rect=(0, 0.02, 1, 0.98) if with_flow else (0, 0.03, 1, 0.97))
    layout = [["test", "rank", "all"], ["spec", "emb", "head"]] + ([["flow", "flow", "flow_loss"]] if with_flow else [])
    axes = fig.subplot_mosaic(layout)
    ax_test, ax_rank, ax_all = axes["test"], axes["rank"], axes["all"]
    ax_spec, ax_emb, ax_head = axes["spec"], axes["emb"], axes["head"]
    colors = plt.cm.viridis(np.linspace(0.0, 0.85, len(lams)))
    srank = ds[f"srank_{CHOSEN}"].values
    test_loss = ds["test_loss"].values
    t_cls, t_rep = ds["t_cls_hat"].values, ds["t_rep_hat"].values
    for i, (lam, c) in enumerate(zip(lams, colors, strict=True)):
        ax_test.semilogy(epochs, test_loss[i], color=c, lw=1.5, label=f"λ = {lam:g}")
        ax_rank.plot(epochs, srank[i], color=c, lw=1.5, label=f"λ = {lam:g}")
        for ax, y in ((ax_test, test_loss[i]), (ax_rank, srank[i])):
            for when, marker in ((t_cls[i], "v"), (t_rep[i], "s")):
                if math.isfinite(when):
                    ax.plot(when, y[np.searchsorted(epochs, when)], marker, color=c, ms=7, mec="k", mew=0.6)
    for ax in (ax_test, ax_rank):
        ax.plot([], [], "v", color="0.6", mec="k", label=f"T̂_cls(ε = {eps_cls:g})")
        ax.plot([], [], "s", color="0.6", mec="k", label=f"T̂_rep(η = {eta_rep:g})")
        ax.set_xlabel("epoch")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    ax_test.set_ylabel("test cross-entropy (log scale)")
    ax_test.set_title("(a) test loss\n(▼ T̂_cls, ■ T̂_rep on every curve)")
    ax_rank.set_ylabel("stable rank of the centred logit table (p² × p)")
    ratios = ds["ratio"].values
    ratio = "no T̂_rep"
    if np.isfinite(ratios).any():
        ratio = f"R̂ = T̂_rep/T̂_cls = {np.nanmin(ratios):.2g}–{np.nanmax(ratios):.2g}"
    ax_rank.set_title(f"(b) srank falls after the train loss saturates\n({ratio})")

    i_show = int(ds.attrs["show_lam_index"])
    names = {"logits": "logit table (chosen)", "embed": "embedding E", "w1": "first layer W1", "head": "head W2"}
    for name, style in zip(fig1.SRANK_MATRICES, ("-", "--", ":", "-."), strict=True):
        ax_all.plot(epochs, ds[f"srank_{name}"].values[i_show], style, lw=1.5, label=names[name])
    ax_all.set_xlabel("epoch")
    ax_all.set_ylabel("stable rank")
    ax_all.set_title(f"(c) stable ranks of the candidate matrices\nλ = {lams[i_show]:g}")
    ax_all.legend(fontsize=8)
    ax_all.grid(True, alpha=0.3)

    p = params["p"]
    freqs = ds["frequency"].values
    for (var, name), offset in zip(MATRICES, (-0.27, 0.0, 0.27), strict=True):
        short = var.removesuffix("_final")
        key = np.atleast_1d(ds.attrs[f"key_frequencies_{short}"])
        ax_spec.bar(
            freqs + offset,
            ds[f"fourier_share_{short}"].values,
            width=0.27,
            label=f"{name}: key k = {', '.join(str(int(k)) for k in key[:6])}" + ("…" if key.size > 6 else ""),
        )
    ax_spec.axhline(1 / freqs.size, color="0.5", lw=0.8, ls=":", label="uniform share")
    ax_spec.set_xlabel("frequency k")
    ax_spec.set_ylabel("share of the Fourier energy ‖F_k‖²")
    ax_spec.set_title(f"(d) Fourier energy of the rows, λ = {lams[i_show]:g}, end of training")
    ax_spec.legend(fontsize=7)

    for ax, var, name, what in (
        (ax_emb, "first_layer_final", "E W1ᵀ", "token"),
        (ax_head, "head_final", "head W2", "class"),
    ):
        cyc = _cyclic(ds[var].values)
        k, image, tokens = cyc["k"], cyc["image"], cyc["tokens"]
        ax.imshow(image, aspect="auto", cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
        ticks = np.arange(0, p, max(1, p // 8))
        ax.set_yticks(ticks, [str(tokens[m]) for m in ticks])
        ax.set_ylabel(f"{what} j, in the order 0, g, 2g, … (g = {pow(k, -1, p)} = {k}⁻¹ mod {p})")
        ax.set_xlabel(f"the {image.shape[1]} hidden units most concentrated at k = {k}, sorted by phase")
        ax.set_title(
            f"({'e' if ax is ax_emb else 'f'}) {name}, rows relabelled by the generator of k = {k}\n"
            f"(units' energy share at ±k: {cyc['share']:.2f}; same pick from noise: {cyc['baseline']:.2f})",
            fontsize=9,
        )

    if with_flow:
        _plot_flow_rank(ds, params, axes["flow"], axes["flow_loss"])
    fig.suptitle(
        f"Addition mod {p} with AdamW: test loss and stable rank (Tan et al. Fig. 3), cyclic embeddings (Fig. 2)"
        + ("; below: the gradient flow of the same network, gradient descent beside it" if with_flow else "")
    )
    caption(
        fig,
        f"p = {p}, d = {params['embed']}, width {params['width']}, train fraction {params['train_fraction']:g}, "
        f"{params['epochs']} epochs, seed {params['seed']}; AdamW lr {params['lr']:g}, betas "
        f"({params['beta1']:g}, {params['beta2']:g}); stable-rank matrix, ε = {eps_cls:g}, η = {eta_rep:g}, "
        f"window {params['window']} logs: our choices",
        size=ds.attrs.get("size"),
    )
    return fig


def _plot_flow_rank(ds: xr.Dataset, params, ax, ax_loss) -> None:
    """(g) srank of the flow's logit table over t for every λ, GD as a wide faint band beneath,
    ▼ at the fit and ■ at the grokking time; (h) the flow's test loss over τ = λt."""
    import matplotlib.pyplot as plt

    lams, t = ds["flow_lam"].values, ds["flow_t"].values
    colors = plt.cm.plasma(np.linspace(0.0, 0.8, len(lams)))
    shown = t > 0  # log axis
    for i, (lam, c) in enumerate(zip(lams, colors, strict=True)):
        srank = ds["flow_srank_logits"].values[i]
        ax.semilogx(t[shown], ds["gd_srank_logits"].values[i][shown], color=c, lw=5, alpha=0.25)
        ax.semilogx(t[shown], srank[shown], color=c, lw=1.4, label=f"λ = {lam:g}")
        for when, marker in ((ds["flow_t_fit"].values[i], "v"), (ds["flow_t_grok"].values[i], "s")):
            if math.isfinite(when):
                ax.plot(when, srank[np.searchsorted(t, when)], marker, color=c, ms=7, mec="k", mew=0.6)
        tau = lam * t[shown]
        ax_loss.loglog(tau, ds["gd_test_loss"].values[i][shown], color=c, lw=5, alpha=0.25)
        ax_loss.loglog(tau, ds["flow_test_loss"].values[i][shown], color=c, lw=1.4, label=f"λ = {lam:g}")
    ax.plot([], [], "v", color="0.6", mec="k", label=f"t_fit (train accuracy ≥ {fig1.FIT_ACCURACY:g})")
    ax.plot([], [], "s", color="0.6", mec="k", label=f"t_grok (test accuracy ≥ {fig1.GROK_ACCURACY:g})")
    ax.plot([], [], color="k", lw=5, alpha=0.25, label=f"GD, η = {params['flow_lr']:g}")
    ax.set_xlabel("t (ODE time; GD: t = η·step)")
    ax.set_ylabel("stable rank of the centred logit table")
    ax.set_title(
        f"(g) gradient flow θ' = −∇F − λθ ({ds.attrs['flow_solver']}, rtol {ds.attrs['flow_rtol']:g}): "
        "stable rank of its logit table\n(▼ the fit, ■ grokking; the same network, data and initialisation as AdamW's)"
    )
    ax.legend(fontsize=8, ncol=2)
    ax.grid(True, alpha=0.3)
    ax_loss.set_xlabel("τ = λt (slow time)")
    ax_loss.set_ylabel("test cross-entropy (flow; GD as the wide band)")
    ax_loss.set_title("(h) the flow's test loss over τ = λt")
    ax_loss.legend(fontsize=8)
    ax_loss.grid(True, alpha=0.3)
