"""fbdev: straight into a Linux framebuffer, geometry and pixel format from sysfs."""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from edge.sinks.base import Sink


class FbdevSink(Sink):
    """Linux framebuffer: geometry, depth and stride from sysfs; RGB565 or 32-bit BGRX/BGRA."""

    kind = "fbdev"

    def __init__(self, device: str | os.PathLike, sysfs_dir: str | os.PathLike | None = None):
        self.device = Path(device)
        self.sysfs = Path(sysfs_dir) if sysfs_dir else Path("/sys/class/graphics") / self.device.name
        try:
            w, h = (int(v) for v in (self.sysfs / "virtual_size").read_text().strip().split(","))
            self.bpp = int((self.sysfs / "bits_per_pixel").read_text().strip())
            stride_file = self.sysfs / "stride"
            self.stride = int(stride_file.read_text().strip()) if stride_file.exists() else w * self.bpp // 8
        except (OSError, ValueError) as e:
            raise OSError(f"framebuffer {self.device}: cannot read geometry from {self.sysfs} ({e})") from None
        if self.bpp not in (16, 32):
            raise OSError(f"framebuffer {self.device}: unsupported depth {self.bpp} bits (16 or 32 expected)")
        self.width, self.height = w, h
        self.size = (w, h)
        self.fd = os.open(self.device, os.O_WRONLY)

    def pixels(self, rgb: np.ndarray) -> bytes:
        """Letterbox the picture into the framebuffer and convert to its pixel format."""
        h, w = rgb.shape[:2]
        s = min(self.width / w, self.height / h)
        nw, nh = max(1, int(w * s)), max(1, int(h * s))
        canvas = np.zeros((self.height, self.width, 3), np.uint8)
        y0, x0 = (self.height - nh) // 2, (self.width - nw) // 2
        canvas[y0:y0 + nh, x0:x0 + nw] = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA)
        if self.bpp == 16:
            px = cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR565)  # little-endian RGB565
        else:
            px = cv2.cvtColor(canvas, cv2.COLOR_RGB2BGRA)    # B,G,R,A in memory (XRGB8888 LE)
        row = px.reshape(self.height, -1)
        if row.shape[1] != self.stride:
            padded = np.zeros((self.height, self.stride), np.uint8)
            padded[:, :row.shape[1]] = row
            row = padded
        return row.tobytes()

    def show(self, rgb: np.ndarray) -> list[str]:
        os.pwrite(self.fd, self.pixels(rgb), 0)
        return []

    def close(self) -> None:
        os.close(self.fd)
