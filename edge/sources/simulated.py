"""The simulated phone camera: pans within one sample slide at a time, drifting in and out of focus.

Each slide (a shipped reference image, scaled to cover the frame) is panned across in POSITIONS steps
of HOLD_S each; along the pan the focus drifts slowly from defocused (a Gaussian, DEFOCUS of the width)
through sharp and back, so the preview's focus bar can be seen working. Every position is degraded by
the phone-optics simulator as the default model's phone would see it (one noise and JPEG setting per
slide, as a camera keeps its settings). A frame never shows two slides
side by side: the camera goes back and forth over one slide PASSES times, then moves on to the next (a
new slide on the stage). Rendering a 1080p frame takes about a second on a CPU, so a background thread
renders the next slide while the current one plays; at most two slides' frames are held. Locked camera
settings act as on a sensor: exposure and gain scale the light (against NOMINAL_EXPOSURE_US at gain 1,
what auto exposure settles on here), colour gains scale red and blue; each frame reports them.
"""
from __future__ import annotations

import math
import threading
import time

import cv2
import numpy as np

from edge import SAMPLES
from edge.imageio import read_rgb8
from edge.simulator import DEFAULT_PHONE, degrade
from edge.sources.base import Frame, Pacer, Source, SourceError
from edge.sources.controls import Controls

SLIDES = SAMPLES / "reference"
POSITIONS = 8              # pan positions per slide
DEFOCUS = 0.012            # defocus blur at the ends of a pan: sigma in px per px of frame width
PASSES = 4                 # times the camera goes over a slide (forth and back) before the next one
HOLD_S = 0.5               # seconds at each position
NOMINAL_EXPOSURE_US = 10_000   # what "auto" exposure gives at gain 1


def slides(width: int, height: int) -> list[np.ndarray]:
    """The sample references, each scaled to cover width x height (its own aspect kept)."""
    refs = [read_rgb8(p) for p in sorted(SLIDES.glob("*.jpg"))]
    if not refs:
        raise SourceError(f"simulated: no sample slides in {SLIDES}")
    out = []
    for r in refs:
        s = max(height / r.shape[0], width / r.shape[1])
        size = (max(width, round(r.shape[1] * s)), max(height, round(r.shape[0] * s)))
        out.append(cv2.resize(r, size, interpolation=cv2.INTER_CUBIC if s > 1 else cv2.INTER_AREA))
    return out


def defocus(k: int, width: int, positions: int = POSITIONS) -> float:
    """Defocus blur (sigma, px) at pan position k of a frame `width` px wide: DEFOCUS * width at the
    ends of the pan, sharp in the middle."""
    return DEFOCUS * width * (1 + math.cos(2 * math.pi * k / max(1, positions - 1))) / 2


def pan_position(step: int, positions: int = POSITIONS) -> int:
    """Position at step n of the back-and-forth pan over a slide."""
    cycle = max(1, 2 * positions - 2)
    k = step % cycle
    return k if k < positions else cycle - k


class SimulatedSource(Source):
    uri = "simulated"

    def __init__(self, width: int, height: int, fps: float, positions: int = POSITIONS,
                 controls: Controls = Controls()):
        self.width, self.height, self.profile, self.positions = width, height, DEFAULT_PHONE, positions
        self.controls = controls
        self.exposure_us = controls.exposure_us or NOMINAL_EXPOSURE_US
        self.gain = controls.gain or 1.0
        self.colour_gains = controls.colour_gains or (1.0, 1.0)
        self.slides = slides(width, height)
        self.hold = max(1, round(fps * HOLD_S))           # frames at each position
        self.steps_per_slide = PASSES * (positions - 1) + 1
        self.frames: dict[tuple[int, int], np.ndarray] = {}     # (slide number, position) -> rendered frame
        self.slide = 0                                    # the slide under the camera (counts up, wraps the set)
        self.n = 0                                        # frames read on this slide
        self.pacer = Pacer(fps)
        self.seq = 0
        self.ready = threading.Event()
        self.stop = threading.Event()
        self.wanted = threading.Condition()
        self.thread = threading.Thread(target=self._render, name="simulated-camera", daemon=True)
        self.thread.start()

    def _crop(self, slide: int, k: int) -> np.ndarray:
        img = self.slides[slide % len(self.slides)]
        span_x, span_y = img.shape[1] - self.width, img.shape[0] - self.height
        x = round(span_x * k / max(1, self.positions - 1))
        y = round(span_y * (0.5 + 0.5 * math.sin(math.pi * k / max(1, self.positions - 1))) / 2)
        return img[y:y + self.height, x:x + self.width]

    def _render(self) -> None:
        slide = 0
        while not self.stop.is_set():
            with self.wanted:   # render at most one slide ahead of the one being shown
                self.wanted.wait_for(lambda: slide <= self.slide + 1 or self.stop.is_set())
            for k in range(self.positions):
                if self.stop.is_set():
                    return
                crop = self._crop(slide, k)
                sigma = defocus(k, self.width, self.positions)
                if sigma > 0.05:
                    crop = cv2.GaussianBlur(crop, (0, 0), sigma)
                phone, _ = degrade(crop, self.profile, seed=slide)
                self.frames[(slide, k)] = self._expose(phone)
                self.ready.set()
            slide += 1

    def _expose(self, img: np.ndarray) -> np.ndarray:
        """The locked exposure, gain and colour gains applied to what the sensor saw."""
        light = self.exposure_us / NOMINAL_EXPOSURE_US * self.gain
        r, b = self.colour_gains
        if light == 1.0 and (r, b) == (1.0, 1.0):
            return img
        scale = np.array([light * r, light, light * b], np.float32)
        return np.clip(img.astype(np.float32) * scale + 0.5, 0, 255).astype(np.uint8)

    def _next_slide_ready(self) -> bool:
        return all((self.slide + 1, k) in self.frames for k in range(self.positions))

    def read(self) -> Frame:
        if not self.ready.wait(timeout=60):
            raise SourceError("simulated: no frame rendered within 60 s")
        self.pacer.wait()
        step = self.n // self.hold
        if step >= self.steps_per_slide and self._next_slide_ready():   # the next slide on the stage
            with self.wanted:
                for k in range(self.positions):
                    self.frames.pop((self.slide, k), None)
                self.slide += 1
                self.wanted.notify_all()
            self.n = step = 0
        k = pan_position(step, self.positions)
        if (self.slide, k) not in self.frames:   # still rendering this slide: stay where it is ready
            k = max(p for s, p in self.frames if s == self.slide)
        self.n += 1
        self.seq += 1
        return Frame(self.frames[(self.slide, k)], self.seq, time.monotonic(),
                     {"simulated_slide": self.slide % len(self.slides), "simulated_position": k,
                      "simulated_defocus_px": round(defocus(k, self.width, self.positions), 2),
                      "phone_profile": self.profile.name, "controls": self.controls.describe(),
                      "exposure_us": self.exposure_us, "analogue_gain": self.gain,
                      "colour_gains": list(self.colour_gains)})

    def close(self) -> None:
        self.stop.set()
        with self.wanted:
            self.wanted.notify_all()
        # let a frame being rendered finish: native code still running at interpreter exit aborts
        self.thread.join(timeout=5)

    def describe(self) -> dict:
        return {"source": self.uri, "width": self.width, "height": self.height, "profile": self.profile.name}
