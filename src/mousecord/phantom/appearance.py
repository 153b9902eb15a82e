"""Intensities: tissues around the cord, contrast presets, bias field, blur, Gibbs ringing, Rician noise.

Intensities are relative to WM = 1 until the end, where the image is scaled so that the noiseless WM mean is
:data:`WM_INTENSITY`. ``contrast="t1w"`` draws from the ranges of ``docs/mouse-cord-appearance.md``;
``contrast="random"`` draws every tissue's mean and texture uniformly, SynthSeg-style (GM may be darker than
WM, brighter, or equal), and adds a random gamma.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import IntEnum
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.fft
from scipy import ndimage

from mousecord.labels import Label
from mousecord.phantom.anatomy import CordGeometry
from mousecord.phantom.fields import smooth_noise

if TYPE_CHECKING:
    from mousecord.phantom.config import PhantomConfig

#: Mean noiseless WM intensity of every phantom (arbitrary units, like a scanner's).
WM_INTENSITY = 1000.0


class Tissue(IntEnum):
    """Background tissue classes (all label 0). The cord's GM and WM are mixed in by partial volume."""

    MEDIUM = 0
    FLUID = 1
    DURA = 2
    CORTICAL_BONE = 3
    MARROW = 4
    DISC = 5
    MUSCLE = 6
    MUSCLE_DARK = 7
    FAT = 8


#: t1w preset: (low, high) mean intensity relative to WM, and texture coefficient of variation.
T1W_MEANS: dict[str, tuple[float, float]] = {
    "gm": (1.12, 1.38),
    "medium": (0.0, 0.01),
    "fluid": (1.1, 1.6),
    "dura": (0.2, 0.5),
    "cortical_bone": (0.15, 0.4),
    "marrow": (0.8, 1.3),
    "disc": (0.5, 0.8),
    "muscle": (0.5, 0.85),
    "fat": (1.6, 2.4),
}
T1W_COV: dict[str, tuple[float, float]] = {
    "gm": (0.02, 0.05),
    "wm": (0.02, 0.05),
    "medium": (0.0, 0.0),
    "fluid": (0.03, 0.08),
    "dura": (0.05, 0.15),
    "cortical_bone": (0.15, 0.3),
    "marrow": (0.1, 0.2),
    "disc": (0.05, 0.1),
    "muscle": (0.1, 0.2),
    "muscle_dark": (0.1, 0.2),
    "fat": (0.03, 0.08),
}
_TISSUE_KEYS = [tissue.name.lower() for tissue in Tissue]


def sample_appearance(contrast: str, *, rng: np.random.Generator) -> dict[str, Any]:
    """Draw tissue means (WM = 1), textures and cord details for ``contrast`` ("t1w", "gm-dark" or
    "random"); "gm-dark" is the t1w preset with GM darker than WM (0.6-0.9x), as some fixations give."""
    if contrast in ("t1w", "gm-dark"):
        means = {name: float(rng.uniform(*bounds)) for name, bounds in T1W_MEANS.items()}
        if contrast == "gm-dark":
            means["gm"] = float(rng.uniform(0.6, 0.9))
        means["muscle_dark"] = means["muscle"] * float(rng.uniform(0.75, 0.92))
        cov = {name: float(rng.uniform(*bounds)) for name, bounds in T1W_COV.items()}
        funiculus = 1 + float(rng.choice([-1, 1]) * rng.uniform(0.03, 0.1))
        gamma = 1.0
    else:
        wm = float(rng.uniform(0.25, 1.0))
        means = {name: float(rng.uniform(0.0, 1.0)) / wm for name in ["gm", *_TISSUE_KEYS]}
        cov = {name: float(rng.uniform(0.02, 0.12)) for name in ["gm", "wm", *_TISSUE_KEYS]}
        cov["muscle"], cov["muscle_dark"] = (float(rng.uniform(0.05, 0.25)) for _ in range(2))
        funiculus = 1 + float(rng.uniform(-0.15, 0.15))
        gamma = float(np.exp(rng.normal(0, 0.25)))
    means["wm"] = 1.0
    return {
        "contrast": contrast,
        "means": means,
        "texture_cov": cov,
        "dorsal_funiculus_factor": funiculus,
        "dorsal_septum_factor": float(rng.uniform(0.8, 1.0)),
        "canal_radius_mm": float(rng.uniform(0.0, 0.03)),
        "canal_mean": float(rng.uniform(0.6, 1.6)),
        "gamma": gamma,
    }


