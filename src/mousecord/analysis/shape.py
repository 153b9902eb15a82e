"""Per-slice morphometrics of a GM/WM segmentation, with SCT-style centerline angle correction.

For each axial slice (last axis, canonical z, inferior to superior) holding cord (GM + WM):

========================  ======  =====================================================================
column                    unit    meaning
========================  ======  =====================================================================
``Slice (I->S)``          index   axial slice index along the cord, as in SCT's per-slice tables (the
                                  CSV names the true direction where the cord runs along another axis)
``area_GM_mm2``           mm²     GM area in the plane perpendicular to the centerline
``area_WM_mm2``           mm²     WM area, same plane
``area_cord_mm2``         mm²     cord (GM + WM) area, same plane (SCT's ``area``)
``GM_fraction``           1       GM area / cord area
``diameter_AP``           mm      cord extent along its principal axis closest to anterior-posterior
``diameter_RL``           mm      cord extent along its other principal axis (closest to right-left)
``eccentricity``          1       sqrt(1 - minor² / major²) of the cord's equivalent ellipse
``orientation``           degree  angle of the major axis from the RL axis, in (-90, 90]
``angle_AP``              degree  centerline tilt about the AP axis (in the RL-S plane), as SCT
``angle_RL``              degree  centerline tilt about the RL axis (in the AP-S plane), as SCT
``centerline_x_mm``       mm      fitted centerline position (array x * voxel size, from voxel 0)
``centerline_y_mm``       mm      fitted centerline position along y
========================  ======  =====================================================================

Angle correction (SCT's ``angle_correction``): the centerline is fitted to the per-slice cord centroids
(a least-squares polynomial of degree up to 5 in z, SCT's ``polyfit`` centerline), its tangent ``t`` gives
the angle between the cord and the slice normal, ``cos(angle) = t_z``, and every voxel is projected onto
the plane perpendicular to ``t``: areas are multiplied by ``cos(angle)`` and the diameters, eccentricity and
orientation come from the second moments of the projected voxel centres (diameter = 4 sqrt(eigenvalue),
the full axis of the ellipse with the same moments, as skimage's ``regionprops`` and SCT).
Volumes are voxel counts times the voxel volume and need no correction.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from mousecord.analysis.labelmaps import (
    label_source,
    load_label_map,
    measured_cord_axis,
    segmented_voxel_size,
)
from mousecord.analysis.metrics import json_number
from mousecord.errors import ConfigError, MousecordWarning, OutputError
from mousecord.io import atomic_output
from mousecord.io.names import check_report_output
from mousecord.labels import CORD_NAME, LABEL_NAMES, QC_COLOURS, Label, check_label_values, cord_centroids

logger = logging.getLogger(__name__)

SLICE_COLUMN = "Slice (I->S)"
#: The slice column's name in the CSV per canonical axis the slices are counted along (RAS: the index rises
#: toward right, anterior, superior): SCT's name where the cord runs along the header's superior-inferior
#: axis, the true direction where ``--cord-axis`` (or segment's sidecar) says it runs along another.
SLICE_COLUMN_ALONG = {0: "Slice (L->R)", 1: "Slice (P->A)", 2: SLICE_COLUMN}
#: Per-slice columns, in CSV order (see the module docstring for units).
COLUMNS: tuple[str, ...] = (
    SLICE_COLUMN,
    "area_GM_mm2",
    "area_WM_mm2",
    "area_cord_mm2",
    "GM_fraction",
    "diameter_AP",
    "diameter_RL",
    "eccentricity",
    "orientation",
    "angle_AP",
    "angle_RL",
    "centerline_x_mm",
    "centerline_y_mm",
)
#: Highest degree of the centerline polynomial (SCT's polyfit default).
CENTERLINE_DEGREE = 5


@dataclass(frozen=True)
class Morphometrics:
    """Per-slice measurements and whole-volume totals.

    Attributes:
        table: column name -> (n_slices,) array, one entry per axial slice holding cord; keys are
            :data:`COLUMNS`.
        totals: ``volume_GM_mm3``, ``volume_WM_mm3``, ``volume_cord_mm3``, ``GM_fraction`` (by volume),
            ``length_mm`` (centerline arc length over the measured slices), ``n_slices``, ``voxel_size_mm``.
    """

    table: dict[str, np.ndarray]
    totals: dict[str, float | int | list[float]] = field(default_factory=dict)

    @property
    def n_slices(self) -> int:
        return int(self.table[SLICE_COLUMN].size)


def fit_centerline(
    z_mm: np.ndarray, x_mm: np.ndarray, y_mm: np.ndarray, *, degree: int = CENTERLINE_DEGREE
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares polynomial centerline through per-slice centroids.

    Args:
        z_mm: (n,) slice positions; x_mm, y_mm: (n,) centroids, all in mm.
        degree: highest polynomial degree (lowered to n - 1 for short segments).

    Returns:
        ``(x, y, dx_dz, dy_dz)`` of the fitted centerline at ``z_mm``.
    """
    z_mm, x_mm, y_mm = (np.asarray(values, dtype=np.float64) for values in (z_mm, x_mm, y_mm))
    if z_mm.size < 2:
        zeros = np.zeros_like(z_mm)
        return x_mm.copy(), y_mm.copy(), zeros, zeros.copy()
    fit_x, fit_y = centerline_polynomials(z_mm, x_mm, y_mm, degree=degree)
    return fit_x(z_mm), fit_y(z_mm), fit_x.deriv()(z_mm), fit_y.deriv()(z_mm)


