"""Keys on a headless kiosk through evdev: translation, the device scan, hot-plug, and (where /dev/uinput
exists) a real virtual keyboard."""
from __future__ import annotations

import errno
import os
import time
from typing import ClassVar

import pytest

evdev = pytest.importorskip("evdev", reason="keyboard input on the kiosk reads evdev through python-evdev")
from evdev import InputEvent, ecodes

from edge import keys
from edge.keys import EvdevKeys, translate


def key(code, value):
    return InputEvent(0, 0, ecodes.EV_KEY, code, value)


class FakeDevice:
    """What EvdevKeys uses of evdev.InputDevice; its events are queued per path by the test."""

    caps: ClassVar[dict[str, list[int]]] = {}
    queued: ClassVar[dict[str, list]] = {}
    closed: ClassVar[list[str]] = []

    def __init__(self, path, readonly=False):
        assert readonly, "keys are read read-only"
        self.path = path

    def capabilities(self, absinfo=True):
        return {ecodes.EV_KEY: self.caps.get(os.path.basename(self.path), [])}

    def read(self):
        evs = self.queued.pop(os.path.basename(self.path), [])
        if not evs:
            raise BlockingIOError(errno.EAGAIN, "no events")
        for ev in evs:
            if isinstance(ev, OSError):
                raise ev
            yield ev

    def grab(self):
        raise AssertionError("the kiosk must not grab input devices")

    def close(self):
        self.closed.append(os.path.basename(self.path))


@pytest.fixture
def fake(monkeypatch):
    FakeDevice.caps, FakeDevice.queued, FakeDevice.closed = {}, {}, []
    monkeypatch.setattr(keys.evdev, "InputDevice", FakeDevice)
    return FakeDevice


def node(base, name):
    """A character device node in a test directory (a link to /dev/null: the scan only looks for S_ISCHR)."""
    os.symlink("/dev/null", base / name)


def test_translate_maps_codes_to_operator_input():
    assert translate(ecodes.KEY_SPACE) == ("space",)
    assert translate(ecodes.KEY_ENTER) == translate(ecodes.KEY_KPENTER) == ("enter",)
    assert translate(ecodes.KEY_ESC) == ("esc",)
    assert translate(ecodes.KEY_A) == ("char", "a") and translate(ecodes.KEY_A, shift=True) == ("char", "A")
    assert translate(ecodes.KEY_1) == ("char", "1") and translate(ecodes.KEY_1, shift=True) == ("char", "!")
    assert translate(ecodes.KEY_KP7) == ("char", "7") and translate(ecodes.KEY_MINUS, True) == ("char", "_")
    assert translate(ecodes.KEY_BACKSPACE) == ("backspace",) and translate(ecodes.KEY_DELETE) == ("delete",)
    assert translate(ecodes.KEY_LEFT) == ("left",) and translate(ecodes.KEY_RIGHT) == ("right",)
    assert translate(ecodes.KEY_F1) is None and translate(ecodes.KEY_LEFTCTRL) is None


def test_key_downs_are_read_repeats_and_releases_are_not(tmp_path, fake):
    node(tmp_path, "event0")
    fake.caps["event0"] = [ecodes.KEY_A, ecodes.KEY_SPACE, ecodes.KEY_ENTER, ecodes.KEY_LEFTSHIFT]
    k = EvdevKeys(tmp_path)
    assert k.problem is None and list(k.devices) == [str(tmp_path / "event0")]
    fake.queued["event0"] = [key(ecodes.KEY_SPACE, 1), key(ecodes.KEY_SPACE, 2), key(ecodes.KEY_SPACE, 0),
                             InputEvent(0, 0, ecodes.EV_SYN, 0, 0), key(ecodes.KEY_A, 1),
                             key(ecodes.KEY_KPENTER, 1), key(ecodes.KEY_ENTER, 1)]
    assert k.poll() == [("space",), ("char", "a"), ("enter",), ("enter",)]
    assert k.poll() == []
    fake.queued["event0"] = [key(ecodes.KEY_LEFTSHIFT, 1), key(ecodes.KEY_B, 1), key(ecodes.KEY_LEFTSHIFT, 0),
                             key(ecodes.KEY_C, 1), key(ecodes.KEY_ENTER, 1)]
    assert k.read_keys() == [("char", "B"), ("char", "c"), ("enter",)]  # a scanned sample id
    k.close()
    assert fake.closed == ["event0"]


def test_only_devices_with_space_or_enter_are_kept(tmp_path, fake):
    for name in ("event0", "event1", "event2"):
        node(tmp_path, name)
    fake.caps.update(event0=[ecodes.BTN_LEFT], event1=[ecodes.KEY_POWER], event2=[ecodes.KEY_ENTER])  # pedal
    k = EvdevKeys(tmp_path)
    assert list(k.devices) == [str(tmp_path / "event2")] and sorted(fake.closed) == ["event0", "event1"]


def test_non_device_files_set_problem_without_exception(tmp_path):
    (tmp_path / "event0").write_text("not a device")
    (tmp_path / "event1").mkdir()
    k = EvdevKeys(tmp_path)
    assert k.problem == f"no input devices in {tmp_path}" and k.poll() == [] and not k.devices
    assert EvdevKeys(tmp_path / "missing").problem.startswith("no input devices")


