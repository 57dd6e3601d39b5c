"""Which preview sink a kiosk gets: the configured one, else the next that works.

`auto` is a window when an X server answers, else the HDMI screen through
DRM/KMS, else the Linux framebuffer, else the preview file. A configured sink
that cannot open (an unreachable $DISPLAY, a screen another program holds)
falls back along the same chain with one warning: a kiosk shows what it can
and never stops for its preview. The reason is kept on the sink for `status`.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import cv2

from edge.sinks.base import NoneSink, Sink

log = logging.getLogger("phonescope")

CHAIN = ("window", "kms", "fbdev", "file")


def _window(p: dict, state: Path) -> Sink:
    from edge.sinks.window import WindowSink, x11_screen_size

    display = os.environ.get("DISPLAY")
    if not display:
        raise OSError("no display server ($DISPLAY is not set)")
    if x11_screen_size() is None:   # opening the window would abort the process inside Qt
        raise OSError(f"the X server at DISPLAY={display} does not answer")
    return WindowSink()


def _kms(p: dict, state: Path) -> Sink:
    from edge.sinks.kms import KmsSink, find_card

    device = p["drm_device"] or find_card()
    if device is None:
        raise OSError("no DRM card with a connected screen in /dev/dri")
    return KmsSink(device)


def _fbdev(p: dict, state: Path) -> Sink:
    from edge.sinks.fbdev import FbdevSink

    if not Path(p["fb_device"]).exists():
        raise OSError(f"no framebuffer {p['fb_device']}")
    return FbdevSink(p["fb_device"])


def _file(p: dict, state: Path) -> Sink:
    from edge.sinks.file import FileSink

    return FileSink(state / "preview.jpg")


OPENERS = {"window": _window, "kms": _kms, "fbdev": _fbdev, "file": _file}


def open_preview(p: dict, state: Path) -> Sink:
    """The [preview] section's sink, or the first one after it in CHAIN that opens; sink.why says which and why."""
    wanted = p["sink"]
    if wanted == "none":
        sink: Sink = NoneSink()
        sink.why = "preview off ([preview] sink = \"none\")"
        return sink
    chain = CHAIN if wanted == "auto" else CHAIN[CHAIN.index(wanted):]
    skipped = []
    for kind in chain:
        try:
            sink = OPENERS[kind](p, state)
        except (OSError, cv2.error) as e:
            reason = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
            skipped.append(f"{kind}: {reason}")
            if kind == wanted or (kind == "window" and os.environ.get("DISPLAY")):
                log.warning("preview %s unavailable (%s): falling back", kind, reason)
            continue
        sink.why = f"{wanted}: {kind}" + (f" ({'; '.join(skipped)})" if skipped else "")
        log.info("preview on %s", sink.why)
        return sink
    raise OSError("; ".join(skipped))   # only the file can be left, and it failed: the state folder is broken
