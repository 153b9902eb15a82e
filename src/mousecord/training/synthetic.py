"""Train an in-plane (2D / 2.5D) network on samples synthesised on the fly, validated through the Predictor.

Every batch is new (:mod:`mousecord.synthesis`): nothing is drawn from a fixed set of volumes. Images are
normalised by the same function inference uses (:func:`mousecord.inference.preprocessing.normalize`), and
validation runs the deployed :class:`~mousecord.inference.Predictor` on whole held-out volumes made by
another generator (:mod:`mousecord.phantom`, whose surroundings and contrasts the synthesis never draws),
so the number that selects the checkpoint is a generalisation number, measured the way users run the model.

Determinism: batch ``i`` of epoch ``e`` comes from ``numpy.random.default_rng([seed, e, i])`` whichever
worker builds it, so a run resumed from ``checkpoint_last.pt`` continues exactly as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mousecord.errors import ConfigError
from mousecord.inference.predictor import InferenceConfig, Predictor
from mousecord.inference.preprocessing import normalize
from mousecord.io.atomic import atomic_output
from mousecord.io.volume import Volume
from mousecord.labels import DATASET_JSON_LABELS, LABEL_NAMES, TISSUE_LABELS
from mousecord.models.bundle import ModelBundle
from mousecord.models.network import build_network, plain_unet_architecture
from mousecord.options import DEVICES
from mousecord.synthesis import SynthesisConfig, synthesize
from mousecord.training.loop import (
    CHECKPOINT_BEST,
    CHECKPOINT_LAST,
    HISTORY_JSON,
    PROGRESS_PNG,
    load_checkpoint,
    plot_progress,
    select_device,
)
from mousecord.training.loss import masked_dice_ce_loss

logger = logging.getLogger(__name__)

SYNTHETIC_CONFIG_JSON = "synthetic_train_config.json"


@dataclass(frozen=True)
class SyntheticTrainConfig:
    """Recipe of an in-plane network trained on synthetic slabs.

    Attributes:
        features_per_stage: 2D PlainConvUNet features; each stage after the first halves y and x.
        n_conv_per_stage: convolutions per stage (encoder and decoder).
        batch_size, epochs, iterations_per_epoch: an epoch is a fixed number of fresh batches.
        learning_rate, weight_decay, poly_exponent, gradient_clip: AdamW with poly decay per iteration.
        seed: weights and every sample derive from it.
        device: "auto", "cpu" or "cuda".
        data_workers: processes synthesising batches while the network trains (0: the main process).
        synthesis: the generator's ranges; its ``patch_size_vox``, ``spacing_mm`` and ``slab_slices`` are
            the model's.
    """

    features_per_stage: tuple[int, ...] = (16, 32, 64, 128, 256, 256)
    n_conv_per_stage: int = 2
    batch_size: int = 12
    epochs: int = 40
    iterations_per_epoch: int = 60
    learning_rate: float = 2e-3
    weight_decay: float = 3e-5
    poly_exponent: float = 0.9
    gradient_clip: float = 12.0
    seed: int = 0
    device: str = "auto"
    data_workers: int = 1
    synthesis: SynthesisConfig = field(default_factory=SynthesisConfig)

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise ConfigError(f"device must be one of {DEVICES}, got {self.device!r}")
        for name in ("batch_size", "epochs", "iterations_per_epoch", "n_conv_per_stage"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.data_workers < 0:
            raise ConfigError(f"data_workers must be >= 0, got {self.data_workers}")
        if self.learning_rate <= 0:
            raise ConfigError(f"learning_rate must be positive, got {self.learning_rate}")
        reduction = 2 ** (len(self.features_per_stage) - 1)
        if any(size % reduction for size in self.synthesis.patch_size_vox):
            raise ConfigError(
                f"synthesis patch_size_vox {self.synthesis.patch_size_vox} must be divisible by {reduction} "
                f"for a network of {len(self.features_per_stage)} stages"
            )

    @property
    def strides(self) -> tuple[tuple[int, int], ...]:
        return ((1, 1),) + ((2, 2),) * (len(self.features_per_stage) - 1)

    def architecture(self) -> dict[str, Any]:
        """The nnU-Net-style description of the 2D network."""
        return plain_unet_architecture(
            features_per_stage=tuple(self.features_per_stage),
            strides=self.strides,
            n_conv_per_stage=self.n_conv_per_stage,
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SyntheticTrainConfig:
        """Build from a (possibly partial) dict, e.g. parsed JSON; unknown keys are an error."""
        known = {item.name for item in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown synthetic training settings {unknown}; known: {sorted(known)}")
        values = dict(values)
        if isinstance(values.get("synthesis"), dict):
            values["synthesis"] = SynthesisConfig.from_dict(values["synthesis"])
        if "features_per_stage" in values:
            values["features_per_stage"] = tuple(int(value) for value in values["features_per_stage"])
        return cls(**values)


def synthetic_batch(
    config: SyntheticTrainConfig, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """(b, slices, y, x) float32 normalised images and (b, y, x) int64 labels, each sample new.

    Each sample's whole field is normalised by the inference normalisation first and the patch cut from it
    afterwards, as inference normalises a whole image before cutting its tiles.
    """
    images, labels = [], []
    patch = np.asarray(config.synthesis.patch_size_vox)
    for _ in range(config.batch_size):
        sample = synthesize(config.synthesis, rng)
        image = normalize(sample.image)
        field = np.asarray(sample.label_map.shape)
        if sample.parameters["cord_present"] and rng.random() < 0.85:
            centre = (
                np.asarray(sample.parameters["centre_mm"]) / config.synthesis.spacing_mm + (field - 1) / 2
            )
            start = centre - patch / 2 + rng.uniform(-0.35, 0.35, 2) * patch
        else:
            start = rng.uniform(0, 1, 2) * (field - patch)
        y, x = np.clip(np.round(start).astype(int), 0, field - patch)
        images.append(image[:, y : y + patch[0], x : x + patch[1]])
        labels.append(sample.label_map[y : y + patch[0], x : x + patch[1]])
    return torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(labels).astype(np.int64))


class SyntheticBatches(torch.utils.data.IterableDataset):
    """The batches of one epoch; batch ``i`` is drawn from ``default_rng([seed, epoch, i])``."""

    def __init__(self, config: SyntheticTrainConfig, epoch: int) -> None:
        self.config, self.epoch = config, epoch

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        if info is not None:
            torch.set_num_threads(1)
        for index in range(worker, self.config.iterations_per_epoch, workers):
            yield synthetic_batch(self.config, np.random.default_rng([self.config.seed, self.epoch, index]))


def build_network_for(config: SyntheticTrainConfig) -> nn.Module:
    """The 2D U-Net, He-initialised from ``config.seed`` (global RNG untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        network = build_network(
            config.architecture(),
            input_channels=config.synthesis.slab_slices,
            num_classes=len(LABEL_NAMES),
        )
        network.apply(network.initialize)
    return network


def bundle_from_weights(
    config: SyntheticTrainConfig,
    weights: dict[str, torch.Tensor],
    *,
    name: str,
    inference: dict[str, Any] | None = None,
    model_card: str = "",
    metadata: dict[str, Any] | None = None,
) -> ModelBundle:
    """An in-plane :class:`ModelBundle` of ``weights``: what validation runs and what export writes."""
    synthesis = config.synthesis
    return ModelBundle(
        name=name,
        architecture=config.architecture(),
        # the z spacing of an in-plane model is never used: images keep their own slices
        spacing_mm=(synthesis.spacing_mm, synthesis.spacing_mm, synthesis.spacing_mm),
        patch_size_vox=(1, *synthesis.patch_size_vox),
        fold_weights=({key: value.detach().cpu().clone() for key, value in weights.items()},),
        labels=dict(DATASET_JSON_LABELS),
        mirror_axes=(1, 2),
        slab_slices=synthesis.slab_slices,
        model_card=model_card,
        metadata={
            "training_config": config.to_dict(),
            **(metadata or {}),
            **({"inference": dict(inference)} if inference else {}),
        },
    )


def validate_volumes(predictor: Predictor, volumes: Sequence[tuple[Volume, np.ndarray]]) -> dict[str, float]:
    """GM and WM Dice of ``predictor`` over whole labelled volumes (statistics pooled over volumes)."""
    overlap = np.zeros(len(LABEL_NAMES))
    total = np.zeros(len(LABEL_NAMES))
    for volume, truth in volumes:
        prediction = predictor.predict_volume(volume).label_map
        for label in TISSUE_LABELS:
            overlap[label] += np.count_nonzero((prediction == label) & (truth == label))
            total[label] += np.count_nonzero(prediction == label) + np.count_nonzero(truth == label)
    scores = {
        LABEL_NAMES[label]: float(2 * overlap[label] / total[label]) if total[label] else 1.0
        for label in TISSUE_LABELS
    }
    scores["mean"] = float(np.mean([scores[LABEL_NAMES[label]] for label in TISSUE_LABELS]))
    return scores


@dataclass
class SyntheticTrainResult:
    output_folder: Path
    history: dict[str, list[float]]
    best_epoch: int
    best_dice: dict[str, float]


def train_synthetic(
    config: SyntheticTrainConfig,
    output_folder: Path | str,
    validation_volumes: Sequence[tuple[Volume, np.ndarray]],
    *,
    resume: bool = False,
    progress: bool = False,
    stop_after_epoch: int | None = None,
    inference: dict[str, Any] | None = None,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
) -> SyntheticTrainResult:
    """Train an in-plane network on synthetic slabs; validate each epoch through the Predictor.

    Args:
        config: the recipe.
        output_folder: receives synthetic_train_config.json, checkpoint_last.pt, checkpoint_best.pt,
            history.json and progress.png.
        validation_volumes: (volume, truth label map on the volume's grid) pairs, e.g. phantoms of
            settings the synthesis never draws.
        resume: continue from ``checkpoint_last.pt``.
        stop_after_epoch: stop once this many epochs are done (as if killed); resume later.
        inference: the bundle's ``metadata["inference"]`` used for validation (e.g. the cord ROI path).
        on_epoch_end: called with the epoch index and its metrics.
    """
    if not validation_volumes:
        raise ConfigError("synthetic training needs at least one validation volume")
    output_folder = Path(output_folder)
    output_folder.mkdir(parents=True, exist_ok=True)
    device = select_device(config)
    network = build_network_for(config).to(device)
    optimizer = torch.optim.AdamW(
        network.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    total_steps = config.epochs * config.iterations_per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: max(1 - step / total_steps, 0.0) ** config.poly_exponent
    )
    state = _initial_state(output_folder, config, network, optimizer, scheduler, resume=resume)
    with atomic_output(output_folder / SYNTHETIC_CONFIG_JSON) as temporary:
        temporary.write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    history = state["history"]
    for epoch in range(state["epoch"], config.epochs):
        if stop_after_epoch is not None and epoch >= stop_after_epoch:
            break
        started = time.perf_counter()
        loss, waited = _train_epoch(network, optimizer, scheduler, config, epoch, device, progress=progress)
        trained = time.perf_counter() - started
        bundle = bundle_from_weights(config, network.state_dict(), name="validation", inference=inference)
        predictor = Predictor(bundle, InferenceConfig(device="cpu", backend="torch", batch_size_tiles=8))
        dice = validate_volumes(predictor, validation_volumes)
        metrics = {
            "epoch": epoch,
            "train_loss": loss,
            **{f"dice_{key}": value for key, value in dice.items()},
            "learning_rate": optimizer.param_groups[0]["lr"],
            "seconds": time.perf_counter() - started,
            "training_seconds": trained,
            "data_wait_fraction": waited / max(trained, 1e-9),
        }
        for key, value in metrics.items():
            history.setdefault(key, []).append(value)
        state["epoch"] = epoch + 1
        if dice["mean"] > state["best_metric"]:
            state["best_metric"], state["best_epoch"] = dice["mean"], epoch
            _save(output_folder / CHECKPOINT_BEST, config, network, optimizer, scheduler, state)
        _save(output_folder / CHECKPOINT_LAST, config, network, optimizer, scheduler, state)
        with atomic_output(output_folder / HISTORY_JSON) as temporary:
            temporary.write_text(json.dumps(history, indent=1) + "\n")
        plot_progress(history, output_folder / PROGRESS_PNG)
        logger.info(
            "epoch %d: loss %.4f, validation Dice GM %.3f WM %.3f (%.0f s, %.0f %% waiting for data)",
            epoch,
            loss,
            dice["GM"],
            dice["WM"],
            metrics["seconds"],
            100 * metrics["data_wait_fraction"],
        )
        if on_epoch_end is not None:
            on_epoch_end(epoch, metrics)
    best = int(state["best_epoch"])
    best_dice = {key: history[f"dice_{key}"][best] for key in ("GM", "WM", "mean")} if history else {}
    return SyntheticTrainResult(output_folder, history, best, best_dice)


def _train_epoch(network, optimizer, scheduler, config, epoch, device, *, progress) -> tuple[float, float]:
    """Mean loss of one epoch and the seconds spent waiting for batches."""
    from tqdm import tqdm

    network.train()
    loader = torch.utils.data.DataLoader(
        SyntheticBatches(config, epoch),
        batch_size=None,
        num_workers=config.data_workers,
        prefetch_factor=4 if config.data_workers else None,
    )
    losses, waited = [], 0.0
    batches = iter(loader)
    bar = tqdm(total=config.iterations_per_epoch, desc=f"epoch {epoch}", disable=not progress, leave=False)
    while True:
        asked = time.perf_counter()
        try:
            images, targets = next(batches)
        except StopIteration:
            break
        waited += time.perf_counter() - asked
        images, targets = images.to(device), targets.to(device)
        optimizer.zero_grad(set_to_none=True)
        loss = masked_dice_ce_loss(network(images), targets)
        loss.backward()
        nn.utils.clip_grad_norm_(network.parameters(), config.gradient_clip)
        optimizer.step()
        scheduler.step()
        losses.append(float(loss.detach()))
        bar.update()
    bar.close()
    return float(np.mean(losses)), waited


def _save(path: Path, config, network, optimizer, scheduler, state: dict[str, Any]) -> None:
    checkpoint = {
        "network_weights": network.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "synthetic_config_json": json.dumps(config.to_dict()),
        **state,
    }
    with atomic_output(path) as temporary:
        torch.save(checkpoint, temporary)


def _initial_state(output_folder: Path, config, network, optimizer, scheduler, *, resume: bool) -> dict:
    last = output_folder / CHECKPOINT_LAST
    if not resume:
        if last.exists():
            raise ConfigError(
                f"{output_folder}: holds a previous run ({last.name}); resume it or use a new folder"
            )
        return {"epoch": 0, "history": {}, "best_metric": -math.inf, "best_epoch": 0}
    checkpoint = load_checkpoint(last)
    saved = SyntheticTrainConfig.from_dict(json.loads(checkpoint["synthetic_config_json"]))
    if saved.to_dict() | {"epochs": 0} != config.to_dict() | {"epochs": 0}:
        raise ConfigError(
            f"{last}: was trained with a different configuration; resume with the same settings"
        )
    network.load_state_dict(checkpoint["network_weights"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    logger.info("resuming %s at epoch %d", output_folder, checkpoint["epoch"])
    return {key: checkpoint[key] for key in ("epoch", "history", "best_metric", "best_epoch")}


__all__ = [
    "SyntheticBatches",
    "SyntheticTrainConfig",
    "SyntheticTrainResult",
    "build_network_for",
    "bundle_from_weights",
    "synthetic_batch",
    "train_synthetic",
    "validate_volumes",
]
