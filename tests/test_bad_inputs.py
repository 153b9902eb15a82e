"""The bad-input catalogue (issue 15): each bad input, given to the ``mousecord`` command as a user would.

Every error case asserts the exit status (1), one ``mousecord: error:`` line naming the file and the problem,
that no output and no temporary file was left and that the inputs are byte for byte unchanged. The warning
cases assert that mousecord (not nibabel) says what is wrong, naming the file. Arrays are tiny (12 x 12 x 8)
so the whole table runs in seconds; the interruption tests run the command in a subprocess.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import logging
import os
import signal
import struct
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from mousecord.cli.main import main
from mousecord.io.atomic import STALE_TEMPORARY_AGE_S, atomic_output, remove_stale_temporaries
from tests.inference.helpers import tiny_bundle_folder
from tests.models.nnunet_fixtures import RunsShell, make_nnunet_folder

SHAPE = (12, 12, 8)
AFFINE = np.diag([0.05, 0.05, 0.05, 1.0])
#: Options that keep the in-process runs small and deterministic.
FAST = ["--quiet", "--threads", "1", "--backend", "torch", "--device", "cpu"]


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_bundle_folder(tmp_path_factory.mktemp("models") / "tiny", spacing_mm=(0.05, 0.05, 0.05))


@pytest.fixture
def nibabel_output() -> Iterator[list[str]]:
    """What nibabel's own logger would have printed (it must print nothing: mousecord speaks instead)."""
    printed: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            printed.append(record.getMessage())

    handler = Keep()
    nib.imageglobals.logger.addHandler(handler)
    yield printed
    nib.imageglobals.logger.removeHandler(handler)


# --- building bad inputs -------------------------------------------------------------------------------


def _image(seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random(SHAPE) * 100 + 1).astype(np.float32)


def _save(path: Path, data: np.ndarray, affine: np.ndarray = AFFINE) -> Path:
    nib.save(nib.Nifti1Image(data, affine), path)
    return path


def _header_only(path: Path, shape: tuple[int, ...], dtype: type, *, zooms=(0.05, 0.05, 0.05)) -> Path:
    """A header claiming ``shape`` followed by a hundred bytes of data (gzip-compressed for .nii.gz)."""
    header = nib.Nifti1Header()
    header.set_data_dtype(dtype)
    header.set_data_shape(shape)
    header.set_zooms(zooms)
    header.set_qform(AFFINE, 1)
    header.set_sform(AFFINE, 1)
    header.set_data_offset(352)
    content = header.binaryblock + b"\0" * 4 + b"\0" * 100  # 4 bytes of (empty) extension flag, then data
    path.write_bytes(gzip.compress(content) if path.name.endswith(".gz") else content)
    return path


def _raw_pixdim(path: Path, pixdim: tuple[float, float, float]) -> Path:
    """A file with no qform/sform, so its geometry comes from ``pixdim`` as stored (nibabel fixes on read)."""
    header = nib.Nifti1Header()
    header.set_data_dtype(np.float32)
    header.set_data_shape(SHAPE)
    header["pixdim"][1:4] = pixdim  # bypasses set_zooms, which refuses non-positive values
    header.set_data_offset(352)
    path.write_bytes(gzip.compress(header.binaryblock + b"\0" * 4 + _image().tobytes(order="F")))
    return path


def _with_datatype_code(path: Path, code: int, bitpix: int) -> Path:
    """Overwrite the datatype and bitpix fields of an uncompressed NIfTI-1 file."""
    raw = bytearray(path.read_bytes())
    raw[70:74] = struct.pack("<hh", code, bitpix)
    path.write_bytes(bytes(raw))
    return path


def _degenerate(path: Path) -> Path:
    image = nib.Nifti1Image(_image(), AFFINE)
    header = image.header
    header["qform_code"], header["sform_code"] = 0, 1
    header["srow_x"] = [0, 0, 0, 0]  # the first voxel axis has no direction: a zero-size axis
    image.update_header = lambda: None  # keep the header exactly as set (nibabel would recompute it)
    nib.save(image, path)
    return path


