"""The two pixel stages around the network in the daemon: Preprocess and Postprocess.

Preprocess is the only place a camera frame is resized: uint8/uint16 ->
float [0, 1], the calibration profile (at the camera's own resolution, where
the flat and dark frames were taken), then for the preview down to the
preview width, and onto the model's input grid (the model card's scale).
Postprocess turns the network's float output back into integers: uint8, or
uint16 when the camera gave more than 8 bits and the format can hold them.
"""
from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

from edge.imageio import to_uint8, to_uint16
from edge.profile import Profile
from edge.sources import Frame


def to_float(image: np.ndarray) -> np.ndarray:
    """RGB uint8/uint16 -> float32 [0, 1]."""
    return image.astype(np.float32) / (65535.0 if image.dtype == np.uint16 else 255.0)


class Preprocess:
    def __init__(self, profile: Profile | None, to_model_grid: Callable[[np.ndarray], np.ndarray],
                 preview_width: int):
        """to_model_grid: the enhancer's resampling by the model's scale (shared with `enhance`)."""
        self.profile, self.to_model_grid, self.preview_width = profile, to_model_grid, preview_width

    def calibrated(self, frame: Frame) -> np.ndarray:
        """Float RGB with the calibration profile applied; ValueError if the frame does not fit it."""
        x = to_float(frame.image)
        return self.profile.apply(x) if self.profile is not None else x

    def capture(self, frame: Frame) -> np.ndarray:
        """Full resolution, on the model's input grid."""
        return self.to_model_grid(self.calibrated(frame))

    def preview(self, frame: Frame) -> tuple[np.ndarray, np.ndarray]:
        """(network input on the model grid, raw picture as RGB uint8) at most preview_width wide."""
        x, raw = self.calibrated(frame), frame.as_uint8()
        w = self.preview_width
        if x.shape[1] > w:
            size = (w, round(x.shape[0] * w / x.shape[1]))
            x = cv2.resize(x, size, interpolation=cv2.INTER_AREA)
            raw = cv2.resize(raw, size, interpolation=cv2.INTER_AREA)
        return self.to_model_grid(x), raw

    def describe(self) -> dict | None:
        return self.profile.describe() if self.profile else None


class Postprocess:
    def __init__(self, capture_format: str):
        self.sixteen_bit_ok = capture_format != "jpeg"

    def capture(self, enhanced: np.ndarray, frame: Frame) -> np.ndarray:
        """Float [0, 1] -> uint16 for a 16-bit camera (where the format holds it), else uint8."""
        if frame.image.dtype == np.uint16 and self.sixteen_bit_ok:
            return to_uint16(enhanced)
        return to_uint8(enhanced)

    @staticmethod
    def preview(enhanced: np.ndarray) -> np.ndarray:
        return to_uint8(enhanced)
