"""The upload queue against a real WebDAV server (wsgidav) on loopback, through a proxy that fails."""
from __future__ import annotations

import hashlib
import json
import os
import threading
import time

import pytest

from edge.notices import Notices
from edge.storage import Storage
from edge.upload import UploadConfigError, Uploader, target
from tests.webdav import DavServer, FaultProxy, make_ca


def cfg(url, **kw):
    return {"url": url, "credentials_file": "", "ca_file": "", "concurrency": 2, "max_rate_kb_s": 0,
            "timeout_s": 2, "retry_max_s": 1.0, **kw}


def fill(st: Storage, n: int, size: int = 150_000, seed: int = 0) -> None:
    rnd = __import__("random").Random(seed)
    for i in range(n):
        st.store(rnd.randbytes(size), ".png", {"i": i}, raw_bytes=rnd.randbytes(size // 3),
                 sample_id=f"S-{i % 3}", now=1_764_547_200 + i * 7, raw_format="png")


def wait_drained(up: Uploader, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if up.backlog() == 0:
            return True
        time.sleep(0.05)
    return False


def same_tree(st: Storage, served) -> None:
    local = {str(p.relative_to(st.captures)): hashlib.sha256(p.read_bytes()).hexdigest()
             for p in st.captures.rglob("*") if p.is_file()}
    remote = {str(p.relative_to(served)): hashlib.sha256(p.read_bytes()).hexdigest()
              for p in served.rglob("*") if p.is_file()}
    assert remote == local, "every file arrived byte for byte, nothing else"


@pytest.fixture
def dav(tmp_path):
    servers = []

    def make(**kw):
        s = DavServer(tmp_path / "served", tmp_path / "dav.log", **kw).start()
        servers.append(s)
        return s
    yield make
    for s in servers:
        s.stop()


def test_every_capture_arrives_once_through_503_drops_hangs_and_a_vanished_server(tmp_path, dav):
    server = dav()
    proxy = FaultProxy(server.port)
    st = Storage(tmp_path / "state", min_free_mb=0)
    fill(st, 24)
    notices = Notices()
    up = Uploader(st, cfg(f"http://127.0.0.1:{proxy.port}/dav/kiosk-1", timeout_s=1.0), notices, seed=1)
    proxy.set("503")
    up.start()
    try:
        time.sleep(1.0)
        assert up.backlog() == 24 and up.status()["last_error"] and "HTTP 503" in notices.get("upload")
        for mode, seconds in (("ok", 0.4), ("drop", 1.5), ("ok", 0.3), ("hang", 2.0), ("down", 1.0), ("ok", 0.3)):
            proxy.set(mode)
            time.sleep(seconds)
        server.stop()                           # the server vanishes for a while
        time.sleep(1.5)
        server.start()
        fill(st, 6, seed=2)                     # captures keep coming meanwhile
        for r in st.rows()[24:]:
            up.enqueue(r["seq"])
        assert wait_drained(up, 120), up.status()
    finally:
        up.stop(time.monotonic() + 5)
        proxy.close()
    same_tree(st, tmp_path / "served" / "kiosk-1")
    puts = server.puts()
    assert len(puts) == 90 and max(puts.values()) == 1, "no file was stored twice"
    s = up.status()
    assert s["delivered"] == 30 and s["retries"] > 0 and s["backlog"] == 0
    assert proxy.faults["503"] and proxy.faults["drop"] and proxy.faults["hang"]
    assert notices.get("upload") is None, "the warning clears once the backlog is empty"
    assert len(st.delivered("upload", up.target.url)) == 90
    print(json.dumps({"captures": 30, "files": 90, "puts_stored": len(puts), "duplicates": 0, "lost": 0,
                      "retries": s["retries"], "faults": proxy.faults}))


def test_a_file_the_server_already_has_is_recorded_not_sent_again(tmp_path, dav):
    """The daemon died after the server stored a file but before it recorded the delivery."""
    server = dav()
    st = Storage(tmp_path / "state", min_free_mb=0)
    fill(st, 3)
    url = f"http://127.0.0.1:{server.port}/dav/k"
    up = Uploader(st, cfg(url), Notices())
    up.start()
    assert wait_drained(up, 30)
    up.stop(time.monotonic() + 2)
    st.db.execute("DELETE FROM deliveries WHERE seq=2")     # as if the record never committed
    served = tmp_path / "served" / "k"
    victim = next(p for p in served.rglob("*_000003*.png") if ".raw." not in p.name)
    victim.write_bytes(victim.read_bytes()[:-10] + b"0123456789")   # same size, other content: must be re-sent
    st.db.execute("DELETE FROM deliveries WHERE seq=3 AND file LIKE '%.png' AND file NOT LIKE '%.raw.png'")
    again = Uploader(st, cfg(url), Notices())
    assert again.scan() == 2
    again.start()
    assert wait_drained(again, 30)
    again.stop(time.monotonic() + 2)
    s = again.status()
    assert s["already_there"] == 3 and s["files_sent"] == 1, s
    same_tree(st, served)
    assert max(server.puts().values()) == 2 and sum(server.puts().values()) == 10


def test_tls_with_a_custom_ca_basic_auth_and_bandwidth_limit(tmp_path, dav):
    ca, cert, key = make_ca(tmp_path)
    server = dav(tls=(cert, key), auth="kiosk:s3cret")
    creds = tmp_path / "creds"
    creds.write_text("kiosk:s3cret\n")
    os.chmod(creds, 0o600)
    st = Storage(tmp_path / "state", min_free_mb=0)
    fill(st, 2, size=60_000)
    url = f"https://localhost:{server.port}/dav/k"
    # without the CA the server's certificate is refused, with a clear hint
    bad = Uploader(st, cfg(url, credentials_file=str(creds)), Notices())
    bad.start()
    deadline = time.monotonic() + 10
    while not bad.status()["last_error"] and time.monotonic() < deadline:
        time.sleep(0.05)
    bad.stop(time.monotonic() + 2)
    assert "TLS" in bad.status()["last_error"] and "ca_file" in bad.status()["last_error"]
    # a wrong password: 401, shown as such
    wrong = tmp_path / "wrong"
    wrong.write_text("kiosk:nope")
    os.chmod(wrong, 0o600)
    w = Uploader(st, cfg(url, credentials_file=str(wrong), ca_file=str(ca)), Notices())
    w.start()
    deadline = time.monotonic() + 10
    while not w.status()["last_error"] and time.monotonic() < deadline:
        time.sleep(0.05)
    w.stop(time.monotonic() + 2)
    assert "HTTP 401 (credentials?)" in w.status()["last_error"]
    # right CA and password, limited to 100 kB/s: 2 x (60 + 20) kB + sidecars take >= ~1.2 s
    up = Uploader(st, cfg(url, credentials_file=str(creds), ca_file=str(ca), max_rate_kb_s=100), Notices())
    t0 = time.monotonic()
    up.start()
    assert wait_drained(up, 30), up.status()
    took = time.monotonic() - t0
    up.stop(time.monotonic() + 2)
    assert took >= (up.status()["bytes_sent"] - 100_000) / 100_000 * 0.9, (took, up.status())
    same_tree(st, tmp_path / "served" / "k")


def test_settings_that_cannot_work_are_one_line(tmp_path):
    creds = tmp_path / "creds"
    creds.write_text("kiosk:pw")
    os.chmod(creds, 0o644)
    with pytest.raises(UploadConfigError, match=r"readable by others \(mode 0644\): chmod 600"):
        target(cfg("https://h/dav", credentials_file=str(creds)))
    with pytest.raises(UploadConfigError, match="no credentials in the URL"):
        target(cfg("https://u:p@h/dav"))
    with pytest.raises(UploadConfigError, match="must be http"):
        target(cfg("ftp://h/dav"))
    with pytest.raises(UploadConfigError, match="ca_file .*no such file"):
        target(cfg("https://h/dav", ca_file=str(tmp_path / "none.pem")))
    t = target(cfg("https://dav.example.org:8443/remote.php/dav/files/kiosk/"))
    assert t.url == "https://dav.example.org:8443/remote.php/dav/files/kiosk" and t.port == 8443
    assert t.path("2026/12/02/S 1/a.png") == "/remote.php/dav/files/kiosk/2026/12/02/S%201/a.png"


def test_a_backlog_of_100_captures_drains_whole_and_once(tmp_path, dav):
    """100 captures of 1.6 MB each (a 1.2 MB image, a 0.4 MB raw frame, the sidecar) queued while the server
    was away, then drained on loopback; prints the time it took (the figure in the README)."""
    server = dav()
    st = Storage(tmp_path / "state", min_free_mb=0)
    fill(st, 100, size=1_200_000)
    up = Uploader(st, cfg(f"http://127.0.0.1:{server.port}/dav/k", timeout_s=10), Notices())
    t0 = time.monotonic()
    up.start()
    assert wait_drained(up, 600), up.status()
    took = time.monotonic() - t0
    up.stop(time.monotonic() + 2)
    same_tree(st, tmp_path / "served" / "k")
    assert len(server.puts()) == 300 and max(server.puts().values()) == 1
    mb = up.status()["bytes_sent"] / 1e6
    print(f"\nbacklog of 100 captures ({mb:.0f} MB, 300 files) drained in {took:.1f} s ({mb / took:.0f} MB/s)")
