"""The systemd drop-ins made from the config: the service may reach the [upload] host and nothing else,
and write to the [export] auto_dir folder (the USB stick's mount point).

phonescope.service denies all IP traffic (IPAddressDeny=any, AF_UNIX only)
and makes the file system read-only (ProtectSystem=strict). deploy/install.sh
runs `python -m edge.upload_unit dropin CONFIG`, which resolves the upload
host now and writes upload.conf with IPAddressAllow= for its addresses and the
name servers that resolve it at run time, and for auto_dir export.conf with
ReadWritePaths= and a udev rule that mounts a USB stick there; each is removed
when its key is not set.
"""
from __future__ import annotations

import socket
from pathlib import Path

from edge.upload import UploadConfigError, target

DROPIN = "/etc/systemd/system/phonescope.service.d/upload.conf"
USB_RULE = "/etc/udev/rules.d/99-phonescope-usb.rules"


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


def export_dropin(cfg: dict) -> str | None:
    """ReadWritePaths= for [export] auto_dir ("-": the folder may not exist yet), or None without it."""
    folder = cfg["export"]["auto_dir"]
    if not folder:
        return None
    return ("# Made by deploy/install.sh from [export] auto_dir: the service may write to the USB stick\n"
            "# mounted there (phonescope.service has ProtectSystem=strict). Rerun install.sh after changing it.\n"
            f"[Service]\nReadWritePaths=-{folder}\n")


def usb_rule(cfg: dict) -> str | None:
    """The udev rule mounting a USB stick (FAT, exFAT) at [export] auto_dir, writable by the service; a
    stick pulled out is unmounted by systemd (its mount unit goes with the device). None without it."""
    folder = cfg["export"]["auto_dir"]
    if not folder:
        return None
    return ("# Made by deploy/install.sh from [export] auto_dir: a USB stick is mounted at the folder for the\n"
            "# service to copy captures to. Rerun install.sh after changing it.\n"
            'ACTION=="add", SUBSYSTEMS=="usb", SUBSYSTEM=="block", ENV{ID_FS_USAGE}=="filesystem", '
            'ENV{ID_FS_TYPE}=="vfat|exfat", RUN+="/usr/bin/systemd-mount --no-block --collect '
            f'--options=uid=phonescope,gid=phonescope,umask=0027,flush $devnode {folder}"\n')


def write(out: Path, text: str | None, why_not: str) -> None:
    if text is None:
        if out.exists():
            out.unlink()
            print(f"removed {out}: {why_not}")
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"wrote {out}")


def main(argv: list[str] | None = None) -> int:
    """python -m edge.upload_unit dropin CONFIG [OUT [USB_RULE]]: write (or, without their keys, remove) the
    drop-ins, OUT (upload.conf) and export.conf beside it, and the USB stick's udev rule."""
    import sys

    from edge import config

    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (2, 3, 4) or args[0] != "dropin":
        print("usage: python -m edge.upload_unit dropin CONFIG [OUT [USB_RULE]]", file=sys.stderr)
        return 2
    out = Path(args[2] if len(args) >= 3 else DROPIN)
    rule = Path(args[3] if len(args) == 4 else USB_RULE)
    try:
        cfg = config.load(args[1])
        upload, stick, mount = unit_dropin(cfg), export_dropin(cfg), usb_rule(cfg)
    except (UploadConfigError, config.ConfigError) as e:
        print(f"phonescope upload: {e}", file=sys.stderr)
        return 78
    write(out, upload, "no [upload] url")
    write(out.with_name("export.conf"), stick, "no [export] auto_dir")
    write(rule, mount, "no [export] auto_dir")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
