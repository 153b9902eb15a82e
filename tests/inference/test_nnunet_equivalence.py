"""mousecord against nnU-Net v2 itself (nnunetv2 as a test-only oracle, see .ci/run for its install).

Same random-weight model folder, same volume, same settings (tile step 0.5, Gaussian, mirroring on/off):
nnU-Net's own preprocessing + ``predict_logits_from_preprocessed_data`` + export against mousecord's
``Predictor``. Logits must agree to 1e-3 relative (to the largest logit magnitude) and labels on >= 99.9 %
of voxels.

The torch backend reproduces nnU-Net bit for bit. The OpenVINO backend's network output is within 1e-4
relative of PyTorch's, but nnU-Net blends tiles in float16: one rounding step of the accumulated sums is ~1e-3
of the logits, and near the volume's faces and corners, where the summed tile weights are float16
subnormals, nnU-Net's logits are quantised in steps of up to ~0.5. An equally accurate network output rounds
the other way in some of those voxels. Measured at 200 x 200 x 500 (the slow test): 0.018 % of the logit
values differ by more than 1e-3 relative, 89 % of them where the weights are subnormal (there up to 0.27);
elsewhere at most 1.6e-3, one rounding step. So for OpenVINO at most 0.1 % of the logit values may differ by
more than 1e-3, at most 0.1 % of the voxels by more than 1e-3 in probability (0.034 % at full size), and
labels must agree on >= 99.9 % of voxels (99.985 % at full size), as for torch.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mousecord.inference import InferenceConfig, Predictor
from mousecord.inference.backends import openvino_available
from mousecord.models.nnunet import read_model_folder
from tests.models.nnunet_fixtures import cord_like_image, make_nnunet_folder

pytestmark = [
    pytest.mark.nnunet,
    pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning", "ignore::FutureWarning"),
]

SPACING_MM = (0.05, 0.05, 0.05)


def nnunet_predict(folder, image_xyz, *, mirroring: bool):
    """nnU-Net's logits (network space) and its exported label map and probabilities, in (x, y, z)."""
    predict = pytest.importorskip(
        "nnunetv2.inference.predict_from_raw_data", reason="nnunetv2 is not installed (see .ci/run)"
    )
    from nnunetv2.inference.data_iterators import PreprocessAdapterFromNpy
    from nnunetv2.inference.export_prediction import (
        convert_predicted_logits_to_segmentation_with_correct_shape,
    )

    predictor = predict.nnUNetPredictor(
        tile_step_size=0.5,
        use_gaussian=True,
        use_mirroring=mirroring,
        device=torch.device("cpu"),
        allow_tqdm=False,
    )
    predictor.initialize_from_trained_model_folder(str(folder), use_folds=None)
    # what nnU-Net's SimpleITK reader gives for a RAS image: (z, y, x), spacing reversed
    data = np.ascontiguousarray(image_xyz.transpose(2, 1, 0)[None])
    adapter = PreprocessAdapterFromNpy(
        [data],
        [None],
        [{"spacing": list(SPACING_MM[::-1])}],
        [None],
        predictor.plans_manager,
        predictor.dataset_json,
        predictor.configuration_manager,
        num_threads_in_multithreaded=1,
    )
    batch = next(adapter)
    logits = predictor.predict_logits_from_preprocessed_data(batch["data"]).float()
    labels, probabilities = convert_predicted_logits_to_segmentation_with_correct_shape(
        logits.clone(),
        predictor.plans_manager,
        predictor.configuration_manager,
        predictor.label_manager,
        batch["data_properties"],
        return_probabilities=True,
    )
    return logits, labels.transpose(2, 1, 0), probabilities.transpose(0, 3, 2, 1)


def mousecord_predict(folder, image_xyz, *, mirroring: bool, backend: str):
    predictor = Predictor(
        read_model_folder(folder), InferenceConfig(device="cpu", mirroring=mirroring, backend=backend)
    )
    preprocessed = predictor.preprocess(image_xyz, SPACING_MM)
    logits = predictor.predict_logits(preprocessed.data)
    prediction = predictor.export(logits, preprocessed, probabilities=True)
    return logits, prediction.label_map, prediction.probabilities


def compare(folder, image_xyz, *, mirroring: bool) -> None:
    reference_logits, reference_labels, reference_probabilities = nnunet_predict(
        folder, image_xyz, mirroring=mirroring
    )
    backends = ["torch"] + (["openvino"] if openvino_available() else [])
    for backend in backends:
        logits, labels, probabilities = mousecord_predict(
            folder, image_xyz, mirroring=mirroring, backend=backend
        )
        assert logits.shape == reference_logits.shape
        relative = (logits - reference_logits).abs() / reference_logits.abs().max()
        agreement = float(np.mean(labels == reference_labels))
        print(
            f"{backend}: max relative logit difference {float(relative.max()):.3g}, "
            f"voxels above 1e-3 {float((relative > 1e-3).float().mean()):.2g}, "
            f"label agreement {agreement:.6f}"
        )
        if backend == "torch":
            assert float(relative.max()) <= 1e-3
        else:
            assert float((relative > 1e-3).float().mean()) <= 1e-3
        assert agreement >= 0.999
        probability_error = np.abs(probabilities - reference_probabilities)
        print(
            f"{backend}: max probability difference {probability_error.max():.3g}, "
            f"voxels above 1e-3 {np.mean(probability_error.max(axis=0) > 1e-3):.2g}"
        )
        if backend == "torch":
            assert probability_error.max() <= 1e-3
        else:
            assert np.mean(probability_error.max(axis=0) > 1e-3) <= 1e-3


def test_reference_architecture_new_plans_no_mirroring(tmp_path):
    pytest.importorskip("nnunetv2", reason="nnunetv2 is not installed (see .ci/run)")
    folder = make_nnunet_folder(tmp_path, patch_size_vox=(32, 48, 48))
    compare(folder, cord_like_image((72, 72, 64), zero_margin=3), mirroring=False)


@pytest.mark.parametrize(
    ("old_format", "folds", "shape_xyz"), [(True, (0, 1), (30, 28, 31)), (False, (0,), (30, 28, 40))]
)
def test_mirroring_old_and_new_plans(tmp_path, old_format, folds, shape_xyz):
    # few tiles: mirroring costs 8 forward passes per tile and fold
    pytest.importorskip("nnunetv2", reason="nnunetv2 is not installed (see .ci/run)")
    folder = make_nnunet_folder(
        tmp_path,
        patch_size_vox=(32, 32, 32),
        features_per_stage=(4, 8, 16, 32, 32, 32),
        old_format=old_format,
        folds=folds,
    )
    compare(folder, cord_like_image(shape_xyz, seed=1), mirroring=True)


def test_image_smaller_than_patch_is_padded_like_nnunet(tmp_path):
    pytest.importorskip("nnunetv2", reason="nnunetv2 is not installed (see .ci/run)")
    folder = make_nnunet_folder(
        tmp_path, patch_size_vox=(32, 48, 48), features_per_stage=(4, 8, 16, 32, 32, 32)
    )
    compare(folder, cord_like_image((41, 30, 21), seed=2), mirroring=False)


@pytest.mark.slow
def test_full_size_reference_volume(tmp_path):
    pytest.importorskip("nnunetv2", reason="nnunetv2 is not installed (see .ci/run)")
    folder = make_nnunet_folder(tmp_path, patch_size_vox=(256, 96, 96))
    compare(folder, cord_like_image((200, 200, 500), zero_margin=2), mirroring=False)
