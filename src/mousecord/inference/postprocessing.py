"""Clean-ups of a prediction (numpy, scipy): logits smoothed along the slices; the label map's largest
component, holes, small components.

The label-map clean-ups take a (x, y, z) ``uint8`` label map (0 background, 1 GM, 2 WM) and return a new
one; the cord is GM + WM.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import ndimage

from mousecord.labels import Label

_CONNECTIVITY = ndimage.generate_binary_structure(3, 3)  # 26-connectivity, as SCT's -largest/-remove-small

#: Share of the largest cord-like component another needs to compete with it as the cord (on the network's
#: confidence; see :func:`keep_largest_component` and
#: :func:`~mousecord.inference.centreline.link_slab_candidates`).
MAIN_COMPONENT_FRACTION = 0.25


def cord_components(label_map: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """26-connected components of the cord (GM + WM), as SCT's ``-largest``/``-remove-small`` count them.

    Returns:
        ``(components, sizes)``: int labels of ``label_map``'s shape (0 = background, 1..n) and (n + 1,)
        voxel counts per component, with ``sizes[0]`` set to 0.
    """
    components, _ = ndimage.label(np.asarray(label_map) != Label.BACKGROUND, structure=_CONNECTIVITY)
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    return components, sizes


def smooth_logits_along_slices(
    logits: np.ndarray, sigma_slices: float, *, predicted: np.ndarray | None = None
) -> None:
    """Smooth (k, z, y, x) logits along z in place: a Gaussian of ``sigma_slices`` (scipy's
    ``gaussian_filter1d``, ``mode="nearest"``).

    With ``predicted`` ((z, y, x) bool, where the network ran), only predicted voxels change, each a
    weighted mean of the predicted voxels around it (normalised convolution): the cord ROI path gives the
    rest a background logit so large that, mixed in, it erased the cord from the slices next to the tube's
    ends (up to 6 slices with sigma 4 slices).
    """
    if predicted is None:
        for channel in logits:  # one class at a time: no second copy of the logits
            ndimage.gaussian_filter1d(channel, sigma_slices, axis=0, mode="nearest", output=channel)
        return
    if not predicted.any():
        return
    box = (slice(None), *cord_box(predicted.any(axis=0)))
    inside = predicted[box]
    weight = inside.astype(logits.dtype)
    total = ndimage.gaussian_filter1d(weight, sigma_slices, axis=0, mode="nearest")
    for channel in logits:
        region = channel[box]
        smoothed = ndimage.gaussian_filter1d(region * weight, sigma_slices, axis=0, mode="nearest")
        region[inside] = smoothed[inside] / total[inside]


def cord_box(label_map: np.ndarray) -> tuple[slice, ...]:
    """The bounding box of the cord (GM + WM), empty slices where there is none."""
    cord = np.asarray(label_map) != Label.BACKGROUND
    box = []
    for axis in range(cord.ndim):
        present = np.flatnonzero(np.any(cord, axis=tuple(i for i in range(cord.ndim) if i != axis)))
        box.append(slice(int(present[0]), int(present[-1]) + 1) if present.size else slice(0, 0))
    return tuple(box)


def keep_largest_component(
    label_map: np.ndarray, *, cord_probability: Callable[[tuple[slice, ...]], np.ndarray] | None = None
) -> np.ndarray:
    """Keep only the largest 26-connected component of the cord (GM + WM); other tissue becomes background.

    With ``cord_probability`` (the network's probability of cord over a box of ``label_map``, asked only
    where two components compete), the component kept is, among those at least ``MAIN_COMPONENT_FRACTION``
    of the largest, the one of highest mean probability: in a single slice a vertebral body the network
    takes for cord is often larger than the cord, seldom surer.

    Components are counted inside the cord's bounding box only: on the cord ROI path that box is a few
    percent of the volume, and labelling the whole of it took most of a second.
    """
    kept = np.zeros_like(label_map, dtype=np.uint8)
    box = cord_box(label_map)
    inside = label_map[box]
    if inside.size == 0:  # no cord at all
        return kept
    components, sizes = cord_components(inside)
    if len(sizes) <= 2:
        kept[box] = inside
        return kept
    chosen = int(np.argmax(sizes))
    rivals = np.flatnonzero(sizes >= MAIN_COMPONENT_FRACTION * sizes[chosen])
    if cord_probability is not None and rivals.size > 1:
        means = ndimage.mean(np.asarray(cord_probability(box), dtype=np.float32), components, rivals)
        chosen = int(rivals[int(np.argmax(means))])
    kept[box] = np.where(components == chosen, inside, np.uint8(Label.BACKGROUND))
    return kept


def drop_short_cord(label_map: np.ndarray, *, min_slices: int, axis: int) -> np.ndarray:
    """Background everywhere if the cord spans fewer than ``min(min_slices, slices)`` slices along ``axis``.

    A cord runs through a chunk from end to end; what a network finds on one or two slices of a longer
    image (e.g. a blob in embedding medium) is not one. Apply after :func:`keep_largest_component`.
    """
    present = np.any(label_map != Label.BACKGROUND, axis=tuple(i for i in range(label_map.ndim) if i != axis))
    if np.count_nonzero(present) >= min(min_slices, label_map.shape[axis]):
        return label_map.copy()
    return np.zeros_like(label_map)


def remove_small_components(label_map: np.ndarray, *, min_volume_mm3: float, voxel_size_mm) -> np.ndarray:
    """Remove cord components smaller than ``min_volume_mm3`` (voxel size ``voxel_size_mm``, (3,) mm)."""
    if min_volume_mm3 <= 0:
        return label_map.copy()
    voxel_volume_mm3 = float(np.prod(np.asarray(voxel_size_mm, dtype=float)))
    components, sizes = cord_components(label_map)
    small = sizes * voxel_volume_mm3 < min_volume_mm3
    small[0] = False
    return np.where(small[components], np.uint8(Label.BACKGROUND), label_map).astype(np.uint8)


def fill_holes(label_map: np.ndarray) -> np.ndarray:
    """Fill background enclosed by the cord (3D); filled voxels take the nearest tissue label."""
    cord = label_map != Label.BACKGROUND
    holes = ndimage.binary_fill_holes(cord) & ~cord
    if not holes.any():
        return label_map.copy()
    _, nearest = ndimage.distance_transform_edt(~cord, return_indices=True)
    filled = label_map.copy()
    filled[holes] = label_map[tuple(index[holes] for index in nearest)]
    return filled


__all__ = [
    "cord_box",
    "fill_holes",
    "keep_largest_component",
    "remove_small_components",
    "smooth_logits_along_slices",
]
