"""The capture path in-process: a real daemon from the wiring around a gated camera and a known engine.

Real: wiring, reader threads, inference loop, tiling, capture queue and writer, Storage with its SQLite
catalogue in a real folder. Fake: the camera (one frame per release), the engine (x -> 1 - x), the screen.
"""
from __future__ import annotations

import dataclasses
import gc
import json
import logging
import shutil
import tempfile
import threading
import time
import weakref
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.capture import CAPTURE_QUEUE, BadSampleId, Busy, DiskFull, EngineFailed, FrameTimeout, Stopping
from edge.imageio import read_rgb8
from edge.scope import summarise
from edge.simulator import DEFAULT_PHONE, degrade
from tests.fakes import CARD, FakeEngine, GatedCamera, RecordingSink, build_daemon
from tests.helpers import SAMPLES, check_consistent, wait_until


@pytest.fixture
def state():
    """A short path: the control socket's name must fit AF_UNIX's 108 bytes."""
    d = Path(tempfile.mkdtemp(prefix="ps-unit-"))
    yield d / "state"
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def live(state):
    """A started daemon that has shown one frame; yields (daemon, camera, engine)."""
    src, engine = GatedCamera(), FakeEngine()
    d = build_daemon(state, source=src, engine=engine)
    d.start()
    src.release()
    assert d.inference.first_frame.wait(10), "the first frame reaches the preview"
    yield d, src, engine
    src.end()
    d.shutdown()


def files(state: Path) -> list[Path]:
    return [p for p in (state / "captures").rglob("*") if p.is_file()]


def test_capture_uses_a_frame_grabbed_after_the_request(live, state):
    d, src, _ = live
    req = d.submit("slide-1", "socket")
    time.sleep(0.3)
    assert not req.result.done(), "frame 1 is older than the request: the capture waits for a fresh one"
    src.release()
    stored = req.result.result(timeout=10)
    meta = json.loads(stored.sidecar.read_text())
    assert meta["camera"]["frame_seq"] == 2 and meta["origin"] == "socket" and meta["sample_id"] == "slide-1"
    assert meta["camera"]["source"] == "gated" and meta["camera"]["fake"] is True
    assert meta["backend"] == "fake" and meta["model"]["name"] == "fake" and meta["output"]["bits"] == 8
    img = cv2.imread(str(stored.image), cv2.IMREAD_UNCHANGED)
    assert img.shape == (48, 64, 3) and (img == 255 - 20).all(), "frame 2 (grey 20) through x -> 1 - x"
    assert stored.raw is not None and stored.raw.is_file()
    assert d.status()["captures"] == 1 and d.status()["last_capture"]["seq"] == 1
    assert check_consistent(state)["captures"] == 1


def test_busy_beyond_the_queue(state):
    d = build_daemon(state)          # not started: nothing takes requests off the queue
    reqs = [d.submit(None, "socket") for _ in range(CAPTURE_QUEUE)]
    with pytest.raises(Busy, match=f"busy: {CAPTURE_QUEUE} captures are already waiting"):
        d.submit(None, "key")
    d.shutdown()
    for r in reqs:
        with pytest.raises(Stopping, match="daemon stopped"):
            r.result.result(timeout=1)
    with pytest.raises(Stopping, match="daemon is stopping"):
        d.submit(None, "socket")


def test_disk_below_the_watermark_is_refused_before_anything_is_written(state):
    d = build_daemon(state, **{"storage.min_free_mb": 10 ** 9})
    try:
        with pytest.raises(DiskFull, match="watermark"):
            d.submit(None, "socket")
        assert any("watermark" in w for w in d.status()["warnings"])
        assert not files(state)
    finally:
        d.shutdown()


