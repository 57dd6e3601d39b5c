"""The control socket's two ends over real Unix sockets: where clients look, what they hear while it stops."""
from __future__ import annotations

import json
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path

import pytest

from edge import config, control
from edge.capture import CaptureRequest, Stopping
from edge.control_server import ControlServer


@pytest.fixture
def short_tmp():
    d = Path(tempfile.mkdtemp(prefix="ps-ctl-"))   # AF_UNIX paths must fit in 108 bytes
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_the_daemon_binds_in_systemds_runtime_directory(short_tmp, monkeypatch):
    monkeypatch.delenv("RUNTIME_DIRECTORY", raising=False)
    assert control.socket_path(short_tmp / "state") == short_tmp / "state" / "control.sock"
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(short_tmp / "run"))
    assert control.socket_path(short_tmp / "state") == short_tmp / "run" / "control.sock"


def test_clients_find_an_installed_kiosk_without_flags(short_tmp, monkeypatch):
    """An operator's shell on the kiosk: no --state-dir, and no ./var; the daemon's socket in /run/phonescope."""
    run_dir, etc = short_tmp / "run", short_tmp / "etc" / "phonescope.toml"
    monkeypatch.setattr(control, "RUN_DIR", run_dir)
    monkeypatch.setattr(config, "INSTALLED", etc)
    monkeypatch.chdir(short_tmp)
    assert control.client_socket(None) == (Path("var") / "control.sock", "var"), "the demo's ./var"
    run_dir.mkdir()
    (run_dir / "control.sock").touch()
    assert control.client_socket(None)[0] == run_dir / "control.sock", "the running service's"
    (run_dir / "control.sock").unlink()
    etc.parent.mkdir()
    etc.write_text(f'[storage]\nstate_dir = "{short_tmp / "lib"}"\n')
    assert control.client_socket(None)[0] == run_dir / "control.sock", "installed, stopped: still the service's"
    assert control.client_socket(short_tmp / "x")[0] == short_tmp / "x" / "control.sock", "--state-dir wins"


def test_clients_queued_while_the_daemon_stops_get_an_answer(short_tmp):
    """Closing a listening socket resets the connections in its backlog ("Connection reset by peer"): a
    capture asked for just as SIGTERM came must hear that nothing was taken."""
    path = short_tmp / "control.sock"
    server = ControlServer(path, lambda: {}, lambda sample_id, origin: None)   # its accept loop not running
    clients = []
    for _ in range(3):
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.settimeout(5)
        c.connect(str(path))
        c.sendall(json.dumps(control.make_request("capture")).encode() + b"\n")
        clients.append(c)
    server.close()
    assert not path.exists(), "new clients are told no daemon runs"
    for c in clients:
        reply = json.loads(c.makefile("rb").readline())
        c.close()
        assert reply["ok"] is False and "stopping" in reply["error"] and "nothing was taken" in reply["error"]


def test_a_client_being_served_has_its_answer_sent_before_close_returns(short_tmp):
    """The daemon exits once close() returns: a capture the shutdown has just refused must have had its
    answer written by then, or the client hears "closed the connection without an answer" (seen in CI)."""
    path = short_tmp / "control.sock"
    taken = threading.Event()
    req = CaptureRequest(None, "socket")

    def capture(sample_id, origin):
        taken.set()
        return req

    server = ControlServer(path, lambda: {}, capture)
    threading.Thread(target=server.run, daemon=True).start()
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.settimeout(5)
    c.connect(str(path))
    c.sendall(json.dumps(control.make_request("capture")).encode() + b"\n")
    assert taken.wait(5), "the request reached the daemon"
    req.result.set_exception(Stopping("daemon stopped before the capture was taken, nothing saved"))
    server.close(time.monotonic() + 2.0)
    assert not server.serving, "every client's thread has answered"
    c.setblocking(False)
    reply = json.loads(c.makefile("rb").readline())   # already there: no wait
    c.close()
    assert reply["ok"] is False and "nothing saved" in reply["error"]
