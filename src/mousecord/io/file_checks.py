"""Checks of a NIfTI file before and while its voxels are read: the byte layout (header size, data offset,
truncation, gzip bombs), the datatype (colour, complex, binary), the data size against memory, and the
errors of reading turned into one-line messages naming the file (nibabel, numpy)."""

from __future__ import annotations

import contextlib
import gzip
import math
import re
import zlib
from collections.abc import Iterator
from pathlib import Path

import nibabel as nib
import numpy as np

from mousecord.errors import ImageFormatError
from mousecord.io.header_checks import error_reason

#: DEFLATE cannot compress more than 1032:1, so a .nii.gz file of n bytes holds at most about 1032 n bytes
#: of data (a margin above it keeps the check from ever refusing a whole file).
_MAX_GZIP_RATIO = 1100


#: Data types refused at load time: nibabel reads them, but mousecord needs one real number per voxel.
_COLOUR_HINT = "a colour image: convert it to one greyscale channel first"


_COMPLEX_HINT = "complex data: convert to magnitude first"


def check_layout(path: Path) -> None:
    """Refuse a ``.nii`` or ``.nii.gz`` file whose header places data or extensions where nibabel would
    fail or read without bound: a data offset (``vox_offset``) that is not a number, is 0 (the data would
    be the header itself) or lies past the end of the file, or a header extension whose size runs past the
    data's start (nibabel reads each extension in one piece of the size it claims, up to 2 GB).

    Anything else wrong with the header is left to nibabel, which reads it next.
    """
    name = path.name.lower()
    if not name.endswith((".nii", ".nii.gz")):
        return
    file_bytes = path.stat().st_size
    end = file_bytes if name.endswith(".nii") else _MAX_GZIP_RATIO * file_bytes
    try:
        with (gzip.open if name.endswith(".gz") else open)(path, "rb") as stream:
            block = stream.read(nib.Nifti2Header.template_dtype.itemsize + 4)
            header = _raw_header(block)
            if header is None:
                return  # too short or not NIfTI: nibabel says which
            start = header.template_dtype.itemsize + 4  # the header, then 4 bytes of extension flags
            offset = float(header["vox_offset"])
            if not math.isfinite(offset) or offset == 0 or offset > end:
                raise ImageFormatError(
                    f"{path}: invalid NIfTI header: the data start (vox_offset) "
                    f"{_offset_problem(offset, file_bytes, gzipped=name.endswith('.gz'))}"
                )
            if len(block) < start or block[start - 4] == 0:
                return  # no extensions
            remaining = offset - start  # nibabel refuses a positive vox_offset inside the header itself
            stream.seek(start)
            while remaining >= 16:  # nibabel's loop over the extensions, reading only their sizes
                head = stream.read(8)
                if len(head) < 8:
                    return  # nibabel reports the missing extension header
                size = int(np.frombuffer(head[:4], dtype=f"{header.endianness}i4")[0])
                if not 8 <= size <= remaining:
                    raise ImageFormatError(
                        f"{path}: invalid NIfTI header: a header extension claims {size} bytes, where "
                        f"{remaining:g} bytes lie before the data (vox_offset {offset:g})"
                    )
                stream.seek(size - 8, 1)
                remaining -= size
    except (OSError, EOFError, zlib.error):
        return  # unreadable: nibabel's error says so


def _offset_problem(offset: float, file_bytes: int, *, gzipped: bool) -> str:
    if not math.isfinite(offset):
        return f"is {offset:g}"
    if offset == 0:
        return "is 0, inside the header"
    if gzipped:
        return f"{offset:g} lies beyond what a gzip file of {_format_bytes(file_bytes)} can hold"
    return f"{offset:g} lies past the end of the file ({_format_bytes(file_bytes)})"


def _raw_header(block: bytes) -> nib.Nifti1Header | None:
    """The NIfTI-1 or NIfTI-2 header at the start of ``block`` as nibabel will read it (recognised by its
    magic, byte order guessed from ``sizeof_hdr``), unchecked; None when it is neither."""
    for header_class in (nib.Nifti1Header, nib.Nifti2Header):
        if header_class.may_contain_header(block):
            return header_class(block[: header_class.template_dtype.itemsize], check=False)
    return None


