"""nnU-Net v2's preprocessing and export steps as array functions (numpy, scipy, scikit-image).

Order (nnU-Net's ``DefaultPreprocessor.run_case_npy``): the canonical (x, y, z) array goes to network axes
(:func:`to_network_axes`: reversal to (z, y, x), then ``transpose_forward``), is cropped to the bounding box
of its non-zero voxels, normalised, then resampled to the model's spacing. Export reverses it: logits are
resampled back to the cropped shape (linear), turned into labels, pasted into the full grid, and mapped back
with :func:`from_network_axes`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy.ndimage import binary_fill_holes

from mousecord.errors import ConfigError, ImageFormatError
from mousecord.inference.memory import estimate_peak_bytes
from mousecord.inference.resampling import (
    ANISOTROPY_THRESHOLD,
    compute_new_shape,
    resample,
    separate_z_axis,
    spacing_matches,
)
from mousecord.io.header_checks import voxel_size_hint

if TYPE_CHECKING:
    from mousecord.models.bundle import InputSpec

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class PreprocessedImage:
    """An image in network space, with what :meth:`Predictor.export` needs to undo each step.

    Attributes:
        data: (c, z', y', x') float32, cropped, normalised and resampled (network axes).
        full_shape: (3,) network-axes shape before cropping.
        bounding_box: the crop, as slices into ``full_shape``.
        cropped_shape: (3,) shape after cropping, before resampling.
        spacing_mm: (3,) input spacing in network axes; ``resampled``: whether ``data`` was resampled.
        network_spacing_mm: (3,) spacing of ``data``: the model's (in-plane models keep the input's z).
    """

    data: np.ndarray
    full_shape: tuple[int, int, int]
    bounding_box: tuple[slice, slice, slice]
    cropped_shape: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    resampled: bool
    network_spacing_mm: tuple[float, float, float]


def to_network_axes(
    array: np.ndarray, voxel_size_mm: Sequence[float], transpose_forward: Sequence[int] = (0, 1, 2)
) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Canonical (..., x, y, z) array and spacing -> nnU-Net network order.

    nnU-Net reads images with SimpleITK, whose arrays are (z, y, x) with the spacing reversed; then it
    applies the plans' ``transpose_forward``. Leading (channel) axes are kept. Returns a view.

    Args:
        array: (..., x, y, z) array.
        voxel_size_mm: (3,) voxel size along x, y, z.
        transpose_forward: permutation of the three (z, y, x) axes.

    Example:
        >>> image, spacing = to_network_axes(np.zeros((9, 7, 11)), (0.1, 0.2, 0.3))
        >>> image.shape, spacing
        ((11, 7, 9), (0.3, 0.2, 0.1))
    """
    lead = array.ndim - 3
    order = [2, 1, 0]
    order = [order[axis] for axis in transpose_forward]
    spacing = tuple(float(voxel_size_mm[axis]) for axis in order)
    return array.transpose(*range(lead), *(lead + axis for axis in order)), spacing  # type: ignore[return-value]


def from_network_axes(array: np.ndarray, transpose_forward: Sequence[int] = (0, 1, 2)) -> np.ndarray:
    """Inverse of :func:`to_network_axes` : (..., network axes) -> (..., x, y, z), a view."""
    lead = array.ndim - 3
    order = [[2, 1, 0][axis] for axis in transpose_forward]
    inverse = [order.index(axis) for axis in range(3)]
    return array.transpose(*range(lead), *(lead + axis for axis in inverse))


def nonzero_bounding_box(image: np.ndarray) -> tuple[slice, ...]:
    """Half-open bounding box of voxels non-zero in any channel of a (c, z, y, x) image (nnU-Net's crop).

    An all-zero image keeps its full extent, as nnU-Net does.
    """
    nonzero = np.any(image != 0, axis=0)
    box = []
    for axis in range(nonzero.ndim):
        other = tuple(index for index in range(nonzero.ndim) if index != axis)
        present = np.flatnonzero(np.any(nonzero, axis=other))
        box.append(
            slice(int(present[0]), int(present[-1]) + 1) if present.size else slice(0, nonzero.shape[axis])
        )
    return tuple(box)