def test_disk_that_fills_after_the_request_loses_nothing_and_recovers(live, state):
    d, src, _ = live
    req = d.submit(None, "socket")
    d.storage.min_free_mb = 10 ** 9          # the disk fills while the capture is being enhanced
    src.release()
    with pytest.raises(DiskFull, match="disk nearly full"):
        req.result.result(timeout=10)
    assert not files(state) and any("disk nearly full" in w for w in d.status()["warnings"])
    assert wait_until(lambda: not d.inference.latest.resting, 5), "a failed store ends the camera's rest"
    d.storage.min_free_mb = 0                # space freed: no restart needed
    req = d.submit(None, "socket")
    src.release()
    assert req.result.result(timeout=10).image.is_file()
    assert not d.status()["warnings"]
    assert check_consistent(state)["captures"] == 1


@pytest.mark.parametrize("fault, words", [("nan", "NaN"), ("fail", "the device fell off the bus")])
def test_engine_failure_saves_nothing_and_recovers(live, state, fault, words):
    d, src, engine = live
    setattr(engine, fault, True)
    req = d.submit(None, "socket")
    src.release()
    with pytest.raises(EngineFailed, match=f"enhancement failed, nothing saved: .*{words}"):
        req.result.result(timeout=10)
    assert not files(state) and not d.inference.latest.resting, "a failed network ends the camera's rest"
    src.release()                            # the preview says so too
    assert wait_until(lambda: any(words in w for w in d.status()["warnings"]), 5)
    setattr(engine, fault, False)
    req = d.submit(None, "socket")
    src.release()
    assert req.result.result(timeout=10).image.is_file()
    src.release()
    assert wait_until(lambda: not d.status()["warnings"], 5)


def test_no_fresh_frame_is_a_timeout_that_names_the_camera_fault(live):
    d, src, _ = live
    d.inference.frame_wait_s = 0.5
    with pytest.raises(FrameTimeout, match=r"no camera frame within 0.5 s$"):
        d.submit(None, "socket").result.result(timeout=10)
    src.failing = True
    src.release()
    assert wait_until(lambda: not d.status()["camera"]["ok"], 5)
    with pytest.raises(FrameTimeout, match="no camera frame within 0.5 s: gated: unplugged"):
        d.submit(None, "socket").result.result(timeout=10)


def test_bad_sample_id_is_refused(state):
    d = build_daemon(state)
    try:
        for bad in ("../x", "a/b", "", 5):
            if bad == "":
                assert d.submit(bad, "socket").sample_id is None
                continue
            with pytest.raises(BadSampleId, match="sample id"):
                d.submit(bad, "socket")
    finally:
        d.shutdown()


class QueuedKeys:
    """The operator's keyboard outside the sink (evdev on a kiosk without X): events handed out once."""

    def __init__(self):
        self.events: list[tuple] = []
        self.closed = False
        self.active = True

    def poll(self) -> list[tuple]:
        events, self.events = self.events, []
        return events

    def close(self) -> None:
        self.closed = True


@pytest.mark.parametrize("where", ["window", "keyboard"])
def test_the_capture_key(state, where):
    """Space in the preview window (the sink's events), or on a keyboard read apart from the sink (evdev)."""
    src, sink, keys = GatedCamera(), RecordingSink(), QueuedKeys()
    pressed = sink if where == "window" else keys
    d = build_daemon(state, source=src, sink=sink, keys=keys if where == "keyboard" else None)
    d.start()
    try:
        src.release()
        assert d.inference.first_frame.wait(10)
        shown = sink.shown
        pressed.events.append(("space",))
        assert wait_until(lambda: sink.shown >= shown + 2, 5), "the preview thread took the key (and submitted)"
        assert not pressed.events
        src.release()
        assert wait_until(lambda: d.writer.captures_done == 1, 10)
        meta = json.loads(next((state / "captures").rglob("*.json")).read_text())
        assert meta["origin"] == "key" and sink.shown > 0
        pv = d.status()["preview"]    # the preview thread goes on showing pictures meanwhile
        assert pv["sink"] == "recording" and pv["why"] == "" and 0 < pv["shown"] <= d.preview.shown
    finally:
        src.end()
        d.shutdown()
    assert keys.closed == (where == "keyboard"), "the preview thread closes the keyboards with its sink"


