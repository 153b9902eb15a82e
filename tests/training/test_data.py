"""Training data are prepared by the Predictor's own preprocessing: the same voxel gets the same value."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from mousecord.inference import InferenceConfig, Predictor
from mousecord.io import load_nifti
from mousecord.labels import IGNORE_VALUE
from mousecord.training import load_training_dataset
from tests.inference.helpers import tiny_bundle, tiny_in_plane_bundle
from tests.training.synthetic import save, write_bids_dataset


def _zero_padded_dataset(root: Path) -> Path:
    """A one-subject dataset whose image has a zero border (as a chunk padded by a cropping tool)."""
    truth = write_bids_dataset(root, n_subjects=1, shape=(40, 40, 12), annotated_slices=3)
    image_path = next(iter(truth))
    image = load_nifti(image_path).volume.data
    padded = np.zeros((56, 56, 12), dtype=np.float32)
    padded[8:48, 8:48] = image
    save(padded, image_path)
    for mask in (root / "derivatives" / "manual_masks").rglob("*_mask.nii.gz"):
        data = load_nifti(mask).volume.data
        mask_padded = np.zeros((56, 56, 12), dtype=np.float32)
        mask_padded[8:48, 8:48] = data
        save(mask_padded, mask)
    return image_path


def test_training_case_values_equal_what_the_predictor_feeds_its_network(tmp_path: Path) -> None:
    image_path = _zero_padded_dataset(tmp_path / "data")
    case = load_training_dataset(tmp_path / "data").cases[0]
    volume = load_nifti(image_path).volume
    predictor = Predictor(tiny_bundle(spacing_mm=(0.05,) * 3), InferenceConfig(device="cpu", backend="torch"))
    network_input = predictor.preprocess(volume.data, volume.voxel_size_mm)
    # the whole-image z-score training once used gives other values wherever the image has a zero border
    assert case.image.shape == network_input.data.shape[1:] == (12, 40, 40)
    np.testing.assert_array_equal(case.image, network_input.data[0])
    # labels are cropped with the image: annotated slices keep their cord, the others are ignored
    assert case.label_map.shape == case.image.shape
    assert set(np.unique(case.label_map)) <= {0, 1, 2, IGNORE_VALUE}
    assert len(case.labelled_slice_indices) == 3


def test_fine_tuning_data_follow_the_models_input_spec(tmp_path: Path) -> None:
    """At a model's in-plane spacing (0.05 mm) a 0.1 mm dataset is resampled in-plane, never across slices."""
    truth = write_bids_dataset(tmp_path / "data", n_subjects=1, shape=(24, 24, 6), annotated_slices=2)
    image_path = next(iter(truth))
    for path in [image_path, *(tmp_path / "data" / "derivatives").rglob("*_mask.nii.gz")]:
        data = load_nifti(path).volume.data
        nib.save(nib.Nifti1Image(data, np.diag([0.1, 0.1, 0.3, 1.0])), path)
    spec = tiny_in_plane_bundle().input_spec
    case = load_training_dataset(tmp_path / "data", input_spec=spec).cases[0]
    assert case.image.shape == (6, 48, 48)
    assert case.spacing_mm == (0.3, 0.05, 0.05)
    assert case.label_map.shape == case.image.shape and len(case.labelled_slice_indices) == 2


def test_misnamed_masks_are_named_in_a_warning_and_the_error(tmp_path: Path, caplog) -> None:
    """A mask whose name matches no image leaves that image out of training: the user is told which file,
    and how masks are named; with no mask matched at all, the error says the expected names."""
    import pytest

    from mousecord.errors import DatasetError

    write_bids_dataset(tmp_path, n_subjects=2, shape=(40, 40, 10), annotated_slices=3)
    masks = sorted((tmp_path / "derivatives" / "manual_masks" / "sub-01").rglob("*_mask.nii.gz"))
    for mask in masks:  # sub-01's masks saved as _seg, as another tool names them
        mask.rename(mask.with_name(mask.name.replace("_mask", "_seg")))
    with caplog.at_level("WARNING", logger="mousecord.training.data"):
        dataset = load_training_dataset(tmp_path)
    assert len(dataset.cases) == 1 and "sub-02" in dataset.cases[0].name
    warning = next(record.getMessage() for record in caplog.records if "not used" in record.getMessage())
    assert "2 file(s)" in warning and "_label-GM_seg.nii.gz" in warning and "_label-GM_mask.nii.gz" in warning
    for mask in (tmp_path / "derivatives" / "manual_masks" / "sub-02").rglob("*_mask.nii.gz"):
        mask.rename(mask.with_name(mask.name.replace("_mask", "_seg")))
    expected = r"no image has GM and WM masks .*expected e\.g\. sub-01/anat/.*_mask"
    with pytest.raises(DatasetError, match=expected):
        load_training_dataset(tmp_path)
