"""In-plane training: annotated-slice samples, resume, fine-tuning through the CLI, validation that equals
what ``mousecord segment`` + ``mousecord evaluate`` report."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import mousecord.training.in_plane as in_plane
from mousecord.analysis import evaluate
from mousecord.cli.main import main
from mousecord.errors import ConfigError
from mousecord.inference import InferenceConfig, Predictor
from mousecord.labels import IGNORE_VALUE
from mousecord.models import load_bundle, save_bundle
from mousecord.pipelines import segment
from mousecord.synthesis import SynthesisConfig
from mousecord.training import InPlaneTrainConfig, load_checkpoint, load_training_dataset, train_in_plane
from mousecord.training.in_plane import annotated_sample, in_plane_batch, validate_annotated_slices
from tests.inference.helpers import tiny_in_plane_bundle
from tests.training.synthetic import write_bids_dataset

#: The original, before the autouse fixture below replaces it.
NATIVE_BFLOAT16 = in_plane.native_bfloat16


@pytest.fixture(autouse=True)
def _float32(monkeypatch) -> None:
    """Float32 training whatever the CPU: outcomes asserted here must not depend on bfloat16 instructions
    (the tests of mixed precision choose the answer themselves)."""
    monkeypatch.setattr(in_plane, "native_bfloat16", lambda device: False)


TINY = InPlaneTrainConfig(
    features_per_stage=(4, 8, 16),
    batch_size=2,
    epochs=2,
    iterations_per_epoch=2,
    data_workers=0,
    device="cpu",
    synthesis=SynthesisConfig(patch_size_vox=(32, 32), field_size_vox=(32, 48), slab_slices=3),
)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bids")
    write_bids_dataset(root, n_subjects=2, shape=(40, 40, 10), annotated_slices=3)
    return root


def test_annotated_samples_keep_slices_and_ignore_only_outside(dataset: Path) -> None:
    bundle = tiny_in_plane_bundle(slab_slices=3)
    cases = load_training_dataset(dataset, input_spec=bundle.input_spec).cases
    config = dataclasses.replace(TINY, annotated_fraction=1.0, batch_size=6)
    images, labels = in_plane_batch(config, np.random.default_rng(0), cases)
    assert images.shape == (6, 3, 32, 32) and labels.shape == (6, 32, 32)
    values = set(torch.unique(labels).tolist())
    assert {1, 2} <= values <= {0, 1, 2, IGNORE_VALUE}  # annotated slices: the cord is there
    again = in_plane_batch(config, np.random.default_rng(0), cases)
    assert torch.equal(images, again[0]) and torch.equal(labels, again[1])


def test_resume_after_a_stop_continues_the_same_loss_curve(dataset: Path, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    cases = load_training_dataset(dataset, input_spec=tiny_in_plane_bundle(slab_slices=3).input_spec).cases
    config = dataclasses.replace(TINY, annotated_fraction=0.5)
    kwargs = {"training_cases": cases, "validation_cases": cases}
    whole = train_in_plane(config, tmp_path / "whole", **kwargs)
    train_in_plane(config, tmp_path / "split", stop_after_epoch=1, **kwargs)
    resumed = train_in_plane(config, tmp_path / "split", resume=True, **kwargs)
    assert resumed.history["train_loss"] == whole.history["train_loss"]
    assert resumed.history["dice_mean"] == whole.history["dice_mean"]
    with pytest.raises(Exception, match="previous run"):
        train_in_plane(config, tmp_path / "whole", **kwargs)


def test_validation_equals_segment_and_evaluate(dataset: Path, tmp_path: Path) -> None:
    """The number that selects a checkpoint is the one a user gets from the deployed commands."""
    bundle = tiny_in_plane_bundle(slab_slices=3, seed=3)  # a network that predicts both tissues there
    case = load_training_dataset(dataset, input_spec=bundle.input_spec).cases[0]
    predictor = Predictor(bundle, InferenceConfig(device="cpu", backend="torch", roi="full"))
    validation = validate_annotated_slices(predictor, [case])
    assert validation["GM"] > 0.05 and validation["WM"] > 0.05
    image = next(dataset.glob(f"sub-*/anat/{case.name}.nii.gz"))
    model = save_bundle(bundle, tmp_path / "model")
    output = tmp_path / "pred" / f"{case.name}_seg.nii.gz"
    segment(image, output, model=model, inference=InferenceConfig(device="cpu", backend="torch", roi="full"))
    truth = next(dataset.glob(f"derivatives/manual_masks/*/anat/{case.name}_label-GM_mask.nii.gz"))
    result = evaluate(output, truth)[0]
    assert result.metrics["GM"].dice == pytest.approx(validation["GM"], abs=1e-9)
    assert result.metrics["WM"].dice == pytest.approx(validation["WM"], abs=1e-9)


def test_cli_fine_tunes_an_in_plane_model(dataset: Path, tmp_path: Path) -> None:
    start = save_bundle(tiny_in_plane_bundle(slab_slices=3), tmp_path / "start")
    code = main(
        [
            "train",
            str(dataset),
            "-o",
            str(tmp_path / "run"),
            "--init-model",
            str(start),
            "--epochs",
            "1",
            "--iterations-per-epoch",
            "2",
            "--batch-size",
            "2",
            "--data-workers",
            "0",
            "--device",
            "cpu",
            "--quiet",
        ]
    )
    assert code == 0
    tuned = load_bundle(tmp_path / "run" / "model")
    assert tuned.in_plane and tuned.slab_slices == 3
    assert tuned.metadata["fine_tuned_from"] == "tiny-2d"
    assert tuned.metadata["training_config"]["annotated_fraction"] == 0.75
    assert tuned.metadata["best_epoch"] == 0  # this run's one epoch beat the random starting weights
    assert set(tuned.metadata["starting_validation"]) == {"GM", "WM", "mean"}
    changed = [
        not torch.equal(tuned.fold_weights[0][key], value)
        for key, value in load_bundle(start).fold_weights[0].items()
    ]
    assert any(changed)
    assert (tmp_path / "run" / "progress.png").stat().st_size > 0


def _tiny_fine_tune(start, **overrides) -> InPlaneTrainConfig:
    """``start``'s fine-tuning recipe on TINY's small slabs: 2 epochs of 2 batches of 2, in-process, CPU."""
    return dataclasses.replace(
        InPlaneTrainConfig.fine_tune_for(start),
        synthesis=TINY.synthesis,
        batch_size=2,
        epochs=2,
        iterations_per_epoch=2,
        data_workers=0,
        device="cpu",
        **overrides,
    )


def _fine_tune_on_its_own_slices(dataset: Path, tmp_path: Path, **overrides):
    """A tiny in-plane model (it predicts both tissues on ``dataset``) and its fine-tune on the dataset's
    annotated slices alone, validated on them too."""
    torch.set_num_threads(1)
    start = tiny_in_plane_bundle(slab_slices=3, seed=3)
    cases = load_training_dataset(dataset, input_spec=start.input_spec).cases
    result = train_in_plane(
        _tiny_fine_tune(start, annotated_fraction=1.0, **overrides),
        tmp_path / "run",
        training_cases=cases,
        validation_cases=cases,
        initial_weights=start.fold_weights[0],
    )
    return start, result


def test_a_fine_tune_that_does_not_help_keeps_the_starting_weights(dataset: Path, tmp_path: Path) -> None:
    """The starting weights are validated first and stay the best checkpoint unless an epoch beats them:
    here every epoch diverges (learning rate 50), so the result is the model it started from."""
    start, result = _fine_tune_on_its_own_slices(dataset, tmp_path, learning_rate=50.0)
    assert result.best_epoch == -1
    assert result.starting_dice["GM"] > 0.05 and result.starting_dice["WM"] > 0.05
    assert result.best_dice == result.starting_dice
    assert max(result.history["dice_mean"]) < result.starting_dice["mean"]
    kept = load_checkpoint(result.best_checkpoint)["network_weights"]
    assert all(torch.equal(kept[key], value) for key, value in start.fold_weights[0].items())


@pytest.mark.parametrize(("min_gain", "chosen"), [(0.01, -1), (0.0, 0)])
def test_a_fine_tune_must_beat_its_start_by_the_margin(
    dataset: Path, tmp_path: Path, monkeypatch, min_gain, chosen
):
    """Epochs 0.005 better than the start on the held-out slices: within ``min_gain_over_start`` (0.01 by
    default) that is noise and the start is kept; without a margin the first such epoch is chosen."""
    import mousecord.training.in_plane as in_plane

    scores = iter([0.900, 0.905, 0.905])  # the start, then each epoch
    monkeypatch.setattr(
        in_plane, "_validate", lambda *args: dict.fromkeys(("GM", "WM", "mean"), next(scores))
    )
    _, result = _fine_tune_on_its_own_slices(dataset, tmp_path, min_gain_over_start=min_gain)
    assert result.best_epoch == chosen and result.starting_dice["mean"] == 0.900


def test_a_resumed_fine_tune_keeps_its_starting_validation(dataset: Path, tmp_path: Path) -> None:
    """The starting weights' Dice travels in the checkpoint: a fine-tune stopped after an epoch and resumed
    ends as an uninterrupted one, without validating the (by then changed) network as its start again."""
    torch.set_num_threads(1)
    start = tiny_in_plane_bundle(slab_slices=3, seed=3)
    cases = load_training_dataset(dataset, input_spec=start.input_spec).cases
    config = _tiny_fine_tune(start)
    kwargs = {"training_cases": cases, "validation_cases": cases, "initial_weights": start.fold_weights[0]}
    whole = train_in_plane(config, tmp_path / "whole", **kwargs)
    train_in_plane(config, tmp_path / "split", stop_after_epoch=1, **kwargs)
    resumed = train_in_plane(config, tmp_path / "split", resume=True, **kwargs)
    assert resumed.starting_dice == whole.starting_dice and set(whole.starting_dice) == {"GM", "WM", "mean"}
    assert resumed.best_epoch == whole.best_epoch and resumed.best_dice == whole.best_dice
    assert resumed.history["dice_mean"] == whole.history["dice_mean"]


def test_cli_trains_on_synthetic_slabs_alone(tmp_path: Path, monkeypatch) -> None:
    """``mousecord train --synthetic``: no dataset, validation on phantoms, a runnable in-plane bundle."""
    import mousecord.training
    import mousecord.training.in_plane as in_plane
    from mousecord.phantom import PhantomConfig, generate_phantom

    phantom = generate_phantom(PhantomConfig(shape_vox=(80, 80, 3)), rng=np.random.default_rng(5001))
    monkeypatch.setattr(
        in_plane, "phantom_validation_volumes", lambda: [(phantom.image, phantom.label_map.data)]
    )
    monkeypatch.setattr(mousecord.training, "InPlaneTrainConfig", lambda: TINY)  # a tiny network
    code = main(
        [
            "train",
            "--synthetic",
            "-o",
            str(tmp_path / "run"),
            "--epochs",
            "1",
            "--iterations-per-epoch",
            "1",
            "--quiet",
        ]
    )
    assert code == 0
    bundle = load_bundle(tmp_path / "run" / "model")
    assert bundle.in_plane and bundle.metadata["inference"]["roi"] == "cord"
    assert (
        Predictor(bundle, InferenceConfig(device="cpu", backend="torch"))
        .predict_volume(phantom.image)
        .label_map.shape
        == phantom.image.shape
    )


def test_cli_refuses_a_dataset_with_synthetic(dataset: Path, tmp_path: Path, capsys) -> None:
    assert main(["train", str(dataset), "--synthetic", "-o", str(tmp_path / "run")]) == 1
    assert "--synthetic trains on synthetic slabs alone" in capsys.readouterr().err


def test_annotated_sample_on_the_first_slice_replicates_it_as_inference_does(tmp_path: Path) -> None:
    from mousecord.training.data import TrainingCase

    image = np.random.default_rng(0).random((4, 40, 40)).astype(np.float32)
    labels = np.full((4, 40, 40), IGNORE_VALUE, dtype=np.uint8)
    labels[0] = 0
    labels[0, 15:25, 15:25] = 2  # only the first slice is annotated
    case = TrainingCase("edge", "sub-01", image, labels, (0.05, 0.05, 0.05))
    config = dataclasses.replace(
        TINY, annotated_fraction=1.0, augmentation=dataclasses.replace(TINY.augmentation, enabled=False)
    )
    sample, target = annotated_sample(case, config, np.random.default_rng(1), [])
    np.testing.assert_array_equal(sample[0], sample[1])  # the slice before the first is the first itself
    assert not np.array_equal(sample[1], sample[2])
    assert (target == 2).any()


def test_bundle_refuses_a_network_that_does_not_match_its_slab_setting() -> None:
    from mousecord.errors import ConfigError
    from tests.inference.helpers import tiny_bundle

    with pytest.raises(ConfigError, match="3D network needs slab_slices 0"):
        dataclasses.replace(tiny_bundle(), slab_slices=3, patch_size_vox=(1, 16, 16))
    with pytest.raises(ConfigError, match="2D network needs slab_slices > 0"):
        dataclasses.replace(tiny_in_plane_bundle(), slab_slices=0)


def test_a_negative_margin_over_the_start_is_refused():
    from mousecord.errors import ConfigError

    with pytest.raises(ConfigError, match="min_gain_over_start must be >= 0"):
        InPlaneTrainConfig(min_gain_over_start=-0.01)


def test_mixed_precision_runs_the_network_in_bfloat16_only_where_native(
    dataset: Path, tmp_path: Path, monkeypatch
) -> None:
    torch.set_num_threads(1)
    cases = load_training_dataset(dataset, input_spec=tiny_in_plane_bundle(slab_slices=3).input_spec).cases
    config = dataclasses.replace(TINY, epochs=1, annotated_fraction=0.5)
    kwargs = {"training_cases": cases, "validation_cases": cases}

    def run(folder: str, *, native: bool, mixed: bool) -> dict:
        monkeypatch.setattr(in_plane, "native_bfloat16", lambda device: native)
        return train_in_plane(dataclasses.replace(config, mixed_precision=mixed), tmp_path / folder, **kwargs)

    float32 = run("float32", native=True, mixed=False).history
    bfloat16 = run("bfloat16", native=True, mixed=True).history
    emulated = run("emulated", native=False, mixed=True).history  # a CPU without bfloat16 instructions
    assert np.isfinite(bfloat16["train_loss"]).all()
    assert bfloat16["train_loss"] != float32["train_loss"]  # bfloat16 rounding changes the numbers
    assert emulated["train_loss"] == float32["train_loss"]  # float32 where bfloat16 would be emulated
    assert (bfloat16["precision"], emulated["precision"]) == (["bfloat16"], ["float32"])


def test_native_bfloat16_follows_the_devices_instructions(monkeypatch) -> None:
    import types

    for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        monkeypatch.setattr(torch.cpu, name, lambda: False, raising=False)
    assert not NATIVE_BFLOAT16(torch.device("cpu"))  # AVX-512 alone emulates bfloat16
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert NATIVE_BFLOAT16(torch.device("cpu"))
    for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):  # a PyTorch without the helpers
        monkeypatch.delattr(torch.cpu, name, raising=False)
    assert not NATIVE_BFLOAT16(torch.device("cpu"))
    for major, native in ((7, False), (8, True)):  # a V100 emulates bfloat16, an A100 computes it
        properties = types.SimpleNamespace(major=major)
        monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device, found=properties: found)
        assert NATIVE_BFLOAT16(torch.device("cuda")) is native
    assert not NATIVE_BFLOAT16(torch.device("meta"))


def test_a_run_saved_before_mixed_precision_resumes_only_in_float32(dataset: Path, tmp_path: Path) -> None:
    cases = load_training_dataset(dataset, input_spec=tiny_in_plane_bundle(slab_slices=3).input_spec).cases
    kwargs = {"training_cases": cases, "validation_cases": cases}
    config = dataclasses.replace(TINY, annotated_fraction=0.5, mixed_precision=False)
    train_in_plane(config, tmp_path / "run", stop_after_epoch=1, **kwargs)
    last = tmp_path / "run" / "checkpoint_last.pt"
    checkpoint = torch.load(last, weights_only=False)
    values = json.loads(checkpoint["in_plane_config_json"])
    del values["mixed_precision"]  # as written before the setting existed
    checkpoint["in_plane_config_json"] = json.dumps(values)
    torch.save(checkpoint, last)
    with pytest.raises(ConfigError, match=r"mixed_precision; .*in float32: resume with --no-mixed-precision"):
        mixed = dataclasses.replace(config, mixed_precision=True)
        train_in_plane(mixed, tmp_path / "run", resume=True, **kwargs)
    assert train_in_plane(config, tmp_path / "run", resume=True, **kwargs).history["epoch"] == [0, 1]


def test_cli_no_mixed_precision_reaches_every_recipe(dataset: Path, tmp_path: Path, capsys) -> None:
    from mousecord.cli.main import build_parser
    from mousecord.cli.train import build_config, command_line

    start = save_bundle(tiny_in_plane_bundle(slab_slices=3), tmp_path / "start")
    options = ["--epochs", "1", "--iterations-per-epoch", "1", "--batch-size", "2", "--data-workers", "0"]
    arguments = ["train", str(dataset), "-o", str(tmp_path / "run"), "--init-model", str(start), *options]
    assert main([*arguments, "--device", "cpu", "--no-mixed-precision", "--quiet"]) == 0
    tuned = load_bundle(tmp_path / "run" / "model")
    best = tuned.metadata["best_epoch"]
    kept = "kept `tiny-2d`'s weights (validation Dice GM" if best < 0 else "kept epoch 0: validation Dice"
    assert kept in capsys.readouterr().out
    assert f"Predictor): {kept}" in tuned.model_card  # the card's words are the command's
    assert tuned.metadata["training_config"]["mixed_precision"] is False
    assert "--no-mixed-precision" in tuned.model_card
    assert "The network trained in float32." in tuned.model_card
    # a fine-tune of that model goes back to mixed precision, unless asked again
    assert InPlaneTrainConfig.fine_tune_for(tuned).mixed_precision
    three_d = build_parser().parse_args(["train", str(dataset), "-o", "out", "--no-mixed-precision"])
    assert build_config(three_d).mixed_precision is False
    assert command_line(three_d).endswith("--no-mixed-precision")


def test_an_interrupted_fine_tune_says_how_to_continue(
    dataset: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    import mousecord.training

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(mousecord.training, "fine_tune_in_plane", interrupted)
    start = save_bundle(tiny_in_plane_bundle(slab_slices=3), tmp_path / "start")
    arguments = ["train", str(dataset), "-o", str(tmp_path / "run"), "--init-model", str(start), "--quiet"]
    assert main(arguments) == 130  # before its first epoch ended: nothing saved
    assert f"nothing to resume: the same command starts {tmp_path / 'run'} afresh" in capsys.readouterr().err
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoint_last.pt").write_bytes(b"")  # an epoch had ended
    assert main(arguments) == 130
    assert f"--resume continues {tmp_path / 'run'}" in capsys.readouterr().err