def _qform_sform_apart(path: Path) -> Path:
    image = nib.Nifti1Image(_image(), AFFINE)
    shifted = AFFINE.copy()
    shifted[0, 3] += 1.0  # 1 mm = 20 voxels
    image.set_qform(AFFINE, 1)
    image.set_sform(shifted, 1)
    nib.save(image, path)
    return path


def _zip_with(path: Path, name: str, *, link: bool = False) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("tiny/model.json", "{}")
        entry = zipfile.ZipInfo(name)
        if link:
            entry.external_attr = 0o120777 << 16  # a symbolic link, whose target is the entry's content
        archive.writestr(entry, "/etc/passwd" if link else "x")
    return path


def _label_map() -> np.ndarray:
    labels = np.zeros(SHAPE, np.uint8)
    labels[3:9, 3:9, :] = 2
    labels[5:7, 5:7, :] = 1
    return labels


# --- the error table -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BadInput:
    """One row of the catalogue.

    Attributes:
        build: makes the inputs under the given folder; returns the command's arguments (``{model}`` is
            replaced by the tiny model's folder, ``{out}`` by the output folder).
        phrases: what the error line must say (the file's name among them).
        exit_code: the expected exit status.
    """

    build: Callable[[Path], list[str]]
    phrases: tuple[str, ...]
    exit_code: int = 1


def _segment(
    source: Path | str, *extra: str, output: Path | str = "{out}/out.nii.gz", model: Path | str = "{model}"
) -> list[str]:
    return ["segment", "-i", str(source), "-o", str(output), "--model", str(model), *FAST, *extra]


def _evaluate(prediction: Path, truth: Path) -> list[str]:
    return ["evaluate", str(prediction), str(truth), "-o", "{out}/metrics.csv"]


def _symlinked_output(folder: Path) -> list[str]:
    source = _save(folder / "img.nii.gz", _image())
    (folder / "link.nii.gz").symlink_to(source)
    return _segment(source, output=folder / "link.nii.gz")


def _evaluation_pair(prediction: np.ndarray, *, shift_mm: float = 0.0) -> Callable[[Path], list[str]]:
    def build(folder: Path) -> list[str]:
        truth = _save(folder / "truth.nii.gz", _label_map())
        affine = AFFINE.copy()
        affine[0, 3] += shift_mm
        return _evaluate(_save(folder / "pred.nii.gz", prediction, affine), truth)

    return build


def _truncated_gzip(folder: Path) -> list[str]:
    good = _save(folder / "good.nii.gz", _image())
    (folder / "truncated.nii.gz").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    good.unlink()
    return _segment(folder / "truncated.nii.gz")


def _truncated_weights(folder: Path) -> list[str]:
    model = tiny_bundle_folder(folder / "broken-model", spacing_mm=(0.05, 0.05, 0.05))
    weights = model / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    return _segment(_save(folder / "img.nii.gz", _image()), model=model)


def _random_weights(folder: Path) -> list[str]:
    """Weights overwritten with random bytes of the same size (they once loaded and segmented nothing)."""
    model = tiny_bundle_folder(folder / "tampered-model", spacing_mm=(0.05, 0.05, 0.05))
    weights = model / "weights.safetensors"
    weights.write_bytes(np.random.default_rng(0).bytes(weights.stat().st_size))
    return _segment(_save(folder / "img.nii.gz", _image()), model=model)


def _checkpoint_running_code(folder: Path) -> list[str]:
    """An nnU-Net checkpoint whose pickle would create a file: nothing may appear (checked by the test)."""
    results = make_nnunet_folder(folder / "nnunet", features_per_stage=(4, 8, 16, 32, 32, 32))
    checkpoint = {"payload": RunsShell(folder / "payload-ran"), "network_weights": {}}
    torch.save(checkpoint, results / "fold_0" / "checkpoint_final.pth")
    return _segment(_save(folder / "img.nii.gz", _image()), model=results)


def _binary(folder: Path) -> list[str]:
    return _segment(_with_datatype_code(_save(folder / "binary.nii", np.ones(SHAPE, np.uint8)), 1, 1))


