"""``run_demo``: a phantom made on the fly, segmented by a model, judged against its truth, in one folder.

What a new user runs first (``mousecord demo -o example/``): no data and no other software needed. The
folder receives::

    example_T1w.nii.gz              the phantom image (+ example_T1w.json, every drawn parameter)
    example_T1w_truth.nii.gz        its exact labels (0 background, 1 GM, 2 WM)
    example_T1w_seg.nii.gz          the segmentation, with SCT-style example_T1w_GM_seg / _WM_seg masks
    example_T1w_seg.json            the segmentation sidecar (model, settings, timing)
    example_T1w_seg.png             image | truth | prediction on axial slices, zoomed, GM/WM outlines
    example_T1w_metrics.json        Dice, HD95 and volume error against the truth
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mousecord.analysis.comparison import render_comparison_png
from mousecord.analysis.metrics import compare_label_maps
from mousecord.errors import OutputError
from mousecord.inference.predictor import InferenceConfig
from mousecord.io.atomic import atomic_output
from mousecord.io.nifti import load_nifti
from mousecord.phantom import PhantomConfig, generate_phantom
from mousecord.phantom.output import write_phantom
from mousecord.pipelines.segment import SegmentOptions, segment

logger = logging.getLogger(__name__)

DEMO_STEM = "example_T1w"
DEMO_SHAPE_VOX = (200, 200, 160)
DEMO_SEED = 7


@dataclass(frozen=True)
class DemoResult:
    """Paths written by :func:`run_demo` and the Dice of the segmentation against the truth."""

    image: Path
    truth: Path
    segmentation: Path
    picture: Path
    metrics: Path
    dice: dict[str, float]


def run_demo(
    output_folder: Path | str,
    *,
    model: str | Path | None = None,
    shape_vox: tuple[int, int, int] = DEMO_SHAPE_VOX,
    seed: int = DEMO_SEED,
    roi: str = "auto",
    threads: int | None = None,
    device: str = "auto",
    backend: str = "auto",
    overwrite: bool = False,
) -> DemoResult:
    """Generate a T1w phantom (``shape_vox`` at 0.05 mm, ``seed``), segment it, compare, draw.

    Args:
        output_folder: created if needed; see the module docstring for its contents.
        model: model name or folder (default: the shipped default model).
        shape_vox: (x, y, z) phantom size, z along the cord.
        roi, threads, device, backend: see :class:`~mousecord.inference.InferenceConfig`.
        overwrite: replace an earlier demo's files in the folder (as ``segment``, nothing is
            overwritten without it).

    Returns:
        A :class:`DemoResult`; ``dice`` holds GM, WM and cord Dice.

    Raises:
        OutputError: the folder holds an earlier demo's files and ``overwrite`` is off.
        MousecordError: no default model and none given, or unwritable outputs.
    """
    folder = Path(output_folder)
    image_path, truth_path = folder / f"{DEMO_STEM}.nii.gz", folder / f"{DEMO_STEM}_truth.nii.gz"
    earlier = sorted(path.name for path in folder.glob(f"{DEMO_STEM}*")) if folder.is_dir() else []
    if earlier and not overwrite:
        raise OutputError(
            f"{folder}: holds an earlier demo ({len(earlier)} files such as {earlier[0]}); give "
            "--overwrite to replace it, or another output folder"
        )
    folder.mkdir(parents=True, exist_ok=True)
    phantom = generate_phantom(PhantomConfig(shape_vox=shape_vox), rng=np.random.default_rng(seed))
    write_phantom(phantom, image_path, truth_path, metadata={"seed": seed})
    logger.info("phantom %s (seed %d) written to %s", tuple(shape_vox), seed, image_path)
    report = segment(
        image_path,
        folder,
        model=model,
        options=SegmentOptions(overwrite=overwrite, command="mousecord demo"),  # as the user asked
        inference=InferenceConfig(roi=roi, threads=threads, device=device, backend=backend),
    )
    case = report.written[0]
    label_map = load_nifti(case.multilabel).volume
    metrics = compare_label_maps(
        phantom.label_map.data, label_map.data, voxel_size_mm=phantom.image.voxel_size_mm, name=DEMO_STEM
    )
    dice = {name: float(values.dice) for name, values in metrics.items()}
    picture = folder / f"{DEMO_STEM}_seg.png"
    render_comparison_png(
        phantom.image.data,
        phantom.label_map.data,
        label_map.data,
        phantom.image.voxel_size_mm,
        picture,
        title=f"mousecord demo: a phantom (seed {seed}); Dice against its truth GM {dice['GM']:.3f}, "
        f"WM {dice['WM']:.3f}",
    )
    metrics_path = folder / f"{DEMO_STEM}_metrics.json"
    with atomic_output(metrics_path) as temporary:
        record = {name: values.to_dict() for name, values in metrics.items()}
        for values in record.values():
            values.pop("per_slice_dice", None)
        temporary.write_text(
            json.dumps({"seed": seed, "shape_vox": list(shape_vox), **record}, indent=2) + "\n"
        )
    logger.debug(
        "Dice against the phantom's truth: GM %.3f, WM %.3f, cord %.3f (picture: %s)",
        dice["GM"],
        dice["WM"],
        dice["cord"],
        picture,
    )
    return DemoResult(image_path, truth_path, case.multilabel, picture, metrics_path, dice)


__all__ = ["DEMO_SEED", "DEMO_SHAPE_VOX", "DemoResult", "run_demo"]
