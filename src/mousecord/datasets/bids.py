"""The reference's BIDS-like layout.

::

    <root>/sub-XX/anat/sub-XX_chunk-N_T1w.nii.gz
    <root>/derivatives/manual_masks/sub-XX/anat/sub-XX_chunk-N_T1w_label-GM_mask.nii.gz
    <root>/derivatives/manual_masks/sub-XX/anat/sub-XX_chunk-N_T1w_label-WM_mask.nii.gz

Sessions (``sub-XX/ses-YY/anat``) are supported: the mask path mirrors the image path below the root.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mousecord.errors import DatasetError
from mousecord.io.atomic import split_suffix
from mousecord.labels import LABEL_NAMES, TISSUE_LABELS, Label

#: Folder under ``derivatives/`` holding the reference's hand-drawn masks.
MASK_FOLDER_DEFAULT = "manual_masks"


def image_stem(image_path: Path | str) -> str:
    """File name without ``.nii``/``.nii.gz``: ``sub-01_chunk-1_T1w``."""
    return split_suffix(Path(image_path))[0]


def mask_path(
    root: Path | str, image_path: Path | str, label: Label, *, folder: str = MASK_FOLDER_DEFAULT
) -> Path:
    """Path of the binary mask of ``label`` for ``image_path`` under ``root/derivatives/<folder>``.

    >>> mask_path("/data", "/data/sub-01/anat/sub-01_chunk-1_T1w.nii.gz", Label.GM).as_posix()
    '/data/derivatives/manual_masks/sub-01/anat/sub-01_chunk-1_T1w_label-GM_mask.nii.gz'
    """
    root, image_path = Path(root), Path(image_path)
    try:
        relative_folder = image_path.parent.relative_to(root)
    except ValueError as error:
        raise DatasetError(f"{image_path}: not inside the dataset root {root}") from error
    name = f"{image_stem(image_path)}_label-{LABEL_NAMES[label]}_mask.nii.gz"
    return root / "derivatives" / folder / relative_folder / name


@dataclass(frozen=True)
class BidsCase:
    """One image of a BIDS dataset and its GM/WM mask paths (which may not exist)."""

    subject: str
    image: Path
    masks: dict[Label, Path]

    @property
    def has_masks(self) -> bool:
        return all(path.exists() for path in self.masks.values())


def find_bids_images(root: Path | str, *, mask_folder: str = MASK_FOLDER_DEFAULT) -> list[BidsCase]:
    """All ``sub-*/[ses-*/]anat/*.nii[.gz]`` images of a dataset, sorted, with their mask paths.

    Raises:
        DatasetError: ``root`` is not a folder or holds no ``sub-*`` images.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder not found")
    images = sorted(
        path
        for pattern in ("sub-*/anat/*.nii*", "sub-*/ses-*/anat/*.nii*")
        for path in root.glob(pattern)
        if path.name.endswith((".nii", ".nii.gz"))
    )
    if not images:
        raise DatasetError(f"{root}: no images found under sub-*/anat/ (is this a BIDS dataset?)")
    return [
        BidsCase(
            subject=image.relative_to(root).parts[0],
            image=image,
            masks={label: mask_path(root, image, label, folder=mask_folder) for label in TISSUE_LABELS},
        )
        for image in images
    ]