def _rgb(folder: Path) -> list[str]:
    rgb = np.zeros(SHAPE, dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    return _segment(_save(folder / "rgb.nii.gz", rgb))


def _complex(dtype: type) -> Callable[[Path], list[str]]:
    def build(folder: Path) -> list[str]:
        data = (_image(0) + 1j * _image(1)).astype(dtype)
        return _segment(_save(folder / f"{np.dtype(dtype).name}.nii.gz", data))

    return build


def _with_value(value: float) -> Callable[[Path], list[str]]:
    def build(folder: Path) -> list[str]:
        data = _image()
        data[1, 2, 3] = value
        return _segment(_save(folder / "bad_values.nii.gz", data))

    return build


ERRORS: dict[str, BadInput] = {
    "missing-file": BadInput(
        lambda folder: _segment(folder / "missing.nii.gz"), ("missing.nii.gz", "not found")
    ),
    "not-nifti": BadInput(
        lambda folder: _segment(_write_text(folder / "notes.nii.gz", "not an image")),
        ("notes.nii.gz", "not a readable NIfTI file"),
    ),
    "truncated-gzip": BadInput(_truncated_gzip, ("truncated.nii.gz", "truncated or corrupt")),
    "4d-two-volumes": BadInput(
        lambda folder: _segment(_save(folder / "4d.nii.gz", np.stack([_image(), _image(1)], axis=-1))),
        ("4d.nii.gz", "expected a 2D or 3D image", "(12, 12, 8, 2)"),
    ),
    "nan": BadInput(_with_value(np.nan), ("bad_values.nii.gz", "1 voxels are NaN or infinite")),
    "inf": BadInput(_with_value(np.inf), ("bad_values.nii.gz", "1 voxels are NaN or infinite")),
    "empty-axis": BadInput(
        lambda folder: _segment(_save(folder / "empty.nii.gz", np.zeros((12, 0, 8), np.float32))),
        ("empty.nii.gz", "empty axis"),
    ),
    "qform-sform-disagree": BadInput(
        lambda folder: _segment(_qform_sform_apart(folder / "forms.nii.gz")),
        ("forms.nii.gz", "qform and sform disagree"),
    ),
    "rgb24": BadInput(_rgb, ("rgb.nii.gz", "datatype RGB24 (code 128)", "colour image")),
    "binary-datatype": BadInput(_binary, ("binary.nii", "datatype binary (code 1", "save it as uint8")),
    "complex64": BadInput(
        _complex(np.complex64),
        ("complex64.nii.gz", "complex64 (code 32)", "complex data: convert to magnitude"),
    ),
    "complex128": BadInput(
        _complex(np.complex128),
        ("complex128.nii.gz", "complex128 (code 1792)", "complex data: convert to magnitude"),
    ),
    "constant": BadInput(
        lambda folder: _segment(_save(folder / "constant.nii.gz", np.full(SHAPE, 7.0, np.float32))),
        ("constant.nii.gz", "image is constant (every voxel 7): nothing to segment"),
    ),
    "all-zero": BadInput(
        lambda folder: _segment(_save(folder / "zero.nii.gz", np.zeros(SHAPE, np.float32))),
        ("zero.nii.gz", "image is constant (every voxel 0): nothing to segment"),
    ),
    "huge-header-float32": BadInput(
        lambda folder: _segment(_header_only(folder / "huge.nii", (2000, 2000, 2000), np.float32)),
        ("huge.nii", "file is truncated", "2000 x 2000 x 2000 voxels of float32 (32 GB)", "holds 100 bytes"),
    ),
    "huge-header-uint8": BadInput(
        lambda folder: _segment(_header_only(folder / "huge.nii", (2000, 2000, 2000), np.uint8)),
        ("huge.nii", "file is truncated", "voxels of uint8 (8 GB)"),
    ),
    "huge-header-gzip": BadInput(
        lambda folder: _segment(_header_only(folder / "huge.nii.gz", (2000, 2000, 2000), np.float32)),
        ("huge.nii.gz", "file is truncated", "(32 GB), more than a gzip file of"),
    ),
    "degenerate-affine": BadInput(
        lambda folder: _segment(_degenerate(folder / "degenerate.nii.gz")),
        ("degenerate.nii.gz: affine has a degenerate axis",),
    ),
    "voxel-size-x20": BadInput(
        lambda folder: _segment(
            _save(folder / "mm.nii.gz", _image(), np.diag([1.0, 1.0, 1.0, 1.0])), "--max-voxels", "1e5"
        ),
        (
            "mm.nii.gz",
            "header voxel size (1 x 1 x 1 mm)",
            "if it is 0.05 mm (header x20), give --voxel-size 0.05",
        ),
    ),
    "voxel-size-unexplained": BadInput(
        lambda folder: _segment(
            _save(folder / "mm.nii.gz", _image(), np.diag([7.0, 7.0, 7.0, 1.0])), "--max-voxels", "1e5"
        ),
        ("mm.nii.gz", "header voxel size (7 x 7 x 7 mm)", "Give the true size as --voxel-size"),
    ),
    "in-plane-voxel-size-for-3d": BadInput(
        lambda folder: _segment(_save(folder / "img.nii.gz", _image()), "--voxel-size", "0.05", "0.05"),
        ("img.nii.gz", "a 3D image takes three voxel sizes (x y z in mm), got two"),
    ),
    "output-is-input": BadInput(
        lambda folder: _segment(_save(folder / "img.nii.gz", _image()), output=folder / "img.nii.gz"),
        ("img.nii.gz", "would overwrite the input"),
    ),
    "output-is-input-through-symlink": BadInput(
        _symlinked_output, ("link.nii.gz", "would overwrite the input")
    ),
    "unknown-model": BadInput(
        lambda folder: _segment(
            _save(folder / "img.nii.gz", _image()),
            "--models-dir",
            str(folder / "models"),
            model="no-such-model",
        ),
        ("no-such-model", "unknown model"),
    ),
    "truncated-weights": BadInput(_truncated_weights, ("weights.safetensors", "corrupt or was replaced")),
    "weights-overwritten-random": BadInput(
        _random_weights,
        ("tampered-model/weights.safetensors", "weights do not match the sha256 recorded in model.json"),
    ),
    "checkpoint-runs-code": BadInput(
        _checkpoint_running_code,
        ("fold_0/checkpoint_final.pth", "unsafe checkpoint refused", "posix.system", "nothing in it was run"),
    ),
    "evaluate-labels-out-of-range": BadInput(
        _evaluation_pair(np.full(SHAPE, 3, np.uint8)), ("pred.nii.gz", "expected label values")
    ),
    "evaluate-shape-mismatch": BadInput(
        _evaluation_pair(np.zeros((12, 12, 9), np.uint8)), ("pred.nii.gz", "differs from truth")
    ),
    "evaluate-grids-3mm-apart": BadInput(
        _evaluation_pair(_label_map(), shift_mm=3.0),
        ("pred.nii.gz", "not on the same grid in space as truth", "truth.nii.gz", "3 mm = 60 voxels apart"),
    ),
    "evaluate-grids-one-voxel-apart": BadInput(
        _evaluation_pair(_label_map(), shift_mm=0.05),
        ("pred.nii.gz", "not on the same grid in space as truth", "0.05 mm = 1 voxel apart"),
    ),
    "zip-parent-entry": BadInput(
        lambda folder: _install(_zip_with(folder / "model.zip", "tiny/../../evil.txt")),
        ("model.zip", "unsafe entry 'tiny/../../evil.txt' (a '..' component)"),
    ),
    "zip-absolute-entry": BadInput(
        lambda folder: _install(_zip_with(folder / "model.zip", "/tmp/evil.txt")),
        ("model.zip", "(an absolute path)"),
    ),
    "zip-link-entry": BadInput(
        lambda folder: _install(_zip_with(folder / "model.zip", "tiny/passwd", link=True)),
        ("model.zip", "(a symbolic link)"),
    ),
}


def _write_text(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _install(archive: Path) -> list[str]:
    return ["models", "install", str(archive), "--models-dir", "{out}/models"]


def _files(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones included) and its bytes; links are read through."""
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file() or path.is_symlink()
    }


@pytest.mark.parametrize("case", list(ERRORS.values()), ids=list(ERRORS))
def test_bad_input_is_one_line_naming_the_file_and_leaves_nothing(
    case: BadInput,
    model_folder: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    nibabel_output: list[str],
) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    arguments = case.build(inputs)
    before = _files(tmp_path)
    output = tmp_path / "out"
    arguments = [value.format(model=model_folder, out=output) for value in arguments]

    assert main(arguments) == case.exit_code

    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("mousecord: error:")]
    assert len(errors) == 1, errors
    for phrase in case.phrases:
        assert phrase in errors[0]
    assert _files(tmp_path) == before  # no output, no temporary file, inputs byte for byte the same
    assert not nibabel_output


# --- warnings: the image is still segmented, and mousecord says what it assumed -----------------------


@dataclass(frozen=True)
class Suspicious:
    build: Callable[[Path], Path]
    phrases: tuple[str, ...]
    #: nibabel's own words, which must not be printed.
    nibabel_words: tuple[str, ...] = field(default=("pixdim[1,2,3]", "setting"))


WARNINGS: dict[str, Suspicious] = {
    "negative-pixdim": Suspicious(
        lambda folder: _raw_pixdim(folder / "negative.nii.gz", (-0.05, 0.05, 0.05)),
        ("negative.nii.gz: invalid header", "voxel size (pixdim) negative on some axis; its absolute value"),
    ),
    "zero-pixdim": Suspicious(
        lambda folder: _raw_pixdim(folder / "zero_pixdim.nii.gz", (0.0, 0.05, 0.05)),
        (
            "zero_pixdim.nii.gz: invalid header",
            "voxel size (pixdim) zero on some axis, read as 1 mm",
            "--voxel-size",
        ),
    ),
}


@pytest.mark.parametrize("case", list(WARNINGS.values()), ids=list(WARNINGS))
def test_fixed_header_is_one_mousecord_warning_not_nibabel_output(
    case: Suspicious,
    model_folder: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    nibabel_output: list[str],
) -> None:
    source = case.build(tmp_path)
    content = source.read_bytes()
    output = tmp_path / "out"
    assert main(_segment(source, output=output / "out.nii.gz", model=model_folder)) == 0

    err = capsys.readouterr().err
    warning = next(line for line in err.splitlines() if "invalid header" in line)
    for phrase in case.phrases:
        assert phrase in warning
    assert not nibabel_output
    assert not any(
        word in line for line in err.splitlines() for word in case.nibabel_words if line != warning
    )
    assert sorted(path.name for path in output.iterdir()) == [
        "out.json",
        "out.nii.gz",
        "out_GM_seg.nii.gz",
        "out_WM_seg.nii.gz",
    ]
    assert source.read_bytes() == content


# --- stale temporary files -----------------------------------------------------------------------------


def test_a_killed_runs_temporary_files_are_removed_and_nothing_else(
    model_folder: Path, tmp_path: Path
) -> None:
    """The next run removes the temporary files a SIGKILL left (mousecord's exact name pattern, same
    target, old); a fresh one (a parallel writer's) and every look-alike stay."""
    source = _save(tmp_path / "img.nii.gz", _image())
    output = tmp_path / "out"
    output.mkdir()
    stale = [".out.0123abcd.tmp.nii.gz", ".out_GM_seg.89abcdef.tmp.nii.gz", ".out.deadbeef.tmp.json"]
    kept = [
        ".out.fedcba98.tmp.nii.gz",  # fresh: a parallel writer's file in progress (made young below)
        ".out.0123abcd.tmp.nii.gz.bak",
        ".out.0123ABCD.tmp.nii.gz",  # upper-case hex: not a name mousecord writes
        ".out.0123abc.tmp.nii.gz",
        ".out.0123abcde.tmp.nii.gz",
        "out.0123abcd.tmp.nii.gz",
        ".other.0123abcd.tmp.nii.gz",
        ".out.x.0123abcd.tmp.nii.gz",
        ".out.0123abcd.tmp.nii",
        ".out.0123abcd.tmp.nii.gz~",
    ]
    old = time.time() - 2 * STALE_TEMPORARY_AGE_S
    for name in stale + kept:
        (output / name).write_bytes(b"leftover")
        os.utime(output / name, (old, old))
    os.utime(output / kept[0])  # now
    (output / ".out.13572468.tmp.nii.gz").mkdir()  # the right name, but a folder: not ours
    (output / ".out.24681357.tmp.nii.gz").symlink_to(source)  # the right name, but a link: not ours
    os.utime(output / ".out.13572468.tmp.nii.gz", (old, old))
    kept += [".out.13572468.tmp.nii.gz", ".out.24681357.tmp.nii.gz"]

    assert main(_segment(source, output=output / "out.nii.gz", model=model_folder)) == 0

    outputs = ["out.json", "out.nii.gz", "out_GM_seg.nii.gz", "out_WM_seg.nii.gz"]
    assert sorted(path.name for path in output.iterdir()) == sorted(kept + outputs)
    for name in kept[:-2]:
        assert (output / name).read_bytes() == b"leftover"


def test_stale_temporary_cleanup_is_per_target(tmp_path: Path) -> None:
    other = tmp_path / ".b.0123abcd.tmp.nii.gz"
    mine = tmp_path / ".a.0123abcd.tmp.nii.gz"
    for path in (other, mine):
        path.write_bytes(b"x")
        os.utime(path, (0, 0))
    assert remove_stale_temporaries(tmp_path / "a.nii.gz") == [mine]
    assert other.exists()
    with atomic_output(tmp_path / "b.nii.gz") as temporary:
        temporary.write_bytes(b"new")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["b.nii.gz"]


# --- interruption ---------------------------------------------------------------------------------------


def _a_case_finished(output: Path) -> bool:
    """Whether a sidecar in ``output`` is a finished run's (a pending one is written before the images)."""
    for sidecar in output.glob("*_seg.json"):
        with contextlib.suppress(OSError, ValueError):
            if json.loads(sidecar.read_text()).get("complete"):
                return True
    return False


@pytest.mark.parametrize(
    ("signum", "exit_code", "message"),
    [
        (signal.SIGTERM, 143, "interrupted (SIGTERM)"),
        (signal.SIGINT, 130, "interrupted"),
    ],
    ids=["SIGTERM", "SIGINT"],
)
def test_a_signal_during_segment_stops_cleanly(
    model_folder: Path, tmp_path: Path, signum: int, exit_code: int, message: str
) -> None:
    """SIGTERM is handled as SIGINT: the command stops between or inside cases, removes the case in
    progress and its temporary files, prints one line and exits with 128 + the signal's number."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    data = (np.random.default_rng(0).random((32, 32, 32)) * 100 + 1).astype(np.float32)
    for index in range(8):
        _save(inputs / f"case{index}.nii.gz", data)
    before = _files(inputs)
    output = tmp_path / "out"
    command = [sys.executable, "-m", "mousecord", "segment", "-i", str(inputs), "-o", str(output)]
    command += ["--model", str(model_folder), "--tta", *FAST]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # a background job may inherit SIGINT ignored, and Python then keeps it ignored
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 60
        while not _a_case_finished(output) and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        process.send_signal(signum)  # while the next case is being segmented
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == exit_code, err
    assert err.strip().splitlines()[-1] == f"mousecord: error: {message}"
    names = sorted(path.name for path in output.iterdir())
    assert not [name for name in names if name.startswith(".")]  # no temporary file
    done = {name.removesuffix("_seg.json") for name in names if name.endswith("_seg.json")}
    assert done and len(done) < 8
    expected = sorted(
        f"{case}{suffix}"
        for case in done
        for suffix in ("_seg.json", "_seg.nii.gz", "_GM_seg.nii.gz", "_WM_seg.nii.gz")
    )
    assert names == expected  # finished cases complete, the interrupted one gone
    assert _files(inputs) == before
