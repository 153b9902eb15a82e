from __future__ import annotations

import csv
import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest

from mousecord.analysis.evaluation import evaluate
from mousecord.analysis.labelmaps import load_label_map
from mousecord.cli.main import main
from mousecord.errors import DatasetError, MousecordWarning, OutputError
from mousecord.labels import Label

from .conftest import synthetic_cord, write_nifti

SIZES = (0.05, 0.05, 0.1)


def _bids_dataset(root: Path, label_map: np.ndarray, annotated: list[int]) -> None:
    stem = "sub-01_chunk-1_T1w"
    write_nifti(root / "sub-01" / "anat" / f"{stem}.nii.gz", np.zeros(label_map.shape, np.float32), SIZES)
    masks = root / "derivatives" / "manual_masks" / "sub-01" / "anat"
    masks.mkdir(parents=True)
    sparse = np.zeros_like(label_map)
    sparse[..., annotated] = label_map[..., annotated]
    for label in (Label.GM, Label.WM):
        write_nifti(
            masks / f"{stem}_label-{label.name}_mask.nii.gz", (sparse == label).astype(np.float32), SIZES
        )


def test_bids_truth_masks_against_a_prediction_folder(tmp_path: Path) -> None:
    _, label_map = synthetic_cord((80, 56, 20), SIZES)
    _bids_dataset(tmp_path / "bids", label_map, [3, 9, 15])
    predicted = label_map.copy()
    predicted[..., 9] = np.roll(label_map[..., 9], 2, axis=0)  # 2 voxels = 0.1 mm off on one annotated slice
    write_nifti(tmp_path / "pred" / "sub-01_chunk-1_T1w_seg.nii.gz", predicted, SIZES)
    (result,) = evaluate(tmp_path / "pred", tmp_path / "bids")
    assert result.case == "sub-01_chunk-1_T1w"
    cord = result.metrics["cord"]
    assert sorted(cord.per_slice_dice) == [3, 9, 15] and cord.surface_distance_mode == "2d-per-slice"
    assert cord.per_slice_dice[3] == 1.0 and cord.per_slice_dice[9] < 1.0
    assert cord.hd95_mm == pytest.approx(0.1)


def test_prediction_masks_under_bids_derivatives_are_found_by_folder_name(tmp_path: Path) -> None:
    _, label_map = synthetic_cord((40, 36, 10), SIZES)
    _bids_dataset(tmp_path, label_map, list(range(10)))
    predictions = tmp_path / "derivatives" / "nnunet" / "sub-01" / "anat"
    predictions.mkdir(parents=True)
    for label in (Label.GM, Label.WM):
        write_nifti(
            predictions / f"sub-01_chunk-1_T1w_label-{label.name}_mask.nii.gz",
            (label_map == label).astype(np.uint8),
            SIZES,
        )
    (result,) = evaluate("nnunet", tmp_path)
    assert result.metrics["GM"].dice == 1.0 and result.metrics["GM"].surface_distance_mode == "3d"


def test_no_matching_names_is_a_dataset_error(tmp_path: Path) -> None:
    _, label_map = synthetic_cord((20, 20, 4), SIZES)
    write_nifti(tmp_path / "truth" / "a.nii.gz", label_map, SIZES)
    write_nifti(tmp_path / "pred" / "b_seg.nii.gz", label_map, SIZES)
    with pytest.raises(DatasetError, match="no prediction matches"):
        evaluate(tmp_path / "pred", tmp_path / "truth")
    # one folder (or file) as both: every case against itself, a perfect score measuring nothing
    for same in (tmp_path / "truth", tmp_path / "truth" / "a.nii.gz"):
        with pytest.raises(DatasetError, match="both prediction and truth"):
            evaluate(same, tmp_path / "truth" / ".." / "truth" / same.relative_to(tmp_path / "truth"))


