"""Train an in-plane (2D / 2.5D) network on synthetic slabs, a user's annotated slices, or a mix of both.

Synthetic samples are new in every batch (:mod:`mousecord.synthesis`): nothing is drawn from a fixed set of
volumes; their whole field is normalised by the function inference uses
(:func:`mousecord.inference.preprocessing.normalize`) before the patch is cut. Annotated slices come from a
dataset prepared by the Predictor's own preprocessing (:func:`~mousecord.training.load_training_dataset`
with the model's ``input_spec``), each with its neighbours as channels, rotated, scaled and flipped in-plane
(unannotated slices are never sampled, so the ignore label only covers what comes from outside the volume).
Validation runs the deployed :class:`~mousecord.inference.Predictor` on whole held-out volumes (e.g.
phantoms of :mod:`mousecord.phantom`, whose surroundings and contrasts the synthesis never draws), so the
number that selects the checkpoint is measured the way users run the model.

Determinism: batch ``i`` of epoch ``e`` comes from ``numpy.random.default_rng([seed, e, i])`` whichever
worker builds it, so a run resumed from ``checkpoint_last.pt`` continues exactly as an uninterrupted one.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mousecord.datasets.bids import MASK_FOLDER_DEFAULT
from mousecord.errors import ConfigError
from mousecord.inference.predictor import InferenceConfig, Predictor
from mousecord.io.atomic import atomic_output
from mousecord.io.volume import Volume
from mousecord.labels import DATASET_JSON_LABELS, LABEL_NAMES
from mousecord.models.bundle import ModelBundle, save_bundle, unique_tensors
from mousecord.models.network import build_network, load_weights
from mousecord.training.data import TrainingCase, annotated_slice_count, load_training_dataset
from mousecord.training.in_plane_config import DEFAULT_INFERENCE, IN_PLANE_CONFIG_JSON, InPlaneTrainConfig
from mousecord.training.in_plane_data import (
    InPlaneBatches,
    annotated_sample,
    in_plane_batch,
    synthetic_sample,
)
from mousecord.training.loop import (
    CHECKPOINT_BEST,
    CHECKPOINT_LAST,
    HISTORY_JSON,
    LOOP_STATE_KEYS,
    PROGRESS_PNG,
    TrainResult,
    build_scheduler,
    checkpoint_to_resume,
    keep_starting_weights,
    load_checkpoint,
    plot_progress,
    pooled_dice,
    result_of,
    select_device,
    split_subjects,
)
from mousecord.training.loss import masked_dice_ce_loss

logger = logging.getLogger(__name__)


def build_network_for(config: InPlaneTrainConfig) -> nn.Module:
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
    config: InPlaneTrainConfig,
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
        # aliases dropped first (see unique_tensors): a clone would hide them and store every layer ~3 times
        fold_weights=({key: value.detach().cpu().clone() for key, value in unique_tensors(weights).items()},),
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
    return pooled_dice((predictor.predict_volume(volume).label_map, truth) for volume, truth in volumes)


def validate_annotated_slices(predictor: Predictor, cases: Sequence[TrainingCase]) -> dict[str, float]:
    """GM and WM Dice of an in-plane ``predictor`` on the annotated slices of preprocessed ``cases``.

    Each slice is predicted with its real neighbours, exactly as in a whole-volume dense prediction (an
    in-plane network sees nothing else), so the other slices need not be predicted at all.
    """
    half = predictor.bundle.slab_slices // 2

    def pairs():
        for case in cases:
            for z in case.labelled_slice_indices:
                low, high = max(int(z) - half, 0), min(int(z) + half + 1, case.image.shape[0])
                logits = predictor.predict_logits(case.image[None, low:high], case.spacing_mm)
                yield logits[:, int(z) - low].argmax(0).numpy(), case.label_map[z]

    return pooled_dice(pairs())


def native_bfloat16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 natively: a CUDA GPU of compute capability 8 or above, or an
    x86 CPU with AVX-512 BF16 or AMX (elsewhere bfloat16 is emulated, slower than float32)."""
    if device.type == "cuda":
        # not torch.cuda.is_bf16_supported(): it also says yes where bfloat16 is only emulated
        return torch.cuda.get_device_properties(device).major >= 8
    if device.type != "cpu":
        return False
    # private helpers, hence getattr: PyTorch has no public query of the CPU's bfloat16 instructions
    helpers = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in helpers)


