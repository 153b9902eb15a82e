"""The application layer: plan outputs for files, folders and BIDS datasets, segment cases over a loaded
Predictor, write outputs, sidecars and QC entries; the demo. ``inference`` below knows nothing of files."""

from mousecord.pipelines.demo import DEMO_SEED, DEMO_SHAPE_VOX, DemoResult, run_demo
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
