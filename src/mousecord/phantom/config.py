"""Configuration and result types of the phantom."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from mousecord.errors import ConfigError
from mousecord.io import Volume
from mousecord.options import PHANTOM_CONTRASTS

#: Contrast presets of :func:`~mousecord.phantom.generate_phantom`.
CONTRASTS: tuple[str, ...] = PHANTOM_CONTRASTS

#: The widest mouse cord (3.2 mm) plus a rim of surroundings must fit in the in-plane field of view.
MIN_FIELD_OF_VIEW_MM = 4.0
#: In-plane voxel sizes (mm) for which a cord several voxels wide can be drawn.
VOXEL_SIZE_RANGE_MM: tuple[float, float] = (0.005, 0.25)
#: Thickest slice (mm): thick-slice acquisitions; slices are sampled at their centres (no partial volume
#: across a slice).
MAX_SLICE_THICKNESS_MM = 1.0
#: Largest volume generated, to keep memory bounded (about 2 GB at this size).
MAX_VOXELS = 60_000_000


@dataclass(frozen=True)
class PhantomConfig:
    """Everything that shapes a phantom; the random draws come from the ``rng`` of the generator.

    Attributes:
        shape_vox: (x, y, z) grid size; z runs along the cord.
        voxel_size_mm: (x, y, z) voxel size. Anatomy is drawn in mm, so it keeps its physical size.
        contrast: "t1w" (realistic preset: GM 1.1-1.4x WM), "gm-dark" (the same with GM 0.6-0.9x WM) or
            "random" (SynthSeg-style random tissue means).
        snr_range: (low, high) of the WM-mean-to-noise-sigma ratio, drawn uniformly.
        blur_fwhm_vox_range: (low, high) Gaussian blur FWHM in voxels.
        bias_variation_range: (low, high) in-plane bias field variation (max/min - 1).
        gibbs_ringing: truncate k-space in-plane (ringing of a few % at sharp edges).
        air_bubbles: add 1-3 air bubbles (dark voids with blooming) next to the cord.
        damaged_ends: cut one or both chunk ends obliquely (no tissue, no labels) and damage the tissue there.
    """

    shape_vox: tuple[int, int, int] = (200, 200, 500)
    voxel_size_mm: tuple[float, float, float] = (0.05, 0.05, 0.05)
    contrast: str = "t1w"
    snr_range: tuple[float, float] = (10.0, 40.0)
    blur_fwhm_vox_range: tuple[float, float] = (1.0, 1.5)
    bias_variation_range: tuple[float, float] = (0.2, 0.6)
    gibbs_ringing: bool = True
    air_bubbles: bool = False
    damaged_ends: bool = False

    def __post_init__(self) -> None:
        shape = _as_tuple(self.shape_vox, "shape_vox", 3)
        if not all(float(size).is_integer() and size >= 1 for size in shape):
            raise ConfigError(f"shape_vox must be three positive integers, got {list(self.shape_vox)}")
        shape = tuple(int(size) for size in shape)
        voxel = _as_tuple(self.voxel_size_mm, "voxel_size_mm", 3)
        low, high = VOXEL_SIZE_RANGE_MM
        if not all(np.isfinite(size) and size > 0 for size in voxel):
            raise ConfigError(
                f"voxel_size_mm must be three positive numbers in mm, got {list(self.voxel_size_mm)}"
            )
        if not (all(low <= size <= high for size in voxel[:2]) and low <= voxel[2] <= MAX_SLICE_THICKNESS_MM):
            raise ConfigError(
                f"voxel_size_mm {list(voxel)} is outside {low}-{high} mm in-plane or {low}-"
                f"{MAX_SLICE_THICKNESS_MM} mm across slices, too coarse or fine for a mouse cord"
            )
        field_mm = [shape[axis] * voxel[axis] for axis in range(2)]
        if min(field_mm) < MIN_FIELD_OF_VIEW_MM:
            raise ConfigError(
                f"shape_vox {list(shape)} at {list(voxel)} mm gives a "
                f"{field_mm[0]:.2f} x {field_mm[1]:.2f} mm "
                f"field of view in-plane; the cord needs at least {MIN_FIELD_OF_VIEW_MM} mm "
                f"(e.g. {int(np.ceil(MIN_FIELD_OF_VIEW_MM / voxel[0]))} voxels at {voxel[0]} mm)"
            )
        if int(np.prod(shape)) > MAX_VOXELS:
            raise ConfigError(
                f"shape_vox {list(shape)} has {int(np.prod(shape))} voxels, "
                f"more than the {MAX_VOXELS} allowed"
            )
        if self.contrast not in CONTRASTS:
            raise ConfigError(f"unknown contrast {self.contrast!r}; choose one of {', '.join(CONTRASTS)}")
        ranges = {
            "snr_range": (self.snr_range, 0.0, np.inf),
            "blur_fwhm_vox_range": (self.blur_fwhm_vox_range, 0.0, 5.0),
            "bias_variation_range": (self.bias_variation_range, 0.0, 2.0),
        }
        checked = {}
        for name, (value, minimum, maximum) in ranges.items():
            pair = _as_tuple(value, name, 2)
            exclusive = name == "snr_range"
            if not (
                pair[0] <= pair[1]
                and (pair[0] > minimum if exclusive else pair[0] >= minimum)
                and pair[1] <= maximum
            ):
                raise ConfigError(
                    f"{name} must be (low, high) with {minimum} {'<' if exclusive else '<='} low <= high "
                    f"<= {maximum}, got {list(pair)}"
                )
            checked[name] = pair
        object.__setattr__(self, "shape_vox", shape)
        object.__setattr__(self, "voxel_size_mm", voxel)
        for name, pair in checked.items():
            object.__setattr__(self, name, pair)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready copy (tuples become lists)."""
        return {
            key: list(value) if isinstance(value, tuple) else value
            for key, value in dataclasses.asdict(self).items()
        }


def _as_tuple(value: Any, name: str, length: int) -> tuple[float, ...]:
    try:
        numbers = tuple(float(item) for item in value)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{name} must be {length} numbers, got {value!r}") from error
    if len(numbers) != length:
        raise ConfigError(f"{name} must be {length} numbers, got {len(numbers)}: {list(numbers)}")
    return numbers


@dataclass(frozen=True, eq=False)
class Phantom:
    """A synthetic volume, its exact labels and every sampled parameter.

    Attributes:
        image: float32 intensities, canonical RAS, the cord along the last axis.
        label_map: uint8 labels on the same grid (0 background, 1 GM, 2 WM).
        parameters: JSON-serialisable record of the configuration and of everything drawn.
    """

    image: Volume
    label_map: Volume
    parameters: dict[str, Any]
