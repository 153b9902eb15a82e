"""phantom_dataset: short chunks inside one spinal level, and nothing left behind on error."""

from __future__ import annotations

import json
import multiprocessing
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from mousecord.phantom import Phantom, PhantomConfig, phantom_dataset
from mousecord.phantom import dataset as dataset_module

SHORT = PhantomConfig(shape_vox=(96, 96, 8))  # 0.4 mm of cord: shorter than any spinal segment


def test_chunk_within_one_level_is_written(tmp_path: Path) -> None:
    root = tmp_path / "dataset"
    images = phantom_dataset(root, n_subjects=1, chunks_per_subject=1, config=SHORT, seed=1)
    sidecar = json.loads(images[0].with_name("sub-01_chunk-1_T1w.json").read_text())
    assert len(sidecar["levels_covered"]) == 1  # the case this test is about
    assert images[0].is_file()


@pytest.mark.parametrize("root_exists", [False, True])
def test_error_mid_dataset_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, root_exists: bool
) -> None:
    root = tmp_path / "dataset"
    if root_exists:
        root.mkdir()
    real_generate = dataset_module.generate_phantom
    calls = []

    def failing_generate(config: PhantomConfig, *, rng: np.random.Generator) -> Phantom:
        calls.append(1)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real_generate(config, rng=rng)

    monkeypatch.setattr(dataset_module, "generate_phantom", failing_generate)
    with pytest.raises(OSError, match="No space left"):
        phantom_dataset(root, n_subjects=2, chunks_per_subject=1, config=SHORT, seed=0)
    assert len(calls) == 2  # the first case was written before the failure
    if root_exists:
        assert list(root.iterdir()) == []
    else:
        assert not root.exists()


@pytest.mark.skipif(
    multiprocessing.get_start_method() != "fork", reason="the patched generator reaches forked workers only"
)
def test_a_failing_worker_cancels_the_queued_cases(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    started = tmp_path / "started"
    started.mkdir()

    def failing_generate(config: PhantomConfig, *, rng: np.random.Generator) -> Phantom:
        (started / str(rng.integers(1 << 30))).touch()  # workers are separate processes: count by files
        time.sleep(0.3)  # time for the first failure to reach the caller while cases are still queued
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(dataset_module, "generate_phantom", failing_generate)
    with pytest.raises(OSError, match="No space left"):
        phantom_dataset(tmp_path / "dataset", n_subjects=12, chunks_per_subject=1, config=SHORT, workers=2)
    assert len(list(started.iterdir())) < 12  # without cancelling, all 12 would run before the error
    assert not (tmp_path / "dataset").exists()


def test_worker_processes_write_the_same_dataset(tmp_path: Path) -> None:
    """Each case's seed is spawned from the dataset seed, so the number of workers changes nothing."""
    kwargs = dict(n_subjects=2, chunks_per_subject=2, config=SHORT, seed=5)
    serial = phantom_dataset(tmp_path / "serial", **kwargs)
    parallel = phantom_dataset(tmp_path / "parallel", workers=2, **kwargs)
    assert [path.relative_to(tmp_path / "parallel") for path in parallel] == [
        path.relative_to(tmp_path / "serial") for path in serial
    ]
    for one, other in zip(serial, parallel, strict=True):
        np.testing.assert_array_equal(
            np.asanyarray(nib.load(one).dataobj), np.asanyarray(nib.load(other).dataobj)
        )
    assert len({path.read_bytes() for path in serial}) == len(serial)  # cases differ from each other
