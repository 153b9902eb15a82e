"""Which axis runs along the cord when a file's header may misname it: ``--cord-axis auto`` measured.

Ex vivo headers often name their axes after the magnet, so a chunk or a thick-slice volume may be stored
with its header calling another axis superior-inferior than the cord's. ``mousecord segment`` then lets the
image decide (:mod:`mousecord.pipelines.cord_axis`): where the grid hints at another axis (slices 2x thicker
than wide along it, a chunk 2x longer along it than across) before segmenting, and where the cord found
across the header's axis runs through less than 90 % of the stage-1 slabs after.

Each case is written with a plain header (array axis k superior-inferior) and segmented by the pipeline
(``mousecord.segment``, defaults); the sidecar says which axis it took. Two kinds of case:
- **the header misnames the axis**: phantom chunks with the cord along i (120 x 120 x 300, and 120 x 200 x
  200, as long as wide: no grid hint), thick slices (0.3 mm) along i, the held-out parametric phantom
  (``parametric_phantom.py``) in thick slices (0.25 mm) along i, and SCT's in vivo T1w and T2 scans
  (``real_scans.py``, at mouse scale) in thick axial slices along i;
- **the header is right**: phantom slabs wider than long, thick sagittal localisers (0.5 and 1 mm; 4 and 6
  slices of 0.5 mm), and SCT's in vivo scans cut into thick sagittal and coronal slices.
Per case: stage 1's coverage across each axis (the share of slabs whose cord joins one continuous chain, as
the rule reads it), the axis segment took, whether it is the cord's, and GM Dice where the truth is at hand.
Where fewer than 10 slabs lie along the header's axis or the other one weighed (the cord's, or where the
header is right the hinted one: the parametric phantom is 2 mm long, a localiser may have 4 slices), the
rule defers to the header by design (a warning names the axis to give): such cases are counted apart.

    python benchmarks/cord_axis.py [--model NAME_OR_FOLDER] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
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
        short = (slice(None), slice(None), slice(190, 310))
        yield (
            f"{contrast} chunk as long as wide, cord along i",
            along_i(image[short]),
            (0.05,) * 3,
            0,
            along_i(labels[short]),
        )
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
        for count in (4, 6):
            localiser = image[100 - 5 * count : 100 + 5 * count : 10, :, 150:350]
            yield f"{contrast} {count} sagittal slices of 0.5 mm", localiser, (0.5, 0.05, 0.05), 2, None
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
    from mousecord.labels import Label
    from mousecord.pipelines import SegmentOptions, load_case, plan_outputs, segment_loaded_case
    from mousecord.pipelines.cord_axis import MIN_COVERAGE_SLABS

    predictor = Predictor(args.model, InferenceConfig(device="cpu", progress=False))
    options = SegmentOptions()
    rows = []
    print("{:52s} {:>4s} {:>18s} {:>5s} {:>5s}".format("case", "cord", "coverage i / j / k", "taken", "s"))
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        for number, (name, image, voxel, cord_axis, truth) in enumerate(cases(args.data)):
            path = folder / f"case{number}.nii.gz"
            nib.save(
                nib.Nifti1Image(np.ascontiguousarray(image, dtype=np.float32), np.diag([*voxel, 1.0])), path
            )
            (case,) = plan_outputs([path])
            started = time.perf_counter()
            segment_loaded_case(load_case(case, options), predictor, options)
            seconds = time.perf_counter() - started
            sidecar = json.loads(case.sidecar.read_text())
            volume = load_case(case, options).image.volume
            coverage = [predictor.cord_coverage(volume, axis) for axis in range(3)]
            taken = sidecar["cord_axis"]
            # the rule weighs the header's axis against the cord's, or (header right) the hinted one
            hint = cord_axis_from_grid(image.shape, voxel)
            weighed = cord_axis if cord_axis != 2 else (hint[0] if hint is not None else 2)
            decidable = min(coverage[2].slabs, coverage[weighed].slabs) >= MIN_COVERAGE_SLABS
            row = {
                "case": name,
                "cord_axis": cord_axis,
                "coverage": [[entry.with_cord, entry.slabs] for entry in coverage],
                "axis_taken": taken,
                "right": taken == cord_axis,
                "decidable": decidable,
                "segment_seconds": seconds,
                "warnings": sidecar["warnings"],
            }
            line = (
                f"{name:52s} {cord_axis:4d} {' / '.join(f'{entry.share:.2f}' for entry in coverage):>18s}"
                f" {taken:5d}{' ' if row['right'] else '!' if decidable else '~'} {seconds:4.1f}"
            )
            if truth is not None:
                labels = np.asarray(nib.load(case.multilabel).dataobj)
                row["gm_dice"] = dice(truth == Label.GM, labels == Label.GM)
                line += f"  GM Dice {row['gm_dice']:.3f}"
            rows.append(row)
            print(line, flush=True)
    misnamed = [row for row in rows if row["cord_axis"] != 2 and row["decidable"]]
    overruled = [row for row in rows if row["cord_axis"] == 2 and row["decidable"] and not row["right"]]
    short = [row for row in rows if not row["decidable"]]
    right_headers = sum(row["cord_axis"] == 2 and row["decidable"] for row in rows)
    print(
        f"\nheaders that misname the axis: {sum(row['right'] for row in misnamed)} of {len(misnamed)} found;"
        f" headers that are right: {len(overruled)} of {right_headers} overruled;"
        f" {len(short)} cases with fewer than {MIN_COVERAGE_SLABS} slabs along an axis ('~'): header followed"
        f" in {sum(row['axis_taken'] == 2 for row in short)}"
    )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
