"""``mousecord evaluate PRED TRUTH``: Dice, Jaccard, HD95, mean surface distance and volume difference."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

from mousecord.cli.main import SEGMENTED_AXIS, add_common_options, add_cord_axis_option, cord_axis_setting


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="compare predicted segmentations with truth (Dice, HD95, ...)",
        description=(
            "Compare predictions with truth per class (GM, WM, cord = GM + WM): Dice, Jaccard, HD95 and "
            "mean surface distance in mm, volume difference in %, and Dice per axial slice. PRED and TRUTH "
            "are files, folders matched by name, or TRUTH is a BIDS dataset (truth from "
            "derivatives/manual_masks, PRED a folder or the name of a derivatives folder). Each side is a "
            "0/1/2 label map or a pair of binary GM/WM masks (_label-GM_mask/_label-WM_mask or "
            "_GM_seg/_WM_seg). Truth annotated on some axial slices only is evaluated on those slices (any "
            "non-zero truth voxel marks a slice as annotated)."
        ),
    )
    parser.add_argument("prediction", type=Path, metavar="PRED", help="prediction file or folder")
    parser.add_argument(
        "reference", type=Path, metavar="TRUTH", help="truth file, folder or BIDS dataset root"
    )
    parser.add_argument("-o", "--output", type=Path, help="CSV with one row per case and class")
    parser.add_argument(
        "--json", type=Path, dest="json_path", help="JSON with means per class and every case"
    )
    parser.add_argument("--per-slice-csv", type=Path, help="CSV of Dice per case and axial slice")
    parser.add_argument(
        "--mask-folder",
        default="manual_masks",
        help="derivatives folder of the truth masks in a BIDS dataset",
    )
    add_cord_axis_option(parser, what="slices and per-slice Dice are taken", auto=SEGMENTED_AXIS)
    add_common_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from mousecord.analysis.evaluation import (
        evaluate,
        format_summary,
        write_metrics_csv,
        write_metrics_json,
        write_per_slice_csv,
    )
    from mousecord.io import atomic_output

    _check_outputs_are_not_inputs(args)
    results = evaluate(
        args.prediction, args.reference, mask_folder=args.mask_folder, cord_axis=cord_axis_setting(args)
    )
    writers = [
        (writer, path)
        for writer, path in (
            (write_metrics_csv, args.output),
            (write_metrics_json, args.json_path),
            (write_per_slice_csv, args.per_slice_csv),
        )
        if path is not None
    ]
    with contextlib.ExitStack() as stack:  # all outputs or none: each is renamed into place at the end
        for writer, path in writers:
            writer(results, stack.enter_context(atomic_output(path)))
    print(format_summary(results))
    return 0


def _check_outputs_are_not_inputs(args: argparse.Namespace) -> None:
    """Refuse, before any work, an output path that is PRED or TRUTH (or the sibling mask of a pair), an
    image, a segment sidecar or a device (:func:`mousecord.io.names.check_report_output`)."""
    from mousecord.analysis.labelmaps import label_source
    from mousecord.errors import OutputError
    from mousecord.io.names import check_report_output

    inputs: list[Path] = []
    for path in (args.prediction, args.reference):
        inputs += list(label_source(path).paths) if path.is_file() else [path]
    outputs = [path for path in (args.output, args.json_path, args.per_slice_csv) if path is not None]
    for output in outputs:
        check_report_output(output, inputs)
    if len({output.resolve() for output in outputs}) != len(outputs):
        raise OutputError(f"{outputs[0]}: two outputs have the same name; choose different names")
