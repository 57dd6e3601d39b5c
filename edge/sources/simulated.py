"""The simulated phone camera: pans across the shipped sample slides.

Each pan position is a crop of a strip made of the sample reference images,
degraded by the phone-optics simulator as the default model's phone would
see it. Rendering a 1080p frame takes about a second on a CPU, so positions
are rendered once, in a background thread, and played in a loop at a steady
frame rate (the loop grows as positions become ready).
"""
from __future__ import annotations

import threading
import time

import cv2
import numpy as np

from edge import SAMPLES
from edge.imageio import read_rgb8
from edge.simulator import DEFAULT_PHONE, degrade
from edge.sources.base import Frame, Pacer, Source, SourceError

SLIDES = SAMPLES / "reference"


def slide_strip(height: int) -> np.ndarray:
    """The sample references side by side, scaled to `height`, first one repeated at the end to wrap."""
    refs = [read_rgb8(p) for p in sorted(SLIDES.glob("*.jpg"))]
    if not refs:
        raise SourceError(f"simulated: no sample slides in {SLIDES}")
    scaled = [cv2.resize(r, (max(1, round(r.shape[1] * height / r.shape[0])), height),
                         interpolation=cv2.INTER_CUBIC if height > r.shape[0] else cv2.INTER_AREA) for r in refs]
    return np.concatenate(scaled + scaled[:1], axis=1)


class SimulatedSource(Source):
    uri = "simulated"

    def __init__(self, width: int, height: int, fps: float, positions: int = 8):
        self.width, self.height, self.profile = width, height, DEFAULT_PHONE
        strip = slide_strip(height)
        span = strip.shape[1] - width
        if span < 0:
            strip = np.concatenate([strip] * (width // strip.shape[1] + 2), axis=1)
            span = strip.shape[1] - width
        self.strip = strip
        self.offsets = [int(round(span * k / max(1, positions - 1))) for k in range(positions)]
        self.frames: list[np.ndarray] = []
        self.pacer = Pacer(fps)
        self.seq = 0
        self.ready = threading.Event()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._render, name="simulated-camera", daemon=True)
        self.thread.start()

    def _render(self) -> None:
        for k, x in enumerate(self.offsets):
            if self.stop.is_set():
                return
            crop = self.strip[:, x:x + self.width]
            phone, _ = degrade(crop, self.profile, seed=k)
            self.frames.append(phone)
            self.ready.set()

    def read(self) -> Frame:
        if not self.ready.wait(timeout=60):
            raise SourceError("simulated: no frame rendered within 60 s")
        self.pacer.wait()
        n = len(self.frames)
        # ping-pong over the rendered positions: a smooth back-and-forth pan
        k = self.seq % max(1, 2 * n - 2) if n > 1 else 0
        k = k if k < n else 2 * n - 2 - k
        self.seq += 1
        return Frame(self.frames[k], self.seq, time.monotonic(),
                     {"simulated_position": k, "phone_profile": self.profile.name})

    def close(self) -> None:
        self.stop.set()
        # let a frame being rendered finish: native code still running at interpreter exit aborts
        self.thread.join(timeout=5)

    def describe(self) -> dict:
        return {"source": self.uri, "width": self.width, "height": self.height, "profile": self.profile.name}
