"""``mousecord demo -o example/``: segment a phantom made on the fly and judge it (calls :func:`run_demo`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from mousecord.cli.main import add_backend_option, add_common_options
from mousecord.options import DEVICES, ROI_MODES


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="try mousecord: segment a synthetic cord with the default model and judge the result",
        description=(
            "Generate a synthetic T1w mouse cord chunk (200 x 200 x 160 voxels at 0.05 mm, fixed seed), "
            "segment it with the default model (or --model) and write, in the output folder: the image, its "
            "exact labels (_truth), the segmentation with SCT-style GM/WM masks, a PNG to look at (image, "
            "truth and prediction on axial slices zoomed on the cord: GM outline red, cord outline cyan) and "
            "Dice/HD95 against the truth (_metrics.json, also logged)."
        ),
    )
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="DIR", help="output folder")
    parser.add_argument("--model", help="model name or folder (default: the shipped default model)")
    parser.add_argument("--seed", type=int, default=None, help="phantom seed (default: 7)")
    parser.add_argument(
        "--shape", type=int, nargs=3, metavar=("X", "Y", "Z"), help="phantom size (default: 200 200 160)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier demo in DIR")
    parser.add_argument("--roi", choices=("auto", *ROI_MODES), default="auto", help="see segment --roi")
    parser.add_argument("--device", choices=DEVICES, default="auto")
    parser.add_argument("--threads", type=int, help="CPU threads for the network")
    add_backend_option(parser)
    add_common_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from mousecord.pipelines.demo import DEMO_SEED, DEMO_SHAPE_VOX, run_demo

    result = run_demo(
        args.output,
        model=args.model,
        shape_vox=tuple(args.shape) if args.shape else DEMO_SHAPE_VOX,
        seed=DEMO_SEED if args.seed is None else args.seed,
        roi=args.roi,
        threads=args.threads,
        device=args.device,
        backend=args.backend,
        overwrite=args.overwrite,
    )
    print(
        f"Dice against the truth: GM {result.dice['GM']:.3f}, WM {result.dice['WM']:.3f}, "
        f"cord {result.dice['cord']:.3f}"
    )
    print(f"look at {result.picture}; segmentation {result.segmentation}")
    return 0
