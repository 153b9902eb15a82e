"""Validation of a 3D network during training: the sliding window users run, over the annotated slabs of
held-out volumes, Dice pooled over all of them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch
from torch import nn

from mousecord.inference.sliding_window import TileSettings, sliding_window
from mousecord.labels import IGNORE_VALUE, LABEL_NAMES, TISSUE_LABELS
from mousecord.training.config import TrainConfig
from mousecord.training.data import TrainingCase


def predict_logits(
    network: nn.Module,
    image: np.ndarray,
    patch_size_vox: Sequence[int],
    *,
    device: torch.device | str = "cpu",
    use_amp: bool = False,
) -> torch.Tensor:
    """Sliding-window logits (C, z, y, x) of a preprocessed (z, y, x) image, by the sliding window
    ``mousecord segment`` runs (:func:`mousecord.inference.sliding_window.sliding_window`: nnU-Net's
    tile placement and Gaussian, step 0.5), so validation measures what users get."""

    def predictor(patch: torch.Tensor) -> torch.Tensor:
        output = network(patch)
        return output[0] if isinstance(output, list | tuple) else output

    network.eval()
    with torch.inference_mode():
        inputs = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None]
        return sliding_window(
            inputs,
            predictor,
            TileSettings(patch_size_vox, step_fraction=0.5, accumulate_dtype=torch.float32),
            window_device=device,
            autocast=use_amp,
        ).float()


def predict_label_map(
    network: nn.Module,
    image: np.ndarray,
    patch_size_vox: Sequence[int],
    *,
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """(z, y, x) uint8 argmax label map of a z-scored (z, y, x) image."""
    return predict_logits(network, image, patch_size_vox, device=device).argmax(0).numpy().astype(np.uint8)


def _slabs(annotated: np.ndarray, depth: int, patch_depth: int) -> list[tuple[int, int]]:
    """Merged z ranges, one patch deep, centred on each annotated slice."""
    ranges: list[list[int]] = []
    for z in sorted(int(value) for value in annotated):
        start = min(max(0, z - patch_depth // 2), max(depth - patch_depth, 0))
        stop = min(depth, start + patch_depth)
        if ranges and start <= ranges[-1][1]:
            ranges[-1][1] = max(ranges[-1][1], stop)
        else:
            ranges.append([start, stop])
    return [(start, stop) for start, stop in ranges]


def validate(
    network: nn.Module,
    cases: tuple[TrainingCase, ...],
    config: TrainConfig,
    *,
    device: torch.device,
    use_amp: bool,
) -> dict[str, float]:
    """Dice of GM and WM over the annotated voxels of ``cases`` (statistics pooled over cases)."""

    def pairs():
        for case in cases:
            slabs = _slabs(case.labelled_slice_indices, case.image.shape[0], config.patch_size_vox[0])
            for start, stop in slabs:
                logits = predict_logits(
                    network, case.image[start:stop], config.patch_size_vox, device=device, use_amp=use_amp
                )
                yield logits.argmax(0).numpy(), case.label_map[start:stop]

    return pooled_dice(pairs())


def pooled_dice(pairs: Iterable[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """GM, WM and mean Dice over (prediction, truth) array pairs, statistics pooled over all pairs; truth
    voxels holding IGNORE_VALUE are left out, and a tissue absent from both counts as 1."""
    overlap = np.zeros(len(LABEL_NAMES))
    total = np.zeros(len(LABEL_NAMES))
    for prediction, truth in pairs:
        known = truth != IGNORE_VALUE
        for label in TISSUE_LABELS:
            predicted, expected = (prediction == label) & known, (truth == label) & known
            overlap[label] += np.count_nonzero(predicted & expected)
            total[label] += np.count_nonzero(predicted) + np.count_nonzero(expected)
    scores = {
        LABEL_NAMES[label]: float(2 * overlap[label] / total[label]) if total[label] else 1.0
        for label in TISSUE_LABELS
    }
    scores["mean"] = float(np.mean([scores[LABEL_NAMES[label]] for label in TISSUE_LABELS]))
    return scores


__all__ = ["pooled_dice", "predict_label_map", "predict_logits", "validate"]
