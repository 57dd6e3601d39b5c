"""Preview sinks for the kiosk's screen, and the frame they show.

window: an OpenCV full-screen window (space bar = capture); fbdev: straight
into a Linux framebuffer, geometry and pixel format from sysfs; file: a JPEG
rewritten atomically at most max_fps times a second; none.
"""
from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger("phonescope")


def compose(raw: np.ndarray | None, enhanced: np.ndarray | None, show: str, width: int,
            lines: list[str], warning: str | None = None) -> np.ndarray:
    """The preview picture (RGB uint8): enhanced, raw or raw|enhanced, with a status bar."""
    if show == "raw" or enhanced is None:
        pic = raw
    elif show == "split" and raw is not None:
        r = cv2.resize(raw, (enhanced.shape[1], enhanced.shape[0]), interpolation=cv2.INTER_AREA)
        pic = np.concatenate([r, enhanced], axis=1)
    else:
        pic = enhanced
    if pic is None:
        pic = np.zeros((width * 9 // 16, width, 3), np.uint8)
    h = int(round(pic.shape[0] * width / pic.shape[1]))
    pic = cv2.resize(pic, (width, max(1, h)), interpolation=cv2.INTER_AREA)
    bar_h = 22 * (len(lines) + (1 if warning else 0)) + 8
    bar = np.zeros((bar_h, width, 3), np.uint8)
    y = 20
    if warning:
        cv2.putText(bar, warning, (8, y), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 80, 60), 2, cv2.LINE_AA)
        y += 22
    for line in lines:
        cv2.putText(bar, line, (8, y), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (230, 230, 230), 1, cv2.LINE_AA)
        y += 22
    return np.concatenate([pic, bar], axis=0)


class NoneSink:
    kind = "none"

    def show(self, rgb: np.ndarray) -> list[str]:
        return []

    def close(self) -> None:
        pass


class FileSink:
    """A preview JPEG for a browser or another process; rename keeps readers from seeing half a file."""

    kind = "file"

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        for stale in self.path.parent.glob(f".{self.path.stem}.*.tmp"):  # left by a crash or power cut
            stale.unlink(missing_ok=True)

    def show(self, rgb: np.ndarray) -> list[str]:
        ok, buf = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 85])
        if ok:
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.stem}.", suffix=".tmp", dir=self.path.parent)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(buf.tobytes())
                os.replace(tmp, self.path)
            except BaseException:  # a full disk: leave no half-written temporary behind
                try:
                    os.unlink(tmp)
                except FileNotFoundError:
                    pass
                raise
        return []

    def close(self) -> None:
        pass


def x11_screen_size() -> tuple[int, int] | None:
    """The X screen's size through libX11 (None where there is no X)."""
    import ctypes
    import ctypes.util

    lib = ctypes.util.find_library("X11")
    if not lib:
        return None
    x11 = ctypes.CDLL(lib)
    x11.XOpenDisplay.restype = ctypes.c_void_p
    x11.XOpenDisplay.argtypes = [ctypes.c_char_p]
    for f in (x11.XDefaultScreen, x11.XCloseDisplay):
        f.argtypes = [ctypes.c_void_p]
    x11.XDisplayWidth.argtypes = x11.XDisplayHeight.argtypes = [ctypes.c_void_p, ctypes.c_int]
    d = x11.XOpenDisplay(None)
    if not d:
        return None
    try:
        scr = x11.XDefaultScreen(d)
        return int(x11.XDisplayWidth(d, scr)), int(x11.XDisplayHeight(d, scr))
    finally:
        x11.XCloseDisplay(d)


class WindowSink:
    """OpenCV full-screen window on the HDMI display; returns key events ('capture')."""

    kind = "window"
    NAME = "phonescope"

    def __init__(self, fullscreen: bool = True):
        if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
            raise OSError("no display for the preview window ($DISPLAY is not set)")
        self.fullscreen = fullscreen
        self.created = False

    def show(self, rgb: np.ndarray) -> list[str]:
        first = not self.created
        if first:  # HighGUI wants the window made by the thread that draws it
            cv2.namedWindow(self.NAME, cv2.WINDOW_NORMAL | cv2.WINDOW_GUI_NORMAL)
            self.created = True
        cv2.imshow(self.NAME, rgb[..., ::-1])
        if first and self.fullscreen:  # after the first image, or Qt keeps the initial size
            cv2.setWindowProperty(self.NAME, cv2.WND_PROP_FULLSCREEN, cv2.WINDOW_FULLSCREEN)
            size = x11_screen_size()
            if size:  # a kiosk X server often runs without a window manager to honour "full screen"
                cv2.moveWindow(self.NAME, 0, 0)
                cv2.resizeWindow(self.NAME, *size)
        key = cv2.waitKey(1) & 0xFF
        return ["capture"] if key in (ord(" "), 13) else []

    def close(self) -> None:
        cv2.destroyAllWindows()


class FbdevSink:
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


def open_sink(kind: str, state_dir: Path, fb_device: str = "/dev/fb0"):
    """auto: a window if $DISPLAY is set, else the preview file."""
    if kind == "auto":
        kind = "window" if os.environ.get("DISPLAY") else "file"
    if kind == "window":
        return WindowSink()
    if kind == "fbdev":
        return FbdevSink(fb_device)
    if kind == "file":
        return FileSink(state_dir / "preview.jpg")
    return NoneSink()
