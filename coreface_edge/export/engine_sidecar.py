"""The JSON sidecar next to a TensorRT engine, and the check that the engine fits this machine.

A serialized engine only runs under the TensorRT version and on the GPU model it was built
for; the sidecar records both (plus precision, batch profile, input contract and the SHA-256
of the source ONNX), so a mismatch is one line that says why and how to rebuild.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..atomic import write_text_atomic
from ..contract import InputContract
from ..errors import CorefaceError
from .trt_plan import parse_version

SIDECAR_SUFFIX = ".json"


@dataclass(frozen=True)
class EngineInfo:
    """Everything the sidecar records about one engine."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: str  # "8.7" on Jetson Orin
    precision: str
    min_batch: int
    opt_batch: int
    max_batch: int
    source_onnx: str
    source_onnx_sha256: str
    contract: InputContract
    strongly_typed: bool = False
    dla_core: int | None = None
    workspace_mb: int | None = None

    def to_json(self) -> str:
        raw = asdict(self)
        raw["contract"] = json.loads(self.contract.to_json())
        return json.dumps(raw, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str) -> "EngineInfo":
        try:
            raw: dict[str, Any] = json.loads(text)
            raw["contract"] = InputContract.from_json(json.dumps(raw["contract"]), source)
            return cls(**raw)
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise CorefaceError(f"{source}: not a valid engine sidecar ({type(exc).__name__}: {exc})") from None


def sidecar_path(engine: str | os.PathLike[str]) -> Path:
    """``model.engine`` -> ``model.engine.json``."""
    engine = Path(engine)
    return engine.with_name(engine.name + SIDECAR_SUFFIX)


def write_sidecar(engine: str | os.PathLike[str], info: EngineInfo) -> Path:
    path = sidecar_path(engine)
    write_text_atomic(path, info.to_json() + "\n")
    return path


def read_sidecar(engine: str | os.PathLike[str]) -> EngineInfo:
    path = sidecar_path(engine)
    if not path.is_file():
        raise CorefaceError(f"{engine}: its sidecar {path.name} is missing; rebuild the engine with `coreface-edge build MODEL.onnx`")
    return EngineInfo.from_json(path.read_text(encoding="utf-8"), str(path))


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def rebuild_command(info: EngineInfo, engine: str | os.PathLike[str]) -> str:
    """The exact ``coreface-edge build`` command that rebuilds ``engine`` on this machine."""
    args = [
        "coreface-edge", "build", info.source_onnx, "-o", str(engine), "--precision", info.precision,
        "--min-batch", str(info.min_batch), "--opt-batch", str(info.opt_batch), "--max-batch", str(info.max_batch),
    ]
    if info.workspace_mb:
        args += ["--workspace-mb", str(info.workspace_mb)]
    if info.dla_core is not None:
        args += ["--dla-core", str(info.dla_core)]
    return shlex.join(args)


def check_compatible(info: EngineInfo, engine: str | os.PathLike[str], trt_version: str, gpu_name: str, compute_capability: str) -> None:
    """Raise one line (why + the rebuild command) unless the engine was built for this TensorRT and GPU.

    TensorRT versions must agree to the patch level (``10.3.0``); the GPU by name and compute
    capability.
    """
    problem = None
    if parse_version(info.tensorrt_version) != parse_version(trt_version):
        problem = f"built with TensorRT {info.tensorrt_version}, this machine has TensorRT {trt_version}"
    elif info.compute_capability != compute_capability or info.gpu_name != gpu_name:
        problem = (
            f"built for {info.gpu_name} (compute {info.compute_capability}), "
            f"this machine has {gpu_name} (compute {compute_capability})"
        )
    if problem:
        raise CorefaceError(f"{engine}: {problem}; rebuild it here: {rebuild_command(info, engine)}")