def header_data_error(path: Path, error: Exception) -> str:
    """The message for a header nibabel refuses, naming the data type where that is the reason."""
    match = re.search(r"data code (-?\d+)", str(error))
    if match and int(match[1]) == 1:
        return f"{path}: NIfTI datatype binary (code 1, one bit per voxel) cannot be read; save it as uint8"
    if match:
        return f"{path}: NIfTI datatype code {match[1]} is not a known data type"
    return f"{path}: invalid NIfTI header ({error_reason(error)})"


def check_datatype(image: nib.Nifti1Image, path: Path) -> None:
    """Refuse data types that do not hold one real number per voxel (colour, complex)."""
    dtype = image.get_data_dtype()
    if dtype.fields is None and dtype.kind != "c":
        return
    code = int(image.header["datatype"])
    if dtype.fields is not None:
        label, hint = nib.nifti1.data_type_codes.niistring[code].removeprefix("NIFTI_TYPE_"), _COLOUR_HINT
    else:
        label, hint = dtype.name, _COMPLEX_HINT
    raise ImageFormatError(f"{path}: NIfTI datatype {label} (code {code}) is not supported: {hint}")


def check_data_size(image: nib.Nifti1Image, path: Path) -> None:
    """Refuse a file too small for the data its header claims, before any memory is allocated for it.

    An uncompressed file's size is exact; a ``.nii.gz`` file can be refused only when no gzip stream of its
    size could hold that much (see :data:`_MAX_GZIP_RATIO`); reading then catches the rest.
    """
    data_bytes = math.prod(int(size) for size in image.shape) * image.get_data_dtype().itemsize
    file_bytes = path.stat().st_size
    name = path.name.lower()
    if name.endswith(".nii"):
        offset = int(getattr(image.dataobj, "offset", 0))
        if offset + data_bytes > file_bytes:
            raise ImageFormatError(
                f"{path}: file is truncated: its header claims {_describe_data(image, data_bytes)} but the "
                f"file holds {_format_bytes(max(file_bytes - offset, 0))} of data"
            )
    elif name.endswith(".gz") and data_bytes > _MAX_GZIP_RATIO * file_bytes:
        raise ImageFormatError(
            f"{path}: file is truncated: its header claims {_describe_data(image, data_bytes)}, more than a "
            f"gzip file of {_format_bytes(file_bytes)} can hold"
        )


def _describe_data(image: nib.Nifti1Image, data_bytes: int) -> str:
    shape = " x ".join(str(int(size)) for size in image.shape)
    return f"{shape} voxels of {image.get_data_dtype()} ({_format_bytes(data_bytes)})"


def _format_bytes(count: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:.3g} {unit}"
    return f"{count} bytes"


def memory_error(path: Path, image: nib.Nifti1Image) -> ImageFormatError:
    voxels = math.prod(int(size) for size in image.shape)
    data_bytes = voxels * image.get_data_dtype().itemsize
    return ImageFormatError(
        f"{path}: header claims {voxels} voxels ({_format_bytes(data_bytes)}), more than the free memory "
        "can hold; is the file truncated or its header wrong?"
    )


@contextlib.contextmanager
def reading_data(path: Path, image: nib.Nifti1Image) -> Iterator[None]:
    """Turn the errors of reading ``image``'s voxels into one-line :class:`ImageFormatError`s."""
    try:
        yield
    except MemoryError as error:
        raise memory_error(path, image) from error
    except (OSError, EOFError, ValueError, zlib.error, gzip.BadGzipFile) as error:
        raise ImageFormatError(
            f"{path}: data cannot be read, file truncated or corrupt ({error_reason(error)})"
        ) from error


__all__ = [
    "check_data_size",
    "check_datatype",
    "check_layout",
    "header_data_error",
    "memory_error",
    "reading_data",
]