def centerline_polynomials(
    z_mm: np.ndarray, x_mm: np.ndarray, y_mm: np.ndarray, *, degree: int = CENTERLINE_DEGREE
) -> tuple[np.polynomial.Polynomial, np.polynomial.Polynomial]:
    """The polynomials x(z) and y(z) of :func:`fit_centerline`, to evaluate anywhere (z in mm).

    Args:
        z_mm: (n,) slice positions, n >= 1; x_mm, y_mm: (n,) centroids, all in mm.
        degree: highest polynomial degree (lowered to n - 1: a constant for a single slice).
    """
    z_mm, x_mm, y_mm = (np.asarray(values, dtype=np.float64) for values in (z_mm, x_mm, y_mm))
    if z_mm.size < 2:
        return np.polynomial.Polynomial([x_mm[0]]), np.polynomial.Polynomial([y_mm[0]])
    degree = int(min(degree, z_mm.size - 1))
    fit_x, fit_y = (np.polynomial.Polynomial.fit(z_mm, values, degree) for values in (x_mm, y_mm))
    return fit_x, fit_y


def morphometrics(
    label_map: np.ndarray,
    *,
    voxel_size_mm: tuple[float, float, float] | np.ndarray,
    angle_correction: bool = True,
) -> Morphometrics:
    """Areas, diameters, shape and centerline angles per axial slice, and whole-volume totals.

    Args:
        label_map: (x, y, z) 0/1/2 label map in canonical RAS, z along the cord.
        voxel_size_mm: (3,) voxel size in mm.
        angle_correction: project each slice onto the plane perpendicular to the centerline (SCT's
            default); without it, areas and diameters are those of the axial slice itself.

    Returns:
        A :class:`Morphometrics` (slices without cord are left out; an empty map gives an empty table).

    Raises:
        ImageFormatError: values other than 0/1/2.
        ConfigError: ``voxel_size_mm`` is not three positive numbers.

    Example:
        >>> label_map = np.zeros((40, 40, 5), np.uint8); label_map[10:30, 12:28, :] = 2
        >>> morphometrics(label_map, voxel_size_mm=(0.05, 0.05, 0.05)).table["area_cord_mm2"][0]
        0.8
    """
    if isinstance(label_map, str | Path | nib.spatialimages.SpatialImage):
        raise TypeError(
            "morphometrics measures a label map array in canonical RAS (z along the cord); for a file, "
            "morphometrics_file(path) reads its orientation, voxel size and the axis segment used"
        )
    label_map = np.asarray(label_map)
    check_label_values(label_map, name="segmentation")
    sizes = np.asarray(voxel_size_mm, dtype=np.float64).ravel()
    if label_map.ndim != 3 or sizes.size != 3 or np.any(sizes <= 0):
        raise ConfigError(
            f"expected a 3D label map and 3 voxel sizes, got shape {label_map.shape}, {sizes.tolist()}"
        )
    slices, centroids = cord_centroids(label_map)
    if slices.size == 0:
        warnings.warn("segmentation is empty: no cord on any slice", MousecordWarning, stacklevel=2)
    centroids = centroids * sizes[:2]
    x_mm, y_mm, dx_dz, dy_dz = fit_centerline(slices * sizes[2], centroids[:, 0], centroids[:, 1])
    if not angle_correction:
        dx_dz, dy_dz = np.zeros_like(dx_dz), np.zeros_like(dy_dz)
    rows = [
        _slice_properties(label_map[:, :, index], sizes, np.array([dx_dz[row], dy_dz[row], 1.0]))
        for row, index in enumerate(slices)
    ]
    table = {SLICE_COLUMN: slices.astype(np.int64)}
    for column in COLUMNS[1:-2]:
        table[column] = np.array([row[column] for row in rows], dtype=np.float64)
    table["centerline_x_mm"], table["centerline_y_mm"] = x_mm, y_mm
    return Morphometrics(table, _totals(label_map, sizes, slices, dx_dz, dy_dz))


