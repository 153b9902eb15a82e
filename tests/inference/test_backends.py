"""Backends: OpenVINO runs the same network as PyTorch, on any tile shape, and never sends telemetry."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from mousecord.errors import ConfigError
from mousecord.inference import InferenceConfig, Predictor
from mousecord.inference.backends import (
    OpenVinoNetwork,
    openvino_available,
    resolve_backend,
    smallest_input_shape,
)
from mousecord.models import build_network, plain_unet_architecture
from tests.inference.helpers import tiny_bundle

needs_openvino = pytest.mark.skipif(not openvino_available(), reason="openvino is not installed")


def test_resolve_backend(monkeypatch):
    monkeypatch.delenv("MOUSECORD_BACKEND", raising=False)
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_backend("torch", cpu) == "torch"
    assert resolve_backend("auto", cuda) == "torch"
    assert resolve_backend("auto", cpu) == ("openvino" if openvino_available() else "torch")
    with pytest.raises(ConfigError, match="runs on the CPU"):
        resolve_backend("openvino", cuda)
    with pytest.raises(ConfigError, match="backend must be one of"):
        resolve_backend("tensorrt", cpu)
    with pytest.raises(ConfigError, match="backend must be one of"):
        InferenceConfig(backend="onnx")


def test_auto_takes_torch_without_openvino_or_off_x86(monkeypatch):
    import mousecord.inference.backends as backends

    monkeypatch.setenv("MOUSECORD_BACKEND", "openvino")
    assert resolve_backend("auto", torch.device("cpu")) == "openvino"
    assert resolve_backend("torch", torch.device("cpu")) == "torch"
    monkeypatch.delenv("MOUSECORD_BACKEND")

    cpu = torch.device("cpu")
    monkeypatch.setattr(backends.platform, "machine", lambda: "arm64")
    assert resolve_backend("auto", cpu) == "torch"
    monkeypatch.setattr(backends, "openvino_available", lambda: False)
    monkeypatch.setattr(backends.platform, "machine", lambda: "x86_64")
    assert resolve_backend("auto", cpu) == "torch"
    with pytest.raises(ConfigError, match="needs the openvino package"):
        resolve_backend("openvino", cpu)


def test_openvino_failure_falls_back_on_auto_and_is_one_error_otherwise(monkeypatch, caplog):
    import mousecord.inference.predictor as predictor_module

    def broken(*args, **kwargs):
        raise ConfigError("OpenVINO could not run this network (RuntimeError: no CPU plugin)")

    monkeypatch.setattr(predictor_module, "resolve_backend", lambda backend, device: "openvino")
    monkeypatch.setattr(predictor_module, "OpenVinoNetwork", broken)
    image = np.random.default_rng(7).random((20, 20, 20)).astype(np.float32)
    auto = Predictor(tiny_bundle(), InferenceConfig(device="cpu"))
    with caplog.at_level("WARNING", logger="mousecord.inference.predictor"):
        labels = auto.predict_array(image, (1, 1, 1)).label_map
    assert auto.backend == "torch" and "running on torch instead" in caplog.text
    assert labels.shape == image.shape
    explicit = Predictor(tiny_bundle(), InferenceConfig(device="cpu", backend="openvino"))
    with pytest.raises(ConfigError, match="model tiny: OpenVINO could not run this network"):
        explicit.prepare()


def test_smallest_input_shape_halves_evenly_at_every_stage():
    architecture = plain_unet_architecture(
        features_per_stage=(4, 8, 16, 32), strides=((1, 1, 1), (2, 2, 2), (2, 2, 2), (2, 1, 1))
    )
    assert smallest_input_shape(architecture) == (16, 8, 8)
    assert smallest_input_shape({"arch_kwargs": {"strides": [1, 2, 2]}}) == (8, 8, 8)


@needs_openvino
def test_openvino_network_matches_torch_on_tiles_of_any_shape():
    architecture = plain_unet_architecture(
        features_per_stage=(4, 8, 16), strides=((1, 1, 1), (2, 2, 2), (2, 2, 2))
    )
    torch.manual_seed(0)
    network = build_network(architecture, input_channels=1, num_classes=3).eval()
    compiled = OpenVinoNetwork(
        network, input_channels=1, example_shape_vox=smallest_input_shape(architecture), threads=1
    )
    generator = torch.Generator().manual_seed(1)
    for shape in [(1, 1, 16, 24, 32), (2, 1, 8, 40, 16)]:  # batch and every spatial size differ
        tiles = torch.randn(shape, generator=generator)
        with torch.inference_mode():
            expected = network(tiles)
        result = compiled(tiles)
        assert result.shape == expected.shape and result.dtype == torch.float32
        assert float((result - expected).abs().max() / expected.abs().max()) < 1e-4
    first = compiled(tiles)
    compiled(torch.zeros_like(tiles))
    assert float((first - expected).abs().max() / expected.abs().max()) < 1e-4  # results are not reused


@needs_openvino
def test_predictor_backends_agree():
    image = np.random.default_rng(5).random((30, 26, 22)).astype(np.float32)
    results = {}
    for backend in ("torch", "openvino"):
        predictor = Predictor(tiny_bundle(folds=2), InferenceConfig(backend=backend))
        assert predictor.backend == backend and predictor.device.type == "cpu"
        preprocessed = predictor.preprocess(image, (1, 1, 1))
        logits = predictor.predict_logits(preprocessed.data)
        results[backend] = (logits, predictor.export(logits, preprocessed).label_map)
    (torch_logits, torch_labels), (openvino_logits, openvino_labels) = results["torch"], results["openvino"]
    # float16 blending (nnU-Net's) rounds a few voxels one step apart
    relative = (openvino_logits - torch_logits).abs() / torch_logits.abs().max()
    assert float((relative > 1e-3).float().mean()) < 1e-3
    assert float(relative.max()) <= 5e-3
    assert np.mean(openvino_labels == torch_labels) > 0.999


@needs_openvino
def test_importing_openvino_sends_no_telemetry(tmp_path):
    # OpenVINO records a client id under ~/intel and sends an event on import unless opted out (or on CI)
    environment = {
        key: value for key, value in os.environ.items() if key not in ("CI", "TF_BUILD", "JENKINS_URL")
    }
    environment["HOME"] = str(tmp_path)
    script = """