def nonzero_mask(image: np.ndarray) -> np.ndarray:
    """nnU-Net's ``create_nonzero_mask``: voxels non-zero in any channel, holes filled. (z, y, x) bool."""
    return binary_fill_holes(np.any(image != 0, axis=0))


def zscore_statistics(image: np.ndarray) -> tuple[np.float32, np.float32]:
    """Mean and standard deviation of a float32 array as :func:`normalize` computes them (in its memory
    layout: numpy's summation order sets the last bits)."""
    return image.mean(), image.std()


def normalize(
    image: np.ndarray,
    *,
    scheme: str = "ZScoreNormalization",
    mask: np.ndarray | None = None,
    intensity_properties: dict[str, float] | None = None,
    statistics: tuple[float, float] | None = None,
) -> np.ndarray:
    """Normalise one channel as nnU-Net does, in float32, returning a new array.

    Statistics are computed on ``image`` as laid out in memory: numpy's summation order, and so the last bits
    of the mean, depend on it. nnU-Net normalises a cropped view of a C-ordered (z, y, x) array; pass the same
    to get bit-identical values.

    Args:
        image: (z, y, x) array.
        scheme: "ZScoreNormalization" (over ``mask`` if given, voxels outside it untouched),
            "CTNormalization" (clip to the dataset's 0.5/99.5 percentiles, subtract its mean, divide by its
            std, from ``intensity_properties``), or "NoNormalization".
        mask: (z, y, x) bool, for z-score with ``use_mask_for_norm``.
        statistics: z-score (mean, std) to use instead of ``image``'s own (a slab of a larger image,
            normalised as the whole image is; see :class:`SlabReference`).
    """
    image = np.asarray(image, dtype=np.float32)  # no copy for float32: statistics over the caller's layout
    eps = 1e-8
    if scheme == "ZScoreNormalization" and mask is not None and statistics is None:
        values = image[mask]
        mean, std = values.mean(), values.std()
        image = image.copy()
        image[mask] = (values - mean) / max(std, eps)
    elif scheme == "ZScoreNormalization":
        mean, std = zscore_statistics(image) if statistics is None else map(np.float32, statistics)
        image = image - mean
        image /= max(std, eps)
    elif scheme == "CTNormalization":
        properties = intensity_properties or {}
        try:
            low, high = properties["percentile_00_5"], properties["percentile_99_5"]
            mean, std = properties["mean"], properties["std"]
        except KeyError as error:
            raise ConfigError(f"CTNormalization needs intensity property {error.args[0]!r}") from error
        image = np.clip(image, low, high)
        image -= mean
        image /= max(std, eps)
    elif scheme == "NoNormalization":
        image = image.copy()
    else:
        raise ConfigError(f"unsupported normalization {scheme!r}")
    return image


def slab_channels(image: np.ndarray, slices: int) -> np.ndarray:
    """(c, z, y, x) -> (c * slices, z, y, x): every slice with its ``slices // 2`` neighbours on each side as
    channels (channel ``c * slices + j`` is slice ``z + j - slices // 2``), the first and last slices
    replicated beyond the ends, as an in-plane (2.5D) model and its training samples see them. For one
    input channel the result is a read-only view whose channels share memory.

    Example:
        >>> slab_channels(np.arange(3.0).reshape(1, 3, 1, 1), 3)[:, :, 0, 0].tolist()
        [[0.0, 0.0, 1.0], [0.0, 1.0, 2.0], [1.0, 2.0, 2.0]]
    """
    if slices == 1:
        return image
    half = slices // 2
    depth = image.shape[1]
    if image.shape[0] == 1:
        # One input channel: a read-only view of the image padded once, whose channels step one slice
        # through the same memory (1 / slices of the memory of gathered channels, no gathering time).
        # torch ignores the read-only flag: the tensor made of it must never be written in place.
        padded = np.concatenate([image[:, :1]] * half + [image] + [image[:, -1:]] * half, axis=1)
        view = np.lib.stride_tricks.as_strided(
            padded,
            shape=(slices, *image.shape[1:]),
            strides=(padded.strides[1], *padded.strides[1:]),
            writeable=False,
        )
        return view
    channels = np.empty((image.shape[0] * slices, *image.shape[1:]), dtype=image.dtype)
    # Gathered straight into the result: padding, stacking and concatenating copied the volume three times.
    for offset in range(slices):
        neighbours = np.arange(depth) + offset - half
        for channel in range(image.shape[0]):
            # mode="clip" replicates the end slices and writes straight into ``out`` (no buffer)
            np.take(image[channel], neighbours, axis=0, out=channels[channel * slices + offset], mode="clip")
    return channels


