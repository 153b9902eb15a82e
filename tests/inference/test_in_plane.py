"""In-plane (2D / 2.5D) bundles: slices are segmented alone, never resampled, in any input geometry."""

from __future__ import annotations

import dataclasses

import nibabel as nib
import numpy as np
import pytest
import torch
from scipy import ndimage

from mousecord.errors import ImageFormatError
from mousecord.inference import InferenceConfig, Predictor
from mousecord.inference.preprocessing import slab_channels
from mousecord.inference.sliding_window import compute_tile_starts
from mousecord.io import Volume
from mousecord.models import load_bundle, save_bundle
from mousecord.models.network import InPlaneNetwork, build_network
from mousecord.pipelines import segment
from tests.inference.helpers import tiny_bundle, tiny_in_plane_bundle

CPU = InferenceConfig(device="cpu", backend="torch", accumulate_dtype="float32")


def _volume(shape=(40, 36, 6), voxel_mm=(0.05, 0.05, 0.05), seed=0) -> Volume:
    data = np.random.default_rng(seed).random(shape).astype(np.float32) + 1.0  # nothing cropped
    return Volume(data, np.diag([*voxel_mm, 1.0]))


def test_one_voxel_patch_axis_visits_each_index_once() -> None:
    assert compute_tile_starts((5, 40), (1, 32), 0.5) == [[0, 1, 2, 3, 4], [0, 8]]


def test_slab_channels_replicate_the_ends() -> None:
    image = np.arange(4.0).reshape(1, 4, 1, 1)
    channels = slab_channels(image, 3)[:, :, 0, 0]
    assert channels.tolist() == [[0, 0, 1, 2], [0, 1, 2, 3], [1, 2, 3, 3]]


def test_in_plane_network_runs_each_slice_alone() -> None:
    bundle = tiny_in_plane_bundle()
    network = build_network(bundle.architecture, input_channels=1, num_classes=3)
    wrapped = InPlaneNetwork(network.eval())
    tiles = torch.randn(2, 1, 3, 32, 32)
    with torch.no_grad():
        out = wrapped(tiles)
        assert out.shape == (2, 3, 3, 32, 32)
        assert torch.allclose(out[1, :, 2], network(tiles[1:2, :, 2])[0], atol=1e-5)


def test_2d_model_segments_slices_independently_and_keeps_thick_slices() -> None:
    predictor = Predictor(tiny_in_plane_bundle(normalization="NoNormalization"), CPU)
    volume = _volume()
    labels = predictor.predict_volume(volume).label_map
    assert labels.shape == volume.shape and set(np.unique(labels)) <= {0, 1, 2}
    assert len(np.unique(labels)) > 1  # a random network still separates something
    for z in (0, 3, 5):
        alone = Volume(volume.data[:, :, z : z + 1], volume.affine)
        assert np.array_equal(predictor.predict_volume(alone).label_map[:, :, 0], labels[:, :, z])
    # 0.05 x 0.05 x 0.4 mm: the same slices, so the same labels; nothing is resampled across slices
    thick = Volume(volume.data, np.diag([0.05, 0.05, 0.4, 1.0]))
    preprocessed = predictor.preprocess(thick.data, thick.voxel_size_mm)
    assert preprocessed.data.shape[1] == volume.shape[2] and not preprocessed.resampled
    assert np.array_equal(predictor.predict_volume(thick).label_map, labels)


def test_2_5d_model_sees_each_slice_with_its_neighbours() -> None:
    predictor = Predictor(tiny_in_plane_bundle(slab_slices=3, normalization="NoNormalization"), CPU)
    volume = _volume(seed=1)
    labels = predictor.predict_volume(volume).label_map
    for z in (1, 4):
        slab = Volume(volume.data[:, :, z - 1 : z + 2], volume.affine)
        assert np.array_equal(predictor.predict_volume(slab).label_map[:, :, 1], labels[:, :, z])
    # the neighbours matter: shuffling them changes the centre slice's labels
    shuffled = volume.data.copy()
    shuffled[:, :, 3] = np.random.default_rng(9).random(shuffled.shape[:2]) + 1
    changed = predictor.predict_volume(Volume(shuffled, volume.affine)).label_map
    assert not np.array_equal(changed[:, :, 2], labels[:, :, 2])


