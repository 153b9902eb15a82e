"""Benchmark: mousecord's Predictor against nnU-Net v2's nnUNetPredictor, same model, volume and settings.

Both run the whole array-to-labels path (preprocess, sliding window with tile step 0.5 and Gaussian weighting,
no mirroring, export to a label map) on the same random-weight nnU-Net results folder, each in its own fresh
subprocess so that peak memory (``ru_maxrss``) is that predictor's alone. Both use the same number of torch
threads. Needs nnunetv2 (see .ci/run for the test-only install).

    python benchmarks/segment.py              # reference network (plans.json 3d_fullres, patch 256x96x96),
                                              # 200x200x500 volume: tens of minutes per predictor on a CPU
    python benchmarks/segment.py --quick      # 64x192x192 (z, y, x) crop, patch 64x96x96
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _rss_mb() -> float:
    with open("/proc/self/statm") as stream:
        return int(stream.read().split()[1]) * resource.getpagesize() / 2**20


def worker(which: str, folder: Path, image_path: Path, threads: int) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    image = np.load(image_path)  # (x, y, z) canonical RAS
    spacing = (0.05, 0.05, 0.05)
    if which == "mousecord":
        from mousecord.inference import InferenceConfig, Predictor
        from mousecord.models.nnunet import read_model_folder

        predictor = Predictor(read_model_folder(folder), InferenceConfig(device="cpu", threads=threads))
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
    parser.add_argument("--worker", choices=("mousecord", "nnunet"), help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--image", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.folder, args.image, args.threads)))
        return 0

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
            ]
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            results[which] = json.loads(output.strip().splitlines()[-1])
        agreement = float(
            np.mean(np.load(root / "labels_nnunet.npy") == np.load(root / "labels_mousecord.npy"))
        )
    print(f"volume (z, y, x) {tuple(shape)}, patch {tuple(patch)}, threads {args.threads}, no mirroring")
    for which, result in results.items():
        print(
            f"{which:>9}: {result['wall_s']:8.1f} s   peak RSS {result['peak_rss_mb']:7.0f} MB "
            f"(+{result['peak_over_baseline_mb']:.0f} MB during prediction)"
        )
    speedup = results["nnunet"]["wall_s"] / results["mousecord"]["wall_s"]
    memory = results["mousecord"]["peak_rss_mb"] / results["nnunet"]["peak_rss_mb"]
    print(
        f"speed-up (nnU-Net time / mousecord time): {speedup:.2f}x; peak memory ratio (mousecord / nnU-Net): "
        f"{memory:.2f}; label agreement {agreement:.6f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
