"""Which INT8 form to write for a target, chosen from the CPU's instruction set.

Every form is Q/DQ ONNX with symmetric INT8 activations (zero point 0) and per-channel
symmetric INT8 weights -- the explicit-quantization form TensorRT 10 and 11 accept. The
TensorRT form keeps biases in float (TensorRT quantizes only activations and weights); the CPU
form adds ONNX Runtime's default int32 bias Q/DQ. The other difference is ``reduce_range``:
on x86 without VNNI, ONNX Runtime turns symmetric int8 activations into uint8 and its AVX2
u8s8 kernel adds pairs of products in 16 bits, which saturate; 7-bit weights keep those sums
in range (measured in ../shared/notes/measurements.md: cosine 0.973 -> 0.998 on iresnet50).
"""

from __future__ import annotations

import platform
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import CorefaceError
from ..profiling.machine import CPUINFO, parse_cpuinfo

TARGETS = ("tensorrt", "cpu")
VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
S8_TO_U8 = "QDQS8ToU8Transformer"


@dataclass(frozen=True)
class QuantScheme:
    """How to quantize for one target, and how to check it faithfully in ONNX Runtime here.

    ``check_disabled_optimizers``: ORT graph rewrites to switch off for the accuracy check, so
    the check computes what the target computes (TensorRT does exact int8 math; an x86 CPU
    without VNNI would otherwise saturate in the u8s8 kernel and blame the model).
    """

    target: str
    reduce_range: bool
    isa: str
    reason: str
    quantize_bias: bool
    check_disabled_optimizers: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def cpu_isa(flags: list[str] | set[str], machine: str) -> str:
    """``vnni`` (x86 with an int8 dot-product instruction), ``avx2`` (x86 without), ``arm`` or ``other``."""
    machine = machine.lower()
    if machine in ("aarch64", "arm64") or machine.startswith("arm"):
        return "arm"
    if machine in ("x86_64", "amd64", "i686", "i386"):
        return "vnni" if any(f in flags for f in VNNI_FLAGS) else "avx2"
    return "other"


def choose_scheme(target: str, isa: str) -> QuantScheme:
    """The quantization form for ``target`` on a CPU of kind ``isa`` (see :func:`cpu_isa`)."""
    if target not in TARGETS:
        raise CorefaceError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    exact = (S8_TO_U8,) if isa in ("avx2", "other") else ()
    if target == "tensorrt":
        reason = "TensorRT explicit quantization: symmetric int8 activations, per-channel symmetric int8 weights, float bias"
        if exact:
            reason += f"; checked in ONNX Runtime with {S8_TO_U8} off (exact int8 math, as TensorRT computes)"
        return QuantScheme("tensorrt", False, isa, reason, False, exact)
    if isa == "avx2":
        reason = (
            "x86 without VNNI: ONNX Runtime's u8s8 AVX2 kernel saturates 16-bit sums, so weights use reduce_range "
            "(7-bit); symmetric int8 Q/DQ with int32 bias"
        )
        return QuantScheme("cpu", True, isa, reason, True)
    if isa == "other":
        return QuantScheme("cpu", True, isa, "unknown CPU: reduce_range (7-bit weights) as the safe choice", True)
    why = "VNNI accumulates int8 products in 32 bits" if isa == "vnni" else "Arm int8 dot products accumulate in 32 bits"
    return QuantScheme("cpu", False, isa, f"{why}: full 8-bit symmetric weights (the --target tensorrt form plus int32 bias)", True)


def host_isa(cpuinfo: Path = CPUINFO) -> str:
    """The ISA kind of this machine, from ``/proc/cpuinfo`` (``other`` when unreadable)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        text = ""
    return cpu_isa(parse_cpuinfo(text)["isa"], platform.machine())
