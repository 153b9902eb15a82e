"""Settings of in-plane (2D / 2.5D) training: the network, the schedule, the mix of synthetic slabs and
annotated slices, and what a model trained on synthetic slabs asks of inference."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from mousecord.errors import ConfigError
from mousecord.models.bundle import ModelBundle
from mousecord.models.network import plain_unet_architecture
from mousecord.options import DEVICES
from mousecord.settings import settings_from_dict
from mousecord.synthesis import SynthesisConfig
from mousecord.training.config import AugmentationConfig

IN_PLANE_CONFIG_JSON = "in_plane_train_config.json"


@dataclass(frozen=True)
class InPlaneTrainConfig:
    """Recipe of an in-plane network trained on synthetic slabs and/or annotated slices.

    Attributes:
        features_per_stage: 2D PlainConvUNet features; each stage after the first halves y and x.
        n_conv_per_stage: convolutions per stage (encoder and decoder).
        batch_size, epochs, iterations_per_epoch: an epoch is a fixed number of fresh batches.
        learning_rate, weight_decay, poly_exponent, gradient_clip: AdamW with poly decay per iteration.
        seed: weights and every sample derive from it.
        device: "auto", "cpu" or "cuda".
        mixed_precision: run the network in bfloat16 (autocast; weights, optimiser and loss stay float32)
            where the device computes it natively: CUDA with bfloat16, or a CPU with AVX-512 BF16 or AMX
            (a 2.5D step 1.4x faster on 2 cores of an AMD EPYC with AVX-512 BF16); float32 elsewhere,
            where emulated bfloat16 would be slower. Results then depend on the machine's precision too.
        data_workers: processes synthesising batches while the network trains (0: the main process).
        synthesis: the generator's ranges; its ``patch_size_vox``, ``spacing_mm`` and ``slab_slices`` are
            the model's.
        annotated_fraction: share of samples cut from a dataset's annotated slices (0: synthesis alone;
            needs a dataset when above 0); the rest are synthetic.
        augmentation: in-plane rotation, scaling, flips and intensity changes of annotated-slice samples
            (the tilt setting is not used: slices are never resampled across).
        min_gain_over_start: a fine-tune keeps its starting weights unless an epoch beats their mean
            validation Dice by this much: a few held-out slices measure it, and smaller gains were noise
            (random-contrast phantoms: +0.007 on validation chose an epoch that lost 0.017 GM Dice on
            the test volumes; GM-darker ones: +0.039 on validation, +0.034 WM on the test volumes).
    """

    features_per_stage: tuple[int, ...] = (16, 32, 64, 128, 256, 256)
    n_conv_per_stage: int = 2
    batch_size: int = 12
    epochs: int = 40
    iterations_per_epoch: int = 60
    learning_rate: float = 2e-3
    weight_decay: float = 3e-5
    poly_exponent: float = 0.9
    gradient_clip: float = 12.0
    seed: int = 0
    device: str = "auto"
    mixed_precision: bool = True
    data_workers: int = 1
    synthesis: SynthesisConfig = field(default_factory=SynthesisConfig)
    annotated_fraction: float = 0.0
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)
    min_gain_over_start: float = 0.01

    def __post_init__(self) -> None:
        if not self.min_gain_over_start >= 0:
            raise ConfigError(f"min_gain_over_start must be >= 0, got {self.min_gain_over_start}")
        if not 0.0 <= self.annotated_fraction <= 1.0:
            raise ConfigError(f"annotated_fraction must be in [0, 1], got {self.annotated_fraction}")
        if self.device not in DEVICES:
            raise ConfigError(f"device must be one of {DEVICES}, got {self.device!r}")
        for name in ("batch_size", "epochs", "iterations_per_epoch", "n_conv_per_stage"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.data_workers < 0:
            raise ConfigError(f"data_workers must be >= 0, got {self.data_workers}")
        if self.learning_rate <= 0:
            raise ConfigError(f"learning_rate must be positive, got {self.learning_rate}")
        reduction = 2 ** (len(self.features_per_stage) - 1)
        if any(size % reduction for size in self.synthesis.patch_size_vox):
            raise ConfigError(
                f"synthesis patch_size_vox {self.synthesis.patch_size_vox} must be divisible by {reduction} "
                f"for a network of {len(self.features_per_stage)} stages"
            )

    @property
    def strides(self) -> tuple[tuple[int, int], ...]:
        return ((1, 1),) + ((2, 2),) * (len(self.features_per_stage) - 1)

    def architecture(self) -> dict[str, Any]:
        """The nnU-Net-style description of the 2D network."""
        return plain_unet_architecture(
            features_per_stage=tuple(self.features_per_stage),
            strides=self.strides,
            n_conv_per_stage=self.n_conv_per_stage,
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def for_bundle(cls, bundle: ModelBundle) -> InPlaneTrainConfig:
        """The recipe an in-plane ``bundle`` was trained with (its metadata), else one with its network,
        patch, slab and spacing and default settings otherwise.

        Raises:
            ConfigError: a 3D bundle, or a network that is not a 2D PlainConvUNet of the kind trained here.
        """
        if not bundle.in_plane:
            raise ConfigError(f"model {bundle.name} is a 3D network, not an in-plane one")
        recipe = bundle.metadata.get("training_config")
        if isinstance(recipe, dict):
            return cls.from_dict(recipe)
        try:
            kwargs = bundle.architecture["arch_kwargs"]
            n_conv = {int(count) for count in kwargs["n_conv_per_stage"]}
            config = cls(
                features_per_stage=tuple(int(value) for value in kwargs["features_per_stage"]),
                n_conv_per_stage=n_conv.pop() if len(n_conv) == 1 else 0,
                synthesis=SynthesisConfig(
                    patch_size_vox=tuple(int(size) for size in bundle.patch_size_vox[1:]),
                    field_size_vox=(max(bundle.patch_size_vox[1:]), max(192, *bundle.patch_size_vox[1:])),
                    spacing_mm=float(bundle.spacing_mm[1]),
                    slab_slices=bundle.slab_slices,
                ),
            )
        except (KeyError, TypeError, ValueError, ConfigError) as error:
            raise ConfigError(
                f"model {bundle.name}: cannot read its network description ({error})"
            ) from error
        if config.architecture() != bundle.architecture:
            raise ConfigError(
                f"model {bundle.name}: its network is not one mousecord trains in-plane (a 2D PlainConvUNet "
                "with 3x3 convolutions, strides 2 after the first stage, instance norm, leaky ReLU)"
            )
        return config

    @classmethod
    def fine_tune_for(cls, bundle: ModelBundle) -> InPlaneTrainConfig:
        """The recipe to adapt ``bundle`` to annotated slices: its own recipe (:meth:`for_bundle`), 3 in 4
        samples from the annotated slices, 20 epochs of 25 iterations at learning rate 5e-4.

        20 epochs, not 10 (``benchmarks/adapt.py``, default model, 2 cores of an AMD EPYC with AVX-512
        BF16, bfloat16): GM / WM Dice 0.897 / 0.914 -> 0.911 / 0.920 on GM-darker phantoms, where it was
        chosen (3.6 -> 6.8 minutes; 8.3 in float32, 0.907 / 0.921); on T1w phantoms, held out, 0.907 / 0.921
        -> 0.908 / 0.919; on random contrasts both keep the starting weights."""
        return dataclasses.replace(
            cls.for_bundle(bundle),
            mixed_precision=True,  # not a float32 choice of the run that made ``bundle``
            annotated_fraction=0.75,
            epochs=20,
            iterations_per_epoch=25,
            learning_rate=5e-4,
        )

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> InPlaneTrainConfig:
        """Build from a (possibly partial) dict, e.g. parsed JSON; unknown keys are an error."""
        return settings_from_dict(
            cls,
            values,
            what="in-plane training settings",
            nested={"synthesis": SynthesisConfig.from_dict, "augmentation": AugmentationConfig.from_dict},
        )


#: What an in-plane model trained on synthetic slabs asks of inference (the default model's settings): the
#: cord ROI path, stage 1 on one slice every 0.5 mm, a tube 0.6 mm beyond the cord, the largest cord kept
#: (and dropped when it spans fewer than 3 slices of a longer image), logits smoothed along the slices with
#: sigma 0.2 mm (chosen on phantom seeds 500-505 among 0.1, 0.2 and 0.3 mm: against 0.1, GM Dice +0.001 to
#: +0.029 and WM +0.003 to +0.033 in T1w, random, GM-dark and 0.3 mm thick-slice phantoms, GM area jitter
#: 1.39 -> 1.09x the truth's in T1w; 0.3 gained a little more, but reaches further along a bending cord),
#: and stage 2 mirrored over both in-plane axes (the network's output depends on where its tile lies; the
#: mean of four mirrored passes is steadier: on 10 phantoms each, GM Dice +0.010 T1w, +0.012 random, +0.010
#: GM-dark, +0.009 thick slices, and the quick start's phantom no longer loses the cord on 18 slices),
#: segmenting one slice every 0.15 mm in stage 2 and interpolating between (every third slice at 0.05 mm,
#: every slice of volumes with 0.15 mm slices or thicker), inside the logits' 0.2 mm smoothing: against one
#: slice every 0.1 mm, GM Dice -0.0003 to +0.0001 on phantom seeds 0-9 and 30-39 of T1w, GM-dark and random
#: contrast and -0.001 on the parametric phantom, at two thirds of the stage-2 network time (the shipped
#: model end to end on a 200 x 200 x 500 volume: 7.2 s, 69x nnU-Net's predictor, against 9.7 s, 50x, with
#: one slice every 0.1 mm and a start-up then 0.3 s longer); one slice
#: every 0.2 mm was faster still (6.6 s) but lost up to 0.0014 GM on those phantoms and 0.005 on the
#: parametric one; one slice every 0.1 mm had matched every slice (GM Dice within 0.0006).
DEFAULT_INFERENCE = {
    "roi": "cord",
    "keep_largest_component": True,
    "slab_spacing_mm": 0.5,
    "margin_mm": 0.6,
    "min_cord_voxels": 60,
    "max_centre_step_mm": 0.8,
    "min_cord_slices": 3,
    "z_smoothing_mm": 0.2,
    "mirroring": True,
    "slice_step_mm": 0.15,
}


__all__ = ["DEFAULT_INFERENCE", "IN_PLANE_CONFIG_JSON", "InPlaneTrainConfig"]
