"""The rehearsal's scenarios: each asserts what a kiosk must do and returns its figures.

They run in order on one VM (install first); each leaves the service running for the next.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from tests.rehearse.vm import VM, GuestError

PAYLOAD = "/media/payload"
STATE = "/var/lib/phonescope"
REPLAY = "/srv/phonescope/replay"
STICK = "/media/phonescope-usb"     # [export] auto_dir in the usb_export scenario
START_S = 600          # the unit's TimeoutStartSec: the longest a start may take


def prop(vm: VM, name: str) -> str:
    return vm.sh(f"systemctl show -p {name} --value phonescope", timeout=30).check(name).strip()


def wait_active(vm: VM, timeout: float = START_S) -> float:
    """Seconds until the service is active: with Type=notify that is after READY=1."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        state = prop(vm, "ActiveState")
        if state == "active":
            return round(time.monotonic() - t0, 1)
        time.sleep(2)
    raise AssertionError(f"phonescope not active within {timeout:.0f} s (ActiveState={state}): "
                         + vm.sh("journalctl -b -u phonescope -n 15 --no-pager -o cat").out[-1500:])


def ensure_running(vm: VM) -> None:
    """Each scenario starts from a running service, whatever the one before it left."""
    if prop(vm, "ActiveState") != "active":
        vm.sh("systemctl reset-failed phonescope; systemctl start phonescope", timeout=START_S)
    wait_active(vm)


def status(vm: VM, user: str = "root") -> dict:
    return json.loads(vm.as_user(user, "phonescope status", timeout=120).check("phonescope status"))


def wait_for(pred, timeout: float, what: str, every: float = 2.0):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        value = pred()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"{what}: not within {timeout:.0f} s")


def check_captures(vm: VM, acked: list[str]) -> dict:
    r = vm.sh(f"python3 {PAYLOAD}/guest_check.py {STATE} " + " ".join(acked), timeout=300)
    return json.loads(r.check("guest_check"))


def journal_has(vm: VM, pattern: str) -> list[str]:
    out = vm.sh("journalctl -b --no-pager -o cat", timeout=120).out
    return [ln for ln in out.splitlines() if re.search(pattern, ln)]


# -- scenarios ---------------------------------------------------------------------------------------------

def install(vm: VM, ctx: dict) -> dict:
    vm.sh(f"mountpoint -q {PAYLOAD} || mount {PAYLOAD}").check("the payload disk (fstab)")
    vm.sh(f"mkdir -p /srv/phonescope && cp -r {PAYLOAD}/replay {REPLAY} && install -d -m 0755 /etc/phonescope && "
          f"cp {PAYLOAD}/phonescope.toml /etc/phonescope/ && cp {PAYLOAD}/model-1/rehearsal.onnx "
          f"{PAYLOAD}/model-1/rehearsal.json /etc/phonescope/").check("the kiosk's config")
    t0 = time.monotonic()
    vm.sh(f"bash {PAYLOAD}/src/deploy/install.sh --wheels {PAYLOAD}/wheels", timeout=3600).check("install.sh")
    install_s = round(time.monotonic() - t0, 1)
    ready_s = wait_active(vm)
    text = prop(vm, "StatusText")
    assert prop(vm, "UnitFileState") == "enabled"
    v = vm.sh("systemd-analyze verify /etc/systemd/system/phonescope.service 2>&1")
    assert v.rc == 0 and not v.out.strip(), f"systemd-analyze verify: {v.out}"
    sec = vm.sh("systemd-analyze security phonescope.service --no-pager 2>&1").check("systemd-analyze security")
    exposure = float(re.search(r"Overall exposure level for phonescope.service:\s*([\d.]+)", sec).group(1))
    unit_warnings = journal_has(vm, r"phonescope\.service:\d+:")
    assert not unit_warnings, f"systemd warns about the unit: {unit_warnings}"
    entries = [json.loads(ln) for ln in vm.sh("journalctl -u phonescope -o json --no-pager -n 200").out.splitlines()
               if ln.startswith("{")]
    ours = [e for e in entries if e.get("LOGGER") == "phonescope"]
    assert ours and all(k in ours[0] for k in ("CODE_FILE", "CODE_FUNC", "PRIORITY", "THREAD_NAME")), \
        "log records reach journald with their fields"
    assert any("ready" in e.get("MESSAGE", "") for e in ours), "the daemon logged its READY"
    return {"install_s": install_s, "active_after_install_s": ready_s, "status_text": text,
            "security_exposure": exposure, "journal_fields": sorted(k for k in ours[0] if not k.startswith("_"))}


