"""`sweep`: a grid over λ, seeds and init scales as one vmapped, sharded, resumable computation."""

from __future__ import annotations

import inspect
import itertools
import json
import math
import os
import pathlib
import sys
import time as _time
from collections.abc import Callable, Sequence

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._problem import GflowError, Problem, ProblemError
from ._simulate import (
    _param_dtype,
    _simulate,
    check_options,
    choose_solver,
    default_divergence_norm,
    default_tolerances,
    log_times,
    save_spec,
    stop_spec,
)
from ._solution import RESULTS


class SweepStoreError(GflowError):
    """A sweep store on disk does not match the sweep asked for (or is unreadable)."""


STORE_FORMAT = 1

# Default members per compiled call and CPU device (`sweep(chunk_size=None)`). A vmapped adaptive
# solve steps every member until the slowest one ends, and on a CPU each member's step costs about
# as much batched as alone, apart from the per-step overhead that batching amortises: chunks of a
# few members keep most of that saving while wasting little on members that finish early
# (benchmarks/README.md, "Sweep throughput").
CPU_CHUNK_SIZE = 8


def log_range(spec: str) -> np.ndarray:
    """Parse a grid: `"a:b:n"` is n log-spaced values from a to b inclusive (`"1e-4:1e-2:3"`
    gives 1e-4, 1e-3, 1e-2); `"x,y,z"` is a list; a single number is itself."""
    spec = spec.strip()
    try:
        if ":" in spec:
            a, b, n = spec.split(":")
            a, b, n = float(a), float(b), int(n)
            if a <= 0 or b <= 0 or n < 1:
                raise ValueError
            return np.geomspace(a, b, n) if n > 1 else np.array([a])
        return np.array([float(v) for v in spec.split(",")])
    except ValueError:
        raise ProblemError(
            f"cannot read the grid {spec!r}: write 'a:b:n' (n log-spaced values from a to b, a, b > 0) "
            "or a comma-separated list"
        ) from None


def _grid_values(name, values, *, positive=False, integer=False) -> np.ndarray:
    arr = np.atleast_1d(np.asarray(values, dtype=np.int64 if integer else np.float64))
    if arr.ndim != 1 or arr.size == 0:
        raise ProblemError(f"{name} must be a non-empty 1-D list of values")
    if not np.all(np.isfinite(arr)):
        raise ProblemError(f"{name} values must be finite")
    if positive and np.any(arr <= 0):
        raise ProblemError(f"{name} values must be > 0 here")
    if len(np.unique(arr)) != arr.size:
        raise ProblemError(f"{name} values must be distinct (they label the grid)")
    return arr


def _takes_alpha(make_problem) -> bool:
    flag = getattr(make_problem, "takes_alpha", None)
    if isinstance(flag, bool):
        return flag
    try:
        params = [
            p
            for p in inspect.signature(make_problem).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
        ]
    except (TypeError, ValueError):
        return True
    return len(params) >= 2


@eqx.filter_jit
def _run_chunk(
    make_problem,
    lam,
    seed,
    alpha,
    t1,
    save_ts,
    rtol,
    atol,
    stop_values=None,
    *,
    has_alpha,
    solver,
    num_saves,
    max_steps,
    slow,
    stops=(),
):
    """One compiled call per chunk shape: vmap over members of (λ, seed, α, t1)."""

    def member(lam_i, seed_i, alpha_i, t1_i):
        key = jax.random.PRNGKey(seed_i)
        problem = make_problem(key, alpha_i) if has_alpha else make_problem(key)
        dtype = _param_dtype(problem)
        return _simulate(
            problem,
            lam_i.astype(dtype),
            t1_i.astype(dtype),
            save_ts,
            default_divergence_norm(problem),
            rtol,
            atol,
            solver=solver,
            num_saves=num_saves,
            max_steps=max_steps,
            slow=slow,
            save_params=False,
            stop_values=None if stop_values is None else stop_values.astype(dtype),
            stops=stops,
        )

    # filter_vmap: the Trajectory's model holds non-array leaves (an eqx.nn.MLP's activation).
    return eqx.filter_vmap(member)(lam, seed, alpha, t1)


def _config_json(config: dict) -> str:
    return json.dumps(config, sort_keys=True, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o))


