"""Reproduce mousecord's default model: an in-plane (2.5D) U-Net trained on synthetic slabs alone, on a CPU.

Every training sample is drawn afresh by :mod:`mousecord.synthesis` (atlas-shaped cords at any level, size
and rotation; random label fields around them; random contrasts, resolutions, slice thicknesses and noise):
no volume is drawn twice and nothing of the phantom generator is used for training. Validation after every
epoch runs the deployed Predictor (the cord ROI path of ``INFERENCE``) on whole phantoms of the other
generator (:mod:`mousecord.phantom`, seeds 5001-5004: two realistic T1w, two random-contrast), which the
synthesis never draws from, so the checkpoint is chosen by how well the model generalises. Accuracy is
reported by ``benchmarks/accuracy.py`` on seeds below 1000.

Usage::

    python tools/train_default_model.py --work /tmp/mousecord-default [--epochs 40] [--resume]
    python tools/train_default_model.py --work /tmp/mousecord-default --install   # best checkpoint -> package
    # after the benchmarks wrote their JSON, put their numbers into the installed bundle's model card:
    python tools/train_default_model.py --update-card --metrics accuracy_*.json speed.json
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
import torch

from mousecord.io.atomic import atomic_output
from mousecord.models.bundle import MODEL_CARD, MODEL_JSON, load_bundle, save_bundle
from mousecord.models.network import count_parameters
from mousecord.synthesis import SynthesisConfig
from mousecord.training.in_plane import (
    DEFAULT_INFERENCE,
    IN_PLANE_CONFIG_JSON,
    InPlaneTrainConfig,
    build_network_for,
    bundle_from_weights,
    phantom_validation_volumes,
    train_in_plane,
)
from mousecord.training.loop import CHECKPOINT_BEST, CHECKPOINT_LAST, HISTORY_JSON, load_checkpoint

REPOSITORY = Path(__file__).resolve().parents[1]
DEFAULT_BUNDLE = REPOSITORY / "src" / "mousecord" / "models" / "default"

#: What the shipped bundle asks of inference (the cord ROI path, stage 1 on one slice every 0.5 mm).
INFERENCE = DEFAULT_INFERENCE
#: The recipe: 2.5D (3 adjacent slices), PlainConvUNet 16-256, 128 x 128 patches, batch 12, AdamW 2e-3; in the
#: synthesis, surroundings that change from slice to slice in half of the samples (with them the same on every
#: slice, the network lost the cord in real whole-neck volumes), half the samples one slice repeated and an
#: in-plane resolution up to 0.2 mm (the last stages: with 30 % and 0.12 mm it found the cord of real
#: whole-neck slices given alone on a third to a half of them).
RECIPE = InPlaneTrainConfig(
    epochs=40,
    iterations_per_epoch=60,
    data_workers=2,
    synthesis=SynthesisConfig(
        surroundings_change_probability=0.5, single_slice_probability=0.5, in_plane_resolution_mm=(0.03, 0.2)
    ),
)


#: Why the shipped (eighth) stage ships its last epoch, not its best validation one (`--checkpoint last`).
LAST_EPOCH_REASON = (
    "; no epoch of this stage beat its starting weights on the validation phantoms (GM / WM Dice 0.929 /"
    "\n0.889), but its last epoch found the cord of SCT's real whole-neck scans far more often, above all"
    "\nin their slices given alone (`benchmarks/real_scans.py --single-slices`), at a cost of at most 0.007"
    "\nDice on the phantom rows below; a further stage from it (10 epochs at 1.5e-4, seed 8) gained on"
    "\nneither"
)


def default_model_card(
    config: InPlaneTrainConfig, history: dict, epoch: int, which: str, metrics: list[dict]
) -> str:
    """The shipped model's card: what it is, its data, how to reproduce it, measured numbers, limits."""
    parameters = count_parameters(build_network_for(config))
    minutes = sum(history["seconds"]) / 60
    synthesis = config.synthesis
    lines = [
        "# mousecord default model",
        "",
        _paragraph(
            "An in-plane (2.5D) U-Net: nnU-Net's PlainConvUNet in 2D, features",
            f"{'-'.join(str(n) for n in config.features_per_stage)}, {parameters:,} weights, that segments",
            "grey matter (1) and white matter (2) in axial slices of mouse spinal cord MRI at",
            f"{synthesis.spacing_mm} mm in-plane, seeing each slice with its {synthesis.slab_slices - 1}",
            "neighbours. Slices are never resampled, so it runs on isotropic volumes, thick-slice volumes",
            "and single 2D slices alike. It runs on a CPU with the cord ROI path (find the cord on one slice",
            f"every {INFERENCE['slab_spacing_mm']} mm, segment a tube around it on one slice every "
            f"{INFERENCE['slice_step_mm']} mm and interpolate the slices",
            "between, each tube tile also mirrored along y, x and both and the four outputs averaged, keep",
            "one cord component: the largest, or among those at least a quarter of it the surest). On",
            "OpenVINO it runs an int8",
            "copy of the network (`int8/`, post-training quantisation with NNCF on synthetic slabs,",
            "`tools/quantize_default_model.py`; `--precision float32` runs the float32 one, whose weights",
            "are stored as float16):",
            "`metadata.inference` =",
            f"`{json.dumps(INFERENCE)}`.",
        ),
        "",
        "## Training data",
        _paragraph(
            "- Synthetic only, and never the same sample twice: `mousecord.synthesis` draws every slab",
            "afresh. GM/WM from the packaged rat atlas sections (every spinal level, scaled to mouse size",
            "x0.6-1.6, anisotropic, any rotation, mirrored, elastically deformed, asymmetric, GM extent",
            "jittered); around it random label fields (fluid rim sometimes absent or a fluid gap of",
            f"{synthesis.gap_mm[0]:g}-{synthesis.gap_mm[1]:g} mm around a shrunken cord, dura/bone",
            "ring of random completeness, 2-7 random tissues, nerve roots, air bubbles, a tissue column in",
            "medium or air); every label's intensity random (GM brighter, darker or equal to WM;",
            f"{100 * synthesis.realistic_intensity_probability:.0f} % of samples ex vivo-like); in-plane",
            f"resolution {synthesis.in_plane_resolution_mm[0]:g}-{synthesis.in_plane_resolution_mm[1]:g} mm,",
            f"slice thickness {synthesis.slice_thickness_mm[0]:g}-{synthesis.slice_thickness_mm[1]:g} mm,",
            f"Rician noise at SNR {synthesis.snr[0]:g}-{synthesis.snr[1]:g}, bias, Gibbs ringing, ghosting,",
            f"gamma; in {100 * synthesis.surroundings_change_probability:.0f} % of samples the surroundings",
            "change from slice to slice of the slab (bone, muscle and fat come and go between thick slices,",
            f"as in a real spine), and {100 * synthesis.single_slice_probability:.0f} % are one slice",
            "repeated (a 2D input). Settings (of the last stage):",
            f"`{json.dumps(synthesis.to_dict())}`.",
        ),
        _paragraph(
            "- Validation (checkpoint choice): whole phantoms of the other generator (`mousecord.phantom`,",
            "seeds 5001-5004, two T1w, two random-contrast) through the deployed Predictor. Evaluation",
            "seeds: below 1000.",
        ),
        _paragraph(
            "- Training, in eight stages on a 2-core CPU, each from the previous stage's best checkpoint:",
            "41 epochs x 60 iterations x 12 samples from random weights at learning rate 2e-3 (72 minutes),",
            "50 epochs at 1e-3 (126 minutes; these two with the synthesis of commit c4ca88a: a fluid gap in",
            "12 % of samples, up to 0.4 mm, in-plane resolution up to 0.1 mm), 45 epochs at 1e-3 (109",
            "minutes, with the synthesis of commit 3a5ff2b: 35 % of samples ex vivo-like), 32 epochs at",
            "5e-4 (61 minutes, best epoch 13), 12 epochs at 5e-4 (17 minutes, best epoch 11; these two with",
            "the synthesis of commit f18c4b5: surroundings the same on every slice of a slab, 10 % of",
            "samples one slice repeated), 16 epochs at 5e-4 with seed 5 (23 minutes on a machine shared",
            "with benchmark runs; the settings above, but 10 % of samples one slice repeated and in-plane",
            "resolution up to 0.12 mm; best epoch 11), 10 epochs at 3e-4 with seed 6 (10 minutes; 30 % one",
            "slice repeated, up to 0.12 mm; best epoch 9), then",
            f"{config.epochs} epochs x {config.iterations_per_epoch} iterations x {config.batch_size}",
            f"samples at {config.learning_rate:g} with the settings above and seed {config.seed}",
            f"(the learning rate decays to 0 over the stage; {minutes:.0f} minutes of wall",
            "time, per-epoch validation included); shipped: the",
            f"{'best validation' if which == 'best' else 'last'} epoch of the last stage,",
            f"{epoch} (validation GM Dice {history['dice_GM'][epoch]:.3f}, WM",
            f"{history['dice_WM'][epoch]:.3f}){LAST_EPOCH_REASON if which == 'last' else ''}.",
        ),
        "",
        "## Reproduce",
        "```bash",
        "git checkout c4ca88a   # the first two stages' synthesis",
        "python tools/train_default_model.py --work STAGE1 --epochs 40",
        "python tools/train_default_model.py --work STAGE2 --init-from STAGE1 --epochs 50 \\",
        "    --learning-rate 0.001",
        "git checkout 3a5ff2b   # the third stage's synthesis",
        "python tools/train_default_model.py --work STAGE3 --init-from STAGE2 --epochs 45 \\",
        "    --learning-rate 0.001",
        "git checkout f18c4b5   # the fourth and fifth stages' synthesis",
        "python tools/train_default_model.py --work STAGE4 --init-from STAGE3 --epochs 32 \\",
        "    --learning-rate 0.0005",
        "python tools/train_default_model.py --work STAGE5 --init-from STAGE4 --epochs 12 \\",
        "    --learning-rate 0.0005 --seed 0",
        "git checkout -",
        "python tools/train_default_model.py --work STAGE6 --init-from STAGE5 --epochs 16 \\",
        "    --learning-rate 0.0005 --seed 5 \\",
        '    --synthesis \'{"single_slice_probability": 0.1, "in_plane_resolution_mm": [0.03, 0.12]}\'',
        "python tools/train_default_model.py --work STAGE7 --init-from STAGE6 --epochs 10 \\",
        "    --learning-rate 0.0003 --seed 6 \\",
        '    --synthesis \'{"single_slice_probability": 0.3, "in_plane_resolution_mm": [0.03, 0.12]}\'',
        f"python tools/train_default_model.py --work WORK --init-from STAGE7 --epochs {config.epochs} \\",
        f"    --learning-rate {config.learning_rate:g} --seed {config.seed}",
        f"python tools/train_default_model.py --work WORK --install --checkpoint {which}",
        "pip install nncf && python tools/quantize_default_model.py   # float16 weights, int8 networks",
        "python benchmarks/accuracy.py --contrast t1w --shape 200 200 48 --json accuracy_t1w.json",
        "python benchmarks/accuracy.py --contrast random --shape 200 200 48 --json accuracy_random.json",
        "python benchmarks/accuracy.py --contrast gm-dark --shape 200 200 48 --json accuracy_gm-dark.json",
        "python benchmarks/accuracy.py --voxel-size 0.05 0.05 0.3 --shape 200 200 24 \\",
        "    --json accuracy_thick.json",
        "python benchmarks/accuracy.py --single-slices 10 --shape 200 200 100 --json accuracy_single.json",
        "python benchmarks/segment.py --default-model --json speed.json",
        "python tools/train_default_model.py --update-card --metrics accuracy_*.json speed.json",
        "```",
        "CPU training is deterministic for a given seed, data worker count, thread count and precision.",
        "The shipped stages were trained in float32, before `mixed_precision` (bfloat16 where the CPU or",
        "GPU computes it natively): on such a machine add `--no-mixed-precision` to the commands after",
        "`git checkout -` (the earlier commits train in float32 and know no such option). The shipped",
        "first stage was started with `--epochs 40` and resumed after 9 epochs with `--epochs 32` (the",
        "learning-rate decay shortened from there on), on a machine shared with other work, so the",
        "commands above give a close, not identical, model; `benchmarks/train.py --history` on the",
        "metadata's `validation_history` (the last stage) shows the curve.",
        "",
        "## Metrics",
    ]
    if not metrics:
        lines += ["Not measured yet: run the benchmark commands above, then `--update-card`."]
    for record in metrics:
        lines += ["", *_metric_lines(record)]
    lines += [
        "",
        "## Limits",
        "- Trained on synthetic slabs only; evaluated on phantoms of another generator. Real scans differ",
        "  (coil profiles, fixation, artefacts): check every result visually",
        "  (`mousecord segment ... -qc qc/`).",
        "- Adapt it to your scans from a few annotated slices: `mousecord train DATASET -o runs/own",
        "  --init-model default` (annotated slices mixed with synthetic ones), then",
        "  `mousecord segment --model runs/own/model` (see the README, 'Fine-tuning on your scans').",
        "  On SCT's human t2s scan at mouse scale, 3 annotated slices raised GM Dice on the 6 others",
        "  from 0.42 to 0.80 in 5.2 minutes (`benchmarks/real_scans.py --adapt`); annotate slices in at",
        "  least two animals, so that held-out slices choose the fine-tuned model.",
        f"- One slice at a time with two neighbours, logits smoothed along the slices "
        f"({INFERENCE['z_smoothing_mm']} mm, inside the cord's tube): the GM",
        "  area changes from slice to slice 0.9x as much as the truth's in T1w and GM-darker",
        "  volumes, 1.15-1.16x in random-contrast and thick-slice ones and 1.3x between single",
        "  slices segmented one at a time (1.8x on seeds 30-39; target 1.2x), and boundaries are",
        "  rounder than the truth's; WM is over-segmented by about 13 % in volume on T1w-like and",
        "  GM-darker phantoms: the cord outline lies up to one voxel outside the true one, where these",
        "  phantoms have a thin fluid rim a little brighter than the cord (1.1-1.6x WM, as GM is); a rim",
        "  as dark as the dura or twice as bright as WM does not do it, nor the as bright rim of",
        "  benchmarks/parametric_phantom.py (cord area within 2 % of the truth's). In those phantoms the",
        "  first voxel layer outside the true cord is 0.97x as bright as WM (the rim blurred into the",
        "  dura): the image itself puts the edge there.",
        "- Where the edge is clean the network draws the cord a little small: on clean synthetic",
        "  slabs of its own training generator (0.05 mm, SNR 40-60, `benchmarks/boundary_bias.py`,",
        "  network alone) the median cord area is 0.95x the truth's with no fluid rim (outline 0.45",
        "  voxel inside the true one), 0.97x and 0.99x with a rim 0.3x or 2x as bright as WM, and 1.04x",
        "  with one 1.3x as bright; GM area 0.96-1.00x. Area and volume measurements inherit it:",
        "  compare groups segmented with the same model, and check a few slices by hand.",
        "- The field of view changes the result (measured on the five-stage network this one was",
        "  trained from): cut to 96 x 96 voxels around the cord",
        "  (`benchmarks/accuracy.py --crop 96`, 5 phantoms of 24 slices), GM / WM Dice rose from",
        "  0.936 / 0.914 to 0.942 / 0.930 (T1w) and 0.914 / 0.908 to 0.929 / 0.927 (GM darker) but",
        "  went from 0.933 / 0.897 to 0.930 / 0.885 on random contrasts, and on the parametric phantom",
        "  it changed GM by -0.004 to +0.005 and WM by -0.009 to -0.006. Do not mix cropped and",
        "  whole images in one comparison.",
        "- What one network pass finds on a slice depends more than it should on where its 128-pixel",
        "  tile lies: in the quick start's phantom (`mousecord demo`) a single pass of the previous",
        "  network (four stages) missed the cord on the last 16 of 160 slices, where a tile placed 20-30",
        "  pixels to one side found it. The mirrored passes (`mirroring`) average that out (this",
        "  network finds the cord on all 160 slices in one pass, GM Dice 0.903, and 0.912 with them)",
        "  and gained the previous network 0.01 GM Dice on every phantom case, at four times the",
        "  network time; `--no-tta` runs one pass. Check the QC pictures.",
        "- On T1w-like phantoms (GM brighter than WM) the previous default, a 3D U-Net trained on such",
        "  phantoms (commit 9c08e13), has the better WM (GM/WM Dice 0.93/0.93 against 0.94/0.92); it fails",
        "  where GM is darker than WM (0.07) and on random contrasts (0.52), where this model gives 0.92.",
        "- Real mouse tissue has not been measured here (none is available to this project). On SCT's",
        "  human scans given a mouse-scale voxel size (benchmarks/real_scans.py, cord 2-3 mm wide):",
        "  t2s and mt1 cord Dice 0.84-0.93 and GM Dice 0.36-0.42 (human GM is a thin butterfly, two to",
        "  three voxels wide at that scale); the whole-neck t1w and t2 volumes (vertebrae, muscle and fat",
        "  around the cord) cord Dice 0.69-0.94, the cord found on 66-100 % of their slices (the",
        "  five-stage network: 0-29 %, except t2 at a 3 mm width), but their slices given alone as",
        "  2D images 0.64-0.93: t1w's bright, uniform cord in dark CSF is found on 68-87 % of them",
        "  (the seven-stage network: 30-57 %), t2's dark one on 98-100 % (the first stage keeps the",
        "  candidate the network is surest of, not the largest: before, a vertebral body was taken for",
        "  cord on up to 42 % of them). Check single-slice results on the QC picture.",
        "- Damaged chunk ends (an oblique cut, corrupted intensities) and air bubbles: on 5 phantoms",
        "  of 48 slices with both (`benchmarks/accuracy.py --artefacts`, the five-stage network)",
        "  GM/WM/cord Dice is",
        "  0.91/0.88/0.93 (T1w) and 0.79/0.72/0.82 (random contrasts); the cord is missed in end",
        "  slices whose damage hides it from the eye too. A training stage with cut ends and bubbles",
        "  drawn by the synthesis (`cut_probability`, `bubble_probability`) did not help there and",
        "  lowered validation WM Dice.",
        "  Where GM and WM have the same intensity (a random-contrast draw) GM comes from shape alone",
        "  (GM Dice 0.64-0.68 on such phantoms).",
        "- The cord ROI path assumes one cord per image, running along the last (S) axis of the",
        "  RAS-reoriented image; where its first stage finds no cord-like structure the result is empty,",
        "  and where fewer than 50 cord voxels are found `mousecord segment` warns and exits with",
        "  status 3; `--roi full` segments the whole field densely. A header whose voxel size is over 10x",
        "  too large in-plane is refused before any work (`--voxel-size` corrects it).",
    ]
    return "\n".join(lines) + "\n"


