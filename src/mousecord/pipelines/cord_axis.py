"""Which axis of an image runs along the cord, when its header and its content disagree.

``mousecord segment`` takes axial slices across the header's superior-inferior axis, but ex vivo headers
often name their axes after the magnet, not the animal. The grid itself shows a single slice's normal
(:func:`~mousecord.io.orientation.single_slice_axis`); thick slices and a chunk's length only hint
(:func:`~mousecord.io.orientation.cord_axis_from_grid`), since a thick sagittal localiser or an in vivo slab
wider than long looks the same. Here the image decides: the network's stage-1 cord search runs across each
candidate axis (:meth:`~mousecord.inference.Predictor.cord_coverage`), and another axis than the header's
wins only where one continuous cord runs through nearly all of its slabs and through far fewer across the
header's (:func:`axis_coverage_decides`). ``benchmarks/cord_axis.py`` measures the rule.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from mousecord.errors import ConfigError, ImageFormatError
from mousecord.inference.cord_roi import CordCoverage
from mousecord.inference.predictor import Predictor
from mousecord.io.volume import Volume

#: Another axis than the header's wins where stage 1 finds one continuous cord through at least this share
#: of its slabs, and through at least :data:`MIN_CORD_COVERAGE_GAIN` more than across the header's axis
#: (the same, the other way round, confirms the header). Measured with the default model
#: (``benchmarks/cord_axis.py``): across the cord's axis of the 11 chunks and thick-slice volumes whose
#: headers misname it (phantoms, SCT's in vivo scans): 1.00, 0.62-0.88 more than across the header's; in the
#: 14 where the header is right and the grid points elsewhere (thick sagittal localisers of phantoms and of
#: SCT's scans, SCT's coronal ones): at most 0.82 across the hinted axis and at most 0.37 more. Wrongly
#: overruling a header loses the whole cord, wrongly following it leaves a warning that names the axis to
#: give: the bounds sit on the cautious side. Other models than the default one share them untested.
MIN_CORD_COVERAGE = 0.9
#: See :data:`MIN_CORD_COVERAGE`.
MIN_CORD_COVERAGE_GAIN = 0.5
#: Fewer stage-1 slabs than this along either axis decide nothing: across a few slices, a cord-like strip in
#: each reads as a continuous cord (a 4-slice sagittal localiser: 1.00 across its slices).
MIN_COVERAGE_SLABS = 10
#: Shares are ratios of small counts: 19/20 - 9/20 falls short of 0.5 by one rounding error.
_TOLERANCE = 1e-9


def axis_coverage_decides(along_header: CordCoverage, along_other: CordCoverage) -> str | None:
    """ "other" where the coverage across another axis than the header's shows the cord runs along it,
    "header" where the header's shows it, None where neither clearly (see :data:`MIN_CORD_COVERAGE`)."""
    if min(along_header.slabs, along_other.slabs) < MIN_COVERAGE_SLABS:
        return None
    for winner, won, lost in (("other", along_other, along_header), ("header", along_header, along_other)):
        if (
            won.share >= MIN_CORD_COVERAGE - _TOLERANCE
            and won.share - lost.share >= MIN_CORD_COVERAGE_GAIN - _TOLERANCE
        ):
            return winner
    return None


@dataclass(frozen=True)
class AxisEvidence:
    """What the image says about its cord's axis (canonical axes; 2 is the header's superior-inferior).

    Attributes:
        coverage: per candidate axis, stage 1's coverage across it (None where it could not run).
        chosen: the axis the image decides for (2: the header confirmed); None where it decides nothing.
        unavailable: why the image could not decide, or "".
    """

    coverage: dict[int, CordCoverage | None]
    chosen: int | None
    unavailable: str = ""

    def describe(self, file_axis: Callable[[int], int]) -> str:
        """The coverages for a message, axes named as the file's (``file_axis``: canonical -> file axis)."""
        if self.unavailable:
            return f"the image cannot decide ({self.unavailable})"
        found = [
            f"{coverage.share:.0%} of {coverage.slabs} slabs across axis {file_axis(axis)}"
            for axis, coverage in sorted(self.coverage.items(), key=lambda item: file_axis(item[0]))
            if coverage is not None
        ]
        return "the network finds one continuous cord through " + ", ".join(found)


def cord_axis_evidence(
    predictor: Predictor,
    volume: Volume,
    candidates: Sequence[int],
    *,
    known: Mapping[int, CordCoverage | None] | None = None,
) -> AxisEvidence:
    """Stage 1 across the header's axis and each other candidate (canonical axes) of ``volume``, and the
    axis that wins (:func:`axis_coverage_decides`; of several, the best covered).

    Args:
        known: coverages already measured, per axis (a segmentation's own stage 1 across the header's,
            an earlier search's): not searched again.
    """
    if predictor.roi != "cord":
        return AxisEvidence({}, None, f"model {predictor.bundle.name} has no cord search: it runs densely")
    coverage: dict[int, CordCoverage | None] = dict(known or {})
    try:
        for axis in {2, *candidates}:
            if axis not in coverage:
                coverage[axis] = predictor.cord_coverage(volume, axis)
    except (ConfigError, ImageFormatError) as error:
        return AxisEvidence(coverage, None, str(error))
    header = coverage[2]
    others = [axis for axis in {2, *candidates} if axis != 2]
    if header is None or any(coverage[axis] is None for axis in others):
        return AxisEvidence(coverage, None, "the image is too large to search whole")
    decided = {axis: axis_coverage_decides(header, coverage[axis]) for axis in others}
    winners = [axis for axis in others if decided[axis] == "other"]
    if winners:
        return AxisEvidence(coverage, max(winners, key=lambda axis: coverage[axis].share))
    confirmed = others and all(decision == "header" for decision in decided.values())
    return AxisEvidence(coverage, 2 if confirmed else None)


__all__ = [
    "MIN_CORD_COVERAGE",
    "MIN_CORD_COVERAGE_GAIN",
    "MIN_COVERAGE_SLABS",
    "AxisEvidence",
    "axis_coverage_decides",
    "cord_axis_evidence",
]
