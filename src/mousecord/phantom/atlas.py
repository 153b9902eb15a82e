"""Real GM/WM cross-sections per spinal level (packaged rat atlas, scaled to mouse) and the doc's ranges.

The package ships ``assets/rat_atlas_sections.npz``: one binary GM and WM section per spinal level (C1-C8,
T1-T13, L1-L6, S1) from a rat histology template (MIT, see ``assets/LICENSE.md``; built by
``assets/make_atlas_asset.py``). Sections are stored with axis 0 pointing to the subject's right and axis 1
pointing dorsal. S2-S4 have no section of their own: they reuse S1, shrunk.

Mouse size targets per region come from ``docs/mouse-cord-appearance.md``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources

import numpy as np
from scipy import ndimage
from skimage.morphology import skeletonize

#: Spinal levels the phantom knows, rostral to caudal.
LEVEL_NAMES: tuple[str, ...] = (
    *(f"C{index}" for index in range(1, 9)),
    *(f"T{index}" for index in range(1, 14)),
    *(f"L{index}" for index in range(1, 7)),
    *(f"S{index}" for index in range(1, 5)),
)

#: Rostrocaudal length of one segment (mm, est.), by region letter.
SEGMENT_LENGTH_MM: dict[str, tuple[float, float]] = {
    "C": (1.0, 1.5),
    "T": (1.2, 1.6),
    "L": (0.7, 1.0),
    "S": (0.6, 0.9),
}

#: In-plane rat-to-mouse scale (transverse, dorsoventral).
RAT_TO_MOUSE_SCALE: tuple[float, float] = (0.63, 0.66)

#: Extra shrink of S2, S3, S4 relative to S1 (the atlas ends at S1) and the GM fraction they add.
_SACRAL_SHRINK = {"S2": (0.85, 0.04), "S3": (0.72, 0.08), "S4": (0.6, 0.12)}


@dataclass(frozen=True)
class Region:
    """Mouse cord size ranges of a group of levels (width and depth in mm, GM fraction of the cord area)."""

    name: str
    levels: tuple[str, ...]
    width_mm: tuple[float, float]
    depth_mm: tuple[float, float]
    gm_fraction: tuple[float, float]


REGIONS: tuple[Region, ...] = (
    Region("C1-C3", LEVEL_NAMES[0:3], (2.3, 2.9), (1.8, 2.1), (0.39, 0.60)),
    Region("C4-T1", LEVEL_NAMES[3:9], (2.5, 3.2), (1.6, 2.0), (0.37, 0.49)),
    Region("T2-T12", LEVEL_NAMES[9:20], (1.7, 2.6), (1.4, 1.7), (0.26, 0.44)),
    Region("T13-L6", LEVEL_NAMES[20:27], (1.9, 2.6), (1.6, 2.0), (0.38, 0.65)),
    Region("S1-S4", LEVEL_NAMES[27:31], (0.9, 1.8), (0.9, 1.7), (0.57, 0.75)),
)


def region_of(level_name: str) -> Region:
    """The :class:`Region` holding ``level_name`` (e.g. ``"T5"``)."""
    for region in REGIONS:
        if level_name in region.levels:
            return region
    raise KeyError(level_name)


@dataclass(frozen=True, eq=False)
class AtlasSection:
    """One level's section, as signed distance maps in rat pixels, plus its measurements.

    Attributes:
        name: level name, e.g. ``"C6"``.
        cord_sdf_px: (u, v) float32 signed distance to the cord surface in rat pixels, negative inside.
        gm_sdf_px: (u, v) float32 signed distance to the GM surface in rat pixels.
        gm_skeleton_px: (u, v) float32 distance to the GM's medial axis (skeleton) in rat pixels: a GM of
            any thinner width along the same horns is where it lies below the half-width.
        centre_px: (2,) cord centroid (u, v) in pixel indices.
        pixel_size_mm: rat pixel size in mm.
        width_mm, depth_mm: rat cord extent along u (left-right) and v (dorsoventral).
        gm_fraction: GM area over cord area.
        canal_v_px: v index of the central canal (middle of the grey commissure on the midline).
        shrink: extra size factor for levels without a section of their own (S2-S4), 1 otherwise.
        gm_fraction_shift: GM fraction added for those levels, 0 otherwise.
    """

    name: str
    cord_sdf_px: np.ndarray
    gm_sdf_px: np.ndarray
    gm_skeleton_px: np.ndarray
    centre_px: np.ndarray
    pixel_size_mm: float
    width_mm: float
    depth_mm: float
    gm_fraction: float
    canal_v_px: float
    shrink: float = 1.0
    gm_fraction_shift: float = 0.0

    def __post_init__(self) -> None:
        for array in (self.cord_sdf_px, self.gm_sdf_px, self.gm_skeleton_px, self.centre_px):
            array.flags.writeable = False  # cached and shared by every caller: read-only


def _signed_distance(mask: np.ndarray) -> np.ndarray:
    """Smooth signed distance (pixels, negative inside) with the surface half-way between pixels."""
    inside = ndimage.distance_transform_edt(mask) - 0.5
    outside = ndimage.distance_transform_edt(~mask) - 0.5
    distance = np.where(mask, -inside, outside)
    return ndimage.gaussian_filter(distance, 1.0).astype(np.float32)


@functools.lru_cache(maxsize=1)
def load_atlas_sections() -> tuple[AtlasSection, ...]:
    """All levels of :data:`LEVEL_NAMES`, read from the packaged asset (cached)."""
    asset = resources.files("mousecord.phantom") / "assets" / "rat_atlas_sections.npz"
    with asset.open("rb") as handle, np.load(handle) as archive:
        shapes, offsets = archive["shapes"], archive["offsets"]
        gm_bits, wm_bits = archive["gm_bits"], archive["wm_bits"]
        pixel_size_mm = float(archive["pixel_size_mm"][0])
    pad = 40  # pixels of background around the cord, so distances reach well outside it
    sections = []
    for index, shape in enumerate(shapes):
        count = int(shape[0] * shape[1])
        stream = slice(int(offsets[index]), int(offsets[index + 1]))
        gm = np.unpackbits(gm_bits[stream], count=count).reshape(shape).astype(bool)
        wm = np.unpackbits(wm_bits[stream], count=count).reshape(shape).astype(bool)
        gm, cord = np.pad(gm, pad), np.pad(gm | wm, pad)
        sections.append(_measure(LEVEL_NAMES[index], gm, cord, pixel_size_mm))
    for name, (shrink, gm_shift) in _SACRAL_SHRINK.items():
        last = sections[27]
        sections.append(
            AtlasSection(**{**last.__dict__, "name": name, "shrink": shrink, "gm_fraction_shift": gm_shift})
        )
    return tuple(sections)


def _measure(name: str, gm: np.ndarray, cord: np.ndarray, pixel_size_mm: float) -> AtlasSection:
    columns, rows = np.flatnonzero(cord.any(axis=1)), np.flatnonzero(cord.any(axis=0))
    centre = np.array(ndimage.center_of_mass(cord))
    middle_column = int(round(centre[0]))
    commissure = np.flatnonzero(gm[middle_column - 1 : middle_column + 2].any(axis=0))
    canal_v = float(commissure.mean()) if commissure.size else float(centre[1])
    return AtlasSection(
        name=name,
        cord_sdf_px=_signed_distance(cord),
        gm_sdf_px=_signed_distance(gm),
        gm_skeleton_px=ndimage.distance_transform_edt(~skeletonize(gm)).astype(np.float32),
        centre_px=centre,
        pixel_size_mm=pixel_size_mm,
        width_mm=float(columns.size * pixel_size_mm),
        depth_mm=float(rows.size * pixel_size_mm),
        gm_fraction=float(gm.sum() / cord.sum()),
        canal_v_px=canal_v,
    )
