"""Model integrity: bundles verify their weights' SHA-256; checkpoints that would run code are refused.

A bundle's model.json records the SHA-256 of its weights file; a file overwritten with random bytes of the
same size (which safetensors may still parse, giving a network that segments nothing) is refused with one
line naming it. Checkpoints (nnU-Net results folders, training's own) are unpickled by one loader that only
builds tensors and plain data: a pickle whose ``__reduce__`` calls ``os.system`` or ``open`` is refused and
the payload's marker file never appears.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import pickle
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import mousecord.training
from mousecord.errors import ModelFolderError
from mousecord.models import nnunet
from mousecord.models.bundle import MODEL_JSON, WEIGHTS_FILE, file_sha256, load_bundle, save_bundle
from mousecord.models.registry import DEFAULT_MODEL_NAME, SHIPPED_MODELS_DIR, install_model
from mousecord.training import loop
from tests.inference.helpers import tiny_bundle, tiny_bundle_folder
from tests.models.nnunet_fixtures import OpensFile, RunsShell, make_nnunet_folder

SMALL = (4, 8, 16, 32, 32, 32)


@pytest.fixture
def bundle_folder(tmp_path: Path) -> Path:
    return tiny_bundle_folder(tmp_path / "tiny")


def _recorded(folder: Path) -> object:
    return json.loads((folder / MODEL_JSON).read_text())["metadata"].get("weights_sha256")


def _overwrite_with_random_bytes(weights: Path, part: str) -> None:
    """Same size, random content: the whole file, or only the tensor data after the safetensors header."""
    raw = weights.read_bytes()
    start = 0 if part == "whole-file" else 8 + int.from_bytes(raw[:8], "little")
    weights.write_bytes(raw[:start] + np.random.default_rng(0).bytes(len(raw) - start))
    assert weights.stat().st_size == len(raw)


# --- bundles ---------------------------------------------------------------------------------------------


def test_save_records_the_weights_sha256_in_model_json(bundle_folder: Path) -> None:
    digest = file_sha256(bundle_folder / WEIGHTS_FILE)
    assert _recorded(bundle_folder) == {WEIGHTS_FILE: digest}
    loaded = load_bundle(bundle_folder)
    assert loaded.metadata["weights_sha256"] == {WEIGHTS_FILE: digest}
    assert loaded.description() == json.loads((bundle_folder / MODEL_JSON).read_text())


@pytest.mark.parametrize("part", ["tensor-data", "whole-file"])
def test_weights_overwritten_with_random_bytes_are_refused(bundle_folder: Path, part: str) -> None:
    weights = bundle_folder / WEIGHTS_FILE
    _overwrite_with_random_bytes(weights, part)
    if part == "tensor-data":
        load_file(weights)  # still a valid safetensors file: only the hash tells the weights are garbage
    with pytest.raises(ModelFolderError) as error:
        load_bundle(bundle_folder)
    message = str(error.value)
    assert message.startswith(f"{weights}: weights do not match the sha256 recorded in model.json")
    assert "corrupt or was replaced" in message and "\n" not in message


def test_install_refuses_a_bundle_whose_weights_do_not_match(bundle_folder: Path, tmp_path: Path) -> None:
    _overwrite_with_random_bytes(bundle_folder / WEIGHTS_FILE, "tensor-data")
    models = tmp_path / "models"
    with pytest.raises(ModelFolderError) as error:
        install_model(bundle_folder, models_dir=models)
    weights = bundle_folder / WEIGHTS_FILE  # the user's file, not the staged copy
    assert str(error.value).startswith(f"{weights}: weights do not match the sha256 recorded in model.json")
    assert list(models.iterdir()) == []


def test_shipped_default_bundle_verifies() -> None:
    folder = SHIPPED_MODELS_DIR / DEFAULT_MODEL_NAME
    digest = file_sha256(folder / WEIGHTS_FILE)
    assert _recorded(folder) == {WEIGHTS_FILE: digest}
    assert load_bundle(folder).metadata["weights_sha256"] == {WEIGHTS_FILE: digest}


@pytest.mark.parametrize(
    "old_record",
    [None, {"fold_0/checkpoint_final.pth": "0" * 64}],
    ids=["no-record", "record-without-the-weights-file"],
)
def test_bundle_without_a_recorded_hash_still_loads_silently(bundle_folder: Path, old_record) -> None:
    """Bundles saved before model.json recorded the hash load without a check and without a warning."""
    model_json = bundle_folder / MODEL_JSON
    description = json.loads(model_json.read_text())
    del description["metadata"]["weights_sha256"]
    if old_record is not None:  # an nnU-Net folder's checkpoint hashes, saved along as a bundle
        description["metadata"]["weights_sha256"] = old_record
    model_json.write_text(json.dumps(description, indent=2) + "\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = load_bundle(bundle_folder)
    assert loaded.metadata["weights_sha256"] == {WEIGHTS_FILE: file_sha256(bundle_folder / WEIGHTS_FILE)}


def test_saving_a_loaded_bundle_records_its_new_weights(bundle_folder: Path, tmp_path: Path) -> None:
    """The loaded bundle's record describes its old weights; saving new ones records their own hash."""
    loaded = load_bundle(bundle_folder)
    retrained = dataclasses.replace(loaded, fold_weights=tiny_bundle(seed=5).fold_weights)
    folder = save_bundle(retrained, tmp_path / "retrained")
    assert _recorded(folder) == {WEIGHTS_FILE: file_sha256(folder / WEIGHTS_FILE)}
    assert _recorded(folder) != _recorded(bundle_folder)
    load_bundle(folder)


