"""Tangent projection: the dense zero-loss projection P = I − J⁺J (`gflow.project_tangent`, the
slow flow's vector field) with J assembled from per-example Jacobians, against the generic path
that takes one vector–Jacobian product per residual through the whole batch.

    python benchmarks/tangent_projection.py           # p = 7, 11, 17; writes results/tangent_projection.json
    python benchmarks/tangent_projection.py --quick   # p = 5, one repeat (a smoke run)

Problem: Musat's embedding network σ(XE)W (`gflow.tasks.modular_arithmetic(model="embedding")`,
width 512, as in Musat's Fig. 6) on addition mod p, unordered pairs, 90% of them for training, built-in MSE
residuals (p per pair). The generic path is the same problem with the same residual function
passed as `residuals=` (gflow cannot see that it is per example). Both are jitted once (compile
time apart), then timed (median of the repeats, `block_until_ready`), and their projections of
the same random vector are compared.

Question answered: what does the per-example Jacobian save, and does it change the result?
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import statistics
import time

import jax

jax.config.update("jax_enable_x64", True)

import equinox as eqx  # noqa: E402
import jax.flatten_util  # noqa: E402
import numpy as np  # noqa: E402

import gflow  # noqa: E402
from gflow._manifold import build_manifold  # noqa: E402

WIDTH = 512
TRAIN_FRACTION = 0.9


def problems(p: int):
    """(built-in MSE problem, the same residuals as a custom function) at a trained-like point."""
    net = gflow.models.EmbeddingNet.init(p, WIDTH, key=jax.random.PRNGKey(0), init="torch")
    mse = gflow.tasks.modular_arithmetic(
        0, p=p, pairs="unordered", train_fraction=TRAIN_FRACTION, loss="mse", model=net
    )
    custom = gflow.Problem(mse.model, mse.train, test=mse.test, residuals=lambda m, d: mse.residuals_fn(m, d))
    return mse, custom


def timed(fn, repeats: int) -> tuple[float, float, object]:
    """(first call [s], median of `repeats` later calls [s], result)."""
    start = time.perf_counter()
    out = jax.block_until_ready(fn())
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return first, statistics.median(times), out


def measure(p: int, repeats: int) -> dict:
    mse, custom = problems(p)
    flat0, unravel = jax.flatten_util.ravel_pytree(mse.params)
    vector = unravel(jax.random.normal(jax.random.PRNGKey(1), flat0.shape, flat0.dtype))
    row = {
        "p": p,
        "train_pairs": int(mse.train["x"].shape[0]),
        "params": int(flat0.size),
        "residuals": int(mse.residuals_fn(mse.model, mse.train).shape[0]),
    }
    results = {}
    for name, problem in (("per_example", mse), ("generic", custom)):
        project = eqx.filter_jit(lambda prob, v: gflow.project_tangent(prob, prob.model, v, linear_solver="dense")[0])
        first, run_s, out = timed(lambda: project(problem, vector), repeats)  # noqa: B023
        results[name] = np.asarray(jax.flatten_util.ravel_pytree(out)[0])
        row[f"{name}_run_s"] = run_s
        row[f"{name}_compile_s"] = max(first - run_s, 0.0)
    # J alone, both ways, from the manifold the projection uses: per-example Jacobians against one
    # whole-batch VJP per residual.
    static = mse.split()[1]
    geometry = build_manifold(
        mse,
        static,
        unravel,
        manifold="zero_loss",
        path="dense",
        rcond=None,
        kernel_rtol=None,
        krylov_dim=1,
        cg_rtol=None,
        cg_max_steps=1,
    )

    def generic_jacobian(flat):
        r, vjp = jax.vjp(geometry.residuals, flat)
        return jax.vmap(vjp)(jax.numpy.eye(r.size, dtype=r.dtype))[0]

    for name, build in (("per_example", jax.jit(geometry.jacobian)), ("generic", jax.jit(generic_jacobian))):
        _, run_s, _ = timed(lambda: build(flat0), repeats)  # noqa: B023
        row[f"{name}_jacobian_s"] = run_s
    row["speedup"] = row["generic_run_s"] / row["per_example_run_s"]
    row["jacobian_speedup"] = row["generic_jacobian_s"] / row["per_example_jacobian_s"]
    row["max_rel_diff"] = float(
        np.max(np.abs(results["per_example"] - results["generic"])) / np.max(np.abs(results["generic"]))
    )
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="p = 5, one repeat")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls after the compiling one (median)")
    parser.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results" / "tangent_projection.json"))
    args = parser.parse_args(argv)
    sizes, repeats = ((5,), 1) if args.quick else ((7, 11, 17), args.repeats)
    rows = []
    for p in sizes:
        rows.append(measure(p, repeats))
        r = rows[-1]
        print(
            f"p = {p}: {r['residuals']} residuals, {r['params']} parameters | "
            f"per-example {r['per_example_run_s']:.3f} s"
            f" (compile {r['per_example_compile_s']:.1f} s) | generic {r['generic_run_s']:.3f} s (compile "
            f"{r['generic_compile_s']:.1f} s) | speed-up {r['speedup']:.1f}x | "
            f"J alone {r['per_example_jacobian_s']:.3f} s "
            f"vs {r['generic_jacobian_s']:.3f} s ({r['jacobian_speedup']:.1f}x) | max rel diff {r['max_rel_diff']:.1e}",
            flush=True,
        )
    result = {
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "jax": jax.__version__,
            "device": str(jax.devices()[0]),
            "cpu_count": os.cpu_count(),
            "load_average_at_start": list(os.getloadavg()),
        },
        "config": {"width": WIDTH, "train_fraction": TRAIN_FRACTION, "repeats": repeats, "quick": args.quick},
        "rows": rows,
    }
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(
        "| p | residuals n | parameters d | per-example J: projection (s) | generic J: projection (s) | speed-up "
        "| J alone, per-example (s) | J alone, generic (s) | speed-up | max rel diff |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['p']} | {r['residuals']} | {r['params']} | {r['per_example_run_s']:.3g} | {r['generic_run_s']:.3g} "
            f"| {r['speedup']:.1f}x | {r['per_example_jacobian_s']:.3g} | {r['generic_jacobian_s']:.3g} "
            f"| {r['jacobian_speedup']:.1f}x | {r['max_rel_diff']:.1e} |"
        )
    return result


if __name__ == "__main__":
    main()
