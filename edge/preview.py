"""The preview: the picture the kiosk's screen shows, and the thread that shows it.

The inference loop puts its newest (raw, enhanced) pair in a PreviewSlot; the
preview thread composes it with a status bar at most max_fps times a second and
hands it to the sink (edge/sinks/). Keys the operator presses in the sink, or
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
from edge.sinks import Sink
from edge.storage import StorageError, Stored

log = logging.getLogger("phonescope")


def compose(raw: np.ndarray | None, enhanced: np.ndarray | None, show: str, width: int,
            lines: list[str], warning: str | None = None) -> np.ndarray:
    """The preview picture (RGB uint8): enhanced, raw or raw|enhanced, with a status bar."""
    if show == "raw" or enhanced is None:
        pic = raw
    elif show == "split" and raw is not None:
        r = cv2.resize(raw, (enhanced.shape[1], enhanced.shape[0]), interpolation=cv2.INTER_AREA)
        pic = np.concatenate([r, enhanced], axis=1)
    else:
        pic = enhanced
    if pic is None:
        pic = np.zeros((width * 9 // 16, width, 3), np.uint8)
    h = int(round(pic.shape[0] * width / pic.shape[1]))
    pic = cv2.resize(pic, (width, max(1, h)), interpolation=cv2.INTER_AREA)
    bar_h = 22 * (len(lines) + (1 if warning else 0)) + 8
    bar = np.zeros((bar_h, width, 3), np.uint8)
    y = 20
    if warning:
        cv2.putText(bar, warning, (8, y), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 80, 60), 2, cv2.LINE_AA)
        y += 22
    for line in lines:
        cv2.putText(bar, line, (8, y), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (230, 230, 230), 1, cv2.LINE_AA)
        y += 22
    return np.concatenate([pic, bar], axis=0)


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

    def __init__(self, sink: Sink, slot: PreviewSlot, cfg_preview: dict, status_lines: Callable[[], list[str]],
                 warning_line: Callable[[], str | None], submit: Callable[..., object],
                 notices: Notices, stopping: threading.Event, keys=None, operator: OperatorState | None = None,
                 flag: Callable[[int, str | None], None] | None = None):
        """keys: the operator's keyboards outside the sink (edge.keys.EvdevKeys on a kiosk without X), or None;
        submit(sample_id, origin, session_id, operator_id): a capture; flag(seq, review): a review flag."""
        self.sink, self.slot, self.cfg, self.keys = sink, slot, cfg_preview, keys
        self.status_lines, self.warning_line, self.submit = status_lines, warning_line, submit
        self.notices, self.stopping = notices, stopping
        self.operator = operator or OperatorState()
        self.flag = flag
        self.shown = 0          # pictures the sink took: `status` shows whether the screen is being updated

    def run(self) -> None:
        period = 1.0 / self.cfg["max_fps"]
        last_error = None
        while not self.stopping.is_set():
            t0 = time.monotonic()
            raw, enh = self.slot.get()
            try:
                events = self.sink.show(compose(raw, enh, self.cfg["show"], self.cfg["width"], self.status_lines(),
                                                self.warning_line()))
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
            if self.keys is not None:
                events = events + self.keys.poll()
            for key in events:
                self.act(self.operator.key(key))
            self.stopping.wait(max(0.0, period - (time.monotonic() - t0)))
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
                log.info("capture %d flagged retake by the operator", action.seq,
                         extra={"CAPTURE_SEQ": action.seq, "REVIEW": "retake"})
            except StorageError as e:
                self.operator.message = f"could not flag #{action.seq}: {e}"

    def saved(self, stored: Stored, image) -> None:
        """A capture became durable (the writer's thread): the newest one to review."""
        self.operator.captured(stored.seq)
