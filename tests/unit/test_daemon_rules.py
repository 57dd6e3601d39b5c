"""The systemd loop's rules (Daemon.step) on a fake clock: READY, WATCHDOG=1, STATUS=, space, intervals.

A real daemon from the wiring, its threads running, around a gated camera and a known engine; time for
the rules moves only when the test advances the clock, so no rule is checked by waiting.
"""
from __future__ import annotations

import json
import shutil
import signal
import threading
import tempfile
from pathlib import Path

import pytest

from tests.fakes import FakeClock, FakeEngine, GatedCamera, RecordingNotifier, build_daemon
from tests.helpers import wait_until

WATCHDOG_S = 2.0


@pytest.fixture
def parts():
    """(daemon, camera, engine, clock, notifier) for a started daemon with a 2 s systemd watchdog."""
    d = Path(tempfile.mkdtemp(prefix="ps-unit-"))
    made = []

    def make(camera_missing=False, size=(64, 48), s_per_px=0.0, started=True, **settings):
        """size: the camera's frames; s_per_px: the engine's pace in the daemon's time (0: instant);
        started=False: for a test that calls run() itself."""
        clock, notifier = FakeClock(), RecordingNotifier(WATCHDOG_S)
        src, engine = GatedCamera(*size), FakeEngine(clock if s_per_px else None, s_per_px)
        src.missing = camera_missing
        daemon = build_daemon(d / "state", source=src, engine=engine, clock=clock, notifier=notifier, **settings)
        if started:
            daemon.start()
        made.append((daemon, src))
        return daemon, src, engine, clock, notifier

    yield make
    for daemon, src in made:
        src.end()
        daemon.shutdown()
    shutil.rmtree(d, ignore_errors=True)


def first_frame(d, src) -> None:
    src.release()
    assert d.inference.first_frame.wait(10)


def test_ready_only_after_the_first_enhanced_frame(parts):
    d, src, _, clock, notifier = parts()
    d.step()
    assert notifier.count("READY=1") == 0 and notifier.count("WATCHDOG=1") == 0
    assert d.status()["state"] == "starting"
    first_frame(d, src)
    d.step()
    d.step()
    assert notifier.count("READY=1") == 1
    assert notifier.sent[notifier.sent.index("READY=1") + 1] == "STATUS=running: fake"
    assert notifier.count("WATCHDOG=1") == 2 and d.status()["state"] == "running"


def test_ready_without_a_camera_at_boot_then_the_camera_comes(parts):
    """The engine passed its self-test before the threads started: a camera missing at boot must not hold
    READY back (systemd's start timeout would restart the service in a loop); it is picked up when it comes."""
    d, src, _, clock, notifier = parts(camera_missing=True)   # missing from the very first open()
    assert wait_until(lambda: d.supervisor.error is not None, 5), "the first open failed"
    d.step()
    assert notifier.count("READY=1") == 1 and "STATUS=running without a camera: gated: no such camera" in notifier.sent
    assert notifier.count("WATCHDOG=1") == 1, "alive, waiting for its camera"
    assert d.status()["camera"]["ok"] is False and d.status()["state"] == "starting"
    src.missing = False
    opened = src.opened
    clock.advance(10)                        # past the reopen backoff
    assert wait_until(lambda: src.opened > opened, 5), "the reader tries again by itself"
    first_frame(d, src)
    d.step()
    assert d.status()["state"] == "running" and d.status()["camera"]["ok"] is True
    assert notifier.count("READY=1") == 1, "READY is said once"


def test_a_hung_engine_stops_the_watchdog_and_says_so(parts):
    d, src, engine, clock, notifier = parts()
    first_frame(d, src)
    d.step()
    assert notifier.count("WATCHDOG=1") == 1
    engine.hang.set()
    src.release()
    assert engine.entered.wait(5), "inference is now stuck inside the engine"
    clock.advance(WATCHDOG_S / 2 + 0.5)
    d.step()
    assert notifier.count("WATCHDOG=1") == 1, "no WATCHDOG=1 while inference hangs: systemd restarts us"
    assert "inference stalled for 2 s" in d.status()["warnings"]
    engine.hang.clear()
    src.release()
    assert wait_until(lambda: d.inference.frame_t == clock() and d.inference.alive_t == clock(), 5), \
        "frames flow again"
    d.step()
    assert notifier.count("WATCHDOG=1") == 2 and not d.status()["warnings"]


