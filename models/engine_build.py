"""`phonescope engine build|check|stamp`: the FP16 TensorRT engine, built on the device.

Precision comes from the network (TensorRT 11 dropped the FP16 builder flag):
the FP32 ONNX is converted to FP16 with onnxconverter-common, its inputs and
outputs kept float32, wrapped for pixel I/O (edge/engines/pixels.py: UINT8
N x H x W x 3 in and out, and the non-finite flag) and parsed into a
strongly typed network. Only where
that fails on TensorRT 10 does the build fall back to the FP32 network with
the FP16 builder flag. One optimisation profile covers batches 1..[model]
batch of [model] tile squares; the timing cache persists between builds, the
engine is written atomically with its metadata beside it. Needs TensorRT
(and a GPU), not PyTorch.
"""
from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

from edge.engines import meta as M
from edge.engines import pixels
from edge.errors import UserError
from edge.imageio import atomic_write
from edge.modelcard import ModelError, configured_model, load_card

WORKSPACE_BYTES = 1 << 30


def log(msg: str) -> None:
    print(f"engine: {msg}", file=sys.stderr, flush=True)


def pixel_onnx(onnx_path: str | Path) -> bytes:
    """The FP32 ONNX model wrapped for pixel I/O (the FP16 builder flag's fallback network)."""
    import onnx

    return pixels.wrap(onnx.load(str(onnx_path)), "uint8").SerializeToString()


def fp16_network(onnx_path: str | Path):
    """The ONNX model (a ModelProto) with FP16 weights and activations, float32 inputs/outputs."""
    import onnx
    try:
        from onnxconverter_common import float16
    except ImportError:
        raise UserError("building an engine needs onnxconverter-common (pip install 'phonescope[jetson]' "
                        "or pip install onnxconverter-common)") from None

    model = onnx.load(str(onnx_path))
    import warnings

    with warnings.catch_warnings():  # "the float32 number 1e-08 will be truncated" for tiny weights
        warnings.simplefilter("ignore")
        return float16.convert_float_to_float16(model, keep_io_types=True)


def fp16_onnx(onnx_path: str | Path) -> bytes:
    """What the strongly typed build parses: the FP16 network wrapped for pixel I/O (UINT8 in and out)."""
    return pixels.wrap(fp16_network(onnx_path), "uint8").SerializeToString()


def _settings(args, cfg_model: dict) -> M.Settings:
    tile = args.tile if args.tile is not None else cfg_model["tile"]
    batch = args.batch if args.batch is not None else cfg_model["batch"]
    try:
        return M.settings_from(tile, batch)
    except ValueError as e:
        raise UserError(str(e), 2) from None


def _context(args):
    """(onnx path, card, settings) from --model/--config and the config's [model] section."""
    from edge import config

    cfg = config.load(args.config, {})
    model = Path(args.model) if args.model else configured_model(cfg)
    try:
        card = load_card(model)
    except ModelError as e:
        raise UserError(str(e)) from None
    return model, card, _settings(args, cfg["model"])


def _machine() -> M.Machine:
    machine, why = M.probe_machine()
    if machine is None:
        raise UserError(f"cannot build a TensorRT engine here: {why}")
    return machine


def _progress_monitor(trt):
    """A TensorRT 10 IProgressMonitor that logs the build's top-level phases, or None."""
    base = getattr(trt, "IProgressMonitor", None)
    if base is None:
        return None

    class Progress(base):
        def __init__(self):
            base.__init__(self)
            self.t0 = time.monotonic()
            self.depth: dict[str, int] = {}

        def phase_start(self, phase_name, parent_phase, num_steps):
            self.depth[phase_name] = 0 if parent_phase is None else self.depth.get(parent_phase, 0) + 1
            if self.depth[phase_name] <= 1:
                log(f"{time.monotonic() - self.t0:6.1f} s  {'  ' * self.depth[phase_name]}{phase_name}"
                    f" ({num_steps} steps)")

        def step_complete(self, phase_name, step):
            return True  # keep building

        def phase_finish(self, phase_name):
            self.depth.pop(phase_name, None)

    return Progress()


