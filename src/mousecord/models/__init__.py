"""Model bundles and networks (torch): mousecord's own bundle format and nnU-Net-compatible U-Nets."""

from mousecord.models.bundle import (
    InputSpec,
    ModelBundle,
    Normalization,
    file_sha256,
    load_bundle,
    save_bundle,
    unique_tensors,
)
from mousecord.models.network import (
    architecture_from_old_plans,
    build_network,
    count_parameters,
    load_weights,
    plain_unet_architecture,
)

__all__ = [
    "InputSpec",
    "ModelBundle",
    "Normalization",
    "architecture_from_old_plans",
    "build_network",
    "count_parameters",
    "file_sha256",
    "load_bundle",
    "load_weights",
    "plain_unet_architecture",
    "save_bundle",
    "unique_tensors",
]
