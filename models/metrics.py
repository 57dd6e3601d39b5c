"""Image-quality figures, computed with scikit-image and colour-science.

SSIM and PSNR on RGB in [0, 1]; CIEDE2000 on CIE Lab from sRGB (D65).
"""
from __future__ import annotations

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from edge.colourspace import colour_science, srgb_to_lab


def ssim(test: np.ndarray, ref: np.ndarray) -> float:
    return float(structural_similarity(ref, test, channel_axis=2, data_range=1.0))


def psnr(test: np.ndarray, ref: np.ndarray) -> float:
    return float(peak_signal_noise_ratio(ref, np.clip(test, 0, 1), data_range=1.0))


def ciede2000(test: np.ndarray, ref: np.ndarray) -> float:
    """Mean CIEDE2000 colour difference over all pixels."""
    return float(np.mean(colour_science().delta_E(srgb_to_lab(test), srgb_to_lab(ref), method="CIE 2000")))


def all_metrics(test: np.ndarray, ref: np.ndarray) -> dict:
    return {"ssim": ssim(test, ref), "psnr": psnr(test, ref), "ciede2000": ciede2000(test, ref)}
