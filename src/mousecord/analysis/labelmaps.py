"""Read label maps in the forms mousecord meets: one 0/1/2 file, or a pair of binary GM/WM masks.

Recognised names (``.nii`` or ``.nii.gz``):

* ``<stem>_label-GM_mask`` + ``<stem>_label-WM_mask``: the reference's manual masks (BIDS derivatives);
* ``<stem>_GM_seg`` + ``<stem>_WM_seg``: SCT's ``sct_deepseg`` outputs;
* anything else: one label map holding 0 (background), 1 (GM), 2 (WM).

Mask voxels above 1e-12 count as foreground, as in the reference's BIDS -> nnU-Net conversion; where both
masks are set, WM wins (the conversion writes WM last) and a warning says how many voxels overlapped.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from mousecord.errors import DatasetError, ImageFormatError, MousecordWarning
from mousecord.io import LoadedImage, load_nifti, split_suffix
from mousecord.io.names import (
    MASK_STEM,
    MASK_STEM_FORMAT,
    SegmentSidecar,
    read_segment_sidecar,
    sidecar_beside,
    sidecars_of_mask,
)
from mousecord.io.orientation import single_slice_axis
from mousecord.labels import (
    LABEL_NAMES,
    TISSUE_LABELS,
    check_label_values,
    masks_to_label_map,
)

_PAIR_PATTERNS = (re.compile(r"^(?P<key>.+)_label-(?P<label>GM|WM)_mask$"), MASK_STEM)
_PAIR_FORMATS = ("{key}_label-{label}_mask", MASK_STEM_FORMAT)
#: Suffixes stripped from a single label map's stem to match it with its counterpart.
_LABEL_MAP_SUFFIXES = ("_seg", "_dseg", "_labels", "_label")


@dataclass(frozen=True)
class LabelSource:
    """Where one case's labels live: one label-map file, or one binary mask file per tissue class.

    Attributes:
        key: the case name used for matching (file stem without label suffixes).
        paths: one path (a label map) or two (GM mask, WM mask, in that order).
    """

    key: str
    paths: tuple[Path, ...]

    @property
    def name(self) -> str:
        return self.paths[0].name if len(self.paths) == 1 else f"{self.paths[0].name} + {self.paths[1].name}"


def label_source(path: Path | str) -> LabelSource:
    """The :class:`LabelSource` of one file; a GM or WM mask brings its sibling.

    Raises:
        ImageFormatError: the file, or the sibling mask of a pair, does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageFormatError(f"{path}: file not found")
    stem, suffix = split_suffix(path)
    for pattern, template in zip(_PAIR_PATTERNS, _PAIR_FORMATS, strict=True):
        match = pattern.match(stem)
        if match:
            key = match["key"]
            pair = tuple(
                path.with_name(template.format(key=key, label=LABEL_NAMES[label]) + suffix)
                for label in TISSUE_LABELS
            )
            missing = [str(candidate) for candidate in pair if not candidate.is_file()]
            if missing:
                raise ImageFormatError(f"{path}: the matching mask {missing[0]} is missing")
            return LabelSource(key, pair)
    return LabelSource(_strip_label_suffix(stem), (path,))


