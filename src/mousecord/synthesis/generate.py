"""Domain-randomised axial slabs of the mouse cord with exact GM/WM labels, drawn afresh for every sample.

SynthSeg's recipe (Billot et al. 2023) for the mouse cord, in 2D/2.5D so that a sample costs milliseconds:

1. **Label geometry.** GM and WM come from the packaged atlas sections (real shapes of every spinal level,
   :mod:`mousecord.phantom.atlas`) at a random, continuous level, scaled 0.6-1.6x mouse size, anisotropic,
   rotated by any angle, mirrored, elastically deformed, asymmetric, with jittered GM extent and horn shape.
   Around the cord: a fluid rim of random thickness (sometimes absent, sometimes a wide gap around a shrunken
   cord), a dura/bone ring of random thickness and completeness (sometimes absent), and outside it a random
   label field of several extra tissues (muscle, fat, bone...) plus nerve roots or ganglia beside the cord
   and air bubbles (some against the cord, darkening it around them), optionally decoys (cord-sized round
   structures in a shell, labelled background, as a vertebral body beside the cord); sometimes nothing but
   embedding medium; sometimes a chunk's cut end, an oblique plane beyond which the tissue is gone, damaged
   before it. The slab's slices follow the cord along z (level change, tilt, twist), so adjacent slices
   agree as in a real volume.
2. **Appearance.** Every label, split into up to three sub-labels for texture, gets a Gaussian intensity
   with a random mean and spread, drawn per sample (uniform over the range, or ex vivo-like ones), so GM is
   brighter, darker or as bright as WM and the cord brighter or darker than its surroundings.
3. **Acquisition.** Partial volume over a random slice thickness, a random in-plane resolution (blur and
   resampling), Gibbs ringing, Rician noise at a random SNR, a smooth bias field, occasional ghosting and a
   random gamma.

Determinism: :func:`sample_parameters` draws every random quantity of a sample into a JSON-ready dict
(random fields through a recorded ``field_seed``), and :func:`render_sample` turns that dict into arrays
without further randomness, so a sample is replayed from its parameters alone.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from mousecord.labels import Label
from mousecord.phantom.atlas import RAT_TO_MOUSE_SCALE, AtlasSection, load_atlas_sections
from mousecord.phantom.fields import smooth_noise
from mousecord.synthesis.config import SynthesisConfig
from mousecord.synthesis.parameters import BUBBLE, EXTRA, FIELD, OUTSIDE, RIM, RING, ROOT, sample_parameters


@dataclass(frozen=True, eq=False)
class SynthSample:
    """One synthetic slab.

    Attributes:
        image: (slices, y, x) float32 intensities (not normalised), the centre slice in the middle.
        label_map: (y, x) uint8 labels of the centre slice: 0 background, 1 GM, 2 WM.
        parameters: every drawn quantity; ``render_sample(config, parameters)`` reproduces the sample.
    """

    image: np.ndarray
    label_map: np.ndarray
    parameters: dict[str, Any]


def synthesize(config: SynthesisConfig, rng: np.random.Generator) -> SynthSample:
    """Draw and render one sample (see the module docstring)."""
    return render_sample(config, sample_parameters(config, rng))


# ------------------------------------------------------------------------------------------ rendering


def render_sample(config: SynthesisConfig, parameters: dict[str, Any]) -> SynthSample:
    """Deterministically render the sample ``parameters`` describe (from :func:`sample_parameters`)."""
    rng = np.random.default_rng(parameters["field_seed"])
    shape = (int(parameters["field_vox"]),) * 2
    spacing = config.spacing_mm
    fields = _random_fields(shape, parameters, rng)
    slices = config.slab_slices
    offsets = (np.arange(slices) - slices // 2) * parameters["slice_spacing_mm"]
    if parameters["single_slice"]:
        offsets = np.zeros(slices)
    thickness = parameters["slice_thickness_mm"]
    sub_count = 1 if thickness < 0.12 else (2 if thickness < 0.3 else 3)
    sub_offsets = (np.arange(sub_count) - (sub_count - 1) / 2) * (thickness / sub_count)
    intensities = parameters["intensities"]
    images, centre_labels = [], None
    for index, z_mm in enumerate(offsets):
        accumulated = np.zeros(shape, dtype=np.float32)
        for sub_z in sub_offsets:
            tissue, gain = _tissue_labels(shape, spacing, parameters, fields, float(z_mm + sub_z))
            accumulated += _paint(tissue, intensities, fields["textures"], fields["white"]) * gain
            if index == slices // 2 and sub_z == 0:
                centre_labels = np.where(tissue <= Label.WM, tissue, 0).astype(np.uint8)
        images.append(accumulated / sub_count)
    if centre_labels is None:  # an even number of sub-slices: none lies at the centre, label it apart
        tissue, _ = _tissue_labels(shape, spacing, parameters, fields, 0.0)
        centre_labels = np.where(tissue <= Label.WM, tissue, 0).astype(np.uint8)
    image = np.stack(images)
    image = _acquire(image, spacing, parameters, fields)
    return SynthSample(image.astype(np.float32), centre_labels, parameters)


def _random_fields(shape: tuple[int, int], parameters: dict[str, Any], rng: np.random.Generator) -> dict:
    """Smooth fields a sample needs, from its ``field_seed`` (same across the slab's slices)."""
    spacing = parameters["elastic_spacing_vox"]
    fields = {
        "elastic": np.stack([smooth_noise(shape, (spacing, spacing), rng=rng) for _ in range(2)]),
        "horn": np.stack([smooth_noise(shape, (12, 12), rng=rng) for _ in range(2)]),
        "textures": np.stack([smooth_noise(shape, (size, size), rng=rng) for size in (2, 4, 8)]),
        "white": rng.standard_normal(shape, dtype=np.float32),
        "ring": rng.uniform(0, 2 * math.pi, 3),
        "extra_fields": _extra_tissue_fields(shape, parameters, rng),
        "bias": smooth_noise(shape, (parameters["bias_spacing_vox"],) * 2, rng=rng),
        "column": smooth_noise(shape, (24, 24), rng=rng),
        "noise_seed": int(rng.integers(2**31)),
    }
    # drawn last and only where the surroundings change along the slab, so other samples stay as they were
    changing = (
        parameters.get("surroundings_change_rad_per_mm", 0.0) > 0 and fields["extra_fields"] is not None
    )
    fields["extra_turn"] = _extra_tissue_fields(shape, parameters, rng) if changing else None
    # the label field of static surroundings, computed once for the whole slab
    fields["extra"] = None if changing else _extra_tissue_labels(fields["extra_fields"], parameters)
    return fields


def _extra_tissue_fields(
    shape: tuple[int, int], parameters: dict[str, Any], rng: np.random.Generator
) -> np.ndarray | None:
    """(n, y, x) smooth fields, one per extra tissue, whose strongest above a threshold gives the label
    field of the surroundings (:func:`_extra_tissue_labels`); None without extra tissues."""
    if not parameters["extra_smoothness_vox"]:
        return None
    return np.stack(
        [smooth_noise(shape, (size, size), rng=rng) for size in parameters["extra_smoothness_vox"]]
    )


def _extra_tissue_labels(stack: np.ndarray | None, parameters: dict[str, Any]) -> np.ndarray | None:
    """The random label field of extra tissues: the strongest of the smooth fields ``stack`` where it
    exceeds the sample's threshold, else FIELD."""
    if stack is None:
        return None
    labels = (EXTRA + stack.argmax(axis=0)).astype(np.uint8)
    labels[stack.max(axis=0) <= parameters["extra_threshold"]] = FIELD
    return labels


def _extra_labels_at(fields: dict, parameters: dict[str, Any], z_mm: float) -> np.ndarray | None:
    """The extra tissues' label field of the slice ``z_mm`` from the slab centre: the same on every slice,
    or, where the surroundings change along the slab, turned from one set of smooth fields towards an
    independent one by ``surroundings_change_rad_per_mm`` (unit variance kept, so the threshold keeps its
    meaning): bone, muscle and fat come and go between thick slices as they do in a real spine."""
    if fields["extra_turn"] is None:
        return fields["extra"]
    angle = parameters["surroundings_change_rad_per_mm"] * z_mm
    stack = (
        np.float32(math.cos(angle)) * fields["extra_fields"]
        + np.float32(math.sin(angle)) * fields["extra_turn"]
    )
    return _extra_tissue_labels(stack, parameters)


@functools.lru_cache(maxsize=8)
def _grid_mm(shape: tuple[int, int], spacing: float) -> tuple[np.ndarray, np.ndarray]:
    y = ((np.arange(shape[0]) - (shape[0] - 1) / 2) * spacing).astype(np.float32)
    x = ((np.arange(shape[1]) - (shape[1] - 1) / 2) * spacing).astype(np.float32)
    grids = np.meshgrid(y, x, indexing="ij")
    for grid in grids:
        grid.flags.writeable = False  # cached: shared by every sample of this size
    return grids[0], grids[1]


def _tissue_labels(
    shape: tuple[int, int], spacing: float, parameters: dict[str, Any], fields: dict, z_mm: float
) -> tuple[np.ndarray, np.ndarray | float]:
    """(y, x) uint8 tissue labels of the slice ``z_mm`` from the slab centre, and the intensity gain of
    the cut end's damage and the bubbles' blooming (1 where neither reaches)."""
    grid_y, grid_x = _grid_mm(shape, spacing)
    tilt = parameters["tilt_mm_per_mm"]
    dy = grid_y - np.float32(parameters["centre_mm"][0] + tilt[0] * z_mm)
    dx = grid_x - np.float32(parameters["centre_mm"][1] + tilt[1] * z_mm)
    angle = parameters["rotation_rad"] + parameters["twist_rad_per_mm"] * z_mm
    cosine, sine = np.float32(math.cos(angle)), np.float32(math.sin(angle))
    u = dx * cosine + dy * sine
    v = dy * cosine - dx * sine
    if parameters["mirrored"]:
        u = -u
    u = u * (1 + np.float32(parameters["asymmetry"]) * np.tanh(u / np.float32(0.3)))
    elastic = np.float32(parameters["elastic_mm"]) * fields["elastic"]
    u, v = u + elastic[0], v + elastic[1]
    level = float(np.clip(parameters["level"] + parameters["levels_per_mm"] * z_mm, 0, len(_sections()) - 1))
    horn = np.float32(parameters["horn_elastic_mm"]) * fields["horn"]
    rim, ring = parameters["rim_mm"], parameters["ring_mm"]
    # distances are looked up only in a box around the cord: beyond it nothing depends on them
    stretch = math.sqrt(parameters["anisotropy"])
    reach_mm = 1.7 * parameters["scale"] * max(stretch, 1 / stretch) + rim + ring + 0.3
    box = _box_around(parameters["centre_mm"], tilt, z_mm, reach_mm, shape, spacing)
    cord_sdf = np.full(shape, 10.0, dtype=np.float32)
    gm_sdf = np.full(shape, 10.0, dtype=np.float32)
    if box is not None:
        cord_sdf[box], gm_sdf[box] = _section_distances(
            u[box], v[box], level, parameters, horn[(slice(None), *box)]
        )
    # polar maps in the cord's frame, for what is placed relative to the cord's surface
    polar = (np.sqrt(u**2 + v**2), np.arctan2(v, u))
    labels = np.full(shape, FIELD, dtype=np.uint8)
    if parameters["surroundings"]:  # else nothing but medium around the cord
        _paint_surroundings(labels, fields, parameters, u, v, polar, cord_sdf, z_mm)
        _paint_decoys(labels, parameters, u, v, polar, cord_sdf, grid_y, grid_x)
    if parameters["column"] is not None:
        labels[~_column_mask(grid_y, grid_x, parameters, fields["column"])] = OUTSIDE
    _paint_bubbles(labels, grid_y, grid_x, parameters)
    if ring > 0:
        # the ring's gaps move and change shape along the slab as the surroundings change (both harmonics'
        # phases shift by the same angle; a vertebral arch's ends)
        phase = fields["ring"] + parameters.get("surroundings_change_rad_per_mm", 0.0) * z_mm
        angle_map = polar[1]
        coverage = np.sin(angle_map + phase[0]) + 0.5 * np.sin(2 * angle_map + phase[1])
        angles = np.linspace(-math.pi, math.pi, 360, endpoint=False)
        every = np.sin(angles + phase[0]) + 0.5 * np.sin(2 * angles + phase[1])
        present = coverage > np.quantile(every, 1 - parameters["ring_coverage"])
        labels[(cord_sdf >= rim) & (cord_sdf < rim + ring) & present] = RING
    if rim > 0:
        labels[(cord_sdf >= 0) & (cord_sdf < rim)] = RIM
    gain = _paint_surface_bubbles(labels, parameters, u, v, polar, cord_sdf)
    cord = cord_sdf < 0
    labels[cord] = Label.WM
    labels[cord & (gm_sdf < 0)] = Label.GM
    cut = parameters.get("cut")
    if cut is not None:
        # the chunk's end face: nothing but medium beyond it, damaged tissue in a band before it
        normal = np.float32(cut["normal_rad"])
        beyond = (
            dx * np.cos(normal)
            + dy * np.sin(normal)
            - np.float32(cut["offset_mm"] * parameters["scale"] + cut["shift_mm_per_mm"] * z_mm)
        )
        labels[beyond > 0] = OUTSIDE
        band = (beyond <= 0) & (beyond > -cut["damage_mm"])
        damage = np.float32(cut["damage_gain"]) * (1 + np.float32(cut["mottle"]) * fields["textures"][1])
        gain = np.where(band, gain * damage, gain)
    return labels, gain


def _box_around(
    centre_mm: list[float], tilt: list[float], z_mm: float, reach_mm: float, shape, spacing: float
) -> tuple[slice, slice] | None:
    """The pixel box within ``reach_mm`` of the cord centre of slice ``z_mm`` (None: outside the field)."""
    box = []
    for axis in range(2):
        centre = (centre_mm[axis] + tilt[axis] * z_mm) / spacing + (shape[axis] - 1) / 2
        low = max(int(math.floor(centre - reach_mm / spacing)), 0)
        high = min(int(math.ceil(centre + reach_mm / spacing)) + 1, shape[axis])
        if high <= low:
            return None
        box.append(slice(low, high))
    return box[0], box[1]


def _column_mask(grid_y: np.ndarray, grid_x: np.ndarray, parameters: dict, roughness_field) -> np.ndarray:
    """The tissue column: an ellipse around the cord with a rough outline; outside is medium or air."""
    column = parameters["column"]
    centre = parameters["centre_mm"] if parameters["cord_present"] else [0.0, 0.0]
    dy = grid_y - np.float32(centre[0] + column["offset_mm"][0])
    dx = grid_x - np.float32(centre[1] + column["offset_mm"][1])
    cosine, sine = math.cos(column["angle_rad"]), math.sin(column["angle_rad"])
    along, across = dx * cosine + dy * sine, dy * cosine - dx * sine
    radius = np.sqrt((along / column["radii_mm"][0]) ** 2 + (across / column["radii_mm"][1]) ** 2)
    return radius < 1 + np.float32(column["roughness"]) * roughness_field


@functools.lru_cache(maxsize=1)
def _sections() -> tuple[AtlasSection, ...]:
    return load_atlas_sections()


def _section_distances(
    u: np.ndarray, v: np.ndarray, level: float, parameters: dict[str, Any], horn: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Signed distances (mm) to the cord and GM surfaces, blended between the two nearest atlas levels."""
    sections = _sections()
    if not parameters["cord_present"]:
        far = np.full(u.shape, 10.0, dtype=np.float32)
        return far, far
    low = min(int(math.floor(level)), len(sections) - 2)
    weight = np.float32(level - low)
    pair = ((sections[low], 1 - weight), (sections[low + 1], weight))
    stretch = math.sqrt(parameters["anisotropy"])
    # per section: its mouse scale along u and v, and the factor from its pixels' distances to mm
    scales = []
    for section, _ in pair:
        scale_u = RAT_TO_MOUSE_SCALE[0] * section.shrink * parameters["scale"] * stretch
        scale_v = RAT_TO_MOUSE_SCALE[1] * section.shrink * parameters["scale"] / stretch
        scales.append((scale_u, scale_v, np.float32(section.pixel_size_mm * math.sqrt(scale_u * scale_v))))
    cord = np.zeros(u.shape, dtype=np.float32)
    for (section, share), (scale_u, scale_v, to_mm) in zip(pair, scales, strict=True):
        pixel = section.pixel_size_mm
        coordinates = np.stack(
            [section.centre_px[0] + u / (pixel * scale_u), section.centre_px[1] + v / (pixel * scale_v)]
        )
        sdf = ndimage.map_coordinates(section.cord_sdf_px, coordinates, order=1, mode="nearest")
        cord += share * to_mm * sdf
    # GM matters inside the cord only: look it up there (half the cost of a full-field lookup)
    gm = np.full(u.shape, 10.0, dtype=np.float32)
    inside = cord < 0
    if inside.any():
        half_width = parameters.get("gm_half_width_mm")
        values = np.zeros(int(inside.sum()), dtype=np.float32)
        u_in, v_in = u[inside] + horn[0][inside], v[inside] + horn[1][inside]
        for (section, share), (scale_u, scale_v, to_mm) in zip(pair, scales, strict=True):
            pixel = section.pixel_size_mm
            coordinates = np.stack(
                [
                    section.centre_px[0] + u_in / (pixel * scale_u),
                    section.centre_px[1] + v_in / (pixel * scale_v),
                ]
            )
            sdf = ndimage.map_coordinates(section.gm_sdf_px, coordinates, order=1, mode="nearest")
            if half_width is not None:  # the GM within the half-width of its medial axis (an intersection)
                axis = ndimage.map_coordinates(section.gm_skeleton_px, coordinates, order=1, mode="nearest")
                sdf = np.maximum(sdf, axis - half_width / to_mm)
            values += share * to_mm * sdf
        gm[inside] = values + np.float32(parameters["gm_offset_mm"])
    return cord, gm


def _paint_surroundings(
    labels: np.ndarray,
    fields: dict,
    parameters: dict[str, Any],
    u: np.ndarray,
    v: np.ndarray,
    polar: tuple[np.ndarray, np.ndarray],
    cord_sdf: np.ndarray,
    z_mm: float,
) -> None:
    """Random label field of extra tissues, then nerve roots / ganglia beside the cord (``polar``: radius
    and angle maps in the cord's frame ``u``, ``v``)."""
    extra = _extra_labels_at(fields, parameters, z_mm)
    if extra is not None:
        np.copyto(labels, extra, where=extra != FIELD)
    if not parameters["cord_present"]:
        return
    for root in parameters["roots"]:
        # an ellipse whose near end lies ``distance_mm`` outside the cord, elongated away from it
        direction = np.float32(root["angle_rad"])
        offsets = _beside_surface(
            u, v, polar, cord_sdf, direction, (root["distance_mm"], root["radii_mm"][0]), min_cosine=0.6
        )
        if offsets is None:
            continue
        du, dv = offsets
        along = du * math.cos(direction) + dv * math.sin(direction)
        across = dv * math.cos(direction) - du * math.sin(direction)
        inside = (along / root["radii_mm"][0]) ** 2 + (across / root["radii_mm"][1]) ** 2 < 1
        labels[inside] = ROOT


def _paint_decoys(
    labels: np.ndarray,
    parameters: dict[str, Any],
    u: np.ndarray,
    v: np.ndarray,
    polar: tuple[np.ndarray, np.ndarray],
    cord_sdf: np.ndarray,
    grid_y: np.ndarray,
    grid_x: np.ndarray,
) -> None:
    """Cord-sized ellipses that are not cord, each in its shell (see ``SynthesisConfig.decoy_probability``):
    against the cord's outer layers (placed in the cord's frame ``u``, ``v``) or anywhere in the field."""
    for decoy in parameters.get("decoys", ()):
        shell, (radius_a, radius_b) = decoy["shell_mm"], decoy["radii_mm"]
        if decoy["centre_mm"] is None:
            direction = np.float32(decoy["direction_rad"])
            # beyond the rim and ring, then the decoy's shell and its radius towards the cord
            beyond = (parameters["rim_mm"], parameters["ring_mm"], decoy["gap_mm"], shell, radius_b)
            offsets = _beside_surface(u, v, polar, cord_sdf, direction, beyond, min_cosine=0.95)
            if offsets is None:
                continue
            du, dv = offsets
            # its first axis across the direction, like a vertebral body
            turn = float(direction) + math.pi / 2
        else:
            du = grid_x - np.float32(decoy["centre_mm"][1])
            dv = grid_y - np.float32(decoy["centre_mm"][0])
            turn = decoy["angle_rad"]
        along = du * np.float32(math.cos(turn)) + dv * np.float32(math.sin(turn))
        across = dv * np.float32(math.cos(turn)) - du * np.float32(math.sin(turn))
        radius = np.sqrt((along / np.float32(radius_a)) ** 2 + (across / np.float32(radius_b)) ** 2)
        # the shell's thickness in normalised radius, along the shorter axis
        outer = 1 + shell / min(radius_a, radius_b)
        labels[(radius >= 1) & (radius < outer)] = RING
        labels[radius < 1] = decoy["label"]


def _surface_radius_mm(
    radius: np.ndarray, angle: np.ndarray, cord_sdf: np.ndarray, direction: np.float32, *, min_cosine: float
) -> float | None:
    """Distance (mm) from the cord centre to its surface towards ``direction`` (polar maps ``radius`` and
    ``angle`` in the cord frame), from the pixels just outside the cord within the cone ``cos >
    min_cosine``; None where the field holds none there."""
    near = (cord_sdf > 0) & (cord_sdf < 5) & (np.cos(angle - direction) > min_cosine)
    if not near.any():
        return None
    return float(np.min(radius[near] - cord_sdf[near]))


def _beside_surface(
    u: np.ndarray,
    v: np.ndarray,
    polar: tuple[np.ndarray, np.ndarray],
    cord_sdf: np.ndarray,
    direction: float,
    beyond_mm: tuple[float, ...],
    *,
    min_cosine: float,
) -> tuple[np.ndarray, np.ndarray] | None:
    """(u, v) offsets of every pixel from the point the sum of ``beyond_mm`` outside the cord's surface
    towards ``direction`` (cord frame ``u``, ``v``, whose radius and angle maps are ``polar``), where roots,
    bubbles and decoys are placed; None where the field holds no cord surface that way."""
    reach = _surface_radius_mm(*polar, cord_sdf, np.float32(direction), min_cosine=min_cosine)
    if reach is None:
        return None
    for length in beyond_mm:  # summed in order, as each caller's distance always was
        reach += length
    return u - np.float32(reach * math.cos(direction)), v - np.float32(reach * math.sin(direction))


def _paint_surface_bubbles(
    labels: np.ndarray,
    parameters: dict[str, Any],
    u: np.ndarray,
    v: np.ndarray,
    polar: tuple[np.ndarray, np.ndarray],
    cord_sdf: np.ndarray,
) -> np.ndarray | float:
    """Air bubbles against the cord's surface (cord frame ``u``, ``v``), painted outside the cord; returns
    their blooming: the signal lost around each, ``1 - blooming * (radius / distance)^3``."""
    gain: np.ndarray | float = 1.0
    if not parameters["surface_bubbles"] or not parameters["cord_present"]:
        return gain
    for bubble in parameters["surface_bubbles"]:
        offsets = _beside_surface(
            u,
            v,
            polar,
            cord_sdf,
            bubble["angle_rad"],
            (bubble["gap_mm"], bubble["radius_mm"]),
            min_cosine=0.95,
        )
        if offsets is None:
            continue
        distance = np.sqrt(offsets[0] ** 2 + offsets[1] ** 2)
        labels[(distance < bubble["radius_mm"]) & (cord_sdf >= 0)] = BUBBLE
        ratio = np.clip(np.float32(bubble["radius_mm"]) / np.maximum(distance, np.float32(1e-6)), 0, 1)
        gain = gain * (1 - np.float32(bubble["blooming"]) * ratio**3)
    return gain


def _paint_bubbles(labels: np.ndarray, grid_y: np.ndarray, grid_x: np.ndarray, parameters: dict) -> None:
    for bubble in parameters["bubbles"]:
        centre = bubble["centre_mm"]
        inside = (grid_y - centre[0]) ** 2 + (grid_x - centre[1]) ** 2 < bubble["radius_mm"] ** 2
        labels[inside] = BUBBLE


def _paint(
    tissue: np.ndarray, intensities: dict[str, Any], textures: np.ndarray, white: np.ndarray
) -> np.ndarray:
    """Intensity of every pixel: its (sub-)label's mean plus its label's spread times texture."""
    means = np.asarray(intensities["mean"], dtype=np.float32)
    spreads = np.asarray(intensities["spread"], dtype=np.float32)
    offsets = np.asarray(intensities["sub_offsets"], dtype=np.float32)
    sub_labels = np.asarray(intensities["sub_labels"])
    texture_of = np.asarray(intensities["texture_of"])
    texture = np.take_along_axis(textures, texture_of[tissue][None], axis=0)[0]
    # sub-labels: the texture field cut into 1-3 bands per label, each with its own mean offset
    bands = np.clip(((texture + 1.5) / 3 * sub_labels[tissue]).astype(np.int64), 0, sub_labels[tissue] - 1)
    value = means[tissue] + offsets[tissue, bands] * (sub_labels[tissue] > 1)
    return value + spreads[tissue] * (0.5 * texture + 0.5 * white)


def _acquire(image: np.ndarray, spacing: float, parameters: dict, fields: dict) -> np.ndarray:
    """Resolution, Gibbs ringing, bias, Rician noise, ghosting and gamma, slice by slice."""
    noise_rng = np.random.default_rng(fields["noise_seed"])
    cord_signal = float(np.mean(np.asarray(parameters["intensities"]["mean"])[[Label.GM, Label.WM]]))
    sigma = max(cord_signal, 0.05) / parameters["snr"]
    factor = parameters["in_plane_resolution_mm"] / spacing
    bias = np.exp(np.float32(parameters["bias_amplitude"]) * fields["bias"])
    shape = image.shape[1:]
    result = np.empty_like(image)
    for index, plane in enumerate(image):
        plane = ndimage.gaussian_filter(plane, 0.42 * max(factor, 0.6))
        if parameters["gibbs_keep"] < 1:
            plane = _gibbs(plane, parameters["gibbs_keep"])
        plane = plane * bias
        acquired = (
            ndimage.zoom(plane, 1 / factor, order=1, grid_mode=True, mode="nearest")
            if factor > 1.05
            else plane
        )
        real = acquired + noise_rng.normal(0, sigma, acquired.shape).astype(np.float32)
        imaginary = noise_rng.normal(0, sigma, acquired.shape).astype(np.float32)
        acquired = np.sqrt(real**2 + imaginary**2)
        if acquired.shape != shape:
            zoom = [target / size for target, size in zip(shape, acquired.shape, strict=True)]
            acquired = ndimage.zoom(acquired, zoom, order=1, grid_mode=True, mode="nearest")
        result[index] = acquired
    if parameters["single_slice"]:
        result[:] = result[image.shape[0] // 2]
    ghost = parameters["ghost"]
    if ghost is not None:
        shift = int(round(shape[ghost["axis"]] * ghost["shift"]))
        result = result + np.float32(ghost["amplitude"]) * np.roll(result, shift, axis=1 + ghost["axis"])
    if parameters["gamma"] != 1.0:
        top = float(result.max()) or 1.0
        result = top * (result / top) ** np.float32(parameters["gamma"])
    return result


def _gibbs(plane: np.ndarray, keep: float) -> np.ndarray:
    """Truncate k-space to the central ``keep`` fraction along both axes (ringing at sharp edges)."""
    spectrum = np.fft.fftshift(np.fft.fft2(plane))
    mask = np.zeros(plane.shape, dtype=bool)
    half = [max(int(size * keep / 2), 1) for size in plane.shape]
    centre = [size // 2 for size in plane.shape]
    mask[centre[0] - half[0] : centre[0] + half[0], centre[1] - half[1] : centre[1] + half[1]] = True
    return np.real(np.fft.ifft2(np.fft.ifftshift(spectrum * mask))).astype(np.float32)


__all__ = ["SynthSample", "render_sample", "sample_parameters", "synthesize"]
