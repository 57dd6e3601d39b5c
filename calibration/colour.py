"""Colour calibration from a photographed 24-patch colour chart: the chart, sampling and fit live in
edge/colourchart.py (the simulator calibrates its phones with them too); this adds the per-patch CIEDE2000
that `phonescope calibrate colour` reports.
"""
from __future__ import annotations

import numpy as np

from edge.colourchart import CHART, COLS, ROWS, fit, reference_srgb, render_chart, sample_patches  # noqa: F401
from edge.colourspace import colour_science, srgb_to_lab

colour = colour_science()


def delta_e(patches_srgb: np.ndarray) -> np.ndarray:
    """CIEDE2000 of each patch against the chart's reference."""
    return np.asarray(colour.delta_E(srgb_to_lab(patches_srgb), srgb_to_lab(reference_srgb()),
                                     method="CIE 2000"), np.float32)
