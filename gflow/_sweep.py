"""`sweep`: a grid over λ, seeds and init scales as one vmapped, sharded, resumable computation."""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import itertools
import json
import math
import pathlib
import sys
import tempfile
import time as _time
from collections.abc import Callable, Sequence

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._files import write_atomic
from ._problem import GflowError, Problem, ProblemError
from ._simulate import (
    AUTO_NONSMOOTH_SOLVER,
    AUTO_STIFF_KINK_SOLVER,
    _param_dtype,
    _simulate,
    check_options,
    choose_solver,
    default_divergence_norm,
    default_max_steps,
    default_save_times,
    default_tolerances,
    log_times,
    loose_default_tolerances,
    raced_solve,
    races,
    save_spec,
    solver_name,
    stop_spec,
)
from ._solution import RESULTS


class SweepStoreError(GflowError):
    """A sweep store on disk does not match the sweep asked for (or is unreadable)."""


# 2: completion markers with member ranges and checksums; the problem factory's fingerprint.
STORE_FORMAT = 2

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
    try:
        given = np.atleast_1d(np.asarray(values))
        if given.dtype.kind not in "biuf":
            raise TypeError
        arr = given.astype(np.float64)
    except (TypeError, ValueError):
        kind = "integers" if integer else "real numbers"
        raise ProblemError(f"{name} values must be {kind}, got {values!r}") from None
    if arr.ndim != 1 or arr.size == 0:
        raise ProblemError(f"{name} must be a non-empty 1-D list of values")
    if not np.all(np.isfinite(arr)):
        raise ProblemError(f"{name} values must be finite")
    if integer:
        # Seeds become uint32 PRNG keys: 2**32 would silently be seed 0, -1 seed 2**32 - 1.
        if given.dtype.kind == "b" or np.any(arr != np.round(arr)) or np.any(arr < 0) or np.any(arr >= 2**32):
            raise ProblemError(f"{name} values must be integers in [0, 2**32), got {values!r}")
        arr = arr.astype(np.int64)
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


def _raced_member(make_problem, member, save_ts, rtol, atol, stop_values, *, dtype, options: dict):
    """One member (λ, seed, α, t1) as `simulate` runs it on the kink path of a flow that may be
    stiff: Bosh3 raced against RKC1 (`raced_solve`; the race decides between pieces on the host, so
    one member per call), returned with a leading member axis of size 1, like a chunk of
    `_run_chunk`; `options` holds `_run_chunk`'s keyword arguments."""
    lam, seed, alpha, t1 = member
    has_alpha, num_saves, slow = options["has_alpha"], options["num_saves"], options["slow"]
    key = jax.random.PRNGKey(np.uint32(seed))
    problem = make_problem(key, jnp.asarray(alpha, dtype)) if has_alpha else make_problem(key)
    lam, t1, t0 = jnp.asarray(lam, dtype), jnp.asarray(t1, dtype), jnp.zeros((), dtype)
    if save_ts is None:
        save_ts = default_save_times(t0, t1, num_saves, lam, slow)
    common = {
        "divergence_norm": default_divergence_norm(problem),
        "rtol": rtol,
        "atol": atol,
        "stop_values": None if stop_values is None else jnp.asarray(stop_values, dtype),
        "max_steps": options["max_steps"],
        "slow": slow,
        "save_params": False,
        "progress": "none",
        "stops": options["stops"],
        "callback": None,
    }
    traj = raced_solve(problem, lam, t1, t0, save_ts, common)
    # Every member of the store has the same variables: race_t (the first race's time) is NaN
    # where the probe reached t1 without a race.
    stats = {"race_t": jnp.asarray(jnp.nan, dtype), **traj.stats}
    traj = dataclasses.replace(traj, stats=stats)
    return jax.tree_util.tree_map(lambda x: x[None] if eqx.is_array(x) else x, traj)


def _config_json(config: dict) -> str:
    return json.dumps(config, sort_keys=True, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o))


def _describe_fn(fn) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


# -- the identity of a sweep's problem factory ------------------------------------------------

# Code from these packages is identified by its qualified name only: its body changes with their
# releases, not with the user's experiment.
_LIBRARIES = frozenset(
    "gflow jax jaxlib numpy equinox diffrax optax lineax optimistix scipy xarray builtins functools "
    "math operator itertools collections typing abc".split()
)


class _NoFingerprint(Exception):
    """The factory holds something whose content cannot be hashed."""


