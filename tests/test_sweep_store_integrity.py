"""A sweep store shows damage instead of returning it as data (issue 15): checksums, member ranges,
explicit result codes, the problem factory's fingerprint, writability before compute."""

import json
import os
import shutil
import threading

import numpy as np
import pytest
import xarray as xr
import zarr

import gflow
from gflow import _sweep

SWEEP = dict(lam=[0.05, 0.2], seed=[0], t1=2.0, solver="tsit5", saveat=8, chunk_size=1, progress=False)


def _problem(key):
    return gflow.tasks.diagonal_regression(key, n=4, d=8, k=2, alpha=0.5, parameterisation="uv")


@pytest.fixture
def store(tmp_path):
    path = tmp_path / "store"
    first = gflow.sweep(_problem, store=path, **SWEEP)
    return path, first


def _resume_after(path, first, capsys, expect_in_stderr):
    with pytest.raises(gflow.SweepStoreError, match=expect_in_stderr):
        gflow.load_sweep(path)
    again = gflow.sweep(_problem, store=path, **SWEEP)
    err = capsys.readouterr().err
    assert expect_in_stderr.split(":")[0] in err and "recomputing it" in err
    assert again.attrs["chunks_damaged_and_recomputed"] == 1 and again.attrs["chunks_loaded"] == 1
    xr.testing.assert_identical(again.drop_attrs(), first.drop_attrs())
    xr.testing.assert_identical(gflow.load_sweep(path).drop_attrs(), first.drop_attrs())


def test_result_codes_are_written_with_a_fill_value_that_is_not_success(store):
    path, _ = store
    result = zarr.open_array(path / "chunk-00000.zarr" / "result", mode="r")
    assert result.fill_value == _sweep._NEVER_WRITTEN != int(gflow.RESULTS.successful._value)
    assert list((path / "chunk-00000.zarr" / "result").rglob("c/*"))  # the chunk file exists on disk


def test_a_deleted_result_chunk_is_found_and_recomputed(store, capsys):
    path, first = store
    shutil.rmtree(path / "chunk-00001.zarr" / "result" / "c")
    _resume_after(path, first, capsys, "chunk-00001: result differs")


def test_a_deleted_data_chunk_is_found_and_recomputed(store, capsys):
    path, first = store
    shutil.rmtree(path / "chunk-00000.zarr" / "test_loss" / "c")
    _resume_after(path, first, capsys, "chunk-00000: test_loss differs")


def test_a_flipped_bit_is_found_and_recomputed(store, capsys):
    path, first = store
    (data,) = [p for p in (path / "chunk-00000.zarr" / "train_loss" / "c").rglob("*") if p.is_file()]
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0x10
    data.write_bytes(bytes(raw))
    _resume_after(path, first, capsys, "chunk-00000:")


def test_swapped_chunk_folders_are_not_relabelled(store, capsys):
    path, first = store
    os.rename(path / "chunk-00000.zarr", path / "tmp.zarr")
    os.rename(path / "chunk-00001.zarr", path / "chunk-00000.zarr")
    os.rename(path / "tmp.zarr", path / "chunk-00001.zarr")
    with pytest.raises(gflow.SweepStoreError, match=r"chunk-00000: it holds other members than \[0, 1\)"):
        gflow.load_sweep(path)
    again = gflow.sweep(_problem, store=path, **SWEEP)
    assert again.attrs["chunks_damaged_and_recomputed"] == 2
    xr.testing.assert_identical(again.drop_attrs(), first.drop_attrs())


def test_an_edited_marker_is_found(store):
    path, _ = store
    marker = path / "chunk-00001.done"
    marker.write_text(json.dumps({**json.loads(marker.read_text()), "members": [0, 1]}))
    with pytest.raises(gflow.SweepStoreError, match=r"chunk-00001: its marker is for members \[0, 1\]"):
        gflow.load_sweep(path)


def _closure_factory(alpha):
    def make(key):
        return gflow.tasks.diagonal_regression(key, n=4, d=8, k=2, alpha=alpha, parameterisation="uv")

    return make


def _compiled_factory(body_alpha):
    # Two functions with the same module and name whose bodies differ, as after editing a file.
    namespace = {"__name__": "user_experiment", "gflow": gflow}
    exec(
        "def make(key):\n"
        f"    return gflow.tasks.diagonal_regression(key, n=4, d=8, k=2, alpha={body_alpha}, parameterisation='uv')\n",
        namespace,
    )
    return namespace["make"]


@pytest.mark.parametrize("build", [_closure_factory, _compiled_factory], ids=["closure value", "function body"])
def test_a_changed_problem_factory_does_not_resume_into_the_store(tmp_path, build):
    first, second = build(0.5), build(0.7)
    assert first.__qualname__ == second.__qualname__ and first.__module__ == second.__module__
    assert _sweep.problem_fingerprint(first)[0] != _sweep.problem_fingerprint(second)[0]
    assert _sweep.problem_fingerprint(first)[0] == _sweep.problem_fingerprint(build(0.5))[0]
    gflow.sweep(first, store=tmp_path / "s", **{**SWEEP, "lam": [0.05]})
    with pytest.raises(gflow.SweepStoreError, match=r"differs in: problem\) \(make_problem's code"):
        gflow.sweep(second, store=tmp_path / "s", **{**SWEEP, "lam": [0.05]})


