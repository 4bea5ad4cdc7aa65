"""Musat's network figures: E2.5 (isolated first-layer dynamics, Fig. 6; papers.md A10 at the
paper's size) and E2.4 (alignment of GD with the norm-minimising direction, Figs. 5/7), plus
`gflow.plot.plot_fourier`. The figure experiments are `gflow.papers.musat_fig{5,6}_*`; their smoke
runs (`gflow run NAME --smoke`) are shared with tests/test_figure_registry.py (`figure_run`). The
finite-difference check of the closed-form first-layer gradient (A10, last line) is
`tests/test_analysis.py::test_first_layer_gradient_matches_finite_differences`."""

import numpy as np
import pytest

from gflow import analysis, tasks


def _check_png(path):
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000


# ---------------------------------------------------------------------------------------------
# E2.5 / A10
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow  # 2500 Euler steps at p = 37, d_h = 512: about 25 s on a quiet 2-core CPU
def test_a10_isolated_dynamics_at_musats_size():
    """papers.md A10 at p = 37, d_h = 512, f_s = 0.7, Euler η = 1e−3 (Musat's own update), one
    seed, to τ = 2.5 (2500 of his 5000 steps: perfect generalisation is reached by then)."""
    problem = tasks.modular_arithmetic(
        0, p=37, pairs="unordered", train_fraction=0.7, loss="mse", model="embedding", width=512
    )
    assert problem.train["x"].shape == (492, 2) and problem.test["x"].shape == (211, 2)
    taus = np.arange(11) * 0.25
    ds = analysis.isolated_first_layer_flow(problem.model, problem.train, problem.test, tau1=2.5, saveat=taus)
    assert ds.attrs["result"] == "successful" and ds.attrs["num_steps"] == 2500
    test = ds["test_accuracy"].values
    np.testing.assert_array_equal(ds["train_accuracy"].values, 1.0)  # W = H⁺Y: zero train loss
    assert np.all(test[taus <= 1.0] < 0.05)  # chance 1/37 = 0.027
    assert test[taus == 2.0][0] >= 0.5
    assert test[-1] >= 0.99
    # Fourier circles (Musat §7): rounder (norm CV) and in orthogonal planes (|cos|).
    start = analysis.fourier_measures(problem.model)
    end = analysis.fourier_measures(ds["embed_final"].values)
    assert ds["fourier_cos"].values[0] == pytest.approx(start.mean_cos, rel=1e-9)
    assert end.mean_cos < 0.6 * start.mean_cos
    assert end.norm_cv < 0.6 * start.norm_cv
    assert end.across < start.across - 0.1  # each circle on its own hidden units
    # ‖E‖ first grows, then decays (papers.md: 22.5 → 45.1 at step 250 → 12.0 at step 5000).
    norm = ds["embed_norm"].values
    assert norm[1] > norm[0] and norm[-1] < norm[0]


def test_fig6_smoke(figure_run):
    run = figure_run("musat_fig6_embedding_dynamics")
    _check_png(run.out / "figure.png")
    ds = run.ds
    assert ds["test_accuracy"].dims == ("seed", "tau") and ds.sizes["seed"] == 2
    np.testing.assert_array_equal(ds["train_accuracy"].values, 1.0)
    assert np.all(np.isfinite(ds["test_accuracy"].values)) and ds["test_accuracy"].values[:, -1].min() >= 0.95
    assert ds["fourier_abs_cos"].dims == ("seed", "stage", "k") and ds["fourier_abs_cos"].shape == (2, 2, 11)
    summary = ds["fourier_mean_cos_summary"].values
    assert np.all(summary[:, 1] < summary[:, 0])  # |cos| falls from initial to final in every seed
    assert ds["embed_final"].shape == (2, 23, 256)
    assert "mean test accuracy" in run.stdout


