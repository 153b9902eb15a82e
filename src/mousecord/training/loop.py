"""Train one model: parts built from a TrainConfig, a short epoch loop, validation, checkpoints, curves.

Determinism: the network is initialised from ``config.seed``; every epoch draws its patches and
augmentations from ``numpy.random.default_rng([seed, epoch])`` (with ``config.data_workers`` > 0, worker
``w`` of ``n`` draws its share of the epoch's batches from ``default_rng([seed, epoch, w, n])``). Since no
randomness carries over from one epoch to the next, a run resumed from a checkpoint (weights, optimiser,
schedule, history) continues exactly as the uninterrupted run would have, on CPU.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from mousecord.errors import ConfigError
from mousecord.inference.predictor import resolve_device
from mousecord.io.atomic import atomic_output
from mousecord.labels import LABEL_NAMES
from mousecord.models.network import build_network, load_weights
from mousecord.models.nnunet import load_checkpoint  # the one safe unpickler; re-exported for training
from mousecord.training.config import TrainConfig, architecture_of
from mousecord.training.data import TrainingCase, TrainingDataset, load_training_dataset
from mousecord.training.loss import deep_supervision_loss, masked_dice_ce_loss
from mousecord.training.patches import intensity_transforms, make_batch
from mousecord.training.validation import pooled_dice, predict_label_map, predict_logits, validate

logger = logging.getLogger(__name__)

CHECKPOINT_LAST = "checkpoint_last.pt"
CHECKPOINT_BEST = "checkpoint_best.pt"
PROGRESS_PNG = "progress.png"
CONFIG_JSON = "train_config.json"
HISTORY_JSON = "history.json"


@dataclass
class TrainParts:
    network: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    device: torch.device
    use_amp: bool


@dataclass
class TrainResult:
    """What one training run produced."""

    output_folder: Path
    history: dict[str, list[float]]
    best_epoch: int
    best_dice: dict[str, float]
    train_subjects: list[str] = field(default_factory=list)
    validation_subjects: list[str] = field(default_factory=list)
    #: validation Dice of the starting weights of a fine-tune (``best_epoch`` -1 when no epoch beat them)
    starting_dice: dict[str, float] = field(default_factory=dict)

    @property
    def best_checkpoint(self) -> Path:
        return self.output_folder / CHECKPOINT_BEST


# ---------------------------------------------------------------------------------------------- parts


def select_device(config: TrainConfig) -> torch.device:
    """The training device: :func:`mousecord.inference.resolve_device` of ``config.device``."""
    return resolve_device(config.device)


def build_training_network(config: TrainConfig) -> nn.Module:
    """The U-Net of ``config``, He-initialised (as nnU-Net) from ``config.seed``; global RNG untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        network = build_network(
            architecture_of(config),
            input_channels=1,
            num_classes=len(LABEL_NAMES),
            deep_supervision=config.deep_supervision,
        )
        network.apply(network.initialize)
    return network


def build_optimizer(config: TrainConfig, network: nn.Module) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            network.parameters(),
            lr=config.learning_rate,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
            nesterov=True,
        )
    return torch.optim.AdamW(network.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)


class PolySchedule(Protocol):
    """What :func:`build_scheduler` reads of a recipe (TrainConfig and InPlaneTrainConfig both have it)."""

    epochs: int
    iterations_per_epoch: int
    poly_exponent: float


def build_scheduler(
    config: PolySchedule, optimizer: torch.optim.Optimizer
) -> torch.optim.lr_scheduler.LambdaLR:
    """Poly schedule ``(1 - step / total_steps) ** poly_exponent``, stepped every iteration."""
    total_steps = config.epochs * config.iterations_per_epoch
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: max(1 - step / total_steps, 0.0) ** config.poly_exponent
    )


def build_parts(config: TrainConfig) -> TrainParts:
    device = select_device(config)
    network = build_training_network(config).to(device)
    optimizer = build_optimizer(config, network)
    use_amp = bool(config.mixed_precision and device.type == "cuda")
    return TrainParts(
        network,
        optimizer,
        build_scheduler(config, optimizer),
        torch.amp.GradScaler(device.type, enabled=use_amp),
        device,
        use_amp,
    )


