"""Predictor: axes round trips, preprocessing, geometry on real headers, orientation invariance."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from scipy import ndimage

from mousecord.inference import InferenceConfig, Predictor
from mousecord.inference import preprocessing as prep
from mousecord.inference.postprocessing import (
    cord_box,
    fill_holes,
    keep_largest_component,
    remove_small_components,
    smooth_logits_along_slices,
)
from mousecord.inference.sliding_window import labels_from_logits
from mousecord.io import Volume, load_nifti
from tests.inference.helpers import tiny_bundle, tiny_in_plane_bundle


@pytest.mark.parametrize("transpose_forward", [(0, 1, 2), (2, 0, 1), (1, 2, 0)])
def test_network_axes_round_trip(transpose_forward):
    array = np.arange(2 * 9 * 7 * 11).reshape(2, 9, 7, 11)
    network, spacing = prep.to_network_axes(array, (0.1, 0.2, 0.3), transpose_forward)
    reversed_shape = (11, 7, 9)
    assert network.shape[1:] == tuple(reversed_shape[axis] for axis in transpose_forward)
    assert spacing == tuple((0.3, 0.2, 0.1)[axis] for axis in transpose_forward)
    np.testing.assert_array_equal(prep.from_network_axes(network, transpose_forward), array)


def test_network_axes_is_simpleitk_order():
    array = np.random.default_rng(0).random((9, 7, 11))
    network, _ = prep.to_network_axes(array, (1, 1, 1))
    assert network[3, 2, 1] == array[1, 2, 3]


def test_bounding_box_and_all_zero_image():
    image = np.zeros((1, 9, 7, 11))
    assert prep.nonzero_bounding_box(image) == (slice(0, 9), slice(0, 7), slice(0, 11))
    image[0, 2:5, 1, 3:9] = 1
    assert prep.nonzero_bounding_box(image) == (slice(2, 5), slice(1, 2), slice(3, 9))


def test_normalize_schemes():
    image = np.random.default_rng(1).normal(5, 3, (9, 7, 11)).astype(np.float32)
    out = prep.normalize(image)
    assert abs(out.mean()) < 1e-5 and abs(out.std() - 1) < 1e-4
    mask = np.zeros(image.shape, bool)
    mask[2:6] = True
    masked = prep.normalize(image, mask=mask)
    np.testing.assert_array_equal(masked[~mask], image[~mask])
    ct = prep.normalize(
        image,
        scheme="CTNormalization",
        intensity_properties={"percentile_00_5": 0, "percentile_99_5": 8, "mean": 4, "std": 2},
    )
    assert ct.min() >= -2 and ct.max() <= 2
    np.testing.assert_array_equal(image, np.asarray(image))  # input untouched


def test_resample_separate_z_for_anisotropic_spacing():
    assert prep.separate_z_axis((7.5, 0.5, 0.5), (1, 1, 1)) == 0
    assert prep.separate_z_axis((1, 1, 1), (1, 1, 1)) is None
    data = np.random.default_rng(2).random((1, 5, 8, 8)).astype(np.float32)
    out = prep.resample(data, (15, 4, 4), spacing_mm=(3.5, 0.5, 0.5), new_spacing_mm=(1, 1, 1), order=3)
    assert out.shape == (1, 15, 4, 4) and out.dtype == np.float32
    assert prep.resample(data, (5, 8, 8), spacing_mm=(1,) * 3, new_spacing_mm=(1,) * 3, order=3) is data


def test_postprocessing():
    label_map = np.zeros((12, 12, 12), np.uint8)
    label_map[1:6, 1:6, 1:6] = 2
    label_map[2:5, 2:5, 2:5] = 1
    label_map[3, 3, 3] = 0  # a hole
    label_map[9:11, 9:11, 9:11] = 1  # a small blob
    largest = keep_largest_component(label_map)
    assert largest[9:11, 9:11, 9:11].sum() == 0 and largest[1:6, 1:6, 1:6].any()
    assert fill_holes(label_map)[3, 3, 3] == 1
    small = remove_small_components(label_map, min_volume_mm3=10, voxel_size_mm=(1, 1, 1))
    assert small[9:11, 9:11, 9:11].sum() == 0 and small[1:6, 1:6, 1:6].any()


def test_keep_largest_component_matches_labelling_the_whole_volume():
    """Components are counted in the cord's bounding box: the result must be the whole-volume one, with
    components touching the volume's faces and an empty map left as it is."""
    rng = np.random.default_rng(4)
    label_map = (rng.random((20, 24, 18)) > 0.7).astype(np.uint8) * rng.integers(1, 3, (20, 24, 18)).astype(
        np.uint8
    )
    label_map[:, :, 0] = 2  # a large component on one face
    components, count = ndimage.label(label_map > 0, structure=np.ones((3, 3, 3)))
    expected = np.where(components == np.argmax(np.bincount(components.ravel())[1:]) + 1, label_map, 0)
    kept = keep_largest_component(label_map)
    assert count > 2 and kept.dtype == np.uint8 and np.array_equal(kept, expected)
    assert cord_box(label_map) == (slice(0, 20), slice(0, 24), slice(0, 18))
    blob = np.zeros((6, 6, 6), np.uint8)
    blob[2:4, 1, 3:5] = 1
    assert cord_box(blob) == (slice(2, 4), slice(1, 2), slice(3, 5))
    assert np.array_equal(keep_largest_component(blob), blob)
    assert not keep_largest_component(np.zeros((4, 4, 4), np.uint8)).any()


