"""Focus score and meter (edge/focus.py) on a real slide: monotonic over a synthetic focus sweep."""
from __future__ import annotations

import cv2
import numpy as np

from edge.focus import FocusMeter, focus_score
from edge.imageio import to_uint8
from tests.helpers import SAMPLES


def slides():
    from edge.imageio import read_image

    for p in sorted((SAMPLES / "reference").glob("*.jpg")):
        yield p.stem, to_uint8(read_image(p)[0])


def test_the_score_falls_monotonically_as_a_real_slide_goes_out_of_focus():
    for name, img in slides():
        sweep = [focus_score(img if s == 0 else cv2.GaussianBlur(img, (0, 0), s)) for s in (0, 0.7, 1.2, 2, 3, 4.5)]
        assert all(a > b for a, b in zip(sweep, sweep[1:])), f"{name}: {sweep}"
        assert sweep[0] > 3 * sweep[-1], f"{name}: the range is wide enough to see: {sweep}"


def test_the_score_does_not_depend_on_the_camera_resolution():
    name, img = next(slides())
    big = cv2.resize(img, (img.shape[1] * 2, img.shape[0] * 2), interpolation=cv2.INTER_CUBIC)
    a, b = focus_score(cv2.resize(img, (640, round(img.shape[0] * 640 / img.shape[1])))), focus_score(big)
    assert abs(a - b) / a < 0.2, (a, b)
    assert focus_score(big.astype(np.uint16) * 257) == focus_score(big)


def test_the_meter_peaks_at_best_focus_and_says_adjust_on_either_side():
    name, img = next(slides())
    meter, t = FocusMeter(memory_s=20), 0.0
    levels = []
    for s in (4, 3, 2, 1.2, 0.7, 0.0, 0.7, 1.2, 2, 3):   # the knob turned through focus and past it
        t += 0.5
        levels.append(meter.update(focus_score(img if s == 0 else cv2.GaussianBlur(img, (0, 0), s)), t))
    # every new best is full scale on the way in; past the sharpest position the bar falls
    assert levels[:6] == [1.0] * 6 and all(a > b for a, b in zip(levels[5:], levels[6:])), levels
    assert meter.adjust_focus, levels
    meter.update(focus_score(img), t + 0.5)
    assert not meter.adjust_focus
    # a peak from long ago fades: a new, less detailed sample reaches full scale in time
    meter.update(focus_score(cv2.GaussianBlur(img, (0, 0), 2)), t + 200)
    assert meter.level > 0.99
