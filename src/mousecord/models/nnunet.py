"""Read official nnU-Net v2 results folders into a :class:`~mousecord.models.bundle.ModelBundle`.

This module and :mod:`mousecord.models.nnunet_layout` (the folder layout, see there) are the only code that
knows nnU-Net's files and both plans formats.

Checkpoints are untrusted input (a model zip from the internet): they are unpickled with
``torch.load(weights_only=True)`` plus an explicit allow-list of the few non-tensor globals nnunetv2 writes
(numpy scalars and dtypes in ``logging`` and ``_best_ema``, ``torch.device`` in ``init_args``).
:func:`load_checkpoint` is mousecord's one checkpoint unpickler: training's own checkpoints share nnU-Net's
layout (a ``network_weights`` state dict) and are read through it too.
"""

from __future__ import annotations

import json
import logging
import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mousecord.errors import ConfigError, ModelFolderError
from mousecord.models.bundle import WEIGHTS_SHA256, ModelBundle, Normalization, file_sha256
from mousecord.models.network import architecture_from_old_plans
from mousecord.models.nnunet_layout import is_results_folder, results_folder_children

logger = logging.getLogger(__name__)

CHECKPOINTS = ("checkpoint_final.pth", "checkpoint_best.pth")
DEFAULT_RESAMPLING = "resample_data_or_seg_to_shape"
#: How torch's weights-only unpickler names the global it refused ("... GLOBAL posix.system ...").
_REFUSED_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")
_TORCH_BOILERPLATE = ("Weights only load failed", "Please file an issue", "Check the documentation")


def _checkpoint_safe_globals() -> list[Any]:
    """Globals an nnunetv2 checkpoint pickles besides tensors, under their numpy 1 and numpy 2 names."""
    multiarray = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray  # type: ignore[attr-defined]
    allowed: list[Any] = [
        multiarray.scalar,
        (multiarray.scalar, "numpy.core.multiarray.scalar"),
        (multiarray.scalar, "numpy._core.multiarray.scalar"),
        np.dtype,
    ]
    dtype_classes = [
        getattr(np.dtypes, name)
        for name in ("Float64DType", "Float32DType", "Float16DType", "Int64DType", "Int32DType", "BoolDType")
        if hasattr(np, "dtypes") and hasattr(np.dtypes, name)
    ]
    return allowed + dtype_classes


def load_checkpoint(path: Path | str) -> dict[str, Any]:
    """Unpickle an nnU-Net or mousecord training checkpoint safely (tensors, containers, numpy scalars only).

    Nothing in the file is ever called: a pickle that names any other global (``os.system``, a class with
    ``__reduce__``) is refused before it is built.

    Raises:
        ModelFolderError: missing, unreadable, corrupt, holding objects outside the allow-list, or without a
            ``network_weights`` state dict (one line, naming the file).
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFolderError(f"{path}: checkpoint not found")
    try:
        with torch.serialization.safe_globals(_checkpoint_safe_globals()), warnings.catch_warnings():
            # torch warns of a newer pickle protocol before refusing it; the refusal below says enough
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for corrupt or malicious pickles
        raise ModelFolderError(f"{path}: {_refusal(error)}") from error
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("network_weights"), dict):
        raise ModelFolderError(f"{path}: not a checkpoint (no 'network_weights' state dict)")
    return checkpoint


def _refusal(error: Exception) -> str:
    """Why torch.load failed, in one line, without torch's advice to retry with ``weights_only=False``."""
    refused = _REFUSED_GLOBAL.search(str(error))
    if isinstance(error, pickle.UnpicklingError) and refused:
        return (
            f"unsafe checkpoint refused: it would call or import {refused.group(1)}, which is neither a "
            "tensor nor plain data (nothing in it was run); use a checkpoint from a trusted source"
        )
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    # torch wraps the cause in generic paragraphs (the weights-only preamble, a plea to file an issue)
    cause = next((line for line in lines if not line.startswith(_TORCH_BOILERPLATE)), type(error).__name__)
    if isinstance(error, pickle.UnpicklingError):
        return f"checkpoint refused by the safe unpickler ({cause[:300]}; nothing in it was run)"
    return f"unreadable or corrupt checkpoint ({cause[:300]})"


