"""Evaluate predicted segmentations against truth: files, folders matched by name, or a BIDS dataset.

Truth and prediction are each a label map (0/1/2) or a pair of binary GM/WM masks (see
:mod:`mousecord.analysis.labelmaps`). Cases are matched by name: the file stem without ``_seg``,
``_label-GM_mask``, ``_GM_seg``... suffixes, so ``sub-01_chunk-1_T1w_seg.nii.gz`` matches the reference's
``sub-01_chunk-1_T1w_label-GM_mask.nii.gz`` / ``..._label-WM_mask.nii.gz``.

The metrics are those of :func:`mousecord.analysis.metrics.compare_label_maps`; sparse truth is evaluated on
its annotated slices only (slices where the truth has any non-zero voxel).
"""

from __future__ import annotations

import csv
import json
import logging
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mousecord.analysis.labelmaps import (
    LabelSource,
    find_label_sources,
    label_source,
    load_label_map,
    measured_cord_axis,
    segmented_voxel_size,
    written_by_segment,
)
from mousecord.analysis.metrics import (
    CLASS_NAMES,
    METRIC_FIELDS,
    ClassMetrics,
    compare_label_maps,
    json_number,
)
from mousecord.datasets.bids import MASK_FOLDER_DEFAULT
from mousecord.errors import ConfigError, DatasetError, ImageFormatError, MousecordWarning
from mousecord.io import Volume, atomic_output

logger = logging.getLogger(__name__)

#: Relative tolerance when checking that truth and prediction have the same voxel size.
_VOXEL_SIZE_RTOL = 1e-3
#: Truth and prediction share a grid when every voxel of one lies within this fraction of a voxel of the
#: same voxel of the other.
_GRID_TOLERANCE_VOXELS = 0.5
#: Summary metrics shown on the terminal.
_SUMMARY_FIELDS = ("dice", "jaccard", "hd95_mm", "mean_surface_distance_mm", "volume_difference_percent")


@dataclass(frozen=True)
class CaseResult:
    """Metrics of one case.

    Attributes:
        case: the matching key (file stem without label suffixes).
        reference: truth file(s).
        prediction: prediction file(s).
        metrics: ``{"GM": ..., "WM": ..., "cord": ...}``.
    """

    case: str
    reference: tuple[Path, ...]
    prediction: tuple[Path, ...]
    metrics: dict[str, ClassMetrics]

    def to_dict(self) -> dict[str, Any]:
        return {
            "case": self.case,
            # absolute: the JSON is read from elsewhere (qc --metrics finds a case by its prediction's path)
            "reference": [str(path.resolve()) for path in self.reference],
            "prediction": [str(path.resolve()) for path in self.prediction],
            **{name: self.metrics[name].to_dict() for name in CLASS_NAMES},
        }


def evaluate(
    prediction: Path | str,
    reference: Path | str,
    *,
    mask_folder: str = MASK_FOLDER_DEFAULT,
    cord_axis: str | int = "auto",
) -> list[CaseResult]:
    """Compare predictions with truth, per case and class (GM, WM, cord); the prediction first, as
    ``mousecord evaluate PRED TRUTH`` takes them.

    Args:
        prediction: a prediction file or folder; with a BIDS ``reference``, also the name of a folder
            under ``derivatives/`` (e.g. the predictions converted back with nnU-Net -> BIDS).
        reference: a truth file (label map, or either mask of a GM/WM pair), a folder of them (searched
            recursively), or a BIDS dataset root (truth from ``derivatives/<mask_folder>``).
        mask_folder: the derivatives folder of the truth masks in a BIDS dataset.
        cord_axis: the axis along the cord, slices (and per-slice Dice) being across it: "auto" (the one
            ``mousecord segment`` used, as the prediction's sidecar says; without one, a single slice's
            normal, else the axis the truth's cord is clearly longest along, see
            :func:`~mousecord.analysis.labelmaps.measured_cord_axis`, else the header's superior-inferior
            axis), "header" or the file's array axis 0, 1 or 2.

    Returns:
        One :class:`CaseResult` per matched case, sorted by case name.

    Raises:
        DatasetError: nothing matches, or a path does not exist.
        ImageFormatError: unreadable files, values outside 0/1/2, or truth and prediction grids differ.

    Example:
        >>> results = evaluate("predictions/", "truth/")  # doctest: +SKIP
        >>> results[0].metrics["GM"].dice
    """
    reference, prediction = Path(reference), Path(prediction)
    pairs = _match_cases(reference, prediction, mask_folder=mask_folder)
    if pairs and all(
        written_by_segment(truth) and not written_by_segment(predicted) for truth, predicted in pairs
    ):
        warnings.warn(
            f"{reference}: the truth was written by mousecord segment, the prediction {prediction} was not: "
            "are they swapped? (volume differences change sign)",
            MousecordWarning,
            stacklevel=2,
        )
    return [_evaluate_case(truth, predicted, cord_axis) for truth, predicted in pairs]


