"""The systemd drop-in for uploads: the service may reach the [upload] host and nothing else.

phonescope.service denies all IP traffic (IPAddressDeny=any, AF_UNIX only).
deploy/install.sh runs `python -m edge.upload_unit dropin CONFIG`, which
resolves the upload host now and writes IPAddressAllow= for its addresses and
the name servers that resolve it at run time (or removes the drop-in when no
URL is set).
"""
from __future__ import annotations

import socket
from pathlib import Path

from edge.upload import UploadConfigError, target

DROPIN = "/etc/systemd/system/phonescope.service.d/upload.conf"


def name_servers(resolv_conf: str = "/etc/resolv.conf") -> list[str]:
    try:
        lines = Path(resolv_conf).read_text().splitlines()
    except OSError:
        return []
    return [ln.split()[1] for ln in lines if ln.startswith("nameserver") and len(ln.split()) > 1]


def unit_dropin(cfg: dict, resolv_conf: str = "/etc/resolv.conf") -> str | None:
    """The systemd drop-in that lets the service reach exactly the upload host (the unit denies all IP
    traffic), or None without [upload] url. The host's addresses are resolved now, with the name servers
    that resolve it at run time; rerun install.sh when the URL or the server's address changes."""
    if not cfg["upload"]["url"]:
        return None
    t = target(cfg["upload"])
    try:
        addrs = sorted({ai[4][0] for ai in socket.getaddrinfo(t.host, t.port, proto=socket.IPPROTO_TCP)})
    except socket.gaierror as e:
        raise UploadConfigError(f"[upload] url: cannot resolve {t.host} ({e.strerror}): the unit's allowance "
                                f"needs its address") from None
    allow = list(addrs)
    literal = all(a == t.host for a in addrs)
    if not literal:
        for ns in name_servers(resolv_conf):
            allow.append("localhost" if ns.startswith("127.") or ns == "::1" else ns)   # resolved's stub
    allow = list(dict.fromkeys(allow))
    lines = ["# Made by deploy/install.sh from [upload] url: the service may reach the upload host",
             f"# {t.url} ({', '.join(addrs)})" + ("" if literal else " and the name servers that resolve it"),
             "# and nothing else (phonescope.service has IPAddressDeny=any). Rerun install.sh after changing",
             "# the URL or when the server's address changes.",
             "[Service]",
             "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6"]
    lines += [f"IPAddressAllow={a}" for a in allow]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """python -m edge.upload_unit dropin CONFIG [OUT]: write (or, without [upload] url, remove) the drop-in."""
    import sys

    from edge import config

    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (2, 3) or args[0] != "dropin":
        print("usage: python -m edge.upload_unit dropin CONFIG [OUT]", file=sys.stderr)
        return 2
    out = Path(args[2] if len(args) == 3 else DROPIN)
    try:
        text = unit_dropin(config.load(args[1]))
    except (UploadConfigError, config.ConfigError) as e:
        print(f"phonescope upload: {e}", file=sys.stderr)
        return 78
    if text is None:
        if out.exists():
            out.unlink()
            print(f"removed {out}: no [upload] url")
        return 0
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
