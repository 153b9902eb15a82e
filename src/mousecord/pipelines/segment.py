"""Segmenting cases: one image -> its label map, SCT-style masks, sidecar and QC entry (see :mod:`.plan`).

:func:`segment_case` is a function of (case, loaded :class:`~mousecord.inference.Predictor`,
:class:`SegmentOptions`) alone, so a runner can map it over machines; :func:`segment_cases` runs a list of
cases over one predictor and reports per case; :func:`segment` is the one call from inputs to outputs.

Every output has the input's shape, affine and header (:func:`mousecord.io.save_like`) and is written
atomically; if any write of a case fails, the case's other new outputs are removed. An image in which no
cord is found (fewer than :data:`MIN_CORD_VOXELS` cord voxels, 1 % of a smaller image) gets its outputs
as predicted (empty, or those few voxels), a warning naming the file, ``"cord_found": false`` in its
sidecar and a place in :attr:`SegmentReport.no_cord` (the command line then exits with
:data:`EXIT_NO_CORD`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import nibabel as nib
import numpy as np

from mousecord.analysis.qc import has_qc_entry, write_qc_entry
from mousecord.errors import ConfigError, ImageFormatError, MousecordError, MousecordWarning, NotAnImageError
from mousecord.inference import postprocessing
from mousecord.inference.cord_roi import CordCoverage, CordRoi
from mousecord.inference.predictor import InferenceConfig, Predictor
from mousecord.io.atomic import atomic_output, check_writable_folder
from mousecord.io.header_checks import check_not_constant, label_map_values
from mousecord.io.names import read_segment_sidecar
from mousecord.io.nifti import LoadedImage, load_nifti, save_like
from mousecord.labels import LABEL_NAMES, TISSUE_LABELS
from mousecord.models.bundle import ModelBundle
from mousecord.models.registry import resolve_model
from mousecord.options import check_cord_axis_setting, command_line_terms
from mousecord.pipelines.cord_axis import (
    MIN_CORD_COVERAGE,
    MIN_COVERAGE_SLABS,
    cord_axis_evidence,
)
from mousecord.pipelines.plan import OUTPUT_FORMATS, CaseOutputs, plan_outputs

logger = logging.getLogger(__name__)

#: Exit status of ``mousecord segment`` when every image was segmented but some had no cord in them.
EXIT_NO_CORD = 3


@dataclass(frozen=True)
class SegmentOptions:
    """What a run writes and how the label map is post-processed (recorded in every sidecar).

    Attributes:
        output_format: "multilabel" (0/1/2 map), "masks" (binary GM and WM) or "both".
        probabilities: also write the (x, y, z, class) float32 probabilities.
        largest: keep only the largest cord component.
        fill_holes: fill holes in the cord.
        remove_small_mm3: remove cord components smaller than this volume (mm^3; 0: keep all).
        voxel_size_mm: (3,) voxel size replacing the header's (mm, file axes), or (2,) the in-plane
            size of 2D images (their slice thickness stays the header's), or None.
        cord_axis: which axis of a file runs along the cord, the axial slices being across it: "auto" (a
            single slice's normal, whatever its header calls it; else the header's superior-inferior axis,
            unless the network finds one continuous cord along another only, asked where thick slices or a
            chunk's length hint at another or where the cord found across the header's axis is short: see
            :mod:`mousecord.pipelines.cord_axis`; a warning names the file where the header is overruled
            or the image does not decide), "header" (always the header's, as nnU-Net reads an image) or
            0, 1, 2 (the file's array axis i, j or k).
        overwrite: redo cases whose outputs all exist (default: skip them).
        qc_dir: add a QC report entry per case to this folder, or None.
        command: the command line recorded in sidecars and QC entries.
        command_line_wording: record warnings in sidecars as the command line prints them, naming its
            flags (``--voxel-size``) instead of Python settings (``voxel_size_mm``): ``mousecord segment``'s.
    """

    output_format: str = "both"
    probabilities: bool = False
    largest: bool = False
    fill_holes: bool = False
    remove_small_mm3: float = 0.0
    voxel_size_mm: tuple[float, ...] | None = None
    cord_axis: str | int = "auto"
    overwrite: bool = False
    qc_dir: Path | None = None
    command: str = ""
    command_line_wording: bool = False

    def __post_init__(self) -> None:
        if self.output_format not in OUTPUT_FORMATS:
            raise ConfigError(f"output_format must be one of {OUTPUT_FORMATS}, got {self.output_format!r}")
        if not self.remove_small_mm3 >= 0:
            raise ConfigError(f"remove_small_mm3 must be >= 0, got {self.remove_small_mm3}")
        if self.voxel_size_mm is not None:
            object.__setattr__(self, "voxel_size_mm", tuple(float(value) for value in self.voxel_size_mm))
            if len(self.voxel_size_mm) not in (2, 3):
                raise ConfigError(
                    f"voxel_size_mm needs 3 values (2 for 2D images), got {len(self.voxel_size_mm)}: "
                    f"{list(self.voxel_size_mm)}"
                )
        check_cord_axis_setting(self.cord_axis)
        if self.qc_dir is not None:
            object.__setattr__(self, "qc_dir", Path(self.qc_dir))

    def expected(self, case: CaseOutputs) -> list[Path]:
        """The paths this run writes for ``case``."""
        return case.expected(output_format=self.output_format, probabilities=self.probabilities)

    def to_dict(self) -> dict:
        """JSON-ready, for the sidecar's settings (its command is recorded beside them, once; the wording of
        its warnings is no setting)."""
        record = asdict(self)
        del record["command"], record["command_line_wording"]
        record["voxel_size_mm"] = list(self.voxel_size_mm) if self.voxel_size_mm else None
        record["qc_dir"] = str(self.qc_dir) if self.qc_dir is not None else None
        return record


@dataclass(frozen=True, eq=False)
class LoadedCase:
    """A case's image, loaded and checked, the seconds reading it took and the warnings it gave."""

    case: CaseOutputs
    image: LoadedImage
    load_seconds: float
    warnings: tuple[str, ...] = ()


@dataclass
class SegmentReport:
    """What a run did: written cases, skipped (already done) cases, a folder's files left out as masks
    (holding only label values), failures (input, one-line reason), and the written or skipped cases whose
    segmentation holds no cord (their masks are empty).

    A case names every path its outputs may have (:class:`~mousecord.pipelines.plan.CaseOutputs`); the
    files a run wrote are ``case.expected(output_format=..., probabilities=...)`` of its options (no
    ``_prob`` file unless probabilities were asked for)."""

    written: list[CaseOutputs] = field(default_factory=list)
    skipped: list[CaseOutputs] = field(default_factory=list)
    left_out: list[CaseOutputs] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    no_cord: list[CaseOutputs] = field(default_factory=list)


def segment(
    inputs: Path | str | Iterable[Path | str],
    output: Path | str | None = None,
    *,
    model: str | Path | Predictor | None = None,
    options: SegmentOptions | None = None,
    inference: InferenceConfig | None = None,
    derivatives_name: str = "mousecord",
    models_dir: Path | str | None = None,
    progress: bool = False,
) -> SegmentReport:
    """Segment GM and WM in one or more images: plan the outputs, load the model once, run every case.

    Args:
        inputs: NIfTI files, folders of them, or BIDS dataset roots.
        output: output file (one input) or folder; default beside each input / BIDS derivatives
            (see :func:`~mousecord.pipelines.plan.plan_outputs`).
        model: installed model name, bundle folder, nnU-Net results folder (default: "default"), or a
            loaded :class:`~mousecord.inference.Predictor` (``inference`` must then be None).
        options: outputs and post-processing (default :class:`SegmentOptions`).
        inference: tiling, ROI path, device and backend (default :class:`InferenceConfig`).
        derivatives_name: folder under ``derivatives/`` for BIDS inputs.
        models_dir: folder of installed models (default: the user data folder).
        progress: progress bars (over images, or over tiles for one image).

    Returns:
        A :class:`SegmentReport`. With a single input file, its error is raised instead.

    Raises:
        MousecordError: bad options, an unknown model, unwritable outputs, or the single input's error.
    """
    options = options or SegmentOptions()
    one = isinstance(inputs, str | os.PathLike | np.ndarray | nib.spatialimages.SpatialImage)
    input_list = [inputs] if one else list(inputs)  # a list, a tuple, a glob's generator
    for value in input_list:
        if not isinstance(value, str | os.PathLike):
            raise ConfigError(
                f"segment takes image files, folders or BIDS datasets, got a {type(value).__name__}; for an "
                "image in memory use Predictor(model).predict_volume(image) (a nibabel image or a Volume)"
            )
    single = len(input_list) == 1 and not Path(input_list[0]).is_dir()
    cases = plan_outputs(input_list, output, derivatives_name=derivatives_name)
    if isinstance(model, Predictor) and inference is not None:
        raise ConfigError("give inference settings either in the Predictor or as inference, not both")
    report, todo = SegmentReport(), []
    finished = [
        case
        for case in cases
        if not options.overwrite
        and case.finished(output_format=options.output_format, probabilities=options.probabilities)
    ]
    bundle = None
    if finished:  # done only by this model: a fine-tuned one run where the default wrote redoes the cases
        bundle = model.bundle if isinstance(model, Predictor) else resolve_model(model, models_dir=models_dir)
    for case in cases:
        if case not in finished:
            todo.append(case)
        elif not _made_by(case, bundle):
            logger.info("%s: outputs exist, written by another model: segmenting again", case.input)
            todo.append(case)
        else:
            report.skipped.append(case)
            logger.info(
                "%s: outputs exist, skipped (they keep their run's settings; overwrite to redo)", case.input
            )
            if not _sidecar_cord_found(case):  # its empty masks are still no cord, not a success
                report.no_cord.append(case)
    if options.qc_dir is not None and (todo or report.skipped):
        check_writable_folder(options.qc_dir)
        _add_skipped_to_qc(report, options)
    if not todo:
        return report
    if isinstance(model, Predictor):
        predictor = model
    else:
        inference = replace(inference or InferenceConfig(), progress=progress and len(todo) == 1)
        predictor = Predictor(bundle or resolve_model(model, models_dir=models_dir), inference)
    # each case's outputs are checked writable before its image is read (segment_cases)
    segment_cases(todo, predictor, options, progress=progress and len(todo) > 1, report=report, single=single)
    if report.left_out and not (report.written or report.skipped or report.failed):
        raise ConfigError(
            f"{', '.join(str(path) for path in input_list)}: every image found holds only label values "
            f"({len(report.left_out)} left out as masks); give a file alone to segment it"
        )
    return report


def segment_cases(
    cases: Sequence[CaseOutputs],
    predictor: Predictor,
    options: SegmentOptions,
    *,
    progress: bool = False,
    report: SegmentReport | None = None,
    single: bool = False,
) -> SegmentReport:
    """Segment ``cases`` with one loaded predictor; a case's failure is reported and the others go on.

    Args:
        cases: planned cases (:func:`~mousecord.pipelines.plan.plan_outputs`).
        predictor: prepared on the first case that loads (an OpenVINO compile failure ends the run).
        options: outputs and post-processing.
        progress: a progress bar over the cases.
        report: add to this report (default: a new one).
        single: raise a case's error instead of reporting it (one input file).

    Returns:
        The report; ``failed`` holds (input, one-line reason) for every case that failed, whatever the
        exception, so one broken file never stops a folder.
    """
    from tqdm import tqdm

    report = report if report is not None else SegmentReport()
    for case in tqdm(cases, desc="images", unit="image", disable=not progress):
        try:
            case.check_writable(
                output_format=options.output_format,
                probabilities=options.probabilities,
                overwrite=options.overwrite,
            )
            loaded = load_case(case, options)  # a bad file fails before the network compiles
        except NotAnImageError as error:
            logger.warning("%s", error)
            report.left_out.append(case)
            continue
        except Exception as error:
            if single:
                raise
            _record_failure(report, case, error)
            continue
        predictor.prepare()  # once per predictor; a backend that cannot compile ends the run
        try:
            found = segment_loaded_case(loaded, predictor, options)
        except Exception as error:  # a bug or an exhausted resource in one case must not stop the others
            if single:
                raise
            _record_failure(report, case, error)
            continue
        finally:
            del loaded  # never two input volumes in memory at once
        report.written.append(case)
        if not found:
            report.no_cord.append(case)
    return report


def segment_case(case: CaseOutputs, predictor: Predictor, options: SegmentOptions) -> bool:
    """Load, segment and write one case (label map and/or masks, probabilities, sidecar, QC entry).

    Returns:
        Whether a cord was found (see :data:`MIN_CORD_VOXELS`); without, the outputs hold what was predicted
        (empty, or a few voxels) and a warning is logged.

    Raises:
        MousecordError: the image is unreadable or unfit, or an output cannot be written (the case's other
            new outputs are then removed).
    """
    case.check_writable(
        output_format=options.output_format,
        probabilities=options.probabilities,
        overwrite=options.overwrite,
    )
    return segment_loaded_case(load_case(case, options), predictor, options)


def load_case(case: CaseOutputs, options: SegmentOptions) -> LoadedCase:
    """Load and validate a case's image: refuse a constant one; one that looks like a label map is left out
    of a folder's images (a mask beside its image), segmented with a warning where it was given itself.

    Raises:
        NotAnImageError: a folder's file that holds only label values.
        MousecordError: the file is missing, unreadable or unfit (the message names it).
    """
    started = time.perf_counter()
    with collected_warnings() as warnings:
        image = load_nifti(case.input, voxel_size_mm=options.voxel_size_mm, dtype=np.float32)
        check_not_constant(image.volume.data, name=str(case.input))
        values = label_map_values(image.volume.data)
        if values is not None and case.in_folder:
            raise NotAnImageError(
                f"{case.input}: holds only the values {', '.join(f'{value:g}' for value in values)}, like a "
                "mask beside its image: left out of the folder's images (give the file itself to segment it)"
            )
        if values is not None:
            logger.warning(
                "%s: holds only the values %s, like a label map or mask rather than an MR image; segmenting "
                "it anyway",
                case.input,
                ", ".join(f"{value:g}" for value in values),
            )
    return LoadedCase(case, image, time.perf_counter() - started, tuple(warnings))


class _WarningList(logging.Handler):
    """Keeps the messages of the warnings logged while it is attached, and those it is given."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []
        self.relaying = False  # a warning it already kept, being shown (the command line logs it)

    def emit(self, record: logging.LogRecord) -> None:
        if not self.relaying:
            self.messages.append(record.getMessage())


@contextlib.contextmanager
def collected_warnings() -> Iterator[list[str]]:
    """The messages of mousecord's warnings given inside the block, logged or warned (a ``MousecordWarning``
    the warning filters let through), in order, for the sidecar: a batch of thousands of images is checked
    from its sidecars, not its console. Each is shown as usual, when it is given. One block at a time: it
    hooks the process's ``warnings.showwarning`` and the "mousecord" logger (segment runs cases in turn)."""
    handler = _WarningList()
    package_logger = logging.getLogger("mousecord")
    shown_before = warnings.showwarning

    def keep_and_show(message, category, filename, lineno, file=None, line=None) -> None:
        if issubclass(category, MousecordWarning):
            handler.messages.append(str(message))
        handler.relaying = True
        try:
            shown_before(message, category, filename, lineno, file, line)
        finally:
            handler.relaying = False

    package_logger.addHandler(handler)
    warnings.showwarning = keep_and_show
    try:
        yield handler.messages
    finally:
        warnings.showwarning = shown_before
        package_logger.removeHandler(handler)


#: Fewer cord voxels than this in a whole image (or than 1 % of an image smaller than 5,000 voxels, a crop)
#: is no cord: at 0.1 mm in-plane a mouse cord's section alone covers hundreds of voxels, while a header
#: with a voxel size 20x too large leaves a few.
MIN_CORD_VOXELS = 50


def segment_loaded_case(loaded: LoadedCase, predictor: Predictor, options: SegmentOptions) -> bool:
    """Segment a loaded case and write its outputs (see :func:`segment_case`)."""
    case, image = loaded.case, loaded.image
    started = time.perf_counter()
    with collected_warnings() as warnings:
        try:
            choice = _cord_axis(case, image, options, predictor)
            cord_axis = choice.axis
            prediction = predictor.predict_volume(
                image.volume, probabilities=options.probabilities, cord_axis=cord_axis
            )
            other_axis = (
                None
                if choice.settled
                else _axis_with_more_cord(case, image, predictor, prediction.roi, choice.known)
            )
            if other_axis is not None:
                cord_axis = other_axis
                prediction = predictor.predict_volume(
                    image.volume, probabilities=options.probabilities, cord_axis=cord_axis
                )
        except ImageFormatError as error:
            raise ImageFormatError(f"{case.input}: {error}") from error
        file_cord_axis = image.file_axis(cord_axis)
    predicted = time.perf_counter()
    label_map = _postprocess(prediction.label_map, options, image.volume.voxel_size_mm)
    cord_voxels = int(np.count_nonzero(label_map))
    found = cord_voxels >= max(1, min(MIN_CORD_VOXELS, label_map.size // 100))
    qc_dir = options.qc_dir
    no_cord = None if found else _no_cord_message(case, cord_voxels, qc_dir)
    warnings = [*loaded.warnings, *warnings, *([no_cord] if no_cord else [])]

    def record(written: Sequence[Path], *, complete: bool) -> dict:
        timing = {
            "load_s": loaded.load_seconds,
            "predict_s": predicted - started,
            "total_s": loaded.load_seconds + time.perf_counter() - started,
        }
        run = _run_record(
            case, predictor, options, timing, cord_found=found, cord_axis=file_cord_axis, warnings=warnings
        )
        return {"outputs": _written_outputs(case, written), **run, "complete": complete}

    # pending: what this run writes and what an earlier run left (still its own once this one is killed)
    earlier = sorted(case.owned_outputs() - {case.sidecar})
    previous = _SidecarBackup.of(case.sidecar)
    _write_sidecar(case, options, record([*options.expected(case)[1:], *earlier], complete=False))
    written: list[Path] = []
    try:
        written = _write_outputs(case, image, label_map, prediction.probabilities, options)
        finished = record(written, complete=True)
        _write_sidecar(case, options, finished)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        previous.restore(case.sidecar)  # the earlier run's record, or none
        raise
    if case.derivatives is not None:
        _describe_derivatives(case.derivatives)
    timing = finished["timing_s"]
    logger.info("%s: segmented in %.1f s", case.input, timing["total_s"])
    if no_cord:
        logger.warning("%s", no_cord)
    if qc_dir is not None:
        label_map_path = case.multilabel if case.multilabel in written else written[0]
        write_qc_entry(
            case.input,
            label_map_path,
            qc_dir,
            subject=case.subject,
            command=options.command,
            cord_axis=file_cord_axis,
        )
    return found


@dataclass(frozen=True)
class _AxisChoice:
    """The canonical axis to segment across, whether that is settled (given, a single slice's normal across
    the header, or what the image decided where the grid hinted at another axis) or the header's, to be
    doubted if the segmentation finds little cord along it, and the coverages a search measured on the way
    (not searched again)."""

    axis: int
    settled: bool
    known: dict[int, CordCoverage | None] = field(default_factory=dict)


def _cord_axis(
    case: CaseOutputs, image: LoadedImage, options: SegmentOptions, predictor: Predictor
) -> _AxisChoice:
    """The axis of the loaded image to segment across (see ``SegmentOptions.cord_axis``); with "auto", a
    warning names the file where its header is overruled or a hint is left undecided."""
    axis = image.cord_axis(options.cord_axis)
    if options.cord_axis != "auto":
        return _AxisChoice(axis, settled=True)
    header_axis = image.file_axis(2)
    if axis != 2:
        logger.warning(
            "%s: a single slice whose header calls array axis %d, in its plane, superior-inferior: segmented "
            "as the cross-section it is, across array axis %d (--cord-axis header follows the header)",
            case.input,
            header_axis,
            image.file_axis(axis),
        )
        return _AxisChoice(axis, settled=True)
    hint = image.cord_axis_hint()
    if hint is None:
        return _AxisChoice(axis, settled=False)
    hinted = image.file_axis(hint[0])
    evidence = cord_axis_evidence(predictor, image.volume, [hint[0]])
    found = evidence.describe(image.file_axis)
    if evidence.chosen == 2:
        logger.info(
            "%s: the grid hints that the cord runs along array axis %d (%s), but %s: the header's axis holds "
            "the cord",
            case.input,
            hinted,
            hint[1],
            found,
        )
        return _AxisChoice(axis, settled=True)
    hinted_against_header = (
        f"{case.input}: the grid hints that the cord runs along array axis {hinted} ({hint[1]}), but its "
        f"header calls array axis {header_axis} superior-inferior; {found}"
    )
    if evidence.chosen == hint[0]:
        logger.warning(
            "%s: segmented across axis %d (--cord-axis header follows the header)",
            hinted_against_header,
            hinted,
        )
        return _AxisChoice(hint[0], settled=True)
    logger.warning(
        "%s; segmented across axis %d as the header says (if the cord runs along axis %d, give "
        "--cord-axis %d)",
        hinted_against_header,
        header_axis,
        hinted,
        hinted,
    )
    return _AxisChoice(axis, settled=False, known=dict(evidence.coverage))


#: Below this share of the slabs across the header's axis, a cord that no other axis explains gets a warning
#: (a chunk's cord ends early, or the header misnames the axis of an image the search cannot decide).
SHORT_CORD_COVERAGE = 0.5


def _axis_with_more_cord(
    case: CaseOutputs,
    image: LoadedImage,
    predictor: Predictor,
    roi: CordRoi | None,
    known: dict[int, CordCoverage | None],
) -> int | None:
    """Where segmenting across the header's axis found one continuous cord through less than
    :data:`~mousecord.pipelines.cord_axis.MIN_CORD_COVERAGE` of the slabs (``roi``, its stage 1): another
    canonical axis along which the image shows the cord runs (with a warning naming the file), else None.
    A chunk as long as it is wide gives the grid no hint, but a cord across it is no cord. ``known``: the
    coverages an earlier search measured (not searched again)."""
    if roi is None or roi.coverage.slabs < MIN_COVERAGE_SLABS:
        return None
    along_header = roi.coverage
    if along_header.share >= MIN_CORD_COVERAGE:
        return None
    evidence = cord_axis_evidence(predictor, image.volume, [0, 1], known={**known, 2: along_header})
    if evidence.chosen is None or evidence.chosen == 2:
        if along_header.share < SHORT_CORD_COVERAGE:
            logger.warning(
                "%s: the cord found runs through only %.0f%% of the slabs across array axis %d, which its "
                "header calls superior-inferior, and %s; if the cord runs along another axis, give "
                "--cord-axis",
                case.input,
                100 * along_header.share,
                image.file_axis(2),
                evidence.describe(image.file_axis) if evidence.unavailable else "no other axis holds more",
            )
        return None
    logger.warning(
        "%s: its header calls array axis %d superior-inferior, but %s: segmented across axis %d "
        "(--cord-axis header follows the header)",
        case.input,
        image.file_axis(2),
        evidence.describe(image.file_axis),
        image.file_axis(evidence.chosen),
    )
    return evidence.chosen


def _describe_derivatives(folder: Path) -> None:
    """A BIDS derivatives folder's ``dataset_description.json`` (required by BIDS), where it has none."""
    from mousecord import __version__

    description = folder / "dataset_description.json"
    if description.exists():
        return
    content = {
        "Name": "mousecord GM/WM segmentations",
        "BIDSVersion": "1.9.0",
        "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "mousecord", "Version": __version__, "Description": "mousecord segment"}],
    }
    with atomic_output(description) as temporary:
        temporary.write_text(json.dumps(content, indent=1) + "\n")


def _add_skipped_to_qc(report: SegmentReport, options: SegmentOptions) -> None:
    """QC entries for finished cases the report lacks (a rerun after Ctrl-C, or into a new report), with
    the command that segmented them."""
    added = 0
    for case in report.skipped:
        label_map = case.multilabel if case.multilabel.exists() else next(iter(case.masks.values()))
        if has_qc_entry(options.qc_dir, case.input, label_map, subject=case.subject):
            continue
        sidecar = read_segment_sidecar(case.sidecar)
        command = str(sidecar.record.get("command", "")) if sidecar is not None else ""
        try:
            write_qc_entry(case.input, label_map, options.qc_dir, subject=case.subject, command=command)
        except MousecordError as error:
            _record_failure(report, case, error)
            continue
        added += 1
    if added:
        logger.info("%s: QC entries added for %d finished case(s)", options.qc_dir, added)


def _made_by(case: CaseOutputs, bundle: ModelBundle) -> bool:
    """Whether ``case``'s finished outputs were written by ``bundle``: the same weights (their SHA-256, as
    its sidecar records them), or, where either side has no such record, the same name and folder."""
    sidecar = read_segment_sidecar(case.sidecar)
    recorded = sidecar.record.get("model") if sidecar is not None else None
    if not isinstance(recorded, dict):
        return False
    weights = bundle.metadata.get("weights_sha256")
    if weights and recorded.get("weights_sha256"):
        return recorded["weights_sha256"] == weights
    source = str(bundle.source) if bundle.source else None
    return (recorded.get("name"), recorded.get("source")) == (bundle.name, source)


def _sidecar_cord_found(case: CaseOutputs) -> bool:
    """Whether a finished case's sidecar says its cord was found (True where it cannot be read)."""
    sidecar = read_segment_sidecar(case.sidecar)
    return sidecar is None or sidecar.record.get("cord_found", True) is not False


def _record_failure(report: SegmentReport, case: CaseOutputs, error: Exception) -> None:
    """Log and report a case's failure in one line; a non-mousecord exception (a bug) gets its type and
    the input's name, and its traceback at debug level."""
    if isinstance(error, MousecordError):
        message = str(error)
    else:
        logger.debug("%s failed", case.input, exc_info=error)
        message = f"{case.input}: {type(error).__name__}: {error}"
    message = " ".join(message.split())
    logger.error("%s", message)
    report.failed.append((case.input, message))


def _no_cord_message(case: CaseOutputs, cord_voxels: int, qc_dir: Path | None) -> str:
    where = f" in the QC report {qc_dir}" if qc_dir is not None else " (add a QC report to see it)"
    if cord_voxels:
        return (
            f"{case.input}: no cord found, only {cord_voxels} cord voxels (a mouse cord has hundreds per "
            f"slice); check the image{where} and its voxel size (--voxel-size overrides the header's)"
        )
    return (
        f"{case.input}: no cord found, the masks are empty; check the image{where}, or segment the whole "
        "field densely (roi 'full')"
    )


def _postprocess(label_map: np.ndarray, options: SegmentOptions, voxel_size_mm) -> np.ndarray:
    if options.remove_small_mm3:
        label_map = postprocessing.remove_small_components(
            label_map, min_volume_mm3=options.remove_small_mm3, voxel_size_mm=voxel_size_mm
        )
    if options.largest:
        label_map = postprocessing.keep_largest_component(label_map)
    if options.fill_holes:
        label_map = postprocessing.fill_holes(label_map)
    return label_map


def _write_outputs(
    case: CaseOutputs,
    image: LoadedImage,
    label_map: np.ndarray,
    probabilities: np.ndarray | None,
    options: SegmentOptions,
) -> list[Path]:
    """Write the images of a case; on any failure remove those already written and re-raise."""
    written: list[Path] = []
    try:
        if options.output_format in ("multilabel", "both"):
            written.append(save_like(label_map, image.geometry, case.multilabel, dtype=np.uint8))
        if options.output_format in ("masks", "both"):
            for label in TISSUE_LABELS:
                mask = (label_map == label).astype(np.uint8)
                written.append(
                    save_like(mask, image.geometry, case.masks[LABEL_NAMES[label]], dtype=np.uint8)
                )
        if probabilities is not None:
            channels_last = np.moveaxis(probabilities, 0, -1).astype(np.float32)
            written.append(save_like(channels_last, image.geometry, case.probabilities, dtype=np.float32))
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return written


def _written_outputs(case: CaseOutputs, written: Sequence[Path]) -> dict[str, str]:
    """The ``written`` outputs of a case, by kind, as absolute paths."""
    kinds = {"multilabel": case.multilabel, **case.masks, "probabilities": case.probabilities}
    return {kind: str(path.resolve()) for kind, path in kinds.items() if path in written}


def _write_sidecar(case: CaseOutputs, options: SegmentOptions, record: dict) -> None:
    """Write ``case``'s sidecar: who wrote it (mousecord, its version, the command, the input), then
    ``record`` (a pending one before the images, naming them; the run's after them)."""
    from mousecord import __version__

    header = {
        "software": "mousecord",
        "version": __version__,
        "command": options.command,
        "input": str(case.input.resolve()),
    }
    with atomic_output(case.sidecar) as temporary:
        temporary.write_text(json.dumps(header | record, indent=2) + "\n")


@dataclass(frozen=True)
class _SidecarBackup:
    """A sidecar's bytes and modification time before a run replaced it (None: there was none), so that a
    run that fails while writing leaves the earlier run's outputs owned as they were."""

    content: bytes | None
    modified: float | None

    @classmethod
    def of(cls, path: Path) -> _SidecarBackup:
        try:
            return cls(path.read_bytes(), path.stat().st_mtime)
        except FileNotFoundError:
            return cls(None, None)

    def restore(self, path: Path) -> None:
        if self.content is None:
            path.unlink(missing_ok=True)
            return
        with atomic_output(path) as temporary:
            temporary.write_bytes(self.content)
        os.utime(path, (self.modified, self.modified))  # its outputs were written before it, as before


def _run_record(
    case: CaseOutputs,
    predictor: Predictor,
    options: SegmentOptions,
    timing: dict,
    *,
    cord_found: bool,
    cord_axis: int,
    warnings: Sequence[str],
) -> dict:
    """The sidecar record of a run but its outputs: model, settings, findings and timing."""
    bundle = predictor.bundle
    return {
        "model": {
            "name": bundle.name,
            "installed_name": bundle.installed_name,
            "source": str(bundle.source) if bundle.source else None,
            "weights_sha256": bundle.metadata.get("weights_sha256"),
            "folds": len(bundle.fold_weights),
        },
        "settings": {**options.to_dict(), **predictor.resolved_settings()},
        "cord_found": cord_found,
        "cord_axis": cord_axis,
        "warnings": [
            command_line_terms(message) if options.command_line_wording else message for message in warnings
        ],
        "device": str(predictor.device),
        "timing_s": {key: round(value, 3) for key, value in timing.items()},
        "python": platform.python_version(),
    }


__all__ = [
    "EXIT_NO_CORD",
    "MIN_CORD_VOXELS",
    "SegmentOptions",
    "collected_warnings",
    "SegmentReport",
    "load_case",
    "LoadedCase",
    "segment",
    "segment_case",
    "segment_cases",
    "segment_loaded_case",
]
