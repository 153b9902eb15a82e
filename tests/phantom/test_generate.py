from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from mousecord.errors import ConfigError
from mousecord.labels import Label
from mousecord.phantom import Phantom, PhantomConfig, generate_phantom
from mousecord.phantom.appearance import sample_appearance
from mousecord.phantom.atlas import REGIONS, load_atlas_sections, region_of

SMALL = PhantomConfig(shape_vox=(120, 120, 200))
TINY = PhantomConfig(shape_vox=(96, 96, 40))


@pytest.fixture(scope="module")
def phantoms() -> list[Phantom]:
    return [generate_phantom(SMALL, rng=np.random.default_rng(seed)) for seed in range(4)]


def _cord_axes_extent(phantom: Phantom, slice_index: int) -> tuple[float, float]:
    """Cord width and depth (mm) along the cord's own axes (u right, v dorsal) from the recorded rotation."""
    labels = phantom.label_map.data[:, :, slice_index]
    voxel = phantom.label_map.voxel_size_mm
    per_slice = phantom.parameters["per_slice"]
    x_index, y_index = np.nonzero(labels > 0)
    dx = (x_index - (labels.shape[0] - 1) / 2) * voxel[0] - per_slice["centre_x_mm"][slice_index]
    dy = (y_index - (labels.shape[1] - 1) / 2) * voxel[1] - per_slice["centre_y_mm"][slice_index]
    angle = np.deg2rad(per_slice["rotation_deg"][slice_index])
    u = np.cos(angle) * dx + np.sin(angle) * dy
    v = np.cos(angle) * dy - np.sin(angle) * dx
    return float(np.ptp(u) + voxel[0]), float(np.ptp(v) + voxel[1])


def _out_of_range_slices(phantom: Phantom, *, tolerance_mm: float, tolerance_fraction: float = 0.04) -> list:
    """Slices whose width, depth or GM fraction is outside the doc's range of the levels they blend."""
    levels = [level["name"] for level in phantom.parameters["anatomy"]["levels"]]
    coordinates = phantom.parameters["per_slice"]["level_coordinate"]
    labels = phantom.label_map.data
    n_slices = labels.shape[2]
    failures = []
    for slice_index in range(int(0.05 * n_slices), int(0.95 * n_slices)):
        width, depth = _cord_axes_extent(phantom, slice_index)
        cord = labels[:, :, slice_index] > 0
        fraction = float((labels[:, :, slice_index] == Label.GM).sum() / cord.sum())
        coordinate = coordinates[slice_index]
        regions = {region_of(levels[int(np.floor(coordinate))]), region_of(levels[int(np.ceil(coordinate))])}
        measured = {"width_mm": width, "depth_mm": depth, "gm_fraction": fraction}
        for key, value in measured.items():
            tolerance = tolerance_fraction if key == "gm_fraction" else tolerance_mm
            low = min(getattr(region, key)[0] for region in regions) - tolerance
            high = max(getattr(region, key)[1] for region in regions) + tolerance
            if not low <= value <= high:
                failures.append((slice_index, key, round(value, 3), low, high))
    return failures


def test_same_seed_gives_same_bytes_and_other_seeds_differ() -> None:
    first = generate_phantom(TINY, rng=np.random.default_rng(11))
    second = generate_phantom(TINY, rng=np.random.default_rng(11))
    other = generate_phantom(TINY, rng=np.random.default_rng(12))
    assert first.image.data.tobytes() == second.image.data.tobytes()
    assert first.label_map.data.tobytes() == second.label_map.data.tobytes()
    assert json.dumps(first.parameters) == json.dumps(second.parameters)
    assert first.image.data.tobytes() != other.image.data.tobytes()
    assert first.label_map.data.tobytes() != other.label_map.data.tobytes()


def test_outputs_are_canonical_volumes_with_json_parameters(phantoms: list[Phantom]) -> None:
    phantom = phantoms[0]
    assert phantom.image.shape == phantom.label_map.shape == SMALL.shape_vox
    assert phantom.image.data.dtype == np.float32
    assert phantom.label_map.data.dtype == np.uint8
    assert phantom.image.axcodes == ("R", "A", "S")
    np.testing.assert_allclose(phantom.image.voxel_size_mm, SMALL.voxel_size_mm)
    np.testing.assert_array_equal(phantom.image.affine, phantom.label_map.affine)
    parameters = json.loads(json.dumps(phantom.parameters))
    assert parameters["levels_covered"] and all(
        isinstance(name, str) for name in parameters["levels_covered"]
    )
    assert len(parameters["per_slice"]["cord_width_mm"]) == SMALL.shape_vox[2]
    assert np.isfinite(phantom.image.data).all() and phantom.image.data.min() >= 0


def test_labels_are_background_gm_wm_only_and_every_slice_has_cord(phantoms: list[Phantom]) -> None:
    for phantom in phantoms:
        labels = phantom.label_map.data
        assert set(np.unique(labels).tolist()) == {Label.BACKGROUND, Label.GM, Label.WM}
        assert (labels == Label.GM).any(axis=(0, 1)).all()
        assert (labels == Label.WM).any(axis=(0, 1)).all()


