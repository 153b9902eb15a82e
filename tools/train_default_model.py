"""Reproduce mousecord's default model: phantoms in, a bundle in ``src/mousecord/models/default`` out.

Steps (every seed fixed; the shipped weights came from one run on an NVIDIA H200, about 3.5 minutes of
training with 14 batch workers on 16 cores; the same command runs on a CPU, many hours on a laptop, and CUDA
kernels are not bit-reproducible, so a rerun gives a close, not identical, model):

1. Three phantom datasets (``mousecord.phantom.phantom_dataset``, one process per core): the realistic T1w
   preset; T1w with air bubbles, damaged chunk ends and SNR down to 6; randomised tissue contrasts with air
   bubbles and damaged chunk ends; all 200 x 200 x 240 voxels at 0.05 mm.
2. One BIDS dataset linking the three, with dense labels for the training subjects and the sparse manual-style
   masks (a few slices of one chunk) for the validation subjects, so validation each epoch stays cheap.
3. ``mousecord.training.train_model`` with the recipe below, then export of the best checkpoint as a bundle.

Phantom dataset seeds used here (1001, 2001, 3001) must never be used for evaluation:
``benchmarks/accuracy.py`` draws its volumes from seeds below 1000.

Usage::

    python tools/train_default_model.py --work /tmp/mousecord-default [--epochs 12] [--install]
    # after the benchmarks wrote their JSON, put their numbers into the installed bundle's model card:
    python tools/train_default_model.py --update-card \
        --metrics accuracy_t1w.json accuracy_random.json speed.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import re
import shutil
from pathlib import Path

from mousecord.io.atomic import atomic_output
from mousecord.models.bundle import MODEL_CARD, load_bundle, save_bundle
from mousecord.phantom import PhantomConfig, phantom_dataset
from mousecord.training.config import AugmentationConfig, TrainConfig
from mousecord.training.crossval import TrainSummary, export_bundle
from mousecord.training.data import load_training_dataset
from mousecord.training.loop import train_model

REPOSITORY = Path(__file__).resolve().parents[1]
DEFAULT_BUNDLE = REPOSITORY / "src" / "mousecord" / "models" / "default"

PHANTOM_SETS = (
    # (folder, dataset seed, subjects, chunks, subject number offset, config)
    ("t1w", 1001, 10, 2, 0, PhantomConfig(shape_vox=(200, 200, 240), contrast="t1w")),
    (
        "t1w_artefacts",
        3001,
        4,
        2,
        20,
        PhantomConfig(
            shape_vox=(200, 200, 240),
            contrast="t1w",
            snr_range=(6.0, 40.0),
            air_bubbles=True,
            damaged_ends=True,
        ),
    ),
    (
        "random",
        2001,
        10,
        2,
        40,
        PhantomConfig(shape_vox=(200, 200, 240), contrast="random", air_bubbles=True, damaged_ends=True),
    ),
)
VALIDATION_SUBJECTS = ("sub-10", "sub-24", "sub-50")  # the last subject of each set
LABEL_FOLDER = "training_labels"

#: ``metadata["inference"]`` of the shipped bundle: the fast cord ROI path (mousecord.inference.cord_roi),
#: then the largest cord component only.
INFERENCE = {
    "roi": "cord",
    "margin_mm": 1.0,
    "slab_spacing_mm": 5.0,
    "slab_depth_vox": 16,
    "tile_step_fraction": 0.9,
    "keep_largest_component": True,
}

#: Widths of 16 cost no more CPU time than 12 (vector-friendly) and the fifth stage, nearly free at 1/16
#: resolution, widens the receptive field that stage 1 of the ROI path needs to find the cord.
RECIPE = TrainConfig(
    features_per_stage=(16, 32, 64, 128, 192),
    strides=((1, 1, 1), (2, 2, 2), (2, 2, 2), (2, 2, 2), (2, 2, 2)),
    patch_size_vox=(48, 96, 96),
    batch_size=4,
    epochs=12,
    iterations_per_epoch=250,
    optimizer="adamw",
    learning_rate=2e-3,
    seed=0,
    device="auto",
    data_workers=14,  # a batch stream per worker: the run is reproducible for this count
    augmentation=AugmentationConfig(inversion_probability=0.1, random_label_intensity_probability=0.15),
)


def make_phantoms(work: Path) -> Path:
    """Write the phantom sets (each skipped when present) and link them into one BIDS dataset."""
    merged = work / "train_mix"
    for name, seed, subjects, chunks, _, config in PHANTOM_SETS:
        if not (work / name).exists():
            phantom_dataset(
                work / name,
                n_subjects=subjects,
                chunks_per_subject=chunks,
                config=config,
                seed=seed,
                workers=os.cpu_count() or 1,
            )
    shutil.rmtree(merged, ignore_errors=True)
    for name, _, _, _, offset, _ in PHANTOM_SETS:
        source = work / name
        for path in sorted(source.rglob("*.nii.gz")):
            relative = path.relative_to(source).as_posix()
            number = int(re.search(r"sub-(\d+)", relative).group(1)) + offset
            subject = f"sub-{number:02d}"
            relative = re.sub(r"sub-\d+", subject, relative)
            if relative.startswith("derivatives/"):
                folder = relative.split("/")[1]
                wanted = "manual_masks" if subject in VALIDATION_SUBJECTS else "labels"
                if folder != wanted or (subject in VALIDATION_SUBJECTS and "chunk-1" not in relative):
                    continue  # validation: the sparse slices of one chunk per subject keep epochs cheap
                relative = relative.replace(f"derivatives/{folder}/", f"derivatives/{LABEL_FOLDER}/", 1)
            target = merged / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(path.resolve(), target)
    return merged


def default_model_card(training_card: str, metrics: list[dict], *, epochs: int) -> str:
    """The shipped model's card: what it is, its data, how to reproduce it, measured numbers, limits."""
    sets = "; ".join(
        f"{name}: dataset seed {seed}, {subjects} subjects x {chunks} chunks, {config.to_dict()}"
        for name, seed, subjects, chunks, _, config in PHANTOM_SETS
    )
    lines = [
        "# mousecord default model",
        "",
        "A small 3D U-Net (nnU-Net's PlainConvUNet, features "
        + "-".join(str(n) for n in RECIPE.features_per_stage)
        + ", training patch (z, y, x) "
        + " x ".join(str(n) for n in RECIPE.patch_size_vox)
        + ")",
        "that segments grey matter (1) and white matter (2) in ex vivo T1w MRI of the mouse spinal cord at",
        "0.05 mm.",
        "It runs on a CPU with the cord ROI path (find the cord on sparse axial slabs, segment a tube around",
        f"it, keep the largest cord component): `metadata.inference` = `{json.dumps(INFERENCE)}`.",
        "",
        "## Training data",
        "- Synthetic only: mousecord phantoms (`mousecord.phantom`), no real scan. " + sets + ".",
        f"- Validation subjects {list(VALIDATION_SUBJECTS)}: sparse manual-style slices of one chunk each.",
        "- Phantom dataset seeds "
        + ", ".join(str(seed) for _, seed, *_ in PHANTOM_SETS)
        + " are training data; evaluations use seeds below 1000.",
        "",
        "## Reproduce",
        "The shipped weights come from one run of the first command on an NVIDIA H200 (14 batch workers,",
        "about 3.5 minutes of training). CUDA kernels are not bit-reproducible, so a rerun gives a close,",
        "not identical, model; the same command runs on a CPU, in hours.",
        "",
        "```bash",
        f"python tools/train_default_model.py --work WORK --epochs {epochs} --install",
        "python benchmarks/accuracy.py --contrast t1w --shape 200 200 200 --json accuracy_t1w.json",
        "python benchmarks/accuracy.py --contrast random --shape 200 200 200 --json accuracy_random.json",
        "python benchmarks/segment.py --default-model --json speed.json",
        "python tools/train_default_model.py --update-card --metrics accuracy_t1w.json accuracy_random.json "
        "speed.json",
        "```",
        "",
        "## Metrics",
    ]
    if not metrics:
        lines += ["Not measured yet: run the benchmark commands above, then `--update-card`."]
    for record in metrics:
        lines += ["", *_metric_lines(record)]
    lines += [
        "",
        "## Limits",
        "- Trained on synthetic phantoms only. Real scans differ (coil profiles, fixation, artefacts, other",
        "  contrasts): check every result visually (`mousecord segment ... -qc qc/`).",
        "- Fine-tune on real annotations, even a few slices per chunk: `mousecord train DATASET -o runs/own",
        "  --label-folder manual_masks --init-model default --learning-rate 3e-4`, then",
        "  `mousecord segment --model runs/own/model`; mix in phantoms to keep their variety.",
        "- The official nnU-Net weights of SCT's `seg_mouse_gm_wm_t1w` run unchanged with",
        "  `mousecord segment -i IMAGE --model PATH_TO_NNUNET_FOLDER` (dense; bit-identical to nnU-Net with",
        "  `--backend torch`).",
        "- The cord ROI path assumes one cord per image along the last (S) axis of the RAS-reoriented image.",
        "- Its first stage picks, among the cord-like components of thin axial slabs, the longest and",
        "  largest chain. Where the network finds cord-sized false positives (contrasts far from T1w), it",
        "  can pick the wrong chain and return an empty or misplaced cord; `--roi full` (dense, about 7x",
        "  slower) then often finds the cord: random-contrast phantom seed 5 gives GM Dice 0 with the ROI",
        "  path and 0.69 dense.",
        "",
        "## Training run",
        "",
        training_card.replace("\n# ", "\n### ").replace("\n## ", "\n### "),
    ]
    return "\n".join(lines) + "\n"


