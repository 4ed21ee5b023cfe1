"""ONNX Runtime backend: CPU by default, CUDA / TensorRT execution providers when asked for."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..contract import CROP_SIZE, InputContract, infer_contract
from ..errors import CorefaceError
from .base import contract_info
from ..ort_session import open_session

_ORT_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(uint8)": np.uint8}


def _check_graph_matches(contract: InputContract, name: str, shape: Sequence[Any], input_type: str, source: str) -> None:
    want_type = "tensor(uint8)" if contract.baked_preprocess else "tensor(float)"
    want_tail = [CROP_SIZE, CROP_SIZE, 3] if contract.layout == "NHWC" else [3, CROP_SIZE, CROP_SIZE]
    if name != contract.input_name or list(shape)[1:] != want_tail or input_type not in (want_type, "tensor(float16)"):
        raise CorefaceError(
            f"{source}: graph input {name!r} {input_type} {tuple(shape)} does not match its metadata contract "
            f"({contract.input_name!r} {contract.dtype} {contract.layout})"
        )


class OnnxRuntimeBackend:
    """An ONNX embedding model in an ``onnxruntime.InferenceSession``."""

    name = "onnxruntime"

    def __init__(
        self,
        path: str | os.PathLike[str],
        device: str = "cpu",
        threads: int | None = None,
        disabled_optimizers: Sequence[str] = (),
    ) -> None:
        from ..export.onnx_meta import contract_of, graph_precision, load_onnx

        self.path = Path(path)
        model = load_onnx(self.path, external_data=False)
        self.precision = graph_precision(model)
        stored = contract_of(model, str(self.path))
        del model
        kwargs = {"disabled_optimizers": list(disabled_optimizers)} if disabled_optimizers else {}
        self.session = open_session(self.path, device, threads, "an embedding model", **kwargs)
        inp, out = self.session.get_inputs()[0], self.session.get_outputs()[0]
        self._input_dtype = _ORT_DTYPES.get(inp.type, np.float32)
        self._output_name = out.name
        if stored is None:
            self.contract = infer_contract(inp.name, inp.shape, inp.type, out.shape, str(self.path))
        else:
            _check_graph_matches(stored, inp.name, inp.shape, inp.type, str(self.path))
            self.contract = stored
        self._fixed_batch = inp.shape[0] if isinstance(inp.shape[0], int) else None
        self.threads = threads
        self.device = device
        if self.contract.embedding_size == 0:  # foreign model with a symbolic output width: ask it once
            probe = self.embed(np.zeros((1, CROP_SIZE, CROP_SIZE, 3), np.uint8))
            self.contract = replace(self.contract, embedding_size=int(probe.shape[1]))

    def embed(self, crops: np.ndarray) -> np.ndarray:
        """uint8 BGR ``(N, 112, 112, 3)`` -> float32 ``(N, D)``."""
        x = self.contract.model_input(crops)
        if x.dtype != self._input_dtype:
            x = x.astype(self._input_dtype)
        if self._fixed_batch is None or x.shape[0] == self._fixed_batch:
            return self._run(x)
        return np.concatenate([self._run_padded(x[i : i + self._fixed_batch]) for i in range(0, x.shape[0], self._fixed_batch)])

    def _run(self, x: np.ndarray) -> np.ndarray:
        out = self.session.run([self._output_name], {self.contract.input_name: x})[0]
        return np.ascontiguousarray(out, dtype=np.float32)

    def _run_padded(self, x: np.ndarray) -> np.ndarray:
        n = x.shape[0]
        pad = np.zeros((self._fixed_batch - n, *x.shape[1:]), x.dtype)
        return self._run(np.concatenate([x, pad]))[:n]

    def info(self) -> dict[str, Any]:
        import onnxruntime as ort

        return {
            "backend": self.name,
            "runtime": f"onnxruntime {ort.__version__}",
            "providers": self.session.get_providers(),
            "device": self.device,
            "threads": self.threads or "default",
            "precision": self.precision,
            "file": str(self.path),
            **contract_info(self.contract),
        }