@dataclass(frozen=True, eq=False)
class SlabReference:
    """What the slabs of one image share, so that each is preprocessed as the whole image would be.

    Attributes:
        bounding_box: the whole image's non-zero crop (network axes).
        statistics: per channel, the z-score (mean, std) over that crop, or None where the channel's
            scheme uses no image statistics.
    """

    bounding_box: tuple[slice, slice, slice]
    statistics: tuple[tuple[float, float] | None, ...]


def slab_reference(image: np.ndarray, voxel_size_mm: Sequence[float], spec: InputSpec) -> SlabReference:
    """The crop and normalisation statistics of a whole canonical image, for :func:`preprocess_image`'s
    ``slab`` (what nnU-Net computes on the whole image: the non-zero box, each channel's mean and std).

    Raises:
        ImageFormatError: a channel is z-scored inside a filled non-zero mask (``use_mask_for_norm``), a
            3D operation that slabs cannot reproduce.
    """
    if any(entry.use_mask for entry in spec.normalization):
        raise ImageFormatError(
            f"model {spec.name} normalises inside a non-zero mask, which cannot be done slab by slab"
        )
    data = _network_array(image, voxel_size_mm, spec)[0]
    box = nonzero_bounding_box(data)
    statistics: list[tuple[float, float] | None] = []
    for channel, entry in enumerate(spec.normalization):
        if entry.scheme != "ZScoreNormalization":
            statistics.append(None)
            continue
        # the view normalize() sees on the whole image, so the same sums to the last bit
        statistics.append(tuple(float(value) for value in zscore_statistics(data[channel][box])))
    return SlabReference(box, tuple(statistics))


def _network_array(
    image: np.ndarray, voxel_size_mm: Sequence[float], spec: InputSpec, z_range: slice | None = None
) -> tuple[np.ndarray, tuple[float, float, float]]:
    """(c, z, y, x) C-ordered float32 copy of a canonical image in network axes (only ``z_range``)."""
    image = np.asarray(image)
    if image.ndim == 3:
        image = image[None]
    if image.ndim != 4 or image.shape[0] != spec.input_channels:
        raise ImageFormatError(
            f"expected a 3D image with {spec.input_channels} channel(s), got shape {image.shape}"
        )
    data, spacing = to_network_axes(image, voxel_size_mm, spec.transpose_forward)
    if not spec.in_plane and data.shape[1] == 1:
        raise ImageFormatError(
            f"the image has one slice, but model {spec.name} is a 3D network that needs a volume; "
            "segment single slices with an in-plane (2D) model"
        )
    if z_range is not None:
        data = data[:, z_range]
    # the layout nnU-Net's SimpleITK reader gives
    return np.ascontiguousarray(data, dtype=np.float32), spacing


def network_grid(
    shape_vox: Sequence[int], spacing_mm: Sequence[float], spec: InputSpec
) -> tuple[tuple[float, float, float], tuple[int, int, int]]:
    """The spacing a network-axes image of ``shape_vox`` at ``spacing_mm`` is resampled to, and its shape
    there: the model's spacing, except that an in-plane model keeps the image's slices (a thick-slice or
    one-slice image is never resampled across them)."""
    target = tuple(float(value) for value in spec.spacing_mm)
    if spec.in_plane:
        target = (float(spacing_mm[0]), *target[1:])
    new_shape = tuple(max(size, 1) for size in compute_new_shape(shape_vox, spacing_mm, target))
    return target, new_shape  # type: ignore[return-value]


