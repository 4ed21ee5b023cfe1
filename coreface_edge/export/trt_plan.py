"""Which TensorRT build path to take: a pure decision from the TensorRT version, precision and ONNX.

TensorRT 10 (JetPack 6 ships 10.3) is weakly typed by default: FP16 comes from the FP16 builder
flag, INT8 from a Q/DQ ONNX plus the INT8 flag (explicit quantization). TensorRT 11 removed the
precision flags; every network is strongly typed, so the precision is whatever the ONNX
computes in: an FP16 ONNX with FP32 I/O for FP16, the Q/DQ ONNX for INT8. The implicit INT8
calibrator (IInt8Calibrator) is never used: 10 deprecated it and 11 removed it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import CorefaceError

PRECISIONS = ("fp32", "fp16", "int8")
TENSORRT_MISSING = (
    "TensorRT is not installed: pip install 'coreface-edge[tensorrt]' (x86) "
    "or, on a Jetson, use JetPack's python3-libnvinfer"
)
PYCUDA_MISSING = "pycuda is not installed: pip install 'coreface-edge[tensorrt]' (on a Jetson: pip install pycuda)"


@dataclass(frozen=True)
class BuildPlan:
    """What the builder sets: network creation flags and builder flags, by their TensorRT enum names."""

    trt_major: int
    precision: str
    network_flags: tuple[str, ...]
    builder_flags: tuple[str, ...]

    @property
    def strongly_typed(self) -> bool:
        return self.trt_major >= 11 or "STRONGLY_TYPED" in self.network_flags


def parse_version(version: str) -> tuple[int, int, int]:
    """``"10.3.0.30"`` -> ``(10, 3, 0)``."""
    match = re.match(r"^(\d+)\.(\d+)(?:\.(\d+))?", version.strip())
    if not match:
        raise CorefaceError(f"cannot read the TensorRT version {version!r}")
    major, minor, patch = match.groups()
    return int(major), int(minor), int(patch or 0)


def plan_build(trt_version: str, precision: str, onnx_precision: str, onnx_name: str = "model", dla: bool = False) -> BuildPlan:
    """Decide the build path; a combination that cannot work is a one-line CorefaceError.

    ``onnx_precision`` is what the graph computes in (``export.onnx_meta.graph_precision``):
    ``fp32``, ``fp16`` (an FP16 ONNX) or ``int8`` (Q/DQ nodes).
    """
    if precision not in PRECISIONS:
        raise CorefaceError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    major = parse_version(trt_version)[0]
    if major < 10:
        raise CorefaceError(f"TensorRT {trt_version} is too old: coreface-edge builds with TensorRT 10 (JetPack 6) or 11 (JetPack 7)")
    if dla and precision == "fp32":
        raise CorefaceError("DLA runs FP16 and INT8 only: build with --precision fp16 or int8, or drop --dla-core")
    if precision == "int8" and onnx_precision != "int8":
        raise CorefaceError(
            f"{onnx_name}: --precision int8 needs a Q/DQ (explicitly quantized) ONNX from `coreface-edge calibrate quantize`; "
            "the implicit INT8 calibrator is not supported (deprecated in TensorRT 10, removed in 11)"
        )
    if onnx_precision == "int8" and precision != "int8":
        raise CorefaceError(f"{onnx_name}: this is a Q/DQ INT8 ONNX; build it with --precision int8")
    if onnx_precision == "fp16" and precision != "fp16":
        raise CorefaceError(f"{onnx_name}: this is an FP16 ONNX; build it with --precision fp16")
    if major >= 11:
        if precision == "fp16" and onnx_precision != "fp16":
            raise CorefaceError(
                f"{onnx_name}: TensorRT {trt_version} has no FP16 builder flag (networks are strongly typed); "
                "give it an FP16 ONNX with FP32 I/O from `coreface-edge calibrate fp16` instead"
            )
        return BuildPlan(major, precision, (), ())
    if precision == "fp16":
        if onnx_precision == "fp16":
            return BuildPlan(major, precision, ("STRONGLY_TYPED",), ())
        return BuildPlan(major, precision, (), ("FP16",))
    if precision == "int8":
        return BuildPlan(major, precision, (), ("INT8", "FP16"))
    return BuildPlan(major, precision, (), ())