def problem_fingerprint(make_problem) -> tuple[str | None, str]:
    """A SHA-256 of a problem factory's code and captured values, or (None, why not).

    It covers the function's bytecode and constants (not its file position), defaults, closure
    values (arrays by their bytes), the `functools.partial` arguments or dataclass fields it is
    built from, and, recursively, the functions, classes and values of its own module that it
    names. Library code (jax, numpy, gflow, ...) counts by name. Two closures of the same name
    with different captured values, or a changed function body, get different fingerprints.
    """
    digest = hashlib.sha256()
    try:
        _feed(digest, make_problem, set(), 0)
    except _NoFingerprint as why:
        return None, str(why)
    except RecursionError:
        return None, "it is nested too deeply"
    return digest.hexdigest(), ""


def _is_library(module_name) -> bool:
    return not isinstance(module_name, str) or module_name.split(".")[0] in _LIBRARIES


def _feed(digest, obj, seen: set, depth: int) -> None:
    import dataclasses
    import functools
    import types

    def put(*parts):
        for part in parts:
            digest.update(repr(part).encode())
            digest.update(b"\0")

    if depth > 40:
        raise _NoFingerprint("it is nested too deeply")
    nested = depth + 1
    if obj is None or isinstance(obj, bool | int | float | complex | str | bytes):
        put(type(obj).__name__, obj)
    elif isinstance(obj, np.ndarray | np.generic | jax.Array):
        arr = np.asarray(obj)
        put("array", arr.dtype.str, arr.shape)
        digest.update(np.ascontiguousarray(arr).tobytes())
    elif isinstance(obj, list | tuple | frozenset | set):
        items = sorted(obj, key=repr) if isinstance(obj, set | frozenset) else obj
        put(type(obj).__name__, len(items))
        for item in items:
            _feed(digest, item, seen, nested)
    elif isinstance(obj, dict):
        put("dict", len(obj))
        for key in sorted(obj, key=repr):
            _feed(digest, key, seen, nested)
            _feed(digest, obj[key], seen, nested)
    elif isinstance(obj, types.ModuleType):
        put("module", obj.__name__)
    elif isinstance(obj, functools.partial):
        put("partial")
        for part in (obj.func, obj.args, obj.keywords):
            _feed(digest, part, seen, nested)
    elif isinstance(obj, types.MethodType):
        put("method")
        _feed(digest, obj.__func__, seen, nested)
        _feed(digest, obj.__self__, seen, nested)
    elif isinstance(obj, types.FunctionType):
        put("function", obj.__module__, obj.__qualname__)
        if _is_library(obj.__module__) or id(obj) in seen:
            return
        seen.add(id(obj))
        names = _feed_code(digest, obj.__code__)
        for part in (obj.__defaults__, obj.__kwdefaults__):
            _feed(digest, part, seen, nested)
        for cell in obj.__closure__ or ():
            try:
                _feed(digest, cell.cell_contents, seen, nested)
            except ValueError:  # a cell not yet filled
                put("empty cell")
        for name in sorted(names):
            if name in obj.__globals__:
                value = obj.__globals__[name]
                put("global", name)
                _feed_global(digest, value, obj.__module__, seen, nested, put)
    elif isinstance(obj, type):
        put("class", obj.__module__, obj.__qualname__)
        if not _is_library(obj.__module__) and id(obj) not in seen:
            seen.add(id(obj))
            for name, member in sorted(vars(obj).items()):
                if isinstance(member, types.FunctionType | staticmethod | classmethod | property):
                    put(name)
                    _feed(digest, getattr(member, "__func__", getattr(member, "fget", member)), seen, nested)
    elif hasattr(obj, "_fingerprint_parts"):  # gflow's own factories (a user factory names its function)
        put(type(obj).__qualname__)
        _feed(digest, obj._fingerprint_parts(), seen, nested)
    elif dataclasses.is_dataclass(obj):  # equinox Modules included: their fields are their content
        _feed(digest, type(obj), seen, nested)
        for field in dataclasses.fields(obj):
            put(field.name)
            _feed(digest, getattr(obj, field.name), seen, nested)
    elif hasattr(obj, "__wrapped__"):  # jax.jit, functools.wraps and similar wrappers
        put("wrapper", type(obj).__qualname__)
        _feed(digest, obj.__wrapped__, seen, nested)
    elif isinstance(obj, types.BuiltinFunctionType | np.ufunc) or _is_library(type(obj).__module__):
        put("library object", type(obj).__module__, type(obj).__qualname__, getattr(obj, "__name__", ""))
    elif callable(obj) and hasattr(obj, "__dict__"):  # an instance of a user's callable class
        _feed(digest, type(obj), seen, nested)
        _feed(digest, vars(obj), seen, nested)
    else:
        raise _NoFingerprint(f"it holds a {type(obj).__qualname__}, whose content cannot be hashed")


