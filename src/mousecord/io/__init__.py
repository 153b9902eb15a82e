"""NIfTI input/output, geometry and header checks (numpy, nibabel; no torch)."""

from mousecord.io.atomic import atomic_output, check_not_input, split_suffix
from mousecord.io.header_checks import (
    check_finite_data,
    check_not_constant,
    check_qform_sform,
    voxel_size_hint,
)
from mousecord.io.nifti import (
    ImageGeometry,
    LoadedImage,
    load_nifti,
    open_native,
    read_native,
    read_native_stored,
    save_like,
    save_native,
    save_volume,
)
from mousecord.io.orientation import from_canonical, reorient, to_canonical
from mousecord.io.volume import Volume, affine_with_voxel_size

__all__ = [
    "ImageGeometry",
    "LoadedImage",
    "Volume",
    "affine_with_voxel_size",
    "atomic_output",
    "check_finite_data",
    "check_not_constant",
    "check_not_input",
    "check_qform_sform",
    "from_canonical",
    "load_nifti",
    "open_native",
    "read_native",
    "read_native_stored",
    "reorient",
    "save_like",
    "save_native",
    "save_volume",
    "split_suffix",
    "to_canonical",
    "voxel_size_hint",
]
