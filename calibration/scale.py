"""Pixel size from a photographed stage micrometer: the ruling's period, found by FFT.

A stage micrometer is a ruling of parallel lines at a known spacing (10 um on
the common 1 mm / 100 division slides). Its image is periodic across the
lines, so the strongest peak of the windowed 2-D spectrum gives the period
and the direction to a bin; the period is then refined to a small fraction
of a pixel by maximising the Fourier amplitude of the image projected across
the lines (a periodogram at non-integer periods, which the bin grid of the
FFT cannot resolve). A peak whose half or third frequency is nearly as strong
is a harmonic of thin lines, and the fundamental is taken instead. The
spacing in um divided by the period in px is the camera's pixel size.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Ruling:
    period_px: float          # camera pixels from one line to the next
    angle_deg: float          # direction across the lines, from the image's x axis
    contrast: float           # the peak's amplitude over the spectrum's median: how clearly periodic


class NoRuling(ValueError):
    """The image shows no clear periodic ruling."""


MIN_CONTRAST = 8.0
BIN_PX = 0.05            # projection bins: a phase error of at most 2 pi * 0.025 / period


def _gray(rgb: np.ndarray) -> np.ndarray:
    g = np.asarray(rgb, np.float64)
    if g.ndim == 3:
        g = g[..., :3].mean(axis=2)
    return g


def _amplitude(g: np.ndarray, ys: np.ndarray, xs: np.ndarray, freq: np.ndarray, angle: float) -> np.ndarray:
    """|sum g * exp(-2 pi i f t)| for each frequency f, t the coordinate across the lines: the image is
    first summed into bins of BIN_PX along t (a projection across the lines), which is exact to the bin."""
    t = xs * np.cos(angle) + ys * np.sin(angle)
    lo = t.min()
    profile = np.bincount(((t - lo) / BIN_PX).astype(np.int64).ravel(), weights=g.ravel())
    centres = lo + (np.arange(profile.size) + 0.5) * BIN_PX
    keep = profile != 0
    return np.abs(np.exp(-2j * np.pi * np.outer(freq, centres[keep])) @ profile[keep])


def measure(rgb: np.ndarray, min_period: float = 3.0) -> Ruling:
    """The ruling's period in pixels and its direction; NoRuling when the image is not clearly periodic."""
    g = _gray(rgb)
    h, w = g.shape
    if min(h, w) < 32:
        raise NoRuling(f"image {w}x{h} is too small to find a ruling")
    # half resolution for the search is plenty for the FFT's bin-level estimate on large images
    step = max(1, int(min(h, w) // 1024))
    s = g[::step, ::step]
    s = s - s.mean()
    sh, sw = s.shape
    win = np.outer(np.hanning(sh), np.hanning(sw))
    spec = np.abs(np.fft.rfft2(s * win))
    fy = np.fft.fftfreq(sh)[:, None] / step
    fx = np.fft.rfftfreq(sw)[None, :] / step
    fr = np.hypot(fy, fx)
    spec[(fr < 1.0 / max(h, w) * 3) | (fr > 1.0 / min_period)] = 0.0
    iy, ix = np.unravel_index(np.argmax(spec), spec.shape)
    peak = spec[iy, ix]
    # against the spectrum at the same frequencies in every direction: a ruling is one direction,
    # texture (cells, dust, noise) is in all of them
    ring = spec[np.abs(fr - fr[iy, ix]) < 0.1 * fr[iy, ix]]
    contrast = float(peak / max(np.median(ring), 1e-12))
    if contrast < MIN_CONTRAST:
        raise NoRuling(f"no periodic ruling found (peak {contrast:.1f}x the spectrum at that frequency, "
                       f"needs {MIN_CONTRAST:.0f}x): is the micrometer in focus and in the field?")
    f0, angle = float(fr[iy, ix]), float(np.arctan2(fy[iy, 0], fx[0, ix]))
    # thin lines: harmonics as strong as the fundamental; prefer the lowest of them that is nearly as strong
    for k in (3, 2):
        fk = (fy[iy, 0] / k, fx[0, ix] / k)
        jy = int(round(fk[0] * step * sh)) % sh
        jx = int(round(fk[1] * step * sw))
        if 0 <= jx < spec.shape[1]:
            region = spec[max(0, jy - 1):jy + 2, max(0, jx - 1):jx + 2]
            if region.size and region.max() > 0.5 * peak and 1.0 / (f0 / k) < max(h, w) / 3:
                f0 /= k
                break
    # refine period and direction on the full image
    gs = g - g.mean()
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    ys, xs = ys - h / 2, xs - w / 2
    bin_df = 1.0 / min(h, w)
    for span in (bin_df, bin_df / 10, bin_df / 100):
        freqs = f0 + np.linspace(-span, span, 21)
        best = (-1.0, f0, angle)
        for a in angle + np.linspace(-span, span, 9) / f0:
            amp = _amplitude(gs, ys, xs, freqs, a)
            i = int(np.argmax(amp))
            if amp[i] > best[0]:
                best = (float(amp[i]), float(freqs[i]), float(a))
        _, f0, angle = best
    # a final parabola through the best frequency and its neighbours
    df = bin_df / 1000
    a3 = _amplitude(gs, ys, xs, np.array([f0 - df, f0, f0 + df]), angle)
    denom = a3[0] - 2 * a3[1] + a3[2]
    if denom < 0:
        f0 += df * 0.5 * (a3[0] - a3[2]) / denom
    deg = float(np.degrees(angle)) % 180.0
    return Ruling(period_px=1.0 / f0, angle_deg=round(deg, 3), contrast=round(contrast, 1))


def pixel_size_um(rgb: np.ndarray, spacing_um: float) -> tuple[float, Ruling]:
    """(um per camera pixel, the ruling) for a micrometer whose lines are spacing_um apart."""
    if not spacing_um > 0:
        raise ValueError("the ruling's spacing must be a positive number of micrometres")
    r = measure(rgb)
    return spacing_um / r.period_px, r
