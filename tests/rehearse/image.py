"""The kiosk image: a debootstrap of this machine's Debian release with systemd and a kernel, and the
payload a kiosk receives (wheels built here, the deploy files, replay frames, a small model).

The base image is built once per recipe (release, packages, setup) and cached under
.rehearse/cache/base-<hash>/: an ext4 file made with `mke2fs -d` (no mounting, no loop devices), and
the kernel and initramfs installed in it, which qemu boots directly.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers import ROOT

MIRROR = os.environ.get("REHEARSE_MIRROR", "http://deb.debian.org/debian")
# What the kiosk has beyond minbase: systemd, a kernel, Python, the guest agent the rehearsal drives
# it through, and the libraries opencv-python's wheel links against. Nothing else runs in it.
PACKAGES = ["systemd", "systemd-sysv", "udev", "dbus", "linux-image-amd64", "python3", "python3-venv",
            "qemu-guest-agent", "kmod", "sqlite3", "libgl1", "libglib2.0-0", "e2fsprogs", "procps"]
SETUP = """
echo kiosk > etc/hostname
mkdir -p var/log/journal media/payload
printf '/dev/vda / ext4 defaults,errors=remount-ro 0 1\\n/dev/vdb /media/payload ext4 ro,nofail 0 0\\n' > etc/fstab
printf '127.0.0.1 localhost kiosk\\n' > etc/hosts
chroot . passwd -d root >/dev/null
for unit in apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer systemd-timesyncd.service; do
    ln -sf /dev/null etc/systemd/system/$unit
done
mkdir -p etc/systemd/system/serial-getty@ttyS0.service.d
printf '[Service]\\nExecStart=\\nExecStart=-/sbin/agetty --autologin root --noclear %%I 115200 linux\\n' \\
    > etc/systemd/system/serial-getty@ttyS0.service.d/autologin.conf
"""
IMAGE_SIZE = "3G"


def release() -> str:
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("VERSION_CODENAME="):
            return line.split("=", 1)[1].strip('"')
    raise SystemExit("rehearse: cannot tell this machine's Debian release from /etc/os-release")


def recipe() -> dict:
    return {"release": release(), "mirror": MIRROR, "packages": PACKAGES, "setup": SETUP, "size": IMAGE_SIZE}


def say(msg: str) -> None:
    print(f"rehearse: {msg}", file=sys.stderr, flush=True)


def base_image(cache: Path) -> tuple[Path, dict]:
    """(folder with rootfs.img, vmlinuz, initrd.img; facts): built only when the recipe changed."""
    r = recipe()
    key = hashlib.sha256(json.dumps(r, sort_keys=True).encode()).hexdigest()[:12]
    out = cache / f"base-{key}"
    if (out / "done").exists():
        return out, {"cached": True, "seconds": 0.0, "recipe": key}
    t0 = time.monotonic()
    shutil.rmtree(out, ignore_errors=True)
    work = cache / f"build-{key}"
    shutil.rmtree(work, ignore_errors=True)
    root = work / "root"
    work.mkdir(parents=True)
    say(f"building the kiosk image ({r['release']}, {len(PACKAGES)} packages) with debootstrap...")
    subprocess.run(["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", r["release"], str(root),
                    MIRROR], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["sh", "-euc", SETUP], cwd=root, check=True)
    shutil.rmtree(root / "var/cache/apt/archives", ignore_errors=True)
    (root / "var/cache/apt/archives/partial").mkdir(parents=True)
    out.mkdir(parents=True)
    kernel = sorted((root / "boot").glob("vmlinuz-*"))[-1]
    shutil.copy(kernel, out / "vmlinuz")
    shutil.copy(root / "boot" / kernel.name.replace("vmlinuz", "initrd.img"), out / "initrd.img")
    make_ext4(root, out / "rootfs.img", IMAGE_SIZE, "kiosk")
    shutil.rmtree(work)
    (out / "done").write_text(json.dumps(r))
    return out, {"cached": False, "seconds": round(time.monotonic() - t0, 1), "recipe": key}


def make_ext4(src: Path, img: Path, size: str, label: str) -> None:
    img.unlink(missing_ok=True)
    subprocess.run(["truncate", "-s", size, str(img)], check=True)
    subprocess.run(["mke2fs", "-q", "-F", "-t", "ext4", "-L", label, "-d", str(src), str(img)], check=True)


# -- the payload: what a kiosk gets ------------------------------------------------------------------------

def wheels(cache: Path, py: str) -> Path:
    """phonescope and every dependency as wheels for the guest's Python (the same Debian release as here)."""
    deps = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()[:12]
    out = cache / f"wheels-{deps}"
    if not (out / "done").exists():
        say("building wheels of phonescope's dependencies for the kiosk...")
        shutil.rmtree(out, ignore_errors=True)
        subprocess.run([py, "-m", "pip", "wheel", "-q", "-w", str(out), str(ROOT)], check=True)
        for w in out.glob("phonescope-*.whl"):
            w.unlink()
        (out / "done").write_text("")
    return out


def build_phonescope(py: str, dest: Path, version_suffix: str = "") -> Path:
    """This tree's phonescope as a wheel; version_suffix makes the 'newer build' of the upgrade scenario."""
    src = dest / "src"
    shutil.rmtree(src, ignore_errors=True)
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".git", ".venv", ".rehearse", "var", "runs", "*.egg-info",
                                                             "__pycache__", ".bench", ".pytest_cache", "build"))
    if version_suffix:
        pp = src / "pyproject.toml"
        text = pp.read_text()
        version = next(ln for ln in text.splitlines() if ln.startswith("version = "))
        pp.write_text(text.replace(version, version[:-1] + version_suffix + '"', 1))
    subprocess.run([py, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dest), str(src)], check=True,
                   stdout=subprocess.DEVNULL)
    shutil.rmtree(src)
    return next(dest.glob("phonescope-*.whl"))
