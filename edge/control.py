"""The control socket's protocol, and its client side: `phonescope capture` and `status`.

One JSON object per line each way. Requests are validated by the same
schema on both sides: the client builds them with make_request(), the
daemon (edge.control_server) parses them with parse_request().
"""
from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from edge import config
from edge.errors import UserError

SOCKET_NAME = "control.sock"
REQUEST_MAX = 4096                                          # bytes in a request line
COMMANDS = {"status": {"cmd"}, "capture": {"cmd", "sample_id"}}   # command -> the keys it may carry


class BadRequest(ValueError):
    """A request line the daemon refuses; the message is the reply's error."""


def make_request(cmd: str, **args) -> dict:
    msg = {"cmd": cmd, **args}
    check_request(msg)
    return msg


def parse_request(line: bytes) -> dict:
    """One request line -> the request; BadRequest saying what is wrong with it."""
    if len(line) > REQUEST_MAX:
        raise BadRequest(f"bad request: longer than {REQUEST_MAX} bytes")
    try:
        msg = json.loads(line or b"{}")
    except ValueError:
        raise BadRequest("bad request: not JSON") from None
    check_request(msg)
    return msg


def check_request(msg) -> None:
    if not isinstance(msg, dict):
        raise BadRequest("bad request: not a JSON object")
    cmd = msg.get("cmd")
    if not isinstance(cmd, str) or cmd not in COMMANDS:
        raise BadRequest(f"unknown command {str(cmd)[:40]!r}")
    extra = set(msg) - COMMANDS[cmd]
    if extra:
        raise BadRequest(f"bad request: unknown key(s) {', '.join(sorted(map(str, extra)))[:80]}")


RUN_DIR = Path("/run/phonescope")                          # the unit's RuntimeDirectory=phonescope


def socket_path(state_dir: str | os.PathLike) -> Path:
    """Where the daemon binds: systemd's $RUNTIME_DIRECTORY (/run/phonescope, which operators in the
    phonescope group can reach) under the service, else its state folder (`make run`)."""
    run_dir = os.environ.get("RUNTIME_DIRECTORY")
    return (Path(run_dir.split(":")[0]) if run_dir else Path(state_dir)) / SOCKET_NAME


def client_socket(state_dir: str | os.PathLike | None) -> tuple[Path, str]:
    """(socket, where it was looked for) for a client: --state-dir if given; else, on an installed
    kiosk (or wherever the service runs), the service's /run/phonescope; else the demo's state folder."""
    if state_dir:
        return Path(state_dir) / SOCKET_NAME, str(state_dir)
    # os.path.exists: False, not PermissionError, where /run/phonescope (0750) is closed to this user
    if os.path.exists(RUN_DIR / SOCKET_NAME) or config.installed():
        return RUN_DIR / SOCKET_NAME, "this kiosk's service"
    state = config.state_dir(config.load())
    return state / SOCKET_NAME, str(state)


def request(state_dir: str | os.PathLike | None, msg: dict, timeout: float = 180.0) -> dict:
    path, state = client_socket(state_dir)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(str(path))
    except FileNotFoundError:
        hint = " -> systemctl status phonescope" if path.parent == RUN_DIR else ""
        raise UserError(f"no phonescope daemon running ({state}: no {path}){hint}") from None
    except ConnectionRefusedError:
        raise UserError(f"no phonescope daemon running ({state}: stale {path})") from None
    except PermissionError:
        raise UserError(f"permission denied on {path}: only root and the phonescope group may ask the daemon "
                        f"(sudo usermod -aG phonescope $USER, then log in again)") from None
    try:
        try:
            s.sendall(json.dumps(msg).encode() + b"\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before it read the request (permission denied, busy): its answer is waiting
        line = s.makefile("rb").readline()
    except socket.timeout:
        raise UserError(f"the daemon did not answer within {timeout:.0f} s") from None
    except OSError as e:
        raise UserError(f"lost the connection to the daemon ({e.strerror or e})") from None
    finally:
        s.close()
    if not line:
        raise UserError("the daemon closed the connection without an answer")
    return json.loads(line)


def cmd_capture(args) -> int:
    reply = request(args.state_dir, make_request("capture", sample_id=args.sample_id))
    if not reply.get("ok"):
        raise UserError(f"capture refused: {reply.get('error')}")
    print(reply["path"])
    return 0


def cmd_status(args) -> int:
    reply = request(args.state_dir, make_request("status"), timeout=10)
    print(json.dumps(reply.get("status", reply), indent=2))
    return 0 if reply.get("ok") else 1
