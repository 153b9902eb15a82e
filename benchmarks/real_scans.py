"""Real scans with real GM labels: SCT's human test data given a mouse-scale voxel size.

The files of ``tests/data/real-headers`` (SCT's ``sct_testing_data``, MIT) are human cervical cord scans
with manual GM and cord masks: ``t2s`` (T2*-weighted, GM brighter than WM, 0.5 x 0.5 x 7.5 mm) and ``mt1``
(magnetisation transfer, 0.84 x 0.84 x 17 mm). A human cord is about 5x wider than a mouse's, so each is
given the in-plane voxel size that makes its cord (as its mask measures it) 2.5 mm wide, the middle of the
mouse range, and segmented slice by slice. Cord Dice (GM + WM against the cord mask) and GM Dice are printed
per file; they measure anatomy and contrast transfer to real tissue, not mouse accuracy.

    python benchmarks/real_scans.py [--data tests/data/real-headers] [--model default] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np

SCANS = {"t2s": ("t2s_gmseg_manual", "t2s_seg"), "mt1": ("mt1_gmseg_goldstandard", "mt1_seg")}
MOUSE_CORD_WIDTH_MM = 2.5


def cord_width_mm(cord: np.ndarray, voxel_size_mm) -> float:
    """Median over slices of the cord mask's larger in-plane extent (mm)."""
    widths = []
    for z in range(cord.shape[2]):
        rows, columns = np.flatnonzero(cord[:, :, z].any(axis=1)), np.flatnonzero(cord[:, :, z].any(axis=0))
        if rows.size:
            widths.append(max(rows.size * voxel_size_mm[0], columns.size * voxel_size_mm[1]))
    return float(np.median(widths))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data", type=Path, default=Path(__file__).resolve().parents[1] / "tests/data/real-headers"
    )
    parser.add_argument("--model", default=None, help="model name or folder (default: the shipped default)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    from mousecord.analysis.metrics import dice
    from mousecord.inference import InferenceConfig
    from mousecord.pipelines import SegmentOptions, segment

    results = {}
    for name, (gm_name, cord_name) in SCANS.items():
        image = nib.load(args.data / f"{name}.nii.gz")
        gm = np.asarray(nib.load(args.data / f"{gm_name}.nii.gz").dataobj) > 0.5
        cord = np.asarray(nib.load(args.data / f"{cord_name}.nii.gz").dataobj) > 0.5
        zooms = np.asarray(image.header.get_zooms()[:3], dtype=float)
        scale = MOUSE_CORD_WIDTH_MM / cord_width_mm(cord, zooms)
        voxel = (zooms[0] * scale, zooms[1] * scale, zooms[2] * scale)
        with tempfile.TemporaryDirectory() as folder:
            output = Path(folder) / f"{name}_seg.nii.gz"
            segment(
                args.data / f"{name}.nii.gz",
                output,
                model=args.model,
                options=SegmentOptions(voxel_size_mm=voxel),
                inference=InferenceConfig(device="cpu"),
            )
            labels = np.asarray(nib.load(output).dataobj)
        results[name] = {
            "voxel_size_mm": [round(float(value), 4) for value in voxel],
            "cord_dice": float(dice(cord, labels > 0)),
            "gm_dice": float(dice(gm, labels == 1)),
        }
        print(
            f"{name}: voxel {results[name]['voxel_size_mm']} mm, cord Dice {results[name]['cord_dice']:.3f}, "
            f"GM Dice {results[name]['gm_dice']:.3f}"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
