"""Shared fixtures: real models exported through the real export path."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "edge" / "samples"


def export_random_model(path: Path, width=16, blocks=4, scale=1.0, seed=0, gain=8.0) -> Path:
    """A randomly initialised EnhanceNet, exported with the production export code."""
    torch = pytest.importorskip("torch", reason="exporting a model needs PyTorch (the [train] extra)")
    from edge.modelcard import card_path
    from models.export import build_card, to_onnx
    from models.network import EnhanceNet

    torch.manual_seed(seed)
    net = EnhanceNet(width=width, blocks=blocks).eval()
    with torch.no_grad():  # make the learned branch matter, so tiling mistakes would show
        net.tail.weight.mul_(gain)
    to_onnx(net, path)
    card = build_card(net, {"scale": scale}, path.stem, "0.0.1", path)
    card_path(path).write_text(json.dumps(card))
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return export_random_model(tmp_path_factory.mktemp("model") / "tiny.onnx")


@pytest.fixture(scope="session")
def scaled_model(tmp_path_factory) -> Path:
    return export_random_model(tmp_path_factory.mktemp("model15") / "scaled.onnx", width=8, blocks=1, scale=1.5)


def run_cli(*args, env=None, timeout=600, cwd=None) -> subprocess.CompletedProcess:
    e = dict(os.environ)
    e.update(env or {})
    e.pop("PHONESCOPE_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "edge.cli", *map(str, args)], capture_output=True, text=True,
                          env=e, timeout=timeout, cwd=cwd or ROOT)


def sample_rgb(name="BloodImage_00004") -> np.ndarray:
    from edge.imageio import read_image
    return read_image(SAMPLES / "phone" / f"{name}.jpg")[0]
