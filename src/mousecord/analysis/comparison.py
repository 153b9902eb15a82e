"""A picture to judge a segmentation against its truth: image, truth and prediction side by side.

For a few axial slices along the cord, zoomed on it: the image alone, the truth's GM/WM outlines on it, and
the prediction's outlines on it with the slice's Dice, so a person sees where the boundaries differ.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mousecord.analysis.metrics import dice
from mousecord.io.atomic import atomic_output
from mousecord.labels import LABEL_NAMES, QC_COLOURS, TISSUE_LABELS, Label

#: Half width of the zoomed window around the cord (mm): a mouse cord is about 2-3 mm across.
ZOOM_HALF_WIDTH_MM = 1.8


def render_comparison_png(
    image: np.ndarray,
    truth: np.ndarray,
    prediction: np.ndarray,
    voxel_size_mm: tuple[float, float, float],
    path: Path | str,
    *,
    n_slices: int = 4,
    title: str | None = None,
) -> Path:
    """Draw image | truth | prediction for ``n_slices`` axial slices spread over the truth's cord.

    Args:
        image: (x, y, z) intensities, z along the cord.
        truth, prediction: (x, y, z) label maps (0 background, 1 GM, 2 WM) on the image's grid.
        voxel_size_mm: (3,) voxel size, for the aspect ratio and the zoom.
        path: output ``.png``, written atomically.
        n_slices: rows of the figure.
        title: figure title.

    Returns:
        ``path``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    image, truth, prediction = np.asarray(image, np.float32), np.asarray(truth), np.asarray(prediction)
    if not image.shape == truth.shape == prediction.shape:
        shapes = f"image {image.shape}, truth {truth.shape}, prediction {prediction.shape}"
        raise ValueError(f"the three arrays must share one grid, got {shapes}")
    with_cord = np.flatnonzero(truth.any(axis=(0, 1)))
    first, last = (with_cord[0], with_cord[-1]) if with_cord.size else (0, image.shape[2] - 1)
    slices = np.unique(np.linspace(first, last, n_slices + 2)[1:-1].round().astype(int))
    aspect = voxel_size_mm[1] / voxel_size_mm[0]
    half = max(int(round(ZOOM_HALF_WIDTH_MM / voxel_size_mm[0])), 8)

    figure = Figure(figsize=(9.0, 3.3 * len(slices) + 0.8), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(slices), 3, squeeze=False)
    for row, z in enumerate(slices):
        window = _window(truth[:, :, z] > 0, half)
        picture = image[window][:, :, z]
        low, high = np.percentile(picture, [1, 99.5])
        style = {"cmap": "gray", "vmin": low, "vmax": high, "origin": "lower", "aspect": aspect}
        panels = ((None, "image"), (truth, "truth"), (prediction, "prediction"))
        for column, (labels, name) in enumerate(panels):
            axis = axes[row, column]
            axis.imshow(picture.T, interpolation="nearest", **style)
            axis.set_xticks([])
            axis.set_yticks([])
            label = f"{name}, z = {z}" if column == 0 else name
            if labels is not None:
                _outline(axis, labels[window][:, :, z])
            if labels is prediction:
                label += "  " + _slice_dice(truth[:, :, z], prediction[:, :, z])
            axis.set_title(label, fontsize=9)
    handles = [_line(QC_COLOURS[Label.GM], "GM boundary"), _line(QC_COLOURS[Label.WM], "cord (WM) boundary")]
    figure.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=9, frameon=False)
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout(rect=(0, 0.03, 1, 0.97 if title else 1))
    with atomic_output(path) as temporary:
        figure.savefig(temporary, format="png", facecolor="white")
    return Path(path)


def _window(cord: np.ndarray, half: int) -> tuple[slice, slice]:
    """A square window of ``2 * half`` voxels centred on the cord of one slice (the middle if none)."""
    if cord.any():
        centre = [int(round(float(np.mean(indices)))) for indices in np.nonzero(cord)]
    else:
        centre = [size // 2 for size in cord.shape]
    return tuple(
        slice(max(0, min(c - half, size - 2 * half)), max(0, min(c - half, size - 2 * half)) + 2 * half)
        for c, size in zip(centre, cord.shape, strict=True)
    )


def _outline(axis, labels: np.ndarray) -> None:
    """The cord's outer boundary in the WM colour and the GM boundary in the GM colour, as lines (the grey
    values under them stay visible; the GM/WM boundary is drawn once, in red)."""
    outlines = ((labels > 0, QC_COLOURS[Label.WM]), (labels == Label.GM, QC_COLOURS[Label.GM]))
    for mask, colour in outlines:
        mask = mask.T.astype(np.float32)
        if mask.any() and not mask.all():
            axis.contour(mask, levels=[0.5], colors=[colour], linewidths=1.2, origin="lower")


def _slice_dice(truth: np.ndarray, prediction: np.ndarray) -> str:
    values = {LABEL_NAMES[tissue]: dice(truth == tissue, prediction == tissue) for tissue in TISSUE_LABELS}
    return "Dice " + ", ".join(f"{name} {value:.2f}" for name, value in values.items())


def _line(colour, name: str):
    from matplotlib.lines import Line2D

    return Line2D([0], [0], color=colour, linewidth=2, label=name)


__all__ = ["render_comparison_png"]
