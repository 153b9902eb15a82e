"""``mousecord train DATASET -o FOLDER``: train a 3D U-Net from sparse or dense annotations, or fine-tune a
model (``--init-model``; an in-plane model learns from the annotated slices mixed with synthetic ones)."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from mousecord.cli.main import add_common_options, show_progress

if TYPE_CHECKING:  # torch is imported only by the subcommand that trains
    from mousecord.training.config import TrainConfig

#: Command-line options that override fields of the TrainConfig (flag mirrors the field name).
_OVERRIDES = (
    ("epochs", int, "number of epochs (default: the preset's; 20 for an in-plane fine-tune)"),
    ("iterations_per_epoch", int, "training iterations per epoch"),
    ("batch_size", int, "patches per iteration"),
    ("learning_rate", float, "initial learning rate (poly decay)"),
    ("optimizer", str, "adamw or sgd (nnU-Net's SGD, Nesterov momentum 0.99)"),
    ("seed", int, "random seed (same seed, same run on CPU)"),
    ("device", str, "auto, cpu or cuda"),
    ("data_workers", int, "processes building augmented batches in the background (0: none)"),
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a GM/WM model from annotated slices (BIDS or nnU-Net raw dataset)",
        description=(
            "Train a 3D U-Net on a BIDS dataset (images under sub-*/anat, GM/WM masks under "
            "derivatives/LABEL_FOLDER, possibly on a few slices only) or an nnU-Net v2 raw dataset; "
            "with --init-model default (an in-plane model), fine-tune it on the annotated slices instead "
            "(20 epochs; see the README, 'Fine-tuning on your scans'). Unannotated slices are ignored by the "
            "loss. With --folds K, K-fold cross-validation by subject; the result is a model bundle "
            "FOLDER/model that `mousecord segment --model` runs. An interrupted run continues with --resume."
        ),
    )
    parser.add_argument(
        "dataset", type=Path, nargs="?", help="BIDS dataset root or nnU-Net raw dataset folder"
    )
    parser.add_argument(
        "--synthetic",
        action="store_true",
        help="no dataset: train the in-plane recipe (InPlaneTrainConfig's defaults) on synthetic slabs "
        "alone, validated on phantoms of another generator; the default model's stages used other "
        "synthesis settings (tools/train_default_model.py)",
    )
    parser.add_argument(
        "-o", "--output", type=Path, required=True, help="output folder (checkpoints, curves, model)"
    )
    parser.add_argument(
        "--label-folder", default="manual_masks", help="mask folder under derivatives/ (BIDS)"
    )
    parser.add_argument(
        "--preset", default="cpu", help="cpu (small, minutes on a CPU) or gpu (nnU-Net-sized)"
    )
    parser.add_argument("--config", type=Path, help="TrainConfig JSON (e.g. a previous train_config.json)")
    parser.add_argument("--folds", type=int, default=0, help="K-fold cross-validation by subject (K >= 2)")
    parser.add_argument(
        "--export", choices=("all", "best"), default="all", help="folds to put in the model bundle"
    )
    parser.add_argument("--resume", action="store_true", help="continue from the folds' last checkpoints")
    for name, kind, text in _OVERRIDES:
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, help=text)
    parser.add_argument(
        "--patch-size-vox", type=int, nargs=3, metavar=("Z", "Y", "X"), help="patch size (z, y, x)"
    )
    parser.add_argument("--no-augmentation", action="store_true", help="train without augmentation")
    parser.add_argument(
        "--no-mixed-precision",
        action="store_true",
        help="train the network in float32 (default: float16 on CUDA for 3D networks; bfloat16 for in-plane "
        "ones where the GPU or CPU computes it natively, e.g. AVX-512 BF16 or AMX)",
    )
    parser.add_argument(
        "--init-model",
        metavar="NAME_OR_PATH",
        help="fine-tune: start from this model's weights (its first fold, e.g. 'default'), network, patch "
        "size and inference settings",
    )
    parser.add_argument(
        "--synthetic-fraction",
        type=float,
        default=0.25,
        help="fine-tuning an in-plane model: share of training samples drawn from the synthesis, so the "
        "model keeps what it knew (default 0.25)",
    )
    add_common_options(parser)
    parser.set_defaults(handler=run)


def build_config(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig from --config or --preset, with command-line overrides."""
    from mousecord.training.config import TrainConfig, preset_config

    base = (
        TrainConfig.from_json_file(args.config).to_dict()
        if args.config
        else preset_config(args.preset).to_dict()
    )
    for name, _, _ in _OVERRIDES:
        if getattr(args, name) is not None:
            base[name] = getattr(args, name)
    if args.patch_size_vox:
        base["patch_size_vox"] = args.patch_size_vox
    if args.no_augmentation:
        base["augmentation"] = {**base["augmentation"], "enabled": False}
    if args.no_mixed_precision:
        base["mixed_precision"] = False
    return TrainConfig.from_dict(base)


