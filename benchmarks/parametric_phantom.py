"""Held-out shapes: a parametric mouse cord phantom written apart from mousecord's generators.

Both of mousecord's generators (``mousecord.phantom``, ``mousecord.synthesis``) draw the cord's GM and WM
from the same histology atlas. This phantom shares none of their code or shapes: the cord is an ellipse
(semi-axes 1.0-1.5 x 0.7-1.0 mm, rotated, changing slowly along the cord), the GM a butterfly made of
ellipses (a commissure bar, two broad ventral and two thin dorsal horns), inside a bright fluid rim
(0.08 mm), a dark dura (0.06 mm), a bone ring and muscle, in dark embedding medium; a smooth texture,
Gaussian blur (sigma 0.8 voxel in-plane) and Rician noise. Three contrasts: GM brighter than WM
(``gm-bright``), GM darker (``gm-dark``) and a T2*-like one (GM a little brighter, very bright fluid, SNR 10).
Each volume is 200 x 200 x 40 voxels of 0.05 mm; the default model (or ``--model``) segments it on its own
inference path and GM, WM and cord Dice and the predicted / true cord area are averaged per contrast.

    python benchmarks/parametric_phantom.py [--model NAME_OR_FOLDER] [--volumes 4] [--json out.json]
    python benchmarks/parametric_phantom.py --crop 96   # each volume cut to 96 x 96 voxels around the cord
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy import ndimage

VOXEL_MM = 0.05
SHAPE = (200, 200, 40)
#: Means of medium, bone, dura, fluid, muscle, GM and WM per contrast (WM = 1), and the SNR.
CONTRASTS = {
    "gm-bright": ((0.05, 0.35, 0.2, 1.4, 0.6, 1.3, 1.0), 20.0),
    "gm-dark": ((0.05, 0.4, 0.25, 1.3, 0.7, 0.72, 1.0), 20.0),
    "t2star": ((0.1, 0.2, 0.3, 2.0, 0.45, 1.15, 1.0), 10.0),
}
MEDIUM, BONE, DURA, FLUID, MUSCLE = range(5)


def _inside_ellipse(
    x: np.ndarray,
    y: np.ndarray,
    centre: tuple[float, float],
    radii: tuple[float, float],
    angle: float = 0.0,
) -> np.ndarray:
    """Points (x, y) inside the ellipse of ``centre``, semi-axes ``radii`` (mm) and rotation ``angle``."""
    cos, sin = np.cos(angle), np.sin(angle)
    u = (x - centre[0]) * cos + (y - centre[1]) * sin
    v = -(x - centre[0]) * sin + (y - centre[1]) * cos
    return (u / radii[0]) ** 2 + (v / radii[1]) ** 2 <= 1


def make_volume(seed: int, contrast: str) -> tuple[np.ndarray, np.ndarray]:
    """(image, labels): a (x, y, z) float32 image and its uint8 truth (0 background, 1 GM, 2 WM)."""
    rng = np.random.default_rng(seed)
    means, snr = CONTRASTS[contrast]
    side = SHAPE[0]
    grid = (np.arange(side) - side / 2) * VOXEL_MM
    x_mm, y_mm = np.meshgrid(grid, grid, indexing="ij")
    centre = rng.uniform(-0.8, 0.8, 2)
    half_width, half_depth = rng.uniform(1.0, 1.5), rng.uniform(0.7, 1.0)
    rotation = rng.uniform(-0.4, 0.4)
    cycles, phase = rng.uniform(0.5, 1.0), rng.uniform(0, 2 * np.pi)
    cos, sin = np.cos(rotation), np.sin(rotation)
    x = (x_mm - centre[0]) * cos + (y_mm - centre[1]) * sin  # lateral
    y = -(x_mm - centre[0]) * sin + (y_mm - centre[1]) * cos  # dorsal
    labels = np.zeros(SHAPE, np.uint8)
    tissue = np.full(SHAPE, MEDIUM, np.uint8)
    for z in range(SHAPE[2]):
        factor = 1 + 0.08 * np.sin(np.pi * cycles * z / SHAPE[2] + phase)
        a, b = half_width * factor, half_depth * factor
        cord = _inside_ellipse(x, y, (0, 0), (a, b))
        grey = _inside_ellipse(x, y, (0, 0), (0.3 * a, 0.18 * b))
        for side_sign in (-1, 1):
            grey |= _inside_ellipse(
                x, y, (side_sign * 0.35 * a, -0.35 * b), (0.22 * a, 0.4 * b), side_sign * 0.3
            )
            grey |= _inside_ellipse(
                x, y, (side_sign * 0.25 * a, 0.45 * b), (0.08 * a, 0.45 * b), -side_sign * 0.5
            )
        grey &= _inside_ellipse(x, y, (0, 0), (0.85 * a, 0.85 * b))
        labels[..., z][cord] = 2
        labels[..., z][cord & grey] = 1
        outside = ~cord
        for label, grow_x, grow_y in (
            (MUSCLE, 2.2, 1.6),
            (BONE, 0.9, 0.8),
            (DURA, 0.14, 0.14),
            (FLUID, 0.08, 0.08),
        ):
            tissue[..., z][_inside_ellipse(x, y, (0, 0), (a + grow_x, b + grow_y)) & outside] = label
    image = np.asarray(means[:5], np.float32)[tissue]
    image[labels == 1], image[labels == 2] = means[5], means[6]
    image *= 1 + 0.15 * ndimage.gaussian_filter(rng.normal(size=SHAPE), 1.5)
    image = ndimage.gaussian_filter(image, (0.8, 0.8, 0.5))
    sigma = 1.0 / snr
    image = np.hypot(image + rng.normal(0, sigma, SHAPE), rng.normal(0, sigma, SHAPE))
    return image.astype(np.float32), labels


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * np.sum(a & b) / max(np.sum(a) + np.sum(b), 1))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=None, help="model name or folder (default: the shipped default)")
    parser.add_argument("--volumes", type=int, default=4, help="volumes per contrast (seeds 0..N-1)")
    parser.add_argument(
        "--crop", type=int, default=0, metavar="VOXELS", help="cut each volume to this square around the cord"
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.crop and not 16 <= args.crop <= SHAPE[0]:
        parser.error(f"--crop must be 16 to {SHAPE[0]} voxels, got {args.crop}")
    from mousecord.inference import InferenceConfig, Predictor
    from mousecord.models.registry import resolve_model

    predictor = Predictor(resolve_model(args.model), InferenceConfig(device="cpu"))
    results = {}
    print(f"{'contrast':>10} {'GM Dice':>8} {'WM Dice':>8} {'cord Dice':>9} {'cord area':>9}")
    for contrast in CONTRASTS:
        rows = []
        for seed in range(args.volumes):
            image, truth = make_volume(seed, contrast)
            if args.crop:
                centre = np.round(np.argwhere(truth > 0)[:, :2].mean(axis=0)).astype(int)
                low = np.clip(centre - args.crop // 2, 0, SHAPE[0] - args.crop)
                box = (slice(low[0], low[0] + args.crop), slice(low[1], low[1] + args.crop))
                image, truth = np.ascontiguousarray(image[box]), truth[box]
            predicted = predictor.predict_array(image, (VOXEL_MM,) * 3).label_map
            rows.append(
                {
                    "GM": _dice(predicted == 1, truth == 1),
                    "WM": _dice(predicted == 2, truth == 2),
                    "cord": _dice(predicted > 0, truth > 0),
                    "cord_area_ratio": float(np.sum(predicted > 0) / np.sum(truth > 0)),
                }
            )
        results[contrast] = {key: float(np.mean([row[key] for row in rows])) for key in rows[0]}
        mean = results[contrast]
        print(
            f"{contrast:>10} {mean['GM']:8.3f} {mean['WM']:8.3f} {mean['cord']:9.3f} "
            f"{mean['cord_area_ratio']:9.3f}",
            flush=True,
        )
    if args.json:
        args.json.write_text(
            json.dumps({"volumes": args.volumes, "crop_vox": args.crop, "results": results}, indent=2) + "\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
