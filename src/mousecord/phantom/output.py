"""Files at the edge: write a phantom (NIfTI image, labels, JSON sidecar, PNG) atomically; draw the PNG."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from mousecord.errors import OutputError
from mousecord.io import Volume, atomic_output, save_volume, split_suffix
from mousecord.labels import QC_COLOURS, TISSUE_LABELS, cord_centroids
from mousecord.phantom.config import Phantom

_NIFTI_SUFFIXES = (".nii", ".nii.gz")


def sidecar_path(image_path: Path | str) -> Path:
    """The JSON file written beside an image: ``phantom.nii.gz`` -> ``phantom.json``."""
    image_path = Path(image_path)
    return image_path.with_name(split_suffix(image_path)[0] + ".json")


def check_output_paths(
    image_path: Path | str, labels_path: Path | str | None = None, png_path: Path | str | None = None
) -> None:
    """Raise :class:`OutputError` for a wrong suffix or two outputs with the same name (before any work)."""
    paths = [Path(image_path), sidecar_path(image_path)]
    for path in [image_path, labels_path]:
        if path is not None and split_suffix(Path(path))[1].lower() not in _NIFTI_SUFFIXES:
            raise OutputError(f"{path}: expected a .nii or .nii.gz output name")
    if labels_path is not None:
        paths.append(Path(labels_path))
    if png_path is not None:
        if Path(png_path).suffix.lower() != ".png":
            raise OutputError(f"{png_path}: expected a .png output name")
        paths.append(Path(png_path))
    resolved = [path.resolve() for path in paths]
    if len(set(resolved)) != len(resolved):
        raise OutputError(f"{image_path}: image, labels, sidecar and PNG outputs must have different names")


def write_phantom(
    phantom: Phantom,
    image_path: Path | str,
    labels_path: Path | str | None = None,
    *,
    png_path: Path | str | None = None,
    metadata: dict[str, Any] | None = None,
) -> list[Path]:
    """Write the image (float32), labels (uint8), a JSON sidecar of the parameters and optionally a PNG.

    All files are written to temporary names first and renamed only once every one of them succeeded, so an
    error leaves nothing behind.

    Args:
        phantom: from :func:`~mousecord.phantom.generate_phantom`.
        image_path: ``.nii`` or ``.nii.gz``; the sidecar is the same name with ``.json``.
        labels_path: ``.nii`` or ``.nii.gz`` for the label map (not written if None).
        png_path: picture from :func:`render_phantom_png` (not written if None).
        metadata: extra JSON-ready entries for the sidecar (e.g. the seed).

    Returns:
        The paths written.

    Raises:
        OutputError: wrong suffix, clashing names, or an unwritable location.
    """
    check_output_paths(image_path, labels_path, png_path)
    sidecar = {**phantom.parameters, **(metadata or {})}
    targets = [Path(image_path), sidecar_path(image_path)]
    targets += [Path(labels_path)] if labels_path is not None else []
    targets += [Path(png_path)] if png_path is not None else []
    with contextlib.ExitStack() as stack:
        temporaries = [stack.enter_context(atomic_output(path)) for path in targets]
        save_volume(phantom.image, temporaries[0], dtype=np.float32)
        temporaries[1].write_text(json.dumps(sidecar, indent=1) + "\n")
        next_index = 2
        if labels_path is not None:
            save_volume(phantom.label_map, temporaries[next_index], dtype=np.uint8)
            next_index += 1
        if png_path is not None:
            render_phantom_png(phantom.image, phantom.label_map, temporaries[next_index])
    return targets


def _cord_centres(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-slice cord centroid (x, y) in voxels, filled in from neighbours where a slice has no cord."""
    present, centroids = cord_centroids(labels)
    every = np.arange(labels.shape[2])
    centres = [
        np.interp(every, present, centroids[:, axis])
        if present.size
        else np.full(labels.shape[2], (labels.shape[axis] - 1) / 2)
        for axis in (0, 1)
    ]
    return centres[0], centres[1]


def _overlay(labels: np.ndarray, alpha: float = 0.4) -> np.ndarray:
    rgba = np.zeros((*labels.shape, 4), dtype=np.float32)
    for label in TISSUE_LABELS:
        rgba[labels == label] = (*QC_COLOURS[label], alpha)
    return rgba


