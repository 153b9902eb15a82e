"""Shared fixtures: the small real files kept in ``tests/data`` (each folder has a README and licence)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
TEST_DATA = REPO_ROOT / "tests" / "data"
REAL_HEADERS = TEST_DATA / "real-headers"
REAL_HEADER_FILES = sorted(REAL_HEADERS.glob("*.nii.gz"))


def pytest_configure(config: pytest.Config) -> None:
    # torch by default: exact results and no conversion per predictor; the OpenVINO tests ask for it by
    # name, and MOUSECORD_BACKEND=openvino runs the whole suite on OpenVINO.
    os.environ.setdefault("MOUSECORD_BACKEND", "torch")


@pytest.fixture(scope="session")
def test_data() -> Path:
    return TEST_DATA


@pytest.fixture(scope="session")
def real_headers() -> list[Path]:
    assert len(REAL_HEADER_FILES) == 8, (
        f"tests/data/real-headers should hold 8 NIfTI files: {REAL_HEADER_FILES}"
    )
    return REAL_HEADER_FILES
