"""Real scans with real GM labels: SCT's human test data given a mouse-scale voxel size.

The files of ``tests/data/real-headers`` (SCT's ``sct_testing_data``, MIT) are human cervical cord scans
with manual GM and cord masks: ``t2s`` (T2*-weighted, GM brighter than WM, 0.5 x 0.5 x 7.5 mm) and ``mt1``
(magnetisation transfer, 0.84 x 0.84 x 17 mm). A human cord is about 5x wider than a mouse's, so each is
given the in-plane voxel size that makes its cord (as its mask measures it) 2.5 mm wide, the middle of the
mouse range, and segmented slice by slice. Cord Dice (GM + WM against the cord mask) and GM Dice are printed
per file; they measure anatomy and contrast transfer to real tissue, not mouse accuracy.

``t1w`` and ``t2`` (1 mm isotropic, the whole neck: vertebrae, discs, muscle, fat, CSF; in vivo) have no
manual masks; ``semiauto/*_cord`` are cord masks drawn by thresholding each axial slice between cord and CSF
and checked by eye (about a voxel at the edge; see the data README). On them the cord alone is scored: Dice
and the share of slices where the cord is found (its slice Dice at least 0.5), the localisation test of a
scan whose cord sits inside a whole body. In the T1w scan the cord is bright in dark CSF and shows no GM/WM
contrast; in the T2 one it is dark in bright CSF. ``--single-slices`` also segments every slice given alone
as a 2D image (a lab's single-slice scan), ``--cord-width-mm`` sets the mouse scale (several values: each).

With ``--adapt``, each scan is also the few-shot fallback's test on real tissue: every third slice with cord
(t2s: 3 of 9, mt1: 2 of 5) gets its manual GM and WM (cord minus GM) masks in a one-subject BIDS dataset
(the image with its mouse-scale voxel size written into the header), ``mousecord train DATASET -o RUN
--init-model MODEL`` fine-tunes the model on them with its defaults, and both models are scored on the other
slices alone.

    python benchmarks/real_scans.py [--data tests/data/real-headers] [--model default] [--json out.json]
    python benchmarks/real_scans.py --single-slices --cord-width-mm 2 2.5 3
    python benchmarks/real_scans.py --adapt [--train-option=--epochs --train-option=10]
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
#: Whole-neck scans with a cord mask alone: name -> cord mask file.
CORD_SCANS = {"t1w": "semiauto/t1w_cord", "t2": "semiauto/t2_cord"}
MOUSE_CORD_WIDTH_MM = 2.5
#: A slice's cord counts as found where its slice Dice reaches this.
FOUND_DICE = 0.5


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


def scores(
    labels: np.ndarray, gm: np.ndarray | None, cord: np.ndarray, slices: np.ndarray
) -> dict[str, float]:
    """Cord Dice, the share of ``slices`` whose cord is found, and GM Dice (where ``gm`` is given) of
    ``labels`` on ``slices``."""
    from mousecord.analysis.metrics import dice

    found = [dice(cord[..., z], labels[..., z] > 0) >= FOUND_DICE for z in slices]
    result = {
        "cord_dice": float(dice(cord[..., slices], labels[..., slices] > 0)),
        "cord_found_share": float(np.mean(found)),
    }
    if gm is not None:
        result["gm_dice"] = float(dice(gm[..., slices], labels[..., slices] == 1))
    return result


def describe(result: dict[str, float]) -> str:
    """One line of ``scores``."""
    found = 100 * result["cord_found_share"]
    line = f"cord Dice {result['cord_dice']:.3f} (found on {found:.0f} % of slices)"
    return line + (f", GM Dice {result['gm_dice']:.3f}" if "gm_dice" in result else "")


def single_slice_labels(image: nib.Nifti1Image, slices: np.ndarray, folder: Path, run) -> np.ndarray:
    """Labels of ``image`` (axial slices along its last axis) where each of ``slices`` was segmented alone,
    as a 2D NIfTI, by ``run(input_folder, output_folder)``; zero elsewhere."""
    inputs, outputs = folder / "slices", folder / "slices_seg"
    inputs.mkdir()
    data = np.asanyarray(image.dataobj)
    for z in slices:
        affine = image.affine.copy()
        affine[:3, 3] = image.affine[:3, :3] @ [0, 0, z] + image.affine[:3, 3]
        nib.save(nib.Nifti1Image(data[..., z], affine), inputs / f"slice{z:03d}.nii.gz")
    run(inputs, outputs)
    labels = np.zeros(data.shape, dtype=np.uint8)
    for z in slices:
        labels[..., z] = np.asarray(nib.load(outputs / f"slice{z:03d}_seg.nii.gz").dataobj)
    return labels


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
    parser.add_argument(
        "--single-slices", action="store_true", help="also segment each slice alone as a 2D image"
    )
    parser.add_argument(
        "--cord-width-mm",
        type=float,
        nargs="+",
        default=[MOUSE_CORD_WIDTH_MM],
        help="cord width the mouse scale gives (default %(default)s); several: each in turn",
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    from mousecord.cli.main import main as mousecord
    from mousecord.inference import InferenceConfig
    from mousecord.pipelines import segment

    def run(inputs: Path, output: Path, model: str | None = args.model) -> None:
        segment(inputs, output, model=model, inference=InferenceConfig(device="cpu"))

    def segmented(image_path: Path, model: str | None, folder: Path) -> np.ndarray:
        """Labels of ``image_path`` segmented by ``model`` into ``folder`` (one folder per model)."""
        output = folder / f"{image_path.name.split('.')[0]}_seg.nii.gz"
        run(image_path, output, model)
        return np.asarray(nib.load(output).dataobj)

    def mask(name: str | None) -> np.ndarray | None:
        """The mask file ``name`` of the data folder, in the canonical orientation."""
        if name is None:
            return None
        return np.asarray(nib.as_closest_canonical(nib.load(args.data / f"{name}.nii.gz")).dataobj) > 0.5

    mask_names = dict(SCANS) | {name: (None, cord) for name, cord in CORD_SCANS.items()}
    # axial slices along the last axis, as the masks' slices are indexed
    scans = {
        name: (nib.as_closest_canonical(nib.load(args.data / f"{name}.nii.gz")), mask(gm), mask(cord))
        for name, (gm, cord) in mask_names.items()
    }
    results = {}
    for width_mm in args.cord_width_mm:
        for name, (image, gm, cord) in scans.items():
            zooms = np.asarray(image.header.get_zooms()[:3], dtype=float)
            scale = width_mm / cord_width_mm(cord, zooms)
            scaled = mouse_scale_image(image, scale)
            with tempfile.TemporaryDirectory() as temporary:
                folder = Path(temporary)
                with_cord = np.flatnonzero(cord.any(axis=(0, 1)))
                annotated = with_cord[1::3] if args.adapt and gm is not None else with_cord[:0]
                tested = np.setdiff1d(with_cord, annotated)
                image_path = write_adaptation_dataset(folder / "data", name, scaled, gm, cord, annotated)
                labels = segmented(image_path, args.model, folder / "before")
                result = {
                    "cord_width_mm": width_mm,
                    "voxel_size_mm": [round(float(value), 4) for value in zooms * scale],
                    **scores(labels, gm, cord, with_cord),
                }
                line = describe(result)
                if args.single_slices:
                    alone = single_slice_labels(scaled, with_cord, folder, run)
                    result["single_slices"] = scores(alone, gm, cord, with_cord)
                    line += f"; each slice alone: {describe(result['single_slices'])}"
                if annotated.size:
                    started = time.perf_counter()
                    train_run = folder / "run"
                    command = ["train", str(folder / "data"), "-o", str(train_run), "--init-model"]
                    code = mousecord([*command, args.model or "default", "--quiet", *args.train_option])
                    if code != 0:
                        return code
                    result["adapt_minutes"] = (time.perf_counter() - started) / 60
                    result["annotated_slices"] = annotated.tolist()
                    result["before"] = scores(labels, gm, cord, tested)
                    result["after"] = scores(
                        segmented(image_path, str(train_run / "model"), folder / "after"), gm, cord, tested
                    )
                    line += (
                        f"; on the {tested.size} slices not annotated, cord / GM Dice"
                        f" {result['before']['cord_dice']:.3f} / {result['before']['gm_dice']:.3f} before,"
                        f" {result['after']['cord_dice']:.3f} / {result['after']['gm_dice']:.3f} after"
                        f" {result['adapt_minutes']:.1f} min of fine-tuning on slices {annotated.tolist()}"
                    )
            results[f"{name}@{width_mm:g}mm"] = result
            print(f"{name}: voxel {result['voxel_size_mm']} mm, {line}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
