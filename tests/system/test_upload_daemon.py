"""The daemon's upload queue end to end: a real daemon process, a real WebDAV server (wsgidav) over TLS
with a CA made here and Basic auth, through a proxy that fails; kill -9 mid-upload and a restart."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import time

from tests.helpers import daemon, replay_folder, run_cli, running, status, wait_until
from tests.webdav import DavServer, FaultProxy, make_ca


def tree(root):
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in root.rglob("*") if p.is_file()}


def test_captures_reach_the_server_once_through_faults_kill9_and_restart(tmp_path, tiny_model):
    ca, cert, key = make_ca(tmp_path)
    # TLS ends at the proxy (its 503s are inside TLS); the proxy talks plain HTTP to wsgidav
    server = DavServer(tmp_path / "served", tmp_path / "dav.log", auth="kiosk:pw").start()
    proxy = FaultProxy(server.port, tls=(cert, key))
    creds = tmp_path / "creds"
    creds.write_text("kiosk:pw\n")
    os.chmod(creds, 0o600)
    frames = replay_folder(tmp_path / "frames")
    state = tmp_path / "s"
    config = (f'[upload]\nurl = "https://localhost:{proxy.port}/dav/kiosk-7"\ncredentials_file = "{creds}"\n'
              f'ca_file = "{ca}"\nmax_rate_kb_s = 250\nretry_max_s = 1\ntimeout_s = 3\n')
    procs = []
    try:
        proxy.set("503")
        proc = daemon(state, f"replay:{frames}", tiny_model, config=config)
        procs.append(proc)
        running(state, proc)
        for i in range(4):
            r = run_cli("capture", "--state-dir", state, "--sample-id", f"U-{i % 2}", timeout=120)
            assert r.returncode == 0, r.stderr
        assert wait_until(lambda: (status(state)["upload"] or {}).get("last_error"), 20)
        st = status(state)
        assert st["upload"]["backlog"] == 4 and "HTTP 503" in st["upload"]["last_error"]
        assert any("upload backlog" in w for w in st["warnings"]), st["warnings"]
        proxy.set("ok")
        # slowed to 250 kB/s: about a second per file; kill -9 once the first capture is through
        assert wait_until(lambda: status(state)["upload"]["delivered"] >= 1, 60)
        proc.kill()
        proc.wait()
        proc = daemon(state, f"replay:{frames}", tiny_model, config=config)
        procs.append(proc)
        running(state, proc)
        assert status(state)["upload"]["backlog"] >= 1, "the queue came back from the catalogue"
        proxy.set("drop")
        for i in range(2):
            assert run_cli("capture", "--state-dir", state, timeout=120).returncode == 0
        time.sleep(2)
        proxy.set("ok")
        assert wait_until(lambda: status(state)["upload"]["backlog"] == 0, 120), status(state)["upload"]
        up = status(state)["upload"]
        assert up["last_delivery"]["seq"] and up["url"] == f"https://localhost:{proxy.port}/dav/kiosk-7"
        assert not any("upload" in w for w in status(state)["warnings"])
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        proxy.close()
        server.stop()
    local = tree(state / "captures")
    assert len(local) == 18 and tree(tmp_path / "served" / "kiosk-7") == local, "all 6 captures, byte for byte"
    puts = server.puts()
    assert len(puts) == 18 and max(puts.values()) == 1, f"a file stored twice: {puts}"
    _, err = procs[-1].communicate()
    assert "delivered to https://localhost" in err
    print(json.dumps({"captures": 6, "files": 18, "puts": sum(puts.values()), "faults": proxy.faults,
                      "short_puts_stored_by_the_server": server.short_puts()}))
