"""window: an OpenCV full-screen window on the HDMI display (X11 or Wayland), and the keys pressed in it."""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import time

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


# HighGUI's waitKeyEx codes (X keysyms under Qt and GTK) -> the operator's keys (edge/operator.py)
NAMED_KEYS = {13: "enter", 10: "enter", 32: "space", 27: "esc", 8: "backspace", 65288: "backspace",
              65361: "left", 65363: "right", 65535: "delete", 65421: "enter", 65293: "enter"}
SHIFT_KEYS = (0xFFE1, 0xFFE2)   # Shift_L, Shift_R
CAPS_LOCK = 0xFFE5


def _x11_modifiers():
    """A function giving the X server's modifier mask now (Shift = 1, Lock = 2), or None without X."""
    lib = ctypes.util.find_library("X11")
    if not lib or not os.environ.get("DISPLAY"):
        return None
    x11 = ctypes.CDLL(lib)
    x11.XOpenDisplay.restype = ctypes.c_void_p
    x11.XOpenDisplay.argtypes = [ctypes.c_char_p]
    x11.XDefaultRootWindow.argtypes = [ctypes.c_void_p]
    x11.XDefaultRootWindow.restype = ctypes.c_ulong
    ulong, cint, cuint = ctypes.c_ulong, ctypes.c_int, ctypes.c_uint
    x11.XQueryPointer.argtypes = [ctypes.c_void_p, ulong, ctypes.POINTER(ulong), ctypes.POINTER(ulong),
                                  ctypes.POINTER(cint), ctypes.POINTER(cint), ctypes.POINTER(cint),
                                  ctypes.POINTER(cint), ctypes.POINTER(cuint)]
    d = x11.XOpenDisplay(None)
    if not d:
        return None
    root = x11.XDefaultRootWindow(d)

    def mask() -> int:
        r, c, i, m = ulong(), ulong(), cint(), cuint()
        x11.XQueryPointer(d, root, ctypes.byref(r), ctypes.byref(c), ctypes.byref(i), ctypes.byref(i),
                          ctypes.byref(i), ctypes.byref(i), ctypes.byref(m))
        return m.value

    return mask


class WindowKeys:
    """waitKeyEx codes -> the operator's keys. OpenCV's Qt backend reports every letter in lower case and
    Shift as a key of its own (its release is not reported), so a letter is upper case when the X
    server says Shift is down as it is read (a person holding Shift), or when a Shift press came just
    before it (a barcode scanner's Shift down, letter, Shift up, faster than the window is read), or
    with Caps Lock on. Shifted digits and symbols arrive as the symbols themselves."""

    def __init__(self, modifiers="x11"):
        """modifiers: a function giving the modifier mask now; "x11": the X server's, where there is one;
        None: none (Shift presses and Caps Lock alone)."""
        self.shift = self.caps = False
        self.modifiers = _x11_modifiers() if modifiers == "x11" else modifiers

    def key(self, code: int) -> tuple | None:
        """None for no key (-1), modifiers and keys that mean nothing here."""
        if code < 0:
            return None
        if code in SHIFT_KEYS:
            self.shift = True
            return None
        if code == CAPS_LOCK:
            self.caps = not self.caps
            return None
        shift, self.shift = self.shift, False
        if code in NAMED_KEYS:
            return (NAMED_KEYS[code],)
        c = code & 0xFFFF
        if not 33 <= c < 127:
            return None
        ch = chr(c)
        caps = self.caps
        if self.modifiers is not None:
            mask = self.modifiers()
            shift, caps = shift or bool(mask & 1), bool(mask & 2)
        return ("char", ch.upper() if ch.isalpha() and (shift != caps) else ch)


class WindowSink(Sink):
    """OpenCV full-screen window on the HDMI display; returns the operator's keys pressed in it."""

    kind = "window"
    NAME = "phonescope"

    def __init__(self, fullscreen: bool = True):
        if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
            raise OSError("no display for the preview window ($DISPLAY is not set)")
        self.fullscreen = fullscreen
        self.created = False
        self.keys = WindowKeys()
        self.size = x11_screen_size() if fullscreen else None   # None under Wayland: the preview width then

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
        key = self.keys.key(cv2.waitKeyEx(1))
        return [key] if key else []

    def wait_keys(self, seconds: float, stopping) -> list[tuple]:
        """HighGUI keeps only the last key between two waitKey calls, and a barcode scanner types a whole id
        in tens of milliseconds: wait inside waitKeyEx, a few ms at a time, collecting every key."""
        keys: list[tuple] = []
        end = time.monotonic() + seconds
        while not stopping.is_set() and time.monotonic() < end:
            key = self.keys.key(cv2.waitKeyEx(max(1, min(5, int((end - time.monotonic()) * 1000)))))
            if key:
                keys.append(key)
        return keys

    def close(self) -> None:
        cv2.destroyAllWindows()
