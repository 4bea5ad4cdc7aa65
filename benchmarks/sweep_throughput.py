"""Sweep throughput: trajectories per second of `gflow.sweep` (one vmapped, compiled call) against
a Python loop of `gflow.simulate` calls (each reusing one compiled solve), on the diagonal-network
task, for grid sizes 1, 4, 16, 64, 256. Compile time is reported apart from run time.

    python benchmarks/sweep_throughput.py            # full table, writes results/sweep_throughput.json
    python benchmarks/sweep_throughput.py --quick    # grid sizes 1 and 4, one repeat (a smoke run)

Question answered: how much does running a grid as one computation save over a loop?
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

import numpy as np  # noqa: E402

import gflow  # noqa: E402

TAU1 = 3.0
SOLVER = "tsit5"
SAVES = 50


def make_problem(key, alpha):
    """Diagonal network β = u ⊙ v, 3-sparse regression, n = 20, d = 60 (120 parameters)."""
    return gflow.tasks.diagonal_regression(key, n=20, d=60, k=3, alpha=alpha, parameterisation="uv")


def grid(size: int):
    """A grid of `size` members: 4 weight decays (fewer for tiny grids) × seeds."""
    n_lam = min(4, size)
    lam = np.geomspace(1e-2, 1e-1, n_lam)
    seeds = np.arange(size // n_lam)
    return lam, seeds


def run_sweep(size: int, chunk_size=None):
    """`gflow.sweep` with its default chunking (`chunk_size=None`) or a given one."""
    lam, seeds = grid(size)
    ds = gflow.sweep(
        make_problem,
        lam=lam,
        seed=seeds,
        alpha=[1.0],
        t1=TAU1,
        solver=SOLVER,
        saveat=SAVES,
        progress=False,
        chunk_size=chunk_size,
    )
    return ds


def run_loop(size: int, save_ts):
    lam, seeds = grid(size)
    out = []
    for l in lam:
        for s in seeds:
            traj = gflow.simulate(
                make_problem(jax.random.PRNGKey(int(s)), 1.0),
                float(l),
                TAU1,
                solver=SOLVER,
                saveat=save_ts,
                time="slow",
            )
            out.append(jax.block_until_ready(traj))
    return out


def timed(fn, repeats: int):
    times = []
    result = None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="grid sizes 1 and 4, one repeat")
    parser.add_argument("--sizes", help="comma-separated grid sizes (default 1,4,16,64,256)")
    parser.add_argument("--repeats", type=int, help="timed repeats per size (default 3; median reported)")
    parser.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results" / "sweep_throughput.json"))
    args = parser.parse_args(argv)
    sizes = (1, 4) if args.quick else (1, 4, 16, 64, 256)
    if args.sizes:
        sizes = tuple(int(v) for v in args.sizes.split(","))
    repeats = 1 if args.quick else 3
    if args.repeats:
        repeats = args.repeats

    rows = []
    for size in sizes:
        # Sweep: the first call compiles this chunk shape; later calls only run.
        start = time.perf_counter()
        ds = run_sweep(size)
        first = time.perf_counter() - start
        sweep_s, ds = timed(lambda: run_sweep(size), repeats)
        save_ts = ds["time"].values
        # The whole grid as one call (the default on accelerators).
        start = time.perf_counter()
        run_sweep(size, chunk_size=size)
        whole_first = time.perf_counter() - start
        whole_s, _ = timed(lambda: run_sweep(size, chunk_size=size), repeats)
        # Loop: one compiled simulate (same shapes for every member), called `size` times.
        start = time.perf_counter()
        run_loop(1, save_ts)
        loop_first = time.perf_counter() - start
        loop_s, trajs = timed(lambda: run_loop(size, save_ts), repeats)
        # The same numbers either way (vmap is a batching of the very same solve).
        loop_loss = np.stack([np.asarray(t.metrics["test_loss"]) for t in trajs])
        sweep_loss = ds["test_loss"].values.reshape(loop_loss.shape)
        max_rel = float(np.nanmax(np.abs(sweep_loss - loop_loss) / np.abs(loop_loss)))
        steps = ds["stats_num_steps"].values
        rows.append(
            {
                "grid_size": size,
                "sweep_run_s": sweep_s,
                "sweep_compile_s": max(first - sweep_s, 0.0),
                "sweep_chunk_size": int(json.loads(ds.attrs["config"])["chunk_size"]),
                "whole_grid_run_s": whole_s,
                "whole_grid_compile_s": max(whole_first - whole_s, 0.0),
                "loop_run_s": loop_s,
                "loop_compile_s": max(loop_first - loop_s / size, 0.0),
                "sweep_traj_per_s": size / sweep_s,
                "loop_traj_per_s": size / loop_s,
                "speedup": loop_s / sweep_s,
                "speedup_whole_grid": loop_s / whole_s,
                "steps_min": int(steps.min()),
                "steps_max": int(steps.max()),
                "max_rel_diff_test_loss": max_rel,
            }
        )
        r = rows[-1]
        print(
            f"grid {size:4d}: sweep {r['sweep_run_s']:.3f} s ({r['sweep_traj_per_s']:.1f} traj/s, compile "
            f"{r['sweep_compile_s']:.1f} s, chunks of {r['sweep_chunk_size']}) | whole grid {whole_s:.3f} s | "
            f"loop {r['loop_run_s']:.3f} s ({r['loop_traj_per_s']:.1f} traj/s) | "
            f"speed-up {r['speedup']:.1f}x | steps {r['steps_min']}-{r['steps_max']} | max rel diff {max_rel:.1e}",
            flush=True,
        )

    machine = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "device": str(jax.devices()[0]),
        "jax": jax.__version__,
        "gflow": gflow.__version__,
        "dtype": "float64",
    }
    result = {
        "benchmark": "sweep_throughput",
        "problem": "diagonal network u*v, n=20, d=60 (120 params), slow time tau1=3, 50 saves",
        "solver": SOLVER,
        "repeats": repeats,
        "machine": machine,
        "rows": rows,
    }
    if not args.quick:
        out = pathlib.Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2))
        print(f"wrote {out}")
    print(
        "\n| grid | chunk | sweep run (s) | sweep compile (s) | whole grid run (s) | loop run (s) | sweep traj/s | "
        "loop traj/s | speed-up | speed-up, whole grid |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['grid_size']} | {r['sweep_chunk_size']} | {r['sweep_run_s']:.3f} | {r['sweep_compile_s']:.1f} | "
            f"{r['whole_grid_run_s']:.3f} | {r['loop_run_s']:.3f} | {r['sweep_traj_per_s']:.1f} | "
            f"{r['loop_traj_per_s']:.1f} | {r['speedup']:.1f}x | {r['speedup_whole_grid']:.1f}x |"
        )
    return result


if __name__ == "__main__":
    main()