def test_a_long_capture_keeps_the_watchdog_going_for_as_long_as_its_size_asks(parts):
    """A capture's network runs on 16 x the preview's pixels here, in one call, on an engine slow enough that
    the call outlasts the stall limit (the rehearsal kiosk under emulation was killed by its watchdog in
    the middle of captures); the grace follows the previews' pace, and a hung capture is still found."""
    d, src, engine, clock, notifier = parts(size=(640, 480), s_per_px=1e-5, **{"preview.width": 160})
    first_frame(d, src)
    d.step()
    assert notifier.count("WATCHDOG=1") == 1
    req = d.submit("long", "socket")
    assert wait_until(lambda: d.inference.current is req, 5), "the capture is being taken"
    engine.hang.set()
    src.release()
    assert engine.entered.wait(5), "the capture's network call is under way"
    assert WATCHDOG_S / 2 < 640 * 480 * 1e-5 < d.inference.grace_s < 640 * 480 * 1e-5 * 6, d.inference.grace_s
    clock.advance(WATCHDOG_S)             # past the usual limit, well inside what a call this size takes
    d.step()
    assert notifier.count("WATCHDOG=1") == 2 and not d.status()["warnings"], "a slow capture is not a hang"
    # (the gated camera's reader sits in a read the test does not answer: the camera is called stalled below)
    clock.advance(d.inference.grace_s)    # longer than the previews' pace allows: hung after all
    d.step()
    assert notifier.count("WATCHDOG=1") == 2 and any("inference stalled" in w for w in d.status()["warnings"])
    engine.hang.clear()
    assert req.result.result(10).image.exists(), "the capture is saved once the engine comes back"
    d.step()
    assert notifier.count("WATCHDOG=1") == 3 and d.inference.grace_s == 0
    assert not any("inference stalled" in w for w in d.status()["warnings"])


def test_frames_that_stop_without_a_known_cause_stop_the_watchdog(parts):
    d, src, _, clock, notifier = parts()
    first_frame(d, src)
    clock.advance(WATCHDOG_S / 2 + 0.1)
    assert wait_until(lambda: d.inference.alive_t == clock(), 5), "inference itself is alive, idle"
    d.step()
    assert notifier.count("WATCHDOG=1") == 0


def test_a_lost_camera_keeps_the_watchdog_going(parts):
    d, src, _, clock, notifier = parts()
    first_frame(d, src)
    src.failing = True
    src.release()
    assert wait_until(lambda: not d.status()["camera"]["ok"], 5)
    clock.advance(60)
    assert wait_until(lambda: d.inference.alive_t == clock(), 5)
    d.step()
    assert notifier.count("WATCHDOG=1") == 1, "the daemon is fine; the camera is lost and says so"
    assert "camera lost: gated: unplugged" in notifier.sent[-1] or any(
        "WARNING camera lost: gated: unplugged" in s for s in notifier.sent)


def test_status_line_every_two_seconds(parts):
    d, src, _, clock, notifier = parts()
    first_frame(d, src)
    for _ in range(5):
        d.step()
        clock.advance(1.0)
        assert wait_until(lambda: d.inference.alive_t == clock(), 5)
    lines = [s for s in notifier.sent if s.startswith("STATUS=") and "fps" in s]
    assert len(lines) == 3 and all(line.endswith(" fps, 0 captures") for line in lines), lines


def test_interval_captures(parts):
    d, src, _, clock, _ = parts(**{"capture.interval_s": 5})
    first_frame(d, src)
    d.step()
    assert d.captures.qsize() == 0
    clock.advance(5)
    d.step()
    src.release()
    assert wait_until(lambda: d.writer.captures_done == 1, 10)
    sidecar = next((Path(d.storage.root) / "captures").rglob("*.json"))
    assert json.loads(sidecar.read_text())["origin"] == "interval"


