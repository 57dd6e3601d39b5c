"""The camera's threads: read frames from a source under the CameraSupervisor's rules.

The newest frame goes to a one-slot mailbox (LatestFrame): the preview takes
whatever is newest, a capture waits for a frame grabbed after its request.
While a capture is enhanced and encoded nobody takes frames, so the camera
rests: the reader stops reading and the mailbox lets its frame go (at 8 MP
two frame-sized arrays, and on a CPU a core of decoding the network can use;
the preview's working memory is not taken back until the encode is done).
After a rest the frames a driver may have queued from before it are dropped
(`Source.held_frames`), so a capture never gets a frame exposed before it.
A reader stuck in a driver's read() cannot be interrupted from Python; when
the supervisor gives up on it, a new reader is started and the stuck one is
left to exit by itself whenever read() returns (its frame is then dropped).
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from edge.camera import CameraSupervisor
from edge.sources import CorruptFrame, Frame, Source, SourceError

log = logging.getLogger("phonescope")


class LatestFrame:
    """A one-slot mailbox: the camera overwrites, readers wait for something newer."""

    def __init__(self):
        self.cond = threading.Condition()
        self.frame: Frame | None = None
        self.count = 0
        self.rests = 0      # rest() calls not yet ended by wake()

    @property
    def resting(self) -> bool:
        return self.rests > 0

    def put(self, f: Frame) -> None:
        with self.cond:
            if self.rests:    # read just as the rest began: nobody would take it
                return
            self.frame = f
            self.count += 1
            self.cond.notify_all()

    def newer(self, count: int, after_t: float = 0.0, timeout: float = 0.5) -> tuple[Frame | None, int]:
        """The newest frame if it is not the one numbered `count` and was grabbed after `after_t`
        (host monotonic time); (None, count) if none comes within `timeout` s."""
        end = time.monotonic() + timeout
        with self.cond:
            while self.frame is None or self.count == count or self.frame.t <= after_t:
                left = end - time.monotonic()
                if left <= 0:
                    return None, count
                self.cond.wait(left)
            return self.frame, self.count

    def rest(self) -> None:
        """Nobody takes frames for a while (a capture, until it is encoded): the reader pauses, the newest
        frame goes. Each rest() is ended by one wake()."""
        with self.cond:
            self.rests += 1
            self.frame = None

    def wake(self) -> None:
        with self.cond:
            self.rests = max(0, self.rests - 1)
            self.cond.notify_all()

    def wait_awake(self, stop: threading.Event) -> None:
        """The reader, between reads: return once the rest is over (or the daemon stops)."""
        with self.cond:
            while self.rests and not stop.is_set():
                self.cond.wait(0.2)


def _close(src: Source | None) -> None:
    if src is not None:
        try:
            src.close()
        except Exception:  # a driver that fails to close must not take the reader down
            log.debug("closing the camera failed", exc_info=True)


class CameraReader:
    """Runs readers (one live, at most one abandoned) and restarts them when the supervisor says so."""

    def __init__(self, open_source: Callable[[], Source], supervisor: CameraSupervisor, latest: LatestFrame):
        self.open_source, self.sup, self.latest = open_source, supervisor, latest
        self.stop_event = threading.Event()
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        self._spawn(self.sup.gen)

    def watch(self) -> None:
        """On the daemon's timer: let the supervisor judge the camera, replace a stuck reader."""
        self.threads = [t for t in self.threads if t.is_alive()]
        gen = self.sup.tick(readers_alive=len(self.threads))
        if gen is not None:
            self._spawn(gen)

    def stop(self, deadline: float) -> None:
        """Ask the readers to finish and wait for them until `deadline` (time.monotonic())."""
        self.stop_event.set()
        for t in self.threads:
            t.join(max(0.1, deadline - time.monotonic()))

    def _spawn(self, gen: int) -> None:
        t = threading.Thread(target=self._read, args=(gen,), name=f"camera-{gen}", daemon=True)
        t.start()
        self.threads.append(t)

    def _read(self, gen: int) -> None:
        src: Source | None = None
        source = self.sup.source
        drop = 0    # frames still to drop after a rest: queued by the driver before it ended
        while not self.stop_event.is_set():
            if src is None:
                if not self.sup.opening(gen):
                    break
                try:
                    src = self.open_source()
                except Exception as e:
                    nxt = self.sup.failed(gen, self._describe(e))
                    if nxt.action == "exit":
                        break
                    self.stop_event.wait(nxt.wait)
                    continue
                if not self.sup.opened(gen):
                    break  # given up on while open() hung: let the new reader have the device
                drop = 0
            if self.latest.resting:
                self.sup.rest(gen, True)          # a rest is not a stall
                self.latest.wait_awake(self.stop_event)
                self.sup.rest(gen, False)
                drop = src.held_frames
                continue
            try:
                frame = src.read()
                if not isinstance(frame, Frame):
                    raise CorruptFrame(f"{source}: the source returned {type(frame).__name__}, not a Frame")
            except CorruptFrame as e:
                nxt = self.sup.corrupt(gen, str(e))
            except Exception as e:
                nxt = self.sup.failed(gen, self._describe(e))
            else:
                if not self.sup.frame(gen, frame.size):
                    break  # this reader was given up on while read() was stuck
                if drop:
                    drop -= 1
                else:
                    self.latest.put(frame)
                frame = None   # not held through the next read (a frame-sized array)
                continue
            if nxt.action == "exit":
                break
            if nxt.action == "reopen":
                _close(src)
                src = None
            self.stop_event.wait(nxt.wait)
        _close(src)

    def _describe(self, e: Exception) -> str:
        if isinstance(e, SourceError):
            return str(e)
        # not a SourceError: a driver bug, which must not kill the camera thread; log it in full once
        msg = f"{self.sup.source}: {type(e).__name__}: {e}"
        if self.sup.error != msg:
            log.exception("camera failure: %s", e)
        return msg