def _feed_code(digest, code) -> set[str]:
    """Bytecode, constants and names of a code object and its nested ones; returns the global names used."""
    digest.update(code.co_code)
    digest.update(repr((code.co_names, code.co_varnames, code.co_freevars)).encode())
    names = set(code.co_names)
    for const in code.co_consts:
        if hasattr(const, "co_code"):
            names |= _feed_code(digest, const)
        else:
            digest.update(repr((type(const).__name__, const)).encode())
    return names


def _feed_global(digest, value, module: str, seen: set, depth: int, put) -> None:
    """A global name the factory uses: its own module's code and values count, libraries by name."""
    import types

    if isinstance(value, types.ModuleType):
        put("module", value.__name__)
    elif isinstance(value, types.FunctionType | type) and getattr(value, "__module__", None) != module:
        put("imported", getattr(value, "__module__", "?"), value.__qualname__)
    else:
        try:
            _feed(digest, value, seen, depth)
        except _NoFingerprint:
            # A global the factory merely names (a logger, a cache): its type, not its content.
            put("unhashed global", type(value).__module__, type(value).__qualname__)


def _digest(arr: np.ndarray) -> str:
    arr = np.ascontiguousarray(arr)
    return hashlib.sha256(repr((arr.dtype.str, arr.shape)).encode() + arr.tobytes()).hexdigest()


class _DamagedChunk(Exception):
    """A finished chunk whose data no longer matches what was written."""


# Written explicitly into every `result` (and `stopped_by`) array so that a chunk file that goes
# missing reads back as this, not as 0 (= successful), Zarr's default fill value.
_NEVER_WRITTEN = np.int32(-(2**31))


class _Store:
    """A directory: `config.json`, then per finished chunk `chunk-XXXXX.zarr` and a marker
    `chunk-XXXXX.done` written after the data (so a chunk killed mid-write is redone).

    The marker records the chunk's member range and a SHA-256 of every variable: on load, a
    chunk whose files were deleted, altered or swapped with another chunk's is reported by name
    (and recomputed by `sweep`), never read back as data.
    """

    def __init__(self, path, config: dict, unhashable: str = ""):
        self.path = pathlib.Path(path)
        self.chunk_size = config["chunk_size"]
        cfg_file = self.path / "config.json"
        wanted = json.loads(_config_json(config))
        if self.path.exists() and not self.path.is_dir():
            raise SweepStoreError(f"sweep store {self.path} is a file; give a folder path for store=")
        if cfg_file.exists():
            try:
                found = json.loads(cfg_file.read_text())
                if not isinstance(found, dict):
                    raise ValueError("not a JSON object")
            except (OSError, ValueError) as err:
                raise SweepStoreError(
                    f"sweep store {self.path} has an unreadable config.json ({err}); use a new store path"
                ) from None
            if found.get("format") != STORE_FORMAT:
                raise SweepStoreError(
                    f"sweep store {self.path} was written in store format {found.get('format')!r}, this gflow "
                    f"writes format {STORE_FORMAT}; use a new store path, or delete this one to start over"
                )
            if wanted["problem"] is None:
                raise SweepStoreError(
                    f"cannot resume sweep store {self.path}: make_problem cannot be fingerprinted "
                    f"({unhashable}), so gflow cannot tell whether it changed since the store was "
                    "written; pass store_key='...' (a name you keep for this exact problem) on every run"
                )
            if found != wanted:
                diff = sorted(k for k in set(found) | set(wanted) if found.get(k) != wanted.get(k))
                hint = " (make_problem's code, captured values or arguments changed)" if diff == ["problem"] else ""
                raise SweepStoreError(
                    f"sweep store {self.path} was made by a different sweep (differs in: {', '.join(diff)}){hint}; "
                    "use a new store path, or delete this one to start over"
                )
        else:
            if self.path.exists() and any(self.path.iterdir()):
                raise SweepStoreError(f"{self.path} exists and is not a gflow sweep store; choose another store path")
            try:
                self.path.mkdir(parents=True, exist_ok=True)
                write_atomic(cfg_file, _config_json(config))
            except OSError as err:
                raise SweepStoreError(f"cannot create sweep store {self.path}: {err.strerror}") from None

    def check_writable(self) -> None:
        """Fail now, before any compute, if finished chunks could not be written."""
        try:
            with tempfile.TemporaryFile(dir=self.path):
                pass
        except OSError as err:
            raise SweepStoreError(
                f"sweep store {self.path} is not writable ({err.strerror}); make it writable or use a new store path"
            ) from None

    def _stem(self, i: int) -> str:
        return f"chunk-{i:05d}"

    def done(self, i: int) -> bool:
        return (self.path / f"{self._stem(i)}.done").exists()

    def load(self, i: int, n_members: int):
        """Chunk `i`, checked against its marker; raises `_DamagedChunk` saying what is wrong."""
        return read_chunk(self.path, i, self.chunk_size, n_members)

    def save(self, i: int, ds) -> None:
        stem = self._stem(i)
        marker = {
            "members": [int(ds["member"].values[0]), int(ds["member"].values[-1]) + 1],
            "sha256": {name: _digest(ds[name].values) for name in sorted(ds.variables)},
        }
        encoding = {name: {"fill_value": _NEVER_WRITTEN} for name in ("result", "stopped_by") if name in ds}
        try:
            # The marker goes first and last: a chunk being rewritten is never "done".
            (self.path / f"{stem}.done").unlink(missing_ok=True)
            ds.to_zarr(
                self.path / f"{stem}.zarr", mode="w", consolidated=False, write_empty_chunks=True, encoding=encoding
            )
            write_atomic(self.path / f"{stem}.done", json.dumps(marker))
        except OSError as err:
            raise SweepStoreError(
                f"cannot write {stem} to sweep store {self.path} ({err.strerror}); the chunks already finished "
                "are kept: free space or fix permissions, then rerun the same sweep to resume"
            ) from None


