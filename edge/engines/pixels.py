"""Pixel I/O inside the graph: the network wrapped to take and give frames' own pixels.

The shipped ONNX maps float NCHW RGB in [0, 1] to the same. A kiosk's frames
are uint8 H x W x 3, and turning them into float on the host (4 bytes a
sample), transposing, clipping and rounding the result back made several
full-frame float copies per capture. Wrapped, the engine takes N x H x W x 3
uint8 tiles cut straight from the frame and returns uint8: Cast, scale and
transpose before the network, transpose, clip, round and Cast after it, all
inside the graph (on a GPU: on the device). Frames with more than 8 bits go
in and out as FP16 in [0, 1] instead (11 significant bits).

A second output, `nonfinite`, is 1 for a tile whose network output held NaN
or an infinity (the clip would hide them): the engine refuses such a result.
It is IsNaN(y - y), which is true for both, with ops TensorRT 10.3 parses
(IsInf arrived later); TensorRT takes UINT8 only as a network input or
output tensor, which is where it is here.
"""
from __future__ import annotations

import numpy as np

PIXEL_TYPES = ("uint8", "float16")
INPUT, OUTPUT, NONFINITE = "pixels", "enhanced", "nonfinite"
FULL_SCALE = {"uint8": 255.0, "float16": 1.0}


def wrap(model, pixel: str = "uint8"):
    """onnx.ModelProto (one 4-D float NCHW input and output) -> the pixel-I/O model (a new ModelProto)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if pixel not in PIXEL_TYPES:
        raise ValueError(f"pixel type {pixel!r}: expected one of {PIXEL_TYPES}")
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    inits = {i.name for i in g.initializer}
    inputs = [i for i in g.input if i.name not in inits]
    if len(inputs) != 1 or len(g.output) != 1 or len(inputs[0].type.tensor_type.shape.dim) != 4:
        raise ValueError("expected a model with one 4-D input and one output")
    opset = next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < 11:
        raise ValueError(f"opset {opset} is too old for the pixel wrapper (needs 11: Round, Clip with inputs)")
    x_in, y_out = inputs[0], g.output[0]
    x_type, y_type = x_in.type.tensor_type.elem_type, y_out.type.tensor_type.elem_type
    elem = TensorProto.UINT8 if pixel == "uint8" else TensorProto.FLOAT16
    full = FULL_SCALE[pixel]
    p = "pixels/"

    def const(name: str, value, dtype=np.float32) -> str:
        g.initializer.append(numpy_helper.from_array(np.asarray(value, dtype), p + name))
        return p + name

    def node(op: str, ins: list[str], out: str, **attrs) -> str:
        return helper.make_node(op, ins, [out], name=p + out.removeprefix(p), **attrs), out

    pre, post = [], []

    def add(nodes: list, op: str, ins: list[str], out: str, **attrs) -> str:
        n, name = node(op, ins, out, **attrs)
        nodes.append(n)
        return name

    # before the network: N x H x W x 3 pixels -> float [0, 1] N x 3 x H x W under the network's input name
    t = add(pre, "Cast", [INPUT], p + "float", to=TensorProto.FLOAT)
    if full != 1.0:
        t = add(pre, "Mul", [t, const("inv_full", 1.0 / full)], p + "unit")
    if x_type != TensorProto.FLOAT:
        t = add(pre, "Cast", [t], p + "net_type", to=x_type)
    add(pre, "Transpose", [t], x_in.name, perm=[0, 3, 1, 2])
    # after it: clip, scale, round, cast; and the non-finite flag per tile
    y = y_out.name
    if y_type != TensorProto.FLOAT:
        y = add(post, "Cast", [y], p + "out_float", to=TensorProto.FLOAT)
    t = add(post, "Transpose", [y], p + "nhwc", perm=[0, 2, 3, 1])
    t = add(post, "Clip", [t, const("zero", 0.0), const("one", 1.0)], p + "clipped")
    if full != 1.0:
        t = add(post, "Mul", [t, const("full", full)], p + "scaled")
        t = add(post, "Round", [t], p + "rounded")
    add(post, "Cast", [t], OUTPUT, to=elem)
    d = add(post, "Sub", [y, y], p + "zero_if_finite")
    d = add(post, "IsNaN", [d], p + "nan")
    d = add(post, "Cast", [d], p + "nan_float", to=TensorProto.FLOAT)
    if opset >= 18:
        add(post, "ReduceMax", [d, const("axes", [1, 2, 3], np.int64)], NONFINITE, keepdims=0)
    else:
        add(post, "ReduceMax", [d], NONFINITE, axes=[1, 2, 3], keepdims=0)

    nodes = pre + list(g.node) + post
    del g.node[:]
    g.node.extend(nodes)

    def dims(vi, order):
        ds = vi.type.tensor_type.shape.dim
        return [ds[i].dim_value if ds[i].HasField("dim_value") else (ds[i].dim_param or None) for i in order]

    nhwc = [0, 2, 3, 1]
    new_in = helper.make_tensor_value_info(INPUT, elem, dims(x_in, nhwc))
    new_out = helper.make_tensor_value_info(OUTPUT, elem, dims(y_out, nhwc))
    flag = helper.make_tensor_value_info(NONFINITE, TensorProto.FLOAT, dims(y_out, [0]))
    keep_inputs = [i for i in g.input if i.name in inits]
    del g.input[:]
    g.input.extend([new_in] + keep_inputs)
    del g.output[:]
    g.output.extend([new_out, flag])
    onnx.checker.check_model(m)
    return m


def quantize(rgb: np.ndarray, pixel: str = "uint8") -> np.ndarray:
    """Float RGB [0, 1] -> pixels of the given type (what `enhance` and the tools feed the engine)."""
    x = np.clip(rgb, 0.0, 1.0)
    if pixel == "uint8":
        return np.round(x * 255.0).astype(np.uint8)
    return x.astype(np.float16)


def to_float(px: np.ndarray) -> np.ndarray:
    """Pixels (uint8, uint16 or float16) -> float32 RGB [0, 1]."""
    if px.dtype == np.uint8:
        return px.astype(np.float32) / 255.0
    if px.dtype == np.uint16:
        return px.astype(np.float32) / 65535.0
    return px.astype(np.float32)
