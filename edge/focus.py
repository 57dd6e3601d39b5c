"""Focus: a sharpness score of the raw camera frame, and a meter that helps the operator find the best focus.

The score is the variance of the Laplacian of the frame's luminance, smoothed by a Gaussian of
NOISE_SIGMA first (a Laplacian of Gaussian: a phone sensor's noise and JPEG's block edges would
otherwise outweigh the sample's detail), at a fixed analysis width (so a capture's score means the same
whatever the camera's resolution): blur lowers it, detail raises it.
A sample's own contrast sets its scale, so the meter shows the score against the best seen lately
(a peak that decays over FOCUS_MEMORY_S): turning the focus knob, the operator sees the bar rise to
full at the sharpest position and fall on either side; below ADJUST of the peak it says "adjust focus".
"""
from __future__ import annotations

import math

import cv2
import numpy as np

ANALYSIS_WIDTH = 320       # px: the score is computed at this width
NOISE_SIGMA = 1.0          # px at the analysis width
FOCUS_MEMORY_S = 20.0      # the peak halves in this many seconds without a sharper frame
ADJUST = 0.6               # below this fraction of the peak: "adjust focus"


def focus_score(rgb: np.ndarray) -> float:
    """Variance of the Laplacian of Gaussian of the luminance (RGB uint8 or uint16), at ANALYSIS_WIDTH."""
    img = rgb if rgb.dtype == np.uint8 else (rgb >> 8).astype(np.uint8)
    h, w = img.shape[:2]
    if w > ANALYSIS_WIDTH:
        img = cv2.resize(img, (ANALYSIS_WIDTH, max(1, round(h * ANALYSIS_WIDTH / w))), interpolation=cv2.INTER_AREA)
    gray = cv2.GaussianBlur(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32), (0, 0), NOISE_SIGMA)
    return float(cv2.Laplacian(gray, cv2.CV_32F, ksize=3).var())


class FocusMeter:
    """The score against the best seen lately: level 0..1 and whether to say "adjust focus"."""

    def __init__(self, memory_s: float = FOCUS_MEMORY_S, adjust: float = ADJUST):
        self.memory_s, self.adjust = memory_s, adjust
        self.peak = 0.0
        self.t: float | None = None
        self.score = 0.0

    def update(self, score: float, t: float) -> float:
        """A new frame's score at time t (s); returns its level (score / decayed peak, 0..1)."""
        if self.t is not None:
            self.peak *= math.pow(0.5, max(0.0, t - self.t) / self.memory_s)
        self.t, self.score = t, score
        self.peak = max(self.peak, score)
        return self.level

    @property
    def level(self) -> float:
        return self.score / self.peak if self.peak > 0 else 0.0

    @property
    def adjust_focus(self) -> bool:
        return self.peak > 0 and self.level < self.adjust
