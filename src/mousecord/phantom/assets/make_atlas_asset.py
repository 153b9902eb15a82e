"""Build ``rat_atlas_sections.npz``, the packaged shape prior of the phantom, from the rat histology atlas.

Run once by a developer who has the atlas (users never need it)::

    python src/mousecord/phantom/assets/make_atlas_asset.py /work/shared/data/rat-histo-atlas

The atlas (mdbudde/RatSpinalCordMRIpipeline, MIT, see ``LICENSE.md`` here) is a 151 x 128 x 580 stack of
0.05 x 0.05 x 0.15 mm voxels in which each of the 28 spinal levels is one histology section repeated over
about 20 slices; ``RatHistoAtlas_levels.nii.gz`` says which slices hold which level. For every level this
script keeps the middle slice of its run, crops it to the cord with a margin and stores the GM and WM masks
bit-packed. Orientation of the stored sections: axis 0 runs from the subject's left to its right (the file's
axis 0 points left, so it is flipped), axis 1 runs from ventral to dorsal (the header calls it anterior, but
the dorsal horns reach the surface on that side).

Output keys: ``pixel_size_mm`` (rat, in-plane), ``shapes`` (28, 2), ``offsets`` (29,) into the packed
streams, ``gm_bits`` and ``wm_bits`` (uint8, ``numpy.packbits`` of the C-ordered masks), ``levels`` (1..28).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import nibabel as nib
import numpy as np

MARGIN_PIXELS = 4
OUTPUT = Path(__file__).with_name("rat_atlas_sections.npz")


def build(atlas_folder: Path) -> dict[str, np.ndarray]:
    """Read the atlas and return the arrays to store."""
    gm = np.asarray(nib.load(atlas_folder / "RatHistoAtlas_gm.nii.gz").dataobj) > 0.5
    wm = np.asarray(nib.load(atlas_folder / "RatHistoAtlas_wm.nii.gz").dataobj) > 0.5
    levels = np.asarray(nib.load(atlas_folder / "RatHistoAtlas_levels.nii.gz").dataobj).round().astype(int)
    zooms = nib.load(atlas_folder / "RatHistoAtlas_gm.nii.gz").header.get_zooms()
    shapes: list[tuple[int, int]] = []
    gm_streams: list[np.ndarray] = []
    wm_streams: list[np.ndarray] = []
    offsets = [0]
    for level in range(1, 29):
        slices = np.flatnonzero((levels == level).any(axis=(0, 1)))
        middle = int(slices[len(slices) // 2])
        gm_section = gm[::-1, :, middle]  # axis 0 now points to the subject's right
        wm_section = wm[::-1, :, middle] & ~gm_section
        cord = gm_section | wm_section
        rows, cols = np.flatnonzero(cord.any(axis=1)), np.flatnonzero(cord.any(axis=0))
        crop = (
            slice(max(rows[0] - MARGIN_PIXELS, 0), rows[-1] + MARGIN_PIXELS + 1),
            slice(max(cols[0] - MARGIN_PIXELS, 0), cols[-1] + MARGIN_PIXELS + 1),
        )
        gm_crop, wm_crop = gm_section[crop], wm_section[crop]
        shapes.append(gm_crop.shape)
        gm_streams.append(np.packbits(gm_crop.ravel()))
        wm_streams.append(np.packbits(wm_crop.ravel()))
        offsets.append(offsets[-1] + gm_streams[-1].size)
    return {
        "pixel_size_mm": np.array([float(zooms[0]), float(zooms[1])]),
        "levels": np.arange(1, 29),
        "shapes": np.array(shapes, dtype=np.int32),
        "offsets": np.array(offsets, dtype=np.int64),
        "gm_bits": np.concatenate(gm_streams),
        "wm_bits": np.concatenate(wm_streams),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("atlas_folder", type=Path, help="folder holding RatHistoAtlas_*.nii.gz")
    parser.add_argument("-o", "--output", type=Path, default=OUTPUT)
    args = parser.parse_args()
    np.savez_compressed(args.output, **build(args.atlas_folder))
    print(f"wrote {args.output} ({args.output.stat().st_size / 1024:.1f} KiB)")


if __name__ == "__main__":
    main()
