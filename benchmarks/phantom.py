"""Time and peak memory of one default phantom (200 x 200 x 500 at 0.05 mm) against the targets.

    python benchmarks/phantom.py [--seed N] [--repeats N]

Each run happens in a fresh subprocess, so its peak resident memory (``ru_maxrss``) is the phantom's alone.
Targets on a 2-core machine: at most 15 s and 2 GB.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

TARGET_SECONDS = 15.0
TARGET_PEAK_GB = 2.0

_CHILD = """
import json, resource, sys, time
import numpy as np
from mousecord.phantom import PhantomConfig, generate_phantom
from mousecord.phantom.atlas import load_atlas_sections
load_atlas_sections()
baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
phantom = generate_phantom(PhantomConfig(), rng=np.random.default_rng(int(sys.argv[1])))
seconds = time.perf_counter() - started
peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "peak_gb": peak_kib / 2**20, "baseline_gb": baseline / 2**20,
                  "levels": phantom.parameters["levels_covered"]}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    ok = True
    for repeat in range(args.repeats):
        output = subprocess.run(
            [sys.executable, "-c", _CHILD, str(args.seed + repeat)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        result = json.loads(output.strip().splitlines()[-1])
        within = result["seconds"] <= TARGET_SECONDS and result["peak_gb"] <= TARGET_PEAK_GB
        ok &= within
        seconds, peak, baseline = result["seconds"], result["peak_gb"], result["baseline_gb"]
        levels = f"{result['levels'][0]}-{result['levels'][-1]}"
        print(
            f"seed {args.seed + repeat}: {seconds:.1f} s (target {TARGET_SECONDS:.0f} s), peak memory "
            f"{peak:.2f} GB (target {TARGET_PEAK_GB:.0f} GB; {baseline:.2f} GB before generating), "
            f"levels {levels}: {'OK' if within else 'OVER TARGET'}"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