def test_a_scanned_sample_id_a_capture_and_a_retake_flag_from_the_keyboard(state):
    """What a barcode scanner types (characters + Enter), then Space: the capture carries the sample id, the
    session, the configured operator and the frame's focus score; Left then Delete flags it "retake"."""
    src, sink, keys = GatedCamera(), RecordingSink(), QueuedKeys()
    d = build_daemon(state, source=src, sink=sink, keys=keys, **{"operator.id": "tech-1"})
    d.start()
    try:
        src.release()
        assert d.inference.first_frame.wait(10)
        keys.events += [("char", c) for c in "S-17"] + [("enter",), ("space",)]
        assert wait_until(lambda: d.captures.qsize() or d.writer.captures_done, 5)
        src.release()
        assert wait_until(lambda: d.writer.captures_done == 1, 10)
        (row,) = d.storage.rows()
        assert row["sample_id"] == "S-17" and row["operator_id"] == "tech-1" and row["session_id"]
        assert row["session_id"] == d.preview.operator.session_id and row["focus_score"] is not None
        assert wait_until(lambda: d.preview.operator.recent == [row["seq"]], 5)
        assert d.preview.thumbnail() is not None and d.preview.thumbnail().shape[1] == 480
        keys.events += [("left",), ("delete",)]
        assert wait_until(lambda: d.storage.rows()[0]["review"] == "retake", 5)
        assert "flagged" in d.preview.operator.message
        view = d.board.view()
        assert view.reviewing == row["seq"] and view.review_flag == "retake" and view.sample_id == "S-17"
        keys.events += [("char", c) for c in "bad/id"] + [("enter",)]
        assert wait_until(lambda: "refused" in (d.preview.operator.message or ""), 5)
        assert d.preview.operator.sample_id == "S-17"
    finally:
        src.end()
        d.shutdown()


def test_a_capture_leaves_no_frame_sized_array_behind(live):
    """Memory (README, "Memory and the capture path"): once a capture is stored, nothing holds its camera
    frame or its enhanced image (an 8 MP frame is 24 MB; the writer held both until the next capture, the
    inference loop its last preview frame through every capture), the engine gave its working memory
    back before the capture's tiles and after them, and the camera rested meanwhile (no newest frame held)."""
    d, src, engine = live
    asked, shown, phases, shown_freed, held = [], [], [], [], []
    publish, put = d.inference.publish, d.writer.put

    def publish_then_capture(raw, enhanced):      # a capture asked for just as a preview frame is shown
        publish(raw, enhanced)
        if not asked:
            shown.append(weakref.ref(d.inference.latest.frame))
            asked.append(d.submit(None, "socket"))

    def release():
        latest = d.inference.latest
        phases.append(d.inference.current is not None and latest.resting and latest.frame is None)
        gc.collect()
        shown_freed.append(shown[0]() is None)

    def put_watched(req, frame, image, timings, focus_score, encoded=None, **kw):
        held.extend([weakref.ref(frame), weakref.ref(frame.image), weakref.ref(image)])
        assert d.inference.latest.resting, "the camera rests until the capture is encoded"
        put(req, frame, image, timings, focus_score, encoded, **kw)

    d.inference.publish, engine.release_memory, d.writer.put = publish_then_capture, release, put_watched
    src.release()                                # shown, and the capture asked for
    assert wait_until(lambda: asked, 10)
    src.release()                                # the capture's frame, grabbed after the request
    assert asked[0].result.result(timeout=10).image.is_file()
    assert phases == [True, True], "memory given back before and after the capture's tiles, the camera resting"
    assert not d.inference.latest.resting, "the camera reads again once the capture is encoded"
    assert shown_freed[0], "the frame the preview showed last is not held through the capture"
    src.release()                                # a newer frame: the captured one is no longer the latest
    assert len(held) == 3
    assert wait_until(lambda: gc.collect() >= 0 and all(r() is None for r in held), 10), \
        "frame, its pixels and the enhanced image freed once stored (and shown no more)"


