"""Files gflow writes: atomic writes, run-folder manifests, and the staged replacement of a run folder.

Guarantees (stated in the README, "Bad input and failures"):

- Every file is written to a temporary name in its target folder and renamed into place
  (`os.replace`), so a reader never sees half a file, a crash leaves the previous file, and a
  symbolic link at the target is replaced by the new file, never written through.
- A run folder lists the files gflow wrote in `gflow-manifest.json`. `--overwrite` replaces only such
  a folder, and only when it holds nothing else: it refuses `.`, the home folder, `/`, any folder that
  contains the current one, symbolic links and folders with files gflow did not write.
- A run is written into a temporary sibling folder, which replaces the old one only after the run
  has succeeded; a run that fails leaves the old folder as it was, and no half-written one.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import shutil
import tempfile
from collections.abc import Callable, Iterator
from typing import IO

from ._problem import GflowError

MANIFEST = "gflow-manifest.json"
MANIFEST_FORMAT = 1


class RunFolderError(GflowError):
    """An output folder that gflow will not write into or replace."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path, data: bytes | str | Callable[[IO[bytes]], object]) -> pathlib.Path:
    """Write `data` (bytes, text, or a function writing to a binary file) to `path` atomically.

    The data goes to a temporary file in the same folder, which is then renamed onto `path`: a
    symbolic link at `path` is replaced, not followed, and an interrupted write leaves the old file.
    """
    path = pathlib.Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            if isinstance(data, str):
                fh.write(data.encode())
            elif isinstance(data, bytes | bytearray | memoryview):
                fh.write(data)
            else:
                data(fh)
        # mkstemp makes the file private (0600); give it the mode an ordinary write would.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def write_manifest(folder, files) -> None:
    """Record the files gflow wrote in `folder` (what `--overwrite` may later delete)."""
    names = sorted(set(files) | {MANIFEST})
    write_atomic(pathlib.Path(folder) / MANIFEST, json.dumps({"format": MANIFEST_FORMAT, "files": names}, indent=1))


def read_manifest(folder) -> set[str] | None:
    """The file names a run folder's manifest lists, or None if it has no readable manifest."""
    try:
        found = json.loads((pathlib.Path(folder) / MANIFEST).read_text())
        files = found["files"]
        if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
            return None
        return set(files)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _protected(path: pathlib.Path) -> str | None:
    """Why `path` must never be replaced, or None."""
    real = path.resolve()
    cwd = pathlib.Path.cwd().resolve()
    if real == pathlib.Path(real.anchor):
        return "is the root folder"
    if real == pathlib.Path.home().resolve():
        return "is your home folder"
    if real == cwd:
        return "is the current folder"
    if cwd.is_relative_to(real):
        return "contains the current folder"
    return None


def check_replaceable(path: pathlib.Path) -> None:
    """Raise RunFolderError unless `path` is a gflow run folder holding only files gflow wrote."""
    listed = read_manifest(path)
    if listed is None:
        raise RunFolderError(
            f"--overwrite refused: {path} is not a gflow run folder (no readable {MANIFEST}); "
            "it replaces only folders written by gflow run or demo, so choose a new --out"
        )
    foreign = sorted(p.name for p in path.iterdir() if p.name not in listed or p.is_symlink() or p.is_dir())
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise RunFolderError(
            f"--overwrite refused: {path} holds files gflow did not write ({shown}); "
            "move them out, or choose a new --out"
        )


def target_folder(out, name: str, *, overwrite: bool = False) -> pathlib.Path:
    """The run folder to write: `out` (absent, empty, or a replaceable run folder with `overwrite`),
    else a new `gflow-runs/NAME-<timestamp>`. Checks only; nothing is created or deleted."""
    import datetime

    if out is None:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        base = pathlib.Path("gflow-runs") / f"{name}-{stamp}"
        path, i = base, 1
        while path.exists() or path.is_symlink():
            path, i = base.with_name(f"{base.name}-{i}"), i + 1
        return path
    path = pathlib.Path(out)
    if path.is_symlink():
        raise RunFolderError(f"output folder {path} is a symbolic link; give a real folder with --out")
    if path.exists() and not path.is_dir():
        raise RunFolderError(f"output path {path} is a file; choose a folder with --out")
    why = _protected(path)
    if why is not None:
        raise RunFolderError(f"output folder {path} {why}; give a new subfolder with --out, e.g. --out runs/{name}")
    if path.exists() and any(path.iterdir()):
        if not overwrite:
            raise RunFolderError(
                f"output folder {path} exists and is not empty; choose a new --out (or --overwrite to replace it)"
            )
        check_replaceable(path)
    return path


@contextlib.contextmanager
def staged_folder(target: pathlib.Path) -> Iterator[pathlib.Path]:
    """Yield a new temporary sibling of `target` to write into; on success it replaces `target`.

    If the body raises, the sibling is removed and `target` is left untouched. The old `target`
    (checked by `target_folder`) is deleted only after the new folder is in place, and then only
    the files its manifest lists.
    """
    target = pathlib.Path(target)
    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        stage = pathlib.Path(tempfile.mkdtemp(dir=parent, prefix=f".{target.name}.gflow-new-"))
    except OSError as err:
        raise RunFolderError(f"cannot write to output folder {parent}: {err.strerror}; choose another --out") from None
    os.chmod(stage, 0o777 & ~_umask())
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    if not target.exists():
        os.rename(stage, target)
        return
    old = pathlib.Path(tempfile.mkdtemp(dir=parent, prefix=f".{target.name}.gflow-old-"))
    os.rename(target, old / "run")
    os.rename(stage, target)
    if not _remove_old_run(old / "run"):
        import sys

        print(
            f"gflow: note: files that appeared in {target} during the run were kept in {old / 'run'}",
            file=sys.stderr,
        )
        return
    old.rmdir()


def _remove_old_run(folder: pathlib.Path) -> bool:
    """Delete a replaced run folder: only the files its manifest lists (it was checked to hold no
    others). Returns False, deleting nothing more, if anything else appeared in it meanwhile."""
    listed = read_manifest(folder) or set()
    for entry in folder.iterdir():
        if entry.name in listed and not entry.is_dir() and not entry.is_symlink():
            entry.unlink()
    try:
        folder.rmdir()
    except OSError:
        return False
    return True
