"""kms: the preview on the HDMI screen through DRM/KMS and a dumb buffer, for a kiosk without an X server.

Plain ioctls with the structures of the kernel's include/uapi/drm/drm_mode.h (no libdrm to install).
The first opener of a card's primary node becomes DRM master when no X server or compositor holds it,
and SETCRTC needs master.
"""
from __future__ import annotations

import ctypes
import errno
import fcntl
import mmap
import os
import re
import time
from pathlib import Path

import cv2
import numpy as np

from edge.sinks.base import Sink

u16, u32, u64 = ctypes.c_uint16, ctypes.c_uint32, ctypes.c_uint64


def _struct(name: str, *fields) -> type:
    """A ctypes mirror of a drm_mode.h struct; a field is "name" (a __u32) or (name, ctype)."""
    return type(name, (ctypes.Structure,), {"_fields_": [(f, u32) if isinstance(f, str) else f for f in fields]})


def _u64(*names):
    return [(n, u64) for n in names]


# struct drm_mode_modeinfo, _card_res, _get_connector, _crtc, _get_encoder, _create_dumb, _map_dumb, _fb_cmd,
# _destroy_dumb, _fb_dirty_cmd (tests/unit/test_sink_kms.py checks every size and offset against the header)
ModeInfo = _struct("ModeInfo", "clock", *[(n, u16) for n in ("hdisplay", "hsync_start", "hsync_end", "htotal",
                   "hskew", "vdisplay", "vsync_start", "vsync_end", "vtotal", "vscan")],
                   "vrefresh", "flags", "type", ("name", ctypes.c_char * 32))
CardRes = _struct("CardRes", *_u64("fb_id_ptr", "crtc_id_ptr", "connector_id_ptr", "encoder_id_ptr"), "count_fbs",
                  "count_crtcs", "count_connectors", "count_encoders", "min_width", "max_width", "min_height",
                  "max_height")
GetConnector = _struct("GetConnector", *_u64("encoders_ptr", "modes_ptr", "props_ptr", "prop_values_ptr"),
                       "count_modes", "count_props", "count_encoders", "encoder_id", "connector_id", "connector_type",
                       "connector_type_id", "connection", "mm_width", "mm_height", "subpixel", "pad")
Crtc = _struct("Crtc", *_u64("set_connectors_ptr"), "count_connectors", "crtc_id", "fb_id", "x", "y", "gamma_size",
               "mode_valid", ("mode", ModeInfo))
GetEncoder = _struct("GetEncoder", "encoder_id", "encoder_type", "crtc_id", "possible_crtcs", "possible_clones")
CreateDumb = _struct("CreateDumb", "height", "width", "bpp", "flags", "handle", "pitch", *_u64("size"))
MapDumb = _struct("MapDumb", "handle", "pad", *_u64("offset"))
FbCmd = _struct("FbCmd", "fb_id", "width", "height", "pitch", "bpp", "depth", "handle")
DestroyDumb = _struct("DestroyDumb", "handle")
FbDirty = _struct("FbDirty", "fb_id", "flags", "color", "num_clips", *_u64("clips_ptr"))


def _iowr(nr: int, size: int) -> int:
    """_IOWR('d', nr, size) as asm-generic/ioctl.h builds it (x86, arm, arm64, riscv; not mips/ppc/sparc)."""
    return (3 << 30) | (size << 16) | (ord("d") << 8) | nr


GETRESOURCES, GETCRTC, SETCRTC = _iowr(0xA0, 64), _iowr(0xA1, 104), _iowr(0xA2, 104)
GETENCODER, GETCONNECTOR = _iowr(0xA6, 20), _iowr(0xA7, 80)
ADDFB, RMFB, DIRTYFB = _iowr(0xAE, 28), _iowr(0xAF, 4), _iowr(0xB1, 24)
CREATE_DUMB, MAP_DUMB, DESTROY_DUMB = _iowr(0xB2, 32), _iowr(0xB3, 16), _iowr(0xB4, 4)
MODE_TYPE_PREFERRED, CONNECTED = 1 << 3, 1


def _error(msg: str, err: int | None) -> OSError:
    e = OSError(msg)  # str(e) is the one line; the errno stays for callers
    e.errno = err
    return e


def _ioctl(fd: int, req: int, arg, what: str):
    while True:  # libdrm's drmIoctl retries these too
        try:
            fcntl.ioctl(fd, req, arg, True)
            return arg
        except OSError as e:
            if e.errno not in (errno.EINTR, errno.EAGAIN):
                name = errno.errorcode.get(e.errno, e.errno)
                raise _error(f"{what} failed: {name} ({e.strerror})", e.errno) from None


