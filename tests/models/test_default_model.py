"""The model shipped in ``mousecord/models/default/``: it loads offline, segments fresh phantoms of either
polarity (GM brighter or darker than WM) and a single 2D slice far better than an untrained network of the
same shape, its cord ROI path loses almost nothing against the dense path, an image without a cord gets the
documented warning and exit status, and the README quick start (``mousecord demo``) runs in-process.

These tests require the shipped bundle: a checkout without it is broken (``python
tools/train_default_model.py --work WORK --install`` rebuilds it).
"""

from __future__ import annotations

import dataclasses
import json
import socket

import numpy as np
import pytest
import torch

from mousecord.analysis.metrics import dice
from mousecord.cli.main import main
from mousecord.inference import InferenceConfig, Predictor
from mousecord.labels import Label
from mousecord.models import build_network
from mousecord.models.registry import DEFAULT_MODEL_NAME, SHIPPED_MODELS_DIR, resolve_model
from mousecord.phantom import PhantomConfig, generate_phantom
from tests.conftest import REAL_HEADERS

pytestmark = pytest.mark.filterwarnings("ignore::mousecord.errors.MousecordWarning")

PHANTOM_SEED = 11  # below 1000: never a training seed
#: Measured with the shipped model and an untrained one on this phantom (see the module docstring).
MIN_GM_DICE = 0.6
MIN_WM_DICE = 0.6
MAX_UNTRAINED_GM_DICE = 0.3
MAX_ROI_DICE_LOSS = 0.02
#: A mouse cord's width, the scale SCT's human scans are given (as in benchmarks/real_scans.py).
MOUSE_CORD_WIDTH_MM = 2.5


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """Any network access fails: the default model must come from the package alone."""

    def refuse(*args, **kwargs):
        raise OSError("network access attempted in an offline test")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(scope="module")
def phantom():
    config = PhantomConfig(shape_vox=(120, 120, 48))
    return generate_phantom(config, rng=np.random.default_rng(PHANTOM_SEED))


@pytest.fixture(scope="module")
def long_phantom():
    """10 mm of cord: enough stage-1 slabs along the cord and across it for the image to decide its axis."""
    return generate_phantom(PhantomConfig(shape_vox=(120, 120, 200)), rng=np.random.default_rng(PHANTOM_SEED))


@pytest.fixture(scope="module")
def dark_phantom():
    config = PhantomConfig(shape_vox=(120, 120, 48), contrast="gm-dark")
    return generate_phantom(config, rng=np.random.default_rng(PHANTOM_SEED + 1))


@pytest.fixture(scope="module")
def bundle():
    return resolve_model(None)


def segment_phantom(bundle, phantom, **config) -> np.ndarray:
    predictor = Predictor(bundle, InferenceConfig(device="cpu", backend="torch", threads=2, **config))
    return predictor.predict_array(phantom.image.data, phantom.image.voxel_size_mm).label_map


def gm_wm_dice(phantom, label_map) -> tuple[float, float]:
    truth = phantom.label_map.data
    return tuple(dice(truth == label, label_map == label) for label in (Label.GM, Label.WM))


@pytest.fixture(scope="module")
def cord_prediction(bundle, phantom):
    return segment_phantom(bundle, phantom)


def test_default_model_is_shipped_and_resolves_without_a_name(bundle):
    assert bundle.source == SHIPPED_MODELS_DIR / DEFAULT_MODEL_NAME
    assert bundle.in_plane and bundle.slab_slices == 3
    assert bundle.metadata["inference"]["roi"] == "cord"
    assert bundle.metadata["weights_sha256"]
    assert "## Limits" in bundle.model_card and "Training data" in bundle.model_card


def test_a_predictor_is_made_from_a_model_name_as_segment_takes_it(bundle):
    from mousecord.errors import ModelFolderError

    predictor = Predictor(DEFAULT_MODEL_NAME, InferenceConfig(device="cpu", backend="torch"))
    assert predictor.bundle.source == bundle.source and predictor.bundle.in_plane
    with pytest.raises(ModelFolderError, match="no-such-model: unknown model"):
        Predictor("no-such-model")


def test_default_model_segments_a_fresh_phantom(phantom, cord_prediction):
    gm, wm = gm_wm_dice(phantom, cord_prediction)
    assert gm >= MIN_GM_DICE and wm >= MIN_WM_DICE, (gm, wm)


