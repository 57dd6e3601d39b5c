"""The upload queue: every capture to a WebDAV server ([upload] url), never lost, never sent twice.

The queue is the catalogue itself: a capture is pending while any of its
files lacks a delivery row for the URL (edge/storage.py, table deliveries),
so it survives kill -9 and reboot with nothing else to keep. Each file is
PUT under <url>/<path relative to captures/>, its parent collections made
by MKCOL first, the sidecar last (a reader on the server sees a capture
once it is complete); a 2xx answer is recorded at once. Before a PUT the
server is asked (HEAD) whether it has the file: one of the same size is
fetched and hashed, and if it matches, recorded without sending again (the
daemon may have died between the server's answer and the record).

Failures (5xx, 408/429, timeouts, dropped connections, an unreachable host)
retry with exponential backoff and full jitter, per capture; 4xx answers
that retrying cannot cure (401, 403, 404 of the base, 413) are shown as the
last error and retried at the longest interval, so fixing the server needs no
restart. Workers are bounded ([upload] concurrency) and share one bandwidth
budget ([upload] max_rate_kb_s). Nothing here blocks a capture: the capture
path only calls enqueue().
"""
from __future__ import annotations

import base64
import hashlib
import http.client
import logging
import random
import socket
import ssl
import stat
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from edge.notices import Notices
from edge.storage import Storage, StorageError

log = logging.getLogger("phonescope")

CHUNK = 64 * 1024
BACKOFF_FIRST_S = 2.0
RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}


class UploadConfigError(ValueError):
    """[upload] settings that cannot work; one line naming the key."""


class UploadFailed(Exception):
    """One attempt failed; the message says why (shown as the last error)."""

    def __init__(self, message: str, permanent: bool = False):
        super().__init__(message)
        self.permanent = permanent


@dataclass
class Target:
    scheme: str
    host: str
    port: int
    base: str                 # path prefix, without a trailing slash
    url: str                  # as shown and recorded: without credentials
    auth: str | None          # "Basic ..." header value
    context: ssl.SSLContext | None
    timeout: float

    def path(self, rel: str) -> str:
        return self.base + "/" + "/".join(urllib.parse.quote(p) for p in rel.split("/"))

    def connect(self) -> http.client.HTTPConnection:
        if self.scheme == "https":
            return http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout, context=self.context)
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)


def read_credentials(path: str) -> str:
    """`user:password` (one line) from a file only the service may read -> a Basic auth header."""
    p = Path(path)
    try:
        st = p.stat()
        text = p.read_text().strip()
    except OSError as e:
        raise UploadConfigError(f"[upload] credentials_file {p}: cannot read ({e.strerror})") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise UploadConfigError(f"[upload] credentials_file {p}: readable by others (mode "
                                f"{stat.S_IMODE(st.st_mode):04o}): chmod 600 and chown it to the service user")
    if ":" not in text or "\n" in text:
        raise UploadConfigError(f"[upload] credentials_file {p}: must hold one line, user:password")
    return "Basic " + base64.b64encode(text.encode()).decode()


def target(cfg: dict) -> Target:
    """[upload] settings -> where and how to connect; UploadConfigError for what cannot work."""
    u = urllib.parse.urlsplit(cfg["url"])
    if u.scheme not in ("http", "https") or not u.hostname:
        raise UploadConfigError(f"[upload] url: must be http(s)://host[:port]/path, got {cfg['url']!r}")
    if u.username or u.password:
        raise UploadConfigError("[upload] url: no credentials in the URL (it is logged and shown): "
                                "use [upload] credentials_file")
    context = None
    if u.scheme == "https":
        ca = cfg["ca_file"] or None
        if ca and not Path(ca).is_file():
            raise UploadConfigError(f"[upload] ca_file {ca}: no such file")
        try:
            context = ssl.create_default_context(cafile=ca)
        except (ssl.SSLError, OSError) as e:
            raise UploadConfigError(f"[upload] ca_file {ca}: not a PEM certificate ({e})") from None
    auth = read_credentials(cfg["credentials_file"]) if cfg["credentials_file"] else None
    port = u.port or (443 if u.scheme == "https" else 80)
    url = urllib.parse.urlunsplit((u.scheme, u.netloc, u.path.rstrip("/"), "", ""))
    return Target(u.scheme, u.hostname, port, u.path.rstrip("/"), url, auth, context, float(cfg["timeout_s"]))


