"""Build random-weight nnU-Net v2 results folders as nnunetv2 writes them (no nnunetv2 needed).

The checkpoint dict has every key ``nnUNetTrainer.save_checkpoint`` writes, with the same kinds of values:
an SGD optimizer state, a grad-scaler state, the logger's lists of numpy scalars, ``_best_ema`` as a numpy
float64, ``init_args`` with plans, configuration, fold, dataset_json and a ``torch.device``.
:class:`RunsShell` and :class:`OpensFile` are pickle payloads for checkpoints that would run code.
"""

from __future__ import annotations

import copy
import json
import os
import shlex
from pathlib import Path

import numpy as np
import torch

from mousecord.models.network import build_network

REFERENCE_PLANS = Path(__file__).resolve().parents[1] / "data" / "nnunet-reference" / "plans.json"
REFERENCE_DATASET = REFERENCE_PLANS.with_name("dataset.json")
FOLDER_NAME = "nnUNetTrainer__nnUNetPlans__3d_fullres"


class RunsShell:
    """Unpickling it runs a shell command that creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


class OpensFile:
    """Unpickling it creates ``marker`` with ``open``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def reference_plans(
    *, patch_size_vox=(32, 48, 48), features_per_stage=None, old_format: bool = False
) -> dict:
    """The reference plans.json with a smaller 3d_fullres patch (optionally narrower, old format)."""
    plans = json.loads(REFERENCE_PLANS.read_text())
    configuration = plans["configurations"]["3d_fullres"]
    configuration["patch_size"] = list(patch_size_vox)
    arch_kwargs = configuration["architecture"]["arch_kwargs"]
    if features_per_stage is not None:
        arch_kwargs["features_per_stage"] = list(features_per_stage)
    if old_format:
        for name in list(plans["configurations"]):
            entry = plans["configurations"][name]
            architecture = entry.pop("architecture", None)
            if architecture is None:
                continue
            kwargs = architecture["arch_kwargs"]
            entry.update(
                {
                    "UNet_class_name": "PlainConvUNet",
                    "UNet_base_num_features": kwargs["features_per_stage"][0],
                    "unet_max_num_features": kwargs["features_per_stage"][-1],
                    "n_conv_per_stage_encoder": kwargs["n_conv_per_stage"],
                    "n_conv_per_stage_decoder": kwargs["n_conv_per_stage_decoder"],
                    "pool_op_kernel_sizes": kwargs["strides"],
                    "num_pool_per_axis": [
                        sum(stride[axis] > 1 for stride in kwargs["strides"])
                        for axis in range(len(kwargs["strides"][0]))
                    ],
                    "conv_kernel_sizes": kwargs["kernel_sizes"],
                }
            )
    return plans


def random_state_dict(plans: dict, *, seed: int = 0, logit_scale: float = 1.0) -> dict[str, torch.Tensor]:
    """A seeded random PlainConvUNet state dict; ``logit_scale`` scales the final 1x1x1 layer."""
    from mousecord.models.network import architecture_from_old_plans

    configuration = plans["configurations"]["3d_fullres"]
    architecture = configuration.get("architecture") or architecture_from_old_plans(configuration)
    torch.manual_seed(seed)
    network = build_network(architecture, input_channels=1, num_classes=3)
    with torch.no_grad():
        for name, parameter in network.named_parameters():
            if name.startswith("decoder.seg_layers"):
                parameter.mul_(logit_scale)
    return network.state_dict()