def capture_cli(vm: VM, ctx: dict) -> dict:
    vm.sh("id technician || useradd -m -G phonescope technician; id visitor || useradd -m visitor").check("users")
    t0 = time.monotonic()
    path = vm.as_user("technician", "cd ~ && phonescope capture --sample-id cli-1").check("technician capture").strip()
    capture_s = round(time.monotonic() - t0, 1)
    assert path.startswith(f"{STATE}/captures/"), path
    vm.as_user("technician", f"test -r {path}").check("the technician can read the capture")
    st = status(vm, "technician")
    assert st["state"] == "running" and st["captures"] >= 1, st
    refused = vm.as_user("visitor", "cd ~ && phonescope status")
    assert refused.rc != 0 and "permission denied" in refused.err, refused
    refused_capture = vm.as_user("visitor", "cd ~ && phonescope capture")
    assert refused_capture.rc != 0 and "permission denied" in refused_capture.err
    ctx.setdefault("acked", []).append(path)
    timings = json.loads(vm.sh(f"cat {path.rsplit('.', 1)[0]}.json").check("sidecar")).get("timings", {})
    # emulated, the capture's one network call outlasts the usual stall limit: it must not be taken for a hang
    stalls = journal_has(vm, r"inference stalled")
    assert not stalls, stalls
    return {"capture_s": capture_s, "path": path, "outsider": refused.err.strip()[:200],
            "inference_s": timings.get("inference_s"), "preview_fps": st.get("fps")}


def _screen_matches(screen: np.ndarray, frames: list[np.ndarray]) -> tuple[float, bool]:
    """Best normalised correlation between the picture area of the kiosk screen (edge.overlay's layout at
    the screen's size) and a replay frame, and whether the bottom strip holds the notice and status line."""
    from edge.overlay import layout

    areas = layout(screen.shape[1], screen.shape[0])
    x, y, w, h = areas["picture"]
    pic = screen[y:y + h, x:x + w]
    lit = np.argwhere(pic.max(axis=2) > 16)
    if len(lit) == 0:
        return 0.0, False
    (y0, x0), (y1, x1) = lit.min(0), lit.max(0) + 1
    a = cv2.resize(pic[y0:y1, x0:x1], (64, 48), interpolation=cv2.INTER_AREA).astype(np.float32).ravel()
    best = 0.0
    for f in frames:
        b = cv2.resize(f, (64, 48), interpolation=cv2.INTER_AREA).astype(np.float32).ravel()
        a0, b0 = a - a.mean(), b - b.mean()
        best = max(best, float(a0 @ b0 / (np.linalg.norm(a0) * np.linalg.norm(b0) + 1e-6)))
    sx, sy, sw, sh = areas["strip"]
    strip = screen[sy:sy + sh, sx:sx + sw]
    return best, bool((strip.max(axis=2) > 150).mean() > 0.005)


def hdmi_preview(vm: VM, ctx: dict) -> dict:
    st = status(vm)
    assert st["preview"]["sink"] == "kms", f"the preview is on {st['preview']}, not the HDMI screen"
    shown0 = st["preview"]["shown"]
    first = vm.screen()
    time.sleep(4)
    second = vm.screen()
    ncc, bar = _screen_matches(second, ctx["frames"])
    assert ncc > 0.8, f"the screen does not show a replay frame (best correlation {ncc:.2f})"
    assert bar, "no notice and status line along the bottom of the screen"
    changed = float(np.abs(first.astype(np.int16) - second).mean())
    st = status(vm)
    assert st["preview"]["shown"] > shown0, "the preview is live"
    before = st["captures"]
    vm.press("spc")
    st = wait_for(lambda: (s := status(vm))["captures"] > before and s, 120, "a capture from the keyboard")
    path = st["last_capture"]["path"]
    meta = json.loads(vm.sh(f"cat {path.rsplit('.', 1)[0]}.json").check("sidecar"))
    assert meta["origin"] == "key", meta["origin"]
    ctx["acked"].append(path)
    cv2.imwrite(str(vm.work / "screen.png"), second[..., ::-1])
    return {"screen": list(second.shape[1::-1]), "correlation_with_replay_frame": round(ncc, 3),
            "status_bar": bool(bar), "mean_change_4s": round(changed, 2), "preview_why": st["preview"]["why"],
            "key_capture": path}


