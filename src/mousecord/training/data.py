"""Training data: read a BIDS or nnU-Net raw dataset into network-space arrays with sparse labels.

Every image goes through :func:`mousecord.inference.preprocessing.preprocess_image`, the function the
Predictor runs before its network: network axis order (z, y, x), crop to the non-zero box, z-score over that
box, and resampling to the model's spacing when fine-tuning a model (in-plane models keep their slices).
The label map gets the same axes, crop and (nearest-neighbour) resampling; slices nobody annotated hold
:data:`~mousecord.labels.IGNORE_VALUE`. All checks run here, before any training starts.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mousecord.datasets.bids import MASK_FOLDER_DEFAULT, BidsCase, find_bids_images
from mousecord.datasets.nnunet_raw import (
    CONVERSION_DICT,
    find_nnunet_cases,
    ignore_value_of,
    read_conversion_dict,
    read_dataset_json,
)
from mousecord.errors import DatasetError, ImageFormatError
from mousecord.inference.preprocessing import preprocess_image, preprocess_label_map
from mousecord.io import load_nifti
from mousecord.labels import IGNORE_VALUE, TISSUE_LABELS, Label, check_label_values, masks_to_label_map
from mousecord.models.bundle import InputSpec

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class TrainingCase:
    """One annotated volume, in network axis order.

    Attributes:
        name: image file stem or nnU-Net case name.
        subject: ``sub-XX`` (cross-validation splits by it).
        image: (z, y, x) float32, preprocessed as the Predictor does (cropped to non-zero, z-scored).
        label_map: (z, y, x) uint8: 0 background, 1 GM, 2 WM, IGNORE_VALUE where not annotated.
        spacing_mm: (3,) voxel size of ``image`` in (z, y, x) order.
    """

    name: str
    subject: str
    image: np.ndarray
    label_map: np.ndarray
    spacing_mm: tuple[float, float, float]

    @property
    def labelled_slice_indices(self) -> np.ndarray:
        """Indices of the z slices holding any labelled voxel (background included: not the ignore value)."""
        return np.flatnonzero((self.label_map != IGNORE_VALUE).any(axis=(1, 2)))

    @property
    def is_dense(self) -> bool:
        return len(self.labelled_slice_indices) == self.label_map.shape[0]


def annotated_slice_count(cases: Sequence[TrainingCase]) -> int:
    """How many annotated axial slices ``cases`` hold together."""
    return sum(len(case.labelled_slice_indices) for case in cases)


@dataclass(frozen=True, eq=False)
class TrainingDataset:
    cases: tuple[TrainingCase, ...]
    source: Path
    layout: str

    @property
    def subjects(self) -> list[str]:
        return sorted({case.subject for case in self.cases})

    def select(self, subjects: set[str]) -> tuple[TrainingCase, ...]:
        return tuple(case for case in self.cases if case.subject in subjects)

    def describe(self) -> str:
        slices = annotated_slice_count(self.cases)
        dense = sum(case.is_dense for case in self.cases)
        return (
            f"{_counted(len(self.cases), 'volume')} from {_counted(len(self.subjects), 'subject')} "
            f"({self.layout}), {_counted(slices, 'annotated slice')}, "
            f"{_counted(dense, 'densely annotated volume')}"
        )


def _counted(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def load_training_dataset(
    path: Path | str, *, label_folder: str = MASK_FOLDER_DEFAULT, input_spec: InputSpec | None = None
) -> TrainingDataset:
    """Read a BIDS dataset (masks under ``derivatives/<label_folder>``) or an nnU-Net raw dataset.

    Args:
        path: the dataset folder.
        label_folder: the derivatives folder holding the GM/WM masks (BIDS).
        input_spec: what the network expects (a model being fine-tuned: its ``input_spec``); default a
            z-scored single channel at each image's own voxel size.

    Raises:
        DatasetError: missing label folder, no labelled volume, mask shape differing from the image,
            overlapping GM/WM masks, unexpected label values.
    """
    path = Path(path)
    if (path / "dataset.json").is_file():
        cases = _load_nnunet(path, input_spec)
        layout = "nnU-Net raw"
    else:
        cases = _load_bids(path, label_folder, input_spec)
        layout = "BIDS"
    cases = [case for case in cases if _has_annotation(case)]
    if not cases:
        raise DatasetError(f"{path}: no volume has any GM or WM annotation; nothing to train on")
    dataset = TrainingDataset(tuple(cases), path, layout)
    logger.info("training data: %s", dataset.describe())
    return dataset


def _has_annotation(case: TrainingCase) -> bool:
    if len(case.labelled_slice_indices) == 0:
        logger.warning("%s: masks are empty, skipped", case.name)
        return False
    return True


def _load_bids(root: Path, label_folder: str, input_spec: InputSpec | None) -> list[TrainingCase]:
    folder = root / "derivatives" / label_folder
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder not found")
    if not folder.is_dir():
        raise DatasetError(f"{folder}: label folder not found (choose it with label_folder)")
    labelled = []
    bids_cases = find_bids_images(root, mask_folder=label_folder)
    _warn_about_unmatched_masks(folder, bids_cases)
    for bids_case in bids_cases:
        present = [label for label in TISSUE_LABELS if bids_case.masks[label].exists()]
        if not present:
            continue
        if len(present) != len(TISSUE_LABELS):
            missing = next(bids_case.masks[label] for label in TISSUE_LABELS if label not in present)
            raise DatasetError(f"{missing}: mask missing (the other tissue mask exists)")
        labelled.append(bids_case)
    # Decompressing .nii.gz dominates and zlib releases the GIL: threads read several volumes at once.
    with ThreadPoolExecutor(min(4, os.cpu_count() or 1)) as pool:
        cases = list(pool.map(functools.partial(_load_bids_case, input_spec=input_spec), labelled))
    if not cases:
        expected = f" (expected e.g. {_mask_names(folder, bids_cases[0])})" if bids_cases else ""
        raise DatasetError(f"{root}: no image has GM and WM masks under {folder}{expected}")
    return cases


def _mask_names(folder: Path, bids_case: BidsCase) -> str:
    """The mask paths ``bids_case`` would have under ``folder``, for messages."""
    names = [str(bids_case.masks[label].relative_to(folder)) for label in TISSUE_LABELS]
    return " and ".join(names)


def _warn_about_unmatched_masks(folder: Path, bids_cases: list[BidsCase]) -> None:
    """Warn about NIfTI files under the label folder that are no image's GM or WM mask: a misnamed mask
    would otherwise leave its image out of training without a word."""
    expected = {path.resolve() for case in bids_cases for path in case.masks.values()}
    unmatched = sorted(
        path
        for pattern in ("*.nii", "*.nii.gz")
        for path in folder.rglob(pattern)
        if path.resolve() not in expected
    )
    if unmatched:
        example = f"; masks are named e.g. {_mask_names(folder, bids_cases[0])}" if bids_cases else ""
        logger.warning(
            "%s: %d file(s) are no image's GM or WM mask and are not used, e.g. %s%s",
            folder,
            len(unmatched),
            unmatched[0].relative_to(folder),
            example,
        )


def _load_bids_case(bids_case: BidsCase, *, input_spec: InputSpec | None) -> TrainingCase:
    image = load_nifti(bids_case.image, dtype=np.float32).volume
    masks = [load_nifti(bids_case.masks[label]).volume for label in TISSUE_LABELS]
    for label, mask in zip(TISSUE_LABELS, masks, strict=True):
        if mask.shape != image.shape:
            raise DatasetError(
                f"{bids_case.masks[label]}: mask shape {mask.shape} differs from image shape {image.shape}"
            )
    label_map = masks_to_label_map(  # overlapping manual masks are an annotation error: refuse them
        masks[0].data,
        masks[1].data,
        name=bids_case.masks[Label.GM].name,
        on_overlap="error",
        ignore_unannotated=True,
        slice_axis=2,
    )
    return _case(bids_case.image.name.split(".nii")[0], bids_case.subject, image, label_map, input_spec)


def _load_nnunet(root: Path, input_spec: InputSpec | None) -> list[TrainingCase]:
    dataset_json = read_dataset_json(root)
    ignore_value = ignore_value_of(dataset_json)
    subjects = _subjects_from_conversion(root)
    cases = []
    for nnunet_case in find_nnunet_cases(root):
        image = load_nifti(nnunet_case.image, dtype=np.float32).volume
        labels = load_nifti(nnunet_case.label).volume
        if labels.shape != image.shape:
            raise DatasetError(
                f"{nnunet_case.label}: label shape {labels.shape} differs from image shape {image.shape}"
            )
        label_map = np.rint(np.asarray(labels.data, dtype=np.float64)).astype(np.int64)
        if ignore_value is not None:
            label_map[label_map == ignore_value] = IGNORE_VALUE
        check_label_values(label_map, name=nnunet_case.label.name, allow_ignore=ignore_value is not None)
        subject = subjects.get(nnunet_case.name, nnunet_case.name)
        cases.append(_case(nnunet_case.name, subject, image, label_map.astype(np.uint8), input_spec))
    return cases


def _subjects_from_conversion(root: Path) -> dict[str, str]:
    """Case name -> ``sub-XX`` from a bids-to-nnunet ``conversion_dict.json``, when there is one."""
    if not (root / CONVERSION_DICT).is_file():
        return {}
    subjects = {}
    for original, new in read_conversion_dict(root / CONVERSION_DICT).items():
        subject = next((part for part in Path(original).parts if part.startswith("sub-")), None)
        if subject:
            subjects[Path(new).name.split("_0000.nii")[0]] = subject
    return subjects


def _case(
    name: str, subject: str, image, label_map: np.ndarray, input_spec: InputSpec | None
) -> TrainingCase:
    if input_spec is None:
        own_spacing = tuple(float(value) for value in np.round(image.voxel_size_mm[::-1], 6))
        input_spec = InputSpec("training", own_spacing)
    try:
        preprocessed = preprocess_image(image.data, image.voxel_size_mm, input_spec)
    except ImageFormatError as error:  # e.g. one slice for a 3D network
        raise DatasetError(f"{name}: cannot be prepared for training ({error})") from error
    labels = preprocess_label_map(label_map, preprocessed, input_spec.transpose_forward)
    spacing = tuple(float(value) for value in np.round(preprocessed.network_spacing_mm, 6))
    return TrainingCase(name, subject, preprocessed.data[0], labels, spacing)


__all__ = ["TrainingCase", "TrainingDataset", "annotated_slice_count", "load_training_dataset"]
