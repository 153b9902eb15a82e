"""Settings of the domain-randomised slice synthesis: one frozen dataclass, every range checked once."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from mousecord.errors import ConfigError
from mousecord.settings import settings_from_dict


@dataclass(frozen=True)
class SynthesisConfig:
    """Ranges the generator draws from (SynthSeg's recipe, Billot et al. 2023, for the mouse cord).

    Lengths are in mm, probabilities in [0, 1]. Each sample draws every parameter afresh from these ranges.

    Attributes:
        patch_size_vox: (y, x) training patch (the network's tile), cut from the field after normalisation.
        field_size_vox: (min, max) side of the square field a sample is drawn on, at ``spacing_mm``; the
            whole field is normalised, as inference normalises a whole image before tiling it.
        spacing_mm: in-plane voxel size of the samples (the network's).
        slab_slices: adjacent slices per sample (1: 2D; 3, 5...: 2.5D, the centre slice is labelled).
        cord_scale: size of the cord relative to a mouse's (1 = the atlas scaled to mouse size).
        cord_anisotropy: width/depth factor drawn around 1 (applied as sqrt to each axis).
        no_cord_probability: share of samples without any cord (surroundings only).
        column_probability: share of samples whose tissue (cord and surroundings) is a bounded chunk
            inside embedding medium or air, as an ex vivo column is; otherwise tissue fills the field.
        realistic_intensity_probability: share of samples whose tissues get ex vivo-like intensities
            (``docs/mouse-cord-appearance.md``) instead of uniformly random ones.
        in_vivo_intensity_probability: share of samples whose tissues get in vivo-like intensities: GM
            0.9-1.12x as bright as WM (little GM/WM contrast in vivo), cerebrospinal fluid dark (T1-weighted)
            or bright (T2-weighted) around the cord, fat bright, muscle and bone darker, the field around
            the tissue as bright as tissue (the geometry, a column in medium or not, is drawn as for any
            sample). Taken
            from the uniformly random share, so with ``realistic_intensity_probability`` at most 1. Off by
            default (samples as before): a stage of the default model trained with 0.2 (16 epochs at 3e-4
            from the shipped weights, float32 networks compared) found the cord of SCT's whole-neck t1w
            volume on more slices (cord Dice 0.789 -> 0.848 at a 2 mm cord width) but its slices given
            alone less often (66 % -> 55 %; at 2.5 and 3 mm 87 -> 87 % and 81 -> 86 %), and lost WM Dice
            on T1w, GM-darker and single-slice phantoms (0.911 -> 0.899, 0.909 -> 0.898, 0.887 -> 0.859).
        rim_absent_probability, gap_probability, ring_absent_probability, no_surroundings_probability:
            how often the fluid rim is missing, replaced by a wide fluid gap (shrunken cord), the dura/bone
            ring is missing, or the cord lies alone in embedding medium.
        gap_mm: width of the fluid gap around a shrunken cord (the rim's width in the "gap" mode); up to
            the CSF space of an in vivo cord.
        extra_labels: (min, max) number of random tissue labels around the cord (muscle, fat, bone...).
        in_plane_resolution_mm: acquired in-plane voxel size, simulated by blurring and resampling.
        slice_thickness_mm: acquired slice thickness (partial volume across the slab's slices).
        snr: signal (cord mean) over noise sigma, Rician noise; drawn log-uniformly.
        gibbs_probability, ghosting_probability, bias_probability, gamma_probability: artefact rates.
        gibbs_keep: share of k-space kept (each axis) where Gibbs ringing is simulated; lower rings more and
            blurs more.
        bias_amplitude: standard deviation of the log bias field (a unit-variance smooth field times this).
        single_slice_probability: share of 2.5D samples whose channels all repeat the centre slice, as the
            predictor feeds a one-slice image (its neighbours are replicated).
        cut_probability: share of samples at a chunk's cut end: an oblique cut plane crosses the slab, the
            tissue beyond it is gone (embedding medium, label background) and a band before it is damaged
            (intensity scaled and mottled). Off by default: a stage of the default model trained with 0.15
            (and bubble_probability 0.2) lost validation WM Dice (0.881 -> 0.855-0.875 over 22 epochs) and
            did not gain on phantoms with damaged ends (GM 0.790 -> 0.774), where the cord is lost in slices
            whose damage hides it from the eye too.
        bubble_probability: share of samples with 1-3 air bubbles against the cord's surface, darkening
            the tissue around them (susceptibility blooming). Off by default (see cut_probability).
        gm_thinning_probability: share of samples whose GM is thinned along its own horns to a half-width
            drawn from ``gm_half_width_mm`` (the atlas's shape, thinner: GM fractions below any mouse
            level's, as in a human cord), so the GM's extent must be read from the image, not the shape.
            Off by default: a stage of the default model trained with 0.3 (11 epochs at 5e-4) lost
            validation Dice on every epoch (WM 0.883 -> 0.845-0.864, GM 0.916 -> 0.898-0.921) and still
            drew SCT's human cords' thin GM as a mouse-sized blob (t2s GM Dice 0.389 -> 0.405, mt1 0.376
            -> 0.346, t2s cord 0.917 -> 0.827).
        gm_half_width_mm: half-width of a thinned GM (mm); where the GM is already thinner it is kept.
        decoy_probability: share of samples with 1-3 decoys: cord-sized round structures of a tissue of
            their own (often as bright as WM), mostly inside a shell of the bone ring's tissue, labelled
            background, one of them mostly against the cord's bone ring as a vertebral body lies. Off by
            default: meant to stop the network taking a vertebral body for the cord in whole-body scans,
            it made the default model find the cord of SCT's whole-neck scans less often (t2 at 3 mm:
            cord Dice 0.89 -> 0.00 after 3 epochs with 0.2); changing surroundings fixed that instead.
        surroundings_change_probability: share of samples whose surroundings change from slice to slice
            of the slab (the extra tissues' label field and the bone ring's gaps change at
            ``surroundings_change_rad_per_mm``), as bone, discs, muscle and fat do between thick slices of
            a real spine; otherwise only the cord changes along the slab. Off by default (samples as
            before); the default model's recipe draws it for half of its samples
            (``tools/train_default_model.py``).
        surroundings_change_rad_per_mm: (min, max) rate of that change: the label field is a rotation, by
            this angle per mm, from one set of smooth fields towards an independent one (pi/2: all new).
    """

    patch_size_vox: tuple[int, int] = (128, 128)
    field_size_vox: tuple[int, int] = (128, 192)
    spacing_mm: float = 0.05
    slab_slices: int = 3
    cord_scale: tuple[float, float] = (0.6, 1.6)
    cord_anisotropy: tuple[float, float] = (0.75, 1.33)
    no_cord_probability: float = 0.06
    column_probability: float = 0.7
    realistic_intensity_probability: float = 0.5
    in_vivo_intensity_probability: float = 0.0
    rim_absent_probability: float = 0.25
    gap_probability: float = 0.25
    gap_mm: tuple[float, float] = (0.1, 0.6)
    ring_absent_probability: float = 0.15
    no_surroundings_probability: float = 0.1
    extra_labels: tuple[int, int] = (2, 7)
    in_plane_resolution_mm: tuple[float, float] = (0.03, 0.12)
    slice_thickness_mm: tuple[float, float] = (0.05, 0.5)
    snr: tuple[float, float] = (4.0, 60.0)
    gibbs_probability: float = 0.3
    ghosting_probability: float = 0.1
    bias_probability: float = 0.8
    gibbs_keep: tuple[float, float] = (0.35, 0.8)
    bias_amplitude: tuple[float, float] = (0.05, 0.4)
    gamma_probability: float = 0.5
    single_slice_probability: float = 0.1
    cut_probability: float = 0.0
    bubble_probability: float = 0.0
    gm_thinning_probability: float = 0.0
    gm_half_width_mm: tuple[float, float] = (0.06, 0.16)
    decoy_probability: float = 0.0
    surroundings_change_probability: float = 0.0
    surroundings_change_rad_per_mm: tuple[float, float] = (0.5, 5.0)

    def __post_init__(self) -> None:
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if item.name.endswith("_probability") and not 0.0 <= value <= 1.0:
                raise ConfigError(f"synthesis setting {item.name} must be in [0, 1], got {value}")
        positive_ranges = (
            "cord_scale",
            "cord_anisotropy",
            "gap_mm",
            "in_plane_resolution_mm",
            "slice_thickness_mm",
            "snr",
            "gibbs_keep",
            "bias_amplitude",
            "gm_half_width_mm",
            "surroundings_change_rad_per_mm",
        )
        for name in positive_ranges:
            low, high = getattr(self, name)
            if not 0 < low <= high:
                raise ConfigError(
                    f"synthesis setting {name} must be a range 0 < low <= high, got {getattr(self, name)}"
                )
        if self.gibbs_keep[1] > 1:
            raise ConfigError(f"synthesis setting gibbs_keep must be at most 1, got {self.gibbs_keep}")
        if self.realistic_intensity_probability + self.in_vivo_intensity_probability > 1:
            raise ConfigError(
                "synthesis settings realistic_intensity_probability and in_vivo_intensity_probability must "
                f"add up to at most 1, got {self.realistic_intensity_probability} + "
                f"{self.in_vivo_intensity_probability}"
            )
        low, high = self.extra_labels
        if not 0 <= low <= high:
            raise ConfigError(f"synthesis setting extra_labels must be 0 <= low <= high, got {(low, high)}")
        if len(self.patch_size_vox) != 2 or min(self.patch_size_vox) < 16:
            raise ConfigError(
                f"synthesis patch_size_vox must be two sizes of at least 16, got {self.patch_size_vox}"
            )
        low, high = self.field_size_vox
        if not max(self.patch_size_vox) <= low <= high:
            raise ConfigError(
                f"synthesis field_size_vox must be a range from at least the patch size "
                f"{max(self.patch_size_vox)}, got {self.field_size_vox}"
            )
        if not self.spacing_mm > 0:
            raise ConfigError(f"synthesis spacing_mm must be positive, got {self.spacing_mm}")
        if self.slab_slices < 1 or self.slab_slices % 2 == 0:
            raise ConfigError(f"synthesis slab_slices must be odd and positive, got {self.slab_slices}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SynthesisConfig:
        """Build from a (possibly partial) dict, e.g. parsed JSON; unknown keys are an error."""
        return settings_from_dict(cls, values, what="synthesis settings")


__all__ = ["SynthesisConfig"]
