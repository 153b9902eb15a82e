"""Where an nnU-Net v2 results folder keeps its files (no torch needed, so finding a model stays cheap).

    <Trainer>__<Plans>__<configuration>/
        dataset.json  plans.json
        fold_0/checkpoint_final.pth  fold_0/checkpoint_best.pth  ...

A results folder may also be given through its parent (nnU-Net's ``Dataset###_Name`` folder) when that holds
exactly one ``nnUNetTrainer*`` child.
"""

from __future__ import annotations

from pathlib import Path


def is_results_folder(path: Path) -> bool:
    """``path`` holds an nnU-Net results folder's ``plans.json`` and ``dataset.json``."""
    return (path / "plans.json").is_file() and (path / "dataset.json").is_file()


def results_folder_children(path: Path) -> list[Path]:
    """``path``'s ``nnUNetTrainer*`` children that hold a ``plans.json``, sorted by name."""
    return sorted(child for child in path.glob("nnUNetTrainer*") if (child / "plans.json").is_file())


__all__ = ["is_results_folder", "results_folder_children"]