def find_label_sources(folder: Path | str) -> dict[str, LabelSource]:
    """All label sources under ``folder`` (searched recursively), keyed by case name.

    A case's label map ``X_seg`` beside its masks ``X_GM_seg`` and ``X_WM_seg``, the same segmentation as
    ``mousecord segment`` (and SCT) write it by default, is read from the label map; the image ``X`` that
    its sidecar names as input (outputs written beside their input) is no source.

    Raises:
        DatasetError: the folder does not exist, holds no NIfTI files, or two files give the same case
            (other than a label map, its ``_GM_seg``/``_WM_seg`` masks and the image segmented).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: folder not found")
    sources: dict[str, LabelSource] = {}
    for path in sorted(folder.rglob("*.nii*")):
        if path.name.startswith(".") or not path.name.endswith((".nii", ".nii.gz")):
            continue
        source = label_source(path)
        previous = sources.get(source.key)
        if previous is not None and previous.paths != source.paths:
            kept = _one_segmentation(previous, source)
            if kept is None:
                raise DatasetError(
                    f"{folder}: {previous.name} and {source.name} both match case {source.key!r}"
                )
            source = kept
        sources[source.key] = source
    if not sources:
        raise DatasetError(f"{folder}: no .nii or .nii.gz files found")
    return sources


def _one_segmentation(first: LabelSource, second: LabelSource) -> LabelSource | None:
    """Which of two sources of one case is the segmentation: of a label map ``X_seg`` (or ``X``, as
    ``segment -o X.nii.gz`` names it) and its mask pair ``X_GM_seg`` / ``X_WM_seg``, the label map; of a
    segmentation and the image its ``mousecord segment`` sidecar names as input (outputs written beside
    their input), the segmentation; None for any other two."""
    for segmentation, other in ((first, second), (second, first)):
        sidecar = _segment_sidecar(segmentation)
        # by name: the folder may have moved since (the sidecar records absolute paths)
        recorded_input = sidecar.record.get("input") if sidecar is not None else None
        if (
            isinstance(recorded_input, str)
            and len(other.paths) == 1
            and Path(recorded_input).name == other.paths[0].name
        ):
            return segmentation
    label_maps = [source for source in (first, second) if len(source.paths) == 1]
    pairs = [source for source in (first, second) if len(source.paths) == 2]
    if len(label_maps) != 1 or len(pairs) != 1:
        return None
    label_map, pair = label_maps[0], pairs[0]
    segment_outputs = split_suffix(label_map.paths[0])[0] in (label_map.key, f"{label_map.key}_seg") and all(
        MASK_STEM.match(split_suffix(path)[0]) for path in pair.paths
    )
    return label_map if segment_outputs else None


def _segment_sidecar(source: LabelSource) -> SegmentSidecar | None:
    """The sidecar ``mousecord segment`` wrote beside ``source`` (:mod:`mousecord.io.names`), or None."""
    first = source.paths[0]
    for path in sidecars_of_mask(first) if len(source.paths) == 2 else [sidecar_beside(first)]:
        sidecar = read_segment_sidecar(path)
        if sidecar is not None:
            return sidecar
    return None


def written_by_segment(source: LabelSource) -> bool:
    """Whether ``source`` is as ``mousecord segment`` wrote it: its sidecar lies beside it
    (:mod:`mousecord.io.names`), the run finished writing them (not killed half-way) and nothing changed
    the files after it was written (a truth made by correcting an output by hand is not)."""
    sidecar = _segment_sidecar(source)
    return sidecar is not None and sidecar.complete and all(sidecar.unchanged(path) for path in source.paths)


def segment_record(source: LabelSource) -> dict:
    """The run record ``mousecord segment`` wrote in the sidecar beside ``source`` (model, settings,
    warnings...), where it wrote ``source`` as it is now; else an empty dict."""
    return dict(_segment_sidecar(source).record) if written_by_segment(source) else {}


def segmented_cord_axis(source: LabelSource, setting: str | int = "auto") -> str | int:
    """``setting``, or for "auto" the file axis ``mousecord segment`` segmented ``source`` across, as the
    sidecar it wrote beside it says (:mod:`mousecord.io.names`: ``B_seg.json`` or ``OUT.json``), so that
    measuring a segmentation takes the slices its model saw; "auto" where there is no such sidecar."""
    if setting != "auto":
        return setting
    sidecar = _segment_sidecar(source)
    axis = None if sidecar is None else sidecar.record.get("cord_axis")
    return axis if type(axis) is int and axis in (0, 1, 2) else "auto"


#: A labelled cord at least this many times longer along one axis than along either other one runs along
#: it (a misnamed 12 mm chunk of a 2.5 mm cord: 4.8x; an elliptic cross-section alone reaches about 2.2x).
CORD_ELONGATION = 3.0
#: ... provided its cross-section is roughly round: the two other extents within this ratio of each other
#: (one labelled slice, a strip of one tract, a thin slab, are not a tube).
CROSS_SECTION_RATIO = 2.0


def measured_cord_axis(
    loaded: LoadedImage,
    source: LabelSource,
    setting: str | int = "auto",
    *,
    shape_from: np.ndarray | None = None,
) -> int:
    """The canonical axis along the cord of the label map ``loaded`` (from ``source``), to slice across:
    ``setting``'s (:meth:`~mousecord.io.nifti.LoadedImage.cord_axis`; "auto": the one ``mousecord
    segment`` used, as its sidecar says, see :func:`segmented_cord_axis`). Where "auto" finds no sidecar
    (a mask corrected and saved again in a viewer) and the labelled cord itself is a tube clearly longer
    along another axis than the header's superior-inferior one (:data:`CORD_ELONGATION`,
    :data:`CROSS_SECTION_RATIO`; its largest connected part, so that stray voxels do not count), that axis,
    with a warning: across the header's, a chunk stored with its cord along i would be measured in cuts
    along the cord. Thick slices along the header's axis keep it.

    Args:
        shape_from: the canonical label map whose cord decides (default ``loaded``'s): evaluation takes the
            truth's, so that a prediction's false positives cannot turn its slices.
    """
    resolved = segmented_cord_axis(source, setting)
    axis = loaded.cord_axis(resolved)
    if resolved != "auto" or single_slice_axis(loaded.volume.shape) is not None:
        return axis
    voxel_size_mm = loaded.volume.voxel_size_mm
    in_plane = min(size for index, size in enumerate(voxel_size_mm) if index != axis)
    if voxel_size_mm[axis] > CROSS_SECTION_RATIO * in_plane:  # thick slices across the header's axis
        return axis
    labels = loaded.volume.data if shape_from is None else shape_from
    along = _cord_long_axis(labels, voxel_size_mm)
    if along is None or along[0] == axis:
        return axis
    file_axis = loaded.file_axis(along[0])
    warnings.warn(
        f"{source.paths[0]}: its cord runs along array axis {file_axis} ({along[1]:.1f}x longer than across "
        "it), not along the header's superior-inferior axis, and no sidecar of mousecord segment says "
        f"which axis it was segmented across: measured across axis {file_axis} (cord_axis='header' for "
        "the header's)",
        MousecordWarning,
        stacklevel=2,
    )
    return along[0]


def _cord_long_axis(labels: np.ndarray, voxel_size_mm: Sequence[float]) -> tuple[int, float] | None:
    """The canonical axis along which the largest connected part of the cord (labels > 0) is a tube: at
    least :data:`CORD_ELONGATION` times as long (mm) as along either other axis, those two within
    :data:`CROSS_SECTION_RATIO` of each other; and how many times. None where there is no such tube."""
    components, count = ndimage.label(np.asarray(labels) > 0, structure=np.ones((3, 3, 3)))
    if count == 0:
        return None
    largest = components == 1 + int(np.argmax(np.bincount(components.ravel())[1:]))
    extents = []
    for axis in range(3):
        present = np.flatnonzero(largest.any(axis=tuple(other for other in range(3) if other != axis)))
        extents.append((present[-1] - present[0] + 1) * float(voxel_size_mm[axis]))
    longest, second, third = (int(axis) for axis in np.argsort(extents)[::-1])
    ratio = extents[longest] / extents[second]
    round_enough = extents[second] <= CROSS_SECTION_RATIO * extents[third]
    return (longest, float(ratio)) if ratio >= CORD_ELONGATION and round_enough else None


def segmented_voxel_size(source: LabelSource) -> tuple[float, ...] | None:
    """The voxel size ``mousecord segment`` was given for ``source``'s image where its header's was wrong
    (``voxel_size_mm``, as its sidecar records it), so that measuring the segmentation uses it too; None
    where it was not given or there is no such sidecar."""
    sidecar = _segment_sidecar(source)
    settings = sidecar.record.get("settings") if sidecar is not None else None
    sizes = settings.get("voxel_size_mm") if isinstance(settings, dict) else None
    if not (isinstance(sizes, list) and len(sizes) in (2, 3)):
        return None
    if not all(type(size) in (int, float) and size > 0 for size in sizes):
        return None
    try:  # two sizes fit the 2D file segment wrote, not one another tool saved as 3D since
        dimensions = len(nib.load(source.paths[0]).shape)
    except (OSError, nib.filebasedimages.ImageFileError):
        return None
    return tuple(float(size) for size in sizes) if len(sizes) == 3 or dimensions == 2 else None


def load_label_map(
    source: LabelSource | Path | str, *, voxel_size_mm: Sequence[float] | None = None
) -> LoadedImage:
    """Load a label map (or combine a GM/WM mask pair) into a canonical ``uint8`` 0/1/2 volume.

    Args:
        voxel_size_mm: the true voxel size where the header's is wrong (as :func:`~mousecord.io.load_nifti`
            takes it), or None.

    Raises:
        ImageFormatError: unreadable file, values other than 0/1/2 in a label map, or a mask pair whose
            shapes differ.
    """
    if not isinstance(source, LabelSource):
        source = label_source(source)
    if len(source.paths) == 1:
        loaded = load_nifti(source.paths[0], voxel_size_mm=voxel_size_mm)
        check_label_values(loaded.volume.data, name=source.paths[0].name)
        return LoadedImage(loaded.volume.with_data(loaded.volume.data.astype(np.uint8)), loaded.geometry)
    masks = [load_nifti(path, voxel_size_mm=voxel_size_mm) for path in source.paths]
    shapes = [mask.volume.shape for mask in masks]
    if shapes[0] != shapes[1]:
        raise ImageFormatError(
            f"{source.name}: GM and WM masks have different shapes {shapes[0]} and {shapes[1]}"
        )
    # Evaluation reads finished segmentations (e.g. SCT's _GM_seg/_WM_seg), where an overlap is a tool's
    # quirk rather than a broken dataset: WM wins, as in the reference's conversion, with a warning.
    # The data tools and training refuse overlaps instead (on_overlap="error").
    label_map = masks_to_label_map(
        *(np.asarray(mask.volume.data) for mask in masks), name=source.name, on_overlap="wm"
    )
    return LoadedImage(masks[0].volume.with_data(label_map), masks[0].geometry)


def _strip_label_suffix(stem: str) -> str:
    for suffix in _LABEL_MAP_SUFFIXES:
        if stem.endswith(suffix) and len(stem) > len(suffix):
            return stem[: -len(suffix)]
    return stem
