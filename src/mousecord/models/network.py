"""Build nnU-Net-compatible networks from a plans-style architecture description.

The description is nnU-Net v2's ``architecture`` entry (nnunetv2 >= 2.3)::

    {"network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
     "arch_kwargs": {"n_stages": 6, "features_per_stage": [...],
                     "conv_op": "torch.nn.modules.conv.Conv3d", ...},
     "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"]}

Class names are resolved through an allow-list, never imported by name: a plans file can come from the
internet, and ``pydoc.locate`` on it would import arbitrary code. Module names of the built networks are
those of dynamic-network-architectures, so nnU-Net checkpoints' state dicts load unchanged.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from dynamic_network_architectures.architectures import unet
from torch import nn

from mousecord.errors import ConfigError

_NETWORK_CLASSES: dict[str, type[nn.Module]] = {
    "PlainConvUNet": unet.PlainConvUNet,
    "ResidualEncoderUNet": unet.ResidualEncoderUNet,
}

_LAYER_CLASSES: dict[str, type[nn.Module]] = {
    "Conv2d": nn.Conv2d,
    "Conv3d": nn.Conv3d,
    "InstanceNorm2d": nn.InstanceNorm2d,
    "InstanceNorm3d": nn.InstanceNorm3d,
    "BatchNorm2d": nn.BatchNorm2d,
    "BatchNorm3d": nn.BatchNorm3d,
    "Dropout2d": nn.Dropout2d,
    "Dropout3d": nn.Dropout3d,
    "LeakyReLU": nn.LeakyReLU,
    "ReLU": nn.ReLU,
    "GELU": nn.GELU,
}


def build_network(
    architecture: dict[str, Any],
    *,
    input_channels: int,
    num_classes: int,
    deep_supervision: bool = False,
) -> nn.Module:
    """Instantiate the network an nnU-Net-style ``architecture`` describes.

    Args:
        architecture: ``{"network_class_name", "arch_kwargs", "_kw_requires_import"}`` as in plans.json.
        input_channels: number of image channels (1 for T1w alone).
        num_classes: number of output channels (3: background, GM, WM).
        deep_supervision: return one output per decoder stage (training only).

    Raises:
        ConfigError: an unknown network or layer class, or arguments the class does not accept.
    """
    class_name = str(architecture.get("network_class_name", "")).rsplit(".", 1)[-1]
    network_class = _NETWORK_CLASSES.get(class_name)
    if network_class is None:
        raise ConfigError(
            f"unsupported network class {architecture.get('network_class_name')!r}; "
            f"supported: {', '.join(sorted(_NETWORK_CLASSES))}"
        )
    kwargs = copy.deepcopy(dict(architecture.get("arch_kwargs", {})))
    for key in architecture.get("_kw_requires_import", ()):
        if kwargs.get(key) is not None:
            kwargs[key] = _layer_class(kwargs[key])
    try:
        return network_class(
            input_channels=input_channels,
            num_classes=num_classes,
            deep_supervision=deep_supervision,
            **kwargs,
        )
    except TypeError as error:
        raise ConfigError(f"invalid arguments for {class_name}: {error}") from error


def _nnunet_layers(dimension: int) -> dict[str, Any]:
    """The layer settings every nnU-Net U-Net shares: conv bias, affine InstanceNorm (eps 1e-5), no dropout,
    in-place LeakyReLU."""
    return {
        "conv_bias": True,
        "norm_op": f"torch.nn.modules.instancenorm.InstanceNorm{dimension}d",
        "norm_op_kwargs": {"eps": 1e-05, "affine": True},
        "dropout_op": None,
        "dropout_op_kwargs": None,
        "nonlin": "torch.nn.LeakyReLU",
        "nonlin_kwargs": {"inplace": True},
    }


def architecture_from_old_plans(configuration: dict[str, Any]) -> dict[str, Any]:
    """Convert an nnunetv2 <= 2.2 plans configuration to the newer ``architecture`` description.

    Old plans keep the network inside each configuration (``UNet_class_name``, ``UNet_base_num_features``,
    ``unet_max_num_features``, ``n_conv_per_stage_encoder``/``decoder``, ``pool_op_kernel_sizes``,
    ``conv_kernel_sizes``); nnU-Net converts them the same way (conv bias on, affine InstanceNorm with
    eps 1e-5, LeakyReLU, no dropout).
    """
    try:
        class_name = configuration["UNet_class_name"]
        n_stages = len(configuration["n_conv_per_stage_encoder"])
        dimension = len(configuration["patch_size"])
        base_features = int(configuration["UNet_base_num_features"])
        max_features = int(configuration["unet_max_num_features"])
        blocks_key = "n_conv_per_stage" if class_name == "PlainConvUNet" else "n_blocks_per_stage"
        arch_kwargs = {
            "n_stages": n_stages,
            "features_per_stage": [min(base_features * 2**stage, max_features) for stage in range(n_stages)],
            "conv_op": f"torch.nn.modules.conv.Conv{dimension}d",
            "kernel_sizes": copy.deepcopy(configuration["conv_kernel_sizes"]),
            "strides": copy.deepcopy(configuration["pool_op_kernel_sizes"]),
            blocks_key: copy.deepcopy(configuration["n_conv_per_stage_encoder"]),
            "n_conv_per_stage_decoder": copy.deepcopy(configuration["n_conv_per_stage_decoder"]),
            **_nnunet_layers(dimension),
        }
    except KeyError as error:
        raise ConfigError(f"old-format plans configuration lacks {error.args[0]!r}") from error
    return {
        "network_class_name": f"dynamic_network_architectures.architectures.unet.{class_name}",
        "arch_kwargs": arch_kwargs,
        "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
    }


def plain_unet_architecture(
    *,
    features_per_stage: tuple[int, ...] = (32, 64, 128, 256, 320, 320),
    strides: tuple[tuple[int, int, int], ...] = (
        (1, 1, 1),
        (2, 2, 2),
        (2, 2, 2),
        (2, 2, 2),
        (2, 2, 2),
        (2, 1, 1),
    ),
    kernel_size: int = 3,
    n_conv_per_stage: int = 2,
) -> dict[str, Any]:
    """An nnU-Net-style PlainConvUNet description (defaults: the reference-sized 3d_fullres network).

    Strides of two numbers give a 2D network (nnU-Net's 2d configuration: ``Conv2d``, ``InstanceNorm2d``).
    """
    if len(features_per_stage) != len(strides):
        raise ConfigError(
            f"features_per_stage has {len(features_per_stage)} stages but strides has {len(strides)}"
        )
    dimension = len(strides[0])
    if dimension not in (2, 3) or any(len(stride) != dimension for stride in strides):
        raise ConfigError(f"strides must all have 2 or all have 3 numbers, got {strides}")
    n_stages = len(features_per_stage)
    return {
        "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
        "arch_kwargs": {
            "n_stages": n_stages,
            "features_per_stage": list(features_per_stage),
            "conv_op": f"torch.nn.modules.conv.Conv{dimension}d",
            "kernel_sizes": [[kernel_size] * dimension for _ in range(n_stages)],
            "strides": [list(stride) for stride in strides],
            "n_conv_per_stage": [n_conv_per_stage] * n_stages,
            "n_conv_per_stage_decoder": [n_conv_per_stage] * (n_stages - 1),
            **_nnunet_layers(dimension),
        },
        "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
    }


def network_dimension(architecture: dict[str, Any]) -> int:
    """2 or 3: the dimensionality of the convolutions an architecture description asks for."""
    conv_op = str(architecture.get("arch_kwargs", {}).get("conv_op", "Conv3d"))
    return 2 if conv_op.endswith("Conv2d") else 3


class InPlaneNetwork(nn.Module):
    """A 2D network run on 3D tiles: every axial slice of a (b, c, z, y, x) tile goes through it alone.

    The channels of each slice are its slab (the slice and its neighbours, see
    :func:`mousecord.inference.preprocessing.slab_channels`), so a 2.5D network needs no knowledge of the
    tiling; with tiles one slice deep (what the predictor uses) it is exactly the 2D network.
    """

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, tiles: torch.Tensor) -> torch.Tensor:
        batch, channels, depth, height, width = tiles.shape
        planes = tiles.permute(0, 2, 1, 3, 4).reshape(batch * depth, channels, height, width)
        logits = self.network(planes)
        return logits.reshape(batch, depth, logits.shape[1], height, width).permute(0, 2, 1, 3, 4)


def _layer_class(name: str) -> type[nn.Module]:
    short_name = str(name).rsplit(".", 1)[-1]
    layer_class = _LAYER_CLASSES.get(short_name)
    if layer_class is None or not str(name).startswith("torch.nn"):
        raise ConfigError(
            f"unsupported layer class {name!r}; supported: torch.nn {', '.join(sorted(_LAYER_CLASSES))}"
        )
    return layer_class


def load_weights(network: nn.Module, weights: dict[str, torch.Tensor]) -> nn.Module:
    """Load a state dict that may lack alias keys (see :func:`mousecord.models.bundle.unique_tensors`).

    Raises:
        ConfigError: a key the network does not have, or a parameter that is neither given nor an alias
            of a given one.
    """
    aliases: dict[int, set[str]] = {}
    for key, tensor in network.state_dict(keep_vars=True).items():
        aliases.setdefault(tensor.data_ptr(), set()).add(key)
    try:
        missing, unexpected = network.load_state_dict(weights, strict=False)
    except RuntimeError as error:  # shape mismatch
        raise ConfigError(f"weights do not fit the network: {str(error).splitlines()[0]}") from error
    if unexpected:
        raise ConfigError(f"weights hold {len(unexpected)} keys the network lacks, e.g. {unexpected[0]!r}")
    state = network.state_dict(keep_vars=True)
    orphans = [key for key in missing if not (aliases[state[key].data_ptr()] - set(missing))]
    if orphans:
        raise ConfigError(f"weights lack {len(orphans)} parameters of the network, e.g. {orphans[0]!r}")
    return network


def count_parameters(network: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(parameter.numel() for parameter in network.parameters() if parameter.requires_grad)


__all__ = [
    "InPlaneNetwork",
    "architecture_from_old_plans",
    "build_network",
    "count_parameters",
    "load_weights",
    "network_dimension",
    "plain_unet_architecture",
]
