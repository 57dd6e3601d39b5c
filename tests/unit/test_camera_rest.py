"""The camera rests while a capture's network runs (README, "Memory and the capture path"): the reader stops
reading, the mailbox lets its frame go, the pause is not taken for a stall, and the frames a driver may have
queued before the rest ended are dropped. Real reader threads on a real replay source of shipped images."""
from __future__ import annotations

import threading
import time

from edge import SAMPLES
from edge.camera import STALL_S, CameraSupervisor
from edge.camera_reader import CameraReader, LatestFrame
from edge.sources.replay import FolderSource
from tests.fakes import FakeClock
from tests.helpers import wait_until


class QueueingSource(FolderSource):
    held_frames = 1     # as V4L2 with one buffer: one frame may date from before the rest


def test_a_resting_camera_reads_nothing_and_drops_what_was_queued():
    opened: list[FolderSource] = []

    def open_source():
        opened.append(QueueingSource(SAMPLES / "phone", fps=30))
        return opened[-1]

    sup, latest = CameraSupervisor("replay:phone", fps=30), LatestFrame()
    put, published = latest.put, []
    latest.put = lambda f: (published.append(f.seq), put(f))
    reader = CameraReader(open_source, sup, latest)
    reader.start()
    try:
        assert wait_until(lambda: latest.count >= 3, 10)
        latest.rest()
        assert latest.frame is None, "the newest frame is let go: nobody takes it during the rest"
        time.sleep(0.3)                          # a read in flight when the rest began ends and is dropped
        src, count = opened[0], latest.count
        reads = src.seq
        time.sleep(0.5)
        assert src.seq == reads and latest.count == count and latest.frame is None, "no reads while resting"
        assert sup.resting
        before = len(published)
        latest.wake()
        assert wait_until(lambda: latest.count > count, 10)
        assert published[before] == reads + 2, "the first frame after the rest (queued before it ended) dropped"
        assert not sup.resting and sup.ok and len(opened) == 1
    finally:
        reader.stop(time.monotonic() + 5)


def test_a_reader_stops_promptly_while_resting():
    sup, latest = CameraSupervisor("replay:phone", fps=30), LatestFrame()
    reader = CameraReader(lambda: FolderSource(SAMPLES / "phone", fps=30), sup, latest)
    reader.start()
    assert wait_until(lambda: latest.count >= 1, 10)
    latest.rest()
    time.sleep(0.2)
    t0 = time.monotonic()
    reader.stop(t0 + 5)
    assert time.monotonic() - t0 < 1.0 and not any(t.is_alive() for t in reader.threads)


def test_a_rest_is_not_a_stall_and_silence_counts_from_its_end():
    clock = FakeClock()
    sup = CameraSupervisor("v4l2:/dev/video0", fps=15, clock=clock)
    assert sup.opening(1)
    sup.opened(1)
    assert sup.frame(1, (640, 480))
    sup.rest(1, True)
    clock.advance(10 * STALL_S)                  # an 8 MP capture on a slow CPU
    assert sup.tick() is None and sup.ok and sup.status()["state"] == "live"
    sup.rest(1, False)
    clock.advance(STALL_S - 0.1)
    assert sup.tick() is None and sup.ok
    clock.advance(0.2)
    sup.tick()
    assert not sup.ok and "no frame for 5 s" in sup.error
    sup.rest(2, True)                            # a reader already given up on has no say
    assert not sup.resting


def test_the_mailbox_refuses_a_frame_read_as_the_rest_began():
    from edge.sources import Frame
    import numpy as np

    latest = LatestFrame()
    latest.rest()
    latest.put(Frame(np.zeros((32, 32, 3), np.uint8), 1, time.monotonic(), {}))
    assert latest.frame is None and latest.count == 0
    latest.wake()
    got = []
    t = threading.Thread(target=lambda: got.append(latest.newer(0, timeout=5)))
    t.start()
    latest.put(Frame(np.zeros((32, 32, 3), np.uint8), 2, time.monotonic(), {}))
    t.join(5)
    assert got and got[0][0].seq == 2