class RateLimit:
    """One token bucket of bytes per second shared by all workers (0: unlimited)."""

    def __init__(self, bytes_per_s: float):
        self.rate, self.lock = float(bytes_per_s), threading.Lock()
        self.allowance, self.t = self.rate, time.monotonic()

    def take(self, n: int, stop: threading.Event) -> None:
        if self.rate <= 0:
            return
        while not stop.is_set():
            with self.lock:
                now = time.monotonic()
                self.allowance = min(self.rate, self.allowance + (now - self.t) * self.rate)
                self.t = now
                if self.allowance >= n or self.allowance >= self.rate:
                    self.allowance -= n
                    return
                wait = (n - self.allowance) / self.rate
            stop.wait(min(wait, 0.5))


class Uploader:
    def __init__(self, storage: Storage, cfg_upload: dict, notices: Notices, seed: int | None = None):
        self.storage, self.notices = storage, notices
        self.target = target(cfg_upload)
        self.workers_n = int(cfg_upload["concurrency"])
        self.retry_max_s = float(cfg_upload["retry_max_s"])
        self.rate = RateLimit(cfg_upload["max_rate_kb_s"] * 1000)
        self.random = random.Random(seed)
        self.stop_event = threading.Event()
        self.cond = threading.Condition()
        self.pending: dict[int, float] = {}          # seq -> monotonic time it may be tried
        self.attempts: dict[int, int] = {}
        self.in_flight: set[int] = set()
        self.collections: set[str] = set()           # made (or found) on the server in this run
        self.threads: list[threading.Thread] = []
        self.counts = {"delivered": 0, "files_sent": 0, "bytes_sent": 0, "already_there": 0, "retries": 0}
        self.last_error: str | None = None
        self.last_error_t: float | None = None
        self.last_delivery: dict | None = None

    # -- the queue --------------------------------------------------------------
    def scan(self) -> int:
        """Queue every capture on the kiosk not yet wholly delivered to this URL (at start-up)."""
        done = self.storage.delivered("upload", self.target.url)
        rel = lambda p: str(Path(p).relative_to("captures"))
        waiting = [r["seq"] for r in self.storage.rows() if r["status"] == "ok" and
                   any((r["seq"], rel(p)) not in done for p in (r["image"], r["raw"], r["sidecar"]) if p)]
        with self.cond:
            for s in waiting:
                self.pending.setdefault(s, 0.0)
            self.cond.notify_all()
        return len(waiting)

    def enqueue(self, seq: int) -> None:
        """A capture that is durable now: queue it (never blocks)."""
        with self.cond:
            self.pending[seq] = 0.0
            self.cond.notify()

    def backlog(self) -> int:
        with self.cond:
            return len(self.pending) + len(self.in_flight)

    def _count(self, name: str, n: int = 1) -> None:
        with self.cond:                         # the workers count at once
            self.counts[name] += n

    def status(self) -> dict:
        with self.cond:
            counts = dict(self.counts)
        age = None if self.last_error_t is None else round(time.monotonic() - self.last_error_t, 1)
        return {"url": self.target.url, "backlog": self.backlog(), **counts,
                "last_error": self.last_error, "last_error_age_s": age,
                "last_delivery": self.last_delivery}

    # -- threads ------------------------------------------------------------------
    def start(self) -> None:
        self.scan()
        for i in range(self.workers_n):
            t = threading.Thread(target=self._work, name=f"upload-{i}", daemon=True)
            t.start()
            self.threads.append(t)

    def stop(self, deadline: float) -> None:
        """Stop taking work; a transfer in progress is cut at its next chunk (it is retried next start)."""
        self.stop_event.set()
        with self.cond:
            self.cond.notify_all()
        for t in self.threads:
            t.join(max(0.1, deadline - time.monotonic()))

    def _next(self) -> int | None:
        with self.cond:
            while not self.stop_event.is_set():
                now = time.monotonic()
                ready = [s for s, t in self.pending.items() if t <= now]
                if ready:
                    seq = min(ready)
                    del self.pending[seq]
                    self.in_flight.add(seq)
                    return seq
                wake = min(self.pending.values(), default=now + 60) - now
                self.cond.wait(max(0.05, min(wake, 60)))
        return None

    def _work(self) -> None:
        while (seq := self._next()) is not None:
            try:
                self._deliver(seq)
            except Exception as e:
                if self.stop_event.is_set():     # cut by stop(): what was recorded stays, the rest next start
                    self._done(seq, requeue_at=0.0)
                elif isinstance(e, UploadFailed):
                    self._failed(seq, str(e), e.permanent)
                elif isinstance(e, StorageError):   # the capture itself is damaged or gone: not retried
                    self._failed(seq, str(e), permanent=True, requeue=False)
                else:                            # never let one capture end the worker
                    log.exception("upload of capture %d failed", seq)
                    self._failed(seq, f"{type(e).__name__}: {e}", False)
            else:
                self._done(seq)

    def _done(self, seq: int, requeue_at: float | None = None) -> None:
        with self.cond:
            self.in_flight.discard(seq)
            if requeue_at is not None:
                self.pending[seq] = requeue_at
            else:
                self.attempts.pop(seq, None)
        if self.backlog() == 0:
            self.notices.clear("upload")

    def _failed(self, seq: int, why: str, permanent: bool, requeue: bool = True) -> None:
        with self.cond:
            n = self.attempts[seq] = self.attempts.get(seq, 0) + 1
            # full jitter: anywhere up to the exponential bound, so kiosks behind one server spread out
            bound = self.retry_max_s if permanent else min(self.retry_max_s, BACKOFF_FIRST_S * 2 ** (n - 1))
            delay = self.random.uniform(bound / 2, bound)
            if "timed out" in why:   # the request we gave up on may still be completing at the server:
                delay = max(delay, 2 * self.target.timeout)   # look again (HEAD) only once it has had time
            self.in_flight.discard(seq)
            if requeue and not self.stop_event.is_set():
                self.pending[seq] = time.monotonic() + delay
        self._count("retries")
        backlog = self.backlog()
        self.last_error, self.last_error_t = f"capture #{seq}: {why}", time.monotonic()
        self.notices.set("upload", f"upload backlog {backlog}: {why}")
        log.warning("upload of capture %d failed (attempt %d, next in %.0f s): %s", seq, n, delay, why,
                    extra={"UPLOAD_SEQ": seq, "UPLOAD_ERROR": why})

    # -- one capture ------------------------------------------------------------------
    def _deliver(self, seq: int) -> None:
        row = self.storage.row(seq)
        if row is None or row["status"] != "ok":
            return                                  # deleted or missing since it was queued
        done = self.storage.delivered("upload", self.target.url, seq)
        for rel, digest in self.storage.capture_files(row):
            if done.get((seq, rel)) == digest:
                continue
            if self.stop_event.is_set():
                raise UploadFailed("stopping")
            self._ensure_collections(rel)
            path = self.storage.captures / rel
            how = "already there" if self._server_has(rel, path, digest) else self._put(rel, path)
            self.storage.record_delivery(seq, "upload", self.target.url, rel, digest)
            if how == "already there":
                self._count("already_there")
            log.info("uploaded %s (%s)", rel, how, extra={"UPLOAD_SEQ": seq, "UPLOAD_FILE": rel,
                                                          "UPLOAD_URL": self.target.url})
        self._count("delivered")
        self.last_delivery = {"seq": seq, "time": time.time()}
        log.info("capture %d delivered to %s", seq, self.target.url,
                 extra={"UPLOAD_SEQ": seq, "UPLOAD_URL": self.target.url})

    def _request(self, method: str, rel_path: str, body=None, headers=None,
                 size: int = 0) -> tuple[int, bytes | None, dict]:
        """One request on a fresh connection -> (status, the answer's body (None for HEAD), headers);
        UploadFailed on a network failure."""
        h = {"User-Agent": "phonescope", **(headers or {})}
        if self.target.auth:
            h["Authorization"] = self.target.auth
        conn = self.target.connect()
        try:
            if body is None:
                conn.request(method, rel_path, headers=h)
            else:
                conn.putrequest(method, rel_path, skip_accept_encoding=True)
                for k, v in {**h, "Content-Length": str(size)}.items():
                    conn.putheader(k, v)
                conn.endheaders()
                while chunk := body.read(CHUNK):
                    if self.stop_event.is_set():
                        raise UploadFailed("stopping")
                    self.rate.take(len(chunk), self.stop_event)
                    conn.send(chunk)
            resp = conn.getresponse()
            data = resp.read() if method != "HEAD" else None
            return resp.status, data, {k.lower(): v for k, v in resp.getheaders()}
        except ssl.SSLCertVerificationError as e:
            raise UploadFailed(f"TLS: {e.verify_message or e} (set [upload] ca_file to the server's CA)") from None
        except (OSError, http.client.HTTPException) as e:
            what = "timed out" if isinstance(e, (socket.timeout, TimeoutError)) else \
                (f"{type(e).__name__}: {e}" if str(e) else type(e).__name__)
            raise UploadFailed(f"{self.target.host}:{self.target.port}: {what}") from None
        finally:
            conn.close()

    def _check(self, method: str, rel: str, status_: int) -> None:
        if 200 <= status_ < 300:
            return
        permanent = status_ not in RETRY_STATUS
        hint = {401: " (credentials?)", 403: " (not allowed to write there)", 409: " (a parent collection is "
                "missing: does [upload] url exist on the server?)", 413: " (file too large for the server)",
                507: " (server full)"}.get(status_, "")
        raise UploadFailed(f"{method} {rel}: HTTP {status_}{hint}", permanent=permanent and status_ != 507)

    def _ensure_collections(self, rel: str) -> None:
        if "" not in self.collections and self.target.base:
            # the URL's own collection, made where the server lets us (a 403/405/409 here means it exists
            # or cannot be made by us: a missing one shows as 409 on the next level, with a hint)
            st, _, _ = self._request("MKCOL", self.target.base + "/")
            if st not in (201, 405, 301, 403, 409):
                self._check("MKCOL", self.target.base + "/", st)
            self.collections.add("")
        parts = rel.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            col = "/".join(parts[:i])
            if col in self.collections:
                continue
            st, _, _ = self._request("MKCOL", self.target.path(col) + "/")
            # 201 made; 405 it exists (RFC 4918); 301 some servers redirect to the trailing slash
            if st not in (201, 405, 301):
                self._check("MKCOL", col + "/", st)
            self.collections.add(col)

    def _server_has(self, rel: str, path: Path, digest: str) -> bool:
        st, _, headers = self._request("HEAD", self.target.path(rel))
        if st == 404:
            return False
        if st != 200 or headers.get("content-length") != str(path.stat().st_size):
            return False
        st, data, _ = self._request("GET", self.target.path(rel))
        return st == 200 and data is not None and hashlib.sha256(data).hexdigest() == digest

    def _put(self, rel: str, path: Path) -> str:
        size = path.stat().st_size
        with open(path, "rb") as f:
            st, _, _ = self._request("PUT", self.target.path(rel), body=f, size=size,
                                     headers={"Content-Type": "application/octet-stream"})
        self._check("PUT", rel, st)
        self._count("files_sent")
        self._count("bytes_sent", size)
        return "sent"
