"""The preview: the picture the kiosk's screen shows, and the thread that shows it.

The inference loop puts its newest (raw, enhanced) pair in a PreviewSlot; the
preview thread draws the kiosk screen (edge/overlay.py) at the sink's size at
most max_fps times a second and hands it to the sink (edge/sinks/). Keys the operator presses in the sink, or
on keyboards, scanners and pedals read apart from it, go to the operator's
state (edge/operator.py), whose actions it carries out: a capture with the
current sample id and session, a review flag. A failing sink (a full disk
under the preview file) is said once and retried; it never stops the daemon.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

import cv2
import numpy as np

from edge.capture import CaptureError
from edge.notices import Notices
from edge.operator import Action, OperatorState
from edge.overlay import View, clipped_fraction, render
from edge.sinks import Sink
from edge.storage import StorageError, Stored

log = logging.getLogger("phonescope")

THUMBNAIL_WIDTH = 480      # px: a capture as the screen's side panel shows it
REVIEWABLE = 10            # the last captures the operator can step through


class PreviewSlot:
    """The newest (raw, enhanced) picture pair, RGB uint8: the inference loop puts, the preview takes."""

    def __init__(self):
        self.lock = threading.Lock()
        self.pair: tuple[np.ndarray | None, np.ndarray | None] = (None, None)

    def put(self, raw: np.ndarray, enhanced: np.ndarray) -> None:
        with self.lock:
            self.pair = (raw, enhanced)

    def get(self) -> tuple[np.ndarray | None, np.ndarray | None]:
        with self.lock:
            return self.pair


class PreviewLoop:
    """The preview thread: newest picture to the sink, the operator's keys to captures."""

    def __init__(self, sink: Sink, slot: PreviewSlot, cfg_preview: dict, view: Callable[[], View],
                 submit: Callable[..., object], notices: Notices, stopping: threading.Event, keys=None,
                 operator: OperatorState | None = None, flag: Callable[[int, str | None], None] | None = None):
        """view: the screen's text and marks (StatusBoard.view); keys: the operator's keyboards outside the sink
        (edge.keys.EvdevKeys on a kiosk without X), or None; submit(sample_id, origin, session_id, operator_id):
        a capture; flag(seq, review): a review flag."""
        self.sink, self.slot, self.cfg, self.keys = sink, slot, cfg_preview, keys
        self.view, self.submit = view, submit
        self.notices, self.stopping = notices, stopping
        self.operator = operator or OperatorState()
        self.flag = flag
        self.flagged: dict[int, str] = {}      # captures flagged from this screen
        self.thumbnails: dict[int, np.ndarray] = {}   # seq -> the capture, enhanced, small (the last few)
        self.shown = 0          # pictures the sink took: `status` shows whether the screen is being updated

    def screen_size(self) -> tuple[int, int]:
        """The sink's screen, else a 16:9 picture of the preview width (the preview file)."""
        w = self.cfg["width"]
        return self.sink.size or (w, w * 9 // 16)

    def run(self) -> None:
        period = 1.0 / self.cfg["max_fps"]
        last_error = None
        while not self.stopping.is_set():
            t0 = time.monotonic()
            raw, enh = self.slot.get()
            try:
                view = self.view()
                view.clipped = clipped_fraction(raw)
                events = self.sink.show(render(raw, enh, self.cfg["show"], self.screen_size(), view))
            except Exception as e:  # e.g. a full disk under the preview file: say it once, keep going
                msg = f"preview {self.sink.kind} failed: {e}"
                if msg != last_error:
                    log.error("%s", msg)
                last_error = msg
                self.notices.set("preview", msg)
                events = []
            else:
                self.shown += 1
                if last_error is not None:
                    log.info("preview %s works again", self.sink.kind)
                    self.notices.clear("preview")
                last_error = None
            evdev = self.keys is not None and self.keys.active
            if self.keys is not None:
                events = (events if not evdev else []) + self.keys.poll()
            for key in events:
                self.act(self.operator.key(key))
            for key in self.sink.wait_keys(period - (time.monotonic() - t0), self.stopping):
                if not evdev:    # the same keys came through evdev: once is enough
                    self.act(self.operator.key(key))
        self.sink.close()
        if self.keys is not None:
            self.keys.close()

    def act(self, action: Action | None) -> None:
        """Carry out what the operator's key asked for; refusals go on the screen, never raise."""
        if action is None:
            return
        if action.kind == "capture":
            try:
                self.submit(action.sample_id, "key", action.session_id, action.operator_id)
            except CaptureError as e:
                self.notices.set("busy", str(e))
                self.operator.message = f"capture refused: {e}"
        elif action.kind == "flag" and self.flag is not None:
            try:
                self.flag(action.seq, "retake")
                self.flagged[action.seq] = "retake"
                log.info("capture %d flagged retake by the operator", action.seq,
                         extra={"CAPTURE_SEQ": action.seq, "REVIEW": "retake"})
            except StorageError as e:
                self.operator.message = f"could not flag #{action.seq}: {e}"

    def saved(self, stored: Stored, image) -> None:
        """A capture became durable (the writer's thread): the newest one to review, and its thumbnail."""
        w = THUMBNAIL_WIDTH
        if image.dtype != np.uint8:
            image = (image >> 8).astype(np.uint8)
        self.thumbnails[stored.seq] = cv2.resize(image, (w, max(1, round(image.shape[0] * w / image.shape[1]))),
                                                 interpolation=cv2.INTER_AREA)
        self.operator.captured(stored.seq, keep=REVIEWABLE)
        for seq in [s for s in self.thumbnails if s not in self.operator.recent]:
            self.thumbnails.pop(seq, None)

    def thumbnail(self) -> np.ndarray | None:
        """The capture under review, else the last one."""
        seq = self.operator.reviewed or (self.operator.recent[0] if self.operator.recent else None)
        return self.thumbnails.get(seq) if seq is not None else None
