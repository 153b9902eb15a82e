"""Segmenting an image too large for memory in slabs of slices (in-plane models).

An in-plane model sees each slice with its ``slab_slices // 2`` neighbours and its logits are smoothed along
the slices over a few voxels; nothing else couples the slices. So an image is cut along the slices into
slabs that each fit in memory, read with that much context on both sides, and every slab is cropped and
normalised as the whole image is (:func:`~mousecord.inference.preprocessing.slab_reference`): on the dense
path the label map is then the whole-image one. On the cord ROI path each slab finds the cord on its own
(stage 1 is repeated per slab; the tube is not returned). The clean-ups that need the whole cord (largest
component, minimum cord length) run once, on the assembled label map.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
from tqdm.auto import tqdm

from mousecord.inference import preprocessing as prep

if TYPE_CHECKING:
    from mousecord.inference.predictor import Prediction, Predictor

logger = logging.getLogger(__name__)


def plan_slabs(owned: slice, depth: int, slab_depth: int, context: int) -> list[tuple[slice, slice]]:
    """``(read, keep)`` slice ranges: the ``keep`` ranges, at most ``slab_depth`` slices each, tile
    ``owned``; each ``read`` is its ``keep`` with ``context`` slices on both sides, within ``[0, depth)``.

    Example:
        >>> plan = plan_slabs(slice(0, 10), 10, 4, 1)
        >>> [(read.start, read.stop, keep.start, keep.stop) for read, keep in plan]
        [(0, 5, 0, 4), (3, 9, 4, 8), (7, 10, 8, 10)]
    """
    plan = []
    for start in range(owned.start, owned.stop, max(slab_depth, 1)):
        stop = min(start + slab_depth, owned.stop)
        plan.append((slice(max(start - context, 0), min(stop + context, depth)), slice(start, stop)))
    return plan


def context_slices(predictor: Predictor, slice_spacing_mm: float) -> int:
    """Slices read beyond a slab's own on each side: the model's neighbour slices and the reach of its
    smoothing along z (``scipy.ndimage.gaussian_filter1d``'s default truncation, 4 sigma)."""
    smoothing = predictor.model_settings.z_smoothing_mm / slice_spacing_mm
    return predictor.bundle.slab_slices // 2 + (int(4 * smoothing + 0.5) if smoothing > 0 else 0)


def predict_in_slabs(
    predictor: Predictor,
    image: np.ndarray,
    voxel_size_mm,
    slab_depth: int,
    *,
    probabilities: bool = False,
) -> Prediction:
    """Segment a canonical (x, y, z) image ``slab_depth`` slices at a time; see the module docstring."""
    spec = predictor.bundle.input_spec
    reference = prep.slab_reference(image, voxel_size_mm, spec)
    full_shape, spacing = network_geometry(predictor, image.shape, voxel_size_mm)
    box = reference.bounding_box
    crop_shape = tuple(item.stop - item.start for item in box)
    context = context_slices(predictor, spacing[0])
    plan = plan_slabs(box[0], full_shape[0], slab_depth, context)
    logger.info(
        "segmenting %d slices in %d slabs of up to %d (the whole image would not fit in memory)",
        crop_shape[0],
        len(plan),
        slab_depth,
    )
    label_crop = np.zeros(crop_shape, dtype=np.uint8)
    probability_crop = (
        np.zeros((predictor.bundle.num_classes, *crop_shape), dtype=np.float32) if probabilities else None
    )
    bar = tqdm(total=len(plan), desc="slabs", unit="slab", disable=not predictor.config.progress, leave=False)
    for read, keep in plan:
        slab = prep.preprocess_image(
            image,
            voxel_size_mm,
            spec,
            max_network_voxels=predictor.config.max_network_voxels,
            max_upsampling=predictor.config.max_upsampling,
            slab=(read, reference),
        )
        logits, roi = predictor.predict_logits_and_roi(slab.data, slab.network_spacing_mm)
        labels, slab_probabilities = predictor.crop_labels(logits, slab, probabilities=probabilities, roi=roi)
        first = read.start + slab.bounding_box[0].start  # the image slice of labels[0]
        source = slice(keep.start - first, keep.stop - first)
        target = slice(keep.start - box[0].start, keep.stop - box[0].start)
        label_crop[target] = labels[source]
        if probability_crop is not None and slab_probabilities is not None:
            probability_crop[:, target] = slab_probabilities[:, source]
        del logits, labels, slab_probabilities, slab, roi
        bar.update()
    bar.close()
    return predictor.paste(label_crop, probability_crop, full_shape, box)


def network_geometry(
    predictor: Predictor, image_shape: tuple[int, ...], voxel_size_mm
) -> tuple[tuple[int, int, int], tuple[float, float, float]]:
    """Shape and spacing (mm) of a canonical (x, y, z) or (c, x, y, z) image in the model's network axes."""
    shape_only = np.broadcast_to(np.uint8(0), tuple(image_shape[-3:]))  # no memory: only the axes move
    view, spacing = prep.to_network_axes(shape_only, voxel_size_mm, predictor.bundle.transpose_forward)
    return tuple(view.shape), spacing


def nonzero_crop_shape(predictor: Predictor, image: np.ndarray, voxel_size_mm) -> tuple[int, int, int]:
    """Network-axes shape of the non-zero crop preprocessing would take (one boolean pass over the image)."""
    image = np.asarray(image)
    view, _ = prep.to_network_axes(
        image[None] if image.ndim == 3 else image, voxel_size_mm, predictor.bundle.transpose_forward
    )
    box = prep.nonzero_bounding_box(view)
    return tuple(item.stop - item.start for item in box)


__all__ = [
    "context_slices",
    "network_geometry",
    "nonzero_crop_shape",
    "plan_slabs",
    "predict_in_slabs",
]
