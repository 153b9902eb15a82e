"""``segment``: files, folders or BIDS datasets in, GM/WM label maps and SCT-style masks out.

Per input ``<stem>.nii.gz`` (outputs beside it unless ``output`` says otherwise)::

    <stem>_seg.nii.gz        multi-label map, uint8 0/1/2 (or OUT.nii.gz with -o OUT.nii.gz)
    <stem>_GM_seg.nii.gz     binary GM mask, uint8 (SCT's naming: OUT_GM_seg.nii.gz)
    <stem>_WM_seg.nii.gz     binary WM mask
    <stem>_prob.nii.gz       optional (x, y, z, class) float32 probabilities
    <stem>_seg.json          sidecar: software, version, model and weights sha256, settings, input, timing

Every output has the input's shape, affine and header (:func:`mousecord.io.save_like`) and is written
atomically; if any write of a case fails, the case's other new outputs are removed. An image in which no
cord is found gets its (empty) outputs, a warning naming the file, ``"cord_found": false`` in its sidecar
and a place in :attr:`SegmentReport.no_cord` (the command line then exits with :data:`EXIT_NO_CORD`).
"""

from __future__ import annotations

import json
import logging
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mousecord.errors import ConfigError, ImageFormatError, MousecordError, OutputError
from mousecord.inference import postprocessing
from mousecord.inference.predictor import InferenceConfig, Predictor
from mousecord.io.atomic import atomic_output, check_not_input, split_suffix
from mousecord.io.nifti import LoadedImage, check_not_constant, load_nifti, save_like
from mousecord.labels import LABEL_NAMES, TISSUE_LABELS

logger = logging.getLogger(__name__)

OUTPUT_FORMATS = ("multilabel", "masks", "both")
#: Exit status of ``mousecord segment`` when every image was segmented but some had no cord in them.
EXIT_NO_CORD = 3
#: Name suffixes of mousecord's own outputs, skipped when a folder is given as input.
OUTPUT_SUFFIXES = ("_seg", "_prob", *(f"_{LABEL_NAMES[label]}_seg" for label in TISSUE_LABELS))


@dataclass(frozen=True)
class CaseOutputs:
    """Paths written for one input (``None`` where the format leaves one out)."""

    input: Path
    multilabel: Path
    masks: dict[str, Path]
    probabilities: Path
    sidecar: Path
    subject: str | None = None

    def expected(self, *, output_format: str, probabilities: bool) -> list[Path]:
        paths = [self.sidecar]
        if output_format in ("multilabel", "both"):
            paths.append(self.multilabel)
        if output_format in ("masks", "both"):
            paths.extend(self.masks.values())
        if probabilities:
            paths.append(self.probabilities)
        return paths


@dataclass
class SegmentReport:
    """What ``segment`` did: written cases, skipped (already done) cases, failures (input, message), and the
    written cases whose segmentation holds no cord (their masks are empty)."""

    written: list[CaseOutputs] = field(default_factory=list)
    skipped: list[CaseOutputs] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    no_cord: list[CaseOutputs] = field(default_factory=list)


def plan_outputs(
    inputs: Sequence[Path | str], output: Path | str | None = None, *, derivatives_name: str = "mousecord"
) -> list[CaseOutputs]:
    """Expand inputs (files, folders, BIDS roots) into cases and their output paths.

    - one file and ``output`` ending in ``.nii``/``.nii.gz``: that is the multi-label path, masks beside it
      (``OUT_GM_seg.nii.gz``);
    - a BIDS dataset (a folder with ``sub-*/``): outputs in ``<root|output>/derivatives/<derivatives_name>/``
      mirroring ``sub-*/[ses-*/]anat/``;
    - otherwise each output goes beside its input, or into the folder ``output``.
    """
    from mousecord.datasets.bids import find_bids_images

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
                cases.append(_case(case.image, folder / split_suffix(case.image)[0], subject=case.subject))
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
            cases.extend(_case(image, folder / split_suffix(image)[0]) for image in images)
        elif single_file_output:
            stem, suffix = split_suffix(Path(output))
            base = Path(output).with_name(stem)
            cases.append(
                CaseOutputs(
                    source, Path(output), _masks(base), Path(f"{base}_prob{suffix}"), Path(f"{base}.json")
                )
            )
        else:
            folder = Path(output) if output is not None else source.parent
            cases.append(_case(source, folder / split_suffix(source)[0]))
    return cases


def _case(image: Path, base: Path, *, subject: str | None = None) -> CaseOutputs:
    return CaseOutputs(
        image,
        Path(f"{base}_seg.nii.gz"),
        _masks(base),
        Path(f"{base}_prob.nii.gz"),
        Path(f"{base}_seg.json"),
        subject,
    )


def _masks(base: Path) -> dict[str, Path]:
    return {LABEL_NAMES[label]: Path(f"{base}_{LABEL_NAMES[label]}_seg.nii.gz") for label in TISSUE_LABELS}


