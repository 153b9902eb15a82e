"""``mousecord segment`` and ``mousecord models`` called in-process."""

from __future__ import annotations

import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from mousecord.cli.main import main
from mousecord.errors import MousecordWarning
from tests.inference.helpers import tiny_bundle_folder
from tests.models.nnunet_fixtures import make_nnunet_folder

pytestmark = pytest.mark.filterwarnings("ignore::mousecord.errors.MousecordWarning")


def _write(path, data):
    nib.save(nib.Nifti1Image(np.asarray(data, np.float32), np.diag([0.05, 0.05, 0.05, 1])), path)
    return path


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    return tiny_bundle_folder(tmp_path_factory.mktemp("models") / "tiny", spacing_mm=(0.05, 0.05, 0.05))


def test_segment_writes_sct_style_outputs(model_folder, tmp_path, capsys, monkeypatch):
    import importlib

    segment_pipeline = importlib.import_module("mousecord.pipelines.segment")  # the module, not the function
    # the untrained tiny network leaves one cord voxel after the clean-ups: count it as a cord here
    monkeypatch.setattr(segment_pipeline, "MIN_CORD_VOXELS", 1)
    source = _write(tmp_path / "cord.nii.gz", np.random.default_rng(0).random((10, 12, 14)) + 1)
    code = main(
        [
            "segment",
            "-i",
            str(source),
            "-o",
            str(tmp_path / "OUT.nii.gz"),
            "--model",
            str(model_folder),
            "--largest",
            "--fill-holes",
            "--remove-small",
            "0.0001",
            "--quiet",
            "--threads",
            "1",
            "--backend",
            "torch",
            "--tta",
            "--cord-axis",
            "0",
            "-qc",
            str(tmp_path / "qc"),
        ]
    )
    assert code == 0
    assert (tmp_path / "qc" / "index.html").is_file()
    for name in ("OUT.nii.gz", "OUT_GM_seg.nii.gz", "OUT_WM_seg.nii.gz", "OUT.json"):
        assert (tmp_path / name).is_file()
    assert "OUT.nii.gz" in capsys.readouterr().out
    sidecar = json.loads((tmp_path / "OUT.json").read_text())
    settings = sidecar["settings"]
    assert settings["cord_axis"] == 0 and sidecar["cord_axis"] == 0  # asked for: no warning
    assert not sidecar["warnings"]
    assert settings["backend"] == "torch" and settings["backend_resolved"] == "torch"
    assert settings["mirroring"] is True and settings["mirroring_resolved"] is True