def test_presets_and_library_factories_have_stable_fingerprints():
    from gflow.experiments import EXPERIMENTS

    for exp in EXPERIMENTS.values():
        a, why = _sweep.problem_fingerprint(exp.make_problem())
        assert a is not None, why
        assert a == _sweep.problem_fingerprint(exp.make_problem())[0]
    assert _sweep.problem_fingerprint(EXPERIMENTS["diagonal_uv"].make_problem())[0] != a


def test_an_unfingerprintable_factory_needs_a_store_key_to_resume(tmp_path):
    lock = threading.Lock()  # an object whose content gflow cannot hash

    def make(key):
        with lock:
            return _problem(key)

    fingerprint, why = _sweep.problem_fingerprint(make)
    assert fingerprint is None and "lock" in why
    kwargs = {**SWEEP, "lam": [0.05]}
    gflow.sweep(make, store=tmp_path / "a", **kwargs)
    with pytest.raises(gflow.SweepStoreError, match=r"cannot be fingerprinted .*pass store_key="):
        gflow.sweep(make, store=tmp_path / "a", **kwargs)
    first = gflow.sweep(make, store=tmp_path / "b", store_key="lr-v1", **kwargs)
    again = gflow.sweep(make, store=tmp_path / "b", store_key="lr-v1", **kwargs)
    assert again.attrs["chunks_loaded"] == 1
    xr.testing.assert_identical(again.drop_attrs(), first.drop_attrs())
    with pytest.raises(gflow.SweepStoreError, match="differs in: problem"):
        gflow.sweep(make, store=tmp_path / "b", store_key="lr-v2", **kwargs)


def test_an_unwritable_store_fails_before_any_compute(tmp_path, monkeypatch):
    def no_compute(*args, **kwargs):
        raise AssertionError("computed before checking the store")

    monkeypatch.setattr(_sweep, "_run_chunk", no_compute)

    def read_only(*args, **kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(_sweep.tempfile, "TemporaryFile", read_only)
    path = tmp_path / "store"
    path.mkdir()
    (path / "config.json").write_text("{}")  # made on a writable system, now mounted read-only
    with pytest.raises(gflow.SweepStoreError, match="store format"):
        gflow.sweep(_problem, store=path, **SWEEP)
    shutil.rmtree(path)
    with pytest.raises(gflow.SweepStoreError, match=r"is not writable \(Read-only file system\)"):
        gflow.sweep(_problem, store=path, **SWEEP)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_store_folder_fails_before_any_compute(store, monkeypatch):
    path, _ = store
    (path / "chunk-00001.done").unlink()
    monkeypatch.setattr(_sweep, "_run_chunk", lambda *a, **k: pytest.fail("computed before checking the store"))
    os.chmod(path, 0o500)
    try:
        with pytest.raises(gflow.SweepStoreError, match="is not writable"):
            gflow.sweep(_problem, store=path, **SWEEP)
    finally:
        os.chmod(path, 0o700)


def test_a_write_failure_mid_sweep_keeps_finished_chunks(tmp_path, monkeypatch):
    real = xr.Dataset.to_zarr
    calls = []

    def full_disk(self, store, *args, **kwargs):
        calls.append(store)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real(self, store, *args, **kwargs)

    monkeypatch.setattr(xr.Dataset, "to_zarr", full_disk)
    path = tmp_path / "store"
    with pytest.raises(gflow.SweepStoreError, match=r"cannot write chunk-00001 .*No space left.*rerun the same sweep"):
        gflow.sweep(_problem, store=path, **SWEEP)
    monkeypatch.setattr(xr.Dataset, "to_zarr", real)
    resumed = gflow.sweep(_problem, store=path, **SWEEP)
    assert resumed.attrs["chunks_loaded"] == 1 and resumed.attrs["chunks_computed"] == 1


@pytest.mark.parametrize(
    "grid, message",
    [
        ({"seed": [2**32]}, r"seed values must be integers in \[0, 2\*\*32\)"),
        ({"seed": [-1]}, r"seed values must be integers in \[0, 2\*\*32\)"),
        ({"seed": [1.5]}, r"seed values must be integers"),
        ({"seed": [True]}, r"seed values must be integers"),
        ({"lam": ["a"]}, r"lam values must be real numbers, got \['a'\]"),
        ({"lam": [1j]}, r"lam values must be real numbers"),
        ({"lam": [None]}, r"lam values must be real numbers"),
        ({"devices": []}, r"devices is empty"),
        ({"store_key": ""}, r"store_key must be a non-empty string"),
    ],
)
def test_bad_sweep_arguments_are_refused_in_one_line(tmp_path, grid, message):
    with pytest.raises(gflow.GflowError, match=message) as info:
        gflow.sweep(_problem, **{**SWEEP, **grid, "store": tmp_path / "s"})
    assert "\n" not in str(info.value)
    assert not (tmp_path / "s").exists()


def test_seed_values_that_were_accepted_still_give_the_same_members():
    ds = gflow.sweep(_problem, **{**SWEEP, "lam": [0.05], "seed": np.array([0, 2**32 - 1], dtype=np.uint32)})
    assert list(ds["seed"].values) == [0, 2**32 - 1]
    assert not np.allclose(ds["train_loss"].isel(seed=0), ds["train_loss"].isel(seed=1))
