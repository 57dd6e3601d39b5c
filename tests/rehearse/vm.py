"""One kiosk VM under qemu: boot, hard power cut, QMP (screen, keyboard) and the guest agent (commands).

The disk is a qcow2 overlay on the cached base image, so every rehearsal starts from the same fresh
image and a power cut (qemu killed with SIGKILL) loses exactly what the guest had not written out.
"""
from __future__ import annotations

import base64
import json
import os
import random
import shlex
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class GuestError(RuntimeError):
    pass


def kvm_works(kernel: Path, work: Path, seconds: float = 10.0) -> bool:
    """/dev/kvm may open while a KVM guest hangs right after the kernel decompressor: boot the kernel
    for a few seconds and see whether it prints its banner."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False
    log = work / "kvm-probe.log"
    log.unlink(missing_ok=True)
    p = subprocess.Popen(["qemu-system-x86_64", "-accel", "kvm", "-m", "256", "-display", "none", "-monitor", "none",
                          "-no-reboot", "-kernel", str(kernel), "-append", "console=ttyS0 panic=-1",
                          "-serial", f"file:{log}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        end = time.monotonic() + seconds
        while time.monotonic() < end and p.poll() is None:
            if log.exists() and b"Linux version" in log.read_bytes():
                return True
            time.sleep(0.3)
        return False
    finally:
        p.kill()
        p.wait()


class Channel:
    """A JSON line protocol over a Unix socket (QMP and the guest agent speak it)."""

    def __init__(self, path: Path, timeout: float):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(path))
        self.buf = b""

    def send(self, obj: dict) -> None:
        self.sock.sendall(json.dumps(obj).encode() + b"\n")

    def recv(self) -> dict:
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise GuestError("the channel closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        line = line.strip(b"\xff").strip()   # the agent's sync delimiter
        return json.loads(line) if line else self.recv()

    def close(self) -> None:
        self.sock.close()


@dataclass
class Result:
    rc: int
    out: str
    err: str

    def check(self, what: str) -> str:
        if self.rc != 0:
            raise GuestError(f"{what}: exit {self.rc}: {(self.err or self.out).strip()[-800:]}")
        return self.out


class VM:
    def __init__(self, base: Path, work: Path, payload: Path, kvm: bool, memory_mb: int = 2048, cpus: int = 2):
        self.base, self.work, self.payload, self.kvm = base, work, payload, kvm
        self.memory_mb, self.cpus = memory_mb, cpus
        self.disk = work / "kiosk.qcow2"
        self.proc: subprocess.Popen | None = None
        self.qmp: Channel | None = None
        self.boots = 0
        self.agent_lock = threading.Lock()   # the agent's channel serves one connection at a time
        self.finished: dict[int, Result] = {}   # the agent forgets a process once it reported its exit

    def fresh_disk(self) -> None:
        self.disk.unlink(missing_ok=True)
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(self.base / "rootfs.img"), "-F", "raw",
                        str(self.disk)], check=True)

    # -- power ------------------------------------------------------------------------------------------------
    def start(self, boot_timeout: float = 300.0) -> float:
        """Power on; returns seconds until the guest agent answers (systemd reached its units)."""
        for name in ("qmp.sock", "qga.sock"):
            (self.work / name).unlink(missing_ok=True)
        self.boots += 1
        self.finished.clear()   # pids of a new boot are new processes
        accel = "kvm" if self.kvm else "tcg,thread=multi"
        args = ["qemu-system-x86_64", "-accel", accel, "-m", str(self.memory_mb), "-smp", str(self.cpus),
                "-kernel", str(self.base / "vmlinuz"), "-initrd", str(self.base / "initrd.img"),
                "-append", "root=/dev/vda rw console=ttyS0 quiet systemd.show_status=0 net.ifnames=0",
                "-drive", f"file={self.disk},if=virtio,format=qcow2,cache=writeback",
                "-drive", f"file={self.payload},if=virtio,format=raw,readonly=on",
                "-nic", "none", "-vga", "std", "-display", "none", "-device", "qemu-xhci,id=xhci",
                "-serial", f"file:{self.work / f'serial-{self.boots}.log'}",
                "-qmp", f"unix:{self.work / 'qmp.sock'},server=on,wait=off",
                "-device", "virtio-serial",
                "-chardev", f"socket,path={self.work / 'qga.sock'},server=on,wait=off,id=qga0",
                "-device", "virtserialport,chardev=qga0,name=org.qemu.guest_agent.0"]
        if not self.kvm:
            args[3:3] = ["-cpu", "max"]
        t0 = time.monotonic()
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=open(self.work / "qemu.err", "ab"))
        self._wait_path(self.work / "qmp.sock", 30)
        self.qmp = Channel(self.work / "qmp.sock", 30)
        self.qmp.recv()                                   # greeting
        self.qmp_cmd("qmp_capabilities")
        end = time.monotonic() + boot_timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise GuestError(f"qemu exited ({self.proc.returncode}) while booting: see {self.work}/qemu.err")
            try:
                self.agent("guest-ping", timeout=3)
                return round(time.monotonic() - t0, 1)
            except (OSError, GuestError, ValueError):
                time.sleep(1)
        raise GuestError(f"the guest did not come up within {boot_timeout:.0f} s: "
                         f"see {self.work}/serial-{self.boots}.log")

    def power_cut(self) -> None:
        """Pull the plug: qemu is killed, the guest gets no shutdown and loses what it had not written out."""
        if self.qmp:
            self.qmp.close()
            self.qmp = None
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def boot_id(self) -> str:
        return self.sh("cat /proc/sys/kernel/random/boot_id", timeout=10).check("boot_id").strip()

    def reboot(self, timeout: float = 300.0) -> float:
        """A clean reboot from inside (systemctl reboot); seconds until the agent of the new boot answers."""
        before = self.boot_id()
        t0 = time.monotonic()
        self.sh("systemctl reboot >/dev/null 2>&1 &", timeout=30)
        while time.monotonic() - t0 < timeout:
            try:
                if self.boot_id() != before:
                    self.finished.clear()
                    return round(time.monotonic() - t0, 1)
            except (OSError, GuestError, ValueError):
                pass
            time.sleep(2)
        raise GuestError("the guest did not come back from the reboot")

    def stop(self) -> None:
        self.power_cut()

    # -- QMP: screen and keyboard -----------------------------------------------------------------------------
    def qmp_cmd(self, cmd: str, **args) -> dict:
        assert self.qmp is not None
        self.qmp.send({"execute": cmd, **({"arguments": args} if args else {})})
        while True:
            r = self.qmp.recv()
            if "return" in r:
                return r["return"]
            if "error" in r:
                raise GuestError(f"QMP {cmd}: {r['error']}")

    def screen(self) -> np.ndarray:
        """The virtual display as RGB (QMP screendump, PPM)."""
        import cv2

        path = self.work / "screen.ppm"
        path.unlink(missing_ok=True)
        self.qmp_cmd("screendump", filename=str(path))
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            raise GuestError("screendump wrote no picture")
        return img[..., ::-1]

    def press(self, qcode: str) -> None:
        self.qmp_cmd("send-key", keys=[{"type": "qcode", "data": qcode}])

    # -- USB: a stick plugged in and pulled out -------------------------------------------------------------
    def plug_stick(self, image: Path) -> None:
        """A USB mass-storage stick backed by a raw image file, hot-plugged into the xHCI controller (a
        drive_add drive: it goes with the device when that is unplugged)."""
        self.qmp_cmd("human-monitor-command",
                     **{"command-line": f"drive_add 0 if=none,id=stick0,format=raw,file={image}"})
        self.qmp_cmd("device_add", driver="usb-storage", id="stick", drive="stick0", bus="xhci.0")

    def pull_stick(self) -> None:
        """Pulled out with no warning to the guest (what a technician does once the screen says so)."""
        self.qmp_cmd("device_del", id="stick")
        end = time.monotonic() + 30
        while time.monotonic() < end and any(c["name"] == "stick" for c in
                                             self.qmp_cmd("qom-list", path="/machine/peripheral")):
            time.sleep(0.5)

    # -- the guest agent: commands and files ------------------------------------------------------------------
    def agent(self, cmd: str, timeout: float = 60, **args) -> dict:
        """One agent command. A guest whose CPUs the daemon keeps busy (TCG) may answer late: one retry on a
        fresh connection (guest-sync-delimited skips a stale answer), unless the command was already sent
        and running it twice would not be the same (guest-exec: a second `mv` fails, a second capture is
        one more capture)."""
        with self.agent_lock:
            sent = [False]
            try:
                return self._agent(cmd, timeout, args, sent)
            except TimeoutError:
                if cmd == "guest-ping" or (sent[0] and cmd == "guest-exec"):
                    raise GuestError(f"guest agent {cmd}: no answer within {timeout:.0f} s") from None
                return self._agent(cmd, timeout, args, [False])

    def _agent(self, cmd: str, timeout: float, args: dict, sent: list) -> dict:
        ch = Channel(self.work / "qga.sock", timeout)
        try:
            token = random.randrange(1, 2 ** 31)
            ch.sock.sendall(b"\xff")
            ch.send({"execute": "guest-sync-delimited", "arguments": {"id": token}})
            while ch.recv().get("return") != token:
                pass
            ch.send({"execute": cmd, **({"arguments": args} if args else {})})
            sent[0] = True
            r = ch.recv()
        finally:
            ch.close()
        if "error" in r:
            raise GuestError(f"guest agent {cmd}: {r['error'].get('desc', r['error'])}")
        return r.get("return", {})

    def spawn(self, command: str) -> int:
        """Start a shell command in the guest; its pid for wait()."""
        return self.agent("guest-exec", path="/bin/sh", arg=["-c", command], **{"capture-output": True})["pid"]

    def poll(self, pid: int) -> Result | None:
        """The command's result once it exited, else None; asked again, the same result (qemu-guest-agent
        answers "Invalid parameter 'pid'" for a process whose exit it already reported)."""
        if pid in self.finished:
            return self.finished[pid]
        st = self.agent("guest-exec-status", pid=pid)
        if not st.get("exited"):
            return None

        def text(key: str) -> str:
            return base64.b64decode(st.get(key, "")).decode(errors="replace")

        r = self.finished[pid] = Result(st.get("exitcode", -st.get("signal", 1)), text("out-data"), text("err-data"))
        return r

    def sh(self, command: str, timeout: float = 120) -> Result:
        """Run a shell command in the guest as root and wait for it."""
        pid = self.spawn(command)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            r = self.poll(pid)
            if r is not None:
                return r
            time.sleep(0.3)
        raise GuestError(f"guest command timed out after {timeout:.0f} s: {command[:120]}")

    def as_user(self, user: str, command: str, timeout: float = 120) -> Result:
        return self.sh(f"runuser -u {user} -- sh -c {shlex.quote(command)}", timeout)

    @staticmethod
    def _wait_path(path: Path, timeout: float) -> None:
        end = time.monotonic() + timeout
        while not path.exists():
            if time.monotonic() > end:
                raise GuestError(f"{path} did not appear")
            time.sleep(0.05)
