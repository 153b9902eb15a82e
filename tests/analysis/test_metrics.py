from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from mousecord.analysis.metrics import (
    compare_label_maps,
    dice,
    hd95_mm,
    jaccard,
    mean_surface_distance_mm,
    surface_distances_mm,
)
from mousecord.errors import ImageFormatError, MousecordWarning
from mousecord.labels import Label

from .conftest import synthetic_cord

ANISOTROPIC_MM = (0.05, 0.1, 0.2)


def _box(shape, start, stop) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[tuple(slice(a, b) for a, b in zip(start, stop, strict=True))] = True
    return mask


def test_dice_and_jaccard_of_two_overlapping_boxes_match_hand_computation() -> None:
    reference = _box((20, 12, 9), (0, 0, 0), (10, 10, 8))  # 800 voxels
    prediction = _box((20, 12, 9), (6, 2, 0), (16, 12, 8))  # 800 voxels, overlap 4 x 8 x 8 = 256
    assert dice(reference, prediction) == pytest.approx(2 * 256 / 1600)
    assert jaccard(reference, prediction) == pytest.approx(256 / (1600 - 256))


@pytest.mark.parametrize("axis", [0, 1, 2])
@pytest.mark.parametrize("shift", [1, 3])
def test_hd95_of_a_slab_shifted_by_k_voxels_is_k_times_the_voxel_size(axis: int, shift: int) -> None:
    shape, start, stop = [40, 40, 40], [5, 5, 5], [35, 35, 35]
    start[axis], stop[axis] = (
        10,
        10 + 2 * shift + 3,
    )  # thin along the shift, so its faces dominate the surface
    reference = _box(shape, start, stop)
    prediction = np.roll(reference, shift, axis=axis)
    forward, backward = surface_distances_mm(reference, prediction, voxel_size_mm=ANISOTROPIC_MM)
    expected = shift * ANISOTROPIC_MM[axis]
    assert hd95_mm(forward, backward) == pytest.approx(expected)
    assert forward.max() == pytest.approx(expected) and backward.max() == pytest.approx(expected)
    assert 0 < mean_surface_distance_mm(forward, backward) < expected


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_surface_distances_match_monai() -> None:
    monai_metrics = pytest.importorskip("monai.metrics")
    torch = pytest.importorskip("torch")
    _, label_map = synthetic_cord((40, 36, 12), ANISOTROPIC_MM, semi_axes_mm=(1.2, 1.0), bend_mm=0.0)
    reference = label_map == Label.GM
    prediction = np.roll(reference, (2, -1, 1), axis=(0, 1, 2)) | _box(reference.shape, (3, 3, 3), (6, 6, 5))
    forward, backward = surface_distances_mm(reference, prediction, voxel_size_mm=ANISOTROPIC_MM)
    as_tensor = [torch.from_numpy(mask[None, None].astype(np.float32)) for mask in (prediction, reference)]
    expected_hd95 = monai_metrics.compute_hausdorff_distance(
        *as_tensor, percentile=95, spacing=list(ANISOTROPIC_MM)
    )
    expected_msd = monai_metrics.compute_average_surface_distance(
        *as_tensor, symmetric=True, spacing=list(ANISOTROPIC_MM)
    )
    assert hd95_mm(forward, backward) == pytest.approx(float(expected_hd95), rel=1e-6)
    assert mean_surface_distance_mm(forward, backward) == pytest.approx(float(expected_msd), rel=1e-6)


def test_identical_label_maps_score_perfectly_for_every_class() -> None:
    _, label_map = synthetic_cord((40, 36, 9))
    metrics = compare_label_maps(label_map, label_map, voxel_size_mm=(0.05, 0.05, 0.05))
    assert set(metrics) == {"GM", "WM", "cord"}
    for values in metrics.values():
        assert (values.dice, values.jaccard, values.hd95_mm, values.volume_difference_percent) == (1, 1, 0, 0)
        assert values.notes == ()


@pytest.mark.filterwarnings("ignore::mousecord.errors.MousecordWarning")  # no GM at all
def test_volume_difference_and_per_slice_dice() -> None:
    reference = np.zeros((10, 10, 4), np.uint8)
    reference[2:6, 2:6, :] = Label.WM  # 16 voxels per slice
    prediction = reference.copy()
    prediction[6:8, 2:6, 1] = Label.WM  # slice 1: 24 predicted voxels
    metrics = compare_label_maps(reference, prediction, voxel_size_mm=(0.1, 0.1, 0.5))["WM"]
    assert metrics.volume_difference_percent == pytest.approx(100 * 8 / 64)
    assert metrics.reference_volume_mm3 == pytest.approx(64 * 0.005)
    assert metrics.per_slice_dice == pytest.approx({0: 1.0, 1: 2 * 16 / 40, 2: 1.0, 3: 1.0})