def test_character_devices_that_are_not_evdev_say_no_keyboard(tmp_path):
    node(tmp_path, "event0")  # the real python-evdev on /dev/null: ENOTTY, not a keyboard
    k = EvdevKeys(tmp_path)
    assert not k.devices and k.problem == f"no keyboard in {tmp_path} (none of 1 input devices has Space or Enter)"


def test_unreadable_devices_point_at_the_input_group(tmp_path, monkeypatch):
    def denied(path, readonly=False):
        raise PermissionError(errno.EACCES, "Permission denied", path)
    monkeypatch.setattr(keys.evdev, "InputDevice", denied)
    node(tmp_path, "event0")
    node(tmp_path, "event1")
    k = EvdevKeys(tmp_path)
    assert k.problem.startswith(f"no keyboard readable in {tmp_path}: the service user needs the input group")
    assert "\n" not in k.problem and k.poll() == []


def test_without_python_evdev_the_constructor_works_and_says_why(monkeypatch, tmp_path):
    monkeypatch.setattr(keys, "evdev", None)
    k = EvdevKeys(tmp_path)
    assert "python-evdev is not installed" in k.problem and k.poll() == []
    k.close()


def test_hot_plug_and_a_vanishing_device(tmp_path, fake):
    k = EvdevKeys(tmp_path, rescan_s=0)
    assert k.problem.startswith("no input devices")
    node(tmp_path, "event4")  # a barcode scanner plugged in later
    fake.caps["event4"] = [ecodes.KEY_ENTER]
    fake.queued["event4"] = [key(ecodes.KEY_ENTER, 1)]
    assert k.poll() == [("enter",)] and k.problem is None
    fake.queued["event4"] = [OSError(errno.ENODEV, "No such device")]  # pulled out mid-read
    assert k.poll() == [] and not k.devices
    (tmp_path / "event4").unlink()
    assert k.poll() == [] and k.problem.startswith("no input devices")


def test_rescan_waits_for_its_interval(tmp_path, fake):
    k = EvdevKeys(tmp_path, rescan_s=60)
    node(tmp_path, "event0")
    fake.caps["event0"] = [ecodes.KEY_SPACE]
    k.poll()
    assert not k.devices
    k.scanned -= 61
    k.poll()
    assert list(k.devices) == [str(tmp_path / "event0")]


@pytest.mark.skipif(not os.access("/dev/uinput", os.W_OK),
                    reason="no writable /dev/uinput here: a real virtual keyboard needs the uinput module")
def test_real_virtual_keyboard(tmp_path):
    from evdev import UInput
    with UInput({ecodes.EV_KEY: [ecodes.KEY_SPACE, ecodes.KEY_ENTER, ecodes.KEY_A]}, name="phonescope-test") as ui:
        deadline = time.monotonic() + 5
        while not os.path.exists(ui.device.path) and time.monotonic() < deadline:
            time.sleep(0.05)
        os.symlink(ui.device.path, tmp_path / "event0")  # only this device, not the machine's keyboards
        k = EvdevKeys(tmp_path)
        assert k.problem is None
        for code in (ecodes.KEY_A, ecodes.KEY_SPACE):
            ui.write(ecodes.EV_KEY, code, 1)
            ui.write(ecodes.EV_KEY, code, 0)
        ui.syn()
        got: list[tuple] = []
        while len(got) < 2 and time.monotonic() < deadline:
            got += k.poll()
            time.sleep(0.02)
        assert got == [("char", "a"), ("space",)]
        k.close()


def test_window_keys_from_opencvs_qt_backend():
    """HighGUI (Qt) reports letters in lower case and Shift as a key of its own: Shift makes the next letter
    upper case (a scanner's Shift around each capital), Caps Lock toggles; named keys by their keysyms."""
    from edge.sinks.window import WindowKeys

    w = WindowKeys(modifiers=None)   # without the X server's modifier state: Shift presses and Caps Lock alone
    codes = [0xFFE1, ord("s"), ord("-"), ord("7"), ord("a"), 0xFFE5, ord("b"), ord("!"), 13, 32, 27, 65361,
             65363, 65535, 8, -1, 0xFFBE]
    keys = [k for k in (w.key(c) for c in codes) if k]
    assert keys == [("char", "S"), ("char", "-"), ("char", "7"), ("char", "a"), ("char", "B"), ("char", "!"),
                    ("enter",), ("space",), ("esc",), ("left",), ("right",), ("delete",), ("backspace",)]


def test_window_keys_take_shift_held_from_the_x_server():
    """A person holding Shift over two letters: the X server's modifier mask says so for both."""
    from edge.sinks.window import WindowKeys

    held = {"mask": 0}
    w = WindowKeys(modifiers=lambda: held["mask"])
    held["mask"] = 1                              # Shift down
    keys = [w.key(c) for c in (0xFFE1, ord("b"), ord("s"))]
    held["mask"] = 0
    keys += [w.key(c) for c in (ord("-"), ord("x"))]
    held["mask"] = 2                              # Caps Lock on
    keys.append(w.key(ord("q")))
    assert [k for k in keys if k] == [("char", "B"), ("char", "S"), ("char", "-"), ("char", "x"), ("char", "Q")]
