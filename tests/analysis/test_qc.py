from __future__ import annotations

import json
import re
import shutil
import tempfile
import time
from pathlib import Path

import matplotlib.image
import nibabel as nib
import numpy as np
import pytest

from mousecord.analysis.qc import write_qc_entry
from mousecord.cli.main import main
from mousecord.errors import ImageFormatError
from mousecord.labels import QC_COLOURS, Label

from .conftest import synthetic_cord, write_nifti

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1000",
)


@pytest.fixture
def qc_report(tmp_path: Path) -> Path:
    """A QC folder with two cases, written by the API and by the CLI."""
    qc_dir = tmp_path / "qc"
    for index, subject in enumerate(("sub-01", "sub-02")):
        image, label_map = synthetic_cord((80, 60, 40), bend_mm=0.3 * index, seed=index)
        image_path = write_nifti(tmp_path / f"{subject}_T1w.nii.gz", image)
        segmentation_path = write_nifti(tmp_path / f"{subject}_T1w_seg.nii.gz", label_map)
        if index == 0:
            write_qc_entry(
                image_path,
                segmentation_path,
                qc_dir,
                subject=subject,
                command="segment",
                metrics={"dice": 0.91},
            )
        else:
            assert (
                main(
                    [
                        "qc",
                        "-i",
                        str(image_path),
                        "-s",
                        str(segmentation_path),
                        "-qc",
                        str(qc_dir),
                        "--subject",
                        subject,
                    ]
                )
                == 0
            )
    return qc_dir


def test_records_images_and_index_are_written(qc_report: Path) -> None:
    records = sorted((qc_report / "records").glob("*.json"))
    assert len(records) == 2
    record = json.loads(records[0].read_text())
    assert (
        record["subject"] == "sub-01"
        and record["command"] == "segment"
        and record["metrics"] == {"dice": 0.91}
    )
    assert {"image", "segmentation", "mousecord_version", "date", "images"} <= set(record)
    for kind in ("axial", "longitudinal"):
        background = matplotlib.image.imread(qc_report / record["images"][f"{kind}_background"])
        overlay = matplotlib.image.imread(qc_report / record["images"][f"{kind}_overlay"])
        assert background.shape[:2] == overlay.shape[:2] and overlay.shape[2] == 4
        colours = {tuple(np.round(pixel[:3], 3)) for pixel in overlay[overlay[..., 3] > 0]}
        assert colours == {QC_COLOURS[Label.GM], QC_COLOURS[Label.WM]}
    index = (qc_report / "index.html").read_text()
    assert all(json.loads(path.read_text())["id"] in index for path in records)
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", index)  # offline: nothing fetched


def test_rerunning_an_entry_replaces_it(qc_report: Path, tmp_path: Path) -> None:
    write_qc_entry(
        tmp_path / "sub-01_T1w.nii.gz", tmp_path / "sub-01_T1w_seg.nii.gz", qc_report, subject="sub-01"
    )
    assert len(list((qc_report / "records").glob("*.json"))) == 2


def test_segmentation_on_another_grid_is_an_error(tmp_path: Path) -> None:
    image = write_nifti(tmp_path / "image.nii.gz", np.zeros((10, 10, 10), np.float32))
    segmentation = write_nifti(tmp_path / "seg.nii.gz", np.zeros((10, 10, 12), np.uint8))
    with pytest.raises(ImageFormatError, match=r"seg\.nii\.gz: segmentation grid .* image\.nii\.gz"):
        write_qc_entry(image, segmentation, tmp_path / "qc")