def segment(
    inputs: Path | str | Sequence[Path | str],
    output: Path | str | None = None,
    *,
    model: str | Path | None = None,
    output_format: str = "both",
    probabilities: bool = False,
    largest: bool = False,
    fill_holes: bool = False,
    remove_small_mm3: float = 0.0,
    mirroring: bool = False,
    tile_step_fraction: float = 0.5,
    roi: str = "auto",
    device: str = "auto",
    threads: int | None = None,
    backend: str = "auto",
    max_network_voxels: int = InferenceConfig.max_network_voxels,
    voxel_size_mm: tuple[float, float, float] | None = None,
    overwrite: bool = False,
    qc_dir: Path | str | None = None,
    derivatives_name: str = "mousecord",
    models_dir: Path | str | None = None,
    progress: bool = False,
    command: str = "",
) -> SegmentReport:
    """Segment GM and WM in one or more images (see the module docstring for outputs).

    Args:
        inputs: NIfTI files, folders of them, or BIDS dataset roots.
        output: output file (one input) or folder; default beside each input / BIDS derivatives.
        model: installed model name, bundle folder or nnU-Net results folder (default: "default").
        output_format: "multilabel", "masks" or "both".
        largest, fill_holes, remove_small_mm3: post-processing of the label map.
        mirroring, tile_step_fraction, roi, device, threads, backend, max_network_voxels: see
            :class:`InferenceConfig` (roi "auto": the cord ROI path when the model asks for it, as the
            shipped default does; nnU-Net folders run densely).
        voxel_size_mm: (3,) override of the header's voxel size (file axes).
        overwrite: redo cases whose outputs all exist (default: skip them).
        qc_dir: add a QC report entry per case there.

    Returns:
        A :class:`SegmentReport`. With a single input file, its error is raised instead.

    Raises:
        MousecordError: bad options, an unknown model, or the single input's error.
    """
    if output_format not in OUTPUT_FORMATS:
        raise ConfigError(f"output_format must be one of {OUTPUT_FORMATS}, got {output_format!r}")
    if remove_small_mm3 < 0:
        raise ConfigError(f"remove_small_mm3 must be >= 0, got {remove_small_mm3}")
    input_list = [inputs] if isinstance(inputs, str | Path) else list(inputs)
    single = len(input_list) == 1 and not Path(input_list[0]).is_dir()
    cases = plan_outputs(input_list, output, derivatives_name=derivatives_name)
    report = SegmentReport()
    todo = []
    for case in cases:
        done = all(
            path.exists() for path in case.expected(output_format=output_format, probabilities=probabilities)
        )
        (report.skipped if done and not overwrite else todo).append(case)
    for case in report.skipped:
        logger.info("%s: outputs exist, skipped (use --overwrite to redo)", case.input)
    if not todo:
        return report
    from mousecord.models.registry import resolve_model

    bundle = resolve_model(model, models_dir=models_dir)
    config = InferenceConfig(
        tile_step_fraction=tile_step_fraction,
        mirroring=mirroring,
        device=device,
        threads=threads,
        backend=backend,
        max_network_voxels=max_network_voxels,
        progress=progress and len(todo) == 1,
        roi=roi,
    )
    predictor = Predictor(bundle, config)
    options = {
        "output_format": output_format,
        "probabilities": probabilities,
        "largest": largest,
        "fill_holes": fill_holes,
        "remove_small_mm3": remove_small_mm3,
        "voxel_size_mm": list(voxel_size_mm) if voxel_size_mm else None,
    }
    settings: dict | None = None
    from tqdm import tqdm

    def record_failure(case: CaseOutputs, error: MousecordError) -> None:
        if single:
            raise error
        logger.error("%s", error)
        report.failed.append((case.input, str(error)))

    for case in tqdm(todo, desc="images", unit="image", disable=not progress or len(todo) == 1):
        try:
            image, load_seconds = _load_case(case, options)  # a bad file fails before the network compiles
        except MousecordError as error:
            record_failure(case, error)
            continue
        if settings is None:
            predictor.prepare()  # once, outside the cases' timing; its errors end the run
            settings = {**options, **_resolved_settings(predictor)}
        try:
            found = _segment_case(
                case, image, predictor, settings, load_seconds, command=command, qc_dir=qc_dir
            )
            report.written.append(case)
            if not found:
                report.no_cord.append(case)
        except MousecordError as error:
            record_failure(case, error)
        finally:
            del image  # never two input volumes in memory at once
    return report


def _resolved_settings(predictor: Predictor) -> dict:
    """The inference settings as given and as the predictor resolved them (for the sidecar)."""
    return {
        **predictor.config.to_dict(),
        "backend_resolved": predictor.backend,
        "roi_resolved": predictor.roi,
        "keep_largest_component_resolved": predictor.keep_largest_component,
        **({"cord_roi": predictor.roi_settings.to_dict()} if predictor.roi == "cord" else {}),
    }


