"""The image | truth | prediction picture."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.image import imread

from mousecord.analysis.comparison import _slice_dice, _window, render_comparison_png
from mousecord.phantom import PhantomConfig, generate_phantom


@pytest.fixture(scope="module")
def phantom():
    return generate_phantom(PhantomConfig(shape_vox=(100, 100, 24)), rng=np.random.default_rng(3))


def test_the_picture_has_one_row_per_slice_and_shows_where_the_prediction_differs(phantom, tmp_path):
    truth = phantom.label_map.data
    wrong = np.where(truth > 0, 2, 0).astype(np.uint8)  # GM missed entirely
    voxel = phantom.image.voxel_size_mm
    image = phantom.image.data
    right = render_comparison_png(image, truth, truth, voxel, tmp_path / "right.png", n_slices=2)
    missed = render_comparison_png(image, truth, wrong, voxel, tmp_path / "missed.png", n_slices=2)
    three = render_comparison_png(image, truth, truth, voxel, tmp_path / "three.png", n_slices=3)
    right_pixels, missed_pixels = imread(right), imread(missed)
    assert imread(three).shape[0] > right_pixels.shape[0]
    third = right_pixels.shape[1] // 3

    def red(pixels: np.ndarray) -> int:  # GM outline pixels, above the legend
        pixels = pixels[: int(0.9 * len(pixels))]
        return int(((pixels[..., 0] > 0.8) & (pixels[..., 1] < 0.3) & (pixels[..., 2] < 0.3)).sum())

    assert red(right_pixels[:, :third]) == 0 and red(right_pixels[:, third : 2 * third]) > 100
    assert abs(red(right_pixels[:, 2 * third :]) - red(right_pixels[:, third : 2 * third])) < 50
    assert red(missed_pixels[:, 2 * third :]) < red(missed_pixels[:, third : 2 * third]) // 10


def test_slice_dice_and_the_zoom_window():
    truth = np.zeros((40, 40), np.uint8)
    truth[10:20, 10:20] = 2
    truth[13:17, 13:17] = 1
    assert _slice_dice(truth, truth) == "Dice GM 1.00, WM 1.00"
    assert _slice_dice(truth, np.where(truth > 0, 2, 0)).startswith("Dice GM 0.00")
    window = _window(truth > 0, half=8)
    assert window == (slice(6, 22), slice(6, 22))  # centre 14.5 rounds to 14
    assert _window(np.zeros((10, 10), bool), half=8) == (slice(0, 16), slice(0, 16))
