"""nnU-Net v2's resampling of images and logits (``resample_data_or_seg_to_shape``): scikit-image ``resize``
in float64, the thick axis of an anisotropic image apart (nearest), shapes and spacings compared as nnU-Net
does."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.ndimage import map_coordinates

#: nnU-Net's ``ANISO_THRESHOLD``: resample in-plane and out-of-plane separately above this spacing ratio.
ANISOTROPY_THRESHOLD = 3.0


#: Spacings within this relative tolerance are treated as equal (headers store float32).
SPACING_RELATIVE_TOLERANCE = 1e-4


def compute_new_shape(
    shape_vox: Sequence[int], spacing_mm: Sequence[float], new_spacing_mm: Sequence[float]
) -> tuple[int, ...]:
    """Shape after resampling (nnU-Net: ``round(old_spacing / new_spacing * old_shape)``)."""
    return tuple(
        int(round(old / new * size))
        for old, new, size in zip(spacing_mm, new_spacing_mm, shape_vox, strict=True)
    )


def spacing_matches(spacing_mm: Sequence[float], new_spacing_mm: Sequence[float]) -> bool:
    """Whether two spacings are equal within :data:`SPACING_RELATIVE_TOLERANCE`."""
    old, new = np.asarray(spacing_mm, float), np.asarray(new_spacing_mm, float)
    return bool(np.all(np.abs(old - new) <= SPACING_RELATIVE_TOLERANCE * np.maximum(old, new)))


def separate_z_axis(spacing_mm: Sequence[float], new_spacing_mm: Sequence[float]) -> int | None:
    """nnU-Net's rule: the axis to resample separately (nearest) when one spacing is > 3x the others."""
    for spacing in (spacing_mm, new_spacing_mm):
        spacing = np.asarray(spacing, dtype=float)
        if spacing.max() / spacing.min() > ANISOTROPY_THRESHOLD:
            axes = np.flatnonzero(spacing.max() / spacing == 1)
            return int(axes[0]) if len(axes) == 1 else None
    return None


def resample(
    data: np.ndarray,
    new_shape: Sequence[int],
    *,
    spacing_mm: Sequence[float],
    new_spacing_mm: Sequence[float],
    order: int,
    order_z: int = 0,
) -> np.ndarray:
    """Resample a (c, z, y, x) array to ``new_shape`` as nnU-Net's ``resample_data_or_seg_to_shape``.

    scikit-image ``resize`` (edge mode, no anti-aliasing) of order ``order`` (3 for images, 1 for logits);
    when one axis' spacing is more than 3x the others', each slice across that axis is resized in 2D and the
    thick axis is interpolated with ``order_z`` (0: nearest). Computed in float64 as nnU-Net does; returns
    ``data`` itself when the shape does not change.
    """
    from skimage.transform import resize

    shape = tuple(data.shape[1:])
    new_shape = tuple(int(size) for size in new_shape)
    if shape == new_shape:
        return data
    axis = separate_z_axis(spacing_mm, new_spacing_mm)
    result = np.zeros((data.shape[0], *new_shape), dtype=data.dtype)
    source = data.astype(float, copy=False)
    for channel in range(data.shape[0]):
        if axis is None:
            result[channel] = resize(source[channel], new_shape, order, mode="edge", anti_aliasing=False)
            continue
        in_plane = tuple(size for index, size in enumerate(new_shape) if index != axis)
        partial_shape = list(new_shape)
        partial_shape[axis] = shape[axis]
        partial = np.zeros(partial_shape)
        for index in range(shape[axis]):
            where = [slice(None)] * 3
            where[axis] = index
            partial[tuple(where)] = resize(
                source[channel][tuple(where)], in_plane, order, mode="edge", anti_aliasing=False
            )
        if shape[axis] == new_shape[axis]:
            result[channel] = partial
        else:
            scales = [old / new for old, new in zip(partial.shape, new_shape, strict=True)]
            grid = np.mgrid[tuple(slice(0, size) for size in new_shape)].astype(float)
            coordinates = np.array(
                [scale * (axis_grid + 0.5) - 0.5 for scale, axis_grid in zip(scales, grid, strict=True)]
            )
            result[channel] = map_coordinates(partial, coordinates, order=order_z, mode="nearest")
    return result


__all__ = [
    "ANISOTROPY_THRESHOLD",
    "SPACING_RELATIVE_TOLERANCE",
    "compute_new_shape",
    "resample",
    "separate_z_axis",
    "spacing_matches",
]