def test_the_int8_networks_fit_the_package_limit_and_segment_as_well(bundle, phantom, cord_prediction):
    from mousecord.inference.backends import openvino_available

    size = sum(path.stat().st_size for path in bundle.source.rglob("*") if path.is_file())
    assert size <= 25e6, size
    assert bundle.int8_matches_weights
    if not openvino_available():
        pytest.skip("OpenVINO is not installed")
    predictor = Predictor(bundle, InferenceConfig(device="cpu", backend="openvino", threads=2))
    assert predictor.precision == "int8"
    int8_labels = predictor.predict_array(phantom.image.data, phantom.image.voxel_size_mm).label_map
    gm, wm = gm_wm_dice(phantom, int8_labels)
    assert gm >= MIN_GM_DICE and wm >= MIN_WM_DICE, (gm, wm)
    # quantisation moves boundaries by a voxel here and there, not the segmentation
    assert dice(int8_labels > 0, cord_prediction > 0) > 0.97


def test_default_model_segments_gm_darker_than_wm(bundle, dark_phantom):
    gm, wm = gm_wm_dice(dark_phantom, segment_phantom(bundle, dark_phantom))
    assert gm >= MIN_GM_DICE and wm >= MIN_WM_DICE, (gm, wm)


def test_default_model_segments_a_single_2d_slice(bundle, phantom, tmp_path):
    import nibabel as nib

    from mousecord.pipelines import segment

    z = phantom.image.shape[2] // 2
    path = tmp_path / "slice_T1w.nii.gz"
    nib.save(nib.Nifti1Image(phantom.image.data[:, :, z], phantom.image.affine), path)
    segment(
        path,
        tmp_path / "slice_seg.nii.gz",
        inference=InferenceConfig(device="cpu", backend="torch", threads=2),
    )
    labels = np.asarray(nib.load(tmp_path / "slice_seg.nii.gz").dataobj)
    assert labels.shape == phantom.image.shape[:2]
    truth = phantom.label_map.data[:, :, z]
    gm, wm = (dice(truth == label, labels == label) for label in (Label.GM, Label.WM))
    assert gm >= MIN_GM_DICE and wm >= MIN_WM_DICE, (gm, wm)


def header_with_axes(voxel_size_mm, world_axes) -> np.ndarray:
    """An affine whose array axes i, j, k run along the world axes ``world_axes`` (0 R, 1 A, 2 S)."""
    affine = np.eye(4)
    affine[:3, :3] = 0
    for array_axis, (world_axis, size) in enumerate(zip(world_axes, voxel_size_mm, strict=True)):
        affine[world_axis, array_axis] = size
    return affine


def segment_file(path, output, **options) -> tuple[np.ndarray, dict]:
    """Labels and sidecar of ``path`` segmented by the default model through the pipeline."""
    import nibabel as nib

    from mousecord.pipelines import SegmentOptions, segment

    inference = InferenceConfig(device="cpu", backend="torch", threads=2)
    segment(path, output, options=SegmentOptions(**options), inference=inference)
    labels = np.asarray(nib.load(output).dataobj)
    return labels, json.loads(output.with_suffix("").with_suffix(".json").read_text())


def test_a_single_slice_whose_header_calls_it_coronal_is_segmented_as_the_cross_section_it_is(
    bundle, phantom, tmp_path
):
    """A one-slice file whose header says its plane holds the superior-inferior axis (ex vivo headers name
    axes after the magnet): segmented across its plane all the same, with a warning naming the file in the
    log and the sidecar; following the header finds no cord."""
    import nibabel as nib

    truth = phantom.label_map.data[:, :, 24:25]
    path = tmp_path / "slice_T1w.nii.gz"
    nib.save(nib.Nifti1Image(phantom.image.data[:, :, 24:25], header_with_axes((0.05,) * 3, (0, 2, 1))), path)
    labels, sidecar = segment_file(path, tmp_path / "auto" / "slice_seg.nii.gz")
    gm, wm = (dice(truth == label, labels == label) for label in (Label.GM, Label.WM))
    assert gm >= MIN_GM_DICE and wm >= MIN_WM_DICE, (gm, wm)
    assert sidecar["cord_axis"] == 2 and sidecar["cord_found"]
    assert any(str(path) in warning and "a single slice" in warning for warning in sidecar["warnings"])
    assert sidecar["model"]["installed_name"] == "default"  # no model given
    labels, sidecar = segment_file(path, tmp_path / "header" / "slice_seg.nii.gz", cord_axis="header")
    assert sidecar["cord_axis"] == 1 and not sidecar["cord_found"]