@pytest.mark.chromium
@pytest.mark.skipif(
    not CHROMIUM.exists() or not CHROMEDRIVER.exists(), reason="needs /usr/bin/chromium and chromedriver"
)
def test_report_in_headless_chromium(qc_report: Path, tmp_path: Path) -> None:
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    # and a single slice, which has an axial view only
    image, label_map = synthetic_cord((80, 60, 40), seed=2)
    image_path = write_nifti(tmp_path / "slice" / "sub-03_T1w.nii.gz", image[:, :, 20:21])
    segmentation_path = write_nifti(tmp_path / "slice" / "sub-03_T1w_seg.nii.gz", label_map[:, :, 20:21])
    record = json.loads(
        write_qc_entry(image_path, segmentation_path, qc_report, subject="sub-03").read_text()
    )
    assert sorted(record["images"]) == ["axial_background", "axial_overlay"]

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(dir=tmp_path)
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    try:
        driver.set_script_timeout(20)
        driver.get((qc_report / "index.html").as_uri())
        assert driver.execute_script("return document.body.dataset.ready") == "true"
        # Every image (all entries are in the page) loads and has pixels.
        images = driver.execute_async_script(
            """const done = arguments[arguments.length - 1];
            const images = Array.from(document.images);
            const loaded = img => img.complete ? null : new Promise(r => { img.onload = img.onerror = r; });
            Promise.all(images.map(loaded)).then(() => done(
              images.map(img => [img.getAttribute('src'), img.naturalWidth, img.naturalHeight])));"""
        )
        assert len(images) == 2 * 4 + 2
        assert all(width > 0 and height > 0 for _, width, height in images), images
        body = driver.find_element("tag name", "body")
        overlay_visibility = (
            "return getComputedStyle(document.querySelector('article:not([hidden]) img.overlay')).visibility"
        )
        assert driver.execute_script(overlay_visibility) == "visible"
        body.send_keys("t")
        assert driver.execute_script(overlay_visibility) == "hidden"
        driver.find_element("id", "toggle-overlay").click()
        assert driver.execute_script(overlay_visibility) == "visible"
        # Keyboard navigation between entries.
        visible_article = "return document.querySelector('article:not([hidden])').dataset.id"
        first = driver.execute_script(visible_article)
        body.send_keys("j")
        second = driver.execute_script(visible_article)
        assert second != first and driver.execute_script("return mousecordQc.current()") == 1
        body.send_keys("k")
        assert driver.execute_script(visible_article) == first
        # Marks persist in localStorage and are exported.
        body.send_keys("f")
        assert (
            driver.execute_script("return document.querySelector('tr.active td.mark').dataset.mark") == "fail"
        )
        # The page reads its marks when it loads, and Chromium commits localStorage to its store
        # asynchronously: on a loaded machine a page reloaded at once may load before the commit, so reload
        # until the mark shows (at most about 5 s); a mark never stored still fails.
        expected = {first: "fail"}
        for _ in range(10):
            driver.refresh()
            if driver.execute_script("return mousecordQc.marks()") == expected:
                break
            time.sleep(0.5)
        assert driver.execute_script("return mousecordQc.marks()") == expected
        assert f'"{first}"' in driver.execute_script("return mousecordQc.exportText('csv')")
        driver.find_element("id", "export-json").click()
        link = driver.find_element("id", "download")
        assert (
            link.get_attribute("href").startswith("blob:")
            and link.get_attribute("download") == "qc_marks.json"
        )
        driver.save_screenshot(str(tmp_path / "report.png"))
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
    assert (tmp_path / "report.png").stat().st_size > 0


def test_a_single_slice_is_shown_across_its_plane_whatever_its_header_says(tmp_path: Path) -> None:
    """A one-slice image whose header calls the slice coronal: the axial tile is the slice itself (the cord's
    whole section), as ``mousecord segment`` segmented it; the header's superior-inferior axis, asked for,
    cuts it into a line."""
    import nibabel as nib

    image, label_map = synthetic_cord((80, 60, 40), seed=3)
    affine = np.zeros((4, 4))
    affine[0, 0] = affine[2, 1] = affine[1, 2] = 0.05  # array axes along R, S, A
    affine[3, 3] = 1
    paths = []
    for name, data in (("slice_T1w", image[:, :, 20:21]), ("slice_T1w_seg", label_map[:, :, 20:21])):
        paths.append(tmp_path / f"{name}.nii.gz")
        nib.save(nib.Nifti1Image(data, affine), paths[-1])
    cord_pixels = {}
    for cord_axis in ("auto", 1):
        qc_dir = tmp_path / f"qc_{cord_axis}"
        record = json.loads(write_qc_entry(*paths, qc_dir, cord_axis=cord_axis).read_text())
        overlay = matplotlib.image.imread(qc_dir / record["images"]["axial_overlay"])
        cord_pixels[cord_axis] = int((overlay[..., 3] > 0).sum())
        colours = {tuple(np.round(pixel[:3], 3)) for pixel in overlay[overlay[..., 3] > 0]}
        if cord_axis == "auto":
            assert colours == {QC_COLOURS[Label.GM], QC_COLOURS[Label.WM]}
    assert cord_pixels["auto"] > 10 * cord_pixels[1]


@pytest.mark.parametrize(
    ("cord_axis", "tile", "marks", "views"),
    [
        (2, "z", {"A", "R"}, ["sagittal  A↑  I←→S", "coronal  R↑  I←→S"]),
        (0, "x", {"S", "A"}, ["S↑  L←→R", "A↑  L←→R"]),
        (1, "y", {"S", "R"}, ["S↑  P←→A", "R↑  P←→A"]),
    ],
)
def test_the_pictures_name_the_directions_of_the_axes_they_show(cord_axis, tile, marks, views) -> None:
    """Slices across another axis than the header's superior-inferior one are labelled with it."""
    from mousecord.analysis.qc import render_qc_images

    image, label_map = synthetic_cord((60, 50, 12))
    rendered = render_qc_images(image, label_map, voxel_size_mm=(0.05, 0.05, 0.05), cord_axis=cord_axis)
    texts = [text for _, _, text in rendered["axial_labels"]]
    assert all(text.startswith(tile) for text in texts[:-2]) and set(texts[-2:]) == marks
    assert [text for _, _, text in rendered["longitudinal_labels"]] == views
    axial = rendered["captions"]["axial"]
    assert (
        axial == "Axial slices along the cord (A up, subject's R on the left)"
        if cord_axis == 2
        else "S up" in axial
    )


