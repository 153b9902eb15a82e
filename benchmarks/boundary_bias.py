"""Where a model puts the cord's edge: the network's cord and GM area against the truth's on clean slabs.

Dice mixes two failures that call for different fixes: a boundary drawn in the wrong place all round the
cord (a bias, the same on every slice) and scattered errors. This script measures the first, on the network
alone (float32, one pass, no ROI path, no mirroring): ``mousecord.synthesis`` draws clean axial slabs
(0.05 mm voxels in-plane and through-plane, SNR 40-60, no Gibbs ringing, ghosting, gamma, cut ends or
bubbles; ex vivo-like intensities), and each drawn slab is rendered again with its surroundings changed in
one thing only, the fluid rim between cord and dura: absent, or present (0.02-0.12 mm) at a set brightness
relative to WM. Same cord, same noise, so the rows differ by the rim alone.

For each variant the median over slabs of the predicted / true cord area and GM area on the centre slice,
and the mean outward shift of the cord outline in voxels ((predicted - true cord area) / true perimeter),
are printed. A calibrated model has ratios near 1 and a shift near 0 with the rim absent or dark; a model
that erodes clean edges has a negative shift there, one that takes a faint rim for cord a positive shift
where the rim is a little brighter than WM (as in ``mousecord.phantom``'s T1w preset, 1.1-1.6x WM).

    python benchmarks/boundary_bias.py [--model NAME_OR_FOLDER] [--samples 40] [--json out.json]
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import numpy as np

#: The rim variants: name -> fluid rim brightness relative to WM (None: no rim).
VARIANTS = {
    "no rim": None,
    "rim 0.3x WM": 0.3,
    "rim 1.3x WM": 1.3,
    "rim 2.0x WM": 2.0,
}


def clean_synthesis(tile_vox: int) -> object:
    """Synthesis settings of a clean acquisition at the default model's grid, the cord always present.

    Fields are 1.5 tiles wide, the largest training draws, so that a tile centred on the cord holds it whole.
    """
    from mousecord.synthesis import SynthesisConfig

    field = tile_vox * 3 // 2
    return SynthesisConfig(
        patch_size_vox=(tile_vox, tile_vox),
        field_size_vox=(field, field),
        no_cord_probability=0.0,
        realistic_intensity_probability=1.0,
        rim_absent_probability=0.0,
        gap_probability=0.0,
        in_plane_resolution_mm=(0.05, 0.05),
        slice_thickness_mm=(0.05, 0.05),
        snr=(40.0, 60.0),
        gibbs_probability=0.0,
        ghosting_probability=0.0,
        gamma_probability=0.0,
        single_slice_probability=0.0,
        surroundings_change_probability=0.0,
    )


def variant_parameters(parameters: dict, rim_brightness: float | None) -> dict:
    """``parameters`` with the fluid rim removed (None) or set to ``rim_brightness`` x WM's mean."""
    from mousecord.labels import Label
    from mousecord.synthesis.parameters import RIM

    changed = copy.deepcopy(parameters)
    if rim_brightness is None:
        changed["rim_mode"], changed["rim_mm"] = "absent", 0.0
    else:
        means = changed["intensities"]["mean"]
        means[RIM] = rim_brightness * means[Label.WM]
    return changed


def measure(model: object, samples: int, seed: int) -> dict[str, dict[str, float]]:
    """Median cord / GM area ratios and mean outline shift (voxels) per rim variant."""
    import torch
    from skimage.measure import perimeter

    from mousecord.inference.preprocessing import normalize
    from mousecord.labels import Label
    from mousecord.models.network import build_network, load_weights
    from mousecord.synthesis import render_sample
    from mousecord.synthesis.parameters import sample_parameters

    network = build_network(
        model.architecture, input_channels=model.slab_slices, num_classes=len(model.labels)
    )
    load_weights(network, model.fold_weights[0]).eval()
    tile = model.patch_size_vox[1]
    config = clean_synthesis(tile)
    rng = np.random.default_rng(seed)
    rows: dict[str, list[tuple[float, float, float]]] = {name: [] for name in VARIANTS}
    for _ in range(samples):
        parameters = sample_parameters(config, rng)
        for name, rim_brightness in VARIANTS.items():
            sample = render_sample(config, variant_parameters(parameters, rim_brightness))
            # normalised whole, then one tile centred on the cord, as training and the ROI path cut theirs:
            # the network's instance norms see a tile, so a larger input would change what it draws
            crop = _tile_around_cord(parameters, config, tile)
            image = np.ascontiguousarray(normalize(sample.image)[(slice(None), *crop)])
            with torch.no_grad():
                predicted = network(torch.from_numpy(image)[None])[0].argmax(0).numpy()
            truth = sample.label_map[crop]
            true_cord, predicted_cord = truth > 0, predicted > 0
            shift = (predicted_cord.sum() - true_cord.sum()) / perimeter(true_cord)
            rows[name].append(
                (
                    predicted_cord.sum() / true_cord.sum(),
                    (predicted == Label.GM).sum() / max((truth == Label.GM).sum(), 1),
                    shift,
                )
            )
    summary = {}
    for name, values in rows.items():
        cord, gm, shift = np.asarray(values).T
        summary[name] = {
            "cord_area_ratio": float(np.median(cord)),
            "cord_area_ratio_q25": float(np.quantile(cord, 0.25)),
            "cord_area_ratio_q75": float(np.quantile(cord, 0.75)),
            "gm_area_ratio": float(np.median(gm)),
            "outline_shift_vox": float(np.mean(shift)),
        }
    return summary


def _tile_around_cord(parameters: dict, config: object, tile: int) -> tuple[slice, slice]:
    """The (y, x) slices of the ``tile``-sized square of the field centred on the drawn cord centre."""
    field = int(parameters["field_vox"])
    centre = np.asarray(parameters["centre_mm"]) / config.spacing_mm + (field - 1) / 2
    start = np.clip(np.round(centre - tile / 2).astype(int), 0, field - tile)
    return slice(start[0], start[0] + tile), slice(start[1], start[1] + tile)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="default", help="model (name or folder); an in-plane one")
    parser.add_argument("--samples", type=int, default=40, help="slabs drawn (each rendered per variant)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    import torch

    from mousecord.models.registry import resolve_model

    torch.set_num_threads(args.threads)
    model = resolve_model(args.model)
    if not model.slab_slices:
        parser.error(f"{args.model}: a 3D model; this benchmark runs in-plane models on axial slabs")
    summary = measure(model, args.samples, args.seed)
    print(f"{model.name}, network alone (float32), {args.samples} clean slabs (seed {args.seed})")
    print(f"{'variant':<12} {'cord area ratio (IQR)':>24} {'GM area ratio':>14} {'outline shift':>14}")
    for name, row in summary.items():
        spread = f"({row['cord_area_ratio_q25']:.3f}-{row['cord_area_ratio_q75']:.3f})"
        print(
            f"{name:<12} {row['cord_area_ratio']:>10.3f} {spread:>13} {row['gm_area_ratio']:>14.3f}"
            f" {row['outline_shift_vox']:>+10.2f} vox"
        )
    if args.json:
        record = {"benchmark": "boundary_bias", "model": model.name, "samples": args.samples, **summary}
        args.json.write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
