"""The rule that lets an image overrule its header on the cord's axis: stage 1's coverage across each axis."""

from __future__ import annotations

import pytest

from mousecord.inference.cord_roi import CordCoverage
from mousecord.pipelines.cord_axis import MIN_COVERAGE_SLABS, axis_coverage_decides


@pytest.mark.parametrize(
    ("header", "other", "decided"),
    [
        ((7, 20), (20, 20), "other"),  # a misnamed chunk: the cord runs along the other axis only
        ((19, 20), (9, 20), "header"),  # exactly 0.5 more: 19/20 - 9/20 is a rounding error short of it
        ((20, 20), (15, 20), None),  # a slab wider than long: cord-like sections across it too
        ((8, 20), (17, 20), None),  # a thick localiser: more across the slices, not clearly
        ((18, 20), (10, 20), None),  # 0.9 against 0.5: 0.4 more, not enough
        ((2, 20), (4, 4), None),  # 4 thick slices: a cord-like strip in each is no cord
    ],
)
def test_another_axis_wins_only_where_nearly_all_its_slabs_and_far_fewer_across_the_header_hold_cord(
    header, other, decided
):
    along_header, along_other = CordCoverage(header[1], header[0]), CordCoverage(other[1], other[0])
    assert axis_coverage_decides(along_header, along_other) == decided


def test_too_few_slabs_along_either_axis_decide_nothing():
    full, empty = CordCoverage(MIN_COVERAGE_SLABS, MIN_COVERAGE_SLABS), CordCoverage(MIN_COVERAGE_SLABS, 0)
    assert axis_coverage_decides(empty, full) == "other"
    assert axis_coverage_decides(CordCoverage(MIN_COVERAGE_SLABS - 1, 0), full) is None
    assert axis_coverage_decides(empty, CordCoverage(MIN_COVERAGE_SLABS - 1, MIN_COVERAGE_SLABS - 1)) is None
