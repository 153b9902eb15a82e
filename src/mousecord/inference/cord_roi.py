"""Cord-focused inference: find the cord cheaply, then segment only its neighbourhood.

Stage 1 (:func:`find_cord_roi`): the network runs on a sparse set of axial slabs (``slab_depth_vox`` slices
every ``slab_spacing_mm``, each covering the whole in-plane field, tiles without overlap). Among the largest
26-connected cord (GM + WM) components of each slab, one per slab is chosen so that together they form the
longest continuous cord, the centre moving at most ``max_centre_step_mm`` from slab to slab (a structure that
looks like cord in some slabs only is left out); between chains as long, the one the network is surer of (the
summed mean cord probability of its components) wins, which in a single slice picks the cord over a larger
vertebral body. Each chosen component gives a centre (the median of its voxels, robust to false positives
touching the cord); the centres, interpolated linearly along z (constant beyond the first and last), form a
centreline, and the largest in-plane half extent of those components (at most ``max_cord_half_width_mm``, the
widest mouse cord's) plus ``margin_mm`` gives the half size of a tube around it. Slabs without anything
cord-like bound the tube along z, so chunks whose ends hold no cord are not segmented there. That geometry
(the candidates, their chaining, the tube) lives in :mod:`mousecord.inference.centreline`.

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
from mousecord.inference.centreline import (
    CordCoverage,
    CordRoi,
    centreline_from_slabs,
    cord_candidates,
    link_slab_candidates,
    slab_starts,
)
from mousecord.inference.sliding_window import (
    TileSettings,
    blend_tiles,
    compute_tile_starts,
    cord_probability_from_logits,
    labels_from_logits,
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
        slice_step_mm: where the stage-2 tile is one slice deep (an in-plane network), segment one slice
            every this many mm (rounded down to whole slices, at least every slice) and interpolate the
            logits of the slices in between linearly along z: the cord changes little over a tenth of a
            millimetre, the network time falls with the step. None: every slice.
    """

    margin_mm: float = 1.25
    max_cord_half_width_mm: float = 1.6
    slab_spacing_mm: float = 2.0
    slab_depth_vox: int | None = None
    min_cord_voxels: int = 50
    max_centre_step_mm: float = 1.0
    patch_size_vox: tuple[int, int, int] | None = None
    tile_step_fraction: float | None = None
    slice_step_mm: float | None = None

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
        if self.slice_step_mm is not None and not self.slice_step_mm > 0:
            raise ConfigError(f"slice_step_mm must be > 0, got {self.slice_step_mm}")

    def slice_step_vox(self, patch_depth_vox: int, slice_spacing_mm: float) -> int:
        """Stage-2 rows are this many slices apart for a tile ``patch_depth_vox`` deep (see
        ``slice_step_mm``; 1 for a 3D tile, whose rows the tile step places)."""
        if self.slice_step_mm is None or patch_depth_vox != 1:
            return 1
        return max(1, int(self.slice_step_mm / slice_spacing_mm + 1e-6))

    def to_dict(self) -> dict[str, Any]:
        return {
            key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()
        }


def _padded_for_both_stages(
    image: torch.Tensor, tiles: TileSettings, settings: CordRoiSettings
) -> tuple[torch.Tensor, tuple[slice, ...], TileSettings]:
    """``image`` zero-padded to the larger of the two stages' tiles, the slices that cut the padding away,
    and stage 2's tiling (the model's, with the step and patch of ``settings`` where given)."""
    stage_two = replace(
        tiles,
        patch_size_vox=settings.patch_size_vox or tiles.patch_size_vox,
        step_fraction=settings.tile_step_fraction or tiles.step_fraction,
    )
    largest = tuple(max(a, b) for a, b in zip(tiles.patch_size_vox, stage_two.patch_size_vox, strict=True))
    padded, unpad = pad_to_patch(torch.as_tensor(image), largest)
    return padded, unpad, stage_two


def locate_cord(
    image: torch.Tensor,
    predict_fn: Callable[[torch.Tensor], torch.Tensor],
    tiles: TileSettings,
    *,
    spacing_mm: Sequence[float],
    settings: CordRoiSettings,
    window_device: torch.device | str = "cpu",
) -> CordCoverage:
    """Stage 1 alone, on ``image`` padded as :func:`predict_cord_logits` pads it: how far it finds one
    continuous cord through the image across its first spatial axis (arguments as there)."""
    padded, _, _ = _padded_for_both_stages(image, tiles, settings)
    roi = find_cord_roi(
        padded,
        predict_fn,
        patch_size_vox=tiles.patch_size_vox,
        spacing_mm=spacing_mm,
        settings=settings,
        batch_size=tiles.batch_size,
        window_device=window_device,
    )
    return roi.coverage


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
    slabs, cord_probabilities = [], []
    for start in starts:
        logits = sliding_window(
            image[:, start : start + depth],
            predict_fn,
            slab_tiles,
            window_device=window_device,
            progress=progress,
        )
        slabs.append((start, labels_from_logits(logits)))
        # float16: a probability per voxel of every slab is held until the chain is chosen
        cord_probabilities.append(cord_probability_from_logits(logits).astype(np.float16))
    margin_vox = [settings.margin_mm / float(spacing_mm[axis]) for axis in (1, 2)]
    roi = centreline_from_slabs(
        slabs,
        tuple(image.shape[1:]),
        cord_probabilities=cord_probabilities,
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
    roi: CordRoi,
    shape_zyx: Sequence[int],
    patch_size_vox: Sequence[int],
    tile_step_fraction: float,
    slice_step_vox: int = 1,
) -> list[tuple[int, int, int]]:
    """Tile starts covering the tube: rows along z placed as nnU-Net does over the tube's z range, each row
    covering the in-plane box of the tube over its slices. ``shape_zyx`` must be at least the patch.

    With a one-slice-deep patch and ``slice_step_vox`` k > 1, rows lie every k slices (and on the tube's
    last slice), each covering the tube's box up to the neighbouring rows, so that the slices in between
    can be interpolated from both (:func:`interpolate_skipped_slices`)."""
    patch = [int(value) for value in patch_size_vox]
    if not roi.found:
        return []
    z0, z1 = _at_least(roi.z_start, roi.z_stop, patch[0], int(shape_zyx[0]))
    boxes = roi.boxes(shape_zyx)
    row_starts = [
        z0 + offset for offset in compute_tile_starts((z1 - z0,), (patch[0],), tile_step_fraction)[0]
    ]
    stepped = slice_step_vox > 1 and patch[0] == 1
    if stepped:
        row_starts = sorted({*row_starts[::slice_step_vox], row_starts[-1]})
    starts: list[tuple[int, int, int]] = []
    for index, z in enumerate(row_starts):
        reach = (
            (row_starts[max(index - 1, 0)], row_starts[min(index + 1, len(row_starts) - 1)] + 1)
            if stepped
            else (z, z + patch[0])
        )
        rows = boxes[max(reach[0], roi.z_start) : min(reach[1], roi.z_stop)]
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


