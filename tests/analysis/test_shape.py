from __future__ import annotations

import csv
import math
import warnings
from pathlib import Path

import numpy as np
import pytest

from mousecord.analysis.shape import COLUMNS, morphometrics, morphometrics_file
from mousecord.errors import ImageFormatError, MousecordWarning, OutputError
from mousecord.labels import Label

from .conftest import write_nifti


def _elliptic_cylinder(
    shape, voxel_size_mm, semi_axes_mm, *, tilt_deg: float = 0.0, label=Label.WM
) -> np.ndarray:
    """Straight cylinder with an elliptic cross-section (semi-axes along x, y), tilted in the x-z plane."""
    sizes = np.asarray(voxel_size_mm)
    grids = np.meshgrid(*(np.arange(n) * size for n, size in zip(shape, sizes, strict=True)), indexing="ij")
    centre = (np.array(shape) - 1) * sizes / 2
    x, y, z = (grid - middle for grid, middle in zip(grids, centre, strict=True))
    tilt = math.radians(tilt_deg)
    across = x * math.cos(tilt) - z * math.sin(tilt)  # distance from the axis, in the tilt plane
    inside = (across / semi_axes_mm[0]) ** 2 + (y / semi_axes_mm[1]) ** 2 <= 1
    return np.where(inside, label, 0).astype(np.uint8)


@pytest.mark.parametrize("voxel_size_mm", [(0.05, 0.05, 0.05), (0.05, 0.1, 0.2)])
def test_ellipse_area_diameters_and_eccentricity_match_the_analytic_values(voxel_size_mm) -> None:
    a, b = 1.25, 0.75
    label_map = _elliptic_cylinder((70, 40, 5), voxel_size_mm, (a, b))
    table = morphometrics(label_map, voxel_size_mm=voxel_size_mm).table
    np.testing.assert_allclose(
        table["area_cord_mm2"], math.pi * a * b, rtol=0.03
    )  # 0.1 mm voxels: coarse edge
    np.testing.assert_allclose(table["diameter_RL"], 2 * a, rtol=0.03)
    np.testing.assert_allclose(table["diameter_AP"], 2 * b, rtol=0.04)
    np.testing.assert_allclose(table["eccentricity"], math.sqrt(1 - (b / a) ** 2), atol=0.02)
    np.testing.assert_allclose(table["orientation"], 0.0, atol=1.0)
    np.testing.assert_allclose(table["angle_AP"], 0.0, atol=1e-6)


def test_gm_fraction_of_a_disc_inside_a_ring() -> None:
    sizes = (0.05, 0.05, 0.05)
    label_map = _elliptic_cylinder((60, 60, 3), sizes, (1.2, 1.2))
    label_map[_elliptic_cylinder((60, 60, 3), sizes, (0.6, 0.6)) > 0] = Label.GM
    result = morphometrics(label_map, voxel_size_mm=sizes)
    np.testing.assert_allclose(result.table["area_GM_mm2"], math.pi * 0.36, rtol=0.03)
    np.testing.assert_allclose(result.table["GM_fraction"], 0.25, rtol=0.04)
    np.testing.assert_allclose(result.table["diameter_AP"], 2.4, rtol=0.02)
    assert result.totals["volume_GM_mm3"] == pytest.approx(np.count_nonzero(label_map == Label.GM) * 0.05**3)
    assert result.totals["volume_cord_mm3"] == pytest.approx(np.count_nonzero(label_map) * 0.05**3)
    assert result.totals["length_mm"] == pytest.approx(3 * 0.05)