def find_results_folder(path: Path | str) -> Path:
    """The ``<Trainer>__<Plans>__<config>`` folder: ``path`` itself, or its only ``nnUNetTrainer*`` child.

    Raises:
        ModelFolderError: naming the path searched and what was found.
    """
    path = Path(path)
    if not path.is_dir():
        raise ModelFolderError(f"{path}: model folder not found")
    if is_results_folder(path):
        return path
    candidates = results_folder_children(path)
    if len(candidates) == 1:
        return candidates[0]
    if candidates:
        names = ", ".join(child.name for child in candidates)
        raise ModelFolderError(f"{path}: holds several nnU-Net results folders ({names}); pass one of them")
    raise ModelFolderError(
        f"{path}: not an nnU-Net results folder (no dataset.json + plans.json, and no nnUNetTrainer*/ inside)"
    )


def read_model_folder(
    path: Path | str,
    *,
    folds: list[int | str] | tuple[int | str, ...] | None = None,
    checkpoint: str = "auto",
) -> ModelBundle:
    """Read an nnU-Net v2 results folder (old <= 2.2 or new plans format, one or several folds).

    Args:
        path: ``<Trainer>__<Plans>__<config>/`` or a folder holding exactly one ``nnUNetTrainer*`` folder.
        folds: fold numbers (or "all"); default every ``fold_*`` with a checkpoint.
        checkpoint: "checkpoint_final.pth", "checkpoint_best.pth", or "auto" (final, else best; per fold).

    Raises:
        ModelFolderError: missing or invalid files, unsafe or corrupt checkpoints, unsupported plans.
    """
    folder = find_results_folder(path)
    if checkpoint != "auto" and checkpoint not in CHECKPOINTS:
        raise ConfigError(f"checkpoint must be 'auto' or one of {CHECKPOINTS}, got {checkpoint!r}")
    dataset, plans = _read_json(folder / "dataset.json"), _read_json(folder / "plans.json")
    checkpoint_files = _checkpoint_files(folder, folds, checkpoint)
    fold_weights, first = [], None
    for fold_file in checkpoint_files:
        loaded = load_checkpoint(fold_file)
        first = first or loaded
        fold_weights.append(loaded["network_weights"])
    assert first is not None
    configuration_name = _configuration_name(first, folder, checkpoint_files[0])
    configuration = _configuration(plans, configuration_name, folder / "plans.json")
    try:
        bundle = _bundle(
            folder, dataset, plans, configuration, first, fold_weights, configuration_name, checkpoint_files
        )
    except (KeyError, TypeError, ValueError, ConfigError) as error:
        raise ModelFolderError(
            f"{folder / 'plans.json'}: unsupported or incomplete plans ({error})"
        ) from error
    return bundle