def test_thick_slices_the_header_calls_coronal_are_segmented_across_the_axis_the_cord_runs_along(
    bundle, long_phantom, tmp_path
):
    """Thick slices along an axis the header does not call superior-inferior: the network finds one
    continuous cord across the thick axis only, so that axis wins, with a warning naming the file; the
    header is still followed where asked."""
    import nibabel as nib

    truth = long_phantom.label_map.data[:, :, ::6]
    path = tmp_path / "thick_T1w.nii.gz"
    affine = header_with_axes((0.05, 0.05, 0.3), (0, 2, 1))
    nib.save(nib.Nifti1Image(long_phantom.image.data[:, :, ::6], affine), path)
    labels, sidecar = segment_file(path, tmp_path / "auto" / "thick_seg.nii.gz")
    gm, wm = (dice(truth == label, labels == label) for label in (Label.GM, Label.WM))
    assert gm >= MIN_GM_DICE and wm >= MIN_WM_DICE, (gm, wm)
    assert sidecar["cord_axis"] == 2
    (overruled,) = [warning for warning in sidecar["warnings"] if "segmented across axis 2" in warning]
    assert str(path) in overruled and "thicker" in overruled and "--cord-axis header" in overruled
    _, sidecar = segment_file(path, tmp_path / "header" / "thick_seg.nii.gz", cord_axis="header")
    assert sidecar["cord_axis"] == 1 and not sidecar["warnings"]


def test_a_chunk_as_long_as_wide_whose_header_misnames_its_axis_is_segmented_along_the_cord(
    bundle, long_phantom, tmp_path
):
    """6 mm along every axis, the cord along i, the header calling k superior-inferior: the grid hints at
    nothing, but across k the network finds the cord in few slabs, across i in all: segmented across i,
    with a warning naming the file (before: a short false cord across k, exit 0, no warning)."""
    import nibabel as nib

    cube = (slice(None), slice(None), slice(40, 160))
    image, truth = (
        np.transpose(data[cube], (2, 0, 1)) for data in (long_phantom.image.data, long_phantom.label_map.data)
    )
    path = tmp_path / "chunk_T1w.nii.gz"
    nib.save(nib.Nifti1Image(np.ascontiguousarray(image), np.diag([0.05, 0.05, 0.05, 1.0])), path)
    labels, sidecar = segment_file(path, tmp_path / "auto" / "chunk_seg.nii.gz")
    gm, wm = (dice(truth == label, labels == label) for label in (Label.GM, Label.WM))
    assert gm >= MIN_GM_DICE and wm >= MIN_WM_DICE, (gm, wm)
    assert sidecar["cord_axis"] == 0
    (overruled,) = [warning for warning in sidecar["warnings"] if "segmented across axis 0" in warning]
    assert str(path) in overruled and "--cord-axis header" in overruled
    assert not any("empty" in warning for warning in sidecar["warnings"])  # of the first pass, across k


def test_a_real_scan_in_thick_sagittal_slices_keeps_its_headers_axis(tmp_path):
    """SCT's in vivo T1w neck scan at mouse scale, every fifth sagittal slice: the grid (slices 5x thicker
    than wide) points across the cord, and the network finds cord-like sections in most of those slices
    too, but not clearly more often than across the header's axis: the header decides, and a warning names
    the axis to give."""
    import nibabel as nib

    scan = nib.as_closest_canonical(nib.load(REAL_HEADERS / "t1w.nii.gz"))
    cord = np.asarray(nib.as_closest_canonical(nib.load(REAL_HEADERS / "semiauto/t1w_cord.nii.gz")).dataobj)
    with_cord = (cord > 0.5)[:, :, (cord > 0.5).any(axis=(0, 1))]
    extents = np.maximum(with_cord.any(axis=1).sum(axis=0), with_cord.any(axis=0).sum(axis=0))
    width_mm = np.median(extents)  # of the cord's sections, in its 1 mm voxels
    voxel = np.asarray(scan.header.get_zooms()[:3]) * MOUSE_CORD_WIDTH_MM / width_mm * np.array([5, 1, 1])
    path = tmp_path / "sagittal_T1w.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(scan.dataobj)[::5], np.diag([*voxel, 1.0])), path)
    _, sidecar = segment_file(path, tmp_path / "auto" / "sagittal_seg.nii.gz")
    assert sidecar["cord_axis"] == 2
    (hint,) = [warning for warning in sidecar["warnings"] if "--cord-axis 0" in warning]
    assert str(path) in hint and "as the header says" in hint


def test_cord_coverage_is_high_along_the_cord_and_low_across_it(bundle, long_phantom):
    from mousecord.errors import ConfigError
    from mousecord.io.volume import Volume

    volume = Volume(long_phantom.image.data, np.diag([0.05, 0.05, 0.05, 1.0]))
    predictor = Predictor(bundle, InferenceConfig(device="cpu", backend="torch", threads=2))
    along, across = predictor.cord_coverage(volume, 2), predictor.cord_coverage(volume, 0)
    assert along.slabs >= 20 and along.share >= 0.9, along  # a slab every 0.5 mm or less of 10 mm
    assert across.slabs >= 12 and across.share <= 0.5, across
    dense = Predictor(bundle, InferenceConfig(device="cpu", backend="torch", threads=2, roi="full"))
    with pytest.raises(ConfigError, match="no cord search"):
        dense.cord_coverage(volume, 2)