def preprocess_image(
    image: np.ndarray,
    voxel_size_mm: Sequence[float],
    spec: InputSpec,
    *,
    max_network_voxels: int | None = None,
    max_memory_bytes: int | None = None,
    max_upsampling: float | None = None,
    slab: tuple[slice, SlabReference] | None = None,
) -> PreprocessedImage:
    """Canonical (x, y, z) or (c, x, y, z) image -> network space, exactly as nnU-Net's ``run_case_npy``.

    To network axes, crop to the non-zero box, normalise each channel as ``spec.normalization`` says, then
    resample (cubic) to ``spec.spacing_mm``; an in-plane model keeps the image's slices (only y and x are
    resampled). The one preprocessing path: the Predictor and training both call it.

    Args:
        image: (x, y, z) or (c, x, y, z) canonical array.
        voxel_size_mm: (3,) voxel size along x, y, z.
        spec: what the network expects (:attr:`~mousecord.models.ModelBundle.input_spec`, or for a model
            being trained from scratch, its data's own spacing).
        max_network_voxels: refuse an image with more voxels than this once resampled.
        max_memory_bytes: refuse, before resampling, an image whose segmentation would need more memory
            than this (:func:`~mousecord.inference.memory.estimate_peak_bytes`).
        max_upsampling: refuse, before anything else, an image whose in-plane voxels are more than this
            many times the model's spacing: a header in the wrong unit (1 mm for 0.05 mm) or a scan of
            another species, which would be segmented for minutes and make no sense.
        slab: ``(z_range, reference)``: preprocess only the network-axes slices ``z_range`` (in-plane
            models), cropped and normalised as the whole image is (:func:`slab_reference`). The result's
            ``full_shape`` is the slab's and its ``bounding_box`` lies within the slab.

    Raises:
        ImageFormatError: wrong channel count, a single slice for a 3D model, voxels far larger than the
            model's, too many voxels, or not enough memory.
    """
    if slab is not None and not spec.in_plane:
        raise ConfigError(f"model {spec.name} is 3D: only an in-plane model segments an image slab by slab")
    z_range, reference = slab if slab is not None else (None, None)
    data, spacing = _network_array(image, voxel_size_mm, spec, z_range)
    # the finer in-plane (y, x) axis: a wrong unit scales both; one thick axis (a sagittal localiser) is a
    # scan. Network axis i is the (z, y, x) axis transpose_forward[i].
    in_plane = [axis for axis in range(3) if spec.transpose_forward[axis] != 0]
    upsampling = min(spacing[axis] / spec.spacing_mm[axis] for axis in in_plane)
    if max_upsampling is not None and upsampling > max_upsampling * (1 + 1e-6):  # 0.5 / 0.05 is 10.000...02
        model_spacing = _mm([spec.spacing_mm[axis] for axis in in_plane][::-1])
        raise ImageFormatError(
            f"its in-plane voxels are {upsampling:.1f}x the model's spacing ({model_spacing}): a mouse cord "
            f"would be a few voxels wide, and segmenting would resample it at least {upsampling:.1f}x larger "
            f"per axis; {_voxel_size_question(voxel_size_mm)} (or raise max_upsampling, {max_upsampling:g})"
        )
    full_shape = tuple(data.shape[1:])
    if reference is None:
        box = nonzero_bounding_box(data)
        statistics: tuple[tuple[float, float] | None, ...] = (None,) * len(spec.normalization)
    else:  # the whole image's crop, within this slab
        assert z_range is not None
        whole_z = reference.bounding_box[0]
        start = min(max(whole_z.start - z_range.start, 0), full_shape[0])
        stop = max(min(whole_z.stop - z_range.start, full_shape[0]), start)
        box = (slice(start, stop), *reference.bounding_box[1:])
        statistics = reference.statistics
    cropped = data[(slice(None), *box)]
    mask = nonzero_mask(cropped) if any(entry.use_mask for entry in spec.normalization) else None
    normalised = np.stack(
        [
            normalize(
                cropped[channel],
                scheme=entry.scheme,
                mask=mask if entry.use_mask else None,
                intensity_properties=entry.intensity_properties,
                statistics=statistics[channel],
            )
            for channel, entry in enumerate(spec.normalization)
        ]
    )
    target, new_shape = network_grid(cropped.shape[1:], spacing, spec)
    network_voxels = int(np.prod(new_shape, dtype=np.int64))
    if max_network_voxels is not None and network_voxels > max_network_voxels:
        raise ImageFormatError(
            f"at the model's spacing ({_mm(target[::-1])}) the image would have {network_voxels / 1e6:.0f} "
            f"million voxels, more than the limit of {max_network_voxels / 1e6:g} million; "
            f"{_voxel_size_question(voxel_size_mm)} (or raise max_network_voxels)"
        )
    needed_bytes = estimate_peak_bytes(network_voxels)
    if max_memory_bytes is not None and needed_bytes > max_memory_bytes:
        raise ImageFormatError(
            f"segmenting it needs about {needed_bytes / 1e9:.1f} GB of memory ({network_voxels / 1e6:.0f} "
            f"million voxels at the model's spacing, {_mm(target[::-1])}), more than the "
            f"{max_memory_bytes / 1e9:.1f} GB available; {_voxel_size_question(voxel_size_mm)}, or run it "
            "on a machine with more memory"
        )
    resampled = not spacing_matches(spacing, target) and new_shape != tuple(cropped.shape[1:])
    if resampled:
        logger.debug("resampling %s at %s mm to %s at %s mm", cropped.shape[1:], spacing, new_shape, target)
        normalised = resample(normalised, new_shape, spacing_mm=spacing, new_spacing_mm=target, order=3)
    return PreprocessedImage(
        normalised, full_shape, box, tuple(cropped.shape[1:]), spacing, resampled, target
    )


