"""Helpers shared by the tests: paths, the CLI and the daemon as real processes, fault tooling.

In-process stand-ins for the daemon's parts are in tests/fakes.py.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "edge" / "samples"


def sample_rgb(name="BloodImage_00004") -> np.ndarray:
    from edge.imageio import read_image
    return read_image(SAMPLES / "phone" / f"{name}.jpg")[0]


def export_random_model(path: Path, width=16, blocks=4, scale=1.0, seed=0, gain=8.0) -> Path:
    """A randomly initialised EnhanceNet, exported with the production export code."""
    torch = pytest.importorskip("torch", reason="exporting a model needs PyTorch (the [train] extra)")
    from edge.modelcard import card_path
    from models.export import build_card, to_onnx
    from models.network import EnhanceNet

    torch.manual_seed(seed)
    net = EnhanceNet(width=width, blocks=blocks).eval()
    with torch.no_grad():  # make the learned branch matter, so tiling mistakes would show
        net.tail.weight.mul_(gain)
    to_onnx(net, path)
    card = build_card(net, {"scale": scale}, path.stem, "0.0.1", path)
    card_path(path).write_text(json.dumps(card))
    return path


def distorted_chart(seed=0):
    """A rendered 24-patch chart through a known colour distortion, photographed at an angle."""
    import cv2

    from calibration import colour as C
    from edge.colourspace import srgb_to_linear

    img, corners = C.render_chart()
    m = np.array([[0.8, 0.15, 0.05], [0.1, 0.75, 0.15], [0.05, 0.2, 0.75]], np.float32)
    m *= np.array([1.1, 1.0, 0.85], np.float32)[:, None]
    lin = np.clip(srgb_to_linear(img) @ m.T * 0.9, 0, 1)
    out = lin ** (1 / 2.4)  # a camera tone curve that is not sRGB
    out = out + np.random.default_rng(seed).normal(0, 0.01, out.shape)
    # photographed at an angle: a perspective warp, corners moved with it
    h, w = img.shape[:2]
    dst = np.array([[20, 10], [w + 10, 30], [w - 5, h + 25], [5, h - 10]], np.float32)
    p = cv2.getPerspectiveTransform(corners, dst)
    photo = cv2.warpPerspective(np.clip(out, 0, 1).astype(np.float32), p, (w + 40, h + 40))
    return photo, dst


def calibrate_colour(folder: Path) -> tuple[Path, subprocess.CompletedProcess]:
    """`phonescope calibrate colour` on a photo of distorted_chart() (its default method): the profile
    folder/kiosk.json and the command's result."""
    from edge.imageio import write_image

    photo, corners = distorted_chart()
    write_image(folder / "chart.png", photo, bits=16)
    prof = folder / "kiosk.json"
    return prof, run_cli("calibrate", "colour", folder / "chart.png", "--corners",
                         " ".join(map(str, corners.ravel())), "--profile", prof)


def replay_folder(folder: Path, pattern: str = "Blood*.jpg") -> Path:
    """A replay camera's folder: the shipped phone samples matching pattern, copied into folder."""
    folder.mkdir(parents=True, exist_ok=True)
    for p in sorted((SAMPLES / "phone").glob(pattern)):
        (folder / p.name).write_bytes(p.read_bytes())
    return folder


