"""Training end to end: it learns from sparse slices, is deterministic, resumes, and refuses bad input."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mousecord import phantom
from mousecord.analysis import dice
from mousecord.cli.main import main
from mousecord.inference import InferenceConfig, Predictor
from mousecord.inference.preprocessing import preprocess_image, preprocess_label_map
from mousecord.io import load_nifti
from mousecord.labels import Label
from mousecord.models import InputSpec, build_network, load_bundle, load_weights, save_bundle
from mousecord.training import (
    TrainConfig,
    config_from_bundle,
    load_training_dataset,
    predict_label_map,
    train,
    train_model,
)
from mousecord.training.loop import build_training_network, epoch_batches, load_checkpoint
from tests.inference.helpers import tiny_bundle
from tests.training.synthetic import save, write_bids_dataset

PHANTOM_SHAPE = (64, 64, 48)
PHANTOM_VOXEL_MM = (0.07, 0.07, 0.07)


def _dice(reference: np.ndarray, prediction: np.ndarray, label: int) -> float:
    return dice(reference == label, prediction == label)


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tiny") / "dataset"
    write_bids_dataset(root, n_subjects=3, shape=(24, 24, 20), annotated_slices=3, seed=1)
    return root


def _fast_config(**overrides) -> TrainConfig:
    values = dict(
        features_per_stage=(4, 8),
        strides=((1, 1, 1), (2, 2, 2)),
        patch_size_vox=(8, 16, 16),
        epochs=2,
        iterations_per_epoch=2,
        batch_size=1,
        seed=3,
    )
    return TrainConfig.from_dict({**values, **overrides})


def test_training_learns_gm_from_sparse_slices(tmp_path: Path) -> None:
    """A few minutes on a CPU: GM Dice >= 0.7 on a held-out phantom, far above the untrained network."""
    torch.set_num_threads(2)
    config = phantom.PhantomConfig(shape_vox=PHANTOM_SHAPE, voxel_size_mm=PHANTOM_VOXEL_MM)
    phantom.phantom_dataset(
        tmp_path / "data",
        n_subjects=4,
        chunks_per_subject=1,
        annotated_slices_per_volume=4,
        config=config,
        seed=0,
    )
    held_out = phantom.generate_phantom(config, rng=np.random.default_rng(1234))
    spec = InputSpec("held-out", PHANTOM_VOXEL_MM)
    preprocessed = preprocess_image(held_out.image.data, held_out.image.voxel_size_mm, spec)
    image = preprocessed.data[0]
    truth = preprocess_label_map(held_out.label_map.data, preprocessed)

    train_config = TrainConfig(patch_size_vox=(16, 48, 48), epochs=6, iterations_per_epoch=25, seed=0)
    result = train_model(train_config, load_training_dataset(tmp_path / "data"), tmp_path / "run")

    network = build_training_network(train_config)
    untrained = _dice(truth, predict_label_map(network, image, train_config.patch_size_vox), Label.GM)
    load_weights(network, load_checkpoint(result.best_checkpoint)["network_weights"])
    trained = _dice(truth, predict_label_map(network, image, train_config.patch_size_vox), Label.GM)
    print(f"held-out GM Dice: trained {trained:.3f}, untrained {untrained:.3f}; {result.history}")
    assert trained >= 0.7
    assert untrained < 0.4
    assert (tmp_path / "run" / "progress.png").stat().st_size > 0


def test_same_seed_same_loss_curve(tiny_dataset: Path, tmp_path: Path) -> None:
    dataset = load_training_dataset(tiny_dataset)
    histories = [train_model(_fast_config(), dataset, tmp_path / f"run{index}").history for index in range(2)]
    assert histories[0]["train_loss"] == histories[1]["train_loss"]
    assert histories[0]["dice_mean"] == histories[1]["dice_mean"]


def test_data_workers_yield_every_batch_reproducibly(tiny_dataset: Path) -> None:
    """Batches built in worker processes: the epoch's full count, the same for the same worker count,
    and each worker on its own random stream."""
    cases = load_training_dataset(tiny_dataset).cases
    config = _fast_config(iterations_per_epoch=5, data_workers=2)
    runs = [list(epoch_batches(cases, config, epoch=0)) for _ in range(2)]
    assert len(runs[0]) == 5
    for (image, target), (image_again, target_again) in zip(*runs, strict=True):
        assert image.shape == (1, 1, 8, 16, 16) and target.shape == (1, 8, 16, 16)
        torch.testing.assert_close(image, image_again, rtol=0, atol=0)
        torch.testing.assert_close(target, target_again, rtol=0, atol=0)
    assert not torch.equal(runs[0][0][0], runs[0][1][0])  # consecutive batches come from different workers
    in_process = list(epoch_batches(cases, _fast_config(iterations_per_epoch=5), epoch=0))
    assert not torch.equal(in_process[1][0], runs[0][1][0])


def test_training_with_data_workers_is_reproducible_for_a_given_worker_count(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    dataset = load_training_dataset(tiny_dataset)
    runs = [train_model(_fast_config(data_workers=2), dataset, tmp_path / f"run{i}") for i in range(2)]
    assert runs[0].history["train_loss"] == runs[1].history["train_loss"]
    in_process = train_model(_fast_config(), dataset, tmp_path / "in-process")
    assert in_process.history["train_loss"] != runs[0].history["train_loss"]  # other random streams


def test_resume_continues_exactly_where_it_stopped(tiny_dataset: Path, tmp_path: Path) -> None:
    dataset = load_training_dataset(tiny_dataset)
    config = _fast_config(epochs=3)
    full = train_model(config, dataset, tmp_path / "full")
    stopped = train_model(config, dataset, tmp_path / "killed", stop_after_epoch=1)
    assert stopped.history["epoch"] == [0]
    assert load_checkpoint(tmp_path / "killed" / "checkpoint_last.pt")["epoch"] == 1
    resumed = train_model(config, dataset, tmp_path / "killed", resume=True)
    assert resumed.history["epoch"] == [0, 1, 2]
    assert resumed.history["train_loss"] == full.history["train_loss"]
    weights = [
        load_checkpoint(folder / "checkpoint_last.pt")["network_weights"]
        for folder in (tmp_path / "full", tmp_path / "killed")
    ]
    for key in weights[0]:
        torch.testing.assert_close(weights[0][key], weights[1][key])


def test_existing_run_is_not_overwritten_without_resume(tiny_dataset: Path, tmp_path: Path) -> None:
    from mousecord.errors import ConfigError

    train_model(_fast_config(epochs=1), tiny_dataset, tmp_path / "run")
    with pytest.raises(ConfigError, match=r"holds a previous run .* resume it \(resume=True\)"):
        train_model(_fast_config(epochs=1), tiny_dataset, tmp_path / "run")
    with pytest.raises(
        ConfigError,
        match=r"was trained with learning_rate 0.003 \(now 0.5\), seed 3 \(now 9\); resume with the same",
    ):
        train_model(
            _fast_config(epochs=2, seed=9, learning_rate=0.5), tiny_dataset, tmp_path / "run", resume=True
        )


def test_cross_validation_resumes_only_on_the_same_folds(tiny_dataset: Path, tmp_path: Path) -> None:
    """Resuming with another --folds would let the fold folders validate on other subjects: refused."""
    from mousecord.errors import ConfigError

    train(tiny_dataset, tmp_path / "cv", _fast_config(epochs=1), folds=3)
    with pytest.raises(ConfigError, match=r"was split into 3 fold\(s\) .*; resume with the same folds"):
        train(tiny_dataset, tmp_path / "cv", _fast_config(epochs=2), folds=2, resume=True)
    assert len(train(tiny_dataset, tmp_path / "cv", _fast_config(epochs=2), folds=3, resume=True).folds) == 3


def test_resume_where_no_run_is_refused(tiny_dataset: Path, tmp_path: Path, capsys) -> None:
    """--resume into a folder with no run (a typo) is an error, not a silent fresh start."""
    error = _bad(tmp_path, capsys, "--resume", dataset=tiny_dataset)
    assert "no run to resume (no fold has a checkpoint); start one without --resume" in error


def test_cross_validation_exports_a_runnable_bundle(tiny_dataset: Path, tmp_path: Path, capsys) -> None:
    config_file = tmp_path / "config.json"
    config_file.write_text(_fast_config(epochs=1).to_json())
    code = main(
        [
            "train",
            str(tiny_dataset),
            "-o",
            str(tmp_path / "cv"),
            "--config",
            str(config_file),
            "--folds",
            "3",
            "--export",
            "best",
            "--quiet",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "mean" in printed and "GM Dice" in printed
    rows = json.loads((tmp_path / "cv" / "crossval_summary.json").read_text())
    assert [row["fold"] for row in rows] == [0, 1, 2, "mean"]
    assert sorted(row["validation_subjects"] for row in rows[:3]) == ["sub-01", "sub-02", "sub-03"]
    assert (tmp_path / "cv" / "crossval_summary.csv").read_text().startswith("fold,")
    bundle = load_bundle(tmp_path / "cv" / "model")
    assert len(bundle.fold_weights) == 1 and bundle.patch_size_vox == (8, 16, 16)
    assert "Cross-validation" in bundle.model_card and "--folds 3" in bundle.model_card
    # the exported bundle runs where users run it: through the Predictor, on a file of the dataset
    image = next(tiny_dataset.glob("sub-01/anat/*_T1w.nii.gz"))
    volume = load_nifti(image).volume
    prediction = Predictor(bundle, InferenceConfig(device="cpu", backend="torch")).predict_volume(volume)
    assert prediction.label_map.shape == volume.shape and set(np.unique(prediction.label_map)) <= {0, 1, 2}
    network = build_network(bundle.architecture, input_channels=1, num_classes=3)
    load_weights(network, bundle.fold_weights[0])
    assert network(torch.zeros(1, 1, 8, 16, 16)).shape == (1, 3, 8, 16, 16)


def test_python_api_trains_all_folds(tiny_dataset: Path, tmp_path: Path) -> None:
    summary = train(tiny_dataset, tmp_path / "api", _fast_config(epochs=1), folds=3)
    assert len(summary.folds) == 3
    assert len(load_bundle(summary.bundle).fold_weights) == 3


def test_nnunet_raw_dataset_with_ignore_label_trains(tiny_dataset: Path, tmp_path: Path) -> None:
    from mousecord.datasets.tools import bids_to_nnunet

    bids_to_nnunet(tiny_dataset, tmp_path / "Dataset001_Tiny", ignore_label=True)
    dataset = load_training_dataset(tmp_path / "Dataset001_Tiny")
    sparse = load_training_dataset(tiny_dataset)
    assert dataset.subjects == ["sub-01", "sub-02", "sub-03"]
    for case, reference in zip(dataset.cases, sparse.cases, strict=True):
        np.testing.assert_array_equal(case.label_map, reference.label_map)
    train_model(_fast_config(epochs=1), dataset, tmp_path / "run")


# ------------------------------------------------------------------------------------------ fine-tuning


def test_fine_tuning_starts_from_the_given_model(tiny_dataset: Path, tmp_path: Path, capsys) -> None:
    """``--init-model``: the network and patch come from the bundle, the weights too (a learning rate of
    ~0 leaves them where they started)."""
    base = ["train", str(tiny_dataset), "--epochs", "1", "--iterations-per-epoch", "1", "--quiet"]
    config_file = tmp_path / "config.json"
    config_file.write_text(_fast_config(epochs=1, features_per_stage=(4, 6)).to_json())
    assert main([*base, "-o", str(tmp_path / "first"), "--config", str(config_file)]) == 0
    first = load_bundle(tmp_path / "first" / "model")
    inference = {"roi": "cord", "margin_mm": 1.0}
    first = dataclasses.replace(first, metadata={**first.metadata, "inference": inference})
    save_bundle(first, tmp_path / "first" / "model", overwrite=True)
    code = main(
        [*base, "-o", str(tmp_path / "tuned"), "--init-model", str(tmp_path / "first" / "model")]
        + ["--learning-rate", "1e-30"]
    )
    assert code == 0, capsys.readouterr().err
    tuned = load_bundle(tmp_path / "tuned" / "model")
    assert tuned.architecture == first.architecture and tuned.patch_size_vox == first.patch_size_vox
    for key, value in first.fold_weights[0].items():
        torch.testing.assert_close(tuned.fold_weights[0][key], value, rtol=0, atol=1e-6)
    assert "--init-model" in tuned.model_card
    assert tuned.metadata["inference"] == inference  # the fine-tuned model runs as its parent did


def test_a_3d_fine_tune_that_does_not_help_keeps_its_start(
    tiny_dataset: Path, tmp_path: Path, monkeypatch
) -> None:
    """The starting weights are validated before the first epoch and stay the best checkpoint unless an
    epoch beats them: here every epoch wipes the network (all weights 0: background everywhere)."""
    import mousecord.training.loop as loop

    config = _fast_config(epochs=3)
    first = train_model(config, tiny_dataset, tmp_path / "first")
    assert not first.starting_dice  # a run from random weights has no starting candidate
    start = load_checkpoint(first.best_checkpoint)["network_weights"]

    def wiping_epoch(parts, *args, **kwargs) -> float:
        with torch.no_grad():
            for parameter in parts.network.parameters():
                parameter.zero_()
        return 0.0

    monkeypatch.setattr(loop, "train_epoch", wiping_epoch)
    tuned = train_model(config, tiny_dataset, tmp_path / "tuned", initial_weights=start)
    assert tuned.history["dice_mean"] == [0.0, 0.0, 0.0]
    assert tuned.best_epoch == -1
    assert tuned.best_dice == tuned.starting_dice == pytest.approx(first.best_dice)
    kept = load_checkpoint(tuned.best_checkpoint)["network_weights"]
    assert all(torch.equal(kept[key], value) for key, value in start.items())


def test_a_model_mousecord_cannot_train_is_refused(tmp_path: Path) -> None:
    from mousecord.errors import ConfigError
    from mousecord.models.registry import resolve_model

    bundle = tiny_bundle(spacing_mm=(0.05, 0.05, 0.05))
    assert config_from_bundle(TrainConfig(), bundle).features_per_stage == (4, 8, 16)
    two_channels = dataclasses.replace(bundle, channel_names={"0": "T1w", "1": "T2w"})
    with pytest.raises(ConfigError, match="not one mousecord can train"):
        config_from_bundle(TrainConfig(), two_channels)
    with pytest.raises(ConfigError, match="in-plane network"):  # the default model: fine_tune_in_plane
        config_from_bundle(TrainConfig(), resolve_model(None))


# ------------------------------------------------------------------------------------------ bad input


def _bad(tmp_path: Path, capsys, *extra: str, dataset: Path) -> str:
    code = main(["train", str(dataset), "-o", str(tmp_path / "out"), "--epochs", "1", "--quiet", *extra])
    error = capsys.readouterr().err.strip()
    assert code == 1
    assert len(error.splitlines()) == 1
    assert not (tmp_path / "out").exists()  # nothing trained, nothing written
    return error


def test_unknown_initial_model_fails_before_training(tiny_dataset: Path, tmp_path: Path, capsys) -> None:
    error = _bad(tmp_path, capsys, "--init-model", str(tmp_path / "nowhere"), dataset=tiny_dataset)
    assert "nowhere" in error


def test_dataset_without_labels_fails_before_training(tmp_path: Path, capsys) -> None:
    write_bids_dataset(tmp_path / "data", n_subjects=2, shape=(12, 12, 8), unlabelled=2)
    (tmp_path / "data" / "derivatives" / "manual_masks").mkdir(parents=True, exist_ok=True)
    assert "no image has GM and WM masks" in _bad(tmp_path, capsys, dataset=tmp_path / "data")


def test_missing_label_folder_fails(tiny_dataset: Path, tmp_path: Path, capsys) -> None:
    error = _bad(tmp_path, capsys, "--label-folder", "nope", dataset=tiny_dataset)
    assert "nope" in error and "label folder not found" in error


def test_mask_shape_mismatch_fails(tmp_path: Path, capsys) -> None:
    write_bids_dataset(tmp_path / "data", n_subjects=1, shape=(12, 12, 8))
    mask = next((tmp_path / "data" / "derivatives").rglob("*label-GM_mask.nii.gz"))
    save(np.zeros((12, 12, 9), np.float32), mask)
    assert "differs from image shape" in _bad(tmp_path, capsys, dataset=tmp_path / "data")


def test_overlapping_masks_fail(tmp_path: Path, capsys) -> None:
    write_bids_dataset(tmp_path / "data", n_subjects=1, shape=(12, 12, 8))
    for mask in (tmp_path / "data" / "derivatives").rglob("*_mask.nii.gz"):
        save(np.ones((12, 12, 8), np.float32), mask)
    assert "overlap" in _bad(tmp_path, capsys, dataset=tmp_path / "data")