def test_shutdown_finishes_a_capture_in_progress(live, state):
    d, src, _ = live
    req = d.submit(None, "socket")
    src.release()
    assert wait_until(lambda: req.result.done() or d.writer.qsize(), 10)
    src.end()
    assert d.shutdown() == 0
    assert req.result.result(timeout=0).image.is_file()
    assert "STOPPING=1" in d.notifier.sent and not (state / "control.sock").exists()


def test_shutdown_answers_a_capture_still_waiting_for_its_frame(live):
    """SIGTERM while a capture waits for a fresh frame: the caller gets an answer, not a dropped line."""
    d, src, _ = live
    req = d.submit(None, "socket")
    assert wait_until(lambda: d.inference.current is req, 5)
    src.end()                                # the camera is gone too: only the capture holds shutdown up
    t0 = time.monotonic()
    assert d.shutdown() == 0 and time.monotonic() - t0 < 5.0
    with pytest.raises(Stopping, match="daemon stopped before the capture was taken, nothing saved"):
        req.result.result(timeout=0)


def test_shutdown_answers_captures_the_storage_thread_did_not_finish_in_time(live):
    """SIGTERM while the storage thread is still inside a capture past the stop grace (a slow disk, a slow
    encode on a slow CPU; found by CI with lossless raw frames): that capture and the one queued behind it
    are answered, never left to a connection the exiting process closes without a word."""
    d, src, _ = live
    slow_disk, inside = threading.Event(), threading.Event()
    d.writer.on_saved.append(lambda stored, image: (inside.set(), slow_disk.wait(30)))
    first = d.submit(None, "socket")
    src.release()
    assert inside.wait(10), "the storage thread is inside the first capture"
    second = d.submit(None, "socket")
    src.release()
    assert wait_until(lambda: d.writer.qsize() == 1, 10), "the second waits behind it"
    assert not d.inference.latest.resting, "a capture queued behind another's store leaves the camera reading"
    src.end()
    t0 = time.monotonic()
    try:
        assert d.shutdown() == 0 and time.monotonic() - t0 < 5.5
        for req in (first, second):
            with pytest.raises(Stopping, match="daemon stopped before the capture was saved, not acknowledged"):
                req.result.result(timeout=0)
    finally:
        slow_disk.set()


@pytest.mark.parametrize("fmt", ["png", "tiff", "jpeg"])
def test_the_image_file_itself_says_it_is_ai_enhanced_and_by_which_model(state, fmt):
    """Embedded in the file's own metadata (PNG text chunk, TIFF ImageDescription/Software, JPEG comment),
    read back by Pillow and tifffile: it survives a copy without its sidecar."""
    from PIL import Image

    src = GatedCamera()
    d = build_daemon(state, source=src, **{"capture.format": fmt, "preview.notice": "Research use only (test, é)"})
    d.start()
    try:
        src.release()
        req = d.submit(None, "socket")
        src.release()
        path = req.result.result(timeout=10).image
    finally:
        src.end()
        d.shutdown()
    if fmt == "tiff":
        import tifffile

        with tifffile.TiffFile(path) as t:
            text = f"{t.pages[0].description} | {t.pages[0].software}"
    else:
        with Image.open(path) as im:
            text = " | ".join(f"{k}: {v.decode() if isinstance(v, bytes) else v}" for k, v in im.info.items()
                              if isinstance(v, (str, bytes)))
    notice = r"Research use only (test, \xe9)" if fmt == "tiff" else "Research use only (test, é)"  # TIFF: ASCII
    assert "AI-enhanced image: phonescope model fake 0" in text and notice in text, text
    assert "phonescope" in text