# ---------------------------------------------------------------------------------------------- steps


class EpochBatches(torch.utils.data.IterableDataset):
    """The augmented batches of one epoch, split over DataLoader worker processes.

    nnU-Net's batchgenerators play this part; here a plain torch DataLoader over an iterable suffices,
    since a batch is built by numpy/torch code that needs no shared state. Each worker yields batches
    ``w, w + n, ...`` of the epoch, so the DataLoader (which visits workers in turn) keeps their order.
    """

    def __init__(self, cases: tuple[TrainingCase, ...], config: TrainConfig, epoch: int) -> None:
        self.cases, self.config, self.epoch = cases, config, epoch

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        if info is None:
            rng = np.random.default_rng([self.config.seed, self.epoch])
            count = self.config.iterations_per_epoch
        else:
            torch.set_num_threads(1)  # the workers already fill the cores
            rng = np.random.default_rng([self.config.seed, self.epoch, info.id, info.num_workers])
            count = len(range(info.id, self.config.iterations_per_epoch, info.num_workers))
        transforms = intensity_transforms(self.config.augmentation, rng)
        for _ in range(count):
            yield make_batch(self.cases, self.config, rng, transforms)


def epoch_batches(
    cases: tuple[TrainingCase, ...], config: TrainConfig, epoch: int, *, pin_memory: bool = False
) -> torch.utils.data.DataLoader:
    """A DataLoader over :class:`EpochBatches` with ``config.data_workers`` worker processes."""
    return torch.utils.data.DataLoader(
        EpochBatches(cases, config, epoch),
        batch_size=None,
        num_workers=config.data_workers,
        pin_memory=pin_memory,
        prefetch_factor=4 if config.data_workers else None,
    )


def train_epoch(
    parts: TrainParts,
    cases: tuple[TrainingCase, ...],
    config: TrainConfig,
    epoch: int,
    *,
    progress: bool = False,
) -> float:
    """Run ``config.iterations_per_epoch`` steps; returns the mean loss."""
    from tqdm import tqdm

    parts.network.train()
    losses = []
    batches = epoch_batches(cases, config, epoch, pin_memory=parts.device.type == "cuda")
    for images, targets in tqdm(
        batches, total=config.iterations_per_epoch, desc=f"epoch {epoch}", disable=not progress, leave=False
    ):
        losses.append(train_step(parts, images, targets, config))
    return float(np.mean(losses))


def train_step(parts: TrainParts, images: torch.Tensor, targets: torch.Tensor, config: TrainConfig) -> float:
    images = images.to(parts.device, non_blocking=True)
    targets = targets.to(parts.device, non_blocking=True)
    parts.optimizer.zero_grad(set_to_none=True)
    with torch.autocast(parts.device.type, dtype=torch.float16, enabled=parts.use_amp):
        outputs = parts.network(images)
    if isinstance(outputs, list | tuple):
        loss = deep_supervision_loss([output.float() for output in outputs], targets)
    else:
        loss = masked_dice_ce_loss(outputs.float(), targets)
    parts.scaler.scale(loss).backward()
    parts.scaler.unscale_(parts.optimizer)
    nn.utils.clip_grad_norm_(parts.network.parameters(), config.gradient_clip)
    parts.scaler.step(parts.optimizer)
    parts.scaler.update()
    parts.scheduler.step()
    return float(loss.detach())


# ---------------------------------------------------------------------------------------------- files


def save_checkpoint(path: Path, parts: TrainParts, config: TrainConfig, state: dict[str, Any]) -> Path:
    """state dicts + config JSON + loop state, written atomically; read back with :func:`load_checkpoint`."""
    checkpoint = {
        "network_weights": parts.network.state_dict(),
        "optimizer": parts.optimizer.state_dict(),
        "scheduler": parts.scheduler.state_dict(),
        "grad_scaler": parts.scaler.state_dict(),
        "config_json": config.to_json(),
        "architecture_json": json.dumps(architecture_of(config)),
        **state,
    }
    with atomic_output(path) as temporary:
        torch.save(checkpoint, temporary)
    return path


