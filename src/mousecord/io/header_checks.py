"""Checks of a NIfTI header and its data that need no file: qform/sform agreement, plausible voxel sizes
(with the corrected size where a factor of 10 or 20 explains a wrong one), finite, non-constant data, and
whether an image looks like a label map (numpy, nibabel)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import nibabel as nib
import numpy as np

from mousecord.errors import HeaderError, ImageFormatError, MousecordWarning

#: Voxel sizes outside this range (mm) are implausible for ex vivo mouse cord MRI.
PLAUSIBLE_VOXEL_SIZE_MM: tuple[float, float] = (0.005, 0.5)
#: ... except the largest of three, which may be a thick slice's (in vivo protocols use up to 1-1.5 mm).
MAX_PLAUSIBLE_SLICE_THICKNESS_MM = 2.0


#: qform and sform "agree" when direction/zoom entries differ by less than this (mm per voxel) and the
#: origins by less than this fraction of a voxel. Quaternion storage alone costs about 1e-4.
_AFFINE_TOLERANCE_MM = 1e-3


_ORIGIN_TOLERANCE_VOXELS = 0.1


#: Factors by which ex vivo headers are often scaled (so that tools made for human brains accept them).
_HEADER_SCALE_FACTORS = (10, 20)


#: A scaled header is "explained" when dividing gives in-plane voxels of 0.01-0.2 mm and slices of at most
#: 0.5 mm (thick ex vivo slices are common, e.g. 0.05 x 0.05 x 0.4 mm).
_SCALED_IN_PLANE_MM = (0.01, 0.2)


_SCALED_SLICE_MAX_MM = 0.5


def check_finite_data(data: np.ndarray, *, name: str) -> None:
    """Raise :class:`ImageFormatError` if ``data`` holds NaN or infinite values."""
    if np.issubdtype(data.dtype, np.floating):
        finite = np.isfinite(data)
        if not finite.all():
            bad = int(data.size - np.count_nonzero(finite))
            raise ImageFormatError(
                f"{name}: {bad} voxels are NaN or infinite; replace them before processing"
            )


def check_not_constant(data: np.ndarray, *, name: str) -> None:
    """Raise :class:`ImageFormatError` if every voxel of ``data`` has the same value (nothing to segment).

    Example:
        >>> check_not_constant(np.zeros((2, 2, 2)), name="blank.nii.gz")
        Traceback (most recent call last):
        ...
        mousecord.errors.ImageFormatError: blank.nii.gz: image is constant (every voxel 0): nothing to segment
    """
    data = np.asarray(data)
    if data.size and data.min() == data.max():
        raise ImageFormatError(
            f"{name}: image is constant (every voxel {data.flat[0].item():g}): nothing to segment"
        )


#: At most this many distinct values, all integers, and an image looks like a label map or mask.
LABEL_MAP_MAX_VALUES = 8


def label_map_values(data: np.ndarray) -> list[float] | None:
    """The values of ``data`` if it looks like a label map or mask (at most :data:`LABEL_MAP_MAX_VALUES`
    distinct integers), else None. An MR image has thousands of distinct intensities.

    Example:
        >>> label_map_values(np.array([[0, 1], [2, 1]], dtype=np.float32))
        [0.0, 1.0, 2.0]
    """
    flat = np.asarray(data).ravel(order="K")  # a view of nibabel's Fortran-ordered arrays, not a copy
    # a strided sample rejects real images at a fraction of the cost of np.unique over all voxels
    sample = flat[:: max(1, flat.size // 100_000)]
    if len(np.unique(sample)) > LABEL_MAP_MAX_VALUES:
        return None
    values = np.unique(flat)
    if len(values) > LABEL_MAP_MAX_VALUES or not np.all(values == np.round(values)):
        return None
    return [float(value) for value in values]


def check_qform_sform(header: nib.Nifti1Header, *, name: str) -> None:
    """Raise :class:`HeaderError` if a coded qform or sform cannot be a voxel-to-world mapping (an invalid
    quaternion, NaN or infinite entries), or if both are set and map voxels to different places."""
    qform, qform_code = _coded_form(header, "qform", name=name)
    sform, sform_code = _coded_form(header, "sform", name=name)
    if qform is None or sform is None or not qform_code or not sform_code:
        return
    voxel_size = np.sqrt((sform[:3, :3] ** 2).sum(axis=0))
    matrix_diff = np.abs(qform[:3, :3] - sform[:3, :3]).max()
    origin_diff_vox = np.abs(qform[:3, 3] - sform[:3, 3]).max() / max(float(voxel_size.min()), 1e-9)
    if matrix_diff > _AFFINE_TOLERANCE_MM or origin_diff_vox > _ORIGIN_TOLERANCE_VOXELS:
        raise HeaderError(
            f"{name}: qform and sform disagree (max matrix difference {matrix_diff:.3g} mm, origin offset "
            f"{origin_diff_vox:.3g} voxels); fix the header first, e.g. `mousecord fix-header` copies the "
            "qform into the sform"
        )


def _coded_form(header: nib.Nifti1Header, form: str, *, name: str) -> tuple[np.ndarray | None, int]:
    """The header's qform or sform matrix (None when its code is 0) and code, checked to be finite."""
    try:
        matrix, code = getattr(header, f"get_{form}")(coded=True)
    except (ValueError, nib.spatialimages.HeaderDataError) as error:
        problem = quaternion_problem(error) or error_reason(error)
        raise HeaderError(f"{name}: invalid {form}: {problem}") from error
    if matrix is not None and not np.isfinite(matrix).all():
        fields = "pixdim, quatern_b/c/d or qoffset_x/y/z" if form == "qform" else "srow_x/y/z"
        raise HeaderError(
            f"{name}: {form} holds NaN or infinite values (from {fields}): "
            f"{np.round(matrix, 4).tolist()}; fix the header first"
        )
    return matrix, int(code)


