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

from edge.imageio import read_image
from models.data import list_images
from models.simulator import linear_to_srgb, srgb_to_linear


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


def correct(rgb: np.ndarray, flat: np.ndarray | None, dark: np.ndarray | None) -> np.ndarray:
    """(x - dark) / flat in linear light, for sRGB float input; frames of another size are refused."""
    lin = srgb_to_linear(rgb)
    for name, arr in (("dark", dark), ("flat", flat)):
        if arr is not None and arr.shape != lin.shape:
            raise ValueError(f"frame {lin.shape[1]}x{lin.shape[0]} does not match the {name} frame "
                             f"{arr.shape[1]}x{arr.shape[0]}: recalibrate at this camera size")
    if dark is not None:
        lin = lin - dark
    if flat is not None:
        lin = lin / flat
    return linear_to_srgb(lin)
