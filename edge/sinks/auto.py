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


def where(kind: str, p: dict) -> str:
    """What `kind` would show on (display, card, device, file) if it can, else OSError saying why not.
    Looks without taking a screen over, so `doctor` asks it too."""
    if kind == "window":
        from edge.sinks.window import x11_screen_size

        display = os.environ.get("DISPLAY")
        if not display:
            raise OSError("no display server ($DISPLAY is not set)")
        if x11_screen_size() is None:   # opening the window would abort the process inside Qt
            raise OSError(f"the X server at DISPLAY={display} does not answer")
        return f"DISPLAY={display}"
    if kind == "kms":
        from edge.sinks.kms import find_card

        card = p["drm_device"] or find_card()
        if card is None:
            raise OSError("no DRM card with a connected screen in /dev/dri (or no access: the video group)")
        return card
    if kind == "fbdev":
        if not Path(p["fb_device"]).exists():
            raise OSError(f"no framebuffer {p['fb_device']}")
        if not os.access(p["fb_device"], os.W_OK):
            raise OSError(f"cannot write {p['fb_device']} (the video group)")
        return p["fb_device"]
    return "preview.jpg"


def candidates(p: dict, skipped: list[tuple[str, str]]):
    """(kind, where) for each sink of the configured one's chain that could show the preview, in order;
    those that cannot are appended to `skipped` as (kind, why)."""
    wanted = p["sink"]
    for kind in CHAIN if wanted == "auto" else CHAIN[CHAIN.index(wanted):]:
        try:
            yield kind, where(kind, p)
        except OSError as e:
            skipped.append((kind, str(e)))


def reasons(skipped: list[tuple[str, str]]) -> str:
    return f" ({'; '.join(f'{kind}: {why}' for kind, why in skipped)})" if skipped else ""


def _open(kind: str, target: str, state: Path) -> Sink:
    if kind == "window":
        from edge.sinks.window import WindowSink
        return WindowSink()
    if kind == "kms":
        from edge.sinks.kms import KmsSink
        return KmsSink(target)
    if kind == "fbdev":
        from edge.sinks.fbdev import FbdevSink
        return FbdevSink(target)
    from edge.sinks.file import FileSink
    return FileSink(state / target)


def open_preview(p: dict, state: Path) -> Sink:
    """The [preview] section's sink, or the first one after it in CHAIN that opens; sink.why says which and why."""
    wanted = p["sink"]
    if wanted == "none":
        sink: Sink = NoneSink()
        sink.why = "preview off ([preview] sink = \"none\")"
        return sink
    skipped: list[tuple[str, str]] = []
    sink = None
    for kind, target in candidates(p, skipped):
        try:
            sink = _open(kind, target, state)
            break
        except (OSError, cv2.error) as e:
            skipped.append((kind, str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__))
    for kind, why in skipped:   # the normal headless case (no $DISPLAY, no screen) is not news
        if kind == wanted or (kind == "window" and os.environ.get("DISPLAY")):
            log.warning("preview %s unavailable (%s): falling back", kind, why)
    if sink is None:            # only the file can be left, and it failed: the state folder is broken
        raise OSError(reasons(skipped).strip(" ()"))
    sink.why = f"{wanted}: {sink.kind}{reasons(skipped)}"
    log.info("preview on %s", sink.why)
    return sink
