"""The one place that knows label values, names and colours.

Label maps in mousecord are ``uint8`` arrays holding 0 (background), 1 (GM) and 2 (WM), as in the reference
nnU-Net model and SCT's ``seg_mouse_gm_wm_t1w`` task. The cord is GM + WM.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np


class Label(IntEnum):
    BACKGROUND = 0
    GM = 1
    WM = 2


#: Labels that are tissue classes (everything but background), in label order.
TISSUE_LABELS: tuple[Label, ...] = (Label.GM, Label.WM)

#: Names used in file suffixes (``_GM_seg``), JSON keys and nnU-Net's dataset.json.
LABEL_NAMES: dict[Label, str] = {Label.BACKGROUND: "background", Label.GM: "GM", Label.WM: "WM"}

#: ``labels`` entry of an nnU-Net v2 dataset.json.
DATASET_JSON_LABELS: dict[str, int] = {LABEL_NAMES[label]: int(label) for label in Label}

#: Value nnU-Net v2 uses for "not annotated" when a dataset declares an ignore label (highest + 1).
IGNORE_VALUE: int = max(Label) + 1

#: QC overlay colours (RGB, 0-1): GM red and WM cyan, as in SCT's QC reports.
QC_COLOURS: dict[Label, tuple[float, float, float]] = {Label.GM: (1.0, 0.0, 0.0), Label.WM: (0.0, 1.0, 1.0)}

#: Name of the union of GM and WM in metrics and morphometrics.
CORD_NAME = "cord"


def check_label_values(label_map: np.ndarray, *, name: str, allow_ignore: bool = False) -> None:
    """Raise :class:`~mousecord.errors.ImageFormatError` if ``label_map`` holds values other than 0/1/2.

    Args:
        label_map: integer or float array of any shape.
        name: what to call the array in the message (usually its file name).
        allow_ignore: also accept :data:`IGNORE_VALUE`.
    """
    from mousecord.errors import ImageFormatError

    allowed = {int(label) for label in Label} | ({IGNORE_VALUE} if allow_ignore else set())
    values = np.unique(label_map)
    bad = [value for value in values.tolist() if value not in allowed]
    if bad:
        shown = ", ".join(f"{value:g}" for value in bad[:5])
        raise ImageFormatError(
            f"{name}: expected label values {sorted(allowed)}, found {shown}"
            + (" ..." if len(bad) > 5 else "")
        )
