"""The reference's data tools: names, contents, geometry, round trips, and nnU-Net's own integrity check."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from mousecord.cli.main import main
from mousecord.datasets.bids import find_bids_images
from mousecord.datasets.tools import (
    bids_to_nnunet,
    crop_file,
    crop_outputs,
    extract_slices,
    fix_header_file,
    masks_to_label_map,
    nnunet_to_bids,
    slice_stem,
)
from mousecord.errors import ConfigError, DatasetError, ImageFormatError, MousecordWarning, OutputError
from mousecord.labels import IGNORE_VALUE
from tests.training.synthetic import save, write_bids_dataset

SHAPE = (14, 12, 10)

#: The fixture's masks are sparse: converting them without the ignore label warns, as one test checks.
pytestmark = pytest.mark.filterwarnings(
    "ignore:.*annotated on some slices only:mousecord.errors.MousecordWarning"
)


@pytest.fixture()
def dataset(tmp_path: Path) -> Path:
    root = tmp_path / "bids"
    write_bids_dataset(root, n_subjects=2, shape=SHAPE, annotated_slices=3, seed=4, unlabelled=0)
    save(np.ones(SHAPE, np.float32), root / "sub-03" / "anat" / "sub-03_chunk-1_T1w.nii.gz")  # unlabelled
    return root


def _mask(root: Path, stem: str, label: str, folder: str = "manual_masks") -> Path:
    subject = stem.split("_")[0]
    return root / "derivatives" / folder / subject / "anat" / f"{stem}_label-{label}_mask.nii.gz"


def test_slice_names_follow_the_reference() -> None:
    assert slice_stem("sub-01_chunk-1_T1w", 12) == "sub-01_chunk-1-slice-12_T1w"


def test_masks_to_label_map_thresholds_and_ignores() -> None:
    gm = np.zeros((3, 3, 4))
    wm = np.zeros((3, 3, 4))
    gm[0, 0, 1], wm[1, 1, 1], gm[2, 2, 3] = 1e-11, 0.5, 1e-13
    label_map = masks_to_label_map(gm, wm, name="x", ignore_unannotated=True)
    assert label_map[0, 0, 1] == 1 and label_map[1, 1, 1] == 2 and label_map[0, 1, 1] == 0
    assert (label_map[..., [0, 2, 3]] == IGNORE_VALUE).all()  # 1e-13 is below the threshold
    with pytest.raises(DatasetError, match="overlap"):
        masks_to_label_map(gm + 1, wm + 1, name="x")


def test_extract_slices_names_and_content(dataset: Path, tmp_path: Path) -> None:
    descriptions = ("dataset_description.json", "derivatives/manual_masks/dataset_description.json")
    for relative in descriptions:
        (dataset / relative).write_text(json.dumps({"Name": relative, "BIDSVersion": "1.9.0"}))
    written = extract_slices(dataset, tmp_path / "slices")
    for relative in descriptions:  # still a BIDS dataset, described as the source was
        assert json.loads((tmp_path / "slices" / relative).read_text())["Name"] == relative
    assert len(written) == 6  # 3 annotated slices x 2 labelled volumes
    stem = "sub-01_chunk-1_T1w"
    gm = np.asarray(nib.load(_mask(dataset, stem, "GM")).dataobj)
    wm = np.asarray(nib.load(_mask(dataset, stem, "WM")).dataobj)
    annotated = np.flatnonzero((gm + wm).any(axis=(0, 1)))
    for index in annotated:
        path = tmp_path / "slices" / "sub-01" / "anat" / f"sub-01_chunk-1-slice-{index}_T1w.nii.gz"
        image = nib.load(path)
        original = nib.load(dataset / "sub-01" / "anat" / f"{stem}.nii.gz")
        assert image.shape == (*SHAPE[:2], 1)
        np.testing.assert_array_equal(image.get_fdata()[..., 0], original.get_fdata()[..., index])
        np.testing.assert_allclose(image.affine[:3, 3], (original.affine @ [0, 0, index, 1])[:3])
        slice_gm = nib.load(_mask(tmp_path / "slices", f"sub-01_chunk-1-slice-{index}_T1w", "GM")).get_fdata()
        np.testing.assert_array_equal(slice_gm[..., 0], gm[..., index])
    assert (tmp_path / "slices" / "sub-01" / "anat" / f"{stem}.nii.gz").is_file()  # full volume copied
    assert _mask(tmp_path / "slices", stem, "WM").is_file()
    with pytest.raises(OutputError):
        extract_slices(dataset, dataset)


def test_crop_keeps_geometry_and_never_overwrites(dataset: Path, tmp_path: Path) -> None:
    source = dataset / "sub-01" / "anat" / "sub-01_chunk-1_T1w.nii.gz"
    output = crop_file(source, 3, 8, tmp_path / "crop.nii.gz")
    original, cropped = nib.load(source), nib.load(output)
    np.testing.assert_array_equal(cropped.get_fdata(), original.get_fdata()[..., 3:8])
    np.testing.assert_allclose(cropped.affine, original.affine @ _translation(3))
    np.testing.assert_allclose(cropped.header.get_qform(), cropped.affine)
    with pytest.raises(OutputError, match="overwrite"):
        crop_file(source, 3, 8, source)
    with pytest.raises(DatasetError, match="empty"):
        crop_file(source, 8, 3, tmp_path / "empty.nii.gz")


def test_crop_and_fix_header_keep_scaled_integer_data_exactly(tmp_path: Path) -> None:
    raw = (np.arange(3 * 4 * 5).reshape(3, 4, 5) * 7).astype(np.int16)
    image = nib.Nifti1Image(raw, np.diag([0.05, 0.05, 0.05, 1.0]))
    image.header.set_slope_inter(0.5, 10.0)  # stored int16, real values 0.5 * raw + 10 (13.5, 17, ...)
    source = tmp_path / "scaled.nii.gz"
    nib.save(image, source)
    original = nib.load(source)
    cropped = nib.load(crop_file(source, 1, 4, tmp_path / "crop.nii.gz"))
    assert cropped.get_data_dtype() == np.int16
    np.testing.assert_array_equal(cropped.get_fdata(), original.get_fdata()[..., 1:4])
    fixed = nib.load(fix_header_file(source, tmp_path / "fixed.nii.gz"))
    assert fixed.get_data_dtype() == np.int16
    np.testing.assert_array_equal(fixed.get_fdata(), original.get_fdata())


def _translation(z_start: int) -> np.ndarray:
    matrix = np.eye(4)
    matrix[2, 3] = z_start
    return matrix


def test_crop_cli_writes_suffixed_image_and_masks(dataset: Path, capsys) -> None:
    stem = "sub-01_chunk-1_T1w"
    image = dataset / "sub-01" / "anat" / f"{stem}.nii.gz"
    masks = [_mask(dataset, stem, "GM"), _mask(dataset, stem, "WM")]
    code = main(["crop", "-i", str(image), "-m", *map(str, masks), "--first", "2", "--last", "6", "--quiet"])
    assert code == 0
    for path in (image, *masks):  # masks named after the cropped image, so that they pair with it
        cropped = path.with_name(path.name.replace(stem, f"{stem}_crop"))
        assert nib.load(cropped).shape == (*SHAPE[:2], 4)
        assert nib.load(path).shape == SHAPE  # input untouched
    (case,) = [case for case in find_bids_images(dataset) if case.image.name == f"{stem}_crop.nii.gz"]
    assert case.has_masks


def test_data_tools_replace_earlier_outputs_only_with_overwrite(
    dataset: Path, tmp_path: Path, capsys
) -> None:
    """A second crop, header fix, slice extraction or nnU-Net -> BIDS conversion into the same place is
    refused, nothing changed, unless --overwrite: hand-drawn masks and earlier results are not replaced
    silently."""
    stem = "sub-01_chunk-1_T1w"
    image = dataset / "sub-01" / "anat" / f"{stem}.nii.gz"
    crop = ["crop", "-i", str(image), "--first", "2", "--last", "6", "--quiet"]
    fix = ["fix-header", "-i", str(image), "-o", str(tmp_path / "fixed.nii.gz"), "--quiet"]
    extract = ["extract-slices", str(dataset), "-o", str(tmp_path / "slices"), "--quiet"]
    for command, output, refusal in (
        (
            crop,
            image.with_name(f"{stem}_crop.nii.gz"),
            "exists; not replaced without overwrite (--overwrite)",
        ),
        (fix, tmp_path / "fixed.nii.gz", "exists; not replaced without overwrite (--overwrite)"),
        (extract, tmp_path / "slices" / "sub-01" / "anat" / f"{stem}.nii.gz", "exists and is not empty"),
    ):
        assert main(command) == 0
        before = output.read_bytes()
        os.utime(output, (0, 0))
        assert main(command) == 1
        assert refusal in capsys.readouterr().err
        assert output.read_bytes() == before and output.stat().st_mtime == 0
        assert main([*command, "--overwrite"]) == 0
        assert output.stat().st_mtime > 0
    past_the_end = str(SHAPE[2] + 1)
    longer = [
        "crop",
        "-i",
        str(image),
        "--first",
        "2",
        "--last",
        past_the_end,
        "-o",
        str(tmp_path / "c.nii.gz"),
    ]
    assert main(longer) == 1 and "reaches past its" in capsys.readouterr().err
    before_the_start = ["crop", "-i", str(image), "--first", str(-SHAPE[2] - 1), "--last", "3", "--overwrite"]
    assert main(before_the_start) == 1 and "reaches past its" in capsys.readouterr().err
    assert not (tmp_path / "c.nii.gz").exists()


def test_crop_puts_masks_beside_their_image_beside_its_output(tmp_path: Path) -> None:
    """Masks that lay beside the image go beside the output image, named after it; a derivatives mask stays
    in its folder, named after the output image."""
    image = tmp_path / "a" / "x.nii.gz"
    beside, derivative = tmp_path / "a" / "x_seg.nii.gz", tmp_path / "d" / "x_label-GM_mask.nii.gz"
    outputs = crop_outputs(
        image, [beside, derivative, tmp_path / "a" / "other.nii.gz"], tmp_path / "b" / "y.nii.gz"
    )
    assert outputs == [
        tmp_path / "b" / "y.nii.gz",
        tmp_path / "b" / "y_seg.nii.gz",
        tmp_path / "d" / "y_label-GM_mask.nii.gz",
        tmp_path / "a" / "other_crop.nii.gz",
    ]


def test_fix_header_sets_zooms_and_copies_qform_to_sform(tmp_path: Path) -> None:
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    image = nib.Nifti1Image(np.arange(24, dtype=np.int16).reshape(2, 3, 4), affine)
    image.set_qform(affine, 1)
    image.set_sform(np.diag([2.0, 2.0, 2.0, 1.0]), 2)  # disagrees with the qform
    source = tmp_path / "bad.nii.gz"
    nib.save(image, source)
    output = fix_header_file(source, tmp_path / "fixed.nii.gz")
    fixed = nib.load(output)
    np.testing.assert_allclose(fixed.header.get_zooms(), (0.05, 0.05, 0.05), rtol=1e-6)
    np.testing.assert_allclose(fixed.header.get_sform(), fixed.header.get_qform(), atol=1e-6)
    np.testing.assert_allclose(np.diag(fixed.affine)[:3], 0.05, rtol=1e-6)
    np.testing.assert_array_equal(fixed.get_fdata(), image.get_fdata())
    assert main(["fix-header", "-i", str(source), "-o", str(source), "--quiet"]) == 1


def test_fix_header_keeps_a_2d_slice_2d_and_an_sform_only_files_orientation(tmp_path: Path) -> None:
    """A single slice saved as a 2D image has two zooms but three voxel sizes (it had crashed with a
    traceback); a file without a qform keeps its sform's orientation (it had got the default, x flipped)."""
    flipped = np.diag([-1.0, 1.0, 1.0, 1.0])
    flipped[:3, 3] = (5.0, -2.0, 3.0)
    single = nib.Nifti1Image(np.ones((6, 5), np.float32), flipped)
    single.set_qform(flipped, 1)
    nib.save(single, tmp_path / "slice.nii.gz")
    fixed = nib.load(fix_header_file(tmp_path / "slice.nii.gz", tmp_path / "slice_fixed.nii.gz"))
    assert fixed.shape == (6, 5)
    np.testing.assert_allclose(fixed.header["pixdim"][1:4], 0.05, rtol=1e-6)
    np.testing.assert_allclose(fixed.affine[:3, :3], np.diag([-0.05, 0.05, 0.05]), atol=1e-7)
    sform_only = nib.Nifti1Image(np.ones((4, 5, 6), np.float32), flipped)
    sform_only.set_qform(None, 0)
    sform_only.set_sform(flipped, 2)
    nib.save(sform_only, tmp_path / "sform_only.nii.gz")
    fixed = nib.load(fix_header_file(tmp_path / "sform_only.nii.gz", tmp_path / "sform_fixed.nii.gz"))
    np.testing.assert_allclose(fixed.affine[:3, :3], np.diag([-0.05, 0.05, 0.05]), atol=1e-7)
    np.testing.assert_allclose(fixed.affine[:3, 3], (5.0, -2.0, 3.0), atol=1e-6)
    assert fixed.header["qform_code"] == fixed.header["sform_code"] == 2


