"""Tan, Gai & Zhang, Figs. 3 and 2: test loss with the stable rank, and the cyclic embeddings (papers.md §5.5, A14).

Fig. 3 of the paper plots the test loss (log scale) together with the stable rank
srank(M) = ‖M‖²_F/‖M‖²₂ of a matrix over epochs: the stable rank drops from ≈ 36 to ≈ 10–12
during the generalisation window, right after the train loss saturates (papers.md §8, [2nd]).
Fig. 2 shows the embeddings and output weights after relabelling the tokens by a generator:
cyclic (Fourier) structure. Both come from the AdamW runs of Fig. 1; this script repeats that
training (`tan_fig1_two_clocks.train_adamw`, imported from this folder: same task, sizes,
optimiser and seed) and adds the structural measurements.

**Discrete optimiser, not gradient flow**: AdamW (optax) with decoupled weight decay, one jitted
scan over epochs vmapped over λ ∈ {0.6, …, 1.0}; time = epochs (papers.md §1). See
`tan_fig1_two_clocks.py` for the setup and the sizes (quick: p = 31, width 128, train fraction
0.5, 5000 epochs; full: p = 113, width 512, 0.3, 15 000 epochs).

Which matrix (not stated in the paper; our choice): the **centred logit table** L ∈ ℝ^{p²×p},
the network's outputs on all p² pairs with each row's mean removed (softmax ignores it): the
end-to-end map of the network on its whole input space, read as Tan's "output-effective
dimension". A Fourier-feature solution with k key frequencies has rank 2k, a memorising one has
random logits on unseen pairs and a high stable rank. The embedding E (p × d), the first layer
W1 and the head W2 (p × h) are recorded too and drawn for λ = 1 in panel (c).

Clock estimators (papers.md §5.5, proposed implementable version): T̂_cls(ε) = the first epoch
from which the train loss stays ≤ ε for w = 5 consecutive logs, ε = 1e−5 (the train loss has
saturated: AdamW's floor is ≈ 2–5e−7); T̂_rep(η) = the first epoch after T̂_cls from which
srank(L)(t)/srank(L)(T̂_cls) ≤ η for w consecutive logs, η = 0.85; R̂ = T̂_rep/T̂_cls.

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
circuit as in Nanda et al.'s p = 113. Quick run: 70 s wall (39 s CPU) on 2 cores at load ≈ 6.

Writes `tan_fig3_stable_rank.png` and `tan_fig3_stable_rank.nc` (Fig. 1's variables plus the
clock estimators and the final Fourier energies) into `--out` (default: a new folder
gflow-runs/tan-fig3-stable-rank-<timestamp>).

    python scripts/tan_fig3_stable_rank.py            # quick: p = 31, 5000 epochs (minutes on 2 CPU cores)
    python scripts/tan_fig3_stable_rank.py --smoke    # p = 11, few epochs (seconds + compilation)
    python scripts/tan_fig3_stable_rank.py --full     # the paper's size (GPU)
"""

from __future__ import annotations

import math
import pathlib
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))  # scripts/ is not a package
import _figure  # noqa: E402

NAME = "tan_fig3_stable_rank"
fig1 = _figure.load_script("tan_fig1_two_clocks")  # the same training (scripts/ is not a package)


CHOSEN = "logits"  # the matrix of the main stable-rank curve (see the module docstring)
EPS_CLS = 1e-5
ETA_REP = 0.85
WINDOW = 5
SHOW_LAM = 1.0  # the run drawn in panels (c)–(f)


def estimators(epochs, logs, lams) -> dict:
    """T̂_cls(EPS_CLS), T̂_rep(ETA_REP) on srank of the chosen matrix, and R̂, for every λ."""
    t_cls = np.array([fig1.first_stay(epochs, logs["train_loss"][i], EPS_CLS, window=WINDOW) for i in range(len(lams))])
    srank = logs[f"srank_{CHOSEN}"]
    s_ref = np.full(len(lams), math.nan)
    t_rep = np.full(len(lams), math.nan)
    for i in range(len(lams)):
        if math.isfinite(t_cls[i]):
            s_ref[i] = srank[i][np.searchsorted(epochs, t_cls[i])]
            t_rep[i] = fig1.first_stay(epochs, srank[i] / s_ref[i], ETA_REP, after=t_cls[i], window=WINDOW)
    return {"t_cls_hat": t_cls, "t_rep_hat": t_rep, "srank_ref": s_ref, "ratio": t_rep / t_cls}


def cyclic_columns(rows: np.ndarray, k: int, n: int = 24) -> tuple[np.ndarray, np.ndarray, float]:
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