def read_chunk(path: pathlib.Path, i: int, chunk_size: int, n_members: int):
    """Read and verify chunk `i` of a store (member range and per-variable SHA-256)."""
    import xarray as xr

    stem = f"chunk-{i:05d}"
    try:
        marker = json.loads((path / f"{stem}.done").read_text())
        recorded, members = marker["sha256"], marker["members"]
    except (OSError, ValueError, KeyError, TypeError):
        raise _DamagedChunk(f"{stem}: its completion marker is unreadable") from None
    lo, hi = i * chunk_size, min((i + 1) * chunk_size, n_members)
    if members != [lo, hi]:
        raise _DamagedChunk(f"{stem}: its marker is for members {members}, not [{lo}, {hi}]")
    try:
        ds = xr.open_zarr(path / f"{stem}.zarr", consolidated=False).load()
    except Exception as err:  # missing or corrupt metadata, codecs, chunks: all mean damage
        raise _DamagedChunk(f"{stem}: unreadable ({type(err).__name__})") from None
    if not np.array_equal(ds["member"].values if "member" in ds.coords else [], np.arange(lo, hi)):
        raise _DamagedChunk(f"{stem}: it holds other members than [{lo}, {hi}) (chunk files swapped?)")
    if set(ds.variables) != set(recorded):
        raise _DamagedChunk(f"{stem}: its variables differ from those written")
    for name in sorted(recorded):
        if _digest(ds[name].values) != recorded[name]:
            raise _DamagedChunk(f"{stem}: {name} differs from what was written (checksum mismatch)")
    return ds


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
    max_steps: int | None = None,
    stop=None,
    store_key: str | None = None,
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
      and α at the longest horizon (the smallest λ in slow time). On a kinked loss it takes
      Bosh3; where the kinked flow may be stiff (`simulate`'s race rule: a squared-type loss,
      stiffness ratio above `AUTO_STIFFNESS`) each member races Bosh3 against RKC1 as `simulate`
      does, member by member (the race decides between pieces on the host), when the grid runs
      one member per call: the default on a CPU for such a grid, `chunk_size=1` on an
      accelerator. Each member is then the run `simulate` gives alone; `ds.attrs["solver"]` reads
      "bosh3+rkc1" once some member's race went to RKC1, and `stats_num_races`, `stats_race_t`
      (NaN without a race) and `stats_rkc_steps` say which. In larger chunks the members share
      one solver and run Bosh3 throughout.

    **Other arguments:**

    - `chunk_size`: members per compiled call. The last chunk is padded to the same shape, so
      there is one compilation per sweep; rounded up to a multiple of the number of devices.
      Default (`None`): the whole grid on accelerators (a batched step costs about as much as a
      single one there); on CPU, 1 where the members race (see `solver`), else
      `CPU_CHUNK_SIZE` members per device, because a vmapped adaptive
      solve runs every member of a call until its slowest member ends and a CPU pays for each
      member's step, so small chunks of similar members waste least. Members are ordered λ-major
      (then seed, then α), so a chunk holds neighbouring λ values of similar stiffness. For an
      expensive model whose members differ in stiffness, `chunk_size=1` on a CPU: batching then
      saves little per step and the slowest member sets the pace of its chunk (README, "Chunks").
    - `store`: a directory path. Each finished chunk is written there (Zarr, through xarray)
      before the next starts; running the same sweep again skips finished chunks, so a killed
      sweep resumes without redoing or corrupting work. A store made by a different sweep
      (any configuration difference, including a change in `make_problem`'s code or captured
      values: see `problem_fingerprint`) is refused with `SweepStoreError`. Every chunk is
      checked on load against the member range and SHA-256 checksums recorded when it was
      written; a damaged chunk is reported by name on stderr and recomputed.
    - `store_key`: a name that identifies `make_problem` in the store when its content cannot be
      fingerprinted (it holds an object gflow cannot hash); without it such a store is refused on
      resume. When given, it replaces the fingerprint: you vouch that the problem is unchanged.
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
    chosen, stiffness_ratio = solver, 0.0
    if solver == "auto":
        horizon = float(np.max(m_t1 / m_lam)) if slow else float(np.max(m_t1))
        chosen, sharpness = choose_solver(probe, float(lam_values.min()), horizon)
        stiffness_ratio = (float(sharpness) + float(lam_values.min())) * horizon
    kink_robust = solver == "auto" and chosen == AUTO_NONSMOOTH_SOLVER
    rtol_a, atol_a = default_tolerances(dtype, rtol, atol, nonsmooth=kink_robust or loose_default_tolerances(solver))
    max_steps = default_max_steps(max_steps, nonsmooth=kink_robust)
    stops, stop_values = stop_spec(probe, stop)
    # `simulate`'s race of Bosh3 against RKC1 (a kinked flow that may be stiff) decides between
    # pieces on the host, member by member: it runs where the grid runs one member per call (the
    # default on a CPU for such a grid, `chunk_size=1` elsewhere); in a vmapped chunk the members
    # share one solver, Bosh3.
    race_eligible = kink_robust and races(probe, stiffness_ratio, max_steps)

    devices = list(jax.devices() if devices is None else devices)
    n_dev = len(devices)
    if n_dev == 0:
        raise ProblemError("devices is empty; pass None (all devices) or a list of jax devices")
    if chunk_size is None:
        on_cpu = all(d.platform == "cpu" for d in devices)
        chunk_size = (1 if race_eligible else CPU_CHUNK_SIZE * n_dev) if on_cpu else n_members
    chunk = min(chunk_size, n_members)
    chunk = int(math.ceil(chunk / n_dev) * n_dev)
    n_chunks = int(math.ceil(n_members / chunk))
    race = race_eligible and chunk == 1

    if store_key is not None and (not isinstance(store_key, str) or not store_key):
        raise ProblemError(f"store_key must be a non-empty string, got {store_key!r}")
    fingerprint, unhashable = problem_fingerprint(make_problem) if store_key is None else (None, "")
    config = {
        "format": STORE_FORMAT,
        "make_problem": _describe_fn(make_problem),
        "problem": {"store_key": store_key} if store_key is not None else fingerprint,
        "lam": lam_values,
        "seed": seed_values,
        "alpha": alpha_values if has_alpha else None,
        "t1": m_t1,
        "t1_per_member": per_member_t1,
        "time": time,
        # A solver object counts by its full repr (its configuration), a name by itself.
        "solver": chosen if isinstance(chosen, str) else repr(chosen),
        "saveat": None if save_ts is None else np.asarray(save_ts),
        "num_saves": num_saves,
        "chunk_size": chunk,
        "rtol": float(rtol_a),
        "atol": float(atol_a),
        "max_steps": max_steps,
        "dtype": str(np.dtype(dtype)),
    }
    if race:
        # Only when racing, so that stores written before the race existed still resume.
        config["race"] = [AUTO_NONSMOOTH_SOLVER, AUTO_STIFF_KINK_SOLVER]
    if stops:
        # Only when given, so that stores written before `stop` existed still resume.
        config["stop"] = [[name, op, float(v)] for (name, op), v in zip(stops, np.asarray(stop_values), strict=True)]
    disk = _Store(store, config, unhashable) if store is not None else None
    if disk is not None and not all(disk.done(c) for c in range(n_chunks)):
        disk.check_writable()

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
    chunks, computed, loaded, damaged, compile_s = [], 0, 0, 0, None
    for c in range(n_chunks):
        lo, hi = c * chunk, min((c + 1) * chunk, n_members)
        index = np.arange(lo, hi)
        ds = None
        if disk is not None and disk.done(c):
            try:
                ds = disk.load(c, n_members)
                loaded += 1
            except _DamagedChunk as why:
                print(f"sweep: store {disk.path}: {why}; recomputing it", file=sys.stderr, flush=True)
                damaged += 1
        if ds is not None:
            chunks.append(ds)
        else:
            # Pad the last chunk with copies of its last member: one compiled shape for all chunks.
            pad = np.concatenate([index, np.full(chunk - index.size, index[-1])])
            args = [
                jax.device_put(np.asarray(v[pad], dtype=d), sharding)
                for v, d in ((m_lam, dtype), (m_seed, np.uint32), (m_alpha, dtype), (m_t1, dtype))
            ]
            start = _time.perf_counter()
            options = {
                "has_alpha": has_alpha,
                "stops": stops,
                "num_saves": num_saves,
                "max_steps": max_steps,
                "slow": slow,
            }
            if race:
                member = (m_lam[lo], m_seed[lo], m_alpha[lo], m_t1[lo])
                traj = _raced_member(
                    make_problem, member, save_ts, rtol_a, atol_a, stop_values, dtype=dtype, options=options
                )
            else:
                traj = _run_chunk(make_problem, *args, save_ts, rtol_a, atol_a, stop_values, solver=chosen, **options)
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
            "solver": _sweep_solver_name(chosen, flat if race else None),
            "gflow_version": __version__,
            "jax_version": jax.__version__,
            "diffrax_version": diffrax.__version__,
            "chunks_computed": computed,
            "chunks_loaded": loaded,
            "chunks_damaged_and_recomputed": damaged,
        }
    )
    if compile_s is not None:
        out.attrs["first_chunk_seconds"] = compile_s
    return out