def _describe_fn(fn) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def _write_text_atomic(path: pathlib.Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class _Store:
    """A directory: `config.json`, then per finished chunk `chunk-XXXXX.zarr` and a marker
    `chunk-XXXXX.done` written after the data (so a chunk killed mid-write is redone)."""

    def __init__(self, path, config: dict):
        self.path = pathlib.Path(path)
        cfg_file = self.path / "config.json"
        wanted = json.loads(_config_json(config))
        if cfg_file.exists():
            try:
                found = json.loads(cfg_file.read_text())
            except (OSError, json.JSONDecodeError) as err:
                raise SweepStoreError(
                    f"sweep store {self.path} has an unreadable config.json ({err}); use a new store path"
                ) from None
            if found != wanted:
                diff = sorted(k for k in set(found) | set(wanted) if found.get(k) != wanted.get(k))
                raise SweepStoreError(
                    f"sweep store {self.path} was made by a different sweep (differs in: {', '.join(diff)}); "
                    "use a new store path, or delete this one to start over"
                )
        else:
            if self.path.exists() and any(self.path.iterdir()):
                raise SweepStoreError(f"{self.path} exists and is not a gflow sweep store; choose another store path")
            try:
                self.path.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise SweepStoreError(f"cannot create sweep store {self.path}: {err.strerror}") from None
            _write_text_atomic(cfg_file, _config_json(config))

    def _stem(self, i: int) -> str:
        return f"chunk-{i:05d}"

    def done(self, i: int) -> bool:
        return (self.path / f"{self._stem(i)}.done").exists()

    def load(self, i: int):
        import xarray as xr

        return xr.open_zarr(self.path / f"{self._stem(i)}.zarr", consolidated=False).load()

    def save(self, i: int, ds) -> None:
        ds.to_zarr(self.path / f"{self._stem(i)}.zarr", mode="w", consolidated=False)
        _write_text_atomic(self.path / f"{self._stem(i)}.done", "")


def _chunk_dataset(traj, index: np.ndarray):
    """A chunk's Trajectory batch as an xarray Dataset over (member, time)."""
    import xarray as xr

    data = {name: (("member", "time"), np.asarray(v)) for name, v in traj.metrics.items()}
    data["result"] = ("member", np.asarray(traj.result._value).astype(np.int32))
    data["t_final"] = ("member", np.asarray(traj.t_final))
    if traj.stop_conditions:
        data["stopped_by"] = ("member", np.asarray(traj.stopped_by).astype(np.int32))
    for k, v in traj.stats.items():
        data[f"stats_{k}"] = ("member", np.broadcast_to(np.asarray(v), index.shape))
    data["ts"] = (("member", "time"), np.asarray(traj.ts))
    return xr.Dataset(data, coords={"member": index})


def sweep(
    make_problem: Callable[..., Problem],
    *,
    lam,
    seed: Sequence[int] = (0,),
    alpha=None,
    t1,
    time: str = "slow",
    solver: str = "auto",
    saveat=None,
    chunk_size: int | None = None,
    store=None,
    devices=None,
    progress: bool = True,
    rtol=None,
    atol=None,
    max_steps: int = 200_000,
    stop=None,
):
    r"""Run `simulate` over the grid λ × seed × α in one compiled, vmapped, sharded call per chunk.

    Every member integrates dθ/dt = −∇F(θ) − λθ (gflow's convention F_λ = F + (λ/2)‖θ‖²) for the
    Problem `make_problem(jax.random.PRNGKey(seed), alpha)` (or `make_problem(key)` when `alpha`
    is None), so member (λ, s, α) can be rerun alone with
    `simulate(make_problem(jax.random.PRNGKey(s), α), λ, ...)` and gives the same numbers.

    **Main arguments:**

    - `make_problem`: `(key, alpha) -> Problem` or `(key) -> Problem`; it is traced under vmap,
      so it must build arrays with jax (e.g. the `gflow.tasks` functions).
    - `lam`, `seed`, `alpha`: the grid values (1-D; seeds are ints). All three are traced:
      new values reuse the compiled chunk.
    - `t1`: final time. With `time="slow"` (default) it is τ1 and every member shares the τ grid
      (τ = λt). With `time="fast"` it is ODE time: a number (a shared t grid) or a function
      `t1(lam, alpha)` (or `t1(lam)`) evaluated per member, e.g. `lambda lam, a: 3*np.log(a)/lam`;
      then each member has its own log-spaced grid.
    - `saveat`: `None` (200 times), an int, or an array of times shared by all members (not
      with a per-member `t1`).
    - `solver`: as in `simulate`; `"auto"` decides once for the whole grid, on the first seed
      and α at the longest horizon (the smallest λ in slow time).

    **Other arguments:**

    - `chunk_size`: members per compiled call. The last chunk is padded to the same shape, so
      there is one compilation per sweep; rounded up to a multiple of the number of devices.
      Default (`None`): the whole grid on accelerators (a batched step costs about as much as a
      single one there); on CPU, `CPU_CHUNK_SIZE` members per device, because a vmapped adaptive
      solve runs every member of a call until its slowest member ends and a CPU pays for each
      member's step, so small chunks of similar members waste least. Members are ordered λ-major
      (then seed, then α), so a chunk holds neighbouring λ values of similar stiffness.
    - `store`: a directory path. Each finished chunk is written there (Zarr, through xarray)
      before the next starts; running the same sweep again skips finished chunks, so a killed
      sweep resumes without redoing or corrupting work. A store made by a different sweep
      (any configuration difference) is refused with `SweepStoreError`.
    - `devices`: the JAX devices to shard the members over (default: all, `jax.devices()`).
      On several hosts, call `jax.distributed.initialize()` first (see the README).
    - `progress`: a tqdm bar over chunks with an ETA on a terminal; off a terminal, one plain
      line per finished chunk (no carriage returns in logs).
    - `rtol`, `atol`, `max_steps`, `stop`: as in `simulate`; with `stop`, each member stops on
      its own (its `t_final` is its stop time, later saves NaN) and `stopped_by` holds the index
      of the condition that stopped it (−1: none; the conditions are in the `config` attribute).

    **Returns:** an `xarray.Dataset` with dimensions `(lam, seed, alpha, time)` (`alpha` absent
    when not swept): one variable per metric, `result` (the `gflow.RESULTS` code, messages in its
    attributes), `ok`, `t_final` and `stats_*`. Time coordinates:

    - `time="slow"`: `time` holds the shared τ values; `tau` is the same, and `t` = τ/λ
      varies with λ (dims `(lam, time)`).
    - `time="fast"` with a number `t1`: `time` holds the shared t values, `t` the same, and
      `tau` = λt has dims `(lam, time)`.
    - `time="fast"` with a function `t1`: `time` is the save index 0…n−1, and `t` and `tau` have
      dims `(lam, alpha, time)` (or `(lam, time)`).

    Attributes record the configuration (`config`, JSON) and the versions of gflow, jax and
    diffrax. A member that diverges or hits `max_steps` carries its own code; the others are
    unaffected (each member keeps its own step size; the batch runs until its slowest member ends).
    """
    import xarray as xr

    from . import __version__

    if not callable(make_problem):
        raise ProblemError("make_problem must be a function (key[, alpha]) -> gflow.Problem")
    check_options(time, solver, max_steps)
    slow = time == "slow"
    lam_values = _grid_values("lam", lam, positive=slow)
    if np.any(lam_values < 0):
        raise ProblemError(f"weight decay lam must be >= 0, got {lam_values.min()}")
    seed_values = _grid_values("seed", seed, integer=True)
    has_alpha = alpha is not None
    alpha_values = _grid_values("alpha", alpha) if has_alpha else np.array([np.nan])
    takes_alpha = _takes_alpha(make_problem)
    if has_alpha and not takes_alpha:
        raise ProblemError("alpha values were given but make_problem takes only a key; define make_problem(key, alpha)")
    if not has_alpha and takes_alpha:
        raise ProblemError("make_problem takes (key, alpha) but no alpha values were given; pass alpha=[...]")
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
        raise ProblemError(f"chunk_size must be a positive int, got {chunk_size!r}")

    members = np.array(
        list(itertools.product(range(lam_values.size), range(seed_values.size), range(alpha_values.size)))
    )
    m_lam = lam_values[members[:, 0]]
    m_seed = seed_values[members[:, 1]]
    m_alpha = alpha_values[members[:, 2]]
    n_members = len(members)

    per_member_t1 = callable(t1)
    if per_member_t1:
        if slow:
            raise ProblemError("with time='slow' every member shares the tau grid: give t1 as a number (tau1)")
        m_t1 = np.array([float(t1(l, a) if has_alpha else t1(l)) for l, a in zip(m_lam, m_alpha)])
    else:
        m_t1 = np.full(n_members, float(t1))
    if not np.all(np.isfinite(m_t1)) or np.any(m_t1 <= 0):
        raise ProblemError("t1 must be > 0 and finite for every member")

    # One member built on the host: the dtype, and the "auto" decision.
    probe = (
        make_problem(jax.random.PRNGKey(int(seed_values[0])), alpha_values[0])
        if has_alpha
        else make_problem(jax.random.PRNGKey(int(seed_values[0])))
    )
    if not isinstance(probe, Problem):
        raise ProblemError(f"make_problem must return a gflow.Problem, got {type(probe).__name__}")
    dtype = _param_dtype(probe)
    num_saves, save_ts = save_spec(saveat, dtype, m_t1 if not per_member_t1 else None)
    if per_member_t1 and save_ts is not None:
        raise ProblemError("saveat times cannot be shared when t1 differs per member; give saveat as an int")
    if slow and save_ts is None:
        # One τ grid for every member, early enough for the smallest λ's fast phase
        # (simulate's own slow-time default starts at 1e-2·λ, which differs across λ).
        tau1 = float(m_t1[0])
        save_ts = log_times(jnp.asarray(tau1, dtype), num_saves, min(1e-2 * float(lam_values.min()), 1e-3 * tau1))
        num_saves = None
    chosen = solver
    if solver == "auto":
        horizon = float(np.max(m_t1 / m_lam)) if slow else float(np.max(m_t1))
        chosen, _ = choose_solver(probe, float(lam_values.min()), horizon)
    rtol_a, atol_a = default_tolerances(dtype, rtol, atol)
    stops, stop_values = stop_spec(probe, stop)

    devices = list(jax.devices() if devices is None else devices)
    n_dev = len(devices)
    if chunk_size is None:
        on_cpu = all(d.platform == "cpu" for d in devices)
        chunk_size = CPU_CHUNK_SIZE * n_dev if on_cpu else n_members
    chunk = min(chunk_size, n_members)
    chunk = int(math.ceil(chunk / n_dev) * n_dev)
    n_chunks = int(math.ceil(n_members / chunk))

    config = {
        "format": STORE_FORMAT,
        "make_problem": _describe_fn(make_problem),
        "lam": lam_values,
        "seed": seed_values,
        "alpha": alpha_values if has_alpha else None,
        "t1": m_t1,
        "t1_per_member": per_member_t1,
        "time": time,
        "solver": chosen,
        "saveat": None if save_ts is None else np.asarray(save_ts),
        "num_saves": num_saves,
        "chunk_size": chunk,
        "rtol": float(rtol_a),
        "atol": float(atol_a),
        "max_steps": max_steps,
        "dtype": str(np.dtype(dtype)),
    }
    if stops:
        # Only when given, so that stores written before `stop` existed still resume.
        config["stop"] = [[name, op, float(v)] for (name, op), v in zip(stops, np.asarray(stop_values), strict=True)]
    disk = _Store(store, config) if store is not None else None

    mesh = jax.sharding.Mesh(np.array(devices), ("members",))
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("members"))

    bar = None
    if progress and sys.stderr.isatty():
        from tqdm.auto import tqdm

        bar = tqdm(total=n_chunks, desc=f"sweep ({n_members} runs)", unit="chunk")
    # Off a terminal (a log file, a pipe, CI) a tqdm bar is a flood of carriage returns: print
    # one plain line per chunk instead.
    lines = progress and bar is None
    began = _time.perf_counter()
    chunks, computed, loaded, compile_s = [], 0, 0, None
    for c in range(n_chunks):
        lo, hi = c * chunk, min((c + 1) * chunk, n_members)
        index = np.arange(lo, hi)
        if disk is not None and disk.done(c):
            chunks.append(disk.load(c))
            loaded += 1
        else:
            # Pad the last chunk with copies of its last member: one compiled shape for all chunks.
            pad = np.concatenate([index, np.full(chunk - index.size, index[-1])])
            args = [
                jax.device_put(np.asarray(v[pad], dtype=d), sharding)
                for v, d in ((m_lam, dtype), (m_seed, np.uint32), (m_alpha, dtype), (m_t1, dtype))
            ]
            start = _time.perf_counter()
            traj = _run_chunk(
                make_problem,
                *args,
                save_ts,
                rtol_a,
                atol_a,
                stop_values,
                has_alpha=has_alpha,
                stops=stops,
                solver=chosen,
                num_saves=num_saves,
                max_steps=max_steps,
                slow=slow,
            )
            traj = jax.device_get(jax.tree_util.tree_map(lambda x: x[: index.size] if eqx.is_array(x) else x, traj))
            if compile_s is None:
                compile_s = _time.perf_counter() - start
            ds = _chunk_dataset(traj, index)
            if disk is not None:
                disk.save(c, ds)
            chunks.append(ds)
            computed += 1
        if bar is not None:
            bar.update(1)
        elif lines:
            print(
                f"sweep: chunk {c + 1}/{n_chunks} ({hi} of {n_members} runs) done, "
                f"{_time.perf_counter() - began:.1f} s elapsed",
                file=sys.stderr,
                flush=True,
            )
    if bar is not None:
        bar.close()

    flat = xr.concat(chunks, dim="member")
    out = _to_grid(flat, lam_values, seed_values, alpha_values if has_alpha else None, slow, per_member_t1)
    out.attrs.update(
        {
            "config": _config_json(config),
            "time_variable": "tau = lam * t (slow time)" if slow else "t (ODE time)",
            "convention": "F_lam = F + (lam/2)*||m*theta||^2, dtheta/dt = -grad F_lam",
            "solver": chosen,
            "gflow_version": __version__,
            "jax_version": jax.__version__,
            "diffrax_version": diffrax.__version__,
            "chunks_computed": computed,
            "chunks_loaded": loaded,
        }
    )
    if compile_s is not None:
        out.attrs["first_chunk_seconds"] = compile_s
    return out