def _slice_properties(labels: np.ndarray, sizes: np.ndarray, tangent: np.ndarray) -> dict[str, float]:
    tangent = tangent / np.linalg.norm(tangent)
    cos_angle = float(tangent[2])
    # Orthonormal basis of the plane perpendicular to the centerline: u closest to RL (x), v to AP (y).
    u_axis = np.array([1.0, 0.0, 0.0]) - tangent[0] * tangent
    u_axis /= np.linalg.norm(u_axis)
    v_axis = np.cross(tangent, u_axis)
    points = np.argwhere(labels > 0) * sizes[:2]
    points = points - points.mean(axis=0)
    projected = np.stack([points @ u_axis[:2], points @ v_axis[:2]], axis=1)
    covariance = np.atleast_2d(np.cov(projected, rowvar=False, bias=True))
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)  # ascending
    minor, major = np.sqrt(np.clip(eigenvalues, 0.0, None))
    major_vector = eigenvectors[:, 1]
    ap_index = int(np.argmax(np.abs(eigenvectors[1, :])))  # the eigenvector with the larger AP component
    diameters = 4.0 * np.sqrt(np.clip(eigenvalues, 0.0, None))
    orientation = math.degrees(math.atan2(major_vector[1], major_vector[0]))
    orientation = (
        orientation - 180.0
        if orientation > 90.0
        else orientation + 180.0
        if orientation <= -90.0
        else orientation
    )
    pixel_area_mm2 = float(sizes[0] * sizes[1]) * cos_angle
    area_gm = np.count_nonzero(labels == Label.GM) * pixel_area_mm2
    area_wm = np.count_nonzero(labels == Label.WM) * pixel_area_mm2
    area_cord = area_gm + area_wm
    return {
        "area_GM_mm2": area_gm,
        "area_WM_mm2": area_wm,
        "area_cord_mm2": area_cord,
        "GM_fraction": area_gm / area_cord if area_cord else math.nan,
        "diameter_AP": float(diameters[ap_index]),
        "diameter_RL": float(diameters[1 - ap_index]),
        "eccentricity": math.sqrt(1.0 - (minor / major) ** 2) if major > 0 else 0.0,
        "orientation": orientation,
        "angle_AP": math.degrees(math.atan2(tangent[0], tangent[2])),
        "angle_RL": math.degrees(math.atan2(tangent[1], tangent[2])),
    }


