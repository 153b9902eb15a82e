"""Output names known once: the paths segment plans and the sidecar the analysis finds beside them."""

from __future__ import annotations

from pathlib import Path

import pytest

from mousecord.io.names import segment_output_names, sidecar_beside, sidecars_of_mask


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_default_names_and_their_sidecar_found_from_either_output(tmp_path: Path, suffix: str) -> None:
    names = segment_output_names(tmp_path / "sub-01_T1w", suffix)
    assert names.multilabel == tmp_path / f"sub-01_T1w_seg{suffix}"
    assert names.masks == {
        "GM": tmp_path / f"sub-01_T1w_GM_seg{suffix}",
        "WM": tmp_path / f"sub-01_T1w_WM_seg{suffix}",
    }
    assert names.probabilities == tmp_path / f"sub-01_T1w_prob{suffix}"
    assert names.sidecar == tmp_path / "sub-01_T1w_seg.json" == sidecar_beside(names.multilabel)
    assert all(names.sidecar in sidecars_of_mask(mask) for mask in names.masks.values())


def test_a_named_label_map_names_its_sidecar_and_its_masks_find_it(tmp_path: Path) -> None:
    names = segment_output_names(tmp_path / "result", ".nii.gz", multilabel=tmp_path / "result.nii.gz")
    assert names.multilabel == tmp_path / "result.nii.gz" and names.sidecar == tmp_path / "result.json"
    assert names.sidecar in sidecars_of_mask(names.masks["WM"])


@pytest.mark.parametrize("name", ["x_label-GM_mask.nii.gz", "x_GM.nii.gz", "x_seg.nii.gz", "x_CSF_seg.nii"])
def test_files_named_otherwise_are_no_segment_masks(tmp_path: Path, name: str) -> None:
    assert sidecars_of_mask(tmp_path / name) == []
