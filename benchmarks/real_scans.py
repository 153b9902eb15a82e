"""Real scans with real GM labels: SCT's human test data given a mouse-scale voxel size.

The files of ``tests/data/real-headers`` (SCT's ``sct_testing_data``, MIT) are human cervical cord scans
with manual GM and cord masks: ``t2s`` (T2*-weighted, GM brighter than WM, 0.5 x 0.5 x 7.5 mm) and ``mt1``
(magnetisation transfer, 0.84 x 0.84 x 17 mm). A human cord is about 5x wider than a mouse's, so each is
given the in-plane voxel size that makes its cord (as its mask measures it) 2.5 mm wide, the middle of the
mouse range, and segmented slice by slice. Cord Dice (GM + WM against the cord mask) and GM Dice are printed
per file; they measure anatomy and contrast transfer to real tissue, not mouse accuracy.

With ``--adapt``, each scan is also the few-shot fallback's test on real tissue: every third slice with cord
(t2s: 3 of 9, mt1: 2 of 5) gets its manual GM and WM (cord minus GM) masks in a one-subject BIDS dataset
(the image with its mouse-scale voxel size written into the header), ``mousecord train DATASET -o RUN
--init-model MODEL`` fine-tunes the model on them with its defaults, and both models are scored on the other
slices alone.

    python benchmarks/real_scans.py [--data tests/data/real-headers] [--model default] [--json out.json]
    python benchmarks/real_scans.py --adapt [--train-option=--epochs --train-option=20]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
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


def mouse_scale_image(image: nib.Nifti1Image, scale: float) -> nib.Nifti1Image:
    """``image`` with its voxels ``scale`` x as large (the affine scaled about the origin)."""
    affine = image.affine.copy()
    affine[:3, :3] *= scale
    scaled = nib.Nifti1Image(np.asanyarray(image.dataobj), affine, image.header)
    scaled.set_qform(affine)
    scaled.set_sform(affine)
    return scaled


def write_adaptation_dataset(
    root: Path, name: str, image: nib.Nifti1Image, gm: np.ndarray, cord: np.ndarray, slices: np.ndarray
) -> Path:
    """A one-subject BIDS dataset: ``image`` and GM/WM masks on ``slices`` alone (none: no masks); returns
    the image path."""
    stem = f"sub-{name}_chunk-1_T1w"
    anat = root / f"sub-{name}" / "anat"
    masks = root / "derivatives" / "manual_masks" / f"sub-{name}" / "anat"
    anat.mkdir(parents=True)
    masks.mkdir(parents=True)
    nib.save(image, anat / f"{stem}.nii.gz")
    for label, mask in (("GM", gm), ("WM", cord & ~gm)) if slices.size else ():
        sparse = np.zeros(mask.shape, dtype=np.uint8)
        sparse[..., slices] = mask[..., slices]
        nib.save(nib.Nifti1Image(sparse, image.affine), masks / f"{stem}_label-{label}_mask.nii.gz")
    return anat / f"{stem}.nii.gz"


def scores(labels: np.ndarray, gm: np.ndarray, cord: np.ndarray, slices: np.ndarray) -> dict[str, float]:
    """Cord and GM Dice of ``labels`` on ``slices``."""
    from mousecord.analysis.metrics import dice

    return {
        "cord_dice": float(dice(cord[..., slices], labels[..., slices] > 0)),
        "gm_dice": float(dice(gm[..., slices], labels[..., slices] == 1)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data", type=Path, default=Path(__file__).resolve().parents[1] / "tests/data/real-headers"
    )
    parser.add_argument("--model", default=None, help="model name or folder (default: the shipped default)")
    parser.add_argument("--adapt", action="store_true", help="also fine-tune on every third slice per scan")
    parser.add_argument(
        "--train-option",
        action="append",
        default=[],
        help="with --adapt: an option for mousecord train, one word each (--train-option=--epochs ...)",
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    from mousecord.cli.main import main as mousecord
    from mousecord.inference import InferenceConfig
    from mousecord.pipelines import segment

    def segmented(image_path: Path, model: str | None, folder: Path) -> np.ndarray:
        """Labels of ``image_path`` segmented by ``model`` into ``folder`` (one folder per model)."""
        output = folder / f"{image_path.name.split('.')[0]}_seg.nii.gz"
        segment(image_path, output, model=model, inference=InferenceConfig(device="cpu"))
        return np.asarray(nib.load(output).dataobj)

    results = {}
    for name, (gm_name, cord_name) in SCANS.items():
        image = nib.load(args.data / f"{name}.nii.gz")
        gm = np.asarray(nib.load(args.data / f"{gm_name}.nii.gz").dataobj) > 0.5
        cord = np.asarray(nib.load(args.data / f"{cord_name}.nii.gz").dataobj) > 0.5
        zooms = np.asarray(image.header.get_zooms()[:3], dtype=float)
        scale = MOUSE_CORD_WIDTH_MM / cord_width_mm(cord, zooms)
        with tempfile.TemporaryDirectory() as temporary:
            folder = Path(temporary)
            with_cord = np.flatnonzero(cord.any(axis=(0, 1)))
            annotated = with_cord[1::3] if args.adapt else with_cord[:0]
            tested = np.setdiff1d(with_cord, annotated)
            image_path = write_adaptation_dataset(
                folder / "data", name, mouse_scale_image(image, scale), gm, cord, annotated
            )
            labels = segmented(image_path, args.model, folder / "before")
            result = {
                "voxel_size_mm": [round(float(value), 4) for value in zooms * scale],
                **scores(labels, gm, cord, with_cord),
            }
            line = f"cord Dice {result['cord_dice']:.3f}, GM Dice {result['gm_dice']:.3f}"
            if args.adapt:
                started = time.perf_counter()
                run = folder / "run"
                command = ["train", str(folder / "data"), "-o", str(run), "--init-model"]
                code = mousecord([*command, args.model or "default", "--quiet", *args.train_option])
                if code != 0:
                    return code
                result["adapt_minutes"] = (time.perf_counter() - started) / 60
                result["annotated_slices"] = annotated.tolist()
                result["before"] = scores(labels, gm, cord, tested)
                result["after"] = scores(
                    segmented(image_path, str(run / "model"), folder / "after"), gm, cord, tested
                )
                line += (
                    f"; on the {tested.size} slices not annotated, cord / GM Dice"
                    f" {result['before']['cord_dice']:.3f} / {result['before']['gm_dice']:.3f} before,"
                    f" {result['after']['cord_dice']:.3f} / {result['after']['gm_dice']:.3f} after"
                    f" {result['adapt_minutes']:.1f} min of fine-tuning on slices {annotated.tolist()}"
                )
        results[name] = result
        print(f"{name}: voxel {result['voxel_size_mm']} mm, {line}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
