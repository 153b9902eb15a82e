"""Patch sampling and augmentation for sparse-label training.

One spatial resampling per patch: rotation (any angle in the axial plane, a small tilt out of it), scaling,
a coarse elastic field and flips are composed into a single sampling grid, applied to the image with linear
interpolation and to the label map with nearest neighbour. Voxels that come from outside the volume get
the ignore value in the label map, never background (background would teach "no cord here" where nobody
looked). Intensity augmentations are MONAI array transforms applied to the image patch afterwards.

All randomness comes from a ``numpy.random.Generator`` passed in; MONAI transforms are seeded from it.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as functional

from mousecord.labels import IGNORE_VALUE, Label
from mousecord.training.config import AugmentationConfig, TrainConfig
from mousecord.training.data import TrainingCase

_ELASTIC_GRID = (4, 5, 5)


@dataclass(frozen=True)
class SpatialParams:
    """A sampled spatial transform: patch offset (z, y, x) -> source offset = matrix @ offset + field."""

    matrix: np.ndarray  # (3, 3)
    elastic_field: np.ndarray | None  # (3, *_ELASTIC_GRID) voxels, or None


def sample_center(
    case: TrainingCase,
    patch_size_vox: Sequence[int],
    rng: np.random.Generator,
    *,
    annotated_fraction: float,
) -> np.ndarray:
    """(3,) integer patch centre (z, y, x): an annotated slice near the cord, or anywhere.

    With probability ``annotated_fraction`` the centre is a random GM/WM voxel of a random annotated slice
    (shifted in-plane by up to a quarter patch), otherwise a uniform voxel of the volume.
    """
    shape = np.asarray(case.label_map.shape)
    annotated = case.labelled_slice_indices
    if len(annotated) and rng.random() < annotated_fraction:
        z = int(rng.choice(annotated))
        cord = np.argwhere((case.label_map[z] == Label.GM) | (case.label_map[z] == Label.WM))
        if len(cord):
            y, x = cord[rng.integers(len(cord))]
            jitter = rng.integers(
                -(np.asarray(patch_size_vox[1:]) // 4), np.asarray(patch_size_vox[1:]) // 4 + 1
            )
            y, x = np.clip(np.array([y, x]) + jitter, 0, shape[1:] - 1)
        else:
            y, x = rng.integers(0, shape[1:])
        return np.array([z, y, x])
    return rng.integers(0, shape)


def sample_spatial(augmentation: AugmentationConfig, rng: np.random.Generator) -> SpatialParams:
    """Draw rotation, scaling, flips and an elastic field (each with its probability)."""
    matrix = np.eye(3)
    if not augmentation.enabled:
        return SpatialParams(matrix, None)
    if rng.random() < augmentation.rotation_probability:
        tilt = math.radians(augmentation.tilt_max_degrees)
        matrix = _rotation(rng.uniform(-math.pi, math.pi), rng.uniform(-tilt, tilt), rng.uniform(-tilt, tilt))
    if rng.random() < augmentation.scaling_probability:
        matrix = matrix / rng.uniform(*augmentation.scaling_range)  # zoom > 1 samples a smaller region
    flips = np.where(rng.random(3) < augmentation.flip_probability, -1.0, 1.0)
    matrix = matrix @ np.diag(flips)
    field = None
    if rng.random() < augmentation.elastic_probability:
        magnitude = augmentation.elastic_magnitude_vox
        field = rng.uniform(-magnitude, magnitude, size=(3, *_ELASTIC_GRID))
    return SpatialParams(matrix, field)


def _rotation(axial: float, tilt_y: float, tilt_x: float) -> np.ndarray:
    """Rotation in (z, y, x) coordinates: ``axial`` about z (in-plane), small tilts about y and x."""
    cos, sin = math.cos(axial), math.sin(axial)
    about_z = np.array([[1, 0, 0], [0, cos, -sin], [0, sin, cos]])
    cos, sin = math.cos(tilt_y), math.sin(tilt_y)
    about_y = np.array([[cos, 0, sin], [0, 1, 0], [-sin, 0, cos]])
    cos, sin = math.cos(tilt_x), math.sin(tilt_x)
    about_x = np.array([[cos, -sin, 0], [sin, cos, 0], [0, 0, 1]])
    return about_z @ about_y @ about_x


def extract_patch(
    case: TrainingCase,
    center: Sequence[float] | np.ndarray,
    patch_size_vox: Sequence[int],
    params: SpatialParams,
) -> tuple[np.ndarray, np.ndarray]:
    """Resample a (D, H, W) patch around ``center`` through ``params``.

    Returns:
        image (D, H, W) float32 (0 outside the volume) and label map (D, H, W) uint8 (IGNORE_VALUE outside).
    """
    size = tuple(int(n) for n in patch_size_vox)
    matrix = params.matrix.astype(np.float32)
    center = np.asarray(center, dtype=np.float32)
    # Element-wise rather than `offsets @ matrix.T`: a BLAS call would start its own threads in every
    # DataLoader worker and oversubscribe the cores many times over.
    offsets = _patch_offsets(size)
    source = center + offsets[..., 0:1] * matrix[:, 0]
    source += offsets[..., 1:2] * matrix[:, 1]
    source += offsets[..., 2:3] * matrix[:, 2]
    # The window read from the volume: the transformed patch corners, widened by the largest elastic shift
    # (trilinear upsampling of the coarse field never exceeds it). Far cheaper than a min/max over all voxels.
    corners = np.array(list(itertools.product(*[(-(n - 1) / 2, (n - 1) / 2) for n in size])), np.float32)
    corners = corners @ matrix.T + center
    reach = 0.0
    if params.elastic_field is not None:
        field = functional.interpolate(
            torch.from_numpy(params.elastic_field[None]).float(),
            size=size,
            mode="trilinear",
            align_corners=True,
        )[0]
        source += field.permute(1, 2, 3, 0).numpy()
        reach = float(np.abs(params.elastic_field).max())
    shape = np.asarray(case.image.shape)
    low = np.clip(np.floor(corners.min(axis=0) - reach).astype(int) - 1, 0, shape - 1)
    high = np.clip(np.ceil(corners.max(axis=0) + reach).astype(int) + 2, low + 1, shape)
    window = tuple(slice(a, b) for a, b in zip(low, high, strict=True))
    # One voxel of "outside" around the window, so even a one-slice volume has a well-defined grid.
    image = torch.from_numpy(np.pad(case.image[window], 1))[None, None]
    labels = torch.from_numpy(np.pad(case.label_map[window].astype(np.float32) + 1, 1))[
        None, None
    ]  # 0 = outside
    origin, extent = (low - 1).astype(np.float32), (high - low + 1).astype(np.float32)
    grid = (source - origin) * (2 / extent) - 1
    grid = torch.from_numpy(np.ascontiguousarray(grid[..., ::-1]))[None]  # grid_sample wants (x, y, z)
    image_patch = functional.grid_sample(
        image, grid, mode="bilinear", padding_mode="zeros", align_corners=True
    )
    label_patch = functional.grid_sample(
        labels, grid, mode="nearest", padding_mode="zeros", align_corners=True
    )
    label_patch = label_patch[0, 0].round().numpy().astype(np.int16) - 1
    label_patch[label_patch < 0] = IGNORE_VALUE
    return image_patch[0, 0].numpy(), label_patch.astype(np.uint8)


@functools.lru_cache(maxsize=8)
def _patch_offsets(size: tuple[int, int, int]) -> np.ndarray:
    """(D, H, W, 3) float32 offset of every patch voxel from the patch centre (read-only, cached)."""
    offsets = np.stack(
        np.meshgrid(*[np.arange(n, dtype=np.float32) - (n - 1) / 2 for n in size], indexing="ij"), axis=-1
    )
    offsets.flags.writeable = False
    return offsets


def intensity_transforms(augmentation: AugmentationConfig, rng: np.random.Generator) -> list:
    """MONAI array transforms (gamma, bias field, noise, blur), each seeded from ``rng``."""
    from monai.transforms import RandAdjustContrast, RandBiasField, RandGaussianNoise, RandGaussianSmooth

    if not augmentation.enabled:
        return []
    transforms = [
        RandAdjustContrast(
            prob=augmentation.gamma_probability, gamma=augmentation.gamma_range, retain_stats=True
        ),
        RandBiasField(prob=augmentation.bias_field_probability, coeff_range=(0.0, 0.3)),
        RandGaussianNoise(prob=augmentation.noise_probability, std=augmentation.noise_std),
        RandGaussianSmooth(
            prob=augmentation.blur_probability, sigma_x=(0.5, 1.0), sigma_y=(0.5, 1.0), sigma_z=(0.5, 1.0)
        ),
    ]
    for transform in transforms:
        transform.set_random_state(seed=int(rng.integers(2**31)))
    return transforms


def augment_intensity(
    image: np.ndarray,
    label_map: np.ndarray,
    augmentation: AugmentationConfig,
    transforms: list,
    rng: np.random.Generator,
) -> np.ndarray:
    """Random per-label intensities (optional), MONAI transforms, contrast inversion; (D, H, W) float32."""
    image = np.asarray(image, dtype=np.float32)
    if augmentation.enabled and rng.random() < augmentation.random_label_intensity_probability:
        image = random_label_intensities(image, label_map, rng)
    result = image[None]
    for transform in transforms:
        result = transform(result)
    result = np.asarray(result[0], dtype=np.float32)
    if augmentation.enabled and rng.random() < augmentation.inversion_probability:
        result = -result
    return result


def random_label_intensities(
    image: np.ndarray, label_map: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """SynthSeg-style: each known label gets a random mean and texture; ignored voxels keep their intensity.

    A voxel is recoloured only where the label map says what it is, so sparse labels leave unannotated
    slices as they were.
    """
    result = image.copy()
    for label in Label:
        where = label_map == label
        if where.any():
            result[where] = rng.normal(rng.uniform(-2, 2), rng.uniform(0.05, 0.4), size=int(where.sum()))
    return result


def make_batch(
    cases: tuple[TrainingCase, ...], config: TrainConfig, rng: np.random.Generator, transforms: list
) -> tuple[torch.Tensor, torch.Tensor]:
    """One training batch: images (B, 1, D, H, W) float32 and targets (B, D, H, W) int64."""
    images, targets = [], []
    for _ in range(config.batch_size):
        case = cases[int(rng.integers(len(cases)))]
        center = sample_center(
            case, config.patch_size_vox, rng, annotated_fraction=config.annotated_patch_fraction
        )
        params = sample_spatial(config.augmentation, rng)
        image, label_map = extract_patch(case, center, config.patch_size_vox, params)
        images.append(augment_intensity(image, label_map, config.augmentation, transforms, rng))
        targets.append(label_map)
    return torch.from_numpy(np.stack(images)[:, None]), torch.from_numpy(np.stack(targets).astype(np.int64))


__all__ = [
    "SpatialParams",
    "augment_intensity",
    "extract_patch",
    "intensity_transforms",
    "make_batch",
    "random_label_intensities",
    "sample_center",
    "sample_spatial",
]
