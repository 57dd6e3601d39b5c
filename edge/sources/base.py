"""What every camera source provides."""
from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np


class SourceError(Exception):
    """The camera failed or vanished; one line saying which and why."""


class CorruptFrame(SourceError):
    """One frame that cannot be used (undecodable, wrong shape); the camera itself may be fine."""


@dataclass
class Frame:
    image: np.ndarray            # RGB uint8, HxWx3
    seq: int                     # frame counter of this source
    t: float                     # time.monotonic() when grabbed
    settings: dict = field(default_factory=dict)  # camera settings worth recording with a capture


def as_rgb8(img: np.ndarray, bgr: bool = True) -> np.ndarray:
    """OpenCV-style frame (BGR/BGRA/gray, 8/16-bit) -> RGB uint8."""
    import cv2

    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB if bgr else cv2.COLOR_RGBA2RGB)
    return np.ascontiguousarray(img[..., ::-1]) if bgr else img


class Pacer:
    """Sleeps so that frames come at a steady rate (for replay and simulation)."""

    def __init__(self, fps: float):
        self.period = 1.0 / fps if fps > 0 else 0.0
        self.next = time.monotonic()

    def wait(self) -> None:
        self.next += self.period
        delay = self.next - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            self.next = time.monotonic()


class Source(ABC):
    uri: str = ""

    @abstractmethod
    def read(self) -> Frame:
        """The next frame; raises SourceError if there is none."""

    def close(self) -> None:
        pass

    def describe(self) -> dict:
        return {"source": self.uri}
