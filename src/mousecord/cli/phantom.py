"""``mousecord phantom`` and ``mousecord phantom-dataset``: synthetic mouse cord volumes with labels."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from mousecord.cli.main import add_common_options, show_progress
from mousecord.options import PHANTOM_CONTRASTS

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "phantom",
        help="generate a synthetic mouse cord volume with exact GM/WM labels",
        description=(
            "Generate one synthetic ex vivo mouse spinal cord chunk (T1w-like by default, see --contrast; "
            "real GM/WM shapes of every spinal level, surroundings, bias field, blur, Rician noise) with its "
            "exact labels (0 background, 1 GM, 2 WM). A JSON sidecar with every drawn parameter is written "
            "beside the image."
        ),
    )
    parser.add_argument(
        "-o", "--output", type=Path, required=True, metavar="IMAGE", help="output image .nii.gz"
    )
    parser.add_argument("--labels", type=Path, metavar="LABELS", help="output label map .nii.gz (uint8)")
    parser.add_argument(
        "--png", type=Path, metavar="PATH", help="picture: axial mosaic and longitudinal view"
    )
    _add_phantom_options(parser)
    add_common_options(parser)
    parser.set_defaults(handler=run_phantom)

    dataset = subparsers.add_parser(
        "phantom-dataset",
        help="generate a synthetic dataset in the reference's BIDS layout (sparse and dense masks)",
        description=(
            "Write sub-XX/anat/sub-XX_chunk-N_T1w.nii.gz images, sparse manual-style GM/WM masks under "
            "derivatives/manual_masks (a few annotated axial slices per volume) and dense truth under "
            "derivatives/labels, plus dataset_description.json and participants.tsv."
        ),
    )
    dataset.add_argument(
        "-o", "--output", type=Path, required=True, metavar="ROOT", help="new dataset folder"
    )
    dataset.add_argument("--subjects", type=int, default=2, help="number of subjects (default: 2)")
    dataset.add_argument("--chunks", type=int, default=2, help="chunks per subject (default: 2)")
    dataset.add_argument(
        "--annotated-slices", type=int, default=2, help="annotated axial slices per volume (default: 2)"
    )
    _add_phantom_options(dataset, seed_default=0)
    add_common_options(dataset)
    dataset.set_defaults(handler=run_phantom_dataset)


def _add_phantom_options(parser: argparse.ArgumentParser, *, seed_default: int | None = None) -> None:
    parser.add_argument(
        "--shape",
        type=int,
        nargs=3,
        default=[200, 200, 500],
        metavar=("X", "Y", "Z"),
        help="grid size in voxels, z along the cord (default: 200 200 500)",
    )
    parser.add_argument(
        "--voxel-size",
        "--voxel-size-mm",
        dest="voxel_size_mm",
        type=float,
        nargs="+",
        default=[0.05],
        metavar="MM",
        help="voxel size in mm, one value (isotropic) or three (default: 0.05)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=seed_default,
        help="random seed; the same seed gives the same bytes"
        + (" (default: 0)" if seed_default is not None else " (default: a fresh one, logged)"),
    )
    parser.add_argument(
        "--contrast",
        choices=list(PHANTOM_CONTRASTS),
        default="t1w",
        help="t1w: realistic preset (GM brighter than WM); gm-dark: the same with GM darker than WM; "
        "random: random tissue intensities",
    )
    parser.add_argument(
        "--snr",
        type=float,
        nargs=2,
        default=[10.0, 40.0],
        metavar=("LOW", "HIGH"),
        help="range of the WM signal-to-noise ratio (default: 10 40)",
    )
    parser.add_argument(
        "--gibbs",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="Gibbs ringing from in-plane k-space truncation (default: on)",
    )
    parser.add_argument("--air-bubbles", action="store_true", help="add 1-3 air bubbles next to the cord")
    parser.add_argument("--damaged-ends", action="store_true", help="cut and damage the chunk ends")


def _config(args: argparse.Namespace):
    from mousecord.errors import ConfigError
    from mousecord.phantom import PhantomConfig

    voxel = args.voxel_size_mm
    if len(voxel) not in (1, 3):
        raise ConfigError(f"--voxel-size takes one or three values in mm, got {len(voxel)}: {voxel}")
    return PhantomConfig(
        shape_vox=tuple(args.shape),
        voxel_size_mm=tuple(voxel * 3 if len(voxel) == 1 else voxel),
        contrast=args.contrast,
        snr_range=tuple(args.snr),
        gibbs_ringing=args.gibbs,
        air_bubbles=args.air_bubbles,
        damaged_ends=args.damaged_ends,
    )


def _check_writable(path: Path) -> None:
    """Refuse early (before minutes of work) an output whose nearest existing folder is not writable."""
    import os

    from mousecord.errors import OutputError

    folder = path.absolute().parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise OutputError(f"{path}: output folder {folder} is not writable")


def run_phantom(args: argparse.Namespace) -> int:
    import numpy as np

    from mousecord.phantom import generate_phantom, write_phantom
    from mousecord.phantom.output import check_output_paths

    config = _config(args)
    check_output_paths(args.output, args.labels, args.png)
    for path in (args.output, args.labels, args.png):
        if path is not None:
            _check_writable(path)
    seed = args.seed if args.seed is not None else int(np.random.SeedSequence().entropy % 2**32)
    logger.info("generating a %s phantom, seed %d", "x".join(map(str, config.shape_vox)), seed)
    phantom = generate_phantom(config, rng=np.random.default_rng(seed))
    written = write_phantom(phantom, args.output, args.labels, png_path=args.png, metadata={"seed": seed})
    levels = phantom.parameters["levels_covered"]
    logger.info(
        "levels %s-%s, SNR %.1f; wrote %s",
        levels[0],
        levels[-1],
        phantom.parameters["snr"],
        ", ".join(str(path) for path in written),
    )
    return 0


def run_phantom_dataset(args: argparse.Namespace) -> int:
    from mousecord.phantom import phantom_dataset

    _check_writable(args.output / "dataset_description.json")
    images = phantom_dataset(
        args.output,
        n_subjects=args.subjects,
        chunks_per_subject=args.chunks,
        annotated_slices_per_volume=args.annotated_slices,
        config=_config(args),
        seed=args.seed,
        progress=show_progress(args),
    )
    logger.info("wrote %d volumes under %s", len(images), args.output)
    return 0
