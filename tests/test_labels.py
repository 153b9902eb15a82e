"""The shared label rules: mask threshold, GM/WM overlap policy, ignore label, label-value check."""

from __future__ import annotations

import numpy as np
import pytest

from mousecord.errors import ConfigError, DatasetError, ImageFormatError, MousecordWarning
from mousecord.labels import (
    IGNORE_VALUE,
    MASK_THRESHOLD,
    Label,
    check_label_values,
    cord_centroids,
    masks_to_label_map,
)


def test_threshold_is_the_references() -> None:
    assert MASK_THRESHOLD == 1e-12
    gm = np.array([1e-13, 1e-11, 0.0, 0.0])
    wm = np.array([0.0, 0.0, 2e-12, 1.0])
    assert masks_to_label_map(gm, wm, name="x").tolist() == [0, Label.GM, Label.WM, Label.WM]


def test_overlap_is_an_error_by_default() -> None:
    gm, wm = np.ones((3, 4, 5)), np.zeros((3, 4, 5))
    wm[0, 0, :2] = 1
    with pytest.raises(DatasetError, match="x.nii.gz: GM and WM masks overlap in 2 voxels"):
        masks_to_label_map(gm, wm, name="x.nii.gz")


def test_overlap_wm_rule_counts_overlap_as_wm_and_warns() -> None:
    gm, wm = np.ones((3, 4, 5)), np.zeros((3, 4, 5))
    wm[0, 0, :2] = 1
    with pytest.warns(MousecordWarning, match="x.nii.gz: 2 voxels are in both masks; counted as WM"):
        label_map = masks_to_label_map(gm, wm, name="x.nii.gz", on_overlap="wm")
    assert label_map.dtype == np.uint8
    assert (label_map == Label.WM).sum() == 2 and (label_map == Label.GM).sum() == 3 * 4 * 5 - 2


def test_unknown_overlap_rule_and_shape_mismatch_raise() -> None:
    with pytest.raises(ConfigError, match="on_overlap"):
        masks_to_label_map(np.zeros(3), np.zeros(3), name="x", on_overlap="gm")
    with pytest.raises(DatasetError, match=r"\(3,\) differs from WM mask shape \(4,\)"):
        masks_to_label_map(np.zeros(3), np.zeros(4), name="x")


def test_ignore_unannotated_along_any_axis() -> None:
    gm = np.zeros((4, 3, 2))
    gm[1, 0, 0] = 1
    label_map = masks_to_label_map(gm, np.zeros_like(gm), name="x", ignore_unannotated=True, slice_axis=0)
    assert (label_map[[0, 2, 3]] == IGNORE_VALUE).all() and label_map[1, 0, 0] == Label.GM
    assert (np.delete(label_map[1].ravel(), 0) == 0).all()


def test_check_label_values_names_the_bad_value() -> None:
    with pytest.raises(ImageFormatError, match="p.nii.gz: expected label values \\[0, 1, 2\\], found 5"):
        check_label_values(np.array([0, 1, 5]), name="p.nii.gz")


def test_every_lazy_public_name_is_also_imported_for_type_checkers():
    import ast
    import inspect

    import mousecord

    tree = ast.parse(inspect.getsource(mousecord))
    checked = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING"
        for statement in node.body
        for alias in statement.names
    }
    assert checked == set(mousecord._LAZY_API)
    for name, module in mousecord._LAZY_API.items():
        assert getattr(mousecord, name).__module__.startswith(module.rsplit(".", 1)[0]), name


def test_cord_centroids_are_the_mean_cord_voxel_of_each_slice_that_has_cord():
    label_map = np.zeros((9, 8, 4), dtype=np.uint8)
    label_map[1:4, 2, 0] = 2  # x 1..3, y 2
    label_map[6, 5:8, 2] = 1  # x 6, y 5..7
    slices, centroids = cord_centroids(label_map)
    assert slices.tolist() == [0, 2]
    np.testing.assert_allclose(centroids, [[2.0, 2.0], [6.0, 6.0]])
