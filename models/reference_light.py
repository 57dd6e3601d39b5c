"""A benchtop reference's own uneven light, measured on its glass and taken off before it becomes a target.

A reference is what the network learns to produce and what it is judged against, so its lamp's fall-off is
in both. MP-IDB's Ovale scan darkens towards its right edge, and the quarter every run holds out is that
edge: the input (made from the reference) keeps the dark edge, the model renders the slide as lit like the
part it trained on, and the figures counted the lamp (calibrated model 23.40 dB against its input's 27.69
there; README, "The references' own light"). Such a reference is evened: its bare glass (bright and flat
against its neighbourhood's brightest) is fitted, per channel in log linear light, by a cubic surface
(held, beyond the glass, to the range it spans over it). A cubic cannot bend as late as Ovale's lamp falls:
the glass of the scan's last sixteenth stayed at 164-181 grey against the rest's 195, and 68 % of the
malaria model's squared error on the held-out quarter lay there. So a few passes find the glass again on
the copy evened so far and add its smoothed residual. Each pixel is divided by the light, scaled so that
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
REFINE = 3             # passes that follow, on the evened copy's glass, what the cubic surface misses
REACH = 1 / 16         # of the side: the scale over which a refining pass smooths the glass's residual light
GLASS_NEAR = 0.1       # glass fraction within that reach for the pass's residual to count in full
MAX_GAIN = 4.0         # beyond a field stop there is no light to even, only noise to raise


def _terms(x: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
    return [x ** i * y ** j for i in range(DEGREE + 1) for j in range(DEGREE + 1 - i)]


def _reduced(rgb: np.ndarray) -> np.ndarray:
    """A reduced linear-light copy of a uint8 RGB image (its light is smooth)."""
    h, w = rgb.shape[:2]
    f = min(1.0, MAX_SIDE / max(h, w))
    small = cv2.resize(rgb, (max(8, round(w * f)), max(8, round(h * f))), interpolation=cv2.INTER_AREA)
    return srgb_to_linear(small.astype(np.float32) / 255)


def _glass(lin: np.ndarray) -> np.ndarray:
    """Bare glass: bright against its neighbourhood's brightest, and flat."""
    lum = lin.mean(axis=2)
    k = max(3, max(lum.shape) // 8) | 1
    brightest = cv2.GaussianBlur(cv2.dilate(lum, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))),
                                 (0, 0), k / 4)
    g = cv2.GaussianBlur(lum, (0, 0), 1.0)
    grad = np.hypot(cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1))
    return (lum >= BRIGHT * brightest) & (grad < FLAT * brightest) & (lum > 0.02)


def _grid(shape: tuple[int, ...]) -> np.ndarray:
    """The polynomial's terms (h x w x terms) on x and y in [-1, 1]."""
    sh, sw = shape[:2]
    yy, xx = np.mgrid[0:sh, 0:sw].astype(np.float32)
    return np.stack(_terms(2 * xx / max(1, sw - 1) - 1, 2 * yy / max(1, sh - 1) - 1), axis=-1)


def _fit(lin: np.ndarray) -> tuple[np.ndarray, np.ndarray, float] | None:
    """light_field's measurement, on the reduced linear copy (evened reuses that copy)."""
    sh, sw = lin.shape[:2]
    glass = _glass(lin)
    if min(glass[a * sh // 3:(a + 1) * sh // 3, b * sw // 3:(b + 1) * sw // 3].mean()
           for a in range(3) for b in range(3)) < MIN_CELL:
        return None
    a = _grid(lin.shape)[glass]
    logs = np.log(np.maximum(lin[glass], 1e-4))
    coef = np.linalg.lstsq(a, logs, rcond=None)[0]
    res = logs - a @ coef
    keep = np.abs(res).max(axis=1) <= 2.5 * res.std(axis=0).max()   # cells' pale centres, dust
    coef = np.linalg.lstsq(a[keep], logs[keep], rcond=None)[0]
    on_glass = a @ coef
    lum = on_glass.mean(axis=1)
    return coef, np.stack([on_glass.min(axis=0), on_glass.max(axis=0)]), float(np.exp(lum.min() - lum.max()))


def light_field(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, float] | None:
    """Polynomial coefficients (terms x 3, log linear light, on x and y in [-1, 1]) of the light through
    the glass of a uint8 RGB image, the range (2 x 3) the surface spans over the glass (beyond the glass it
    is extrapolated, and held to that range), and its fall-off there (darkest / brightest, linear
    luminance); None where glass is not found all over the image."""
    return _fit(_reduced(rgb))


def _refined(lin: np.ndarray, log_light: np.ndarray) -> np.ndarray:
    """The log light with what a smooth surface misses added: a lamp's steep last stretch before the edge
    leaves glass too dark against its neighbourhood to pass as glass, so each pass finds the glass again on
    the copy evened so far and adds its residual (against that glass's median), smoothed over REACH of the
    side and faded out where glass is scarce."""
    reach = max(lin.shape[:2]) * REACH
    for _ in range(REFINE):
        flat = lin / np.exp(log_light)
        glass = _glass(np.clip(flat / flat.max(), 0, 1))
        if not glass.any():
            break
        logs = np.log(np.maximum(flat, 1e-4))
        m = glass.astype(np.float32)
        res = (logs - np.median(logs[glass], axis=0)) * m[..., None]
        near = cv2.GaussianBlur(m, (0, 0), reach)
        local = cv2.GaussianBlur(res, (0, 0), reach) / np.maximum(near, 1e-6)[..., None]
        log_light = log_light + local * np.clip(near / GLASS_NEAR, 0, 1)[..., None]
    return log_light


def evened(rgb: np.ndarray) -> tuple[np.ndarray, float | None]:
    """The reference with its light made even where it falls off below MIN_FALL (else itself), and the
    fall-off measured (None: no glass all over it)."""
    lin = _reduced(rgb)
    found = _fit(lin)
    if found is None:
        return rgb, None
    coef, span, fall = found
    if fall >= MIN_FALL:
        return rgb, fall
    log_light = _refined(lin, np.clip(_grid(lin.shape) @ coef.astype(np.float32), span[0], span[1]))
    h, w = rgb.shape[:2]
    log_light = cv2.resize(log_light.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    peak = np.unravel_index(np.argmax(log_light.mean(axis=2)), (h, w))
    gain = np.minimum(np.exp(log_light[peak] - log_light), MAX_GAIN)
    out = linear_to_srgb(np.clip(srgb_to_linear(rgb.astype(np.float32) / 255) * gain, 0, 1))
    return np.round(out * 255).astype(np.uint8), fall
