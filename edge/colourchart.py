"""The 24-patch colour chart: its reference values, a rendering, patch sampling and the colour-correction fit.

Reference values are colour-science's ColorChecker24 (after November 2014),
adapted to D65 and expressed in linear sRGB. The fit is colour-science's
colour-correction matrix on linear RGB: 'linear' (a 3x3 matrix, Cheung 2004
with 3 terms) or 'root-polynomial' (Finlayson 2015, degree 2, which is
exposure-invariant) or 'vandermonde' (degree 2: each channel's square, value and an offset,
mixed: a phone's tone curve as well as its cross-talk). The patches are sampled from the photo after a
perspective warp given by the chart's four corners. In edge/ because two
sides use it: `phonescope calibrate colour` on a photographed chart, and the
simulator, which calibrates its simulated phones as a technician would.
"""
from __future__ import annotations

import functools

import cv2
import numpy as np

from edge.colourspace import colour_science, srgb_to_linear
from edge.profile import CCM_METHODS as METHODS

CHART = "ColorChecker24 - After November 2014"
ROWS, COLS = 4, 6


def reference_srgb() -> np.ndarray:
    """The 24 patches as sRGB-encoded values in [0, 1] (D65), row by row."""
    colour = colour_science()
    cc = colour.CCS_COLOURCHECKERS[CHART]
    xyy = np.array(list(cc.data.values()))
    xyz = colour.xyY_to_XYZ(xyy)
    rgb = colour.XYZ_to_sRGB(xyz, illuminant=cc.illuminant, chromatic_adaptation_transform="Bradford")
    return np.clip(rgb, 0, 1).astype(np.float32)


def render_chart(patch: int = 60, gap: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic chart image (sRGB float) and its corner points (TL, TR, BR, BL) for tests and demos."""
    ref = reference_srgb()
    h = ROWS * patch + (ROWS + 1) * gap
    w = COLS * patch + (COLS + 1) * gap
    img = np.full((h, w, 3), 0.05, np.float32)
    for i in range(ROWS):
        for j in range(COLS):
            y, x = gap + i * (patch + gap), gap + j * (patch + gap)
            img[y:y + patch, x:x + patch] = ref[i * COLS + j]
    corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
    return img, corners


def sample_patches(img: np.ndarray, corners: np.ndarray, inner: float = 0.5) -> np.ndarray:
    """Median colour of the central part of each patch; corners are the chart's outer corners."""
    cw, ch = 600, 400
    dst = np.array([[0, 0], [cw, 0], [cw, ch], [0, ch]], np.float32)
    m = cv2.getPerspectiveTransform(np.asarray(corners, np.float32), dst)
    flat = cv2.warpPerspective(img.astype(np.float32), m, (cw, ch), flags=cv2.INTER_AREA)
    out = np.zeros((ROWS * COLS, 3), np.float32)
    pw, ph = cw / COLS, ch / ROWS
    for i in range(ROWS):
        for j in range(COLS):
            cy, cx = (i + 0.5) * ph, (j + 0.5) * pw
            ry, rx = ph * inner * 0.5 * 0.7, pw * inner * 0.5 * 0.7
            roi = flat[int(cy - ry):int(cy + ry), int(cx - rx):int(cx + rx)]
            out[i * COLS + j] = np.median(roi.reshape(-1, 3), axis=0)
    return out


def fit(measured_srgb: np.ndarray, method: str = "root-polynomial") -> np.ndarray:
    """Colour-correction matrix on linear RGB from measured to reference patches."""
    name, kw = METHODS[method]
    return np.asarray(colour_science().characterisation.matrix_colour_correction(
        srgb_to_linear(measured_srgb), srgb_to_linear(reference_srgb()), method=name, **kw), np.float32)


# How the simulator calibrates its phones, and `phonescope calibrate colour` by default: over the randomised
# family's held-out fields, calibrated inputs came within CIEDE2000 4.09 (malaria) and 4.11 (blood) of their
# references with it, 5.73 and 4.61 with root-polynomial, whose residue (the tone curves) was biased
# across the family: its average correction cost the default phone 1.7 dB.
SIMULATED_METHOD = "vandermonde"


@functools.lru_cache(maxsize=1)
def _chart_to_photograph() -> tuple[np.ndarray, np.ndarray]:
    """The chart every simulated phone photographs (rendered once per process: a third of a calibration)."""
    chart, corners = render_chart(patch=120, gap=24)
    chart.setflags(write=False)
    corners.setflags(write=False)
    return chart, corners


@functools.lru_cache(maxsize=64)
def simulated_phone_ccm(phone, seed: int = 0, method: str = SIMULATED_METHOD) -> np.ndarray:
    """The colour profile a technician would make of a simulated phone (edge.simulator.PhoneOptics): the
    chart photographed through it after flat-field correction (so without vignetting), fitted as
    `phonescope calibrate colour` does. Training and held-out pairs made through it see a phone's colour
    response measured, as a calibrated kiosk does, instead of guessed from a tile. Kept per phone and seed
    (read-only): held-out draws of one phone share one profile, as one kiosk keeps one."""
    from edge.simulator import degrade

    chart, corners = _chart_to_photograph()
    shot, _ = degrade(chart, phone.replace(vignetting=0.0), seed=seed)
    ccm = fit(sample_patches(shot.astype(np.float32) / 255.0, corners * (shot.shape[1] / chart.shape[1])), method)
    ccm.setflags(write=False)
    return ccm


def calibrated_like_a_kiosk(phone_image: np.ndarray, phone, seed: int = 0) -> np.ndarray:
    """A simulated phone's uint8 image as a kiosk with that phone's colour profile hands it to the model."""
    from edge.imageio import to_uint8
    from edge.profile import apply_ccm

    return to_uint8(apply_ccm(phone_image.astype(np.float32) / 255.0, simulated_phone_ccm(phone, seed),
                              SIMULATED_METHOD))
