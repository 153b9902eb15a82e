"""A voxel array together with its voxel-to-world affine."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import nibabel as nib
import numpy as np


@dataclass(frozen=True, eq=False)
class Volume:
    """A 3D array and the 4x4 affine that maps voxel indices to world millimetres.

    Every grid change (reorient, crop, pad, resample) returns a new ``Volume`` whose array and affine were
    updated together, so geometry never drifts from the data.

    Attributes:
        data: (i, j, k) array. In mousecord's canonical space the axes point to R, A, S and k runs along
            the cord.
        affine: (4, 4) float64 voxel-to-world matrix in mm.
    """

    data: np.ndarray
    affine: np.ndarray

    def __post_init__(self) -> None:
        affine = np.asarray(self.affine, dtype=np.float64)
        if affine.shape != (4, 4):
            raise ValueError(f"affine must be 4x4, got shape {affine.shape}")
        if np.ndim(self.data) != 3:
            raise ValueError(f"Volume data must be 3D, got shape {np.shape(self.data)}")
        object.__setattr__(self, "affine", affine)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(size) for size in self.data.shape)  # type: ignore[return-value]

    @property
    def voxel_size_mm(self) -> np.ndarray:
        """(3,) voxel edge lengths in mm, from the affine's column norms."""
        return np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0))

    @property
    def axcodes(self) -> tuple[str, str, str]:
        """nibabel axis codes, e.g. ``("R", "A", "S")``."""
        return tuple(nib.aff2axcodes(self.affine))  # type: ignore[return-value]

    @classmethod
    def from_image(cls, image: nib.spatialimages.SpatialImage) -> Volume:
        """The volume of a nibabel image in memory (its scaled data as float32, its affine); a 2D image
        (one axial slice) becomes one slice deep and a 4D one holding one volume that volume, as files are
        read.

        Raises:
            TypeError: ``image`` is no nibabel image (the message says what to pass instead).
            ValueError: its data is neither 2D, 3D nor one 3D volume.
        """
        if not isinstance(image, nib.spatialimages.SpatialImage):
            raise TypeError(
                f"expected a nibabel image, got {type(image).__name__}; for a numpy array give its affine "
                "(Volume(array, affine)), for a file use mousecord.load_nifti(path).volume"
            )
        image = as_3d_image(image)
        if image.ndim != 3:
            raise ValueError(f"a {image.ndim}D image: mousecord takes 3D volumes and 2D slices")
        return cls(np.asarray(image.dataobj, dtype=np.float32), image.affine)

    def with_data(self, data: np.ndarray) -> Volume:
        """Same grid, new array (shape must match)."""
        if np.shape(data)[:3] != self.shape:
            raise ValueError(f"new data shape {np.shape(data)} does not match grid {self.shape}")
        return Volume(data, self.affine)


def as_3d_image(
    image: nib.spatialimages.SpatialImage,
    read_data: Callable[[nib.spatialimages.SpatialImage], np.ndarray] = lambda image: np.asanyarray(
        image.dataobj
    ),
) -> nib.spatialimages.SpatialImage:
    """``image`` as 3D where mousecord reads it so: a 4D image holding one volume as that volume, a 2D one
    (one axial slice) as a one-slice 3D image with its header; any other unchanged. ``read_data`` reads a 2D
    image's array (a file reader maps its errors)."""
    if image.ndim == 4 and image.shape[3] == 1:
        return image.slicer[..., 0]
    if image.ndim == 2:
        header = image.header.copy()
        header.set_data_shape((*image.shape, 1))
        return type(image)(read_data(image)[..., None], image.affine, header)
    return image


def affine_with_voxel_size(affine: np.ndarray, voxel_size_mm: tuple[float, float, float]) -> np.ndarray:
    """Return ``affine`` with its voxel size replaced, keeping direction cosines and origin.

    Args:
        affine: (4, 4) voxel-to-world matrix.
        voxel_size_mm: (3,) new voxel size along the array axes.
    """
    affine = np.asarray(affine, dtype=np.float64)
    old_sizes = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    new_affine = affine.copy()
    new_affine[:3, :3] = affine[:3, :3] / old_sizes * np.asarray(voxel_size_mm, dtype=np.float64)
    return new_affine
