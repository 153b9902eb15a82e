"""Few-shot adaptation: annotate 3 slices in each of 3 volumes of an unseen domain, fine-tune, test on 4 more.

The domain is a phantom setting the default model never saw in training (it was trained on synthetic slabs
only): phantoms (``mousecord.phantom``) with air bubbles, damaged chunk ends and low SNR (6-15), of random
contrasts by default (every volume its own tissue intensities, so the annotated volumes do not show the test
volumes' contrast) or of one protocol (``--contrast gm-dark`` or ``t1w``: one contrast, as a lab's scans
share). Three volumes (seeds 900-902) get sparse manual-style masks on 3 evenly spaced axial slices each, in
the layout a lab would have (BIDS images, ``derivatives/manual_masks/*_label-GM_mask.nii.gz`` and
``_label-WM_mask.nii.gz``); ``mousecord train DATASET -o RUN --init-model default`` (its defaults) fine-tunes
the model; four other volumes (seeds 910-913) are segmented before and after, densely scored against their
truth. Wall time of the fine-tune is reported beside the 15-minute target.

    python benchmarks/adapt.py [--shape 200 200 96] [--contrast random] [--json adapt.json]
    python benchmarks/adapt.py --train-option=--epochs --train-option=10   # options for mousecord train
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from mousecord.options import PHANTOM_CONTRASTS

TRAIN_SEEDS = (900, 901, 902)
TEST_SEEDS = (910, 911, 912, 913)
ANNOTATED_SLICES = 3
TARGETS = {"GM": 0.90, "WM": 0.90, "minutes": 15.0}


def domain(shape, contrast: str) -> object:
    from mousecord.phantom import PhantomConfig

    return PhantomConfig(
        shape_vox=tuple(shape), contrast=contrast, air_bubbles=True, damaged_ends=True, snr_range=(6.0, 15.0)
    )


def write_dataset(root: Path, shape, contrast: str) -> None:
    """Three subjects, one chunk each, with GM/WM masks on three slices (what an annotator would draw)."""
    from mousecord.labels import Label
    from mousecord.phantom import generate_phantom

    for number, seed in enumerate(TRAIN_SEEDS, start=1):
        phantom = generate_phantom(domain(shape, contrast), rng=np.random.default_rng(seed))
        stem = f"sub-{number:02d}_chunk-1_T1w"
        anat = root / f"sub-{number:02d}" / "anat"
        masks = root / "derivatives" / "manual_masks" / f"sub-{number:02d}" / "anat"
        anat.mkdir(parents=True)
        masks.mkdir(parents=True)
        affine = phantom.image.affine
        nib.save(nib.Nifti1Image(phantom.image.data, affine), anat / f"{stem}.nii.gz")
        truth = phantom.label_map.data
        with_cord = np.flatnonzero(truth.any(axis=(0, 1)))
        chosen = with_cord[(np.linspace(0.2, 0.8, ANNOTATED_SLICES) * (len(with_cord) - 1)).astype(int)]
        for label, name in ((Label.GM, "GM"), (Label.WM, "WM")):
            sparse = np.zeros(truth.shape, dtype=np.uint8)
            sparse[..., chosen] = truth[..., chosen] == label
            nib.save(nib.Nifti1Image(sparse, affine), masks / f"{stem}_label-{name}_mask.nii.gz")


def score(model, shape, contrast: str) -> dict[str, float]:
    """Mean GM/WM Dice of ``model`` over the test volumes (whole volumes, slices with cord)."""
    from mousecord.analysis.metrics import compare_label_maps
    from mousecord.inference import InferenceConfig, Predictor
    from mousecord.phantom import generate_phantom

    predictor = Predictor(model, InferenceConfig(device="cpu"))
    rows = []
    for seed in TEST_SEEDS:
        phantom = generate_phantom(domain(shape, contrast), rng=np.random.default_rng(seed))
        prediction = predictor.predict_volume(phantom.image).label_map
        metrics = compare_label_maps(
            phantom.label_map.data, prediction, voxel_size_mm=phantom.image.voxel_size_mm, name=str(seed)
        )
        rows.append({name: float(metrics[name].dice) for name in ("GM", "WM", "cord")})
    return {name: float(np.nanmean([row[name] for row in rows])) for name in ("GM", "WM", "cord")}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="default", help="model to adapt (name or folder)")
    parser.add_argument("--shape", type=int, nargs=3, default=(200, 200, 96), metavar=("X", "Y", "Z"))
    parser.add_argument(
        "--contrast", choices=PHANTOM_CONTRASTS, default="random", help="the domain's phantom contrast"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--train-option",
        action="append",
        default=[],
        help="an option for mousecord train, one word each (--train-option=--epochs --train-option=10)",
    )
    args = parser.parse_args()

    import torch

    from mousecord.cli.main import main as mousecord
    from mousecord.models.bundle import load_bundle
    from mousecord.models.registry import resolve_model

    torch.set_num_threads(args.threads)
    before = score(resolve_model(args.model), args.shape, args.contrast)
    print(f"before: {before}", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        write_dataset(Path(folder) / "data", args.shape, args.contrast)
        started = time.perf_counter()
        code = mousecord(
            [
                "train",
                str(Path(folder) / "data"),
                "-o",
                str(Path(folder) / "run"),
                "--init-model",
                args.model,
                "--quiet",
                *args.train_option,
            ]
        )
        minutes = (time.perf_counter() - started) / 60
        if code != 0:
            return code
        tuned = load_bundle(Path(folder) / "run" / "model")
        after = score(tuned, args.shape, args.contrast)
        history = json.loads((Path(folder) / "run" / "history.json").read_text())
    validation = {  # what chose the model: held-out annotated slices, before and after each epoch
        "start": tuned.metadata["starting_validation"],
        "epochs": {key: history[f"dice_{key}"] for key in ("GM", "WM", "mean")},
        "chosen_epoch": tuned.metadata["best_epoch"],
    }
    start, means, chosen = (
        validation["start"]["mean"],
        validation["epochs"]["mean"],
        validation["chosen_epoch"],
    )
    print(
        f"validation mean Dice: start {start:.4f}, epochs {' '.join(f'{value:.4f}' for value in means)}; "
        f"chosen: {'the start' if chosen < 0 else f'epoch {chosen}'}"
    )
    print(f"after {minutes:.1f} min of fine-tuning ({' '.join(args.train_option) or 'defaults'}): {after}")
    print(f"{'':>8} {'GM Dice':>8} {'WM Dice':>8} {'cord Dice':>9}")
    for name, row in (("before", before), ("after", after)):
        print(f"{name:>8} {row['GM']:8.3f} {row['WM']:8.3f} {row['cord']:9.3f}")
    for key in ("GM", "WM"):
        verdict = "met" if after[key] >= TARGETS[key] else "NOT met"
        print(f"target {key} Dice >= {TARGETS[key]}: {after[key]:.3f} ({verdict})")
    verdict = "met" if minutes <= TARGETS["minutes"] else "NOT met"
    print(f"target wall time <= {TARGETS['minutes']} min: {minutes:.1f} min ({verdict})")
    if args.json:
        record = {
            "before": before,
            "after": after,
            "minutes": minutes,
            "validation": validation,
            "targets": TARGETS,
            "shape": args.shape,
            "contrast": args.contrast,
            "train_options": args.train_option,
        }
        args.json.write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