def summarise(results: list[CaseResult]) -> dict[str, dict[str, Any]]:
    """Mean and standard deviation over cases of each summary metric, per class (NaN cases skipped).

    Returns:
        ``{"GM": {"dice": mean, "dice_std": std, ..., "n_cases": n}, "WM": ..., "cord": ...}``.
    """
    summary: dict[str, dict[str, Any]] = {}
    for class_name in CLASS_NAMES:
        entry: dict[str, Any] = {"n_cases": len(results)}
        for field_name in _SUMMARY_FIELDS:
            values = np.array(
                [getattr(result.metrics[class_name], field_name) for result in results], dtype=float
            )
            finite = values[np.isfinite(values)]
            entry[field_name] = float(finite.mean()) if finite.size else float("nan")
            entry[f"{field_name}_std"] = float(finite.std()) if finite.size else float("nan")
            entry[f"{field_name}_n_nan"] = int(values.size - finite.size)
        summary[class_name] = entry
    return summary


def write_metrics_csv(results: list[CaseResult], path: Path | str) -> Path:
    """One row per case and class: ``case, class, dice, jaccard, hd95_mm, ..., notes`` (NaN as ``nan``)."""
    path = Path(path)
    with atomic_output(path) as temporary, temporary.open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["case", "class", *METRIC_FIELDS, "notes"])
        for result in results:
            for class_name in CLASS_NAMES:
                metrics = result.metrics[class_name]
                row = [_csv_value(getattr(metrics, name)) for name in METRIC_FIELDS]
                writer.writerow([result.case, class_name, *row, "; ".join(metrics.notes)])
    return path


def write_per_slice_csv(results: list[CaseResult], path: Path | str) -> Path:
    """One row per case and evaluated slice: ``case, slice, dice_GM, dice_WM, dice_cord``."""
    path = Path(path)
    with atomic_output(path) as temporary, temporary.open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["case", "slice", *(f"dice_{name}" for name in CLASS_NAMES)])
        for result in results:
            for index in result.metrics[CLASS_NAMES[-1]].per_slice_dice:
                values = [
                    _csv_value(result.metrics[name].per_slice_dice.get(index, math.nan))
                    for name in CLASS_NAMES
                ]
                writer.writerow([result.case, index, *values])
    return path


def write_metrics_json(results: list[CaseResult], path: Path | str) -> Path:
    """JSON with the mean over cases per class at the top (``GM``, ``WM``, ``cord``) and every case below.

    Undefined values (NaN) are written as ``null``; each class's ``notes`` says why.
    """
    path = Path(path)
    summary = {
        name: {key: json_number(value) for key, value in entry.items()}
        for name, entry in summarise(results).items()
    }
    document = {**summary, "cases": [result.to_dict() for result in results]}
    with atomic_output(path) as temporary:
        temporary.write_text(json.dumps(document, indent=2, allow_nan=False) + "\n")
    return path