def _to_grid(flat, lam_values, seed_values, alpha_values, slow, per_member_t1):
    """Reshape the flat member axis into (lam, seed[, alpha]) and attach the time coordinates."""
    import xarray as xr

    shape = (lam_values.size, seed_values.size, 1 if alpha_values is None else alpha_values.size)
    n_time = flat.sizes["time"]
    variables = {}
    for name, var in flat.data_vars.items():
        arr = var.values
        if "time" in var.dims:
            arr = arr.reshape(shape + (n_time,))
            dims = ("lam", "seed", "alpha", "time")
        else:
            arr = arr.reshape(shape)
            dims = ("lam", "seed", "alpha")
        variables[name] = (dims, arr)
    ds = xr.Dataset(variables, coords={"lam": lam_values, "seed": seed_values})
    if alpha_values is None:
        ds = ds.isel(alpha=0, drop=True)
    else:
        ds = ds.assign_coords(alpha=alpha_values)
    lam = ds["lam"]
    shared_ts = flat["ts"].values[0]
    if not per_member_t1 and not np.allclose(flat["ts"].values, shared_ts, rtol=1e-12, atol=0):
        raise AssertionError("gflow bug: members of a shared-grid sweep were saved at different times")
    ts = ds["ts"].isel(seed=0, drop=True)  # save times depend on (lam, alpha) only
    ds = ds.drop_vars("ts")
    if per_member_t1:
        ds = ds.assign_coords(time=np.arange(n_time), t=ts, tau=ts * lam)
    elif slow:
        ds = ds.assign_coords(time=shared_ts, tau=("time", shared_ts))
        ds = ds.assign_coords(t=(ds["tau"] / lam).transpose("lam", "time"))
    else:
        ds = ds.assign_coords(time=shared_ts, t=("time", shared_ts))
        ds = ds.assign_coords(tau=(ds["t"] * lam).transpose("lam", "time"))
    ds["ok"] = ds["result"] == int(RESULTS.successful._value)
    ds["result"].attrs["meaning"] = "gflow.RESULTS code: " + "; ".join(
        f"{i} = {msg or 'successful'}" for i, msg in enumerate(RESULTS._index_to_message)
    )
    return ds


