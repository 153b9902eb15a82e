"""``mousecord qc -i IMAGE -s SEG -qc DIR``: add a case to an HTML QC report (SCT's qc2 model)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mousecord.cli.main import (
    SEGMENTED_AXIS,
    SEGMENTED_VOXEL_SIZE,
    add_common_options,
    add_cord_axis_option,
    add_voxel_size_option,
    cord_axis_setting,
    voxel_size_setting,
)
from mousecord.errors import ConfigError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "qc",
        help="add an image and its segmentation to an HTML QC report",
        description=(
            "Write an axial mosaic and a longitudinal view of IMAGE with SEG overlaid (GM red, WM cyan) into "
            "DIR, with a JSON record, and rebuild DIR/index.html from every record in DIR. Open "
            "index.html in a browser: j/k or arrows move between entries, t toggles the overlay, p/f/a "
            "mark pass/fail/artifact."
        ),
    )
    parser.add_argument("-i", "--image", type=Path, required=True, help="input image (NIfTI)")
    parser.add_argument(
        "-s", "--segmentation", type=Path, required=True, help="0/1/2 label map in the image's space"
    )
    parser.add_argument(
        "-qc", "--qc-dir", type=Path, required=True, help="QC report folder (created if needed)"
    )
    parser.add_argument("--subject", help="subject name shown in the report")
    parser.add_argument(
        "--metrics",
        type=Path,
        help="JSON file of numbers to show with the entry; from mousecord evaluate --json, the numbers "
        "of the case evaluated on SEG",
    )
    add_cord_axis_option(
        parser,
        what="the axial mosaic shows slices",
        auto=SEGMENTED_AXIS,
    )
    add_voxel_size_option(parser, default=SEGMENTED_VOXEL_SIZE)
    add_common_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from mousecord.analysis.evaluation import case_metrics
    from mousecord.analysis.qc import write_qc_entry

    metrics = None
    if args.metrics is not None:
        try:
            metrics = json.loads(args.metrics.read_text())
        except (OSError, ValueError) as error:
            raise ConfigError(f"{args.metrics}: cannot read metrics JSON: {error}") from error
        if not isinstance(metrics, dict):
            raise ConfigError(
                f"{args.metrics}: expected a JSON object of metrics, got {type(metrics).__name__}"
            )
        metrics = case_metrics(metrics, args.segmentation)  # an evaluate JSON: this case's, not the mean
    command = (
        f"mousecord qc -i {args.image} -s {args.segmentation} -qc {args.qc_dir} --cord-axis {args.cord_axis}"
    )
    record = write_qc_entry(
        args.image,
        args.segmentation,
        args.qc_dir,
        subject=args.subject,
        command=command,
        metrics=metrics,
        cord_axis=cord_axis_setting(args),
        voxel_size_mm=voxel_size_setting(args),
    )
    print(f"QC record {record}; report {args.qc_dir / 'index.html'}")
    return 0
