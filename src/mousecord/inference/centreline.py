"""Stage 1 of the cord ROI path, as geometry: where the sparse slabs go, which component of each slab is the
cord (the candidates that chain into a continuous cord), and the tube around the centreline through them
(numpy, scipy; see :mod:`mousecord.inference.cord_roi`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mousecord.errors import ConfigError
from mousecord.inference.postprocessing import MAIN_COMPONENT_FRACTION, cord_components


@dataclass(frozen=True)
class CordCoverage:
    """How far stage 1 finds one continuous cord through an image across one axis.

    Attributes:
        slabs: stage-1 slabs placed along the axis.
        with_cord: those whose cord joins the one chain chosen.
    """

    slabs: int
    with_cord: int

    @property
    def share(self) -> float:
        """``with_cord / slabs`` (0 without slabs)."""
        return self.with_cord / self.slabs if self.slabs else 0.0


@dataclass(frozen=True, eq=False)
class CordRoi:
    """A tube around the cord in network axes: per-slice centres and one in-plane half size.

    Attributes:
        centre_vox: (z, 2) float (y, x) centre of every slice of the image searched.
        half_size_vox: (2,) half extent of the tube along y and x (cord extent + margin), voxels.
        z_start, z_stop: slices of the tube; ``z_start == z_stop`` when no cord was found.
        slab_centres: (n,) z of the stage-1 slabs' centres; ``slab_found``: (n,) whether each held cord.
    """

    centre_vox: np.ndarray
    half_size_vox: np.ndarray
    z_start: int
    z_stop: int
    slab_centres: np.ndarray
    slab_found: np.ndarray

    @property
    def found(self) -> bool:
        return self.z_stop > self.z_start

    @property
    def coverage(self) -> CordCoverage:
        """How many of the stage-1 slabs hold the chosen cord."""
        return CordCoverage(int(self.slab_found.size), int(self.slab_found.sum()))

    def boxes(self, shape_zyx: Sequence[int]) -> np.ndarray:
        """(z, 2, 2) int in-plane box ``[[y0, y1], [x0, x1]]`` (stop exclusive) of every slice, clipped.

        Slices outside ``z_start:z_stop`` get an empty box.
        """
        n_z = len(self.centre_vox)
        boxes = np.zeros((n_z, 2, 2), dtype=np.int64)
        for axis in range(2):
            low = np.floor(self.centre_vox[:, axis] - self.half_size_vox[axis])
            high = np.ceil(self.centre_vox[:, axis] + self.half_size_vox[axis]) + 1
            boxes[:, axis, 0] = np.clip(low, 0, shape_zyx[axis + 1])
            boxes[:, axis, 1] = np.clip(high, 0, shape_zyx[axis + 1])
        outside = np.ones(n_z, dtype=bool)
        outside[self.z_start : self.z_stop] = False
        boxes[outside] = 0
        return boxes

    def mask(self, shape_zyx: Sequence[int]) -> np.ndarray:
        """(z, y, x) bool: the tube on a grid of ``shape_zyx`` (same z as :attr:`centre_vox`)."""
        mask = np.zeros(tuple(shape_zyx), dtype=bool)
        for z, ((y0, y1), (x0, x1)) in enumerate(self.boxes(shape_zyx)):
            mask[z, y0:y1, x0:x1] = True
        return mask

    def shifted(self, z: int, y: int, x: int, n_z: int) -> CordRoi:
        """The same tube on a grid whose origin lies at (z, y, x) of this one, ``n_z`` slices long."""
        centre = self.centre_vox[z : z + n_z] - np.array([y, x], dtype=float)
        return CordRoi(
            centre,
            self.half_size_vox,
            int(np.clip(self.z_start - z, 0, n_z)),
            int(np.clip(self.z_stop - z, 0, n_z)),
            self.slab_centres - z,
            self.slab_found,
        )


def slab_starts(size_z: int, depth_vox: int, spacing_vox: float) -> list[int]:
    """First slice of each stage-1 slab: spread evenly from 0 to ``size_z - depth_vox``, both ends included.

    Example:
        >>> slab_starts(500, 32, 60.0)  # 3 mm apart at 0.05 mm
        [0, 58, 117, 176, 234, 292, 351, 410, 468]
    """
    if size_z <= depth_vox:
        return [0]
    count = int(np.ceil((size_z - depth_vox) / spacing_vox)) + 1
    return [int(value) for value in np.round(np.linspace(0, size_z - depth_vox, count))]


def cord_candidates(label_map: np.ndarray, *, min_voxels: int, limit: int = 4) -> list[np.ndarray]:
    """Bool masks of the ``limit`` largest 26-connected GM + WM components of at least ``min_voxels``."""
    components, sizes = cord_components(label_map)
    order = [int(index) for index in np.argsort(sizes)[::-1][:limit] if sizes[index] >= max(min_voxels, 1)]
    return [components == index for index in order]


def link_slab_candidates(
    candidates: Sequence[Sequence[tuple[int, np.ndarray, float]]], max_step_vox: float
) -> list[int | None]:
    """Pick one cord candidate per slab, or none: the chosen centres must form a continuous cord.

    Args:
        candidates: per slab, ``(size, (y, x) centre, confidence)`` of its components, largest first;
            confidence is the network's mean cord probability over the component.
        max_step_vox: largest in-plane move of the cord centre from one slab to the next.

    Returns:
        Per slab, the index of the chosen candidate or None. Every candidate is tried as the anchor; from
        it each slab takes its candidate nearest to the last chosen centre, if within reach
        (``max_step_vox`` per slab of distance). The chain through most slabs wins, so a structure that
        looks like cord in a few slabs, even larger than the cord there, is left out. A slab counts only
        where the chain's component is at least ``MAIN_COMPONENT_FRACTION`` of that slab's largest one, so
        a string of small components beside the cord (nerve roots, debris of a damaged chunk end) cannot
        outnumber the slabs the cord itself was found in. Between chains through as many slabs, the more
        confident one wins (the sum of its counted components' confidences), then the larger: with one
        slab (a single slice) the network's surest cord-like structure of at least that size, not the
        largest (a vertebral body taken for cord is often the larger, seldom the surer).
    """
    best: tuple[int, float, int] = (0, 0.0, 0)
    best_chain: list[int | None] = [None] * len(candidates)
    for anchor, entries in enumerate(candidates):
        for start in range(len(entries)):
            chain = _chain_from(candidates, anchor, start, max_step_vox)
            chosen = [(candidates[slab], index) for slab, index in enumerate(chain) if index is not None]
            counted = [
                slab[index]
                for slab, index in chosen
                if slab[index][0] >= MAIN_COMPONENT_FRACTION * slab[0][0]
            ]
            score = (
                len(counted),
                # to 1e-6: sums differing by float error alone mostly leave the decision to size
                round(sum(candidate[2] for candidate in counted), 6),
                sum(slab[index][0] for slab, index in chosen),
            )
            if score > best:
                best, best_chain = score, chain
    return best_chain


def _chain_from(
    candidates: Sequence[Sequence[tuple[int, np.ndarray, float]]],
    anchor: int,
    start: int,
    max_step_vox: float,
) -> list[int | None]:
    chain: list[int | None] = [None] * len(candidates)
    chain[anchor] = start
    for direction in (1, -1):
        last, last_centre = anchor, np.asarray(candidates[anchor][start][1], dtype=float)
        index = anchor + direction
        while 0 <= index < len(candidates):
            if candidates[index]:
                distances = [np.hypot(*(np.asarray(entry[1]) - last_centre)) for entry in candidates[index]]
                nearest = int(np.argmin(distances))
                if distances[nearest] <= max_step_vox * abs(index - last):
                    chain[index], last = nearest, index
                    last_centre = np.asarray(candidates[index][nearest][1], dtype=float)
            index += direction
    return chain


def centreline_from_slabs(
    slab_label_maps: Sequence[tuple[int, np.ndarray]],
    shape_zyx: Sequence[int],
    *,
    cord_probabilities: Sequence[np.ndarray] | None = None,
    margin_vox: Sequence[float],
    max_half_extent_vox: Sequence[float] = (np.inf, np.inf),
    min_cord_voxels: int = 50,
    max_step_vox: float = np.inf,
) -> CordRoi:
    """Build the cord tube from stage-1 label maps.

    Args:
        slab_label_maps: ``(z_start, labels)`` per slab, ``labels`` (depth, y, x) 0/1/2 in network axes.
        shape_zyx: (3,) shape of the whole image.
        cord_probabilities: per slab (in the order of ``slab_label_maps``), the network's (depth, y, x)
            probability of cord (GM + WM); it ranks chains through as many slabs (see
            :func:`link_slab_candidates`). None: every candidate equally sure, the larger chain wins.
        margin_vox: (2,) margin added to the cord's half extent along y and x.
        max_half_extent_vox: (2,) cap of the measured half extent along y and x.
        min_cord_voxels: smaller components are not cord.
        max_step_vox: largest in-plane move of the cord centre between neighbouring slabs (see
            :func:`link_slab_candidates`); infinite: no continuity required.

    Returns:
        A :class:`CordRoi`; without cord in any slab, an empty one (``found`` False).
    """
    n_z = int(shape_zyx[0])
    probabilities = [None] * len(slab_label_maps) if cord_probabilities is None else list(cord_probabilities)
    if len(probabilities) != len(slab_label_maps):
        raise ConfigError(
            f"centreline_from_slabs: {len(probabilities)} cord probability maps "
            f"for {len(slab_label_maps)} slabs"
        )
    order = sorted(range(len(slab_label_maps)), key=lambda index: slab_label_maps[index][0])
    slabs = [slab_label_maps[index] for index in order]
    slab_middles = np.asarray([z_start + (labels.shape[0] - 1) / 2 for z_start, labels in slabs], dtype=float)
    bounds = [(z_start, z_start + labels.shape[0]) for z_start, labels in slabs]
    masks = [cord_candidates(labels, min_voxels=min_cord_voxels) for _, labels in slabs]
    confidences = [
        [
            1.0 if probabilities[index] is None else float(probabilities[index][mask].mean())
            for mask in slab_masks
        ]
        for index, slab_masks in zip(order, masks, strict=True)
    ]
    # In-plane (y, x) coordinates of each candidate's voxels; its centre is their median, robust to false
    # positives touching the cord.
    coordinates = [[np.stack(np.nonzero(mask)[1:]) for mask in slab_masks] for slab_masks in masks]
    described = [
        [
            (points.shape[1], np.median(points, axis=1), confidence)
            for points, confidence in zip(slab_points, slab_confidences, strict=True)
        ]
        for slab_points, slab_confidences in zip(coordinates, confidences, strict=True)
    ]
    chosen = link_slab_candidates(described, max_step_vox)
    found_array = np.array([index is not None for index in chosen], dtype=bool)
    if not found_array.any():
        return CordRoi(np.zeros((n_z, 2)), np.zeros(2), 0, 0, slab_middles, found_array)
    centres, extents = [], []
    for slab_points, slab_described, index in zip(coordinates, described, chosen, strict=True):
        if index is None:
            continue
        centre = slab_described[index][1]
        centres.append(centre)
        extents.append(np.abs(slab_points[index] - centre[:, None]).max(axis=1) + 0.5)
    with_cord = np.flatnonzero(found_array)
    centre_vox = np.stack(
        [
            np.interp(np.arange(n_z), slab_middles[with_cord], [centre[axis] for centre in centres])
            for axis in range(2)
        ],
        axis=1,
    )
    extent = np.minimum(np.max(np.asarray(extents), axis=0), np.asarray(max_half_extent_vox, dtype=float))
    half_size = extent + np.asarray(margin_vox, dtype=float)
    first, last = with_cord[0], with_cord[-1]
    # Next to the chain, slabs holding cord-like components that did not link (a cord bending faster than
    # max_step_vox, say) keep the tube going: only slabs with nothing cord-like end it. There the cord may
    # begin anywhere after the last slab seen without it (and end before the next one).
    while first > 0 and masks[first - 1]:
        first -= 1
    while last + 1 < len(masks) and masks[last + 1]:
        last += 1
    z_start = min(bounds[first - 1][1], bounds[first][0]) if first > 0 else 0
    z_stop = max(bounds[last + 1][0], bounds[last][1]) if last + 1 < len(bounds) else n_z
    return CordRoi(centre_vox, half_size, int(z_start), int(z_stop), slab_middles, found_array)


__all__ = [
    "CordCoverage",
    "CordRoi",
    "centreline_from_slabs",
    "cord_candidates",
    "link_slab_candidates",
    "slab_starts",
]