def command_line(args: argparse.Namespace) -> str:
    """The command as the user could retype it (for the model card), rebuilt from the parsed options."""
    words = [
        "mousecord",
        "train",
        *([str(args.dataset)] if args.dataset else ["--synthetic"]),
        "-o",
        str(args.output),
    ]
    for name in (
        "label_folder",
        "preset",
        "config",
        "folds",
        "export",
        "init_model",
        *(item[0] for item in _OVERRIDES),
    ):
        value = getattr(args, name)
        default = {"label_folder": "manual_masks", "preset": "cpu", "folds": 0, "export": "all"}.get(name)
        if value is not None and value != default:
            words += [f"--{name.replace('_', '-')}", str(value)]
    if args.patch_size_vox:
        words += ["--patch-size-vox", *(str(size) for size in args.patch_size_vox)]
    if args.synthetic_fraction != 0.25:
        words += ["--synthetic-fraction", str(args.synthetic_fraction)]
    flags = (
        ("--resume", args.resume),
        ("--no-augmentation", args.no_augmentation),
        ("--no-mixed-precision", args.no_mixed_precision),
    )
    words += [flag for flag, on in flags if on]
    return shlex.join(words)


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except KeyboardInterrupt:  # also SIGTERM; the finished epochs' checkpoints stay
        saved = any(args.output.glob("checkpoint_last.pt")) or any(
            args.output.glob("fold_*/checkpoint_last.pt")
        )
        hint = (
            f"the same command with --resume continues {args.output} from its last finished epoch"
            if saved
            else f"no epoch had finished, nothing to resume: the same command starts {args.output} afresh"
        )
        print(f"mousecord train: {hint}", file=sys.stderr)
        raise


def _run(args: argparse.Namespace) -> int:
    from mousecord.training import TrainConfig, config_from_bundle, train

    if args.synthetic:
        return _train_synthetic(args)
    if args.dataset is None:
        from mousecord.errors import ConfigError

        raise ConfigError("give a DATASET to train on (or --synthetic to train on synthetic slabs alone)")
    initial_weights = inference = None
    if args.init_model:
        from mousecord.models.registry import resolve_model

        bundle = resolve_model(args.init_model)
        if bundle.in_plane:
            return _fine_tune_in_plane(args, bundle)
        config = config_from_bundle(build_config(args), bundle)
        if args.patch_size_vox:  # the weights do not depend on the patch: the user's choice stands
            config = TrainConfig.from_dict({**config.to_dict(), "patch_size_vox": args.patch_size_vox})
        initial_weights = bundle.fold_weights[0]
        inference = bundle.metadata.get("inference")
    else:
        config = build_config(args)
    summary = train(
        args.dataset,
        args.output,
        config,
        folds=args.folds,
        export=args.export,
        label_folder=args.label_folder,
        resume=args.resume,
        progress=show_progress(args),
        command=command_line(args),
        initial_weights=initial_weights,
        inference=inference,
    )
    print(summary.format_table())
    print(f"model bundle: {summary.bundle}")
    return 0


