from __future__ import annotations

import gzip
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from mousecord.errors import HeaderError, ImageFormatError, MousecordWarning, OutputError
from mousecord.io import (
    Volume,
    atomic_output,
    check_not_constant,
    load_nifti,
    save_like,
    save_volume,
    voxel_size_hint,
)

from ..conftest import REAL_HEADER_FILES


def _write(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> Path:
    affine = np.diag([0.05, 0.05, 0.05, 1.0]) if affine is None else affine
    nib.save(nib.Nifti1Image(data, affine), path)
    return path


def test_the_real_header_files_are_in_the_repository() -> None:
    # the parametrised tests below would be skipped, not failed, if the files went missing
    assert [path.name for path in REAL_HEADER_FILES] == [
        "mt1.nii.gz",
        "mt1_gmseg_goldstandard.nii.gz",
        "mt1_seg.nii.gz",
        "t1w.nii.gz",
        "t2.nii.gz",
        "t2s.nii.gz",
        "t2s_gmseg_manual.nii.gz",
        "t2s_seg.nii.gz",
    ]


@pytest.mark.parametrize("path", REAL_HEADER_FILES, ids=lambda path: path.name)
def test_round_trip_is_bit_exact_on_real_headers(path: Path, tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MousecordWarning)  # human voxel sizes
        loaded = load_nifti(path)
    assert loaded.volume.axcodes == ("R", "A", "S")
    output = save_like(loaded.volume.data, loaded.geometry, tmp_path / path.name)

    original, written = nib.load(path), nib.load(output)
    assert written.shape == original.shape
    assert written.get_data_dtype() == original.get_data_dtype()
    np.testing.assert_array_equal(np.asanyarray(written.dataobj), np.asanyarray(original.dataobj))
    np.testing.assert_array_equal(written.affine, original.affine)
    for form in ("get_qform", "get_sform"):
        original_matrix, original_code = getattr(original.header, form)(coded=True)
        written_matrix, written_code = getattr(written.header, form)(coded=True)
        assert written_code == original_code
        np.testing.assert_array_equal(written_matrix, original_matrix)
    np.testing.assert_array_equal(written.header.get_zooms(), original.header.get_zooms())


@pytest.mark.parametrize("path", REAL_HEADER_FILES, ids=lambda path: path.name)
def test_canonical_array_matches_nibabel_canonical(path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MousecordWarning)
        loaded = load_nifti(path)
    reference = nib.as_closest_canonical(nib.load(path))
    np.testing.assert_array_equal(loaded.volume.data, np.asanyarray(reference.dataobj))
    np.testing.assert_allclose(loaded.volume.affine, reference.affine, atol=1e-6)


def test_label_map_written_as_uint8_in_input_space(tmp_path: Path) -> None:
    data = np.arange(5 * 6 * 7, dtype=np.float32).reshape(5, 6, 7)
    affine = np.array(
        [[0, 0, -0.05, 1], [-0.05, 0, 0, 2], [0, 0.1, 0, 3], [0, 0, 0, 1]], dtype=float
    )  # PSR-like
    source = _write(tmp_path / "in.nii.gz", data, affine)
    loaded = load_nifti(source)
    labels = (loaded.volume.data.astype(np.int64) % 3).astype(np.uint8)
    output = save_like(labels, loaded.geometry, tmp_path / "seg.nii.gz")
    written = nib.load(output)
    assert written.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(np.asanyarray(written.dataobj), (data.astype(np.int64) % 3))
    np.testing.assert_array_equal(written.affine, nib.load(source).affine)


def test_singleton_fourth_axis_is_accepted(tmp_path: Path) -> None:
    path = _write(tmp_path / "four.nii.gz", np.ones((4, 5, 6, 1), dtype=np.float32))
    assert load_nifti(path).volume.shape == (4, 5, 6)


@pytest.mark.parametrize("shape", [(4, 5, 6, 2), (4, 5, 6, 1, 2), (4,)])
def test_not_2d_or_3d_is_refused(tmp_path: Path, shape: tuple[int, ...]) -> None:
    path = _write(tmp_path / "bad.nii.gz", np.ones(shape, dtype=np.float32))
    with pytest.raises(ImageFormatError, match=r"bad.nii.gz: expected a 2D or 3D image, got shape"):
        load_nifti(path)


def test_2d_file_is_one_axial_slice_and_written_back_2d(tmp_path: Path) -> None:
    data = np.arange(20, dtype=np.float32).reshape(4, 5)
    path = _write(tmp_path / "slice.nii.gz", data)
    loaded = load_nifti(path)
    assert loaded.volume.shape == (4, 5, 1) and loaded.geometry.stored_shape == (4, 5)
    np.testing.assert_array_equal(loaded.volume.data[..., 0], data)
    written = save_like(loaded.volume.data > 9, loaded.geometry, tmp_path / "mask.nii.gz", dtype=np.uint8)
    back = nib.load(written)
    assert back.shape == (4, 5)
    np.testing.assert_array_equal(np.asarray(back.dataobj), (data > 9).astype(np.uint8))
    np.testing.assert_allclose(back.affine, nib.load(path).affine)


def test_one_volume_4d_file_is_written_back_with_its_4d_shape(tmp_path: Path) -> None:
    path = _write(tmp_path / "four.nii.gz", np.ones((4, 5, 6, 1), dtype=np.float32))
    loaded = load_nifti(path)
    written = save_like(loaded.volume.data > 0, loaded.geometry, tmp_path / "mask.nii.gz", dtype=np.uint8)
    assert nib.load(written).shape == (4, 5, 6, 1)


@pytest.mark.parametrize("bad_value", [np.nan, np.inf])
def test_non_finite_voxels_are_refused(tmp_path: Path, bad_value: float) -> None:
    data = np.ones((4, 5, 6), dtype=np.float32)
    data[1, 2, 3] = bad_value
    path = _write(tmp_path / "nan.nii.gz", data)
    with pytest.raises(ImageFormatError, match=r"nan.nii.gz: 1 voxels are NaN or infinite"):
        load_nifti(path)


def test_disagreeing_qform_and_sform_are_refused(tmp_path: Path) -> None:
    image = nib.Nifti1Image(np.ones((4, 5, 6), dtype=np.float32), np.diag([0.05, 0.05, 0.05, 1]))
    image.set_qform(np.diag([0.05, 0.05, 0.05, 1]), 1)
    shifted = np.diag([0.05, 0.05, 0.05, 1])
    shifted[:3, 3] = [1.0, 0.0, 0.0]
    image.set_sform(shifted, 1)
    path = tmp_path / "forms.nii.gz"
    nib.save(image, path)
    with pytest.raises(HeaderError, match=r"forms.nii.gz: qform and sform disagree"):
        load_nifti(path)


def test_implausible_voxel_size_warns_and_override_fixes_it(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "big.nii.gz", np.ones((4, 5, 6), dtype=np.float32), np.diag([1.0, 1.0, 1.0, 1.0])
    )
    with pytest.warns(MousecordWarning, match=r"big.nii.gz: voxel size \[1.0, 1.0, 1.0\] mm is implausible"):
        load_nifti(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", MousecordWarning)
        loaded = load_nifti(path, voxel_size_mm=(0.05, 0.05, 0.05))
    np.testing.assert_allclose(loaded.volume.voxel_size_mm, 0.05)
    output = save_like(loaded.volume.data, loaded.geometry, tmp_path / "out.nii.gz")
    np.testing.assert_array_equal(nib.load(output).affine, np.diag([1.0, 1.0, 1.0, 1.0]))  # header kept


@pytest.mark.parametrize(
    ("in_plane_mm", "thickness_mm", "implausible"),
    [(0.05, 0.6, False), (0.05, 1.5, False), (0.05, 3.0, True), (0.5, 1.0, True)],
)
def test_thick_slices_are_judged_against_a_slice_thickness(
    tmp_path: Path, in_plane_mm: float, thickness_mm: float, implausible: bool
) -> None:
    """0.05 mm in-plane with 0.6 or 1.5 mm slices is a thick-slice protocol, not a wrong header; 3 mm slices
    are, and so is 0.5 x 0.5 x 1 mm (0.05 x 0.05 x 0.1 mm stored 10x)."""
    affine = np.diag([in_plane_mm, in_plane_mm, thickness_mm, 1])
    path = _write(tmp_path / "thick.nii.gz", np.ones((40, 40, 6), dtype=np.float32), affine)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", MousecordWarning)
        load_nifti(path)
    assert any("implausible" in str(warning.message) for warning in caught) == implausible


def test_a_2d_files_implausible_size_is_judged_and_hinted_in_plane(tmp_path: Path) -> None:
    """A 2D file's override takes x and y: the hint gives two sizes; its slice thickness, which nothing
    uses, does not make a plausible in-plane size implausible."""
    big = _write(
        tmp_path / "big2d.nii.gz", np.ones((40, 50), dtype=np.float32), np.diag([1.0, 1.0, 1.0, 1.0])
    )
    with pytest.warns(
        MousecordWarning, match=r"\[1.0, 1.0\] mm is implausible.*voxel_size_mm=\(0.05, 0.05\)$"
    ):
        load_nifti(big)
    thick = _write(
        tmp_path / "thick.nii.gz", np.ones((40, 50), dtype=np.float32), np.diag([0.05, 0.05, 1.0, 1.0])
    )
    one_slice = _write(  # a one-slice 3D file: its thickness is not judged either
        tmp_path / "one_slice.nii.gz", np.ones((40, 1, 50), dtype=np.float32), np.diag([0.05, 1.0, 0.05, 1.0])
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", MousecordWarning)
        load_nifti(thick)
        load_nifti(one_slice)


@pytest.mark.parametrize("voxel_size", [(0.05, -0.05, 0.05), (0.05,), (0.0, 0.05, 0.05)])
def test_bad_voxel_size_override_is_refused(tmp_path: Path, voxel_size: tuple[float, ...]) -> None:
    path = _write(tmp_path / "img.nii.gz", np.ones((4, 5, 6), dtype=np.float32))
    with pytest.raises(HeaderError, match=r"img.nii.gz: voxel size must be three positive numbers"):
        load_nifti(path, voxel_size_mm=voxel_size)


def test_2d_file_takes_an_in_plane_voxel_size_and_a_3d_file_refuses_it(tmp_path: Path) -> None:
    # a 2D slice stored at 1 mm in-plane, 0.3 mm thick: the override of x and y keeps the thickness
    two_d = _write(tmp_path / "slice.nii.gz", np.ones((4, 5), dtype=np.float32), np.diag([1.0, 1.0, 0.3, 1]))
    with warnings.catch_warnings():
        warnings.simplefilter("error", MousecordWarning)
        loaded = load_nifti(two_d, voxel_size_mm=(0.05, 0.04))
    np.testing.assert_allclose(loaded.volume.voxel_size_mm, [0.05, 0.04, 0.3])
    three_d = _write(tmp_path / "img.nii.gz", np.ones((4, 5, 6), dtype=np.float32))
    with pytest.raises(HeaderError, match=r"img.nii.gz: a 3D image takes three voxel sizes .*got two"):
        load_nifti(three_d, voxel_size_mm=(0.05, 0.05))


def test_missing_file_not_nifti_and_truncated_gzip(tmp_path: Path) -> None:
    with pytest.raises(ImageFormatError, match=r"missing.nii.gz: file not found"):
        load_nifti(tmp_path / "missing.nii.gz")
    text = tmp_path / "notes.nii.gz"
    text.write_text("not an image")
    with pytest.raises(ImageFormatError, match=r"notes.nii.gz: not a readable NIfTI file"):
        load_nifti(text)
    good = _write(tmp_path / "good.nii.gz", np.random.default_rng(0).random((20, 20, 20), dtype=np.float32))
    truncated = tmp_path / "truncated.nii.gz"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ImageFormatError, match=r"truncated.nii.gz: (data cannot be read|not a readable)"):
        load_nifti(truncated)


def test_output_never_overwrites_input(tmp_path: Path) -> None:
    path = _write(tmp_path / "img.nii.gz", np.ones((4, 5, 6), dtype=np.float32))
    before = path.read_bytes()
    loaded = load_nifti(path)
    with pytest.raises(OutputError, match="would overwrite the input"):
        save_like(loaded.volume.data, loaded.geometry, path)
    assert path.read_bytes() == before


def test_atomic_output_leaves_nothing_on_error(tmp_path: Path) -> None:
    target = tmp_path / "result.nii.gz"
    with pytest.raises(RuntimeError), atomic_output(target) as temporary:
        temporary.write_bytes(b"partial")
        raise RuntimeError("crash while writing")
    assert list(tmp_path.iterdir()) == []


def test_unwritable_output_folder(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match=r"out.nii.gz: output folder .*file is a file, not a folder"):
        save_volume(Volume(np.zeros((2, 2, 2)), np.eye(4)), blocker / "out.nii.gz")


def test_gzip_module_is_what_reads_compressed_files(tmp_path: Path) -> None:
    # a .nii.gz written by save_volume is a real gzip stream, readable by the standard library
    path = save_volume(Volume(np.zeros((2, 3, 4), np.float32), np.eye(4)), tmp_path / "v.nii.gz")
    with gzip.open(path) as stream:
        assert len(stream.read()) == 352 + 2 * 3 * 4 * 4


def test_constant_image_is_refused_by_its_check() -> None:
    check_not_constant(np.arange(8.0).reshape(2, 2, 2), name="ramp.nii.gz")
    with pytest.raises(ImageFormatError, match=r"^flat.nii.gz: image is constant \(every voxel 7.5\)"):
        check_not_constant(np.full((2, 3, 4), 7.5, np.float32), name="flat.nii.gz")


@pytest.mark.parametrize(
    ("voxel_size", "hint"),
    [
        ((1.0, 1.0, 1.0), "if it is 0.1 mm (header x10), give voxel_size_mm=(0.1, 0.1, 0.1); if it is"),
        ((1.0, 1.0, 8.0), "if it is 0.05 x 0.05 x 0.4 mm (header x20), give voxel_size_mm=(0.05, 0.05, 0.4"),
        ((7.0, 7.0, 7.0), ""),
        ((0.05, 0.05, 0.05), ""),
    ],
)
def test_voxel_size_hint_names_the_scaled_header_sizes(voxel_size: tuple[float, ...], hint: str) -> None:
    assert voxel_size_hint(voxel_size).startswith(hint) and bool(voxel_size_hint(voxel_size)) == bool(hint)


def test_voxel_size_hint_in_canonical_axes_spells_out_isotropic_sizes_only() -> None:
    assert voxel_size_hint((1.0, 1.0, 1.0), file_axes=False).endswith("voxel_size_mm=(0.05, 0.05, 0.05)")
    assert "in the file's axis order" in voxel_size_hint((1.0, 8.0, 1.0), file_axes=False)


def test_a_highly_compressed_gzip_file_is_not_mistaken_for_a_truncated_one(tmp_path: Path) -> None:
    # all-zero data at gzip's best level: the densest a real .nii.gz gets (close to DEFLATE's 1032:1)
    image = nib.Nifti1Image(np.zeros((400, 400, 100), np.uint8), np.diag([0.05, 0.05, 0.05, 1.0]))
    path = tmp_path / "zeros.nii.gz"
    path.write_bytes(gzip.compress(image.to_bytes(), compresslevel=9))
    assert load_nifti(path).volume.shape == (400, 400, 100)


def test_running_out_of_memory_while_reading_is_one_line(tmp_path: Path, monkeypatch) -> None:
    path = _write(tmp_path / "img.nii.gz", np.ones((4, 5, 6), dtype=np.float32))

    def no_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(nib.arrayproxy.ArrayProxy, "__array__", no_memory)
    with pytest.raises(
        ImageFormatError, match=r"img.nii.gz: header claims 120 voxels \(480 bytes\), more than"
    ):
        load_nifti(path)


def test_degenerate_affine_names_the_file(tmp_path: Path) -> None:
    image = nib.Nifti1Image(np.ones((4, 5, 6), dtype=np.float32), np.diag([0.05, 0.05, 0.05, 1.0]))
    image.header["srow_x"] = [0, 0, 0, 0]
    image.header["qform_code"], image.header["sform_code"] = 0, 1
    image.update_header = lambda: None  # save the header as set
    nib.save(image, tmp_path / "flat_axis.nii.gz")
    for voxel_size in (None, (0.05, 0.05, 0.05)):
        with pytest.raises(HeaderError, match=r"flat_axis.nii.gz: affine has a degenerate axis"):
            load_nifti(tmp_path / "flat_axis.nii.gz", voxel_size_mm=voxel_size)
