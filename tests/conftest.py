"""Shared fixtures: paths to the real files beside the repository, temporary outputs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
REAL_HEADERS = SHARED_DATA / "real-headers"
REAL_HEADER_FILES = sorted(REAL_HEADERS.glob("*.nii.gz"))


def pytest_configure(config: pytest.Config) -> None:
    # torch by default: exact results and no conversion per predictor; the OpenVINO tests ask for it by
    # name, and MOUSECORD_BACKEND=openvino runs the whole suite on OpenVINO.
    os.environ.setdefault("MOUSECORD_BACKEND", "torch")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def real_headers(shared_data: Path) -> list[Path]:
    files = sorted((shared_data / "real-headers").glob("*.nii.gz"))
    assert files, "real-headers folder is empty"
    return files