def quaternion_problem(error: Exception) -> str | None:
    """In the header's terms, why nibabel could not build a qform from its quaternion; None when ``error``
    is about something else."""
    if "w2 should be positive" in str(error):  # quaternions.fillpositive: b^2 + c^2 + d^2 > 1
        return "its quaternion (quatern_b, quatern_c, quatern_d) is not a rotation (b^2 + c^2 + d^2 > 1)"
    return None


def check_voxel_size_value(voxel_size_mm: tuple[float, ...], *, name: str) -> None:
    """Raise :class:`HeaderError` unless ``voxel_size_mm`` holds three positive finite numbers."""
    sizes = np.asarray(voxel_size_mm, dtype=np.float64)
    if sizes.shape != (3,) or not np.isfinite(sizes).all() or (sizes <= 0).any():
        raise HeaderError(
            f"{name}: voxel size must be three positive numbers in mm, got {list(voxel_size_mm)}"
        )


def warn_if_implausible_voxel_size(
    voxel_size_mm: np.ndarray, *, name: str, shape: Sequence[int] | None = None, in_plane_only: bool = False
) -> None:
    """Warn when a voxel size is implausible for mouse cord MRI (e.g. 1 mm stored for 0.05 mm): in-plane
    sizes outside :data:`PLAUSIBLE_VOXEL_SIZE_MM`, slices thicker than that or, across a plane of at most
    0.2 mm voxels, than :data:`MAX_PLAUSIBLE_SLICE_THICKNESS_MM`.

    Args:
        shape: the image's shape: the size along an axis of one voxel (a single slice's thickness, which
            nothing uses) is not judged.
        in_plane_only: judge (and hint at) the first two sizes alone, as for a 2D file, whose override
            takes x and y.
    """
    low, high = PLAUSIBLE_VOXEL_SIZE_MM
    sizes = np.round(np.asarray(voxel_size_mm, dtype=np.float64), 6)[: 2 if in_plane_only else 3]
    judged = np.sort(sizes if shape is None else sizes[np.asarray(shape)[: sizes.size] > 1])
    highs = np.full(judged.size, high)
    if judged.size == 3 and judged[1] <= _SCALED_IN_PLANE_MM[1]:  # thick slices of a mouse-sized plane
        highs[2] = MAX_PLAUSIBLE_SLICE_THICKNESS_MM
    if ((judged < low) | (judged > highs)).any():
        warnings.warn(
            f"{name}: voxel size {sizes.tolist()} mm is implausible for a mouse spinal cord "
            f"(expected {low}-{high} mm in-plane, typically 0.05, and slices of at most "
            f"{MAX_PLAUSIBLE_SLICE_THICKNESS_MM:g} mm); if the header is wrong, give the true size "
            f"as voxel_size_mm{_with_hint(voxel_size_hint(sizes))}",
            MousecordWarning,
            stacklevel=3,
        )


def voxel_size_hint(voxel_size_mm: Sequence[float], *, file_axes: bool = True) -> str:
    """Where dividing a header's voxel size by 10 or 20 gives a mouse-sized voxel, say which size to pass.

    Args:
        voxel_size_mm: the header's (3,) voxel size in mm, or the (2,) in-plane one of a 2D file.
        file_axes: whether the sizes are along the file's own axes (the order ``voxel_size_mm`` takes);
            if not (canonical order), values are only spelled out for isotropic voxels.

    Returns:
        A hint such as ``"if it is 0.05 mm (header x20), give voxel_size_mm=(0.05, 0.05, 0.05)"``, or
        ``""`` when no factor explains the size.

    Example:
        >>> voxel_size_hint([4.0, 4.0, 4.0])
        'if it is 0.2 mm (header x20), give voxel_size_mm=(0.2, 0.2, 0.2)'
    """
    sizes = np.asarray(voxel_size_mm, dtype=np.float64)
    hints = []
    for factor in _HEADER_SCALE_FACTORS:
        scaled = np.round(sizes / factor, 6)
        in_plane = np.sort(scaled)[:2]  # the largest of three may be a slice thickness
        low, high = _SCALED_IN_PLANE_MM
        if not (in_plane.min() >= low and in_plane.max() <= high and scaled.max() <= _SCALED_SLICE_MAX_MM):
            continue
        isotropic = bool(np.all(scaled == scaled[0]))
        described = f"{scaled[0]:g}" if isotropic else " x ".join(f"{value:g}" for value in scaled)
        if file_axes or isotropic:
            values = ", ".join(f"{value:g}" for value in scaled)
            hints.append(f"if it is {described} mm (header x{factor}), give voxel_size_mm=({values})")
        else:  # canonical (RAS) order is not necessarily the file's
            hints.append(
                f"if it is {described} mm (header x{factor}), give voxel_size_mm as the header's sizes "
                f"divided by {factor}, in the file's axis order"
            )
    return "; ".join(hints)


def _with_hint(hint: str) -> str:
    return f"; {hint}" if hint else ""


def error_reason(error: BaseException) -> str:
    """The first line of an exception's message (its type's name if it has none)."""
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


__all__ = [
    "LABEL_MAP_MAX_VALUES",
    "PLAUSIBLE_VOXEL_SIZE_MM",
    "check_finite_data",
    "check_not_constant",
    "check_qform_sform",
    "check_voxel_size_value",
    "error_reason",
    "label_map_values",
    "quaternion_problem",
    "voxel_size_hint",
    "warn_if_implausible_voxel_size",
]
