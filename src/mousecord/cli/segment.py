"""``mousecord segment -i IN [IN ...] [-o OUT]``: GM/WM segmentation (calls :func:`mousecord.segment`)."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from mousecord.cli.main import (
    add_backend_option,
    add_common_options,
    add_cord_axis_option,
    add_voxel_size_option,
    cord_axis_setting,
    show_progress,
    voxel_size_setting,
)
from mousecord.options import (
    DEFAULT_MAX_NETWORK_VOXELS,
    DEFAULT_MAX_UPSAMPLING,
    DEVICES,
    PRECISIONS,
    ROI_MODES,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "segment",
        help="segment GM and WM (files, folders or BIDS datasets)",
        description=(
            "Segment grey and white matter. Writes OUT.nii.gz (0/1/2 label map; default <stem>_seg.nii.gz), "
            "SCT-style binary masks OUT_GM_seg.nii.gz and OUT_WM_seg.nii.gz, and a JSON sidecar, all in the "
            "input's exact space. A folder input segments every image in it (masks beside them left out); a "
            "BIDS dataset writes into derivatives/<name>/. Cases whose outputs exist are skipped, and files "
            "no mousecord run wrote are never replaced, unless --overwrite. Exit status: 0 "
            "done, 1 some image failed (each listed), 3 no cord found in some image (empty masks, a warning)."
        ),
    )
    parser.add_argument(
        "-i",
        "--input",
        nargs="+",
        type=Path,
        required=True,
        metavar="IN",
        help="NIfTI files, folders of them, or BIDS dataset roots",
    )
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="OUT",
        help="output file (one input; a name ending in .nii or .nii.gz) or folder (any other name; default: "
        "beside each input)",
    )
    parser.add_argument(
        "--model",
        help="installed model name, bundle folder or nnU-Net results folder "
        "(default: the model named 'default')",
    )
    parser.add_argument(
        "--format",
        dest="output_format",
        choices=("multilabel", "masks", "both"),
        default="both",
        help="label map, binary masks, or both (default)",
    )
    parser.add_argument("--probabilities", action="store_true", help="also write per-class probabilities")
    parser.add_argument("--largest", action="store_true", help="keep the largest cord component")
    parser.add_argument("--fill-holes", action="store_true", help="fill holes in the cord")
    parser.add_argument(
        "--remove-small",
        type=float,
        default=0.0,
        metavar="MM3",
        help="remove cord components smaller than MM3 cubic millimetres",
    )
    parser.add_argument(
        "--tta",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="mirroring test-time augmentation (4x slower in 2D, 8x in 3D; default: what the model asks for, "
        "on for the default model)",
    )
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="network precision: auto (default) runs a model's int8 networks on OpenVINO where it has them "
        "(the default model does: about 1.9x faster), else float32",
    )
    parser.add_argument("--step", type=float, default=0.5, help="sliding-window step, fraction of the patch")
    parser.add_argument(
        "--roi",
        choices=("auto", *ROI_MODES),
        default="auto",
        help="cord: find the cord first, then segment only around it (fast); full: dense sliding window "
        "over the whole image (nnU-Net's way); auto (default): what the model asks for",
    )
    parser.add_argument("--device", choices=DEVICES, default="auto")
    parser.add_argument("--threads", type=int, help="CPU threads for the network")
    add_backend_option(parser)
    parser.add_argument(
        "--max-voxels",
        type=float,
        default=DEFAULT_MAX_NETWORK_VOXELS,
        help="refuse images with more voxels than this once resampled to the model's spacing "
        "(default 4e8, over 10 GB of memory)",
    )
    parser.add_argument(
        "--max-upsampling",
        type=float,
        default=DEFAULT_MAX_UPSAMPLING,
        help="refuse images whose in-plane voxels are more than this many times the model's spacing "
        "(default 10: 0.5 mm for the default model; a header in the wrong unit)",
    )
    add_voxel_size_option(parser, default="the header's")
    add_cord_axis_option(
        parser,
        what="axial slices are segmented",
        auto="a single slice's normal, whatever its header calls it, else the header's superior-inferior "
        "axis, unless the network finds one continuous cord along another only (asked where thick slices "
        "or a chunk's length hint at one, or where little cord runs across the header's); a warning names "
        "the file where the header is overruled, or where a hint is left undecided",
    )
    parser.add_argument("--overwrite", action="store_true", help="redo cases whose outputs exist")
    parser.add_argument("--derivatives-name", default="mousecord", help="BIDS derivatives folder name")
    parser.add_argument("-qc", "--qc", type=Path, metavar="DIR", help="add QC report entries to DIR")
    parser.add_argument("--models-dir", type=Path, help="folder of installed models (default: user data dir)")
    add_common_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from mousecord.cli.main import _print_error
    from mousecord.inference import InferenceConfig
    from mousecord.pipelines import EXIT_NO_CORD, SegmentOptions, segment

    options = SegmentOptions(
        output_format=args.output_format,
        probabilities=args.probabilities,
        largest=args.largest,
        fill_holes=args.fill_holes,
        remove_small_mm3=args.remove_small,
        voxel_size_mm=voxel_size_setting(args),
        cord_axis=cord_axis_setting(args),
        overwrite=args.overwrite,
        qc_dir=args.qc,
        command="mousecord " + shlex.join(sys.argv[1:]),
        command_line_wording=True,
    )
    inference = InferenceConfig(
        tile_step_fraction=args.step,
        mirroring=args.tta,
        device=args.device,
        threads=args.threads,
        backend=args.backend,
        precision=args.precision,
        max_network_voxels=int(args.max_voxels),
        max_upsampling=args.max_upsampling,
        roi=args.roi,
    )
    report = segment(
        args.input,
        args.output,
        model=args.model,
        options=options,
        inference=inference,
        derivatives_name=args.derivatives_name,
        models_dir=args.models_dir,
        progress=show_progress(args),
    )
    for case in report.written:
        print(case.multilabel if case.multilabel.exists() else case.sidecar)
    if report.written and args.qc is not None:
        print(f"QC report: {args.qc / 'index.html'}", file=sys.stderr)
    if report.skipped:
        print(
            f"{len(report.skipped)} already segmented, skipped: their outputs keep the settings of the "
            f"run that made them (in its sidecar, e.g. {report.skipped[0].sidecar}); --overwrite redoes "
            "them with these",
            file=sys.stderr,
        )
    if report.left_out:
        print(f"{len(report.left_out)} files hold only label values, left out as masks", file=sys.stderr)
    segmented = len(report.written) + len(report.skipped)
    if report.failed:
        total = len(report.failed) + segmented
        _print_error(f"{len(report.failed)} of {total} images failed:")
        for _, message in report.failed:
            _print_error(f"  {message}")
        return 1
    if report.no_cord:
        names = ", ".join(str(case.input) for case in report.no_cord)
        _print_error(f"no cord found in {len(report.no_cord)} of {segmented} images ({names})")
        return EXIT_NO_CORD
    return 0
