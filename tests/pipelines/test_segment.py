"""segment() and segment_cases(): outputs in the input's space, naming, folders, BIDS, skipping, failures."""

from __future__ import annotations

import gzip
import json
import shutil

import nibabel as nib
import numpy as np
import pytest

from mousecord.errors import ConfigError, ImageFormatError, ModelFolderError, MousecordError, OutputError
from mousecord.inference.predictor import InferenceConfig, Predictor
from mousecord.models import load_bundle
from mousecord.pipelines import SegmentOptions, plan_outputs, segment, segment_case
from tests.inference.helpers import TORCH, tiny_bundle_folder

pytestmark = pytest.mark.filterwarnings("ignore::mousecord.errors.MousecordWarning")


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    return tiny_bundle_folder(tmp_path_factory.mktemp("models") / "tiny", spacing_mm=(0.05, 0.05, 0.05))


@pytest.fixture(scope="module")
def human_model_folder(tmp_path_factory):
    return tiny_bundle_folder(
        tmp_path_factory.mktemp("models") / "tiny-1mm",
        spacing_mm=(1.0, 1.0, 1.0),
        patch_size_vox=(32, 32, 32),
    )


def _segment(inputs, output=None, *, model, models_dir=None, **options):
    return segment(
        inputs, output, model=model, options=SegmentOptions(**options), inference=TORCH, models_dir=models_dir
    )