def test_z_smoothing_averages_the_logits_along_the_slices_before_the_argmax() -> None:
    bundle = tiny_in_plane_bundle(normalization="NoNormalization")
    smoothed_bundle = dataclasses.replace(bundle, metadata={"inference": {"z_smoothing_mm": 0.1}})
    volume = _volume(seed=2)
    plain, smoothed = Predictor(bundle, CPU), Predictor(smoothed_bundle, CPU)
    preprocessed = plain.preprocess(volume.data, volume.voxel_size_mm)
    logits = plain.predict_logits(preprocessed.data, preprocessed.network_spacing_mm).numpy()
    sigma = 0.1 / volume.voxel_size_mm[2]  # 2 slices at 0.05 mm
    expected = ndimage.gaussian_filter1d(logits, sigma, axis=1, mode="nearest").argmax(0)
    labels = smoothed.predict_volume(volume).label_map
    assert np.array_equal(labels, np.transpose(expected, (2, 1, 0)).astype(np.uint8))
    assert not np.array_equal(labels, plain.predict_volume(volume).label_map)
    # one slice: nothing to smooth along
    alone = Volume(volume.data[:, :, 2:3], volume.affine)
    assert np.array_equal(smoothed.predict_volume(alone).label_map, plain.predict_volume(alone).label_map)


def test_in_plane_model_resamples_in_plane_only() -> None:
    predictor = Predictor(tiny_in_plane_bundle(), CPU)
    volume = _volume(shape=(30, 30, 4), voxel_mm=(0.1, 0.1, 0.3))
    preprocessed = predictor.preprocess(volume.data, volume.voxel_size_mm)
    assert preprocessed.data.shape[1:] == (4, 60, 60)
    assert preprocessed.network_spacing_mm == pytest.approx((0.3, 0.05, 0.05))
    assert predictor.predict_volume(volume).label_map.shape == volume.shape


def test_bundle_round_trip_keeps_slab_slices(tmp_path) -> None:
    bundle = tiny_in_plane_bundle(slab_slices=3)
    loaded = load_bundle(save_bundle(bundle, tmp_path / "model"))
    assert loaded.slab_slices == 3 and loaded.in_plane and loaded.network_channels == 3
    volume = _volume()
    expected = Predictor(bundle, CPU).predict_volume(volume).label_map
    assert np.array_equal(Predictor(loaded, CPU).predict_volume(volume).label_map, expected)


@pytest.mark.parametrize("two_dimensional_file", [True, False])
def test_segment_single_slice_file_keeps_its_geometry(tmp_path, two_dimensional_file: bool) -> None:
    model = save_bundle(tiny_in_plane_bundle(slab_slices=3), tmp_path / "model")
    affine = np.array([[0, -0.05, 0, 3.0], [0.05, 0, 0, -1.0], [0, 0, 0.4, 7.0], [0, 0, 0, 1]])
    data = np.random.default_rng(2).random((40, 36) if two_dimensional_file else (40, 36, 1)) * 100
    image = nib.Nifti1Image(data.astype(np.int16), affine)
    image.set_qform(affine, 1)
    path = tmp_path / "slice_T1w.nii.gz"
    nib.save(image, path)
    segment(path, tmp_path / "out" / "slice_seg.nii.gz", model=model, inference=CPU)
    written = nib.load(tmp_path / "out" / "slice_seg.nii.gz")
    assert written.shape == data.shape
    assert np.allclose(written.affine, affine)
    assert set(np.unique(np.asarray(written.dataobj))) <= {0, 1, 2}
    for mask in ("slice_seg_GM_seg.nii.gz", "slice_seg_WM_seg.nii.gz"):
        assert nib.load(tmp_path / "out" / mask).shape == data.shape


def test_3d_model_refuses_a_single_slice() -> None:
    predictor = Predictor(dataclasses.replace(tiny_bundle(spacing_mm=(0.05,) * 3)), CPU)
    with pytest.raises(ImageFormatError, match="one slice.*3D"):
        predictor.predict_volume(_volume(shape=(40, 36, 1)))


def test_a_cord_on_too_few_slices_is_dropped() -> None:
    from mousecord.inference.postprocessing import drop_short_cord

    labels = np.zeros((8, 6, 6), dtype=np.uint8)  # (z, y, x)
    labels[7, 2:4, 2:4] = 2  # a blob on the last slice only: no cord runs through one slice of eight
    assert not drop_short_cord(labels, min_slices=3, axis=0).any()
    labels[4:7, 2:4, 2:4] = 1
    assert np.array_equal(drop_short_cord(labels, min_slices=3, axis=0), labels)
    single = labels[7:8]
    assert np.array_equal(drop_short_cord(single, min_slices=3, axis=0), single)  # a 2D input keeps its cord
