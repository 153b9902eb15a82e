"""Accuracy of a model on fresh phantoms: per-class Dice, HD95 (mm) and volume error (%), per volume and
mean/std, printed as a table beside the issue's targets and optionally written as JSON (which the default
model's card quotes, see ``tools/train_default_model.py --update-card``).

Phantoms use seeds below 1000 (``--first-seed``, default 0); the default model was trained on dataset seeds
1001 and 2001, which are never used here. Metrics come from :func:`mousecord.analysis.compare_label_maps`
(evaluated on the slices where the truth has cord, so a chunk's empty cut ends do not count).

    python benchmarks/accuracy.py --contrast t1w --json accuracy_t1w.json        # 10 x 200x200x500
    python benchmarks/accuracy.py --contrast random --json accuracy_random.json
    python benchmarks/accuracy.py --volumes 2 --shape 200 200 64 --threads 1    # a quick check
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from mousecord.options import BACKENDS, ROI_MODES

#: Mean Dice targets of the issue, per contrast and class.
TARGETS = {"t1w": {"GM": 0.92, "WM": 0.96}, "random": {"GM": 0.85}}
METRICS = ("dice", "hd95_mm", "volume_difference_percent")
CLASSES = ("GM", "WM", "cord")


def evaluate_volume(predictor, seed: int, args: argparse.Namespace) -> dict:
    """Generate phantom ``seed``, segment it, compare with its truth: ``{class: {metric: value}}``."""
    from mousecord.analysis.metrics import compare_label_maps
    from mousecord.phantom import PhantomConfig, generate_phantom

    config = PhantomConfig(
        shape_vox=tuple(args.shape),
        contrast=args.contrast,
        air_bubbles=args.artefacts,
        damaged_ends=args.artefacts,
    )
    phantom = generate_phantom(config, rng=np.random.default_rng(seed))
    start = time.perf_counter()
    prediction = predictor.predict_array(phantom.image.data, phantom.image.voxel_size_mm).label_map
    seconds = time.perf_counter() - start
    metrics = compare_label_maps(
        phantom.label_map.data, prediction, voxel_size_mm=phantom.image.voxel_size_mm, name=f"seed {seed}"
    )
    row = {name: {metric: float(getattr(metrics[name], metric)) for metric in METRICS} for name in CLASSES}
    return {"seed": seed, "seconds": seconds, **row}


def summarise(rows: list[dict]) -> dict:
    """Mean and standard deviation (NaN-aware) of every class and metric over the volumes."""
    return {
        name: {
            metric: {
                "mean": float(np.nanmean([row[name][metric] for row in rows])),
                "std": float(np.nanstd([row[name][metric] for row in rows])),
            }
            for metric in METRICS
        }
        for name in CLASSES
    }


def format_table(rows: list[dict], summary: dict, targets: dict) -> str:
    header = f"{'seed':>6} " + " ".join(
        f"{name + ' ' + short:>13}" for name in CLASSES for short in ("Dice", "HD95", "vol%")
    )
    lines = [header]
    for row in rows:
        cells = [
            " ".join(f"{row[name][metric]:13.{4 if metric == 'dice' else 3}f}" for metric in METRICS)
            for name in CLASSES
        ]
        lines.append(f"{row['seed']:>6} " + " ".join(cells))
    for statistic in ("mean", "std"):
        cells = [
            " ".join(
                f"{summary[name][metric][statistic]:13.{4 if metric == 'dice' else 3}f}" for metric in METRICS
            )
            for name in CLASSES
        ]
        lines.append(f"{statistic:>6} " + " ".join(cells))
    for name, target in targets.items():
        mean = summary[name]["dice"]["mean"]
        verdict = "met" if mean >= target else "NOT met"
        lines.append(f"target {name} Dice >= {target}: mean {mean:.4f} ({verdict})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", help="model name or folder (default: the shipped default model)")
    parser.add_argument("--contrast", choices=("t1w", "random"), default="t1w")
    parser.add_argument("--artefacts", action="store_true", help="air bubbles and damaged chunk ends")
    parser.add_argument("--volumes", type=int, default=10, help="number of phantoms (default 10)")
    parser.add_argument("--first-seed", type=int, default=0, help="seeds first..first+volumes-1, all < 1000")
    parser.add_argument("--shape", type=int, nargs=3, default=(200, 200, 500), metavar=("X", "Y", "Z"))
    parser.add_argument("--roi", choices=("auto", *ROI_MODES), default="auto")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--backend", choices=BACKENDS, default="auto")
    parser.add_argument("--json", type=Path, help="write per-volume results, summary and targets here")
    args = parser.parse_args(argv)
    seeds = list(range(args.first_seed, args.first_seed + args.volumes))
    if args.volumes < 1 or seeds[0] < 0 or seeds[-1] >= 1000:
        parser.error(
            f"seeds must lie in 0..999 (training uses dataset seeds above 1000), got {seeds[0]}..{seeds[-1]}"
        )

    import torch

    from mousecord.inference import InferenceConfig, Predictor
    from mousecord.models.registry import resolve_model

    torch.set_num_threads(args.threads)
    bundle = resolve_model(args.model)
    predictor = Predictor(
        bundle, InferenceConfig(device="cpu", threads=args.threads, roi=args.roi, backend=args.backend)
    )
    rows = []
    for seed in seeds:
        rows.append(evaluate_volume(predictor, seed, args))
        print(
            f"seed {seed}: GM Dice {rows[-1]['GM']['dice']:.4f}, WM Dice {rows[-1]['WM']['dice']:.4f}, "
            f"{rows[-1]['seconds']:.1f} s",
            file=sys.stderr,
            flush=True,
        )
    summary = summarise(rows)
    targets = TARGETS[args.contrast]
    print(
        f"model {bundle.name} ({bundle.source}), contrast {args.contrast}, {len(rows)} phantoms "
        f"{tuple(args.shape)}, roi {predictor.roi}, backend {predictor.backend}, "
        f"keep largest {predictor.keep_largest_component}"
    )
    print(format_table(rows, summary, targets))
    if args.json:
        record = {
            "model": bundle.name,
            "weights_sha256": bundle.metadata.get("weights_sha256"),
            "contrast": args.contrast,
            "artefacts": args.artefacts,
            "volumes": len(rows),
            "seeds": seeds,
            "shape_xyz": list(args.shape),
            "roi": predictor.roi,
            "backend": predictor.backend,
            "threads": args.threads,
            "targets": targets,
            "summary": summary,
            "cases": rows,
        }
        args.json.write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