def test_oblique_cylinder_area_is_corrected_by_the_centerline_angle() -> None:
    tilt_deg, radius = 30.0, 0.8
    sizes = (0.05, 0.05, 0.05)
    label_map = _elliptic_cylinder((100, 44, 50), sizes, (radius, radius), tilt_deg=tilt_deg)
    inner = slice(5, -5)  # away from the ends where the cylinder leaves the box
    corrected = morphometrics(label_map, voxel_size_mm=sizes).table
    uncorrected = morphometrics(label_map, voxel_size_mm=sizes, angle_correction=False).table
    true_area = math.pi * radius**2
    np.testing.assert_allclose(corrected["area_cord_mm2"][inner], true_area, rtol=0.02)
    np.testing.assert_allclose(
        uncorrected["area_cord_mm2"][inner], true_area / math.cos(math.radians(tilt_deg)), rtol=0.02
    )
    np.testing.assert_allclose(corrected["angle_AP"], tilt_deg, atol=0.5)
    np.testing.assert_allclose(corrected["angle_RL"], 0.0, atol=0.5)
    np.testing.assert_allclose(corrected["diameter_RL"][inner], 2 * radius, rtol=0.03)
    np.testing.assert_allclose(corrected["diameter_AP"][inner], 2 * radius, rtol=0.03)
    np.testing.assert_allclose(
        uncorrected["diameter_RL"][inner], 2 * radius / math.cos(math.radians(tilt_deg)), rtol=0.03
    )


def test_empty_segmentation_warns_and_gives_an_empty_table() -> None:
    with pytest.warns(MousecordWarning, match="empty"):
        result = morphometrics(np.zeros((5, 6, 7), np.uint8), voxel_size_mm=(0.05, 0.05, 0.05))
    assert (
        result.n_slices == 0
        and result.totals["volume_cord_mm3"] == 0
        and math.isnan(result.totals["GM_fraction"])
    )


def test_values_outside_labels_raise() -> None:
    with pytest.raises(ImageFormatError, match="found 7"):
        morphometrics(np.full((3, 3, 3), 7, np.uint8), voxel_size_mm=(0.05, 0.05, 0.05))