def _metric_lines(record: dict) -> list[str]:
    """Lines for one benchmark JSON (benchmarks/accuracy.py or benchmarks/segment.py --default-model)."""
    if "summary" in record:  # accuracy.py
        lines = [
            f"Accuracy, contrast {record['contrast']}, {record['volumes']} phantoms {record['shape_xyz']} "
            f"(seeds {record['seeds'][0]}-{record['seeds'][-1]}), roi {record['roi']}, "
            f"{record.get('backend', 'torch')} backend: mean (std)",
            "",
            "| class | Dice | HD95 (mm) | volume error (%) | target Dice |",
            "|---|---|---|---|---|",
        ]
        for name, values in record["summary"].items():
            cells = [
                f"{values[key]['mean']:.3f} ({values[key]['std']:.3f})"
                for key in ("dice", "hd95_mm", "volume_difference_percent")
            ]
            target = record.get("targets", {}).get(name)
            lines.append(f"| {name} | {' | '.join(cells)} | {'>= ' + str(target) if target else ''} |")
        return lines
    results = record["results"]
    return [
        f"Speed and memory, phantom {record['shape_xyz']}, {record['threads']} threads, CPU: nnU-Net's "
        f"predictor "
        f"(reference-size network, patch {record['nnunet_patch_zyx']}) {results['nnunet']['wall_s']:.0f} s; "
        f"this model ({results['cord'].get('backend', 'torch')} backend), cord ROI "
        f"{results['cord']['wall_s']:.1f} s ({record['speed_ratio']:.1f}x faster, peak "
        f"{record['peak_gb_cord']:.2f} GB), dense {results['full']['wall_s']:.1f} s. GM Dice cord ROI "
        f"{results['cord']['dice_GM']:.4f} vs dense {results['full']['dice_GM']:.4f}.",
    ]


