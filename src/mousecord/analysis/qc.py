"""Visual QC report after SCT's qc2 model: per case PNGs plus a JSON record; ``index.html`` rebuilt from all.

Layout of a QC folder (several runs, even in parallel, can feed one folder)::

    DIR/index.html                  the report, rebuilt from every record (offline: inline JS/CSS)
    DIR/records/<entry>.json        one record per case: paths, command, version, date, metrics, images
    DIR/images/<entry>/*.png        axial mosaic and longitudinal view, background and overlay each
    DIR/.report_id                  random id naming this report's marks in the browser's localStorage

An entry is keyed by subject, image and segmentation names, so re-running QC on the same pair replaces its
entry. Images: axial slices evenly spaced along the cord, each cropped to ``crop_mm`` around the cord and
resampled to ``pixel_size_mm`` (default 0.05 mm, the usual acquisition resolution: mouse GM horns are
only a few tenths of a mm wide and SCT's 0.1 mm would blur them), shown with anterior up and the subject's
right on the left (radiological); a longitudinal view (sagittal above, coronal below, inferior on the left)
resliced along the fitted centerline so that a curved cord stays in view (slices across another axis than
the header's superior-inferior one name their own directions, on the pictures and in the captions). Each
tile is named by the file's own voxel axis and index (``k120``: what FSLeyes or ITK-SNAP shows for that
slice), whatever order and flips the file stores its axes in.
Overlays are GM red and WM cyan (:data:`mousecord.labels.QC_COLOURS`) on a transparent background.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import logging
import re
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from mousecord.analysis.labelmaps import (
    label_source,
    load_label_map,
    measured_cord_axis,
    segment_record,
    segmented_voxel_size,
)
from mousecord.analysis.shape import centerline_polynomials
from mousecord.errors import ImageFormatError, MousecordWarning, OutputError
from mousecord.io import atomic_output, load_nifti, split_suffix
from mousecord.labels import QC_COLOURS, TISSUE_LABELS, cord_centroids

logger = logging.getLogger(__name__)

#: Screen pixels per resampled pixel in the PNGs (nearest neighbour), so the report needs no scaling.
DISPLAY_ZOOM = 2
_LOCK_NAME = ".mousecord_qc.lock"
_IMAGE_KINDS = ("axial", "longitudinal")
#: The directions canonical (RAS) axes 0, 1, 2 rise and fall towards, for the pictures' labels.
_POSITIVE, _NEGATIVE = "RAS", "LPI"
_NAMES, _NAMES_NEGATIVE = ("subject's R", "A", "S"), ("subject's L", "P", "inferior")


def write_qc_entry(
    image_path: Path,
    segmentation_path: Path,
    qc_dir: Path,
    *,
    subject: str | None = None,
    command: str = "",
    metrics: dict | None = None,
    cord_axis: str | int = "auto",
    voxel_size_mm: Sequence[float] | None = None,
) -> Path:
    """Write one case's QC images and record into ``qc_dir`` and rebuild ``qc_dir/index.html``.

    Args:
        image_path: the input image (3D NIfTI).
        segmentation_path: its 0/1/2 label map, in the image's space (or either file of a GM/WM mask pair).
        qc_dir: report folder, created if needed; shared by any number of runs.
        subject: subject name shown in the report (never guessed from folder names).
        command: the command line that produced the segmentation, for the record.
        metrics: optional JSON-serialisable numbers shown with the entry (e.g. Dice, volumes).
        cord_axis: the axis along the cord, the axial slices being across it: "auto" (the one ``mousecord
            segment`` used, as the segmentation's sidecar says; without one, a single slice's normal, else
            the axis the labelled cord is clearly longest along, see
            :func:`~mousecord.analysis.labelmaps.measured_cord_axis`, else the header's superior-inferior
            axis), "header" or the segmentation file's array axis 0, 1 or 2.
        voxel_size_mm: the true voxel size where the headers' is wrong (as ``mousecord segment`` takes it);
            None: the one segment was given, as the segmentation's sidecar records it, else the header's.

    Returns:
        Path of the JSON record written.

    Raises:
        ImageFormatError: unreadable inputs, or image and segmentation on different grids.
        OutputError: ``qc_dir`` cannot be written.

    Example:
        >>> image, segmentation = Path("sub-01_T1w.nii.gz"), Path("sub-01_T1w_seg.nii.gz")
        >>> write_qc_entry(image, segmentation, Path("qc"), subject="sub-01")  # doctest: +SKIP
    """
    from mousecord import __version__

    image_path, segmentation_path, qc_dir = Path(image_path), Path(segmentation_path), Path(qc_dir)
    segmentation_source = label_source(segmentation_path)
    voxel_size_mm = voxel_size_mm or segmented_voxel_size(segmentation_source)
    image = load_nifti(image_path, dtype=np.float32, voxel_size_mm=voxel_size_mm)
    segmentation = load_label_map(segmentation_source, voxel_size_mm=voxel_size_mm)
    if image.volume.shape != segmentation.volume.shape or not np.allclose(
        image.volume.affine, segmentation.volume.affine, atol=1e-3
    ):
        differs = (
            f"shape {segmentation.volume.shape} against {image.volume.shape}"
            if image.volume.shape != segmentation.volume.shape
            else "same shape, another affine: position, orientation or voxel size"
        )
        raise ImageFormatError(
            f"{segmentation_path.name}: segmentation grid does not match image {image_path.name} "
            f"({differs}); QC needs the segmentation in the image's space"
        )
    segmented_axis = measured_cord_axis(segmentation, segmentation_source, cord_axis)
    image_slices, slice_voxel_size_mm = image.across_cord(segmented_axis)
    # a single slice has no length to view along
    kinds = _IMAGE_KINDS if image_slices.shape[2] > 1 else ("axial",)
    file_axis = "ijk"[image.file_axis(segmented_axis)]  # tiles named as a viewer shows the file's voxels
    rendered = render_qc_images(
        image_slices,
        segmentation.across_cord(segmented_axis)[0],
        voxel_size_mm=slice_voxel_size_mm,
        cord_axis=segmented_axis,
        slice_name=lambda index: f"{file_axis}{image.file_index(segmented_axis, index)}",
    )
    run = segment_record(segmentation_source)
    notes = [str(message) for message in run.get("warnings", [])]
    given_size = run.get("settings", {}).get("voxel_size_mm")
    if given_size:
        notes.append(f"segmented with the voxel size given as {given_size} mm, not the header's")
    model = run.get("model", {})
    if not np.any(segmentation.volume.data > 0):
        notes.append("the segmentation is empty (no cord): the slices shown are spread over the whole image")
    record: dict[str, Any] = {
        "subject": subject,
        "image": str(image_path.resolve()),
        "segmentation": str(segmentation_path.resolve()),
        "command": command,
        "mousecord_version": __version__,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "metrics": metrics or {},
        "slice_axis": file_axis,
        "axial_slices": [image.file_index(segmented_axis, index) for index in rendered["axial_slices"]],
        "captions": rendered["captions"],
        "model": model.get("installed_name") or model.get("name"),
        "notes": notes,
        "images": {},
    }
    with _locked(qc_dir):
        entry_id = _entry_id(qc_dir, subject, image_path, segmentation_path)
        record = {"id": entry_id, **record}
        for kind in kinds:
            for layer in ("background", "overlay"):
                relative = Path("images") / entry_id / f"{kind}_{layer}.png"
                _save_png(
                    rendered[f"{kind}_{layer}"],
                    qc_dir / relative,
                    labels=rendered.get(f"{kind}_labels") if layer == "background" else None,
                )
                record["images"][f"{kind}_{layer}"] = relative.as_posix()
        record_path = qc_dir / "records" / f"{entry_id}.json"
        with atomic_output(record_path) as temporary:
            temporary.write_text(json.dumps(_finite(record), indent=2, allow_nan=False) + "\n")
        _rebuild_index_unlocked(qc_dir)
    logger.debug("QC entry written: %s (report %s)", record_path, qc_dir / "index.html")
    return record_path


def rebuild_index(qc_dir: Path | str) -> Path:
    """Rebuild ``qc_dir/index.html`` from every record in ``qc_dir/records`` (under the folder's lock)."""
    qc_dir = Path(qc_dir)
    with _locked(qc_dir):
        return _rebuild_index_unlocked(qc_dir)


def render_qc_images(
    image: np.ndarray,
    label_map: np.ndarray,
    *,
    voxel_size_mm: tuple[float, float, float] | np.ndarray,
    pixel_size_mm: float = 0.05,
    crop_mm: float = 4.0,
    n_axial: int = 24,
    columns: int = 8,
    cord_axis: int = 2,
    slice_name: Callable[[int], str] | None = None,
) -> dict[str, Any]:
    """Axial mosaic and longitudinal view around the cord, as background (grey) and overlay (RGBA) arrays.

    Args:
        image: (x, y, z) canonical RAS intensities, z along the cord.
        cord_axis: the canonical axis ``image``'s z was before the cord's axis was put last
            (:meth:`~mousecord.io.nifti.LoadedImage.across_cord`): it names the directions in the labels.
        slice_name: the label of the tile of slice ``z``; default: the canonical axis and index, e.g. ``z12``.
        label_map: (x, y, z) 0/1/2 labels on the same grid.
        voxel_size_mm: (3,) voxel size in mm.
        pixel_size_mm: resampling step of the pictures, in mm.
        crop_mm: side of the square shown around the cord in each axial slice (and height of the long view).
        n_axial: number of axial slices in the mosaic (fewer if the cord spans fewer slices).
        columns: mosaic columns.

    Returns:
        ``axial_background``, ``longitudinal_background``: (rows, cols) uint8; ``axial_overlay``,
        ``longitudinal_overlay``: (rows, cols, 4) uint8 RGBA, transparent off the cord; ``axial_slices``:
        the slice index of each tile; ``axial_labels``, ``longitudinal_labels``: text to draw, as
        ``(row, col, text)`` in output pixels; ``captions``: the report's text under each picture, which
        says how it is oriented. Arrays are already zoomed by :data:`DISPLAY_ZOOM`.
    """
    image, label_map = np.asarray(image, dtype=np.float32), np.asarray(label_map)
    sizes = np.asarray(voxel_size_mm, dtype=np.float64)
    left, up = (axis for axis in range(3) if axis != cord_axis)  # the canonical axes of x and y
    along = f"{_NEGATIVE[cord_axis]}←→{_POSITIVE[cord_axis]}"
    name_slice = slice_name or (lambda index: f"{'xyz'[cord_axis]}{index}")
    centre_x, centre_y, z_range = _centerline_for_qc(label_map > 0, sizes)
    n_pixels = max(int(round(crop_mm / pixel_size_mm)), 8)
    offsets = (np.arange(n_pixels) - (n_pixels - 1) / 2) * pixel_size_mm  # mm, centred
    slices = np.unique(
        np.linspace(z_range[0], z_range[1], min(n_axial, z_range[1] - z_range[0] + 1)).round().astype(int)
    )
    # Axial tiles: rows go from anterior (top) to posterior, columns from the subject's right to left.
    rows_mm, cols_mm = offsets[::-1], offsets[::-1]
    tiles_image, tiles_labels = [], []
    rows_grid, cols_grid = np.meshgrid(rows_mm, cols_mm, indexing="ij")
    for index in slices:
        y_mm = centre_y(index * sizes[2]) + rows_grid
        x_mm = centre_x(index * sizes[2]) + cols_grid
        coordinates = np.stack([x_mm / sizes[0], y_mm / sizes[1], np.full_like(x_mm, index)])
        tiles_image.append(ndimage.map_coordinates(image, coordinates, order=1, mode="constant", cval=0.0))
        tiles_labels.append(ndimage.map_coordinates(label_map, coordinates, order=0, mode="constant", cval=0))
    n_rows = -(-len(slices) // columns)
    mosaic_shape = (n_rows * n_pixels, min(columns, len(slices)) * n_pixels)
    axial_image, axial_labels = np.zeros(mosaic_shape, np.float32), np.zeros(mosaic_shape, np.uint8)
    text = []
    for position, (tile_image, tile_labels) in enumerate(zip(tiles_image, tiles_labels, strict=True)):
        row, col = divmod(position, columns)
        window = (slice(row * n_pixels, (row + 1) * n_pixels), slice(col * n_pixels, (col + 1) * n_pixels))
        axial_image[window], axial_labels[window] = tile_image, tile_labels
        text.append(
            (
                row * n_pixels * DISPLAY_ZOOM + 3,
                col * n_pixels * DISPLAY_ZOOM + 4,
                name_slice(int(slices[position])),
            )
        )
    text += [
        (3, n_pixels * DISPLAY_ZOOM // 2 - 3, _POSITIVE[up]),
        (n_pixels * DISPLAY_ZOOM // 2, 3, _POSITIVE[left]),
    ]
    long_image, long_labels = _longitudinal(
        image, label_map, sizes, centre_x, centre_y, z_range, offsets, pixel_size_mm
    )
    low, high = _intensity_window(np.concatenate([axial_image.ravel(), long_image.ravel()]))
    height = n_pixels * DISPLAY_ZOOM
    return {
        "axial_background": _zoom(_to_grey(axial_image, low, high)),
        "axial_overlay": _zoom(_overlay(axial_labels)),
        "longitudinal_background": _zoom(_to_grey(long_image, low, high)),
        "longitudinal_overlay": _zoom(_overlay(long_labels)),
        "axial_slices": [int(index) for index in slices],
        "axial_labels": text,
        "longitudinal_labels": [
            (3, 4, f"{'sagittal  ' if cord_axis == 2 else ''}{_POSITIVE[up]}↑  {along}"),
            (height + 3, 4, f"{'coronal  ' if cord_axis == 2 else ''}{_POSITIVE[left]}↑  {along}"),
        ],
        "captions": {
            "axial": f"Axial slices along the cord ({_NAMES[up]} up, {_NAMES[left]} on the left)",
            "longitudinal": "Along the cord, resliced through the centerline: "
            + (
                "sagittal (top), coronal (bottom)"
                if cord_axis == 2
                else f"{_NAMES[up]} up (top), {_NAMES[left]} up (bottom)"
            )
            + f"; {_NAMES_NEGATIVE[cord_axis]} on the left",
        },
    }


def _centerline_for_qc(cord: np.ndarray, sizes: np.ndarray):
    """Smooth centre functions x(z_mm), y(z_mm) in mm and the slice range to show."""
    slices, centroids = cord_centroids(cord)
    if slices.size == 0:
        warnings.warn("QC: segmentation is empty; showing the image centre", MousecordWarning, stacklevel=3)
        middle = (np.array(cord.shape[:2]) - 1) / 2 * sizes[:2]
        return (
            (lambda z_mm: middle[0] + 0 * z_mm),
            (lambda z_mm: middle[1] + 0 * z_mm),
            (0, cord.shape[2] - 1),
        )
    centroids = centroids * sizes[:2]
    z_mm = slices * sizes[2]
    # The morphometrics centerline (same polynomial fit), evaluated anywhere and held at the end slices.
    fit_x, fit_y = centerline_polynomials(z_mm, centroids[:, 0], centroids[:, 1])
    low, high = z_mm[0], z_mm[-1]
    return (
        (lambda z: fit_x(np.clip(z, low, high))),
        (lambda z: fit_y(np.clip(z, low, high))),
        (int(slices[0]), int(slices[-1])),
    )


def _longitudinal(image, label_map, sizes, centre_x, centre_y, z_range, offsets, pixel_size_mm):
    """Sagittal (y-z) above coronal (x-z), resliced through the centerline; z left (I) to right (S)."""
    z_start_mm, z_stop_mm = z_range[0] * sizes[2], z_range[1] * sizes[2]
    step = max(pixel_size_mm, (z_stop_mm - z_start_mm) / 1200.0)  # cap the width of very long views
    z_mm = np.arange(z_start_mm, z_stop_mm + step / 2, step)
    across = offsets[::-1][:, None]  # top row = anterior (sagittal) / right (coronal)
    x_line, y_line = centre_x(z_mm)[None, :], centre_y(z_mm)[None, :]
    z_grid = np.broadcast_to(z_mm[None, :] / sizes[2], (across.size, z_mm.size))
    sagittal = np.stack(
        [np.broadcast_to(x_line / sizes[0], z_grid.shape), (y_line + across) / sizes[1], z_grid]
    )
    coronal = np.stack(
        [(x_line + across) / sizes[0], np.broadcast_to(y_line / sizes[1], z_grid.shape), z_grid]
    )
    pictures = [
        np.concatenate(
            [
                ndimage.map_coordinates(volume, grid, order=order, mode="constant")
                for grid in (sagittal, coronal)
            ]
        )
        for volume, order in ((image, 1), (label_map, 0))
    ]
    return pictures[0], pictures[1].astype(np.uint8)


def _intensity_window(values: np.ndarray) -> tuple[float, float]:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0, 1.0
    low, high = np.percentile(values, [0.5, 99.5])
    return float(low), float(high if high > low else low + 1.0)


def _to_grey(values: np.ndarray, low: float, high: float) -> np.ndarray:
    return (np.clip((values - low) / (high - low), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _overlay(labels: np.ndarray) -> np.ndarray:
    rgba = np.zeros((*labels.shape, 4), np.uint8)
    for label in TISSUE_LABELS:
        rgba[labels == label] = [*(round(channel * 255) for channel in QC_COLOURS[label]), 255]
    return rgba


def _zoom(array: np.ndarray) -> np.ndarray:
    return np.repeat(np.repeat(array, DISPLAY_ZOOM, axis=0), DISPLAY_ZOOM, axis=1)


def _save_png(array: np.ndarray, path: Path, *, labels: list | None = None) -> None:
    """Write ``array`` pixel for pixel (grey or RGBA) as PNG, with optional white text, atomically."""
    from matplotlib.figure import Figure

    height, width = array.shape[:2]
    dpi = 100
    figure = Figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    axes = figure.add_axes((0, 0, 1, 1))
    axes.set_axis_off()
    grey = array.ndim == 2
    axes.imshow(
        array, cmap="gray" if grey else None, vmin=0, vmax=255, interpolation="nearest", aspect="auto"
    )
    for row, col, text in labels or []:
        axes.text(col, row, text, color="yellow", fontsize=9, va="top", ha="left", family="DejaVu Sans")
    with atomic_output(path) as temporary:
        figure.savefig(temporary, format="png", dpi=dpi, transparent=not grey)


def has_qc_entry(
    qc_dir: Path | str, image_path: Path | str, segmentation_path: Path | str, *, subject: str | None = None
) -> bool:
    """Whether ``qc_dir`` holds an entry of this image and segmentation (see :func:`write_qc_entry`)."""
    qc_dir, image_path, segmentation_path = Path(qc_dir), Path(image_path), Path(segmentation_path)
    name = _entry_name(subject, image_path, segmentation_path)
    paths = _entry_paths(image_path, segmentation_path)
    return any(
        _record_paths(qc_dir / "records" / f"{entry}.json") == paths for entry in (name, _hashed(name, paths))
    )


def _entry_name(subject: str | None, image_path: Path, segmentation_path: Path) -> str:
    parts = [subject or "", split_suffix(image_path)[0], split_suffix(segmentation_path)[0]]
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", "__".join(part for part in parts if part)).strip("-.")
    if len(name) > 100:
        name = name[:80] + "_" + hashlib.sha1(name.encode()).hexdigest()[:10]
    return name or "entry"


def _entry_paths(image_path: Path, segmentation_path: Path) -> list[str]:
    return [str(image_path.resolve()), str(segmentation_path.resolve())]


def _hashed(name: str, paths: list[str]) -> str:
    return f"{name}_{hashlib.sha1(chr(0).join(paths).encode()).hexdigest()[:8]}"


def _record_paths(record: Path) -> list | None:
    """The image and segmentation an entry's record shows; None where there is no readable record."""
    try:
        existing = json.loads(record.read_text())
    except (OSError, ValueError):
        return None
    return [existing.get("image"), existing.get("segmentation")] if isinstance(existing, dict) else None


def _entry_id(qc_dir: Path, subject: str | None, image_path: Path, segmentation_path: Path) -> str:
    """The entry's name in ``qc_dir``: subject and file names; where an entry of that name shows other
    files (two folders' ``chunk.nii.gz``), with a hash of this entry's paths, so that neither replaces the
    other. The same files keep their entry: a rerun replaces it."""
    name = _entry_name(subject, image_path, segmentation_path)
    paths = _entry_paths(image_path, segmentation_path)
    record = qc_dir / "records" / f"{name}.json"
    if not record.exists() or _record_paths(record) == paths:  # unreadable: not this entry's to replace
        return name
    return _hashed(name, paths)


@contextlib.contextmanager
def _locked(qc_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``qc_dir`` (POSIX ``flock``; no locking where unavailable)."""
    try:
        qc_dir.mkdir(parents=True, exist_ok=True)
        stream = (qc_dir / _LOCK_NAME).open("a")
    except OSError as error:
        raise OutputError(f"{qc_dir}: cannot create the QC folder: {error.strerror or error}") from error
    with stream:
        try:
            import fcntl
        except ImportError:  # Windows: records and index are still written atomically
            yield
            return
        fcntl.flock(stream, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(stream, fcntl.LOCK_UN)


def _rebuild_index_unlocked(qc_dir: Path) -> Path:
    records = []
    for path in sorted((qc_dir / "records").glob("*.json")):
        try:
            records.append(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError) as error:
            warnings.warn(f"{path}: unreadable QC record skipped ({error})", MousecordWarning, stacklevel=3)
    records.sort(
        key=lambda record: (
            record.get("subject") or "",
            Path(record.get("image", "")).name,
            record.get("id", ""),
        )
    )
    id_path = qc_dir / ".report_id"
    if not id_path.exists():
        with atomic_output(id_path) as temporary:
            temporary.write_text(uuid.uuid4().hex)
    template = resources.files("mousecord.analysis").joinpath("qc_template.html").read_text(encoding="utf-8")
    payload = json.dumps(_finite(records), allow_nan=False).replace("</", "<\\/")
    page = template.replace("__REPORT_ID__", id_path.read_text().strip()).replace("__RECORDS_JSON__", payload)
    index = qc_dir / "index.html"
    with atomic_output(index) as temporary:
        temporary.write_text(page, encoding="utf-8")
    return index


def _finite(value: Any) -> Any:
    """JSON-ready copy: numpy values to Python, NaN/inf to ``None`` (browsers reject NaN in JSON)."""
    if isinstance(value, dict):
        return {str(key): _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    if isinstance(value, np.ndarray):
        return _finite(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value