def render_phantom_png(
    image: Volume, label_map: Volume, path: Path | str, *, n_axial_slices: int = 8, title: str | None = None
) -> Path:
    """Draw an axial mosaic along the cord (full field, then zoomed with the label overlay) and a straightened
    longitudinal view through the cord centre with the overlay; GM red, WM cyan. Written atomically.

    Args:
        image: (x, y, z) intensities, z along the cord.
        label_map: (x, y, z) labels on the same grid.
        path: output ``.png``.
        n_axial_slices: number of axial slices, spread over the slices that hold cord.
        title: figure title.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    data, labels = np.asarray(image.data, dtype=np.float32), np.asarray(label_map.data)
    voxel = image.voxel_size_mm
    low, high = np.percentile(data[:, :, :: max(data.shape[2] // 50, 1)], [0.5, 99.7])
    centre_x, centre_y = _cord_centres(labels)
    with_cord = np.flatnonzero(labels.any(axis=(0, 1)))
    first, last = (with_cord[0], with_cord[-1]) if with_cord.size else (0, data.shape[2] - 1)
    chosen = (
        np.linspace(first + 0.04 * (last - first), last - 0.04 * (last - first), n_axial_slices)
        .round()
        .astype(int)
    )
    zoom_half = int(round(2.0 / voxel[0]))

    figure = Figure(figsize=(2.0 * n_axial_slices, 8.6), dpi=110)
    FigureCanvasAgg(figure)
    grid = figure.add_gridspec(3, n_axial_slices, height_ratios=[1, 1, 1.25], hspace=0.12, wspace=0.04)
    style = {"cmap": "gray", "vmin": low, "vmax": high, "interpolation": "nearest", "origin": "lower"}
    for column, slice_index in enumerate(chosen):
        axial = data[:, :, slice_index].T
        axis = figure.add_subplot(grid[0, column])
        axis.imshow(axial, aspect=voxel[1] / voxel[0], **style)
        axis.set_title(f"z = {slice_index}", fontsize=8)
        axis.set_axis_off()
        cx, cy = int(round(centre_x[slice_index])), int(round(centre_y[slice_index]))
        window = (
            slice(max(cx - zoom_half, 0), cx + zoom_half),
            slice(max(cy - zoom_half, 0), cy + zoom_half),
        )
        axis = figure.add_subplot(grid[1, column])
        axis.imshow(data[window[0], window[1], slice_index].T, aspect=voxel[1] / voxel[0], **style)
        axis.imshow(
            _overlay(labels[window[0], window[1], slice_index].T),
            interpolation="nearest",
            origin="lower",
            aspect=voxel[1] / voxel[0],
        )
        axis.set_axis_off()
    straight_image, straight_labels = _straightened(data, labels, centre_x, centre_y, zoom_half)
    axis = figure.add_subplot(grid[2, :])
    axis.imshow(straight_image, aspect=voxel[1] / voxel[2], **style)
    axis.imshow(
        _overlay(straight_labels, alpha=0.3),
        interpolation="nearest",
        origin="lower",
        aspect=voxel[1] / voxel[2],
    )
    axis.set_title("longitudinal view through the cord centre (straightened), GM red, WM cyan", fontsize=8)
    axis.set_xlabel("slice (z)", fontsize=8)
    axis.tick_params(labelsize=7)
    axis.set_yticks([])
    if title:
        figure.suptitle(title, fontsize=10)
    with atomic_output(path) as temporary:
        figure.savefig(temporary, format="png", facecolor="white", bbox_inches="tight")
    return Path(path)


def _straightened(data, labels, centre_x, centre_y, half: int) -> tuple[np.ndarray, np.ndarray]:
    """(2 * half, z) image and labels along y through the cord centre, shifted so the cord stays centred."""
    n_x, n_y, n_z = data.shape
    rows = np.clip(np.round(centre_x).astype(int), 0, n_x - 1)
    offsets = np.arange(-half, half)
    columns = np.round(centre_y).astype(int)[None, :] + offsets[:, None]
    valid = (columns >= 0) & (columns < n_y)
    columns = np.clip(columns, 0, n_y - 1)
    slices = np.broadcast_to(np.arange(n_z)[None, :], columns.shape)
    image = np.where(valid, data[rows[None, :], columns, slices], np.nan)
    label = np.where(valid, labels[rows[None, :], columns, slices], 0)
    return image, label
