"""Read NIfTI files into canonical RAS arrays and write results back into the input's exact space.

The contract (after nnU-Net's reader/writer): :func:`load_nifti` returns the canonical
:class:`~mousecord.io.volume.Volume` plus an :class:`ImageGeometry` holding everything needed to undo the
reorientation and to write a result with the input's shape, affine, qform/sform codes and header fields.
:func:`save_like` takes a canonical array and that geometry, and nothing else.
"""

from __future__ import annotations

import gzip
import logging
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from mousecord.errors import HeaderError, ImageFormatError, MousecordWarning
from mousecord.io.atomic import atomic_output, check_not_input
from mousecord.io.orientation import from_canonical, to_canonical
from mousecord.io.volume import Volume, affine_with_voxel_size

logger = logging.getLogger(__name__)

#: Voxel sizes outside this range (mm) are implausible for ex vivo mouse cord MRI.
PLAUSIBLE_VOXEL_SIZE_MM: tuple[float, float] = (0.005, 0.5)

#: qform and sform "agree" when direction/zoom entries differ by less than this (mm per voxel) and the
#: origins by less than this fraction of a voxel. Quaternion storage alone costs about 1e-4.
_AFFINE_TOLERANCE_MM = 1e-3
_ORIGIN_TOLERANCE_VOXELS = 0.1


@dataclass(frozen=True, eq=False)
class ImageGeometry:
    """Everything needed to write an array computed in canonical space back into an input's space.

    Attributes:
        path: the file this geometry was read from.
        header: a copy of the input's NIfTI header (qform/sform codes and all other fields).
        affine: the input's own (4, 4) affine, as stored (before any voxel-size override).
        shape: the input's 3D shape.
        transform: nibabel orientation transform from the input's axes to RAS.
        stored_shape: the shape in the file: 3D, 2D (one slice, read as one-slice 3D) or 4D with one
            volume; label maps are written back with this shape.
    """

    path: Path
    header: nib.Nifti1Header
    affine: np.ndarray
    shape: tuple[int, int, int]
    transform: np.ndarray
    stored_shape: tuple[int, ...] | None = None

    def to_native(self, canonical: np.ndarray) -> np.ndarray:
        """Map a canonical (x, y, z, ...) array back to the input's axis order and flips."""
        native = from_canonical(canonical, self.transform)
        if native.shape[:3] != self.shape:
            raise ValueError(f"array maps to shape {native.shape[:3]}, expected the input's {self.shape}")
        return native


@dataclass(frozen=True, eq=False)
class LoadedImage:
    """A NIfTI image in canonical orientation, with the geometry to write results back."""

    volume: Volume
    geometry: ImageGeometry


def load_nifti(
    path: Path | str,
    *,
    voxel_size_mm: tuple[float, float, float] | None = None,
    dtype: np.dtype | type | None = None,
    check_finite: bool = True,
) -> LoadedImage:
    """Load a 3D NIfTI file into canonical RAS orientation, checking its header.

    Args:
        path: a ``.nii`` or ``.nii.gz`` file.
        voxel_size_mm: override the voxel size stored in the header (along the file's own axes), for ex vivo
            files saved with a wrong size such as 1 mm instead of 0.05 mm. Written outputs keep the input's
            original header.
        dtype: cast the data to this type (default: keep the stored type, after scaling).
        check_finite: raise on NaN or infinite voxels.

    Returns:
        The canonical volume and the input geometry.

    Raises:
        ImageFormatError: missing, unreadable, truncated, not 3D, or non-finite data.
        HeaderError: qform and sform disagree, or a degenerate affine.

    Example:
        >>> image = load_nifti("sub-01_T1w.nii.gz")  # doctest: +SKIP
        >>> image.volume.axcodes
        ('R', 'A', 'S')
    """
    path = Path(path)
    stored = _open(path)
    image = _as_3d(stored, path)
    check_qform_sform(image.header, name=path.name)
    data = _read_data(image, path)
    if dtype is not None:
        data = data.astype(dtype, copy=False)
    if check_finite:
        check_finite_data(data, name=path.name)
    affine = np.asarray(image.affine, dtype=np.float64)
    native_affine = affine
    if voxel_size_mm is not None:
        check_voxel_size_value(voxel_size_mm, name=path.name)
        native_affine = affine_with_voxel_size(affine, voxel_size_mm)
    else:
        warn_if_implausible_voxel_size(Volume(data, affine).voxel_size_mm, name=path.name)
    canonical, transform = to_canonical(Volume(data, native_affine))
    geometry = ImageGeometry(
        path, stored.header.copy(), affine, tuple(data.shape), transform, tuple(stored.shape)
    )
    return LoadedImage(canonical, geometry)


