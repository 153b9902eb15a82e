"""Training benchmark: seconds per iteration (CPU, and CUDA when present) and time to GM Dice 0.8.

    python benchmarks/train.py                      # CPU preset on a fixed phantom dataset
    python benchmarks/train.py --iterations 20 --target-dice 0.8 --max-epochs 20 --json out.json
    python benchmarks/train.py --recipes            # throughput: shipped 3D recipe vs in-plane 2D / 2.5D
    python benchmarks/train.py --history RUN/history.json   # held-out Dice against wall time of a run
    python benchmarks/train.py --equal-time 15 --json equal_time.json   # 3D vs 2D vs 2.5D, 15 min each

Iteration time includes patch sampling and augmentation (they run in the training process). Time to
Dice is wall time from the first iteration until the validation GM Dice (annotated slices of held-out
subjects, measured after every epoch) first reaches the target, per-epoch validation included.

``--recipes`` measures, in one call on the same machine, the 3D recipe the previous default model was
trained with (PlainConvUNet 16-192, batch 4 of 48 x 96 x 96) and the in-plane recipes (2D and 2.5D, batch 12
of 128 x 128 synthetic slabs): seconds to build a batch on one core (samples per second), seconds per network
step on ``--threads`` threads (the in-plane ones in float32 and, where the CPU computes bfloat16 natively,
as ``mixed_precision`` trains them, in bfloat16), and training voxels per CPU-second (both counted as CPU
time).

``--equal-time MINUTES`` trains each of the three recipes from scratch for the same training wall time on
this machine (the iteration count is set from a short timed run, so every learning-rate schedule runs to
its end), then segments fresh phantoms (seeds 0, 1, ...; never drawn in training) of (a) the T1w preset,
(b) random contrasts and (c) GM darker than WM, and prints GM/WM Dice per recipe and contrast. The 3D recipe
trains as the first default model did, on fixed T1w phantom volumes (dense labels here, its best case, and
of the test phantoms' own generator); the in-plane recipes train on the synthesis alone, validated on
phantoms of other seeds. Validation time is not counted in the budget; the table gives the training minutes
(the 3D loop's include its validation) and the whole wall time (data set, calibration, validation). The
in-plane iteration time comes from a 12-iteration run that includes starting the data workers (it errs
slow, so those recipes get slightly fewer iterations), and their batches are built by 2 worker processes
while the 3D recipe builds its own in the training process, as each recipe is run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mousecord.phantom import PhantomConfig, generate_phantom, phantom_dataset
from mousecord.training import TrainConfig, load_training_dataset, train_model
from mousecord.training.loop import build_parts, train_step
from mousecord.training.patches import intensity_transforms, make_batch

PHANTOM = PhantomConfig(shape_vox=(64, 64, 48), voxel_size_mm=(0.07, 0.07, 0.07))
#: The 3D recipe the first default model was trained with.
THREE_D_RECIPE = TrainConfig(
    features_per_stage=(16, 32, 64, 128, 192),
    strides=((1, 1, 1), (2, 2, 2), (2, 2, 2), (2, 2, 2), (2, 2, 2)),
    patch_size_vox=(48, 96, 96),
    batch_size=4,
    device="cpu",
)
#: Epochs of an equal-time run (validation after each).
EQUAL_TIME_EPOCHS = 5
#: Test phantoms of the equal-time comparison: contrasts and shape (``--test-volumes`` of each).
EQUAL_TIME_CONTRASTS = ("t1w", "random", "gm-dark")
EQUAL_TIME_TEST_SHAPE = (200, 200, 48)


def in_plane_recipe(slab_slices: int):
    """The default model's in-plane recipe in float32, ``slab_slices`` adjacent slices (1: 2D, 3: 2.5D)."""
    from mousecord.training.in_plane import InPlaneTrainConfig

    # float32, as the 3D recipe trains on a CPU and as the README's equal-time table was measured;
    # --recipes times the bfloat16 step of mixed precision beside it
    base = InPlaneTrainConfig(device="cpu", data_workers=2, mixed_precision=False)
    return dataclasses.replace(base, synthesis=dataclasses.replace(base.synthesis, slab_slices=slab_slices))


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
    from mousecord.training.in_plane import build_network_for, in_plane_batch, native_bfloat16
    from mousecord.training.loss import masked_dice_ce_loss

    results = {}
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
        batch = iteration_seconds(THREE_D_RECIPE, dataset, device="cpu", iterations=1)["batch_s"]
        torch.set_num_threads(threads)
        step = iteration_seconds(THREE_D_RECIPE, dataset, device="cpu", iterations=iterations)["step_s"]
    results["3d"] = _throughput(
        batch, step, THREE_D_RECIPE.batch_size, int(np.prod(THREE_D_RECIPE.patch_size_vox)), threads
    )
    for name, slices in (("2d", 1), ("2.5d", 3)):
        config = in_plane_recipe(slices)
        rng = np.random.default_rng(0)
        torch.set_num_threads(1)
        batch_times = []
        for _ in range(max(iterations // 2, 2)):
            started = time.perf_counter()
            images, targets = in_plane_batch(config, rng)
            batch_times.append(time.perf_counter() - started)
        torch.set_num_threads(threads)
        precisions = ("float32", "bfloat16") if native_bfloat16(torch.device("cpu")) else ("float32",)
        for precision in precisions:
            network = build_network_for(config)
            optimizer = torch.optim.AdamW(network.parameters(), lr=1e-3)
            step_times = []
            for _ in range(iterations + 1):
                started = time.perf_counter()  # the step of in_plane._train_epoch
                optimizer.zero_grad(set_to_none=True)
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bfloat16"):
                    logits = network(images)
                masked_dice_ce_loss(logits.float(), targets).backward()
                torch.nn.utils.clip_grad_norm_(network.parameters(), config.gradient_clip)
                optimizer.step()
                step_times.append(time.perf_counter() - started)
            voxels = int(np.prod(config.synthesis.patch_size_vox))
            results[name if precision == "float32" else f"{name} bf16"] = _throughput(
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


def equal_time_comparison(minutes: float, volumes: int, work: Path) -> dict[str, dict]:
    """Train the 3D, 2D and 2.5D recipes for ``minutes`` of training each; test each on fresh phantoms."""
    from mousecord.inference import InferenceConfig, Predictor

    trainers = {
        "3d": _train_three_d,
        "2d": lambda budget, folder: _train_in_plane(budget, folder, slab_slices=1),
        "2.5d": lambda budget, folder: _train_in_plane(budget, folder, slab_slices=3),
    }
    results = {}
    for name, trainer in trainers.items():
        started = time.perf_counter()
        bundle, row = trainer(minutes, work / name)
        row["wall_minutes"] = (time.perf_counter() - started) / 60
        predictor = Predictor(bundle, InferenceConfig(device="cpu", backend="torch", roi="full"))
        row["test"] = {
            contrast: _test_dice(predictor, contrast, volumes) for contrast in EQUAL_TIME_CONTRASTS
        }
        results[name] = row
        print(f"{name}: {json.dumps(row['test'])}", flush=True)
    return results


def format_equal_time(results: dict[str, dict]) -> str:
    """The equal-time table: per recipe, iteration time, iterations, wall time and test GM / WM Dice."""
    header = f"{'recipe':>6} {'s/iter':>7} {'iters':>6} {'train min':>10} {'wall min':>9}"
    lines = [header + "".join(f" {contrast + ' GM / WM':>17}" for contrast in EQUAL_TIME_CONTRASTS)]
    for name, row in results.items():
        seconds, minutes = row["seconds_per_iteration"], row["train_minutes"]
        line = f"{name:>6} {seconds:7.2f} {row['iterations']:6d} {minutes:10.1f} {row['wall_minutes']:9.1f}"
        for contrast in EQUAL_TIME_CONTRASTS:
            line += f"   {row['test'][contrast]['GM']:.3f} / {row['test'][contrast]['WM']:.3f}"
        lines.append(line)
    return "\n".join(lines)


def _fit_budget(config, seconds_per_iteration: float, minutes: float):
    """``config`` with EQUAL_TIME_EPOCHS epochs of as many iterations as ``minutes`` of training hold."""
    iterations = max(int(minutes * 60 / seconds_per_iteration), EQUAL_TIME_EPOCHS)
    per_epoch = -(-iterations // EQUAL_TIME_EPOCHS)
    return dataclasses.replace(config, epochs=EQUAL_TIME_EPOCHS, iterations_per_epoch=per_epoch)


def _train_three_d(minutes: float, folder: Path):
    from mousecord.models.bundle import load_bundle
    from mousecord.training import train

    phantom_dataset(
        folder / "data",
        n_subjects=6,
        chunks_per_subject=2,
        config=PhantomConfig(shape_vox=(128, 128, 96)),
        seed=1001,
        workers=2,
    )
    dataset = load_training_dataset(folder / "data", label_folder="labels")  # dense labels
    seconds = iteration_seconds(THREE_D_RECIPE, dataset, device="cpu", iterations=3)["iteration_s"]
    config = _fit_budget(THREE_D_RECIPE, seconds, minutes)
    summary = train(dataset, folder / "run", config)
    history = folder / "run" / "fold_0" / "history.json"
    return load_bundle(summary.bundle), _run_row(config, seconds, history)


def _train_in_plane(minutes: float, folder: Path, *, slab_slices: int):
    from mousecord.training.in_plane import bundle_from_weights, phantom_validation_volumes, train_in_plane
    from mousecord.training.loop import load_checkpoint

    config = in_plane_recipe(slab_slices)
    volumes = phantom_validation_volumes()
    calibration_iterations = 12
    calibration = train_in_plane(
        dataclasses.replace(config, epochs=1, iterations_per_epoch=calibration_iterations),
        folder / "calibration",
        validation_volumes=volumes[:1],
    )
    seconds = calibration.history["training_seconds"][0] / calibration_iterations
    config = _fit_budget(config, seconds, minutes)
    result = train_in_plane(config, folder / "run", validation_volumes=volumes)
    weights = load_checkpoint(result.best_checkpoint)["network_weights"]
    bundle = bundle_from_weights(config, weights, name=f"equal-time-{slab_slices}-slice")
    return bundle, _run_row(config, seconds, result.output_folder / "history.json")


def _run_row(config, seconds_per_iteration: float, history: Path) -> dict:
    record = json.loads(history.read_text())
    # in-plane runs time their training apart from validation; the 3D loop times both together
    seconds = record.get("training_seconds", record["seconds"])
    return {
        "seconds_per_iteration": seconds_per_iteration,
        "iterations": config.epochs * config.iterations_per_epoch,
        "batch_size": config.batch_size,
        "train_minutes": sum(seconds) / 60,
        "validation_curve_minutes_gm_wm": dice_against_time(history),
    }


def _test_dice(predictor, contrast: str, volumes: int) -> dict[str, float]:
    from mousecord.analysis.metrics import compare_label_maps

    dice = {"GM": [], "WM": []}
    for seed in range(volumes):
        config = PhantomConfig(shape_vox=EQUAL_TIME_TEST_SHAPE, contrast=contrast)
        phantom = generate_phantom(config, rng=np.random.default_rng(seed))
        prediction = predictor.predict_array(phantom.image.data, phantom.image.voxel_size_mm).label_map
        metrics = compare_label_maps(
            phantom.label_map.data, prediction, voxel_size_mm=phantom.image.voxel_size_mm
        )
        for name in dice:
            dice[name].append(float(metrics[name].dice))
    return {name: float(np.mean(values)) for name, values in dice.items()}


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
    parser.add_argument(
        "--equal-time", type=float, metavar="MINUTES", help="train 3D, 2D and 2.5D for MINUTES each; test"
    )
    parser.add_argument("--test-volumes", type=int, default=3, help="--equal-time: phantoms per contrast")
    parser.add_argument("--work", type=Path, help="--equal-time: keep the runs here (default: temporary)")
    args = parser.parse_args()
    if args.history:
        print(f"{'minutes':>8} {'GM Dice':>8} {'WM Dice':>8}")
        for minutes, gm, wm in dice_against_time(args.history):
            print(f"{minutes:8.1f} {gm:8.3f} {wm:8.3f}")
        return
    if args.equal_time:
        if args.work is not None and args.work.exists() and any(args.work.iterdir()):
            parser.error(f"--work {args.work} is not empty: the runs need a new folder")
        torch.set_num_threads(args.threads)
        with tempfile.TemporaryDirectory() as scratch:
            results = equal_time_comparison(args.equal_time, args.test_volumes, args.work or Path(scratch))
        print(format_equal_time(results))
        if args.json:
            args.json.write_text(json.dumps(results, indent=2) + "\n")
        return
    if args.recipes:
        results = recipe_throughput(args.iterations, args.threads)
        columns = (("batch s (1 core)", 17), ("samples/s", 10), ("step s", 7), ("voxels/CPU-s", 13))
        columns += (("x 3D", 6),)
        print(f"{'recipe':>9}" + "".join(f" {title:>{width}}" for title, width in columns))
        for name, row in results.items():
            print(
                f"{name:>9} {row['batch_s_one_core']:17.2f} {row['samples_per_s_one_core']:10.1f} "
                f"{row['step_s']:7.2f} {row['voxels_per_cpu_s']:13.0f} "
                f"{row['voxels_per_cpu_s'] / results['3d']['voxels_per_cpu_s']:6.2f}"
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