def test_tiles_are_named_by_the_files_own_voxel_axis_and_index(tmp_path: Path) -> None:
    """A file stored with its superior-inferior axis first and flipped (array i runs S -> I) names its
    tiles i<index> with the index a viewer shows, not the canonical z."""
    image, label_map = synthetic_cord((40, 36, 30))
    image[..., :10], label_map[..., :10] = 0, 0  # the cord only in canonical z 10..29
    affine = np.zeros((4, 4))
    affine[2, 0], affine[0, 1], affine[1, 2], affine[3, 3] = -0.05, 0.05, 0.05, 1  # i: S -> I, j: R, k: A
    stored = (2, 0, 1)  # canonical (x, y, z) -> file (z reversed, x, y)
    paths = []
    for name, data in (("img", image), ("img_seg", label_map)):
        paths.append(tmp_path / f"{name}.nii.gz")
        nib.save(nib.Nifti1Image(np.transpose(data, stored)[::-1].copy(), affine), paths[-1])
    record = json.loads(write_qc_entry(*paths, tmp_path / "qc").read_text())
    assert record["slice_axis"] == "i"
    assert min(record["axial_slices"]) == 0 and max(record["axial_slices"]) == 19  # 29 - z for z in 10..29
    canonical = [29 - index for index in record["axial_slices"]]
    assert all(label_map[..., z].any() for z in canonical)


def test_two_folders_images_of_one_name_get_an_entry_each(tmp_path: Path) -> None:
    """``A/chunk.nii.gz`` and ``B/chunk.nii.gz`` in one report: neither entry replaces the other; a rerun
    of either replaces its own."""
    image, label_map = synthetic_cord((40, 36, 8))
    records = []
    for folder in ("A", "B", "A"):
        image_path = write_nifti(tmp_path / folder / "chunk.nii.gz", image)
        segmentation = write_nifti(tmp_path / folder / "chunk_seg.nii.gz", label_map)
        records.append(write_qc_entry(image_path, segmentation, tmp_path / "qc"))
    assert records[0] == records[2] != records[1]
    shown = sorted(json.loads(path.read_text())["image"] for path in (tmp_path / "qc" / "records").iterdir())
    assert shown == [str((tmp_path / folder / "chunk.nii.gz").resolve()) for folder in ("A", "B")]


def test_qc_metrics_from_an_evaluate_json_are_the_segmentations_own_case(tmp_path: Path, capsys) -> None:
    """An evaluate JSON of several cases gives the QC entry of one segmentation that case's numbers, not
    the mean of all; a segmentation evaluate never saw is refused."""
    image, label_map = synthetic_cord((40, 36, 8))
    image_path = write_nifti(tmp_path / "p1.nii.gz", image)
    worse = label_map.copy()
    worse[:, :, :4] = 0
    for name, predicted in (("p1", label_map), ("p2", worse)):
        write_nifti(tmp_path / "pred" / f"{name}_seg.nii.gz", predicted)
        write_nifti(tmp_path / "truth" / f"{name}_seg.nii.gz", label_map)
    evaluation = [
        "evaluate",
        str(tmp_path / "pred"),
        str(tmp_path / "truth"),
        "--json",
        str(tmp_path / "e.json"),
    ]
    assert main([*evaluation, "--quiet"]) == 0
    cases = json.loads((tmp_path / "e.json").read_text())["cases"]
    assert all(Path(case["prediction"][0]).is_absolute() for case in cases)  # found from any folder
    segmentation = tmp_path / "pred" / "p1_seg.nii.gz"
    qc = ["qc", "-i", str(image_path), "-s", str(segmentation), "-qc", str(tmp_path / "qc"), "--quiet"]
    assert main([*qc, "--metrics", str(tmp_path / "e.json")]) == 0
    (record,) = [json.loads(path.read_text()) for path in (tmp_path / "qc" / "records").iterdir()]
    assert record["metrics"]["case"] == "p1" and record["metrics"]["GM"]["dice"] == 1.0
    qc[4] = str(write_nifti(tmp_path / "other_seg.nii.gz", label_map))
    assert main([*qc, "--metrics", str(tmp_path / "e.json")]) == 1
    assert "no case of the evaluation JSON was evaluated on this segmentation" in capsys.readouterr().err
