"""keys: the operator's keys on a headless kiosk (no X server), read from evdev in /dev/input.

Every device that has Space or Enter is read: keyboards, USB barcode scanners, foot pedals that send
Enter. Devices are opened non-blocking and never grabbed (others may read them too), and are rescanned
every few seconds, so a scanner plugged in later works and one pulled out is dropped quietly.
Key-downs go through translate() into the operator's keys (edge/operator.py says what they mean).
"""
from __future__ import annotations

import glob
import os
import stat
import time

try:
    import evdev
    from evdev import ecodes
except ImportError:  # the daemon still runs; `problem` says why there are no keys
    evdev = ecodes = None

_CHARS: dict[int, tuple[str, str]] = {}  # key code -> (plain, shifted) on a US layout, as scanners type


def _chars() -> dict[int, tuple[str, str]]:
    if not _CHARS and ecodes is not None:
        for c in "abcdefghijklmnopqrstuvwxyz":
            _CHARS[getattr(ecodes, f"KEY_{c.upper()}")] = (c, c.upper())
        for d, s in zip("0123456789", ")!@#$%^&*("):
            _CHARS[getattr(ecodes, f"KEY_{d}")] = (d, s)
            _CHARS[getattr(ecodes, f"KEY_KP{d}")] = (d, d)
        for name, pair in {"MINUS": "-_", "EQUAL": "=+", "DOT": ".>", "COMMA": ",<", "SLASH": "/?",
                           "SEMICOLON": ";:", "KPMINUS": "--", "KPPLUS": "++", "KPDOT": "..",
                           "KPSLASH": "//", "KPASTERISK": "**"}.items():
            _CHARS[getattr(ecodes, f"KEY_{name}")] = (pair[0], pair[1])
    return _CHARS


def translate(code: int, shift: bool = False) -> tuple | None:
    """A key-down as operator input: ("char", c), ("enter",), ("space",), ("esc",), ("backspace",),
    ("left",), ("right",), ("delete",); None for other keys."""
    if ecodes is None:
        return None
    if code in (ecodes.KEY_ENTER, ecodes.KEY_KPENTER):
        return ("enter",)
    named = {ecodes.KEY_SPACE: "space", ecodes.KEY_ESC: "esc", ecodes.KEY_BACKSPACE: "backspace",
             ecodes.KEY_LEFT: "left", ecodes.KEY_RIGHT: "right", ecodes.KEY_DELETE: "delete"}
    if code in named:
        return (named[code],)
    pair = _chars().get(code)
    return ("char", pair[1] if shift else pair[0]) if pair else None


class EvdevKeys:
    """Keys from every keyboard-like evdev device; poll() is non-blocking (called from the preview loop)."""

    def __init__(self, base: str | os.PathLike = "/dev/input", rescan_s: float = 2.0):
        self.base, self.rescan_s = str(base), rescan_s
        self.devices: dict[str, object] = {}        # path -> open evdev.InputDevice
        self.shift: dict[str, set[int]] = {}        # path -> shift keys held down on that device
        self.skipped: dict[str, tuple] = {}         # path -> (node identity, "denied"|"other"): not retried
        self.scanned = float("-inf")
        self._problem: str | None = None
        if evdev is None:
            self._problem = "python-evdev is not installed: no keyboard input (pip install evdev)"
        else:
            self._scan()

    @property
    def active(self) -> bool:
        """A keyboard is open: its keys are the operator's (a window's own keys are then not used)."""
        return bool(self.devices)

    @property
    def problem(self) -> str | None:
        """One line saying why no key can arrive (None while a keyboard is open), for the daemon to log once."""
        return self._problem

    def _open(self, path: str):
        try:
            dev = evdev.InputDevice(path, readonly=True)  # read-only: no LED writes, no side effects
        except TypeError:  # python-evdev < 1.8 has no readonly
            dev = evdev.InputDevice(path)
        keys = set(dev.capabilities(absinfo=False).get(ecodes.EV_KEY, []))
        if keys & {ecodes.KEY_SPACE, ecodes.KEY_ENTER, ecodes.KEY_KPENTER}:
            return dev
        dev.close()  # a mouse, a power button, a lid switch...
        return None

    def _scan(self) -> None:
        self.scanned = time.monotonic()
        paths = set(glob.glob(os.path.join(glob.escape(self.base), "event*")))
        for gone in set(self.devices) - paths:
            self._drop(gone)
        nodes = 0
        for path in sorted(paths):
            try:
                st = os.stat(path)
            except OSError:
                continue
            if not stat.S_ISCHR(st.st_mode):
                continue
            nodes += 1
            ident = (st.st_rdev, st.st_ino, st.st_ctime_ns)  # udev's chgrp/ACL after a plug changes ctime
            if path in self.devices or self.skipped.get(path, (None,))[0] == ident:
                continue
            try:
                dev = self._open(path)
            except PermissionError:
                self.skipped[path] = (ident, "denied")
                continue
            except OSError:  # vanished meanwhile, or not an evdev node
                self.skipped[path] = (ident, "other")
                continue
            if dev is None:
                self.skipped[path] = (ident, "other")
            else:
                self.skipped.pop(path, None)
                self.devices[path], self.shift[path] = dev, set()
        self.skipped = {p: v for p, v in self.skipped.items() if p in paths}
        denied = sum(1 for _, why in self.skipped.values() if why == "denied")
        if self.devices:
            self._problem = None
        elif denied:
            self._problem = (f"no keyboard readable in {self.base}: the service user needs the input group "
                             f"({denied} input devices not readable)")
        elif not nodes:
            self._problem = f"no input devices in {self.base}"
        else:
            self._problem = f"no keyboard in {self.base} (none of {nodes} input devices has Space or Enter)"

    def _drop(self, path: str) -> None:
        dev = self.devices.pop(path, None)
        self.shift.pop(path, None)
        if dev is not None:
            try:
                dev.close()
            except OSError:
                pass

    def read_keys(self) -> list[tuple]:
        """Key-downs since the last call, translated (repeats and releases left out); never blocks."""
        if evdev is None:
            return []
        if time.monotonic() - self.scanned >= self.rescan_s:
            self._scan()
        out: list[tuple] = []
        for path, dev in list(self.devices.items()):
            try:
                for _ in range(16):  # bounded: a device flooding events cannot stall the preview
                    for ev in dev.read():
                        self._event(path, ev, out)
            except BlockingIOError:
                pass
            except OSError:  # ENODEV: unplugged; the next scan picks it up again if it comes back
                self._drop(path)
        return out

    def _event(self, path: str, ev, out: list[tuple]) -> None:
        if ev.type != ecodes.EV_KEY:
            return
        if ev.code in (ecodes.KEY_LEFTSHIFT, ecodes.KEY_RIGHTSHIFT):
            (self.shift[path].add if ev.value else self.shift[path].discard)(ev.code)
        elif ev.value == 1:  # down; 2 is auto-repeat, 0 release
            key = translate(ev.code, bool(self.shift[path]))
            if key is not None:
                out.append(key)

    def poll(self) -> list[tuple]:
        """The operator's keys since the last call (translated), oldest first."""
        return self.read_keys()

    def close(self) -> None:
        for path in list(self.devices):
            self._drop(path)
