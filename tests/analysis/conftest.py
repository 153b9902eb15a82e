"""Synthetic cords with known geometry for the analysis tests."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from mousecord.labels import Label


def synthetic_cord(
    shape: tuple[int, int, int] = (80, 70, 60),
    voxel_size_mm: tuple[float, float, float] = (0.05, 0.05, 0.05),
    *,
    semi_axes_mm: tuple[float, float] = (1.25, 0.9),
    bend_mm: float = 0.4,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """A gently curved elliptical cord: WM ellipse with a GM butterfly (two horns and a bar); T1-like image.

    Returns:
        ``(image, label_map)``: (x, y, z) float32 intensities and uint8 0/1/2 labels.
    """
    sizes = np.asarray(voxel_size_mm)
    x, y, z = (np.arange(n) * size for n, size in zip(shape, sizes, strict=True))
    X, Y, Z = np.meshgrid(x, y, z, indexing="ij")
    length = z[-1] if z[-1] > 0 else 1.0
    centre_x = x[-1] / 2 + bend_mm * np.sin(np.pi * Z / length)
    centre_y = y[-1] / 2 + 0.2 * bend_mm * np.cos(np.pi * Z / length)
    u, v = X - centre_x, Y - centre_y
    a, b = semi_axes_mm
    cord = (u / a) ** 2 + (v / b) ** 2 <= 1
    horns = ((np.abs(u) - 0.35 * a) / (0.18 * a)) ** 2 + ((v + 0.1 * b) / (0.6 * b)) ** 2 <= 1
    bar = (np.abs(u) <= 0.4 * a) & (np.abs(v + 0.1 * b) <= 0.12 * b)
    label_map = np.zeros(shape, np.uint8)
    label_map[cord] = Label.WM
    label_map[cord & (horns | bar)] = Label.GM
    rng = np.random.default_rng(seed)
    intensity = np.array([0.25, 0.75, 0.45], np.float32)  # background, GM, WM
    image = intensity[label_map] + rng.normal(0, 0.04, shape).astype(np.float32)
    return image.astype(np.float32), label_map


def write_nifti(path: Path, data: np.ndarray, voxel_size_mm=(0.05, 0.05, 0.05)) -> Path:
    affine = np.diag([*voxel_size_mm, 1.0])
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(data), affine), path)
    return path


@pytest.fixture
def cord_files(tmp_path: Path) -> tuple[Path, Path]:
    image, label_map = synthetic_cord()
    return write_nifti(tmp_path / "sub-01_T1w.nii.gz", image), write_nifti(
        tmp_path / "sub-01_T1w_seg.nii.gz", label_map
    )
