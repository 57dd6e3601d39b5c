"""`phonescope doctor`: what is wrong with this kiosk, and how to fix it.

Each check prints OK, WARN or FAIL with a line on how to fix it; the exit
code is 1 if anything failed. It never changes anything.
"""
from __future__ import annotations

import grp
import os
import shutil
import sys
import threading
from pathlib import Path

from edge import config


def _check_config(args, out):
    path = args.config or config.installed()   # on an installed kiosk, what the service runs with
    try:
        cfg = config.load(path, {"camera": {"source": args.source}, "storage": {"state_dir": args.state_dir}})
        out("OK", "config", str(path or "embedded defaults"))
        return cfg
    except config.ConfigError as e:
        out("FAIL", "config", f"{e} -> fix the file, then: systemctl restart phonescope")
        return None


def _check_model(cfg, out):
    from edge.enhancer import Enhancer, EngineError, ModelError

    try:
        m = cfg["model"]
        enh, why = Enhancer.open(m["path"] or None, m["backend"], m["tile"], m["batch"], sample=m["sample"])
    except (ModelError, EngineError) as e:
        hint = "" if "make engine" in str(e) else " -> set [model] path to an exported model with its .json card"
        out("FAIL", "model", f"{e}{hint}")
        return
    import numpy as np

    try:
        y = enh.enhance(np.full((64, 64, 3), 0.5, np.float32))
        assert np.isfinite(y).all()
        out("OK", "model", f"{enh.card.name} {enh.card.version}, sha256 {enh.card.onnx_sha256[:12]}...")
        out("OK", "backend", f"{enh.engine.name}: {why}")
    except Exception as e:
        out("FAIL", "backend", f"{enh.engine.name} cannot run the model: {e}")


def _check_camera(cfg, out):
    from edge.sources import SourceError, open_source

    c = cfg["camera"]
    result: dict = {}

    def probe():
        try:
            src = open_source(c["source"], c["width"], c["height"], c["fps"])
            f = src.read()
            src.close()
            result["ok"] = f"{c['source']}: frame {f.image.shape[1]}x{f.image.shape[0]}"
        except SourceError as e:
            result["err"] = str(e)

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(30)
    if "ok" in result:
        out("OK", "camera", result["ok"])
    else:
        hint = "check the cable and `v4l2-ctl --list-devices`; the service user needs the video group" \
            if c["source"].startswith("v4l2:") else "check [camera] source"
        out("FAIL", "camera", f"{result.get('err', 'no frame within 30 s')} -> {hint}")


def _check_storage(cfg, out):
    state = config.state_dir(cfg)
    probe = state if state.exists() else state.parent
    if not probe.exists():
        out("FAIL", "storage", f"{state} does not exist and its parent neither -> create it or set [storage] state_dir")
        return
    if not os.access(probe, os.W_OK | os.X_OK):
        out("FAIL", "permissions", f"cannot write {probe} as uid {os.getuid()} -> chown it to the service user")
    else:
        out("OK", "permissions", f"{probe} writable")
    free = shutil.disk_usage(probe).free / 1e6
    mark = cfg["storage"]["min_free_mb"]
    level = "OK" if free >= 2 * mark else ("WARN" if free >= mark else "FAIL")
    out(level, "disk", f"{free:.0f} MB free in {probe} (captures stop below {mark:.0f} MB)"
        + ("" if level == "OK" else " -> move old captures off the kiosk"))


def _check_devices(cfg, out):
    src = cfg["camera"]["source"]
    if src.startswith("v4l2:"):
        dev = src.split(":", 1)[1]
        if not Path(dev).exists():
            out("FAIL", "device", f"{dev} does not exist -> plug the camera in; see `ls /dev/video*`")
        elif not os.access(dev, os.R_OK | os.W_OK):
            out("FAIL", "device", f"no access to {dev} -> add the user to the video group: usermod -aG video USER")
    _check_preview(cfg["preview"], out)
    try:
        groups = {grp.getgrgid(g).gr_name for g in os.getgroups()}
        if "video" not in groups and os.getuid() != 0:
            out("WARN", "permissions", "this user is not in the video group (cameras, framebuffer)")
    except KeyError:
        pass


