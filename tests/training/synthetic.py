"""A tiny synthetic cord generator for training and data-tool tests (independent of mousecord.phantom).

Canonical RAS volumes (x, y, z), z along the cord: an elliptic cord (WM) holding a butterfly of GM
(two lobes joined by a bar), in a dark background, with noise, a slow drift of the cord along z and a
random in-plane rotation per volume.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from mousecord.labels import Label

VOXEL_SIZE_MM = 0.05


def synthetic_case(shape=(48, 48, 40), *, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(image float32, label_map uint8), both (x, y, z)."""
    x, y = np.meshgrid(
        np.arange(shape[0]) - (shape[0] - 1) / 2, np.arange(shape[1]) - (shape[1] - 1) / 2, indexing="ij"
    )
    angle = rng.uniform(-0.5, 0.5)
    scale = rng.uniform(0.85, 1.15)
    label_map = np.zeros(shape, dtype=np.uint8)
    drift = rng.uniform(-3, 3, size=2)
    for z in range(shape[2]):
        centre = drift * np.sin(np.pi * z / shape[2])
        u = ((x - centre[0]) * np.cos(angle) + (y - centre[1]) * np.sin(angle)) / scale
        v = (-(x - centre[0]) * np.sin(angle) + (y - centre[1]) * np.cos(angle)) / scale
        cord = (u / 15) ** 2 + (v / 11) ** 2 < 1
        lobes = ((np.abs(u) - 5) / 3.5) ** 2 + (v / 7) ** 2 < 1
        bar = (np.abs(u) < 5) & (np.abs(v) < 2)
        label_map[..., z][cord] = Label.WM
        label_map[..., z][cord & (lobes | bar)] = Label.GM
    means = {Label.BACKGROUND: 0.15, Label.GM: 0.75, Label.WM: 0.45}
    image = np.zeros(shape, dtype=np.float32)
    for label, mean in means.items():
        image[label_map == label] = mean
    image = ndimage.gaussian_filter(image, 0.7) * rng.uniform(0.7, 1.3)
    image += rng.normal(0, 0.05, size=shape)
    return (image * 1000).astype(np.float32), label_map


def affine(voxel_size_mm: float = VOXEL_SIZE_MM) -> np.ndarray:
    matrix = np.diag([voxel_size_mm] * 3 + [1.0])
    matrix[:3, 3] = [-1.0, 2.0, 3.0]
    return matrix


def save(data: np.ndarray, path: Path, *, dtype=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = nib.Nifti1Image(np.asarray(data, dtype=dtype or data.dtype), affine())
    image.set_qform(affine(), 1)
    image.set_sform(affine(), 1)
    nib.save(image, path)
    return path


def write_bids_dataset(
    root: Path,
    *,
    n_subjects: int = 3,
    chunks_per_subject: int = 1,
    annotated_slices: int = 4,
    shape=(48, 48, 40),
    seed: int = 0,
    unlabelled: int = 0,
    mask_folder: str = "manual_masks",
) -> dict[Path, np.ndarray]:
    """Write a reference-layout dataset with sparse masks; returns image path -> dense truth (x, y, z)."""
    rng = np.random.default_rng(seed)
    truth = {}
    for subject in range(1, n_subjects + 1):
        for chunk in range(1, chunks_per_subject + 1):
            image, label_map = synthetic_case(shape, rng=rng)
            stem = f"sub-{subject:02d}_chunk-{chunk}_T1w"
            image_path = save(image, root / f"sub-{subject:02d}" / "anat" / f"{stem}.nii.gz")
            truth[image_path] = label_map
            if unlabelled and subject > n_subjects - unlabelled:
                continue
            slices = np.sort(rng.choice(shape[2], size=annotated_slices, replace=False))
            sparse = np.zeros_like(label_map)
            sparse[..., slices] = label_map[..., slices]
            mask_dir = root / "derivatives" / mask_folder / f"sub-{subject:02d}" / "anat"
            save((sparse == Label.GM).astype(np.float32), mask_dir / f"{stem}_label-GM_mask.nii.gz")
            save((sparse == Label.WM).astype(np.float32), mask_dir / f"{stem}_label-WM_mask.nii.gz")
    return truth
