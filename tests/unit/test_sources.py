"""Camera sources: real files through real OpenCV."""
from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from edge.sources import CorruptFrame, Frame, SourceError, open_source
from tests.helpers import SAMPLES


def test_replay_folder_loops_in_order():
    src = open_source(f"replay:{SAMPLES / 'phone'}", fps=200)
    names = [src.read().settings["file"] for _ in range(6)]
    assert names[:4] == sorted(p.name for p in (SAMPLES / "phone").glob("*.jpg")) and names[4] == names[0]
    f = src.read()
    assert f.image.dtype == np.uint8 and f.image.shape[2] == 3 and f.seq == 7


def test_replay_video_file_through_opencv(tmp_path):
    path = tmp_path / "clip.avi"
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 120))
    assert vw.isOpened()
    for i in range(5):
        vw.write(np.full((120, 160, 3), 40 * i, np.uint8))
    vw.release()
    src = open_source(f"replay:{path}", fps=100)
    means = [src.read().image.mean() for _ in range(7)]
    assert means[0] < means[4] and abs(means[5] - means[0]) < 3, "loops to the start"
    src.close()


def test_simulated_camera_delivers_degraded_frames_at_rate():
    src = open_source("simulated", 320, 240, fps=20)
    src.ready.wait(30)
    t0 = time.monotonic()
    frames = [src.read() for _ in range(10)]
    dt = time.monotonic() - t0
    assert all(f.image.shape == (240, 320, 3) for f in frames)
    assert 0.35 < dt < 2.0
    src.close()


@pytest.mark.parametrize("uri, words", [
    ("replay:/no/such/thing", "no such file"),
    ("v4l2:/dev/video99", "cannot open camera"),
    ("usb:0", "unknown camera source"),
])
def test_bad_sources_say_why(uri, words):
    with pytest.raises(SourceError, match=words):
        open_source(uri, 320, 240, 10)


def test_picamera2_absent_is_one_clear_line():
    pytest.importorskip("numpy")
    try:
        import picamera2  # noqa: F401
        pytest.skip("picamera2 is installed here: the real camera path applies")
    except ImportError:
        pass
    with pytest.raises(SourceError, match="picamera2 is not installed"):
        open_source("picamera2:0", 640, 480, 10)


@pytest.mark.parametrize("image, seq, words", [
    (np.zeros((48, 64), np.uint8), 1, "corrupt frame (ndarray (48, 64) uint8)"),
    (np.zeros((48, 64, 4), np.uint8), 1, "(48, 64, 4)"),
    (np.zeros((48, 64, 3), np.float32), 1, "float32"),
    (np.zeros((8, 64, 3), np.uint8), 1, "(8, 64, 3)"),
    ([[1, 2, 3]], 1, "corrupt frame (list)"),
    (np.zeros((48, 64, 3), np.uint8), -1, "sequence number -1"),
])
def test_a_bad_frame_cannot_be_made(image, seq, words):
    with pytest.raises(CorruptFrame) as e:
        Frame(image, seq, time.monotonic())
    assert words in str(e.value)


def test_a_good_frame_says_what_it_is():
    f = Frame(np.zeros((48, 64, 3), np.uint16), 3, time.monotonic(), {"gain": 2}, sensor_t=12.5)
    assert f.size == (64, 48) and f.as_uint8().dtype == np.uint8 and f.sensor_t == 12.5


def test_simulated_camera_pans_one_slide_at_a_time_through_focus():
    """No frame shows two slides (the camera goes back and forth over one, then the next); the focus
    drifts from defocused through sharp and back along the pan, so the focus score peaks mid-pan."""
    from edge.focus import focus_score
    from edge.sources import simulated

    src = simulated.SimulatedSource(320, 240, fps=1000, positions=5)
    src.hold = 1
    seen, by_slide = [], {}
    t0 = time.monotonic()
    while not all((0, k) in src.frames for k in range(5)) and time.monotonic() - t0 < 30:
        time.sleep(0.01)
    try:
        while len({s for s, _ in seen}) < 3 and time.monotonic() - t0 < 60:
            time.sleep(0.005)          # the renderer works a slide ahead; the camera waits for it
            f = src.read()
            s, k = f.settings["simulated_slide"], f.settings["simulated_position"]
            seen.append((s, k))
            by_slide.setdefault(s, {})[k] = focus_score(f.image)
    finally:
        src.close()
    slides = [s for s, _ in seen]
    assert len(set(slides)) == 3 and slides == sorted(slides), "one slide at a time, then the next"
    first = [k for s, k in seen if s == slides[0]]
    assert first[:9] == [0, 1, 2, 3, 4, 3, 2, 1, 0], "back and forth over the slide"
    scores = by_slide[slides[0]]
    assert scores[2] > scores[1] > scores[0] and scores[2] > scores[3] > scores[4], f"sharp mid-pan: {scores}"
    assert len(src.frames) <= 2 * 5, "at most two slides held"


