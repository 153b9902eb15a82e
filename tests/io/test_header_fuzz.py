"""Header fuzzing: seeded mutations of a small valid NIfTI-1 file, each read as ``mousecord segment`` does.

Every mutated file must either load as a finite float volume whose geometry can be written back, or raise a
:class:`~mousecord.errors.MousecordError` whose one-line message names the file; never another exception,
never more than a few CPU seconds, and never a large allocation (a header claiming 2000^3 voxels is refused
before any memory is taken for them). The default run tries 500 mutations, the ``slow`` one 10,000.
"""

from __future__ import annotations

import collections
import contextlib
import gzip
import math
import resource
import shutil
import signal
import struct
import time
import traceback
import tracemalloc
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from mousecord.errors import MousecordError, MousecordWarning
from mousecord.io import load_nifti, read_native, save_like
from mousecord.pipelines import SegmentOptions, load_case, plan_outputs

SHAPE = (12, 10, 6)
VOXEL_MM = 0.05
HEADER_BYTES = 348
#: CPU seconds a case may take (these tiny files read in milliseconds); CPU time, so that a machine busy
#: with other work does not fail the test.
CASE_CPU_SECONDS = 3.0
#: A case still running after this many wall-clock seconds is stopped (a loop that never ends, or a read
#: that never returns, would otherwise hang the suite).
CASE_ALARM_SECONDS = 60.0
#: No case may allocate more than this (bytes): the largest file a case writes holds a few kB of data.
CASE_PEAK_BYTES = 64 * 2**20
#: Headroom of address space over what the test process already maps: an allocation a header claims but
#: the file cannot hold fails at once instead of taking the machine's memory.
ADDRESS_SPACE_HEADROOM = 2 * 2**30

# Byte offsets of NIfTI-1 header fields (little-endian, as nibabel writes on this platform).
_FIELDS: dict[str, tuple[int, str]] = {
    "sizeof_hdr": (0, "i"),
    "dim_info": (39, "B"),
    "dim": (40, "8h"),
    "intent_p": (56, "3f"),
    "intent_code": (68, "h"),
    "datatype": (70, "h"),
    "bitpix": (72, "h"),
    "slice_start": (74, "h"),
    "pixdim": (76, "8f"),
    "vox_offset": (108, "f"),
    "scl_slope": (112, "f"),
    "scl_inter": (116, "f"),
    "slice_end": (120, "h"),
    "slice_code": (122, "B"),
    "xyzt_units": (123, "B"),
    "cal_max": (124, "f"),
    "cal_min": (128, "f"),
    "slice_duration": (132, "f"),
    "toffset": (136, "f"),
    "qform_code": (252, "h"),
    "sform_code": (254, "h"),
    "quatern": (256, "3f"),
    "qoffset": (268, "3f"),
    "srow_x": (280, "4f"),
    "srow_y": (296, "4f"),
    "srow_z": (312, "4f"),
    "magic": (344, "4s"),
    "extension": (348, "4B"),
    "esize_ecode": (352, "2i"),  # the first extension's size and code, where the flag announces one
}

_FLOATS = (0.0, -0.0, -1.0, 1.0, 0.05, -0.05, 1e-30, 1e-6, 20.0, 1e6, 1e30, 3.4e38, -3.4e38)
_SPECIAL_FLOATS = (math.nan, math.inf, -math.inf)
_INT16 = (0, 1, 2, 3, 4, 5, 7, 8, -1, -2, -32768, 32767, 2000, 255, 256, 1000)
#: Valid NIfTI-1 datatype codes with their bitpix, then codes NIfTI does not define.
_DATATYPES = {
    1: 1, 2: 8, 4: 16, 8: 32, 16: 32, 32: 64, 64: 64, 128: 24, 256: 8, 512: 16, 768: 32,
    1024: 64, 1280: 64, 1536: 128, 1792: 128, 2048: 256, 2304: 32,
}  # fmt: skip
_BAD_DATATYPES = (0, 3, 5, 6, 999, -1, -32768, 32767, 255)
_INTENT_CODES = (0, 1, 2, 3, 5, 10, 22, 1001, 1002, 1007, 1011, 2001, 2003, 2004, 2005, -1, 32767)
_FORM_CODES = (0, 1, 2, 3, 4, 5, -1, 6, 127, 32767, -32768)
_MAGICS = (b"n+1\0", b"ni1\0", b"n+2\0", b"\0\0\0\0", b"n+1x", b"N+1\0", b"\xff\xff\xff\xff", b"nii\0")