def train_in_plane(
    config: InPlaneTrainConfig,
    output_folder: Path | str,
    *,
    validation_volumes: Sequence[tuple[Volume, np.ndarray]] = (),
    training_cases: Sequence[TrainingCase] = (),
    validation_cases: Sequence[TrainingCase] = (),
    initial_weights: Mapping[str, torch.Tensor] | None = None,
    resume: bool = False,
    progress: bool = False,
    stop_after_epoch: int | None = None,
    inference: dict[str, Any] | None = None,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train an in-plane network; validate each epoch through the Predictor.

    Args:
        config: the recipe.
        output_folder: receives in_plane_train_config.json, checkpoint_last.pt, checkpoint_best.pt,
            history.json and progress.png.
        validation_volumes: (volume, truth label map on the volume's grid) pairs, e.g. phantoms of
            settings the synthesis never draws; the checkpoint with the best mean GM/WM Dice on them is kept.
        training_cases: annotated cases, preprocessed with the model's ``input_spec``, that
            ``config.annotated_fraction`` of the samples are cut from.
        validation_cases: held-out annotated cases, validated on their annotated slices when no
            ``validation_volumes`` are given.
        initial_weights: start from these weights (fine-tuning) instead of random ones; ignored on resume.
            They are validated first and stay the best checkpoint (``best_epoch`` -1) unless an epoch beats
            them, so a fine-tune that does not help returns the model it started from.
        resume: continue from ``checkpoint_last.pt``.
        stop_after_epoch: stop once this many epochs are done (as if killed); resume later.
        inference: the bundle's ``metadata["inference"]`` used for volume validation (e.g. the cord ROI path).
        on_epoch_end: called with the epoch index and its metrics.

    Raises:
        ConfigError: nothing to validate on, annotated samples asked for without cases, weights that do
            not fit the network, or a previous run in ``output_folder`` without ``resume``.
    """
    if not validation_volumes and not validation_cases:
        raise ConfigError("in-plane training needs validation volumes or held-out annotated cases")
    if config.annotated_fraction > 0 and not training_cases:
        raise ConfigError("annotated_fraction is above 0 but no annotated training case was given")
    output_folder = Path(output_folder)
    output_folder.mkdir(parents=True, exist_ok=True)
    device = select_device(config)
    bfloat16 = config.mixed_precision and native_bfloat16(device)
    precision = "bfloat16" if bfloat16 else "float32"
    logger.info("training the network in %s on %s", precision, device)
    network = build_network_for(config).to(device)
    if initial_weights is not None and not resume:
        try:
            load_weights(network, dict(initial_weights))
        except ConfigError as error:
            raise ConfigError(f"initial weights do not fit the training network: {error}") from error
    optimizer = torch.optim.AdamW(
        network.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    scheduler = build_scheduler(config, optimizer)
    state = _initial_state(output_folder, config, network, optimizer, scheduler, resume=resume)
    with atomic_output(output_folder / IN_PLANE_CONFIG_JSON) as temporary:
        temporary.write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    history = state["history"]
    if initial_weights is not None and state["epoch"] == 0:
        dice = _validate(config, network, validation_volumes, validation_cases, inference)
        path = output_folder / CHECKPOINT_BEST
        keep_starting_weights(
            state,
            dice,
            lambda: _save(path, config, network, optimizer, scheduler, state),
            min_gain=config.min_gain_over_start,
        )
    cases = tuple(training_cases) if config.annotated_fraction > 0 else ()
    for epoch in range(state["epoch"], config.epochs):
        if stop_after_epoch is not None and epoch >= stop_after_epoch:
            break
        started = time.perf_counter()
        loss, waited = _train_epoch(
            network, optimizer, scheduler, config, epoch, device, cases, bfloat16=bfloat16, progress=progress
        )
        trained = time.perf_counter() - started
        dice = _validate(config, network, validation_volumes, validation_cases, inference)
        metrics = {
            "epoch": epoch,
            "train_loss": loss,
            **{f"dice_{key}": value for key, value in dice.items()},
            "learning_rate": optimizer.param_groups[0]["lr"],
            "seconds": time.perf_counter() - started,
            "training_seconds": trained,
            "data_wait_fraction": waited / max(trained, 1e-9),
            "precision": precision,  # mixed_precision's outcome depends on the machine
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
        plot_progress(history, output_folder / PROGRESS_PNG, starting_dice=state.get("starting_dice"))
        logger.info(
            "epoch %d/%d: loss %.4f, validation Dice GM %.3f WM %.3f (%.0f s, %.0f %% waiting for data)",
            epoch,
            config.epochs - 1,
            loss,
            dice["GM"],
            dice["WM"],
            metrics["seconds"],
            100 * metrics["data_wait_fraction"],
        )
        if on_epoch_end is not None:
            on_epoch_end(epoch, metrics)
    return result_of(output_folder, state)


def _validate(config, network, volumes, cases, inference) -> dict[str, float]:
    """Validation Dice through the deployed Predictor: on whole volumes, else on annotated slices."""
    bundle = bundle_from_weights(config, network.state_dict(), name="validation", inference=inference)
    if volumes:
        return validate_volumes(Predictor(bundle, InferenceConfig(device="cpu", backend="torch")), volumes)
    dense = Predictor(bundle, InferenceConfig(device="cpu", backend="torch", roi="full"))
    return validate_annotated_slices(dense, cases)


def _train_epoch(
    network, optimizer, scheduler, config, epoch, device, cases, *, bfloat16, progress
) -> tuple[float, float]:
    """Mean loss of one epoch and the seconds spent waiting for batches."""
    from tqdm import tqdm

    network.train()
    loader = torch.utils.data.DataLoader(
        InPlaneBatches(config, epoch, cases),
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
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bfloat16):
            logits = network(images)
        loss = masked_dice_ce_loss(logits.float(), targets)
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
        "in_plane_config_json": json.dumps(config.to_dict()),
        **state,
    }
    with atomic_output(path) as temporary:
        torch.save(checkpoint, temporary)


def _initial_state(output_folder: Path, config, network, optimizer, scheduler, *, resume: bool) -> dict:
    last = checkpoint_to_resume(output_folder, resume=resume)
    if last is None:
        return {"epoch": 0, "history": {}, "best_metric": -math.inf, "best_epoch": 0}
    checkpoint = load_checkpoint(last)
    saved_values = json.loads(checkpoint["in_plane_config_json"])
    saved_values.setdefault("mixed_precision", False)  # runs saved before the setting trained in float32
    saved = InPlaneTrainConfig.from_dict(saved_values).to_dict()
    asked = config.to_dict()
    free = ("epochs", "device", "data_workers")  # batches depend on neither device nor workers
    differing = [key for key in asked if key not in free and saved[key] != asked[key]]
    if differing:
        hint = ""
        if "mixed_precision" in differing:  # the one setting a user changes by a flag
            hint = (
                " (it trained with mixed precision: resume without --no-mixed-precision)"
                if saved["mixed_precision"]
                else " (it trained in float32: resume with --no-mixed-precision)"
            )
        raise ConfigError(
            f"{last}: was trained with other settings of {', '.join(differing)}; resume with the same "
            f"settings{hint}"
        )
    network.load_state_dict(checkpoint["network_weights"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    logger.info("resuming %s at epoch %d", output_folder, checkpoint["epoch"])
    return {key: checkpoint[key] for key in LOOP_STATE_KEYS if key in checkpoint}


#: Phantoms that validate synthetic training: another generator (mousecord.phantom), never drawn by the
#: synthesis; seeds 5001-5004 (two realistic T1w, two random-contrast), 200 x 200 x 24 voxels at 0.05 mm.
VALIDATION_PHANTOMS = (("t1w", 5001), ("t1w", 5002), ("random", 5003), ("random", 5004))


def phantom_validation_volumes(
    phantoms: Sequence[tuple[str, int]] = VALIDATION_PHANTOMS,
    shape_vox: tuple[int, int, int] = (200, 200, 24),
) -> list[tuple[Volume, np.ndarray]]:
    """(volume, truth) pairs of the given (contrast, seed) phantoms, for :func:`train_in_plane`."""
    from mousecord.phantom import PhantomConfig, generate_phantom

    volumes = []
    for contrast, seed in phantoms:
        config = PhantomConfig(shape_vox=shape_vox, contrast=contrast)
        phantom = generate_phantom(config, rng=np.random.default_rng(seed))
        volumes.append((phantom.image, phantom.label_map.data))
    return volumes


def fine_tune_in_plane(
    bundle: ModelBundle,
    dataset: Path | str,
    output_folder: Path | str,
    config: InPlaneTrainConfig | None = None,
    *,
    label_folder: str = MASK_FOLDER_DEFAULT,
    validation_fraction: float = 0.2,
    resume: bool = False,
    progress: bool = False,
    command: str = "",
) -> Path:
    """Fine-tune an in-plane ``bundle`` on a dataset's annotated slices; returns the new bundle folder.

    The dataset is prepared with the bundle's own ``input_spec`` (the Predictor's preprocessing), a share
    ``validation_fraction`` of its subjects is held out (validation on their annotated slices through the
    Predictor; with one subject, on the training slices), and ``config.annotated_fraction`` of the samples
    come from the annotated slices, the rest from the synthesis (so the model keeps what it knew). The best
    checkpoint is written as ``<output_folder>/model`` with the bundle's inference settings.

    Args:
        bundle: an in-plane model (e.g. the default one).
        dataset: BIDS dataset (masks under ``derivatives/<label_folder>``) or nnU-Net raw dataset.
        output_folder: checkpoints, curves, and the model bundle.
        config: the recipe; its network must be the bundle's (default:
            :meth:`InPlaneTrainConfig.fine_tune_for`).
        label_folder: the mask folder under ``derivatives/``.
        validation_fraction: share of subjects held out for validation.
        resume: continue an interrupted fine-tune in ``output_folder``.
        progress: tqdm bars.
        command: the command line, for the model card.

    Raises:
        ConfigError: a 3D bundle, or a recipe whose network is not the bundle's.
        DatasetError: a bad dataset (checked before training).
    """
    if not bundle.in_plane:
        raise ConfigError(f"model {bundle.name} is a 3D network; fine-tune it with the 3D trainer")
    if config is None:
        config = InPlaneTrainConfig.fine_tune_for(bundle)
    if config.architecture() != bundle.architecture or config.synthesis.slab_slices != bundle.slab_slices:
        raise ConfigError(f"model {bundle.name}: the fine-tuning recipe's network is not the model's")
    loaded = load_training_dataset(dataset, label_folder=label_folder, input_spec=bundle.input_spec)
    train_subjects, held_out = split_subjects(loaded.subjects, validation_fraction, config.seed)
    training_cases = loaded.select(set(train_subjects))
    validation_cases = loaded.select(set(held_out)) or training_cases
    if held_out:
        logger.info(
            "training on %d annotated slices of %s; validating on %d of %s, held out",
            annotated_slice_count(training_cases),
            ", ".join(train_subjects),
            annotated_slice_count(validation_cases),
            ", ".join(held_out),
        )
    else:
        logger.warning("one subject only: validation Dice is measured on the training slices")
    inference = bundle.metadata.get("inference")
    result = train_in_plane(
        config,
        output_folder,
        training_cases=training_cases,
        validation_cases=validation_cases,
        initial_weights=bundle.fold_weights[0],
        resume=resume,
        progress=progress,
        inference=inference,
    )
    weights = load_checkpoint(result.best_checkpoint)["network_weights"]
    output_folder = Path(output_folder)
    metadata = {
        "fine_tuned_from": bundle.name,
        "best_epoch": result.best_epoch,
        "validation": result.best_dice,
        "starting_validation": result.starting_dice,
    }
    card = (
        f"# {output_folder.name}\n\nFine-tuned from `{bundle.name}` on `{loaded.source}` "
        f"({loaded.describe()}) with `{command or 'mousecord.training.fine_tune_in_plane'}`.\n\n"
        f"Validation (annotated slices of {', '.join(held_out) or 'the training subjects'}, through the "
        f"Predictor): {fine_tune_choice(metadata)}.\n"
    )
    precisions = sorted(set(result.history.get("precision", [])))  # a resumed run may have changed machine
    if precisions:
        card += f"\nThe network trained in {' and '.join(precisions)}.\n"
    tuned = bundle_from_weights(
        config,
        weights,
        name=output_folder.name or "mousecord-model",
        inference=inference,
        model_card=card,
        metadata=metadata,
    )
    return save_bundle(tuned, output_folder / "model", overwrite=True)


def fine_tune_choice(metadata: Mapping[str, Any]) -> str:
    """Which weights a fine-tune kept, with their validation Dice and the starting model's, from the
    fine-tuned bundle's ``metadata`` (its model card's words, and ``mousecord train``'s)."""
    start = metadata.get("starting_validation")
    before = (
        f"Dice GM {start['GM']:.3f}, WM {start['WM']:.3f}"
        if start
        else "not validated (resumed from a checkpoint that did not record it)"
    )
    starting_model = metadata["fine_tuned_from"]
    if metadata["best_epoch"] < 0:
        return f"kept `{starting_model}`'s weights (validation {before}): no epoch beat them by the margin"
    best = metadata["validation"]
    return (
        f"kept epoch {metadata['best_epoch']}: validation Dice GM {best['GM']:.3f}, WM {best['WM']:.3f} "
        f"(`{starting_model}`: {before})"
    )


__all__ = [
    "InPlaneBatches",
    "InPlaneTrainConfig",
    "annotated_sample",
    "build_network_for",
    "bundle_from_weights",
    "DEFAULT_INFERENCE",
    "VALIDATION_PHANTOMS",
    "fine_tune_choice",
    "fine_tune_in_plane",
    "in_plane_batch",
    "native_bfloat16",
    "phantom_validation_volumes",
    "synthetic_sample",
    "train_in_plane",
    "validate_annotated_slices",
    "validate_volumes",
]
