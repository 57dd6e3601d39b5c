"""Engine selection: which backend runs the model, and why it was chosen.

`auto` takes TensorRT where a fresh engine (built for this model, this
TensorRT, this GPU and these tile settings) and a GPU exist, else ONNX
Runtime; the reason is returned so the daemon logs it and `doctor` shows it.
`tensorrt` refuses a stale or missing engine with one line saying to run
`make engine`. `torch` runs the shipped weights with PyTorch (a workstation
GPU without TensorRT, or the CPU). Each backend is imported only when chosen.
"""
from __future__ import annotations

from pathlib import Path

from edge.backends import BACKENDS
from edge.engines import meta
from edge.engines.base import Engine, EngineError, InputSpec
from edge.modelcard import sha256_file



def _open_onnxruntime(model_path, alignment, threads, arena) -> Engine:
    from edge.engines.onnxruntime import OnnxRuntimeEngine

    return OnnxRuntimeEngine(str(model_path), alignment=alignment, threads=threads, arena=arena)


def tensorrt_plan(model_path: str | Path, onnx_sha256: str | None, tile: int | None,
                  batch: int) -> tuple[Path | None, str]:
    """(engine file, "") if a fresh TensorRT engine for this model and these settings can run here,
    else (None, why not)."""
    if tile == 0:
        return None, "whole-image inference (tile 0) needs a backend with dynamic shapes"
    machine, why = meta.probe_machine()
    if machine is None:
        return None, why
    if onnx_sha256 is None:
        onnx_sha256 = sha256_file(model_path)
    settings = meta.settings_from(tile, batch) if tile else None
    path = meta.engine_path(model_path)
    f = meta.freshness(path, onnx_sha256, machine, settings)
    if not f.fresh:
        return None, f"engine {f}"
    return path, ""


def load_tensorrt(plan: Path, alignment: int = 1, engine_class=None) -> Engine:
    """The TensorRT engine for a plan, or EngineError whatever went wrong: pycuda's MemoryError or
    LogicError, a TypeError from a binding of another TensorRT version must fall back (auto) or end
    in one line (tensorrt), never escape as a crash that systemd restarts in a loop."""
    if engine_class is None:
        from edge.engines.tensorrt import TensorRTEngine as engine_class
    try:
        return engine_class(plan, alignment=alignment)
    except EngineError:
        raise
    except Exception as e:
        raise EngineError(f"tensorrt: cannot load {Path(plan).name}: {type(e).__name__}: "
                          f"{str(e).strip()[:200]}") from None


def open_engine(model_path: str | Path, backend: str = "auto", alignment: int = 1,
                threads: int | None = None, tile: int | None = None, batch: int = 4,
                onnx_sha256: str | None = None, arena: bool = True) -> tuple[Engine, str]:
    """Open the model with the requested backend; returns (engine, reason for the choice).

    `tile`/`batch` are the settings the engine will be used with (a TensorRT
    engine must have been built for them; tile None accepts the built one);
    `arena`: ONNX Runtime's CPU memory arena.
    """
    if backend not in BACKENDS:
        raise EngineError(f"unknown backend {backend!r} (choose from {', '.join(BACKENDS)})")
    if backend == "onnxruntime":
        engine = _open_onnxruntime(model_path, alignment, threads, arena)
        return engine, f"requested ({engine.provider})"
    if backend == "torch":
        from edge.engines.pytorch import TorchEngine

        engine = TorchEngine(model_path, alignment=alignment, threads=threads)
        return engine, f"requested ({engine.provider})"

    plan, why_not = tensorrt_plan(model_path, onnx_sha256, tile, batch)
    if plan is not None:
        try:
            engine = load_tensorrt(plan, alignment)
            why = "requested" if backend == "tensorrt" else "auto: a fresh TensorRT engine and a GPU"
            return engine, f"{why} ({engine.provider}; {plan.name})"
        except EngineError as e:
            if backend == "tensorrt":
                raise
            why_not = str(e)
    if backend == "tensorrt":
        hint = f"; {meta.REBUILD_HINT}" if why_not.startswith("engine ") else ""
        raise EngineError(f"tensorrt: {why_not}{hint}")
    engine = _open_onnxruntime(model_path, alignment, threads, arena)
    return engine, f"auto: ONNX Runtime ({engine.provider}); TensorRT not used: {why_not}"


__all__ = ["Engine", "EngineError", "InputSpec", "load_tensorrt", "open_engine", "tensorrt_plan", "BACKENDS"]