# --- checkpoints that would run code --------------------------------------------------------------------


def _write_checkpoint(path: Path, payload: object, file_format: str) -> None:
    checkpoint = {"payload": payload, "network_weights": {"weight": torch.zeros(2)}}  # payload pickled first
    if file_format == "torch-zip":
        torch.save(checkpoint, path)
    else:  # protocol 2 is what torch's legacy format uses; 5 has opcodes torch's safe unpickler refuses
        path.write_bytes(pickle.dumps(checkpoint, protocol=int(file_format.removeprefix("pickle-protocol-"))))


def _nnunet_results_folder(checkpoint: Path, tmp_path: Path) -> None:
    nnunet.read_model_folder(checkpoint.parents[1])


def _models_install(checkpoint: Path, tmp_path: Path) -> None:
    install_model(checkpoint.parents[2], models_dir=tmp_path / "models")


def _training_load_checkpoint(checkpoint: Path, tmp_path: Path) -> None:
    loop.load_checkpoint(checkpoint)


LOADERS: dict[str, Callable[[Path, Path], None]] = {
    "nnunet-results-folder": _nnunet_results_folder,
    "models-install": _models_install,
    "training-load-checkpoint": _training_load_checkpoint,
}


@pytest.mark.parametrize("file_format", ["torch-zip", "pickle-protocol-2", "pickle-protocol-5"])
@pytest.mark.parametrize(("payload", "global_name"), [(RunsShell, "system"), (OpensFile, "open")])
@pytest.mark.parametrize("loader", list(LOADERS.values()), ids=list(LOADERS))
def test_checkpoint_that_would_run_code_is_refused_and_runs_nothing(
    tmp_path: Path, loader, payload, global_name: str, file_format: str
) -> None:
    marker = tmp_path / "payload-ran"
    folder = make_nnunet_folder(tmp_path / "results", features_per_stage=SMALL)
    checkpoint = folder / "fold_0" / "checkpoint_final.pth"
    _write_checkpoint(checkpoint, payload(marker), file_format)

    with pytest.raises(ModelFolderError) as error:
        loader(checkpoint, tmp_path)
    message = str(error.value)
    if file_format == "pickle-protocol-5":  # refused at the first opcode it does not know, before the global
        assert message.startswith(f"{checkpoint}: checkpoint refused by the safe unpickler (")
    else:
        assert message.startswith(f"{checkpoint}: unsafe checkpoint refused: it would call or import ")
        assert global_name in message
    assert "nothing in it was run" in message and "\n" not in message
    assert "weights_only" not in message  # no advice to load it unsafely
    assert not marker.exists()
    assert not (tmp_path / "models").exists() or list((tmp_path / "models").iterdir()) == []

    # the file is live: an unrestricted load runs the payload (a plain pickle then fails as a torch file)
    with contextlib.suppress(Exception), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.load(checkpoint, weights_only=False)
    assert marker.exists()


def test_one_checkpoint_unpickler_serves_nnunet_and_training() -> None:
    assert loop.load_checkpoint is nnunet.load_checkpoint
    assert mousecord.training.load_checkpoint is nnunet.load_checkpoint


def test_missing_and_corrupt_checkpoints_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(ModelFolderError, match=r"missing\.pt: checkpoint not found$"):
        loop.load_checkpoint(tmp_path / "missing.pt")
    corrupt = tmp_path / "corrupt.pt"
    torch.save({"network_weights": {"weight": torch.zeros(100)}}, corrupt)
    corrupt.write_bytes(corrupt.read_bytes()[:200])
    with pytest.raises(ModelFolderError) as error:
        loop.load_checkpoint(corrupt)
    assert str(error.value).startswith(f"{corrupt}: unreadable or corrupt checkpoint (")
    assert "\n" not in str(error.value)