def test_bids_to_nnunet_layout_labels_and_round_trip(dataset: Path, tmp_path: Path) -> None:
    folder = tmp_path / "Dataset501_MouseSC"
    result = bids_to_nnunet(dataset, folder)
    assert (result.training_cases, result.test_cases) == (2, 1)
    assert sorted(path.name for path in (folder / "imagesTr").iterdir()) == [
        "MouseSC_001_0000.nii.gz",
        "MouseSC_002_0000.nii.gz",
    ]
    assert [path.name for path in (folder / "imagesTs").iterdir()] == ["MouseSC_003_0000.nii.gz"]
    dataset_json = json.loads((folder / "dataset.json").read_text())
    assert dataset_json["channel_names"] == {"0": "T1w"}
    assert dataset_json["labels"] == {"background": 0, "GM": 1, "WM": 2}
    assert dataset_json["numTraining"] == 2 and dataset_json["file_ending"] == ".nii.gz"
    conversion = json.loads((folder / "conversion_dict.json").read_text())
    assert len(conversion) == 3
    label_map = np.asarray(nib.load(folder / "labelsTr" / "MouseSC_001.nii.gz").dataobj)
    gm = np.asarray(nib.load(_mask(dataset, "sub-01_chunk-1_T1w", "GM")).dataobj)
    np.testing.assert_array_equal(label_map == 1, gm > 1e-12)
    # nnunet-to-bids with the training labels as "predictions" puts identical masks back.
    written = nnunet_to_bids(folder / "labelsTr", folder / "conversion_dict.json", mask_folder="roundtrip")
    assert len(written) == 4
    for stem in ("sub-01_chunk-1_T1w", "sub-02_chunk-1_T1w"):
        for label in ("GM", "WM"):
            original = np.asarray(nib.load(_mask(dataset, stem, label)).dataobj) > 1e-12
            back = np.asarray(nib.load(_mask(dataset, stem, label, folder="roundtrip")).dataobj)
            np.testing.assert_array_equal(back.astype(bool), original)
            assert back.dtype == np.uint8
    # into manual_masks it would replace the hand-drawn masks: only when asked
    hand_drawn = _mask(dataset, "sub-01_chunk-1_T1w", "GM")
    before = hand_drawn.read_bytes()
    with pytest.raises(OutputError, match=r"label-GM_mask.nii.gz: exists \(with 3 more of the outputs\)"):
        nnunet_to_bids(folder / "labelsTr", folder / "conversion_dict.json", mask_folder="manual_masks")
    assert hand_drawn.read_bytes() == before
    nnunet_to_bids(
        folder / "labelsTr", folder / "conversion_dict.json", mask_folder="manual_masks", overwrite=True
    )
    assert hand_drawn.read_bytes() != before


