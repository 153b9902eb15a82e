"""The one place that knows label values, names and colours.

Label maps in mousecord are ``uint8`` arrays holding 0 (background), 1 (GM) and 2 (WM), as in the reference
nnU-Net model and SCT's ``seg_mouse_gm_wm_t1w`` task. The cord is GM + WM.
"""

from __future__ import annotations

import warnings
from enum import IntEnum

import numpy as np

from mousecord.errors import ConfigError, DatasetError, ImageFormatError, MousecordWarning


class Label(IntEnum):
    BACKGROUND = 0
    GM = 1
    WM = 2


#: Labels that are tissue classes (everything but background), in label order.
TISSUE_LABELS: tuple[Label, ...] = (Label.GM, Label.WM)

#: Names used in file suffixes (``_GM_seg``), JSON keys and nnU-Net's dataset.json.
LABEL_NAMES: dict[Label, str] = {Label.BACKGROUND: "background", Label.GM: "GM", Label.WM: "WM"}

#: ``labels`` entry of an nnU-Net v2 dataset.json.
DATASET_JSON_LABELS: dict[str, int] = {LABEL_NAMES[label]: int(label) for label in Label}

#: Value nnU-Net v2 uses for "not annotated" when a dataset declares an ignore label (highest + 1).
IGNORE_VALUE: int = max(Label) + 1

#: QC overlay colours (RGB, 0-1): GM red and WM cyan, as in SCT's QC reports.
QC_COLOURS: dict[Label, tuple[float, float, float]] = {Label.GM: (1.0, 0.0, 0.0), Label.WM: (0.0, 1.0, 1.0)}

#: Name of the union of GM and WM in metrics and morphometrics.
CORD_NAME = "cord"


def check_label_values(label_map: np.ndarray, *, name: str, allow_ignore: bool = False) -> None:
    """Raise :class:`~mousecord.errors.ImageFormatError` if ``label_map`` holds values other than 0/1/2.

    Args:
        label_map: integer or float array of any shape.
        name: what to call the array in the message (usually its file name).
        allow_ignore: also accept :data:`IGNORE_VALUE`.
    """
    allowed = {int(label) for label in Label} | ({IGNORE_VALUE} if allow_ignore else set())
    values = np.unique(label_map)
    bad = [value for value in values.tolist() if value not in allowed]
    if bad:
        shown = ", ".join(f"{value:g}" for value in bad[:5])
        raise ImageFormatError(
            f"{name}: expected label values {sorted(allowed)}, found {shown}"
            + (" ..." if len(bad) > 5 else "")
        )


#: A binary mask voxel is "on" above this value (the reference's BIDS -> nnU-Net threshold).
MASK_THRESHOLD = 1e-12

#: What :func:`masks_to_label_map` does where GM and WM masks overlap.
OVERLAP_RULES = ("error", "wm")


def annotated_slices(label_map: np.ndarray, *, slice_axis: int = -1) -> np.ndarray:
    """(n_slices,) bool: slices along ``slice_axis`` holding at least one GM or WM voxel."""
    tissue = (label_map == Label.GM) | (label_map == Label.WM)
    other_axes = tuple(axis for axis in range(label_map.ndim) if axis != slice_axis % label_map.ndim)
    return tissue.any(axis=other_axes)


def cord_centroids(label_map: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The axial slices (last axis) of a 3D label map that hold cord (any non-zero label), and the cord's
    centroid on each: ``(slices, centroids)``, (n,) indices and (n, 2) voxel coordinates along the first
    two axes."""
    cord = np.asarray(label_map) > 0
    counts = cord.sum(axis=(0, 1))
    slices = np.flatnonzero(counts)
    centroids = [
        (np.arange(cord.shape[axis])[:, None] * cord.sum(axis=1 - axis)).sum(axis=0)[slices] / counts[slices]
        for axis in (0, 1)
    ]
    return slices, np.stack(centroids, axis=1).astype(np.float64)


def masks_to_label_map(
    gm_mask: np.ndarray,
    wm_mask: np.ndarray,
    *,
    name: str,
    on_overlap: str = "error",
    ignore_unannotated: bool = False,
    slice_axis: int = -1,
) -> np.ndarray:
    """Combine binary GM and WM masks into one uint8 label map (mask > 1e-12 -> GM=1, WM=2).

    Args:
        gm_mask, wm_mask: arrays of the same shape (any numeric type); voxels above
            :data:`MASK_THRESHOLD` are foreground.
        name: file name for messages.
        on_overlap: ``"error"`` raises where both masks are set; ``"wm"`` counts those voxels as WM (the
            reference's conversion writes WM last) and warns with the number of voxels.
        ignore_unannotated: set every slice (along ``slice_axis``) without a GM or WM voxel to
            :data:`IGNORE_VALUE`: an annotated slice is annotated in full (background included), the others
            are unknown.
        slice_axis: the axial axis (the last one in files and in canonical RAS).

    Returns:
        (same shape) uint8 label map.

    Raises:
        DatasetError: shapes differ, or GM and WM overlap with ``on_overlap="error"``.
        ConfigError: ``on_overlap`` is not one of :data:`OVERLAP_RULES`.

    Example:
        >>> masks_to_label_map(np.array([1, 0, 0]), np.array([0, 1, 0]), name="x").tolist()
        [1, 2, 0]
    """
    if on_overlap not in OVERLAP_RULES:
        raise ConfigError(f"on_overlap must be one of {list(OVERLAP_RULES)}, got {on_overlap!r}")
    gm_mask, wm_mask = np.asarray(gm_mask), np.asarray(wm_mask)
    if gm_mask.shape != wm_mask.shape:
        raise DatasetError(
            f"{name}: GM mask shape {gm_mask.shape} differs from WM mask shape {wm_mask.shape}"
        )
    gm, wm = gm_mask > MASK_THRESHOLD, wm_mask > MASK_THRESHOLD
    overlap = int(np.count_nonzero(gm & wm))
    if overlap and on_overlap == "error":
        raise DatasetError(
            f"{name}: GM and WM masks overlap in {overlap} voxels; a voxel can hold one label only"
        )
    if overlap:
        warnings.warn(
            f"{name}: {overlap} voxels are in both masks; counted as WM", MousecordWarning, stacklevel=2
        )
    label_map = np.zeros(gm.shape, dtype=np.uint8)
    label_map[gm] = Label.GM
    label_map[wm] = Label.WM
    if ignore_unannotated:
        annotated = annotated_slices(label_map, slice_axis=slice_axis)
        index = [slice(None)] * label_map.ndim
        index[slice_axis] = ~annotated
        label_map[tuple(index)] = IGNORE_VALUE
    return label_map