@dataclass(frozen=True)
class Case:
    """One mutated file: its bytes (uncompressed; gzipped on writing when ``gzipped``) and what was done."""

    index: int
    content: bytes
    gzipped: bool
    mutations: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"fuzz-{self.index:05d}.nii{'.gz' if self.gzipped else ''}"


def _base_file() -> bytes:
    """The valid image every case starts from: 12 x 10 x 6 float32, 0.05 mm, oblique, qform = sform."""
    data = (np.random.default_rng(0).random(SHAPE) * 100 + 1).astype(np.float32)
    angle = np.deg2rad(30)
    affine = np.eye(4)
    affine[:2, :2] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    affine[:3, :3] *= VOXEL_MM
    affine[:3, 3] = [-0.3, 0.25, 1.0]
    image = nib.Nifti1Image(data, affine)
    image.set_qform(affine, 1)
    image.set_sform(affine, 1)
    image.header.set_xyzt_units("mm", "sec")
    return image.to_bytes()


def _get(raw: bytearray, field: str) -> tuple:
    offset, layout = _FIELDS[field]
    return struct.unpack_from("<" + layout, raw, offset)


def _put(raw: bytearray, field: str, *values) -> None:
    offset, layout = _FIELDS[field]
    struct.pack_into("<" + layout, raw, offset, *values)


def _float(rng: np.random.Generator) -> float:
    """A float32 that breaks things: zero, negative, tiny, huge, NaN, inf, or a random one."""
    pick = rng.random()
    if pick < 0.3:
        return float(rng.choice(_SPECIAL_FLOATS))
    if pick < 0.8:
        return float(rng.choice(_FLOATS))
    return float(np.float32(rng.normal() * 10.0 ** rng.integers(-8, 9)))


def _int16(rng: np.random.Generator) -> int:
    return int(rng.choice(_INT16)) if rng.random() < 0.7 else int(rng.integers(-32768, 32768))


def _set_element(raw: bytearray, field: str, index: int, value) -> None:
    values = list(_get(raw, field))
    values[index] = value
    _put(raw, field, *values)


def _mutate_dim(raw: bytearray, rng: np.random.Generator) -> str:
    if rng.random() < 0.2:  # a huge image claimed by a few-kB file
        size = int(rng.choice([2000, 32767, 1024, 513]))
        dims = [3, size, size, size, 1, 1, 1, 1]
        _put(raw, "dim", *dims)
        return f"dim={dims}"
    index, value = int(rng.integers(0, 8)), _int16(rng)
    _set_element(raw, "dim", index, value)
    return f"dim[{index}]={value}"


def _mutate_pixdim(raw: bytearray, rng: np.random.Generator) -> str:
    index = int(rng.integers(0, 8)) if rng.random() < 0.3 else int(rng.integers(1, 4))
    value = _float(rng)
    _set_element(raw, "pixdim", index, value)
    return f"pixdim[{index}]={value}"


def _mutate_datatype(raw: bytearray, rng: np.random.Generator) -> str:
    if rng.random() < 0.75:
        code = int(rng.choice(list(_DATATYPES)))
        bitpix = _DATATYPES[code] if rng.random() < 0.8 else _int16(rng)
    else:
        code, bitpix = int(rng.choice(_BAD_DATATYPES)), _int16(rng)
    _put(raw, "datatype", code)
    _put(raw, "bitpix", bitpix)
    return f"datatype={code},bitpix={bitpix}"


def _mutate_forms(raw: bytearray, rng: np.random.Generator) -> str:
    field = str(rng.choice(["qform_code", "sform_code"]))
    value = int(rng.choice(_FORM_CODES))
    _put(raw, field, value)
    return f"{field}={value}"


