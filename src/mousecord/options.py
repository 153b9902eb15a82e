"""Choices shared by the configurations and the command line, importable without torch, and the wording
that turns a library message's settings into the command line's flags.

The command line builds its parsers from these (``mousecord --help`` stays fast), and
:class:`~mousecord.inference.InferenceConfig` and :class:`~mousecord.training.TrainConfig` validate against
them, so the two cannot drift apart.
"""

from __future__ import annotations

import re

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
    "command_line_terms",
]


def check_cord_axis_setting(setting: object, *, name: str = "cord_axis") -> None:
    """Raise :class:`~mousecord.errors.ConfigError` unless ``setting`` is one of :data:`CORD_AXIS_SETTINGS`
    (an axis is an int: ``True`` or ``2.0`` is refused)."""
    if isinstance(setting, bool) or type(setting) not in (str, int) or setting not in CORD_AXIS_SETTINGS:
        raise ConfigError(f"{name} must be one of {CORD_AXIS_SETTINGS}, got {setting!r}")


#: Library settings as messages name them -> the flags that set them, so a message of the library (which a
#: Python caller reads) tells a command-line user what to type.
_FLAG_FOR_SETTING: tuple[tuple[re.Pattern[str], str | object], ...] = (
    (re.compile(r"voxel_size_mm=\(([^)]*)\)"), lambda match: "--voxel-size " + match[1].replace(",", "")),
    (re.compile(r"\bvoxel_size_mm\b"), "--voxel-size"),
    (re.compile(r"\bmax_network_voxels\b"), "--max-voxels"),
    (re.compile(r"\bmax_upsampling\b"), "--max-upsampling"),
    (re.compile(r"\bresume it \(resume=True\)"), "use --resume"),
    (re.compile(r"\bstart one without resume\b"), "start one without --resume"),
    (re.compile(r"\blabel_folder\b"), "--label-folder"),
    (re.compile(r"\bdevice 'cpu'"), "--device cpu"),
    (re.compile(r"\bbackend 'torch'"), "--backend torch"),
    (re.compile(r"\bprecision 'float32'"), "--precision float32"),
    (re.compile(r"\broi 'full'"), "--roi full"),
    (re.compile(r"\bcord_axis='header'"), "--cord-axis header"),
    (re.compile(r"\bname=NAME\b"), "--name NAME"),
    (re.compile(r"\(overwrite=True\)"), "(--overwrite)"),
    (re.compile(r"\bignore_label=True\b"), "--ignore-label"),
    (re.compile(r"\boverwrite to redo\)"), "--overwrite to redo)"),
    (
        re.compile(r"\bnot replaced without overwrite; write the outputs elsewhere"),
        "not replaced without --overwrite; write the outputs elsewhere (-o)",
    ),
    (re.compile(r"^folds must"), "--folds must"),
    (re.compile(r"^sha256 checks"), "--sha256 checks"),
    (re.compile(r"give a model name or folder"), "pass --model NAME_OR_PATH"),
    (re.compile(r"mousecord\.models\.install_model"), "`mousecord models install`"),
)


def command_line_terms(message: str) -> str:
    """``message`` on one line, with the library settings it names replaced by their command-line flags.

    Example:
        >>> command_line_terms("x.nii.gz: if it is 0.05 mm, give voxel_size_mm=(0.05, 0.05, 0.05)")
        'x.nii.gz: if it is 0.05 mm, give --voxel-size 0.05 0.05 0.05'
    """
    line = " ".join(message.split())
    for pattern, flag in _FLAG_FOR_SETTING:
        line = pattern.sub(flag, line)  # type: ignore[arg-type]
    return line
