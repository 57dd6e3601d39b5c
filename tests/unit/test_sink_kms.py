"""The KMS sink without a display: the kernel ABI it speaks (struct sizes, offsets, ioctl numbers), the
letterboxing into the dumb buffer, the open path against a fake kernel, and one-line errors."""
from __future__ import annotations

import ctypes
import errno
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edge.sinks import kms
from edge.sinks.kms import KmsSink, find_card, letterbox_xrgb

# struct name in include/uapi/drm/drm_mode.h -> (our structure, sizeof in the kernel header)
STRUCTS = {"drm_mode_card_res": (kms.CardRes, 64), "drm_mode_get_connector": (kms.GetConnector, 80),
           "drm_mode_modeinfo": (kms.ModeInfo, 68), "drm_mode_crtc": (kms.Crtc, 104),
           "drm_mode_get_encoder": (kms.GetEncoder, 20), "drm_mode_create_dumb": (kms.CreateDumb, 32),
           "drm_mode_map_dumb": (kms.MapDumb, 16), "drm_mode_fb_cmd": (kms.FbCmd, 28),
           "drm_mode_destroy_dumb": (kms.DestroyDumb, 4), "drm_mode_fb_dirty_cmd": (kms.FbDirty, 24)}

# printed by gcc from /usr/include/libdrm/drm.h (libdrm-dev 2.4.114, x86_64); the same on arm64
IOCTLS = {"GETRESOURCES": 0xC04064A0, "GETCRTC": 0xC06864A1, "SETCRTC": 0xC06864A2, "GETENCODER": 0xC01464A6,
          "GETCONNECTOR": 0xC05064A7, "ADDFB": 0xC01C64AE, "RMFB": 0xC00464AF, "DIRTYFB": 0xC01864B1,
          "CREATE_DUMB": 0xC02064B2, "MAP_DUMB": 0xC01064B3, "DESTROY_DUMB": 0xC00464B4}


@pytest.mark.parametrize("name", STRUCTS)
def test_struct_sizes_match_the_kernel(name):
    ours, size = STRUCTS[name]
    assert ctypes.sizeof(ours) == size


@pytest.mark.parametrize("name", IOCTLS)
def test_ioctl_numbers_match_the_kernel(name):
    assert getattr(kms, name) == IOCTLS[name], f"DRM_IOCTL_MODE_{name}"


def test_layout_against_the_installed_header(tmp_path):
    """Every field's offset, compiled against drm_mode.h where gcc and the header are here."""
    inc = next((d for d in ("/usr/include/libdrm", "/usr/include/drm") if Path(d, "drm_mode.h").exists()), None)
    if not shutil.which("gcc") or inc is None:
        pytest.skip("needs gcc and drm_mode.h (apt-get install libdrm-dev)")
    lines = []
    for name, (ours, size) in STRUCTS.items():
        lines.append(f'printf("{name} %zu\\n", sizeof(struct {name}));')
        lines += [f'printf("{name}.{f} %zu\\n", offsetof(struct {name}, {f}));' for f, _ in ours._fields_]
    for name in IOCTLS:
        lines.append(f'printf("{name} %lu\\n", (unsigned long)DRM_IOCTL_MODE_{name});')
    src = tmp_path / "abi.c"
    src.write_text("#include <stdio.h>\n#include <stddef.h>\n#include <drm.h>\n#include <drm_mode.h>\n"
                   "int main(void) {\n" + "\n".join(lines) + "\nreturn 0; }\n")
    subprocess.run(["gcc", f"-I{inc}", str(src), "-o", str(tmp_path / "abi")], check=True)
    got = dict(line.split() for line in subprocess.run([str(tmp_path / "abi")], capture_output=True, text=True,
                                                       check=True).stdout.splitlines())
    for name, (ours, size) in STRUCTS.items():
        assert int(got[name]) == ctypes.sizeof(ours) == size
        for f, _ in ours._fields_:
            assert int(got[f"{name}.{f}"]) == getattr(ours, f).offset, f"{name}.{f}"
    assert {n: int(got[n]) for n in IOCTLS} == IOCTLS


def test_letterbox_keeps_aspect_with_black_borders_and_bgrx_bytes():
    img = (np.random.default_rng(0).random((60, 80, 3)) * 255).astype(np.uint8)  # 4:3 into 120x60: pillarbox
    out = letterbox_xrgb(img, 120, 60, 120 * 4 + 32)
    assert out.shape == (60, 512) and out.dtype == np.uint8
    px = out[:, :480].reshape(60, 120, 4)
    assert np.array_equal(px[:, 20:100, 0], img[..., 2]) and np.array_equal(px[:, 20:100, 1], img[..., 1])
    assert np.array_equal(px[:, 20:100, 2], img[..., 0]) and (px[..., 3] == 255).all()
    assert not px[:, :20, :3].any() and not px[:, 100:, :3].any() and not out[:, 480:].any()


def test_letterbox_scales_and_bars_top_and_bottom():
    img = np.zeros((90, 320, 3), np.uint8)
    img[..., 0] = 200  # pure red
    px = letterbox_xrgb(img, 160, 90, 640).reshape(90, 160, 4)
    assert (px[22:67, :, 2] == 200).all() and not px[22:67, :, :2].any()  # red is the third byte
    assert not px[:22, :, :3].any() and not px[68:, :, :3].any()


