"""Atomic file output: write to a hidden temporary file beside the target, then rename.

The temporary file of ``<stem><suffix>`` is ``.<stem>.<8 hex digits>.tmp<suffix>`` (``.nii.gz`` kept whole,
so nibabel still compresses). A process killed with SIGKILL leaves it behind; the next atomic write of the
same target removes such leftovers once they are :data:`STALE_TEMPORARY_AGE_S` old, and nothing else.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import stat
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

from mousecord.errors import OutputError

logger = logging.getLogger(__name__)

#: Multi-part suffixes that must survive in temporary names (nibabel picks compression from the name).
_DOUBLE_SUFFIXES = (".nii.gz", ".tar.gz")
#: A leftover temporary file is removed only when untouched this long (seconds): a writer in progress
#: (another process writing the same target) keeps updating its file's modification time.
STALE_TEMPORARY_AGE_S = 600.0


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


def remove_stale_temporaries(path: Path | str, *, max_age_s: float = STALE_TEMPORARY_AGE_S) -> list[Path]:
    """Delete the temporary files :func:`atomic_output` left beside ``path`` (a killed process's).

    Only regular files named exactly as :func:`atomic_output` names the temporary files of this very target
    (``.<stem>.<8 hex digits>.tmp<suffix>``) and not modified for ``max_age_s`` seconds are removed;
    anything else, a younger file (a parallel writer's) included, is left alone.

    Returns:
        The files removed.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    stem, suffix = split_suffix(path)
    pattern = re.compile(rf"\.{re.escape(stem)}\.[0-9a-f]{{8}}\.tmp{re.escape(suffix)}")
    removed: list[Path] = []
    now = time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed  # an unreadable folder: the write itself will say what is wrong
    for entry in entries:
        if not pattern.fullmatch(entry.name):
            continue
        with contextlib.suppress(OSError):  # gone already (another process cleaned it), or not ours to delete
            status = entry.stat(follow_symlinks=False)
            if stat.S_ISREG(status.st_mode) and now - status.st_mtime > max_age_s:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
                logger.debug("%s: removed the stale temporary file %s", path, entry.name)
    return removed


def check_writable_folder(folder: Path | str, *, purpose: str | None = None) -> None:
    """Refuse, before any work, a folder that could not receive outputs: it, or the nearest of its
    ancestors that exists, is a file or is not writable. Nothing is created.

    Args:
        folder: where outputs will go (it need not exist yet).
        purpose: what the message starts with (default: the folder).

    Raises:
        OutputError: the folder is a file, or it (or the ancestor it would be created in) is not writable.
    """
    folder = Path(folder)
    name = purpose or str(folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        if existing == folder:
            raise OutputError(f"{name}: output folder {folder} is a file, not a folder")
        raise OutputError(f"{name}: output folder {folder} cannot be created, {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        where = "" if existing == folder else f" (it would be created in {existing})"
        raise OutputError(f"{name}: output folder {folder} is not writable{where}")


def replace_folder(source: Path | str, destination: Path | str) -> Path:
    """Move the complete folder ``source`` to ``destination``, replacing a folder there.

    The old folder is first renamed aside (``.<name>.retired-<8 hex digits>``), then ``source`` is renamed
    onto ``destination``, then the old one is deleted: both renames are atomic on one file system, so a
    process killed at any moment leaves the old folder whole or the new one, never a half-deleted folder
    (killed between the two renames, the old folder waits complete under its hidden name). Retired folders
    a killed process left are deleted by the next call for the same destination.

    Returns:
        ``destination``.
    """
    source, destination = Path(source), Path(destination)
    parent = destination.parent if str(destination.parent) else Path(".")
    pattern = re.compile(rf"\.{re.escape(destination.name)}\.retired-[0-9a-f]{{8}}")
    with contextlib.suppress(OSError):
        for entry in os.scandir(parent):
            if pattern.fullmatch(entry.name) and entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
    if not destination.exists():
        source.rename(destination)
        return destination
    if destination.is_symlink() or not destination.is_dir():
        raise OutputError(f"{destination}: exists and is not a folder; choose another name")
    retired = parent / f".{destination.name}.retired-{uuid.uuid4().hex[:8]}"
    destination.rename(retired)
    try:
        source.rename(destination)
    except OSError:
        retired.rename(destination)  # put the old one back
        raise
    shutil.rmtree(retired, ignore_errors=True)
    return destination


def check_replaceable_file(path: Path | str) -> None:
    """Refuse an output path where something other than a file is, or a link to one: renaming a new file
    onto a device, a pipe, a folder or a link to them would replace it (``-o /dev/null`` run as root
    replaced the device; ``/dev/stdout`` is a link to a pipe).

    Raises:
        OutputError: ``path`` (or what a link there points to) exists and is not a regular file.
    """
    try:
        mode = os.stat(path).st_mode  # through links; a dangling one is a name to write
    except FileNotFoundError:
        return
    except OSError as error:
        raise OutputError(f"{path}: cannot check the output: {error.strerror or error}") from error
    if not stat.S_ISREG(mode):
        what = "a folder" if stat.S_ISDIR(mode) else "a device, pipe or socket"
        raise OutputError(f"{path}: exists and is {what}, not a file; give the output a file name")


@contextlib.contextmanager
def atomic_output(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``, on error delete it.

    Example:
        >>> with atomic_output(tmp / "mask.nii.gz") as temporary:  # doctest: +SKIP
        ...     nib.save(image, temporary)
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    check_writable_folder(folder, purpose=str(path))
    check_replaceable_file(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(
            f"{path}: cannot create output folder {folder}: {error.strerror or error}"
        ) from error
    stem, suffix = split_suffix(path)
    remove_stale_temporaries(path)
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