def test_sparse_truth_is_evaluated_on_annotated_slices_only() -> None:
    _, full = synthetic_cord((40, 36, 30))
    reference = np.zeros_like(full)
    annotated = [4, 15, 22]
    reference[..., annotated] = full[..., annotated]
    prediction = full.copy()
    prediction[..., 5:14] = Label.GM  # garbage on slices that were never annotated
    metrics = compare_label_maps(reference, prediction, voxel_size_mm=(0.05, 0.05, 0.1))
    for values in metrics.values():
        assert values.n_slices_evaluated == 3
        assert sorted(values.per_slice_dice) == annotated
        assert values.surface_distance_mode == "2d-per-slice"
        assert (values.dice, values.hd95_mm, values.volume_difference_percent) == (1.0, 0.0, 0.0)


def test_contiguous_partial_truth_is_evaluated_in_3d_on_its_slab() -> None:
    _, full = synthetic_cord((40, 36, 30))
    reference = np.zeros_like(full)
    reference[..., 10:20] = full[..., 10:20]
    cord = compare_label_maps(reference, full, voxel_size_mm=(0.05, 0.05, 0.1))["cord"]
    assert (cord.n_slices_evaluated, cord.surface_distance_mode, cord.dice) == (10, "3d", 1.0)


def test_empty_prediction_gives_labelled_nan_and_a_warning() -> None:
    _, reference = synthetic_cord((40, 36, 6))
    prediction = np.where(reference == Label.GM, 0, reference).astype(np.uint8)  # no GM predicted
    with pytest.warns(MousecordWarning, match="GM: NaN: prediction empty"):
        metrics = compare_label_maps(reference, prediction, voxel_size_mm=(0.05, 0.05, 0.05))
    gm = metrics["GM"]
    assert gm.dice == 0.0 and math.isnan(gm.hd95_mm) and math.isnan(gm.mean_surface_distance_mm)
    assert gm.notes == ("NaN: prediction empty",)
    assert gm.to_dict()["hd95_mm"] is None
    assert not math.isnan(metrics["WM"].hd95_mm)


def test_both_empty_gives_nan_dice_with_note() -> None:
    empty = np.zeros((5, 6, 7), np.uint8)
    with pytest.warns(MousecordWarning):
        metrics = compare_label_maps(empty, empty, voxel_size_mm=(0.05, 0.05, 0.05))
    assert math.isnan(metrics["cord"].dice)
    assert "both empty" in metrics["cord"].notes[0]


def test_values_outside_labels_raise_one_line_error() -> None:
    reference = np.zeros((5, 6, 7), np.uint8)
    prediction = reference.copy()
    prediction[1, 1, 1] = 3
    with pytest.raises(
        ImageFormatError, match=r"seg\.nii\.gz: expected label values \[0, 1, 2\], found 3"
    ) as error:
        compare_label_maps(reference, prediction, voxel_size_mm=(0.05, 0.05, 0.05), name="seg.nii.gz")
    assert "\n" not in str(error.value)


def test_shape_mismatch_raises_one_line_error_naming_both_shapes() -> None:
    with pytest.raises(
        ImageFormatError, match=r"\(5, 6, 8\) differs from reference shape \(5, 6, 7\)"
    ) as error:
        compare_label_maps(np.zeros((5, 6, 7)), np.zeros((5, 6, 8)), voxel_size_mm=(0.05, 0.05, 0.05))
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("annotated", [[12], [12, 13]])
def test_one_or_two_annotated_slices_get_in_plane_surface_distances(annotated) -> None:
    """One or two slices are all surface in 3D (each voxel touches the slab's cut face), which put HD95 at
    0 with a Dice below 1; measured slice by slice they give the in-plane distances."""
    _, full = synthetic_cord((40, 36, 30))
    reference = np.zeros_like(full)
    reference[..., annotated] = full[..., annotated]
    prediction = full.copy()
    prediction[ndimage.binary_dilation(full > 0, iterations=2) & (full == 0)] = (
        Label.WM
    )  # cord 2 voxels wider
    cord = compare_label_maps(reference, prediction, voxel_size_mm=(0.05, 0.05, 0.05))["cord"]
    assert cord.surface_distance_mode == "2d-per-slice" and cord.dice < 1
    assert cord.hd95_mm == pytest.approx(0.1, abs=0.02)  # two in-plane voxels
    assert cord.mean_surface_distance_mm > 0.04