def save_like(
    canonical: np.ndarray,
    geometry: ImageGeometry,
    path: Path | str,
    *,
    dtype: np.dtype | type | None = None,
) -> Path:
    """Write a canonical array into the space of the image ``geometry`` was read from, atomically.

    Shape, affine, qform/sform and their codes, and all other header fields equal the input's; the data
    type is ``dtype`` (default: the array's). Label maps should be passed as ``uint8``.

    Raises:
        OutputError: ``path`` is the input itself, or cannot be written.
    """
    path = Path(path)
    check_not_input(path, [geometry.path])
    native = np.ascontiguousarray(geometry.to_native(np.asarray(canonical)))
    dtype = np.dtype(dtype or native.dtype)
    stored_shape = geometry.stored_shape or geometry.shape
    if native.ndim == 3 and native.shape != stored_shape and native.size == int(np.prod(stored_shape)):
        native = native.reshape(stored_shape)  # a 2D or one-volume 4D input gets its own shape back
    header = geometry.header.copy()
    header.set_data_dtype(dtype)
    if dtype != geometry.header.get_data_dtype():
        header.set_slope_inter(None, None)  # the input's scaling means nothing for another data type
    if native.ndim != 3:
        header.set_data_shape(native.shape)
    image = nib.Nifti1Image(native.astype(dtype, copy=False), geometry.affine, header=header)
    # Nifti1Image(affine=...) resets the sform from the affine; restore the input's exact matrices and codes.
    qform, qform_code = geometry.header.get_qform(coded=True)
    sform, sform_code = geometry.header.get_sform(coded=True)
    image.set_qform(qform if qform is not None else geometry.affine, int(qform_code))
    image.set_sform(sform if sform is not None else geometry.affine, int(sform_code))
    with atomic_output(path) as temporary:
        nib.save(image, temporary)
    return path


def save_volume(volume: Volume, path: Path | str, *, dtype: np.dtype | type | None = None) -> Path:
    """Write a :class:`Volume` as a new NIfTI file (qform and sform set, code 1 = scanner), atomically."""
    data = np.asarray(volume.data)
    dtype = np.dtype(dtype or data.dtype)
    image = nib.Nifti1Image(data.astype(dtype, copy=False), volume.affine)
    image.set_qform(volume.affine, 1)
    image.set_sform(volume.affine, 1)
    image.header.set_xyzt_units("mm", "sec")
    with atomic_output(path) as temporary:
        nib.save(image, temporary)
    return Path(path)


def open_native(path: Path | str) -> nib.Nifti1Image:
    """Open a 3D NIfTI file in its own space without reading its data (see :func:`read_native`)."""
    return _read(Path(path))


def read_native(path: Path | str) -> tuple[nib.Nifti1Image, np.ndarray]:
    """Read a 3D NIfTI file in its own space (no reorientation, no header checks beyond the shape).

    For tools that work on the file's own arrays (crop, slice extraction, dataset conversion). The same
    errors as :func:`load_nifti`: a 4D file with one volume is read as 3D; missing, unreadable, truncated
    or corrupt (bad gzip) files raise :class:`ImageFormatError`.

    Returns:
        The 3D image (header and affine as stored) and its (x, y, z) data, scaling applied.
    """
    path = Path(path)
    image = _read(path)
    return image, _read_data(image, path)


def read_native_stored(
    path: Path | str,
) -> tuple[nib.Nifti1Image, np.ndarray, tuple[float, float] | None]:
    """Like :func:`read_native`, but the data as stored on disk and the file's ``(slope, intercept)``.

    The scaling is None when the file has none (the data is then the same as :func:`read_native`'s).
    Writing the raw data back with :func:`save_native` (``scaling=``) reproduces the input's voxels bit for
    bit; casting scaled float values back to an integer type would truncate them.
    """
    path = Path(path)
    stored = _open(path)
    image = stored.slicer[..., 0] if len(stored.shape) == 4 else stored
    proxy = stored.dataobj
    slope, inter = getattr(proxy, "slope", 1.0), getattr(proxy, "inter", 0.0)
    if not nib.is_proxy(proxy) or (slope == 1.0 and inter == 0.0):
        return image, _read_data(image, path), None
    try:
        raw = np.asanyarray(proxy.get_unscaled())
    except (OSError, EOFError, ValueError, zlib.error, gzip.BadGzipFile) as error:
        raise ImageFormatError(
            f"{path}: data cannot be read, file truncated or corrupt ({_reason(error)})"
        ) from error
    return image, (raw[..., 0] if raw.ndim == 4 else raw), (float(slope), float(inter))


def save_native(
    data: np.ndarray,
    affine: np.ndarray,
    header: nib.Nifti1Header,
    path: Path | str,
    *,
    dtype: np.dtype | type | None = None,
    scaling: tuple[float, float] | None = None,
) -> Path:
    """Write ``data`` atomically with a copy of ``header`` whose qform and sform are ``affine``.

    The qform/sform codes are the header's (1 = scanner where unset); other header fields are kept. For
    arrays in a file's own space (:func:`read_native`) whose grid may have changed (a crop: shifted affine).

    Args:
        data: (x, y, z) array.
        affine: (4, 4) voxel-to-world matrix of ``data``.
        header: the input's header.
        path: output file.
        dtype: stored data type (default: the array's). The header's scaling is dropped when it changes.
        scaling: ``(slope, intercept)`` to store with ``data`` as it is (raw values from
            :func:`read_native_stored`).
    """
    path = Path(path)
    header = header.copy()
    dtype = np.dtype(dtype or data.dtype)
    if header.get_data_dtype() != dtype:
        header.set_slope_inter(None, None)  # the input's scaling means nothing for another data type
    header.set_data_dtype(dtype)
    image = nib.Nifti1Image(np.asarray(data).astype(dtype, copy=False), affine, header=header)
    if scaling is not None:
        image.header.set_slope_inter(*scaling)  # after construction, which resets it
    _, qform_code = header.get_qform(coded=True)
    _, sform_code = header.get_sform(coded=True)
    image.set_qform(affine, int(qform_code) or 1)
    image.set_sform(affine, int(sform_code) or 1)
    with atomic_output(path) as temporary:
        nib.save(image, temporary)
    return path


