"""What a TensorRT engine was built from, and whether it still fits.

An engine (`<model>.engine`) is only valid for the ONNX file, TensorRT
version and GPU it was built with, and for the tile shape, batch and
precision it was built for. The builder writes those beside it
(`<model>.engine.json`); `freshness()` compares them with the model and the
machine at hand. Pure Python: it runs (and is tested) without TensorRT.
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from edge.engines.gpu import probe_gpu

META_FORMAT = "phonescope-engine/1"
REBUILD_HINT = "run `make engine` (or `phonescope engine build`)"
BUILD_RECIPE = 3     # how engines are built (models/engine_build.py); bump it when that changes (3: pixel I/O)
MIN_TENSORRT = 10    # the API used here (tensor addresses, execute_async_v3, strongly typed networks)


@dataclass(frozen=True)
class Settings:
    """What the engine is built for (from the config's [model] tile and batch)."""

    tile: tuple[int, int]
    batch: int
    precision: str = "fp16"

    def as_dict(self) -> dict:
        return {"tile": list(self.tile), "batch": self.batch, "precision": self.precision}


@dataclass(frozen=True)
class Machine:
    """The TensorRT version and the GPU an engine runs on."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: str   # "8.7"

    def as_dict(self) -> dict:
        return {"tensorrt_version": self.tensorrt_version, "gpu_name": self.gpu_name,
                "compute_capability": self.compute_capability}


@dataclass(frozen=True)
class Freshness:
    state: str        # fresh | stale | missing
    reason: str = ""

    @property
    def fresh(self) -> bool:
        return self.state == "fresh"

    def __str__(self) -> str:
        return self.state + (f" ({self.reason})" if self.reason else "")


KIOSK_ENGINE_DIR = Path("/var/cache/phonescope/engines")   # in the unit's CacheDirectory; install.sh builds here


def engine_dir(onnx_path: str | Path) -> Path:
    """$PHONESCOPE_ENGINE_DIR (the unit sets it), else an installed kiosk's engine folder where there is one
    (so `make engine`, `phonescope engine check` from a shell and the service agree), else beside the model."""
    d = os.environ.get("PHONESCOPE_ENGINE_DIR")
    if d:
        return Path(d)
    if KIOSK_ENGINE_DIR.is_dir():
        return KIOSK_ENGINE_DIR
    return Path(onnx_path).resolve().parent


def engine_path(onnx_path: str | Path) -> Path:
    return engine_dir(onnx_path) / (Path(onnx_path).stem + ".engine")


def meta_path(engine: str | Path) -> Path:
    return Path(str(engine) + ".json")


def settings_from(tile: int | tuple[int, int], batch: int, precision: str = "fp16") -> Settings:
    th, tw = (tile, tile) if isinstance(tile, int) else tile
    if th <= 0 or tw <= 0:
        raise ValueError("a TensorRT engine is built for one tile shape: [model] tile must be > 0")
    if batch < 1:
        raise ValueError("[model] batch must be >= 1")
    return Settings((int(th), int(tw)), int(batch), precision)


def converter_version() -> str:
    """onnxconverter-common's version: it makes the FP16 network an engine is built from."""
    try:
        return importlib.metadata.version("onnxconverter-common")
    except importlib.metadata.PackageNotFoundError:
        return "none"


def make_meta(onnx_sha256: str, machine: Machine, settings: Settings, **extra) -> dict:
    return {"format": META_FORMAT, "onnx_sha256": onnx_sha256, **machine.as_dict(), **settings.as_dict(),
            "recipe": BUILD_RECIPE, "built": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **extra}


def read_meta(engine: str | Path) -> dict | None:
    p = meta_path(engine)
    try:
        d = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return d if isinstance(d, dict) and d.get("format") == META_FORMAT else None


def freshness(engine: str | Path, onnx_sha256: str, machine: Machine | None, settings: Settings | None) -> Freshness:
    """fresh / stale (why) / missing, for this engine file against the model, machine and settings.

    `machine` None skips the machine comparison (where it cannot be probed);
    `settings` None accepts whatever tile and batch the engine was built for.
    """
    engine = Path(engine)
    if not engine.is_file():
        bad = Path(str(engine) + ".bad")
        why = f"no engine at {engine}" + (" (the last one failed to load and was set aside as .bad)"
                                          if bad.exists() else "")
        return Freshness("missing", why)
    meta = read_meta(engine)
    if meta is None:
        return Freshness("stale", f"no readable metadata {meta_path(engine).name} beside the engine")
    if meta.get("onnx_sha256") != onnx_sha256:
        return Freshness("stale", f"built from another ONNX file (sha256 {str(meta.get('onnx_sha256'))[:12]}... "
                                  f"vs {onnx_sha256[:12]}...)")
    if machine is not None:
        if meta.get("tensorrt_version") != machine.tensorrt_version:
            return Freshness("stale", f"built with TensorRT {meta.get('tensorrt_version')}, "
                                      f"this machine has {machine.tensorrt_version}")
        if meta.get("gpu_name") != machine.gpu_name or \
                str(meta.get("compute_capability")) != machine.compute_capability:
            return Freshness("stale", f"built for {meta.get('gpu_name')} (sm {meta.get('compute_capability')}), "
                                      f"this GPU is {machine.gpu_name} (sm {machine.compute_capability})")
    if meta.get("recipe", 1) != BUILD_RECIPE:
        return Freshness("stale", f"built by recipe {meta.get('recipe', 1)} of phonescope's engine build, "
                                  f"this version uses recipe {BUILD_RECIPE}")
    if settings is not None:
        if list(meta.get("tile") or []) != list(settings.tile):
            t = meta.get("tile") or ["?", "?"]
            return Freshness("stale", f"built for {t[0]}x{t[1]} tiles, the config asks for "
                                      f"{settings.tile[0]}x{settings.tile[1]}")
        if meta.get("batch") != settings.batch:
            return Freshness("stale", f"built for batch {meta.get('batch')}, the config asks for {settings.batch}")
        if meta.get("precision") != settings.precision:
            return Freshness("stale", f"built in {meta.get('precision')}, wanted {settings.precision}")
    return Freshness("fresh")


# -- the stamp `make engine` keys its rebuilds on ---------------------------------------------

def stamp_text(onnx_sha256: str, machine: Machine, settings: Settings) -> str:
    """Everything a rebuild depends on, one `key=value` a line; nothing that changes on its own (no times)."""
    fields = {"onnx_sha256": onnx_sha256, **machine.as_dict(),
              "tile": f"{settings.tile[0]}x{settings.tile[1]}", "batch": settings.batch,
              "precision": settings.precision, "recipe": BUILD_RECIPE,
              "onnxconverter_common": converter_version()}
    return "".join(f"{k}={v}\n" for k, v in fields.items())


def write_stamp(path: str | Path, text: str) -> bool:
    """Write the stamp only if its content changed (so its mtime moves only then); True if rewritten."""
    path = Path(path)
    try:
        if path.read_text() == text:
            return False
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return True


# -- probing the machine without TensorRT's help -----------------------------------------------

def too_old(tensorrt_version: str) -> str | None:
    """Why this TensorRT cannot be used, or None: JetPack 6.0 ships TensorRT 8.6, whose API differs."""
    try:
        major = int(str(tensorrt_version).split(".")[0])
    except ValueError:
        return f"unrecognised TensorRT version {tensorrt_version!r}"
    if major < MIN_TENSORRT:
        return (f"TensorRT {tensorrt_version} is too old: phonescope needs TensorRT {MIN_TENSORRT} or newer "
                f"(JetPack 6.1 or newer)")
    return None


def probe_machine() -> tuple[Machine | None, str]:
    """The TensorRT version and GPU here, or (None, why not)."""
    try:
        import tensorrt as trt
    except ImportError:
        return None, "TensorRT is not installed (the [jetson] extra, or JetPack's python3-libnvinfer)"
    old = too_old(trt.__version__)
    if old:
        return None, old
    gpu = probe_gpu()
    if gpu is None:
        return None, "no CUDA GPU found (the CUDA driver, libcuda, sees none)"
    return Machine(str(trt.__version__), gpu[0], gpu[1]), ""
