"""The reference's data tools: extract-slices, crop, fix-header, bids-to-nnunet, nnunet-to-bids."""

from __future__ import annotations

import argparse
from pathlib import Path

from mousecord.cli.main import add_common_options


def register(subparsers: argparse._SubParsersAction) -> None:
    _register_extract(subparsers)
    _register_crop(subparsers)
    _register_fix_header(subparsers)
    _register_bids_to_nnunet(subparsers)
    _register_nnunet_to_bids(subparsers)


def _register_extract(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "extract-slices",
        help="write every annotated axial slice of a BIDS dataset as a 1-slice volume",
        description="For each volume with GM/WM masks, write each slice (last axis) holding GM or WM as "
        "<sub>_<chunk>-slice-<i>_T1w.nii.gz with its masks into a new dataset; full volumes are copied too.",
    )
    parser.add_argument("dataset", type=Path, help="BIDS dataset root")
    parser.add_argument("-o", "--output", type=Path, required=True, help="new dataset folder")
    parser.add_argument("--label-folder", default="manual_masks", help="mask folder under derivatives/")
    _add_overwrite_option(parser, "write into a folder that has files (those of the same names are replaced)")
    add_common_options(parser)
    parser.set_defaults(handler=_run_extract)


def _add_overwrite_option(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--overwrite", action="store_true", help=f"{what}; without it, refused")


def _run_extract(args: argparse.Namespace) -> int:
    from mousecord.datasets.tools import extract_slices

    written = extract_slices(
        args.dataset, args.output, mask_folder=args.label_folder, overwrite=args.overwrite
    )
    print(f"{len(written)} slices written to {args.output}")
    return 0


def _register_crop(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "crop",
        help="keep slices FIRST:LAST (last axis) of an image and its masks, into new files",
        description="Crop along the last axis (Python slicing, LAST excluded); the affine is shifted so "
        "voxels stay in place. The image's output gets --suffix (default _crop) unless -o is given; a mask "
        "named after the image is named after its output the same way (X_label-GM_mask -> "
        "X_crop_label-GM_mask, in the mask's folder), so they still pair. Inputs are never overwritten, "
        "earlier outputs only with --overwrite.",
    )
    parser.add_argument("-i", "--image", type=Path, required=True, help="image to crop")
    parser.add_argument("-m", "--masks", type=Path, nargs="*", default=[], help="masks to crop the same way")
    parser.add_argument("--first", type=int, required=True, help="first slice kept (z_start)")
    parser.add_argument("--last", type=int, required=True, help="slice after the last one kept (z_stop)")
    parser.add_argument("-o", "--output", type=Path, help="output image (default <image>_crop.nii.gz)")
    parser.add_argument("--suffix", default="_crop", help="suffix of default output names")
    _add_overwrite_option(parser, "replace outputs that exist (an earlier crop)")
    add_common_options(parser)
    parser.set_defaults(handler=_run_crop)


def _run_crop(args: argparse.Namespace) -> int:
    from mousecord.datasets.tools import crop_files, crop_outputs

    outputs = crop_outputs(args.image, args.masks, args.output, args.suffix)
    # checks everything, then writes all
    written = crop_files([args.image, *args.masks], args.first, args.last, outputs, overwrite=args.overwrite)
    print("\n".join(str(path) for path in written))
    return 0


def _register_fix_header(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "fix-header",
        help="force the voxel size and copy the qform into the sform, into a new file",
        description="Ex vivo headers often store the voxel size in the wrong unit or scale (1 mm for "
        "0.05 mm): write a copy with the voxel size --zooms-mm, its qform rebuilt with it and copied into "
        "the sform, the data unchanged (the reference's header fix). The input is never overwritten, an "
        "earlier output only with --overwrite.",
    )
    parser.add_argument("-i", "--image", type=Path, required=True, help="image to fix")
    parser.add_argument("-o", "--output", type=Path, help="output (default <image>_fixed.nii.gz)")
    parser.add_argument(
        "--zooms-mm", type=float, nargs=3, default=(0.05, 0.05, 0.05), help="voxel size in mm"
    )
    _add_overwrite_option(parser, "replace the output if it exists")
    add_common_options(parser)
    parser.set_defaults(handler=_run_fix_header)


def _run_fix_header(args: argparse.Namespace) -> int:
    from mousecord.datasets.tools import default_output, fix_header_file

    output = fix_header_file(
        args.image,
        args.output or default_output(args.image, "_fixed"),
        zooms_mm=tuple(args.zooms_mm),
        overwrite=args.overwrite,
    )
    print(output)
    return 0


def _register_bids_to_nnunet(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bids-to-nnunet",
        help="convert a BIDS dataset into an nnU-Net v2 raw dataset",
        description="Volumes with GM and WM masks become imagesTr/labelsTr cases (GM=1, WM=2), the others "
        "imagesTs; writes dataset.json and conversion_dict.json. --ignore-label marks unannotated slices 3 "
        'and declares "ignore": 3, so nnU-Net trains on the annotated slices only.',
    )
    parser.add_argument("dataset", type=Path, help="BIDS dataset root")
    parser.add_argument(
        "-o", "--output", type=Path, required=True, help="nnU-Net dataset folder (DatasetNNN_Name)"
    )
    parser.add_argument("--task-name", help="case prefix (default: the Name part of the output folder)")
    parser.add_argument("--label-folder", default="manual_masks", help="mask folder under derivatives/")
    parser.add_argument("--ignore-label", action="store_true", help="unannotated slices -> ignore label 3")
    add_common_options(parser)
    parser.set_defaults(handler=_run_bids_to_nnunet)


def _run_bids_to_nnunet(args: argparse.Namespace) -> int:
    from mousecord.datasets.tools import bids_to_nnunet

    result = bids_to_nnunet(
        args.dataset,
        args.output,
        task_name=args.task_name,
        mask_folder=args.label_folder,
        ignore_label=args.ignore_label,
    )
    print(f"{result.training_cases} training and {result.test_cases} test cases in {result.folder}")
    return 0


def _register_nnunet_to_bids(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "nnunet-to-bids",
        help="put nnU-Net label maps back into a BIDS dataset as GM/WM masks",
    )
    parser.add_argument("predictions", type=Path, help="folder of <case>.nii.gz label maps")
    parser.add_argument(
        "--conversion-dict", type=Path, required=True, help="conversion_dict.json of bids-to-nnunet"
    )
    parser.add_argument("--mask-name", default="predictions", help="folder under derivatives/ to write into")
    parser.add_argument("--bids-root", type=Path, help="dataset root (default: from the dictionary's paths)")
    _add_overwrite_option(parser, "replace masks that exist there (in manual_masks: hand-drawn ones)")
    add_common_options(parser)
    parser.set_defaults(handler=_run_nnunet_to_bids)


def _run_nnunet_to_bids(args: argparse.Namespace) -> int:
    from mousecord.datasets.tools import nnunet_to_bids

    written = nnunet_to_bids(
        args.predictions,
        args.conversion_dict,
        mask_folder=args.mask_name,
        bids_root=args.bids_root,
        overwrite=args.overwrite,
    )
    print(f"{len(written)} masks written")
    return 0
