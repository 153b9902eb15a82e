"""Training U-Nets (torch): 3D from sparse slice annotations (data, patches, loss, loop, cross-validation) and
in-plane 2D/2.5D networks from synthetic slabs and annotated slices (:mod:`mousecord.training.in_plane`)."""

from mousecord.training.config import AugmentationConfig, TrainConfig, config_from_bundle, preset_config
from mousecord.training.crossval import TrainSummary, subject_folds, train
from mousecord.training.data import TrainingCase, TrainingDataset, load_training_dataset
from mousecord.training.in_plane import (
    InPlaneTrainConfig,
    fine_tune_choice,
    fine_tune_in_plane,
    train_in_plane,
)
from mousecord.training.loop import TrainResult, load_checkpoint, predict_label_map, train_model
from mousecord.training.loss import deep_supervision_loss, masked_dice_ce_loss

__all__ = [
    "AugmentationConfig",
    "InPlaneTrainConfig",
    "TrainConfig",
    "TrainResult",
    "TrainSummary",
    "TrainingCase",
    "TrainingDataset",
    "config_from_bundle",
    "deep_supervision_loss",
    "fine_tune_choice",
    "fine_tune_in_plane",
    "load_checkpoint",
    "load_training_dataset",
    "masked_dice_ce_loss",
    "predict_label_map",
    "preset_config",
    "subject_folds",
    "train",
    "train_in_plane",
    "train_model",
]
