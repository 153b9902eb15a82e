"""Benchmark: mousecord's Predictor against nnU-Net v2's nnUNetPredictor, same model, volume and settings.

Both run the whole array-to-labels path (preprocess, sliding window with tile step 0.5 and Gaussian weighting,
no mirroring, export to a label map) on the same random-weight nnU-Net results folder, each in its own fresh
subprocess so that peak memory (``ru_maxrss``) is that predictor's alone. Both use the same number of CPU
threads. mousecord runs on its default backend (OpenVINO on a CPU; ``--backend torch`` for PyTorch, which is
bit-identical to nnU-Net); the conversion to OpenVINO happens on first use, inside the timed run. Needs
nnunetv2 (see .ci/run for the test-only install).

    python benchmarks/segment.py              # reference network (plans.json 3d_fullres, patch 256x96x96),
                                              # 200x200x500 volume: tens of minutes per predictor on a CPU
    python benchmarks/segment.py --quick      # 64x192x192 (z, y, x) crop, patch 64x96x96

``--default-model`` compares, on one 200 x 200 x 500 phantom (seed < 1000, never a training seed):
(a) nnU-Net's predictor on the random-weight reference-sized folder, (b) mousecord with the default bundle
on its fast cord ROI path, (c) the same bundle densely (``roi="full"``), each from array to labels, and
(d) ``mousecord segment`` end to end as a user runs it: a fresh process that imports, loads and compiles the
model, reads the NIfTI file, segments it and writes the three outputs. It prints each one's wall time and
peak memory, the speed ratios (a)/(b) and (a)/(d) against the 60x target, (d)'s memory against the 1.5 GB
target, and GM/WM Dice of (b), (c) and (d) against the phantom's truth (all with the bundle's
keep-largest-component post-processing)::

    python benchmarks/segment.py --default-model [--model BUNDLE] [--inference '{"margin_mm": 1.0}']
    python benchmarks/segment.py --default-model --quick   # 200x200x64 phantom, nnU-Net patch 64x96x96
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mousecord.options import BACKENDS

REPO = Path(__file__).resolve().parents[1]
#: ``--default-model`` targets: nnU-Net's time over mousecord's, and mousecord's peak memory.
SPEED_TARGET = 60
MEMORY_TARGET_GB = 1.5


def _rss_mb() -> float:
    with open("/proc/self/statm") as stream:
        return int(stream.read().split()[1]) * resource.getpagesize() / 2**20


def worker(which: str, folder: Path, image_path: Path, threads: int, backend: str) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    if which == "cli":  # the whole command: the parent times this process from its start
        import nibabel as nib

        from mousecord.cli.main import main as mousecord

        output = image_path.with_name("segment_seg.nii.gz")
        command = ["segment", "-i", str(image_path), "-o", str(output), "--quiet"]
        command += ["--model", str(folder)] if folder else []
        command += ["--threads", str(threads), "--backend", backend]
        if mousecord(command) != 0:
            raise SystemExit(f"mousecord segment failed on {image_path}")
        labels = np.asarray(nib.load(output).dataobj, dtype=np.uint8)
        np.save(image_path.with_name(f"labels_{which}.npy"), labels)
        return {
            "backend": backend,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }
    image = np.load(image_path)  # (x, y, z) canonical RAS
    spacing = (0.05, 0.05, 0.05)
    if which in ("cord", "full"):
        from mousecord.inference import InferenceConfig, Predictor
        from mousecord.models.registry import resolve_model

        bundle = resolve_model(str(folder) if folder else None)
        predictor = Predictor(
            bundle, InferenceConfig(device="cpu", threads=threads, roi=which, backend=backend)
        )
        baseline = _rss_mb()
        start = time.perf_counter()
        labels = predictor.predict_array(image, spacing).label_map
    elif which == "mousecord":
        from mousecord.inference import InferenceConfig, Predictor
        from mousecord.models.nnunet import read_model_folder

        predictor = Predictor(
            read_model_folder(folder), InferenceConfig(device="cpu", threads=threads, backend=backend)
        )
        baseline = _rss_mb()
        start = time.perf_counter()
        labels = predictor.predict_array(image, spacing).label_map
    else:
        import os

        os.environ.setdefault("nnUNet_def_n_proc", str(threads))
        from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

        predictor = nnUNetPredictor(
            tile_step_size=0.5,
            use_gaussian=True,
            use_mirroring=False,
            device=torch.device("cpu"),
            allow_tqdm=False,
        )
        predictor.initialize_from_trained_model_folder(str(folder), use_folds=(0,))
        data = np.ascontiguousarray(image.transpose(2, 1, 0)[None])  # SimpleITK order
        baseline = _rss_mb()
        start = time.perf_counter()
        labels = predictor.predict_single_npy_array(data, {"spacing": list(spacing[::-1])}).transpose(2, 1, 0)
    wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    np.save(image_path.with_name(f"labels_{which}.npy"), labels.astype(np.uint8))
    return {
        "backend": "torch" if which == "nnunet" else predictor.backend,
        "wall_s": wall,
        "peak_rss_mb": peak,
        "baseline_rss_mb": baseline,
        "peak_over_baseline_mb": peak - baseline,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="64x192x192 crop, patch 64x96x96")
    parser.add_argument("--shape-zyx", type=int, nargs=3, help="volume size in network order (z, y, x)")
    parser.add_argument("--patch-zyx", type=int, nargs=3, help="patch size (z, y, x)")
    parser.add_argument("--features", type=int, nargs="+", help="features per stage (default: the reference)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--default-model",
        action="store_true",
        help="nnU-Net (reference size, random weights) vs the default bundle, fast and dense, on a phantom",
    )
    parser.add_argument("--model", help="with --default-model: bundle to use instead of the default")
    parser.add_argument("--inference", help="with --default-model: JSON merged into metadata['inference']")
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default="auto",
        help="mousecord's backend (the OpenVINO conversion on first use is inside the timed run)",
    )
    parser.add_argument("--seed", type=int, default=123, help="phantom seed (< 1000)")
    parser.add_argument("--json", type=Path, help="with --default-model: also write the results here")
    parser.add_argument(
        "--worker", choices=("mousecord", "nnunet", "cord", "full", "cli"), help=argparse.SUPPRESS
    )
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--image", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.folder, args.image, args.threads, args.backend)))
        return 0
    if args.default_model:
        return default_model_benchmark(args)

    import numpy as np

    sys.path.insert(0, str(REPO))
    from tests.models.nnunet_fixtures import cord_like_image, make_nnunet_folder

    shape = args.shape_zyx or ((64, 192, 192) if args.quick else (500, 200, 200))
    patch = args.patch_zyx or ((64, 96, 96) if args.quick else (256, 96, 96))
    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary)
        folder = make_nnunet_folder(root, patch_size_vox=patch, features_per_stage=args.features)
        image_path = root / "image.npy"
        np.save(image_path, cord_like_image(tuple(reversed(shape)), zero_margin=2))
        results = {}
        for which in ("nnunet", "mousecord"):
            command = [
                sys.executable,
                __file__,
                "--worker",
                which,
                "--folder",
                str(folder),
                "--image",
                str(image_path),
                "--threads",
                str(args.threads),
                "--backend",
                args.backend,
            ]
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            results[which] = json.loads(output.strip().splitlines()[-1])
        agreement = float(
            np.mean(np.load(root / "labels_nnunet.npy") == np.load(root / "labels_mousecord.npy"))
        )
    print(f"volume (z, y, x) {tuple(shape)}, patch {tuple(patch)}, threads {args.threads}, no mirroring")
    for which, result in results.items():
        print(
            f"{which:>9} ({result['backend']:>8}): {result['wall_s']:8.1f} s   "
            f"peak RSS {result['peak_rss_mb']:7.0f} MB "
            f"(+{result['peak_over_baseline_mb']:.0f} MB during prediction)"
        )
    speedup = results["nnunet"]["wall_s"] / results["mousecord"]["wall_s"]
    memory = results["mousecord"]["peak_rss_mb"] / results["nnunet"]["peak_rss_mb"]
    print(
        f"speed-up (nnU-Net time / mousecord time): {speedup:.2f}x; peak memory ratio (mousecord / nnU-Net): "
        f"{memory:.2f}; label agreement {agreement:.6f}"
    )
    return 0


def _run_worker(which: str, folder: Path | None, image_path: Path, args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--worker", which, "--image", str(image_path)]
    command += ["--threads", str(args.threads), "--backend", args.backend]
    command += ["--folder", str(folder)] if folder else []
    started = time.perf_counter()
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    result = json.loads(output.strip().splitlines()[-1])
    if which == "cli":
        result["wall_s"] = time.perf_counter() - started
    return result


def default_model_benchmark(args: argparse.Namespace) -> int:
    """(a) nnU-Net reference size, (b) default bundle on the cord ROI path, (c) the same bundle densely, (d)
    ``mousecord segment`` on the phantom's NIfTI file (timed from its process's start, which also counts
    reading its output back for the Dice: on the safe side)."""
    import numpy as np

    sys.path.insert(0, str(REPO))
    from tests.models.nnunet_fixtures import make_nnunet_folder

    from mousecord.analysis.metrics import dice
    from mousecord.io.nifti import save_volume
    from mousecord.labels import Label
    from mousecord.models.bundle import save_bundle
    from mousecord.models.registry import resolve_model
    from mousecord.phantom import PhantomConfig, generate_phantom

    if not 0 <= args.seed < 1000:
        raise SystemExit(f"--seed must be below 1000 (training uses 1001 and 2001), got {args.seed}")
    shape_xyz = (200, 200, 64) if args.quick else (200, 200, 500)
    patch = tuple(args.patch_zyx or ((64, 96, 96) if args.quick else (256, 96, 96)))
    phantom = generate_phantom(PhantomConfig(shape_vox=shape_xyz), rng=np.random.default_rng(args.seed))
    truth = phantom.label_map.data
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary)
        image_path = root / "image.npy"
        np.save(image_path, phantom.image.data.astype(np.float32))
        nifti_path = root / "image.nii.gz"
        save_volume(phantom.image, nifti_path)
        del phantom
        folder = make_nnunet_folder(root, patch_size_vox=patch, features_per_stage=args.features)
        model = args.model
        if args.inference:  # one bundle carrying the settings, for (b), (c) and the command (d) alike
            bundle = resolve_model(args.model)
            merged = {**bundle.metadata.get("inference", {}), **json.loads(args.inference)}
            bundle = dataclasses.replace(bundle, metadata={**bundle.metadata, "inference": merged})
            model = str(save_bundle(bundle, root / "bundle"))
        runs = (
            ("nnunet", folder, image_path),
            ("cord", model, image_path),
            ("full", model, image_path),
            ("cli", model, nifti_path),
        )
        for which, model_folder, path in runs:
            print(f"running {which} ...", file=sys.stderr, flush=True)
            results[which] = _run_worker(which, model_folder, path, args)
            if which != "nnunet":
                labels = np.load(root / f"labels_{which}.npy")
                for label in (Label.GM, Label.WM):
                    results[which][f"dice_{label.name}"] = dice(truth == label, labels == label)
    names = {
        "nnunet": "(a) nnU-Net, reference size",
        "cord": "(b) default, cord ROI",
        "full": "(c) default, dense",
        "cli": "(d) mousecord segment, file",
    }
    cpu = cpu_description()
    print(
        f"phantom {shape_xyz} (x, y, z) at 0.05 mm, seed {args.seed}; nnU-Net patch (z, y, x) {patch}; "
        f"threads {args.threads}; no mirroring; CPU {cpu}"
    )
    for which, result in results.items():
        dices = (
            f"  GM Dice {result['dice_GM']:.4f}  WM Dice {result['dice_WM']:.4f}"
            if "dice_GM" in result
            else ""
        )
        print(
            f"{names[which]:>28} ({result['backend']:>8}): {result['wall_s']:8.1f} s  "
            f"peak RSS {result['peak_rss_mb']:7.0f} MB{dices}"
        )
    ratio = results["nnunet"]["wall_s"] / results["cord"]["wall_s"]
    end_to_end = results["nnunet"]["wall_s"] / results["cli"]["wall_s"]
    peak_gb = results["cord"]["peak_rss_mb"] / 1024
    cli_gb = results["cli"]["peak_rss_mb"] / 1024
    loss = {name: results["full"][f"dice_{name}"] - results["cord"][f"dice_{name}"] for name in ("GM", "WM")}
    print(
        f"speed ratio nnU-Net / (b): {ratio:.1f}x, nnU-Net / (d): {end_to_end:.1f}x "
        f"(target >= {SPEED_TARGET}x)"
    )
    print(f"peak memory of (b): {peak_gb:.2f} GB, of (d): {cli_gb:.2f} GB (target <= {MEMORY_TARGET_GB} GB)")
    print(f"Dice lost by (b) against (c): GM {loss['GM']:+.4f}, WM {loss['WM']:+.4f} (target GM <= 0.01)")
    if args.json:
        summary = {
            "shape_xyz": shape_xyz,
            "seed": args.seed,
            "threads": args.threads,
            "cpu": cpu,
            "nnunet_patch_zyx": patch,
            "results": results,
            "speed_ratio": ratio,
            "speed_ratio_end_to_end": end_to_end,
            "peak_gb_cord": peak_gb,
            "peak_gb_end_to_end": cli_gb,
            "dice_loss": loss,
        }
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return 0


def cpu_description() -> str:
    """The CPU's model name and the vector extensions that set int8 and float32 speed (Linux; elsewhere
    what :func:`platform.processor` says): timings differ several-fold between CPUs with and without them."""
    import platform

    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown"
    name = next(
        (line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), ""
    )
    flags = set(
        next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), [])
    )
    extensions = [flag for flag in ("avx2", "avx512f", "avx512_vnni", "avx_vnni") if flag in flags]
    return f"{name or platform.processor() or 'unknown'} ({', '.join(extensions) or 'no x86 vector flags'})"


if __name__ == "__main__":
    raise SystemExit(main())