def _resources(fd: int) -> tuple[list[int], list[int]]:
    """(crtc ids, connector ids): counts first, then the arrays; again if a hot-plug changed them in between."""
    for _ in range(5):
        r = _ioctl(fd, GETRESOURCES, CardRes(), "GETRESOURCES")
        want = (r.count_crtcs, r.count_connectors)
        crtcs, conns = (u32 * max(want[0], 1))(), (u32 * max(want[1], 1))()
        r = _ioctl(fd, GETRESOURCES, CardRes(crtc_id_ptr=ctypes.addressof(crtcs), count_crtcs=want[0],
                                             connector_id_ptr=ctypes.addressof(conns), count_connectors=want[1]),
                   "GETRESOURCES")
        if (r.count_crtcs, r.count_connectors) == want:
            return list(crtcs)[:want[0]], list(conns)[:want[1]]
    raise OSError("GETRESOURCES: the resources kept changing")


def _connector(fd: int, conn_id: int):
    """(connector, its modes, its encoder ids); count_modes 0 in the first pass makes the kernel probe the screen."""
    for _ in range(5):
        c = _ioctl(fd, GETCONNECTOR, GetConnector(connector_id=conn_id), "GETCONNECTOR")
        want = (c.count_modes, c.count_encoders)
        modes, encs = (ModeInfo * max(want[0], 1))(), (u32 * max(want[1], 1))()
        c = _ioctl(fd, GETCONNECTOR, GetConnector(connector_id=conn_id, modes_ptr=ctypes.addressof(modes),
                                                  count_modes=want[0], encoders_ptr=ctypes.addressof(encs),
                                                  count_encoders=want[1]), "GETCONNECTOR")
        if (c.count_modes, c.count_encoders) == want:
            return c, list(modes)[:want[0]], list(encs)[:want[1]]
    raise OSError("GETCONNECTOR: the modes kept changing")


def _connected(fd: int):
    """(crtc ids, connector, its mode, its encoder ids) for the first connected connector, else None."""
    crtcs, conns = _resources(fd)
    for cid in conns:
        c, modes, encs = _connector(fd, cid)
        if c.connection == CONNECTED and modes:
            return crtcs, c, next((m for m in modes if m.type & MODE_TYPE_PREFERRED), modes[0]), encs
    return None


def find_card(base: str | os.PathLike = "/dev/dri") -> str | None:
    """The first DRM card with a connected screen (for the wiring's `auto`); None if there is none."""
    for card in sorted(Path(base).glob("card[0-9]*"), key=lambda p: int(re.sub(r"\D", "", p.name))):
        try:
            fd = os.open(card, os.O_RDWR | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            if _connected(fd):
                return str(card)
        except OSError:
            continue
        finally:
            os.close(fd)
    return None


def letterbox_xrgb(rgb: np.ndarray, width: int, height: int, pitch: int) -> np.ndarray:
    """The picture, aspect kept with black borders, as XRGB8888 rows (B,G,R,X bytes; X=255) of `pitch` bytes."""
    h, w = rgb.shape[:2]
    s = min(width / w, height / h)
    nw, nh = min(width, max(1, round(w * s))), min(height, max(1, round(h * s)))
    out = np.zeros((height, pitch), np.uint8)
    px = out[:, :width * 4].reshape(height, width, 4)
    y0, x0 = (height - nh) // 2, (width - nw) // 2
    pic = rgb if (nw, nh) == (w, h) else cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA)
    px[y0:y0 + nh, x0:x0 + nw, :3] = pic[..., ::-1]
    px[..., 3] = 255
    return out


