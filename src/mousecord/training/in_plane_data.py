"""Training samples of in-plane networks: synthetic slabs drawn afresh (normalised as inference does) and
annotated slices with their neighbours, augmented in-plane; batches reproducible per (seed, epoch, index)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import torch

from mousecord.inference.preprocessing import normalize
from mousecord.synthesis import synthesize
from mousecord.training.data import TrainingCase
from mousecord.training.in_plane_config import InPlaneTrainConfig
from mousecord.training.patches import (
    SpatialParams,
    augment_intensity,
    extract_patch,
    intensity_transforms,
    sample_center,
)


def synthetic_sample(config: InPlaneTrainConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A (slices, y, x) float32 normalised patch and its (y, x) labels, from a new synthetic field.

    The whole field is normalised by the inference normalisation first and the patch cut from it
    afterwards, as inference normalises a whole image before cutting its tiles.
    """
    sample = synthesize(config.synthesis, rng)
    image = normalize(sample.image)
    patch = np.asarray(config.synthesis.patch_size_vox)
    field_shape = np.asarray(sample.label_map.shape)
    if sample.parameters["cord_present"] and rng.random() < 0.85:
        centre = (
            np.asarray(sample.parameters["centre_mm"]) / config.synthesis.spacing_mm + (field_shape - 1) / 2
        )
        start = centre - patch / 2 + rng.uniform(-0.35, 0.35, 2) * patch
    else:
        start = rng.uniform(0, 1, 2) * (field_shape - patch)
    y, x = np.clip(np.round(start).astype(int), 0, field_shape - patch)
    return image[:, y : y + patch[0], x : x + patch[1]], sample.label_map[y : y + patch[0], x : x + patch[1]]


def annotated_sample(
    case: TrainingCase, config: InPlaneTrainConfig, rng: np.random.Generator, transforms: list
) -> tuple[np.ndarray, np.ndarray]:
    """A patch centred near the cord on an annotated slice of ``case``, its neighbours as channels, rotated
    by any angle, scaled and flipped in-plane, with intensity augmentation; (slices, y, x) and (y, x) labels
    (IGNORE_VALUE where the patch reaches outside the volume)."""
    augmentation = config.augmentation
    patch = (config.synthesis.slab_slices, *config.synthesis.patch_size_vox)
    centre = sample_center(case, patch, rng, annotated_fraction=1.0)
    in_plane = np.eye(2)
    if augmentation.enabled:
        if rng.random() < augmentation.rotation_probability:
            angle = rng.uniform(-math.pi, math.pi)
            in_plane = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        if rng.random() < augmentation.scaling_probability:
            in_plane = in_plane / rng.uniform(*augmentation.scaling_range)
        in_plane = in_plane @ np.diag(np.where(rng.random(2) < augmentation.flip_probability, -1.0, 1.0))
    matrix = np.eye(3)
    matrix[1:, 1:] = in_plane  # slices stay where they are: z is never resampled
    # the slab's slices, the first and last replicated beyond the ends as slab_channels does at inference
    half = patch[0] // 2
    rows = np.clip(np.arange(int(centre[0]) - half, int(centre[0]) + half + 1), 0, case.image.shape[0] - 1)
    slab = dataclasses.replace(case, image=case.image[rows], label_map=case.label_map[rows])
    image, labels = extract_patch(slab, (half, centre[1], centre[2]), patch, SpatialParams(matrix, None))
    image = augment_intensity(image, labels, augmentation, transforms, rng)
    return image, labels[half]


def in_plane_batch(
    config: InPlaneTrainConfig, rng: np.random.Generator, cases: Sequence[TrainingCase] = ()
) -> tuple[torch.Tensor, torch.Tensor]:
    """(b, slices, y, x) float32 images and (b, y, x) int64 labels: a share ``config.annotated_fraction``
    from ``cases``' annotated slices, the rest synthetic."""
    transforms = intensity_transforms(config.augmentation, rng) if cases else []
    images, labels = [], []
    for _ in range(config.batch_size):
        if cases and rng.random() < config.annotated_fraction:
            image, label_map = annotated_sample(cases[int(rng.integers(len(cases)))], config, rng, transforms)
        else:
            image, label_map = synthetic_sample(config, rng)
        images.append(image)
        labels.append(label_map)
    return torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(labels).astype(np.int64))


class InPlaneBatches(torch.utils.data.IterableDataset):
    """The batches of one epoch; batch ``i`` is drawn from ``default_rng([seed, epoch, i])``."""

    def __init__(self, config: InPlaneTrainConfig, epoch: int, cases: Sequence[TrainingCase] = ()) -> None:
        self.config, self.epoch, self.cases = config, epoch, tuple(cases)

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        if info is not None:
            torch.set_num_threads(1)
        for index in range(worker, self.config.iterations_per_epoch, workers):
            rng = np.random.default_rng([self.config.seed, self.epoch, index])
            yield in_plane_batch(self.config, rng, self.cases)


__all__ = ["InPlaneBatches", "annotated_sample", "in_plane_batch", "synthetic_sample"]
