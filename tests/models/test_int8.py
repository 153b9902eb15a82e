"""int8 networks in a bundle: stored and verified with it, run by the predictor only where they belong.

Nothing here needs NNCF: the "int8" network the predictor is given is a float32 OpenVINO IR of another
network (the format is the same), so its logits show which network ran.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from mousecord.errors import ConfigError, ModelFolderError
from mousecord.inference import InferenceConfig, Predictor
from mousecord.inference.backends import convert_network, openvino_available, smallest_input_shape
from mousecord.models.bundle import (
    INT8_METADATA,
    Int8Network,
    load_bundle,
    save_bundle,
    weights_content_sha256,
)
from tests.inference.helpers import tiny_in_plane_bundle

needs_openvino = pytest.mark.skipif(not openvino_available(), reason="OpenVINO is not installed")


def ir_of(bundle, tmp_path: Path) -> Int8Network:
    """A float32 OpenVINO IR of ``bundle``'s network, as the predictor builds it."""
    import openvino

    network = Predictor(bundle, InferenceConfig(device="cpu", backend="torch")).networks[0]
    model = convert_network(network, bundle.network_channels, smallest_input_shape(bundle.architecture))
    path = tmp_path / "ir" / "network.xml"
    path.parent.mkdir()
    openvino.save_model(model, path, compress_to_fp16=False)
    return Int8Network(path.read_bytes(), path.with_suffix(".bin").read_bytes())


def with_int8(bundle, network: Int8Network):
    record = {"weights_content_sha256": weights_content_sha256(bundle.fold_weights)}
    return dataclasses.replace(
        bundle, int8_networks=(network,), metadata={**bundle.metadata, INT8_METADATA: record}
    )


@pytest.fixture(scope="module")
def bundle_and_other_ir(tmp_path_factory):
    """A tiny 2.5D bundle and an IR of another network of the same shape (other random weights)."""
    if not openvino_available():
        pytest.skip("OpenVINO is not installed")
    other = tiny_in_plane_bundle(slab_slices=3, seed=1)
    return tiny_in_plane_bundle(slab_slices=3), other, ir_of(other, tmp_path_factory.mktemp("int8"))


def test_int8_networks_are_saved_verified_and_dropped_with_other_weights(tmp_path):
    bundle = tiny_in_plane_bundle(slab_slices=3)
    network = Int8Network(b"<net/>", bytes(range(256)))  # saving and loading never parse the IR
    folder = save_bundle(with_int8(bundle, network), tmp_path / "model")
    loaded = load_bundle(folder)
    assert loaded.int8_matches_weights and loaded.int8_networks == (network,)
    assert set(loaded.metadata[INT8_METADATA]["sha256"]) == {"int8/fold_0.xml", "int8/fold_0.bin"}

    # a fine-tune keeps the architecture but not the weights: its bundle must not carry the old int8 network
    changed = {
        key: value + 1 if value.is_floating_point() else value
        for key, value in bundle.fold_weights[0].items()
    }
    retrained = dataclasses.replace(loaded, fold_weights=(changed,))
    assert not retrained.int8_matches_weights
    resaved = load_bundle(save_bundle(retrained, tmp_path / "retrained"))
    assert resaved.int8_networks == () and INT8_METADATA not in resaved.metadata
    assert not (tmp_path / "retrained" / "int8").exists()

    (folder / "int8" / "fold_0.bin").write_bytes(network.weights[:-8] + b"\0" * 8)
    with pytest.raises(ModelFolderError, match=r"fold_0\.bin: does not match the sha256"):
        load_bundle(folder)
    (folder / "int8" / "fold_0.bin").unlink()
    with pytest.raises(ModelFolderError, match=r"fold_0\.bin: missing"):
        load_bundle(folder)
    description = json.loads((folder / "model.json").read_text())
    description["metadata"][INT8_METADATA]["sha256"] = {"../weights.safetensors": "0" * 64}
    (folder / "model.json").write_text(json.dumps(description))
    with pytest.raises(ModelFolderError, match=r"metadata\.int8\.sha256 must map exactly"):
        load_bundle(folder)


@needs_openvino
def test_the_predictor_runs_int8_networks_only_where_they_belong(bundle_and_other_ir, caplog):
    bundle, other, network = bundle_and_other_ir
    quantised = with_int8(bundle, network)
    image = np.random.default_rng(0).normal(size=(1, 6, 40, 36)).astype(np.float32)  # (c, z, y, x)

    def logits(model, **config) -> torch.Tensor:
        predictor = Predictor(
            model, InferenceConfig(device="cpu", roi="full", threads=1, accumulate_dtype="float32", **config)
        )
        return predictor.predict_logits(image, (0.05, 0.05, 0.05)), predictor

    int8_logits, int8 = logits(quantised, backend="openvino")
    float_logits, float32 = logits(quantised, backend="openvino", precision="float32")
    assert int8.precision == "int8" and float32.precision == "float32"
    assert int8.resolved_settings()["precision_resolved"] == "int8"
    # the "int8" network is the other one: its logits, not the bundle's own
    torch.testing.assert_close(int8_logits, logits(other, backend="torch")[0], rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(float_logits, logits(bundle, backend="torch")[0], rtol=1e-4, atol=1e-3)
    assert float((int8_logits - float_logits).abs().max()) > 0.1
    assert logits(quantised, backend="torch")[1].precision == "float32"

    with pytest.raises(ConfigError, match="on the OpenVINO backend only, not 'torch'"):
        Predictor(quantised, InferenceConfig(device="cpu", backend="torch", precision="int8"))
    with pytest.raises(ConfigError, match="model tiny-2d has no int8 networks; use precision 'float32'"):
        Predictor(bundle, InferenceConfig(device="cpu", backend="openvino", precision="int8"))
    stale = dataclasses.replace(
        quantised, fold_weights=({key: value * 2 for key, value in bundle.fold_weights[0].items()},)
    )
    with caplog.at_level(logging.WARNING, logger="mousecord"):
        assert Predictor(stale, InferenceConfig(device="cpu", backend="openvino")).precision == "float32"
    assert "quantised from other weights" in caplog.text


def test_precision_is_checked():
    with pytest.raises(ConfigError, match="precision must be one of"):
        InferenceConfig(precision="int4")