def test_bids_to_nnunet_warns_of_a_volume_with_one_mask_and_of_a_folder_nnunet_cannot_find(
    dataset: Path, tmp_path: Path
) -> None:
    """A volume with a GM mask but no WM mask (a misnamed one) still goes to imagesTs, with a warning naming
    the mask that is missing; an output folder not named DatasetNNN_Name gets a warning too."""
    wm = _mask(dataset, "sub-02_chunk-1_T1w", "WM")
    wm.rename(wm.with_name("sub-02_chunk-1_T1w_label-WM_seg.nii.gz"))
    with pytest.warns(MousecordWarning) as caught:
        result = bids_to_nnunet(dataset, tmp_path / "myoutput")
    messages = [str(warning.message) for warning in caught]
    assert any(
        "sub-02_chunk-1_T1w.nii.gz: has a GM mask but no sub-02_chunk-1_T1w_label-WM_mask.nii.gz" in message
        for message in messages
    )
    assert any("DatasetNNN_Name" in message for message in messages)
    assert (result.training_cases, result.test_cases) == (1, 2)
    wm.with_name("sub-02_chunk-1_T1w_label-WM_seg.nii.gz").rename(wm)
    with warnings.catch_warnings():
        warnings.simplefilter("error", MousecordWarning)
        result = bids_to_nnunet(dataset, tmp_path / "Dataset503_Two", ignore_label=True)
        assert result.training_cases == 2


