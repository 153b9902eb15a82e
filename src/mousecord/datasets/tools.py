"""The reference's data tools: extract annotated slices, crop, fix headers, BIDS <-> nnU-Net (no torch).

These work on the files' own arrays (no reorientation), as the reference's scripts do: "slices" are along
the last array axis. Unlike the reference, nothing is ever written over an input.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import uuid
import warnings
from collections.abc import Iterator, Sequence
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
from mousecord.errors import ConfigError, DatasetError, MousecordWarning, OutputError
from mousecord.io.atomic import atomic_output, check_not_input, split_suffix
from mousecord.io.nifti import open_native, read_native, read_native_stored, save_native
from mousecord.io.volume import affine_with_voxel_size
from mousecord.labels import (
    LABEL_NAMES,
    MASK_THRESHOLD,
    TISSUE_LABELS,
    Label,
    annotated_slices,
    check_label_values,
    masks_to_label_map,
)

logger = logging.getLogger(__name__)

DEFAULT_ZOOMS_MM: tuple[float, float, float] = (0.05, 0.05, 0.05)


# ----------------------------------------------------------------------------------------------- arrays


def shifted_affine(affine: np.ndarray, z_start: int) -> np.ndarray:
    """Affine of the sub-volume starting at index ``z_start`` of the last axis (same world positions)."""
    translation = np.eye(4)
    translation[2, 3] = z_start
    return np.asarray(affine, dtype=np.float64) @ translation


# ----------------------------------------------------------------------------------------------- files


def check_new_outputs(outputs: Sequence[Path], *, overwrite: bool) -> None:
    """Refuse, before any work, outputs that exist already, unless ``overwrite``: an earlier crop, a
    fixed header or hand-drawn masks are replaced only when asked.

    Raises:
        OutputError: an output exists (the first is named, with how many more do).
    """
    existing = [] if overwrite else [path for path in outputs if path.exists() or path.is_symlink()]
    if existing:
        more = f" (with {len(existing) - 1} more of the outputs)" if len(existing) > 1 else ""
        raise OutputError(f"{existing[0]}: exists{more}; not replaced without overwrite (overwrite=True)")


def _copy(source: Path, target: Path) -> None:
    check_not_input(target, [source])
    with atomic_output(target) as temporary:
        shutil.copyfile(source, temporary)


def _labelled_cases(root: Path, mask_folder: str) -> list[BidsCase]:
    folder = root / "derivatives" / mask_folder
    if not folder.is_dir():
        raise DatasetError(f"{folder}: label folder not found (choose it with label_folder)")
    return find_bids_images(root, mask_folder=mask_folder)


def slice_stem(stem: str, index: int) -> str:
    """``sub-01_chunk-1_T1w`` + 12 -> ``sub-01_chunk-1-slice-12_T1w`` (the reference's names)."""
    head, separator, suffix = stem.rpartition("_")
    if not separator:
        return f"{stem}-slice-{index}"
    return f"{head}-slice-{index}_{suffix}"


def extract_slices(
    dataset_root: Path | str,
    output_root: Path | str,
    *,
    mask_folder: str = MASK_FOLDER_DEFAULT,
    overwrite: bool = False,
) -> list[Path]:
    """Write every annotated axial slice of a BIDS dataset as a 1-slice volume, plus the full volumes.

    For each image with both masks, each slice (last axis) where GM or WM is non-zero becomes
    ``<sub>_<chunk>-slice-<i>_T1w.nii.gz`` with its GM/WM slice masks, in the same layout under
    ``output_root``; the full image and masks are copied too, and the dataset's descriptions
    (``dataset_description.json`` and ``participants.tsv``, the mask folder's description). A slice's affine
    is shifted so that it stays where it was in the world.

    Returns:
        The written slice images.

    Raises:
        DatasetError: no labelled image, missing label folder, mismatched or overlapping masks.
        OutputError: ``output_root`` is the dataset itself, or a folder with files in it (unless
            ``overwrite``: then files of the same names are replaced).
    """
    root, output_root = Path(dataset_root), Path(output_root)
    if output_root.resolve() == root.resolve():
        raise OutputError(f"{output_root}: output dataset must differ from the input dataset")
    if not overwrite and output_root.is_dir() and any(output_root.iterdir()):
        raise OutputError(
            f"{output_root}: exists and is not empty; give a new folder, or overwrite (overwrite=True) to "
            "replace the files written there"
        )
    cases = [case for case in _labelled_cases(root, mask_folder) if case.has_masks]
    if not cases:
        raise DatasetError(f"{root}: no image has both GM and WM masks under derivatives/{mask_folder}")
    written = []
    for case in cases:
        image, data = read_native(case.image)
        masks, mask_data = {}, {}
        for label in TISSUE_LABELS:  # each mask read once
            masks[label], mask_data[label] = read_native(case.masks[label])
        label_map = masks_to_label_map(  # overlapping manual masks are an annotation error: refuse them
            mask_data[Label.GM], mask_data[Label.WM], name=case.masks[Label.GM].name, on_overlap="error"
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
        for index in np.flatnonzero(annotated_slices(label_map)):
            name = slice_stem(stem, int(index)) + FILE_ENDING
            target = output_root / relative.parent / name
            affine = shifted_affine(image.affine, int(index))
            save_native(data[..., index : index + 1], affine, image.header, target)
            for label in TISSUE_LABELS:
                save_native(
                    mask_data[label][..., index : index + 1],
                    affine,
                    masks[label].header,
                    mask_path(output_root, target, label, folder=mask_folder),
                )
            written.append(target)
    for relative in (
        "dataset_description.json",
        "participants.tsv",
        f"derivatives/{mask_folder}/dataset_description.json",
    ):
        if (root / relative).is_file():  # a BIDS dataset is described at its root and in each derivative
            _copy(root / relative, output_root / relative)
    logger.debug(
        "extracted %d annotated slices from %d volumes into %s", len(written), len(cases), output_root
    )
    return written


def default_output(path: Path, suffix: str) -> Path:
    """``sub-01_T1w.nii.gz`` + ``_crop`` -> ``sub-01_T1w_crop.nii.gz`` beside the input."""
    stem, extension = split_suffix(path)
    return path.with_name(f"{stem}{suffix}{extension}")


def crop_outputs(
    image: Path | str,
    masks: Sequence[Path | str] = (),
    output: Path | str | None = None,
    suffix: str = "_crop",
) -> list[Path]:
    """Output names for :func:`crop_files`: the image's ``output``, else ``<stem><suffix>`` beside it; a
    mask named after the image (``<stem>_label-GM_mask``, ``<stem>_GM_seg``) is named after the output
    image the same way (``<stem>_crop_label-GM_mask``), so that image and masks still pair as BIDS and SCT
    pair them: beside the output image where it lay beside the image, else in its own folder (a BIDS
    ``derivatives`` tree); any other mask gets ``suffix`` in its own folder.

    >>> [path.name for path in crop_outputs("sub-01_T1w.nii.gz", ["sub-01_T1w_label-GM_mask.nii.gz"])]
    ['sub-01_T1w_crop.nii.gz', 'sub-01_T1w_crop_label-GM_mask.nii.gz']
    """
    image = Path(image)
    output_image = Path(output) if output is not None else default_output(image, suffix)
    image_stem, output_stem = split_suffix(image)[0], split_suffix(output_image)[0]
    outputs = [output_image]
    for mask in map(Path, masks):
        stem, extension = split_suffix(mask)
        if stem.startswith(f"{image_stem}_"):
            folder = output_image.parent if mask.parent.resolve() == image.parent.resolve() else mask.parent
            outputs.append(folder / f"{output_stem}{stem[len(image_stem) :]}{extension}")
        else:
            outputs.append(default_output(mask, suffix))
    return outputs


def crop_file(
    path: Path | str, z_start: int, z_stop: int, output: Path | str, *, overwrite: bool = False
) -> Path:
    """Keep slices ``z_start:z_stop`` (Python slicing, last axis) of a NIfTI file, written to ``output``.

    The affine is shifted by ``z_start`` so every kept voxel stays where it was; other header fields are
    kept, and scaled integer data is stored exactly as in the input.

    Raises:
        OutputError: ``output`` is the input, or exists (unless ``overwrite``).
        DatasetError: the range is empty.
    """
    return crop_files([path], z_start, z_stop, [output], overwrite=overwrite)[0]


def crop_files(
    paths: Sequence[Path | str],
    z_start: int,
    z_stop: int,
    outputs: Sequence[Path | str],
    *,
    overwrite: bool = False,
) -> list[Path]:
    """Crop an image and its masks the same way (see :func:`crop_file`), all or nothing.

    Every input shape and output path is checked before anything is written, and the outputs are renamed
    into place only once all of them were written.

    Args:
        paths: the image first, then its masks; all must have the image's shape.
        z_start, z_stop: Python slice bounds along the last axis.
        outputs: one output per input, all different and none of them an input (see
            :func:`crop_outputs`).
        overwrite: replace outputs that exist (an earlier crop); without it they are refused.

    Raises:
        OutputError: an output is an input, two outputs are the same file, or an output exists (unless
            ``overwrite``).
        DatasetError: shapes differ, the range is empty, or it reaches past the last slice.
    """
    paths, outputs = [Path(path) for path in paths], [Path(output) for output in outputs]
    if len(paths) != len(outputs) or not paths:
        raise ConfigError(f"crop needs one output per input, got {len(paths)} inputs, {len(outputs)} outputs")
    for output in outputs:
        check_not_input(output, paths)
    if len({output.resolve() for output in outputs}) != len(outputs):
        raise OutputError(f"{outputs[0]}: two outputs have the same name; choose different names")
    check_new_outputs(outputs, overwrite=overwrite)
    shapes = [open_native(path).shape for path in paths]
    for path, shape in zip(paths[1:], shapes[1:], strict=True):
        if shape != shapes[0]:
            raise DatasetError(f"{path}: shape {shape} differs from the image {paths[0].name}'s {shapes[0]}")
    depth = shapes[0][-1]
    if max(z_start, z_stop) > depth or min(z_start, z_stop) < -depth:  # Python would clamp it: a mistake
        raise DatasetError(f"{paths[0]}: slice range {z_start}:{z_stop} reaches past its {depth} slices")
    start, stop, _ = slice(z_start, z_stop).indices(depth)
    if stop <= start:
        raise DatasetError(f"{paths[0]}: slice range {z_start}:{z_stop} is empty for {depth} slices")
    with contextlib.ExitStack() as stack:
        temporaries = [stack.enter_context(atomic_output(output)) for output in outputs]
        for path, temporary in zip(paths, temporaries, strict=True):
            image, data, scaling = read_native_stored(path)
            save_native(
                data[..., start:stop],
                shifted_affine(image.affine, start),
                image.header,
                temporary,
                dtype=image.get_data_dtype(),
                scaling=scaling,
            )
    return outputs


def fix_header_file(
    path: Path | str,
    output: Path | str,
    *,
    zooms_mm: tuple[float, float, float] = DEFAULT_ZOOMS_MM,
    overwrite: bool = False,
) -> Path:
    """Force the voxel size to ``zooms_mm`` and copy the qform into the sform (a file without a qform: the
    sform's orientation, at the new voxel size, into both); data unchanged. A 2D slice stays 2D.

    Raises:
        OutputError: ``output`` is the input, or exists (unless ``overwrite``).
        ConfigError: ``zooms_mm`` is not three positive finite numbers.
        ImageFormatError: unreadable file.
    """
    path, output = Path(path), Path(output)
    check_not_input(output, [path])
    check_new_outputs([output], overwrite=overwrite)
    zooms = np.asarray(zooms_mm, dtype=np.float64)
    if zooms.shape != (3,) or not np.isfinite(zooms).all() or (zooms <= 0).any():
        raise ConfigError(f"{path}: zooms must be three positive finite numbers in mm, got {list(zooms_mm)}")
    image, data, scaling = read_native_stored(path)
    header = image.header.copy()
    # pixdim itself, not set_zooms: a 2D slice (or a one-volume 4D file) has 2 (or 4) zooms but 3 voxel sizes
    pixdim = header["pixdim"].copy()
    pixdim[1:4] = zooms
    header["pixdim"] = pixdim
    qform, qform_code = header.get_qform(coded=True)  # rebuilt from the quaternion and the new zooms
    if qform is None or not qform_code:  # no qform: the sform's orientation at the new size, else the default
        sform, sform_code = header.get_sform(coded=True)
        qform, qform_code = (
            (affine_with_voxel_size(sform, zooms), sform_code)
            if sform_code
            else (header.get_base_affine(), 1)
        )
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

    The dataset is built in a hidden folder beside ``output_folder`` and renamed onto it at the end, so an
    error (a bad case, a full disk) leaves no partial dataset behind.

    Raises:
        DatasetError: missing label folder, no labelled volume, mismatched or overlapping masks.
        OutputError: ``output_folder`` already holds a dataset.json, is a file or a non-empty folder, or is
            inside the input dataset.
    """
    root, output = Path(dataset_root), Path(output_folder)
    _check_conversion_output(root, output)
    task = task_name or _task_name(output)
    cases = _labelled_cases(root, mask_folder)
    labelled = [case for case in cases if case.has_masks]
    if not labelled:
        raise DatasetError(f"{root}: no image has both GM and WM masks under derivatives/{mask_folder}")
    unlabelled = [case for case in cases if not case.has_masks]
    for case in unlabelled:
        present = [label for label, path in case.masks.items() if path.exists()]
        if present:  # one mask of two: a misnamed or forgotten mask, not an unannotated volume
            missing = next(path for path in case.masks.values() if not path.exists())
            warnings.warn(
                f"{case.image}: has a {LABEL_NAMES[present[0]]} mask but no {missing.name}: put among the "
                "test images (imagesTs), unlabelled",
                MousecordWarning,
                stacklevel=2,
            )
    if not re.fullmatch(r"Dataset\d{3}_.+", output.name):
        warnings.warn(
            f"{output}: nnU-Net v2 finds a dataset by a folder name DatasetNNN_Name (e.g. "
            f"Dataset501_MouseSC, for nnUNetv2_plan_and_preprocess -d 501); its cases are named {task}_NNN",
            MousecordWarning,
            stacklevel=2,
        )
    sparse: list[str] = []  # volumes annotated on some slices only, with gaps
    with _folder_built_aside(output) as building:
        conversion: dict[str, str] = {}
        for number, case in enumerate(labelled, start=1):
            new_image = Path("imagesTr") / f"{task}_{number:03d}_0000{FILE_ENDING}"
            label_map, image = _training_label_map(case, ignore_label=ignore_label)
            annotated = np.flatnonzero(
                (label_map == Label.GM).any(axis=(0, 1)) | (label_map == Label.WM).any(axis=(0, 1))
            )
            gaps = annotated.size and annotated[-1] - annotated[0] + 1 - annotated.size
            if not ignore_label and gaps:
                sparse.append(f"{case.image.name}: {annotated.size} of {annotated[-1] - annotated[0] + 1}")
            _copy(case.image, building / new_image)
            label_path = building / "labelsTr" / f"{task}_{number:03d}{FILE_ENDING}"
            save_native(label_map, image.affine, image.header, label_path, dtype=np.uint8)
            conversion[str(case.image.resolve())] = str((output / new_image).resolve())
        for number, case in enumerate(unlabelled, start=len(labelled) + 1):
            new_image = Path("imagesTs") / f"{task}_{number:03d}_0000{FILE_ENDING}"
            _copy(case.image, building / new_image)
            conversion[str(case.image.resolve())] = str((output / new_image).resolve())
        description = "sparse slice annotations, unannotated slices ignored" if ignore_label else ""
        dataset_json = make_dataset_json(
            num_training=len(labelled), ignore_label=ignore_label, name=task, description=description
        )
        for name, content in ((DATASET_JSON, dataset_json), (CONVERSION_DICT, conversion)):
            (building / name).write_text(json.dumps(content, indent=2) + "\n")
    if sparse:
        warnings.warn(
            f"{output}: {len(sparse)} of {len(labelled)} training volumes are annotated on some slices only "
            f"({sparse[0]} slices between its first and last annotated one): their other slices became "
            "background, which teaches nnU-Net that the cord there is background; convert sparse annotations "
            "with ignore_label=True (nnU-Net then trains on the annotated slices only)",
            MousecordWarning,
            stacklevel=2,
        )
    return ConversionResult(output, len(labelled), len(unlabelled), output / CONVERSION_DICT)


def _check_conversion_output(root: Path, output: Path) -> None:
    """Refuse, before any work, an output that holds a dataset, is not an empty folder, or is in ``root``."""
    if (output / DATASET_JSON).exists():
        raise OutputError(f"{output}: already holds a {DATASET_JSON}; choose a new folder")
    resolved_root, resolved_output = root.resolve(), output.resolve()
    if resolved_output == resolved_root or resolved_root in resolved_output.parents:
        raise OutputError(
            f"{output}: output folder is inside the input dataset {root}; choose a folder outside it"
        )
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise OutputError(f"{output}: exists and is not an empty folder; choose a new folder")


@contextlib.contextmanager
def _folder_built_aside(output: Path) -> Iterator[Path]:
    """Yield a hidden folder beside ``output``; rename it onto ``output`` on success, delete it on error."""
    parent = output.parent if str(output.parent) else Path(".")
    building = parent / f".{output.name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        building.mkdir(parents=True)
    except OSError as error:
        raise OutputError(
            f"{output}: cannot create a folder in {parent}: {error.strerror or error}"
        ) from error
    try:
        yield building
        os.replace(building, output)  # replaces an empty folder (checked before), never a non-empty one
    except OSError as error:
        raise OutputError(f"{output}: cannot write: {error.strerror or error}") from error
    finally:
        shutil.rmtree(building, ignore_errors=True)


def _training_label_map(case: BidsCase, *, ignore_label: bool) -> tuple[np.ndarray, nib.Nifti1Image]:
    """The case's 0/1/2(/3) label map from its masks, checked against the image; and the image."""
    image = open_native(case.image)  # header only: the image itself is copied as it is
    gm, wm = (read_native(case.masks[label])[1] for label in TISSUE_LABELS)
    label_map = masks_to_label_map(  # overlapping manual masks are an annotation error: refuse them
        gm, wm, name=case.masks[Label.GM].name, on_overlap="error", ignore_unannotated=ignore_label
    )
    if label_map.shape != image.shape:
        raise DatasetError(
            f"{case.masks[Label.GM]}: mask shape {label_map.shape} differs from image {image.shape}"
        )
    return label_map, image


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
    overwrite: bool = False,
) -> list[Path]:
    """Write nnU-Net label maps back as BIDS GM/WM masks using a ``conversion_dict.json``.

    For each ``<case>.nii.gz`` in ``predictions_folder`` whose image ``<case>_0000.nii.gz`` appears in the
    dictionary, writes ``derivatives/<mask_folder>/<sub>/anat/<stem>_label-GM_mask.nii.gz`` and ``-WM``
    (uint8 0/1) under the original dataset root (or ``bids_root``).

    Returns:
        The written mask paths.

    Nothing is written unless every matching prediction is a readable 0/1/2 label map and, unless
    ``overwrite``, no mask exists there yet (written into ``manual_masks``, they would replace hand-drawn
    ones).

    Raises:
        DatasetError: no prediction matches the dictionary.
        ImageFormatError: a prediction is unreadable or holds values other than 0/1/2.
        OutputError: a mask would overwrite its prediction or image, or exists (unless ``overwrite``).
    """
    predictions_folder = Path(predictions_folder)
    conversion = read_conversion_dict(conversion_dict)
    by_case = {
        Path(new).name[: -len(f"_0000{FILE_ENDING}")]: Path(original) for original, new in conversion.items()
    }
    # Check every prediction and output path first, then write all masks together: an error leaves nothing.
    jobs: list[tuple[Path, list[Path]]] = []
    for prediction in sorted(predictions_folder.glob(f"*{FILE_ENDING}")):
        original = by_case.get(prediction.name[: -len(FILE_ENDING)])
        if original is None:
            continue
        root = Path(bids_root) if bids_root is not None else _bids_root_of(original)
        relative = original.relative_to(_bids_root_of(original))
        targets = [mask_path(root, root / relative, label, folder=mask_folder) for label in TISSUE_LABELS]
        for target in targets:
            check_not_input(target, [prediction, original])
        jobs.append((prediction, targets))
    if not jobs:
        raise DatasetError(f"{predictions_folder}: no *{FILE_ENDING} prediction matches {conversion_dict}")
    written = [target for _, targets in jobs for target in targets]
    check_new_outputs(written, overwrite=overwrite)
    for prediction, _ in jobs:
        _, label_map = read_native(prediction)
        check_label_values(label_map, name=prediction.name)
    with contextlib.ExitStack() as stack:
        temporaries = iter([stack.enter_context(atomic_output(target)) for target in written])
        for prediction, _ in jobs:
            image, label_map = read_native(prediction)
            for label in TISSUE_LABELS:
                mask = (label_map == label).astype(np.uint8)
                save_native(mask, image.affine, image.header, next(temporaries), dtype=np.uint8)
    return written


__all__ = [
    "MASK_THRESHOLD",
    "ConversionResult",
    "annotated_slices",
    "bids_to_nnunet",
    "check_new_outputs",
    "crop_file",
    "crop_files",
    "crop_outputs",
    "default_output",
    "extract_slices",
    "fix_header_file",
    "masks_to_label_map",
    "nnunet_to_bids",
    "shifted_affine",
    "slice_stem",
]