def load_sweep(store, *, partial: bool = False):
    """Read a sweep store back without computing anything.

    A finished store gives the same `(lam, seed[, alpha], time)` Dataset that `sweep` returned.
    With `partial=True` (e.g. while a long sweep still runs) it gives the finished members only,
    as a flat Dataset over `member` (members are numbered lam-major, then seed, then alpha).
    """
    import xarray as xr

    path = pathlib.Path(store)
    cfg_file = path / "config.json"
    if not cfg_file.exists():
        raise SweepStoreError(f"{path} is not a gflow sweep store (no config.json)")
    config = json.loads(cfg_file.read_text())
    parts = sorted(p for p in path.glob("chunk-*.zarr") if p.with_suffix(".done").exists())
    n_members = len(config["lam"]) * len(config["seed"]) * (len(config["alpha"]) if config["alpha"] else 1)
    n_chunks = int(math.ceil(n_members / config["chunk_size"]))
    if not parts or (len(parts) < n_chunks and not partial):
        raise SweepStoreError(
            f"sweep store {path} has {len(parts)} of {n_chunks} chunks finished; rerun the sweep to finish it, "
            "or pass partial=True"
        )
    flat = xr.concat([xr.open_zarr(p, consolidated=False).load() for p in parts], dim="member")
    if partial:
        flat.attrs["config"] = json.dumps(config)
        return flat
    alpha = None if config["alpha"] is None else np.asarray(config["alpha"])
    per_member_t1 = config["t1_per_member"]
    out = _to_grid(
        flat, np.asarray(config["lam"]), np.asarray(config["seed"]), alpha, config["time"] == "slow", per_member_t1
    )
    out.attrs.update({"config": json.dumps(config, sort_keys=True), "solver": config["solver"]})
    return out
