"""``mousecord morphometrics SEG -o table.csv``: per-slice GM/WM/cord areas, diameters and angles."""

from __future__ import annotations

import argparse
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


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "morphometrics",
        help="per-slice GM/WM/cord areas, diameters and centerline angles",
        description=(
            "Measure a GM/WM segmentation per axial slice: GM, WM and cord areas (mm2), GM fraction, "
            "diameter_AP/diameter_RL, eccentricity, orientation, angle_AP/angle_RL. Areas are corrected "
            "for the angle between "
            "the cord centerline and the slice normal, as SCT's sct_process_segmentation does."
        ),
    )
    parser.add_argument(
        "segmentation", type=Path, metavar="SEG", help="0/1/2 label map, or one file of a GM/WM pair"
    )
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        help="per-slice CSV, first column 'Slice (I->S)' ('Slice (L->R)' or 'Slice (P->A)' where the cord "
        "runs along another axis)",
    )
    parser.add_argument("--png", type=Path, help="plot of the areas and angles along the cord")
    parser.add_argument("--json", type=Path, dest="json_path", help="whole-volume totals (volumes in mm3)")
    parser.add_argument(
        "--no-angle-correction",
        dest="angle_correction",
        action="store_false",
        help="measure the axial slices as they are",
    )
    add_cord_axis_option(
        parser,
        what="areas and angles are measured on slices",
        auto=SEGMENTED_AXIS,
    )
    add_voxel_size_option(parser, default=SEGMENTED_VOXEL_SIZE)
    add_common_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from mousecord.analysis.shape import morphometrics_file

    result = morphometrics_file(
        args.segmentation,
        args.output,
        png=args.png,
        json_path=args.json_path,
        angle_correction=args.angle_correction,
        cord_axis=cord_axis_setting(args),
        voxel_size_mm=voxel_size_setting(args),
    )
    totals = result.totals
    if result.n_slices == 0:
        print("empty segmentation: no cord on any slice")
    else:
        print(
            f"{result.n_slices} slices, centerline length {totals['length_mm']:.2f} mm; volumes: "
            f"GM {totals['volume_GM_mm3']:.3f}, WM {totals['volume_WM_mm3']:.3f}, "
            f"cord {totals['volume_cord_mm3']:.3f} mm3; "
            f"GM fraction {totals['GM_fraction']:.3f}"
        )
    print(f"wrote {args.output}")
    return 0