def test_cli_evaluate_writes_csv_json_and_a_summary(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _, label_map = synthetic_cord((80, 56, 8), SIZES)
    truth = write_nifti(tmp_path / "truth.nii.gz", label_map, SIZES)
    shifted = write_nifti(tmp_path / "pred.nii.gz", np.roll(label_map, 1, axis=1), SIZES)
    code = main(
        [
            "evaluate",
            str(shifted),
            str(truth),
            "-o",
            str(tmp_path / "m.csv"),
            "--json",
            str(tmp_path / "m.json"),
            "--per-slice-csv",
            str(tmp_path / "s.csv"),
        ]
    )
    assert code == 0
    document = json.loads((tmp_path / "m.json").read_text())
    for name in ("GM", "WM", "cord"):
        assert {"dice", "jaccard", "hd95_mm", "mean_surface_distance_mm", "volume_difference_percent"} <= set(
            document[name]
        )
        assert document["cases"][0][name]["hd95_mm"] == pytest.approx(0.05)
    with (tmp_path / "m.csv").open() as stream:
        rows = list(csv.DictReader(stream))
    assert [row["class"] for row in rows] == ["GM", "WM", "cord"]
    assert len((tmp_path / "s.csv").read_text().splitlines()) == 1 + 8
    output = capsys.readouterr().out
    assert "Dice" in output and "HD95 (mm)" in output and "cord" in output


def test_cli_empty_prediction_class_is_a_labelled_nan(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _, label_map = synthetic_cord((40, 36, 4), SIZES)
    truth = write_nifti(tmp_path / "truth.nii.gz", label_map, SIZES)
    prediction = write_nifti(
        tmp_path / "pred.nii.gz", np.where(label_map == Label.GM, Label.WM, label_map).astype(np.uint8), SIZES
    )
    code = main(
        [
            "evaluate",
            str(prediction),
            str(truth),
            "-o",
            str(tmp_path / "m.csv"),
            "--json",
            str(tmp_path / "m.json"),
        ]
    )
    assert code == 0
    gm_row = next(row for row in csv.DictReader((tmp_path / "m.csv").open()) if row["class"] == "GM")
    assert gm_row["hd95_mm"] == "nan" and gm_row["notes"] == "NaN: prediction empty"
    assert json.loads((tmp_path / "m.json").read_text())["cases"][0]["GM"]["hd95_mm"] is None
    captured = capsys.readouterr()
    assert "NaN (undefined)" in captured.out
    # the command prints the warning itself, as one line naming the file
    assert "pred.nii.gz GM: NaN: prediction empty" in captured.err.splitlines()


@pytest.mark.parametrize(
    ("prediction_data", "message"),
    [
        (np.zeros((20, 20, 5), np.uint8), "differs from truth"),
        (np.full((20, 20, 4), 3, np.uint8), "expected label values"),
    ],
    ids=["shape", "values"],
)
def test_cli_bad_prediction_exits_1_with_one_line(tmp_path: Path, capsys, prediction_data, message) -> None:
    truth = write_nifti(tmp_path / "truth.nii.gz", np.ones((20, 20, 4), np.uint8), SIZES)
    prediction = write_nifti(tmp_path / "pred.nii.gz", prediction_data, SIZES)
    assert main(["evaluate", str(prediction), str(truth)]) == 1
    error = capsys.readouterr().err.strip()
    assert message in error and "pred.nii.gz" in error and len(error.splitlines()) == 1


def test_cli_morphometrics_writes_table_and_plot(tmp_path: Path, capsys) -> None:
    _, label_map = synthetic_cord((60, 50, 12), SIZES)
    segmentation = write_nifti(tmp_path / "seg.nii.gz", label_map, SIZES)
    code = main(
        ["morphometrics", str(segmentation), "-o", str(tmp_path / "t.csv"), "--png", str(tmp_path / "t.png")]
    )
    assert code == 0
    lines = (tmp_path / "t.csv").read_text().splitlines()
    assert lines[0].startswith("Slice (I->S),area_GM_mm2") and "angle_AP" in lines[0] and len(lines) == 13
    assert (tmp_path / "t.png").stat().st_size > 1000
    assert "volumes" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["evaluate", "morphometrics"])
def test_cli_output_never_overwrites_an_input(tmp_path: Path, capsys, command: str) -> None:
    _, label_map = synthetic_cord((40, 40, 6), SIZES)
    segmentation = write_nifti(tmp_path / "seg.nii.gz", label_map, SIZES)
    before = segmentation.read_bytes()
    arguments = [str(segmentation), str(segmentation)] if command == "evaluate" else [str(segmentation)]
    assert main([command, *arguments, "-o", str(segmentation)]) == 1
    assert "would overwrite the input" in capsys.readouterr().err
    assert segmentation.read_bytes() == before


@pytest.mark.parametrize("command", ["evaluate", "morphometrics"])
def test_cli_reports_never_replace_an_image_a_segment_sidecar_or_a_pipe(tmp_path: Path, capsys, command: str):
    """A report path naming the image beside the segmentation, segment's sidecar (which records the voxel
    size the measures rely on) or a pipe (as ``-o /dev/null`` names a device) is refused before any work,
    and nothing there changes."""
    _, label_map = synthetic_cord((40, 40, 6), SIZES)
    segmentation = write_nifti(tmp_path / "x_seg.nii.gz", label_map, SIZES)
    image = write_nifti(tmp_path / "x.nii.gz", label_map.astype(np.float32), SIZES)
    sidecar = tmp_path / "x_seg.json"
    sidecar.write_text(json.dumps({"software": "mousecord", "voxel_size_mm": [0.05, 0.05, 0.1]}))
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    arguments = [str(segmentation), str(segmentation)] if command == "evaluate" else [str(segmentation)]
    for option, target, message in (
        ("-o", image, "cannot take an image's name"),
        ("--json", sidecar, "is the sidecar mousecord segment wrote"),
        ("-o", pipe, "exists and is a device, pipe or socket, not a file"),
    ):
        before = image.read_bytes(), sidecar.read_bytes()
        extra = [] if option == "-o" else ["-o", str(tmp_path / "table.csv")]
        assert main([command, *arguments, option, str(target), *extra]) == 1
        assert message in capsys.readouterr().err
        assert (image.read_bytes(), sidecar.read_bytes()) == before and pipe.is_fifo()
    assert not (tmp_path / "table.csv").exists()


def test_cli_evaluate_writes_no_output_when_one_fails(tmp_path: Path, monkeypatch, capsys) -> None:
    _, label_map = synthetic_cord((40, 28, 4), SIZES)
    truth = write_nifti(tmp_path / "truth.nii.gz", label_map, SIZES)
    prediction = write_nifti(tmp_path / "pred.nii.gz", label_map, SIZES)

    def broken_writer(*args, **kwargs):
        raise OutputError("s.csv: cannot write: disk full")

    monkeypatch.setattr("mousecord.analysis.evaluation.write_per_slice_csv", broken_writer)
    outputs = ["-o", str(tmp_path / "m.csv"), "--json", str(tmp_path / "m.json")]
    code = main(
        ["evaluate", str(prediction), str(truth), *outputs, "--per-slice-csv", str(tmp_path / "s.csv")]
    )
    assert code == 1
    assert sorted(path.name for path in tmp_path.iterdir()) == ["pred.nii.gz", "truth.nii.gz"]


def test_cli_evaluate_refuses_two_outputs_with_the_same_name(tmp_path: Path, capsys) -> None:
    _, label_map = synthetic_cord((40, 28, 4), SIZES)
    truth = write_nifti(tmp_path / "truth.nii.gz", label_map, SIZES)
    prediction = write_nifti(tmp_path / "pred.nii.gz", label_map, SIZES)
    same = str(tmp_path / "m.csv")
    assert main(["evaluate", str(prediction), str(truth), "-o", same, "--per-slice-csv", same]) == 1
    assert "same name" in capsys.readouterr().err
    assert not (tmp_path / "m.csv").exists()


def test_overlapping_mask_pair_counts_as_wm_with_a_warning(tmp_path: Path) -> None:
    gm = np.zeros((5, 6, 3), np.float32)
    wm = np.zeros((5, 6, 3), np.float32)
    gm[1:3, 1:3, :] = 1.0
    wm[2:4, 2:4, :] = 1.0  # 1 x 1 x 3 voxels in both
    write_nifti(tmp_path / "case_GM_seg.nii.gz", gm, SIZES)
    write_nifti(tmp_path / "case_WM_seg.nii.gz", wm, SIZES)
    with pytest.warns(MousecordWarning, match="3 voxels are in both masks; counted as WM"):
        loaded = load_label_map(tmp_path / "case_GM_seg.nii.gz")
    assert (loaded.volume.data == Label.WM).sum() == 4 * 3 and (loaded.volume.data == Label.GM).sum() == 3 * 3


@pytest.mark.parametrize("output", ["sub-01_T1w_seg", "sub-01_T1w"])  # the default name, and -o NAME.nii.gz
def test_segment_outputs_in_both_formats_are_read_from_the_label_map(tmp_path: Path, output: str) -> None:
    """``mousecord segment`` writes OUT with OUT_GM_seg and OUT_WM_seg by default: one case, its label map;
    two label maps of one case stay an error."""
    _, label_map = synthetic_cord((40, 36, 10), SIZES)
    write_nifti(tmp_path / "truth" / "sub-01_T1w_seg.nii.gz", label_map, SIZES)
    predictions = tmp_path / "pred"
    write_nifti(predictions / f"{output}.nii.gz", label_map, SIZES)
    for label in (Label.GM, Label.WM):  # masks that disagree with the label map: they must not be read
        write_nifti(predictions / f"{output}_{label.name}_seg.nii.gz", np.zeros(label_map.shape), SIZES)
    (result,) = evaluate(predictions, tmp_path / "truth")
    assert result.metrics["GM"].dice == 1.0 and result.metrics["WM"].dice == 1.0
    write_nifti(predictions / "sub-01_T1w_dseg.nii.gz", label_map, SIZES)
    with pytest.raises(DatasetError, match="both match case 'sub-01_T1w'"):
        evaluate(predictions, tmp_path / "truth")


def test_a_single_slice_with_a_coronal_header_is_measured_and_evaluated_across_its_plane(
    tmp_path: Path,
) -> None:
    """Morphometrics and evaluation take slices across the cord as segment does: a one-slice file whose
    header calls the slice coronal is one cross-section, not a stack of one-voxel lines."""
    import nibabel as nib

    from mousecord.analysis.shape import morphometrics_file

    _, label_map = synthetic_cord((60, 50, 12), SIZES)
    section = label_map[:, :, 6:7]
    affine = np.zeros((4, 4))
    affine[0, 0], affine[2, 1], affine[1, 2], affine[3, 3] = 0.05, 0.05, 0.1, 1  # axes along R, S, A
    for name in ("truth", "pred"):
        nib.save(nib.Nifti1Image(section, affine), tmp_path / f"{name}_seg.nii.gz")
    result = morphometrics_file(tmp_path / "pred_seg.nii.gz", tmp_path / "m.csv")
    assert result.n_slices == 1
    assert result.table["area_GM_mm2"][0] == pytest.approx((section == Label.GM).sum() * 0.05 * 0.05)
    across_header = morphometrics_file(tmp_path / "pred_seg.nii.gz", tmp_path / "h.csv", cord_axis="header")
    assert across_header.n_slices > 10  # the header's S axis cuts the section into lines
    (case,) = evaluate(tmp_path / "truth_seg.nii.gz", tmp_path / "pred_seg.nii.gz")
    assert list(case.metrics["GM"].per_slice_dice) == [0] and case.metrics["GM"].dice == 1.0


def test_a_segmentations_sidecar_says_which_slices_evaluation_and_qc_take(tmp_path: Path) -> None:
    """Where ``mousecord segment`` wrote a sidecar beside the segmentation, its ``cord_axis`` (a file axis)
    is the one evaluate and QC slice across; without one, the header's superior-inferior axis."""
    from mousecord.analysis.qc import write_qc_entry

    image, label_map = synthetic_cord((40, 36, 30), SIZES)
    image_path = write_nifti(tmp_path / "img.nii.gz", image, SIZES)
    truth = write_nifti(tmp_path / "truth" / "img_seg.nii.gz", label_map, SIZES)
    prediction = write_nifti(tmp_path / "pred" / "img_seg.nii.gz", label_map, SIZES)

    def slices_taken() -> tuple[int, int]:
        (case,) = evaluate(prediction, truth)
        record = json.loads(write_qc_entry(image_path, prediction, tmp_path / "qc").read_text())
        return len(case.metrics["cord"].per_slice_dice), max(record["axial_slices"])

    assert slices_taken() == (30, 29)  # across k
    (tmp_path / "pred" / "img_seg.json").write_text(json.dumps({"software": "mousecord", "cord_axis": 0}))
    per_slice, last_tile = slices_taken()
    assert per_slice == int((label_map > 0).any(axis=(1, 2)).sum()) and last_tile < 40  # across i


@pytest.mark.parametrize("sidecar_name", ["img_seg.json", "img.json"])
def test_masks_alone_find_the_sidecar_segment_wrote_with_them(tmp_path: Path, sidecar_name: str) -> None:
    """GM and WM masks written without their label map (``--output-format masks``): their sidecar is
    ``img_seg.json`` by default and ``img.json`` with ``-o img.nii.gz``; either gives the slices taken."""
    from mousecord.analysis.shape import morphometrics_file

    _, label_map = synthetic_cord((40, 36, 30), SIZES)
    for name, label in (("GM", Label.GM), ("WM", Label.WM)):
        write_nifti(tmp_path / f"img_{name}_seg.nii.gz", (label_map == label).astype(np.uint8), SIZES)
    masks = tmp_path / "img_GM_seg.nii.gz"
    assert morphometrics_file(masks, tmp_path / "k.csv").n_slices == 30  # no sidecar: across k
    (tmp_path / sidecar_name).write_text(json.dumps({"software": "mousecord", "cord_axis": 0}))
    assert morphometrics_file(masks, tmp_path / "i.csv").n_slices == 40  # as the sidecar says: across i


def test_truth_and_prediction_stored_in_different_axis_orders_are_compared_slice_for_slice(
    tmp_path: Path,
) -> None:
    """One grid in space, two storage orders (truth i, j, k; prediction k, i, j with its sidecar naming its
    file axis 0 as the cord's): both are sliced across the same world axis."""
    import nibabel as nib

    _, label_map = synthetic_cord((24, 28, 20), SIZES)
    truth = write_nifti(tmp_path / "truth" / "img_seg.nii.gz", label_map, SIZES)
    affine = nib.load(truth).affine
    permuted = affine.copy()
    permuted[:, :3] = affine[:, [2, 0, 1]]  # file axes k, i, j of the truth's grid
    prediction = tmp_path / "pred" / "img_seg.nii.gz"
    prediction.parent.mkdir()
    nib.save(nib.Nifti1Image(np.transpose(label_map, (2, 0, 1)), permuted), prediction)
    (tmp_path / "pred" / "img_seg.json").write_text(json.dumps({"software": "mousecord", "cord_axis": 0}))
    (case,) = evaluate(prediction, truth)
    assert case.metrics["GM"].dice == 1.0 and len(case.metrics["cord"].per_slice_dice) == 20


def test_a_folder_segment_wrote_beside_its_inputs_is_evaluated_from_its_segmentations(tmp_path: Path) -> None:
    """``mousecord segment -i folder/`` writes ``p1_seg``, ``p1_GM_seg``, ``p1_WM_seg`` and ``p1_seg.json``
    beside ``p1``: the image its sidecar names as input is no second prediction of case p1."""
    image, label_map = synthetic_cord((24, 28, 20), SIZES)
    folder = tmp_path / "scans"
    source = write_nifti(folder / "p1.nii.gz", image, SIZES)
    write_nifti(folder / "p1_seg.nii.gz", label_map, SIZES)
    for name, label in (("GM", Label.GM), ("WM", Label.WM)):
        write_nifti(folder / f"p1_{name}_seg.nii.gz", (label_map == label).astype(np.uint8), SIZES)
    truth = write_nifti(tmp_path / "truth" / "p1_seg.nii.gz", label_map, SIZES)
    with pytest.raises(DatasetError, match="both match case .p1."):
        evaluate(folder, truth.parent)  # without the sidecar, the image is a second source of case p1
    moved = "/elsewhere/scans/p1.nii.gz"  # the sidecar's absolute path of a folder moved since
    for recorded in (str(source.resolve()), moved):
        record = {"software": "mousecord", "input": recorded, "cord_axis": 2}
        (folder / "p1_seg.json").write_text(json.dumps(record))
        (case,) = evaluate(folder, truth.parent)
        assert case.metrics["GM"].dice == 1.0 and case.prediction == (folder / "p1_seg.nii.gz",)


def test_evaluation_takes_the_voxel_size_segment_was_given(tmp_path: Path) -> None:
    """A header with 1 mm voxels that segment was told are 0.05 mm: truth and prediction are compared in
    0.05 mm voxels (surface distances in mm); a sidecar size that does not fit the file is not used."""
    _, label_map = synthetic_cord((80, 70, 10))
    shifted = np.roll(label_map, 2, axis=0)  # 2 voxels off
    truth = write_nifti(tmp_path / "truth" / "img_seg.nii.gz", label_map, (1.0, 1.0, 1.0))
    prediction = write_nifti(tmp_path / "pred" / "img_seg.nii.gz", shifted, (1.0, 1.0, 1.0))
    sidecar = tmp_path / "pred" / "img_seg.json"

    def surface_distance_mm(sizes) -> float:
        sidecar.write_text(json.dumps({"software": "mousecord", "settings": {"voxel_size_mm": sizes}}))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MousecordWarning)  # 1 mm headers are implausible
            (case,) = evaluate(prediction, truth)
        return case.metrics["cord"].mean_surface_distance_mm

    in_header_mm = surface_distance_mm(None)
    assert in_header_mm > 0.1
    assert surface_distance_mm([0.05, 0.05, 0.05]) == pytest.approx(0.05 * in_header_mm)
    assert surface_distance_mm([0.05, 0.05]) == surface_distance_mm([0.05, 0.0, 0.05]) == in_header_mm


