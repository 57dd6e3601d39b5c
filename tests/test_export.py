"""Export: ONNX opset >= 17 with dynamic N/H/W, and PyTorch == ONNX Runtime to 1e-4."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch", reason="export needs PyTorch (the [train] extra)")

from edge.modelcard import load_card  # noqa: E402
from models.export import roundtrip_error, to_onnx  # noqa: E402
from models.network import EnhanceNet  # noqa: E402


def test_roundtrip_matches_pytorch(tmp_path):
    torch.manual_seed(3)
    net = EnhanceNet(width=24, blocks=2).eval()
    with torch.no_grad():
        net.tail.weight.mul_(10)
    path = tmp_path / "m.onnx"
    to_onnx(net, path)
    model = onnx.load(str(path))
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    dims = [d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims[0] and dims[2] and dims[3] and model.graph.input[0].type.tensor_type.shape.dim[1].dim_value == 3
    for shape in [(1, 3, 64, 64), (3, 3, 98, 146), (1, 3, 250, 18)]:
        assert roundtrip_error(net, path, shape) <= 1e-4


def test_export_cli_writes_model_card_and_weights(tmp_path):
    from models.train import save_checkpoint
    from tests.conftest import run_cli

    net = EnhanceNet(width=8, blocks=1)
    ck = {"model": net.state_dict(), "net_config": net.config(), "scale": 1.0, "step": 5, "elapsed_s": 3.0,
          "baseline": {"colour_matrix": np.eye(3, 4).tolist(), "unsharp_sigma": 1.0, "unsharp_amount": 0.5}}
    save_checkpoint(tmp_path / "ck.pt", ck)
    r = run_cli("export", tmp_path / "ck.pt", "--out", tmp_path / "out" / "x.onnx", "--pairs", "edge/samples")
    assert r.returncode == 0, r.stderr
    card = load_card(tmp_path / "out" / "x.onnx")
    raw = json.loads((tmp_path / "out" / "x.json").read_text())
    assert card.receptive_field == net.receptive_field() and card.flops_per_pixel == net.flops_per_pixel()
    assert raw["metrics"]["count"] == 4 and set(raw["metrics"]["mean"]) == {"input", "baseline", "model"}
    assert (tmp_path / "out" / "x.pt").is_file()


def test_export_refuses_bad_checkpoint(tmp_path):
    from tests.conftest import run_cli

    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    r = run_cli("export", bad, "--out", tmp_path / "x.onnx")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "bad.pt" in r.stderr
