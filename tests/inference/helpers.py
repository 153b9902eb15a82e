"""Tiny random-weight model bundles for fast inference tests."""

from __future__ import annotations

from pathlib import Path

import torch

from mousecord.inference import InferenceConfig
from mousecord.models import ModelBundle, Normalization, build_network, plain_unet_architecture, save_bundle

#: Library calls in tests run on torch (exact results, no OpenVINO compile per predictor) unless they
#: test a backend.
TORCH = InferenceConfig(device="cpu", backend="torch")


def tiny_bundle(
    *,
    spacing_mm=(1.0, 1.0, 1.0),
    patch_size_vox=(16, 16, 16),
    seed: int = 0,
    folds: int = 1,
    name: str = "tiny",
) -> ModelBundle:
    architecture = plain_unet_architecture(
        features_per_stage=(4, 8, 16), strides=((1, 1, 1), (2, 2, 2), (2, 2, 2))
    )
    weights = []
    for fold in range(folds):
        torch.manual_seed(seed + fold)
        network = build_network(architecture, input_channels=1, num_classes=3)
        with torch.no_grad():
            for key, parameter in network.named_parameters():
                if key.startswith("decoder.seg_layers"):
                    parameter.mul_(20.0)  # spread logits so argmax is well defined
        weights.append(network.state_dict())
    return ModelBundle(
        name=name,
        architecture=architecture,
        spacing_mm=tuple(spacing_mm),
        patch_size_vox=tuple(patch_size_vox),
        fold_weights=tuple(weights),
    )


def tiny_in_plane_bundle(
    *, slab_slices: int = 1, seed: int = 0, name: str = "tiny-2d", normalization: str = "ZScoreNormalization"
) -> ModelBundle:
    """A random-weight 2D (``slab_slices`` 1) or 2.5D network, 0.05 mm in-plane, 32 x 32 tiles."""
    architecture = plain_unet_architecture(features_per_stage=(4, 8, 16), strides=((1, 1), (2, 2), (2, 2)))
    torch.manual_seed(seed)
    network = build_network(architecture, input_channels=slab_slices, num_classes=3)
    with torch.no_grad():
        for key, parameter in network.named_parameters():
            if key.startswith("decoder.seg_layers"):
                parameter.mul_(20.0)
    return ModelBundle(
        name=name,
        architecture=architecture,
        spacing_mm=(0.05, 0.05, 0.05),
        patch_size_vox=(1, 32, 32),
        fold_weights=(network.state_dict(),),
        normalization=(Normalization(scheme=normalization),),
        mirror_axes=(1, 2),
        slab_slices=slab_slices,
    )


def tiny_bundle_folder(folder: Path, **kwargs) -> Path:
    return save_bundle(tiny_bundle(**kwargs), folder)
