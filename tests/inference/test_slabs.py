"""Slab-by-slab segmentation of an image that would not fit in memory (in-plane models)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from mousecord.errors import ImageFormatError
from mousecord.inference import InferenceConfig, Predictor
from mousecord.inference import slabs as slab_module
from mousecord.inference.memory import BASE_BYTES, BYTES_PER_NETWORK_VOXEL
from mousecord.inference.preprocessing import network_grid
from mousecord.inference.slabs import (
    context_slices,
    network_geometry,
    nonzero_crop_shape,
    plan_slabs,
)
from mousecord.phantom import PhantomConfig, generate_phantom
from tests.inference.helpers import tiny_bundle, tiny_in_plane_bundle

SETTINGS = {"z_smoothing_mm": 0.1, "keep_largest_component": True, "min_cord_slices": 3}


def _phantom_image(shape, voxel) -> np.ndarray:
    phantom = generate_phantom(
        PhantomConfig(shape_vox=shape, voxel_size_mm=voxel), rng=np.random.default_rng(3)
    )
    image = phantom.image.data.copy()
    image[:, :, :3] = 0  # an empty end: the slabs follow the whole image's crop, not their own
    return image


def _memory_for_slabs(predictor: Predictor, image: np.ndarray, voxel, slices: int) -> int:
    """Available memory at which ``slices`` slices per slab just fit (see Predictor._slab_depth)."""
    shape, spacing = network_geometry(predictor, image.shape, voxel)
    crop = nonzero_crop_shape(predictor, image, voxel)
    per_slice = math.prod(network_grid(crop, spacing, predictor.bundle.input_spec)[1][1:])
    resident = math.prod(shape) * (6 + 8 * predictor.bundle.num_classes)  # with probabilities
    context = context_slices(predictor, spacing[0])
    return BASE_BYTES + resident + BYTES_PER_NETWORK_VOXEL * per_slice * (slices + 2 * context)


@pytest.mark.parametrize(
    ("roi", "shape", "voxel"),
    [
        ("full", (84, 80, 30), (0.05, 0.05, 0.1)),  # at the model's in-plane spacing
        ("full", (42, 41, 30), (0.1, 0.1, 0.1)),  # resampled in-plane to 0.05 mm
        ("cord", (42, 41, 30), (0.1, 0.1, 0.1)),
    ],
)
def test_slabs_give_the_whole_image_label_map(monkeypatch, roi, shape, voxel):
    bundle = tiny_in_plane_bundle(slab_slices=3)
    bundle = dataclasses.replace(bundle, metadata={"inference": {**SETTINGS, "roi": roi}})
    predictor = Predictor(bundle, InferenceConfig(device="cpu", backend="torch", roi=roi))
    image = _phantom_image(shape, voxel)
    whole = predictor.predict_array(image, voxel, probabilities=True)
    assert (whole.label_map > 0).any()

    available = _memory_for_slabs(predictor, image, voxel, slices=2)
    monkeypatch.setattr("mousecord.inference.predictor.available_memory_bytes", lambda: available)
    plans = []
    original = slab_module.plan_slabs
    monkeypatch.setattr(slab_module, "plan_slabs", lambda *args: plans.append(original(*args)) or plans[-1])
    sliced = predictor.predict_array(image, voxel, probabilities=True)

    assert len(plans) == 1 and len(plans[0]) == 14  # the 27 slices of the crop, 2 per slab
    assert sliced.roi is None and sliced.label_map.shape == image.shape
    if roi == "full":  # every slab normalised and cropped as the whole image: the same network input
        np.testing.assert_array_equal(sliced.label_map, whole.label_map)
        # cubic resampling of a slab reproduces its slices up to rounding, which this random network's
        # steep logits (x20) amplify; without resampling the input is bit for bit the whole image's
        tolerance = 1e-6 if voxel[0] == 0.05 else 0.05
        np.testing.assert_allclose(sliced.probabilities, whole.probabilities, atol=tolerance)
    else:  # each slab finds the cord itself: its tube may differ by a tile at the slab ends
        agreement = np.mean(sliced.label_map == whole.label_map)
        assert agreement > 0.98


def test_plan_slabs_tile_the_owned_range_with_context_inside_the_image():
    for owned, depth, slab_depth, context in [
        (slice(3, 30), 30, 7, 2),
        (slice(0, 1), 1, 5, 3),
        (slice(2, 9), 12, 1, 0),
    ]:
        plan = plan_slabs(owned, depth, slab_depth, context)
        kept = [index for _, keep in plan for index in range(keep.start, keep.stop)]
        assert kept == list(range(owned.start, owned.stop))
        for read, keep in plan:
            assert keep.stop - keep.start <= slab_depth
            assert read.start == max(keep.start - context, 0) and read.stop == min(keep.stop + context, depth)


def test_a_3d_model_is_still_refused_when_the_image_does_not_fit(monkeypatch):
    predictor = Predictor(
        tiny_bundle(spacing_mm=(0.05, 0.05, 0.05)), InferenceConfig(device="cpu", backend="torch")
    )
    monkeypatch.setattr("mousecord.inference.predictor.available_memory_bytes", lambda: BASE_BYTES + 10**6)
    with pytest.raises(ImageFormatError, match="needs about .* GB of memory"):
        predictor.predict_array(np.ones((40, 40, 40), dtype=np.float32), (0.05, 0.05, 0.05))


def test_an_image_whose_slabs_cannot_fit_either_is_refused_with_the_estimate(monkeypatch):
    predictor = Predictor(tiny_in_plane_bundle(slab_slices=3), InferenceConfig(device="cpu", backend="torch"))
    monkeypatch.setattr("mousecord.inference.predictor.available_memory_bytes", lambda: BASE_BYTES + 10**5)
    with pytest.raises(ImageFormatError, match="needs about .* GB of memory") as error:
        predictor.predict_array(np.ones((60, 60, 40), dtype=np.float32), (0.05, 0.05, 0.05))
    assert "\n" not in str(error.value)


def test_a_wrong_header_voxel_size_is_refused_not_cut_into_slabs(monkeypatch):
    # x10 in-plane: 2.5 million network voxels, over a 1 million limit; slabs would each pass it
    predictor = Predictor(
        tiny_in_plane_bundle(slab_slices=3),
        InferenceConfig(device="cpu", backend="torch", max_network_voxels=10**6),
    )
    monkeypatch.setattr("mousecord.inference.predictor.available_memory_bytes", lambda: BASE_BYTES + 10**8)
    with pytest.raises(ImageFormatError, match="more than the limit of 1 million"):
        predictor.predict_array(np.ones((50, 50, 10), dtype=np.float32), (0.5, 0.5, 0.5))


def test_an_image_whose_crop_fits_is_segmented_whole(monkeypatch):
    predictor = Predictor(tiny_in_plane_bundle(slab_slices=3), InferenceConfig(device="cpu", backend="torch"))
    image = np.zeros((200, 200, 10), dtype=np.float32)
    image[90:110, 90:110] = 1.0 + np.arange(10)  # a 20 x 20 non-zero crop in a 200 x 200 field
    shape, spacing = network_geometry(predictor, image.shape, (0.05,) * 3)
    available = BASE_BYTES + BYTES_PER_NETWORK_VOXEL * 20 * 20 * 10 * 2  # the crop fits, the field does not
    assert available < BASE_BYTES + BYTES_PER_NETWORK_VOXEL * math.prod(shape)
    monkeypatch.setattr("mousecord.inference.predictor.available_memory_bytes", lambda: available)
    monkeypatch.setattr(
        "mousecord.inference.predictor.predict_in_slabs", lambda *args, **kwargs: pytest.fail("slabs used")
    )
    assert predictor.predict_array(image, (0.05,) * 3).label_map.shape == image.shape