def sigterm(vm: VM, ctx: dict, tries: int = 3, attempts: int = 8) -> dict:
    """`systemctl stop` while a capture is being taken, until `tries` stops met one (a capture that finished
    before the stop does not count: it is checked, then tried again)."""
    outcomes, stop_s, met = [], 0.0, 0
    for i in range(attempts):
        if met == tries:
            break
        pid = vm.spawn(f"phonescope capture --sample-id term-{i}")
        # the request has reached the daemon (a client starts in seconds under TCG), then a moment into it
        wait_for(lambda: status(vm)["pending_captures"] > 0 or vm.poll(pid), 120, "the capture asked for", every=0.5)
        time.sleep(random.uniform(0.0, 1.5))
        during = vm.poll(pid) is None
        t0 = time.monotonic()
        vm.sh("systemctl stop phonescope", timeout=60).check("systemctl stop")
        stop_s = max(stop_s, round(time.monotonic() - t0, 1))
        result = wait_for(lambda: vm.poll(pid), 200, "the capture client's answer", every=1)
        code, res = prop(vm, "ExecMainStatus"), prop(vm, "Result")
        assert code == "0" and res == "success", f"stopped with status {code}, result {res}: " + \
            vm.sh("journalctl -b -u phonescope -n 80 --no-pager -o cat").out[-6000:]
        if result.rc == 0:
            ctx["acked"].append(result.out.strip())
            outcomes.append("saved" if during else "saved before the stop")
        else:
            # refused with an answer; never "closed the connection without an answer" or a reset
            assert "capture refused" in result.err and "connection" not in result.err, result.err
            outcomes.append("refused: " + result.err.strip().split(": ", 2)[-1][:80])
        met += during
        vm.sh("systemctl start phonescope", timeout=START_S).check("systemctl start")
    assert met == tries, f"only {met} of {len(outcomes)} stops came during a capture: {outcomes}"
    aborts = journal_has(vm, r"terminate called|core dumped|SIGABRT|status=134")
    assert not aborts, aborts
    check = check_captures(vm, ctx["acked"])
    assert not check["lost"] and not check["inconsistent"], check
    return {"tries": tries, "outcomes": outcomes, "stop_s_max": stop_s, "timeout_stop_s": 10}


def watchdog(vm: VM, ctx: dict) -> dict:
    wd = int(re.fullmatch(r"(\d+)s", prop(vm, "WatchdogUSec")).group(1))
    restart = prop(vm, "RestartUSec")
    old = prop(vm, "MainPID")
    assert old not in ("", "0"), "the service has a main process"   # kill -STOP 0 would stop the agent itself
    t0 = time.monotonic()
    vm.sh(f"kill -STOP {old}").check("SIGSTOP")
    new = wait_for(lambda: (p := prop(vm, "MainPID")) not in (old, "0") and p, 120, "a restarted daemon", every=1)
    restarted_s = round(time.monotonic() - t0, 1)
    wait_active(vm)
    assert restarted_s <= wd + 5 + 10, f"restarted after {restarted_s} s (WatchdogSec {wd} + RestartSec 5)"
    assert journal_has(vm, r"[Ww]atchdog timeout"), "systemd says it was the watchdog"
    # the watchdog's SIGABRT: faulthandler writes what each thread was doing to the journal
    stacks = journal_has(vm, r"Fatal Python error: Aborted|Thread 0x")
    assert any("Fatal Python error" in s for s in stacks), "the hung daemon's stacks are in the journal"
    return {"restarted_after_s": restarted_s, "watchdog_sec": wd, "restart_sec": restart, "old_pid": old,
            "new_pid": new, "stacks_in_journal": sum("Thread 0x" in s for s in stacks)}


def no_camera_at_boot(vm: VM, ctx: dict) -> dict:
    vm.sh(f"mv {REPLAY} {REPLAY}.away && sync").check("unplug the camera")
    boot_s = vm.reboot()
    ready_s = wait_active(vm)
    st = status(vm)
    text = prop(vm, "StatusText")
    assert st["camera"]["ok"] is False, st["camera"]
    t0 = time.monotonic()
    vm.sh(f"mv {REPLAY}.away {REPLAY}").check("plug the camera in")
    wait_for(lambda: status(vm)["camera"]["ok"] and status(vm)["state"] == "running", 180, "the camera resumed")
    return {"reboot_s": boot_s, "active_s": ready_s, "status_text": text, "camera": st["camera"].get("error"),
            "resumed_after_s": round(time.monotonic() - t0, 1)}