def test_gm_lies_inside_the_cord_touching_background_only_at_horn_tips(phantoms: list[Phantom]) -> None:
    cross = ndimage.generate_binary_structure(2, 1)[:, :, None]
    for phantom in phantoms:
        labels = phantom.label_map.data
        gm = labels == Label.GM
        contact = gm & ndimage.binary_dilation(labels == Label.BACKGROUND, cross)
        assert contact.sum() < 0.04 * gm.sum()
        for slice_index in range(labels.shape[2]):
            # GM is never outside the cord's filled outline, and reaches the surface in a few narrow tips only
            filled = ndimage.binary_fill_holes(labels[:, :, slice_index] > 0)
            assert not (gm[:, :, slice_index] & ~filled).any()
            tips, count = ndimage.label(contact[:, :, slice_index], np.ones((3, 3)))
            assert count <= 8, f"slice {slice_index}: GM reaches the surface in {count} places"
            if count:
                widest = np.bincount(tips.ravel())[1:].max()
                assert widest <= 14, (
                    f"slice {slice_index}: a GM contact {widest} voxels wide, wider than a horn tip"
                )


def test_cord_width_depth_and_gm_fraction_follow_the_doc_per_level(phantoms: list[Phantom]) -> None:
    covered = set()
    for phantom in phantoms:
        assert _out_of_range_slices(phantom, tolerance_mm=0.1) == []
        covered |= {region_of(name).name for name in phantom.parameters["levels_covered"]}
    assert len(covered) >= 3, covered  # the seeds reach several regions of the cord


def test_anatomy_keeps_its_physical_size_at_another_voxel_size() -> None:
    config = PhantomConfig(shape_vox=(60, 60, 100), voxel_size_mm=(0.1, 0.1, 0.1))
    phantom = generate_phantom(config, rng=np.random.default_rng(5))
    assert _out_of_range_slices(phantom, tolerance_mm=0.2, tolerance_fraction=0.08) == []
    assert phantom.label_map.shape == (60, 60, 100)
    assert len(phantom.parameters["levels_covered"]) >= 5  # 10 mm of cord spans several segments


def test_t1w_gm_is_brighter_than_wm_by_the_preset_ratio(phantoms: list[Phantom]) -> None:
    interior = np.ones((5, 5, 1), dtype=bool)
    for phantom in phantoms:
        image, labels = phantom.image.data, phantom.label_map.data
        gm = ndimage.binary_erosion(labels == Label.GM, interior)
        wm = ndimage.binary_erosion(labels == Label.WM, interior)
        ratio = image[gm].mean() / image[wm].mean()
        assert 1.07 <= ratio <= 1.43, ratio


def test_measured_snr_matches_the_drawn_one_within_the_requested_range() -> None:
    config = PhantomConfig(shape_vox=(200, 200, 40), snr_range=(12.0, 30.0))
    for seed in (1, 2):
        phantom = generate_phantom(config, rng=np.random.default_rng(seed))
        image, labels = phantom.image.data, phantom.label_map.data
        wm = ndimage.binary_erosion(labels == Label.WM, np.ones((3, 3, 3), dtype=bool))
        corner = image[:12, :12, :]  # embedding medium, about 0: Rayleigh-distributed magnitude
        sigma = np.sqrt(np.mean(corner.astype(np.float64) ** 2) / 2)
        measured = image[wm].mean() / sigma
        assert 12.0 * 0.9 <= measured <= 30.0 * 1.1
        assert measured == pytest.approx(phantom.parameters["snr"], rel=0.1)


def test_random_contrast_sometimes_makes_gm_darker_than_wm() -> None:
    means = [sample_appearance("random", rng=np.random.default_rng(seed))["means"] for seed in range(40)]
    ratios = [mean["gm"] / mean["wm"] for mean in means]
    assert min(ratios) < 0.9 and max(ratios) > 1.1
    measured = []
    for seed in range(12):
        config = PhantomConfig(shape_vox=(96, 96, 24), contrast="random")
        phantom = generate_phantom(config, rng=np.random.default_rng(seed))
        image, labels = phantom.image.data, phantom.label_map.data
        interior = np.ones((5, 5, 1), dtype=bool)
        gm = ndimage.binary_erosion(labels == Label.GM, interior)
        wm = ndimage.binary_erosion(labels == Label.WM, interior)
        measured.append(image[gm].mean() / image[wm].mean())
    assert min(measured) < 0.95 and max(measured) > 1.05


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"shape_vox": (10, 10, 10)}, "field of view"),
        ({"shape_vox": (200, 0, 500)}, "positive integers"),
        ({"shape_vox": (200, 200)}, "3 numbers"),
        ({"voxel_size_mm": (-0.05, 0.05, 0.05)}, "positive"),
        ({"voxel_size_mm": (0.0, 0.05, 0.05)}, "positive"),
        ({"contrast": "t2w"}, "unknown contrast 't2w'"),
        ({"snr_range": (30.0, 10.0)}, "snr_range"),
    ],
)
def test_bad_configuration_raises_config_error(changes: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        PhantomConfig(**changes)


def test_region_table_covers_every_level() -> None:
    names = [name for region in REGIONS for name in region.levels]
    assert names[0] == "C1" and names[-1] == "S4" and len(names) == len(set(names)) == 31


def test_cached_atlas_sections_are_read_only():
    section = load_atlas_sections()[5]
    for array in (section.cord_sdf_px, section.gm_sdf_px, section.gm_skeleton_px, section.centre_px):
        with pytest.raises(ValueError, match="read-only"):
            array[(0,) * array.ndim] = 1.0