def _paragraph(*parts: str) -> str:
    """Markdown source lines of one paragraph (the parts joined by line breaks, as written)."""
    return "\n".join(parts)


def _metric_lines(record: dict) -> list[str]:
    """Lines for one benchmark JSON (benchmarks/accuracy.py or benchmarks/segment.py --default-model)."""
    if "summary" in record:  # accuracy.py
        lines = [
            f"Accuracy, case {record.get('case', record['contrast'])}, {record['volumes']} phantoms "
            f"{record['shape_xyz']} at {record.get('voxel_size_mm', [0.05] * 3)} mm (seeds "
            f"{record['seeds'][0]}-{record['seeds'][-1]}), roi {record['roi']}, {record['backend']} backend"
            f"{' (' + record['precision'] + ')' if 'precision' in record else ''}"
            f"{', mirrored' if record.get('mirroring') else ''}: mean (std)",
            "",
            "| class | Dice | HD95 (mm) | volume error (%) | target Dice |",
            "|---|---|---|---|---|",
        ]
        for name in ("GM", "WM", "cord"):
            values = record["summary"][name]
            cells = [
                f"{values[key]['mean']:.3f} ({values[key]['std']:.3f})"
                for key in ("dice", "hd95_mm", "volume_difference_percent")
            ]
            target = record.get("targets", {}).get(name)
            lines.append(f"| {name} | {' | '.join(cells)} | {'>= ' + str(target) if target else ''} |")
        jitter = record["summary"].get("gm_area_jitter")
        if jitter and np.isfinite(jitter["mean"]):
            lines += ["", f"GM area jitter from slice to slice: {jitter['mean']:.2f}x the truth's."]
        return lines
    results = record["results"]
    end_to_end = (
        f" `mousecord segment` end to end (a fresh process: imports, model, read, segment, write the "
        f"three outputs) {results['cli']['wall_s']:.1f} s ({record['speed_ratio_end_to_end']:.1f}x faster, "
        f"peak {record['peak_gb_end_to_end']:.2f} GB)."
        if "cli" in results
        else ""
    )
    return [
        f"Speed and memory, phantom {record['shape_xyz']}, {record['threads']} threads of "
        f"{record.get('cpu', 'a CPU')}: nnU-Net's "
        f"predictor (reference-size network, patch {record['nnunet_patch_zyx']}) "
        f"{results['nnunet']['wall_s']:.0f} s; this model "
        f"({results['cord'].get('backend', 'torch')} backend), array to labels, "
        f"cord ROI {results['cord']['wall_s']:.1f} s ({record['speed_ratio']:.1f}x faster, peak "
        f"{record['peak_gb_cord']:.2f} GB), dense {results['full']['wall_s']:.1f} s. GM Dice cord ROI "
        f"{results['cord']['dice_GM']:.4f} vs dense {results['full']['dice_GM']:.4f}.{end_to_end}",
    ]


