"""picamera2:N: a libcamera camera (Raspberry Pi style) through the picamera2 API, with the locked
exposure, gain and colour gains as libcamera controls (and what the camera reports it ran with)."""
from __future__ import annotations

import time

from edge.sources.base import Frame, Source, SourceError
from edge.sources.controls import Controls


class Picamera2Source(Source):
    held_frames = 2    # picamera2's last completed request and the one completing when reading resumes
    def __init__(self, index: str, width: int, height: int, fps: float, controls: Controls = Controls()):
        self.uri = f"picamera2:{index}"
        self.controls = controls
        try:
            locked = controls.picamera2()
        except ValueError as e:
            raise SourceError(f"{self.uri}: {e}") from None
        try:
            from picamera2 import Picamera2
        except ImportError:
            raise SourceError(f"{self.uri}: picamera2 is not installed (pip install 'phonescope[picamera]' "
                              f"or apt install python3-picamera2)") from None
        try:
            self.cam = Picamera2(int(index))
            config = self.cam.create_video_configuration(
                main={"size": (width, height), "format": "RGB888"},
                controls={"FrameDurationLimits": (int(1e6 / fps), int(1e6 / fps)), **locked})
            self.cam.configure(config)
            self.cam.start()
        except Exception as e:  # libcamera raises RuntimeError/IndexError/... for absent cameras
            raise SourceError(f"{self.uri}: cannot start camera: {e}") from None
        self.seq = 0

    def read(self) -> Frame:
        try:
            request = self.cam.capture_request()
            try:
                # libcamera's RGB888 is B,G,R in memory order
                img = request.make_array("main")[..., ::-1].copy()
                meta = request.get_metadata()
            finally:
                request.release()
        except Exception as e:
            raise SourceError(f"{self.uri}: capture failed: {e}") from None
        self.seq += 1
        settings = {k: meta[k] for k in ("ExposureTime", "AnalogueGain", "ColourGains", "ColourTemperature", "Lux",
                                         "AeLocked") if k in meta}
        settings["controls"] = self.controls.describe()
        sensor_ns = meta.get("SensorTimestamp")  # ns, the kernel's timestamp of the frame's start of exposure
        return Frame(img, self.seq, time.monotonic(), settings, sensor_ns / 1e9 if sensor_ns else None)

    def close(self) -> None:
        try:
            self.cam.stop()
            self.cam.close()
        except Exception:
            pass