def _check_preview(p: dict, out) -> None:
    """Which screen the preview would use (edge.sinks.auto's order and reasons), without taking it over."""
    from edge.sinks.auto import candidates, reasons

    wanted, skipped = p["sink"], []
    if wanted == "none":
        out("OK", "preview", "sink = none")
        return
    kind, target = next(candidates(p, skipped))     # the file is always a candidate
    why = reasons(skipped)
    if kind == "file" and wanted != "file":
        out("WARN", "preview", f"no screen: the preview goes to the file {target}{why} -> connect the HDMI "
            "screen, add the service user to the video group, or start X")
    else:
        out("OK" if wanted in ("auto", kind) else "WARN", "preview", f"{kind} on {target}{why}")


def _check_gstreamer(cfg, out):
    """gst: sources need an OpenCV built with GStreamer (pip's is not; JetPack's is), nvarguscamerasrc its daemon."""
    src = cfg["camera"]["source"]
    if not src.startswith("gst:"):
        return
    import cv2

    line = next((ln.strip() for ln in cv2.getBuildInformation().splitlines() if ln.strip().startswith("GStreamer:")),
                "GStreamer: NO")
    if "YES" not in line:
        out("FAIL", "opencv", f"this OpenCV {cv2.__version__} has no GStreamer, so gst: sources cannot open -> on a "
            f"Jetson use JetPack's OpenCV: bash deploy/use-system-opencv.sh /opt/phonescope/.venv/bin/python")
    else:
        out("OK", "opencv", f"OpenCV {cv2.__version__}, {line}")
    if "nvarguscamerasrc" in src and not Path("/tmp/argus_socket").exists():
        out("FAIL", "argus", "no /tmp/argus_socket: nvarguscamerasrc needs nvargus-daemon -> "
            "systemctl enable --now nvargus-daemon")


def _check_gpu(cfg, out):
    """TensorRT, the engine for this model and settings, and access to the GPU's render nodes."""
    from edge.engines import meta
    from edge.modelcard import ModelError, configured_model, load_card

    jetson = Path("/etc/nv_tegra_release").exists()
    machine, why = meta.probe_machine()
    if machine is None:
        if jetson or "too old" in why:
            out("FAIL" if "too old" in why else "WARN", "tensorrt", f"{why} -> the kiosk runs ONNX Runtime on the "
                "CPU; on a Jetson: apt install python3-libnvinfer python3-libnvinfer-dev, then sudo make engine")
        else:
            out("OK", "tensorrt", f"not used here: {why}")
    else:
        out("OK", "gpu", f"TensorRT {machine.tensorrt_version} on {machine.gpu_name} (sm {machine.compute_capability})")
        model = configured_model(cfg)
        try:
            sha = load_card(model).onnx_sha256
            settings = meta.settings_from(cfg["model"]["tile"], cfg["model"]["batch"])
        except (ModelError, ValueError) as e:
            out("WARN", "engine", f"not checked: {e}")
        else:
            engine = meta.engine_path(model)
            f = meta.freshness(engine, sha, machine, settings)
            out("OK" if f.fresh else "WARN", "engine", f"{engine}: {f}" + ("" if f.fresh else " -> sudo make engine"))
    for node in sorted(Path("/dev/dri").glob("renderD*")):
        if not os.access(node, os.R_OK | os.W_OK):
            out("FAIL", "gpu", f"no access to {node} (CUDA on JetPack 6 and the GPU preview need it) -> "
                "usermod -aG render USER")
            break


def run(args) -> int:
    failed = []

    def out(level: str, what: str, msg: str) -> None:
        if level == "FAIL":
            failed.append(what)
        print(f"{level:4s}  {what:12s} {msg}")
        sys.stdout.flush()

    cfg = _check_config(args, out)
    if cfg is None:
        return 1
    _check_storage(cfg, out)
    _check_devices(cfg, out)
    _check_gstreamer(cfg, out)
    _check_gpu(cfg, out)
    _check_model(cfg, out)
    _check_camera(cfg, out)
    print(f"{len(failed)} problem(s)" + (f": {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0
