"""`phonescope export` as a command: model card and weights, a bad checkpoint refused in one line."""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="export needs PyTorch (the [train] extra)")

from edge.modelcard import load_card  # noqa: E402
from models.network import EnhanceNet  # noqa: E402
from tests.helpers import run_cli  # noqa: E402


def test_export_cli_writes_model_card_and_weights(tmp_path):
    from models.train import save_checkpoint
    net = EnhanceNet(width=8, blocks=1)
    ck = {"model": net.state_dict(), "net_config": net.config(), "scale": 1.0, "step": 5, "elapsed_s": 3.0,
          "baseline": {"colour_matrix": np.eye(3, 4).tolist(), "unsharp_sigma": 1.0, "unsharp_amount": 0.5}}
    save_checkpoint(tmp_path / "ck.pt", ck)
    r = run_cli("export", tmp_path / "ck.pt", "--out", tmp_path / "out" / "x.onnx", "--pairs", "edge/samples")
    assert r.returncode == 0, r.stderr
    card = load_card(tmp_path / "out" / "x.onnx")
    raw = json.loads((tmp_path / "out" / "x.json").read_text())
    assert card.receptive_field == net.receptive_field() and card.flops_per_pixel == net.flops_per_pixel()
    assert raw["metrics"]["count"] == 4 and set(raw["metrics"]["mean"]) == {"input", "baseline", "oracle_baseline", "model"}
    assert (tmp_path / "out" / "x.pt").is_file()


def test_export_refuses_bad_checkpoint(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    r = run_cli("export", bad, "--out", tmp_path / "x.onnx")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "bad.pt" in r.stderr
