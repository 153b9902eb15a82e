"""``generate_phantom``: a synthetic ex vivo T1w mouse spinal cord chunk with exact GM/WM labels."""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from mousecord.io import Volume
from mousecord.labels import Label
from mousecord.phantom import anatomy, appearance, artefacts
from mousecord.phantom.config import Phantom, PhantomConfig
from mousecord.phantom.fields import smooth_noise

logger = logging.getLogger(__name__)


def phantom_affine(config: PhantomConfig) -> np.ndarray:
    """Canonical RAS affine of a phantom: diagonal voxel sizes, in-plane centre at the origin."""
    voxel = np.asarray(config.voxel_size_mm, dtype=np.float64)
    affine = np.diag([*voxel, 1.0])
    affine[:2, 3] = -(np.asarray(config.shape_vox[:2]) - 1) / 2 * voxel[:2]
    return affine


def generate_phantom(config: PhantomConfig, *, rng: np.random.Generator) -> Phantom:
    """Generate one synthetic chunk of mouse spinal cord and its exact labels.

    The cord's shape comes from real GM/WM sections of every spinal level (rat atlas scaled to mouse size),
    interpolated between levels, deformed and placed with drift, curvature and an arbitrary rotation;
    fluid rim, dura, vertebra, muscle, fat and embedding medium surround it. Intensities follow
    ``config.contrast``; a bias field, blur, optional Gibbs ringing and artefacts, and Rician noise at a
    drawn SNR complete it. The same ``rng`` state gives the same bytes.

    Args:
        config: grid, contrast and artefact settings.
        rng: source of every random draw.

    Returns:
        :class:`Phantom` with ``image`` (float32) and ``label_map`` (uint8: 0 background, 1 GM, 2 WM), both
        (x, y, z) in canonical RAS with z along the cord, and ``parameters`` (JSON-ready): the levels
        covered, per-slice nominal cord width/depth (mm) and GM fraction, SNR, noise sigma, and all draws.

    Example:
        >>> phantom = generate_phantom(PhantomConfig(shape_vox=(120, 120, 60)), rng=np.random.default_rng(0))
        >>> phantom.label_map.data.dtype
        dtype('uint8')
    """
    started = time.perf_counter()
    shape, voxel = config.shape_vox, config.voxel_size_mm
    drawn: dict[str, Any] = {"anatomy": anatomy.sample_anatomy(shape, voxel, rng=rng)}
    drawn["appearance"] = appearance.sample_appearance(config.contrast, rng=rng)
    drawn["surroundings"] = appearance.sample_surroundings(shape[2] * voxel[2], rng=rng)
    drawn["acquisition"] = appearance.sample_acquisition(config, rng=rng)
    per_slice = anatomy.slice_positions(drawn["anatomy"], shape, voxel)
    drawn["air_bubbles"] = artefacts.sample_bubbles(per_slice, shape, rng=rng) if config.air_bubbles else []
    drawn["damaged_ends"] = artefacts.sample_damaged_ends(rng=rng) if config.damaged_ends else []
    drawn["texture_seed"] = int(rng.integers(2**63))
    drawn["noise_seed"] = int(rng.integers(2**63))

    geometry = anatomy.render_geometry(drawn["anatomy"], shape, voxel)
    label_map = geometry.label_map()
    image, noise_sigma = _render_image(geometry, label_map, drawn, config)
    del geometry
    parameters = {
        "generator": "mousecord.phantom.generate_phantom",
        "config": config.to_dict(),
        "levels_covered": drawn["anatomy"]["levels_covered"],
        "snr": drawn["acquisition"]["snr"],
        "noise_sigma": noise_sigma,
        "wm_intensity": appearance.WM_INTENSITY,
        "per_slice": {
            "cord_width_mm": _rounded(per_slice["width_mm"]),
            "cord_depth_mm": _rounded(per_slice["depth_mm"]),
            "gm_fraction": _rounded(per_slice["gm_fraction"]),
            "level_coordinate": _rounded(per_slice["level_coordinate"]),
            "centre_x_mm": _rounded(per_slice["centre_x_mm"]),
            "centre_y_mm": _rounded(per_slice["centre_y_mm"]),
            "rotation_deg": _rounded(np.rad2deg(per_slice["rotation_rad"])),
        },
        **drawn,
    }
    affine = phantom_affine(config)
    logger.debug("phantom %s generated in %.1f s", shape, time.perf_counter() - started)
    return Phantom(Volume(image, affine), Volume(label_map, affine), parameters)


def _render_image(
    geometry, label_map: np.ndarray, drawn: dict, config: PhantomConfig
) -> tuple[np.ndarray, float]:
    shape, voxel = config.shape_vox, config.voxel_size_mm
    texture_rng = np.random.default_rng(drawn["texture_seed"])
    fine_spacing = [max(int(round(0.1 / size)), 1) for size in voxel]
    fine = smooth_noise(shape, fine_spacing, rng=texture_rng)
    fibre_spacing = [*fine_spacing[:2], max(int(round(0.6 / voxel[2])), 1)]
    fibre = smooth_noise(shape, fibre_spacing, rng=texture_rng)
    coarse = appearance.coarse_fields(shape, voxel, drawn["surroundings"], rng=texture_rng)
    classes = appearance.tissue_classes(geometry, drawn["surroundings"], coarse, fine, voxel)
    del coarse
    image = appearance.compose_image(geometry, classes, drawn["appearance"], fine, fibre, voxel)
    del classes, fibre
    void = drawn["appearance"]["means"]["medium"]
    if drawn["air_bubbles"]:
        artefacts.draw_bubbles(image, drawn["air_bubbles"], voxel, void)
    if drawn["damaged_ends"]:
        artefacts.draw_damaged_ends(image, label_map, drawn["damaged_ends"], voxel, fine, void)
    del fine
    np.maximum(image, 0, out=image)  # damage mottling may undershoot; gamma needs non-negative values
    gamma = drawn["appearance"]["gamma"]
    if gamma != 1.0:
        peak = np.float32(max(float(image.max()), 1e-6))
        image /= peak
        np.power(image, np.float32(gamma), out=image)
        image *= peak
    in_plane, drift = appearance.bias_field(shape, voxel, drawn["acquisition"])
    image *= in_plane[:, :, None]
    image *= drift[None, None, :]
    image = appearance.blur_and_ring(image, drawn["acquisition"])
    interior = appearance.wm_interior(geometry, label_map, voxel)
    wm_mean = (
        float(image[interior].mean()) if interior.any() else float(np.median(image[label_map == Label.WM]))
    )
    image *= np.float32(appearance.WM_INTENSITY / max(wm_mean, 1e-6))
    sigma = appearance.WM_INTENSITY / drawn["acquisition"]["snr"]
    image = appearance.add_rician_noise(image, sigma, rng=np.random.default_rng(drawn["noise_seed"]))
    return image, float(sigma)


def _rounded(values: np.ndarray) -> list[float]:
    return [round(float(value), 4) for value in values]