def test_bad_input_is_one_red_line_and_exit_1(model_folder, tmp_path, capsys):
    code = main(["segment", "-i", str(tmp_path / "missing.nii.gz"), "--model", str(model_folder), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "missing.nii.gz" in err[0]
    assert not list(tmp_path.iterdir())


def test_int8_asked_of_a_model_without_it_names_the_flag_that_helps(model_folder, tmp_path, capsys):
    source = _write(tmp_path / "cord.nii.gz", np.ones((10, 12, 14)))
    arguments = ["segment", "-i", str(source), "--model", str(model_folder), "--quiet", "--precision", "int8"]
    code = main([*arguments, "--backend", "torch"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1, err
    assert "model tiny has no int8 networks; use --precision float32" in err[0]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["cord.nii.gz"]


def test_folder_with_a_failure_exits_1_after_the_others(model_folder, tmp_path, capsys):
    _write(tmp_path / "good.nii.gz", np.random.default_rng(0).random((8, 8, 8)) + 1)
    (tmp_path / "bad.nii.gz").write_bytes(b"garbage")
    code = main(["segment", "-i", str(tmp_path), "--model", str(model_folder), "--quiet"])
    assert code == 1 and (tmp_path / "good_seg.nii.gz").is_file()
    assert "bad.nii.gz" in capsys.readouterr().err


def test_unknown_model_and_corrupt_checkpoint(tmp_path, capsys):
    source = _write(tmp_path / "cord.nii.gz", np.ones((8, 8, 8)))
    assert main(["segment", "-i", str(source), "--model", "nope", "--models-dir", str(tmp_path / "m")]) == 1
    assert "nope" in capsys.readouterr().err
    folder = make_nnunet_folder(tmp_path / "nn", features_per_stage=(4, 8, 16, 32, 32, 32))
    (folder / "fold_0" / "checkpoint_final.pth").write_bytes(b"PK\x03\x04broken")
    assert main(["segment", "-i", str(source), "--model", str(folder)]) == 1
    assert "checkpoint_final.pth" in capsys.readouterr().err
    assert not list(tmp_path.glob("cord_*"))


def test_models_install_and_list(model_folder, tmp_path, capsys):
    models = tmp_path / "models"
    assert main(["models", "install", str(model_folder), "--name", "mine", "--models-dir", str(models)]) == 0
    assert main(["models", "list", "--models-dir", str(models)]) == 0
    assert "mine\tbundle" in capsys.readouterr().out
    # messages name the command line's flags, not Python's settings
    assert (
        main(["models", "install", str(model_folder), "--name", "bad name", "--models-dir", str(models)]) == 1
    )
    assert "give one with --name NAME" in capsys.readouterr().err
    assert main(["models", "install", str(model_folder), "--name", "mine", "--models-dir", str(models)]) == 1
    assert "another name (--name NAME) or replace it (--overwrite)" in capsys.readouterr().err


def printed_by_fresh_python(*lines: str) -> list[str]:
    """The words a fresh interpreter prints running ``lines`` (what it imports is its own)."""
    script = "\n".join(("import sys", *lines)) + "\n"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return result.stdout.split()


def test_the_command_line_parser_does_not_import_torch():
    """``mousecord --help`` stays fast: the parser reads the inference choices from a torch-free module."""
    printed = printed_by_fresh_python(
        "from mousecord.cli.main import build_parser",
        "options = ['segment', '-i', 'x.nii.gz', '--backend', 'openvino', '--roi', 'cord']",
        "arguments = build_parser().parse_args(options)",
        "print(arguments.backend, arguments.roi, 'torch' in sys.modules)",
    )
    assert printed == ["openvino", "cord", "False"]


def test_segmenting_does_not_import_the_phantom_or_the_demo():
    """``mousecord segment`` starts faster when the demo's phantom and metrics stay unloaded; the demo is
    still reachable from ``mousecord.pipelines`` by name."""
    printed = printed_by_fresh_python(
        "import mousecord.cli.segment, mousecord.pipelines as pipelines",
        "demo = ('mousecord.phantom', 'mousecord.pipelines.demo')",
        "print(any(name.startswith(demo) for name in sys.modules))",
        "print(callable(pipelines.run_demo), 'mousecord.pipelines.demo' in sys.modules)",
    )
    assert printed == ["False", "True", "True"]


@pytest.mark.parametrize("shape", [(10, 12, 14), (6, 6, 2)])  # the second under 100 voxels
def test_image_without_cord_warns_and_exits_with_the_no_cord_status(tmp_path, capsys, shape):
    """Empty masks are written, but never silently: a warning names the file, the sidecar and the exit
    status say so (EXIT_NO_CORD, documented in the README)."""
    import dataclasses

    import torch

    from mousecord.models import save_bundle
    from mousecord.pipelines import EXIT_NO_CORD
    from tests.inference.helpers import tiny_bundle

    bundle = tiny_bundle(spacing_mm=(0.05, 0.05, 0.05))
    weights = dict(bundle.fold_weights[0])
    for key in [key for key in weights if key.startswith("decoder.seg_layers")]:
        weights[key] = torch.zeros_like(weights[key])
        if key.endswith("bias"):
            weights[key][0] = 10.0  # background wins everywhere
    model = save_bundle(dataclasses.replace(bundle, fold_weights=(weights,)), tmp_path / "blind")
    source = _write(tmp_path / "nocord.nii.gz", np.random.default_rng(1).random(shape) + 1)
    code = main(["segment", "-i", str(source), "--model", str(model), "--device", "cpu", "--quiet"])
    assert code == EXIT_NO_CORD == 3
    captured = capsys.readouterr()
    assert "no cord found" in captured.err and "nocord.nii.gz" in captured.err
    sidecar = json.loads((tmp_path / "nocord_seg.json").read_text())
    assert sidecar["cord_found"] is False
    assert not np.asarray(nib.load(tmp_path / "nocord_seg.nii.gz").dataobj).any()
    # a rerun skips the finished case, but its masks are still empty: still the no-cord status
    assert main(["segment", "-i", str(source), "--model", str(model), "--device", "cpu", "--quiet"]) == 3
    assert "no cord found in 1 of 1 images" in capsys.readouterr().err
    # its QC entry says so above the pictures: the warning the run recorded, and that the mask is empty
    if shape == (10, 12, 14):
        assert (
            main(
                [
                    "qc",
                    "-i",
                    str(source),
                    "-s",
                    str(tmp_path / "nocord_seg.nii.gz"),
                    "-qc",
                    str(tmp_path / "qc"),
                ]
            )
            == 0
        )
        (record,) = [json.loads(path.read_text()) for path in (tmp_path / "qc" / "records").glob("*.json")]
        assert any("no cord found" in note for note in record["notes"])
        assert any("segmentation is empty" in note for note in record["notes"])
        assert "segmentation is empty (no cord)" in (tmp_path / "qc" / "index.html").read_text()


def test_sidecar_warnings_name_the_command_lines_flags(model_folder, tmp_path):
    """What the console printed, the sidecar (and so the QC report) records: flags, not Python settings."""
    from mousecord.pipelines import segment

    source = tmp_path / "thick.nii.gz"
    data = np.random.default_rng(3).random((10, 12, 4)).astype(np.float32) + 1
    nib.save(nib.Nifti1Image(data, np.diag([0.05, 0.05, 3.0, 1])), source)  # 3 mm slices: implausible
    command = [sys.executable, "-m", "mousecord", "segment", "-i", str(source), "--model", str(model_folder)]
    printed = subprocess.run([*command, "--device", "cpu"], capture_output=True, text=True, check=True).stderr
    sidecar = json.loads((tmp_path / "thick_seg.json").read_text())
    (recorded,) = [warning for warning in sidecar["warnings"] if "implausible" in warning]
    assert "--voxel-size" in recorded and "voxel_size_mm" not in recorded and printed.count(recorded) == 1
    # called from Python, the same warning names the Python setting
    with pytest.warns(MousecordWarning, match="implausible"):
        segment(source, tmp_path / "py" / "thick_seg.nii.gz", model=model_folder)
    sidecar = json.loads((tmp_path / "py" / "thick_seg.json").read_text())
    (python,) = [warning for warning in sidecar["warnings"] if "implausible" in warning]
    assert "voxel_size_mm" in python and "--voxel-size" not in python