def _sweep_solver_name(chosen, raced) -> str:
    """The solver's name; for a racing sweep (`raced`: its members' Dataset) "bosh3+rkc1" once
    some member's race handed it to RKC1, as `simulate` names one run."""
    if raced is not None and np.any(raced["stats_rkc_steps"].values > 0):
        return f"{AUTO_NONSMOOTH_SOLVER}+{AUTO_STIFF_KINK_SOLVER}"
    return solver_name(chosen)


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
    try:
        config = json.loads(cfg_file.read_text())
        n_members = len(config["lam"]) * len(config["seed"]) * (len(config["alpha"]) if config["alpha"] else 1)
        n_chunks = int(math.ceil(n_members / config["chunk_size"]))
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise SweepStoreError(
            f"sweep store {path} has an unreadable config.json ({type(err).__name__}); it cannot be read back"
        ) from None
    if config.get("format") != STORE_FORMAT:
        raise SweepStoreError(f"sweep store {path} is in store format {config.get('format')!r}, not {STORE_FORMAT}")
    finished = [c for c in range(n_chunks) if (path / f"chunk-{c:05d}.done").exists()]
    if not finished or (len(finished) < n_chunks and not partial):
        raise SweepStoreError(
            f"sweep store {path} has {len(finished)} of {n_chunks} chunks finished; rerun the sweep to finish it, "
            "or pass partial=True"
        )
    parts = []
    for c in finished:
        try:
            parts.append(read_chunk(path, c, config["chunk_size"], n_members))
        except _DamagedChunk as why:
            raise SweepStoreError(f"sweep store {path} is damaged: {why}; rerun the sweep to recompute it") from None
    flat = xr.concat(parts, dim="member")
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
