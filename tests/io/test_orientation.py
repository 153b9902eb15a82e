"""Which axis runs along the cord: what the grid shows (a single slice, surely; thick slices or a chunk's
length, as hints) where a header may name its axes after the magnet, and how the reorientation applies it."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from mousecord.io.orientation import (
    cord_axis_from_grid,
    invert_transform,
    orientation_to,
    reorient,
    single_slice_axis,
)
from mousecord.io.volume import Volume


@pytest.mark.parametrize(
    ("shape", "axis"), [((200, 1, 180), 1), ((1, 64, 64), 0), ((200, 200, 24), None), ((1, 1, 40), None)]
)
def test_a_single_slice_is_sure_of_its_normal(shape, axis):
    assert single_slice_axis(shape) == axis


@pytest.mark.parametrize(
    ("shape", "voxel_size_mm", "axis"),
    [
        ((200, 200, 30), (0.05, 0.05, 0.3), 2),  # thick slices along k
        ((30, 200, 200), (0.3, 0.05, 0.05), 0),
        ((200, 500, 200), (0.05, 0.05, 0.05), 1),  # a chunk 2.5x longer than wide
        ((100, 100, 500), (0.1, 0.1, 0.05), 2),  # longer in mm, though its voxels are thinner
    ],
)
def test_the_grid_shows_the_cord_axis(shape, voxel_size_mm, axis):
    assert cord_axis_from_grid(shape, voxel_size_mm)[0] == axis


@pytest.mark.parametrize(
    ("shape", "voxel_size_mm"),
    [
        ((200, 200, 120), (0.05, 0.05, 0.05)),  # 1.7x longer: not a clear length
        ((200, 200, 200), (0.05, 0.05, 0.09)),  # slices 1.8x thicker: not clearly thick
        ((60, 55, 52), (1.0, 1.0, 1.0)),
        ((1, 1, 40), (0.05, 0.05, 0.05)),  # a line has no cross-section
        ((1, 64, 64), (0.5, 0.05, 0.05)),  # a single slice: sure, not a hint (single_slice_axis)
    ],
)
def test_the_grid_does_not_always_say(shape, voxel_size_mm):
    assert cord_axis_from_grid(shape, voxel_size_mm) is None


def test_thick_slices_along_one_axis_and_a_length_along_another_say_nothing_sure():
    # a chunk's thick sagittal slices: the header must decide, not the grid
    assert cord_axis_from_grid((200, 30, 500), (0.05, 0.3, 0.05)) is None
    # a thick-slice stack that is also its longest extent: both say the same
    assert cord_axis_from_grid((100, 100, 40), (0.05, 0.05, 0.5)) == (2, "slices 10.0x thicker than wide")


def coronal_affine() -> np.ndarray:
    """Array axes i, j, k along R, S, A: a header that calls the slices' normal anterior."""
    affine = np.zeros((4, 4))
    affine[0, 0] = affine[2, 1] = affine[1, 2] = 0.05
    affine[3, 3] = 1
    return affine


def test_a_cord_axis_is_taken_as_superior_inferior():
    affine = coronal_affine()
    assert nib.aff2axcodes(affine) == ("R", "S", "A")
    assert orientation_to(affine).tolist() == [[0, 1], [2, 1], [1, 1]]  # j becomes the third axis
    assert orientation_to(affine, cord_axis=2).tolist() == [[0, 1], [1, 1], [2, 1]]  # k does
    assert orientation_to(affine, cord_axis=1).tolist() == orientation_to(affine).tolist()
    flipped = affine.copy()
    flipped[1, 2] = -0.05  # k runs posterior: its direction is kept, only its role changes
    assert orientation_to(flipped, cord_axis=2).tolist() == [[0, 1], [1, 1], [2, -1]]


@pytest.mark.parametrize("cord_axis", [0, 1, 2])
def test_a_cord_axis_ends_last_and_comes_back_exactly_from_a_cyclic_flipped_header(cord_axis):
    """Array axes i, j, k along -A, S, -R (a 3-cycle with flips, whose transform is not its own inverse):
    whichever file axis is named, it becomes the third axis, and the inverse puts every voxel back."""
    affine = np.zeros((4, 4))
    affine[1, 0], affine[2, 1], affine[0, 2], affine[3, 3] = -0.05, 0.05, -0.1, 1
    data = np.arange(3 * 4 * 5, dtype=np.float32).reshape(3, 4, 5)
    transform = orientation_to(affine, cord_axis=cord_axis)
    moved = reorient(Volume(data, affine), transform)
    assert moved.shape[2] == data.shape[cord_axis]
    # each canonical axial slice holds one file slice across the named axis
    first_slice = np.take(data, 0 if transform[cord_axis, 1] > 0 else -1, axis=cord_axis)
    assert np.isin(moved.data[:, :, 0], first_slice).all()
    back = nib.orientations.apply_orientation(moved.data, invert_transform(transform))
    np.testing.assert_array_equal(back, data)
