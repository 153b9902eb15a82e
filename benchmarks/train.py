"""Training benchmark: seconds per iteration (CPU, and CUDA when present) and time to GM Dice 0.8.

    python benchmarks/train.py                      # CPU preset on a fixed phantom dataset
    python benchmarks/train.py --iterations 20 --target-dice 0.8 --max-epochs 20 --json out.json
    python benchmarks/train.py --recipes            # throughput: shipped 3D recipe vs in-plane 2D / 2.5D
    python benchmarks/train.py --history RUN/history.json   # held-out Dice against wall time of a run

Iteration time includes patch sampling and augmentation (they run in the training process). Time to
Dice is wall time from the first iteration until the validation GM Dice (annotated slices of held-out
subjects, measured after every epoch) first reaches the target, per-epoch validation included.

``--recipes`` measures, in one call on the same machine, the 3D recipe the previous default model was
trained with (PlainConvUNet 16-192, batch 4 of 48 x 96 x 96) and the in-plane recipes (2D and 2.5D, batch 12
of 128 x 128 synthetic slabs): seconds to build a batch on one core (samples per second), seconds per network
step on ``--threads`` threads, and training voxels per CPU-second (both counted as CPU time).
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


def recipe_throughput(iterations: int, threads: int) -> dict[str, dict[str, float]]:
    """Batch, step and voxel throughput of the 3D and in-plane recipes (see the module docstring)."""
    import dataclasses

    from mousecord.training.in_plane import InPlaneTrainConfig, build_network_for, in_plane_batch
    from mousecord.training.loss import masked_dice_ce_loss

    results = {}
    three_d = TrainConfig(
        features_per_stage=(16, 32, 64, 128, 192),
        strides=((1, 1, 1), (2, 2, 2), (2, 2, 2), (2, 2, 2), (2, 2, 2)),
        patch_size_vox=(48, 96, 96),
        batch_size=4,
        device="cpu",
    )
    with tempfile.TemporaryDirectory() as folder:
        phantom_dataset(
            Path(folder) / "data",
            n_subjects=2,
            chunks_per_subject=1,
            annotated_slices_per_volume=4,
            config=PhantomConfig(shape_vox=(128, 128, 96)),
            seed=0,
        )
        dataset = load_training_dataset(Path(folder) / "data")
        torch.set_num_threads(1)
        batch = iteration_seconds(three_d, dataset, device="cpu", iterations=1)["batch_s"]
        torch.set_num_threads(threads)
        step = iteration_seconds(three_d, dataset, device="cpu", iterations=iterations)["step_s"]
    results["3d"] = _throughput(
        batch, step, three_d.batch_size, int(np.prod(three_d.patch_size_vox)), threads
    )
    for name, slices in (("2d", 1), ("2.5d", 3)):
        base = InPlaneTrainConfig(device="cpu")
        config = dataclasses.replace(base, synthesis=dataclasses.replace(base.synthesis, slab_slices=slices))
        rng = np.random.default_rng(0)
        torch.set_num_threads(1)
        batch_times = []
        for _ in range(max(iterations // 2, 2)):
            started = time.perf_counter()
            images, targets = in_plane_batch(config, rng)
            batch_times.append(time.perf_counter() - started)
        torch.set_num_threads(threads)
        network = build_network_for(config)
        optimizer = torch.optim.AdamW(network.parameters(), lr=1e-3)
        step_times = []
        for _ in range(iterations + 1):
            started = time.perf_counter()
            optimizer.zero_grad()
            masked_dice_ce_loss(network(images), targets).backward()
            optimizer.step()
            step_times.append(time.perf_counter() - started)
        voxels = int(np.prod(config.synthesis.patch_size_vox))
        results[name] = _throughput(
            float(np.median(batch_times)),
            float(np.median(step_times[1:])),
            config.batch_size,
            voxels,
            threads,
        )
    return results


def _throughput(batch_s: float, step_s: float, batch_size: int, voxels: int, threads: int) -> dict:
    cpu_seconds = batch_s + step_s * threads  # the batch on one core, the step on ``threads``
    return {
        "batch_s_one_core": batch_s,
        "samples_per_s_one_core": batch_size / batch_s,
        "step_s": step_s,
        "voxels_per_iteration": batch_size * voxels,
        "voxels_per_cpu_s": batch_size * voxels / cpu_seconds,
    }


def dice_against_time(history_path: Path) -> list[tuple[float, float, float]]:
    """(cumulative minutes, validation GM Dice, WM Dice) per epoch of a training run's history.json."""
    history = json.loads(history_path.read_text())
    minutes = np.cumsum(history["seconds"]) / 60
    return [
        (float(m), float(gm), float(wm))
        for m, gm, wm in zip(minutes, history["dice_GM"], history["dice_WM"], strict=True)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--target-dice", type=float, default=0.8)
    parser.add_argument("--max-epochs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--recipes", action="store_true", help="throughput of the 3D and in-plane recipes")
    parser.add_argument("--history", type=Path, help="print validation Dice against wall time of a run")
    args = parser.parse_args()
    if args.history:
        print(f"{'minutes':>8} {'GM Dice':>8} {'WM Dice':>8}")
        for minutes, gm, wm in dice_against_time(args.history):
            print(f"{minutes:8.1f} {gm:8.3f} {wm:8.3f}")
        return
    if args.recipes:
        results = recipe_throughput(args.iterations, args.threads)
        print(f"{'recipe':>6} {'batch s (1 core)':>17} {'samples/s':>10} {'step s':>7} {'voxels/CPU-s':>13}")
        for name, row in results.items():
            print(
                f"{name:>6} {row['batch_s_one_core']:17.2f} {row['samples_per_s_one_core']:10.1f} "
                f"{row['step_s']:7.2f} {row['voxels_per_cpu_s']:13.0f}"
            )
        if args.json:
            args.json.write_text(json.dumps(results, indent=2) + "\n")
        return
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
