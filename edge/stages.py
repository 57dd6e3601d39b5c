"""The two pixel stages around the network in the daemon: Preprocess and Postprocess.

Preprocess is the only place a camera frame is resized, and it stays in the
frame's own integers: the calibration profile (at the camera's resolution,
where the flat and dark frames were taken) is applied in strips of rows, so
its float arithmetic never holds more than a strip; then for the preview
down to the preview width, its glass brought to the model's white (edge.glass),
and onto the model's input grid (the model card's
scale). What comes out is the engine's pixels: uint8, or FP16 in [0, 1] for
a camera with more than 8 bits where the engine takes them. Postprocess
turns the engine's output into the capture's integers: uint8 as it is, or
uint16 from FP16 when the format can hold them.
"""
from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

from edge.imageio import to_uint8, to_uint16
from edge.profile import Profile
from edge.sources import Frame

STRIP_ROWS = 32          # rows of a frame in float at a time (calibration, 16-bit conversion)


def to_float(image: np.ndarray) -> np.ndarray:
    """RGB uint8/uint16 -> float32 [0, 1]."""
    return image.astype(np.float32) / (65535.0 if image.dtype == np.uint16 else 255.0)


def _strips(h: int):
    for r in range(0, h, STRIP_ROWS):
        yield slice(r, min(h, r + STRIP_ROWS))


def fp16_pixels(image: np.ndarray) -> np.ndarray:
    """uint16 RGB -> FP16 [0, 1], a strip at a time."""
    out = np.empty(image.shape, np.float16)
    for rows in _strips(image.shape[0]):
        out[rows] = to_float(image[rows])
    return out


class Preprocess:
    def __init__(self, profile: Profile | None, to_model_grid: Callable[[np.ndarray], np.ndarray],
                 preview_width: int, pixel_type: Callable[[int], str] = lambda bits: "uint8",
                 balance: Callable[[np.ndarray], np.ndarray] = lambda img: img):
        """to_model_grid: the enhancer's resampling by the model's scale (shared with `enhance`);
        pixel_type: the engine's pixels for a frame of so many bits (Enhancer.pixel_type); balance: the
        enhancer's white balance on the glass (Enhancer.balanced), in the frame's own type."""
        self.profile, self.to_model_grid, self.preview_width = profile, to_model_grid, preview_width
        self.pixel_type, self.balance = pixel_type, balance

    def calibrated(self, frame: Frame) -> np.ndarray:
        """The frame with the calibration profile applied, in its own integer type (the frame itself
        without a profile); ValueError if the frame does not fit the profile."""
        img = frame.image
        if self.profile is None:
            return img
        self.profile.check_size(img.shape)
        out = np.empty_like(img)
        full = 65535.0 if img.dtype == np.uint16 else 255.0
        for rows in _strips(img.shape[0]):
            y = self.profile.apply(to_float(img[rows]), rows)
            out[rows] = np.round(y * full)        # apply() clips to [0, 1]
        return out

    def _pixels(self, img: np.ndarray) -> np.ndarray:
        if img.dtype == np.uint8:
            return img
        if self.pixel_type(16) == "float16":
            return fp16_pixels(img)
        return (img >> 8).astype(np.uint8)

    def capture(self, frame: Frame) -> np.ndarray:
        """Full resolution on the model's input grid, as the engine's pixels."""
        return self._pixels(self.to_model_grid(self.balance(self.calibrated(frame))))

    def preview(self, frame: Frame) -> tuple[np.ndarray, np.ndarray]:
        """(network input on the model grid as uint8 pixels, raw picture as RGB uint8), at most
        preview_width wide."""
        x, raw = self.calibrated(frame), frame.as_uint8()
        w = self.preview_width
        if x.shape[1] > w:
            size = (w, round(x.shape[0] * w / x.shape[1]))
            x = cv2.resize(x, size, interpolation=cv2.INTER_AREA)
            raw = cv2.resize(raw, size, interpolation=cv2.INTER_AREA)
        x = self.to_model_grid(self.balance(x))
        return (x if x.dtype == np.uint8 else (x >> 8).astype(np.uint8)), raw

    def describe(self) -> dict | None:
        return self.profile.describe() if self.profile else None


class Postprocess:
    def __init__(self, capture_format: str):
        self.sixteen_bit_ok = capture_format != "jpeg"

    def capture(self, enhanced: np.ndarray) -> np.ndarray:
        """The engine's pixels -> uint16 for a 16-bit camera (FP16 pixels, where the format holds
        them), else uint8 (as they are)."""
        if enhanced.dtype == np.uint8:
            return enhanced
        return _from_fp16(enhanced, to_uint16 if self.sixteen_bit_ok else to_uint8)

    @staticmethod
    def preview(enhanced: np.ndarray) -> np.ndarray:
        return enhanced if enhanced.dtype == np.uint8 else _from_fp16(enhanced, to_uint8)


def _from_fp16(px: np.ndarray, convert: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """FP16 pixels -> integers by `convert` (to_uint8/to_uint16), in float32 a strip at a time."""
    first = convert(px[:1].astype(np.float32))
    out = np.empty(px.shape, first.dtype)
    for rows in _strips(px.shape[0]):
        out[rows] = convert(px[rows].astype(np.float32))
    return out
