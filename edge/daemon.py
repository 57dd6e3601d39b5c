"""Daemon: the parts' threads, the systemd loop and the shutdown.

Threads and bounded queues (DESIGN.md, "Data flow in the daemon"):
- camera (edge.camera_reader): newest frame only, under the CameraSupervisor's rules;
- inference (edge.inference): the engine's only user; captures first, else the preview;
- storage (edge.capture.CaptureWriter): durable captures, then acknowledgements;
- preview (edge.preview): the picture on the screen and the operator's keys;
- control (edge.control_server): the socket `phonescope capture` and `status` talk to.
The main thread talks to systemd (step()): READY after the first enhanced
frame (or, with no camera, once it is known lost: the engine passed its
self-test before any thread started), STATUS, WATCHDOG=1 only while inference makes progress and frames
flow (or the camera is known lost; a capture's network call gets the longer time its size asks for, at
the pace the previews ran), STOPPING on SIGTERM, then the pending
captures are finished and it exits 0 within 5 s. Parts are assembled by
edge.wiring; time for these rules comes from its injected clock.
"""
from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from typing import Callable

from edge.camera import CameraSupervisor
from edge.camera_reader import CameraReader
from edge.capture import CaptureError, CaptureQueue, CaptureRequest, CaptureWriter
from edge.control_server import ControlServer
from edge.inference import InferenceLoop
from edge.lock import InstanceLock
from edge.notices import Notices
from edge.preview import PreviewLoop
from edge.service import Notifier
from edge.status import StatusBoard
from edge.storage import Storage, StorageFull

log = logging.getLogger("phonescope")

STOP_GRACE_S = 4.0         # SIGTERM: finish pending captures within this, exit well inside 5 s
STATUS_EVERY_S = 2.0       # systemd STATUS= line
SPACE_EVERY_S = 10.0       # free-space check (the warning clears by itself once space is freed)
SPACE_CLEAR_BYTES = 1_000_000  # ... once free space is this far above the watermark, so it does not flicker
STALL_NO_WATCHDOG_S = 10.0  # without a systemd watchdog: inference this long without progress is a warning


