"""Evaluation metrics, morphometrics and the visual QC report (numpy, scipy, nibabel; no torch).

matplotlib is imported only inside the functions that draw. Submodules:

* :mod:`~mousecord.analysis.metrics`: array metrics (Dice, HD95, ...);
* :mod:`~mousecord.analysis.evaluation`: files, folders and BIDS datasets;
* :mod:`~mousecord.analysis.shape`: morphometrics;
* :mod:`~mousecord.analysis.qc`: the HTML QC report;
* :mod:`~mousecord.analysis.labelmaps`: label maps and GM/WM mask pairs.
"""

from mousecord.analysis.evaluation import (
    CaseResult,
    evaluate,
    format_summary,
    summarise,
    write_metrics_csv,
    write_metrics_json,
    write_per_slice_csv,
)
from mousecord.analysis.labelmaps import LabelSource, find_label_sources, label_source, load_label_map
from mousecord.analysis.metrics import (
    ClassMetrics,
    compare_label_maps,
    dice,
    hd95_mm,
    jaccard,
    mean_surface_distance_mm,
    surface_distances_mm,
)
from mousecord.analysis.qc import has_qc_entry, rebuild_index, render_qc_images, write_qc_entry
from mousecord.analysis.shape import (
    Morphometrics,
    centerline_polynomials,
    fit_centerline,
    morphometrics,
    morphometrics_file,
    plot_morphometrics,
    write_morphometrics_csv,
)

__all__ = [
    "CaseResult",
    "ClassMetrics",
    "LabelSource",
    "Morphometrics",
    "centerline_polynomials",
    "compare_label_maps",
    "dice",
    "evaluate",
    "find_label_sources",
    "fit_centerline",
    "format_summary",
    "hd95_mm",
    "jaccard",
    "label_source",
    "load_label_map",
    "mean_surface_distance_mm",
    "morphometrics",
    "morphometrics_file",
    "plot_morphometrics",
    "has_qc_entry",
    "rebuild_index",
    "render_qc_images",
    "summarise",
    "surface_distances_mm",
    "write_metrics_csv",
    "write_metrics_json",
    "write_morphometrics_csv",
    "write_per_slice_csv",
    "write_qc_entry",
]