def plot_progress(
    history: dict[str, list[float]], path: Path, *, starting_dice: dict[str, float] | None = None
) -> Path:
    """nnU-Net-style progress picture: training loss, validation Dice and learning rate per epoch.

    Args:
        starting_dice: a fine-tune's validation Dice before its first epoch (drawn at epoch -1 and as a
            line: an epoch must beat it by ``min_gain_over_start`` to be kept).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(9, 7))
    loss_axes, lr_axes = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    epochs = history["epoch"]
    loss_axes.plot(epochs, history["train_loss"], color="tab:blue", marker=".", label="train loss")
    loss_axes.set_ylabel("loss")
    dice_axes = loss_axes.twinx()
    shown = []
    for key, colour in (("GM", "tab:red"), ("WM", "tab:cyan"), ("mean", "tab:green")):
        before = [starting_dice[key]] if starting_dice else []
        values = before + list(history[f"dice_{key}"])
        shown += values
        dice_axes.plot(
            [-1] * len(before) + list(epochs),
            values,
            color=colour,
            linestyle="--",
            marker=".",
            label=f"dice {key}",
        )
    if starting_dice:
        dice_axes.axhline(starting_dice["mean"], color="tab:green", linewidth=0.5, label="start")
    dice_axes.set_ylabel("validation Dice")
    # the range the values span (a fine-tune's changes are hundredths), within [0, 1]
    low, high = (min(shown), max(shown)) if shown else (0.0, 1.0)
    margin = max(0.02, 0.1 * (high - low))
    dice_axes.set_ylim(max(0.0, low - margin), min(1.0, high + margin))
    handles = loss_axes.get_legend_handles_labels()[0] + dice_axes.get_legend_handles_labels()[0]
    loss_axes.legend(handles=handles, loc="center right")
    lr_axes.plot(epochs, history["learning_rate"], color="black", marker=".")
    lr_axes.set_ylabel("learning rate")
    lr_axes.set_xlabel("epoch")
    lr_axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    figure.tight_layout()
    with atomic_output(path) as temporary:
        figure.savefig(temporary, format="png", dpi=80)
    return path


# ---------------------------------------------------------------------------------------------- loop


def split_subjects(subjects: list[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Deterministic (train, validation) subject split; at least one subject each when there are two."""
    order = list(np.random.default_rng(seed).permutation(sorted(subjects)))
    count = (
        min(max(1, round(len(order) * fraction)), len(order) - 1) if len(order) > 1 and fraction > 0 else 0
    )
    return sorted(order[count:]), sorted(order[:count])


