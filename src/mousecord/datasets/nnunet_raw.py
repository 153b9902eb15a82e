"""nnU-Net v2 raw datasets: ``imagesTr/``, ``labelsTr/``, ``imagesTs/`` and ``dataset.json`` (no torch).

::

    <DatasetNNN_Name>/
      dataset.json          channel_names, labels (optionally "ignore": K), numTraining, file_ending
      imagesTr/<case>_0000.nii.gz
      labelsTr/<case>.nii.gz
      imagesTs/<case>_0000.nii.gz
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mousecord.errors import DatasetError
from mousecord.labels import DATASET_JSON_LABELS, IGNORE_VALUE

DATASET_JSON = "dataset.json"
CONVERSION_DICT = "conversion_dict.json"
FILE_ENDING = ".nii.gz"
IGNORE_NAME = "ignore"


@dataclass(frozen=True)
class NnunetCase:
    """One training case of an nnU-Net raw dataset."""

    name: str
    image: Path
    label: Path


def dataset_json_labels(*, ignore_label: bool) -> dict[str, int]:
    """``labels`` of dataset.json: GM/WM, plus ``"ignore": 3`` (highest label + 1) for sparse annotation."""
    labels = dict(DATASET_JSON_LABELS)
    if ignore_label:
        labels[IGNORE_NAME] = IGNORE_VALUE
    return labels


def make_dataset_json(
    *, num_training: int, ignore_label: bool, name: str = "", description: str = ""
) -> dict:
    """The dataset.json the reference writes (channel_names, labels, numTraining, file_ending)."""
    content: dict[str, Any] = {
        "channel_names": {"0": "T1w"},
        "labels": dataset_json_labels(ignore_label=ignore_label),
        "numTraining": int(num_training),
        "file_ending": FILE_ENDING,
    }
    if name:
        content["name"] = name
    if description:
        content["description"] = description
    return content


def read_dataset_json(root: Path | str) -> dict[str, Any]:
    """Parse ``root/dataset.json`` and check the fields mousecord relies on.

    Raises:
        DatasetError: missing or invalid JSON, more than one channel, or labels other than GM/WM(/ignore).
    """
    path = Path(root) / DATASET_JSON
    if not path.is_file():
        raise DatasetError(f"{path}: not found (is {root} an nnU-Net raw dataset?)")
    try:
        content = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DatasetError(f"{path}: invalid JSON ({error})") from error
    channels = content.get("channel_names", content.get("modality", {}))
    if len(channels) != 1:
        raise DatasetError(f"{path}: expected one input channel, got channel_names {channels}")
    labels = {str(key): value for key, value in content.get("labels", {}).items()}
    tissue = {key: value for key, value in labels.items() if key != IGNORE_NAME}
    if tissue != DATASET_JSON_LABELS:
        raise DatasetError(
            f"{path}: expected labels {DATASET_JSON_LABELS} (plus optional ignore), got {labels}"
        )
    if content.get("file_ending", FILE_ENDING) != FILE_ENDING:
        raise DatasetError(
            f"{path}: only file_ending {FILE_ENDING!r} is supported, got {content['file_ending']!r}"
        )
    return content


def ignore_value_of(dataset_json: dict[str, Any]) -> int | None:
    """The ``ignore`` label value a dataset.json declares, or None."""
    value = dataset_json.get("labels", {}).get(IGNORE_NAME)
    return None if value is None else int(value)


def find_nnunet_cases(root: Path | str) -> list[NnunetCase]:
    """Training cases (``imagesTr/<case>_0000`` with ``labelsTr/<case>``), sorted by name.

    Raises:
        DatasetError: no training images, or an image without a label file.
    """
    root = Path(root)
    images = sorted((root / "imagesTr").glob(f"*_0000{FILE_ENDING}"))
    if not images:
        raise DatasetError(f"{root / 'imagesTr'}: no *_0000{FILE_ENDING} training images")
    cases = []
    for image in images:
        name = image.name[: -len(f"_0000{FILE_ENDING}")]
        label = root / "labelsTr" / f"{name}{FILE_ENDING}"
        if not label.is_file():
            raise DatasetError(f"{image}: no matching label file {label}")
        cases.append(NnunetCase(name, image, label))
    return cases


def read_conversion_dict(path: Path | str) -> dict[str, str]:
    """Read a ``conversion_dict.json`` (original image path -> nnU-Net image path)."""
    path = Path(path)
    if path.is_dir():
        path = path / CONVERSION_DICT
    try:
        content = json.loads(path.read_text())
    except FileNotFoundError as error:
        raise DatasetError(f"{path}: conversion dictionary not found") from error
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DatasetError(f"{path}: invalid JSON ({error})") from error
    if not isinstance(content, dict):
        raise DatasetError(f"{path}: expected a JSON object mapping original paths to nnU-Net paths")
    return {str(key): str(value) for key, value in content.items()}


__all__ = [
    "CONVERSION_DICT",
    "DATASET_JSON",
    "NnunetCase",
    "dataset_json_labels",
    "find_nnunet_cases",
    "ignore_value_of",
    "make_dataset_json",
    "read_conversion_dict",
    "read_dataset_json",
]
