"""replace_folder: swapping a finished folder into place without a moment where a half-deleted one exists."""

from __future__ import annotations

from pathlib import Path

import pytest

from mousecord.errors import OutputError
from mousecord.io.atomic import atomic_output, replace_folder


def test_replace_folder_never_leaves_a_half_deleted_folder(tmp_path, monkeypatch):
    destination = tmp_path / "model"
    destination.mkdir()
    (destination / "weights").write_text("old")
    new = tmp_path / ".model.staging"
    new.mkdir()
    (new / "weights").write_text("new")
    stale = tmp_path / ".model.retired-0123abcd"  # what a process killed between the renames leaves
    stale.mkdir()
    (tmp_path / ".other.retired-0123abcd").mkdir()  # another destination's: not ours to delete

    # a failure between the two renames puts the old folder back, whole
    real_rename = Path.rename

    def failing_rename(self, target):
        if self == new:
            raise OSError("disk gone")
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", failing_rename)
    with pytest.raises(OSError, match="disk gone"):
        replace_folder(new, destination)
    assert (destination / "weights").read_text() == "old"
    monkeypatch.undo()

    assert replace_folder(new, destination) == destination
    assert (destination / "weights").read_text() == "new" and not new.exists()
    assert sorted(path.name for path in tmp_path.iterdir()) == [".other.retired-0123abcd", "model"]


def test_atomic_output_never_replaces_a_device_or_a_pipe(tmp_path):
    """Renaming onto a device node or a pipe would replace it (``-o /dev/null`` run as root)."""
    import os

    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    with pytest.raises(OutputError, match=r"pipe: exists and is a device, pipe or socket, not a file"):
        with atomic_output(pipe) as temporary:
            temporary.write_text("table")
    assert pipe.is_fifo() and os.listdir(tmp_path) == ["pipe"]
    to_the_pipe = tmp_path / "stdout"  # as /dev/stdout links to a pipe
    to_the_pipe.symlink_to(pipe)
    with pytest.raises(OutputError, match=r"stdout: exists and is a device, pipe or socket"):
        with atomic_output(to_the_pipe) as temporary:
            temporary.write_text("table")
    assert to_the_pipe.is_symlink()
    link = tmp_path / "link.csv"
    link.symlink_to(tmp_path / "elsewhere.csv")
    with atomic_output(link) as temporary:  # a link is replaced, as any file is
        temporary.write_text("table")
    assert link.read_text() == "table" and not link.is_symlink()
