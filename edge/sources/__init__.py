"""Camera sources, chosen by URI.

simulated            a phone camera panning across the shipped sample slides
replay:PATH          a folder of images (looped) or a video file, via OpenCV
v4l2:/dev/videoN     a V4L2 camera through OpenCV
gst:PIPELINE         a GStreamer pipeline through OpenCV (e.g. Jetson's nvarguscamerasrc)
picamera2:N          a libcamera camera through picamera2 (imported only when used)

Every source delivers RGB uint8 frames and raises SourceError when it fails;
reopening with backoff is the pipeline's job, not the source's. Cameras get the
locked exposure, gain and white balance (edge/sources/controls.py) and report
what they run with in each frame's settings.
"""
from __future__ import annotations

from edge.sources.base import CorruptFrame, Frame, Source, SourceError
from edge.sources.controls import Controls


def open_source(uri: str, width: int = 1920, height: int = 1080, fps: float = 15.0,
                controls: Controls = Controls()) -> Source:
    if uri == "simulated":
        from edge.sources.simulated import SimulatedSource
        return SimulatedSource(width, height, fps, controls=controls)
    kind, _, arg = uri.partition(":")
    if kind == "replay" and arg:
        from edge.sources.replay import open_replay
        return open_replay(arg, fps)
    if kind in ("v4l2", "gst") and arg:
        from edge.sources.opencv import OpenCVSource
        return OpenCVSource(kind, arg, width, height, fps, controls)
    if kind == "picamera2" and arg:
        from edge.sources.picamera2 import Picamera2Source
        return Picamera2Source(arg, width, height, fps, controls)
    raise SourceError(f"unknown camera source {uri!r} (simulated, replay:PATH, v4l2:/dev/videoN, "
                      f"gst:PIPELINE, picamera2:N)")


__all__ = ["Controls", "CorruptFrame", "Frame", "Source", "SourceError", "open_source"]
