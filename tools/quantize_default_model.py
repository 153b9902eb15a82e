"""Quantise a bundle's networks to int8 for OpenVINO (post-training, NNCF) and store them in the bundle.

On this project's 2-core AVX2 CPU the default network's 128 x 128 tile takes 8.4 ms in int8 against 15.9 ms
in float32, and its Dice on the phantom benchmarks is unchanged (see the model card). Calibration uses
synthetic slabs drawn as in training (``mousecord.synthesis``, seed ``CALIBRATION_SEED``, never an
evaluation seed), cut as stage-2 tiles are; NNCF's fast bias correction is applied.

The weights are stored as float16 (networks still run in float32; the rounding moves outputs by about
1e-3 relative) so that the float32 weights and the int8 IR together stay under 25 MB.

NNCF is needed here only, not to run the result: ``pip install nncf``.

    python tools/quantize_default_model.py [--bundle FOLDER] [--samples 320]
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path

import numpy as np
import torch

from mousecord.inference import InferenceConfig, Predictor
from mousecord.inference.backends import convert_network, smallest_input_shape
from mousecord.models.bundle import (
    INT8_METADATA,
    Int8Network,
    load_bundle,
    save_bundle,
    unique_tensors,
    weights_content_sha256,
)
from mousecord.training.in_plane_config import InPlaneTrainConfig
from mousecord.training.in_plane_data import synthetic_sample

DEFAULT_BUNDLE = Path(__file__).resolve().parents[1] / "src" / "mousecord" / "models" / "default"
#: Seed of the calibration slabs (training draws from its own seeds, evaluation uses phantom seeds < 1000).
CALIBRATION_SEED = 7001
CALIBRATION_BATCH = 16


def calibration_batches(config: InPlaneTrainConfig, samples: int, seed: int) -> list[np.ndarray]:
    """(b, slab slices, 1, y, x) float32 batches of normalised synthetic slabs drawn by ``config``'s
    synthesis, as stage-2 tiles reach the network."""
    rng = np.random.default_rng(seed)
    slabs = np.stack([synthetic_sample(config, rng)[0] for _ in range(samples)]).astype(np.float32)
    tiles = slabs[:, :, None]  # (b, slices as channels, z = 1, y, x)
    return [tiles[start : start + CALIBRATION_BATCH] for start in range(0, samples, CALIBRATION_BATCH)]


def quantize(folder: Path, samples: int) -> Path:
    """Store float16 weights and int8 networks calibrated on ``samples`` slabs in the bundle ``folder``."""
    import nncf
    import openvino

    bundle = load_bundle(folder)
    if not bundle.in_plane:
        raise SystemExit(f"{folder}: calibration draws in-plane slabs; this is a 3D model")
    half_weights = tuple(
        {
            key: value.to(torch.float16) if value.is_floating_point() else value
            for key, value in unique.items()
        }
        for unique in (unique_tensors(state_dict) for state_dict in bundle.fold_weights)
    )
    dataset = nncf.Dataset(
        calibration_batches(InPlaneTrainConfig.for_bundle(bundle), samples, CALIBRATION_SEED)
    )
    # the float32 networks exactly as the predictor builds them from the stored (float16) weights
    float_bundle = dataclasses.replace(bundle, fold_weights=half_weights, int8_networks=())
    predictor = Predictor(float_bundle, InferenceConfig(device="cpu", backend="torch", precision="float32"))
    networks = []
    for network in predictor.networks:
        model = convert_network(network, bundle.network_channels, smallest_input_shape(bundle.architecture))
        quantized = nncf.quantize(model, dataset, preset=nncf.QuantizationPreset.PERFORMANCE)
        with tempfile.TemporaryDirectory() as scratch:
            path = Path(scratch) / "network.xml"
            openvino.save_model(quantized, path, compress_to_fp16=False)
            networks.append(Int8Network(path.read_bytes(), path.with_suffix(".bin").read_bytes()))
    metadata = {
        **bundle.metadata,
        INT8_METADATA: {
            "weights_content_sha256": weights_content_sha256(half_weights),
            "calibration": f"{samples} synthetic slabs (mousecord.synthesis, seed {CALIBRATION_SEED})",
            "quantizer": f"nncf {nncf.__version__}, preset performance, openvino {openvino.__version__}",
        },
    }
    updated = dataclasses.replace(
        bundle, fold_weights=half_weights, int8_networks=tuple(networks), metadata=metadata
    )
    return save_bundle(updated, folder, overwrite=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE, help="bundle folder, rewritten")
    parser.add_argument("--samples", type=int, default=320, help="calibration slabs")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"int8 networks written into {quantize(args.bundle, args.samples)}")


if __name__ == "__main__":
    main()
