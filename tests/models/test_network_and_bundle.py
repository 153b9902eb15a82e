from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from mousecord.errors import ConfigError, ModelFolderError
from mousecord.models import (
    ModelBundle,
    architecture_from_old_plans,
    build_network,
    count_parameters,
    file_sha256,
    load_bundle,
    load_weights,
    plain_unet_architecture,
    save_bundle,
)


def _reference_architecture(test_data: Path) -> dict:
    plans = json.loads((test_data / "nnunet-reference" / "plans.json").read_text())
    return plans["configurations"]["3d_fullres"]["architecture"]


def test_reference_plans_build_the_reference_network(test_data: Path) -> None:
    network = build_network(_reference_architecture(test_data), input_channels=1, num_classes=3)
    assert type(network).__name__ == "PlainConvUNet"
    assert any(key.startswith("encoder.stages.5") for key in network.state_dict())
    assert count_parameters(network) == count_parameters(
        build_network(plain_unet_architecture(), input_channels=1, num_classes=3)
    )


def test_old_plans_format_gives_the_same_state_dict_keys(test_data: Path) -> None:
    old_configuration = {
        "UNet_class_name": "PlainConvUNet",
        "UNet_base_num_features": 32,
        "unet_max_num_features": 320,
        "n_conv_per_stage_encoder": [2] * 6,
        "n_conv_per_stage_decoder": [2] * 5,
        "pool_op_kernel_sizes": [[1, 1, 1], [2, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2], [2, 1, 1]],
        "conv_kernel_sizes": [[3, 3, 3]] * 6,
        "patch_size": [256, 96, 96],
    }
    new = build_network(_reference_architecture(test_data), input_channels=1, num_classes=3).state_dict()
    old = build_network(architecture_from_old_plans(old_configuration), input_channels=1, num_classes=3)
    assert {key: value.shape for key, value in old.state_dict().items()} == {
        key: value.shape for key, value in new.items()
    }


def test_unknown_classes_are_refused_not_imported() -> None:
    architecture = plain_unet_architecture()
    with pytest.raises(ConfigError, match="unsupported network class 'os.system'"):
        build_network({**architecture, "network_class_name": "os.system"}, input_channels=1, num_classes=3)
    bad_layer = {**architecture, "arch_kwargs": {**architecture["arch_kwargs"], "nonlin": "subprocess.Popen"}}
    with pytest.raises(ConfigError, match="unsupported layer class 'subprocess.Popen'"):
        build_network(bad_layer, input_channels=1, num_classes=3)


def _tiny_bundle(folds: int = 2) -> ModelBundle:
    architecture = plain_unet_architecture(features_per_stage=(4, 8), strides=((1, 1, 1), (2, 2, 2)))
    weights = tuple(
        build_network(architecture, input_channels=1, num_classes=3).state_dict() for _ in range(folds)
    )
    return ModelBundle(
        name="tiny",
        architecture=architecture,
        spacing_mm=(0.05, 0.05, 0.05),
        patch_size_vox=(16, 16, 16),
        fold_weights=weights,
        model_card="# tiny\n",
    )


def test_bundle_round_trip_keeps_weights_and_description(tmp_path: Path) -> None:
    bundle = _tiny_bundle()
    folder = save_bundle(bundle, tmp_path / "tiny")
    loaded = load_bundle(folder)
    recorded = {"weights_sha256": {"weights.safetensors": file_sha256(folder / "weights.safetensors")}}
    assert loaded.description() == {**bundle.description(), "metadata": recorded}
    assert loaded.model_card == "# tiny\n"
    for original, restored in zip(bundle.fold_weights, loaded.fold_weights, strict=True):
        network = load_weights(build_network(loaded.architecture, input_channels=1, num_classes=3), restored)
        for key, value in network.state_dict().items():  # aliases restored, every value equal
            torch.testing.assert_close(value, original[key], rtol=0, atol=0)


def test_saved_files_are_readable_as_the_umask_allows(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        folder = save_bundle(_tiny_bundle(folds=1), tmp_path / "tiny")
    finally:
        os.umask(previous)
    assert {path.name: path.stat().st_mode & 0o777 for path in folder.iterdir()} == {
        "model.json": 0o644,
        "weights.safetensors": 0o644,
        "MODEL_CARD.md": 0o644,
    }


def test_shared_tensors_are_stored_once(tmp_path: Path) -> None:
    bundle = _tiny_bundle(folds=1)
    stored = load_bundle(save_bundle(bundle, tmp_path / "tiny")).fold_weights[0]
    assert len(stored) < len(bundle.fold_weights[0])
    assert not any(".all_modules." in key or key.startswith("decoder.encoder.") for key in stored)


def test_weights_missing_a_parameter_are_refused() -> None:
    bundle = _tiny_bundle(folds=1)
    weights = dict(bundle.fold_weights[0])
    for key in [key for key in weights if "seg_layers" in key]:
        del weights[key]
    with pytest.raises(ConfigError, match="weights lack"):
        load_weights(build_network(bundle.architecture, input_channels=1, num_classes=3), weights)


def test_corrupt_or_incomplete_bundles_are_refused(tmp_path: Path) -> None:
    folder = save_bundle(_tiny_bundle(folds=1), tmp_path / "tiny")
    with pytest.raises(ModelFolderError, match="already exists"):
        save_bundle(_tiny_bundle(folds=1), folder)
    (folder / "weights.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(ModelFolderError, match="weights do not match the sha256 recorded in model.json"):
        load_bundle(folder)
    description = json.loads((folder / "model.json").read_text())
    del description["metadata"]["weights_sha256"]  # as saved before model.json recorded it
    (folder / "model.json").write_text(json.dumps(description))
    with pytest.raises(ModelFolderError, match="corrupt weights file"):
        load_bundle(folder)
    with pytest.raises(ModelFolderError, match="model.json missing"):
        load_bundle(tmp_path)
