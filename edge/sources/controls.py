"""Camera settings that hold: exposure, gain and white balance locked from the config.

With auto exposure and auto white balance a colour calibration made at one moment does not hold the
next, so a kiosk locks them ([camera] exposure_us, gain, white_balance) and records them with every
capture. Each camera API has its own words for the same three things:

- picamera2 (libcamera): AeEnable, ExposureTime (us), AnalogueGain, AwbEnable, ColourGains (red, blue);
- V4L2 through OpenCV: auto_exposure (1 = manual), exposure_time_absolute (100 us units), gain,
  white_balance_automatic and white_balance_temperature (K);
- Jetson's nvarguscamerasrc (GStreamer): aelock, exposuretimerange (ns), gainrange, awblock, wbmode.

A value of 0 / "auto" leaves that control to the camera.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from edge.config import WHITE_BALANCE as WB


@dataclass(frozen=True)
class Controls:
    exposure_us: int = 0          # 0: auto exposure
    gain: float = 0.0             # analogue gain; 0: the camera's (auto with auto exposure)
    white_balance: str = "auto"   # "auto" | "<kelvin>K" | "<red>,<blue>" colour gains

    @classmethod
    def from_config(cls, cam: dict) -> "Controls":
        return cls(int(cam.get("exposure_us", 0)), float(cam.get("gain", 0.0)), cam.get("white_balance", "auto"))

    @property
    def kelvin(self) -> int | None:
        m = WB.match(self.white_balance)
        return int(m.group(2)) if m and m.group(2) else None

    @property
    def colour_gains(self) -> tuple[float, float] | None:
        m = WB.match(self.white_balance)
        return (float(m.group(3)), float(m.group(4))) if m and m.group(3) else None

    @property
    def locked(self) -> bool:
        return bool(self.exposure_us or self.white_balance != "auto")

    def describe(self) -> dict:
        """As recorded with captures and calibration profiles, and shown by `status`."""
        return {"exposure": f"{self.exposure_us} us" if self.exposure_us else "auto",
                "gain": self.gain if self.gain else "auto", "white_balance": self.white_balance}

    def differs(self, recorded: dict | None) -> str | None:
        """Why settings recorded (by a calibration) differ from these, or None."""
        if not recorded:
            return None
        mine = self.describe()
        diff = [f"{k} {recorded.get(k)} -> {mine[k]}" for k in mine if recorded.get(k) != mine[k]]
        return ", ".join(diff) or None

    # -- per camera API -------------------------------------------------------------------------------
    def picamera2(self) -> dict:
        """libcamera controls for Picamera2.set_controls / a configuration's controls."""
        if self.kelvin:
            raise ValueError("picamera2 takes white balance as red,blue colour gains (e.g. \"1.8,1.5\"), "
                             "not a colour temperature")
        c: dict = {}
        if self.exposure_us:
            c.update(AeEnable=False, ExposureTime=int(self.exposure_us))
            if self.gain:
                c["AnalogueGain"] = float(self.gain)
        if self.colour_gains:
            c.update(AwbEnable=False, ColourGains=self.colour_gains)
        return c

    def v4l2(self, cap) -> dict:
        """Set on an OpenCV V4L2 VideoCapture and read back; {control: value read back}."""
        import cv2

        if self.colour_gains:
            raise ValueError("V4L2 through OpenCV takes white balance as a colour temperature (e.g. \"5000K\"), "
                             "not red,blue gains")
        wanted = []
        if self.exposure_us:
            wanted += [(cv2.CAP_PROP_AUTO_EXPOSURE, 1),           # V4L2_EXPOSURE_MANUAL
                       (cv2.CAP_PROP_EXPOSURE, self.exposure_us / 100)]   # exposure_time_absolute: 100 us
            if self.gain:
                wanted.append((cv2.CAP_PROP_GAIN, self.gain))
        if self.kelvin:
            wanted += [(cv2.CAP_PROP_AUTO_WB, 0), (cv2.CAP_PROP_WB_TEMPERATURE, self.kelvin)]
        names = {cv2.CAP_PROP_AUTO_EXPOSURE: "auto_exposure", cv2.CAP_PROP_EXPOSURE: "exposure_time_absolute",
                 cv2.CAP_PROP_GAIN: "gain", cv2.CAP_PROP_AUTO_WB: "white_balance_automatic",
                 cv2.CAP_PROP_WB_TEMPERATURE: "white_balance_temperature"}
        got = {}
        for prop, value in wanted:
            cap.set(prop, value)
            got[names[prop]] = cap.get(prop)
        return got

    def argus(self, pipeline: str) -> str:
        """The pipeline with nvarguscamerasrc's locks and ranges added (properties already there win)."""
        m = re.search(r"nvarguscamerasrc((?:\s+[\w-]+=(?:\"[^\"]*\"|\S+))*)", pipeline)
        if not m:
            return pipeline
        have = set(re.findall(r"([\w-]+)=", m.group(1)))
        props = {}
        if self.exposure_us:
            ns = int(self.exposure_us * 1000)
            props.update(aelock="true", exposuretimerange=f'"{ns} {ns}"')
            if self.gain:
                props["gainrange"] = f'"{self.gain:g} {self.gain:g}"'
        if self.white_balance != "auto":
            props.update(awblock="true")
        extra = "".join(f" {k}={v}" for k, v in props.items() if k not in have)
        return pipeline[:m.end()] + extra + pipeline[m.end():]


__all__ = ["Controls"]
