"""The daemon's configuration: embedded defaults < TOML file < command-line flags.

Every key is optional; unknown keys, wrong types and impossible values are
refused with one line naming the key (exit 78, EX_CONFIG), because a kiosk
that starts with a typo'd setting silently ignored is worse than one that
does not start.
"""
from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any, Callable

from edge.backends import BACKENDS
from edge.errors import EX_CONFIG, UserError
from edge.sampletypes import TYPES

try:
    import tomllib
except ImportError:  # Python 3.10 (JetPack 6)
    import tomli as tomllib


class ConfigError(UserError):
    def __init__(self, message: str):
        super().__init__(message, EX_CONFIG)


def _one_of(*choices):
    def check(v):
        return None if v in choices else f"must be one of {', '.join(map(repr, choices))}"
    return check


def _range(lo=None, hi=None):
    def check(v):
        if lo is not None and v < lo:
            return f"must be >= {lo}"
        if hi is not None and v > hi:
            return f"must be <= {hi}"
        return None
    return check


def _source(v: str):
    kinds = ("simulated", "replay:", "v4l2:", "gst:", "picamera2:")
    if v == "simulated" or any(v.startswith(k) and len(v) > len(k) for k in kinds[1:]):
        return None
    return "must be simulated, replay:PATH, v4l2:/dev/videoN, gst:PIPELINE or picamera2:N"


WHITE_BALANCE = re.compile(r"^(auto|(\d{4,5})K|(\d+(?:\.\d+)?),(\d+(?:\.\d+)?))$")


def check_white_balance(v: str) -> str | None:
    return None if WHITE_BALANCE.match(v) else \
        'must be "auto", a colour temperature like "5000K" or red,blue gains like "1.8,1.5"'


def _mount_point(v: str) -> str | None:
    """A folder the systemd unit can name (ReadWritePaths=): absolute, no spaces, quotes or % specifiers."""
    if v and (not v.startswith("/") or any(c.isspace() or c in "\"'\\%" for c in v)):
        return "must be an absolute path without spaces, quotes or %"
    return None


# section -> key -> (type, default, check)
SCHEMA: dict[str, dict[str, tuple[type | tuple, Any, Callable | None]]] = {
    "camera": {
        "source": (str, "simulated", _source),
        "width": (int, 1920, _range(16, 16384)),
        "height": (int, 1080, _range(16, 16384)),
        "fps": ((int, float), 15, _range(0.1, 240)),
        "exposure_us": (int, 0, _range(0, 10_000_000)),   # 0: auto exposure
        "gain": ((int, float), 0, _range(0, 64)),          # 0: auto
        "white_balance": (str, "auto", check_white_balance),
    },
    "model": {
        "path": (str, "", None),
        "backend": (str, "auto", _one_of(*BACKENDS)),
        "tile": (int, 744, _range(0, 8192)),   # = the default model card's recommended_tile
        "batch": (int, 4, _range(1, 64)),
        "arena": (bool, True, None),
        # the slide type (edge.sampletypes) whose glass colour frames are balanced to; "": all types
        "sample": (str, "", _one_of("", *TYPES)),
    },
    "calibration": {
        "profile": (str, "", None),
        # um per camera pixel at [camera] width; 0: the profile's (phonescope calibrate scale), else none
        "pixel_size_um": ((int, float), 0, _range(0, 1000)),
    },
    "preview": {
        "sink": (str, "auto", _one_of("auto", "window", "kms", "fbdev", "file", "none")),
        "show": (str, "enhanced", _one_of("enhanced", "raw", "split")),
        "max_fps": ((int, float), 10, _range(0.1, 120)),
        "fb_device": (str, "/dev/fb0", None),
        "drm_device": (str, "", None),
        "keys": (str, "auto", _one_of("auto", "evdev", "none")),
        "width": (int, 960, _range(64, 8192)),
        "notice": (str, "AI-enhanced image, research use only", None),
    },
    "capture": {
        "interval_s": ((int, float), 0, _range(0, 86400 * 7)),
        "keep_raw": (bool, True, None),
        "raw_format": (str, "png", _one_of("png", "tiff", "jpeg")),   # png/tiff lossless, in the camera's bits
        "format": (str, "png", _one_of("png", "tiff", "jpeg")),
        "jpeg_quality": (int, 90, _range(1, 100)),
    },
    "operator": {
        "id": (str, "", None),                   # the kiosk's operator, recorded with captures
        "badge_prefix": (str, "OP:", None),      # a scanned id starting with this sets the operator instead
    },
    "storage": {
        "state_dir": (str, "", None),
        "min_free_mb": ((int, float), 200, _range(0, 10 ** 7)),
        # delete captures delivered (uploaded, or exported with verified hash) this many days ago; 0: never
        "delete_after_upload_days": ((int, float), 0, _range(0, 36500)),
    },
    "service": {
        "watchdog": (bool, True, None),
    },
    "export": {
        "auto_dir": (str, "", _mount_point),   # where a USB stick is mounted: captures are copied there by themselves
    },
    "upload": {
        "url": (str, "", None),                  # WebDAV collection, http(s)://host[:port]/path; "": no upload
        "credentials_file": (str, "", None),     # one line user:password, mode 0600, owned by the service
        "ca_file": (str, "", None),              # PEM CA for a self-signed server ("": the system's CAs)
        "concurrency": (int, 2, _range(1, 16)),
        "max_rate_kb_s": ((int, float), 0, _range(0, 10 ** 7)),   # kilobytes per second for all; 0: no limit
        "timeout_s": ((int, float), 30, _range(1, 3600)),
        "retry_max_s": ((int, float), 600, _range(1, 86400)),     # the longest wait between tries
    },
}


