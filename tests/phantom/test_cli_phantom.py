from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from mousecord.cli import main
from mousecord.labels import Label

SMALL = ["--shape", "96", "96", "40"]


def test_phantom_command_writes_image_labels_sidecar_and_png(tmp_path: Path) -> None:
    image, labels, png = (
        tmp_path / "phantom.nii.gz",
        tmp_path / "phantom_labels.nii.gz",
        tmp_path / "phantom.png",
    )
    code = main(
        ["phantom", "-o", str(image), "--labels", str(labels), "--png", str(png), "--seed", "3", *SMALL]
    )
    assert code == 0
    written_image, written_labels = nib.load(image), nib.load(labels)
    assert written_image.shape == written_labels.shape == (96, 96, 40)
    assert written_image.get_data_dtype() == np.float32
    assert written_labels.get_data_dtype() == np.uint8
    assert set(np.unique(np.asarray(written_labels.dataobj)).tolist()) == {
        Label.BACKGROUND,
        Label.GM,
        Label.WM,
    }
    np.testing.assert_allclose(written_image.header.get_zooms(), (0.05, 0.05, 0.05), rtol=1e-6)
    assert nib.aff2axcodes(written_image.affine) == ("R", "A", "S")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    sidecar = json.loads((tmp_path / "phantom.json").read_text())
    assert sidecar["seed"] == 3 and sidecar["config"]["shape_vox"] == [96, 96, 40]
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "phantom.json",
        "phantom.nii.gz",
        "phantom.png",
        "phantom_labels.nii.gz",
    ]


def test_same_seed_gives_same_files(tmp_path: Path) -> None:
    for name in ("a", "b"):
        assert (
            main(
                [
                    "phantom",
                    "-o",
                    str(tmp_path / f"{name}.nii.gz"),
                    "--seed",
                    "5",
                    "--contrast",
                    "random",
                    "--voxel-size",
                    "0.06",
                    *SMALL,
                ]
            )
            == 0
        )
    first, second = nib.load(tmp_path / "a.nii.gz"), nib.load(tmp_path / "b.nii.gz")
    assert np.asarray(first.dataobj).tobytes() == np.asarray(second.dataobj).tobytes()
    np.testing.assert_allclose(first.header.get_zooms(), (0.06, 0.06, 0.06), rtol=1e-6)


def test_artefact_flags_are_recorded(tmp_path: Path) -> None:
    image = tmp_path / "artefacts.nii.gz"
    code = main(
        ["phantom", "-o", str(image), "--seed", "2", "--air-bubbles", "--damaged-ends", "--no-gibbs", *SMALL]
    )
    assert code == 0
    sidecar = json.loads((tmp_path / "artefacts.json").read_text())
    assert sidecar["air_bubbles"] and sidecar["damaged_ends"]
    assert sidecar["acquisition"]["gibbs_kept_fraction"] == 1.0
    data = np.asarray(nib.load(image).dataobj)
    assert np.isfinite(data).all() and data.min() >= 0


def test_random_contrast_with_artefacts_gives_finite_images(tmp_path: Path) -> None:
    image = tmp_path / "random.nii.gz"
    for seed in ("2", "3"):
        arguments = [
            "-o",
            str(image),
            "--seed",
            seed,
            "--contrast",
            "random",
            "--air-bubbles",
            "--damaged-ends",
        ]
        assert main(["phantom", *arguments, *SMALL]) == 0
        data = np.asarray(nib.load(image).dataobj)
        assert np.isfinite(data).all() and data.min() >= 0 and data.max() > 0
        image.unlink()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--shape", "10", "10", "10"], "field of view"),
        (["--voxel-size", "-0.05"], "--voxel-size must be three positive numbers"),
        (["--voxel-size", "0.05", "0.05"], "one or three"),
    ],
)
def test_bad_input_exits_1_with_one_line_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture, arguments: list[str], message: str
) -> None:
    code = main(
        [
            "phantom",
            "-o",
            str(tmp_path / "out.nii.gz"),
            "--labels",
            str(tmp_path / "labels.nii.gz"),
            *arguments,
        ]
    )
    error = capsys.readouterr().err.strip()
    assert code == 1
    assert len(error.splitlines()) == 1 and error.startswith("mousecord: error:") and message in error
    assert list(tmp_path.iterdir()) == []