def _mutate_quaternion(raw: bytearray, rng: np.random.Generator) -> str:
    field = str(rng.choice(["quatern", "qoffset"]))
    if rng.random() < 0.3:  # b^2 + c^2 + d^2 > 1: no rotation has it
        values = [float(value) for value in rng.uniform(0.7, 2.0, 3)]
        _put(raw, "quatern", *values)
        return f"quatern={values}"
    index, value = int(rng.integers(0, 3)), _float(rng)
    _set_element(raw, field, index, value)
    return f"{field}[{index}]={value}"


def _mutate_srow(raw: bytearray, rng: np.random.Generator) -> str:
    rows = ("srow_x", "srow_y", "srow_z")
    pick = rng.random()
    if pick < 0.15:
        for row in rows:
            _put(raw, row, 0.0, 0.0, 0.0, 0.0)
        return "srow=0"
    if pick < 0.3:  # two equal rows: a singular matrix
        first, second = rng.choice(3, size=2, replace=False)
        _put(raw, rows[second], *_get(raw, rows[first]))
        return f"{rows[second]}={rows[first]}"
    if pick < 0.4:
        value = _float(rng)
        row = str(rng.choice(rows))
        _put(raw, row, value, value, value, value)
        return f"{row}=[{value}]*4"
    row, index, value = str(rng.choice(rows)), int(rng.integers(0, 4)), _float(rng)
    _set_element(raw, row, index, value)
    return f"{row}[{index}]={value}"


def _mutate_scaling(raw: bytearray, rng: np.random.Generator) -> str:
    field = str(rng.choice(["scl_slope", "scl_inter"]))
    value = _float(rng)
    _put(raw, field, value)
    return f"{field}={value}"


def _mutate_vox_offset(raw: bytearray, rng: np.random.Generator) -> str:
    size = len(raw)
    choices = (0.0, 348.0, 351.0, 353.0, 356.0, 362.0, size - 4.0, float(size), size + 16.0, 1e9, 1e30)
    value = float(rng.choice(choices)) if rng.random() < 0.8 else _float(rng)
    _put(raw, "vox_offset", value)
    return f"vox_offset={value}"


def _mutate_intent(raw: bytearray, rng: np.random.Generator) -> str:
    if rng.random() < 0.7:
        value = int(rng.choice(_INTENT_CODES))
        _put(raw, "intent_code", value)
        return f"intent_code={value}"
    index, value = int(rng.integers(0, 3)), _float(rng)
    _set_element(raw, "intent_p", index, value)
    return f"intent_p[{index}]={value}"


def _mutate_magic(raw: bytearray, rng: np.random.Generator) -> str:
    value = bytes(rng.choice(_MAGICS)) if rng.random() < 0.8 else bytes(rng.integers(0, 256, 4, np.uint8))
    _put(raw, "magic", value)
    return f"magic={value!r}"


def _mutate_sizeof_hdr(raw: bytearray, rng: np.random.Generator) -> str:
    value = int(rng.choice([0, 540, 347, 349, -348, 1543569408]))  # the last: 348 byte-swapped
    _put(raw, "sizeof_hdr", value)
    return f"sizeof_hdr={value}"


def _mutate_small_fields(raw: bytearray, rng: np.random.Generator) -> str:
    field = str(rng.choice(["dim_info", "slice_code", "xyzt_units", "slice_start", "slice_end"]))
    value = int(rng.integers(0, 256)) if _FIELDS[field][1] == "B" else _int16(rng)
    _put(raw, field, value)
    return f"{field}={value}"


def _mutate_float_fields(raw: bytearray, rng: np.random.Generator) -> str:
    field = str(rng.choice(["cal_max", "cal_min", "slice_duration", "toffset"]))
    value = _float(rng)
    _put(raw, field, value)
    return f"{field}={value}"


