"""replace_folder: swapping a finished folder into place without a moment where a half-deleted one exists."""

from __future__ import annotations

from pathlib import Path

import pytest

from mousecord.io.atomic import replace_folder


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
