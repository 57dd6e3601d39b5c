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


MIN_SIDE = 16     # a frame smaller than this is a driver fault, not a picture


@dataclass(frozen=True)
class Frame:
    """One camera frame, checked when it is made: a source cannot hand the pipeline a bad one."""

    image: np.ndarray            # RGB, HxWx3, uint8 or uint16
    seq: int                     # frame counter of this source
    t: float                     # host time.monotonic() when grabbed
    settings: dict = field(default_factory=dict)  # camera settings worth recording with a capture
    sensor_t: float | None = None  # the sensor's own timestamp (s), where the source has one

    def __post_init__(self):
        img = self.image
        if not isinstance(img, np.ndarray) or img.dtype not in (np.uint8, np.uint16) or img.ndim != 3 \
                or img.shape[2] != 3 or img.shape[0] < MIN_SIDE or img.shape[1] < MIN_SIDE:
            what = [type(img).__name__, getattr(img, "shape", None), getattr(img, "dtype", None)]
            raise CorruptFrame(f"corrupt frame ({' '.join(str(w) for w in what if w is not None)})")
        if not isinstance(self.seq, int) or isinstance(self.seq, bool) or self.seq < 0:
            raise CorruptFrame(f"corrupt frame: sequence number {self.seq!r}")
        if not isinstance(self.t, float) or self.t != self.t:
            raise CorruptFrame(f"corrupt frame: grab time {self.t!r}")

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)"""
        return self.image.shape[1], self.image.shape[0]

    def as_uint8(self) -> np.ndarray:
        return self.image if self.image.dtype == np.uint8 else (self.image >> 8).astype(np.uint8)


def as_rgb8(img: np.ndarray, bgr: bool = True) -> np.ndarray:
    """OpenCV-style frame (BGR/BGRA/gray, 8/16-bit) -> RGB uint8. A BGR uint8 frame is converted in its
    own buffer (sources pass frames they have just decoded or grabbed and own): a second frame-sized copy
    on every read was 24 MB more at an 8 MP camera's peak."""
    import cv2

    from edge.imageio import swap_rb

    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB if bgr else cv2.COLOR_RGBA2RGB)
    if not bgr:
        return img
    return img if swap_rb(img) else np.ascontiguousarray(img[..., ::-1])


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
    # frames a driver may have queued while the reader paused (a capture's rest, edge/camera_reader.py):
    # exposed before the pause ended, so the reader drops them
    held_frames: int = 0

    @abstractmethod
    def read(self) -> Frame:
        """The next frame; raises SourceError if there is none."""

    def close(self) -> None:
        pass

    def describe(self) -> dict:
        return {"source": self.uri}
