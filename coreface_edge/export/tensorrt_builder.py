"""Build a TensorRT engine from an ONNX model (TensorRT 10 and 11), with its JSON sidecar.

Builder + OnnxParser, a workspace pool limit, one optimisation profile over the batch axis, a
persistent timing cache (loaded, then saved back), an optional DLA core with GPU fallback.
The precision path comes from ``trt_plan.plan_build``. tensorrt and pycuda are imported here
only, inside the functions that use them.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..atomic import write_bytes_atomic
from ..contract import CROP_SIZE, InputContract
from ..errors import CorefaceError
from .engine_sidecar import EngineInfo, sha256_file, write_sidecar
from .onnx_meta import asymmetric_qdq, contract_of, graph_precision, load_onnx
from .trt_plan import PYCUDA_MISSING, TENSORRT_MISSING, plan_build


@dataclass(frozen=True)
class BuildOptions:
    precision: str = "fp16"
    min_batch: int = 1
    opt_batch: int = 8
    max_batch: int = 32
    workspace_mb: int | None = 1024
    timing_cache: Path | None = None
    dla_core: int | None = None

    def check(self) -> None:
        if not 1 <= self.min_batch <= self.opt_batch <= self.max_batch:
            raise CorefaceError(f"batch profile must satisfy 1 <= min <= opt <= max, got {self.min_batch}/{self.opt_batch}/{self.max_batch}")
        if self.workspace_mb is not None and self.workspace_mb <= 0:
            raise CorefaceError(f"--workspace-mb must be positive, got {self.workspace_mb}")
        if self.dla_core is not None and self.dla_core < 0:
            raise CorefaceError(f"--dla-core must be >= 0, got {self.dla_core}")
        if self.dla_core is not None and not self.min_batch == self.opt_batch == self.max_batch:
            # TensorRT docs, "DLA Supported Layers and Restrictions": no dynamic dimensions on DLA
            raise CorefaceError(
                f"--dla-core: DLA has no dynamic shapes, so the batch profile must be one size "
                f"(e.g. --min-batch {self.opt_batch} --opt-batch {self.opt_batch} --max-batch {self.opt_batch}), "
                f"got {self.min_batch}/{self.opt_batch}/{self.max_batch}"
            )


@dataclass(frozen=True)
class BuildResult:
    engine: Path
    sidecar: Path
    info: EngineInfo
    seconds: float
    size_bytes: int


def import_tensorrt() -> Any:
    """``import tensorrt``, or the one-line message that says how to get it."""
    try:
        import tensorrt
    except ImportError:
        raise CorefaceError(TENSORRT_MISSING) from None
    return tensorrt


def import_pycuda() -> Any:
    """``pycuda.driver`` (initialised), or the one-line message that says how to get it."""
    try:
        import pycuda.driver as cuda
    except ImportError:
        raise CorefaceError(PYCUDA_MISSING) from None
    cuda.init()
    return cuda


def gpu_identity(cuda: Any, ordinal: int = 0) -> tuple[str, str]:
    """(GPU name, compute capability "major.minor") of CUDA device ``ordinal``."""
    if ordinal >= cuda.Device.count():
        raise CorefaceError(f"CUDA device {ordinal} not found ({cuda.Device.count()} present)")
    device = cuda.Device(ordinal)
    major, minor = device.compute_capability()
    return device.name(), f"{major}.{minor}"


def parser_errors(parser: Any, onnx_path: Path, onnx_nodes: list[Any]) -> str:
    """Every OnnxParser error, each with the ONNX node it concerns, joined on one line."""
    parts = []
    for i in range(parser.num_errors):
        err = parser.get_error(i)
        index = err.node()
        name = err.node_name() if hasattr(err, "node_name") else (onnx_nodes[index].name if 0 <= index < len(onnx_nodes) else "")
        op = err.node_operator() if hasattr(err, "node_operator") else (onnx_nodes[index].op_type if 0 <= index < len(onnx_nodes) else "")
        where = f"node {index} {name!r} ({op})" if index >= 0 else "graph"
        parts.append(f"{where}: {err.code()}: {err.desc()}")
    return f"{onnx_path}: TensorRT cannot parse it: " + "; ".join(parts or ["unknown parser error"])


def _profile_shapes(contract: InputContract, opts: BuildOptions) -> tuple[tuple[int, ...], ...]:
    tail = (CROP_SIZE, CROP_SIZE, 3) if contract.layout == "NHWC" else (3, CROP_SIZE, CROP_SIZE)
    return tuple((b, *tail) for b in (opts.min_batch, opts.opt_batch, opts.max_batch))


def build_engine(onnx_path: str | os.PathLike[str], engine_path: str | os.PathLike[str], opts: BuildOptions) -> BuildResult:
    """Compile ``onnx_path`` into ``engine_path`` (+ sidecar); nothing is written on failure."""
    opts.check()
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    model = load_onnx(onnx_path)
    onnx_precision = graph_precision(model)
    if onnx_precision == "int8" and (node := asymmetric_qdq(model)) is not None:
        raise CorefaceError(
            f"{onnx_path}: Q/DQ node {node!r} is asymmetric (UINT8 or non-zero zero point); TensorRT needs symmetric INT8 Q/DQ: "
            "quantize with `coreface-edge calibrate quantize`"
        )
    contract = contract_of(model, str(onnx_path)) or _foreign_contract(model, onnx_path)
    nodes = list(model.graph.node)
    batch_dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    if batch_dim.HasField("dim_value") and {opts.min_batch, opts.max_batch} != {batch_dim.dim_value}:
        raise CorefaceError(f"{onnx_path}: the batch axis is fixed at {batch_dim.dim_value}; re-export with a dynamic batch or build with that batch")
    trt = import_tensorrt()
    plan = plan_build(trt.__version__, opts.precision, onnx_precision, str(onnx_path), dla=opts.dla_core is not None)
    cuda = import_pycuda()
    gpu_name, capability = gpu_identity(cuda)

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    for name in plan.network_flags:
        flags |= 1 << int(getattr(trt.NetworkDefinitionCreationFlag, name))
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        raise CorefaceError(parser_errors(parser, onnx_path, nodes))

    config = builder.create_builder_config()
    if opts.workspace_mb:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, opts.workspace_mb << 20)
    for name in plan.builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, name))
    if opts.dla_core is not None:
        if opts.dla_core >= builder.num_DLA_cores:
            raise CorefaceError(f"--dla-core {opts.dla_core}: this device has {builder.num_DLA_cores} DLA core(s)")
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = opts.dla_core
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)

    profile = builder.create_optimization_profile()
    profile.set_shape(network.get_input(0).name, *_profile_shapes(contract, opts))
    config.add_optimization_profile(profile)

    _attach_timing_cache(config, opts.timing_cache)

    start = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - start
    if serialized is None:
        raise CorefaceError(f"{onnx_path}: TensorRT failed to build a {opts.precision} engine (see the TensorRT messages above)")
    data = bytes(serialized)
    write_bytes_atomic(engine_path, data)
    if opts.timing_cache:
        write_bytes_atomic(opts.timing_cache, bytes(config.get_timing_cache().serialize()))
    info = EngineInfo(
        tensorrt_version=trt.__version__,
        gpu_name=gpu_name,
        compute_capability=capability,
        precision=opts.precision,
        min_batch=opts.min_batch,
        opt_batch=opts.opt_batch,
        max_batch=opts.max_batch,
        source_onnx=str(onnx_path),
        source_onnx_sha256=sha256_file(onnx_path),
        contract=contract,
        strongly_typed=plan.strongly_typed,
        dla_core=opts.dla_core,
        workspace_mb=opts.workspace_mb,
    )
    sidecar = write_sidecar(engine_path, info)
    return BuildResult(engine_path, sidecar, info, seconds, len(data))


def _attach_timing_cache(config: Any, path: Path | None) -> None:
    """Give the builder config the timing cache stored at ``path``, or a fresh one.

    A cache from another TensorRT version or device is refused by ``set_timing_cache``
    (``ignore_mismatch=False``) and an unreadable one makes ``create_timing_cache`` fail: both
    start fresh, and the fresh cache is saved back after the build.
    """
    blob = path.read_bytes() if path is not None and path.is_file() else b""
    if blob:
        try:
            cache = config.create_timing_cache(blob)
        except (RuntimeError, TypeError, ValueError):
            cache = None
        if cache is not None and config.set_timing_cache(cache, ignore_mismatch=False):
            return
    config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)


def _foreign_contract(model: Any, onnx_path: Path) -> InputContract:
    """Contract of an ONNX without coreface-edge metadata (same rule as the ONNX Runtime backend)."""
    from ..contract import infer_contract

    inp, out = model.graph.input[0], model.graph.output[0]
    in_dims = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in inp.type.tensor_type.shape.dim]
    out_dims = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in out.type.tensor_type.shape.dim]
    elem = {1: "tensor(float)", 10: "tensor(float16)"}.get(inp.type.tensor_type.elem_type, "other")
    return infer_contract(inp.name, in_dims, elem, out_dims, str(onnx_path))