def check_finite_data(data: np.ndarray, *, name: str) -> None:
    """Raise :class:`ImageFormatError` if ``data`` holds NaN or infinite values."""
    if np.issubdtype(data.dtype, np.floating):
        finite = np.isfinite(data)
        if not finite.all():
            bad = int(data.size - np.count_nonzero(finite))
            raise ImageFormatError(
                f"{name}: {bad} voxels are NaN or infinite; replace them before processing"
            )


def check_qform_sform(header: nib.Nifti1Header, *, name: str) -> None:
    """Raise :class:`HeaderError` if both qform and sform are set and map voxels to different places."""
    qform, qform_code = header.get_qform(coded=True)
    sform, sform_code = header.get_sform(coded=True)
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


def check_voxel_size_value(voxel_size_mm: tuple[float, ...], *, name: str) -> None:
    """Raise :class:`HeaderError` unless ``voxel_size_mm`` holds three positive finite numbers."""
    sizes = np.asarray(voxel_size_mm, dtype=np.float64)
    if sizes.shape != (3,) or not np.isfinite(sizes).all() or (sizes <= 0).any():
        raise HeaderError(
            f"{name}: voxel size must be three positive numbers in mm, got {list(voxel_size_mm)}"
        )


def warn_if_implausible_voxel_size(voxel_size_mm: np.ndarray, *, name: str) -> None:
    """Warn when a voxel size is implausible for ex vivo mouse cord MRI (e.g. 1 mm stored for 0.05 mm)."""
    low, high = PLAUSIBLE_VOXEL_SIZE_MM
    sizes = np.round(np.asarray(voxel_size_mm, dtype=np.float64), 6)
    if ((sizes < low) | (sizes > high)).any():
        warnings.warn(
            f"{name}: voxel size {sizes.tolist()} mm is implausible for a mouse spinal cord "
            f"(expected {low}-{high} mm, typically 0.05); if the header is wrong, pass --voxel-size "
            "(voxel_size_mm=...) with the true size",
            MousecordWarning,
            stacklevel=3,
        )


def _open(path: Path) -> nib.Nifti1Image:
    """The file's image as stored: 3D, or 4D with one volume (see :func:`_read`)."""
    if not path.exists():
        raise ImageFormatError(f"{path}: file not found")
    if path.is_dir():
        raise ImageFormatError(f"{path}: is a folder, expected a .nii or .nii.gz file")
    try:
        image = nib.load(path)
    except (nib.filebasedimages.ImageFileError, ValueError, OSError, EOFError, zlib.error) as error:
        raise ImageFormatError(f"{path}: not a readable NIfTI file ({_reason(error)})") from error
    if not isinstance(image, nib.Nifti1Image | nib.Nifti2Image):
        raise ImageFormatError(f"{path}: expected a NIfTI image, got {type(image).__name__}")
    shape = image.shape
    if len(shape) not in (2, 3, 4) or (len(shape) == 4 and shape[3] != 1):
        raise ImageFormatError(f"{path}: expected a 2D or 3D image, got shape {tuple(shape)}")
    if min(shape) < 1:
        raise ImageFormatError(f"{path}: image has an empty axis, shape {tuple(shape[:3])}")
    return image


def _as_3d(image: nib.Nifti1Image, path: Path) -> nib.Nifti1Image:
    """A 4D file holding one volume as that volume; a 2D file (one axial slice) as a one-slice 3D image."""
    if len(image.shape) == 4:
        return image.slicer[..., 0]
    if len(image.shape) == 2:
        header = image.header.copy()
        header.set_data_shape((*image.shape, 1))
        return type(image)(_read_data(image, path)[..., None], image.affine, header)
    return image


def _read(path: Path) -> nib.Nifti1Image:
    """A checked 3D image; a one-volume 4D file and a 2D file are read as 3D (see :func:`_as_3d`)."""
    return _as_3d(_open(path), path)


def _read_data(image: nib.Nifti1Image, path: Path) -> np.ndarray:
    try:
        return np.asanyarray(image.dataobj)
    except (OSError, EOFError, ValueError, zlib.error, gzip.BadGzipFile) as error:
        raise ImageFormatError(
            f"{path}: data cannot be read, file truncated or corrupt ({_reason(error)})"
        ) from error


def _reason(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
