"""Train mousecord's in-plane (2.5D) model on synthetic slabs alone, on a CPU, and export it as a bundle.

Every training sample is drawn afresh by :mod:`mousecord.synthesis` (random label fields around atlas-shaped
cords, random contrasts and acquisitions). Validation runs the deployed Predictor on whole phantoms of the
other generator (:mod:`mousecord.phantom`, seeds 5001-5004: two realistic T1w, two random-contrast), which the
synthesis never draws from, so the checkpoint is chosen by how well the model generalises; accuracy is
reported by ``benchmarks/accuracy.py`` on seeds below 1000.

Usage::

    python tools/train_inplane_model.py --work /tmp/mousecord-inplane [--epochs 40] [--resume]
    python tools/train_inplane_model.py --work /tmp/mousecord-inplane --export OUT_BUNDLE
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path

import numpy as np
import torch

from mousecord.models.bundle import save_bundle
from mousecord.phantom import PhantomConfig, generate_phantom
from mousecord.training.in_plane import InPlaneTrainConfig, bundle_from_weights, train_in_plane
from mousecord.training.loop import CHECKPOINT_BEST, load_checkpoint

VALIDATION_SEEDS = {"t1w": (5001, 5002), "random": (5003, 5004)}
VALIDATION_SHAPE = (200, 200, 24)
#: What the exported bundle asks of inference: the cord ROI path, one slice every 0.5 mm in stage 1.
INFERENCE = {
    "roi": "cord",
    "keep_largest_component": True,
    "slab_spacing_mm": 0.5,
    "margin_mm": 0.6,
    "min_cord_voxels": 60,
    "max_centre_step_mm": 0.8,
}


def validation_volumes() -> list:
    volumes = []
    for contrast, seeds in VALIDATION_SEEDS.items():
        for seed in seeds:
            phantom = generate_phantom(
                PhantomConfig(shape_vox=VALIDATION_SHAPE, contrast=contrast), rng=np.random.default_rng(seed)
            )
            volumes.append((phantom.image, phantom.label_map.data))
    return volumes


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--iterations", type=int, default=60, help="iterations per epoch")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data-workers", type=int, default=2)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--export", type=Path, help="write the best checkpoint as a bundle here and stop")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    config = InPlaneTrainConfig(
        epochs=args.epochs, iterations_per_epoch=args.iterations, data_workers=args.data_workers
    )
    if args.export:
        checkpoint = load_checkpoint(args.work / CHECKPOINT_BEST)
        bundle = bundle_from_weights(
            config, checkpoint["network_weights"], name="default", inference=INFERENCE
        )
        bundle = dataclasses.replace(
            bundle, metadata={**bundle.metadata, "best_epoch": checkpoint["best_epoch"]}
        )
        save_bundle(bundle, args.export, overwrite=True)
        return
    train_in_plane(
        config, args.work, validation_volumes=validation_volumes(), resume=args.resume, inference=INFERENCE
    )


if __name__ == "__main__":
    main()