def test_an_untrained_network_cannot_pass_the_same_bar(bundle, phantom):
    torch.manual_seed(0)
    network = build_network(bundle.architecture, input_channels=bundle.network_channels, num_classes=3)
    untrained = dataclasses.replace(bundle, fold_weights=(network.state_dict(),))
    gm, _ = gm_wm_dice(phantom, segment_phantom(untrained, phantom, roi="full"))
    assert gm < MAX_UNTRAINED_GM_DICE < MIN_GM_DICE


def test_an_image_without_cord_gets_the_no_cord_exit_status(tmp_path, capsys):
    """Embedding medium alone (Rician noise, no tissue): the documented warning and exit status 3."""
    import nibabel as nib

    from mousecord.pipelines import EXIT_NO_CORD

    rng = np.random.default_rng(3)
    medium = np.hypot(0.05 + rng.normal(0, 0.02, (120, 120, 8)), rng.normal(0, 0.02, (120, 120, 8)))
    path = tmp_path / "medium_T1w.nii.gz"
    nib.save(nib.Nifti1Image((medium * 1000).astype(np.float32), np.diag([0.05, 0.05, 0.05, 1.0])), path)
    assert main(["segment", "-i", str(path), "--device", "cpu", "--quiet"]) == EXIT_NO_CORD
    assert "no cord found" in capsys.readouterr().err


def test_a_slice_with_a_voxel_size_20x_too_large_is_refused_until_given_its_size(tmp_path, capsys, phantom):
    """A 0.05 mm slice saved with nibabel's default 1 mm affine is refused before any work, the message
    giving the size a factor of 20 would mean; given its in-plane size (``--voxel-size 0.05 0.05``), the
    same file is segmented."""
    import nibabel as nib

    middle = phantom.image.data.shape[2] // 2
    path = tmp_path / "slice_1mm.nii.gz"
    nib.save(nib.Nifti1Image(phantom.image.data[:, :, middle].astype(np.float32), np.eye(4)), path)
    assert main(["segment", "-i", str(path), "--device", "cpu", "--quiet"]) == 1
    error = capsys.readouterr().err.splitlines()[-1]
    assert "in-plane voxels are 20.0x the model's spacing" in error and "--voxel-size 0.05 0.05" in error
    assert sorted(item.name for item in tmp_path.iterdir()) == ["slice_1mm.nii.gz"]
    # the fix a user of a 2D file gives: the in-plane size alone
    command = ["segment", "-i", str(path), "--voxel-size", "0.05", "0.05", "--quiet"]
    assert main([*command, "--device", "cpu"]) == 0
    labels = np.asarray(nib.load(tmp_path / "slice_1mm_seg.nii.gz").dataobj)
    truth = phantom.label_map.data[:, :, middle]
    assert dice(truth == Label.GM, labels == Label.GM) >= MIN_GM_DICE
    assert json.loads((tmp_path / "slice_1mm_seg.json").read_text())["cord_found"] is True


def test_cord_roi_path_loses_almost_nothing_against_the_dense_path(bundle, phantom, cord_prediction):
    dense = segment_phantom(bundle, phantom, roi="full")  # keep-largest applies to both (bundle metadata)
    for roi_dice, dense_dice in zip(
        gm_wm_dice(phantom, cord_prediction), gm_wm_dice(phantom, dense), strict=True
    ):
        assert roi_dice >= dense_dice - MAX_ROI_DICE_LOSS, (roi_dice, dense_dice)


def test_quick_start_demo_runs_in_process(tmp_path, capsys):
    # The README's `mousecord demo -o example/` on a shorter phantom, to keep the test fast.
    assert main(["demo", "-o", str(tmp_path), "--shape", "96", "96", "64", "--threads", "2", "--quiet"]) == 0
    for name in (
        "example_T1w.nii.gz",
        "example_T1w_truth.nii.gz",
        "example_T1w_GM_seg.nii.gz",
        "example_T1w_WM_seg.nii.gz",
        "example_T1w_seg.png",
    ):
        assert (tmp_path / name).is_file(), name
    metrics = json.loads((tmp_path / "example_T1w_metrics.json").read_text())
    assert metrics["GM"]["dice"] >= MIN_GM_DICE
    assert "Dice against the truth: GM" in capsys.readouterr().out

    # a second demo into the same folder replaces nothing unless asked to (as `segment` does)
    written = {path.name: path.stat().st_mtime_ns for path in tmp_path.iterdir()}
    assert main(["demo", "-o", str(tmp_path), "--shape", "96", "96", "64", "--seed", "8", "--quiet"]) == 1
    assert "give --overwrite" in capsys.readouterr().err
    assert {path.name: path.stat().st_mtime_ns for path in tmp_path.iterdir()} == written
