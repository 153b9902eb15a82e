"""Atomic file output: write to a hidden temporary file beside the target, then rename."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

from mousecord.errors import OutputError

#: Multi-part suffixes that must survive in temporary names (nibabel picks compression from the name).
_DOUBLE_SUFFIXES = (".nii.gz", ".tar.gz")


def split_suffix(path: Path) -> tuple[str, str]:
    """Split a file name into stem and suffix, treating ``.nii.gz`` as one suffix.

    >>> split_suffix(Path("sub-01_T1w.nii.gz"))
    ('sub-01_T1w', '.nii.gz')
    """
    name = path.name
    for suffix in _DOUBLE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)], name[-len(suffix) :]
    return path.stem, path.suffix


def check_not_input(output: Path, inputs: Iterable[Path | str]) -> None:
    """Raise :class:`OutputError` if ``output`` is one of ``inputs`` (never overwrite an input)."""
    resolved_output = Path(output).resolve()
    for input_path in inputs:
        if Path(input_path).resolve() == resolved_output:
            raise OutputError(f"{output}: output would overwrite the input; choose another output name")


@contextlib.contextmanager
def atomic_output(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``, on error delete it.

    Example:
        >>> with atomic_output(tmp / "mask.nii.gz") as temporary:  # doctest: +SKIP
        ...     nib.save(image, temporary)
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(
            f"{path}: cannot create output folder {folder}: {error.strerror or error}"
        ) from error
    if not os.access(folder, os.W_OK):
        raise OutputError(f"{path}: output folder {folder} is not writable")
    stem, suffix = split_suffix(path)
    temporary = folder / f".{stem}.{uuid.uuid4().hex[:8]}.tmp{suffix}"
    try:
        yield temporary
        if not temporary.exists():
            raise OutputError(f"{path}: nothing was written")
        os.replace(temporary, path)
    except OSError as error:
        raise OutputError(f"{path}: cannot write: {error.strerror or error}") from error
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
