"""Client side of the daemon's control socket: `phonescope capture` and `status`."""
from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from edge.errors import UserError


def default_state_dir() -> Path:
    from edge import config
    return config.state_dir(config.load())


def request(state_dir: str | os.PathLike | None, msg: dict, timeout: float = 180.0) -> dict:
    state = Path(state_dir) if state_dir else default_state_dir()
    path = state / "control.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(str(path))
    except FileNotFoundError:
        raise UserError(f"no phonescope daemon running on {state} (no {path.name})") from None
    except ConnectionRefusedError:
        raise UserError(f"no phonescope daemon running on {state} (stale {path.name})") from None
    except PermissionError:
        raise UserError(f"permission denied on {path}: run as the phonescope user or group") from None
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
    reply = request(args.state_dir, {"cmd": "capture", "sample_id": args.sample_id})
    if not reply.get("ok"):
        raise UserError(f"capture refused: {reply.get('error')}")
    print(reply["path"])
    return 0


def cmd_status(args) -> int:
    reply = request(args.state_dir, {"cmd": "status"}, timeout=10)
    print(json.dumps(reply.get("status", reply), indent=2))
    return 0 if reply.get("ok") else 1
