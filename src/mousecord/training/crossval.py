"""``mousecord train``: k-fold cross-validation by subject, a per-fold summary, and bundle export."""

from __future__ import annotations

import csv
import io
import json
import logging
import platform
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mousecord import __version__
from mousecord.datasets.bids import MASK_FOLDER_DEFAULT
from mousecord.errors import ConfigError
from mousecord.io.atomic import atomic_output
from mousecord.labels import DATASET_JSON_LABELS
from mousecord.models.bundle import ModelBundle, save_bundle, unique_tensors
from mousecord.training.config import EXPORT_CHOICES, TrainConfig, architecture_of
from mousecord.training.data import TrainingDataset, load_training_dataset
from mousecord.training.loop import CHECKPOINT_LAST, TrainResult, load_checkpoint, train_model

logger = logging.getLogger(__name__)

SUMMARY_CSV = "crossval_summary.csv"
SUMMARY_JSON = "crossval_summary.json"
BUNDLE_FOLDER = "model"


@dataclass(frozen=True)
class TrainSummary:
    """Per-fold results and the exported bundle."""

    output_folder: Path
    folds: tuple[TrainResult, ...]
    bundle: Path | None

    def table(self) -> list[dict[str, object]]:
        rows = [
            {
                "fold": index,
                "validation_subjects": " ".join(result.validation_subjects),
                "best_epoch": result.best_epoch,
                **{f"dice_{key}": round(value, 4) for key, value in result.best_dice.items()},
            }
            for index, result in enumerate(self.folds)
        ]
        if len(rows) > 1:
            means = {
                key: round(float(np.mean([row[key] for row in rows])), 4)
                for key in ("dice_GM", "dice_WM", "dice_mean")
            }
            rows.append({"fold": "mean", "validation_subjects": "", "best_epoch": "", **means})
        return rows

    def format_table(self) -> str:
        lines = [
            f"{'fold':>5}  {'GM Dice':>8}  {'WM Dice':>8}  {'mean':>6}  {'best epoch':>10}"
            "  validation subjects"
        ]
        for row in self.table():
            lines.append(
                f"{row['fold']!s:>5}  {row['dice_GM']:>8.4f}  {row['dice_WM']:>8.4f}"
                f"  {row['dice_mean']:>6.4f}"
                f"  {row['best_epoch']!s:>10}  {row['validation_subjects']}"
            )
        return "\n".join(lines)


def subject_folds(subjects: list[str], folds: int, seed: int) -> list[list[str]]:
    """Deterministic k-fold split of subjects: shuffled by ``seed``, dealt round-robin, each fold sorted.

    Raises:
        ConfigError: fewer subjects than folds, or fewer than 2 folds.
    """
    if folds < 2:
        raise ConfigError(f"folds must be at least 2, got {folds}")
    if len(subjects) < folds:
        raise ConfigError(f"{folds} folds need at least {folds} subjects, the dataset has {len(subjects)}")
    order = np.random.default_rng(seed).permutation(sorted(subjects))
    return [sorted(str(subject) for subject in order[index::folds]) for index in range(folds)]


#: The validation subjects of each fold of a run (null: a random share), checked when it is resumed.
SPLITS_JSON = "splits.json"


def _check_or_record_splits(
    output_folder: Path, splits: list[list[str] | None], *, resume: bool, started: bool
) -> None:
    """Record a new run's folds, or check that a resumed run has the same: its fold folders would otherwise
    go on validating on other subjects (another --folds, or a dataset that changed). A run recorded before
    this check existed resumes unchecked; where a run has ``started`` and is not resumed, training refuses
    it and its record stays as it was."""
    path = output_folder / SPLITS_JSON
    if resume:
        recorded = json.loads(path.read_text()) if path.is_file() else splits
        if recorded != splits:
            raise ConfigError(
                f"{output_folder}: was split into {len(recorded)} fold(s) validating on {recorded}, not "
                f"{splits}; resume with the same folds and dataset"
            )
        return
    if started:
        return
    output_folder.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as temporary:
        temporary.write_text(json.dumps(splits) + "\n")


def train(
    dataset: TrainingDataset | Path | str,
    output_folder: Path | str,
    config: TrainConfig | None = None,
    *,
    folds: int = 0,
    export: str = "all",
    label_folder: str = MASK_FOLDER_DEFAULT,
    resume: bool = False,
    progress: bool = False,
    command: str = "",
    initial_weights: Mapping[str, torch.Tensor] | None = None,
    inference: Mapping[str, Any] | None = None,
) -> TrainSummary:
    """Train on a BIDS or nnU-Net raw dataset; with ``folds`` >= 2, k-fold cross-validation by subject.

    Writes ``fold_<k>/`` (checkpoints, curves) per fold, ``crossval_summary.csv/json`` and a mousecord
    bundle ``model/`` that ``mousecord segment --model`` runs: all folds (their logits are averaged) or only
    the best fold (``export="best"``). Without folds, one model trains on all subjects but a validation
    share (``config.validation_fraction``).

    ``initial_weights`` (e.g. the default model's, with the network of :func:`config_from_bundle`) start
    every fold from these weights instead of random ones: fine-tuning. ``inference`` becomes the exported
    bundle's ``metadata["inference"]`` (e.g. the starting model's cord ROI settings).

    Raises:
        DatasetError: bad dataset (checked before any training starts).
        ConfigError: bad settings, too few subjects for the folds.
    """
    config = config or TrainConfig()
    if export not in EXPORT_CHOICES:
        raise ConfigError(f"export must be one of {EXPORT_CHOICES}, got {export!r}")
    output_folder = Path(output_folder)
    if not isinstance(dataset, TrainingDataset):
        dataset = load_training_dataset(dataset, label_folder=label_folder)
    splits = subject_folds(dataset.subjects, folds, config.seed) if folds else [None]
    started = any(output_folder.glob(f"fold_*/{CHECKPOINT_LAST}"))
    if resume and not started:
        raise ConfigError(
            f"{output_folder}: no run to resume (no fold has a checkpoint); start one without resume"
        )
    _check_or_record_splits(output_folder, splits, resume=resume, started=started)
    results = []
    for index, validation in enumerate(splits):
        logger.info("fold %d/%d: validating on %s", index + 1, len(splits), validation or "a random share")
        fold_folder = output_folder / f"fold_{index}"
        fold_resume = resume and (fold_folder / CHECKPOINT_LAST).exists()
        results.append(
            train_model(
                config,
                dataset,
                fold_folder,
                validation_subjects=validation,
                resume=fold_resume,
                progress=progress,
                initial_weights=initial_weights,
            )
        )
    summary = TrainSummary(output_folder, tuple(results), None)
    _write_summary(summary)
    bundle = export_bundle(summary, dataset, config, export=export, command=command, inference=inference)
    return TrainSummary(output_folder, tuple(results), bundle)


