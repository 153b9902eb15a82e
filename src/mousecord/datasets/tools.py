"""The reference's data tools: extract annotated slices, crop, fix headers, BIDS <-> nnU-Net (no torch).

These work on the files' own arrays (no reorientation), as the reference's scripts do: "slices" are along
the last array axis. Unlike the reference, nothing is ever written over an input.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from mousecord.datasets.bids import MASK_FOLDER_DEFAULT, BidsCase, find_bids_images, image_stem, mask_path
from mousecord.datasets.nnunet_raw import (
    CONVERSION_DICT,
    DATASET_JSON,
    FILE_ENDING,
    make_dataset_json,
    read_conversion_dict,
)
from mousecord.errors import DatasetError, ImageFormatError, OutputError
from mousecord.io.atomic import atomic_output, check_not_input, split_suffix
from mousecord.labels import IGNORE_VALUE, TISSUE_LABELS, Label

logger = logging.getLogger(__name__)

#: A mask voxel is "on" above this value (the reference's threshold).
MASK_THRESHOLD = 1e-12

DEFAULT_ZOOMS_MM: tuple[float, float, float] = (0.05, 0.05, 0.05)


# ----------------------------------------------------------------------------------------------- arrays


def masks_to_label_map(
    gm_mask: np.ndarray,
    wm_mask: np.ndarray,
    *,
    name: str,
    ignore_unannotated: bool = False,
    slice_axis: int = -1,
) -> np.ndarray:
    """Combine binary GM and WM masks into one uint8 label map (mask > 1e-12 -> GM=1, WM=2).

    Args:
        gm_mask, wm_mask: arrays of the same shape (any numeric type).
        name: file name for error messages.
        ignore_unannotated: set every slice (along ``slice_axis``) without a GM or WM voxel to
            :data:`~mousecord.labels.IGNORE_VALUE`: an annotated slice is annotated in full (background
            included), the others are unknown.
        slice_axis: the axial axis (the last one in files and in canonical RAS).

    Raises:
        DatasetError: shapes differ, or GM and WM overlap.
    """
    if gm_mask.shape != wm_mask.shape:
        raise DatasetError(
            f"{name}: GM mask shape {gm_mask.shape} differs from WM mask shape {wm_mask.shape}"
        )
    gm, wm = gm_mask > MASK_THRESHOLD, wm_mask > MASK_THRESHOLD
    overlap = int(np.count_nonzero(gm & wm))
    if overlap:
        raise DatasetError(
            f"{name}: GM and WM masks overlap in {overlap} voxels; a voxel can hold one label only"
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


def annotated_slices(label_map: np.ndarray, *, slice_axis: int = -1) -> np.ndarray:
    """(n_slices,) bool: slices along ``slice_axis`` holding at least one GM or WM voxel."""
    tissue = (label_map == Label.GM) | (label_map == Label.WM)
    other_axes = tuple(axis for axis in range(label_map.ndim) if axis != slice_axis % label_map.ndim)
    return tissue.any(axis=other_axes)


def shifted_affine(affine: np.ndarray, z_start: int) -> np.ndarray:
    """Affine of the sub-volume starting at index ``z_start`` of the last axis (same world positions)."""
    translation = np.eye(4)
    translation[2, 3] = z_start
    return np.asarray(affine, dtype=np.float64) @ translation


# ----------------------------------------------------------------------------------------------- files


def _load(path: Path) -> nib.Nifti1Image:
    if not Path(path).is_file():
        raise ImageFormatError(f"{path}: file not found")
    try:
        image = nib.load(path)
        if len(image.shape) != 3:
            raise ImageFormatError(f"{path}: expected a 3D image, got shape {tuple(image.shape)}")
        return image
    except (nib.filebasedimages.ImageFileError, OSError, EOFError, ValueError) as error:
        raise ImageFormatError(f"{path}: not a readable NIfTI file ({error})") from error


def _data(image: nib.Nifti1Image, path: Path) -> np.ndarray:
    try:
        return np.asanyarray(image.dataobj)
    except (OSError, EOFError, ValueError) as error:
        raise ImageFormatError(f"{path}: data cannot be read ({error})") from error


def _stored(image: nib.Nifti1Image, path: Path) -> tuple[np.ndarray, tuple[float, float] | None]:
    """The data as stored on disk (no scaling applied) and the file's ``(slope, intercept)``, if any.

    Writing these back with :func:`_write` (``scaling=``) reproduces the input's voxels bit for bit; going
    through the scaled float values and casting back to an integer type would truncate them.
    """
    proxy = image.dataobj
    slope, inter = getattr(proxy, "slope", 1.0), getattr(proxy, "inter", 0.0)
    if not nib.is_proxy(proxy) or (slope == 1.0 and inter == 0.0):
        return _data(image, path), None
    try:
        return np.asanyarray(proxy.get_unscaled()), (float(slope), float(inter))
    except (OSError, EOFError, ValueError) as error:
        raise ImageFormatError(f"{path}: data cannot be read ({error})") from error


def _write(
    data: np.ndarray,
    affine: np.ndarray,
    header: nib.Nifti1Header,
    path: Path,
    *,
    dtype: np.dtype | type | None = None,
    scaling: tuple[float, float] | None = None,
) -> Path:
    """Write ``data`` with a copy of ``header`` whose qform and sform are ``affine`` with the same codes.

    ``scaling``: ``(slope, intercept)`` to store with ``data`` as it is (raw values from :func:`_stored`).
    """
    header = header.copy()
    dtype = np.dtype(dtype or data.dtype)
    if header.get_data_dtype() != dtype:
        header.set_slope_inter(None, None)  # the input's scaling means nothing for another data type
    header.set_data_dtype(dtype)
    image = nib.Nifti1Image(np.asarray(data).astype(dtype, copy=False), affine, header=header)
    if scaling is not None:
        image.header.set_slope_inter(*scaling)  # after construction, which resets it
    _, qform_code = header.get_qform(coded=True)
    _, sform_code = header.get_sform(coded=True)
    image.set_qform(affine, int(qform_code) or 1)
    image.set_sform(affine, int(sform_code) or 1)
    with atomic_output(path) as temporary:
        nib.save(image, temporary)
    return path


def _copy(source: Path, target: Path) -> None:
    check_not_input(target, [source])
    with atomic_output(target) as temporary:
        shutil.copyfile(source, temporary)


def _labelled_cases(root: Path, mask_folder: str) -> list[BidsCase]:
    folder = root / "derivatives" / mask_folder
    if not folder.is_dir():
        raise DatasetError(f"{folder}: label folder not found (choose it with --label-folder)")
    return find_bids_images(root, mask_folder=mask_folder)


def slice_stem(stem: str, index: int) -> str:
    """``sub-01_chunk-1_T1w`` + 12 -> ``sub-01_chunk-1-slice-12_T1w`` (the reference's names)."""
    head, separator, suffix = stem.rpartition("_")
    if not separator:
        return f"{stem}-slice-{index}"
    return f"{head}-slice-{index}_{suffix}"


def extract_slices(
    dataset_root: Path | str, output_root: Path | str, *, mask_folder: str = MASK_FOLDER_DEFAULT
) -> list[Path]:
    """Write every annotated axial slice of a BIDS dataset as a 1-slice volume, plus the full volumes.

    For each image with both masks, each slice (last axis) where GM or WM is non-zero becomes
    ``<sub>_<chunk>-slice-<i>_T1w.nii.gz`` with its GM/WM slice masks, in the same layout under
    ``output_root``; the full image and masks are copied too. A slice's affine is shifted so that it stays
    where it was in the world.

    Returns:
        The written slice images.

    Raises:
        DatasetError: no labelled image, missing label folder, mismatched or overlapping masks.
        OutputError: ``output_root`` is the dataset itself.
    """
    root, output_root = Path(dataset_root), Path(output_root)
    if output_root.resolve() == root.resolve():
        raise OutputError(f"{output_root}: output dataset must differ from the input dataset")
    cases = [case for case in _labelled_cases(root, mask_folder) if case.has_masks]
    if not cases:
        raise DatasetError(f"{root}: no image has both GM and WM masks under derivatives/{mask_folder}")
    written = []
    for case in cases:
        image = _load(case.image)
        masks = {label: _load(case.masks[label]) for label in TISSUE_LABELS}
        mask_data = {label: _data(masks[label], case.masks[label]) for label in TISSUE_LABELS}  # read once
        label_map = masks_to_label_map(
            mask_data[Label.GM], mask_data[Label.WM], name=case.masks[Label.GM].name
        )
        if label_map.shape != image.shape:
            raise DatasetError(
                f"{case.masks[Label.GM]}: mask shape {label_map.shape} differs from image {image.shape}"
            )
        relative = case.image.relative_to(root)
        stem = image_stem(case.image)
        _copy(case.image, output_root / relative)
        for label in TISSUE_LABELS:
            _copy(
                case.masks[label], mask_path(output_root, output_root / relative, label, folder=mask_folder)
            )
        data = _data(image, case.image)
        for index in np.flatnonzero(annotated_slices(label_map)):
            name = slice_stem(stem, int(index)) + FILE_ENDING
            target = output_root / relative.parent / name
            affine = shifted_affine(image.affine, int(index))
            _write(data[..., index : index + 1], affine, image.header, target)
            for label in TISSUE_LABELS:
                _write(
                    mask_data[label][..., index : index + 1],
                    affine,
                    masks[label].header,
                    mask_path(output_root, target, label, folder=mask_folder),
                )
            written.append(target)
    logger.info(
        "extracted %d annotated slices from %d volumes into %s", len(written), len(cases), output_root
    )
    return written


def default_output(path: Path, suffix: str) -> Path:
    """``sub-01_T1w.nii.gz`` + ``_crop`` -> ``sub-01_T1w_crop.nii.gz`` beside the input."""
    stem, extension = split_suffix(path)
    return path.with_name(f"{stem}{suffix}{extension}")


def crop_file(path: Path | str, z_start: int, z_stop: int, output: Path | str) -> Path:
    """Keep slices ``z_start:z_stop`` (Python slicing, last axis) of a NIfTI file, written to ``output``.

    The affine is shifted by ``z_start`` so every kept voxel stays where it was; other header fields are
    kept. Raises OutputError if ``output`` is the input, ConfigError-like DatasetError for an empty range.
    """
    path, output = Path(path), Path(output)
    check_not_input(output, [path])
    image = _load(path)
    depth = image.shape[-1]
    start, stop, _ = slice(z_start, z_stop).indices(depth)
    if stop <= start:
        raise DatasetError(f"{path}: slice range {z_start}:{z_stop} is empty for {depth} slices")
    data, scaling = _stored(image, path)
    return _write(
        data[..., start:stop],
        shifted_affine(image.affine, start),
        image.header,
        output,
        dtype=image.get_data_dtype(),
        scaling=scaling,
    )


def fix_header_file(
    path: Path | str, output: Path | str, *, zooms_mm: tuple[float, float, float] = DEFAULT_ZOOMS_MM
) -> Path:
    """Force the voxel size to ``zooms_mm`` and copy the qform into the sform; data unchanged.

    Raises:
        OutputError: ``output`` is the input.
        ImageFormatError: unreadable file or a zoom that is not positive.
    """
    path, output = Path(path), Path(output)
    check_not_input(output, [path])
    if len(zooms_mm) != 3 or min(zooms_mm) <= 0:
        raise ImageFormatError(f"{path}: zooms must be three positive numbers in mm, got {list(zooms_mm)}")
    image = _load(path)
    header = image.header.copy()
    header.set_zooms(tuple(float(zoom) for zoom in zooms_mm))
    qform, qform_code = header.get_qform(coded=True)  # rebuilt from the quaternion and the new zooms
    if qform is None or not qform_code:
        qform = header.get_base_affine()
        qform_code = 1
    data, scaling = _stored(image, path)
    fixed = nib.Nifti1Image(data, qform, header=header)
    if scaling is not None:
        fixed.header.set_slope_inter(*scaling)  # raw values plus the input's scaling: data unchanged
    fixed.set_qform(qform, int(qform_code))
    fixed.set_sform(qform, int(qform_code))
    with atomic_output(output) as temporary:
        nib.save(fixed, temporary)
    return output


# ----------------------------------------------------------------------------------------------- nnU-Net


@dataclass(frozen=True)
class ConversionResult:
    folder: Path
    training_cases: int
    test_cases: int
    conversion_dict: Path


def _task_name(output: Path) -> str:
    match = re.fullmatch(r"Dataset\d{3}_(.+)", output.name)
    return match.group(1) if match else output.name


def bids_to_nnunet(
    dataset_root: Path | str,
    output_folder: Path | str,
    *,
    task_name: str | None = None,
    mask_folder: str = MASK_FOLDER_DEFAULT,
    ignore_label: bool = False,
) -> ConversionResult:
    """Convert a BIDS dataset into an nnU-Net v2 raw dataset (the reference's conversion).

    Volumes with both masks become ``imagesTr/<task>_<NNN>_0000.nii.gz`` and ``labelsTr/<task>_<NNN>.nii.gz``
    (mask > 1e-12 -> GM=1, WM=2), the others ``imagesTs/``; NNN counts from 001 in sorted path order.
    ``conversion_dict.json`` maps each original image path to its new path; ``dataset.json`` declares
    channel T1w and the labels. With ``ignore_label``, slices without any GM/WM voxel get value 3 and
    dataset.json declares ``"ignore": 3``, so nnU-Net itself trains on the annotated slices only.

    Raises:
        DatasetError: missing label folder, no labelled volume, mismatched or overlapping masks.
        OutputError: ``output_folder`` already holds a dataset.json or is inside the input dataset's images.
    """
    root, output = Path(dataset_root), Path(output_folder)
    if (output / DATASET_JSON).exists():
        raise OutputError(f"{output}: already holds a {DATASET_JSON}; choose a new folder")
    task = task_name or _task_name(output)
    cases = _labelled_cases(root, mask_folder)
    labelled = [case for case in cases if case.has_masks]
    if not labelled:
        raise DatasetError(f"{root}: no image has both GM and WM masks under derivatives/{mask_folder}")
    conversion: dict[str, str] = {}
    for number, case in enumerate(labelled, start=1):
        image = _load(case.image)
        gm, wm = (_load(case.masks[label]) for label in TISSUE_LABELS)
        label_map = masks_to_label_map(
            _data(gm, case.masks[Label.GM]),
            _data(wm, case.masks[Label.WM]),
            name=case.masks[Label.GM].name,
            ignore_unannotated=ignore_label,
        )
        if label_map.shape != image.shape:
            raise DatasetError(
                f"{case.masks[Label.GM]}: mask shape {label_map.shape} differs from image {image.shape}"
            )
        new_image = output / "imagesTr" / f"{task}_{number:03d}_0000{FILE_ENDING}"
        _copy(case.image, new_image)
        _write(
            label_map,
            image.affine,
            image.header,
            output / "labelsTr" / f"{task}_{number:03d}{FILE_ENDING}",
            dtype=np.uint8,
        )
        conversion[str(case.image.resolve())] = str(new_image.resolve())
    for number, case in enumerate((case for case in cases if not case.has_masks), start=len(labelled) + 1):
        new_image = output / "imagesTs" / f"{task}_{number:03d}_0000{FILE_ENDING}"
        _copy(case.image, new_image)
        conversion[str(case.image.resolve())] = str(new_image.resolve())
    description = "sparse slice annotations, unannotated slices ignored" if ignore_label else ""
    dataset_json = make_dataset_json(
        num_training=len(labelled), ignore_label=ignore_label, name=task, description=description
    )
    for name, content in ((DATASET_JSON, dataset_json), (CONVERSION_DICT, conversion)):
        with atomic_output(output / name) as temporary:
            temporary.write_text(json.dumps(content, indent=2) + "\n")
    return ConversionResult(output, len(labelled), len(cases) - len(labelled), output / CONVERSION_DICT)


def _bids_root_of(original: Path) -> Path:
    for parent in original.parents:
        if parent.name.startswith("sub-"):
            return parent.parent
    raise DatasetError(f"{original}: not inside a sub-* folder; pass the BIDS root explicitly")


def nnunet_to_bids(
    predictions_folder: Path | str,
    conversion_dict: Path | str,
    *,
    mask_folder: str = "predictions",
    bids_root: Path | str | None = None,
) -> list[Path]:
    """Write nnU-Net label maps back as BIDS GM/WM masks using a ``conversion_dict.json``.

    For each ``<case>.nii.gz`` in ``predictions_folder`` whose image ``<case>_0000.nii.gz`` appears in the
    dictionary, writes ``derivatives/<mask_folder>/<sub>/anat/<stem>_label-GM_mask.nii.gz`` and ``-WM``
    (uint8 0/1) under the original dataset root (or ``bids_root``).

    Returns:
        The written mask paths.

    Raises:
        DatasetError: no prediction matches the dictionary.
    """
    predictions_folder = Path(predictions_folder)
    conversion = read_conversion_dict(conversion_dict)
    by_case = {
        Path(new).name[: -len(f"_0000{FILE_ENDING}")]: Path(original) for original, new in conversion.items()
    }
    written = []
    for prediction in sorted(predictions_folder.glob(f"*{FILE_ENDING}")):
        original = by_case.get(prediction.name[: -len(FILE_ENDING)])
        if original is None:
            continue
        root = Path(bids_root) if bids_root is not None else _bids_root_of(original)
        image = _load(prediction)
        label_map = np.asarray(_data(image, prediction))
        for label in TISSUE_LABELS:
            target = mask_path(
                root, root / original.relative_to(_bids_root_of(original)), label, folder=mask_folder
            )
            check_not_input(target, [prediction, original])
            written.append(
                _write(
                    (label_map == label).astype(np.uint8), image.affine, image.header, target, dtype=np.uint8
                )
            )
    if not written:
        raise DatasetError(f"{predictions_folder}: no *{FILE_ENDING} prediction matches {conversion_dict}")
    return written


__all__ = [
    "ConversionResult",
    "annotated_slices",
    "bids_to_nnunet",
    "crop_file",
    "default_output",
    "extract_slices",
    "fix_header_file",
    "masks_to_label_map",
    "nnunet_to_bids",
    "shifted_affine",
    "slice_stem",
]