def _fine_tune_in_plane(args: argparse.Namespace, bundle) -> int:
    """``--init-model`` with an in-plane model: fine-tune it on the annotated slices (see
    :func:`mousecord.training.fine_tune_in_plane`), the command-line overrides applied to its recipe."""
    import dataclasses

    from mousecord.errors import ConfigError
    from mousecord.models.bundle import load_bundle
    from mousecord.training import InPlaneTrainConfig, fine_tune_choice, fine_tune_in_plane

    if args.folds or args.config or args.patch_size_vox:
        raise ConfigError("--folds, --config and --patch-size-vox do not apply to an in-plane model")
    if not 0 <= args.synthetic_fraction < 1:
        raise ConfigError(f"--synthetic-fraction must be in [0, 1), got {args.synthetic_fraction}")
    base = InPlaneTrainConfig.fine_tune_for(bundle)
    overrides = {"annotated_fraction": 1 - args.synthetic_fraction, **_in_plane_overrides(args)}
    config = dataclasses.replace(base, **overrides)
    if args.no_augmentation:
        config = dataclasses.replace(
            config, augmentation=dataclasses.replace(config.augmentation, enabled=False)
        )
    folder = fine_tune_in_plane(
        bundle,
        args.dataset,
        args.output,
        config,
        label_folder=args.label_folder,
        resume=args.resume,
        progress=show_progress(args),
        command=command_line(args),
    )
    print(f"{fine_tune_choice(load_bundle(folder).metadata)}\nmodel bundle: {folder}")
    return 0


def _in_plane_overrides(args: argparse.Namespace) -> dict:
    """The command-line options that override fields of an in-plane recipe (InPlaneTrainConfig)."""
    overrides = {name: getattr(args, name) for name, _, _ in _OVERRIDES if getattr(args, name) is not None}
    overrides.pop("optimizer", None)  # in-plane training always uses AdamW
    if args.no_mixed_precision:
        overrides["mixed_precision"] = False
    return overrides


def _train_synthetic(args: argparse.Namespace) -> int:
    """``--synthetic``: the in-plane recipe on synthetic slabs alone (see
    :func:`mousecord.training.train_in_plane`), the best checkpoint exported as ``OUTPUT/model``."""
    import dataclasses

    from mousecord.errors import ConfigError
    from mousecord.models.bundle import save_bundle
    from mousecord.training import InPlaneTrainConfig, load_checkpoint, train_in_plane
    from mousecord.training.in_plane import (
        DEFAULT_INFERENCE,
        bundle_from_weights,
        phantom_validation_volumes,
    )

    if args.dataset is not None or args.init_model or args.folds or args.config or args.patch_size_vox:
        raise ConfigError(
            "--synthetic trains on synthetic slabs alone: give no DATASET, --init-model, --folds, --config "
            "or --patch-size-vox"
        )
    config = dataclasses.replace(InPlaneTrainConfig(), **_in_plane_overrides(args))
    result = train_in_plane(
        config,
        args.output,
        validation_volumes=phantom_validation_volumes(),
        resume=args.resume,
        progress=show_progress(args),
        inference=DEFAULT_INFERENCE,
    )
    weights = load_checkpoint(result.best_checkpoint)["network_weights"]
    bundle = bundle_from_weights(
        config,
        weights,
        name=args.output.name or "mousecord-model",
        inference=DEFAULT_INFERENCE,
        model_card=f"# {args.output.name}\n\nTrained on synthetic slabs with `{command_line(args)}`; best "
        f"epoch {result.best_epoch}, phantom validation Dice GM {result.best_dice['GM']:.3f}, "
        f"WM {result.best_dice['WM']:.3f}.\n",
    )
    print(f"model bundle: {save_bundle(bundle, args.output / 'model', overwrite=True)}")
    return 0
