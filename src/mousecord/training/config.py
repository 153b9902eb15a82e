"""Training configuration: one frozen dataclass, presets for CPU and GPU, JSON round trip."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mousecord.errors import ConfigError
from mousecord.options import DEVICES
from mousecord.settings import settings_from_dict

if TYPE_CHECKING:
    from mousecord.models.bundle import ModelBundle

OPTIMIZERS = ("adamw", "sgd")
EXPORT_CHOICES = ("all", "best")


@dataclass(frozen=True)
class AugmentationConfig:
    """Probabilities and ranges of the training augmentations (all applied to patches, on the fly).

    Spatial transforms (rotation, scaling, elastic deformation, flips) move image and label map together:
    the image with linear interpolation, the label map with nearest neighbour, and voxels coming from
    outside the volume get the ignore value in the label map (never background).
    """

    enabled: bool = True
    rotation_probability: float = 0.8
    #: in-plane (axial) rotation: any angle; out-of-plane tilt up to this many degrees.
    tilt_max_degrees: float = 10.0
    scaling_probability: float = 0.5
    scaling_range: tuple[float, float] = (0.85, 1.2)
    elastic_probability: float = 0.2
    #: largest displacement of the coarse elastic field, in voxels.
    elastic_magnitude_vox: float = 3.0
    flip_probability: float = 0.5
    gamma_probability: float = 0.3
    gamma_range: tuple[float, float] = (0.7, 1.5)
    bias_field_probability: float = 0.3
    noise_probability: float = 0.15
    noise_std: float = 0.1
    blur_probability: float = 0.15
    inversion_probability: float = 0.0
    #: SynthSeg-style random intensity per label (needs the label map where it recolours; off for real data).
    random_label_intensity_probability: float = 0.0

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> AugmentationConfig:
        """Build from a (possibly partial) dict, e.g. parsed JSON (lists become the range tuples)."""
        return settings_from_dict(cls, values, what="augmentation settings")

    def __post_init__(self) -> None:
        for item in dataclasses.fields(self):
            if item.name.endswith("_probability") and not 0.0 <= getattr(self, item.name) <= 1.0:
                raise ConfigError(
                    f"augmentation {item.name} must be in [0, 1], got {getattr(self, item.name)}"
                )
        for name in ("scaling_range", "gamma_range"):
            low, high = getattr(self, name)
            if not 0 < low <= high:
                raise ConfigError(f"augmentation {name} must be 0 < low <= high, got {getattr(self, name)}")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run; written as JSON beside every output.

    Axis order of ``patch_size_vox`` and ``strides`` is the network's (z, y, x): z runs along the cord.

    Attributes:
        features_per_stage, strides: the PlainConvUNet (see :func:`mousecord.models.plain_unet_architecture`).
        patch_size_vox: training patch and sliding-window tile size (z, y, x).
        batch_size, epochs, iterations_per_epoch: nnU-Net's loop shape (an epoch is a fixed number of
            iterations, not a pass over the data).
        optimizer: "adamw" (default: converges in fewer iterations on CPU budgets) or "sgd" (nnU-Net's
            SGD with Nesterov momentum 0.99).
        learning_rate: initial rate, decayed by the poly schedule ``(1 - step / steps) ** poly_exponent``.
        annotated_patch_fraction: share of patches centred on an annotated slice near cord voxels.
        validation_fraction: share of subjects held out when training without cross-validation.
        seed: every random draw (weights, sampling, augmentation) derives from it.
        device: "auto" picks CUDA when available.
        mixed_precision: autocast + GradScaler; only ever used on CUDA.
        data_workers: processes that build augmented batches while the network trains (0: in the main
            process). Part of the recipe: each worker draws from its own random stream, so a run is
            reproducible for a given number of workers.
        min_gain_over_start: a fine-tune (``initial_weights``) keeps its starting weights unless an epoch
            beats their mean validation Dice by this much (see the in-plane recipe's setting of that name).
    """

    features_per_stage: tuple[int, ...] = (8, 16, 32, 64)
    strides: tuple[tuple[int, int, int], ...] = ((1, 1, 1), (2, 2, 2), (2, 2, 2), (2, 2, 2))
    n_conv_per_stage: int = 2
    patch_size_vox: tuple[int, int, int] = (32, 64, 64)
    batch_size: int = 2
    epochs: int = 50
    iterations_per_epoch: int = 50
    optimizer: str = "adamw"
    learning_rate: float = 3e-3
    weight_decay: float = 3e-5
    momentum: float = 0.99
    poly_exponent: float = 0.9
    gradient_clip: float = 12.0
    deep_supervision: bool = False
    annotated_patch_fraction: float = 2 / 3
    validation_fraction: float = 0.2
    seed: int = 0
    device: str = "auto"
    mixed_precision: bool = True
    data_workers: int = 0
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)
    min_gain_over_start: float = 0.01

    def __post_init__(self) -> None:
        if not self.min_gain_over_start >= 0:
            raise ConfigError(f"min_gain_over_start must be >= 0, got {self.min_gain_over_start}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.device not in DEVICES:
            raise ConfigError(f"device must be one of {DEVICES}, got {self.device!r}")
        if len(self.features_per_stage) != len(self.strides):
            raise ConfigError(
                f"features_per_stage has {len(self.features_per_stage)} stages, strides {len(self.strides)}"
            )
        if len(self.patch_size_vox) != 3 or min(self.patch_size_vox) < 1:
            raise ConfigError(
                f"patch_size_vox must be three positive integers (z, y, x), got {self.patch_size_vox}"
            )
        total = [1, 1, 1]
        for stride in self.strides:
            total = [t * s for t, s in zip(total, stride, strict=True)]
        if any(size % t for size, t in zip(self.patch_size_vox, total, strict=True)):
            raise ConfigError(
                f"patch_size_vox {tuple(self.patch_size_vox)} must be divisible by {tuple(total)}"
            )
        if self.data_workers < 0:
            raise ConfigError(f"data_workers must be >= 0, got {self.data_workers}")
        for name in ("batch_size", "epochs", "iterations_per_epoch"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.learning_rate <= 0:
            raise ConfigError(f"learning_rate must be positive, got {self.learning_rate}")
        if not 0 <= self.annotated_patch_fraction <= 1:
            raise ConfigError(
                f"annotated_patch_fraction must be in [0, 1], got {self.annotated_patch_fraction}"
            )
        if not 0 <= self.validation_fraction < 1:
            raise ConfigError(f"validation_fraction must be in [0, 1), got {self.validation_fraction}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from a (possibly partial) dict, e.g. parsed JSON; unknown keys are an error."""
        return settings_from_dict(
            cls, values, what="training settings", nested={"augmentation": AugmentationConfig.from_dict}
        )

    @classmethod
    def from_json_file(cls, path: Path | str) -> TrainConfig:
        path = Path(path)
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError) as error:
            raise ConfigError(f"{path}: cannot read training configuration ({error})") from error


#: Named starting points; ``cpu`` trains in minutes on a laptop, ``gpu`` is nnU-Net 3d_fullres-sized.
PRESETS: dict[str, dict[str, Any]] = {
    "cpu": {},
    "gpu": {
        "features_per_stage": (32, 64, 128, 256, 320, 320),
        "strides": ((1, 1, 1), (2, 2, 2), (2, 2, 2), (2, 2, 2), (2, 2, 2), (2, 1, 1)),
        "patch_size_vox": (160, 128, 128),
        "batch_size": 2,
        "epochs": 1000,
        "iterations_per_epoch": 250,
        "optimizer": "sgd",
        "learning_rate": 1e-2,
        "deep_supervision": True,
    },
}


def preset_config(name: str = "cpu", **overrides: Any) -> TrainConfig:
    """A :class:`TrainConfig` from a named preset, with fields overridden.

    Raises:
        ConfigError: unknown preset or field.
    """
    if name not in PRESETS:
        raise ConfigError(f"unknown training preset {name!r}; choose one of {sorted(PRESETS)}")
    return TrainConfig.from_dict({**PRESETS[name], **overrides})


def config_from_bundle(config: TrainConfig, bundle: ModelBundle) -> TrainConfig:
    """``config`` with the network and patch of ``bundle``, so that training can start from its weights.

    Raises:
        ConfigError: the bundle's network is not a PlainConvUNet of the kind mousecord trains (3 x 3 x 3
            convolutions, instance norm, leaky ReLU, one input channel, GM/WM labels), e.g. an nnU-Net model
            with another architecture.
    """
    if bundle.in_plane:
        raise ConfigError(
            f"model {bundle.name} is an in-plane network: fine-tune it slice by slice with "
            "mousecord.training.fine_tune_in_plane"
        )
    kwargs = bundle.architecture.get("arch_kwargs", {})
    try:
        n_conv = {int(count) for count in kwargs["n_conv_per_stage"]}
        candidate = dataclasses.replace(
            config,
            features_per_stage=tuple(int(value) for value in kwargs["features_per_stage"]),
            strides=tuple(tuple(int(step) for step in stride) for stride in kwargs["strides"]),
            n_conv_per_stage=n_conv.pop() if len(n_conv) == 1 else -1,
            patch_size_vox=tuple(int(value) for value in bundle.patch_size_vox),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise ConfigError(f"model {bundle.name}: cannot read its network description ({error})") from error
    if (
        candidate.n_conv_per_stage < 1
        or architecture_of(candidate) != bundle.architecture
        or bundle.input_channels != 1
        or bundle.num_classes != 3
        or [(entry.scheme, entry.use_mask) for entry in bundle.normalization]
        != [("ZScoreNormalization", False)]
    ):
        raise ConfigError(
            f"model {bundle.name}: its network is not one mousecord can train (a one-channel PlainConvUNet "
            "with 3x3x3 convolutions, instance norm, z-score input without mask and labels "
            "background/GM/WM); start from a mousecord bundle"
        )
    return candidate


def architecture_of(config: TrainConfig) -> dict[str, Any]:
    """The nnU-Net-style architecture description of ``config``'s network."""
    from mousecord.models.network import plain_unet_architecture

    return plain_unet_architecture(
        features_per_stage=tuple(config.features_per_stage),
        strides=tuple(tuple(stride) for stride in config.strides),
        n_conv_per_stage=config.n_conv_per_stage,
    )
