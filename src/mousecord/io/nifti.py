"""Read NIfTI files into canonical RAS arrays and write results back into the input's exact space.

The contract (after nnU-Net's reader/writer): :func:`load_nifti` returns the canonical
:class:`~mousecord.io.volume.Volume` plus an :class:`ImageGeometry` holding everything needed to undo the
reorientation and to write a result with the input's shape, affine, qform/sform codes and header fields.
:func:`save_like` takes a canonical array and that geometry, and nothing else.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from mousecord.errors import HeaderError, ImageFormatError, MousecordWarning, OrientationError
from mousecord.io.atomic import atomic_output, check_not_input
from mousecord.io.file_checks import (
    check_data_size,
    check_datatype,
    check_layout,
    header_data_error,
    reading_data,
)
from mousecord.io.header_checks import (
    check_finite_data,
    check_qform_sform,
    check_voxel_size_value,
    error_reason,
    quaternion_problem,
    warn_if_implausible_voxel_size,
)
from mousecord.io.orientation import (
    cord_axis_from_grid,
    cord_axis_last,
    from_canonical,
    orientation_to,
    reorient,
    single_slice_axis,
)
from mousecord.io.volume import Volume, affine_with_voxel_size, as_3d_image
from mousecord.options import check_cord_axis_setting

logger = logging.getLogger(__name__)


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

    def cord_axis(self, setting: str | int = "auto") -> int:
        """The canonical axis that runs along the cord (axial slices are across it).

        Args:
            setting: "auto" (a single slice's normal: its plane is the cross-section whatever the header
                calls it; else the header's superior-inferior axis, canonical z), "header" (that axis) or
                0, 1, 2 (the file's array axis i, j or k).

        Raises:
            ConfigError: ``setting`` is none of these.
        """
        check_cord_axis_setting(setting)
        if setting == "header":
            return 2
        if setting == "auto":
            normal = single_slice_axis(self.volume.shape)
            return 2 if normal is None else normal
        return int(self.geometry.transform[int(setting), 0])

    def across_cord(self, canonical_axis: int) -> tuple[np.ndarray, np.ndarray]:
        """The data with ``canonical_axis`` (the cord's, :meth:`cord_axis`) last, so that ``data[..., z]``
        is an axial slice, and the (3,) voxel size in that order: what measuring slice by slice takes. Two
        images on one grid, stored in different axis orders, give the same slices for the same axis."""
        order = cord_axis_last(canonical_axis)
        return np.transpose(self.volume.data, order), np.asarray(self.volume.voxel_size_mm)[order]

    def cord_axis_hint(self) -> tuple[int, str] | None:
        """Where the grid suggests another axis along the cord than the header's superior-inferior one
        (thick slices, a chunk's length; :func:`~mousecord.io.orientation.cord_axis_from_grid`): that
        canonical axis and why; else None. Only a hint: an in vivo slab is often wider than it is long."""
        found = cord_axis_from_grid(self.volume.shape, self.volume.voxel_size_mm)
        return None if found is None or found[0] == 2 else found

    def file_axis(self, canonical_axis: int) -> int:
        """The file's array axis that became ``canonical_axis``."""
        return int(np.flatnonzero(self.geometry.transform[:, 0] == canonical_axis)[0])

    def file_index(self, canonical_axis: int, index: int) -> int:
        """The file's own index, along :meth:`file_axis`, of slice ``index`` along ``canonical_axis``
        (what a viewer such as FSLeyes or ITK-SNAP shows as the voxel coordinate)."""
        axis = self.file_axis(canonical_axis)
        flipped = self.geometry.transform[axis, 1] < 0
        return int(self.volume.shape[canonical_axis] - 1 - index if flipped else index)


def load_nifti(
    path: Path | str,
    *,
    voxel_size_mm: Sequence[float] | None = None,
    dtype: np.dtype | type | None = None,
    check_finite: bool = True,
) -> LoadedImage:
    """Load a 3D NIfTI file into canonical RAS orientation, checking its header.

    Args:
        path: a ``.nii`` or ``.nii.gz`` file.
        voxel_size_mm: override the voxel size stored in the header (along the file's own axes), for ex vivo
            files saved with a wrong size such as 1 mm instead of 0.05 mm: three values, or for a 2D file
            two (x and y; the slice thickness stays the header's). Written outputs keep the input's
            original header.
        dtype: cast the data to this type (default: keep the stored type, after scaling).
        check_finite: raise on NaN or infinite voxels.

    Returns:
        The canonical volume and the input geometry.

    Raises:
        ImageFormatError: missing, unreadable, truncated, not 3D, non-finite data, or a header that puts
            the data or its extensions outside the file.
        HeaderError: qform and sform disagree, either holds NaN or infinite values or an invalid
            quaternion, or a degenerate affine.

    Warns:
        MousecordWarning: an implausible voxel size, or a header nibabel had to fix (negative or zero
            pixdim), in mousecord's words.

    Example:
        >>> image = load_nifti("sub-01_T1w.nii.gz")  # doctest: +SKIP
        >>> image.volume.axcodes
        ('R', 'A', 'S')
    """
    path = Path(path)
    stored = _open(path)
    image = as_3d_image(stored, lambda image: _read_data(image, path))
    check_qform_sform(image.header, name=str(path))
    data = _read_data(image, path)
    if dtype is not None:
        data = data.astype(dtype, copy=False)
    if check_finite:
        check_finite_data(data, name=str(path))
    affine = np.asarray(image.affine, dtype=np.float64)
    try:
        # the stored affine's: a voxel-size override rescales the axes but never turns them
        transform = orientation_to(affine)
    except OrientationError as error:
        raise HeaderError(f"{path}: {error}") from error
    native_affine = affine
    if voxel_size_mm is not None:
        if len(voxel_size_mm) == 2 and len(stored.shape) == 2:
            voxel_size_mm = (*voxel_size_mm, float(np.linalg.norm(affine[:3, 2])))
        elif len(voxel_size_mm) == 2:
            raise HeaderError(
                f"{path}: a {len(stored.shape)}D image takes three voxel sizes (x y z in mm), got two: "
                f"{list(voxel_size_mm)}"
            )
        check_voxel_size_value(voxel_size_mm, name=str(path))
        native_affine = affine_with_voxel_size(affine, voxel_size_mm)
    else:
        warn_if_implausible_voxel_size(
            Volume(data, affine).voxel_size_mm,
            name=str(path),
            shape=data.shape,
            in_plane_only=len(stored.shape) == 2,
        )
    canonical = reorient(Volume(data, native_affine), transform)
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
    with reading_data(path, stored):
        raw = np.asanyarray(proxy.get_unscaled())
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


def _open(path: Path) -> nib.Nifti1Image:
    """The file's image as stored: 3D, or 4D with one volume (see :func:`_read`)."""
    if not path.exists():
        raise ImageFormatError(f"{path}: file not found")
    if path.is_dir():
        raise ImageFormatError(f"{path}: is a folder, expected a .nii or .nii.gz file")
    check_layout(path)
    with _nibabel_messages() as messages:
        try:
            image = nib.load(path)
        except nib.spatialimages.HeaderDataError as error:
            raise ImageFormatError(header_data_error(path, error)) from error
        except (nib.filebasedimages.ImageFileError, ValueError, OSError, EOFError, zlib.error) as error:
            problem = quaternion_problem(error)  # nibabel builds the affine from a coded qform on loading
            if problem:
                raise HeaderError(f"{path}: invalid qform: {problem}") from error
            raise ImageFormatError(f"{path}: not a readable NIfTI file ({error_reason(error)})") from error
    if not isinstance(image, nib.Nifti1Image | nib.Nifti2Image):
        raise ImageFormatError(f"{path}: expected a NIfTI image, got {type(image).__name__}")
    if not np.isfinite(image.affine).all():
        raise HeaderError(
            f"{path}: affine holds NaN or infinite values (voxel size, qform or sform): "
            f"{np.round(image.affine, 4).tolist()}; fix the header first"
        )
    check_datatype(image, path)
    shape = image.shape
    if len(shape) not in (2, 3, 4) or (len(shape) == 4 and shape[3] != 1):
        raise ImageFormatError(f"{path}: expected a 2D or 3D image, got shape {tuple(shape)}")
    if min(shape) < 1:
        raise ImageFormatError(f"{path}: image has an empty axis, shape {tuple(shape[:3])}")
    check_data_size(image, path)
    _warn_about_header_fixes(messages, image, path)
    return image


@contextlib.contextmanager
def _nibabel_messages() -> Iterator[list[str]]:
    """Collect what nibabel logs or warns while reading a header, instead of letting it print.

    nibabel fixes some invalid headers (negative or zero pixdim...) and reports it on its own logger, in its
    own words; :func:`_warn_about_header_fixes` says it in mousecord's, naming the file.
    """
    messages: list[str] = []

    def keep(record: logging.LogRecord) -> bool:
        messages.append(record.getMessage())
        return False  # never reaches nibabel's handler

    nibabel_logger = nib.imageglobals.logger
    nibabel_logger.addFilter(keep)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield messages
        messages.extend(str(warning.message) for warning in caught)
    finally:
        nibabel_logger.removeFilter(keep)


def _warn_about_header_fixes(messages: list[str], image: nib.Nifti1Image, path: Path) -> None:
    """One :class:`MousecordWarning` naming the file for what nibabel fixed or warned about on reading."""
    problems: list[str] = []
    for message in dict.fromkeys(messages):  # nibabel repeats itself; keep the first of each, in order
        if message.startswith("pixdim[1,2,3]"):
            if "positive" in message:
                problems.append("voxel size (pixdim) negative on some axis; its absolute value is used")
            if "non-zero" in message:
                problems.append("voxel size (pixdim) zero on some axis, read as 1 mm")
                if not int(image.header["sform_code"]):  # no sform: the affine is built from pixdim
                    problems.append("give the true size as voxel_size_mm")
        else:
            problems.append(f"nibabel: {message}")
    if problems:
        warnings.warn(f"{path}: invalid header: {'; '.join(problems)}", MousecordWarning, stacklevel=4)


def _read(path: Path) -> nib.Nifti1Image:
    """A checked 3D image; a one-volume 4D file and a 2D file are read as 3D (see :func:`as_3d_image`)."""
    return as_3d_image(_open(path), lambda image: _read_data(image, path))


def _read_data(image: nib.Nifti1Image, path: Path) -> np.ndarray:
    with reading_data(path, image):
        return np.asanyarray(image.dataobj)
