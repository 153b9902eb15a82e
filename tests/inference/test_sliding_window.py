"""Sliding window with analytic predictors, tile placement, Gaussian map and padding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mousecord.errors import ConfigError
from mousecord.inference.sliding_window import (
    TileSettings,
    compute_tile_starts,
    gaussian_importance_map,
    labels_from_logits,
    mirror_combinations,
    pad_to_patch,
    sliding_window,
)

SHAPES_AND_PATCHES = [
    ((9, 7, 11), (4, 4, 4)),
    ((9, 7, 11), (16, 8, 20)),  # window larger than the image on every axis
    ((13, 5, 17), (6, 8, 5)),  # larger on one axis only
    ((8, 8, 8), (8, 8, 8)),
]


@pytest.mark.parametrize(("shape", "patch"), SHAPES_AND_PATCHES)
def test_identity_predictor_recovers_input(shape, patch):
    image = torch.rand(2, *shape) + 0.5
    out = sliding_window(image, lambda tile: tile, TileSettings(patch, accumulate_dtype=torch.float32))
    assert out.shape == image.shape
    torch.testing.assert_close(out, image, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(("shape", "patch"), SHAPES_AND_PATCHES)
def test_float16_accumulation_is_exact_to_float16_precision_with_constant_blend(shape, patch):
    # with the Gaussian, float16 (nnU-Net's choice) underflows at tile corners: see the sliding_window docs
    image = torch.rand(1, *shape) + 0.5
    out = sliding_window(image, lambda tile: tile, TileSettings(patch, blend="constant"))
    torch.testing.assert_close(out, image, rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize(("shape", "patch"), SHAPES_AND_PATCHES)
def test_doubling_predictor_with_mirroring_and_batches(shape, patch):
    image = torch.rand(1, *shape)
    out = sliding_window(
        image,
        lambda tile: 2 * tile,
        TileSettings(
            patch, mirror_axes=(0, 1, 2), batch_size=3, accumulate_dtype=torch.float32, blend="constant"
        ),
    )
    torch.testing.assert_close(out, 2 * image, rtol=1e-6, atol=1e-6)


def test_input_is_not_modified():
    image = np.random.default_rng(0).random((1, 9, 7, 11)).astype(np.float32)
    before = image.copy()
    sliding_window(image, lambda tile: tile, TileSettings((4, 4, 4)))
    np.testing.assert_array_equal(image, before)


def test_mirroring_averages_flipped_predictions():
    # a predictor that is not flip-equivariant: adds a ramp along z
    ramp = torch.arange(4.0).view(1, 1, 4, 1, 1)
    image = torch.zeros(1, 4, 4, 4)
    out = sliding_window(
        image,
        lambda tile: tile + ramp,
        TileSettings((4, 4, 4), mirror_axes=(0,), accumulate_dtype=torch.float32),
    )
    torch.testing.assert_close(out, torch.full((1, 4, 4, 4), 1.5))


def test_compute_tile_starts_hand_values():
    assert compute_tile_starts((110, 64, 64), (64, 64, 64), 0.5) == [[0, 23, 46], [0], [0]]
    assert compute_tile_starts((500, 200, 200), (256, 96, 96), 0.5) == [
        [0, 122, 244],
        [0, 35, 69, 104],
        [0, 35, 69, 104],
    ]
    assert compute_tile_starts((100,), (50,), 1.0) == [[0, 50]]
    assert compute_tile_starts((101,), (50,), 1.0) == [[0, 26, 51]]


def test_compute_tile_starts_rejects_bad_arguments():
    with pytest.raises(ConfigError, match="tile_step_fraction"):
        compute_tile_starts((10,), (5,), 0.0)
    with pytest.raises(ConfigError, match="smaller than the patch"):
        compute_tile_starts((4,), (5,), 0.5)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (dict(step_fraction=0.0), "step_fraction"),
        (dict(step_fraction=1.5), "step_fraction"),
        (dict(blend="median"), "blend"),
        (dict(batch_size=0), "batch_size"),
        (dict(batch_size=None), "batch_size"),
        (dict(mirror_axes=(3,)), "mirror_axes"),
        (dict(accumulate_dtype=torch.bfloat16), "accumulate_dtype"),
        (dict(patch_size_vox=(4, 0, 4)), "patch_size_vox"),
    ],
)
def test_tile_settings_are_validated_once_at_construction(settings, message):
    with pytest.raises(ConfigError, match=message):
        TileSettings(**{"patch_size_vox": (4, 4, 4), **settings})


def test_tile_settings_normalise_sequences_to_tuples():
    tiles = TileSettings([1, 8, 8], mirror_axes=[2, 1])
    assert tiles.patch_size_vox == (1, 8, 8) and tiles.mirror_axes == (2, 1)
    assert hash(tiles) == hash(TileSettings((1, 8, 8), mirror_axes=(2, 1)))


def test_gaussian_importance_map_shape_peak_and_no_zeros():
    gaussian = gaussian_importance_map((32, 48, 48), dtype=torch.float16)
    assert gaussian.shape == (32, 48, 48)
    assert gaussian.max().item() == pytest.approx(10.0)
    assert gaussian[16, 24, 24].item() == pytest.approx(10.0)
    assert (gaussian > 0).all()
    assert gaussian[0, 0, 0].item() == gaussian[gaussian > 0].min().item()


def test_pad_to_patch_centres_with_extra_voxel_after():
    image = torch.ones(1, 3, 34, 55)
    padded, unpad = pad_to_patch(image, (3, 96, 64))
    assert padded.shape == (1, 3, 96, 64)
    assert unpad == (slice(0, 3), slice(31, 65), slice(4, 59))
    assert padded[0, :, 30, 10].sum() == 0 and padded[0, :, 31, 10].sum() == 3
    torch.testing.assert_close(padded[(slice(None), *unpad)], image)


def test_mirror_combinations_order_matches_nnunet():
    assert mirror_combinations((0, 1, 2)) == [(), (0,), (1,), (2,), (0, 1), (0, 2), (1, 2), (0, 1, 2)]
    assert mirror_combinations(()) == [()]


def test_labels_from_logits_is_argmax_with_first_class_winning_ties():
    logits = torch.randn(4, 6, 5, 7)
    logits[2, :2] = logits[1, :2] = logits[3, :2] = logits[:, :2].max(0).values + 1  # three-way ties
    logits[0, 5] = logits[3, 5] = 50.0  # class 0 against 3
    labels = labels_from_logits(logits)
    assert labels.dtype == np.uint8 and labels.shape == (6, 5, 7)
    assert np.array_equal(labels, torch.argmax(logits, dim=0).numpy())
    assert (labels[:2] == 1).all() and (labels[5] == 0).all()
    half = logits.half()
    assert np.array_equal(labels_from_logits(half.numpy()), labels_from_logits(half))
    with pytest.raises(ConfigError, match="256 classes"):
        labels_from_logits(np.zeros((300, 2)))