def _totals(
    label_map: np.ndarray, sizes: np.ndarray, slices: np.ndarray, dx_dz: np.ndarray, dy_dz: np.ndarray
) -> dict[str, float | int | list[float]]:
    voxel_volume_mm3 = float(np.prod(sizes))
    volumes = {
        LABEL_NAMES[Label.GM]: np.count_nonzero(label_map == Label.GM) * voxel_volume_mm3,
        LABEL_NAMES[Label.WM]: np.count_nonzero(label_map == Label.WM) * voxel_volume_mm3,
    }
    volumes[CORD_NAME] = volumes["GM"] + volumes["WM"]
    length_mm = float(np.sum(np.sqrt(1.0 + dx_dz**2 + dy_dz**2)) * sizes[2]) if slices.size else 0.0
    return {
        **{f"volume_{name}_mm3": float(value) for name, value in volumes.items()},
        "GM_fraction": float(volumes["GM"] / volumes[CORD_NAME]) if volumes[CORD_NAME] else math.nan,
        "length_mm": length_mm,
        "n_slices": int(slices.size),
        "voxel_size_mm": [float(size) for size in sizes],
    }


def morphometrics_file(
    segmentation: Path | str,
    output_csv: Path | str | None = None,
    *,
    png: Path | str | None = None,
    json_path: Path | str | None = None,
    angle_correction: bool = True,
    cord_axis: str | int = "auto",
    voxel_size_mm: Sequence[float] | None = None,
) -> Morphometrics:
    """Load a segmentation (0/1/2 map or GM/WM mask pair), measure it, write the CSV (and plot, totals).

    Args:
        segmentation: label map file, or either file of a ``_GM_seg``/``_WM_seg`` or
            ``_label-GM_mask``/``_label-WM_mask`` pair.
        output_csv: per-slice table, one row per slice with cord (None: none written; the result holds it).
        png: optional plot of the areas and angles along the cord.
        json_path: optional whole-volume totals.
        angle_correction: see :func:`morphometrics`.
        cord_axis: the axis along the cord, slices being measured across it: "auto" (the one ``mousecord
            segment`` used, as its sidecar says; without one, a single slice's normal, else the axis the
            labelled cord is clearly longest along, see
            :func:`~mousecord.analysis.labelmaps.measured_cord_axis`, else the header's superior-inferior
            axis), "header" or the file's array axis 0, 1 or 2.
        voxel_size_mm: the true voxel size where the header's is wrong (as ``mousecord segment`` takes it);
            None: the one segment was given, as its sidecar records it, else the header's.

    All outputs are written to temporary names and renamed into place only once every one succeeded.

    Raises:
        OutputError: an output would overwrite the segmentation (or its sibling mask), an image, a
            segment sidecar or a device (:func:`mousecord.io.names.check_report_output`), two outputs have
            the same name, or an output cannot be written.
    """
    source = label_source(segmentation)
    outputs = [Path(output) for output in (output_csv, json_path, png) if output is not None]
    for output in outputs:
        check_report_output(output, source.paths)
    if len({output.resolve() for output in outputs}) != len(outputs):
        raise OutputError(f"{outputs[0]}: two outputs have the same name; choose different names")
    loaded = load_label_map(source, voxel_size_mm=voxel_size_mm or segmented_voxel_size(source))
    along = measured_cord_axis(loaded, source, cord_axis)
    slices, slice_voxel_size_mm = loaded.across_cord(along)
    result = morphometrics(slices, voxel_size_mm=slice_voxel_size_mm, angle_correction=angle_correction)
    totals = {key: json_number(value) for key, value in result.totals.items()}
    with contextlib.ExitStack() as stack:  # all outputs or none: each is renamed into place at the end
        if output_csv is not None:
            write_morphometrics_csv(
                result,
                stack.enter_context(atomic_output(Path(output_csv))),
                slice_column=SLICE_COLUMN_ALONG[along],
            )
        if json_path is not None:
            temporary = stack.enter_context(atomic_output(Path(json_path)))
            temporary.write_text(json.dumps({"segmentation": str(segmentation), **totals}, indent=2) + "\n")
        if png is not None:
            plot_morphometrics(
                result,
                stack.enter_context(atomic_output(Path(png))),
                title=Path(segmentation).name,
                slice_column=SLICE_COLUMN_ALONG[along],
            )
    return result