def _mutate_extension(raw: bytearray, rng: np.random.Generator) -> str:
    """Claim an extension after the header; what follows is the image's own data, read as one."""
    flag = [1, 0, 0, 0] if rng.random() < 0.7 else [int(value) for value in rng.integers(0, 256, 4)]
    _put(raw, "extension", *flag)
    if rng.random() < 0.5:  # an extension block header: esize, ecode
        esize = int(rng.choice([0, 8, 16, 7, -8, 2**30, 2**31 - 1]))
        _put(raw, "esize_ecode", esize, int(rng.integers(-4, 40)))
        return f"extension={flag},esize={esize}"
    return f"extension={flag}"


def _mutate_bytes(raw: bytearray, rng: np.random.Generator) -> str:
    positions = sorted(int(position) for position in rng.choice(HEADER_BYTES, int(rng.integers(1, 9))))
    for position in positions:
        raw[position] = int(rng.integers(0, 256))
    return f"bytes{positions}"


def _mutate_length(raw: bytearray, rng: np.random.Generator) -> str:
    """Cut the data (or the header itself), or append bytes."""
    pick = rng.random()
    if pick < 0.8:
        keep = int(rng.integers(0, len(raw)))
        del raw[keep:]
        return f"truncated to {keep} bytes"
    extra = int(rng.integers(1, 64))
    raw.extend(rng.integers(0, 256, extra, np.uint8).tobytes())
    return f"appended {extra} bytes"


#: Mutations and their weights: header fields first, whole-file damage last.
MUTATIONS: dict[Callable[[bytearray, np.random.Generator], str], float] = {
    _mutate_dim: 3,
    _mutate_pixdim: 3,
    _mutate_datatype: 2,
    _mutate_forms: 2,
    _mutate_quaternion: 2,
    _mutate_srow: 2,
    _mutate_scaling: 2,
    _mutate_vox_offset: 2,
    _mutate_intent: 1,
    _mutate_magic: 1,
    _mutate_sizeof_hdr: 0.5,
    _mutate_small_fields: 1,
    _mutate_float_fields: 1,
    _mutate_extension: 1,
    _mutate_bytes: 1,
    _mutate_length: 2,
}


def generate_cases(count: int, seed: int) -> Iterator[Case]:
    """``count`` mutated files, the same for the same seed: one to three mutations each, a third gzipped."""
    rng = np.random.default_rng(seed)
    base = _base_file()
    functions = list(MUTATIONS)
    weights = np.array(list(MUTATIONS.values()))
    weights /= weights.sum()
    for index in range(count):
        raw = bytearray(base)
        chosen = rng.choice(len(functions), size=int(rng.integers(1, 4)), p=weights)
        # truncation last, so that it cuts the file the other mutations made
        chosen = sorted(chosen, key=lambda number: functions[number] is _mutate_length)
        mutations = tuple(functions[number](raw, rng) for number in chosen)
        yield Case(index, bytes(raw), bool(rng.random() < 1 / 3), mutations)


# --- checking one case -------------------------------------------------------------------------------


class CaseTimeout(Exception):
    """A case ran past :data:`CASE_ALARM_SECONDS`."""


