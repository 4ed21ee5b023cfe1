"""TensorRT engine backend (TensorRT 10/11 name-based I/O, pycuda memory and stream).

Page-locked host buffers and device buffers are allocated once for the profile's max batch and
reused; each call copies host->device asynchronously on one stream, sets the batch shape with
``set_input_shape``, runs ``execute_async_v3`` and copies back. CUDA events around the three
steps give ``timings`` (H2D / compute / D2H milliseconds of the last call) for the profiler.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CorefaceError
from ..export.engine_sidecar import check_compatible, read_sidecar
from ..export.tensorrt_builder import gpu_identity, import_pycuda, import_tensorrt
from .base import contract_info


def cuda_ordinal(device: int | str) -> int:
    """``0``, ``"0"``, ``"cuda"`` or ``"cuda:1"`` -> the CUDA device ordinal."""
    text = str(device).strip().lower()
    text = text[len("cuda"):].lstrip(":") if text.startswith("cuda") else text
    if not text:
        return 0
    if not text.isdigit():
        raise CorefaceError(f"TensorRT runs on a CUDA device; got device {device!r} (use 0, cuda or cuda:N)")
    return int(text)


class TensorRTBackend:
    """A serialized TensorRT engine with its sidecar (``model.engine`` + ``model.engine.json``)."""

    name = "tensorrt"

    def __init__(self, path: str | os.PathLike[str], device: int | str = 0) -> None:
        self.path = Path(path)
        device = cuda_ordinal(device)
        self.sidecar = read_sidecar(self.path)
        self.contract = self.sidecar.contract
        trt = import_tensorrt()
        cuda = import_pycuda()
        gpu_name, capability = gpu_identity(cuda, device)
        check_compatible(self.sidecar, self.path, trt.__version__, gpu_name, capability)
        self._cuda = cuda
        self._ctx = cuda.Device(device).retain_primary_context()
        self._ctx.push()
        try:
            self._load(trt)
        finally:
            self._ctx.pop()
        self.gpu_name = gpu_name
        self.timings: dict[str, float] | None = None

    def _load(self, trt: Any) -> None:
        cuda = self._cuda
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise CorefaceError(f"{self.path}: TensorRT could not deserialize this engine (corrupt file?)")
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or len(outputs) != 1:
            raise CorefaceError(f"{self.path}: expected one input and one output tensor, found {inputs} -> {outputs}")
        self._in, self._out = inputs[0], outputs[0]
        min_shape, _, max_shape = self.engine.get_tensor_profile_shape(self._in, 0)
        self.min_batch, self.max_batch = int(min_shape[0]), int(max_shape[0])
        self.context = self.engine.create_execution_context()
        in_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(self._in)))
        out_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(self._out)))
        self.context.set_input_shape(self._in, tuple(max_shape))
        out_shape = tuple(self.context.get_tensor_shape(self._out))
        self._host_in = cuda.pagelocked_empty(tuple(max_shape), in_dtype)
        self._host_out = cuda.pagelocked_empty(out_shape, out_dtype)
        self._dev_in = cuda.mem_alloc(self._host_in.nbytes)
        self._dev_out = cuda.mem_alloc(self._host_out.nbytes)
        self.context.set_tensor_address(self._in, int(self._dev_in))
        self.context.set_tensor_address(self._out, int(self._dev_out))
        self._stream = cuda.Stream()
        self._events = [cuda.Event() for _ in range(4)]

    def embed(self, crops: np.ndarray) -> np.ndarray:
        """uint8 BGR ``(N, 112, 112, 3)`` -> float32 ``(N, D)``; N above the profile max runs in chunks."""
        x = self.contract.model_input(crops)
        totals = {"h2d_ms": 0.0, "compute_ms": 0.0, "d2h_ms": 0.0}
        parts = []
        self._ctx.push()
        try:
            for start in range(0, x.shape[0], self.max_batch):
                out, times = self._run(x[start : start + self.max_batch])
                parts.append(out)
                for key, value in times.items():
                    totals[key] += value
        finally:
            self._ctx.pop()
        self.timings = totals
        if not parts:
            return np.zeros((0, self.contract.embedding_size), np.float32)
        return np.concatenate(parts)

    def _run(self, x: np.ndarray) -> tuple[np.ndarray, dict[str, float]]:
        n = x.shape[0]
        batch = max(n, self.min_batch)  # below the profile minimum: pad with zeros
        self._host_in[:n] = x
        self._host_in[n:batch] = 0
        if not self.context.set_input_shape(self._in, (batch, *self._host_in.shape[1:])):
            raise CorefaceError(f"{self.path}: batch {batch} is outside the engine profile {self.min_batch}..{self.max_batch}")
        cuda, stream, (e0, e1, e2, e3) = self._cuda, self._stream, self._events
        e0.record(stream)
        cuda.memcpy_htod_async(self._dev_in, self._host_in[:batch], stream)
        e1.record(stream)
        if not self.context.execute_async_v3(stream.handle):
            raise CorefaceError(f"{self.path}: TensorRT execution failed")
        e2.record(stream)
        cuda.memcpy_dtoh_async(self._host_out[:batch], self._dev_out, stream)
        e3.record(stream)
        stream.synchronize()
        times = {"h2d_ms": e1.time_since(e0), "compute_ms": e2.time_since(e1), "d2h_ms": e3.time_since(e2)}
        return np.array(self._host_out[:n], dtype=np.float32), times

    def info(self) -> dict[str, Any]:
        meta = self.sidecar
        return {
            "backend": self.name,
            "runtime": f"tensorrt {meta.tensorrt_version}",
            "device": f"{self.gpu_name} (compute {meta.compute_capability})" + (f", DLA core {meta.dla_core}" if meta.dla_core is not None else ""),
            "precision": meta.precision,
            "batch_profile": f"{meta.min_batch}/{meta.opt_batch}/{meta.max_batch}",
            "file": str(self.path),
            "source_onnx_sha256": meta.source_onnx_sha256,
            **contract_info(self.contract),
        }
