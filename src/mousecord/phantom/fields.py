"""Smooth random fields, made cheaply by separable cubic B-spline upsampling of a coarse noise grid."""

from __future__ import annotations

import math

import numpy as np


def _bspline_weights(phase: float) -> tuple[float, float, float, float]:
    t = phase
    return ((1 - t) ** 3 / 6, (3 * t**3 - 6 * t**2 + 4) / 6, (-3 * t**3 + 3 * t**2 + 3 * t + 1) / 6, t**3 / 6)


def _upsample_axis(coefficients: np.ndarray, factor: int, axis: int) -> np.ndarray:
    """Evaluate a cubic B-spline, knots every ``factor`` samples along ``axis`` (length (n - 3) * factor)."""
    moved = np.moveaxis(coefficients, axis, 0)
    count = moved.shape[0] - 3
    output = np.empty((count * factor, *moved.shape[1:]), dtype=np.float32)
    taps = [moved[shift : shift + count] for shift in range(4)]
    for phase in range(factor):
        weights = _bspline_weights(phase / factor)
        target = output[phase::factor]
        np.multiply(taps[0], np.float32(weights[0]), out=target)
        for tap, weight in zip(taps[1:], weights[1:], strict=True):
            target += tap * np.float32(weight)
    return np.moveaxis(output, 0, axis)


def smooth_noise(
    shape: tuple[int, ...], spacing_vox: tuple[int, ...], *, rng: np.random.Generator
) -> np.ndarray:
    """A random field with zero mean and unit variance, smooth over about ``spacing_vox`` voxels per axis.

    Args:
        shape: output shape.
        spacing_vox: knot spacing per axis in voxels (integers >= 1); larger means smoother.
        rng: random generator.

    Returns:
        float32 array of ``shape``.
    """
    factors = [max(int(round(spacing)), 1) for spacing in spacing_vox]
    grid = tuple(math.ceil(size / factor) + 3 for size, factor in zip(shape, factors, strict=True))
    field = rng.standard_normal(grid, dtype=np.float32)
    # the last axis first: the arrays stay small until the final, full-size pass
    for axis in sorted(range(len(shape)), key=lambda index: -factors[index]):
        if factors[axis] > 1:
            field = _upsample_axis(field, factors[axis], axis)
        else:
            field = np.moveaxis(np.moveaxis(field, axis, 0)[1:-2], 0, axis)
    field = field[tuple(slice(0, size) for size in shape)]
    field = np.ascontiguousarray(field)
    sample = field[::3, ::3, ::3] if field.ndim == 3 else field  # statistics of a subsample are enough
    field -= np.float32(sample.mean(dtype=np.float64))
    field *= np.float32(1.0 / max(float(sample.std(dtype=np.float64)), 1e-12))
    return field


def smooth_curve(
    positions: np.ndarray,
    *,
    amplitude: float,
    wavelength_range: tuple[float, float],
    rng: np.random.Generator,
    components: int = 3,
) -> tuple[np.ndarray, list[dict[str, float]]]:
    """A smooth 1D random curve: a sum of sinusoids, returned with its JSON-ready parameters."""
    terms = []
    curve = np.zeros_like(positions, dtype=np.float64)
    for index in range(components):
        wavelength = float(rng.uniform(*wavelength_range))
        term = {
            "amplitude": float(amplitude * rng.uniform(0.3, 1.0) / (index + 1)),
            "wavelength_mm": wavelength,
            "phase_rad": float(rng.uniform(0, 2 * np.pi)),
        }
        curve += term["amplitude"] * np.sin(2 * np.pi * positions / wavelength + term["phase_rad"])
        terms.append(term)
    return curve, terms