def test_unknown_contrast_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["phantom", "-o", str(tmp_path / "out.nii.gz"), "--contrast", "t2w"])
    assert exit_info.value.code == 2


@pytest.mark.parametrize("name", ["out.txt", "out.nii.gz"])
def test_wrong_suffix_or_unwritable_output_exits_1_leaving_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture, name: str
) -> None:
    if name == "out.txt":
        image, png = tmp_path / name, tmp_path / "p.png"
    else:  # the image folder is fine, the picture cannot be written: nothing at all may remain
        image, png = tmp_path / name, Path("/proc/mousecord-no-such-folder/p.png")
    code = main(
        ["phantom", "-o", str(image), "--labels", str(tmp_path / "l.nii.gz"), "--png", str(png), *SMALL]
    )
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert code == 1 and len(errors) == 1 and errors[0].startswith("mousecord: error:")
    assert list(tmp_path.iterdir()) == []


def test_phantom_dataset_layout_and_sparse_masks(tmp_path: Path) -> None:
    root = tmp_path / "dataset"
    code = main(
        [
            "phantom-dataset",
            "-o",
            str(root),
            "--subjects",
            "2",
            "--chunks",
            "1",
            "--annotated-slices",
            "3",
            "--seed",
            "4",
            *SMALL,
        ]
    )
    assert code == 0
    assert json.loads((root / "dataset_description.json").read_text())["DatasetType"] == "raw"
    assert (root / "participants.tsv").read_text().splitlines() == [
        "participant_id\tspecies",
        "sub-01\tsynthetic mouse",
        "sub-02\tsynthetic mouse",
    ]
    for subject in ("sub-01", "sub-02"):
        stem = f"{subject}_chunk-1_T1w"
        image = root / subject / "anat" / f"{stem}.nii.gz"
        assert image.exists()
        annotated = json.loads((image.with_name(f"{stem}.json")).read_text())["annotated_slices"]
        assert len(annotated) == 3
        for label in ("GM", "WM"):
            sparse_file = (
                root / "derivatives" / "manual_masks" / subject / "anat" / f"{stem}_label-{label}_mask.nii.gz"
            )
            dense_file = (
                root / "derivatives" / "labels" / subject / "anat" / f"{stem}_label-{label}_mask.nii.gz"
            )
            sparse, dense = (np.asarray(nib.load(path).dataobj) for path in (sparse_file, dense_file))
            assert nib.load(sparse_file).get_data_dtype() == np.uint8
            assert set(np.unique(sparse).tolist()) == {0, 1} and set(np.unique(dense).tolist()) == {0, 1}
            assert np.flatnonzero(sparse.any(axis=(0, 1))).tolist() == annotated
            np.testing.assert_array_equal(sparse[:, :, annotated], dense[:, :, annotated])
            assert dense.any(axis=(0, 1)).sum() > 30  # the truth is dense


def test_phantom_dataset_refuses_a_non_empty_folder(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    assert main(["phantom-dataset", "-o", str(tmp_path), *SMALL]) == 1
    assert "not empty" in capsys.readouterr().err
    assert [path.name for path in tmp_path.iterdir()] == ["keep.txt"]


@pytest.mark.slow
def test_readme_quick_start_command_works_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert (
        main(["phantom", "-o", "phantom.nii.gz", "--labels", "phantom_labels.nii.gz", "--png", "phantom.png"])
        == 0
    )
    assert nib.load("phantom.nii.gz").shape == (200, 200, 500)