def install(work: Path, metric_files: list[Path], which: str = "best") -> Path:
    """Export the ``which`` ("best" validation epoch, or "last") checkpoint of ``work`` as the shipped
    default model."""
    config = InPlaneTrainConfig.from_dict(json.loads((work / IN_PLANE_CONFIG_JSON).read_text()))
    if which == "best":
        checkpoint = load_checkpoint(work / CHECKPOINT_BEST)
        epoch = int(checkpoint["best_epoch"])
        if epoch < 0:
            raise SystemExit(
                f"{work}: no epoch beat the starting weights on validation; nothing new to install "
                "(--checkpoint last installs the last epoch)"
            )
    else:
        checkpoint = load_checkpoint(work / CHECKPOINT_LAST)
        epoch = int(checkpoint["epoch"]) - 1
    history = json.loads((work / HISTORY_JSON).read_text())
    metrics = [json.loads(Path(path).read_text()) for path in metric_files]
    card = default_model_card(config, history, epoch, which, metrics)
    bundle = bundle_from_weights(
        config,
        checkpoint["network_weights"],
        name="default",
        inference=INFERENCE,
        model_card=card,
        metadata={"chosen_epoch": epoch, "chosen_checkpoint": which, "validation_history": history},
    )
    return save_bundle(bundle, DEFAULT_BUNDLE, overwrite=True)


