"""Colour calibration: a rendered chart with a known distortion comes back to mean CIEDE2000 <= 2."""
from __future__ import annotations

import pytest

from calibration import colour as C
from edge.profile import apply_ccm
from tests.helpers import distorted_chart


def test_reference_chart_reads_back_exactly():
    img, corners = C.render_chart()
    assert C.delta_e(C.sample_patches(img, corners)).max() < 0.05
    assert C.reference_srgb().shape == (24, 3)


@pytest.mark.parametrize("method", ["linear", "root-polynomial", "vandermonde"])
def test_known_distortion_is_corrected(method):
    photo, corners = distorted_chart()
    measured = C.sample_patches(photo, corners)
    before = C.delta_e(measured).mean()
    matrix = C.fit(measured, method)
    after = C.delta_e(apply_ccm(measured, matrix, method)).mean()
    assert before > 6.0 and after <= 2.0, (before, after)
