"""What a model asks of inference: its bundle's ``metadata["inference"]``, parsed and checked once.

The mapping is flat, as bundles store it::

    {"version": 1, "roi": "cord", "keep_largest_component": true, "min_cord_slices": 3, "mirroring": true,
     "z_smoothing_mm": 0.2, "slab_spacing_mm": 0.5, ...}   # the remaining keys are CordRoiSettings fields

``version`` may be left out (bundles written before it existed are version 1).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from mousecord.errors import ConfigError
from mousecord.inference.cord_roi import CordRoiSettings
from mousecord.options import ROI_MODES
from mousecord.settings import settings_from_dict

#: The ``metadata["inference"]`` format this version of mousecord reads and writes.
MODEL_INFERENCE_VERSION = 1


@dataclass(frozen=True)
class ModelInferenceSettings:
    """A model's inference defaults.

    Attributes:
        roi: "full" (dense sliding window) or "cord" (find the cord, segment a tube around it).
        keep_largest_component: keep only one cord component: the largest, or among those at least a
            quarter of it the one the network is surest of
            (:func:`~mousecord.inference.postprocessing.keep_largest_component`).
        min_cord_slices: with the largest component kept, a cord on fewer slices than this (of a longer
            image) is dropped as a false positive (0: never).
        z_smoothing_mm: an in-plane model's logits are smoothed along the slices by a Gaussian of this
            standard deviation (mm) before the argmax (0: not at all); slices thicker than it are barely
            touched.
        mirroring: mirroring test-time augmentation over the bundle's mirror axes by default (on the cord
            ROI path, stage 2 only).
        cord_roi: the cord ROI path's settings.
    """

    roi: str = "full"
    keep_largest_component: bool = False
    min_cord_slices: int = 0
    z_smoothing_mm: float = 0.0
    mirroring: bool = False
    cord_roi: CordRoiSettings = field(default_factory=CordRoiSettings)

    def __post_init__(self) -> None:
        if self.roi not in ROI_MODES:
            raise ConfigError(f"roi must be one of {ROI_MODES}, got {self.roi!r}")
        if not isinstance(self.min_cord_slices, int) or self.min_cord_slices < 0:
            raise ConfigError(f"min_cord_slices must be an integer >= 0, got {self.min_cord_slices!r}")
        if not self.z_smoothing_mm >= 0:
            raise ConfigError(f"z_smoothing_mm must be >= 0, got {self.z_smoothing_mm!r}")
        if not isinstance(self.mirroring, bool):
            raise ConfigError(f"mirroring must be true or false, got {self.mirroring!r}")

    @classmethod
    def from_metadata(cls, inference: Any, *, name: str = "model") -> ModelInferenceSettings:
        """Parse a bundle's ``metadata["inference"]``.

        Raises:
            ConfigError: not a mapping, a newer format version, an unknown key or a bad value; the
                message names the model.
        """
        if not isinstance(inference, Mapping):
            raise ConfigError(f"model {name}: metadata['inference'] must be a mapping, got {inference!r}")
        values = dict(inference)
        version = values.pop("version", 1)
        if version != MODEL_INFERENCE_VERSION:
            raise ConfigError(
                f"model {name}: metadata['inference'] has format version {version!r}; this mousecord reads "
                f"version {MODEL_INFERENCE_VERSION} (upgrade mousecord to use this model)"
            )
        roi_keys = {item.name for item in fields(CordRoiSettings)}
        known = roi_keys | {item.name for item in fields(cls)} - {"cord_roi"}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(
                f"model {name}: unknown metadata['inference'] keys {unknown}; known: {sorted(known)}"
            )
        own = {key: value for key, value in values.items() if key not in roi_keys}
        try:
            cord_roi = settings_from_dict(
                CordRoiSettings,
                {key: value for key, value in values.items() if key in roi_keys},
                what="cord ROI settings",
            )
            return settings_from_dict(cls, {**own, "cord_roi": cord_roi}, what="metadata['inference'] keys")
        except ConfigError as error:
            raise ConfigError(f"model {name}: {error}") from error

    def to_metadata(self) -> dict[str, Any]:
        """The flat mapping bundles store (with the format version)."""
        return {
            "version": MODEL_INFERENCE_VERSION,
            "roi": self.roi,
            "keep_largest_component": self.keep_largest_component,
            "min_cord_slices": self.min_cord_slices,
            "z_smoothing_mm": self.z_smoothing_mm,
            "mirroring": self.mirroring,
            **{key: value for key, value in self.cord_roi.to_dict().items() if value is not None},
        }


__all__ = ["MODEL_INFERENCE_VERSION", "ModelInferenceSettings"]
