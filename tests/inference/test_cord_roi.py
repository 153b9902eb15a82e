"""Cord ROI path: slab placement, the centreline/tube finder on synthetic cords, the two-stage prediction
with an analytic predictor, and the Predictor hook (bundle metadata, ``roi`` override)."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest
import torch

from mousecord.errors import ConfigError
from mousecord.inference import InferenceConfig, Predictor
from mousecord.inference.cord_roi import (
    CordRoiSettings,
    centreline_from_slabs,
    find_cord_roi,
    link_slab_candidates,
    predict_cord_logits,
    slab_starts,
    tube_tile_starts,
)
from mousecord.inference.model_settings import ModelInferenceSettings
from mousecord.inference.sliding_window import TileSettings
from tests.inference.helpers import tiny_bundle

SHAPE = (60, 48, 52)  # (z, y, x)


def synthetic_cord(shape=SHAPE, *, centre=lambda z: (24.0, 26.0), radius=5.0, z_range=None) -> np.ndarray:
    """(z, y, x) uint8 label map: a WM disc of ``radius`` around ``centre(z)`` with a GM core."""
    z_axis, y_axis, x_axis = np.meshgrid(*(np.arange(size) for size in shape), indexing="ij")
    centres = np.array([centre(z) for z in range(shape[0])])
    distance = np.hypot(y_axis - centres[z_axis, 0], x_axis - centres[z_axis, 1])
    labels = np.where(distance <= radius, 2, 0).astype(np.uint8)
    labels[distance <= radius / 2] = 1
    if z_range is not None:
        labels[: z_range[0]] = 0
        labels[z_range[1] :] = 0
    return labels


def slabs_of(labels: np.ndarray, depth: int = 8, spacing: float = 12.0) -> list[tuple[int, np.ndarray]]:
    return [(start, labels[start : start + depth]) for start in slab_starts(labels.shape[0], depth, spacing)]


def threshold_predictor(tiles: torch.Tensor) -> torch.Tensor:
    """Logits from intensity: about 1 is GM, about 2 WM, about 0 background (image = the label map)."""
    value = tiles[:, :1]
    return torch.cat([0.5 - value, 0.4 - (value - 1.0).abs(), 0.6 - (value - 2.0).abs()], dim=1) * 10


def test_slab_starts_cover_both_ends_evenly():
    assert slab_starts(100, 16, 30.0) == [0, 28, 56, 84]
    assert slab_starts(10, 16, 30.0) == [0]
    assert slab_starts(16, 16, 30.0) == [0]


def test_off_centre_cord_is_found_with_its_centre():
    labels = synthetic_cord(centre=lambda z: (12.0, 40.0))
    roi = centreline_from_slabs(slabs_of(labels), SHAPE, margin_vox=(3, 3))
    assert roi.found and (roi.z_start, roi.z_stop) == (0, SHAPE[0])
    np.testing.assert_allclose(roi.centre_vox, np.tile([12.0, 40.0], (SHAPE[0], 1)), atol=0.5)
    assert roi.mask(SHAPE)[labels > 0].all()


def test_curved_cord_lies_inside_the_tube():
    labels = synthetic_cord(centre=lambda z: (24 + 10 * np.sin(z / 15), 14 + 0.4 * z), radius=4)
    roi = centreline_from_slabs(slabs_of(labels, spacing=8.0), SHAPE, margin_vox=(3, 3))
    assert roi.mask(SHAPE)[labels > 0].all()
    assert roi.mask(SHAPE).mean() < 0.5  # a tube, not the whole field


def test_cut_ends_bound_the_tube_along_z():
    labels = synthetic_cord(z_range=(20, 45))
    slabs = slabs_of(labels, depth=8, spacing=6.0)
    roi = centreline_from_slabs(slabs, SHAPE, margin_vox=(2, 2))
    assert 12 <= roi.z_start <= 20 and 45 <= roi.z_stop <= 53
    assert roi.mask(SHAPE)[labels > 0].all()
    assert not roi.mask(SHAPE)[:10].any() and not roi.mask(SHAPE)[56:].any()


def test_no_cord_gives_an_empty_roi_and_no_tiles():
    roi = centreline_from_slabs(slabs_of(np.zeros(SHAPE, np.uint8)), SHAPE, margin_vox=(3, 3))
    assert not roi.found and not roi.mask(SHAPE).any()
    assert tube_tile_starts(roi, SHAPE, (16, 16, 16), 0.5) == []


def test_false_positives_far_away_and_attached_do_not_move_or_widen_the_tube():
    labels = synthetic_cord(centre=lambda z: (24.0, 26.0), radius=5)
    labels[:, 2:5, 2:5] = 2  # a small far false positive: not the largest component
    labels[:, 24, 31:50] = 2  # a thin false positive touching the cord
    roi = centreline_from_slabs(slabs_of(labels), SHAPE, margin_vox=(2, 2), max_half_extent_vox=(6, 6))
    np.testing.assert_allclose(roi.centre_vox[0], [24.0, 26.0], atol=1.0)
    np.testing.assert_allclose(roi.half_size_vox, [7.5, 8.0], atol=0.6)


def test_a_larger_false_positive_in_one_slab_does_not_pull_the_tube_away():
    labels = synthetic_cord(centre=lambda z: (24.0, 26.0), radius=5)
    labels[:8, 35:47, 2:14] = 2  # bigger than the cord, in the first slab only
    slabs = slabs_of(labels)
    assert (slabs[0][1][:, 35:47, 2:14] > 0).sum() > (slabs[0][1][:, 19:30, 21:32] > 0).sum()
    unlinked = centreline_from_slabs(slabs, SHAPE, margin_vox=(2, 2))
    assert (
        np.abs(unlinked.centre_vox[0] - [24.0, 26.0]).max() > 5
    )  # no continuity required: the big false positive wins
    roi = centreline_from_slabs(slabs, SHAPE, margin_vox=(2, 2), max_step_vox=4.0)
    np.testing.assert_allclose(roi.centre_vox, np.tile([24.0, 26.0], (SHAPE[0], 1)), atol=0.5)
    assert roi.slab_found.all()


def test_a_cord_bending_out_of_reach_keeps_the_tube_going_to_the_end():
    labels = synthetic_cord(centre=lambda z: (24.0, 12.0 + (20.0 if z >= 48 else 0.0)), radius=4)
    slabs = slabs_of(labels)
    roi = centreline_from_slabs(slabs, SHAPE, margin_vox=(3, 3), max_step_vox=4.0)
    assert not roi.slab_found[-1]  # the last slab's cord jumped too far to link
    assert roi.z_stop == SHAPE[0]  # but it holds something cord-like: the tube does not end before it


def test_linking_keeps_the_longest_continuous_chain_and_skips_slabs_out_of_reach():
    candidates = [
        [(9000, (40.0, 40.0), 0.9), (500, (10.0, 10.0), 0.9)],  # the largest component is a false positive
        [(600, (12.0, 11.0), 0.9)],
        [(2000, (13.0, 12.0), 0.9), (100, (40.0, 40.0), 0.9)],
        [(300, (45.0, 45.0), 0.9)],  # nothing near the cord here
        [(400, (15.0, 14.0), 0.9)],
    ]
    assert link_slab_candidates(candidates, max_step_vox=3.0) == [1, 0, 0, None, 0]
    assert link_slab_candidates([[], []], max_step_vox=3.0) == [None, None]


def test_a_string_of_small_components_beside_the_cord_does_not_outnumber_the_cord():
    # a damaged chunk end: no cord in the first slab, only a large false positive and debris beside the cord
    # position; the debris reaches one slab further than the cord, but is small wherever the cord is found
    candidates = [
        [(1167, (96.0, 90.0), 0.8), (95, (120.0, 80.0), 0.95)],
        [(1091, (78.0, 133.0), 0.8), (394, (117.0, 91.0), 0.95)],
        [(1125, (78.0, 132.0), 0.8), (208, (118.0, 90.0), 0.95)],
    ]
    assert link_slab_candidates(candidates, max_step_vox=16.0) == [None, 0, 0]


def test_one_slab_takes_the_surest_cord_like_component_of_at_least_a_quarter_of_the_largest():
    # a single slice: a vertebral body taken for cord, larger but less sure than the cord beside it
    vertebra, cord = (900, (20.0, 60.0), 0.62), (400, (60.0, 60.0), 0.91)
    assert link_slab_candidates([[vertebra, cord]], max_step_vox=16.0) == [1]
    assert link_slab_candidates([[(900, (20.0, 60.0), 0.95), cord]], max_step_vox=16.0) == [0]
    # a sure speck is no cord: below a quarter of the largest it does not count
    assert link_slab_candidates([[vertebra, (200, (60.0, 60.0), 0.99)]], max_step_vox=16.0) == [0]


def test_the_surer_of_two_parallel_chains_is_the_cord():
    # a vertebral body runs beside the cord through every slab, larger than it
    candidates = [[(900, (20.0, 60.0), 0.6), (500, (60.0, 60.0), 0.9)] for _ in range(4)]
    assert link_slab_candidates(candidates, max_step_vox=8.0) == [1, 1, 1, 1]
    labels = synthetic_cord(centre=lambda z: (30.0, 12.0), radius=6)
    labels[:, 2:14, 30:42] = 2  # a larger cord-like block all along the image
    probability = np.where(labels > 0, 0.9, 0.05)
    probability[:, 2:14, 30:42] = 0.6
    slabs = slabs_of(labels)
    by_size = centreline_from_slabs(slabs, SHAPE, margin_vox=(2, 2), max_step_vox=4.0)
    np.testing.assert_allclose(by_size.centre_vox[0], [7.5, 35.5], atol=0.5)  # without probabilities

    def by_confidence(given_slabs):
        probabilities = [probability[start : start + part.shape[0]] for start, part in given_slabs]
        return centreline_from_slabs(
            given_slabs, SHAPE, cord_probabilities=probabilities, margin_vox=(2, 2), max_step_vox=4.0
        )

    in_order = by_confidence(slabs)
    np.testing.assert_allclose(in_order.centre_vox, np.tile([30.0, 12.0], (SHAPE[0], 1)), atol=0.5)
    # slabs given out of order keep their own probabilities
    np.testing.assert_allclose(by_confidence(slabs[::-1]).centre_vox, in_order.centre_vox)


def test_stage_one_keeps_the_cord_of_a_single_slice_over_a_larger_less_sure_structure():
    labels = synthetic_cord((1, 48, 52), centre=lambda z: (30.0, 12.0), radius=6)
    image = labels.astype(np.float32)
    image[:, 2:14, 30:42] = 0.6  # a larger block the analytic network calls GM, less surely than the cord
    settings = CordRoiSettings(margin_mm=2.0, slab_spacing_mm=10.0, min_cord_voxels=5)
    roi = find_cord_roi(
        torch.from_numpy(image)[None],
        threshold_predictor,
        patch_size_vox=(1, 16, 16),
        spacing_mm=(1.0, 1.0, 1.0),
        settings=settings,
    )
    np.testing.assert_allclose(roi.centre_vox, [[30.0, 12.0]], atol=0.5)


@pytest.mark.parametrize("image_shape", [(60, 48, 52), (11, 9, 13)])
def test_two_stages_recover_an_analytic_segmentation(image_shape):
    labels = synthetic_cord(
        image_shape, centre=lambda z: (image_shape[1] * 0.4, image_shape[2] * 0.6), radius=3
    )
    labels[:, 1, 1] = 2  # a far false positive, outside the tube
    image = torch.from_numpy(labels.astype(np.float32))[None]
    settings = CordRoiSettings(margin_mm=2.0, slab_spacing_mm=10.0, min_cord_voxels=5)
    logits, roi = predict_cord_logits(
        image,
        threshold_predictor,
        TileSettings((16, 16, 16), accumulate_dtype=torch.float32),
        spacing_mm=(1.0, 1.0, 1.0),
        num_classes=3,
        settings=settings,
    )
    predicted = torch.argmax(logits, dim=0).numpy()
    assert logits.shape == (3, *image_shape) and roi.found
    inside = roi.mask(image_shape)
    np.testing.assert_array_equal(predicted[inside], labels[inside])
    assert not predicted[~inside].any()
    assert predicted[:, 1, 1].sum() == 0


def test_mirroring_averages_the_stage_two_tiles_over_flips():
    labels = synthetic_cord()
    image = torch.from_numpy(labels.astype(np.float32))[None]

    def skewed_predictor(tiles: torch.Tensor) -> torch.Tensor:
        """Threshold logits plus a GM ramp along x, which mirroring over x averages to its mean, 0.5."""
        logits = threshold_predictor(tiles)
        logits[:, 1] += torch.linspace(0, 1, tiles.shape[-1])
        return logits

    tiles = TileSettings((16, 16, 16), accumulate_dtype=torch.float32)
    options = dict(
        spacing_mm=(1.0, 1.0, 1.0),
        num_classes=3,
        settings=CordRoiSettings(margin_mm=2.0, slab_spacing_mm=10.0, min_cord_voxels=5),
    )
    plain, roi = predict_cord_logits(image, threshold_predictor, tiles, **options)
    skewed, _ = predict_cord_logits(image, skewed_predictor, tiles, **options)
    mirrored, mirrored_roi = predict_cord_logits(
        image, skewed_predictor, dataclasses.replace(tiles, mirror_axes=(2,)), **options
    )
    inside = torch.from_numpy(roi.mask(SHAPE))
    np.testing.assert_array_equal(mirrored_roi.mask(SHAPE), roi.mask(SHAPE))
    assert float((skewed - plain)[1, inside].std()) > 0.1  # the ramp shows without mirroring
    difference = (mirrored - plain)[:, inside]
    torch.testing.assert_close(difference[1], torch.full_like(difference[1], 0.5), atol=1e-5, rtol=0)
    assert float(difference[[0, 2]].abs().max()) < 1e-5


def test_slice_step_segments_every_kth_slice_and_interpolates_between():
    labels = synthetic_cord(centre=lambda z: (20.0 + 0.1 * z, 26.0))
    image = torch.from_numpy(labels.astype(np.float32))[None]
    tiles = TileSettings((1, 16, 16), accumulate_dtype=torch.float32)
    counted = []

    def counting_predictor(batch: torch.Tensor) -> torch.Tensor:
        counted.append(batch.shape[0])
        return threshold_predictor(batch)

    def run(step_mm, data=image):
        counted.clear()
        settings = CordRoiSettings(
            margin_mm=3.0, slab_spacing_mm=10.0, min_cord_voxels=5, slice_step_mm=step_mm
        )
        logits, roi = predict_cord_logits(
            data, counting_predictor, tiles, spacing_mm=(1.0, 1.0, 1.0), num_classes=3, settings=settings
        )
        return logits, roi, sum(counted)

    every, roi, every_tiles = run(None)
    stepped, stepped_roi, stepped_tiles = run(3.0)
    *_, stage_one = run(None, torch.zeros_like(image))  # no cord: stage 1's tiles alone
    assert 0 < stepped_tiles - stage_one < 0.5 * (every_tiles - stage_one)
    inside = torch.from_numpy(roi.mask(SHAPE))
    np.testing.assert_array_equal(stepped_roi.mask(SHAPE), roi.mask(SHAPE))
    # segmented rows match the every-slice logits; a slice between them is the linear blend of its rows
    rows = [*range(roi.z_start, roi.z_stop, 3), roi.z_stop - 1]  # and the tube's last slice
    for z in rows:
        torch.testing.assert_close(stepped[:, z][:, inside[z]], every[:, z][:, inside[z]])
    low, high = rows[2], rows[3]
    both = inside[low + 1] & inside[low] & inside[high]
    expected = every[:, low] + (every[:, high] - every[:, low]) / 3
    torch.testing.assert_close(stepped[:, low + 1][:, both], expected[:, both])
    agree = (torch.argmax(stepped, 0) == torch.argmax(every, 0))[inside].float().mean()
    assert agree > 0.97
    with pytest.raises(ConfigError, match="slice_step_mm"):
        CordRoiSettings(slice_step_mm=0.0)
    assert (
        CordRoiSettings(slice_step_mm=0.1).slice_step_vox(16, 0.05) == 1
    )  # a 3D tile: the tile step decides
    assert CordRoiSettings(slice_step_mm=0.1).slice_step_vox(1, 0.3) == 1  # thick slices: every slice


def test_no_cord_gives_background_and_says_so(caplog):
    """Logged for the record (info): the caller warns, naming the file (the pipeline), or searches on."""
    image = torch.zeros((1, 20, 20, 20))
    with caplog.at_level(logging.INFO, logger="mousecord.inference.cord_roi"):
        logits, roi = predict_cord_logits(
            image,
            threshold_predictor,
            TileSettings((8, 8, 8)),
            spacing_mm=(1.0, 1.0, 1.0),
            num_classes=3,
            settings=CordRoiSettings(slab_spacing_mm=5.0),
        )
    assert not roi.found and not torch.argmax(logits, dim=0).any()
    assert "no cord found" in caplog.text


def test_settings_from_metadata_reject_unknown_keys_versions_and_bad_values():
    parsed = ModelInferenceSettings.from_metadata({"roi": "cord", "margin_mm": 1.0, "min_cord_slices": 3})
    assert parsed.roi == "cord" and parsed.cord_roi.margin_mm == 1.0 and parsed.min_cord_slices == 3
    assert ModelInferenceSettings.from_metadata(parsed.to_metadata()) == parsed
    assert ModelInferenceSettings.from_metadata({}) == ModelInferenceSettings()
    unknown = r"^model m: unknown metadata\['inference'\] keys \['margin_nm'\]; known: \['keep"
    with pytest.raises(ConfigError, match=unknown):
        ModelInferenceSettings.from_metadata({"margin_nm": 1.0}, name="m")
    with pytest.raises(ConfigError, match="model m: metadata\\['inference'\\] has format version 2"):
        ModelInferenceSettings.from_metadata({"version": 2}, name="m")
    with pytest.raises(ConfigError, match="model m: roi must be one of"):
        ModelInferenceSettings.from_metadata({"roi": "tube"}, name="m")
    with pytest.raises(ConfigError, match="must be a mapping"):
        ModelInferenceSettings.from_metadata(["cord"], name="m")
    with pytest.raises(ConfigError, match="model m: mirroring must be true or false, got 'yes'"):
        ModelInferenceSettings.from_metadata({"mirroring": "yes"}, name="m")
    with pytest.raises(ConfigError, match="slab_spacing_mm"):
        CordRoiSettings(slab_spacing_mm=0)
    with pytest.raises(ConfigError, match="max_centre_step_mm"):
        CordRoiSettings(max_centre_step_mm=0)
    with pytest.raises(ConfigError, match="min_cord_voxels"):
        CordRoiSettings(min_cord_voxels=0)
    with pytest.raises(ConfigError, match="roi"):
        InferenceConfig(roi="tube")


def test_predictor_follows_the_bundle_and_the_override():
    bundle = tiny_bundle(patch_size_vox=(8, 16, 16))
    cord_bundle = dataclasses.replace(
        bundle, metadata={"inference": {"roi": "cord", "keep_largest_component": True}}
    )
    assert Predictor(bundle, InferenceConfig(device="cpu", backend="torch")).roi == "full"
    auto = Predictor(cord_bundle, InferenceConfig(device="cpu", backend="torch"))
    assert auto.roi == "cord" and auto.keep_largest_component
    forced = Predictor(
        cord_bundle, InferenceConfig(device="cpu", backend="torch", roi="full", keep_largest_component=False)
    )
    assert forced.roi == "full" and not forced.keep_largest_component
    assert not auto.mirroring and auto.tiles.mirror_axes == ()
    mirrored_bundle = dataclasses.replace(bundle, metadata={"inference": {"mirroring": True}})
    mirrored = Predictor(mirrored_bundle, InferenceConfig(device="cpu", backend="torch"))
    assert mirrored.mirroring and mirrored.tiles.mirror_axes == bundle.mirror_axes
    assert mirrored.resolved_settings()["mirroring_resolved"] is True
    plain = Predictor(mirrored_bundle, InferenceConfig(device="cpu", backend="torch", mirroring=False))
    assert plain.tiles.mirror_axes == ()
    image = np.random.default_rng(0).normal(size=(13, 11, 9)).astype(np.float32)
    prediction = auto.predict_array(image, (1.0, 1.0, 1.0))
    assert prediction.label_map.shape == image.shape and prediction.label_map.dtype == np.uint8
    assert prediction.roi is not None and prediction.roi.centre_vox.shape[1] == 2
    assert forced.predict_array(image, (1.0, 1.0, 1.0)).roi is None