class Daemon:
    def __init__(self, *, lock: InstanceLock, storage: Storage, supervisor: CameraSupervisor, reader: CameraReader,
                 inference: InferenceLoop, captures: CaptureQueue, writer: CaptureWriter, preview: PreviewLoop,
                 control: ControlServer, board: StatusBoard, notifier: Notifier, notices: Notices,
                 stopping: threading.Event, interval_s: float = 0.0, watchdog: bool = True,
                 clock: Callable[[], float] = time.monotonic, services: tuple = ()):
        self.lock, self.storage, self.supervisor, self.reader = lock, storage, supervisor, reader
        self.inference, self.captures, self.writer, self.preview = inference, captures, writer, preview
        self.control, self.board, self.notifier, self.notices = control, board, notifier, notices
        self.stopping, self.interval_s, self.clock = stopping, float(interval_s), clock
        # what runs beside the capture path, each with start() and stop(deadline): the uploader, the USB
        # export, retention (a wake() one is woken when the disk is below the watermark)
        self.services = tuple(services)
        self.watchdog_s = notifier.watchdog_s if watchdog else 0.0
        self.threads: dict[str, threading.Thread] = {}
        self.ready = self.down = False
        self.signalled: int | None = None      # SIGTERM/SIGINT, set by on_signal
        now = clock()
        self.next_status = self.next_space = now
        self.next_interval = now + self.interval_s if self.interval_s > 0 else None

    def submit(self, sample_id: str | None, origin: str, session_id: str | None = None,
               operator_id: str | None = None) -> CaptureRequest:
        return self.captures.submit(sample_id, origin, session_id, operator_id)

    def status(self) -> dict:
        return self.board.status()

    def start(self) -> None:
        self.reader.start()
        for name, target in (("inference", self.inference.run), ("storage", self.writer.run),
                             ("preview", self.preview.run), ("control", self.control.run)):
            self.threads[name] = threading.Thread(target=target, name=name, daemon=True)
            self.threads[name].start()
        for part in self.services:
            part.start()

    def step(self) -> None:
        """One turn of the systemd loop: READY, the camera's and the engine's health, WATCHDOG=1,
        STATUS=, the free-space check and interval captures."""
        now = self.clock()
        framed = self.inference.first_frame.is_set()
        if not self.ready and (framed or self.supervisor.error):
            # the engine passed its self-test in build(); a camera missing at boot must not hold READY
            # back, or systemd's start timeout would kill and restart the service in a loop
            self.ready = True
            self.notifier.ready(f"running: {self.board.backend}" if framed
                                else f"running without a camera: {self.supervisor.error}")
            log.info("ready: %s", "first enhanced frame through the pipeline" if framed
                     else "no camera yet, waiting for it")
        self.reader.watch()
        # a capture's long network call gets its grace (read before alive_t)
        limit = (self.watchdog_s / 2 if self.watchdog_s else STALL_NO_WATCHDOG_S) + self.inference.grace_s
        stuck = now - self.inference.alive_t
        if self.ready:
            if stuck > limit:
                if self.notices.get("inference") is None:
                    log.error("inference stalled: no progress for %.0f s%s", stuck,
                              ": watchdog pings stopped" if self.watchdog_s else "")
                self.notices.set("inference", f"inference stalled for {stuck:.0f} s")
            else:
                self.notices.clear("inference")
        if self.watchdog_s and self.ready:
            # frames stop for known reasons a restart cannot cure: a lost camera, a calibration that
            # does not fit the camera's new resolution; both are shown on the preview and in status
            known = not self.supervisor.ok or self.notices.get("calibration") is not None
            flowing = now - self.inference.frame_t < limit or known
            if stuck < limit and flowing:
                self.notifier.watchdog()
        if now >= self.next_status:
            self.next_status = now + STATUS_EVERY_S
            self.notifier.status(self.board.systemd())
        if now >= self.next_space:
            self.next_space = now + SPACE_EVERY_S
            try:
                self.storage.check_space()
            except StorageFull as e:
                self.notices.set("storage", str(e))
                for part in self.services:
                    if hasattr(part, "wake"):
                        part.wake()                    # retention: delivered captures may be due
            else:
                with contextlib.suppress(StorageFull):   # hovering just above the watermark: keep what is shown
                    self.storage.check_space(SPACE_CLEAR_BYTES)
                    self.notices.clear("storage", containing="disk")
        if self.next_interval is not None and now >= self.next_interval:
            self.next_interval = now + self.interval_s
            try:
                self.submit(None, "interval")
            except CaptureError as e:
                log.warning("interval capture skipped: %s", e)

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self.on_signal)
        self.start()
        while not self.stopping.is_set() and self.signalled is None:
            self.step()
            self.stopping.wait(min(0.2, self.watchdog_s / 4) if self.watchdog_s else 0.2)
        return self.shutdown()

    def on_signal(self, signum: int, frame) -> None:
        """SIGTERM, SIGINT: a flag the loop reads within its 0.2 s turn, and no lock. Python runs a handler
        in the main thread between two bytecodes, often inside stopping.wait() with the Event's own lock
        held: an Event.set() here then waited for that lock for ever, no "stopping" was logged, and
        systemd SIGKILLed the daemon at TimeoutStopSec (seen in the kiosk rehearsal)."""
        self.signalled = signum

    def shutdown(self) -> int:
        """Stop taking frames, finish pending captures, exit 0 within 5 s."""
        if self.down:
            return 0
        self.down = True
        self.stopping.set()
        self.notifier.stopping()
        log.info("stopping: finishing %d pending capture(s)", self.captures.qsize() + self.writer.qsize())
        deadline = time.monotonic() + STOP_GRACE_S
        self._join("inference", deadline)              # it drains the capture queue first
        self.reader.stop_event.set()
        self.writer.finish()
        # a capture handed over just before the deadline still gets a moment to become durable
        self._join("storage", deadline + 0.8)
        self.writer.abandon("daemon stopped before the capture was saved, not acknowledged")
        self.reader.stop(deadline + 0.8)
        self.captures.fail_pending("daemon stopped")
        self.inference.abandon("daemon stopped before the capture was taken, nothing saved")
        self._join("preview", deadline + 0.8)          # the sink is closed by its own thread
        self.control.close(deadline + 1.0)              # answers on their way are sent before the exit
        for part in self.services:      # a transfer cut here is sent again at the next start, a deletion
            part.stop(deadline + 1.0)   # finished by the next sweep
        self.storage.close()
        if not any(t.is_alive() for t in self.threads.values()):
            self.inference.enhancer.close()            # never under a thread still inside the engine
            self.lock.release()                        # else the process's exit releases it
        log.info("stopped")
        return 0

    def stuck(self) -> list[str]:
        """Threads still running after shutdown(): a capture inside the engine takes seconds on a slow CPU."""
        return [name for name, t in self.threads.items() if t.is_alive() and name != "control"]

    def _join(self, name: str, deadline: float) -> None:
        t = self.threads.get(name)
        if t is not None:
            t.join(max(0.1, deadline - time.monotonic()))
