"""Read NIfTI files into canonical RAS arrays and write results back into the input's exact space.

The contract (after nnU-Net's reader/writer): :func:`load_nifti` returns the canonical
:class:`~mousecord.io.volume.Volume` plus an :class:`ImageGeometry` holding everything needed to undo the
reorientation and to write a result with the input's shape, affine, qform/sform codes and header fields.
:func:`save_like` takes a canonical array and that geometry, and nothing else.
"""

from __future__ import annotations

import contextlib
import gzip
import logging
import math
import re
import warnings
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from mousecord.errors import HeaderError, ImageFormatError, MousecordWarning, OrientationError
from mousecord.io.atomic import atomic_output, check_not_input
from mousecord.io.orientation import from_canonical, orientation_to, reorient
from mousecord.io.volume import Volume, affine_with_voxel_size

logger = logging.getLogger(__name__)

#: Voxel sizes outside this range (mm) are implausible for ex vivo mouse cord MRI.
PLAUSIBLE_VOXEL_SIZE_MM: tuple[float, float] = (0.005, 0.5)

#: qform and sform "agree" when direction/zoom entries differ by less than this (mm per voxel) and the
#: origins by less than this fraction of a voxel. Quaternion storage alone costs about 1e-4.
_AFFINE_TOLERANCE_MM = 1e-3
_ORIGIN_TOLERANCE_VOXELS = 0.1

#: Factors by which ex vivo headers are often scaled (so that tools made for human brains accept them).
_HEADER_SCALE_FACTORS = (10, 20)
#: A scaled header is "explained" when dividing gives in-plane voxels of 0.01-0.2 mm and slices of at most
#: 0.5 mm (thick slices are common, e.g. 0.05 x 0.05 x 0.4 mm).
_SCALED_IN_PLANE_MM = (0.01, 0.2)
_SCALED_SLICE_MAX_MM = 0.5

#: DEFLATE cannot compress more than 1032:1, so a .nii.gz file of n bytes holds at most about 1032 n bytes
#: of data (a margin above it keeps the check from ever refusing a whole file).
_MAX_GZIP_RATIO = 1100

#: Data types refused at load time: nibabel reads them, but mousecord needs one real number per voxel.
_COLOUR_HINT = "a colour image: convert it to one greyscale channel first"
_COMPLEX_HINT = "complex data: convert to magnitude first"


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
    image = _as_3d(stored, path)
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
        check_voxel_size_value(voxel_size_mm, name=str(path))
        native_affine = affine_with_voxel_size(affine, voxel_size_mm)
    else:
        warn_if_implausible_voxel_size(Volume(data, affine).voxel_size_mm, name=str(path))
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
    with _reading_data(path, stored):
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
    flat = np.asarray(data).ravel()
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
        problem = _quaternion_problem(error) or _reason(error)
        raise HeaderError(f"{name}: invalid {form}: {problem}") from error
    if matrix is not None and not np.isfinite(matrix).all():
        fields = "pixdim, quatern_b/c/d or qoffset_x/y/z" if form == "qform" else "srow_x/y/z"
        raise HeaderError(
            f"{name}: {form} holds NaN or infinite values (from {fields}): "
            f"{np.round(matrix, 4).tolist()}; fix the header first"
        )
    return matrix, int(code)


def _quaternion_problem(error: Exception) -> str | None:
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


def warn_if_implausible_voxel_size(voxel_size_mm: np.ndarray, *, name: str) -> None:
    """Warn when a voxel size is implausible for ex vivo mouse cord MRI (e.g. 1 mm stored for 0.05 mm)."""
    low, high = PLAUSIBLE_VOXEL_SIZE_MM
    sizes = np.round(np.asarray(voxel_size_mm, dtype=np.float64), 6)
    if ((sizes < low) | (sizes > high)).any():
        warnings.warn(
            f"{name}: voxel size {sizes.tolist()} mm is implausible for a mouse spinal cord "
            f"(expected {low}-{high} mm, typically 0.05); if the header is wrong, give the true size "
            f"as voxel_size_mm{_with_hint(voxel_size_hint(sizes))}",
            MousecordWarning,
            stacklevel=3,
        )