def case_metrics(document: dict, prediction: Path | str) -> dict:
    """The numbers of ``prediction``'s own case in a JSON :func:`write_metrics_json` wrote (its Dice, HD95,
    volumes per class, without the per-slice Dice), for a QC entry that shows one case, not the mean of
    all; a JSON without ``cases`` is returned as it is.

    Raises:
        ConfigError: no case, or more than one, was evaluated on ``prediction`` (matched by path, else name).
    """
    cases = document.get("cases")
    if not isinstance(cases, list):
        return document
    prediction = Path(prediction)
    cases = [case for case in cases if isinstance(case, dict)]

    def evaluated(case: dict) -> list[Path]:
        paths = case.get("prediction")
        return [Path(str(path)) for path in paths] if isinstance(paths, list) else []

    found = [case for case in cases if prediction.resolve() in [path.resolve() for path in evaluated(case)]]
    found = found or [case for case in cases if prediction.name in [path.name for path in evaluated(case)]]
    if len(found) != 1:
        names = ", ".join(str(case.get("case")) for case in cases)
        raise ConfigError(
            f"{prediction}: {'no case' if not found else 'several cases'} of the evaluation JSON was "
            f"evaluated on this segmentation (its cases: {names}); give the segmentation evaluate compared"
        )
    (case,) = found
    return {"case": case.get("case")} | {
        name: {key: value for key, value in case[name].items() if key != "per_slice_dice"}
        for name in CLASS_NAMES
        if isinstance(case.get(name), dict)
    }


def format_summary(results: list[CaseResult]) -> str:
    """A plain-text table of mean ± std per class, for the terminal."""
    summary = summarise(results)
    headers = ("class", "Dice", "Jaccard", "HD95 (mm)", "MSD (mm)", "vol. diff (%)")
    rows = []
    for class_name in CLASS_NAMES:
        entry = summary[class_name]
        cells = [class_name]
        for field_name in _SUMMARY_FIELDS:
            mean, std, n_nan = entry[field_name], entry[f"{field_name}_std"], entry[f"{field_name}_n_nan"]
            text = (
                "NaN (undefined)"
                if not math.isfinite(mean)
                else f"{mean:.3f}"
                if len(results) == 1
                else f"{mean:.3f} ± {std:.3f}"
            )
            if n_nan and math.isfinite(mean):
                text += f" [{n_nan} NaN]"
            cells.append(text)
        rows.append(cells)
    widths = [max(len(str(row[column])) for row in [headers, *rows]) for column in range(len(headers))]
    lines = [
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in [headers, *rows]
    ]
    title = f"{len(results)} case{'s' if len(results) != 1 else ''}" + (
        " (mean ± std)" if len(results) > 1 else ""
    )
    return "\n".join([title, *lines])


def _match_cases(
    reference: Path, prediction: Path, *, mask_folder: str
) -> list[tuple[LabelSource, LabelSource]]:
    if reference.is_dir() and (reference / "derivatives" / mask_folder).is_dir():
        if not prediction.exists() and (reference / "derivatives" / prediction).is_dir():
            prediction = reference / "derivatives" / prediction
        reference = reference / "derivatives" / mask_folder
    for path, role in ((reference, "truth"), (prediction, "prediction")):
        if not path.exists():
            raise DatasetError(f"{path}: {role} not found")
    if prediction.resolve() == reference.resolve():  # every case against itself: Dice 1, nothing measured
        raise DatasetError(
            f"{prediction}: given as both prediction and truth; give the truth's own file or folder"
        )
    if reference.is_file() and prediction.is_file():
        return [(label_source(reference), label_source(prediction))]
    references = find_label_sources(reference) if reference.is_dir() else _single(reference)
    predictions = find_label_sources(prediction) if prediction.is_dir() else _single(prediction)
    common = sorted(set(references) & set(predictions))
    if not common:
        raise DatasetError(
            f"{prediction}: no prediction matches a truth case in {reference} by name "
            f"(truth cases: {', '.join(sorted(references)[:3])}...; "
            f"predictions: {', '.join(sorted(predictions)[:3])}...)"
        )
    unmatched = sorted(set(references) - set(predictions))
    if unmatched:
        warnings.warn(
            f"{prediction}: no prediction for {len(unmatched)} truth cases ({', '.join(unmatched[:3])}...)",
            MousecordWarning,
            stacklevel=3,
        )
    return [(references[key], predictions[key]) for key in common]


