"""Engine selection: which backend runs the model, and why it was chosen."""
from __future__ import annotations

from pathlib import Path

from edge.engines.base import Engine, EngineError, InputSpec

BACKENDS = ("auto", "onnxruntime")


def open_engine(model_path: str | Path, backend: str = "auto", alignment: int = 1,
                threads: int | None = None) -> tuple[Engine, str]:
    """Open the model with the requested backend; returns (engine, reason for the choice)."""
    if backend not in BACKENDS:
        raise EngineError(f"unknown backend {backend!r} (choose from {', '.join(BACKENDS)})")
    from edge.engines.onnxruntime import OnnxRuntimeEngine

    engine = OnnxRuntimeEngine(str(model_path), alignment=alignment, threads=threads)
    why = "requested" if backend == "onnxruntime" else "auto: ONNX Runtime is the backend this build provides"
    return engine, f"{why} ({engine.provider})"


__all__ = ["Engine", "EngineError", "InputSpec", "open_engine", "BACKENDS"]
