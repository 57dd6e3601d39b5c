"""Run the real daemon with one injected fault: `python -m tests.system.faultinject FAULT FLAG -- run ARGS...`.

Only the faulty part is replaced, through the daemon's own wiring (edge.wiring.Twins), and only while
the file FLAG exists, so a test switches the fault on and off from outside while everything else (the
real model in ONNX Runtime, real sources, sockets, files, SQLite) runs as in production:

- hang:  the engine's infer() blocks (a stalled GPU or driver);
- nan:   the engine returns NaN (a broken model or a numeric fault);
- stall: the camera's read() blocks (a camera that stops delivering).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from edge import wiring
from edge.cli import build_parser, guarded
from edge.engines.base import Engine


class FaultyEngine(Engine):
    def __init__(self, inner: Engine, fault: str, flag: Path):
        self.inner, self.fault, self.flag = inner, fault, flag
        self.name, self.spec = inner.name, inner.spec

    def infer(self, batch: np.ndarray) -> np.ndarray:
        if self.flag.exists():
            if self.fault == "hang":
                while self.flag.exists():
                    time.sleep(0.05)
            elif self.fault == "nan":
                return np.full_like(self.inner.infer(batch), np.nan)
        return self.inner.infer(batch)

    def close(self) -> None:
        self.inner.close()


class StallingSource:
    def __init__(self, inner, flag: Path):
        self.inner, self.flag = inner, flag

    def read(self):
        while self.flag.exists():
            time.sleep(0.05)
        return self.inner.read()

    def __getattr__(self, name):
        return getattr(self.inner, name)


def twins(fault: str, flag: Path) -> wiring.Twins:
    if fault in ("hang", "nan"):
        def open_model(cfg):
            engine, card, why = wiring.open_model(cfg)
            return FaultyEngine(engine, fault, flag), card, why
        return wiring.Twins(open_model=open_model)
    if fault == "stall":
        return wiring.Twins(open_source=lambda cfg: StallingSource(wiring.open_source(cfg), flag))
    raise SystemExit(f"unknown fault {fault!r}")


if __name__ == "__main__":
    fault, flag, sep, *rest = sys.argv[1:]
    assert sep == "--" and rest[:1] == ["run"], "usage: FAULT FLAG -- run ARGS..."
    args = build_parser().parse_args(rest)
    sys.exit(guarded("run", lambda: wiring.run(args, twins(fault, Path(flag)))))
