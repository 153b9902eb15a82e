"""Optional artefacts drawn into the noiseless image: air bubbles and damaged (cut) chunk ends."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mousecord.labels import Label


def sample_bubbles(
    per_slice: dict[str, np.ndarray], shape_vox: Sequence[int], *, rng: np.random.Generator
) -> list[dict[str, Any]]:
    """1-3 bubbles just outside the cord: centre (mm, world), radius and blooming strength."""
    bubbles = []
    for _ in range(int(rng.integers(1, 4))):
        slice_index = int(rng.integers(int(0.1 * shape_vox[2]), max(int(0.9 * shape_vox[2]), 1)))
        radius = float(rng.uniform(0.08, 0.3))
        angle = float(rng.uniform(0, 2 * np.pi))
        reach = max(per_slice["width_mm"][slice_index], per_slice["depth_mm"][slice_index]) / 2
        distance = reach + radius + float(rng.uniform(0.1, 0.5))
        bubbles.append(
            {
                "centre_mm": [
                    float(per_slice["centre_x_mm"][slice_index] + distance * np.cos(angle)),
                    float(per_slice["centre_y_mm"][slice_index] + distance * np.sin(angle)),
                    float(per_slice["z_mm"][slice_index]),
                ],
                "radius_mm": radius,
                "blooming": float(rng.uniform(0.3, 0.8)),
            }
        )
    return bubbles


def draw_bubbles(
    image: np.ndarray,
    bubbles: list[dict[str, Any]],
    voxel_size_mm: Sequence[float] | np.ndarray,
    void_value: float,
) -> None:
    """Darken ``image`` in place: ``void_value`` inside each bubble, a 1/r^3 signal loss around it."""
    voxel = np.asarray(voxel_size_mm)
    origin = -(np.asarray(image.shape) - 1) / 2 * voxel
    origin[2] = voxel[2] / 2
    for bubble in bubbles:
        centre, radius = np.asarray(bubble["centre_mm"]), bubble["radius_mm"]
        low = np.maximum(np.floor((centre - 3 * radius - origin) / voxel).astype(int), 0)
        high = np.minimum(np.ceil((centre + 3 * radius - origin) / voxel).astype(int) + 1, image.shape)
        if np.any(high <= low):
            continue
        axes = [
            (np.arange(low[a], high[a]) * voxel[a] + origin[a] - centre[a]).astype(np.float32)
            for a in range(3)
        ]
        distance = np.sqrt(
            axes[0][:, None, None] ** 2 + axes[1][None, :, None] ** 2 + axes[2][None, None, :] ** 2
        )
        factor = 1 - bubble["blooming"] * np.clip(radius / np.maximum(distance, 1e-6), 0, 1) ** 3
        region = image[low[0] : high[0], low[1] : high[1], low[2] : high[2]]
        region *= factor.astype(np.float32)
        region[distance < radius] = void_value


def sample_damaged_ends(*, rng: np.random.Generator) -> list[dict[str, Any]]:
    """One or both ends: cut depth, oblique slope and direction, and the damaged band beyond the cut."""
    ends = [end for end in ("first", "last") if rng.random() < 0.7] or [str(rng.choice(["first", "last"]))]
    return [
        {
            "end": end,
            "cut_depth_mm": float(rng.uniform(0.0, 0.3)),
            "slope": float(np.tan(np.deg2rad(rng.uniform(2, 10)))),
            "direction_rad": float(rng.uniform(0, 2 * np.pi)),
            "damage_mm": float(rng.uniform(0.1, 0.4)),
            "damage_factor": float(rng.uniform(0.6, 1.3)),
            "damage_mottle": float(rng.uniform(0.1, 0.4)),
        }
        for end in ends
    ]


def draw_damaged_ends(
    image: np.ndarray,
    label_map: np.ndarray,
    ends: list[dict[str, Any]],
    voxel_size_mm: Sequence[float] | np.ndarray,
    fine: np.ndarray,
    void_value: float,
) -> None:
    """Cut ``image`` and ``label_map`` in place beyond an oblique plane near each end, damage what is left."""
    n_x, n_y, n_z = image.shape
    x = (np.arange(n_x) - (n_x - 1) / 2) * voxel_size_mm[0]
    y = (np.arange(n_y) - (n_y - 1) / 2) * voxel_size_mm[1]
    for end in ends:
        projection = np.cos(end["direction_rad"]) * x[:, None] + np.sin(end["direction_rad"]) * y[None, :]
        cut_mm = end["cut_depth_mm"] + end["slope"] * (projection - projection.min())  # from the end, (x, y)
        reach = int(np.ceil((cut_mm.max() + end["damage_mm"]) / voxel_size_mm[2])) + 1
        reach = min(reach, n_z)
        slab = slice(0, reach) if end["end"] == "first" else slice(n_z - reach, n_z)
        depth_vox = np.arange(reach) + 0.5 if end["end"] == "first" else np.arange(reach)[::-1] + 0.5
        depth_mm = (depth_vox * voxel_size_mm[2])[None, None, :]
        removed = depth_mm < cut_mm[:, :, None]
        damaged = ~removed & (depth_mm < cut_mm[:, :, None] + end["damage_mm"])
        image_slab, label_slab = image[:, :, slab], label_map[:, :, slab]
        image_slab[damaged] *= end["damage_factor"] * (1 + end["damage_mottle"] * fine[:, :, slab][damaged])
        image_slab[removed] = void_value
        label_slab[removed] = Label.BACKGROUND