def reboot(vm: VM, ctx: dict) -> dict:
    before = check_captures(vm, ctx["acked"])
    boot_s = vm.reboot()
    ready_s = wait_active(vm)
    after = check_captures(vm, ctx["acked"])
    assert after["captures"] == before["captures"] and not after["lost"] and after["integrity"] == "ok", after
    return {"reboot_s": boot_s, "active_s": ready_s, "captures": after["captures"]}


def upgrade(vm: VM, ctx: dict) -> dict:
    pip = "/opt/phonescope/.venv/bin/pip"
    old_version = re.search(r"Version: (\S+)", vm.sh(f"{pip} show phonescope").out).group(1)
    old_pid, conf = prop(vm, "MainPID"), vm.sh("sha256sum /etc/phonescope/phonescope.toml").out.split()[0]
    before = check_captures(vm, ctx["acked"])
    old_model = status(vm)["model"]
    vm.sh(f"cp {PAYLOAD}/model-2/rehearsal.onnx {PAYLOAD}/model-2/rehearsal.json /etc/phonescope/").check("model")
    t0 = time.monotonic()
    vm.sh(f"bash {PAYLOAD}/src/deploy/install.sh --wheels {PAYLOAD}/upgrade", timeout=1800).check("install.sh again")
    install_s = round(time.monotonic() - t0, 1)
    wait_active(vm)
    new_version = re.search(r"Version: (\S+)", vm.sh(f"{pip} show phonescope").out).group(1)
    new_pid = prop(vm, "MainPID")
    after = check_captures(vm, ctx["acked"])
    st = status(vm)
    assert new_version != old_version and new_pid != old_pid, (old_version, new_version, old_pid, new_pid)
    assert vm.sh("sha256sum /etc/phonescope/phonescope.toml").out.split()[0] == conf, "config kept"
    assert after["captures"] == before["captures"] and not after["lost"], after
    assert st["model"] != old_model, "the new model is in use"
    doctor = vm.sh("phonescope doctor", timeout=600).out
    engine = next((ln for ln in doctor.splitlines() if "tensorrt" in ln or "engine" in ln), "")
    return {"install_s": install_s, "versions": [old_version, new_version], "model": [old_model, st["model"]],
            "captures_kept": after["captures"], "doctor_engine_line": engine.strip()}


def tree_hashes(vm: VM, root: str) -> dict[str, str]:
    """{path under root: sha256} of the files under a folder in the guest (temporaries included)."""
    out = vm.sh(f"cd {root} && find . -type f -print0 | xargs -0 -r sha256sum", timeout=600).check("sha256sum")
    return {ln[66:].removeprefix("./"): ln[:64] for ln in out.splitlines() if ln.strip()}


def host_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()}