def preprocess_label_map(
    label_map: np.ndarray, preprocessed: PreprocessedImage, transpose_forward: Sequence[int] = (0, 1, 2)
) -> np.ndarray:
    """A canonical (x, y, z) label map on the image's grid -> the grid of ``preprocessed.data``: the same
    axes and crop, resampled by nearest neighbour (labels, ignore values included, are never blended)."""
    labels, _ = to_network_axes(np.asarray(label_map), (1.0, 1.0, 1.0), transpose_forward)
    labels = np.ascontiguousarray(labels[preprocessed.bounding_box])
    if not preprocessed.resampled:
        return labels
    resampled = resample(
        labels[None].astype(np.float32),
        preprocessed.data.shape[1:],
        spacing_mm=preprocessed.spacing_mm,
        new_spacing_mm=preprocessed.network_spacing_mm,
        order=0,
    )
    return np.rint(resampled[0]).astype(labels.dtype)


def _voxel_size_question(voxel_size_mm: Sequence[float]) -> str:
    """Asks whether the header's voxel size is right, with the size to give where a factor explains it."""
    hint = voxel_size_hint(voxel_size_mm, file_axes=False)  # canonical axes, not necessarily the file's
    fix = f"{hint[0].upper()}{hint[1:]}" if hint else "Give the true size as voxel_size_mm"
    return f"is its header voxel size ({_mm(voxel_size_mm)}) right? {fix}"


def _mm(values: Sequence[float]) -> str:
    """Sizes as a message gives them: (x, y, z) order, the order of ``voxel_size_mm``."""
    return " x ".join(f"{float(value):g}" for value in values) + " mm"


__all__ = [
    "ANISOTROPY_THRESHOLD",
    "PreprocessedImage",
    "SlabReference",
    "compute_new_shape",
    "from_network_axes",
    "network_grid",
    "nonzero_bounding_box",
    "nonzero_mask",
    "normalize",
    "preprocess_image",
    "preprocess_label_map",
    "resample",
    "separate_z_axis",
    "slab_channels",
    "slab_reference",
    "spacing_matches",
    "to_network_axes",
    "zscore_statistics",
]