def test_a_truth_written_by_segment_against_a_prediction_that_was_not_warns_of_a_swap(tmp_path: Path) -> None:
    _, label_map = synthetic_cord((40, 36, 10))
    segmented = write_nifti(tmp_path / "seg" / "img_seg.nii.gz", label_map)
    (tmp_path / "seg" / "img_seg.json").write_text(json.dumps({"software": "mousecord"}))
    manual = write_nifti(tmp_path / "manual" / "img_seg.nii.gz", label_map)
    with pytest.warns(MousecordWarning, match="are they swapped"):
        evaluate(manual, segmented)
    with warnings.catch_warnings():
        warnings.simplefilter("error", MousecordWarning)
        evaluate(segmented, manual)
        corrected_at = (tmp_path / "seg" / "img_seg.json").stat().st_mtime + 3600  # corrected by hand: truth
        os.utime(segmented, (corrected_at, corrected_at))
        evaluate(manual, segmented)


def test_python_and_the_command_line_take_the_prediction_first(tmp_path: Path) -> None:
    """``evaluate(PRED, TRUTH)`` as ``mousecord evaluate PRED TRUTH``: a truth annotated on two slices is
    evaluated on those two, whichever way it is called."""
    _, label_map = synthetic_cord((60, 50, 20), SIZES)
    sparse = np.zeros_like(label_map)
    sparse[..., [5, 12]] = label_map[..., [5, 12]]
    predicted = label_map.copy()
    predicted[..., 5] = np.roll(label_map[..., 5], 2, axis=0)
    prediction = write_nifti(tmp_path / "pred" / "x_seg.nii.gz", predicted, SIZES)
    truth = write_nifti(tmp_path / "truth" / "x_seg.nii.gz", sparse, SIZES)
    (case,) = evaluate(prediction, truth)
    assert len(case.metrics["GM"].per_slice_dice) == 2 and 0.5 < case.metrics["GM"].dice < 1
    assert main(["evaluate", str(prediction), str(truth), "--json", str(tmp_path / "m.json"), "--quiet"]) == 0
    (row,) = json.loads((tmp_path / "m.json").read_text())["cases"]
    assert row["GM"]["dice"] == pytest.approx(case.metrics["GM"].dice)


def test_without_sidecars_the_truths_cord_decides_the_slices_not_a_predictions_strays(tmp_path: Path) -> None:
    """A clean chunk's truth against a prediction with a far false-positive blob: slices across the
    header's axis, so the blob costs a little Dice on its slices, not the whole evaluation."""
    _, label_map = synthetic_cord((60, 56, 24))
    predicted = label_map.copy()
    predicted[0:3, 0:2, 10 : 40 // 2] = Label.WM  # a stray strip along the chunk's edge
    truth = write_nifti(tmp_path / "truth" / "x_seg.nii.gz", label_map)
    prediction = write_nifti(tmp_path / "pred" / "x_seg.nii.gz", predicted)
    with warnings.catch_warnings():
        warnings.simplefilter("error", MousecordWarning)
        (case,) = evaluate(prediction, truth)
    assert len(case.metrics["cord"].per_slice_dice) == 24 and case.metrics["cord"].dice > 0.95
