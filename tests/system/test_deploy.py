"""Deployment files checked by real systemd tooling."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edge import config
from tests.helpers import ROOT

UNIT = ROOT / "deploy" / "phonescope.service"


def test_unit_passes_systemd_analyze_verify(tmp_path):
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is not installed (deploy/dev-deps.sh installs systemd)")
    # verify insists that ExecStart exists: point it at this checkout's entry point, change nothing else
    exe = Path(sys.executable).parent / "phonescope"
    assert exe.exists(), "the phonescope console script is installed in this environment"
    text = UNIT.read_text().replace("/usr/local/bin/phonescope", str(exe))
    unit = tmp_path / "phonescope.service"
    unit.write_text(text)
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "" and r.stderr.strip() == "", r.stdout + r.stderr


def test_unit_has_the_service_contract():
    text = UNIT.read_text()
    for line in ("Type=notify", "WatchdogSec=", "Restart=on-failure", "RestartPreventExitStatus=78",
                 "User=phonescope", "StateDirectory=phonescope", "ProtectSystem=strict", "NoNewPrivileges=yes",
                 "PrivateTmp=yes", "ProtectHome=yes", "DeviceAllow=char-video4linux", "DeviceAllow=/dev/fb0",
                 "DeviceAllow=/dev/nvmap"):
        assert line in text, line


def test_example_config_is_valid_and_documents_every_key():
    path = ROOT / "deploy" / "phonescope.toml"
    cfg = config.load(path)
    text = path.read_text()
    for section, keys in config.SCHEMA.items():
        assert f"[{section}]" in text
        for key in keys:
            assert f"\n{key} =" in text, key
    assert cfg["camera"]["source"] == "v4l2:/dev/video0"


def test_device_rules_name_devices_not_folders():
    """DeviceAllow takes device nodes or device groups (char-NAME from /proc/devices); systemd ignores a folder
    such as /dev/dri ("is not a device"), which left /dev/dri/renderD* and with it CUDA denied on JetPack 6."""
    rules = [line.split("=", 1)[1].split()[0] for line in UNIT.read_text().splitlines()
             if line.startswith("DeviceAllow=")]
    folders = {"/dev/dri", "/dev/nvgpu", "/dev/nvgpu/igpu0", "/dev/dma_heap", "/dev/v4l", "/dev/snd"}
    assert not folders & set(rules), folders & set(rules)
    assert all(r.startswith(("char-", "block-")) or r.startswith("/dev/") for r in rules), rules
    for group in ("char-drm", "char-video4linux", "char-media", "char-dma_heap", "char-nvidia*", "char-input"):
        assert group in rules, group
    text = UNIT.read_text()
    assert "SupplementaryGroups=video render input" in text and "BindPaths=-/tmp/argus_socket" in text
    assert "usermod -aG video,render,input phonescope" in (ROOT / "deploy" / "install.sh").read_text()


def test_udev_rule_names_no_camera_two_cameras_could_share():
    """ATTR{index}=="0" is every camera's first node: a fixed SYMLINK would go to whichever came first."""
    rules = (ROOT / "deploy" / "99-phonescope-camera.rules").read_text()
    assert "SYMLINK" not in rules and 'SUBSYSTEM=="video4linux", GROUP="video"' in rules
    assert "/dev/v4l/by-id/" in (ROOT / "deploy" / "phonescope.toml").read_text()


def test_jetson_python_sees_the_systems_tensorrt_and_gstreamer_opencv(tmp_path):
    """pip's opencv-python has no GStreamer and would shadow JetPack's; a venv without system site packages
    hides JetPack's TensorRT. The helper swaps OpenCV only where the system's has GStreamer."""
    make = (ROOT / "Makefile").read_text()
    assert "--system-site-packages" in make and "bash deploy/use-system-opencv.sh $(PY)" in make
    install = (ROOT / "deploy" / "install.sh").read_text()
    assert "--system-site-packages" in install and "use-system-opencv.sh" in install and "pycuda" in install
    fake = tmp_path / "python3"                       # a system Python whose OpenCV lacks GStreamer (pip's)
    fake.write_text(f"#!/bin/sh\nexec {sys.executable} \"$@\"\n")
    fake.chmod(0o755)
    r = subprocess.run(["bash", str(ROOT / "deploy" / "use-system-opencv.sh"), sys.executable],
                       env={**os.environ, "SYSTEM_PYTHON": str(fake)}, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout == "" and r.stderr == "", "nothing to swap: nothing done"
    import cv2
    assert cv2.__file__, "this venv's OpenCV is still there"


def test_dropins_allow_exactly_the_upload_host_and_the_usb_folder_and_verify(tmp_path):
    """install.sh writes it from [upload] url (python -m edge.upload_unit dropin); systemd-analyze verify reads the
    unit with it; without a URL it is removed again."""
    from edge.upload_unit import unit_dropin

    cfg = config.defaults()
    cfg["upload"]["url"] = "https://127.0.0.1:8443/dav/kiosk"
    text = unit_dropin(cfg)
    allow = [ln.split("=", 1)[1] for ln in text.splitlines() if ln.startswith("IPAddressAllow=")]
    assert allow == ["127.0.0.1"], "an address literal: nothing to resolve, no name server"
    cfg["upload"]["url"] = "https://localhost/dav"
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 192.0.2.53\nnameserver 127.0.0.53\n")
    allow = [ln.split("=", 1)[1] for ln in unit_dropin(cfg, str(resolv)).splitlines()
             if ln.startswith("IPAddressAllow=")]
    assert "192.0.2.53" in allow and "localhost" in allow and ("127.0.0.1" in allow or "::1" in allow)
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is not installed (deploy/dev-deps.sh installs systemd)")
    exe = Path(sys.executable).parent / "phonescope"
    unit = tmp_path / "phonescope.service"
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/phonescope", str(exe)))
    toml = tmp_path / "k.toml"
    toml.write_text('[upload]\nurl = "https://127.0.0.1:8443/dav/kiosk"\n')
    dropin = tmp_path / "phonescope.service.d" / "upload.conf"
    r = subprocess.run([sys.executable, "-m", "edge.upload_unit", "dropin", str(toml), str(dropin)], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and dropin.is_file(), r.stderr
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "" and r.stderr.strip() == "", r.stdout + r.stderr
    dropin.write_text(dropin.read_text() + "IPAddressAllow=not-an-address\n")   # verify does read the drop-in
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert "not-an-address" in r.stdout + r.stderr
    toml.write_text('[export]\nauto_dir = "/media/phonescope-usb"\n')
    rule = tmp_path / "99-phonescope-usb.rules"
    r = subprocess.run([sys.executable, "-m", "edge.upload_unit", "dropin", str(toml), str(dropin), str(rule)],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    stick = dropin.with_name("export.conf")
    # the rule itself runs under udev in the rehearsal's usb_export scenario
    assert rule.read_text().rstrip().endswith("$devnode /media/phonescope-usb\""), rule.read_text()
    assert r.returncode == 0 and not dropin.exists() and "removed" in r.stdout, "no URL: no allowance"
    assert "ReadWritePaths=-/media/phonescope-usb" in stick.read_text(), "the USB stick's folder is writable"
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "" and r.stderr.strip() == "", r.stdout + r.stderr
    toml.write_text("")
    r = subprocess.run([sys.executable, "-m", "edge.upload_unit", "dropin", str(toml), str(dropin), str(rule)],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and not stick.exists() and not rule.exists() and "removed" in r.stdout