@pytest.mark.parametrize("fmt,raw_format", [("tiff", "tiff"), ("png", "png"), ("tiff", "jpeg")])
def test_a_calibrated_pixel_size_is_in_the_files_and_the_raw_frame_is_lossless(state, fmt, raw_format):
    """[calibration] pixel_size_um (at [camera] width): the enhanced file declares its own grid's size
    (ImageJ TIFF read back by tifffile: resolution and unit; PNG pHYs), the raw frame the camera's; the
    raw PNG/TIFF is the frame itself, bit for bit."""
    import tifffile

    from edge.imageio import decode
    from tests.helpers import tiff_pixel_size_um

    src = GatedCamera()
    d = build_daemon(state, source=src, **{"capture.format": fmt, "capture.raw_format": raw_format,
                                           "calibration.pixel_size_um": 0.8, "camera.width": 1280})
    d.start()
    try:
        src.release()
        req = d.submit(None, "socket")
        src.release()
        stored = req.result.result(timeout=10)
    finally:
        src.end()
        d.shutdown()
    meta = json.loads(stored.sidecar.read_text())
    cam_um = 0.8 * 1280 / meta["camera"]["width"]
    out_um = cam_um * meta["camera"]["width"] / meta["output"]["width"]
    assert meta["camera"]["pixel_size_um"] == round(cam_um, 6) and meta["output"]["pixel_size_um"] == round(out_um, 6)
    data = stored.image.read_bytes()
    if fmt == "tiff":
        assert abs(tiff_pixel_size_um(data) - out_um) < 1e-9
        with tifffile.TiffFile(stored.image) as t:
            assert t.is_imagej and t.imagej_metadata["unit"] == "um"
            assert "AI-enhanced image: phonescope model fake 0" in t.imagej_metadata["Info"]
    else:
        i = data.index(b"pHYs")
        assert abs(int.from_bytes(data[i + 4:i + 8], "big") - 1e6 / out_um) <= 0.5
    assert stored.raw.name.endswith({"tiff": ".raw.tiff", "png": ".raw.png", "jpeg": ".raw.jpg"}[raw_format])
    raw = decode(stored.raw.read_bytes())[..., ::-1]
    if raw_format != "jpeg":
        c = meta["camera"]      # the gated camera's frame k is a flat grey of 10 k
        assert raw.dtype == np.uint8 and np.array_equal(raw, np.full((c["height"], c["width"], 3),
                                                                      10 * c["frame_seq"] % 256, np.uint8))
        if raw_format == "tiff":
            assert abs(tiff_pixel_size_um(stored.raw.read_bytes()) - cam_um) < 1e-9


def test_sixteen_bit_tiff_is_ome_with_physical_size():
    """A 16-bit capture: ImageJ has no 16-bit RGB, so OME-TIFF (PhysicalSizeX/Y, Description) with the
    standard resolution tags in pixels per centimetre."""
    import io

    import tifffile

    from edge.imageio import encode
    from tests.helpers import tiff_pixel_size_um

    img = (np.arange(40 * 30 * 3, dtype=np.uint32).reshape(30, 40, 3) * 37 % 65536).astype(np.uint16)
    data = encode(img, ".tiff", 16, text={"Description": "AI-enhanced image: m 1", "Software": "phonescope 9"},
                  pixel_size_um=0.25)
    with tifffile.TiffFile(io.BytesIO(data)) as t:
        assert t.is_ome and np.array_equal(t.asarray(), img)
        assert 'PhysicalSizeX="0.25"' in t.ome_metadata and "AI-enhanced image: m 1" in t.ome_metadata
        tags = t.pages[0].tags
        assert tags["XResolution"].value == (40000, 1) and tags["ResolutionUnit"].value == 3
        assert tags["Software"].value == "phonescope 9"
    assert tiff_pixel_size_um(data) == 0.25