def test_bids_to_nnunet_warns_that_sparse_masks_without_the_ignore_label_teach_background(
    dataset: Path, tmp_path: Path
) -> None:
    """Masks on 3 slices of 10: without ignore_label the 7 others are background in labelsTr, which trains
    nnU-Net to call the cord background there; the warning names the flag."""
    with pytest.warns(MousecordWarning, match=r"2 of 2 training volumes are annotated on some slices only"):
        bids_to_nnunet(dataset, tmp_path / "Dataset504_Dense")
    for stem in ("sub-01_chunk-1_T1w", "sub-02_chunk-1_T1w"):  # annotate every slice: no warning
        gm, wm = (nib.load(_mask(dataset, stem, label)) for label in ("GM", "WM"))
        full_gm = np.zeros(SHAPE, np.uint8)
        full_gm[5:9, 4:8, :] = 1
        nib.save(nib.Nifti1Image(full_gm, gm.affine), _mask(dataset, stem, "GM"))
        nib.save(nib.Nifti1Image((1 - full_gm).astype(np.uint8), wm.affine), _mask(dataset, stem, "WM"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", MousecordWarning)
        assert bids_to_nnunet(dataset, tmp_path / "Dataset505_Dense").training_cases == 2


def test_bids_to_nnunet_ignore_label(dataset: Path, tmp_path: Path) -> None:
    folder = tmp_path / "Dataset502_Sparse"
    code = main(["bids-to-nnunet", str(dataset), "-o", str(folder), "--ignore-label", "--quiet"])
    assert code == 0
    dataset_json = json.loads((folder / "dataset.json").read_text())
    assert dataset_json["labels"] == {"background": 0, "GM": 1, "WM": 2, "ignore": 3}
    label_map = np.asarray(nib.load(folder / "labelsTr" / "Sparse_001.nii.gz").dataobj)
    annotated = (label_map != IGNORE_VALUE).all(axis=(0, 1))
    assert annotated.sum() == 3 and (label_map[..., ~annotated] == IGNORE_VALUE).all()
    assert main(["bids-to-nnunet", str(dataset), "-o", str(folder), "--quiet"]) == 1  # never overwrites


@pytest.mark.nnunet
@pytest.mark.parametrize("ignore_label", [False, True])
def test_bids_to_nnunet_passes_nnunet_integrity_check(
    dataset: Path, tmp_path: Path, ignore_label: bool
) -> None:
    verify = pytest.importorskip("nnunetv2.experiment_planning.verify_dataset_integrity")
    folder = tmp_path / "Dataset503_Check"
    bids_to_nnunet(dataset, folder, ignore_label=ignore_label)
    verify.verify_dataset_integrity(str(folder), num_processes=1)  # raises on any problem


def test_missing_label_folder_is_one_line_error(dataset: Path, tmp_path: Path, capsys) -> None:
    code = main(["bids-to-nnunet", str(dataset), "-o", str(tmp_path / "out"), "--label-folder", "nope"])
    assert code == 1
    assert "label folder not found" in capsys.readouterr().err


def test_bids_to_nnunet_bad_case_leaves_nothing(dataset: Path, tmp_path: Path) -> None:
    gm_path = _mask(dataset, "sub-02_chunk-1_T1w", "GM")  # the second case: the first is written by then
    wm = np.asarray(nib.load(_mask(dataset, "sub-02_chunk-1_T1w", "WM")).dataobj)
    save(np.maximum(np.asarray(nib.load(gm_path).dataobj), wm), gm_path)  # GM now overlaps WM
    folder = tmp_path / "out" / "Dataset504_Bad"
    with pytest.raises(DatasetError, match="overlap"):
        bids_to_nnunet(dataset, folder)
    assert not folder.exists()
    assert list((tmp_path / "out").iterdir()) == []  # no hidden building folder left either


def test_bids_to_nnunet_refuses_an_output_inside_the_dataset(dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="inside the input dataset"):
        bids_to_nnunet(dataset, dataset / "derivatives" / "Dataset505_Inside")
    assert not (dataset / "derivatives" / "Dataset505_Inside").exists()
    occupied = tmp_path / "Dataset506_Occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("mine\n")
    with pytest.raises(OutputError, match="not an empty folder"):
        bids_to_nnunet(dataset, occupied)
    empty = tmp_path / "Dataset507_Empty"
    empty.mkdir()
    assert bids_to_nnunet(dataset, empty).training_cases == 2  # an empty folder is fine


def test_nnunet_to_bids_refuses_values_other_than_labels_and_writes_nothing(
    dataset: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "Dataset508_Values"
    bids_to_nnunet(dataset, folder)
    predictions = tmp_path / "predictions"
    predictions.mkdir()
    for case in ("Values_001", "Values_002"):
        label_map = np.asarray(nib.load(folder / "labelsTr" / f"{case}.nii.gz").dataobj)
        if case == "Values_002":
            label_map = label_map.copy()
            label_map[0, 0, 0] = 5
        save(label_map, predictions / f"{case}.nii.gz", dtype=np.uint8)
    with pytest.raises(ImageFormatError, match="Values_002.nii.gz: expected label values"):
        nnunet_to_bids(predictions, folder / "conversion_dict.json", mask_folder="bad")
    assert not (dataset / "derivatives" / "bad").exists()


@pytest.mark.parametrize("zooms_mm", [(0.05, float("nan"), 0.05), (0.05, 0.0, 0.05), (0.05, 0.05)])
def test_fix_header_refuses_bad_zooms_as_config_error(tmp_path: Path, zooms_mm) -> None:
    source = save(np.ones((2, 3, 4), np.float32), tmp_path / "in.nii.gz")
    with pytest.raises(ConfigError, match="zooms"):
        fix_header_file(source, tmp_path / "fixed.nii.gz", zooms_mm=zooms_mm)
    assert not (tmp_path / "fixed.nii.gz").exists()


def test_crop_reads_a_one_volume_4d_scaled_file_exactly(tmp_path: Path) -> None:
    raw = (np.arange(3 * 4 * 5).reshape(3, 4, 5, 1) * 7).astype(np.int16)
    image = nib.Nifti1Image(raw, np.diag([0.05, 0.05, 0.05, 1.0]))
    image.header.set_slope_inter(0.5, 10.0)
    source = tmp_path / "scaled4d.nii.gz"
    nib.save(image, source)
    cropped = nib.load(crop_file(source, 1, 4, tmp_path / "crop.nii.gz"))
    assert cropped.shape == (3, 4, 3) and cropped.get_data_dtype() == np.int16
    np.testing.assert_array_equal(cropped.get_fdata(), nib.load(source).get_fdata()[..., 1:4, 0])


def test_corrupt_gzip_is_one_line_error(tmp_path: Path) -> None:
    source = save(np.random.default_rng(0).random((20, 20, 20)), tmp_path / "in.nii.gz")
    source.write_bytes(source.read_bytes()[:-200] + b"x" * 200)  # damaged gzip stream
    with pytest.raises(ImageFormatError, match="in.nii.gz"):
        crop_file(source, 0, 2, tmp_path / "crop.nii.gz")


def test_crop_cli_checks_mask_shapes_first_and_writes_nothing(dataset: Path, tmp_path: Path, capsys) -> None:
    image = dataset / "sub-01" / "anat" / "sub-01_chunk-1_T1w.nii.gz"
    mask = save(np.zeros((*SHAPE[:2], SHAPE[2] + 1), np.uint8), tmp_path / "wrong_mask.nii.gz")
    code = main(["crop", "-i", str(image), "-m", str(mask), "--first", "2", "--last", "6", "--quiet"])
    assert code == 1
    assert "shape" in capsys.readouterr().err
    assert not image.with_name("sub-01_chunk-1_T1w_crop.nii.gz").exists()
    assert not (tmp_path / "wrong_mask_crop.nii.gz").exists()


def test_crop_cli_refuses_two_outputs_with_the_same_name(dataset: Path, tmp_path: Path, capsys) -> None:
    image = dataset / "sub-01" / "anat" / "sub-01_chunk-1_T1w.nii.gz"
    mask = _mask(dataset, "sub-01_chunk-1_T1w", "GM")
    code = main(["crop", "-i", str(image), "-m", str(mask), str(mask), "--first", "2", "--last", "6"])
    assert code == 1
    assert "two outputs have the same name" in capsys.readouterr().err
    assert not mask.with_name(mask.name.replace("T1w", "T1w_crop")).exists()