def sample_surroundings(length_mm: float, *, rng: np.random.Generator) -> dict[str, Any]:
    """Sizes (mm) and thresholds of the fluid rim, dura, vertebra, muscle, fat and specimen outline."""
    vertebra_mm = float(rng.uniform(1.3, 2.0))
    first = float(rng.uniform(0, vertebra_mm))
    return {
        "fluid_rim_mm": float(rng.uniform(0.04, 0.1)),
        "dura_ring_mm": float(rng.uniform(0.2, 0.45)),
        "bone_ring_mm": float(rng.uniform(0.1, 0.3)),
        "body_radii_mm": [float(rng.uniform(0.8, 1.3)), float(rng.uniform(0.45, 0.75))],
        "spinous_radii_mm": [float(rng.uniform(0.12, 0.25)), float(rng.uniform(0.3, 0.7))],
        "transverse_radii_mm": [float(rng.uniform(0.3, 0.6)), float(rng.uniform(0.15, 0.3))],
        "outline_radii_mm": [float(rng.uniform(2.8, 4.2)), float(rng.uniform(2.6, 3.8))],
        "outline_dorsal_shift_mm": float(rng.uniform(-0.3, 0.8)),
        "fat_threshold": float(rng.uniform(0.9, 1.6)),
        "fat_rim_mm": float(rng.uniform(0.0, 0.3)),
        "marrow_threshold": float(rng.uniform(0.0, 0.8)),
        "muscle_dark_threshold": float(rng.uniform(0.3, 1.0)),
        "disc_boundaries_mm": [float(z) for z in np.arange(first, length_mm, vertebra_mm)],
        "disc_half_thickness_mm": float(rng.uniform(0.05, 0.12)),
        "field_wavelength_z_mm": float(rng.uniform(3.0, 8.0)),
    }