def interpolate_skipped_slices(blended: torch.Tensor, weight_sum: torch.Tensor, rows: Sequence[int]) -> None:
    """Fill the slices between the segmented ``rows`` of (k, z, y, x) logits ``blended`` (already divided
    by the tiles' ``weight_sum``) in place, linearly along z from the two rows around each; ``weight_sum``
    (z, y, x) becomes positive there where both rows were segmented."""
    for low, high in itertools.pairwise(rows):
        covered = (weight_sum[low] > 0) & (weight_sum[high] > 0)
        for z in range(low + 1, high):
            share = (z - low) / (high - low)
            blended[:, z] = torch.lerp(blended[:, low], blended[:, high], share)
            weight_sum[z] = covered.to(weight_sum.dtype)


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
        image: (c, z, y, x) normalised image, any size (axes smaller than a tile are zero-padded); never
            written (it may be a view whose channels share memory, see ``slab_channels``).
        predict_fn: the network (batch of tiles -> logits).
        tiles: the model's tiling: its patch is stage 1's tile; stage 2 uses it with the step and patch
            of ``settings`` where they are given. Mirroring applies to stage 2 only (stage 1 only locates
            the cord).
        spacing_mm: (3,) voxel size (z, y, x).
        num_classes: k.
        settings: see :class:`CordRoiSettings`.

    Returns:
        ``(logits, roi)``, the tube on ``image``'s grid. Without cord in stage 1 the logits are all
        background (logged at info level: the caller decides what an empty result means).
    """
    padded, unpad, stage_two = _padded_for_both_stages(image, tiles, settings)
    stage_two_patch = stage_two.patch_size_vox
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
    slice_step = settings.slice_step_vox(stage_two_patch[0], float(spacing_mm[0]))
    starts = tube_tile_starts(roi, spatial, stage_two_patch, stage_two.step_fraction, slice_step)
    if starts:
        # Blended inside the tiles' bounding box only: accumulators of the whole volume cost 320 MB for a
        # 200 x 200 x 500 image, where the tube is a few percent of it.
        box = tuple(
            slice(min(start[axis] for start in starts), max(start[axis] for start in starts) + size)
            for axis, size in enumerate(stage_two_patch)
        )
        sums, weight_sum = blend_tiles(
            padded[(slice(None), *box)],
            predict_fn,
            [tuple(start[axis] - box[axis].start for axis in range(3)) for start in starts],
            stage_two,
            num_classes=num_classes,
            window_device=window_device,
            autocast=autocast,
            progress=progress,
        )
        sums /= weight_sum  # in place; 0 / 0 outside every tile, which ``inside`` leaves out
        if slice_step > 1:
            interpolate_skipped_slices(
                sums, weight_sum, sorted({start[0] - box[0].start for start in starts})
            )
        inside = torch.from_numpy(roi.mask(spatial)[box]) & (weight_sum > 0)
        region = logits[(slice(None), *box)]
        for channel in range(num_classes):  # one class at a time: no second copy of the blended logits
            # where(out=) writes the view in place, 20x faster than boolean-mask assignment
            torch.where(inside, sums[channel].float(), region[channel], out=region[channel])
        logger.debug(
            "cord ROI: %d tiles, %.1f%% of the volume",
            len(starts),
            100 * float(inside.sum()) / float(np.prod(spatial)),
        )
    else:
        # info, not a warning: the caller decides (the pipeline names the file of an empty result, or
        # searches the image's other axes first)
        logger.info("no cord found in any of %d axial slabs: the segmentation is empty", len(roi.slab_found))
    cropped = logits[(slice(None), *unpad)]
    return cropped, roi.shifted(unpad[0].start, unpad[1].start, unpad[2].start, cropped.shape[1])


__all__ = [
    "CordCoverage",
    "CordRoi",
    "CordRoiSettings",
    "centreline_from_slabs",
    "cord_candidates",
    "link_slab_candidates",
    "find_cord_roi",
    "interpolate_skipped_slices",
    "locate_cord",
    "predict_cord_logits",
    "slab_starts",
    "tube_tile_starts",
]