def _write(path, data, affine=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(
        nib.Nifti1Image(np.asarray(data), np.diag([0.05, 0.05, 0.05, 1]) if affine is None else affine), path
    )
    return path


def _image(shape=(12, 10, 14), seed=0):
    return (np.random.default_rng(seed).random(shape) * 100 + 10).astype(np.float32)


def test_real_headers_outputs_equal_input_geometry(human_model_folder, real_headers, tmp_path):
    for source in real_headers:
        copy = shutil.copy(source, tmp_path / source.name)
        _segment(copy, model=human_model_folder, probabilities=True)
        stem = source.name.removesuffix(".nii.gz")
        original = nib.load(source)
        for name in (f"{stem}_seg", f"{stem}_GM_seg", f"{stem}_WM_seg"):
            out = nib.load(tmp_path / f"{name}.nii.gz")
            assert out.shape == original.shape, name
            np.testing.assert_array_equal(out.affine, original.affine)
            np.testing.assert_array_equal(out.header.get_qform(), original.header.get_qform())
            np.testing.assert_array_equal(out.header.get_sform(), original.header.get_sform())
            assert out.header["qform_code"] == original.header["qform_code"]
            assert out.header["sform_code"] == original.header["sform_code"]
            assert out.get_data_dtype() == np.uint8
        probabilities = nib.load(tmp_path / f"{stem}_prob.nii.gz")
        assert probabilities.shape == (*original.shape, 3)
        labels = np.asarray(nib.load(tmp_path / f"{stem}_seg.nii.gz").dataobj)
        gm = np.asarray(nib.load(tmp_path / f"{stem}_GM_seg.nii.gz").dataobj)
        np.testing.assert_array_equal(gm, labels == 1)


def test_output_names_sidecar_and_skip(model_folder, tmp_path):
    source = _write(tmp_path / "in" / "sub-01_T1w.nii.gz", _image())
    report = _segment(source, tmp_path / "out" / "res.nii.gz", model=model_folder)
    assert [case.multilabel.name for case in report.written] == ["res.nii.gz"]
    for name in ("res.nii.gz", "res_GM_seg.nii.gz", "res_WM_seg.nii.gz", "res.json"):
        assert (tmp_path / "out" / name).is_file(), name
    sidecar = json.loads((tmp_path / "out" / "res.json").read_text())
    assert sidecar["software"] == "mousecord" and sidecar["model"]["name"] == "tiny"
    assert sidecar["model"]["installed_name"] is None  # given as a folder
    assert len(sidecar["model"]["weights_sha256"]["weights.safetensors"]) == 64
    assert sidecar["settings"]["tile_step_fraction"] == 0.5 and sidecar["input"].endswith("sub-01_T1w.nii.gz")
    again = _segment(source, tmp_path / "out" / "res.nii.gz", model=model_folder)
    assert len(again.skipped) == 1 and not again.written
    masks_only = _segment(source, model=model_folder, output_format="masks")
    assert masks_only.written[0].masks["GM"].name == "sub-01_T1w_GM_seg.nii.gz"
    assert not (tmp_path / "in" / "sub-01_T1w_seg.nii.gz").exists()


def test_folder_keeps_going_past_a_failure(model_folder, tmp_path):
    _write(tmp_path / "a.nii.gz", _image())
    _write(tmp_path / "b.nii.gz", np.zeros((4, 4, 4, 2), np.float32))  # 4D
    _write(tmp_path / "c.nii.gz", _image(seed=1))
    report = _segment(tmp_path, model=model_folder)
    assert sorted(case.input.name for case in report.written) == ["a.nii.gz", "c.nii.gz"]
    assert [path.name for path, _ in report.failed] == ["b.nii.gz"]
    assert "b.nii.gz" in report.failed[0][1]
    assert not list(tmp_path.glob("b_*"))


def test_bids_dataset_writes_derivatives(model_folder, tmp_path):
    _write(tmp_path / "sub-01" / "anat" / "sub-01_chunk-1_T1w.nii.gz", _image())
    _write(tmp_path / "sub-02" / "ses-1" / "anat" / "sub-02_ses-1_T1w.nii.gz", _image(seed=2))
    report = _segment(tmp_path, model=model_folder, output_format="multilabel")
    assert len(report.written) == 2
    assert (tmp_path / "derivatives/mousecord/sub-01/anat/sub-01_chunk-1_T1w_seg.nii.gz").is_file()
    assert (tmp_path / "derivatives/mousecord/sub-02/ses-1/anat/sub-02_ses-1_T1w_seg.nii.gz").is_file()
    assert report.written[0].subject == "sub-01"
    # a BIDS derivatives folder describes itself (a validator requires it); a user's own one is kept
    description = json.loads((tmp_path / "derivatives/mousecord/dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative" and description["GeneratedBy"][0]["Name"] == "mousecord"
    (tmp_path / "derivatives/mousecord/dataset_description.json").write_text('{"Name": "mine"}')
    _segment(tmp_path, model=model_folder, output_format="multilabel", overwrite=True)
    assert json.loads((tmp_path / "derivatives/mousecord/dataset_description.json").read_text()) == {
        "Name": "mine"
    }


def _bad_inputs(tmp_path):
    truncated = tmp_path / "truncated.nii.gz"
    _write(truncated, _image((30, 30, 30)))
    truncated.write_bytes(truncated.read_bytes()[:2000])
    nan = _image()
    nan[1, 1, 1] = np.nan
    not_nifti = tmp_path / "text.nii.gz"
    not_nifti.write_bytes(gzip.compress(b"hello"))
    return {
        "missing": tmp_path / "missing.nii.gz",
        "not_nifti": not_nifti,
        "truncated": truncated,
        "1d": _write(tmp_path / "line.nii.gz", np.arange(5, dtype=np.float32)),
        "4d": _write(tmp_path / "four.nii.gz", np.ones((5, 5, 5, 3), np.float32)),
        "nan": _write(tmp_path / "nan.nii.gz", nan),
    }


def test_bad_inputs_raise_one_line_naming_the_file(model_folder, tmp_path):
    for kind, path in _bad_inputs(tmp_path).items():
        with pytest.raises(ImageFormatError) as error:
            _segment(path, tmp_path / "out" / f"{kind}.nii.gz", model=model_folder)
        assert path.name in str(error.value) and "\n" not in str(error.value), kind
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_bad_inputs_fail_before_the_network_is_compiled(model_folder, tmp_path, monkeypatch):
    compiled = []
    monkeypatch.setattr(Predictor, "prepare", lambda self: compiled.append(self) or self)
    bad = _bad_inputs(tmp_path)
    with pytest.raises(ImageFormatError, match="four.nii.gz"):
        _segment(bad["4d"], model=model_folder)
    folder = tmp_path / "folder"
    folder.mkdir()
    shutil.copy(bad["nan"], folder / "nan.nii.gz")
    assert len(_segment(folder, model=model_folder).failed) == 1
    assert compiled == []


def test_a_network_that_cannot_compile_ends_the_run(model_folder, tmp_path, monkeypatch):
    def refuse(self):
        raise ConfigError("OpenVINO cannot compile the network")

    monkeypatch.setattr(Predictor, "prepare", refuse)
    for seed in range(2):
        _write(tmp_path / f"{seed}.nii.gz", _image(seed=seed))
    with pytest.raises(ConfigError, match="cannot compile"):
        _segment(tmp_path, model=model_folder)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["0.nii.gz", "1.nii.gz"]


def test_a_voxel_size_off_by_a_unit_is_refused_before_resampling(model_folder, real_headers, tmp_path):
    # t2.nii.gz has 1 mm voxels: 20x the model's 0.05 mm in-plane, and 1200 x 1100 x 1040 voxels (~20 GB)
    source = next(path for path in real_headers if path.name == "t2.nii.gz")
    output = tmp_path / "out" / "t2_seg.nii.gz"
    with pytest.raises(ImageFormatError, match=r"in-plane voxels are 20.0x.*0.05 mm \(header x20\)") as error:
        _segment(source, output, model=model_folder)
    assert "t2.nii.gz" in str(error.value) and "\n" not in str(error.value)
    unlimited = InferenceConfig(device="cpu", backend="torch", max_upsampling=None)
    with pytest.raises(ImageFormatError, match=r"\d{4} million voxels.*voxel_size_mm") as error:
        segment(source, output, model=model_folder, inference=unlimited)
    assert "t2.nii.gz" in str(error.value) and "\n" not in str(error.value)
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())
    report = _segment(
        source, tmp_path / "out" / "t2_seg.nii.gz", model=model_folder, voxel_size_mm=(0.05, 0.05, 0.05)
    )
    assert nib.load(report.written[0].multilabel).shape == nib.load(source).shape


def test_constant_image_is_refused_and_tiny_images_work(model_folder, tmp_path):
    constant = _write(tmp_path / "constant.nii.gz", np.full((6, 5, 7), 7.0, np.float32))
    tiny = _write(tmp_path / "tiny.nii.gz", _image((3, 4, 5)))
    report = _segment([constant, tiny], model=model_folder)
    assert [path.name for path, _ in report.failed] == ["constant.nii.gz"]
    assert "image is constant (every voxel 7): nothing to segment" in report.failed[0][1]
    assert len(report.written) == 1 and not list(tmp_path.glob("constant_*"))
    assert nib.load(tmp_path / "tiny_seg.nii.gz").shape == (3, 4, 5)


def test_unknown_model_and_missing_default(tmp_path, monkeypatch):
    monkeypatch.setattr("mousecord.models.registry.SHIPPED_MODELS_DIR", tmp_path / "no-shipped-models")
    source = _write(tmp_path / "x.nii.gz", _image())
    with pytest.raises(ModelFolderError, match="no-such-model: unknown model"):
        _segment(source, model="no-such-model", models_dir=tmp_path / "models")
    with pytest.raises(ModelFolderError, match="no default model"):
        _segment(source, model=None, models_dir=tmp_path / "models")


def test_never_overwrites_the_input(model_folder, tmp_path):
    source = _write(tmp_path / "x.nii.gz", _image())
    before = source.read_bytes()
    with pytest.raises(MousecordError, match="overwrite the input"):
        _segment(source, source, model=model_folder)
    assert source.read_bytes() == before


def test_an_output_folder_that_is_a_file_is_refused_before_any_compute(model_folder, tmp_path, monkeypatch):
    compiled = []
    monkeypatch.setattr(Predictor, "prepare", lambda self: compiled.append(self) or self)
    source = _write(tmp_path / "x.nii.gz", _image())
    blocker = tmp_path / "results"
    blocker.write_text("a file where the output folder should be")
    with pytest.raises(OutputError, match=r"x.nii.gz: output folder .*results is a file"):
        _segment(source, blocker, model=model_folder)
    with pytest.raises(OutputError, match=r"results/sub cannot be created, .*results is a file"):
        _segment(source, blocker / "sub", model=model_folder)
    qc_blocker = tmp_path / "qc"
    qc_blocker.write_text("")
    with pytest.raises(OutputError, match="qc is a file"):
        _segment(source, tmp_path / "out", model=model_folder, qc_dir=qc_blocker)
    assert compiled == [] and not (tmp_path / "out").exists()


def test_one_case_raising_any_exception_is_reported_and_the_others_go_on(model_folder, tmp_path, monkeypatch):
    for name in ("a", "b", "c"):
        _write(tmp_path / "in" / f"{name}.nii.gz", _image(seed=ord(name)))
    original = Predictor.predict_volume

    def fail_on_b(self, volume, **kwargs):
        if volume.data[0, 0, 0] == _image(seed=ord("b"))[0, 0, 0]:
            raise MemoryError("cannot allocate 3.2 GiB")
        return original(self, volume, **kwargs)

    monkeypatch.setattr(Predictor, "predict_volume", fail_on_b)
    report = _segment(tmp_path / "in", tmp_path / "out", model=model_folder)
    assert sorted(case.input.name for case in report.written) == ["a.nii.gz", "c.nii.gz"]
    [(failed, message)] = report.failed
    assert failed.name == "b.nii.gz" and "b.nii.gz: MemoryError: cannot allocate 3.2 GiB" in message
    assert not list((tmp_path / "out").glob("b*")) and not list((tmp_path / "out").glob(".*"))


def test_a_loaded_predictor_is_reused_and_a_case_is_one_call(model_folder, tmp_path):
    predictor = Predictor(load_bundle(model_folder), TORCH)
    source = _write(tmp_path / "x.nii.gz", _image())
    report = segment(source, tmp_path / "one", model=predictor)
    [case] = plan_outputs([source], tmp_path / "two")
    found = segment_case(case, predictor, SegmentOptions())
    first = np.asarray(nib.load(report.written[0].multilabel).dataobj)
    np.testing.assert_array_equal(first, np.asarray(nib.load(case.multilabel).dataobj))
    assert found == bool(first.any())
    with pytest.raises(ConfigError, match="either in the Predictor or as inference"):
        segment(source, tmp_path / "three", model=predictor, inference=TORCH)


def test_a_label_map_given_as_the_image_gets_a_warning(model_folder, tmp_path, caplog):
    mask = np.zeros((12, 10, 14), np.uint8)
    mask[3:8, 3:7, :] = 1
    mask[4:6, 4:6, :] = 2
    source = _write(tmp_path / "x_gmseg.nii.gz", mask)
    with caplog.at_level("WARNING", logger="mousecord"):
        _segment(source, tmp_path / "out", model=model_folder)
    assert "x_gmseg.nii.gz: holds only the values 0, 1, 2, like a label map" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="mousecord"):
        _segment(_write(tmp_path / "image.nii.gz", _image()), tmp_path / "out", model=model_folder)
    assert "label map" not in caplog.text


def test_masks_and_probabilities_take_the_suffix_of_the_output_name(model_folder, tmp_path):
    source = _write(tmp_path / "x.nii.gz", _image())
    _segment(source, tmp_path / "out" / "res.nii", model=model_folder, probabilities=True)
    names = sorted(path.name for path in (tmp_path / "out").iterdir())
    assert names == ["res.json", "res.nii", "res_GM_seg.nii", "res_WM_seg.nii", "res_prob.nii"]
    outputs = json.loads((tmp_path / "out" / "res.json").read_text())["outputs"]
    assert {kind: path.rsplit("/", 1)[-1] for kind, path in outputs.items()} == {
        "multilabel": "res.nii",
        "GM": "res_GM_seg.nii",
        "WM": "res_WM_seg.nii",
        "probabilities": "res_prob.nii",
    }
    _segment(source, tmp_path / "masks", model=model_folder, output_format="masks")
    outputs = json.loads((tmp_path / "masks" / "x_seg.json").read_text())["outputs"]
    assert sorted(outputs) == ["GM", "WM"]


def test_a_chunks_length_along_another_axis_is_only_a_hint_for_a_model_without_cord_search(
    model_folder, tmp_path
):
    """A volume 2.5x longer along k than across, whose header calls j superior-inferior: a dense model has
    no cord search to let the image decide, so the header is followed and a warning names the file, the
    reason and the axis to give; morphometrics of the result measures across the axis segment used, as its
    sidecar says."""
    from mousecord.analysis.shape import morphometrics_file

    affine = np.zeros((4, 4))
    affine[0, 0], affine[2, 1], affine[1, 2], affine[3, 3] = 0.05, 0.05, 0.05, 1  # i, j, k along R, S, A
    source = _write(tmp_path / "chunk.nii.gz", np.random.default_rng(2).random((8, 10, 25)) + 1, affine)
    _segment(source, tmp_path / "out", model=model_folder)
    sidecar = json.loads((tmp_path / "out" / "chunk_seg.json").read_text())
    assert sidecar["cord_axis"] == 1
    (hint,) = [warning for warning in sidecar["warnings"] if "--cord-axis 2" in warning]
    assert str(source) in hint and "2.5x longer" in hint and "has no cord search" in hint
    everywhere = tmp_path / "out" / "chunk_seg.nii.gz"  # a cord on every voxel: one row per slice
    nib.save(nib.Nifti1Image(np.full((8, 10, 25), 2, np.uint8), affine), everywhere)
    assert morphometrics_file(everywhere, tmp_path / "m.csv").n_slices == 10
    assert morphometrics_file(everywhere, tmp_path / "k.csv", cord_axis=2).n_slices == 25
    # the slice index rises toward the header's S, or along k toward A: the column says which
    assert (tmp_path / "m.csv").read_text().startswith("Slice (I->S),")
    assert (tmp_path / "k.csv").read_text().startswith("Slice (P->A),")


@pytest.mark.parametrize("cord_axis", ["z", 3, -1, "S", True, 2.0])
def test_a_cord_axis_that_is_no_file_axis_is_refused(cord_axis):
    with pytest.raises(ConfigError, match="cord_axis must be one of"):
        SegmentOptions(cord_axis=cord_axis)


def test_measuring_a_segmentation_takes_the_voxel_size_segment_was_given(model_folder, tmp_path):
    """A header with 1 mm voxels, segmented with the true 0.05 mm: morphometrics of the result measures in
    0.05 mm voxels, as its sidecar records, unless told otherwise."""
    from mousecord.analysis.shape import morphometrics_file

    source = _write(tmp_path / "big.nii.gz", _image((12, 10, 14)), np.eye(4))
    _segment(source, tmp_path / "out", model=model_folder, voxel_size_mm=(0.05, 0.05, 0.05))
    everywhere = tmp_path / "out" / "big_seg.nii.gz"  # a cord on every voxel: 12 x 10 voxels per slice
    nib.save(nib.Nifti1Image(np.full((12, 10, 14), 2, np.uint8), np.eye(4)), everywhere)
    given = morphometrics_file(everywhere, tmp_path / "given.csv", angle_correction=False)
    assert given.table["area_WM_mm2"][0] == pytest.approx(120 * 0.05 * 0.05)
    header = morphometrics_file(
        everywhere, tmp_path / "h.csv", angle_correction=False, voxel_size_mm=(1, 1, 1)
    )
    assert header.table["area_WM_mm2"][0] == pytest.approx(120.0)


def test_a_file_no_mousecord_run_wrote_is_never_replaced_without_overwrite(model_folder, tmp_path):
    """``x_seg.nii.gz`` is also SCT's name for a manual cord mask: without a mousecord sidecar beside it,
    segment refuses to replace it, before any work; with overwrite, or over its own earlier outputs, it
    writes."""
    source = _write(tmp_path / "x.nii.gz", _image())
    manual = _write(tmp_path / "x_seg.nii.gz", np.ones((12, 10, 14), np.uint8))
    before = manual.read_bytes()
    with pytest.raises(OutputError, match=r"x_seg.nii.gz: exists, and no sidecar of mousecord segment"):
        _segment(source, model=model_folder)
    assert manual.read_bytes() == before and not (tmp_path / "x_GM_seg.nii.gz").exists()
    _segment(source, model=model_folder, overwrite=True)
    assert manual.read_bytes() != before
    (tmp_path / "x_GM_seg.nii.gz").unlink()  # an earlier run's outputs, one missing: redone
    _segment(source, model=model_folder)
    assert (tmp_path / "x_GM_seg.nii.gz").exists()


_KILLED_AFTER_THE_IMAGES = """
import importlib, os, signal, sys
from mousecord.pipelines import segment
from tests.inference.helpers import TORCH
module = importlib.import_module("mousecord.pipelines.segment")
write_sidecar = module._write_sidecar
def killed_before_the_complete_sidecar(case, options, record):
    if record["complete"]:
        os.kill(os.getpid(), signal.SIGKILL)
    write_sidecar(case, options, record)
module._write_sidecar = killed_before_the_complete_sidecar
segment(sys.argv[1], model=sys.argv[2], inference=TORCH)
"""


def test_a_run_killed_between_its_images_and_its_sidecar_is_redone_without_overwrite(model_folder, tmp_path):
    """SIGKILL (the out-of-memory killer, a cluster's time limit) leaves no chance to clean up: the pending
    sidecar written before the images claims them, so the next run redoes the case, neither refusing its
    outputs as foreign nor skipping them as done; evaluate does not take them for a finished run's."""
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    from mousecord.analysis.labelmaps import LabelSource, written_by_segment

    source = _write(tmp_path / "x.nii.gz", _image())
    killed = subprocess.run(
        [sys.executable, "-c", _KILLED_AFTER_THE_IMAGES, str(source), str(model_folder)],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    outputs = [tmp_path / f"x{suffix}.nii.gz" for suffix in ("_seg", "_GM_seg", "_WM_seg")]
    assert all(path.is_file() for path in outputs)
    pending = json.loads((tmp_path / "x_seg.json").read_text())
    assert pending["complete"] is False and sorted(pending["outputs"]) == ["GM", "WM", "multilabel"]
    assert pending["cord_axis"] == 2 and "voxel_size_mm" in pending["settings"]  # read as segmented
    assert not written_by_segment(LabelSource("x", (outputs[0],)))
    corrected = (tmp_path / "x_seg.json").stat().st_mtime + 3600  # corrected by hand an hour later: truth
    os.utime(outputs[0], (corrected, corrected))
    with pytest.raises(OutputError, match=r"x_seg.nii.gz: exists, and no sidecar"):
        _segment(source, model=model_folder)
    os.utime(outputs[0], (corrected - 3600, corrected - 3600))
    report = _segment(source, model=model_folder)
    assert [case.input for case in report.written] == [source] and not report.skipped
    finished = json.loads((tmp_path / "x_seg.json").read_text())
    assert finished["complete"] is True and "model" in finished
    assert written_by_segment(LabelSource("x", (outputs[0],)))
    assert len(_segment(source, model=model_folder).skipped) == 1


def test_a_failed_rerun_leaves_the_earlier_runs_outputs_and_record_as_they_were(
    model_folder, tmp_path, monkeypatch
):
    """A rerun that fails while writing removes what it wrote and puts the earlier run's sidecar back, bytes
    and time: its outputs stay its own (replaced without overwrite, whatever format the rerun asked for)
    and keep the settings they were segmented with; with no earlier run, nothing is left."""
    import importlib

    segment_module = importlib.import_module("mousecord.pipelines.segment")
    source = _write(tmp_path / "x.nii.gz", _image())
    _segment(source, model=model_folder, output_format="multilabel", voxel_size_mm=(0.05, 0.05, 0.1))
    sidecar = tmp_path / "x_seg.json"
    before = sidecar.read_bytes(), sidecar.stat().st_mtime
    save_like = segment_module.save_like

    def fails_on_the_wm_mask(data, geometry, path, **kwargs):
        if path.name.endswith("_WM_seg.nii.gz"):
            raise OSError("disk full")
        return save_like(data, geometry, path, **kwargs)

    monkeypatch.setattr(segment_module, "save_like", fails_on_the_wm_mask)
    predictor = Predictor(load_bundle(model_folder), TORCH)
    with pytest.raises(OSError, match="disk full"):
        segment_case(plan_outputs([source])[0], predictor, SegmentOptions(output_format="masks"))
    assert (sidecar.read_bytes(), sidecar.stat().st_mtime) == before
    assert sorted(path.name for path in tmp_path.glob("x_*")) == ["x_seg.json", "x_seg.nii.gz"]
    assert json.loads(sidecar.read_text())["settings"]["voxel_size_mm"] == [0.05, 0.05, 0.1]
    other = _write(tmp_path / "y.nii.gz", _image(seed=1))
    with pytest.raises(OSError, match="disk full"):
        segment_case(plan_outputs([other])[0], predictor, SegmentOptions())
    assert not list(tmp_path.glob("y_*"))
    monkeypatch.undo()
    assert _segment(source, model=model_folder).written  # x_seg.nii.gz still the earlier run's own


def test_a_mask_beside_its_image_in_a_folder_is_left_out_and_segmented_only_when_given_itself(
    model_folder, tmp_path
):
    folder = tmp_path / "scans"
    _write(folder / "x.nii.gz", _image())
    mask = _write(
        folder / "x_gmseg_manual.nii.gz", (np.arange(12 * 10 * 14).reshape(12, 10, 14) % 2).astype(np.uint8)
    )
    report = _segment(folder, model=model_folder)
    assert [case.input.name for case in report.written] == ["x.nii.gz"]
    assert [case.input for case in report.left_out] == [mask] and not report.failed
    assert not (folder / "x_gmseg_manual_seg.nii.gz").exists()
    report = _segment(mask, tmp_path / "out", model=model_folder)  # given itself: segmented, with a warning
    assert [case.input for case in report.written] == [mask]


def test_only_outputs_a_mousecord_run_wrote_and_nobody_changed_since_are_replaced_or_skipped(
    model_folder, tmp_path
):
    """A masks-only run's sidecar does not make a manual x_seg.nii.gz beside it its own; an output edited
    by hand after the run (truth made by correcting it) is neither skipped as done nor replaced."""
    import os

    source = _write(tmp_path / "x.nii.gz", _image())
    _segment(source, model=model_folder, output_format="masks")
    manual = _write(tmp_path / "x_seg.nii.gz", np.ones((12, 10, 14), np.uint8))
    with pytest.raises(OutputError, match=r"x_seg.nii.gz: exists, and no sidecar"):
        _segment(source, model=model_folder)  # the masks-only sidecar lists no label map
    mask = tmp_path / "x_GM_seg.nii.gz"
    edited = (tmp_path / "x_seg.json").stat().st_mtime + 3600  # an hour after the run
    os.utime(mask, (edited, edited))
    manual.unlink()
    with pytest.raises(OutputError, match=r"x_GM_seg.nii.gz: exists.*an edited output"):
        _segment(source, model=model_folder, output_format="masks")  # not skipped as done either


def test_several_files_are_a_folders_images_and_a_folder_of_masks_alone_is_an_error(model_folder, tmp_path):
    image = _write(tmp_path / "x.nii.gz", _image())
    labels = (np.arange(12 * 10 * 14).reshape(12, 10, 14) % 3).astype(np.uint8)
    mask = _write(tmp_path / "x_gmseg_manual.nii.gz", labels)
    report = _segment([image, mask], tmp_path / "out", model=model_folder)  # a shell's *.nii.gz
    assert [case.input for case in report.written] == [image]
    assert [case.input for case in report.left_out] == [mask]
    masks_only = tmp_path / "masks"
    _write(masks_only / "y_gmseg.nii.gz", labels)
    with pytest.raises(ConfigError, match=r"every image found holds only label values \(1 left out"):
        _segment(masks_only, model=model_folder)


def test_an_image_in_memory_given_to_segment_names_the_predictor(model_folder):
    """segment() writes files for files; an array or nibabel image gets a one-line error that says where
    images in memory go, before any model is loaded."""
    data = _image()
    for value in (data, nib.Nifti1Image(data, np.eye(4)), [data]):
        with pytest.raises(ConfigError, match=r"segment takes image files.*predict_volume\(image\)"):
            _segment(value, model=model_folder)


def test_segment_takes_any_iterable_of_paths(model_folder, tmp_path):
    for seed in range(2):
        _write(tmp_path / f"{seed}.nii.gz", _image(seed=seed))
    report = _segment(tmp_path.glob("*.nii.gz"), tmp_path / "out", model=model_folder)  # a generator
    assert sorted(case.input.name for case in report.written) == ["0.nii.gz", "1.nii.gz"]


def test_collected_warnings_keep_the_order_given_and_each_once(monkeypatch):
    """Logged and warned messages in the order given; a warning the command line's hook turns into a log
    line is kept once; the caller's filters still decide (an ignored warning is neither shown nor kept)."""
    import logging
    import warnings

    from mousecord.errors import MousecordWarning
    from mousecord.pipelines.segment import collected_warnings

    package_logger = logging.getLogger("mousecord")

    def log_it(message, category, filename, lineno, file=None, line=None):  # as `mousecord` shows them
        package_logger.warning("%s", message)

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        monkeypatch.setattr(warnings, "showwarning", log_it)
        with collected_warnings() as messages:
            warnings.warn("warned first", MousecordWarning, stacklevel=1)
            package_logger.warning("logged second")
            warnings.warn("not mousecord's", UserWarning, stacklevel=1)
        assert messages == ["warned first", "logged second"]
        assert warnings.showwarning is log_it  # put back
        warnings.filterwarnings("ignore", category=MousecordWarning)
        with collected_warnings() as messages:
            warnings.warn("ignored", MousecordWarning, stacklevel=1)
        assert messages == []


def test_a_finished_case_is_redone_by_another_model_and_skipped_by_the_same(model_folder, tmp_path):
    """The README's fine-tuning steps segment with the default model first, then with the fine-tuned one
    into the same place: that second run must not skip the cases as done."""
    source = _write(tmp_path / "in" / "sub-01_T1w.nii.gz", _image())
    other = tiny_bundle_folder(tmp_path / "tuned", spacing_mm=(0.05, 0.05, 0.05), seed=1)
    first = _segment(source, model=model_folder)
    assert len(first.written) == 1
    again = _segment(source, model=model_folder)
    assert len(again.skipped) == 1 and not again.written
    tuned = _segment(source, model=other)  # owned by the first run: replaced without overwrite
    assert len(tuned.written) == 1 and not tuned.skipped
    sidecar = json.loads((tmp_path / "in" / "sub-01_T1w_seg.json").read_text())
    assert sidecar["model"]["source"] == str(other.resolve())
    assert len(_segment(source, model=other).skipped) == 1


def test_finished_cases_get_a_qc_entry_where_the_report_lacks_one(model_folder, tmp_path):
    """A rerun with -qc into a new report (or after Ctrl-C left an old one without the finished cases)
    adds their entries, with the command that segmented them; a report that has them gets no second one."""
    source = _write(tmp_path / "in" / "sub-01_T1w.nii.gz", _image())
    _segment(source, model=model_folder, command="mousecord segment first", voxel_size_mm=(0.06, 0.06, 0.06))
    again = _segment(
        source,
        model=model_folder,
        qc_dir=tmp_path / "qc",
        command="mousecord segment again",
        voxel_size_mm=(0.06, 0.06, 0.06),
    )
    assert len(again.skipped) == 1
    (record,) = [json.loads(path.read_text()) for path in (tmp_path / "qc" / "records").glob("*.json")]
    assert record["command"] == "mousecord segment first" and record["model"] == "tiny"
    assert any("voxel size given as [0.06, 0.06, 0.06] mm" in note for note in record["notes"])
    assert record["segmentation"] == str((tmp_path / "in" / "sub-01_T1w_seg.nii.gz").resolve())
    _segment(source, model=model_folder, qc_dir=tmp_path / "qc")
    assert len(list((tmp_path / "qc" / "records").glob("*.json"))) == 1