import json, socket, sys
import torch
connections = []
def refuse(self, address, *args):
    connections.append(str(address))
    raise OSError("no network in this test")
socket.socket.connect = refuse
from mousecord.inference.backends import OpenVinoNetwork
from mousecord.models import build_network, plain_unet_architecture
architecture = plain_unet_architecture(features_per_stage=(2, 4), strides=((1, 1, 1), (2, 2, 2)))
network = build_network(architecture, input_channels=1, num_classes=3)
OpenVinoNetwork(network, input_channels=1, example_shape_vox=(4, 4, 4), threads=1)(torch.zeros(1, 1, 8, 8, 8))
telemetry = sorted(
    {module.tm.__name__ for name, module in list(sys.modules.items())
     if name.startswith("openvino.") and hasattr(module, "tm")}
)
print(json.dumps([telemetry, "openvino_telemetry" in sys.modules, connections]))
"""
    output = subprocess.run(
        [sys.executable, "-c", script], env=environment, check=True, capture_output=True, text=True
    ).stdout
    telemetry_modules, telemetry_loaded, connections = json.loads(output.strip().splitlines()[-1])
    assert telemetry_modules == ["openvino.tools.ovc.telemetry_stub"]
    assert not telemetry_loaded and connections == []
    assert list(tmp_path.iterdir()) == []


@needs_openvino
def test_signal_handlers_survive_compiled_networks_freed_in_creation_order():
    # OpenVINO swaps the thread's alternate signal stack per compiled model; freed first-in first-out, it
    # left a freed stack installed and the next Python signal handler crashed (SIGCHLD of a DataLoader
    # worker, in training after segmenting). Run in a subprocess: the failure is a SIGSEGV.
    script = """
import gc, signal, subprocess
import torch
from mousecord.inference.backends import OpenVinoNetwork
from mousecord.models import build_network, plain_unet_architecture
architecture = plain_unet_architecture(features_per_stage=(2, 4), strides=((1, 1, 1), (2, 2, 2)))
network = build_network(architecture, input_channels=1, num_classes=3)
first, second = (
    OpenVinoNetwork(network, input_channels=1, example_shape_vox=(4, 4, 4), threads=1) for _ in range(2)
)
del first
gc.collect()
del second
gc.collect()
signal.signal(signal.SIGCHLD, lambda *args: None)
subprocess.run(["true"], check=True)
print("alive")
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[-1] == "alive"


@pytest.mark.gpu
def test_cuda_with_autocast_agrees_with_the_cpu():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    image = np.random.default_rng(6).random((40, 36, 44)).astype(np.float32)
    labels = {}
    for device in ("cpu", "cuda"):
        predictor = Predictor(tiny_bundle(), InferenceConfig(device=device, backend="torch", mirroring=True))
        assert predictor.device.type == device
        labels[device] = predictor.predict_array(image, (1, 1, 1)).label_map
    assert np.mean(labels["cuda"] == labels["cpu"]) > 0.99  # float16 autocast on the GPU
    assert len(np.unique(labels["cpu"])) > 1
