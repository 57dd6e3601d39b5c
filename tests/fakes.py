"""In-process stand-ins for the daemon's hardware-facing parts, handed to edge.wiring.build as Twins.

Everything else in a daemon built with them is real: the wiring, the camera
supervisor and reader threads, the inference loop and tiling, the capture
queue and writer, Storage on a real folder with a real SQLite catalogue.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np

from edge import config, wiring
from edge.engines.base import Engine, EngineError, InputSpec, nonfinite
from edge.modelcard import ModelCard
from edge.service import Notifier
from edge.sinks import Sink
from edge.sources import Frame, Source, SourceError

CARD = ModelCard(name="fake", version="0", scale=1.0, receptive_field=0, alignment=1, recommended_tile=512,
                 flops_per_pixel=0.0, onnx_sha256="0" * 64)


class FakeClock:
    """Time that moves only when the test says so."""

    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


class FakeEngine(Engine):
    """A known pixel operation (x -> 255 - x on uint8, 1 - x on FP16): captures can be checked against
    the frame they came from.

    hang: while set, infer() blocks (a wedged GPU); `entered` is set when it does.
    nan / fail: the next inferences find NaN in the network's output (as the pixel graph's flag
    reports it) / raise EngineError.
    clock, s_per_px: each infer() moves the clock on by s_per_px per pixel (a slow engine, in the
    daemon's time).
    """

    name = "fake"

    def __init__(self, clock: FakeClock | None = None, s_per_px: float = 0.0):
        self.spec = InputSpec(channels=3, alignment=1)
        self.hang, self.entered = threading.Event(), threading.Event()
        self.nan = self.fail = False
        self.calls = 0
        self.clock, self.s_per_px = clock, s_per_px

    def infer(self, batch: np.ndarray) -> np.ndarray:
        self.check(batch)
        self.calls += 1
        if self.clock is not None:
            self.clock.advance(self.s_per_px * batch.shape[0] * batch.shape[1] * batch.shape[2])
        while self.hang.is_set():
            self.entered.set()
            time.sleep(0.01)
        if self.fail:
            raise EngineError("fake: the device fell off the bus")
        if self.nan:
            raise nonfinite(self.name)
        return 255 - batch if batch.dtype == np.uint8 else (1.0 - batch).astype(batch.dtype)


class GatedCamera:
    """A camera that delivers one frame per release(); frame k is a flat grey of value 10 * k, or a copy of
    `picture` (H x W x 3 uint8) where one is given.

    Frames carry the real host monotonic time of their grab, as every source's do. Each open() is a new
    handle (a GatedSource) on the one camera, as reopening a real device is.
    failing: reads raise SourceError (unplugged); end(): unplugged for good, blocked reads return too.
    release() lets whichever open handle is reading take the frame; release_to(k) gives one to the k-th
    handle opened (0 first), as a stuck driver read that returns at last does.
    """

    uri = "gated"

    def __init__(self, width: int = 64, height: int = 48, picture: np.ndarray | None = None):
        self.size = (width, height)
        self.picture = picture
        self.gate = threading.Semaphore(0)
        self.seq = 0
        self.failing = self.ended = self.missing = False   # missing: open() fails (not plugged in at boot)
        self.opened = 0
        self.handles: list[GatedSource] = []
        self.lock = threading.Lock()

    def open(self) -> "GatedSource":
        self.opened += 1
        if self.missing:
            raise SourceError("gated: no such camera")
        handle = GatedSource(self)
        self.handles.append(handle)
        return handle

    def release(self, n: int = 1) -> None:
        for _ in range(n):
            self.gate.release()

    def release_to(self, k: int) -> None:
        self.handles[k].gate.release()

    def end(self) -> None:
        self.ended = True

    def grab(self, handle: "GatedSource") -> Frame:
        while not (handle.gate.acquire(blocking=False) or self.gate.acquire(timeout=0.05)):
            if handle.closed or self.ended:
                raise SourceError("gated: closed")
        if self.failing:
            raise SourceError("gated: unplugged")
        with self.lock:
            self.seq += 1
            seq = self.seq
        w, h = self.size
        image = self.picture.copy() if self.picture is not None else np.full((h, w, 3), (10 * seq) % 256, np.uint8)
        return Frame(image, seq, time.monotonic(), {"fake": True})


class GatedSource(Source):
    """One open handle on a GatedCamera."""

    uri = "gated"

    def __init__(self, camera: GatedCamera):
        self.camera, self.closed = camera, False
        self.gate = threading.Semaphore(0)   # frames for this handle only (GatedCamera.release_to)

    def read(self) -> Frame:
        return self.camera.grab(self)

    def close(self) -> None:
        self.closed = True


class RecordingSink(Sink):
    kind = "recording"

    def __init__(self):
        self.shown = 0
        self.events: list[str] = []   # what the "operator" pressed, handed to the preview on its next frame

    def show(self, rgb: np.ndarray) -> list[str]:
        self.shown += 1
        events, self.events = self.events, []
        return events


class RecordingNotifier(Notifier):
    """systemd's side of sd_notify, as a list of what the real Notifier sent."""

    def __init__(self, watchdog_s: float = 0.0):
        self.enabled, self.watchdog_s = True, watchdog_s
        self.sent: list[str] = []

    def count(self, field: str) -> int:
        return sum(1 for s in self.sent if s == field)

    def send(self, *fields: str) -> None:
        self.sent.extend(fields)


def build_daemon(state: Path, source: GatedCamera | None = None, engine: FakeEngine | None = None,
                 clock: FakeClock | None = None, notifier: RecordingNotifier | None = None,
                 sink: Sink | None = None, keys=None, card: ModelCard | None = None, **settings):
    """A real daemon (not started) around fakes; keys: the operator's keyboard (an object with poll() and
    close()), none by default; settings: {"section.key": value} config overrides."""
    cfg = config.defaults()
    for key, value in {"camera.source": "gated", "camera.fps": 30, "preview.sink": "none",
                       "storage.min_free_mb": 0, **settings}.items():
        section, name = key.split(".")
        cfg[section][name] = value
    camera = source or GatedCamera()
    twins = wiring.Twins(open_model=lambda cfg: (engine or FakeEngine(), card or CARD, "fake engine for tests"),
                         open_source=lambda cfg: camera.open(), open_sink=lambda cfg, st: sink or RecordingSink(),
                         open_keys=lambda cfg, s: keys,
                         notifier=notifier or RecordingNotifier(), clock=clock or FakeClock())
    return wiring.build(cfg, state, twins)