def train_model(
    config: TrainConfig,
    dataset: TrainingDataset | Path | str,
    output_folder: Path | str,
    *,
    validation_subjects: Collection[str] | None = None,
    resume: bool = False,
    progress: bool = False,
    stop_after_epoch: int | None = None,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
    initial_weights: Mapping[str, torch.Tensor] | None = None,
) -> TrainResult:
    """Train one U-Net on ``dataset``, validating every epoch on held-out subjects' annotated slices.

    Args:
        config: the recipe.
        dataset: a loaded :class:`TrainingDataset`, or a BIDS / nnU-Net raw folder (default label folder).
        output_folder: receives train_config.json, checkpoint_last.pt, checkpoint_best.pt, history.json and
            progress.png.
        validation_subjects: held-out subjects (default: ``config.validation_fraction`` of them, by seed).
        resume: continue from ``checkpoint_last.pt`` in ``output_folder``.
        stop_after_epoch: stop once this many epochs are done (as if the run were killed); resume later.
        on_epoch_end: called with the epoch index and its metrics.
        initial_weights: start from these network weights (fine-tuning, e.g. a bundle's fold weights; see
            :func:`mousecord.training.config_from_bundle`) instead of random ones; a resumed run ignores
            them (its checkpoint holds the weights). They are validated first and stay the best checkpoint
            (``best_epoch`` -1) unless an epoch beats them.
    """
    if not isinstance(dataset, TrainingDataset):
        dataset = load_training_dataset(dataset)
    output_folder = Path(output_folder)
    if validation_subjects is None:
        train_subjects, validation_list = split_subjects(
            dataset.subjects, config.validation_fraction, config.seed
        )
    else:
        validation_list = sorted(validation_subjects)
        train_subjects = sorted(set(dataset.subjects) - set(validation_list))
    train_cases, validation_cases = dataset.select(set(train_subjects)), dataset.select(set(validation_list))
    if not train_cases:
        raise ConfigError(f"{dataset.source}: no training case left after holding out {validation_list}")
    if not validation_cases:
        logger.warning("no held-out subject: validation Dice is measured on the training slices")
        validation_cases = train_cases
    parts = build_parts(config)
    if initial_weights is not None and not resume:
        try:
            load_weights(parts.network, dict(initial_weights))
        except ConfigError as error:
            raise ConfigError(f"initial weights do not fit the training network: {error}") from error
    state = _initial_state(output_folder, parts, config, resume=resume)
    with atomic_output(output_folder / CONFIG_JSON) as temporary:
        temporary.write_text(config.to_json() + "\n")
    history = state["history"]
    if initial_weights is not None and state["epoch"] == 0:
        dice = validate(parts.network, validation_cases, config, device=parts.device, use_amp=parts.use_amp)
        keep_starting_weights(
            state,
            dice,
            lambda: save_checkpoint(output_folder / CHECKPOINT_BEST, parts, config, state),
            min_gain=config.min_gain_over_start,
        )
    for epoch in range(state["epoch"], config.epochs):
        if stop_after_epoch is not None and epoch >= stop_after_epoch:
            break
        started = time.perf_counter()
        loss = train_epoch(parts, train_cases, config, epoch, progress=progress)
        dice = validate(parts.network, validation_cases, config, device=parts.device, use_amp=parts.use_amp)
        metrics = {
            "epoch": epoch,
            "train_loss": loss,
            **{f"dice_{key}": value for key, value in dice.items()},
            "learning_rate": parts.optimizer.param_groups[0]["lr"],
            "seconds": time.perf_counter() - started,
        }
        for key, value in metrics.items():
            history.setdefault(key, []).append(value)
        _end_epoch(output_folder, parts, config, state, epoch, dice)
        logger.info(
            "epoch %d/%d: loss %.4f, Dice GM %.3f WM %.3f (%.1f s)",
            epoch,
            config.epochs - 1,
            loss,
            dice["GM"],
            dice["WM"],
            metrics["seconds"],
        )
        if on_epoch_end is not None:
            on_epoch_end(epoch, metrics)
    return result_of(output_folder, state, train_subjects, validation_list)


def keep_starting_weights(
    state: dict[str, Any], dice: dict[str, float], save_best: Callable[[], Any], *, min_gain: float
) -> None:
    """Make the starting weights of a fine-tune, validated at ``dice``, the best so far (epoch -1) in the
    loop ``state``, and ``save_best`` them: an epoch must beat their mean Dice by ``min_gain`` to replace
    them."""
    state.update(best_metric=dice["mean"] + min_gain, best_epoch=-1, starting_dice=dice)
    save_best()
    logger.info("starting weights: validation Dice GM %.3f WM %.3f", dice["GM"], dice["WM"])


def result_of(
    output_folder: Path,
    state: dict[str, Any],
    train_subjects: Sequence[str] = (),
    validation_subjects: Sequence[str] = (),
) -> TrainResult:
    """The :class:`TrainResult` of a finished loop ``state``; best epoch -1 means the starting weights of a
    fine-tune, validated before the first epoch, were never beaten."""
    history, best_epoch = state["history"], int(state["best_epoch"])
    starting = dict(state.get("starting_dice", {}))
    if best_epoch < 0:
        if history.get("epoch"):
            start = float(starting["mean"])
            logger.warning(
                "no epoch beat the starting weights' mean validation Dice %.3f by %.3f (min_gain_over_start "
                "of the training recipe; smaller gains on a few slices are noise): the best checkpoint keeps "
                "them",
                start,
                float(state["best_metric"]) - start,
            )
        best = starting
    elif history.get("epoch"):
        best = {key: history[f"dice_{key}"][best_epoch] for key in ("GM", "WM", "mean")}
    else:
        best = {}
    return TrainResult(
        output_folder, history, best_epoch, best, list(train_subjects), list(validation_subjects), starting
    )