def plot(epochs, logs, lams, est, final, size_name: str, size: dict, path: pathlib.Path) -> dict:
    import matplotlib.pyplot as plt

    from gflow.analysis import key_frequencies

    fig = plt.figure(figsize=(16, 9.5), layout="constrained")
    axes = fig.subplots(2, 3)
    (ax_test, ax_rank, ax_all), (ax_spec, ax_emb, ax_head) = axes
    colors = plt.cm.viridis(np.linspace(0.0, 0.85, len(lams)))
    srank = logs[f"srank_{CHOSEN}"]
    for i, (lam, c) in enumerate(zip(lams, colors, strict=True)):
        ax_test.semilogy(epochs, logs["test_loss"][i], color=c, lw=1.5, label=f"λ = {lam:g}")
        ax_rank.plot(epochs, srank[i], color=c, lw=1.5, label=f"λ = {lam:g}")
        for ax, y in ((ax_test, logs["test_loss"][i]), (ax_rank, srank[i])):
            for when, marker in ((est["t_cls_hat"][i], "v"), (est["t_rep_hat"][i], "s")):
                if math.isfinite(when):
                    ax.plot(when, y[np.searchsorted(epochs, when)], marker, color=c, ms=7, mec="k", mew=0.6)
    for ax in (ax_test, ax_rank):
        ax.plot([], [], "v", color="0.6", mec="k", label=f"T̂_cls(ε = {EPS_CLS:g})")
        ax.plot([], [], "s", color="0.6", mec="k", label=f"T̂_rep(η = {ETA_REP:g})")
        ax.set_xlabel("epoch")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    ax_test.set_ylabel("test cross-entropy (log scale)")
    ax_test.set_title("(a) test loss\n(▼ T̂_cls, ■ T̂_rep on every curve)")
    ax_rank.set_ylabel("stable rank of the centred logit table (p² × p)")
    ok = np.isfinite(est["ratio"])
    ratio = "no T̂_rep"
    if ok.any():
        ratio = f"R̂ = T̂_rep/T̂_cls = {np.nanmin(est['ratio']):.2g}–{np.nanmax(est['ratio']):.2g}"
    ax_rank.set_title(f"(b) srank falls after the train loss saturates\n({ratio})")

    i_show = int(np.argmin(np.abs(np.asarray(lams) - SHOW_LAM)))
    names = {"logits": "logit table (chosen)", "embed": "embedding E", "w1": "first layer W1", "head": "head W2"}
    for name, style in zip(fig1.SRANK_MATRICES, ("-", "--", ":", "-."), strict=True):
        ax_all.plot(epochs, logs[f"srank_{name}"][i_show], style, lw=1.5, label=names[name])
    ax_all.set_xlabel("epoch")
    ax_all.set_ylabel("stable rank")
    ax_all.set_title(f"(c) stable ranks of the candidate matrices\nλ = {lams[i_show]:g}")
    ax_all.legend(fontsize=8)
    ax_all.grid(True, alpha=0.3)

    embed = np.asarray(final.embed[i_show])
    first = embed @ np.asarray(final.w1[i_show]).T  # (p, h): token j's input to every hidden unit
    head = np.asarray(final.w2[i_show])
    keys = {}
    p = embed.shape[0]
    freqs = np.arange(1, (p - 1) // 2 + 1)
    for (rows, name), offset in zip(
        ((embed, "embedding E"), (first, "E W1ᵀ"), (head, "head W2")), (-0.27, 0.0, 0.27), strict=True
    ):
        kf = key_frequencies(rows)
        keys[name] = kf
        ax_spec.bar(
            freqs + offset,
            kf.shares,
            width=0.27,
            label=f"{name}: key k = {', '.join(map(str, kf.key[:6]))}" + ("…" if kf.key.size > 6 else ""),
        )
    ax_spec.axhline(1 / freqs.size, color="0.5", lw=0.8, ls=":", label="uniform share")
    ax_spec.set_xlabel("frequency k")
    ax_spec.set_ylabel("share of the Fourier energy ‖F_k‖²")
    ax_spec.set_title(f"(d) Fourier energy of the rows, λ = {lams[i_show]:g}, end of training")
    ax_spec.legend(fontsize=7)

    shares = {}
    for ax, rows, name, what in ((ax_emb, first, "E W1ᵀ", "token"), (ax_head, head, "head W2", "class")):
        k = int(keys[name].key[0])
        image, tokens, share = cyclic_columns(rows, k)
        # the same selection on a Gaussian matrix of the same shape: the share that picking the
        # most concentrated units gives without any structure
        baseline = cyclic_columns(np.random.default_rng(0).normal(size=rows.shape), k)[2]
        shares[name] = share
        ax.imshow(image, aspect="auto", cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
        ticks = np.arange(0, p, max(1, p // 8))
        ax.set_yticks(ticks, [str(tokens[m]) for m in ticks])
        ax.set_ylabel(f"{what} j, in the order 0, g, 2g, … (g = {pow(k, -1, p)} = {k}⁻¹ mod {p})")
        ax.set_xlabel(f"the {image.shape[1]} hidden units most concentrated at k = {k}, sorted by phase")
        ax.set_title(
            f"({'e' if ax is ax_emb else 'f'}) {name}, rows relabelled by the generator of k = {k}\n"
            f"(units' energy share at ±k: {share:.2f}; same pick from noise: {baseline:.2f})",
            fontsize=9,
        )

    fig.suptitle(
        f"Addition mod {size['p']} with AdamW: test loss and stable rank (Tan et al. Fig. 3), "
        "cyclic embeddings (Fig. 2)"
    )
    fig.supxlabel(
        f"size: {size_name} (p = {size['p']}, d = {size['embed']}, width {size['width']}, train fraction "
        f"{size['train_fraction']:g}, {size['epochs']} epochs, seed {fig1.SEED}); "
        f"AdamW lr {fig1.LR:g}, betas {fig1.BETAS}; "
        f"stable-rank matrix, ε = {EPS_CLS:g}, η = {ETA_REP:g}, window {WINDOW} logs: our choices",
        fontsize=8,
        color="0.3",
    )
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return keys, shares


def run(out: pathlib.Path, *, size_name: str = "quick", echo=print) -> dict:
    import jax

    jax.config.update("jax_enable_x64", True)

    size = fig1.SIZES[size_name]
    lams = fig1.LAMS
    problem = fig1.make_problem(size)
    echo(
        f"Tan Figs. 3 and 2: addition mod {size['p']}, d = {size['embed']}, width {size['width']}, "
        f"{problem.train['y'].shape[0]} train pairs, AdamW, λ ∈ {{{', '.join(f'{v:g}' for v in lams)}}}, "
        f"{size['epochs']} epochs, size {size_name}"
    )
    start = time.perf_counter()
    epochs, logs, final = fig1.train_adamw(problem, lams, epochs=size["epochs"], log_every=size["log_every"])
    echo(f"  trained in one vmapped scan  [{time.perf_counter() - start:.1f} s incl. compilation]")
    clocks = fig1.clock_times(epochs, logs, lams)
    est = estimators(epochs, logs, lams)
    srank = logs[f"srank_{CHOSEN}"]
    for i, lam in enumerate(lams):
        echo(
            f"  λ = {lam:g}: srank(logit table) {srank[i, 0]:.1f} (init) → {np.nanmax(srank[i]):.1f} (max) → "
            f"{srank[i, -1]:.1f} "
            f"(end); T̂_cls({EPS_CLS:g}) = {est['t_cls_hat'][i]:.0f}, T̂_rep({ETA_REP:g}) = {est['t_rep_hat'][i]:.0f}, "
            f"R̂ = {est['ratio'][i]:.2f}; T_test = {clocks['t_test'][i]:.0f}; "
            f"srank E/W1/W2 end {logs['srank_embed'][i, -1]:.1f}/{logs['srank_w1'][i, -1]:.1f}/"
            f"{logs['srank_head'][i, -1]:.1f}"
        )
    png = out / "tan_fig3_stable_rank.png"
    keys, shares = plot(epochs, logs, lams, est, final, size_name, size, png)
    for name, kf in keys.items():
        extra = f", share of the top-24 units at ±k = {shares[name]:.2f}" if name in shares else ""
        echo(f"  λ = {SHOW_LAM:g}, {name}: key frequencies {list(map(int, kf.key))}, Gini {kf.gini:.2f}{extra}")
    ds = fig1.to_dataset(
        epochs,
        logs,
        lams,
        size_name,
        size,
        clocks,
        {
            "experiment": (
                "Tan, Gai & Zhang Figs. 3 and 2 (papers.md 5.5, A14): test loss, stable rank, Fourier structure"
            ),
            "chosen_matrix": "centred logit table of all p^2 pairs (p^2 x p), rows minus their mean",
            "eps_cls": EPS_CLS,
            "eta_rep": ETA_REP,
            "window_logs": WINDOW,
            "show_lam": SHOW_LAM,
        },
    )
    for k in ("t_cls_hat", "t_rep_hat", "srank_ref", "ratio"):
        ds[k] = ("lam", est[k])
    i_show = int(np.argmin(np.abs(np.asarray(lams) - SHOW_LAM)))
    ds["fourier_share_embed"] = ("frequency", keys["embedding E"].shares)
    ds["fourier_share_first_layer"] = ("frequency", keys["E W1ᵀ"].shares)
    ds["fourier_share_head"] = ("frequency", keys["head W2"].shares)
    ds = ds.assign_coords(frequency=np.arange(1, keys["embedding E"].shares.size + 1))
    ds["embed_final"] = (("token", "embed_dim"), np.asarray(final.embed[i_show]))
    nc = out / "tan_fig3_stable_rank.nc"
    ds.to_netcdf(nc, engine="scipy")
    echo(f"  wrote {png} and {nc}")
    return {"dataset": ds, "png": png, "data": nc}


def main(argv=None) -> int:
    parser = _figure.parser(
        __doc__,
        "tan_fig3_stable_rank",
        smoke="p = 11, few epochs (seconds)",
        full="the paper's size: p = 113, 15 000 epochs (GPU)",
    )
    args = parser.parse_args(argv)
    return _figure.run_in_new_folder(args.out, NAME, lambda out: run(out, size_name=_figure.size(args)))


if __name__ == "__main__":
    sys.exit(main())
