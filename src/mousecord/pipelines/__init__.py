"""The application layer: plan outputs for files, folders and BIDS datasets, segment cases over a loaded
Predictor, write outputs, sidecars and QC entries; the demo. ``inference`` below knows nothing of files.

The demo (which needs the phantom and the metrics) is imported on first use of one of its names, so that
segmenting does not pay for it."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from mousecord.pipelines.plan import OUTPUT_FORMATS, OUTPUT_SUFFIXES, CaseOutputs, plan_outputs
from mousecord.pipelines.segment import (
    EXIT_NO_CORD,
    LoadedCase,
    SegmentOptions,
    SegmentReport,
    load_case,
    segment,
    segment_case,
    segment_cases,
    segment_loaded_case,
)

if TYPE_CHECKING:
    from mousecord.pipelines.demo import DEMO_SEED, DEMO_SHAPE_VOX, DemoResult, run_demo  # noqa: F401

_DEMO_NAMES = ("DEMO_SEED", "DEMO_SHAPE_VOX", "DemoResult", "run_demo")

__all__ = [
    "DEMO_SEED",
    "DEMO_SHAPE_VOX",
    "EXIT_NO_CORD",
    "OUTPUT_FORMATS",
    "OUTPUT_SUFFIXES",
    "CaseOutputs",
    "DemoResult",
    "LoadedCase",
    "SegmentOptions",
    "SegmentReport",
    "load_case",
    "plan_outputs",
    "run_demo",
    "segment",
    "segment_case",
    "segment_cases",
    "segment_loaded_case",
]


def __getattr__(name: str) -> Any:
    if name in _DEMO_NAMES:
        return getattr(importlib.import_module("mousecord.pipelines.demo"), name)
    raise AttributeError(f"module 'mousecord.pipelines' has no attribute {name!r}")
