"""Which axis runs along the cord when a file's grid and header disagree: `--cord-axis auto` measured.

Ex vivo headers often name their axes after the magnet, so a chunk or a thick-slice volume may be stored
with its header calling another axis superior-inferior than the cord's. Where the grid hints at another axis
(slices 2x thicker than wide along it, a chunk 2x longer along it than across), ``mousecord segment`` runs
the network's stage 1 across both axes (:meth:`mousecord.Predictor.cord_coverage`: the share of slabs
whose cord joins one continuous chain) and :func:`mousecord.pipelines.segment.cord_axis_coverage_decides`
takes the hinted axis, confirms the header, or leaves the header with a warning.

Two kinds of case, each stored with a plain header (array axis k superior-inferior):
- **the header misnames the axis** (the hinted axis is right): phantom chunks 120 x 120 x 300 and thick
  slices (0.3 mm) with the cord along i, the held-out parametric phantom (``parametric_phantom.py``) in
  thick slices (0.25 mm) along i, and SCT's in vivo T1w and T2 scans (``real_scans.py``, at mouse scale) in
  thick axial slices along i;
- **the header is right** (the grid points elsewhere): phantom slabs wider than long, thick sagittal
  localisers (0.5 and 1 mm), and SCT's in vivo scans cut into thick sagittal and coronal slices.
Per case: the coverage across the header's and the hinted axis, the decision, and whether the axis taken is
the cord's; for the phantom chunks also GM Dice segmented across the axis taken and across the header's.

    python benchmarks/cord_axis.py [--model NAME_OR_FOLDER] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import parametric_phantom  # noqa: E402
import real_scans  # noqa: E402

#: Phantom seeds: below 1000, never a training seed; apart from accuracy.py's.
SEEDS = (50, 51, 52)
CONTRASTS = ("t1w", "random", "gm-dark")


def cases(data: Path):
    """(name, image, voxel size, the array axis along the cord, truth labels or None), header: k is S."""
    from mousecord.phantom import PhantomConfig, generate_phantom

    for seed, contrast in zip(SEEDS, CONTRASTS, strict=True):
        phantom = generate_phantom(
            PhantomConfig(shape_vox=(200, 200, 500), contrast=contrast), rng=np.random.default_rng(seed)
        )
        image, labels = phantom.image.data, phantom.label_map.data

        def along_i(array):
            return np.transpose(array, (2, 0, 1))

        chunk = (slice(40, 160), slice(40, 160), slice(100, 400))
        yield f"{contrast} chunk, cord along i", along_i(image[chunk]), (0.05,) * 3, 0, along_i(labels[chunk])
        thick = (slice(None), slice(None), slice(None, None, 6))
        yield f"{contrast} 0.3 mm slices, cord along i", along_i(image[thick]), (0.3, 0.05, 0.05), 0, None
        wide = np.pad(image[:, 60:140, 200:230], ((50, 50), (0, 0), (0, 0)), mode="reflect")
        yield f"{contrast} slab 15 x 4 x 1.5 mm", wide, (0.05,) * 3, 2, None
        for step in (10, 20):
            sagittal = image[::step, :, 150:350]
            yield (
                f"{contrast} {0.05 * step:.1f} mm sagittal slices",
                sagittal,
                (0.05 * step, 0.05, 0.05),
                2,
                None,
            )
    for seed, contrast in enumerate(parametric_phantom.CONTRASTS):
        image, _ = parametric_phantom.make_volume(seed, contrast)
        thick = np.transpose(image[:, :, ::5], (2, 0, 1))
        yield f"parametric {contrast} 0.25 mm slices, cord along i", thick, (0.25, 0.05, 0.05), 0, None
    for name, cord_name in real_scans.CORD_SCANS.items():
        scan = nib.as_closest_canonical(nib.load(data / f"{name}.nii.gz"))
        cord = np.asarray(nib.as_closest_canonical(nib.load(data / f"{cord_name}.nii.gz")).dataobj) > 0.5
        zooms = np.asarray(scan.header.get_zooms()[:3], dtype=float)
        voxel = zooms * real_scans.MOUSE_CORD_WIDTH_MM / real_scans.cord_width_mm(cord, zooms)
        image = np.asarray(scan.dataobj, dtype=np.float32)
        axial = np.transpose(image[:, :, ::4], (2, 0, 1))
        yield f"SCT {name} 4x thick axial, cord along i", axial, (4 * voxel[2], voxel[0], voxel[1]), 0, None
        for step in (3, 5):
            yield f"SCT {name} {step}x thick sagittal", image[::step], voxel * [step, 1, 1], 2, None
            yield f"SCT {name} {step}x thick coronal", image[:, ::step], voxel * [1, step, 1], 2, None


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data", type=Path, default=Path(__file__).resolve().parents[1] / "tests/data/real-headers"
    )
    parser.add_argument("--model", default="default", help="model name or folder (default: %(default)s)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    from mousecord.analysis.metrics import dice
    from mousecord.inference import InferenceConfig, Predictor
    from mousecord.io.orientation import cord_axis_from_grid
    from mousecord.io.volume import Volume
    from mousecord.labels import Label
    from mousecord.pipelines.segment import cord_axis_coverage_decides

    predictor = Predictor(args.model, InferenceConfig(device="cpu"))
    rows = []
    header = ("case", "cord", "hint", "header", "hinted", "decides", "taken")
    print("{:50s} {:>4s} {:>4s} {:>6s} {:>6s} {:>7s} {:>5s}  s".format(*header))
    for name, image, voxel, cord_axis, truth in cases(args.data):
        hint = cord_axis_from_grid(image.shape, voxel)
        if hint is None or hint[0] == 2:
            raise SystemExit(f"{name}: the grid gives no hint away from k ({hint}); the case tests nothing")
        volume = Volume(np.ascontiguousarray(image, dtype=np.float32), np.diag([*voxel, 1.0]))
        started = time.perf_counter()
        along_header, along_hint = (
            predictor.cord_coverage(volume, 2),
            predictor.cord_coverage(volume, hint[0]),
        )
        seconds = time.perf_counter() - started
        decided = cord_axis_coverage_decides(along_header, along_hint)
        taken = hint[0] if decided == "hint" else 2
        row = {
            "case": name,
            "cord_axis": cord_axis,
            "hinted_axis": hint[0],
            "coverage_header": along_header,
            "coverage_hinted": along_hint,
            "decides": decided,
            "axis_taken": taken,
            "right": taken == cord_axis,
            "seconds": seconds,
        }
        if truth is not None:
            for label, axis in (("taken", taken), ("header", 2)):
                labels = predictor.predict_volume(volume, cord_axis=axis).label_map
                row[f"gm_dice_{label}"] = dice(truth == Label.GM, labels == Label.GM)
        rows.append(row)
        line = (
            f"{name:50s} {cord_axis:4d} {hint[0]:4d} {along_header:6.2f} {along_hint:6.2f}"
            f" {decided or '-':>7s} {taken:5d}{'' if row['right'] else '!'} {seconds:4.1f}"
        )
        if truth is not None:
            line += f"  GM Dice {row['gm_dice_taken']:.3f} (header's axis {row['gm_dice_header']:.3f})"
        print(line, flush=True)
    wrong = [row["case"] for row in rows if not row["right"]]
    misnamed = [row for row in rows if row["cord_axis"] != 2]
    print(
        f"\n{len(rows) - len(wrong)} of {len(rows)} cases segmented across the cord's axis; of the"
        f" {len(misnamed)} whose header misnames it, {sum(row['right'] for row in misnamed)} found;"
        f" header overruled wrongly: {sum(row['axis_taken'] != 2 and not row['right'] for row in rows)}"
    )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