def test_morphometrics_file_writes_csv_plot_and_totals_from_a_mask_pair(tmp_path: Path) -> None:
    sizes = (0.05, 0.05, 0.1)
    wm = _elliptic_cylinder((60, 40, 8), sizes, (1.2, 0.8))
    gm = _elliptic_cylinder((60, 40, 8), sizes, (0.5, 0.4))
    wm[gm > 0] = 0
    write_nifti(tmp_path / "case_GM_seg.nii.gz", (gm > 0).astype(np.uint8), sizes)
    write_nifti(tmp_path / "case_WM_seg.nii.gz", (wm > 0).astype(np.uint8), sizes)
    result = morphometrics_file(
        tmp_path / "case_WM_seg.nii.gz",
        tmp_path / "table.csv",
        png=tmp_path / "areas.png",
        json_path=tmp_path / "t.json",
    )
    with (tmp_path / "table.csv").open() as stream:
        rows = list(csv.reader(stream))
    assert tuple(rows[0]) == COLUMNS and rows[0][0] == "Slice (I->S)"
    assert [int(row[0]) for row in rows[1:]] == list(range(8))
    assert float(rows[1][1]) == pytest.approx(result.table["area_GM_mm2"][0], rel=1e-5)
    assert (tmp_path / "areas.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert '"volume_cord_mm3"' in (tmp_path / "t.json").read_text()


def test_morphometrics_file_writes_nothing_when_one_output_fails(tmp_path: Path, monkeypatch) -> None:
    sizes = (0.05, 0.05, 0.1)
    label_map = np.where(_elliptic_cylinder((40, 30, 5), sizes, (0.6, 0.5)) > 0, Label.WM, 0).astype(np.uint8)
    segmentation = write_nifti(tmp_path / "seg.nii.gz", label_map, sizes)

    def broken_plot(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("mousecord.analysis.shape.plot_morphometrics", broken_plot)
    with pytest.raises(OutputError, match="disk full"):
        morphometrics_file(
            segmentation, tmp_path / "table.csv", png=tmp_path / "areas.png", json_path=tmp_path / "t.json"
        )
    assert sorted(path.name for path in tmp_path.iterdir()) == ["seg.nii.gz"]  # no CSV, JSON or temporaries


def test_morphometrics_file_refuses_two_outputs_with_the_same_name(tmp_path: Path) -> None:
    sizes = (0.05, 0.05, 0.1)
    label_map = np.where(_elliptic_cylinder((40, 30, 5), sizes, (0.6, 0.5)) > 0, Label.WM, 0).astype(np.uint8)
    segmentation = write_nifti(tmp_path / "seg.nii.gz", label_map, sizes)
    with pytest.raises(OutputError, match="same name"):
        morphometrics_file(segmentation, tmp_path / "out.csv", json_path=tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()


def test_morphometrics_file_measures_without_writing_and_morphometrics_names_it_for_files(tmp_path):
    """``morphometrics_file(path)`` alone returns the measures and writes nothing; a path or nibabel image
    given to the array function gets a TypeError that names morphometrics_file."""
    import nibabel as nib

    label_map = np.zeros((30, 30, 4), np.uint8)
    label_map[8:22, 8:22] = 2
    label_map[12:18, 12:18] = 1
    path = write_nifti(tmp_path / "x_seg.nii.gz", label_map)
    result = morphometrics_file(path)
    assert result.table["area_GM_mm2"][0] == pytest.approx(36 * 0.05 * 0.05)
    assert sorted(item.name for item in tmp_path.iterdir()) == ["x_seg.nii.gz"]
    for value in (path, str(path), nib.load(path)):
        with pytest.raises(TypeError, match=r"for a file, morphometrics_file\(path\) reads"):
            morphometrics(value, voxel_size_mm=(0.05, 0.05, 0.05))


def test_a_segmentation_without_sidecar_is_measured_across_its_cords_own_long_axis(tmp_path):
    """A chunk stored with its cord along i, whose header calls k superior-inferior, and whose segmentation
    lost segment's sidecar (saved again in a viewer): measured across i, with a warning, not in cuts along
    the cord; a sidecar's axis, or a chunk as long as it is wide, keeps the rule as it was."""
    import json

    from .conftest import synthetic_cord

    _, along_k = synthetic_cord((60, 56, 200))  # 10 mm of cord, 2.5 mm wide
    path = write_nifti(tmp_path / "x_seg.nii.gz", np.ascontiguousarray(np.transpose(along_k, (2, 1, 0))))
    with pytest.warns(MousecordWarning, match=r"its cord runs along array axis 0 \(\d+\.\dx longer"):
        result = morphometrics_file(path, angle_correction=False)
    assert result.n_slices == 200
    assert result.table["area_cord_mm2"].mean() == pytest.approx(
        (along_k > 0).sum(axis=(0, 1)).mean() * 0.0025
    )
    (tmp_path / "x_seg.json").write_text(json.dumps({"software": "mousecord", "cord_axis": 2}))
    across_k = int(np.transpose(along_k, (2, 1, 0)).any(axis=(0, 1)).sum())
    assert morphometrics_file(path).n_slices == across_k < 200  # the axis segment said it used
    _, short = synthetic_cord((60, 56, 40))
    short_path = write_nifti(
        tmp_path / "short_seg.nii.gz", np.ascontiguousarray(np.transpose(short, (2, 1, 0)))
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", MousecordWarning)
        across_k = int(np.transpose(short, (2, 1, 0)).any(axis=(0, 1)).sum())
        assert morphometrics_file(short_path).n_slices == across_k  # 2 mm long, 2.5 mm wide: the header's


@pytest.mark.parametrize(
    ("shape", "voxel_size_mm", "labelled"),
    [
        ((60, 40, 2), (0.05, 0.05, 0.5), (slice(5, 55), slice(15, 38), slice(None))),  # thick slab, 2.2:1
        ((60, 60, 40), (0.05, 0.05, 0.05), (slice(10, 40), slice(20, 34), [5, 20, 35])),  # 3 slices of GM
        ((60, 60, 40), (0.05, 0.05, 0.05), (slice(28, 31), slice(5, 55), [12])),  # one tract, one slice
    ],
)
def test_a_label_map_that_is_no_long_tube_keeps_the_headers_axis(tmp_path, shape, voxel_size_mm, labelled):
    """A thick slab, a few annotated slices or a strip of one tract on one slice is longer in-plane than
    along the header's axis, but is no tube along another axis: measured across the header's, no warning."""
    label_map = np.zeros(shape, np.uint8)
    label_map[labelled] = Label.GM
    path = write_nifti(tmp_path / "x_seg.nii.gz", label_map, voxel_size_mm)
    with warnings.catch_warnings():
        warnings.simplefilter("error", MousecordWarning)
        result = morphometrics_file(path)
    assert set(result.table["Slice (I->S)"]) <= set(range(shape[2]))
    assert result.n_slices == label_map.any(axis=(0, 1)).sum()