def voxel_size_hint(voxel_size_mm: Sequence[float], *, file_axes: bool = True) -> str:
    """Where dividing a header's voxel size by 10 or 20 gives a mouse-sized voxel, say which size to pass.

    Args:
        voxel_size_mm: the header's (3,) voxel size in mm.
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
        smallest, middle, largest = np.sort(scaled)
        low, high = _SCALED_IN_PLANE_MM
        if not (smallest >= low and middle <= high and largest <= _SCALED_SLICE_MAX_MM):
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


def _open(path: Path) -> nib.Nifti1Image:
    """The file's image as stored: 3D, or 4D with one volume (see :func:`_read`)."""
    if not path.exists():
        raise ImageFormatError(f"{path}: file not found")
    if path.is_dir():
        raise ImageFormatError(f"{path}: is a folder, expected a .nii or .nii.gz file")
    _check_layout(path)
    with _nibabel_messages() as messages:
        try:
            image = nib.load(path)
        except nib.spatialimages.HeaderDataError as error:
            raise ImageFormatError(_header_data_error(path, error)) from error
        except (nib.filebasedimages.ImageFileError, ValueError, OSError, EOFError, zlib.error) as error:
            problem = _quaternion_problem(error)  # nibabel builds the affine from a coded qform on loading
            if problem:
                raise HeaderError(f"{path}: invalid qform: {problem}") from error
            raise ImageFormatError(f"{path}: not a readable NIfTI file ({_reason(error)})") from error
    if not isinstance(image, nib.Nifti1Image | nib.Nifti2Image):
        raise ImageFormatError(f"{path}: expected a NIfTI image, got {type(image).__name__}")
    if not np.isfinite(image.affine).all():
        raise HeaderError(
            f"{path}: affine holds NaN or infinite values (voxel size, qform or sform): "
            f"{np.round(image.affine, 4).tolist()}; fix the header first"
        )
    _check_datatype(image, path)
    shape = image.shape
    if len(shape) not in (2, 3, 4) or (len(shape) == 4 and shape[3] != 1):
        raise ImageFormatError(f"{path}: expected a 2D or 3D image, got shape {tuple(shape)}")
    if min(shape) < 1:
        raise ImageFormatError(f"{path}: image has an empty axis, shape {tuple(shape[:3])}")
    _check_data_size(image, path)
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


def _check_layout(path: Path) -> None:
    """Refuse a ``.nii`` or ``.nii.gz`` file whose header places data or extensions where nibabel would
    fail or read without bound: a data offset (``vox_offset``) that is not a number, is 0 (the data would
    be the header itself) or lies past the end of the file, or a header extension whose size runs past the
    data's start (nibabel reads each extension in one piece of the size it claims, up to 2 GB).

    Anything else wrong with the header is left to nibabel, which reads it next.
    """
    name = path.name.lower()
    if not name.endswith((".nii", ".nii.gz")):
        return
    file_bytes = path.stat().st_size
    end = file_bytes if name.endswith(".nii") else _MAX_GZIP_RATIO * file_bytes
    try:
        with (gzip.open if name.endswith(".gz") else open)(path, "rb") as stream:
            block = stream.read(nib.Nifti2Header.template_dtype.itemsize + 4)
            header = _raw_header(block)
            if header is None:
                return  # too short or not NIfTI: nibabel says which
            start = header.template_dtype.itemsize + 4  # the header, then 4 bytes of extension flags
            offset = float(header["vox_offset"])
            if not math.isfinite(offset) or offset == 0 or offset > end:
                raise ImageFormatError(
                    f"{path}: invalid NIfTI header: the data start (vox_offset) "
                    f"{_offset_problem(offset, file_bytes, gzipped=name.endswith('.gz'))}"
                )
            if len(block) < start or block[start - 4] == 0:
                return  # no extensions
            remaining = offset - start  # nibabel refuses a positive vox_offset inside the header itself
            stream.seek(start)
            while remaining >= 16:  # nibabel's loop over the extensions, reading only their sizes
                head = stream.read(8)
                if len(head) < 8:
                    return  # nibabel reports the missing extension header
                size = int(np.frombuffer(head[:4], dtype=f"{header.endianness}i4")[0])
                if not 8 <= size <= remaining:
                    raise ImageFormatError(
                        f"{path}: invalid NIfTI header: a header extension claims {size} bytes, where "
                        f"{remaining:g} bytes lie before the data (vox_offset {offset:g})"
                    )
                stream.seek(size - 8, 1)
                remaining -= size
    except (OSError, EOFError, zlib.error):
        return  # unreadable: nibabel's error says so