def coarse_fields(
    shape: Sequence[int],
    voxel_size_mm: Sequence[float] | np.ndarray,
    surroundings: dict[str, Any],
    *,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Two unit-variance fields, smooth in-plane (0.8 and 0.4 mm), turning between 2D patterns along z."""
    patterns = []
    for spacing_mm in (0.8, 0.8, 0.4, 0.4):  # the first field shapes outlines, the second tissue patches
        spacing = [max(int(round(spacing_mm / size)), 1) for size in voxel_size_mm[:2]]
        patterns.append(smooth_noise(shape[:2], spacing, rng=rng))
    z_mm = (np.arange(shape[2]) + 0.5) * voxel_size_mm[2]
    angle = (2 * np.pi * z_mm / surroundings["field_wavelength_z_mm"]).astype(np.float32)
    cosine, sine = np.cos(angle)[None, None, :], np.sin(angle)[None, None, :]
    first = patterns[0][:, :, None] * cosine + patterns[1][:, :, None] * sine
    second = patterns[2][:, :, None] * cosine + patterns[3][:, :, None] * sine
    return first, second


def tissue_classes(
    geometry: CordGeometry,
    surroundings: dict[str, Any],
    coarse: tuple[np.ndarray, np.ndarray],
    fine: np.ndarray,
    voxel_size_mm: Sequence[float] | np.ndarray,
) -> np.ndarray:
    """(x, y, z) uint8 :class:`Tissue` map of everything around the cord (the cord itself is FLUID here)."""
    u, v, sdf = geometry.u_mm, geometry.v_mm, geometry.cord_sdf_mm
    first, second = coarse
    half_width = geometry.half_width_mm.astype(np.float32)
    half_depth = geometry.half_depth_mm.astype(np.float32)
    canal = np.float32(surroundings["fluid_rim_mm"] + surroundings["dura_ring_mm"])
    radii_u, radii_v = surroundings["outline_radii_mm"]
    outline = (u / np.float32(radii_u)) ** 2 + (
        (v - np.float32(surroundings["outline_dorsal_shift_mm"])) / np.float32(radii_v)
    ) ** 2
    outline_limit = (1 + 0.12 * first) ** 2
    classes = np.full(u.shape, Tissue.MUSCLE, dtype=np.uint8)
    classes[second > surroundings["muscle_dark_threshold"]] = Tissue.MUSCLE_DARK
    fat_rim = 1 - 2 * surroundings["fat_rim_mm"] / max(radii_u, radii_v)
    classes[
        (second < -surroundings["fat_threshold"]) | ((outline > fat_rim * outline_limit) & (first > 0))
    ] = Tissue.FAT
    classes[outline > outline_limit] = Tissue.MEDIUM

    def ellipse(centre_u, centre_v, radius_u, radius_v) -> np.ndarray:
        return ((u - centre_u) / radius_u) ** 2 + ((v - centre_v) / radius_v) ** 2 < 1

    ring = np.float32(surroundings["bone_ring_mm"])
    body_u, body_v = surroundings["body_radii_mm"]
    spine_u, spine_v = surroundings["spinous_radii_mm"]
    side_u, side_v = surroundings["transverse_radii_mm"]
    bone = ellipse(0, 0, half_width + canal + ring, half_depth + canal + ring)
    bone |= ellipse(0, -(half_depth + canal + 0.75 * body_v), body_u, body_v)
    bone |= ellipse(0, half_depth + canal + 0.6 * spine_v, spine_u, spine_v)
    bone |= ((np.abs(u) - half_width - canal - 0.25) / side_u) ** 2 + (
        (v + 0.2 * half_depth) / side_v
    ) ** 2 < 1
    marrow = bone & (fine > surroundings["marrow_threshold"])
    classes[bone] = Tissue.CORTICAL_BONE
    classes[marrow] = Tissue.MARROW
    z_mm = (np.arange(u.shape[2]) + 0.5) * voxel_size_mm[2]
    boundaries = np.asarray(surroundings["disc_boundaries_mm"] or [-1e9])
    disc_slices = (
        np.abs(z_mm[:, None] - boundaries[None, :]).min(axis=1) < surroundings["disc_half_thickness_mm"]
    )
    if disc_slices.any():
        in_disc = bone[:, :, disc_slices]
        view = classes[:, :, disc_slices]
        view[in_disc] = Tissue.DISC
        classes[:, :, disc_slices] = view
    dura = sdf < surroundings["fluid_rim_mm"] + surroundings["dura_ring_mm"] * (1 + 0.25 * first)
    classes[dura] = Tissue.DURA
    classes[sdf < surroundings["fluid_rim_mm"]] = Tissue.FLUID
    return classes


def compose_image(
    geometry: CordGeometry,
    classes: np.ndarray,
    appearance: dict[str, Any],
    fine: np.ndarray,
    fibre: np.ndarray,
    voxel_size_mm: Sequence[float] | np.ndarray,
) -> np.ndarray:
    """Noiseless, unblurred image (WM = 1): tissue means and textures, GM/WM mixed by partial volume."""
    means = np.array([appearance["means"][key] for key in _TISSUE_KEYS], dtype=np.float32)
    cov = np.array([appearance["texture_cov"][key] for key in _TISSUE_KEYS], dtype=np.float32)
    muscle = (classes == Tissue.MUSCLE) | (classes == Tissue.MUSCLE_DARK)
    texture = np.where(muscle, fibre, fine)
    image = means[classes]
    image *= 1 + cov[classes] * texture
    np.maximum(image, 0, out=image)

    voxel_mm = np.float32(np.mean(voxel_size_mm[:2]))
    partial = geometry.cord_sdf_mm < voxel_mm / 2
    cord_sdf, gm_sdf = geometry.cord_sdf_mm[partial], geometry.gm_sdf_mm[partial]
    cord_fraction = np.clip(0.5 - cord_sdf / voxel_mm, 0, 1)
    gm_fraction = np.minimum(np.clip(0.5 - gm_sdf / voxel_mm, 0, 1), cord_fraction)
    u, v = geometry.u_mm[partial], geometry.v_mm[partial]
    slice_index = np.nonzero(partial)[2]
    canal_v = geometry.canal_v_mm[slice_index].astype(np.float32)
    half_width = geometry.half_width_mm[slice_index].astype(np.float32)
    texture = fine[partial]
    dorsal = 1 / (1 + np.exp(-(v - canal_v) / np.float32(0.05)))
    funiculus = dorsal * np.exp(-((u / (0.22 * half_width)) ** 2))
    wm = (1 + (np.float32(appearance["dorsal_funiculus_factor"]) - 1) * funiculus) * (
        1 + np.float32(appearance["texture_cov"]["wm"]) * texture
    )
    septum = dorsal * np.exp(-((u / np.float32(0.02)) ** 2))
    wm *= 1 - (1 - np.float32(appearance["dorsal_septum_factor"])) * septum
    gm = np.float32(appearance["means"]["gm"]) * (1 - np.float32(appearance["texture_cov"]["gm"]) * texture)
    canal = u**2 + (v - canal_v) ** 2 < np.float32(appearance["canal_radius_mm"]) ** 2
    gm[canal] = appearance["canal_mean"]
    image[partial] = (
        (1 - cord_fraction) * image[partial] + gm_fraction * gm + (cord_fraction - gm_fraction) * wm
    )
    return image


def sample_acquisition(config: PhantomConfig, *, rng: np.random.Generator) -> dict[str, Any]:
    """SNR, blur, bias field and Gibbs ringing parameters."""
    coefficients = rng.normal(0, 1, 5)
    return {
        "snr": float(rng.uniform(*config.snr_range)),
        "blur_fwhm_vox": float(rng.uniform(*config.blur_fwhm_vox_range)),
        "bias_variation": float(rng.uniform(*config.bias_variation_range)),
        "bias_coefficients": [float(value) for value in coefficients],
        "bias_drift_amplitude": float(rng.uniform(0.02, 0.08)),
        "bias_drift_wavelength_mm": float(rng.uniform(10.0, 40.0)),
        "bias_drift_phase_rad": float(rng.uniform(0, 2 * np.pi)),
        "gibbs_kept_fraction": float(rng.uniform(0.7, 0.9)) if config.gibbs_ringing else 1.0,
    }


def bias_field(
    shape: Sequence[int], voxel_size_mm: Sequence[float] | np.ndarray, acquisition: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray]:
    """In-plane (x, y) multiplicative field with max/min = 1 + variation, and (z,) slow drift."""
    x = np.linspace(-1, 1, shape[0])[:, None]
    y = np.linspace(-1, 1, shape[1])[None, :]
    c = acquisition["bias_coefficients"]
    log_field = c[0] * x + c[1] * y + c[2] * x * y + c[3] * x**2 + c[4] * y**2
    spread = float(np.ptp(log_field))
    log_field = (log_field - log_field.mean()) * (np.log1p(acquisition["bias_variation"]) / max(spread, 1e-9))
    z_mm = (np.arange(shape[2]) + 0.5) * voxel_size_mm[2]
    drift = 1 + acquisition["bias_drift_amplitude"] * np.sin(
        2 * np.pi * z_mm / acquisition["bias_drift_wavelength_mm"] + acquisition["bias_drift_phase_rad"]
    )
    return np.exp(log_field).astype(np.float32), drift.astype(np.float32)


def blur_and_ring(image: np.ndarray, acquisition: dict[str, Any]) -> np.ndarray:
    """Gaussian point spread (FWHM in voxels) and, if enabled, in-plane k-space truncation (Gibbs)."""
    sigma = acquisition["blur_fwhm_vox"] / (2 * np.sqrt(2 * np.log(2)))
    for axis in range(3):
        image = ndimage.gaussian_filter1d(image, sigma, axis=axis, truncate=3.0, output=np.float32)
    kept = acquisition["gibbs_kept_fraction"]
    if kept < 1.0:
        spectrum = scipy.fft.rfft2(image, axes=(0, 1))
        frequency_x = np.abs(scipy.fft.fftfreq(image.shape[0]))[:, None, None]
        frequency_y = scipy.fft.rfftfreq(image.shape[1])[None, :, None]
        spectrum *= (frequency_x <= 0.5 * kept) & (frequency_y <= 0.5 * kept)
        image = scipy.fft.irfft2(spectrum, s=image.shape[:2], axes=(0, 1)).astype(np.float32)
    return image


def add_rician_noise(image: np.ndarray, sigma: float, *, rng: np.random.Generator) -> np.ndarray:
    """Magnitude of the image plus complex Gaussian noise of standard deviation ``sigma`` per channel."""
    real = image + np.float32(sigma) * rng.standard_normal(image.shape, dtype=np.float32)
    imaginary = rng.standard_normal(image.shape, dtype=np.float32)
    imaginary *= np.float32(sigma)
    np.square(real, out=real)
    np.square(imaginary, out=imaginary)
    real += imaginary
    return np.sqrt(real, out=real)


def wm_interior(
    geometry: CordGeometry, label_map: np.ndarray, voxel_size_mm: Sequence[float] | np.ndarray
) -> np.ndarray:
    """WM voxels at least one voxel from both the cord and the GM surface (for SNR and contrast)."""
    voxel_mm = float(np.mean(voxel_size_mm[:2]))
    return (label_map == Label.WM) & (geometry.cord_sdf_mm < -voxel_mm) & (geometry.gm_sdf_mm > voxel_mm)
