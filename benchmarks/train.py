"""Training benchmark: seconds per iteration (CPU, and CUDA when present) and time to GM Dice 0.8.

    python benchmarks/train.py                      # CPU preset on a fixed phantom dataset
    python benchmarks/train.py --iterations 20 --target-dice 0.8 --max-epochs 20 --json out.json

Iteration time includes patch sampling and augmentation (they run in the training process). Time to
Dice is wall time from the first iteration until the validation GM Dice (annotated slices of held-out
subjects, measured after every epoch) first reaches the target, per-epoch validation included.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mousecord.phantom import PhantomConfig, phantom_dataset
from mousecord.training import TrainConfig, load_training_dataset, train_model
from mousecord.training.loop import build_parts, train_step
from mousecord.training.patches import intensity_transforms, make_batch

PHANTOM = PhantomConfig(shape_vox=(64, 64, 48), voxel_size_mm=(0.07, 0.07, 0.07))


def iteration_seconds(config: TrainConfig, dataset, *, device: str, iterations: int) -> dict[str, float]:
    """Median seconds per iteration: batch creation (sampling + augmentation) and network step."""
    config = TrainConfig.from_dict({**config.to_dict(), "device": device})
    parts = build_parts(config)
    rng = np.random.default_rng(0)
    transforms = intensity_transforms(config.augmentation, rng)
    batch_times, step_times = [], []
    for _ in range(iterations + 2):
        started = time.perf_counter()
        images, targets = make_batch(dataset.cases, config, rng, transforms)
        batched = time.perf_counter()
        train_step(parts, images, targets, config)
        if parts.device.type == "cuda":
            torch.cuda.synchronize()
        batch_times.append(batched - started)
        step_times.append(time.perf_counter() - batched)
    batch, step = float(np.median(batch_times[2:])), float(np.median(step_times[2:]))
    return {"batch_s": batch, "step_s": step, "iteration_s": batch + step}


def time_to_dice(config: TrainConfig, dataset, folder: Path, *, target: float) -> dict[str, float | None]:
    """Train until validation GM Dice >= target (or config.epochs); seconds (with validation), epoch."""
    elapsed = {"train_s": 0.0, "reached_at_s": None, "epoch": None}

    def on_epoch_end(epoch: int, metrics: dict[str, float]) -> None:
        elapsed["train_s"] += metrics["seconds"]
        if elapsed["reached_at_s"] is None and metrics["dice_GM"] >= target:
            elapsed["reached_at_s"], elapsed["epoch"] = elapsed["train_s"], epoch
            raise _Reached

    try:
        train_model(config, dataset, folder, on_epoch_end=on_epoch_end)
    except _Reached:
        pass
    return elapsed


class _Reached(Exception):
    pass


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--target-dice", type=float, default=0.8)
    parser.add_argument("--max-epochs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = TrainConfig(epochs=args.max_epochs, iterations_per_epoch=25, seed=0)
    results: dict[str, object] = {
        "platform": platform.platform(),
        "torch": torch.__version__,
        "threads": args.threads,
        "config": config.to_dict(),
    }
    with tempfile.TemporaryDirectory() as folder:
        phantom_dataset(
            Path(folder) / "data",
            n_subjects=4,
            chunks_per_subject=1,
            annotated_slices_per_volume=4,
            config=PHANTOM,
            seed=0,
        )
        dataset = load_training_dataset(Path(folder) / "data")
        results["cpu"] = iteration_seconds(config, dataset, device="cpu", iterations=args.iterations)
        print(f"CPU: {results['cpu']}")
        if torch.cuda.is_available():
            results["cuda"] = iteration_seconds(config, dataset, device="cuda", iterations=args.iterations)
            print(f"CUDA ({torch.cuda.get_device_name()}): {results['cuda']}")
        # Time to target on the CPU with the CPU preset.
        cpu_config = TrainConfig.from_dict({**config.to_dict(), "device": "cpu"})
        results["time_to_dice"] = {
            "target_GM": args.target_dice,
            **time_to_dice(cpu_config, dataset, Path(folder) / "run", target=args.target_dice),
        }
        print(f"time to GM Dice {args.target_dice}: {results['time_to_dice']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
