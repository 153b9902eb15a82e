"""The names of ``mousecord segment``'s outputs, known here once: the writer plans them
(:mod:`mousecord.pipelines.plan`), the readers (evaluate, morphometrics, QC) find the sidecar beside them.

For an output base ``B`` (the input's ``<stem>`` in its folder or the output folder), suffix ``.nii.gz``::

    B_seg.nii.gz        multi-label map, uint8 0/1/2 (or OUT.nii.gz with -o OUT.nii.gz)
    B_GM_seg.nii.gz     binary GM mask, uint8 (SCT's naming: OUT_GM_seg.nii.gz)
    B_WM_seg.nii.gz     binary WM mask
    B_prob.nii.gz       optional (x, y, z, class) float32 probabilities
    B_seg.json          sidecar (OUT.json with -o OUT.nii.gz)
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from mousecord.errors import OutputError
from mousecord.io.atomic import check_not_input, check_replaceable_file, split_suffix
from mousecord.labels import LABEL_NAMES, TISSUE_LABELS

#: An output modified this long after its complete sidecar (written last) has been changed since, by hand or
#: by another tool; copying a folder takes less.
CHANGED_AFTER_S = 60.0
#: A run writes its images within this long after its pending sidecar (a killed run's outputs are its own
#: this long after it; a file changed later was edited).
PENDING_WRITE_S = 600.0
#: Name suffixes of the outputs, which a folder given as input skips.
OUTPUT_SUFFIXES = ("_seg", "_prob", *(f"_{LABEL_NAMES[label]}_seg" for label in TISSUE_LABELS))
#: A GM or WM mask's name without suffix, ``<key>_GM_seg`` (SCT's naming), and its pattern.
MASK_STEM_FORMAT = "{key}_{label}_seg"
MASK_STEM = re.compile(
    rf"^(?P<key>.+)_(?P<label>{'|'.join(LABEL_NAMES[label] for label in TISSUE_LABELS)})_seg$"
)


class SegmentOutputNames(NamedTuple):
    """The paths one segmentation may write."""

    multilabel: Path
    masks: dict[str, Path]
    probabilities: Path
    sidecar: Path


def segment_output_names(
    base: Path, suffix: str = ".nii.gz", multilabel: Path | None = None
) -> SegmentOutputNames:
    """The outputs of base ``base`` (the output path without suffix); a given ``multilabel`` path (``-o
    OUT.nii.gz``) names the label map and the sidecar (``OUT.json``) instead of the ``_seg`` naming."""
    masks = {
        LABEL_NAMES[label]: base.with_name(
            MASK_STEM_FORMAT.format(key=base.name, label=LABEL_NAMES[label]) + suffix
        )
        for label in TISSUE_LABELS
    }
    label_map = multilabel if multilabel is not None else Path(f"{base}_seg{suffix}")
    return SegmentOutputNames(label_map, masks, Path(f"{base}_prob{suffix}"), sidecar_beside(label_map))


def sidecar_beside(label_map: Path) -> Path:
    """The sidecar ``mousecord segment`` writes with a label map: its name with ``.json``."""
    return label_map.with_name(f"{split_suffix(label_map)[0]}.json")


def sidecars_of_mask(mask: Path) -> list[Path]:
    """The sidecars ``mousecord segment`` may have written with a GM or WM mask ``B_GM_seg``: ``B_seg.json``
    (its default naming) or ``B.json`` (``-o B.nii.gz``); none for another name."""
    match = MASK_STEM.match(split_suffix(mask)[0])
    if match is None:
        return []
    return [mask.with_name(f"{match['key']}_seg.json"), mask.with_name(f"{match['key']}.json")]


@dataclass(frozen=True)
class SegmentSidecar:
    """A sidecar ``mousecord segment`` wrote: its record and when it was written (its modification time).

    A run writes it twice: before its images, a pending record (``"complete": false``) with everything but
    the timing of the writes, naming the outputs it is about to write and those an earlier run's sidecar
    owned, so that a run killed while writing them still owns what it left, measured as it was segmented;
    after them, the whole record. Sidecars of earlier versions, written once and last, are complete."""

    record: dict
    written_at: float

    @property
    def complete(self) -> bool:
        """Whether the run finished writing its outputs (False: killed while writing them)."""
        return self.record.get("complete", True) is not False

    def unchanged(self, path: Path) -> bool:
        """Whether ``path`` exists and was not modified after this sidecar (by :data:`CHANGED_AFTER_S`; a
        pending one's outputs are written after it, within :data:`PENDING_WRITE_S`)."""
        allowance = CHANGED_AFTER_S if self.complete else PENDING_WRITE_S
        try:
            return path.stat().st_mtime <= self.written_at + allowance
        except OSError:
            return False


def read_segment_sidecar(path: Path) -> SegmentSidecar | None:
    """The ``mousecord segment`` sidecar at ``path``; None where there is none or it is another tool's."""
    try:
        record = json.loads(path.read_text())
        written_at = path.stat().st_mtime
    except (OSError, ValueError):
        return None
    if not (isinstance(record, dict) and record.get("software") == "mousecord"):
        return None
    return SegmentSidecar(record, written_at)


def check_report_output(output: Path | str, inputs: Iterable[Path | str]) -> None:
    """Refuse, before any work, a table, JSON or picture path that would replace something else: one of
    ``inputs``, a file named as a NIfTI image (an image beside the inputs is as precious as they are), the
    sidecar of a ``mousecord segment`` run (it records the voxel size and axis the analysis relies on), or
    a device, pipe or folder.

    Raises:
        OutputError: any of those.
    """
    output = Path(output)
    check_not_input(output, inputs)
    check_replaceable_file(output)  # first: reading a pipe to see whether it is a sidecar would block
    if split_suffix(output)[1].lower() in (".nii", ".nii.gz"):
        raise OutputError(
            f"{output}: a table or picture cannot take an image's name (.nii, .nii.gz); choose another name"
        )
    if output.is_file() and read_segment_sidecar(output) is not None:  # never open a pipe to look
        raise OutputError(
            f"{output}: is the sidecar mousecord segment wrote for its outputs (the voxel size and axis they "
            "are measured with); choose another name"
        )


__all__ = [
    "CHANGED_AFTER_S",
    "PENDING_WRITE_S",
    "MASK_STEM",
    "MASK_STEM_FORMAT",
    "OUTPUT_SUFFIXES",
    "SegmentOutputNames",
    "SegmentSidecar",
    "check_report_output",
    "read_segment_sidecar",
    "segment_output_names",
    "sidecar_beside",
    "sidecars_of_mask",
]