def test_keep_largest_component_keeps_the_surest_of_the_large_ones_given_the_cord_probability():
    label_map = np.zeros((1, 40, 40), np.uint8)
    label_map[0, 2:14, 2:14] = 2  # larger, a vertebral body the network is unsure of
    label_map[0, 25:33, 25:33] = 2  # the cord, 64 voxels: at least a quarter of the larger
    label_map[0, 36:39, 2:5] = 1  # a sure speck, too small to compete
    probability = np.full(label_map.shape, 0.1, np.float32)
    probability[0, 2:14, 2:14], probability[0, 25:33, 25:33], probability[0, 36:39, 2:5] = 0.6, 0.9, 0.99
    asked = []

    def cord_probability(box):
        asked.append(box)
        return probability[box]

    kept = keep_largest_component(label_map, cord_probability=cord_probability)
    assert kept[0, 25:33, 25:33].all() and kept.sum() == 2 * 64
    assert asked == [cord_box(label_map)]  # asked once, for the cord's bounding box only
    assert keep_largest_component(label_map)[0, 2:14, 2:14].all()  # without it: the largest
    asked.clear()
    alone = np.where(np.arange(40)[None, :, None] < 20, label_map, 0).astype(np.uint8)  # vertebra and speck
    assert keep_largest_component(alone, cord_probability=cord_probability)[0, 2:14, 2:14].all()
    assert asked == []  # no rival of the largest: the probabilities are not needed


def test_the_predictor_keeps_the_component_its_logits_are_surest_of():
    predictor = Predictor(
        tiny_bundle(), InferenceConfig(device="cpu", backend="torch", keep_largest_component=True)
    )
    logits = torch.zeros((3, 1, 40, 40))
    logits[2, 0, 2:14, 2:14] = 0.5  # a larger WM block, cord probability 0.62
    logits[2, 0, 25:33, 25:33] = 3.0  # the cord, 0.95
    whole = (slice(0, 1), slice(0, 40), slice(0, 40))
    preprocessed = prep.PreprocessedImage(
        np.zeros((1, 1, 40, 40), np.float32),
        (1, 40, 40),
        whole,
        (1, 40, 40),
        (1.0, 1.0, 1.0),
        False,
        (1.0,) * 3,
    )
    label_map = predictor.export(logits, preprocessed).label_map  # (x, y, z)
    assert label_map.shape == (40, 40, 1) and int((label_map == 2).sum()) == 64
    assert (label_map[25:33, 25:33, 0] == 2).all()


