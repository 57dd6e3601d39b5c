"""A benchtop reference's own uneven light, measured on its glass and taken off before it becomes a target.

A reference is what the network learns to produce and what it is judged against, so its lamp's fall-off is
in both. MP-IDB's Ovale scan darkens towards its right edge, and the quarter every run holds out is that
edge: the input (made from the reference) keeps the dark edge, the model renders the slide as lit like the
part it trained on, and the figures counted the lamp (calibrated model 23.40 dB against its input's 27.69
there; README, "The references' own light"). Such a reference is evened: its bare glass (bright and flat
against its neighbourhood's brightest) is fitted, per channel in log linear light, by a cubic surface
(held, beyond the glass, to the range it spans over it), and each pixel is divided by it, scaled so that
the brightest glass keeps its level and colour. Only where glass is found all over the image (each ninth
of it) and its light falls below MIN_FALL of its peak: of the shared images with glass all over, the
median falls to 0.74 (the BCCD smears' gentle gradient, part of the slides every model was measured on),
Ovale to 0.55; a tissue section edge to edge has no glass to measure its light by.
"""
from __future__ import annotations

import cv2
import numpy as np

from edge.colourspace import linear_to_srgb, srgb_to_linear

MAX_SIDE = 256         # the field is measured on a reduced copy (it is smooth)
DEGREE = 3             # of the polynomial surface in x, y
BRIGHT = 0.85          # glass: within this fraction of its neighbourhood's brightest (an eighth of the side)...
FLAT = 0.16            # ... and a Sobel gradient under this fraction of that brightness
MIN_CELL = 0.03        # glass fraction each ninth of the image needs, or the surface is extrapolated
MIN_FALL = 0.6         # darkest / brightest of the fitted light (linear) under which a reference is evened


def _terms(x: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
    return [x ** i * y ** j for i in range(DEGREE + 1) for j in range(DEGREE + 1 - i)]


def light_field(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, float] | None:
    """Polynomial coefficients (terms x 3, log linear light, on x and y in [-1, 1]) of the light through
    the glass of a uint8 RGB image, the range (2 x 3) the surface spans over the glass (beyond the glass it
    is extrapolated, and held to that range), and its fall-off there (darkest / brightest, linear
    luminance); None where glass is not found all over the image."""
    h, w = rgb.shape[:2]
    f = min(1.0, MAX_SIDE / max(h, w))
    small = cv2.resize(rgb, (max(8, round(w * f)), max(8, round(h * f))), interpolation=cv2.INTER_AREA)
    lin = srgb_to_linear(small.astype(np.float32) / 255)
    lum = lin.mean(axis=2)
    sh, sw = lum.shape
    k = max(3, max(sh, sw) // 8) | 1
    brightest = cv2.GaussianBlur(cv2.dilate(lum, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))),
                                 (0, 0), k / 4)
    g = cv2.GaussianBlur(lum, (0, 0), 1.0)
    grad = np.hypot(cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1))
    glass = (lum >= BRIGHT * brightest) & (grad < FLAT * brightest) & (lum > 0.02)
    if min(glass[a * sh // 3:(a + 1) * sh // 3, b * sw // 3:(b + 1) * sw // 3].mean()
           for a in range(3) for b in range(3)) < MIN_CELL:
        return None
    yy, xx = np.mgrid[0:sh, 0:sw].astype(np.float32)
    x, y = 2 * xx / (sw - 1) - 1, 2 * yy / (sh - 1) - 1
    a = np.stack([t[glass] for t in _terms(x, y)], axis=1)
    logs = np.log(np.maximum(lin[glass], 1e-4))
    coef = np.linalg.lstsq(a, logs, rcond=None)[0]
    res = logs - a @ coef
    keep = np.abs(res).max(axis=1) <= 2.5 * res.std(axis=0).max()   # cells' pale centres, dust
    coef = np.linalg.lstsq(a[keep], logs[keep], rcond=None)[0]
    on_glass = a @ coef
    lum = on_glass.mean(axis=1)
    return coef, np.stack([on_glass.min(axis=0), on_glass.max(axis=0)]), float(np.exp(lum.min() - lum.max()))


def evened(rgb: np.ndarray) -> tuple[np.ndarray, float | None]:
    """The reference with its light made even where it falls off below MIN_FALL (else itself), and the
    fall-off measured (None: no glass all over it)."""
    found = light_field(rgb)
    if found is None:
        return rgb, None
    coef, span, fall = found
    if fall >= MIN_FALL:
        return rgb, fall
    h, w = rgb.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    x, y = 2 * xx / max(1, w - 1) - 1, 2 * yy / max(1, h - 1) - 1
    log_light = np.clip(np.stack(_terms(x, y), axis=-1) @ coef.astype(np.float32), span[0], span[1])
    peak = np.unravel_index(np.argmax(log_light.mean(axis=2)), (h, w))
    gain = np.exp(log_light[peak] - log_light)
    out = linear_to_srgb(np.clip(srgb_to_linear(rgb.astype(np.float32) / 255) * gain, 0, 1))
    return np.round(out * 255).astype(np.uint8), fall
