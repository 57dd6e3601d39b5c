"""window: an OpenCV full-screen window on the HDMI display (X11 or Wayland); space/Enter = capture."""
from __future__ import annotations

import ctypes
import ctypes.util
import os

import cv2
import numpy as np

from edge.sinks.base import Sink


def x11_screen_size() -> tuple[int, int] | None:
    """The X screen's size through libX11 (None where there is no X)."""
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


class WindowSink(Sink):
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