def _offset_problem(offset: float, file_bytes: int, *, gzipped: bool) -> str:
    if not math.isfinite(offset):
        return f"is {offset:g}"
    if offset == 0:
        return "is 0, inside the header"
    if gzipped:
        return f"{offset:g} lies beyond what a gzip file of {_format_bytes(file_bytes)} can hold"
    return f"{offset:g} lies past the end of the file ({_format_bytes(file_bytes)})"


def _raw_header(block: bytes) -> nib.Nifti1Header | None:
    """The NIfTI-1 or NIfTI-2 header at the start of ``block`` as nibabel will read it (recognised by its
    magic, byte order guessed from ``sizeof_hdr``), unchecked; None when it is neither."""
    for header_class in (nib.Nifti1Header, nib.Nifti2Header):
        if header_class.may_contain_header(block):
            return header_class(block[: header_class.template_dtype.itemsize], check=False)
    return None


def _header_data_error(path: Path, error: Exception) -> str:
    """The message for a header nibabel refuses, naming the data type where that is the reason."""
    match = re.search(r"data code (-?\d+)", str(error))
    if match and int(match[1]) == 1:
        return f"{path}: NIfTI datatype binary (code 1, one bit per voxel) cannot be read; save it as uint8"
    if match:
        return f"{path}: NIfTI datatype code {match[1]} is not a known data type"
    return f"{path}: invalid NIfTI header ({_reason(error)})"


def _check_datatype(image: nib.Nifti1Image, path: Path) -> None:
    """Refuse data types that do not hold one real number per voxel (colour, complex)."""
    dtype = image.get_data_dtype()
    if dtype.fields is None and dtype.kind != "c":
        return
    code = int(image.header["datatype"])
    if dtype.fields is not None:
        label, hint = nib.nifti1.data_type_codes.niistring[code].removeprefix("NIFTI_TYPE_"), _COLOUR_HINT
    else:
        label, hint = dtype.name, _COMPLEX_HINT
    raise ImageFormatError(f"{path}: NIfTI datatype {label} (code {code}) is not supported: {hint}")


def _check_data_size(image: nib.Nifti1Image, path: Path) -> None:
    """Refuse a file too small for the data its header claims, before any memory is allocated for it.

    An uncompressed file's size is exact; a ``.nii.gz`` file can be refused only when no gzip stream of its
    size could hold that much (see :data:`_MAX_GZIP_RATIO`); reading then catches the rest.
    """
    data_bytes = math.prod(int(size) for size in image.shape) * image.get_data_dtype().itemsize
    file_bytes = path.stat().st_size
    name = path.name.lower()
    if name.endswith(".nii"):
        offset = int(getattr(image.dataobj, "offset", 0))
        if offset + data_bytes > file_bytes:
            raise ImageFormatError(
                f"{path}: file is truncated: its header claims {_describe_data(image, data_bytes)} but the "
                f"file holds {_format_bytes(max(file_bytes - offset, 0))} of data"
            )
    elif name.endswith(".gz") and data_bytes > _MAX_GZIP_RATIO * file_bytes:
        raise ImageFormatError(
            f"{path}: file is truncated: its header claims {_describe_data(image, data_bytes)}, more than a "
            f"gzip file of {_format_bytes(file_bytes)} can hold"
        )


def _describe_data(image: nib.Nifti1Image, data_bytes: int) -> str:
    shape = " x ".join(str(int(size)) for size in image.shape)
    return f"{shape} voxels of {image.get_data_dtype()} ({_format_bytes(data_bytes)})"


def _format_bytes(count: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:.3g} {unit}"
    return f"{count} bytes"


def _memory_error(path: Path, image: nib.Nifti1Image) -> ImageFormatError:
    voxels = math.prod(int(size) for size in image.shape)
    data_bytes = voxels * image.get_data_dtype().itemsize
    return ImageFormatError(
        f"{path}: header claims {voxels} voxels ({_format_bytes(data_bytes)}), more than the free memory "
        "can hold; is the file truncated or its header wrong?"
    )


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
    with _reading_data(path, image):
        return np.asanyarray(image.dataobj)


@contextlib.contextmanager
def _reading_data(path: Path, image: nib.Nifti1Image) -> Iterator[None]:
    """Turn the errors of reading ``image``'s voxels into one-line :class:`ImageFormatError`s."""
    try:
        yield
    except MemoryError as error:
        raise _memory_error(path, image) from error
    except (OSError, EOFError, ValueError, zlib.error, gzip.BadGzipFile) as error:
        raise ImageFormatError(
            f"{path}: data cannot be read, file truncated or corrupt ({_reason(error)})"
        ) from error


def _reason(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
