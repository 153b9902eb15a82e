"""Dataset layouts: the reference's BIDS-like layout and nnU-Net v2 raw datasets (no torch)."""

from mousecord.datasets.bids import (
    MASK_FOLDER_DEFAULT,
    BidsCase,
    find_bids_images,
    image_stem,
    mask_path,
)

__all__ = ["MASK_FOLDER_DEFAULT", "BidsCase", "find_bids_images", "image_stem", "mask_path"]