def update_card(
    metric_files: list[Path], *, folder: Path = DEFAULT_BUNDLE, epochs: int = RECIPE.epochs
) -> None:
    """Rewrite ``folder``'s model card with the benchmark JSON files' numbers (weights untouched)."""
    bundle = load_bundle(folder)
    training = bundle.metadata.get("training_card", "")
    metrics = [json.loads(Path(path).read_text()) for path in metric_files]
    card = default_model_card(training, metrics, epochs=epochs)
    with atomic_output(folder / MODEL_CARD) as temporary:  # weights and model.json stay byte-identical
        temporary.write_text(card)
    print(f"model card of {folder} rewritten with {len(metrics)} benchmark record(s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, help="scratch folder (phantoms, checkpoints)")
    parser.add_argument("--epochs", type=int, default=RECIPE.epochs)
    parser.add_argument("--install", action="store_true", help=f"copy the bundle to {DEFAULT_BUNDLE}")
    parser.add_argument("--update-card", action="store_true", help="only rewrite the installed bundle's card")
    parser.add_argument(
        "--metrics", type=Path, nargs="*", default=[], help="benchmark JSON files for the card"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.update_card:
        update_card(args.metrics, epochs=args.epochs)
        return
    if args.work is None:
        parser.error("--work is required to train")
    config = TrainConfig.from_dict({**RECIPE.to_dict(), "epochs": args.epochs})
    dataset = load_training_dataset(make_phantoms(args.work), label_folder=LABEL_FOLDER)
    print(dataset.describe())
    result = train_model(
        config,
        dataset,
        args.work / "run" / "fold_0",
        validation_subjects=VALIDATION_SUBJECTS,
        resume=(args.work / "run" / "fold_0" / "checkpoint_last.pt").exists(),
        progress=True,
    )
    summary = TrainSummary(args.work / "run", (result,), None)
    bundle = export_bundle(
        summary,
        dataset,
        config,
        export="best",
        command=f"python tools/train_default_model.py --work WORK --epochs {args.epochs}",
    )
    trained = load_bundle(bundle)
    metrics = [json.loads(Path(path).read_text()) for path in args.metrics]
    save_bundle(
        dataclasses.replace(
            trained,
            name="default",
            model_card=default_model_card(trained.model_card, metrics, epochs=args.epochs),
            metadata={**trained.metadata, "inference": INFERENCE, "training_card": trained.model_card},
        ),
        bundle,
        overwrite=True,
    )
    print(f"bundle written to {bundle}")
    if args.install:
        shutil.rmtree(DEFAULT_BUNDLE, ignore_errors=True)
        shutil.copytree(bundle, DEFAULT_BUNDLE)
        print(f"installed as the default model in {DEFAULT_BUNDLE}")


if __name__ == "__main__":
    main()