def defaults() -> dict:
    return {s: {k: copy.deepcopy(spec[1]) for k, spec in keys.items()} for s, keys in SCHEMA.items()}


def _check(section: str, key: str, value: Any) -> Any:
    typ, _, check = SCHEMA[section][key]
    types = typ if isinstance(typ, tuple) else (typ,)
    # bool is an int in Python; refuse true/false where a number is meant and vice versa
    if isinstance(value, bool) and bool not in types or not isinstance(value, types):
        names = " or ".join({int: "an integer", float: "a number", str: "a string", bool: "true/false"}[t]
                            for t in types)
        raise ConfigError(f"[{section}] {key}: must be {names}, got {value!r}")
    if check and (msg := check(value)):
        raise ConfigError(f"[{section}] {key}: {msg}, got {value!r}")
    return value


def merge(base: dict, doc: dict, where: str) -> dict:
    out = copy.deepcopy(base)
    for section, table in doc.items():
        if section not in SCHEMA:
            raise ConfigError(f"{where}: unknown section [{section}] (known: {', '.join(SCHEMA)})")
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: [{section}] must be a table")
        for key, value in table.items():
            if key not in SCHEMA[section]:
                raise ConfigError(f"{where}: unknown key [{section}] {key} "
                                  f"(known: {', '.join(SCHEMA[section])})")
            out[section][key] = _check(section, key, value)
    return out


def load(path: str | os.PathLike | None = None, overrides: dict | None = None) -> dict:
    """Embedded defaults, then the file (if any), then overrides {section: {key: value}}."""
    cfg = defaults()
    if path:
        p = Path(path)
        try:
            doc = tomllib.loads(p.read_text())
        except FileNotFoundError:
            raise ConfigError(f"{p}: config file not found") from None
        except OSError as e:
            raise ConfigError(f"{p}: cannot read config file ({e.strerror})") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{p}: not valid TOML ({e})") from None
        cfg = merge(cfg, doc, str(p))
    if overrides:
        cfg = merge(cfg, {s: {k: v for k, v in t.items() if v is not None} for s, t in overrides.items()},
                    "command line")
    return cfg


INSTALLED = Path("/etc/phonescope/phonescope.toml")     # written by deploy/install.sh


def installed() -> Path | None:
    """The installed kiosk's config, which the clients (capture, status, doctor) read by default."""
    return INSTALLED if INSTALLED.is_file() else None


def state_dir(cfg: dict) -> Path:
    """The configured state folder; else systemd's $STATE_DIRECTORY; else ./var (the demo)."""
    if cfg["storage"]["state_dir"]:
        return Path(cfg["storage"]["state_dir"])
    if os.environ.get("STATE_DIRECTORY"):
        return Path(os.environ["STATE_DIRECTORY"].split(":")[0])
    return Path("var")
