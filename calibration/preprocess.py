"""Applying a calibration profile to camera frames (the daemon's preprocessing).

Order: dark frame and flat-field in linear light, then the colour-correction
matrix, then back to sRGB encoding: the network sees what a calibrated
camera would have delivered. A model should be trained on pairs whose phone
side went through the same profile; the daemon warns when the model card
does not say so.
"""
from __future__ import annotations

import numpy as np

from calibration import colour as C
from calibration.flat import correct
from calibration.profile import Profile


class Preprocessor:
    def __init__(self, profile: Profile | None):
        self.profile = profile

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        """sRGB float [0,1] HxWx3 -> calibrated sRGB float [0,1]."""
        p = self.profile
        if p is None:
            return rgb
        out = rgb
        if p.flat is not None or p.dark is not None:
            out = correct(out, p.flat, p.dark)
        if p.colour:
            out = C.apply(out, np.asarray(p.colour["matrix"], np.float32), p.colour["method"])
        return np.clip(out, 0.0, 1.0).astype(np.float32)

    def describe(self) -> dict | None:
        return self.profile.describe() if self.profile else None
