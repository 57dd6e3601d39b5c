"""ControlServer: the daemon's end of the control socket that `phonescope capture` and `status` use.

The socket is 0660 and the peer's credentials are checked as well
(SO_PEERCRED and SO_PEERGROUPS): root, the service's user, or a member of
its group. Requests are one JSON line of at most REQUEST_MAX bytes with known
keys only (edge.control's schema), read within REQUEST_TIMEOUT_S, from at
most MAX_CLIENTS clients at a time; each client gets its own thread, so a
capture that waits for its files to be durable never blocks a status query.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import struct
import threading
import time
from pathlib import Path
from typing import Callable

from edge.capture import CaptureError, CaptureRequest
from edge.control import REQUEST_MAX, BadRequest, parse_request

log = logging.getLogger("phonescope")

MAX_CLIENTS = 16           # control connections served at once
REQUEST_TIMEOUT_S = 5.0    # a client must send its request line within this
CAPTURE_REPLY_S = 120.0    # a capture's answer: a fresh frame (10 s at most), enhancement, durable files
SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)


def peer_allowed(conn: socket.socket) -> tuple[bool, int, int]:
    """Root, our own user, or a member of our group (primary or supplementary); (allowed, uid, pid)."""
    pid, uid, gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    if uid in (0, os.getuid()) or gid == os.getgid():
        return True, uid, pid
    try:
        raw = conn.getsockopt(socket.SOL_SOCKET, SO_PEERGROUPS, 1024)  # Python caps buflen at 1024: 256 groups
        groups = struct.unpack(f"{len(raw) // 4}I", raw[:len(raw) // 4 * 4])
    except OSError:
        groups = ()
    return os.getgid() in groups, uid, pid


def reply(conn: socket.socket, obj: dict) -> None:
    try:
        conn.sendall(json.dumps(obj).encode() + b"\n")
    except OSError:
        pass


class ControlServer:
    def __init__(self, path: Path, status: Callable[[], dict],
                 capture: Callable[[str | None, str], CaptureRequest]):
        self.path, self.status, self.capture = path, status, capture
        self.clients = threading.BoundedSemaphore(MAX_CLIENTS)
        self.serving: set[threading.Thread] = set()   # the clients' threads, until they have answered
        self.closed = False
        self.sock = self._bind()

    def _bind(self) -> socket.socket:
        self.path.unlink(missing_ok=True)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o117)  # the socket is created 0660: the service's user and group only
        try:
            s.bind(str(self.path))
            s.listen(8)
        except OSError:
            s.close()
            raise
        finally:
            os.umask(old)
        s.settimeout(0.5)
        return s

    def run(self) -> None:
        """Until close(): while the daemon stops, clients still get an answer (captures: "stopping")."""
        while not self.closed:
            try:
                conn, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            if not self.clients.acquire(blocking=False):
                conn.settimeout(1.0)
                reply(conn, {"ok": False, "error": f"busy: {MAX_CLIENTS} clients already connected"})
                conn.close()
                continue
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True, name="control-client")
            self.serving.add(t)
            t.start()

    def close(self, deadline: float | None = None) -> None:
        """No new clients (the name goes first), then an answer for each already queued in the backlog:
        closing a listening socket would reset them, and `capture` would not know what happened. Clients
        already being served get until `deadline` (time.monotonic()) to send theirs: the daemon's exit would
        otherwise cut a reply that was on its way (a capture the shutdown has just refused)."""
        self.closed = True
        try:
            self.path.unlink(missing_ok=True)
            self.sock.setblocking(False)
            while True:
                conn, _ = self.sock.accept()
                with conn:
                    conn.settimeout(1.0)
                    reply(conn, {"ok": False, "error": "the daemon is stopping: nothing was taken, try again "
                                                       "once it is back"})
        except OSError:     # BlockingIOError: the backlog is empty
            pass
        finally:
            self.sock.close()
        for t in list(self.serving) if deadline is not None else ():
            t.join(max(0.0, deadline - time.monotonic()))

    def _serve(self, conn: socket.socket) -> None:
        try:
            with conn:
                reply(conn, self.answer(conn))
        finally:
            self.clients.release()
            self.serving.discard(threading.current_thread())

    def answer(self, conn: socket.socket) -> dict:
        conn.settimeout(REQUEST_TIMEOUT_S)
        try:
            allowed, uid, pid = peer_allowed(conn)
            if not allowed:
                log.warning("control socket: refused uid %d (pid %d): not the service's user or group", uid, pid)
                return {"ok": False, "error": "permission denied"}
            line = conn.makefile("rb").readline(REQUEST_MAX + 1)
        except (OSError, struct.error):
            return {"ok": False, "error": "bad request: nothing read"}
        try:
            msg = parse_request(line)
        except BadRequest as e:
            return {"ok": False, "error": str(e)}
        if msg["cmd"] == "status":
            return {"ok": True, "status": self.status()}
        conn.settimeout(CAPTURE_REPLY_S + 10)
        try:
            stored = self.capture(msg.get("sample_id"), "socket").result.result(timeout=CAPTURE_REPLY_S)
        except CaptureError as e:
            return {"ok": False, "error": str(e)}
        except TimeoutError:
            return {"ok": False, "error": "timed out"}
        return {"ok": True, "path": str(stored.image), "seq": stored.seq, "sha256": stored.sha256,
                "sidecar": str(stored.sidecar), "timings": stored.times}