def test_locked_camera_settings_are_set_and_read_back_on_the_simulated_camera():
    from edge.sources import Controls, simulated

    def first_frame(controls):
        src = simulated.SimulatedSource(160, 120, fps=1000, positions=3, controls=controls)
        try:
            while (0, 0) not in src.frames:
                time.sleep(0.01)
            src.n = 0
            return src.read()
        finally:
            src.close()

    auto = first_frame(Controls())
    locked = first_frame(Controls(exposure_us=5000, gain=1.0, white_balance="1.2,0.8"))
    assert auto.settings["controls"] == {"exposure": "auto", "gain": "auto", "white_balance": "auto"}
    assert locked.settings["controls"] == {"exposure": "5000 us", "gain": 1.0, "white_balance": "1.2,0.8"}
    assert locked.settings["exposure_us"] == 5000 and locked.settings["colour_gains"] == [1.2, 0.8]
    a, b = auto.image.astype(float).mean(axis=(0, 1)), locked.image.astype(float).mean(axis=(0, 1))
    assert abs(b[1] / a[1] - 0.5) < 0.03, "half the exposure, half the light (green)"
    assert abs(b[0] / a[0] - 0.6) < 0.04 and abs(b[2] / a[2] - 0.4) < 0.04, "colour gains on red and blue"


def test_camera_controls_in_each_camera_api():
    """What the locked settings become for picamera2, V4L2 (OpenCV) and nvarguscamerasrc."""
    from edge.sources import Controls

    c = Controls(exposure_us=20000, gain=2.5, white_balance="1.8,1.5")
    assert c.picamera2() == {"AeEnable": False, "ExposureTime": 20000, "AnalogueGain": 2.5, "AwbEnable": False,
                             "ColourGains": (1.8, 1.5)}
    assert Controls().picamera2() == {} and not Controls().locked
    with pytest.raises(ValueError, match="colour gains"):
        Controls(white_balance="5000K").picamera2()
    pipe = "nvarguscamerasrc sensor-id=0 ! video/x-raw(memory:NVMM),width=1920 ! nvvidconv ! appsink"
    out = Controls(exposure_us=20000, gain=2.5, white_balance="5000K").argus(pipe)
    assert out.startswith('nvarguscamerasrc sensor-id=0 aelock=true exposuretimerange="20000000 20000000" '
                          'gainrange="2.5 2.5" awblock=true ! video/x-raw'), out
    assert Controls(exposure_us=1000).argus('nvarguscamerasrc aelock=false ! appsink').count("aelock") == 1
    assert Controls(exposure_us=1000).argus("videotestsrc ! appsink") == "videotestsrc ! appsink"

    class FakeCapture:   # records what OpenCV would pass to the V4L2 driver, reads back what was set
        def __init__(self):
            self.props = {}

        def set(self, prop, value):
            self.props[prop] = value
            return True

        def get(self, prop):
            return self.props.get(prop, -1)

    got = Controls(exposure_us=20000, gain=2.5, white_balance="5000K").v4l2(FakeCapture())
    assert got == {"auto_exposure": 1, "exposure_time_absolute": 200.0, "gain": 2.5,
                   "white_balance_automatic": 0, "white_balance_temperature": 5000}
    with pytest.raises(ValueError, match="colour temperature"):
        Controls(white_balance="1.8,1.5").v4l2(FakeCapture())
    assert c.differs({"exposure": "20000 us", "gain": 2.5, "white_balance": "1.8,1.5"}) is None
    assert c.differs({"exposure": "auto", "gain": "auto", "white_balance": "1.8,1.5"}) == \
        "exposure auto -> 20000 us, gain auto -> 2.5"
