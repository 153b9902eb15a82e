"""Memory safety: a prediction that would not fit is refused before resampling, with the estimate."""

from __future__ import annotations

import time
import warnings

import pytest

from mousecord.errors import ImageFormatError, MousecordWarning
from mousecord.inference import InferenceConfig, Predictor
from mousecord.inference.memory import available_memory_bytes, estimate_peak_bytes
from mousecord.io import load_nifti
from tests.conftest import REAL_HEADERS
from tests.inference.helpers import tiny_bundle


def test_the_estimate_matches_the_measured_default_model_peak():
    # 200 x 200 x 500 at 0.05 mm: 1.42 GB measured end to end; the estimate errs on the safe side
    assert 1.42e9 <= estimate_peak_bytes(200 * 200 * 500) <= 2.0e9
    assert estimate_peak_bytes(2 * 10**8) > 2 * estimate_peak_bytes(10**8) - estimate_peak_bytes(0) - 1


def test_available_memory_is_read_on_this_machine():
    available = available_memory_bytes()
    assert available is not None and 1e8 < available < 1e14


def test_a_scan_with_human_voxels_is_refused_before_resampling(monkeypatch):
    # t2s.nii.gz: 0.5 x 0.5 x 7.5 mm; a 3D model at 0.05 mm would resample it to ~357 million voxels
    monkeypatch.setattr("mousecord.inference.predictor.available_memory_bytes", lambda: 4 * 10**9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MousecordWarning)
        volume = load_nifti(REAL_HEADERS / "t2s.nii.gz").volume
    predictor = Predictor(
        tiny_bundle(spacing_mm=(0.05, 0.05, 0.05)), InferenceConfig(device="cpu", backend="torch")
    )
    started = time.perf_counter()
    with pytest.raises(
        ImageFormatError, match=r"needs about 2\d\.\d GB of memory \(35\d million voxels"
    ) as error:
        predictor.predict_volume(volume)
    assert time.perf_counter() - started < 5  # refused before any resampling
    message = str(error.value)
    assert "more than the 4.0 GB available" in message and "0.5 x 0.5 x 7.5 mm" in message
    assert "\n" not in message