def test_smoothing_along_slices_inside_a_tube_ignores_what_lies_outside_it():
    rng = np.random.default_rng(5)
    logits = rng.normal(size=(3, 16, 5, 6)).astype(np.float32)
    plain = logits.copy()
    smooth_logits_along_slices(plain, 2.0)
    expected = np.stack(
        [ndimage.gaussian_filter1d(channel, 2.0, axis=0, mode="nearest") for channel in logits]
    )
    assert np.allclose(plain, expected)

    # a cord (class 1 ahead by 5) on slices 3-11 of a tube over part of the plane; the cord ROI path's
    # sentinel background logit everywhere else
    predicted = np.zeros((16, 5, 6), bool)
    predicted[3:12, 1:4, 2:5] = True
    tube = np.zeros((3, 16, 5, 6), np.float32)
    tube[0] = 1.0e4
    tube[:, predicted] = logits[:, predicted]
    tube[1, predicted] += 5.0
    untouched = tube.copy()
    smooth_logits_along_slices(tube, 2.0, predicted=predicted)
    assert np.array_equal(tube[:, ~predicted], untouched[:, ~predicted])
    assert (labels_from_logits(tube)[predicted] == 1).all()  # the sentinel no longer leaks into the cord
    column = untouched[1, 3:12, 2, 3]  # normalised convolution, by hand, at the tube's first slice
    weights = np.exp(-0.5 * (np.arange(9) / 2.0) ** 2)  # slices 3-11, all within scipy's 4-sigma kernel
    assert tube[1, 3, 2, 3] == pytest.approx(float(np.sum(weights * column) / np.sum(weights)), rel=1e-5)
    empty = logits.copy()
    smooth_logits_along_slices(empty, 2.0, predicted=np.zeros((16, 5, 6), bool))
    assert np.array_equal(empty, logits)


@pytest.fixture(scope="module")
def tiny_predictor():
    return Predictor(tiny_bundle(), InferenceConfig(device="cpu", backend="torch"))


def test_predict_array_smaller_than_patch_and_constant(tiny_predictor):
    image = np.random.default_rng(3).random((5, 7, 9)).astype(np.float32)
    prediction = tiny_predictor.predict_array(image, (1, 1, 1), probabilities=True)
    assert prediction.label_map.shape == (5, 7, 9) and prediction.label_map.dtype == np.uint8
    assert prediction.probabilities.shape == (3, 5, 7, 9)
    np.testing.assert_allclose(prediction.probabilities.sum(0), 1, atol=1e-5)
    constant = tiny_predictor.predict_array(np.full((5, 7, 9), 3.0, np.float32), (1, 1, 1))
    assert constant.label_map.shape == (5, 7, 9)


def test_crop_pastes_background_outside_the_box(tiny_predictor):
    image = np.zeros((20, 20, 20), np.float32)
    image[5:15, 6:14, 4:16] = np.random.default_rng(4).random((10, 8, 12)) + 1
    prediction = tiny_predictor.predict_array(image, (1, 1, 1), probabilities=True)
    assert prediction.label_map[:5].sum() == 0 and prediction.label_map[:, :, 16:].sum() == 0
    assert (prediction.probabilities[0, :5] == 1).all()