def wait_until(pred, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if pred():
                return True
        except AssertionError:
            pass
        time.sleep(0.1)
    return False


# -- the CLI and the daemon as processes ----------------------------------------------------------------

def run_cli(*args, env=None, timeout=600, cwd=None) -> subprocess.CompletedProcess:
    e = dict(os.environ)
    e.update(env or {})
    e.pop("PHONESCOPE_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "edge.cli", *map(str, args)], capture_output=True, text=True,
                          env=e, timeout=timeout, cwd=cwd or ROOT)


class NotifySocket:
    """A real AF_UNIX datagram socket playing systemd's part of sd_notify."""

    def __init__(self, path: Path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []
        self.stop = False
        self.thread = threading.Thread(target=self._recv, daemon=True)
        self.thread.start()

    def _recv(self):
        while not self.stop:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            for line in data.decode().splitlines():
                self.messages.append((time.monotonic(), line))

    def count(self, line: str) -> int:
        return sum(1 for _, m in self.messages if m == line)

    def wait_for(self, line: str, timeout: float, n: int = 1) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.count(line) >= n:
                return True
            time.sleep(0.05)
        return False

    def close(self):
        self.stop = True
        self.sock.close()


def daemon(state: Path, source: str, model: Path | None, config: str = "", fault: tuple[str, Path] | None = None,
           notify: Path | None = None, watchdog_s: float = 2.0, extra=(), env=None) -> subprocess.Popen:
    """`phonescope run` as a process (preview to a file); with `fault`, through tests/system/faultinject.py;
    model None: the config's."""
    e = dict(os.environ)
    e.pop("JOURNAL_STREAM", None)
    e.pop("PHONESCOPE_DEBUG", None)
    if notify:
        e.update(NOTIFY_SOCKET=str(notify), WATCHDOG_USEC=str(int(watchdog_s * 1e6)))
    e.update(env or {})
    args = ["run", "--source", source, "--state-dir", str(state), "--preview", "file"]
    args += ["--model", str(model)] if model else []
    if config:
        cfg = state.parent / f"{state.name}.toml"
        cfg.parent.mkdir(parents=True, exist_ok=True)
        cfg.write_text(config)
        args += ["--config", str(cfg)]
    head = [sys.executable, "-m", "tests.system.faultinject", fault[0], str(fault[1]), "--"] if fault else \
        [sys.executable, "-m", "edge.cli"]
    return subprocess.Popen(head + args + list(extra), cwd=ROOT, env=e, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def status(state: Path) -> dict:
    r = run_cli("status", "--state-dir", state, timeout=30)
    assert r.returncode == 0 and r.stdout.strip(), f"status: rc {r.returncode}, stderr {r.stderr!r}"
    return json.loads(r.stdout)


def running(state: Path, proc: subprocess.Popen, timeout: float = 90) -> None:
    ok = wait_until(lambda: proc.poll() is None and status(state)["state"] == "running", timeout)
    assert ok, proc.stderr.read() if proc.poll() is not None else "daemon did not become ready"


def stop(proc: subprocess.Popen) -> str:
    """SIGTERM (kill after 10 s); returns what the daemon wrote to stderr."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.stderr.read()


def capture(state: Path, *extra) -> subprocess.CompletedProcess:
    return run_cli("capture", "--state-dir", state, *extra, timeout=120)


# -- faults on real file systems ---------------------------------------------------------------------------

def mount_tmpfs(path: Path, size: str):
    """Mount a real tmpfs of `size` at path (a context manager); skips the test where mount is not allowed."""

    @contextlib.contextmanager
    def cm():
        path.mkdir(parents=True, exist_ok=True)
        if os.geteuid() != 0:
            pytest.skip("mounting a small tmpfs for the disk-full test needs root")
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0750", "tmpfs", str(path)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"mount -t tmpfs is not permitted here: {r.stderr.strip()}")
        try:
            yield path
        finally:
            for _ in range(20):
                if subprocess.run(["umount", str(path)], capture_output=True).returncode == 0:
                    break
                time.sleep(0.25)
            else:
                subprocess.run(["umount", "-l", str(path)], capture_output=True)

    return cm()


def fill(path: Path, leave_bytes: int = 0) -> Path:
    """Fill the file system under path with a ballast file, leaving about leave_bytes free. Unbuffered: a
    buffered file keeps the tail of a short write and fails again on close, when the free space left the
    last chunk within a buffer's size of fitting."""
    ballast = path / "ballast.bin"
    chunk = b"\0" * (1 << 16)
    with open(ballast, "wb", buffering=0) as f:
        try:
            while True:
                f.write(chunk)
        except OSError as e:
            assert e.errno == errno.ENOSPC
    try:
        os.truncate(ballast, max(0, os.path.getsize(ballast) - leave_bytes))
    except OSError:
        pass
    return ballast


def check_consistent(state: Path) -> dict:
    """The recovery contract: only complete captures, sha256 = sidecar = catalogue row, no temporaries."""
    from edge.storage import capture_stem

    leftovers = [p for p in state.rglob("*") if p.name.endswith(".tmp")]
    assert not leftovers, f"temporaries left: {leftovers}"
    db = sqlite3.connect(state / "catalog.sqlite")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    rows = {r[0]: r for r in db.execute("SELECT sidecar, image, raw, sha256, bytes, status, seq FROM captures")}
    db.close()
    files = [p for p in (state / "captures").rglob("*") if p.is_file()]
    sidecars = [p for p in files if p.name.endswith(".json")]
    owned = set()
    for sc in sidecars:
        meta = json.loads(sc.read_text())
        image = sc.parent / meta["image"]
        data = image.read_bytes()
        assert hashlib.sha256(data).hexdigest() == meta["image_sha256"], f"{image}: sha256 differs from sidecar"
        assert len(data) == meta["image_bytes"]
        owned |= {sc, image}
        if meta.get("raw"):
            raw = sc.parent / meta["raw"]
            assert hashlib.sha256(raw.read_bytes()).hexdigest() == meta["raw_sha256"]
            owned.add(raw)
        row = rows.get(str(sc.relative_to(state)))
        assert row is not None, f"{sc}: no catalogue row"
        assert row[1] == str(image.relative_to(state)) and row[3] == meta["image_sha256"] and row[6] == meta["seq"]
        assert capture_stem(image.name) == capture_stem(sc.name)
    orphans = set(files) - owned
    assert not orphans, f"files without a complete capture: {sorted(map(str, orphans))}"
    for sidecar, image, *_, row_status, _seq in rows.values():
        assert row_status == "ok" and (state / sidecar).is_file() and (state / image).is_file(), sidecar
    return {"captures": len(sidecars), "rows": len(rows)}


def float_network(model: Path):
    """The model as exported (float NCHW [0, 1], no pixel wrapper) in ONNX Runtime: x -> y."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return lambda x: sess.run(None, {name: np.ascontiguousarray(x, np.float32)})[0]


def reference_pixels(model: Path, px: np.ndarray) -> np.ndarray:
    """What the pixel engines must give for N x H x W x 3 uint8 `px`: the float network on px / 255,
    clipped and rounded on the host, as the kiosk did before the pixel I/O moved into the graph."""
    y = float_network(model)(px.transpose(0, 3, 1, 2).astype(np.float32) / 255.0)
    return np.round(np.clip(y, 0, 1) * 255).astype(np.uint8).transpose(0, 2, 3, 1)


def tiff_pixel_size_um(data: bytes) -> float | None:
    """The pixel size a TIFF written by edge.imageio.encode declares (ImageJ, OME or resolution tags), as
    a reader finds it."""
    import io
    import re

    import tifffile

    with tifffile.TiffFile(io.BytesIO(data)) as t:
        if t.is_ome:
            m = re.search(r'PhysicalSizeX="([0-9.eE+-]+)"', t.ome_metadata or "")
            if m:
                return float(m.group(1))
        tags = t.pages[0].tags
        if "XResolution" not in tags:
            return None
        num, den = tags["XResolution"].value
        unit = tags["ResolutionUnit"].value if "ResolutionUnit" in tags else 2
        if t.is_imagej and (t.imagej_metadata or {}).get("unit") in ("um", "micron", "\u00b5m"):
            return den / num
        return {3: 1e4, 2: 25400.0}.get(int(unit), float("nan")) * den / num
