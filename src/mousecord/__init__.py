"""mousecord: white and grey matter segmentation of ex vivo mouse spinal cord MRI.

The public API is loaded lazily so that ``import mousecord`` stays cheap and never imports torch:

>>> import mousecord
>>> mousecord.__version__  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it; resolved on first attribute access
_LAZY_API: dict[str, str] = {
    "segment": "mousecord.pipelines",
    "SegmentOptions": "mousecord.pipelines",
    "run_demo": "mousecord.pipelines",
    "Predictor": "mousecord.inference",
    "InferenceConfig": "mousecord.inference",
    "read_model_folder": "mousecord.models.nnunet",
    "install_model": "mousecord.models.registry",
    "list_models": "mousecord.models.registry",
    "resolve_model": "mousecord.models.registry",
    "load_nifti": "mousecord.io",
    "save_like": "mousecord.io",
    "Volume": "mousecord.io",
    "Label": "mousecord.labels",
    "MousecordError": "mousecord.errors",
    "generate_phantom": "mousecord.phantom",
    "PhantomConfig": "mousecord.phantom",
    "phantom_dataset": "mousecord.phantom",
    "train": "mousecord.training",
    "train_model": "mousecord.training",
    "TrainConfig": "mousecord.training",
    "evaluate": "mousecord.analysis",
    "compare_label_maps": "mousecord.analysis",
    "morphometrics": "mousecord.analysis",
    "morphometrics_file": "mousecord.analysis",
    "write_qc_entry": "mousecord.analysis",
}

__all__ = ["__version__", *sorted(_LAZY_API)]

if TYPE_CHECKING:  # what type checkers and IDEs see: the real names, not Any from __getattr__
    from mousecord.analysis import (  # noqa: F401
        compare_label_maps,
        evaluate,
        morphometrics,
        morphometrics_file,
        write_qc_entry,
    )
    from mousecord.errors import MousecordError  # noqa: F401
    from mousecord.inference import InferenceConfig, Predictor  # noqa: F401
    from mousecord.io import Volume, load_nifti, save_like  # noqa: F401
    from mousecord.labels import Label  # noqa: F401
    from mousecord.models.nnunet import read_model_folder  # noqa: F401
    from mousecord.models.registry import install_model, list_models, resolve_model  # noqa: F401
    from mousecord.phantom import PhantomConfig, generate_phantom, phantom_dataset  # noqa: F401
    from mousecord.pipelines import SegmentOptions, run_demo, segment  # noqa: F401
    from mousecord.training import TrainConfig, train, train_model  # noqa: F401


def __getattr__(name: str) -> Any:
    module_name = _LAZY_API.get(name)
    if module_name is None:
        raise AttributeError(f"module 'mousecord' has no attribute {name!r}")
    return getattr(importlib.import_module(module_name), name)


def __dir__() -> list[str]:
    return __all__
