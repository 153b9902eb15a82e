"""``phantom_dataset``: a synthetic dataset in the reference's BIDS-like layout, with sparse masks."""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from mousecord import __version__
from mousecord.datasets.bids import MASK_FOLDER_DEFAULT, mask_path
from mousecord.errors import ConfigError, OutputError
from mousecord.io import Volume, atomic_output, save_volume
from mousecord.labels import TISSUE_LABELS, Label
from mousecord.phantom.config import PhantomConfig
from mousecord.phantom.generate import generate_phantom
from mousecord.phantom.output import sidecar_path

logger = logging.getLogger(__name__)

#: Folder under ``derivatives/`` holding the dense (every slice) truth.
DENSE_FOLDER = "labels"


def phantom_dataset(
    root: Path | str,
    *,
    n_subjects: int = 2,
    chunks_per_subject: int = 2,
    annotated_slices_per_volume: int = 2,
    config: PhantomConfig | None = None,
    seed: int = 0,
    workers: int = 1,
    progress: bool = False,
) -> list[Path]:
    """Write a synthetic dataset laid out like the reference (161 annotated slices over 72 volumes).

    ::

        root/dataset_description.json, participants.tsv
        root/sub-XX/anat/sub-XX_chunk-N_T1w.nii.gz (+ .json sidecar with every drawn parameter)
        root/derivatives/manual_masks/sub-XX/anat/sub-XX_chunk-N_T1w_label-{GM,WM}_mask.nii.gz  (sparse)
        root/derivatives/labels/sub-XX/anat/sub-XX_chunk-N_T1w_label-{GM,WM}_mask.nii.gz        (dense)

    Sparse masks are uint8 binary and non-zero only on ``annotated_slices_per_volume`` axial slices (last
    axis) drawn among the slices that hold cord, away from the chunk ends; there they equal the dense truth.
    If anything fails, everything written under ``root`` is removed again.

    Args:
        root: dataset folder; must not exist or be empty.
        n_subjects, chunks_per_subject: dataset size.
        annotated_slices_per_volume: axial slices with manual-style masks per volume.
        config: phantom settings (default :class:`PhantomConfig`).
        seed: the whole dataset is a function of it (not of ``workers``).
        workers: volumes generated at once, each in its own process.
        progress: show a progress bar.

    Returns:
        The image paths written.

    Raises:
        ConfigError: a count is not positive.
        OutputError: ``root`` is not empty or cannot be written.
    """
    for name, value in (
        ("n_subjects", n_subjects),
        ("chunks_per_subject", chunks_per_subject),
        ("workers", workers),
    ):
        if int(value) < 1:
            raise ConfigError(f"{name} must be at least 1, got {value}")
    if int(annotated_slices_per_volume) < 0:
        raise ConfigError(f"annotated_slices_per_volume must be 0 or more, got {annotated_slices_per_volume}")
    config = config or PhantomConfig()
    root = Path(root)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise OutputError(f"{root}: dataset folder already exists and is not empty; choose a new folder")
    seeds = np.random.SeedSequence(seed).spawn(n_subjects * chunks_per_subject)
    cases = [
        (subject, chunk) for subject in range(1, n_subjects + 1) for chunk in range(1, chunks_per_subject + 1)
    ]
    from tqdm import tqdm

    created = not root.exists()
    images = []
    try:
        _write_json(root / "dataset_description.json", _description("raw"))
        with atomic_output(root / "participants.tsv") as temporary:
            temporary.write_text(
                "participant_id\tspecies\n"
                + "".join(f"sub-{s:02d}\tsynthetic mouse\n" for s in range(1, n_subjects + 1))
            )
        for folder in (MASK_FOLDER_DEFAULT, DENSE_FOLDER):
            description = root / "derivatives" / folder / "dataset_description.json"
            _write_json(description, _description("derivative"))
        jobs = [
            (root, subject, chunk, case_seed, config, annotated_slices_per_volume)
            for (subject, chunk), case_seed in zip(cases, seeds, strict=True)
        ]
        pool = ProcessPoolExecutor(min(workers, len(jobs))) if workers > 1 else contextlib.nullcontext()
        with pool:
            cases_written = (pool.map if workers > 1 else map)(_write_case, *zip(*jobs, strict=True))
            for image in tqdm(cases_written, total=len(jobs), disable=not progress, desc="phantoms"):
                images.append(image)
    except BaseException:
        _remove_partial_dataset(root, created=created)  # root was absent or empty: all of it is ours
        raise
    return images


def _remove_partial_dataset(root: Path, *, created: bool) -> None:
    if not root.is_dir():
        return
    if created:
        shutil.rmtree(root, ignore_errors=True)
        return
    for child in root.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def _write_case(
    root: Path, subject: int, chunk: int, seed: np.random.SeedSequence, config, n_annotated: int
) -> Path:
    rng = np.random.default_rng(seed)
    phantom = generate_phantom(config, rng=rng)
    name = f"sub-{subject:02d}"
    image_path = root / name / "anat" / f"{name}_chunk-{chunk}_T1w.nii.gz"
    labels = phantom.label_map.data
    annotated = choose_annotated_slices(labels, n_annotated, rng=rng)
    save_volume(phantom.image, image_path, dtype=np.float32)
    sidecar = {
        **phantom.parameters,
        "seed_entropy": str(seed.entropy),
        "seed_spawn_key": list(seed.spawn_key),
        "annotated_slices": annotated,
    }
    _write_json(sidecar_path(image_path), sidecar)
    sparse = np.zeros(labels.shape, dtype=bool)
    sparse[:, :, annotated] = True
    for label in TISSUE_LABELS:
        dense_mask = labels == label
        save_volume(
            Volume(dense_mask.astype(np.uint8), phantom.label_map.affine),
            mask_path(root, image_path, label, folder=DENSE_FOLDER),
            dtype=np.uint8,
        )
        save_volume(
            Volume((dense_mask & sparse).astype(np.uint8), phantom.label_map.affine),
            mask_path(root, image_path, label, folder=MASK_FOLDER_DEFAULT),
            dtype=np.uint8,
        )
    levels = phantom.parameters["levels_covered"]
    logger.info("%s: levels %s-%s, annotated slices %s", image_path.name, levels[0], levels[-1], annotated)
    return image_path


def choose_annotated_slices(label_map: np.ndarray, count: int, *, rng: np.random.Generator) -> list[int]:
    """``count`` distinct axial slices holding GM and WM, away from the ends (the middle 80 %), sorted."""
    n_slices = label_map.shape[2]
    has_gm = (label_map == Label.GM).any(axis=(0, 1))
    has_wm = (label_map == Label.WM).any(axis=(0, 1))
    candidates = np.flatnonzero(has_gm & has_wm)
    middle = candidates[(candidates >= 0.1 * n_slices) & (candidates < 0.9 * n_slices)]
    pool = middle if middle.size >= count else candidates
    count = min(count, pool.size)
    return sorted(int(index) for index in rng.choice(pool, size=count, replace=False))


def _description(kind: str) -> dict[str, Any]:
    return {
        "Name": "mousecord synthetic ex vivo mouse spinal cord phantoms",
        "BIDSVersion": "1.9.0",
        "DatasetType": kind,
        "GeneratedBy": [{"Name": "mousecord", "Version": __version__, "Description": "mousecord.phantom"}],
    }


def _write_json(path: Path, content: dict[str, Any]) -> None:
    with atomic_output(path) as temporary:
        temporary.write_text(json.dumps(content, indent=1) + "\n")