def test_reoriented_volume_gives_the_same_labels_mapped_back(tiny_predictor):
    rng = np.random.default_rng(5)
    data = rng.random((18, 14, 22)).astype(np.float32)
    affine = np.diag([1.0, 1.0, 1.0, 1])
    ras = tiny_predictor.predict_volume(Volume(data, affine)).label_map
    image = nib.Nifti1Image(data, affine)
    for codes in (("P", "S", "R"), ("L", "I", "A")):
        transform = nib.orientations.ornt_transform(
            nib.orientations.axcodes2ornt("RAS"), nib.orientations.axcodes2ornt(codes)
        )
        other = image.as_reoriented(transform)
        labels = tiny_predictor.predict_volume(Volume(np.asarray(other.dataobj), other.affine)).label_map
        back = nib.orientations.apply_orientation(
            labels,
            nib.orientations.ornt_transform(
                nib.orientations.axcodes2ornt(codes), nib.orientations.axcodes2ornt("RAS")
            ),
        )
        np.testing.assert_array_equal(back, ras)


@pytest.mark.filterwarnings("ignore::mousecord.errors.MousecordWarning")
def test_real_header_volumes_predict_on_their_grid(tiny_predictor, real_headers):
    for path in real_headers[:3]:
        image = load_nifti(path, dtype=np.float32)
        prediction = tiny_predictor.predict_volume(image.volume)
        assert prediction.label_map.shape == image.volume.shape


def test_predict_volume_takes_a_nibabel_image_as_its_volume_and_names_what_an_array_needs():
    """A notebook's nibabel image (3D, or a 2D slice, which comes back one slice deep) is segmented as the
    Volume of its data and affine; an array gets a TypeError that names predict_array."""
    predictor = Predictor(tiny_bundle(), InferenceConfig(device="cpu", backend="torch"))
    data = np.random.default_rng(0).random((20, 18, 6)).astype(np.float32)
    affine = np.diag([0.05, -0.05, 0.05, 1.0])
    expected = predictor.predict_volume(Volume(data, affine))
    from_image = predictor.predict_volume(nib.Nifti1Image(data, affine))
    np.testing.assert_array_equal(from_image.label_map, expected.label_map)
    one_volume = predictor.predict_volume(nib.Nifti1Image(data[..., None], affine))  # 4D, one volume
    np.testing.assert_array_equal(one_volume.label_map, expected.label_map)
    in_plane = Predictor(tiny_in_plane_bundle(), InferenceConfig(device="cpu", backend="torch"))
    one_slice = in_plane.predict_volume(nib.Nifti1Image(data[..., 2], affine))
    assert one_slice.label_map.shape == (20, 18, 1)
    with pytest.raises(TypeError, match=r"an array goes to predict_array\(array, voxel_size_mm\)"):
        predictor.predict_volume(data)
    with pytest.raises(TypeError, match=r"expected a nibabel image, got str; .*load_nifti\(path\).volume"):
        predictor.predict_volume("x.nii.gz")
    assert repr(expected).startswith("Prediction(label_map=array(20, 18, 6) with GM ")


@pytest.mark.parametrize("transpose_forward", [(0, 1, 2), (2, 0, 1), (1, 2, 0)])
def test_voxels_far_larger_in_plane_than_the_models_are_refused_whatever_the_axis_order(transpose_forward):
    """The limit reads the image's in-plane (x, y) voxels, wherever transpose_forward puts them; a thick
    slice axis alone, or one thick in-plane axis (a sagittal localiser), is no reason to refuse."""
    from mousecord.errors import ImageFormatError
    from mousecord.models.bundle import InputSpec

    spec = InputSpec("tiny", (0.05, 0.05, 0.05), transpose_forward=transpose_forward)
    image = np.random.default_rng(0).random((8, 8, 4)).astype(np.float32)
    with pytest.raises(
        ImageFormatError, match=r"in-plane voxels are 12.0x the model's spacing \(0.05 x 0.05"
    ):
        prep.preprocess_image(image, (0.6, 0.6, 0.05), spec, max_upsampling=10)
    for thick in ((0.05, 0.05, 2.0), (2.0, 0.05, 0.05)):
        prep.preprocess_image(image, thick, spec, max_upsampling=10)
    prep.preprocess_image(image, (0.6, 0.6, 0.05), spec, max_upsampling=None)
