"""sRGB encoding and CIE Lab: the colour conversions the kiosk, calibration and training share.

Calibration (dark, flat, colour matrix) and the phone-optics simulator work
in linear light; images are stored and shown sRGB-encoded.
"""
from __future__ import annotations

import warnings

import numpy as np


def srgb_to_linear(x: np.ndarray) -> np.ndarray:
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4).astype(np.float32)


def linear_to_srgb(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055).astype(np.float32)


def colour_science():
    """colour-science, imported on first use (it takes a second to import; a kiosk without a
    colour profile never needs it)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # colour-science warns that matplotlib is absent
        import colour
    return colour


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB-encoded [0, 1] -> CIE Lab (D65)."""
    colour = colour_science()
    return colour.XYZ_to_Lab(colour.sRGB_to_XYZ(np.clip(rgb, 0, 1)))