class FakeKernel:
    """Answers the DRM ioctls like the kernel does (two-pass arrays, ids), over a plain file for the mmap."""

    def __init__(self, setcrtc_errno=0):
        self.calls, self.setcrtc_errno, self.scanout = [], setcrtc_errno, 99
        self.modes = [kms.ModeInfo(hdisplay=1024, vdisplay=768), kms.ModeInfo(hdisplay=160, vdisplay=90, type=8)]

    def ioctl(self, fd, req, arg, mutate):
        name = next(n for n in IOCTLS if getattr(kms, n) == req)
        self.calls.append(name)
        if name == "GETRESOURCES":
            arg.count_crtcs = self.fill(arg, [31, 32], "crtc")
            arg.count_connectors = self.fill(arg, [41, 42], "connector")
        elif name == "GETCONNECTOR":
            connected = arg.connector_id == 42
            arg.connection = 1 if connected else 2
            arg.count_encoders = self.fill(arg, [51] if connected else [], "encoder", "encoders_ptr")
            modes = self.modes if connected else []
            if arg.count_modes >= len(modes) and modes:
                ctypes.memmove(arg.modes_ptr, (kms.ModeInfo * len(modes))(*modes), 68 * len(modes))
            arg.count_modes = len(modes)
        elif name == "GETENCODER":
            arg.crtc_id, arg.possible_crtcs = 0, 0b10  # not lit yet: the second CRTC can drive it
        elif name == "CREATE_DUMB":
            arg.handle, arg.pitch, arg.size = 7, arg.width * 4 + 64, 4096 * 64
        elif name == "ADDFB":
            arg.fb_id = 77
        elif name == "GETCRTC":
            arg.fb_id, arg.mode_valid, arg.mode = self.scanout, 1, self.modes[0]
        elif name == "SETCRTC":
            if self.setcrtc_errno:
                raise OSError(self.setcrtc_errno, "nope")
            conn = ctypes.c_uint32.from_address(arg.set_connectors_ptr).value
            self.set = (arg.crtc_id, arg.fb_id, conn, arg.mode.hdisplay, arg.mode.vdisplay)
            self.scanout = arg.fb_id
        elif name == "DIRTYFB":
            raise OSError(errno.ENOSYS, "no dirty")

    @staticmethod
    def fill(arg, ids, what, ptr=None):
        ptr, count = getattr(arg, ptr or f"{what}_id_ptr"), getattr(arg, f"count_{what}s")
        if ptr and count >= len(ids):
            ctypes.memmove(ptr, (ctypes.c_uint32 * len(ids))(*ids), 4 * len(ids))
        return len(ids)


@pytest.fixture
def card(tmp_path, monkeypatch):
    dev = tmp_path / "card0"
    dev.write_bytes(b"\0" * 4096 * 64)
    kernel = FakeKernel()
    monkeypatch.setattr(kms.fcntl, "ioctl", kernel.ioctl)
    return dev, kernel


def test_open_show_close_against_a_fake_kernel(card):
    dev, kernel = card
    assert find_card(dev.parent) == str(dev)
    sink = KmsSink(dev)
    assert kernel.set == (32, 77, 42, 160, 90)  # second CRTC, our fb, the connected connector, preferred mode
    sink.RECHECK_S = 0
    img = np.full((90, 160, 3), (10, 20, 30), np.uint8)
    assert sink.show(img) == [] and sink.show(img) == []
    assert kernel.calls.count("DIRTYFB") == 1  # ENOSYS: not asked again
    kernel.scanout = 5  # the console took the CRTC back: the next frame takes it again
    sink.show(img)
    assert kernel.scanout == 77
    sink.close()
    assert kernel.calls[-3:] == ["SETCRTC", "RMFB", "DESTROY_DUMB"]  # the old picture back, then ours away
    assert kernel.set == (32, 99, 42, 1024, 768)  # what scanned out before we opened
    data = np.frombuffer(dev.read_bytes()[:90 * 704], np.uint8).reshape(90, 704)
    assert np.array_equal(data, letterbox_xrgb(img, 160, 90, 704))


def test_setcrtc_refused_names_the_other_master(card):
    dev, kernel = card
    kernel.setcrtc_errno = errno.EACCES
    with pytest.raises(OSError) as e:
        KmsSink(dev)
    assert str(e.value).startswith(f"KMS {dev}: SETCRTC refused (EACCES): another program")
    assert "\n" not in str(e.value) and e.value.errno == errno.EACCES
    assert kernel.calls[-2:] == ["RMFB", "DESTROY_DUMB"]  # nothing left behind


def test_no_connected_screen(card):
    dev, kernel = card
    kernel.modes = []
    with pytest.raises(OSError, match=f"^KMS {dev}: no connected connector"):
        KmsSink(dev)
    assert find_card(dev.parent) is None


def test_missing_device_is_one_line(tmp_path):
    with pytest.raises(OSError) as e:
        KmsSink(tmp_path / "card7")
    assert str(e.value) == f"KMS {tmp_path / 'card7'}: No such file or directory" and e.value.errno == errno.ENOENT


@pytest.mark.parametrize("path", ["regular", "/dev/null"])
def test_a_non_drm_file_is_one_line(tmp_path, path):
    dev = tmp_path / path if path == "regular" else Path(path)
    if path == "regular":
        dev.write_bytes(b"\0" * 64)
    with pytest.raises(OSError) as e:
        KmsSink(dev)
    assert str(e.value) == (f"KMS {dev}: GETRESOURCES failed: ENOTTY (Inappropriate ioctl for device) "
                            "(not a KMS display device)")
    assert find_card(tmp_path) is None


def test_auto_without_any_card(tmp_path, monkeypatch):
    assert find_card(tmp_path) is None
    monkeypatch.setattr(kms, "find_card", lambda: None)
    with pytest.raises(OSError, match="no DRM card in /dev/dri with a connected screen"):
        KmsSink(None)
