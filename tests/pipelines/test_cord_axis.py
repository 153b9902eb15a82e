"""The rule that lets an image overrule its header on the cord's axis: stage 1's coverage across each axis."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from mousecord.errors import ImageFormatError
from mousecord.inference.cord_roi import CordCoverage
from mousecord.pipelines.cord_axis import MIN_COVERAGE_SLABS, axis_coverage_decides, cord_axis_evidence


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


class _Predictor:
    """Stage 1's coverage per canonical axis, as given (None: too large to search; an exception: raised)."""

    def __init__(self, coverage, roi: str = "cord") -> None:
        self.coverage, self.roi, self.bundle = coverage, roi, SimpleNamespace(name="fake")
        self.asked: list[int] = []

    def cord_coverage(self, volume, cord_axis):
        self.asked.append(cord_axis)
        found = self.coverage[cord_axis]
        if isinstance(found, Exception):
            raise found
        return found


def _coverage(with_cord: int, slabs: int = 20) -> CordCoverage:
    return CordCoverage(slabs, with_cord)


def test_of_two_axes_that_beat_the_header_the_better_covered_wins():
    predictor = _Predictor({0: _coverage(19), 1: _coverage(20), 2: _coverage(4)})
    evidence = cord_axis_evidence(predictor, None, [0, 1])
    assert evidence.chosen == 1 and not evidence.unavailable
    assert "100% of 20 slabs across axis 1" in evidence.describe(lambda axis: axis)


def test_the_header_is_confirmed_only_where_it_beats_every_other_axis():
    assert (
        cord_axis_evidence(
            _Predictor({0: _coverage(4), 1: _coverage(5), 2: _coverage(20)}), None, [0, 1]
        ).chosen
        == 2
    )
    assert (
        cord_axis_evidence(
            _Predictor({0: _coverage(4), 1: _coverage(16), 2: _coverage(20)}), None, [0, 1]
        ).chosen
        is None
    )


def test_a_known_header_coverage_is_not_searched_again():
    predictor = _Predictor({0: _coverage(20), 1: _coverage(3), 2: AssertionError("searched again")})
    assert cord_axis_evidence(predictor, None, [0, 1], known={2: _coverage(2)}).chosen == 0
    assert sorted(predictor.asked) == [0, 1]


@pytest.mark.parametrize(
    ("predictor", "reason"),
    [
        (_Predictor({}, roi="full"), "model fake has no cord search"),
        (_Predictor({0: None, 2: _coverage(2)}), "too large to search whole"),
        (_Predictor({0: ImageFormatError("too many voxels"), 2: _coverage(2)}), "too many voxels"),
    ],
)
def test_where_the_search_cannot_run_the_image_decides_nothing_and_says_why(predictor, reason):
    evidence = cord_axis_evidence(predictor, None, [0])
    assert evidence.chosen is None and reason in evidence.unavailable
    assert reason in evidence.describe(lambda axis: axis)
