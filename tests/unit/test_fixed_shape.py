"""Engines built for one tile shape (TensorRT's profile min = opt = max), on ONNX Runtime with a model whose
dimensions are fixed: the code path a TensorRT engine takes, runnable here.

An image smaller than the tile is padded up to it (reflect, bottom/right) and cropped: the top and left
edges and everything farther than the receptive field from the padded edges equal the dynamic model's
output; the padded edges are continued as the halo's context would be.
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest

from edge.enhancer import Enhancer
from edge.inference import self_test
from edge.modelcard import card_path, sha256_file
from tests.helpers import sample_rgb


def fixed_copy(model, out, h, w, n=None):
    """The same network with its input and output fixed to N x 3 x h x w (N dynamic unless given)."""
    m = onnx.load(str(model))
    for t in (m.graph.input[0], m.graph.output[0]):
        dims = t.type.tensor_type.shape.dim
        for i, v in ((2, h), (3, w)) + (((0, n),) if n else ()):
            dims[i].ClearField("dim_param")
            dims[i].dim_value = v
    onnx.save(m, str(out))
    card = json.loads(card_path(model).read_text())
    card["onnx_sha256"] = sha256_file(out)
    card_path(out).write_text(json.dumps(card))
    return out


@pytest.fixture(scope="module")
def models(tiny_model, tmp_path_factory):
    d = tmp_path_factory.mktemp("fixed")
    shutil.copy(tiny_model, d / "dynamic.onnx")
    shutil.copy(card_path(tiny_model), d / "dynamic.json")
    dynamic, _ = Enhancer.open(d / "dynamic.onnx", "onnxruntime", tile=0)
    fixed, _ = Enhancer.open(fixed_copy(tiny_model, d / "fixed.onnx", 128, 128), "onnxruntime")
    batch2, _ = Enhancer.open(fixed_copy(tiny_model, d / "fixed2.onnx", 128, 128, n=2), "onnxruntime", batch=4)
    return dynamic, fixed, batch2


def test_the_engine_reports_its_fixed_shape(models):
    _, fixed, batch2 = models
    assert fixed.engine.spec.fixed_shape == (128, 128) and fixed.tile == (128, 128)
    assert batch2.engine.spec.max_batch == 2 and batch2.batch == 2


@pytest.mark.parametrize("h, w", [(75, 100), (96, 128), (100, 640), (300, 90), (1, 1)])
def test_smaller_than_the_tile_is_padded_up_and_cropped(models, h, w):
    dynamic, fixed, _ = models
    img = np.ascontiguousarray(sample_rgb()[:h, :w])
    out, ref = fixed.enhance(img), dynamic.enhance(img)
    assert out.shape == ref.shape == (h, w, 3)
    r = fixed.card.receptive_field
    far = (slice(0, max(0, h - r) if h < 128 else h), slice(0, max(0, w - r) if w < 128 else w))
    if out[far].size:
        assert np.abs(out[far] - ref[far]).max() <= 1e-4, "away from the padded edges: the dynamic model's pixels"
    assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1


def test_larger_images_tile_exactly_and_short_batches_fill_a_fixed_batch(models):
    dynamic, fixed, batch2 = models
    img = np.ascontiguousarray(sample_rgb()[:301, :419])      # 3 x 4 windows: the last batch is short
    ref = dynamic.enhance(img)
    assert np.abs(fixed.enhance(img) - ref).max() <= 1e-4
    assert np.abs(batch2.enhance(img) - ref).max() <= 1e-4


def test_the_daemon_self_test_runs_on_a_fixed_engine(models):
    """The 96x128 self-test crop once met a 512x512 engine and refused to start (exit 78)."""
    _, fixed, _ = models
    self_test(fixed)