def _bundle(
    folder, dataset, plans, configuration, checkpoint, fold_weights, configuration_name, checkpoint_files
) -> ModelBundle:
    labels = dataset["labels"]
    if any(not isinstance(value, int) for value in labels.values()):
        raise ConfigError(f"region-based labels are not supported: {labels}")
    if len(configuration["patch_size"]) != 3:
        raise ConfigError(
            f"configuration {configuration_name!r} is not 3D (patch {configuration['patch_size']})"
        )
    architecture = configuration.get("architecture") or architecture_from_old_plans(configuration)
    channel_names = dataset.get("channel_names") or dataset.get("modality") or {"0": "image"}
    intensity = plans.get("foreground_intensity_properties_per_channel", {})
    normalization = tuple(
        Normalization(
            scheme=scheme
            if scheme in ("ZScoreNormalization", "CTNormalization", "NoNormalization")
            else _bad(scheme),
            use_mask=bool(configuration["use_mask_for_norm"][channel]),
            intensity_properties={
                key: float(value) for key, value in intensity.get(str(channel), {}).items()
            },
        )
        for channel, scheme in enumerate(configuration["normalization_schemes"])
    )
    for key in ("resampling_fn_data", "resampling_fn_probabilities"):
        if configuration.get(key, DEFAULT_RESAMPLING) != DEFAULT_RESAMPLING:
            logger.warning(
                "%s: %s %r is not nnU-Net's default; using the default", folder, key, configuration[key]
            )
    mirror_axes = checkpoint.get("inference_allowed_mirroring_axes")
    return ModelBundle(
        name=folder.name,
        architecture=architecture,
        spacing_mm=tuple(float(value) for value in configuration["spacing"]),
        patch_size_vox=tuple(int(value) for value in configuration["patch_size"]),
        fold_weights=tuple(fold_weights),
        labels={str(name): int(value) for name, value in labels.items()},
        normalization=normalization,
        transpose_forward=tuple(int(axis) for axis in plans.get("transpose_forward", (0, 1, 2))),
        mirror_axes=tuple(int(axis) for axis in mirror_axes) if mirror_axes is not None else (),
        orientation="RAS",
        channel_names={str(key): str(value) for key, value in channel_names.items()},
        metadata={
            "format": "nnU-Net v2 results folder",
            "trainer": str(checkpoint.get("trainer_name", "")),
            "configuration": configuration_name,
            "plans_name": plans.get("plans_name"),
            "checkpoints": [str(path.relative_to(folder)) for path in checkpoint_files],
            WEIGHTS_SHA256: {str(path.relative_to(folder)): file_sha256(path) for path in checkpoint_files},
        },
        source=folder.resolve(),
    )


def _bad(scheme: str) -> str:
    raise ConfigError(f"normalization {scheme!r} is not supported")


def _checkpoint_files(folder: Path, folds, checkpoint: str) -> list[Path]:
    if folds is None:
        fold_dirs = sorted((child for child in folder.glob("fold_*") if child.is_dir()), key=_fold_key)
    else:
        fold_dirs = [folder / f"fold_{fold}" for fold in folds]
    names = CHECKPOINTS if checkpoint == "auto" else (checkpoint,)
    files = []
    for fold_dir in fold_dirs:
        found = next((fold_dir / name for name in names if (fold_dir / name).is_file()), None)
        if found is None:
            if folds is not None:
                raise ModelFolderError(f"{fold_dir}: no {' or '.join(names)} found")
            continue
        files.append(found)
    if not files:
        raise ModelFolderError(f"{folder}: no fold_*/{' or '.join(names)} found")
    return files


def _fold_key(path: Path) -> tuple[int, str]:
    suffix = path.name.removeprefix("fold_")
    return (int(suffix), "") if suffix.isdigit() else (1 << 30, suffix)


def _configuration_name(checkpoint: dict[str, Any], folder: Path, path: Path) -> str:
    init_args = checkpoint.get("init_args") or {}
    name = init_args.get("configuration") if isinstance(init_args, dict) else None
    if not name:
        parts = folder.name.split("__")
        if len(parts) != 3:
            raise ModelFolderError(
                f"{path}: checkpoint names no configuration and the folder name is not "
                "<Trainer>__<Plans>__<configuration>"
            )
        name = parts[2]
    return str(name)


def _configuration(plans: dict[str, Any], name: str, plans_path: Path) -> dict[str, Any]:
    configurations = plans.get("configurations", {})
    if name not in configurations:
        raise ModelFolderError(
            f"{plans_path}: no configuration {name!r}; found {', '.join(sorted(configurations))}"
        )
    configuration = dict(configurations[name])
    seen = {name}
    while "inherits_from" in configuration:
        parent = configuration.pop("inherits_from")
        if parent in seen or parent not in configurations:
            raise ModelFolderError(f"{plans_path}: configuration {name!r} inherits from unknown {parent!r}")
        seen.add(parent)
        configuration = {**configurations[parent], **configuration}
    return configuration


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ModelFolderError(f"{path}: file not found")
    try:
        content = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ModelFolderError(f"{path}: invalid JSON ({error})") from error
    if not isinstance(content, dict):
        raise ModelFolderError(f"{path}: expected a JSON object")
    return content


__all__ = ["CHECKPOINTS", "find_results_folder", "load_checkpoint", "read_model_folder"]
