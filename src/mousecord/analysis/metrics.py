"""Overlap and surface-distance metrics between a reference and a predicted label map (numpy, scipy).

Conventions:

* Arguments come in the order ``reference`` then ``prediction``; arrays are never modified.
* Distances are in mm and honour anisotropic voxels (``voxel_size_mm`` along the array axes).
* Surface distances follow MONAI (``compute_hausdorff_distance(percentile=95)`` and
  ``compute_average_surface_distance(symmetric=True)``): the surface of a mask is the set of its voxels that
  a face-connected erosion removes; HD95 is the larger of the two directed 95th percentiles; the mean
  surface distance averages both directed distance sets together. They are computed here with
  :func:`scipy.ndimage.distance_transform_edt` (``sampling=voxel_size_mm``), the same exact Euclidean
  transform MONAI uses on CPU, because MONAI imports torch and ``analysis`` must stay torch-free.
* A metric that is undefined (an empty mask) is ``NaN``, never an exception; the reason is stored in
  :attr:`ClassMetrics.notes` and a :class:`~mousecord.errors.MousecordWarning` is issued.
* A slice is an axial slice, an index along the last array axis (canonical z, along the cord). When the
  reference is annotated on only some slices (a slice counts as annotated when the reference has any
  non-zero voxel on it), only those slices are evaluated: metrics over a contiguous run of at least three
  annotated slices are computed in 3D on that slab; when the annotated slices have gaps, or are one or two
  slices, surface distances are computed in 2D on each annotated slice (in-plane voxel size) and pooled.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from mousecord.errors import ConfigError, ImageFormatError, MousecordWarning
from mousecord.labels import CORD_NAME, LABEL_NAMES, TISSUE_LABELS, annotated_slices, check_label_values

logger = logging.getLogger(__name__)

#: Class names in report order: GM, WM, then the cord (GM + WM).
CLASS_NAMES: tuple[str, ...] = (*(LABEL_NAMES[label] for label in TISSUE_LABELS), CORD_NAME)

#: Fewest contiguous annotated slices measured as a 3D slab; fewer are measured slice by slice in 2D.
MIN_3D_SLICES = 3

#: Metric fields written to CSV/JSON, in column order.
METRIC_FIELDS: tuple[str, ...] = (
    "dice",
    "jaccard",
    "hd95_mm",
    "mean_surface_distance_mm",
    "volume_difference_percent",
    "reference_volume_mm3",
    "prediction_volume_mm3",
    "n_slices_evaluated",
    "surface_distance_mode",
)


@dataclass(frozen=True)
class ClassMetrics:
    """Metrics of one class (GM, WM or cord) for one case.

    Attributes:
        dice, jaccard: overlap in [0, 1]; NaN when both masks are empty.
        hd95_mm, mean_surface_distance_mm: symmetric surface distances in mm; NaN when either mask is empty.
        volume_difference_percent: 100 * (prediction - reference) / reference volume; NaN for an empty
            reference.
        reference_volume_mm3, prediction_volume_mm3: volumes over the evaluated slices.
        per_slice_dice: Dice on each evaluated axial slice (NaN where both are empty on that slice).
        n_slices_evaluated: number of axial slices compared.
        surface_distance_mode: ``"3d"`` or ``"2d-per-slice"`` (sparse annotations, see module docstring).
        notes: why a value is NaN, or what was left out; empty when everything is defined.
    """

    dice: float
    jaccard: float
    hd95_mm: float
    mean_surface_distance_mm: float
    volume_difference_percent: float
    reference_volume_mm3: float
    prediction_volume_mm3: float
    n_slices_evaluated: int
    surface_distance_mode: str
    per_slice_dice: dict[int, float] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: NaN becomes ``None`` (JSON null), slice keys become strings."""
        values: dict[str, Any] = {name: json_number(getattr(self, name)) for name in METRIC_FIELDS}
        values["per_slice_dice"] = {
            str(index): json_number(value) for index, value in self.per_slice_dice.items()
        }
        values["notes"] = list(self.notes)
        return values


def dice(reference: np.ndarray, prediction: np.ndarray) -> float:
    """Dice coefficient 2|R∩P| / (|R| + |P|) of two binary masks; NaN when both are empty.

    Example:
        >>> dice(np.array([1, 1, 0, 0]), np.array([0, 1, 1, 0]))
        0.5
    """
    reference, prediction = _binary_pair(reference, prediction)
    total = int(np.count_nonzero(reference)) + int(np.count_nonzero(prediction))
    if total == 0:
        return float("nan")
    return 2.0 * int(np.count_nonzero(reference & prediction)) / total


def jaccard(reference: np.ndarray, prediction: np.ndarray) -> float:
    """Jaccard index |R∩P| / |R∪P| of two binary masks; NaN when both are empty."""
    reference, prediction = _binary_pair(reference, prediction)
    union = int(np.count_nonzero(reference | prediction))
    if union == 0:
        return float("nan")
    return int(np.count_nonzero(reference & prediction)) / union