def test_low_disk_is_a_warning_until_space_is_freed(parts):
    d, src, _, clock, _ = parts()
    d.storage.min_free_mb = 10 ** 9
    d.step()
    assert any("watermark" in w for w in d.status()["warnings"])
    d.storage.min_free_mb = d.storage.free_mb() - 0.5      # just above the watermark: space comes and goes
    clock.advance(10)
    d.step()
    assert d.status()["warnings"], "cleared only when well above the watermark: it does not flicker"
    d.storage.min_free_mb = 0
    clock.advance(5)
    d.step()
    assert d.status()["warnings"], "checked every 10 s"
    clock.advance(5)
    d.step()
    assert not d.status()["warnings"]


def test_the_camera_supervisor_is_ticked_by_the_loop(parts):
    d, src, _, clock, _ = parts()
    first_frame(d, src)
    clock.advance(6)
    d.step()
    cam = d.status()["camera"]
    assert cam["state"] == "stalled" and "no frame for 6 s (camera stalled)" in cam["error"]
    clock.advance(10)
    d.step()
    assert d.status()["camera"]["reopens_after_stall"] == 1
    assert wait_until(lambda: len(src.handles) == 2, 5), "a new reader opened the camera"
    src.release_to(1)
    assert wait_until(lambda: d.status()["camera"]["ok"] and d.reader.latest.count == 2, 5), "the new reader delivers"
    assert sum(t.is_alive() for t in d.reader.threads) == 2, "the stuck read has not returned yet"
    src.release_to(0)                     # the stuck read returns at last: its frame is dropped, it exits
    assert wait_until(lambda: sum(t.is_alive() for t in d.reader.threads) == 1, 5), "the stuck reader is gone"
    assert d.reader.latest.count == 2 and d.status()["camera"]["ok"], "its late frame went nowhere"


def test_frames_refused_by_the_calibration_keep_the_watchdog_going(parts, tmp_path):
    """The camera changes resolution under a flat-field: every frame is refused and says why; a restart
    would not cure it, so systemd is not asked for one."""
    import numpy as np

    from calibration.profile import update

    update(tmp_path / "kiosk.json", "flat", {"frames": 1}, np.ones((48, 64, 3), np.float32))
    d, src, _, clock, notifier = parts(**{"calibration.profile": str(tmp_path / "kiosk.json")})
    first_frame(d, src)
    src.size = (32, 24)
    src.release()
    assert wait_until(lambda: any("recalibrate at this camera size" in w for w in d.status()["warnings"]), 5)
    clock.advance(WATCHDOG_S)
    assert wait_until(lambda: d.inference.alive_t == clock(), 5)
    d.step()
    assert notifier.count("WATCHDOG=1") == 1


def test_a_stop_signal_landing_inside_the_loops_wait_still_stops_the_daemon(parts):
    """Python runs a signal handler in the main thread between two bytecodes, often inside the loop's
    stopping.wait() with the Event's lock held: a handler that takes that lock (Event.set) waits for ever,
    and systemd kills the daemon at TimeoutStopSec. Here the handler runs while the lock is held (from a
    thread: a plain Lock blocks its own holder and the others alike), then run() must stop on its own."""
    d, src, _, clock, notifier = parts(started=False)
    with d.stopping._cond:     # the lock stopping.wait() holds around its wait
        t = threading.Thread(target=d.on_signal, args=(signal.SIGTERM, None), daemon=True)
        t.start()
        t.join(2)
        assert not t.is_alive(), "the handler waited for the lock its thread's loop holds"
    old = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        src.release()
        assert d.run() == 0       # the loop reads the flag: "stopping", the threads joined, "stopped"
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    assert signal.SIGTERM == d.signalled and d.stopping.is_set() and "STOPPING=1" in notifier.sent
    assert not d.stuck()
