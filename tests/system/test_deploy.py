"""Deployment files checked by real systemd tooling."""
from __future__ import annotations

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