# ---------------------------------------------------------------------------------------------
# E2.4 (A11 is a script-only result: see the report in the script's output)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("run", ["flow", "gd"])
def test_update_aligns_with_norm_minimising_direction_after_memorisation(figure_run, run):
    """Musat §4.6 (papers.md §3.4 (b)), one seed, first 3000 steps: while the train loss still
    falls the 10-step update points off the tangent space (cos < 0.1 at step 500); once it has
    settled the update follows (I − J⁺J)(−θ) (cos ≈ 0.75 at step 2500 in the quick run). For
    the flow and for GD.

    Seed 0 of the shared smoke run (`gflow.papers.musat_fig5_alignment.run_seed_flow` and
    `run_seed` with 3000 steps, a cosine every 500)."""
    seed0 = figure_run("musat_fig5_alignment").ds.sel(seed=0)
    prefix = "" if run == "flow" else "gd_"
    np.testing.assert_array_equal(seed0["step"].values, np.arange(7) * 500)
    metrics = {k: seed0[f"{prefix}{k}"].values for k in ("train_accuracy", "train_loss")}
    cos, f_proj = seed0[f"{prefix}cos"].values[1:], seed0[f"{prefix}proj_train_loss"].values[1:]
    assert metrics["train_accuracy"][-1] == 1.0
    assert np.all(np.abs(cos) <= 1.0)
    assert cos[0] < 0.1
    assert cos[-2:].max() > 0.6
    assert np.all(f_proj < metrics["train_loss"][1:])  # θ′ is closer to the zero-loss set than θ_t


def test_fig5_flow_agrees_with_the_papers_gradient_descent(figure_run):
    """The figure's curves are the flow (`gflow.simulate`, "auto" → Bosh3 at rtol 1e-4), GD
    (η = 1, the paper's) beside it: losses, norms and the cosines agree checkpoint by checkpoint
    (measured at the smoke size: losses within 0.52%, ‖θ‖ within 1.3e-4, cosines within 0.01)."""
    ds = figure_run("musat_fig5_alignment").ds
    assert ds.attrs["solver"].startswith("bosh3")
    assert np.all(ds["gradients"].values > 0)
    for name, rtol in (("train_loss", 0.02), ("test_loss", 0.02), ("norm", 1e-3)):
        np.testing.assert_allclose(ds[name].values, ds[f"gd_{name}"].values, rtol=rtol, err_msg=name)
    np.testing.assert_allclose(ds["cos"].values[:, 1:], ds["gd_cos"].values[:, 1:], atol=0.03)
    np.testing.assert_array_equal(ds["train_accuracy"].values, ds["gd_train_accuracy"].values)


def test_fig5_smoke(figure_run):
    run = figure_run("musat_fig5_alignment")
    _check_png(run.out / "figure.png")
    ds = run.ds
    assert ds["cos"].dims == ("seed", "step") and ds.sizes["seed"] == 2 and ds.sizes["step"] == 7
    cos = ds["cos"].values
    assert np.all(np.isnan(cos[:, 0])) and np.all(np.abs(cos[:, 1:]) <= 1.0)
    np.testing.assert_array_equal(ds["train_accuracy"].values[:, -1], 1.0)
    np.testing.assert_allclose(ds["tau"].values, 1e-4 * ds["step"].values)
    assert 0.5 < ds.attrs["cos_peak"] <= 1.0
    assert "mean cos" in run.stdout


# ---------------------------------------------------------------------------------------------
# gflow.plot.plot_fourier
# ---------------------------------------------------------------------------------------------


def test_plot_fourier_draws_musats_measures():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from gflow.plot import plot_fourier

    rng = np.random.default_rng(0)
    p, d = 11, 40
    e0 = rng.standard_normal((p, d))
    j = np.arange(p)[:, None]
    e1 = np.zeros((p, d))  # circles: frequency k on hidden units 2k, 2k+1 (round, orthogonal planes)
    for k in range(1, 6):
        e1[:, 2 * k] = np.cos(2 * np.pi * k * j[:, 0] / p)
        e1[:, 2 * k + 1] = np.sin(2 * np.pi * k * j[:, 0] / p)
    fig = plot_fourier(e0, e1)
    ax_norm, ax_cos, ax_abs = fig.axes[:3]
    heights = np.array([b.get_height() for b in ax_cos.patches])
    np.testing.assert_allclose(heights[:5], analysis.fourier_measures(e0).cos)
    np.testing.assert_allclose(heights[5:], 0.0, atol=1e-12)  # exact circles: Re F_k ⊥ Im F_k
    norms = np.array([b.get_height() for b in ax_norm.patches])[10:]  # the final embedding's bars
    np.testing.assert_allclose(norms, 1.0, rtol=1e-12)  # equal radii
    assert len(fig.axes) == 3 + 2 + 1  # bar charts, two similarity matrices, colour bar
    assert "initial" in ax_cos.get_legend().get_texts()[0].get_text()
    plt.close(fig)
    with pytest.raises(ValueError, match="labels"):
        plot_fourier(e0, e1, labels=("only one",))
    with pytest.raises(ValueError, match="at least one"):
        plot_fourier()
