"""Colour calibration: a rendered chart with a known distortion comes back to mean CIEDE2000 <= 2."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from calibration import colour as C
from models.simulator import srgb_to_linear


def distorted_chart(seed=0):
    img, corners = C.render_chart()
    m = np.array([[0.8, 0.15, 0.05], [0.1, 0.75, 0.15], [0.05, 0.2, 0.75]], np.float32)
    m *= np.array([1.1, 1.0, 0.85], np.float32)[:, None]
    lin = np.clip(srgb_to_linear(img) @ m.T * 0.9, 0, 1)
    out = lin ** (1 / 2.4)  # a camera tone curve that is not sRGB
    out = out + np.random.default_rng(seed).normal(0, 0.01, out.shape)
    # photographed at an angle: a perspective warp, corners moved with it
    h, w = img.shape[:2]
    dst = np.array([[20, 10], [w + 10, 30], [w - 5, h + 25], [5, h - 10]], np.float32)
    p = cv2.getPerspectiveTransform(corners, dst)
    photo = cv2.warpPerspective(np.clip(out, 0, 1).astype(np.float32), p, (w + 40, h + 40))
    return photo, dst


def test_reference_chart_reads_back_exactly():
    img, corners = C.render_chart()
    assert C.delta_e(C.sample_patches(img, corners)).max() < 0.05
    assert C.reference_srgb().shape == (24, 3)


@pytest.mark.parametrize("method", ["linear", "root-polynomial"])
def test_known_distortion_is_corrected(method):
    photo, corners = distorted_chart()
    measured = C.sample_patches(photo, corners)
    before = C.delta_e(measured).mean()
    matrix = C.fit(measured, method)
    after = C.delta_e(C.apply(measured, matrix, method)).mean()
    assert before > 6.0 and after <= 2.0, (before, after)
