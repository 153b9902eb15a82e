"""Planning a run: files, folders and BIDS datasets in, one :class:`CaseOutputs` (the paths it writes) each.

Per input ``<stem>.nii.gz``, outputs beside it unless ``output`` says otherwise, named as
:mod:`mousecord.io.names` says (``<stem>_seg.nii.gz``, ``<stem>_GM_seg.nii.gz``, ``<stem>_WM_seg.nii.gz``,
``<stem>_prob.nii.gz``, ``<stem>_seg.json``). Masks and probabilities take the suffix of the multi-label
map (``-o out.nii`` writes ``out_GM_seg.nii``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from mousecord.datasets.bids import find_bids_images
from mousecord.errors import ConfigError, OutputError
from mousecord.io.atomic import check_not_input, check_writable_folder, split_suffix
from mousecord.io.names import OUTPUT_SUFFIXES, SegmentSidecar, read_segment_sidecar, segment_output_names

OUTPUT_FORMATS = ("multilabel", "masks", "both")


@dataclass(frozen=True)
class CaseOutputs:
    """One input image and the paths its segmentation may write: every path is planned, but a run writes
    only those its options ask for (:meth:`expected`; e.g. ``probabilities`` only with probabilities on)."""

    input: Path
    multilabel: Path
    masks: dict[str, Path]
    probabilities: Path
    sidecar: Path
    subject: str | None = None
    #: Found in a folder or dataset given as input, or one of several files, rather than given alone (a mask
    #: beside its image there is left out, see :func:`mousecord.pipelines.load_case`).
    in_folder: bool = False
    #: The BIDS derivatives folder its outputs go in (``<root>/derivatives/<name>``), which a dataset
    #: description names; None outside a BIDS dataset.
    derivatives: Path | None = None

    def expected(self, *, output_format: str, probabilities: bool) -> list[Path]:
        """The paths a run with this output format writes (the sidecar first)."""
        paths = [self.sidecar]
        if output_format in ("multilabel", "both"):
            paths.append(self.multilabel)
        if output_format in ("masks", "both"):
            paths.extend(self.masks.values())
        if probabilities:
            paths.append(self.probabilities)
        return paths

    def check_writable(self, *, output_format: str, probabilities: bool, overwrite: bool = False) -> None:
        """Refuse, before any work, outputs that would replace the input, land where nothing can be
        written, or, unless ``overwrite``, replace a file no ``mousecord segment`` run wrote (``X_seg.nii.gz``
        is also SCT's name for a manual cord mask).

        Raises:
            OutputError: an output is the input (also through a link), its folder is a file or read-only,
                or it exists and is no output of a mousecord run (:meth:`owned_outputs`).
        """
        targets = self.expected(output_format=output_format, probabilities=probabilities)
        for target in targets:
            check_not_input(target, [self.input])
        for folder in sorted({target.parent for target in targets}):
            check_writable_folder(folder, purpose=str(self.input))
        owned = self.owned_outputs()
        foreign = [target for target in targets if target.exists() and target not in owned]
        if foreign and not overwrite:
            raise OutputError(
                f"{foreign[0]}: exists, and no sidecar of mousecord segment for {self.input.name} "
                f"({self.sidecar.name}) lists it as written and unchanged since (a manual mask, an edited "
                "output or an interrupted run?): not replaced without overwrite; write the outputs elsewhere"
            )

    def owned_outputs(self) -> set[Path]:
        """The outputs (and the sidecar) that a ``mousecord segment`` run on this input wrote and nobody
        changed since: named in its sidecar's outputs, not modified after it (for the pending sidecar of a
        run killed while writing them, after the run would have written them). Only these may be replaced
        without overwrite, or a case skipped as done: ``X_seg.nii.gz`` is also SCT's name for a manual
        mask, and correcting an output by hand is how truth is often made."""
        return self._owned_by(read_segment_sidecar(self.sidecar))

    def finished(self, *, output_format: str, probabilities: bool) -> bool:
        """Whether a ``mousecord segment`` run on this input wrote all these outputs to the end (its sidecar
        complete) and nobody changed them since: the case is done."""
        sidecar = read_segment_sidecar(self.sidecar)
        expected = self.expected(output_format=output_format, probabilities=probabilities)
        return sidecar is not None and sidecar.complete and set(expected) <= self._owned_by(sidecar)

    def _owned_by(self, sidecar: SegmentSidecar | None) -> set[Path]:
        """:meth:`owned_outputs` by the sidecar read from :attr:`sidecar`."""
        if sidecar is None or Path(str(sidecar.record.get("input", ""))).name != self.input.name:
            return set()
        outputs = sidecar.record.get("outputs")
        listed = {Path(str(path)).name for path in outputs.values()} if isinstance(outputs, dict) else set()
        written = (self.multilabel, *self.masks.values(), self.probabilities)
        return {self.sidecar} | {path for path in written if path.name in listed and sidecar.unchanged(path)}


def plan_outputs(
    inputs: Sequence[Path | str], output: Path | str | None = None, *, derivatives_name: str = "mousecord"
) -> list[CaseOutputs]:
    """Expand inputs (files, folders, BIDS roots) into cases and their output paths.

    - one file and ``output`` ending in ``.nii``/``.nii.gz``: that is the multi-label path, masks beside it
      (``OUT_GM_seg.nii.gz``);
    - a BIDS dataset (a folder with ``sub-*/``): outputs in ``<root|output>/derivatives/<derivatives_name>/``
      mirroring ``sub-*/[ses-*/]anat/``;
    - otherwise each output goes beside its input, or into the folder ``output``.

    Raises:
        ConfigError: no input, a folder without images, or a file name as output for several inputs.
    """
    cases: list[CaseOutputs] = []
    inputs = [Path(value) for value in inputs]
    if not inputs:
        raise ConfigError("no input given")
    single_file_output = output is not None and str(output).endswith((".nii", ".nii.gz"))
    if single_file_output and (len(inputs) != 1 or inputs[0].is_dir()):
        raise ConfigError(
            f"{output}: a file name as output needs exactly one input file; give a folder instead"
        )
    for source in inputs:
        if source.is_dir() and any(source.glob("sub-*")):
            root = Path(output) if output is not None else source
            for case in find_bids_images(source):
                relative = case.image.parent.relative_to(source)
                folder = root / "derivatives" / derivatives_name / relative
                planned = _case(
                    case.image, folder / split_suffix(case.image)[0], subject=case.subject, in_folder=True
                )
                cases.append(replace(planned, derivatives=root / "derivatives" / derivatives_name))
        elif source.is_dir():
            images = sorted(
                path
                for path in source.iterdir()
                if path.name.endswith((".nii", ".nii.gz"))
                and not split_suffix(path)[0].endswith(OUTPUT_SUFFIXES)
            )
            if not images:
                raise ConfigError(f"{source}: folder holds no .nii/.nii.gz images")
            folder = Path(output) if output is not None else source
            cases.extend(_case(image, folder / split_suffix(image)[0], in_folder=True) for image in images)
        elif single_file_output:
            stem, suffix = split_suffix(Path(output))
            cases.append(_case(source, Path(output).with_name(stem), suffix=suffix, multilabel=Path(output)))
        else:
            folder = Path(output) if output is not None else source.parent
            # several files (a shell's dir/*.nii.gz) are a folder's images: a mask among them is left out
            cases.append(_case(source, folder / split_suffix(source)[0], in_folder=len(inputs) > 1))
    return cases


def _case(
    image: Path,
    base: Path,
    *,
    subject: str | None = None,
    suffix: str = ".nii.gz",
    multilabel: Path | None = None,
    in_folder: bool = False,
) -> CaseOutputs:
    """``base`` is the output path without suffix; a given ``multilabel`` path drops the ``_seg`` naming."""
    names = segment_output_names(base, suffix, multilabel)
    return CaseOutputs(
        image, names.multilabel, names.masks, names.probabilities, names.sidecar, subject, in_folder
    )


__all__ = ["OUTPUT_FORMATS", "OUTPUT_SUFFIXES", "CaseOutputs", "plan_outputs"]