def build(onnx_path: Path, engine_path: Path, card_sha256: str, settings: M.Settings) -> dict:
    """Build and write the engine and its metadata; returns the metadata."""
    try:
        import tensorrt as trt
    except ImportError:
        raise UserError("cannot build a TensorRT engine here: TensorRT is not installed") from None
    machine = _machine()
    th, tw = settings.tile
    log(f"building {engine_path.name} from {onnx_path.name}: FP16, {th}x{tw} tiles, batch 1..{settings.batch}, "
        f"TensorRT {machine.tensorrt_version} on {machine.gpu_name} (sm {machine.compute_capability}); "
        f"first builds take minutes on a Jetson")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    if builder is None:
        raise UserError("TensorRT cannot create a builder (no usable GPU?)")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)

    how = ""
    network = parser = None
    strongly = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    if strongly is not None:
        network = builder.create_network(1 << int(strongly))
        parser = trt.OnnxParser(network, logger)
        if parser.parse(fp16_onnx(onnx_path), str(onnx_path)):
            how = "strongly typed network from the FP16 ONNX"
        else:
            errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            log(f"strongly typed FP16 network failed ({errs[:300]}); trying the FP16 builder flag")
            network = None
    if network is None:
        if not hasattr(trt.BuilderFlag, "FP16"):
            raise UserError("cannot build: the FP16 ONNX does not parse as a strongly typed network and this "
                            f"TensorRT ({trt.__version__}) has no FP16 builder flag")
        network = builder.create_network(0)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse(pixel_onnx(onnx_path), str(onnx_path)):
            errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise UserError(f"TensorRT cannot parse {onnx_path}: {errs[:300]}")
        config.set_flag(trt.BuilderFlag.FP16)
        how = "FP32 network with the FP16 builder flag (TensorRT 10 fallback)"
    if network.num_inputs != 1 or network.num_outputs != 2:
        raise UserError(f"{onnx_path}: expected one input and two outputs (pixels, non-finite flag)")
    inp = network.get_input(0)
    profile = builder.create_optimization_profile()
    profile.set_shape(inp.name, (1, th, tw, 3), (settings.batch, th, tw, 3), (settings.batch, th, tw, 3))
    config.add_optimization_profile(profile)

    cache_path = engine_path.parent / f"timing-{trt.__version__}.cache"   # a cache is per TensorRT version
    blob = cache_path.read_bytes() if cache_path.is_file() else b""
    cache = config.create_timing_cache(blob)
    if not config.set_timing_cache(cache, ignore_mismatch=False):
        log(f"{cache_path.name} is from another device or TensorRT; starting a new timing cache")
        config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)
    monitor = _progress_monitor(trt)
    if monitor is not None:
        config.progress_monitor = monitor

    t0 = time.monotonic()
    done = threading.Event()

    def heartbeat():  # a line a minute, so a long first build is visibly alive
        while not done.wait(60):
            log(f"still building ({time.monotonic() - t0:.0f} s)")

    threading.Thread(target=heartbeat, daemon=True).start()
    try:
        plan = builder.build_serialized_network(network, config)
    finally:
        done.set()
    if plan is None:
        raise UserError("TensorRT failed to build the engine (see the TensorRT messages above)")
    data = bytes(plan)
    runtime = trt.Runtime(logger)
    if runtime.deserialize_cuda_engine(data) is None:
        raise UserError("the engine just built does not deserialize; not written")
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    M.meta_path(engine_path).unlink(missing_ok=True)  # never pair old metadata with a new plan
    atomic_write(engine_path, data)
    info = M.make_meta(card_sha256, machine, settings, onnx=onnx_path.name, network=how,
                       onnxconverter_common=M.converter_version(),
                       build_seconds=round(time.monotonic() - t0, 1), size_bytes=len(data))
    # the metadata last: it is what the daemon and make (its target) take as "built", so a build that dies
    # after the plan leaves a plan without metadata, which both see as needing a rebuild
    atomic_write(M.meta_path(engine_path), json.dumps(info, indent=2).encode())
    atomic_write(cache_path, bytes(config.get_timing_cache().serialize()))
    log(f"wrote {engine_path} ({len(data) / 1e6:.1f} MB, {how}) in {time.monotonic() - t0:.0f} s")
    return info


def run(args) -> int:
    model, card, settings = _context(args)
    engine = Path(getattr(args, "out", None) or M.engine_path(model))
    if args.engine_command == "check":
        machine, why = M.probe_machine()
        f = M.freshness(engine, card.onnx_sha256, machine, settings)
        note = "" if machine else f" (machine not compared: {why})"
        print(f"{engine}: {f}{note}")
        if not f.fresh:
            print(f"phonescope engine: {M.REBUILD_HINT}", file=sys.stderr)
        return 0 if f.fresh else 1
    machine = _machine()
    if args.engine_command == "stamp":
        changed = M.write_stamp(args.file, M.stamp_text(card.onnx_sha256, machine, settings))
        log(f"{args.file}: {'changed, the engine will be rebuilt' if changed else 'unchanged'}")
        return 0
    f = M.freshness(engine, card.onnx_sha256, machine, settings)
    if f.fresh and not args.force:
        log(f"{engine} is fresh; nothing to do (--force rebuilds)")
        return 0
    if f.state == "stale":
        log(f"{engine} is {f}")
    build(model, engine, card.onnx_sha256, settings)
    return 0
