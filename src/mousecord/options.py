"""Choices shared by the configurations and the command line, importable without torch.

The command line builds its parsers from these (``mousecord --help`` stays fast), and
:class:`~mousecord.inference.InferenceConfig` and :class:`~mousecord.training.TrainConfig` validate against
them, so the two cannot drift apart.
"""

from __future__ import annotations

from mousecord.errors import ConfigError

#: "auto": CUDA when available (the CPU with the OpenVINO backend).
DEVICES = ("auto", "cpu", "cuda")
#: "auto": OpenVINO on an x86-64 CPU when installed, else PyTorch (see :mod:`mousecord.inference.backends`).
BACKENDS = ("auto", "torch", "openvino")
#: Overrides what backend "auto" means, e.g. ``MOUSECORD_BACKEND=torch`` for nnU-Net-exact results.
BACKEND_ENVIRONMENT_VARIABLE = "MOUSECORD_BACKEND"
#: Network precision: "auto" (a bundle's int8 networks on OpenVINO where it has them, else float32).
PRECISIONS = ("auto", "float32", "int8")
#: ``metadata["inference"]["roi"]`` values, and ``InferenceConfig.roi``'s (plus "auto": the bundle's choice):
#: "full": dense sliding window (nnU-Net's way); "cord": find the cord, segment around it.
ROI_MODES = ("full", "cord")
#: Contrast presets of the phantom (:class:`~mousecord.phantom.PhantomConfig`).
PHANTOM_CONTRASTS = ("t1w", "gm-dark", "random")
#: Which axis of a file runs along the cord: "auto" (a single slice's normal, else the header's
#: superior-inferior axis), "header" (always that axis) or the file's array axis 0, 1, 2.
CORD_AXIS_SETTINGS = ("auto", "header", 0, 1, 2)
#: A 200 x 200 x 500 chunk at 0.05 mm is 2e7 voxels; 4e8 needs over 10 GB of memory.
DEFAULT_MAX_NETWORK_VOXELS = 400_000_000
#: Largest in-plane voxel, as a multiple of the model's spacing, that segment takes (see InferenceConfig).
DEFAULT_MAX_UPSAMPLING = 10.0

__all__ = [
    "BACKENDS",
    "CORD_AXIS_SETTINGS",
    "BACKEND_ENVIRONMENT_VARIABLE",
    "DEFAULT_MAX_NETWORK_VOXELS",
    "DEFAULT_MAX_UPSAMPLING",
    "DEVICES",
    "PHANTOM_CONTRASTS",
    "PRECISIONS",
    "ROI_MODES",
    "check_cord_axis_setting",
]


def check_cord_axis_setting(setting: object, *, name: str = "cord_axis") -> None:
    """Raise :class:`~mousecord.errors.ConfigError` unless ``setting`` is one of :data:`CORD_AXIS_SETTINGS`
    (an axis is an int: ``True`` or ``2.0`` is refused)."""
    if isinstance(setting, bool) or type(setting) not in (str, int) or setting not in CORD_AXIS_SETTINGS:
        raise ConfigError(f"{name} must be one of {CORD_AXIS_SETTINGS}, got {setting!r}")
