"""Real servers on loopback for the upload tests: wsgidav (a WebDAV server from PyPI) in its own process,
a TCP proxy in front of it that answers 503, hangs, drops connections mid-transfer or vanishes, and a
self-signed CA made with `cryptography`.

`python -m tests.webdav --root DIR --log FILE [--tls CERT KEY] [--auth USER:PASS]` serves DIR at /dav and
appends one line per request to FILE ("METHOD PATH STATUS whole|short"), so a test counts what the server really stored.
"""
from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def make_ca(folder: Path) -> tuple[Path, Path, Path]:
    """(ca.pem, server cert.pem, server key.pem): a CA and a server certificate for localhost/127.0.0.1."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "phonescope test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
          .not_valid_after(now + dt.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DavServer:
    """wsgidav in a child process; stop() kills it (the server vanishing), start() brings it back."""

    def __init__(self, root: Path, log: Path, tls: tuple[Path, Path] | None = None, auth: str | None = None):
        self.root, self.log, self.tls, self.auth = root, log, tls, auth
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        root.mkdir(parents=True, exist_ok=True)

    def start(self) -> "DavServer":
        args = [sys.executable, "-m", "tests.webdav", "--root", str(self.root), "--log", str(self.log),
                "--port", str(self.port)]
        if self.tls:
            args += ["--tls", str(self.tls[0]), str(self.tls[1])]
        if self.auth:
            args += ["--auth", self.auth]
        self.proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return self
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"webdav server exited: {self.proc.stderr.read()}")
                time.sleep(0.05)
        raise RuntimeError("webdav server did not start")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def requests(self) -> list[tuple[str, str, int]]:
        if not self.log.exists():
            return []
        out = []
        for line in self.log.read_text().splitlines():
            method, path, code, whole = line.rsplit(" ", 3)
            out.append((method, path, int(code), whole == "whole"))
        return out

    def puts(self) -> dict[str, int]:
        """{path: successful PUTs of the whole file}: what the server received, and how often."""
        counts: dict[str, int] = {}
        for method, path, code, whole in self.requests():
            if method == "PUT" and 200 <= code < 300 and whole:
                counts[path] = counts.get(path, 0) + 1
        return counts

    def short_puts(self) -> int:
        """PUTs whose body was cut (a dropped connection) that the server stored anyway."""
        return sum(1 for m, _, c, whole in self.requests() if m == "PUT" and 200 <= c < 300 and not whole)


def cut(s: socket.socket) -> None:
    """Shut a connection down from any thread (wakes a blocked recv) without freeing its fd number."""
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class FaultProxy:
    """TCP proxy to a local port. mode: "ok" | "503" | "hang" | "drop" (cut after drop_after bytes from the
    client) | "down" (nothing listens). Counts the faults it injected. tls: (cert, key): the proxy is the
    TLS endpoint (so its 503 is inside TLS) in front of a plain-HTTP server."""

    def __init__(self, upstream: int, tls: tuple[Path, Path] | None = None):
        self.upstream, self.port = upstream, free_port()
        self.ssl = None
        if tls:
            import ssl
            self.ssl = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.ssl.load_cert_chain(str(tls[0]), str(tls[1]))
        self.mode, self.drop_after = "ok", 20_000
        self.faults = {"503": 0, "hang": 0, "drop": 0, "refused": 0}
        self.lock = threading.Lock()
        self.listener: socket.socket | None = None
        self.closing = False
        self.open_socks: set[socket.socket] = set()
        self._listen()

    def _listen(self) -> None:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(64)
        self.listener = s
        self.acceptor = threading.Thread(target=self._accept, args=(s,), daemon=True)
        self.acceptor.start()

    def set(self, mode: str) -> None:
        with self.lock:
            was, self.mode = self.mode, mode
        if mode == "down" and was != "down":
            cut(self.listener)      # wakes accept(); the accepting thread closes it
            self.acceptor.join(5)
            self.faults["refused"] += 1
        elif was == "down" and mode != "down":
            self._listen()
        if mode != "hang":
            for s in list(self.open_socks):     # hung connections are cut when the fault ends
                cut(s)

    def close(self) -> None:
        self.closing = True
        self.set("down")

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                listener.close()
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        """Only this thread closes the connection's sockets: a socket closed under another thread's recv
        frees its fd number for the next open() in this process while OpenSSL still reads from it (a
        test's captured stdout pipe was read empty that way)."""
        mode, up, raw = self.mode, None, client
        self.open_socks.add(client)
        try:
            if self.ssl is not None:
                client.settimeout(10)
                client = self.ssl.wrap_socket(client, server_side=True)
                client.settimeout(None)
                self.open_socks.add(client)
            if mode == "503":
                client.recv(65536)
                self.faults["503"] += 1
                client.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                return
            if mode == "hang":
                self.faults["hang"] += 1
                while client.recv(65536):
                    pass
                return
            up = socket.create_connection(("127.0.0.1", self.upstream), 5)
            self.open_socks.add(up)
            budget = [self.drop_after if mode == "drop" else None]
            t = threading.Thread(target=self._pipe, args=(up, client, None), daemon=True)
            t.start()
            self._pipe(client, up, budget)
            t.join(30)
        except OSError:
            pass
        finally:
            self.open_socks.discard(raw)
            for s in (client, up):
                if s is not None:
                    self.open_socks.discard(s)
                    s.close()

    def _pipe(self, src: socket.socket, dst: socket.socket, budget) -> None:
        try:
            while data := src.recv(65536):
                if budget is not None and budget[0] is not None:
                    if len(data) >= budget[0]:
                        dst.sendall(data[:budget[0]])
                        self.faults["drop"] += 1
                        raise OSError("dropped")
                    budget[0] -= len(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:     # wakes the other direction; _serve closes both
            cut(src)
            cut(dst)


def main() -> None:
    from cheroot import wsgi
    from wsgidav.wsgidav_app import WsgiDAVApp

    p = argparse.ArgumentParser()
    p.add_argument("--root", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--tls", nargs=2)
    p.add_argument("--auth")
    a = p.parse_args()
    users = {"*": True}
    if a.auth:
        user, pw = a.auth.split(":", 1)
        users = {"*": {user: {"password": pw}}}
    app = WsgiDAVApp({"host": "127.0.0.1", "port": a.port, "provider_mapping": {"/dav": a.root},
                      "simple_dc": {"user_mapping": users}, "verbose": 0, "logging": {"enable": False},
                      "http_authenticator": {"accept_basic": True, "accept_digest": False,
                                             "default_to_digest": False, "trusted_auth_header": None},
                      "dir_browser": {"enable": False}})
    log = open(a.log, "a", buffering=1)

    class Counted:
        """wsgi.input, counting what the client really sent (cheroot hands a body cut short by a dropped
        connection to the app as if it ended there, and wsgidav stores what it got)."""

        def __init__(self, f):
            self.f, self.n = f, 0

        def read(self, *a):
            b = self.f.read(*a)
            self.n += len(b)
            return b

        def readline(self, *a):
            b = self.f.readline(*a)
            self.n += len(b)
            return b

        def __getattr__(self, name):
            return getattr(self.f, name)

    def logged(environ, start_response):
        body = environ["wsgi.input"] = Counted(environ["wsgi.input"])

        def start(status, headers, exc_info=None):
            whole = body.n == int(environ.get("CONTENT_LENGTH") or 0)
            log.write(f"{environ['REQUEST_METHOD']} {environ.get('PATH_INFO', '')} {status.split()[0]}"
                      f" {'whole' if whole else 'short'}\n")
            return start_response(status, headers, exc_info)
        return app(environ, start)

    server = wsgi.Server(("127.0.0.1", a.port), logged, numthreads=8)
    if a.tls:
        from cheroot.ssl.builtin import BuiltinSSLAdapter
        server.ssl_adapter = BuiltinSSLAdapter(a.tls[0], a.tls[1])
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    server.start()


if __name__ == "__main__":
    main()
