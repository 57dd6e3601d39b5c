"""Export: ONNX opset >= 17 with dynamic N/H/W, and PyTorch == ONNX Runtime to 1e-4."""
from __future__ import annotations

import onnx
import pytest

torch = pytest.importorskip("torch", reason="export needs PyTorch (the [train] extra)")

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


def test_the_recommended_tile_keeps_a_1080p_frame_within_its_halo_budget():
    """The card's tile: the smallest multiple of 8 whose halo overhead on a 1920x1080 frame is at most 1.07
    (README, "Memory and the capture path"); the shipped card and the daemon's default follow it."""
    from edge import config, tiling
    from edge.modelcard import DEFAULT_MODEL, load_card
    from models.export import recommended_tile

    net = EnhanceNet()
    tile = recommended_tile(net.receptive_field(), net.alignment)
    assert tile % 8 == 0
    assert tiling.plan(1080, 1920, tile, net.receptive_field(), net.alignment).overhead <= 1.07
    assert tiling.plan(1080, 1920, tile - 8, net.receptive_field(), net.alignment).overhead > 1.07
    assert load_card(DEFAULT_MODEL).recommended_tile == tile == config.load()["model"]["tile"] == 744
