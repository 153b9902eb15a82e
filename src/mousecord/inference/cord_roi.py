"""Cord-focused inference: find the cord cheaply, then segment only its neighbourhood.

Stage 1 (:func:`find_cord_roi`): the network runs on a sparse set of axial slabs (``slab_depth_vox`` slices
every ``slab_spacing_mm``, each covering the whole in-plane field, tiles without overlap). Among the largest
26-connected cord (GM + WM) components of each slab, one per slab is chosen so that together they form the
longest continuous cord, the centre moving at most ``max_centre_step_mm`` from slab to slab (a structure that
looks like cord in some slabs only is left out; see :func:`link_slab_candidates`). Each chosen component gives
a centre (the median of its voxels, robust to false positives touching the cord); the centres, interpolated
linearly along z (constant beyond the first and last), form a centreline, and the largest in-plane half extent
of those components (at most ``max_cord_half_width_mm``, the widest mouse cord's) plus ``margin_mm`` gives the
half size of a tube around it. Slabs without anything cord-like bound the tube along z, so chunks whose ends
hold no cord are not segmented there.

Stage 2 (:func:`predict_cord_logits`): a sliding window whose tiles follow the tube: tile rows along z are
placed as nnU-Net places them over the tube's z range, and each row's tiles cover only the in-plane box of
the tube over that row's slices. Logits are blended as in :func:`~mousecord.inference.sliding_window`;
every voxel outside the tube is background.

Everything here works in network axes (z, y, x), z along the cord, on a normalised (c, z, y, x) image.
A bundle asks for this path in ``metadata["inference"]`` (see :class:`CordRoiSettings`); nnU-Net folders
never do.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch

from mousecord.errors import ConfigError
from mousecord.inference.postprocessing import cord_components
from mousecord.inference.sliding_window import (
    TileSettings,
    blend_tiles,
    compute_tile_starts,
    pad_to_patch,
    sliding_window,
)

logger = logging.getLogger(__name__)

#: Logits given to voxels outside the tube: background wins by far.
_OUTSIDE_LOGIT = 1.0e4


@dataclass(frozen=True)
class CordRoiSettings:
    """How the cord ROI path searches and segments (``metadata["inference"]`` of a bundle).

    Attributes:
        margin_mm: added around the largest in-plane cord half extent found in stage 1.
        max_cord_half_width_mm: cap of that half extent (the widest mouse cord is 3.2 mm), so that false
            positives attached to the cord cannot widen the tube to the whole field.
        slab_spacing_mm: distance between the stage-1 slabs along z.
        slab_depth_vox: slices per stage-1 slab (default: the patch depth).
        min_cord_voxels: smaller components are never cord.
        max_centre_step_mm: how far the cord centre may move in-plane from one stage-1 slab to the next;
            a component farther from the cord found in the other slabs is a false positive.
        patch_size_vox: (z, y, x) stage-2 tile (default: the bundle's patch).
        tile_step_fraction: stage-2 step (default: the inference configuration's).
    """

    margin_mm: float = 1.25
    max_cord_half_width_mm: float = 1.6
    slab_spacing_mm: float = 2.0
    slab_depth_vox: int | None = None
    min_cord_voxels: int = 50
    max_centre_step_mm: float = 1.0
    patch_size_vox: tuple[int, int, int] | None = None
    tile_step_fraction: float | None = None

    def __post_init__(self) -> None:
        if not self.margin_mm >= 0:
            raise ConfigError(f"margin_mm must be >= 0, got {self.margin_mm}")
        if not self.max_cord_half_width_mm > 0:
            raise ConfigError(f"max_cord_half_width_mm must be > 0, got {self.max_cord_half_width_mm}")
        if self.min_cord_voxels < 1:
            raise ConfigError(f"min_cord_voxels must be >= 1, got {self.min_cord_voxels}")
        if not self.max_centre_step_mm > 0:
            raise ConfigError(f"max_centre_step_mm must be > 0, got {self.max_centre_step_mm}")
        if not self.slab_spacing_mm > 0:
            raise ConfigError(f"slab_spacing_mm must be > 0, got {self.slab_spacing_mm}")
        if self.slab_depth_vox is not None and self.slab_depth_vox < 1:
            raise ConfigError(f"slab_depth_vox must be >= 1, got {self.slab_depth_vox}")
        if self.patch_size_vox is not None:
            patch = tuple(int(value) for value in self.patch_size_vox)
            if len(patch) != 3 or min(patch) < 1:
                raise ConfigError(
                    f"patch_size_vox must be three positive integers, got {self.patch_size_vox}"
                )
            object.__setattr__(self, "patch_size_vox", patch)
        if self.tile_step_fraction is not None and not 0 < self.tile_step_fraction <= 1:
            raise ConfigError(f"tile_step_fraction must be in (0, 1], got {self.tile_step_fraction}")

    def to_dict(self) -> dict[str, Any]:
        return {
            key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()
        }


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
    candidates: Sequence[Sequence[tuple[int, np.ndarray]]], max_step_vox: float
) -> list[int | None]:
    """Pick one cord candidate per slab, or none: the chosen centres must form a continuous cord.

    Args:
        candidates: per slab, ``(size, (y, x) centre)`` of its components, largest first.
        max_step_vox: largest in-plane move of the cord centre from one slab to the next.

    Returns:
        Per slab, the index of the chosen candidate or None. Every candidate is tried as the anchor; from
        it each slab takes its candidate nearest to the last chosen centre, if within reach
        (``max_step_vox`` per slab of distance). The chain through most slabs wins (ties: most voxels), so a
        structure that looks like cord in a few slabs, even larger than the cord there, is left out.
    """
    best: tuple[int, int] = (0, 0)
    best_chain: list[int | None] = [None] * len(candidates)
    for anchor, entries in enumerate(candidates):
        for start in range(len(entries)):
            chain = _chain_from(candidates, anchor, start, max_step_vox)
            score = (
                sum(index is not None for index in chain),
                sum(candidates[slab][index][0] for slab, index in enumerate(chain) if index is not None),
            )
            if score > best:
                best, best_chain = score, chain
    return best_chain


def _chain_from(
    candidates: Sequence[Sequence[tuple[int, np.ndarray]]], anchor: int, start: int, max_step_vox: float
) -> list[int | None]:
    chain: list[int | None] = [None] * len(candidates)
    chain[anchor] = start
    for direction in (1, -1):
        last, last_centre = anchor, np.asarray(candidates[anchor][start][1], dtype=float)
        index = anchor + direction
        while 0 <= index < len(candidates):
            if candidates[index]:
                distances = [np.hypot(*(np.asarray(centre) - last_centre)) for _, centre in candidates[index]]
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
    margin_vox: Sequence[float],
    max_half_extent_vox: Sequence[float] = (np.inf, np.inf),
    min_cord_voxels: int = 50,
    max_step_vox: float = np.inf,
) -> CordRoi:
    """Build the cord tube from stage-1 label maps.

    Args:
        slab_label_maps: ``(z_start, labels)`` per slab, ``labels`` (depth, y, x) 0/1/2 in network axes.
        shape_zyx: (3,) shape of the whole image.
        margin_vox: (2,) margin added to the cord's half extent along y and x.
        max_half_extent_vox: (2,) cap of the measured half extent along y and x.
        min_cord_voxels: smaller components are not cord.
        max_step_vox: largest in-plane move of the cord centre between neighbouring slabs (see
            :func:`link_slab_candidates`); infinite: no continuity required.

    Returns:
        A :class:`CordRoi`; without cord in any slab, an empty one (``found`` False).
    """
    n_z = int(shape_zyx[0])
    slabs = sorted(slab_label_maps, key=lambda item: item[0])
    slab_middles = np.asarray([z_start + (labels.shape[0] - 1) / 2 for z_start, labels in slabs], dtype=float)
    bounds = [(z_start, z_start + labels.shape[0]) for z_start, labels in slabs]
    masks = [cord_candidates(labels, min_voxels=min_cord_voxels) for _, labels in slabs]
    # In-plane (y, x) coordinates of each candidate's voxels; its centre is their median, robust to false
    # positives touching the cord.
    coordinates = [[np.stack(np.nonzero(mask)[1:]) for mask in slab_masks] for slab_masks in masks]
    described = [
        [(points.shape[1], np.median(points, axis=1)) for points in slab_points]
        for slab_points in coordinates
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


def find_cord_roi(
    image: torch.Tensor,
    predict_fn: Callable[[torch.Tensor], torch.Tensor],
    *,
    patch_size_vox: Sequence[int],
    spacing_mm: Sequence[float],
    settings: CordRoiSettings,
    accumulate_dtype: torch.dtype = torch.float32,
    batch_size: int = 1,
    window_device: torch.device | str = "cpu",
    progress: bool = False,
) -> CordRoi:
    """Stage 1: segment sparse axial slabs and fit the cord tube (see the module docstring).

    Args:
        image: (c, z, y, x) normalised image, each axis at least ``patch_size_vox`` (pad first).
        predict_fn: the network (batch of tiles -> logits).
        patch_size_vox: (3,) tile (z, y, x); its depth is the slab depth unless the settings give one.
        spacing_mm: (3,) voxel size (z, y, x) of ``image``.
        accumulate_dtype, batch_size: as in :class:`~mousecord.inference.sliding_window.TileSettings`.
    """
    depth = min(settings.slab_depth_vox or int(patch_size_vox[0]), int(image.shape[1]))
    starts = slab_starts(int(image.shape[1]), depth, settings.slab_spacing_mm / float(spacing_mm[0]))
    # side by side: stage 1 only has to find the cord
    slab_tiles = TileSettings(
        (depth, int(patch_size_vox[1]), int(patch_size_vox[2])),
        step_fraction=1.0,
        batch_size=batch_size,
        accumulate_dtype=accumulate_dtype,
    )
    slabs = []
    for start in starts:
        logits = sliding_window(
            image[:, start : start + depth],
            predict_fn,
            slab_tiles,
            window_device=window_device,
            progress=progress,
        )
        slabs.append((start, torch.argmax(logits, dim=0).to(torch.uint8).numpy()))
    margin_vox = [settings.margin_mm / float(spacing_mm[axis]) for axis in (1, 2)]
    roi = centreline_from_slabs(
        slabs,
        tuple(image.shape[1:]),
        margin_vox=margin_vox,
        max_half_extent_vox=[settings.max_cord_half_width_mm / float(spacing_mm[axis]) for axis in (1, 2)],
        min_cord_voxels=settings.min_cord_voxels,
        max_step_vox=settings.max_centre_step_mm / float(min(spacing_mm[1:])),
    )
    logger.debug(
        "cord ROI: %d of %d slabs hold cord; z %d:%d, half size (y, x) %s voxels",
        int(roi.slab_found.sum()),
        len(starts),
        roi.z_start,
        roi.z_stop,
        np.round(roi.half_size_vox, 1).tolist(),
    )
    return roi


def tube_tile_starts(
    roi: CordRoi, shape_zyx: Sequence[int], patch_size_vox: Sequence[int], tile_step_fraction: float
) -> list[tuple[int, int, int]]:
    """Tile starts covering the tube: rows along z placed as nnU-Net does over the tube's z range, each row
    covering the in-plane box of the tube over its slices. ``shape_zyx`` must be at least the patch."""
    patch = [int(value) for value in patch_size_vox]
    if not roi.found:
        return []
    z0, z1 = _at_least(roi.z_start, roi.z_stop, patch[0], int(shape_zyx[0]))
    boxes = roi.boxes(shape_zyx)
    starts: list[tuple[int, int, int]] = []
    for z_offset in compute_tile_starts((z1 - z0,), (patch[0],), tile_step_fraction)[0]:
        z = z0 + z_offset
        rows = boxes[max(z, roi.z_start) : min(z + patch[0], roi.z_stop)]
        rows = rows[(rows[:, 0, 1] > rows[:, 0, 0]) & (rows[:, 1, 1] > rows[:, 1, 0])]
        if rows.size == 0:
            continue
        in_plane = []
        for axis in range(2):
            low, high = _at_least(
                int(rows[:, axis, 0].min()),
                int(rows[:, axis, 1].max()),
                patch[axis + 1],
                int(shape_zyx[axis + 1]),
            )
            in_plane.append(
                [
                    low + offset
                    for offset in compute_tile_starts((high - low,), (patch[axis + 1],), tile_step_fraction)[
                        0
                    ]
                ]
            )
        starts.extend((z, y, x) for y, x in itertools.product(*in_plane))
    return starts


def _at_least(start: int, stop: int, size: int, limit: int) -> tuple[int, int]:
    """Grow ``[start, stop)`` symmetrically to at least ``size``, kept inside ``[0, limit)``."""
    missing = size - (stop - start)
    if missing > 0:
        start -= missing // 2
        stop = start + size
        shift = max(0, -start) - max(0, stop - limit)
        start, stop = start + shift, stop + shift
    return max(start, 0), min(stop, limit)


def predict_cord_logits(
    image: torch.Tensor,
    predict_fn: Callable[[torch.Tensor], torch.Tensor],
    tiles: TileSettings,
    *,
    spacing_mm: Sequence[float],
    num_classes: int,
    settings: CordRoiSettings,
    window_device: torch.device | str = "cpu",
    autocast: bool = False,
    progress: bool = False,
) -> tuple[torch.Tensor, CordRoi]:
    """Both stages: (k, z, y, x) float32 logits of ``image`` (background outside the tube) and the tube.

    Args:
        image: (c, z, y, x) normalised image, any size (axes smaller than a tile are zero-padded).
        predict_fn: the network (batch of tiles -> logits).
        tiles: the model's tiling: its patch is stage 1's tile; stage 2 uses it with the step and patch
            of ``settings`` where they are given. Mirroring applies to stage 2 only (stage 1 only locates
            the cord).
        spacing_mm: (3,) voxel size (z, y, x).
        num_classes: k.
        settings: see :class:`CordRoiSettings`.

    Returns:
        ``(logits, roi)``, the tube on ``image``'s grid. Without cord in stage 1 the logits are all
        background (logged as a warning).
    """
    stage_two = replace(
        tiles,
        patch_size_vox=settings.patch_size_vox or tiles.patch_size_vox,
        step_fraction=settings.tile_step_fraction or tiles.step_fraction,
    )
    stage_two_patch = stage_two.patch_size_vox
    largest = tuple(max(a, b) for a, b in zip(tiles.patch_size_vox, stage_two_patch, strict=True))
    padded, unpad = pad_to_patch(torch.as_tensor(image), largest)
    spatial = tuple(padded.shape[1:])
    roi = find_cord_roi(
        padded,
        predict_fn,
        patch_size_vox=tiles.patch_size_vox,
        spacing_mm=spacing_mm,
        settings=settings,
        batch_size=tiles.batch_size,
        window_device=window_device,
        progress=progress,
    )
    logits = torch.zeros((num_classes, *spatial), dtype=torch.float32)
    logits[0] = _OUTSIDE_LOGIT
    starts = tube_tile_starts(roi, spatial, stage_two_patch, stage_two.step_fraction)
    if starts:
        sums, weight_sum = blend_tiles(
            padded,
            predict_fn,
            starts,
            stage_two,
            num_classes=num_classes,
            window_device=window_device,
            autocast=autocast,
            progress=progress,
        )
        inside = torch.from_numpy(roi.mask(spatial)) & (weight_sum > 0)
        logits[:, inside] = (sums[:, inside] / weight_sum[inside]).float()
        logger.debug(
            "cord ROI: %d tiles, %.1f%% of the volume", len(starts), 100 * float(inside.float().mean())
        )
    else:
        logger.warning(
            "no cord found in any of %d axial slabs: the segmentation is empty", len(roi.slab_found)
        )
    cropped = logits[(slice(None), *unpad)]
    return cropped, roi.shifted(unpad[0].start, unpad[1].start, unpad[2].start, cropped.shape[1])


__all__ = [
    "CordRoi",
    "CordRoiSettings",
    "centreline_from_slabs",
    "cord_candidates",
    "link_slab_candidates",
    "find_cord_roi",
    "predict_cord_logits",
    "slab_starts",
    "tube_tile_starts",
]
