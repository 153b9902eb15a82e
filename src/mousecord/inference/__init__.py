"""Inference: nnU-Net-exact preprocessing and sliding window, PyTorch/OpenVINO backends, the ``Predictor``
and ``segment``."""

from mousecord.inference.predictor import (
    InferenceConfig,
    Prediction,
    Predictor,
    PreprocessedImage,
    resolve_device,
)
from mousecord.inference.sliding_window import (
    TileSettings,
    compute_tile_starts,
    gaussian_importance_map,
    mirror_combinations,
    pad_to_patch,
    sliding_window,
)

__all__ = [
    "InferenceConfig",
    "Prediction",
    "Predictor",
    "PreprocessedImage",
    "TileSettings",
    "compute_tile_starts",
    "gaussian_importance_map",
    "mirror_combinations",
    "pad_to_patch",
    "resolve_device",
    "sliding_window",
]