def write_morphometrics_csv(
    result: Morphometrics, path: Path | str, *, slice_column: str = SLICE_COLUMN
) -> Path:
    """Write the per-slice table (:data:`COLUMNS`, the first named ``slice_column``, see
    :data:`SLICE_COLUMN_ALONG`), NaN as ``nan``, atomically."""
    path = Path(path)
    with atomic_output(path) as temporary, temporary.open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow([slice_column, *COLUMNS[1:]])
        for row in range(result.n_slices):
            values = [result.table[column][row] for column in COLUMNS]
            writer.writerow([int(values[0]), *(f"{float(value):.6g}" for value in values[1:])])
    return path


def plot_morphometrics(
    result: Morphometrics, path: Path | str, *, title: str = "", slice_column: str = SLICE_COLUMN
) -> Path:
    """PNG of GM, WM and cord areas (top) and centerline angles (bottom) along the cord, atomically; the
    slice axis is labelled as ``slice_column`` names it (:data:`SLICE_COLUMN_ALONG`)."""
    from matplotlib.figure import Figure

    slices = result.table[SLICE_COLUMN]
    figure = Figure(figsize=(9, 6), dpi=110, layout="constrained")
    area_axes, angle_axes = figure.subplots(2, 1, sharex=True, height_ratios=[2, 1])
    colours = {"GM": QC_COLOURS[Label.GM], "WM": (0.0, 0.6, 0.7), CORD_NAME: (0.2, 0.2, 0.2)}
    for name, colour in colours.items():
        area_axes.plot(slices, result.table[f"area_{name}_mm2"], color=colour, lw=1.5, label=f"{name} area")
    area_axes.set_ylabel("area (mm²)")
    top = float(np.nanmax(result.table["area_cord_mm2"])) if result.n_slices else 1.0
    area_axes.set_ylim(0, top * 1.2)  # room for the legend above the cord curve
    area_axes.grid(alpha=0.3)
    area_axes.legend(loc="upper right", ncols=3, fontsize="small")
    totals = result.totals
    area_axes.set_title(
        f"{title}\nvolumes: GM {totals.get('volume_GM_mm3', 0):.2f}, "
        f"WM {totals.get('volume_WM_mm3', 0):.2f}, cord {totals.get('volume_cord_mm3', 0):.2f} mm³; "
        f"GM fraction {totals.get('GM_fraction', math.nan):.3f}",
        fontsize="medium",
    )
    angle_axes.plot(slices, result.table["angle_AP"], color="tab:orange", lw=1.2, label="angle_AP")
    angle_axes.plot(slices, result.table["angle_RL"], color="tab:purple", lw=1.2, label="angle_RL")
    angle_axes.axhline(0.0, color="0.6", lw=0.8)
    angle_axes.set_ylabel("centerline angle (°)")
    angle_axes.set_xlabel(slice_column.replace("->", "→").lower())
    angle_axes.grid(alpha=0.3)
    angle_axes.legend(loc="upper right", ncols=2, fontsize="small")
    path = Path(path)
    with atomic_output(path) as temporary:
        figure.savefig(temporary, format="png")
    return path