def test_status_shows_the_camera_settings_and_a_calibration_made_with_other_ones(state, tmp_path):
    from calibration.profile import update

    update(tmp_path / "p.json", "flat", {"frames": 1}, np.ones((48, 64, 3), np.float32),
           camera={"exposure": "20000 us", "gain": 2.0, "white_balance": "auto"})
    src = GatedCamera()
    d = build_daemon(state, source=src, **{"calibration.profile": str(tmp_path / "p.json")})
    d.start()
    try:
        src.release()
        assert d.inference.first_frame.wait(10)
        st = d.status()
        assert st["camera"]["settings"] == {"fake": True}, "what the newest frame says the camera ran with"
        assert any("calibration was made with other camera settings (exposure 20000 us -> auto, gain 2.0 -> auto)"
                   in w for w in st["warnings"]), st["warnings"]
    finally:
        src.end()
        d.shutdown()


def test_a_camera_showing_what_the_model_never_saw_is_warned_about_once(state, caplog):
    """The card's training statistics (stained slides); the camera shows flat grey: the screen says so and
    the journal once, captures still work."""
    slides = [degrade(read_rgb8(p), DEFAULT_PHONE, seed=1)[0] for p in sorted((SAMPLES / "reference").glob("*.jpg"))]
    card = dataclasses.replace(CARD, raw={"input_stats": summarise(slides)})
    src = GatedCamera()
    d = build_daemon(state, source=src, card=card)
    caplog.set_level(logging.WARNING, logger="phonescope")
    d.start()
    try:
        src.release()
        assert d.inference.first_frame.wait(10)
        assert wait_until(lambda: any("out of the model's scope" in w for w in d.status()["warnings"]), 5)
        req = d.submit(None, "socket")
        src.release()
        assert req.result.result(timeout=10).image.is_file(), "warned, never refused"
        warned = [r for r in caplog.records if "out of the model's scope" in r.getMessage()]
        assert len(warned) == 1 and "colours unlike the training set" in warned[0].getMessage()
    finally:
        src.end()
        d.shutdown()


def test_the_preview_judges_scope_on_the_balanced_frame_the_network_gets(state, caplog):
    """A phone with another white balance shows blood smears: with `[model] sample = "blood"` the glass
    balance takes the cast off before the network, and neither preview nor capture calls the slide out of
    scope; without it, the same frames are warned about."""
    from edge.glass import input_white
    from edge.scope import Scope
    from tests.helpers import sample_rgb
    from tests.unit.test_glass import BLOOD, cast

    slides = [sample_rgb(n) for n in BLOOD]
    raw = {"input_stats": summarise(slides, ["blood"] * len(slides)),
           "input_white": input_white({"blood": slides * 7})}   # 21 unlabelled inputs, each a slide: >= MIN_SLIDES
    picture = (cast(slides[0], (1.5, 1.0, 0.6)) * 255).round().astype(np.uint8)
    assert Scope.from_card(raw).check(picture, False), "the cast alone is out of scope"
    caplog.set_level(logging.WARNING, logger="phonescope")
    for sample, warned in (("blood", False), ("", True)):
        caplog.clear()
        src = GatedCamera(picture=picture)
        d = build_daemon(state / (sample or "none"), source=src, card=dataclasses.replace(CARD, raw=raw),
                         **{"model.sample": sample})
        d.start()
        try:
            src.release()
            assert d.inference.first_frame.wait(10)
            req = d.submit(None, "socket")
            src.release()
            assert req.result.result(timeout=10).image.is_file()
            said = [r.getMessage() for r in caplog.records if "out of the model's scope" in r.getMessage()]
            shown = [w for w in d.status()["warnings"] if "out of the model's scope" in w]
            assert bool(said) == warned and bool(shown) == warned, (sample, said, shown)
        finally:
            src.end()
            d.shutdown()
