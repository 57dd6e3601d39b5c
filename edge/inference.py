"""The inference loop: the engine's only user (one GPU context, one thread).

Each turn it serves a waiting capture first (full resolution, on a frame
grabbed after the request), else the newest camera frame for the preview
(reduced to the preview width). Frames go Preprocess -> Enhancer (tiles
through the engine) -> Postprocess; captures then go to the CaptureWriter,
preview pictures to the preview. It stamps `alive_t` every turn (and
between a capture's steps) and `frame_t` for every enhanced frame, with the
daemon's clock, so the systemd loop can tell a hung engine (no WATCHDOG=1
then) from an idle one. A capture's network runs on up to tens of times the
preview's pixels in one call: `grace_s` says how much longer than usual that
call may take, from the seconds per pixel the previews took.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

import numpy as np

from edge import SAMPLES
from edge.camera_reader import LatestFrame
from edge.capture import CaptureQueue, CaptureRequest, CaptureWriter, EngineFailed, FrameTimeout, Stopping
from edge.enhancer import EngineError, Enhancer
from edge.errors import EX_CONFIG, UserError
from edge.focus import FocusMeter, focus_score
from edge.imageio import read_image
from edge.notices import Notices
from edge.scope import Scope
from edge.sources import Frame
from edge.stages import Postprocess, Preprocess

log = logging.getLogger("phonescope")

FRAME_WAIT_S = 10.0        # a capture waits this long for a fresh frame
SCOPE_EVERY_S = 30.0       # the preview's colours are compared with the training set's this often
GRACE_FACTOR = 4.0         # a capture's network may take this many times what the previews' pace predicts
GRACE_MAX_S = 600.0        # ... but a hung engine is still called hung after this much more
PACE_DECAY = 0.9           # the pace is the slowest lately seen: an outlier fades over ~20 frames


def self_test(enhancer: Enhancer) -> None:
    """One small real image through the engine before READY: a model that yields NaN/inf or the
    wrong shape is refused at start (exit 78) rather than found at the first capture."""
    sample = sorted((SAMPLES / "phone").glob("*.jpg"))[0]
    img = np.ascontiguousarray(read_image(sample)[0][:96, :128])
    try:
        out = enhancer.enhance(img)
    except (EngineError, ValueError) as e:
        raise UserError(f"model self-test failed, refusing to start: {e}", EX_CONFIG) from None
    if out.ndim != 3 or out.shape[2] != 3:
        raise UserError(f"model self-test failed: output {out.shape} is not RGB", EX_CONFIG)


class InferenceLoop:
    def __init__(self, enhancer: Enhancer, pre: Preprocess, post: Postprocess, latest: LatestFrame,
                 captures: CaptureQueue, writer: CaptureWriter,
                 publish: Callable[[np.ndarray, np.ndarray], None], camera_error: Callable[[], str | None],
                 notices: Notices, stopping: threading.Event, clock: Callable[[], float] = time.monotonic,
                 frame_wait_s: float = FRAME_WAIT_S):
        self.enhancer, self.pre, self.post, self.latest = enhancer, pre, post, latest
        self.captures, self.writer, self.publish = captures, writer, publish
        self.camera_error, self.notices, self.stopping, self.clock = camera_error, notices, stopping, clock
        self.frame_wait_s = frame_wait_s
        self.current: CaptureRequest | None = None   # the capture being taken, if any
        self.alive_t = self.frame_t = clock()   # liveness marks, in the daemon's clock
        self.grace_s = 0.0                    # how much longer than usual the engine call under way may take
        ran = enhancer.last                   # the self-test's pass until a preview has run
        self.s_per_px = ran.infer_s / ran.output_px if ran.output_px else 0.0   # the network's pace
        self.first_frame = threading.Event()
        self.frames = 0
        self.fps = 0.0                        # enhanced preview frames per second (moving average)
        self.focus = FocusMeter()             # the raw preview frames' sharpness against the best seen lately
        self.camera_settings: dict = {}       # what the newest frame says the camera ran with
        self.latency_s = 0.0                  # frame grabbed -> enhanced preview ready (moving average)
        self.scope = Scope.from_card(enhancer.card.raw)   # is the input what the model was trained for?
        self.scope_t = -SCOPE_EVERY_S

    def run(self) -> None:
        """Until stopping, then until no capture waits (shutdown drains them)."""
        seen = 0
        t_prev = time.monotonic()
        while True:
            self.alive_t = self.clock()
            req = self.captures.next()
            if req is not None:
                self.current = req
                try:
                    self._capture(req)
                except Exception as e:  # a bug must not kill the engine's thread and leave callers waiting
                    log.exception("capture failed")
                    req.fail(EngineFailed(f"capture failed, nothing saved: {type(e).__name__}: {e}"))
                self.current = None
                continue
            if self.stopping.is_set():
                return
            frame, seen = self.latest.newer(seen, timeout=0.25)
            shown = frame is not None and self._preview(frame)
            grabbed_t = frame.t if shown else 0.0
            frame = None   # not held through the next turn's capture: a frame-sized array (24 MB at 8 MP)
            if shown:
                now = time.monotonic()
                rate = 1 / max(1e-6, now - t_prev)
                lat = now - grabbed_t
                self.fps = 0.8 * self.fps + 0.2 * rate if self.frames else rate
                self.latency_s = 0.8 * self.latency_s + 0.2 * lat if self.frames else lat
                t_prev = now
                self.frame_t = self.clock()
                self.frames += 1
                self.first_frame.set()

    def abandon(self, why: str) -> None:
        """At shutdown, when this loop did not finish in time: answer the capture it was taking."""
        req = self.current
        if req is not None:
            req.fail(Stopping(why))

    def _preview(self, frame: Frame) -> bool:
        try:
            x, raw = self.pre.preview(frame)
            enhanced = self._timed_network(x)
        except ValueError as e:  # a frame that does not match the calibration (size)
            self.notices.set("calibration", str(e))
            return False
        except EngineError as e:
            self.notices.set("engine", str(e))
            log.error("%s", e)
            return False
        except Exception as e:  # a bug (OpenCV, memory): say it, keep the engine's thread alive
            msg = f"preview failed: {type(e).__name__}: {e}"
            if self.notices.get("engine") != msg:
                log.exception("%s", msg)
            self.notices.set("engine", msg)
            return False
        self.notices.clear("engine")
        self.notices.clear("calibration")
        if self.scope and self.clock() - self.scope_t >= SCOPE_EVERY_S:
            self.scope_t = self.clock()
            self._in_scope(x, detail=False)   # what the network gets: balanced, on its grid
        self.focus.update(focus_score(raw), self.clock())
        self.camera_settings = frame.settings
        self.publish(raw, self.post.preview(enhanced))
        return True

    def _timed_network(self, x: np.ndarray) -> np.ndarray:
        """The network on x, its pace (seconds per pixel, on the daemon's clock) noted for the grace a
        capture gets."""
        t = self.clock()
        out = self.enhancer.run_network(x)
        pace = (self.clock() - t) / max(1, x.shape[0] * x.shape[1])
        self.s_per_px = max(pace, PACE_DECAY * self.s_per_px)
        return out

    def _in_scope(self, pixels: np.ndarray, detail: bool) -> None:
        """Warn (the journal once per kind, the screen while it lasts) when the camera shows what the
        model was not trained for; never refuse."""
        why = self.scope.check(pixels, detail)
        for w in self.scope.first_time(why):
            log.warning("input out of the model's scope: %s", w)
        if why:
            self.notices.set("scope", "out of the model's scope: " + why[0].split(": ")[0])
        elif not detail:
            self.notices.clear("scope")

    def _capture(self, req: CaptureRequest) -> None:
        """Full-resolution enhancement of a frame grabbed after the request, to the writer."""
        t0 = time.monotonic()
        frame, _ = self.latest.newer(-1, after_t=req.t, timeout=self.frame_wait_s)
        if frame is None:
            why = self.camera_error()
            req.fail(FrameTimeout(f"no camera frame within {self.frame_wait_s:g} s{': ' + why if why else ''}"))
            return
        t1 = time.monotonic()
        self.alive_t = self.clock()
        # nobody takes frames until the capture is encoded: the camera rests till then (README, "Memory")
        self.latest.rest()
        try:
            self._enhance_and_store(req, frame, t0, t1)
        except BaseException:
            self.latest.wake()
            raise

    def _enhance_and_store(self, req: CaptureRequest, frame, t0: float, t1: float) -> None:
        """The network on the capture's frame, then to the writer, which ends the camera's rest once the
        files are encoded; ended here where it does not get that far."""
        try:
            x = self.pre.capture(frame)
            if self.scope:
                self._in_scope(x, detail=True)
            t2 = time.monotonic()
            # the capture's tiles in memory the preview's blocks have given back, and the capture's given
            # back after it: the engine holds one set, not both (README, "Memory")
            self.enhancer.engine.release_memory()
            self.alive_t = self.clock()
            self.grace_s = min(GRACE_MAX_S, GRACE_FACTOR * self.s_per_px * x.shape[0] * x.shape[1])
            try:
                enhanced = self._timed_network(x)
            finally:
                self.alive_t = self.clock()
                self.grace_s = 0.0
                self.enhancer.engine.release_memory()   # never raises: a failed release is only logged
            self.frame_t = self.alive_t
            t3 = time.monotonic()
        except (EngineError, ValueError) as e:
            self.latest.wake()
            req.fail(EngineFailed(f"enhancement failed, nothing saved: {e}"))
            return
        image = self.post.capture(enhanced)
        t4 = time.monotonic()
        tiles = self.enhancer.last
        timings = {"frame_wait_s": round(t1 - t0, 4), "preprocess_s": round(t2 - t1, 4),
                   "inference_s": round(t3 - t2, 4), "network_s": tiles.network_s and round(tiles.network_s, 4),
                   "postprocess_s": round(t4 - t3, 4)}
        wb = getattr(self.enhancer, "balance", None)   # this thread balanced the capture's frame last
        gain = None if wb is None or wb.last_gain is None else [round(float(g), 4) for g in wb.last_gain]
        self.writer.put(req, frame, image, timings, focus_score(frame.image), encoded=self.latest.wake,
                        glass_gain=gain)
