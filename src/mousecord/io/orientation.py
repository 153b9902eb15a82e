"""Reorientation between a file's axis order and mousecord's canonical RAS, built on nibabel.orientations."""

from __future__ import annotations

from collections.abc import Sequence

import nibabel.orientations as nio
import numpy as np

from mousecord.errors import OrientationError
from mousecord.io.volume import Volume

CANONICAL_AXCODES: tuple[str, str, str] = ("R", "A", "S")
#: Below this volume of the parallelepiped spanned by the affine's unit axis vectors (1 for orthogonal
#: axes), the axes are taken as parallel: nibabel still finds an orientation for such a matrix.
_MIN_AXES_VOLUME = 1e-6
#: An axis whose voxels are at least this many times thicker than both others' is a thick-slice
#: acquisition's slice axis; one at least this many times longer (mm) than both others is a chunk's length.
MARKED_AXIS_RATIO = 2.0
#: nibabel's index of the superior-inferior world axis (RAS+ coordinates).
_SUPERIOR_INFERIOR = 2


def single_slice_axis(shape: Sequence[int]) -> int | None:
    """The normal of a single slice (the one axis of size 1), the axis along the cord whatever a header
    says: its plane is the cross-section; None for anything else.

    Example:
        >>> single_slice_axis((200, 1, 180))
        1
        >>> single_slice_axis((200, 200, 24)) is None
        True
    """
    singletons = np.flatnonzero(np.asarray(shape) == 1)
    return int(singletons[0]) if singletons.size == 1 else None


def cord_axis_from_grid(shape, voxel_size_mm) -> tuple[int, str] | None:
    """The array axis the grid hints runs along the cord, and why; None where it hints none.

    The slice axis of a thick-slice volume (voxels at least :data:`MARKED_AXIS_RATIO` x thicker than both
    others') and the length of a chunk (at least that many times longer, in mm, than it is wide and deep)
    are hints, never sure: ex vivo headers often name their axes after the magnet, but a thick sagittal
    localiser or an in vivo slab wider than it is long shows the same. Thick slices along one axis of a
    volume long along another say nothing, nor does an image with an axis of size 1 (a single slice's
    normal is sure, :func:`single_slice_axis`).

    Example:
        >>> cord_axis_from_grid((500, 200, 200), (0.05, 0.05, 0.05))
        (0, 'the image 2.5x longer along it than across')
        >>> cord_axis_from_grid((200, 200, 30), (0.05, 0.05, 0.3))
        (2, 'slices 6.0x thicker than wide')
        >>> cord_axis_from_grid((200, 200, 120), (0.05, 0.05, 0.05)) is None
        True
    """
    shape = np.asarray(shape, dtype=float)
    if (shape == 1).any():
        return None
    sizes = np.asarray(voxel_size_mm, dtype=float)
    found = []
    for values, reason in (
        (sizes, "slices {:.1f}x thicker than wide"),
        (shape * sizes, "the image {:.1f}x longer along it than across"),
    ):
        first, second = np.argsort(values)[::-1][:2]
        if values[first] >= MARKED_AXIS_RATIO * values[second]:
            found.append((int(first), reason.format(values[first] / values[second])))
    return found[0] if len({axis for axis, _ in found}) == 1 else None


def cord_axis_last(cord_axis: int) -> list[int]:
    """The axis order (for ``np.transpose``) that moves ``cord_axis`` last, keeping the others' order."""
    return [axis for axis in range(3) if axis != cord_axis] + [cord_axis]


def orientation_to(
    affine: np.ndarray, axcodes: tuple[str, ...] = CANONICAL_AXCODES, *, cord_axis: int | None = None
) -> np.ndarray:
    """(3, 2) nibabel orientation transform from the array axes of ``affine`` to ``axcodes``.

    Args:
        cord_axis: the array axis to be taken as superior-inferior, whatever the header says (the header's
            directions of it and of the axis it swaps roles with are kept); None: as the header says.

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
    if cord_axis is not None:
        header_axis = int(np.flatnonzero(source[:, 0] == _SUPERIOR_INFERIOR)[0])
        source[[cord_axis, header_axis], 0] = source[[header_axis, cord_axis], 0]
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
