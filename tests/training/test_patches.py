"""Patch sampling and spatial augmentation keep labels nearest-neighbour and pad with the ignore value."""

from __future__ import annotations

import dataclasses

import numpy as np

from mousecord.labels import IGNORE_VALUE
from mousecord.training.config import AugmentationConfig, TrainConfig
from mousecord.training.data import TrainingCase
from mousecord.training.patches import SpatialParams, extract_patch, make_batch, sample_center, sample_spatial


def _case(shape=(9, 11, 13)) -> TrainingCase:
    rng = np.random.default_rng(0)
    label_map = rng.integers(0, 3, size=shape).astype(np.uint8)
    label_map[[z for z in (0, 2, 5, 8) if z < shape[0] - 1]] = IGNORE_VALUE
    image = rng.normal(size=shape).astype(np.float32)
    return TrainingCase("case", "sub-01", image, label_map, (0.05, 0.05, 0.05))


def test_identity_patch_is_an_exact_crop() -> None:
    case = _case()
    image, labels = extract_patch(case, (4, 5, 6), (3, 5, 7), SpatialParams(np.eye(3), None))
    np.testing.assert_allclose(image, case.image[3:6, 3:8, 3:10], atol=1e-5)
    np.testing.assert_array_equal(labels, case.label_map[3:6, 3:8, 3:10])


def test_outside_the_volume_is_ignore_not_background() -> None:
    case = _case()
    image, labels = extract_patch(case, (0, 0, 0), (4, 4, 4), SpatialParams(np.eye(3), None))
    assert (labels[:1] == IGNORE_VALUE).all() and (labels[:, :1] == IGNORE_VALUE).all()
    assert (image[:1] == 0).all()


def test_one_slice_volume_pads_with_ignore_along_z() -> None:
    case = _case((1, 11, 13))
    case = dataclasses.replace(case, label_map=np.ones((1, 11, 13), np.uint8))
    _, labels = extract_patch(case, (0, 5, 6), (5, 3, 3), SpatialParams(np.eye(3), None))
    assert (labels[2] == 1).all()
    assert (labels[[0, 1, 3, 4]] == IGNORE_VALUE).all()


def test_augmented_labels_keep_label_values() -> None:
    case = _case()
    augmentation = AugmentationConfig(rotation_probability=1, scaling_probability=1, elastic_probability=1)
    rng = np.random.default_rng(1)
    for _ in range(5):
        _, labels = extract_patch(case, (4, 5, 6), (8, 8, 8), sample_spatial(augmentation, rng))
        assert set(np.unique(labels)) <= {0, 1, 2, IGNORE_VALUE}


def test_centres_favour_annotated_slices() -> None:
    case = _case((20, 11, 13))
    rng = np.random.default_rng(0)
    centres = [sample_center(case, (4, 4, 4), rng, annotated_fraction=1.0)[0] for _ in range(50)]
    assert set(centres) <= set(case.labelled_slice_indices.tolist())


def test_batch_is_deterministic_for_a_seed() -> None:
    case = _case((16, 20, 20))
    config = TrainConfig(patch_size_vox=(8, 16, 16), batch_size=2)
    batches = [make_batch((case,), config, np.random.default_rng(3), []) for _ in range(2)]
    np.testing.assert_array_equal(batches[0][0].numpy(), batches[1][0].numpy())
    np.testing.assert_array_equal(batches[0][1].numpy(), batches[1][1].numpy())
    assert batches[0][0].shape == (2, 1, 8, 16, 16) and batches[0][1].shape == (2, 8, 16, 16)
