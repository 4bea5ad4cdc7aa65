"""The command line every figure script shares: size flags, a fresh output folder, provenance.

Each script in this folder reproduces one figure at three sizes: `--smoke` (seconds, what the
tests run), the default quick size, and `--full` (the paper's size, where it differs). It writes
into a new folder, `--out DIR` or `gflow-runs/<name>-<timestamp>`, and refuses a non-empty one,
so that no earlier run is overwritten.

    def main(argv=None) -> int:
        parser = _figure.parser(__doc__, NAME, smoke="…", full="…")
        args = parser.parse_args(argv)
        return _figure.run_in_new_folder(args.out, NAME, lambda out: run(out, size=_figure.size(args)))
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import pathlib
import platform
import sys
import time
from collections.abc import Callable


def parser(doc: str, name: str, *, smoke: str, full: str | None = None) -> argparse.ArgumentParser:
    """An argument parser with `--smoke`, `--full` (when the script has one) and `--out`.

    `doc` is the script's docstring (its first line is the description); `smoke` and `full`
    say what those sizes run.
    """
    result = argparse.ArgumentParser(description=doc.splitlines()[0])
    sizes = result.add_mutually_exclusive_group()
    sizes.add_argument("--smoke", action="store_true", help=smoke)
    if full is not None:
        sizes.add_argument("--full", action="store_true", help=full)
    result.add_argument("--out", help=f"output folder (default: a new gflow-runs/{slug(name)}-<timestamp>)")
    return result


def size(args: argparse.Namespace) -> str:
    """ "smoke", "full" or "quick" (the default) from parsed `--smoke`/`--full` flags."""
    if args.smoke:
        return "smoke"
    return "full" if getattr(args, "full", False) else "quick"


def slug(name: str) -> str:
    """The folder-name form of a script name: `lyu_fig2_modular_addition` → `lyu-fig2-modular-addition`."""
    return name.replace("_", "-")


def run_in_new_folder(out: str | None, name: str, job: Callable[[pathlib.Path], object]) -> int:
    """Run `job(folder)` in a new output folder and print its wall time. Returns the exit code.

    The folder is `out`, or `gflow-runs/<slug(name)>-<timestamp>`; a folder that exists and is
    not empty is refused (exit code 2) so that a finished run is never overwritten.
    """
    if out is None:
        folder = pathlib.Path("gflow-runs") / f"{slug(name)}-{datetime.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    else:
        folder = pathlib.Path(out)
    if folder.exists() and any(folder.iterdir()):
        print(f"error: output folder {folder} is not empty; pass a new --out", file=sys.stderr)
        return 2
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    job(folder)
    print(f"  total {time.perf_counter() - start:.1f} s")
    return 0


def load_script(name: str):
    """The sibling script `<name>.py` of this folder as a module (scripts/ is not a package)."""
    path = pathlib.Path(__file__).resolve().with_name(f"{name}.py")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # what an import would do (dataclasses look their module up there)
    spec.loader.exec_module(module)
    return module


def provenance() -> dict:
    """NetCDF attributes that say where a result was computed: JAX version, device, Python."""
    import jax

    return {"jax_version": jax.__version__, "device": str(jax.devices()[0]), "python": platform.python_version()}