def nnunet_checkpoint(plans: dict, dataset: dict, state_dict: dict, *, fold: int = 0) -> dict:
    """A checkpoint dict with the keys and value types of ``nnUNetTrainer.save_checkpoint``."""
    parameters = [torch.nn.Parameter(tensor.clone().float()) for tensor in list(state_dict.values())[:4]]
    optimizer = torch.optim.SGD(parameters, lr=0.01, momentum=0.99, nesterov=True, weight_decay=3e-5)
    sum(parameter.sum() for parameter in parameters).backward()
    optimizer.step()
    rng = np.random.default_rng(0)
    epochs = 3
    logging = {
        "mean_fg_dice": [np.float64(value) for value in rng.random(epochs)],
        "ema_fg_dice": [np.float64(value) for value in rng.random(epochs)],
        "dice_per_class_or_region": [[np.float64(value) for value in rng.random(2)] for _ in range(epochs)],
        "train_losses": [np.float32(-value) for value in rng.random(epochs)],
        "val_losses": [np.float32(-value) for value in rng.random(epochs)],
        "lrs": [0.01 * (1 - epoch / 1000) ** 0.9 for epoch in range(epochs)],
        "epoch_start_timestamps": [1.7e9 + epoch for epoch in range(epochs)],
        "epoch_end_timestamps": [1.7e9 + epoch + 0.5 for epoch in range(epochs)],
    }
    return {
        "network_weights": state_dict,
        "optimizer_state": optimizer.state_dict(),
        "grad_scaler_state": {
            "scale": 65536.0,
            "growth_factor": 2.0,
            "backoff_factor": 0.5,
            "growth_interval": 2000,
            "_growth_tracker": 12,
        },
        "logging": logging,
        "_best_ema": np.float64(0.8125),
        "current_epoch": epochs,
        "init_args": {
            "plans": copy.deepcopy(plans),
            "configuration": "3d_fullres",
            "fold": fold,
            "dataset_json": copy.deepcopy(dataset),
            "device": torch.device("cuda", 0),
        },
        "trainer_name": "nnUNetTrainer",
        "inference_allowed_mirroring_axes": (0, 1, 2),
    }


def make_nnunet_folder(
    root: Path,
    *,
    patch_size_vox=(32, 48, 48),
    features_per_stage=None,
    old_format: bool = False,
    folds=(0,),
    checkpoint_name: str = "checkpoint_final.pth",
    seed: int = 0,
    logit_scale: float = 1.0,
) -> Path:
    """Write ``root/nnUNetTrainer__nnUNetPlans__3d_fullres/`` with the JSON files and fold_k/<checkpoint>."""
    folder = Path(root) / FOLDER_NAME
    folder.mkdir(parents=True, exist_ok=True)
    plans = reference_plans(
        patch_size_vox=patch_size_vox, features_per_stage=features_per_stage, old_format=old_format
    )
    dataset = json.loads(REFERENCE_DATASET.read_text())
    (folder / "plans.json").write_text(json.dumps(plans, indent=2))
    (folder / "dataset.json").write_text(json.dumps(dataset, indent=2))
    for index, fold in enumerate(folds):
        (folder / f"fold_{fold}").mkdir(exist_ok=True)
        state_dict = random_state_dict(plans, seed=seed + index, logit_scale=logit_scale)
        torch.save(
            nnunet_checkpoint(plans, dataset, state_dict, fold=fold),
            folder / f"fold_{fold}" / checkpoint_name,
        )
    return folder


def cord_like_image(shape, *, seed: int = 0, zero_margin: int = 0) -> np.ndarray:
    """A smooth positive (x, y, z) float32 image with a bright cylinder along z; zeroed ``zero_margin``."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    image = gaussian_filter(rng.normal(size=shape), 2.0)
    x, y = np.meshgrid(np.arange(shape[0]) - shape[0] / 2, np.arange(shape[1]) - shape[1] / 2, indexing="ij")
    image = (
        100
        + 400 * image / (np.abs(image).max() + 1e-9)
        + 300 * (x**2 + y**2 < (min(shape[:2]) / 4) ** 2)[..., None]
    )
    if zero_margin:
        inner = np.zeros(shape, dtype=bool)
        inner[(slice(zero_margin, -zero_margin),) * 3] = True
        image = np.where(inner, image, 0)
    return image.astype(np.float32)
