"""Flat-field and dark frame from averaged captures.

Frames are averaged in linear light (sRGB decoded), so that the correction
(x - dark) / flat is a physical one: vignetting and uneven illumination are
a multiplicative gain, sensor offset an additive one. The flat is normalised
to mean 1 after the dark is taken off, and lightly smoothed so that it
carries the illumination, not the dust or the noise of the frames.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edge.colourspace import srgb_to_linear
from edge.imageio import list_images, read_image


def average(paths: list[Path]) -> np.ndarray:
    """Mean of frames in linear RGB; all frames must have one size."""
    if not paths:
        raise ValueError("no frames to average")
    acc, shape = None, None
    for p in paths:
        img = srgb_to_linear(read_image(p)[0])
        if shape is None:
            shape, acc = img.shape, np.zeros(img.shape, np.float64)
        elif img.shape != shape:
            raise ValueError(f"{p}: size {img.shape[1]}x{img.shape[0]} differs from {shape[1]}x{shape[0]}")
        acc += img
    return (acc / len(paths)).astype(np.float32)


def make_flat(frames: list[Path], dark: np.ndarray | None = None, smooth_sigma: float = 8.0) -> np.ndarray:
    mean = average(frames)
    if dark is not None:
        if dark.shape != mean.shape:
            raise ValueError("dark frame and flat frames differ in size")
        mean = mean - dark
    mean = cv2.GaussianBlur(mean, (0, 0), smooth_sigma) if smooth_sigma > 0 else mean
    mean = np.maximum(mean, 1e-4)
    return (mean / mean.reshape(-1, 3).mean(axis=0)).astype(np.float32)


def frames_in(path: str | Path) -> list[Path]:
    return list_images([path])
