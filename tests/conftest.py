"""Shared fixtures: paths to the real files beside the repository, temporary outputs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
REAL_HEADERS = SHARED_DATA / "real-headers"
REAL_HEADER_FILES = sorted(REAL_HEADERS.glob("*.nii.gz"))


# In one process, PyTorch training after OpenVINO inference has crashed (segfault) in the test suite: by
# default the tests run the network on torch, and the tests of the OpenVINO backend itself run last.
OPENVINO_TEST_FILES = ("test_backends.py", "test_nnunet_equivalence.py")


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("MOUSECORD_BACKEND", "torch")  # MOUSECORD_BACKEND=openvino runs all on OpenVINO


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list) -> None:
    items.sort(key=lambda item: item.path.name in OPENVINO_TEST_FILES)  # stable: order kept otherwise


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