def usb_export(vm: VM, ctx: dict) -> dict:
    """The kiosk's admin sets [export] auto_dir and reruns install.sh; a FAT USB stick hot-plugged into the
    VM is mounted by the installed udev rule under the unit's hardening, gets every capture (and one taken
    while it is in), the screen says "safe to remove", it is pulled out with no warning, and another
    machine (mtools on the host) reads every file byte for byte."""
    vm.sh(f"grep -q '^auto_dir' /etc/phonescope/phonescope.toml || "
          f"printf '\\n[export]\\nauto_dir = \"{STICK}\"\\n' >> /etc/phonescope/phonescope.toml").check("config")
    t0 = time.monotonic()
    vm.sh(f"bash {PAYLOAD}/src/deploy/install.sh --wheels {PAYLOAD}/upgrade", timeout=1800).check("install.sh")
    install_s = round(time.monotonic() - t0, 1)
    wait_active(vm)
    assert f"ReadWritePaths=-{STICK}" in vm.sh("systemctl cat phonescope").out, "the drop-in for the stick"
    vm.sh("test -f /etc/udev/rules.d/99-phonescope-usb.rules").check("the stick's udev rule")
    ctx["acked"].append(vm.sh("phonescope capture --sample-id usb-1", timeout=300).check("capture").strip())
    assert status(vm)["export"]["state"] == "no stick"
    img = vm.work / "stick.img"
    img.unlink(missing_ok=True)
    subprocess.run(["truncate", "-s", "512M", str(img)], check=True)
    subprocess.run(["mkfs.vfat", "-n", "PHONESCOPE", str(img)], check=True, stdout=subprocess.DEVNULL)
    n = check_captures(vm, [])["captures"]
    t0 = time.monotonic()
    vm.plug_stick(img)

    def on_stick(k: int):
        e = status(vm)["export"]
        return e if e["state"] == "done" and e["captures_on_stick"] == k else None

    wait_for(lambda: on_stick(n), 900, f"all {n} captures on the stick", every=3)
    export_s = round(time.monotonic() - t0, 1)
    mount = vm.sh(f"findmnt -n -o SOURCE,FSTYPE,OPTIONS {STICK}").check("findmnt").strip()
    ctx["acked"].append(vm.sh("phonescope capture --sample-id usb-2", timeout=300).check("capture").strip())
    wait_for(lambda: on_stick(n + 1), 300, "the new capture on the stick", every=3)
    warnings = status(vm)["warnings"]
    assert f"USB export: {n + 1} captures on the stick, safe to remove" in warnings, warnings
    kiosk = tree_hashes(vm, f"{STATE}/captures")
    assert tree_hashes(vm, STICK) == kiosk, "the stick holds every capture file, nothing else"
    vm.pull_stick()
    wait_for(lambda: status(vm)["export"]["state"] == "no stick", 120, "the stick noticed gone")
    assert vm.sh(f"mountpoint -q {STICK}").rc != 0, "unmounted once pulled out"
    assert not any("USB" in w for w in status(vm)["warnings"])
    read = vm.work / "stick-read"
    shutil.rmtree(read, ignore_errors=True)
    read.mkdir()
    subprocess.run(["mcopy", "-s", "-n", "-i", str(img), "::/*", str(read)], check=True,
                   env={**os.environ, "MTOOLS_SKIP_CHECK": "1"})
    assert host_hashes(read) == kiosk, "another machine reads every file as the kiosk wrote it"
    size = sum(p.stat().st_size for p in read.rglob("*") if p.is_file())
    shutil.rmtree(read)
    img.unlink()
    return {"install_s": install_s, "captures": n + 1, "files": len(kiosk), "mb": round(size / 1e6, 1),
            "export_s": export_s, "mount": mount}


def power_cut(vm: VM, ctx: dict, cycles: int) -> dict:
    acked_total, recovered, boot_times, refused = 0, {}, [], []
    rng = random.Random(11)
    for cycle in range(cycles):
        acked: list[str] = []
        lock, stop = threading.Lock(), threading.Event()

        def burst(worker: int):
            i = 0
            while not stop.is_set():
                try:
                    pid = vm.spawn(f"phonescope capture --sample-id pc{cycle}-{worker}-{i}")
                    while not stop.is_set():
                        r = vm.poll(pid)
                        if r is not None:
                            if r.rc == 0 and not stop.is_set():
                                with lock:
                                    acked.append(r.out.strip())
                            elif r.rc != 0 and not stop.is_set():
                                refused.append(r.err.strip()[-300:])
                            break
                        time.sleep(0.2)
                except (OSError, GuestError, ValueError):
                    return
                i += 1

        threads = [threading.Thread(target=burst, args=(w,), daemon=True) for w in range(3)]
        for t in threads:
            t.start()
        # the cut comes at a random moment once captures are going through (a capture under TCG takes
        # 15-40 s: a fixed window could end before any was acknowledged, and the cycle prove nothing)
        end = time.monotonic() + 300
        while not acked and time.monotonic() < end and any(t.is_alive() for t in threads):
            time.sleep(0.5)
        time.sleep(rng.uniform(0.0, 20.0))
        with lock:
            stop.set()
            vm.power_cut()
            cut_acked = list(acked)
        for t in threads:
            t.join(10)
        boot_times.append(vm.start())
        wait_active(vm)
        ctx["acked"].extend(cut_acked)
        acked_total += len(cut_acked)
        check = check_captures(vm, ctx["acked"])
        assert not check["lost"], f"cycle {cycle}: acknowledged captures lost: {check['lost']}"
        assert check["integrity"] == "ok" and not check["inconsistent"] and not check["temporaries"], check
        for line in journal_has(vm, r"start-up recovery: \{"):
            for k, v in json.loads(line.split("start-up recovery: ", 1)[1]).items():
                recovered[k] = recovered.get(k, 0) + v
    assert acked_total > 0, f"no capture acknowledged in {cycles} cycles: nothing was tested ({refused[-3:]})"
    return {"cycles": cycles, "acknowledged": acked_total, "lost": 0, "refused": len(refused),
            "last_refusal": refused[-1] if refused else None, "recovered": recovered,
            "boot_s_median": float(np.median(boot_times)) if boot_times else None}