@contextlib.contextmanager
def _alarm(seconds: float) -> Iterator[None]:
    """Raise :class:`CaseTimeout` in the block after ``seconds`` of wall-clock time (main thread)."""

    def expire(signum, frame):
        raise CaseTimeout(f"still running after {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def _bounded_address_space(headroom: int) -> Iterator[None]:
    """Limit the process's address space to what it maps now plus ``headroom`` (Linux), then restore it."""
    try:
        mapped = int(Path("/proc/self/statm").read_text().split()[0]) * resource.getpagesize()
    except OSError:
        yield
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = mapped + headroom
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _read_as_segment_does(path: Path, output_folder: Path) -> None:
    """Segment's input checks on ``path``, then what a successful read must give: a finite float32 volume
    whose geometry takes a label map back into the input's space."""
    (case,) = plan_outputs([path], output_folder)
    case.check_writable(output_format="both", probabilities=False)
    image = load_case(case, SegmentOptions()).image
    volume, geometry = image.volume, image.geometry
    assert volume.data.dtype == np.float32 and volume.data.ndim == 3
    assert np.isfinite(volume.data).all()
    assert np.isfinite(volume.affine).all() and abs(np.linalg.det(volume.affine[:3, :3])) > 0
    assert (volume.voxel_size_mm > 0).all() and np.isfinite(volume.voxel_size_mm).all()
    assert volume.axcodes == ("R", "A", "S")
    assert math.prod(geometry.shape) == volume.data.size
    # segment's last step: the label map written into the input's space reads back on the input's grid
    labels = (volume.data > np.median(volume.data)).astype(np.uint8)
    save_like(labels, geometry, case.multilabel, dtype=np.uint8)
    written = nib.load(case.multilabel)
    assert written.shape == (geometry.stored_shape or geometry.shape)
    np.testing.assert_allclose(written.affine, geometry.affine, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(
        geometry.to_native(labels), np.asanyarray(written.dataobj).reshape(geometry.shape)
    )
    case.multilabel.unlink()
    # the data tools' reader
    _, native = read_native(path)
    assert native.shape == geometry.shape


def run_case(case: Case, folder: Path) -> tuple[str, str | None]:
    """Write and read one case; returns its outcome (``loaded`` or the error's class) and any problem."""
    path = folder / case.name
    content = gzip.compress(case.content, compresslevel=1) if case.gzipped else case.content
    path.write_bytes(content)
    problem = None
    tracemalloc.reset_peak()
    started = time.process_time()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with _alarm(CASE_ALARM_SECONDS):
                _read_as_segment_does(path, folder / "out")
            outcome = "loaded"
        except MousecordError as error:
            outcome = type(error).__name__
            message = str(error)
            if "\n" in message or case.name not in message:
                problem = f"{outcome} message is not one line naming the file: {message!r}"
            elif "free memory" in message:
                problem = f"refused only once memory ran out: {message}"
        except Exception as error:  # any other type is a bug, CaseTimeout included
            outcome = type(error).__name__
            where = traceback.extract_tb(error.__traceback__)[-1]
            problem = f"{outcome} at {Path(where.filename).name}:{where.lineno}: {str(error)[:300]}"
    elapsed = time.process_time() - started
    _, peak = tracemalloc.get_traced_memory()
    if problem is None and elapsed > CASE_CPU_SECONDS:
        problem = f"took {elapsed:.1f} s of CPU time"
    if problem is None and peak > CASE_PEAK_BYTES:
        problem = f"allocated {peak / 2**20:.0f} MB"
    for warning in caught:
        if issubclass(warning.category, MousecordWarning) and case.name not in str(warning.message):
            problem = problem or f"warning does not name the file: {warning.message}"
    if path.read_bytes() != content:
        problem = problem or "the input file was changed"
    leftovers = [entry.name for entry in folder.rglob("*") if entry.is_file() and entry != path]
    if leftovers:
        problem = problem or f"files left behind: {leftovers}"
    path.unlink()
    shutil.rmtree(folder / "out", ignore_errors=True)  # what a failed check left must not fail the next case
    return outcome, problem


def fuzz(count: int, seed: int, folder: Path) -> tuple[collections.Counter, list[str]]:
    """Run ``count`` cases; returns how many ended in each outcome and the problems found."""
    outcomes: collections.Counter = collections.Counter()
    problems: list[str] = []
    tracing = tracemalloc.is_tracing()
    if not tracing:
        tracemalloc.start()
    try:
        with _bounded_address_space(ADDRESS_SPACE_HEADROOM):
            for case in generate_cases(count, seed):
                outcome, problem = run_case(case, folder)
                outcomes[outcome] += 1
                if problem:
                    problems.append(f"case {case.index} {case.name} {list(case.mutations)}: {problem}")
    finally:
        if not tracing:
            tracemalloc.stop()
    return outcomes, problems


def _assert_fuzz(count: int, seed: int, folder: Path) -> None:
    started = time.perf_counter()
    outcomes, problems = fuzz(count, seed, folder)
    elapsed = time.perf_counter() - started
    print(f"{count} mutations (seed {seed}) in {elapsed:.1f} s: {dict(outcomes.most_common())}")
    assert not problems, f"{len(problems)} of {count} cases failed:\n" + "\n".join(problems[:20])
    # the generator reaches both ends of the contract
    assert outcomes["loaded"] > count // 20 and sum(outcomes.values()) - outcomes["loaded"] > count // 4


#: What the fuzzer found, each reduced to its field values, and the one-line refusal it now gets.
FOUND: dict[str, tuple[dict[str, tuple], str]] = {
    "qform-nan-pixdim": ({"pixdim": (1.0, 0.05, math.nan, 0.05, 1, 1, 1, 1)}, "qform holds NaN or infinite"),
    "qform-inf-offset": ({"qoffset": (0.0, math.inf, 0.0)}, "qform holds NaN or infinite"),
    "affine-nan-from-qform": (
        {"qoffset": (0.0, math.nan, 0.0), "sform_code": (0,)},
        "affine holds NaN or infinite values",
    ),
    "quaternion-not-a-rotation": ({"quatern": (1.0, 1.0, 1.0)}, "quaternion (quatern_b, quatern_c"),
    "quaternion-not-a-rotation-qform-only": (
        {"quatern": (1.0, 1.0, 1.0), "sform_code": (0,)},
        "invalid qform: its quaternion",
    ),
    "vox-offset-inf": ({"vox_offset": (math.inf,)}, "the data start (vox_offset) is inf"),
    "vox-offset-minus-inf": ({"vox_offset": (-math.inf,)}, "the data start (vox_offset) is -inf"),
    "vox-offset-nan": ({"vox_offset": (math.nan,)}, "the data start (vox_offset) is nan"),
    "vox-offset-zero": ({"vox_offset": (0.0,)}, "the data start (vox_offset) is 0, inside the header"),
    "vox-offset-past-the-end": ({"vox_offset": (1e9,)}, "1e+09 lies past the end of the file"),
    "extension-of-2-gb": (
        {"extension": (1, 0, 0, 0), "vox_offset": (368.0,), "esize_ecode": (2**31 - 1, 4)},
        "a header extension claims 2147483647 bytes, where 16 bytes lie before the data",
    ),
    "parallel-axes": (
        {"srow_y": (0.05 * math.sqrt(3) / 2, -0.025, 0.0, 0.25), "qform_code": (0,)},
        "affine has (nearly) parallel axes",
    ),
}


@pytest.mark.parametrize(("fields", "phrase"), list(FOUND.values()), ids=list(FOUND))
@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_what_the_fuzzer_found_is_one_line_naming_the_file(
    fields: dict[str, tuple], phrase: str, suffix: str, tmp_path: Path
) -> None:
    raw = bytearray(_base_file())
    for field, values in fields.items():
        _put(raw, field, *values)
    path = tmp_path / f"found{suffix}"
    path.write_bytes(gzip.compress(bytes(raw)) if suffix.endswith(".gz") else bytes(raw))
    if suffix == ".nii.gz":
        phrase = phrase.replace("past the end of the file", "beyond what a gzip file of")
    with pytest.raises(MousecordError) as raised:
        load_nifti(path)
    assert str(raised.value).startswith(f"{path}: ") and phrase in str(raised.value)


def test_the_base_file_loads_and_the_generator_is_seeded(tmp_path: Path) -> None:
    path = tmp_path / "base.nii"
    path.write_bytes(_base_file())
    loaded = load_nifti(path)
    assert loaded.volume.shape == (12, 10, 6)
    np.testing.assert_allclose(loaded.volume.voxel_size_mm, VOXEL_MM, rtol=1e-6)
    first, again = list(generate_cases(50, seed=7)), list(generate_cases(50, seed=7))
    assert first == again
    assert len({case.content for case in first}) > 40


def test_mutated_headers_load_or_fail_in_one_line(tmp_path: Path) -> None:
    _assert_fuzz(500, seed=0, folder=tmp_path)


@pytest.mark.slow
def test_ten_thousand_mutated_headers_load_or_fail_in_one_line(tmp_path: Path) -> None:
    _assert_fuzz(10_000, seed=1, folder=tmp_path)