def update_card(metric_files: list[Path], *, folder: Path = DEFAULT_BUNDLE) -> None:
    """Rewrite ``folder``'s model card with the benchmark JSON files' numbers (weights untouched)."""
    bundle = load_bundle(folder)
    config = InPlaneTrainConfig.from_dict(bundle.metadata["training_config"])
    history = bundle.metadata["validation_history"]
    metrics = [json.loads(Path(path).read_text()) for path in metric_files]
    epoch = bundle.metadata.get("chosen_epoch", bundle.metadata.get("best_epoch"))
    if epoch is None:
        raise SystemExit(f"{folder}: its metadata names no chosen epoch; reinstall it with --install")
    epoch = int(epoch)
    which = bundle.metadata.get("chosen_checkpoint", "best")
    card = default_model_card(config, history, epoch, which, metrics)
    with atomic_output(folder / MODEL_CARD) as temporary:  # weights and model.json stay byte-identical
        temporary.write_text(card)
    print(f"model card of {folder} rewritten with {len(metrics)} benchmark record(s)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work", type=Path, help="scratch folder (checkpoints, curves)")
    parser.add_argument("--epochs", type=int, default=RECIPE.epochs)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--data-workers",
        type=int,
        default=RECIPE.data_workers,
        help="processes synthesising batches (part of the recipe: the run is reproducible for a given count; "
        "on a GPU machine give it most cores)",
    )
    parser.add_argument("--device", default=RECIPE.device, help="auto, cpu or cuda")
    parser.add_argument(
        "--no-mixed-precision",
        action="store_true",
        help="train in float32 (as the shipped stages were), not in bfloat16 where the CPU or GPU computes "
        "it natively",
    )
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run in --work")
    parser.add_argument(
        "--init-from",
        type=Path,
        help="start from the best checkpoint of an earlier run's --work folder, a checkpoint file of one "
        "(e.g. WORK/checkpoint_last.pt), or a model bundle folder such as the installed default (a new "
        "stage, e.g. at a lower --learning-rate)",
    )
    parser.add_argument("--learning-rate", type=float, default=RECIPE.learning_rate)
    parser.add_argument(
        "--seed",
        type=int,
        default=RECIPE.seed,
        help="seed of the weights and samples (a new stage on another seed draws samples no stage saw)",
    )
    parser.add_argument(
        "--synthesis",
        type=json.loads,
        default={},
        help="JSON merged into the recipe's synthesis settings for this run, e.g. "
        "'{\"single_slice_probability\": 0.1}'",
    )
    parser.add_argument(
        "--install", action="store_true", help=f"export a checkpoint (--checkpoint) to {DEFAULT_BUNDLE}"
    )
    parser.add_argument(
        "--checkpoint",
        choices=("best", "last"),
        default="best",
        help="with --install: the best validation epoch, or the last epoch (where checks beyond the "
        "validation phantoms, such as benchmarks/real_scans.py, chose it)",
    )
    parser.add_argument("--update-card", action="store_true", help="only rewrite the installed bundle's card")
    parser.add_argument(
        "--metrics", type=Path, nargs="*", default=[], help="benchmark JSON files for the card"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.update_card:
        update_card(args.metrics)
        return
    if args.work is None:
        parser.error("--work is required")
    if args.checkpoint != "best" and not args.install:
        parser.error("--checkpoint chooses what --install exports; give --install too")
    if args.install:
        print(f"installed as the default model in {install(args.work, args.metrics, args.checkpoint)}")
        return
    torch.set_num_threads(args.threads)
    config = InPlaneTrainConfig.from_dict(
        {
            **RECIPE.to_dict(),
            "epochs": args.epochs,
            "learning_rate": args.learning_rate,
            "seed": args.seed,
            "data_workers": args.data_workers,
            "device": args.device,
            "mixed_precision": not args.no_mixed_precision,
            "synthesis": {**RECIPE.synthesis.to_dict(), **args.synthesis},
        }
    )
    initial_weights = None
    if args.init_from is not None:
        if args.init_from.suffix == ".pt" and args.init_from.is_file():
            initial_weights = load_checkpoint(args.init_from)["network_weights"]
        elif (args.init_from / CHECKPOINT_BEST).is_file():
            initial_weights = load_checkpoint(args.init_from / CHECKPOINT_BEST)["network_weights"]
        elif (args.init_from / MODEL_JSON).is_file():  # a bundle: its float16-stored weights, in float32
            bundle = load_bundle(args.init_from)
            if len(bundle.fold_weights) != 1:
                parser.error(
                    f"--init-from {args.init_from}: a bundle of one fold, got {len(bundle.fold_weights)}"
                )
            initial_weights = {name: tensor.float() for name, tensor in bundle.fold_weights[0].items()}
        else:
            parser.error(
                f"--init-from {args.init_from}: neither a checkpoint file, a training folder "
                f"({CHECKPOINT_BEST}) nor a bundle"
            )
    train_in_plane(
        config,
        args.work,
        validation_volumes=phantom_validation_volumes(),
        initial_weights=initial_weights,
        resume=args.resume,
        inference=INFERENCE,
    )


if __name__ == "__main__":
    main()
