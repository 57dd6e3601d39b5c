"""The camera supervision rules, on a fake clock: stall, loss, return, resolution change, corrupt runs."""
from __future__ import annotations

import logging

import pytest

from edge.camera import BACKOFF_S, CORRUPT_REOPEN, FIRST_FRAME_S, STALL_S, CameraSupervisor, Next
from tests.fakes import FakeClock

VGA, QVGA = (640, 480), (320, 240)


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def sup(clock):
    s = CameraSupervisor("v4l2:/dev/video0", fps=15, clock=clock)
    assert s.opening(1)
    s.opened(1)
    return s


def test_first_frame_makes_it_live(sup):
    assert sup.status()["state"] == "opening" and sup.ok
    assert sup.frame(1, VGA)
    assert sup.status() == {"source": "v4l2:/dev/video0", "state": "live", "ok": True, "error": None,
                            "size": [640, 480], "corrupt_frames": 0, "resolution_changes": 0,
                            "reopens_after_stall": 0}


def test_stall_is_reported_then_the_stuck_reader_is_replaced(sup, clock, caplog):
    sup.frame(1, VGA)
    clock.advance(STALL_S - 0.1)
    assert sup.tick() is None and sup.ok
    clock.advance(0.2)
    assert sup.tick() is None
    assert sup.state == "stalled" and not sup.ok and "no frame for 5 s (camera stalled)" in sup.error
    clock.advance(2 * STALL_S - 0.2)
    assert sup.tick() is None, "a reopen waits for 3 x the stall time"
    assert "no frame for 15 s" in sup.error, "the message counts from the last frame"
    clock.advance(0.2)
    assert sup.tick(readers_alive=1) == 2, "a new reader (generation 2) replaces the stuck one"
    assert sup.reopens_after_stall == 1 and sup.state == "opening" and "stalled" in sup.error
    assert "abandoning the stuck read" in caplog.text


def test_the_abandoned_reader_is_ignored_when_it_wakes(sup, clock):
    sup.frame(1, VGA)
    clock.advance(3 * STALL_S + 1)
    assert sup.tick() == 2
    assert not sup.frame(1, VGA), "the old reader's frame is dropped and it exits"
    assert sup.corrupt(1, "x") == Next("exit") and sup.failed(1, "x") == Next("exit")
    assert not sup.opening(1) and not sup.opened(1), "a reader that hung in open() closes it and exits"
    assert sup.opening(2) and sup.opened(2)
    assert sup.frame(2, VGA) and sup.ok and sup.state == "live"


def test_at_most_one_reader_is_abandoned_at_a_time(sup, clock):
    sup.frame(1, VGA)
    clock.advance(3 * STALL_S + 1)
    assert sup.tick(readers_alive=2) is None, "the previous stuck reader still hangs: do not add another"
    assert sup.state == "stalled"


def test_return_after_a_stall_clears_the_error(sup, clock, caplog):
    sup.frame(1, VGA)
    clock.advance(STALL_S + 1)
    sup.tick()
    with caplog.at_level(logging.INFO, logger="phonescope"):
        assert sup.frame(1, VGA)
    assert sup.ok and sup.state == "live" and "is back" in caplog.text


def test_lost_camera_is_reopened_with_backoff_and_comes_back(sup, clock):
    sup.frame(1, VGA)
    waits = [sup.failed(1, "v4l2:/dev/video0: camera returned no frame (unplugged or stalled?)").wait
             for _ in range(7)]
    assert waits == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0] and BACKOFF_S == (0.5, 8.0)
    assert sup.state == "lost" and not sup.ok and "unplugged" in sup.error
    clock.advance(120)
    assert sup.tick() is None, "a lost camera is not a stalled reader: it is waiting to reopen"
    assert sup.opening(1)
    sup.opened(1)
    assert sup.frame(1, VGA) and sup.ok
    assert sup.failed(1, "gone again").wait == 0.5, "a frame resets the backoff"


def test_messages_name_the_source(sup):
    sup.failed(1, "ValueError: driver bug")
    assert sup.error == "v4l2:/dev/video0: ValueError: driver bug"


def test_resolution_change_is_counted_and_followed(sup, caplog):
    sup.frame(1, VGA)
    sup.frame(1, QVGA)
    sup.frame(1, QVGA)
    sup.frame(1, VGA)
    assert sup.resolution_changes == 2 and sup.size == VGA and sup.ok
    assert "resolution changed from 640x480 to 320x240" in caplog.text


def test_a_run_of_corrupt_frames_reopens_the_camera(sup, clock):
    sup.frame(1, VGA)
    for i in range(CORRUPT_REOPEN - 1):   # over 8 s: longer than the stall time, but frames do come
        clock.advance(0.3)
        assert sup.corrupt(1, "corrupt frame (ndarray (8, 8, 3) uint8)") == Next("read", 0.02)
        assert sup.tick() is None and sup.state == "corrupt", "a reader delivering corrupt frames is not stuck"
    assert not sup.ok and sup.error.startswith("v4l2:/dev/video0: corrupt frame")
    assert sup.corrupt(1, "corrupt frame") == Next("reopen", 0.5)
    assert sup.corrupt_frames == CORRUPT_REOPEN and sup.state == "lost"
    assert sup.frame(1, VGA) and sup.ok and sup.corrupt_frames == CORRUPT_REOPEN


def test_a_single_corrupt_frame_is_skipped(sup):
    sup.frame(1, VGA)
    assert sup.corrupt(1, "truncated JPEG") == Next("read", 0.02)
    assert not sup.ok
    assert sup.frame(1, VGA) and sup.ok, "the next good frame clears it"


def test_a_camera_that_never_delivers_its_first_frame(clock):
    sup = CameraSupervisor("gst:nvarguscamerasrc ! appsink", fps=30, clock=clock)
    sup.opening(1)
    clock.advance(FIRST_FRAME_S - 1)
    assert sup.tick() is None and sup.ok, "slow first frames after boot are allowed"
    clock.advance(2)
    sup.tick()
    assert sup.state == "stalled" and "no frame for 21 s since it was opened" in sup.error
    clock.advance(2 * FIRST_FRAME_S)
    assert sup.tick() == 2


def test_slow_cameras_get_five_frame_periods(clock):
    sup = CameraSupervisor("v4l2:/dev/video0", fps=0.5, clock=clock)
    sup.opening(1)
    sup.frame(1, VGA)
    clock.advance(9)
    assert sup.tick() is None and sup.ok
    clock.advance(2)
    sup.tick()
    assert sup.state == "stalled"


def test_every_reopen_gets_the_first_frame_grace(sup, clock):
    """A camera plugged back in (or restarted after a stall) may take as long as at boot."""
    sup.frame(1, VGA)
    sup.failed(1, "unplugged")
    clock.advance(30)
    assert sup.opening(1) and sup.opened(1)
    clock.advance(FIRST_FRAME_S - 1)
    assert sup.tick() is None and sup.state == "opening"
    clock.advance(2)
    sup.tick()
    assert sup.state == "stalled"
    assert sup.error == "v4l2:/dev/video0: unplugged", "the cause already shown stays"


def test_a_reopened_camera_that_hangs_says_since_when(clock):
    sup = CameraSupervisor("v4l2:/dev/video0", fps=15, clock=clock)
    sup.opening(1)
    sup.opened(1)
    sup.frame(1, VGA)
    clock.advance(3 * STALL_S + 1)
    assert sup.tick() == 2
    sup.opening(2)
    sup.opened(2)
    clock.advance(FIRST_FRAME_S + 1)
    sup.tick()
    assert "no frame for 21 s since it was opened (camera stalled)" in sup.error
