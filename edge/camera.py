"""CameraSupervisor: the rules for a camera that fails, as a state machine free of I/O.

    opening --frame--> live <--frame-- stalled: no frame for stall_s (after an open: FIRST_FRAME_S);
       |                |                      still none after 3x that: abandon the stuck
       |                +--> corrupt           reader, a new one opens (at most one abandoned)
       |  open or read  |   (frames come but are unusable; CORRUPT_REOPEN in a row: lost)
       v  fails         v
      lost: wait (backoff 0.5 s, doubling to 8 s, reset by a good frame), then opening

A reader thread (edge.camera_reader) reports what happened and does what it
is told; the daemon calls tick() on its timer. Every event carries the
reader's generation, so a reader given up on while stuck in read() is
ignored (and told to exit) when it wakes. Time comes from an injected
clock, so each rule is a unit test that runs in milliseconds.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable

log = logging.getLogger("phonescope")

STALL_S = 5.0            # no frame for this long (or 5 frame periods) after frames flowed: "stalled"
FIRST_FRAME_S = 20.0     # an opened camera gets this long for its first frame (slow starts after boot)
CORRUPT_REOPEN = 30      # this many corrupt frames in a row: close and reopen the camera
CORRUPT_PAUSE_S = 0.02   # between reads of a corrupt run
BACKOFF_S = (0.5, 8.0)   # first and longest wait before reopening a lost camera


@dataclass(frozen=True)
class Next:
    """What the reader does next: keep reading, close and reopen after `wait` s, or exit (stale)."""

    action: str          # "read" | "reopen" | "exit"
    wait: float = 0.0


EXIT = Next("exit")


class CameraSupervisor:
    def __init__(self, source: str, fps: float, clock: Callable[[], float] = time.monotonic):
        self.source, self.clock = source, clock
        self.stall_s = max(STALL_S, 5.0 / fps)
        self.state = "opening"
        self.error: str | None = None
        self.gen = 1
        self.size: tuple[int, int] | None = None
        self.corrupt_frames = self.resolution_changes = self.reopens_after_stall = 0
        self.corrupt_run = 0
        self.backoff = BACKOFF_S[0]
        self.since = self.last_frame_t = clock()   # since: the reader's last sign of life
        self.awaiting_first = True                 # opened (or opening), no good frame yet: FIRST_FRAME_S
        self.resting = False                       # the reader pauses while nobody takes frames
        self.lock = threading.RLock()              # readers report while the daemon's timer ticks

    # -- events from the reader ------------------------------------------------------------------
    def opening(self, gen: int) -> bool:
        """The reader is about to open the source; False: it is stale and must exit."""
        with self.lock:
            if gen != self.gen:
                return False
            self.state, self.since, self.awaiting_first = "opening", self.clock(), True
            return True

    def opened(self, gen: int) -> bool:
        """The source opened; False: the reader was given up on while open() hung, it must close it
        and exit (a stale reader must not hold the device the new one is opening)."""
        with self.lock:
            if gen != self.gen:
                return False
            log.info("camera %s opened", self.source)
            self.since = self.clock()
            return True

    def frame(self, gen: int, size: tuple[int, int]) -> bool:
        """A good frame of (width, height); False: the reader is stale, drop the frame and exit."""
        with self.lock:
            if gen != self.gen:
                return False
            if self.size is not None and size != self.size:
                self.resolution_changes += 1
                log.warning("camera resolution changed from %dx%d to %dx%d", *self.size, *size,
                            extra={"CAMERA_SOURCE": self.source})
            if self.error:
                log.info("camera %s is back", self.source)
            self.size, self.error, self.state, self.awaiting_first = size, None, "live", False
            self.since = self.last_frame_t = self.clock()
            self.backoff, self.corrupt_run = BACKOFF_S[0], 0
            return True

    def rest(self, gen: int, resting: bool) -> None:
        """The reader pauses (a capture's network runs) or resumes: the pause is not a stall, and the
        silence counts from the resumption."""
        with self.lock:
            if gen == self.gen:
                self.resting = resting
                if not resting:
                    self.since = self.last_frame_t = self.clock()

    def corrupt(self, gen: int, message: str) -> Next:
        """One unusable frame: keep reading, unless a long run says the camera itself is broken."""
        with self.lock:
            if gen != self.gen:
                return EXIT
            self.corrupt_frames += 1
            self.corrupt_run += 1
            self.state, self.since = "corrupt", self.clock()   # the reader is alive, its frames are not
            self._report(self._named(message), logging.WARNING)
            if self.corrupt_run < CORRUPT_REOPEN:
                return Next("read", CORRUPT_PAUSE_S)
            self.corrupt_run = 0
            return self._lost()

    def failed(self, gen: int, message: str) -> Next:
        """Opening or reading failed (unplugged, no permission, a driver error): reopen with backoff."""
        with self.lock:
            if gen != self.gen:
                return EXIT
            self._report(self._named(message), logging.ERROR)
            return self._lost()

    # -- the timer ----------------------------------------------------------------------------
    def tick(self, readers_alive: int = 1) -> int | None:
        """Called on a timer: marks a silent camera stalled; returns a new generation when the
        stuck reader is to be abandoned and a new one started (at most one abandoned at a time)."""
        with self.lock:
            if self.state == "lost" or self.resting:  # waiting to reopen, or paused: not stuck
                return None
            now = self.clock()
            limit = FIRST_FRAME_S if self.awaiting_first else self.stall_s
            silent = now - self.since
            if silent < limit:
                return None
            if self.awaiting_first:
                msg = f"{self.source}: no frame for {silent:.0f} s since it was opened (camera stalled)"
            else:
                msg = f"{self.source}: no frame for {now - self.last_frame_t:.0f} s (camera stalled)"
            if self.error is None:
                log.error("camera lost: %s", msg, extra={"CAMERA_SOURCE": self.source})
            if self.error is None or "stalled" in self.error:
                self.error = msg
            self.state = "stalled"
            if silent > 3 * limit and readers_alive <= 1:
                self.reopens_after_stall += 1
                self.gen += 1
                self.state, self.since, self.awaiting_first = "opening", now, True
                log.warning("camera %s: reopening in a new thread, abandoning the stuck read", self.source)
                return self.gen
            return None

    # -- views ----------------------------------------------------------------------------------
    @property
    def ok(self) -> bool:
        return self.error is None

    def status(self) -> dict:
        return {"source": self.source, "state": self.state, "ok": self.ok, "error": self.error,
                "size": list(self.size) if self.size else None, "corrupt_frames": self.corrupt_frames,
                "resolution_changes": self.resolution_changes, "reopens_after_stall": self.reopens_after_stall}

    # -- rules ------------------------------------------------------------------------------------
    def _lost(self) -> Next:
        self.state = "lost"
        wait, self.backoff = self.backoff, min(self.backoff * 2, BACKOFF_S[1])
        return Next("reopen", wait)

    def _named(self, message: str) -> str:
        return message if message.startswith(self.source) else f"{self.source}: {message}"

    def _report(self, message: str, level: int) -> None:
        if self.error != message:
            log.log(level, "camera lost: %s", message, extra={"CAMERA_SOURCE": self.source})
        self.error = message