def surface_distances_mm(
    reference: np.ndarray, prediction: np.ndarray, *, voxel_size_mm: tuple[float, ...] | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Directed surface distances in mm (MONAI's definition, see the module docstring).

    Args:
        reference, prediction: binary masks of the same shape (2D or 3D).
        voxel_size_mm: voxel edge length along each array axis, in mm.

    Returns:
        ``(reference_to_prediction, prediction_to_reference)``: for each surface voxel of one mask, the
        distance to the nearest surface voxel of the other. Both are empty if either mask is empty.
    """
    reference, prediction = _binary_pair(reference, prediction)
    sampling = _check_voxel_size(voxel_size_mm, reference.ndim)
    if not reference.any() or not prediction.any():
        return np.empty(0), np.empty(0)
    # Crop to the bounding box of both masks plus one background voxel: the exact EDT gives the same
    # distances (every surface voxel lies inside the box) at a fraction of the cost on 200x200x500 volumes.
    box = _bounding_box(reference | prediction, margin=1)
    reference = np.pad(reference[box], 1)
    prediction = np.pad(prediction[box], 1)
    structure = ndimage.generate_binary_structure(reference.ndim, 1)
    reference_surface = reference & ~ndimage.binary_erosion(reference, structure)
    prediction_surface = prediction & ~ndimage.binary_erosion(prediction, structure)
    to_reference = ndimage.distance_transform_edt(~reference_surface, sampling=sampling)
    to_prediction = ndimage.distance_transform_edt(~prediction_surface, sampling=sampling)
    return to_prediction[reference_surface], to_reference[prediction_surface]


def hd95_mm(reference_to_prediction: np.ndarray, prediction_to_reference: np.ndarray) -> float:
    """Symmetric 95th-percentile Hausdorff distance from directed distances; NaN if either is empty."""
    if reference_to_prediction.size == 0 or prediction_to_reference.size == 0:
        return float("nan")
    return float(max(np.percentile(reference_to_prediction, 95), np.percentile(prediction_to_reference, 95)))


def mean_surface_distance_mm(
    reference_to_prediction: np.ndarray, prediction_to_reference: np.ndarray
) -> float:
    """Symmetric mean surface distance (both directed sets averaged together); NaN if either is empty."""
    if reference_to_prediction.size == 0 or prediction_to_reference.size == 0:
        return float("nan")
    return float(np.concatenate([reference_to_prediction, prediction_to_reference]).mean())


def compare_label_maps(
    reference: np.ndarray,
    prediction: np.ndarray,
    *,
    voxel_size_mm: tuple[float, float, float] | np.ndarray,
    name: str = "prediction",
) -> dict[str, ClassMetrics]:
    """All metrics for GM, WM and the cord between two 0/1/2 label maps, on the annotated slices only.

    Args:
        reference: (x, y, z) label map (0 background, 1 GM, 2 WM), z along the cord. May be annotated on a
            subset of axial slices; only slices with a non-zero reference voxel are evaluated.
        prediction: label map of the same shape.
        voxel_size_mm: (3,) voxel size in mm along x, y, z.
        name: what to call the case in warnings and errors (usually the prediction's file name).

    Returns:
        ``{"GM": ClassMetrics, "WM": ClassMetrics, "cord": ClassMetrics}``.

    Raises:
        ImageFormatError: shapes differ, or values other than 0/1/2.

    Example:
        >>> truth = np.zeros((9, 7, 11), np.uint8); truth[2:6, 2:5, :] = 2; truth[3:5, 3, :] = 1
        >>> compare_label_maps(truth, truth, voxel_size_mm=(0.05, 0.05, 0.05))["cord"].dice
        1.0
    """
    reference, prediction = np.asarray(reference), np.asarray(prediction)
    if reference.shape != prediction.shape:
        raise ImageFormatError(
            f"{name}: prediction shape {prediction.shape} differs from reference shape {reference.shape}"
        )
    if reference.ndim != 3:
        raise ImageFormatError(f"{name}: expected 3D label maps, got shape {reference.shape}")
    check_label_values(reference, name=f"{name} (reference)")
    check_label_values(prediction, name=name)
    sampling = _check_voxel_size(voxel_size_mm, 3)
    slices = np.flatnonzero(annotated_slices(np.asarray(reference)))
    if slices.size == 0:
        warnings.warn(
            f"{name}: reference is empty on every slice; all metrics are NaN", MousecordWarning, stacklevel=2
        )
    # a contiguous run is a slab with a surface of its own; one or two slices are all surface in 3D (every
    # voxel touches the slab's cut face), so their distances would be near zero: those are measured in 2D
    three_d = slices.size >= MIN_3D_SLICES and slices[-1] - slices[0] + 1 == slices.size
    if three_d:
        reference, prediction = (
            reference[..., slices[0] : slices[-1] + 1],
            prediction[..., slices[0] : slices[-1] + 1],
        )
    else:
        reference, prediction = reference[..., slices], prediction[..., slices]
    masks = {
        **{LABEL_NAMES[label]: (reference == label, prediction == label) for label in TISSUE_LABELS},
        CORD_NAME: (reference > 0, prediction > 0),
    }
    return {
        class_name: _class_metrics(
            reference_mask,
            prediction_mask,
            sampling,
            slices,
            three_d=bool(three_d),
            label=f"{name} {class_name}",
        )
        for class_name, (reference_mask, prediction_mask) in masks.items()
    }


def _class_metrics(
    reference: np.ndarray,
    prediction: np.ndarray,
    sampling: np.ndarray,
    slices: np.ndarray,
    *,
    three_d: bool,
    label: str,
) -> ClassMetrics:
    notes: list[str] = []
    voxel_volume_mm3 = float(np.prod(sampling))
    reference_volume = np.count_nonzero(reference) * voxel_volume_mm3
    prediction_volume = np.count_nonzero(prediction) * voxel_volume_mm3
    if reference_volume == 0 and prediction_volume == 0:
        notes.append("NaN: reference and prediction both empty")
    elif reference_volume == 0:
        notes.append("NaN: reference empty")
    elif prediction_volume == 0:
        notes.append("NaN: prediction empty")
    if three_d:
        to_prediction, to_reference = surface_distances_mm(reference, prediction, voxel_size_mm=sampling)
    else:
        to_prediction, to_reference = _pooled_slice_distances(reference, prediction, sampling[:2], notes)
    per_slice = {
        int(index): dice(reference[..., position], prediction[..., position])
        for position, index in enumerate(range(slices[0], slices[-1] + 1) if three_d else slices)
    }
    volume_difference = (
        100.0 * (prediction_volume - reference_volume) / reference_volume
        if reference_volume
        else float("nan")
    )
    for note in notes:
        warnings.warn(f"{label}: {note}", MousecordWarning, stacklevel=3)
    return ClassMetrics(
        dice=dice(reference, prediction),
        jaccard=jaccard(reference, prediction),
        hd95_mm=hd95_mm(to_prediction, to_reference),
        mean_surface_distance_mm=mean_surface_distance_mm(to_prediction, to_reference),
        volume_difference_percent=volume_difference,
        reference_volume_mm3=reference_volume,
        prediction_volume_mm3=prediction_volume,
        n_slices_evaluated=len(per_slice),
        surface_distance_mode="3d" if three_d else "2d-per-slice",
        per_slice_dice=per_slice,
        notes=tuple(notes),
    )


def _pooled_slice_distances(
    reference: np.ndarray, prediction: np.ndarray, sampling_2d: np.ndarray, notes: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """2D surface distances on each slice, pooled; slices where only one side is empty are left out."""
    to_prediction, to_reference, one_sided = [], [], 0
    for position in range(reference.shape[-1]):
        reference_slice, prediction_slice = reference[..., position], prediction[..., position]
        if reference_slice.any() != prediction_slice.any():
            one_sided += 1
            continue
        forward, backward = surface_distances_mm(reference_slice, prediction_slice, voxel_size_mm=sampling_2d)
        to_prediction.append(forward)
        to_reference.append(backward)
    if one_sided and reference.any() and prediction.any():
        notes.append(f"{one_sided} slices where only one side is non-empty left out of surface distances")
    if not to_prediction:
        return np.empty(0), np.empty(0)
    return np.concatenate(to_prediction), np.concatenate(to_reference)


def _binary_pair(reference: np.ndarray, prediction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    reference, prediction = np.asarray(reference) != 0, np.asarray(prediction) != 0
    if reference.shape != prediction.shape:
        raise ImageFormatError(
            f"prediction shape {prediction.shape} differs from reference shape {reference.shape}"
        )
    return reference, prediction


def _check_voxel_size(voxel_size_mm: tuple[float, ...] | np.ndarray, ndim: int) -> np.ndarray:
    sampling = np.asarray(voxel_size_mm, dtype=np.float64).ravel()
    if sampling.size != ndim or not np.all(np.isfinite(sampling)) or np.any(sampling <= 0):
        raise ConfigError(f"voxel_size_mm must be {ndim} positive numbers, got {sampling.tolist()}")
    return sampling


def _bounding_box(mask: np.ndarray, *, margin: int) -> tuple[slice, ...]:
    box = []
    for axis in range(mask.ndim):
        other_axes = tuple(other for other in range(mask.ndim) if other != axis)
        indices = np.flatnonzero(mask.any(axis=other_axes))
        box.append(
            slice(max(int(indices[0]) - margin, 0), min(int(indices[-1]) + margin + 1, mask.shape[axis]))
        )
    return tuple(box)


def json_number(value: Any) -> Any:
    """``value`` as JSON can hold it: NaN and infinities -> None (``null``), numpy scalars -> Python."""
    if isinstance(value, (float, np.floating)):
        return None if not np.isfinite(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value
