"""read_model_folder: both plans formats, folds, checkpoints, unsafe and corrupt checkpoints."""

from __future__ import annotations

import pickle

import pytest
import torch

from mousecord.errors import ModelFolderError
from mousecord.models.network import build_network, load_weights
from mousecord.models.nnunet import read_model_folder
from tests.models.nnunet_fixtures import make_nnunet_folder

SMALL = (4, 8, 16, 32, 32, 32)


@pytest.mark.parametrize("old_format", [False, True])
def test_reads_new_and_old_plans_identically(tmp_path, old_format):
    folder = make_nnunet_folder(tmp_path, features_per_stage=SMALL, old_format=old_format)
    bundle = read_model_folder(folder)
    assert bundle.patch_size_vox == (32, 48, 48)
    assert bundle.spacing_mm == pytest.approx((0.05, 0.05, 0.05))
    assert bundle.labels == {"background": 0, "GM": 1, "WM": 2}
    assert bundle.mirror_axes == (0, 1, 2) and bundle.metadata["configuration"] == "3d_fullres"
    assert bundle.architecture["arch_kwargs"]["features_per_stage"] == list(SMALL)
    network = build_network(bundle.architecture, input_channels=1, num_classes=3)
    load_weights(network, bundle.fold_weights[0])


def test_parent_folder_folds_and_checkpoint_choice(tmp_path):
    make_nnunet_folder(tmp_path, features_per_stage=SMALL, folds=(0, 4))
    make_nnunet_folder(
        tmp_path, features_per_stage=SMALL, folds=(4,), checkpoint_name="checkpoint_best.pth", seed=9
    )
    assert len(read_model_folder(tmp_path).fold_weights) == 2  # the SCT layout: parent of nnUNetTrainer*
    best = read_model_folder(tmp_path, folds=(4,), checkpoint="checkpoint_best.pth")
    final = read_model_folder(tmp_path, folds=(4,))
    assert best.metadata["checkpoints"] == ["fold_4/checkpoint_best.pth"]
    assert final.metadata["checkpoints"] == ["fold_4/checkpoint_final.pth"]
    with pytest.raises(ModelFolderError, match="fold_2"):
        read_model_folder(tmp_path, folds=(2,))


def test_missing_folder_and_files(tmp_path):
    with pytest.raises(ModelFolderError, match="not found"):
        read_model_folder(tmp_path / "nope")
    with pytest.raises(ModelFolderError, match="not an nnU-Net results folder"):
        read_model_folder(tmp_path)


class _Exploit:
    def __reduce__(self):
        return (print, ("pwned",))


def test_malicious_checkpoint_is_refused(tmp_path):
    folder = make_nnunet_folder(tmp_path, features_per_stage=SMALL)
    checkpoint = folder / "fold_0" / "checkpoint_final.pth"
    torch.save({"network_weights": {}, "payload": _Exploit()}, checkpoint)
    with pytest.raises(ModelFolderError) as error:
        read_model_folder(folder)
    assert "checkpoint_final.pth" in str(error.value) and "\n" not in str(error.value)


def test_corrupt_checkpoint_is_refused(tmp_path):
    folder = make_nnunet_folder(tmp_path, features_per_stage=SMALL)
    checkpoint = folder / "fold_0" / "checkpoint_final.pth"
    checkpoint.write_bytes(checkpoint.read_bytes()[:5000])
    with pytest.raises(ModelFolderError, match="checkpoint_final.pth"):
        read_model_folder(folder)
    checkpoint.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(ModelFolderError, match="checkpoint_final.pth"):
        read_model_folder(folder)
