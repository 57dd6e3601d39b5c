"""`make rehearse`: build (or reuse) the kiosk image, install phonescope in it the way a kiosk gets it,
run every scenario, write .rehearse/report.json, exit 1 if any scenario failed.

    python -m tests.rehearse [--power-cuts N] [--only NAME,...] [--keep]
Needs root (debootstrap, mke2fs -d keeping ownership), qemu-system-x86_64, qemu-img and debootstrap
(deploy/dev-deps.sh --rehearse installs them).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
import traceback
from pathlib import Path

import cv2

from tests.helpers import ROOT, SAMPLES, export_random_model
from tests.rehearse import image, scenarios
from tests.rehearse.vm import VM, kvm_works

OUT = ROOT / ".rehearse"
ORDER = ("install", "capture_cli", "hdmi_preview", "sigterm", "watchdog", "no_camera_at_boot", "reboot", "upgrade",
         "usb_export", "power_cut")
CONFIG = """# the rehearsal kiosk: a replay camera (a folder of phone images) and a small model made for it
[camera]
source = "replay:/srv/phonescope/replay"
width = 640
height = 480
fps = 2

[model]
path = "/etc/phonescope/rehearsal.onnx"
tile = 0
batch = 1

[preview]
sink = "auto"
width = 320
max_fps = 2

[storage]
min_free_mb = 50
"""


def replay_frames() -> dict:
    """The replay camera's frames (RGB, 640x480): real phone images of blood smears."""
    return {f.name: cv2.resize(cv2.imread(str(f)), (640, 480), interpolation=cv2.INTER_AREA)[..., ::-1]
            for f in sorted((SAMPLES / "phone").glob("BloodImage_*.jpg"))}


def payload(work: Path, cache: Path, py: str) -> tuple[Path, dict]:
    """The folder a kiosk gets (wheels, deploy files, replay frames, models, config) as an ext4 disk."""
    src = work / "payload"
    shutil.rmtree(src, ignore_errors=True)
    (src / "src").mkdir(parents=True)
    shutil.copytree(image.wheels(cache, py), src / "wheels", ignore=shutil.ignore_patterns("done"))
    image.build_phonescope(py, src / "wheels")
    image.build_phonescope(py, src / "upgrade", version_suffix=".post1")
    shutil.copytree(ROOT / "deploy", src / "src" / "deploy")
    shutil.copy(ROOT / "README.md", src / "src")
    shutil.copy(Path(scenarios.__file__).parent / "guest_check.py", src)
    (src / "phonescope.toml").write_text(CONFIG)
    (src / "replay").mkdir()
    frames = replay_frames()
    for name, rgb in frames.items():
        cv2.imwrite(str(src / "replay" / name), rgb[..., ::-1])
    for n in (1, 2):                                   # the upgrade brings a changed model
        d = src / f"model-{n}"
        d.mkdir()
        export_random_model(d / "rehearsal.onnx", width=8, blocks=2, seed=n, gain=1.0)
        card = json.loads((d / "rehearsal.json").read_text())
        card["version"] = f"1.0.{n}"
        (d / "rehearsal.json").write_text(json.dumps(card))
    size = sum(p.stat().st_size for p in src.rglob("*") if p.is_file())
    disk = work / "payload.img"
    image.make_ext4(src, disk, str(int(size * 1.3) + (64 << 20)), "payload")
    shutil.rmtree(src)
    return disk, frames


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.rehearse")
    ap.add_argument("--power-cuts", type=int, default=20)
    ap.add_argument("--only", default="", help="comma-separated scenarios (install always runs)")
    ap.add_argument("--keep", action="store_true", help="leave the VM's disk in .rehearse/work")
    ap.add_argument("--reuse", action="store_true", help="(developing scenarios) boot the disk and payload a --keep "
                    "run left, installed, instead of installing afresh")
    args = ap.parse_args(argv)
    for tool in ("debootstrap", "qemu-system-x86_64", "qemu-img", "mke2fs", "mkfs.vfat", "mcopy"):
        if not shutil.which(tool):
            print(f"rehearse: {tool} is missing: bash deploy/dev-deps.sh --rehearse", file=sys.stderr)
            return 2
    t0 = time.monotonic()
    cache, work = OUT / "cache", OUT / "work"
    reuse = args.reuse and (work / "kiosk.qcow2").exists() and (work / "payload.img").exists()
    if not reuse:
        shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    base, built = image.base_image(cache)
    image.say(f"kiosk image {'reused' if built['cached'] else 'built in %.0f s' % built['seconds']}")
    disk, frames = (work / "payload.img", replay_frames()) if reuse else payload(work, cache, sys.executable)
    kvm = kvm_works(base / "vmlinuz", work)
    image.say(f"booting under {'KVM' if kvm else 'TCG (software emulation)'}")
    vm = VM(base, work, disk, kvm)
    if not reuse:
        vm.fresh_disk()
    wanted = set(args.only.split(",")) if args.only else set(ORDER)
    report = {"kvm": kvm, "image": built, "power_cuts_asked": args.power_cuts, "scenarios": {}}
    ctx = {"frames": list(frames.values()), "acked": []}
    failed = False
    try:
        report["first_boot_s"] = vm.start()
        for name in ORDER:
            if name != "install" and name not in wanted:
                continue
            if name == "install" and reuse:
                vm.sh(f"mkdir -p {scenarios.PAYLOAD}; mountpoint -q {scenarios.PAYLOAD} || "
                      f"mount -o ro /dev/vdb {scenarios.PAYLOAD}").check("mount payload")
                scenarios.wait_active(vm)
                continue
            s0 = time.monotonic()
            image.say(f"scenario {name}...")
            try:
                fn = getattr(scenarios, name)
                if name != "install":
                    scenarios.ensure_running(vm)
                figures = fn(vm, ctx, args.power_cuts) if name == "power_cut" else fn(vm, ctx)
                entry = {"ok": True, **figures}
            except Exception as e:   # one failed scenario is reported; the ones after it still run
                failed = True
                entry = {"ok": False, "error": f"{type(e).__name__}: {e}"[:2000],
                         "where": traceback.format_exc().splitlines()[-3:]}
                if name == "install":
                    report["scenarios"][name] = entry
                    break
            entry["seconds"] = round(time.monotonic() - s0, 1)
            report["scenarios"][name] = entry
            image.say(f"scenario {name}: {'ok' if entry['ok'] else 'FAILED: ' + entry['error'][:300]}")
            (OUT / "report.json").write_text(json.dumps(report, indent=2))
    finally:
        vm.stop()
        report["wall_s"] = round(time.monotonic() - t0, 1)
        (OUT / "report.json").write_text(json.dumps(report, indent=2))
        if not args.keep:
            for f in ("kiosk.qcow2", "payload.img"):
                (work / f).unlink(missing_ok=True)
    print(json.dumps(report, indent=2))
    # last, so that the tail of a CI log says which scenario failed and why
    for name, entry in report["scenarios"].items():
        if not entry["ok"]:
            print(f"rehearse: scenario {name} FAILED: {entry['error'][:1500]} (at {' | '.join(entry['where'])})",
                  file=sys.stderr)
    image.say("every scenario passed" if not failed else "FAILED: see above and .rehearse/report.json")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