#: What a checkpoint carries of the loop's state (besides weights and optimiser), for resuming.
LOOP_STATE_KEYS = ("epoch", "history", "best_metric", "best_epoch", "starting_dice")


def checkpoint_to_resume(output_folder: Path, *, resume: bool) -> Path | None:
    """The checkpoint a run in ``output_folder`` continues from: None for a new run, which must not find a
    previous one there, and ``checkpoint_last.pt`` for a resumed one, which must find it.

    Raises:
        ConfigError: a previous run without ``resume``, or ``resume`` without one.
    """
    last = output_folder / CHECKPOINT_LAST
    if not resume:
        if last.exists():
            raise ConfigError(
                f"{output_folder}: holds a previous run ({last.name}); resume it (resume=True) or use a new "
                "folder"
            )
        return None
    if not last.exists():
        raise ConfigError(
            f"{output_folder}: no run to resume ({last.name} missing); start one without resume"
        )
    return last


def _initial_state(
    output_folder: Path, parts: TrainParts, config: TrainConfig, *, resume: bool
) -> dict[str, Any]:
    last = checkpoint_to_resume(output_folder, resume=resume)
    if last is None:
        return {"epoch": 0, "history": {}, "best_metric": -math.inf, "best_epoch": 0}
    checkpoint = load_checkpoint(last)
    saved = TrainConfig.from_dict(json.loads(checkpoint["config_json"])).to_dict()
    asked = config.to_dict()
    differing = [key for key in asked if key != "epochs" and saved.get(key) != asked[key]]
    if differing:  # the data workers too: each draws its own batches
        changes = ", ".join(f"{key} {saved.get(key)!r} (now {asked[key]!r})" for key in differing)
        raise ConfigError(f"{last}: was trained with {changes}; resume with the same settings")
    parts.network.load_state_dict(checkpoint["network_weights"])
    parts.optimizer.load_state_dict(checkpoint["optimizer"])
    parts.scheduler.load_state_dict(checkpoint["scheduler"])
    parts.scaler.load_state_dict(checkpoint["grad_scaler"])
    logger.info("resuming %s at epoch %d", output_folder, checkpoint["epoch"])
    return {key: checkpoint[key] for key in LOOP_STATE_KEYS if key in checkpoint}


def _end_epoch(
    output_folder: Path, parts: TrainParts, config: TrainConfig, state: dict[str, Any], epoch: int, dice: dict
) -> None:
    state["epoch"] = epoch + 1
    if dice["mean"] > state["best_metric"]:
        state["best_metric"], state["best_epoch"] = dice["mean"], epoch
        save_checkpoint(output_folder / CHECKPOINT_BEST, parts, config, state)
    save_checkpoint(output_folder / CHECKPOINT_LAST, parts, config, state)
    with atomic_output(output_folder / HISTORY_JSON) as temporary:
        temporary.write_text(json.dumps(state["history"], indent=1) + "\n")
    plot_progress(state["history"], output_folder / PROGRESS_PNG, starting_dice=state.get("starting_dice"))


__all__ = [
    "EpochBatches",
    "LOOP_STATE_KEYS",
    "TrainParts",
    "TrainResult",
    "build_optimizer",
    "build_parts",
    "build_scheduler",
    "build_training_network",
    "checkpoint_to_resume",
    "epoch_batches",
    "keep_starting_weights",
    "load_checkpoint",
    "plot_progress",
    "pooled_dice",
    "predict_label_map",
    "predict_logits",
    "result_of",
    "save_checkpoint",
    "select_device",
    "split_subjects",
    "train_model",
    "validate",
]
