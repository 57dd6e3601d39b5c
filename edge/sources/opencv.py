"""v4l2:/dev/videoN and gst:PIPELINE through OpenCV's VideoCapture, with the locked camera settings:
V4L2 controls set and read back, nvarguscamerasrc's locks and ranges added to a gst: pipeline."""
from __future__ import annotations

import time

import cv2

from edge.sources.base import Frame, Source, SourceError, as_rgb8
from edge.sources.controls import Controls


def quiet_opencv() -> None:
    """OpenCV logs its own warnings for an absent camera; we say it in one line ourselves."""
    try:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    except AttributeError:
        pass


class OpenCVSource(Source):
    def __init__(self, kind: str, target: str, width: int, height: int, fps: float,
                 controls: Controls = Controls()):
        self.uri = f"{kind}:{target}"
        self.controls, self.locked = controls, {}
        quiet_opencv()
        backend = cv2.CAP_V4L2 if kind == "v4l2" else cv2.CAP_GSTREAMER
        if kind == "gst":
            target = controls.argus(target)
        self.cap = cv2.VideoCapture(target, backend)
        if not self.cap.isOpened():
            why = "no such device or no permission" if kind == "v4l2" else \
                "the pipeline does not start (or OpenCV lacks GStreamer support)"
            raise SourceError(f"{self.uri}: cannot open camera: {why}")
        if kind == "v4l2":
            self.cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
            self.cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
            self.cap.set(cv2.CAP_PROP_FPS, fps)
            self.cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # keep latency low: no stale queue
            self.held_frames = 2        # that one buffer, or the two many drivers keep at least
            try:
                self.locked = controls.v4l2(self.cap)
            except ValueError as e:
                self.cap.release()
                raise SourceError(f"{self.uri}: {e}") from None
        else:   # OpenCV's appsink queue (CAP_PROP_GSTREAMER_QUEUE_LENGTH, 1) and one frame upstream of it
            self.held_frames = 2
        if kind != "v4l2" and controls.locked:
            self.locked = {"pipeline": target}
        self.seq = 0

    def read(self) -> Frame:
        ok, img = self.cap.read()
        if not ok or img is None:
            raise SourceError(f"{self.uri}: camera returned no frame (unplugged or stalled?)")
        self.seq += 1
        settings = {"width": img.shape[1], "height": img.shape[0], "controls": self.controls.describe(), **self.locked}
        for name, prop in (("exposure", cv2.CAP_PROP_EXPOSURE), ("gain", cv2.CAP_PROP_GAIN),
                           ("fps", cv2.CAP_PROP_FPS)):
            v = self.cap.get(prop)
            if v and v > 0:
                settings[name] = v
        stamp_ms = self.cap.get(cv2.CAP_PROP_POS_MSEC)  # V4L2: the driver's buffer timestamp
        return Frame(as_rgb8(img), self.seq, time.monotonic(), settings, stamp_ms / 1e3 if stamp_ms > 0 else None)

    def close(self) -> None:
        self.cap.release()
