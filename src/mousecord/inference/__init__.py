"""Inference: nnU-Net-exact preprocessing and sliding window, PyTorch/OpenVINO backends, the ``Predictor``
and ``segment``.

Loaded lazily, like :mod:`mousecord`: the command line reads :mod:`mousecord.inference.options` without
importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> module that defines it; resolved on first attribute access
_LAZY_API: dict[str, str] = {
    "InferenceConfig": "mousecord.inference.predictor",
    "Prediction": "mousecord.inference.predictor",
    "Predictor": "mousecord.inference.predictor",
    "PreprocessedImage": "mousecord.inference.predictor",
    "resolve_device": "mousecord.inference.predictor",
    "compute_tile_starts": "mousecord.inference.sliding_window",
    "gaussian_importance_map": "mousecord.inference.sliding_window",
    "mirror_combinations": "mousecord.inference.sliding_window",
    "pad_to_patch": "mousecord.inference.sliding_window",
    "sliding_window": "mousecord.inference.sliding_window",
}

__all__ = sorted(_LAZY_API)


def __getattr__(name: str) -> Any:
    module_name = _LAZY_API.get(name)
    if module_name is None:
        raise AttributeError(f"module 'mousecord.inference' has no attribute {name!r}")
    return getattr(importlib.import_module(module_name), name)


def __dir__() -> list[str]:
    return __all__
