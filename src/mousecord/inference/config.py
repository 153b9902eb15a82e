"""``InferenceConfig``: how a :class:`~mousecord.inference.predictor.Predictor` runs (device, backend, tiling,
the cord ROI path, memory checks), validated once and written to every sidecar."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from mousecord.errors import ConfigError
from mousecord.inference.sliding_window import check_tiling
from mousecord.options import (
    BACKENDS,
    DEFAULT_MAX_NETWORK_VOXELS,
    DEFAULT_MAX_UPSAMPLING,
    DEVICES,
    PRECISIONS,
    ROI_MODES,
)


@dataclass(frozen=True)
class InferenceConfig:
    """Settings of a prediction (written to every sidecar).

    Attributes:
        tile_step_fraction: sliding-window step as a fraction of the patch (nnU-Net's ``tile_step_size``).
        blend: "gaussian" (nnU-Net) or "constant" tile weighting.
        mirroring: test-time augmentation over the model's allowed mirror axes (8x slower in 3D, 4x in
            2D); None: as the bundle's ``metadata["inference"]`` says, else no.
        device: "cpu", "cuda" or "auto" (CUDA when available; the CPU with backend "openvino").
        threads: CPU threads for the network and torch (None: torch's default).
        batch_size_tiles: tiles per network call (None: 1 for a 3D model, 16 slices for an in-plane one).
        accumulate_dtype: "float16" (nnU-Net's precision; identical results with backend "torch") or
            "float32" (exact blending); see :func:`~mousecord.inference.sliding_window.sliding_window`.
        progress: tqdm progress bar over tiles.
        roi: "auto" (the bundle's ``metadata["inference"]["roi"]``, else "full"), "full" (the dense
            nnU-Net-exact sliding window over the whole image) or "cord" (find the cord, segment only a tube
            around it; see :mod:`mousecord.inference.cord_roi`).
        keep_largest_component: keep only one cord component, the largest or, among those at least a
            quarter of it, the one the network is surest of (None: as the bundle's ``metadata["inference"]``
            says, else no).
        precision: "auto" (the bundle's int8 networks when the backend is OpenVINO and the bundle has them,
            quantised from its weights; else float32), "float32" or "int8" (an error where it cannot be).
        backend: where the network runs: "torch", "openvino" (CPU only, ~2x faster; network outputs
            within 1e-4 relative of torch's) or "auto" (OpenVINO on an x86-64 CPU when installed, falling
            back to torch if it cannot compile the network); see :mod:`mousecord.inference.backends`.
        max_network_voxels: refuse images larger than this once resampled to the model's spacing (a
            200 x 200 x 500 chunk at 0.05 mm is 2e7; 4e8 needs over 10 GB). A header voxel size in the wrong
            unit or scale would otherwise grow a small image by 1000x or more and exhaust the memory.
        max_upsampling: refuse images whose in-plane voxels (the finer of the two axes) are more than
            this many times the model's spacing (10: 0.5 mm for a 0.05 mm model, the largest in-plane
            voxel that still draws a mouse cord's GM): a header in the wrong unit would otherwise be
            segmented for minutes at a nonsensical scale. None turns the check off.
        check_memory: before resampling, refuse an image whose estimated peak memory
            (:func:`~mousecord.inference.memory.estimate_peak_bytes`) exceeds the memory available.
    """

    tile_step_fraction: float = 0.5
    blend: str = "gaussian"
    mirroring: bool | None = None
    device: str = "auto"
    threads: int | None = None
    batch_size_tiles: int | None = None
    accumulate_dtype: str = "float16"
    progress: bool = False
    roi: str = "auto"
    keep_largest_component: bool | None = None
    backend: str = "auto"
    precision: str = "auto"
    max_network_voxels: int = DEFAULT_MAX_NETWORK_VOXELS
    max_upsampling: float | None = DEFAULT_MAX_UPSAMPLING
    check_memory: bool = True

    def __post_init__(self) -> None:
        check_tiling(
            self.tile_step_fraction,
            self.blend,
            self.batch_size_tiles,
            names=("tile_step_fraction", "blend", "batch_size_tiles"),
        )
        if self.device not in DEVICES:
            raise ConfigError(f"device must be one of {DEVICES}, got {self.device!r}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads must be at least 1, got {self.threads}")
        if self.backend not in BACKENDS:
            raise ConfigError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.accumulate_dtype not in ("float16", "float32"):
            raise ConfigError(
                f"accumulate_dtype must be 'float16' or 'float32', got {self.accumulate_dtype!r}"
            )
        if self.max_upsampling is not None and not 1 <= self.max_upsampling < float("inf"):
            raise ConfigError(
                f"max_upsampling must be a finite number of at least 1 (None: no limit), got "
                f"{self.max_upsampling}"
            )
        if self.max_network_voxels < 1:
            raise ConfigError(f"max_network_voxels must be at least 1, got {self.max_network_voxels}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.roi not in ("auto", *ROI_MODES):
            raise ConfigError(f"roi must be one of {('auto', *ROI_MODES)}, got {self.roi!r}")

    def to_dict(self) -> dict:
        return asdict(self)


__all__ = ["InferenceConfig"]