class KmsSink(Sink):
    """The preview straight on the screen through DRM/KMS (no X server); keys come from edge.keys."""

    kind = "kms"
    RECHECK_S = 1.0  # how often show() looks whether someone else took the CRTC

    def __init__(self, device: str | os.PathLike | None = "/dev/dri/card0"):
        """device None: the first card with a connected screen. Every failure: OSError, one line."""
        if device is None and (device := find_card()) is None:
            raise OSError("KMS: no DRM card in /dev/dri with a connected screen")
        self.device, self.fd, self.map, self.fb, self.handle, self.saved = str(device), -1, None, 0, 0, None
        try:
            self.fd = os.open(self.device, os.O_RDWR | os.O_CLOEXEC)
            self._setup()
        except OSError as e:
            self.close()
            if e.filename:  # the open itself: no such node, or no permission
                hint = " (the service user needs the video group)" if e.errno in (errno.EACCES, errno.EPERM) else ""
                msg = e.strerror + hint
            else:
                msg = str(e) + (" (not a KMS display device)" if e.errno in (errno.ENOTTY, errno.EOPNOTSUPP) else "")
            raise _error(f"KMS {self.device}: {msg}", e.errno) from None

    def _setup(self) -> None:
        found = _connected(self.fd)
        if found is None:
            raise OSError("no connected connector (is the screen plugged in and on?)")
        crtcs, conn, self.mode, encs = found
        self.conn_id, self.crtc_id = conn.connector_id, self._crtc(crtcs, conn, encs)
        self.width, self.height = self.mode.hdisplay, self.mode.vdisplay
        self.size = (self.width, self.height)
        d = _ioctl(self.fd, CREATE_DUMB, CreateDumb(width=self.width, height=self.height, bpp=32), "CREATE_DUMB")
        self.handle, self.pitch = d.handle, d.pitch
        self.fb = _ioctl(self.fd, ADDFB, FbCmd(width=self.width, height=self.height, pitch=d.pitch, bpp=32,
                                               depth=24, handle=d.handle), "ADDFB").fb_id  # depth 24: XRGB8888
        off = _ioctl(self.fd, MAP_DUMB, MapDumb(handle=d.handle), "MAP_DUMB").offset
        self.map = mmap.mmap(self.fd, d.size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=off)
        self.saved = _ioctl(self.fd, GETCRTC, Crtc(crtc_id=self.crtc_id), "GETCRTC")  # given back by close()
        self.dirtyfb, self.checked, self.lost = True, time.monotonic(), False
        self._setcrtc()

    def _crtc(self, crtcs: list[int], conn, encs: list[int]) -> int:
        """The CRTC the connector's encoder drives now, else the first one any of its encoders can drive."""
        if conn.encoder_id:
            crtc = _ioctl(self.fd, GETENCODER, GetEncoder(encoder_id=conn.encoder_id), "GETENCODER").crtc_id
            if crtc:
                return crtc
        for enc_id in encs:
            enc = _ioctl(self.fd, GETENCODER, GetEncoder(encoder_id=enc_id), "GETENCODER")
            for i, crtc in enumerate(crtcs):
                if enc.possible_crtcs & (1 << i):
                    return crtc
        raise OSError(f"no CRTC can drive connector {conn.connector_id}")

    def _setcrtc(self, fb: int | None = None, mode=None) -> None:
        conn = u32(self.conn_id)
        try:
            _ioctl(self.fd, SETCRTC, Crtc(set_connectors_ptr=ctypes.addressof(conn), count_connectors=1,
                                          crtc_id=self.crtc_id, fb_id=fb or self.fb, mode_valid=1,
                                          mode=mode or self.mode), "SETCRTC")
        except OSError as e:
            if e.errno not in (errno.EACCES, errno.EPERM):
                raise
            raise _error(f"SETCRTC refused ({errno.errorcode[e.errno]}): another program (an X server or "
                         "compositor?) holds the display as DRM master", e.errno) from None

    def show(self, rgb: np.ndarray) -> list[str]:
        view = np.frombuffer(self.map, np.uint8, self.height * self.pitch).reshape(self.height, self.pitch)
        view[:] = letterbox_xrgb(rgb, self.width, self.height, self.pitch)
        del view  # an exported buffer would keep close() from unmapping
        now = time.monotonic()
        if self.lost or now - self.checked >= self.RECHECK_S:  # did the console or another program take the CRTC?
            self.checked = now
            self.lost = _ioctl(self.fd, GETCRTC, Crtc(crtc_id=self.crtc_id), "GETCRTC").fb_id != self.fb
            if self.lost:  # while another master holds it, every frame raises the same line: logged once
                self._setcrtc()
                self.lost = False
        if self.dirtyfb:  # drivers that copy from a shadow buffer (virtio-gpu, simpledrm, udl, ...) need the flush
            try:
                _ioctl(self.fd, DIRTYFB, FbDirty(fb_id=self.fb), "DIRTYFB")
            except OSError as e:
                self.dirtyfb = e.errno not in (errno.ENOSYS, errno.EOPNOTSUPP)  # ENOSYS: scans out the buffer itself
        return []

    def close(self) -> None:
        """Best effort: what was on the screen before (the console) back, then our buffer away."""
        if self.fd < 0:
            return
        s = self.saved
        steps = [lambda: self._setcrtc(s.fb_id, s.mode)] if s and s.mode_valid and s.fb_id not in (0, self.fb) else []
        if self.fb:
            steps.append(lambda: _ioctl(self.fd, RMFB, u32(self.fb), "RMFB"))
        if self.map is not None:
            steps.append(self.map.close)
        if self.handle:
            steps.append(lambda: _ioctl(self.fd, DESTROY_DUMB, DestroyDumb(handle=self.handle), "DESTROY_DUMB"))
        for step in steps:
            try:
                step()
            except (OSError, BufferError):
                pass
        os.close(self.fd)
        self.fd, self.map = -1, None
