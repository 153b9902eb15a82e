"""Cord geometry of one phantom: the levels a chunk covers, their sizes, and per-voxel signed distances.

All geometry is computed in millimetres, so the anatomy keeps its physical size whatever the voxel size.
The cord frame of a slice has ``u`` pointing to the cord's right and ``v`` pointing dorsal, origin at the
cord centroid; a world voxel maps to it by the slice's centre and rotation. Between the centres of
neighbouring levels the signed distance maps of cord and GM are interpolated linearly, so the shape changes
smoothly along the cord.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from mousecord.labels import Label
from mousecord.phantom.atlas import (
    LEVEL_NAMES,
    RAT_TO_MOUSE_SCALE,
    SEGMENT_LENGTH_MM,
    AtlasSection,
    load_atlas_sections,
    region_of,
)
from mousecord.phantom.fields import smooth_curve

#: Resolution and half extent (mm) of the per-level signed distance maps.
GRID_RESOLUTION_MM = 0.025
GRID_HALF_EXTENT_MM = 2.7
#: Distances are computed exactly up to this far outside the cord's nominal box (mm); beyond, "far".
BOX_MARGIN_MM = 0.8
FAR_MM = 10.0
_SLICES_PER_BLOCK = 32


@dataclass(frozen=True, eq=False)
class CordGeometry:
    """Per-voxel cord-frame coordinates and signed distances (mm), plus per-slice cord descriptors.

    Attributes:
        u_mm, v_mm: (x, y, z) float32 cord-frame coordinates (u to the cord's right, v dorsal).
        cord_sdf_mm: (x, y, z) float32 signed distance to the cord surface, negative inside.
        gm_sdf_mm: (x, y, z) float32 signed distance to the GM surface (GM is also clipped to the cord).
        half_width_mm, half_depth_mm, canal_v_mm: (z,) nominal half sizes and central canal height.
    """

    u_mm: np.ndarray
    v_mm: np.ndarray
    cord_sdf_mm: np.ndarray
    gm_sdf_mm: np.ndarray
    half_width_mm: np.ndarray
    half_depth_mm: np.ndarray
    canal_v_mm: np.ndarray

    def label_map(self) -> np.ndarray:
        """(x, y, z) uint8 labels: background, GM inside both surfaces, WM in the rest of the cord."""
        labels = np.zeros(self.cord_sdf_mm.shape, dtype=np.uint8)
        cord = self.cord_sdf_mm < 0
        labels[cord] = Label.WM
        labels[cord & (self.gm_sdf_mm < 0)] = Label.GM
        return labels


def sample_anatomy(
    shape_vox: tuple[int, int, int], voxel_size_mm: tuple[float, float, float], *, rng: np.random.Generator
) -> dict[str, Any]:
    """Draw every random anatomical quantity of one chunk; JSON-ready, replayed by :func:`render_geometry`."""
    sections = load_atlas_sections()
    length_mm = shape_vox[2] * voxel_size_mm[2]
    segment_mm = np.array([rng.uniform(*SEGMENT_LENGTH_MM[name[0]]) for name in LEVEL_NAMES])
    boundaries = np.concatenate([[0.0], np.cumsum(segment_mm)])
    total_mm = float(boundaries[-1])
    start_mm = (
        float(rng.uniform(0, total_mm - length_mm)) if total_mm > length_mm else (total_mm - length_mm) / 2
    )
    covered = [
        index
        for index in range(len(LEVEL_NAMES))
        if boundaries[index + 1] > start_mm and boundaries[index] < start_mm + length_mm
    ]
    stack_levels = list(range(max(covered[0] - 1, 0), min(covered[-1] + 2, len(LEVEL_NAMES))))
    subject = {
        "width_scale": float(rng.uniform(0.95, 1.05)),
        "depth_scale": float(rng.uniform(0.95, 1.05)),
        "gm_fraction_shift": float(rng.uniform(-0.03, 0.03)),
    }
    levels = [_level_targets(sections[index], subject, rng=rng) for index in stack_levels]
    max_half_width_mm = max(max(level["width_mm"], level["depth_mm"]) for level in levels) / 2
    return {
        "levels_covered": [LEVEL_NAMES[index] for index in covered],
        "chunk_start_from_c1_mm": start_mm,
        "rostral_at_first_slice": bool(rng.random() < 0.5),
        "segment_length_mm": {LEVEL_NAMES[index]: float(segment_mm[index]) for index in stack_levels},
        "level_centres_from_c1_mm": [float((boundaries[i] + boundaries[i + 1]) / 2) for i in stack_levels],
        "level_boundaries_from_c1_mm": [float(boundaries[i]) for i in [*stack_levels, stack_levels[-1] + 1]],
        "subject": subject,
        "levels": levels,
        "rotation_deg": float(rng.uniform(0, 360)),
        "twist_deg": float(rng.uniform(-25, 25)),
        "path": _sample_path(shape_vox, voxel_size_mm, max_half_width_mm, rng=rng),
        "asymmetry": float(rng.uniform(-0.06, 0.06)),
        "deformation": [_deformation_mode(rng) for _ in range(6)],
        "fissure_depth_mm": float(rng.uniform(0.05, 0.22)),
        "fissure_half_width_mm": float(rng.uniform(0.015, 0.035)),
    }


def _level_targets(section: AtlasSection, subject: dict[str, float], *, rng: np.random.Generator) -> dict:
    region = region_of(section.name)
    scale_u, scale_v = RAT_TO_MOUSE_SCALE
    width = section.width_mm * scale_u * section.shrink * subject["width_scale"] * rng.uniform(0.95, 1.05)
    depth = section.depth_mm * scale_v * section.shrink * subject["depth_scale"] * rng.uniform(0.95, 1.05)
    fraction = section.gm_fraction + section.gm_fraction_shift + subject["gm_fraction_shift"]
    fraction += rng.uniform(-0.03, 0.03)
    return {
        "name": section.name,
        "region": region.name,
        "width_mm": float(np.clip(width, region.width_mm[0] + 0.06, region.width_mm[1] - 0.06)),
        "depth_mm": float(np.clip(depth, region.depth_mm[0] + 0.05, region.depth_mm[1] - 0.05)),
        "gm_fraction": float(np.clip(fraction, region.gm_fraction[0] + 0.02, region.gm_fraction[1] - 0.02)),
    }


def _sample_path(shape_vox, voxel_size_mm, max_half_width_mm: float, *, rng: np.random.Generator) -> dict:
    """Centre offset, tilt and curvature of the cord in-plane, shrunk to keep the cord inside the field."""
    length_mm = shape_vox[2] * voxel_size_mm[2]
    half_fov_mm = min(shape_vox[0] * voxel_size_mm[0], shape_vox[1] * voxel_size_mm[1]) / 2
    limit_mm = max(half_fov_mm - max_half_width_mm - 0.6, 0.0)
    z_mm = np.linspace(0, length_mm, 64)
    path: dict[str, Any] = {}
    excursion = np.zeros((2, z_mm.size))
    for axis, name in enumerate(("x", "y")):
        offset, tilt = float(rng.uniform(-1.2, 1.2)), float(rng.uniform(-0.08, 0.08))
        curve, terms = smooth_curve(
            z_mm, amplitude=float(rng.uniform(0.2, 1.0)), wavelength_range=(15, 60), rng=rng
        )
        path[name] = {"offset_mm": offset, "tilt": tilt, "curve": terms}
        excursion[axis] = offset + tilt * (z_mm - length_mm / 2) + curve
    largest = float(np.abs(excursion).max())
    path["shrink"] = float(min(1.0, limit_mm / largest)) if largest > 0 else 1.0
    return path


def _deformation_mode(rng: np.random.Generator) -> dict[str, float]:
    angle = rng.uniform(0, 2 * np.pi)
    in_plane = 2 * np.pi / rng.uniform(1.5, 4.0)
    return {
        "component": int(rng.integers(2)),  # 0 displaces u, 1 displaces v
        "amplitude_mm": float(rng.uniform(0.005, 0.02)),
        "k_u": float(in_plane * np.cos(angle)),
        "k_v": float(in_plane * np.sin(angle)),
        "k_z": float(2 * np.pi / rng.uniform(4.0, 20.0) * rng.choice([-1, 1])),
        "phase_rad": float(rng.uniform(0, 2 * np.pi)),
    }


def slice_positions(
    anatomy: dict[str, Any], shape_vox: Sequence[int], voxel_size_mm: Sequence[float] | np.ndarray
) -> dict[str, np.ndarray]:
    """Per-slice descriptors: position along the cord, level coordinate, centre, rotation, nominal sizes."""
    n_slices = shape_vox[2]
    length_mm = n_slices * voxel_size_mm[2]
    z_mm = (np.arange(n_slices) + 0.5) * voxel_size_mm[2]
    along = z_mm if anatomy["rostral_at_first_slice"] else length_mm - z_mm
    cord_mm = anatomy["chunk_start_from_c1_mm"] + along
    centres = np.asarray(anatomy["level_centres_from_c1_mm"])
    level_coordinate = np.interp(cord_mm, centres, np.arange(centres.size))
    path = anatomy["path"]
    centre = []
    for name in ("x", "y"):
        terms = path[name]
        curve = sum(
            term["amplitude"] * np.sin(2 * np.pi * z_mm / term["wavelength_mm"] + term["phase_rad"])
            for term in terms["curve"]
        )
        centre.append(path["shrink"] * (terms["offset_mm"] + terms["tilt"] * (z_mm - length_mm / 2) + curve))
    rotation = np.deg2rad(anatomy["rotation_deg"] + anatomy["twist_deg"] * (z_mm / length_mm - 0.5))
    levels = anatomy["levels"]
    index = np.arange(len(levels))
    return {
        "z_mm": z_mm,
        "cord_position_mm": cord_mm,
        "level_coordinate": level_coordinate,
        "centre_x_mm": centre[0],
        "centre_y_mm": centre[1],
        "rotation_rad": rotation,
        "width_mm": np.interp(level_coordinate, index, [level["width_mm"] for level in levels]),
        "depth_mm": np.interp(level_coordinate, index, [level["depth_mm"] for level in levels]),
        "gm_fraction": np.interp(level_coordinate, index, [level["gm_fraction"] for level in levels]),
    }


def _level_stack(anatomy: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """(levels, u, v, 2) float32 signed distances (cord, GM) in mm on the common grid; canal heights (mm)."""
    sections = {section.name: section for section in load_atlas_sections()}
    grid = np.arange(-GRID_HALF_EXTENT_MM, GRID_HALF_EXTENT_MM + GRID_RESOLUTION_MM / 2, GRID_RESOLUTION_MM)
    grid_u, grid_v = np.meshgrid(grid, grid, indexing="ij")
    maps, canal = [], []
    for level in anatomy["levels"]:
        section = sections[level["name"]]
        scale_u = level["width_mm"] / section.width_mm
        scale_v = level["depth_mm"] / section.depth_mm
        pixel = section.pixel_size_mm
        coordinates = [
            section.centre_px[0] + grid_u / (pixel * scale_u),
            section.centre_px[1] + grid_v / (pixel * scale_v),
        ]
        to_mm = np.float32(pixel * np.sqrt(scale_u * scale_v))
        cord = ndimage.map_coordinates(section.cord_sdf_px, coordinates, order=1, mode="nearest") * to_mm
        gm = ndimage.map_coordinates(section.gm_sdf_px, coordinates, order=1, mode="nearest") * to_mm
        cord = _cut_fissure(cord, grid_u, grid_v, anatomy)
        inside = cord < 0
        gm -= np.float32(np.quantile(gm[inside], level["gm_fraction"]))
        maps.append(np.stack([cord, gm], axis=-1))
        canal.append((section.canal_v_px - section.centre_px[1]) * pixel * scale_v)
    return np.ascontiguousarray(np.stack(maps), dtype=np.float32), np.asarray(canal)


def _cut_fissure(cord: np.ndarray, grid_u: np.ndarray, grid_v: np.ndarray, anatomy: dict) -> np.ndarray:
    """Open the ventral median fissure: a notch on the midline, ``fissure_depth_mm`` into the cord."""
    middle = cord.shape[0] // 2
    inside_v = grid_v[middle][cord[middle] < 0]
    if inside_v.size == 0:
        return cord
    ventral_v = float(inside_v.min())
    notch = np.minimum(
        anatomy["fissure_half_width_mm"] - np.abs(grid_u), ventral_v + anatomy["fissure_depth_mm"] - grid_v
    )
    return np.maximum(cord, notch.astype(np.float32))


def _lookup(stack: np.ndarray, level: np.ndarray, index_u: np.ndarray, index_v: np.ndarray) -> np.ndarray:
    """Trilinear interpolation of ``stack`` (levels, u, v, 2) at fractional indices; (n, 2) float32."""
    n_levels, n_u, n_v, _ = stack.shape
    flat = stack.reshape(-1, 2)
    corners, weights = [], []
    for size, position in ((n_levels, level), (n_u, index_u), (n_v, index_v)):
        low = np.clip(np.floor(position), 0, size - 2).astype(np.int64)
        weight = np.clip(position - low, 0, 1).astype(np.float32)
        corners.append(low)
        weights.append(weight)
    base = (corners[0] * n_u + corners[1]) * n_v + corners[2]
    result = np.zeros((base.size, 2), dtype=np.float32)
    for step_level in (0, 1):
        weight_level = weights[0] if step_level else 1 - weights[0]
        for step_u in (0, 1):
            weight_lu = weight_level * (weights[1] if step_u else 1 - weights[1])
            for step_v in (0, 1):
                weight = weight_lu * (weights[2] if step_v else 1 - weights[2])
                result += flat[base + (step_level * n_u + step_u) * n_v + step_v] * weight[:, None]
    return result


def render_geometry(
    anatomy: dict[str, Any], shape_vox: Sequence[int], voxel_size_mm: Sequence[float] | np.ndarray
) -> CordGeometry:
    """Evaluate the sampled anatomy on the voxel grid (deterministic)."""
    stack, canal_per_level = _level_stack(anatomy)
    if stack.shape[0] == 1:
        stack = np.concatenate([stack, stack])
    per_slice = slice_positions(anatomy, shape_vox, voxel_size_mm)
    n_x, n_y, n_z = shape_vox
    x_mm = ((np.arange(n_x) - (n_x - 1) / 2) * voxel_size_mm[0]).astype(np.float32)
    y_mm = ((np.arange(n_y) - (n_y - 1) / 2) * voxel_size_mm[1]).astype(np.float32)
    u_mm = np.empty(shape_vox, dtype=np.float32)
    v_mm = np.empty(shape_vox, dtype=np.float32)
    cord_sdf = np.full(shape_vox, FAR_MM, dtype=np.float32)
    gm_sdf = np.full(shape_vox, FAR_MM, dtype=np.float32)
    half_width = per_slice["width_mm"] / 2
    half_depth = per_slice["depth_mm"] / 2
    for start in range(0, n_z, _SLICES_PER_BLOCK):
        block = slice(start, min(start + _SLICES_PER_BLOCK, n_z))
        cosine = np.cos(per_slice["rotation_rad"][block]).astype(np.float32)
        sine = np.sin(per_slice["rotation_rad"][block]).astype(np.float32)
        dx = x_mm[:, None, None] - per_slice["centre_x_mm"][block].astype(np.float32)[None, None, :]
        dy = y_mm[None, :, None] - per_slice["centre_y_mm"][block].astype(np.float32)[None, None, :]
        u_block = dx * cosine + dy * sine
        v_block = dy * cosine - dx * sine
        u_mm[:, :, block], v_mm[:, :, block] = u_block, v_block
        box = (np.abs(u_block) < half_width[block] + BOX_MARGIN_MM) & (
            np.abs(v_block) < half_depth[block] + BOX_MARGIN_MM
        )
        index_x, index_y, index_z = np.nonzero(box)
        u_points, v_points = _deform(u_block[box], v_block[box], per_slice["z_mm"][block][index_z], anatomy)
        distances = _lookup(
            stack,
            per_slice["level_coordinate"][block][index_z],
            (u_points + GRID_HALF_EXTENT_MM) / GRID_RESOLUTION_MM,
            (v_points + GRID_HALF_EXTENT_MM) / GRID_RESOLUTION_MM,
        )
        cord_sdf[index_x, index_y, index_z + start] = distances[:, 0]
        gm_sdf[index_x, index_y, index_z + start] = distances[:, 1]
    canal = np.interp(per_slice["level_coordinate"], np.arange(canal_per_level.size), canal_per_level)
    return CordGeometry(u_mm, v_mm, cord_sdf, gm_sdf, half_width, half_depth, canal)


def _deform(
    u_mm: np.ndarray, v_mm: np.ndarray, z_mm: np.ndarray, anatomy: dict
) -> tuple[np.ndarray, np.ndarray]:
    """Left-right asymmetry and a smooth elastic field, applied to cord-frame lookup coordinates."""
    z_mm = z_mm.astype(np.float32)
    shifted = [u_mm * (1 + np.float32(anatomy["asymmetry"]) * np.tanh(u_mm / np.float32(0.3))), v_mm.copy()]
    for mode in anatomy["deformation"]:
        phase = (
            np.float32(mode["k_u"]) * u_mm
            + np.float32(mode["k_v"]) * v_mm
            + np.float32(mode["k_z"]) * z_mm
            + np.float32(mode["phase_rad"])
        )
        shifted[mode["component"]] += np.float32(mode["amplitude_mm"]) * np.sin(phase)
    return shifted[0], shifted[1]