def _single(path: Path) -> dict[str, LabelSource]:
    source = label_source(path)
    return {source.key: source}


def _evaluate_case(reference: LabelSource, prediction: LabelSource, cord_axis: str | int) -> CaseResult:
    logger.debug("evaluating %s against %s", prediction.name, reference.name)
    # the size segment was given for a wrong header applies to the truth on the same grid too
    voxel_size_mm = segmented_voxel_size(prediction)
    truth = load_label_map(reference, voxel_size_mm=voxel_size_mm)
    predicted = load_label_map(prediction, voxel_size_mm=voxel_size_mm)
    if truth.volume.shape != predicted.volume.shape:
        raise ImageFormatError(
            f"{prediction.name}: shape {predicted.volume.shape} differs from truth {reference.name} shape "
            f"{truth.volume.shape} (canonical RAS)"
        )
    voxel_size_mm = truth.volume.voxel_size_mm
    if not np.allclose(predicted.volume.voxel_size_mm, voxel_size_mm, rtol=_VOXEL_SIZE_RTOL):
        raise ImageFormatError(
            f"{prediction.name}: voxel size {np.round(predicted.volume.voxel_size_mm, 4).tolist()} mm "
            "differs "
            f"from truth {reference.name} {np.round(voxel_size_mm, 4).tolist()} mm"
        )
    check_same_grid(predicted.volume, truth.volume, name=_paths(prediction), reference_name=_paths(reference))
    # the slices segment took; without its sidecar, the truth's cord decides, not a prediction's strays
    cord_axis = measured_cord_axis(predicted, prediction, cord_axis, shape_from=truth.volume.data)
    truth_slices, slice_voxel_size_mm = truth.across_cord(cord_axis)
    metrics = compare_label_maps(
        truth_slices,
        predicted.across_cord(cord_axis)[0],
        voxel_size_mm=slice_voxel_size_mm,
        name=prediction.name,
    )
    return CaseResult(reference.key, reference.paths, prediction.paths, metrics)


def check_same_grid(volume: Volume, reference: Volume, *, name: str, reference_name: str) -> None:
    """Raise :class:`ImageFormatError` unless two same-shaped volumes lie on the same grid in space.

    The grids differ when some voxel (checked at the corners, where a difference in origin, direction or
    voxel size shows most) lands more than half a voxel away from the same voxel of the other volume; the
    voxel counts alone would then compare tissue that is not in the same place.
    """
    corners = np.array(np.meshgrid(*[(0, size - 1) for size in reference.shape], indexing="ij"))
    corners = np.vstack([corners.reshape(3, -1), np.ones((1, corners[0].size))])
    distances_mm = np.linalg.norm((volume.affine @ corners - reference.affine @ corners)[:3], axis=0)
    offset_voxels = float(distances_mm.max()) / float(reference.voxel_size_mm.min())
    if offset_voxels > _GRID_TOLERANCE_VOXELS:
        voxels = f"{offset_voxels:.3g} voxel{'' if f'{offset_voxels:.3g}' == '1' else 's'}"
        raise ImageFormatError(
            f"{name}: not on the same grid in space as truth {reference_name} (voxels up to "
            f"{distances_mm.max():.3g} mm = {voxels} apart); the metrics would compare tissue in different "
            "places: resample one onto the other or fix its header"
        )


def _paths(source: LabelSource) -> str:
    return " + ".join(str(path) for path in source.paths)


def _csv_value(value: Any) -> Any:
    if isinstance(value, float):
        return "nan" if not math.isfinite(value) else f"{value:.6g}"
    return value
