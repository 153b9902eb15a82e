"""Reorientation between a file's axis order and mousecord's canonical RAS, built on nibabel.orientations."""

from __future__ import annotations

import nibabel.orientations as nio
import numpy as np

from mousecord.errors import OrientationError
from mousecord.io.volume import Volume

CANONICAL_AXCODES: tuple[str, str, str] = ("R", "A", "S")
#: Below this volume of the parallelepiped spanned by the affine's unit axis vectors (1 for orthogonal
#: axes), the axes are taken as parallel: nibabel still finds an orientation for such a matrix.
_MIN_AXES_VOLUME = 1e-6


def orientation_to(affine: np.ndarray, axcodes: tuple[str, ...] = CANONICAL_AXCODES) -> np.ndarray:
    """(3, 2) nibabel orientation transform from the array axes of ``affine`` to ``axcodes``.

    Raises:
        OrientationError: if the affine is singular or has no clear axis directions.
    """
    try:
        source = nio.io_orientation(affine)
    except Exception as error:  # nibabel raises several types for degenerate affines
        raise OrientationError(
            f"cannot determine orientation from affine {affine.tolist()}: {error}"
        ) from error
    if np.isnan(source).any():
        raise OrientationError(
            f"affine has a degenerate axis (zero voxel size?): {np.round(affine, 4).tolist()}"
        )
    if _axes_volume(affine) < _MIN_AXES_VOLUME:
        raise OrientationError(
            f"affine has (nearly) parallel axes, so voxels have no volume: {np.round(affine, 4).tolist()}"
        )
    return nio.ornt_transform(source, nio.axcodes2ornt(axcodes))


def _axes_volume(affine: np.ndarray) -> float:
    """|det| of the affine's 3 x 3 part with unit columns: 1 for orthogonal axes, 0 for parallel ones."""
    matrix = np.asarray(affine, dtype=np.float64)[:3, :3]
    matrix = matrix / np.abs(matrix).max()  # no overflow below, whatever the scale
    return float(abs(np.linalg.det(matrix / np.sqrt((matrix**2).sum(axis=0)))))


def reorient(volume: Volume, transform: np.ndarray) -> Volume:
    """Apply a nibabel orientation transform to array and affine together (like ``as_reoriented``)."""
    if np.array_equal(transform, nio.axcodes2ornt("RAS")):  # identity transform
        return volume
    data = nio.apply_orientation(volume.data, transform)
    affine = volume.affine @ nio.inv_ornt_aff(transform, volume.shape)
    return Volume(data, affine)


def to_canonical(volume: Volume) -> tuple[Volume, np.ndarray]:
    """Reorient to RAS. Returns the new volume and the transform that :func:`from_canonical` undoes."""
    transform = orientation_to(volume.affine, CANONICAL_AXCODES)
    return reorient(volume, transform), transform


def from_canonical(data: np.ndarray, transform: np.ndarray) -> np.ndarray:
    """Map a canonical (RAS) array back to the axis order and flips of the original file.

    Args:
        data: (x, y, z, ...) array in canonical orientation; trailing axes (e.g. classes) are kept.
        transform: the transform returned by :func:`to_canonical`.
    """
    return nio.apply_orientation(data, invert_transform(transform))


def invert_transform(transform: np.ndarray) -> np.ndarray:
    """Inverse of a nibabel orientation transform (source -> target becomes target -> source)."""
    inverse = np.zeros_like(transform)
    for source_axis, (target_axis, flip) in enumerate(transform):
        inverse[int(target_axis)] = (source_axis, flip)
    return inverse
