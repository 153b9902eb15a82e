"""Drawing a synthetic sample's parameters: every random quantity of one slab (geometry, surroundings,
intensities, acquisition) into a JSON-ready dict, which :func:`mousecord.synthesis.generate.render_sample`
turns into arrays without further randomness."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mousecord.labels import Label
from mousecord.phantom.atlas import load_atlas_sections
from mousecord.synthesis.config import SynthesisConfig

#: Tissue labels of a synthetic sample beyond GM (1) and WM (2); extra tissues follow from EXTRA. OUTSIDE is
#: the embedding medium or air around a tissue column.
FIELD, RIM, RING, ROOT, BUBBLE, OUTSIDE, EXTRA = 0, 3, 4, 5, 6, 7, 8


#: Level change per mm along the cord (one segment is about 0.7-1.6 mm long).
_LEVELS_PER_MM = (0.6, 1.4)


_SUB_LABELS_MAX = 3


def sample_parameters(config: SynthesisConfig, rng: np.random.Generator) -> dict[str, Any]:
    """Every random quantity of one sample, JSON-ready."""
    levels = len(load_atlas_sections())
    field_vox = int(rng.integers(config.field_size_vox[0], config.field_size_vox[1] + 1))
    half_field_mm = np.full(2, field_vox * config.spacing_mm / 2)
    cord_present = bool(rng.random() >= config.no_cord_probability)
    thickness = _log_uniform(rng, config.slice_thickness_mm)
    rim_mode = "normal"
    if rng.random() < config.rim_absent_probability:
        rim_mode = "absent"
    elif rng.random() < config.gap_probability:
        rim_mode = "gap"
    surroundings = not rng.random() < config.no_surroundings_probability
    extra_count = int(rng.integers(config.extra_labels[0], config.extra_labels[1] + 1)) if surroundings else 0
    # one draw chooses the intensity style, so samples without in vivo ones replay as before
    style_draw = rng.random()
    intensity_style = "random"
    if style_draw < config.realistic_intensity_probability:
        intensity_style = "ex_vivo"
    elif style_draw < config.realistic_intensity_probability + config.in_vivo_intensity_probability:
        intensity_style = "in_vivo"
    tilt_angle = rng.uniform(0, 2 * math.pi)
    tilt = rng.uniform(0, 0.3)
    centre = [float(rng.uniform(-0.5, 0.5) * h) for h in half_field_mm]
    column = None
    if rng.random() < config.column_probability:
        column = {
            "radii_mm": [float(rng.uniform(1.6, 4.5)), float(rng.uniform(1.6, 4.5))],
            "angle_rad": float(rng.uniform(0, math.pi)),
            "offset_mm": [float(rng.uniform(-0.8, 0.8)), float(rng.uniform(-0.8, 0.8))],
            "roughness": float(rng.uniform(0.0, 0.35)),
        }
    parameters = {
        "field_vox": field_vox,
        "cord_present": cord_present,
        "centre_mm": centre if cord_present else [99.0, 99.0],
        "column": column,
        "level": float(rng.uniform(0, levels - 1)),
        "levels_per_mm": float(rng.uniform(*_LEVELS_PER_MM) * rng.choice([-1, 1])),
        "scale": float(rng.uniform(*config.cord_scale)),
        "anisotropy": float(math.exp(rng.uniform(*np.log(config.cord_anisotropy)))),
        "rotation_rad": float(rng.uniform(0, 2 * math.pi)),
        "mirrored": bool(rng.random() < 0.5),
        "twist_rad_per_mm": float(rng.uniform(-0.1, 0.1)),
        "tilt_mm_per_mm": [float(tilt * math.cos(tilt_angle)), float(tilt * math.sin(tilt_angle))],
        "asymmetry": float(rng.uniform(-0.08, 0.08)),
        "elastic_mm": float(rng.uniform(0, 0.06)),
        "elastic_spacing_vox": int(rng.integers(8, 33)),
        "gm_offset_mm": float(rng.uniform(-0.03, 0.03)),
        "horn_elastic_mm": float(rng.uniform(0, 0.04)),
        "rim_mode": rim_mode,
        "rim_mm": {
            "normal": float(rng.uniform(0.02, 0.12)),
            "absent": 0.0,
            "gap": float(rng.uniform(*config.gap_mm)),
        }[rim_mode],
        "ring_mm": 0.0 if rng.random() < config.ring_absent_probability else float(rng.uniform(0.05, 0.6)),
        "ring_coverage": float(rng.uniform(0.4, 1.0)),
        "surroundings": surroundings,
        "extra_labels": extra_count,
        "extra_smoothness_vox": [int(rng.integers(3, 25)) for _ in range(extra_count)],
        "extra_threshold": float(rng.uniform(-0.6, 1.2)),
        "roots": [
            {
                "angle_rad": float(rng.uniform(0, 2 * math.pi)),
                "distance_mm": float(rng.uniform(0.0, 0.7)),
                "radii_mm": [float(rng.uniform(0.08, 0.45)), float(rng.uniform(0.05, 0.25))],
            }
            for _ in range(int(rng.integers(0, 5)) if surroundings else 0)
        ],
        "bubbles": [
            {
                "centre_mm": [float(rng.uniform(-1, 1) * h) for h in half_field_mm],
                "radius_mm": float(rng.uniform(0.04, 0.4)),
            }
            for _ in range(int(rng.integers(1, 4)) if rng.random() < 0.2 else 0)
        ],
        "intensities": _sample_intensities(extra_count, intensity_style, rng),
        "slice_thickness_mm": float(thickness),
        "slice_spacing_mm": float(thickness * rng.uniform(1.0, 1.25)),
        "single_slice": bool(config.slab_slices > 1 and rng.random() < config.single_slice_probability),
        "in_plane_resolution_mm": float(rng.uniform(*config.in_plane_resolution_mm)),
        "gibbs_keep": float(rng.uniform(*config.gibbs_keep))
        if rng.random() < config.gibbs_probability
        else 1.0,
        "snr": float(_log_uniform(rng, config.snr)),
        "bias_amplitude": (
            float(rng.uniform(*config.bias_amplitude)) if rng.random() < config.bias_probability else 0.0
        ),
        "bias_spacing_vox": int(rng.integers(24, 80)),
        "ghost": (
            {
                "axis": int(rng.integers(2)),
                "shift": float(rng.choice([0.25, 0.5])),
                "amplitude": float(rng.uniform(0.05, 0.25)),
            }
            if rng.random() < config.ghosting_probability
            else None
        ),
        "gamma": float(math.exp(rng.uniform(-0.5, 0.5))) if rng.random() < config.gamma_probability else 1.0,
        "field_seed": int(rng.integers(2**31)),
        "cut": _sample_cut(config, cord_present, rng),
        "surface_bubbles": [
            {
                "angle_rad": float(rng.uniform(0, 2 * math.pi)),
                "gap_mm": float(rng.uniform(0.0, 0.25)),
                "radius_mm": float(rng.uniform(0.03, 0.3)),
                "blooming": float(rng.uniform(0.2, 0.9)),
            }
            # drawn only where enabled: with both probabilities 0, samples are those of earlier versions
            for _ in range(
                int(rng.integers(1, 4))
                if cord_present and config.bubble_probability > 0 and rng.random() < config.bubble_probability
                else 0
            )
        ],
        # drawn last and only where enabled, so the draws above are those of earlier versions
        "gm_half_width_mm": (
            float(rng.uniform(*config.gm_half_width_mm))
            if cord_present
            and config.gm_thinning_probability > 0
            and rng.random() < config.gm_thinning_probability
            else None
        ),
    }
    # drawn last and only where enabled, so the draws above are those of earlier versions
    parameters["decoys"] = (
        _sample_decoys(parameters, half_field_mm, rng)
        if config.decoy_probability > 0 and rng.random() < config.decoy_probability
        else []
    )
    parameters["surroundings_change_rad_per_mm"] = (
        float(rng.uniform(*config.surroundings_change_rad_per_mm))
        if config.surroundings_change_probability > 0
        and rng.random() < config.surroundings_change_probability
        else 0.0
    )
    return parameters


def _sample_decoys(
    parameters: dict[str, Any], half_field_mm: np.ndarray, rng: np.random.Generator
) -> list[dict[str, Any]]:
    """1-3 cord-sized round structures that are not cord (a vertebral body, a muscle bundle in its fascia):
    an ellipse of a tissue of its own, often as bright as the cord's WM, mostly inside a shell of the bone
    ring's tissue (never in fluid, which only the cord lies in). In most samples whose cord has a bone ring
    the first lies against it, as a vertebral body does; the others anywhere in the field. Each decoy's
    tissue is appended to the sample's intensities (its label follows the last one), so the draws before
    them stay as they were."""
    intensities = parameters["intensities"]
    scale = parameters["scale"] if parameters["cord_present"] else float(rng.uniform(0.6, 1.6))
    decoys = []
    for index in range(int(rng.integers(1, 4))):
        # a vertebral body lies outside the bone ring around the cord, never inside the cord's fluid
        adjacent = (
            index == 0 and parameters["ring_mm"] > 0 and parameters["cord_present"] and rng.random() < 0.6
        )
        wm_mean, wm_spread = intensities["mean"][Label.WM], intensities["spread"][Label.WM]
        cord_like = rng.random() < 0.5
        decoys.append(
            {
                "label": len(intensities["mean"]),
                # adjacent: direction from the cord centre in the cord's frame; else: centre in the field
                "direction_rad": float(rng.uniform(0, 2 * math.pi)) if adjacent else None,
                "gap_mm": float(rng.uniform(0.0, 0.2)),
                "centre_mm": None if adjacent else [float(rng.uniform(-1, 1) * h) for h in half_field_mm],
                "radii_mm": [float(rng.uniform(0.5, 1.4) * scale), float(rng.uniform(0.4, 1.1) * scale)],
                "angle_rad": float(rng.uniform(0, math.pi)),  # free decoys only
                "shell_mm": 0.0 if rng.random() < 0.25 else float(rng.uniform(0.03, 0.3)),
            }
        )
        intensities["mean"].append(
            float(wm_mean * rng.uniform(0.8, 1.2)) if cord_like else float(rng.random())
        )
        intensities["spread"].append(float(wm_spread * rng.uniform(0.5, 2.0)))
        intensities["sub_labels"].append(int(rng.integers(1, _SUB_LABELS_MAX + 1)))
        intensities["sub_offsets"].append(rng.uniform(-0.06, 0.06, _SUB_LABELS_MAX).tolist())
        intensities["texture_of"].append(int(rng.integers(0, 3)))
    return decoys


def _sample_cut(
    config: SynthesisConfig, cord_present: bool, rng: np.random.Generator
) -> dict[str, Any] | None:
    """A chunk's cut end crossing the slab: a plane 2-30 degrees off the axial one, so its line in the slice
    moves by 1.7-29 mm per mm along the cord, somewhere across the cord, with a damaged band before it."""
    if not (cord_present and config.cut_probability > 0 and rng.random() < config.cut_probability):
        return None
    return {
        "normal_rad": float(rng.uniform(0, 2 * math.pi)),
        "offset_mm": float(rng.uniform(-1.3, 1.3)),
        "shift_mm_per_mm": float(rng.choice([-1, 1]) / math.tan(math.radians(rng.uniform(2, 30)))),
        "damage_mm": float(rng.uniform(0.05, 0.5)),
        "damage_gain": float(math.exp(rng.uniform(math.log(0.4), math.log(1.6)))),
        "mottle": float(rng.uniform(0.0, 0.5)),
    }


def _log_uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(math.exp(rng.uniform(math.log(bounds[0]), math.log(bounds[1]))))


def _sample_intensities(extra_count: int, style: str, rng: np.random.Generator) -> dict[str, Any]:
    """Mean, spread and sub-label offsets per tissue label, relative to a 0-1 range; ``style`` is
    ``ex_vivo``, ``in_vivo`` or ``random``."""
    count = EXTRA + extra_count
    tissue_ranges = [(0.1, 0.6), (0.4, 0.9), (1.2, 2.0), (0.8, 1.5)]  # bone, muscle, fat, marrow
    if style == "ex_vivo":
        # ex vivo-like (docs/mouse-cord-appearance.md), WM = 1; GM brighter, darker or equal
        polarity = rng.choice(["brighter", "darker", "equal"], p=[0.45, 0.45, 0.1])
        gm = {
            "brighter": rng.uniform(1.1, 1.45),
            "darker": rng.uniform(0.6, 0.9),
            "equal": rng.uniform(0.95, 1.05),
        }
        means = np.empty(count)
        means[Label.GM], means[Label.WM] = gm[polarity], 1.0
        means[RIM] = rng.uniform(1.1, 1.6)
        means[RING] = rng.uniform(0.15, 0.5)
        means[FIELD] = rng.uniform(0.0, 0.15) if rng.random() < 0.6 else rng.uniform(0.3, 0.9)
        means[ROOT] = rng.uniform(0.7, 1.2)
        means[BUBBLE] = rng.uniform(0.0, 0.1)
        means[OUTSIDE] = rng.uniform(0.0, 0.12) if rng.random() < 0.8 else rng.uniform(0.2, 0.6)
        for label in range(EXTRA, count):
            means[label] = rng.uniform(*tissue_ranges[int(rng.integers(len(tissue_ranges)))])
        if rng.random() < 0.2:  # the other weighting: every contrast reversed
            means = means.max() - means
        means = means / means.max()
        spreads = rng.uniform(0.01, 0.06, count)
    elif style == "in_vivo":
        # in vivo-like, WM = 1: GM and WM barely differ, the fluid around the cord is dark (T1-weighted)
        # or bright (T2-weighted), fat is bright in both, the field around the tissue is tissue, not medium
        t1_weighted = rng.random() < 0.5
        means = np.empty(count)
        means[Label.GM], means[Label.WM] = rng.uniform(0.9, 1.12), 1.0
        means[RIM] = rng.uniform(0.05, 0.45) if t1_weighted else rng.uniform(1.3, 2.5)
        means[RING] = rng.uniform(0.05, 0.5)
        means[FIELD] = rng.uniform(0.3, 1.2)
        means[ROOT] = rng.uniform(0.7, 1.2)
        means[BUBBLE] = rng.uniform(0.0, 0.1)
        means[OUTSIDE] = rng.uniform(0.0, 0.12) if rng.random() < 0.8 else rng.uniform(0.3, 1.2)
        for label in range(EXTRA, count):
            means[label] = rng.uniform(*tissue_ranges[int(rng.integers(len(tissue_ranges)))])
        means = means / means.max()
        spreads = rng.uniform(0.01, 0.08, count)
    else:
        means = rng.uniform(0, 1, count)
        spreads = rng.uniform(0, 0.08, count)
    return {
        "mean": means.tolist(),
        "spread": spreads.tolist(),
        "sub_labels": rng.integers(1, _SUB_LABELS_MAX + 1, count).tolist(),
        "sub_offsets": rng.uniform(-0.06, 0.06, (count, _SUB_LABELS_MAX)).tolist(),
        "texture_of": rng.integers(0, 3, count).tolist(),
    }


__all__ = ["BUBBLE", "EXTRA", "FIELD", "OUTSIDE", "RIM", "RING", "ROOT", "sample_parameters"]
