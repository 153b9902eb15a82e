"""Memory a prediction will need, and memory the machine has: checked before resampling, the step that
turns a wrong header voxel size into an image too large to hold.

The estimate is linear in the number of voxels at the model's spacing. Its rate, 64 bytes per network
voxel over a fixed 0.5 GB for the libraries and the network, is set from measured peaks and rounded up:
1.42 GB for a 200 x 200 x 500 volume (2e7 voxels) with the in-plane default model, and the kernel's kill
at 23 GB of a 0.5 x 0.5 x 7.5 mm scan resampled by a 3D model to 0.05 mm (3.6e8 voxels): the input,
the resampled copy, per-class logits and their accumulators, argmax and export copies.
"""

from __future__ import annotations

import os
from pathlib import Path

#: Libraries, network weights and workspace, independent of the image.
BASE_BYTES = 500_000_000
#: Peak bytes per voxel at the model's spacing (see the module docstring).
BYTES_PER_NETWORK_VOXEL = 64


def estimate_peak_bytes(network_voxels: int) -> int:
    """Peak resident memory of segmenting an image of ``network_voxels`` voxels at the model's spacing."""
    return BASE_BYTES + BYTES_PER_NETWORK_VOXEL * int(network_voxels)


def slab_slices_that_fit(
    available_bytes: int, *, voxels_per_slice: int, resident_bytes: int, context_slices: int
) -> int:
    """Slices an in-plane model can segment at once in ``available_bytes``: what is left after the
    whole-image arrays that stay (``resident_bytes``: the input copy, the label map...) at
    :data:`BYTES_PER_NETWORK_VOXEL` per network voxel, less the ``context_slices`` read on each side of a
    slab. 0 where not even one slice fits."""
    budget = available_bytes - BASE_BYTES - resident_bytes
    per_slice = BYTES_PER_NETWORK_VOXEL * max(int(voxels_per_slice), 1)
    return max(budget // per_slice - 2 * context_slices, 0)


def available_memory_bytes() -> int | None:
    """Memory this process can still take: the lower of the system's available memory and what a cgroup
    (container, batch-system job) limit leaves; None where neither can be read."""
    candidates = [value for value in (_meminfo_available(), _cgroup_headroom()) if value is not None]
    if not candidates and hasattr(os, "sysconf"):
        try:
            candidates.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError):
            pass
    return min(candidates) if candidates else None


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_headroom() -> int | None:
    """cgroup v2 ``memory.max - memory.current``, or v1 ``limit_in_bytes - usage_in_bytes``."""
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    ):
        try:
            limit = Path(limit_file).read_text().strip()
            usage = int(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit == "max" or int(limit) >= 1 << 60:  # no limit
            return None
        return max(int(limit) - usage, 0)
    return None


__all__ = ["available_memory_bytes", "estimate_peak_bytes", "slab_slices_that_fit"]