def _load_case(case: CaseOutputs, options: dict) -> tuple[LoadedImage, float]:
    """Check the outputs would not overwrite the input, then load and validate the image (and time it)."""
    for target in case.expected(
        output_format=options["output_format"], probabilities=options["probabilities"]
    ):
        check_not_input(target, [case.input])
    started = time.perf_counter()
    image = load_nifti(case.input, voxel_size_mm=options["voxel_size_mm"], dtype=np.float32)
    check_not_constant(image.volume.data, name=str(case.input))
    return image, time.perf_counter() - started


def _segment_case(
    case: CaseOutputs,
    image: LoadedImage,
    predictor: Predictor,
    settings: dict,
    load_seconds: float,
    *,
    command: str,
    qc_dir,
) -> bool:
    """Segment and write one case; returns whether any cord (GM or WM) was found."""
    started = time.perf_counter()
    try:
        prediction = predictor.predict_volume(image.volume, probabilities=settings["probabilities"])
    except ImageFormatError as error:
        raise ImageFormatError(f"{case.input}: {error}") from error
    predicted = time.perf_counter()
    label_map = _postprocess(prediction.label_map, settings, image.volume.voxel_size_mm)
    found = bool(label_map.any())
    written: list[Path] = []
    try:
        if settings["output_format"] in ("multilabel", "both"):
            written.append(save_like(label_map, image.geometry, case.multilabel, dtype=np.uint8))
        if settings["output_format"] in ("masks", "both"):
            for label in TISSUE_LABELS:
                mask = (label_map == label).astype(np.uint8)
                written.append(
                    save_like(mask, image.geometry, case.masks[LABEL_NAMES[label]], dtype=np.uint8)
                )
        if prediction.probabilities is not None:
            channels_last = np.moveaxis(prediction.probabilities, 0, -1).astype(np.float32)
            written.append(save_like(channels_last, image.geometry, case.probabilities, dtype=np.float32))
        timing = {
            "load_s": load_seconds,
            "predict_s": predicted - started,
            "total_s": load_seconds + time.perf_counter() - started,
        }
        _write_sidecar(case, predictor, settings, timing, command, cord_found=found)
        written.append(case.sidecar)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    logger.info("%s: segmented in %.1f s", case.input, timing["total_s"])
    if not found:
        logger.warning(
            "%s: no cord found, the masks are empty; check the image%s, or segment the whole field densely "
            "(roi 'full')",
            case.input,
            f" in the QC report {qc_dir}" if qc_dir is not None else " (add a QC report to see it)",
        )
    if qc_dir is not None:
        _write_qc(
            case,
            label_map_path=case.multilabel if case.multilabel in written else written[0],
            qc_dir=Path(qc_dir),
            command=command,
        )
    return found


def _postprocess(label_map: np.ndarray, settings: dict, voxel_size_mm) -> np.ndarray:
    if settings["remove_small_mm3"]:
        label_map = postprocessing.remove_small_components(
            label_map, min_volume_mm3=settings["remove_small_mm3"], voxel_size_mm=voxel_size_mm
        )
    if settings["largest"]:
        label_map = postprocessing.keep_largest_component(label_map)
    if settings["fill_holes"]:
        label_map = postprocessing.fill_holes(label_map)
    return label_map


def _write_sidecar(
    case: CaseOutputs, predictor: Predictor, settings: dict, timing: dict, command: str, *, cord_found: bool
) -> None:
    from mousecord import __version__

    bundle = predictor.bundle
    record = {
        "software": "mousecord",
        "version": __version__,
        "command": command,
        "input": str(case.input.resolve()),
        "outputs": {
            "multilabel": str(case.multilabel),
            **{name: str(path) for name, path in case.masks.items()},
        },
        "model": {
            "name": bundle.name,
            "source": str(bundle.source) if bundle.source else None,
            "weights_sha256": bundle.metadata.get("weights_sha256"),
            "folds": len(bundle.fold_weights),
        },
        "settings": settings,
        "cord_found": cord_found,
        "device": str(predictor.device),
        "timing_s": {key: round(value, 3) for key, value in timing.items()},
        "python": platform.python_version(),
    }
    with atomic_output(case.sidecar) as temporary:
        temporary.write_text(json.dumps(record, indent=2) + "\n")


def _write_qc(case: CaseOutputs, *, label_map_path: Path, qc_dir: Path, command: str) -> None:
    try:
        from mousecord.analysis.qc import write_qc_entry
    except ImportError as error:
        raise OutputError(f"{qc_dir}: QC reports are not available in this installation ({error})") from error
    write_qc_entry(case.input, label_map_path, qc_dir, subject=case.subject, command=command)


__all__ = ["EXIT_NO_CORD", "OUTPUT_FORMATS", "CaseOutputs", "SegmentReport", "plan_outputs", "segment"]