def _write_summary(summary: TrainSummary) -> None:
    rows = summary.table()
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    with atomic_output(summary.output_folder / SUMMARY_CSV) as temporary:
        temporary.write_text(buffer.getvalue())
    with atomic_output(summary.output_folder / SUMMARY_JSON) as temporary:
        temporary.write_text(json.dumps(rows, indent=2) + "\n")


def export_bundle(
    summary: TrainSummary,
    dataset: TrainingDataset,
    config: TrainConfig,
    *,
    export: str = "all",
    command: str = "",
    inference: Mapping[str, Any] | None = None,
) -> Path:
    """Write the trained folds (best checkpoints) as a mousecord bundle under ``<output>/model``, with
    ``inference`` (if given) as its ``metadata["inference"]``."""
    chosen = list(range(len(summary.folds)))
    if export == "best":
        chosen = [int(np.argmax([result.best_dice.get("mean", 0.0) for result in summary.folds]))]
    weights = tuple(
        load_checkpoint(summary.folds[index].best_checkpoint)["network_weights"] for index in chosen
    )
    spacing = tuple(float(value) for value in np.median([case.spacing_mm for case in dataset.cases], axis=0))
    rows = summary.table()
    bundle = ModelBundle(
        name=summary.output_folder.name or "mousecord-model",
        architecture=architecture_of(config),
        spacing_mm=spacing,
        patch_size_vox=tuple(config.patch_size_vox),
        fold_weights=weights,
        labels=dict(DATASET_JSON_LABELS),
        mirror_axes=(0, 1, 2)
        if config.augmentation.enabled and config.augmentation.flip_probability > 0
        else (),
        model_card=model_card(
            summary,
            dataset,
            config,
            chosen=chosen,
            command=command,
            parameters=sum(tensor.numel() for tensor in unique_tensors(weights[0]).values()),
        ),
        metadata={
            "trained_with": f"mousecord {__version__}",
            "folds_exported": chosen,
            "crossval": rows,
            "training_config": config.to_dict(),
            **({"inference": dict(inference)} if inference else {}),
        },
    )
    return save_bundle(bundle, summary.output_folder / BUNDLE_FOLDER, overwrite=True)


def model_card(
    summary: TrainSummary,
    dataset: TrainingDataset,
    config: TrainConfig,
    *,
    chosen: list[int],
    command: str,
    parameters: int,
) -> str:
    """Markdown model card: data, recipe (``parameters``: the network's weight count), command, per-fold
    metrics."""
    lines = [
        f"# {summary.output_folder.name or 'mousecord model'}",
        "",
        "GM/WM segmentation of ex vivo mouse spinal cord MRI, trained with `mousecord train`.",
        "",
        "## Data",
        f"- Source: `{dataset.source}` ({dataset.describe()}).",
        f"- Voxel size (z, y, x): {[case.spacing_mm for case in dataset.cases][0]} mm (first case).",
        "- Sparse annotation: unannotated axial slices carry the ignore label and add nothing to the loss.",
        "",
        "## Recipe",
        f"- PlainConvUNet, features {list(config.features_per_stage)}, {parameters:,} weights,"
        f" patch (z, y, x) {list(config.patch_size_vox)}, batch {config.batch_size}.",
        f"- {config.epochs} epochs x {config.iterations_per_epoch} iterations, {config.optimizer}, lr "
        f"{config.learning_rate:g} poly decay, Dice + CE with ignore label, seed {config.seed}.",
        f"- Augmentation: {'on' if config.augmentation.enabled else 'off'} ({config.augmentation}).",
        f"- Command: `{command or 'python API'}`; mousecord {__version__}, torch {torch.__version__}, "
        f"{platform.platform()}.",
        "",
        "## Cross-validation (validation Dice on held-out annotated slices)",
        "",
        "```",
        summary.format_table(),
        "```",
        "",
        f"Exported folds: {chosen} (inference averages their logits).",
        *(
            ["", "Best epoch -1: no epoch beat the starting weights (fine-tuning); the fold keeps them."]
            if any(result.best_epoch < 0 for result in summary.folds)
            else []
        ),
        "",
        "## Limits",
        "- Validation Dice is measured on annotated slices only, not on whole volumes.",
        "- Trained for the contrast, voxel size and field of view above; check other data visually.",
    ]
    return "\n".join(lines) + "\n"


__all__ = ["TrainSummary", "export_bundle", "model_card", "subject_folds", "train"]
