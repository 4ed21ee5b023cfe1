"""Static INT8 quantization with ONNX Runtime's tooling (pre-processing + ``quantize_static``, Q/DQ).

A :class:`Quantizer` pre-processes the FP32 model once and, where ONNX Runtime can cache the
calibrated ranges (newer releases), calibrates once, so quantizing again with other nodes left
in float costs no new calibration -- what the sensitivity search needs. Older releases calibrate
on every call: slower, the same result.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import onnx

from ..atomic import atomic_path
from ..contract import InputContract
from ..errors import CorefaceError
from ..export.onnx_meta import load_onnx, read_metadata, set_metadata
from .scheme import QuantScheme

METHODS = ("minmax", "entropy", "percentile")
QUANT_METADATA_KEY = "coreface_edge.quantization"
INTEGER_OPS = frozenset(
    {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger", "DynamicQuantizeLinear"}
)
CALIB_BATCH = 16


def check_float_model(model: onnx.ModelProto, source: str) -> None:
    """One-line error when ``model`` is already quantized (integer ops or Q/DQ pairs)."""
    found = sorted({n.op_type for n in model.graph.node} & INTEGER_OPS)
    if found or QUANT_METADATA_KEY in read_metadata(model):
        what = ", ".join(found) if found else "coreface-edge quantization metadata"
        raise CorefaceError(f"{source}: model is already quantized ({what}); quantize the FP32 model instead")


class CalibrationFeed:
    """``CalibrationDataReader`` over crops: batches of the model's own input (``contract.model_input``).

    ``set_range`` (in batches) lets ``quantize_static`` collect one stride at a time, so the
    calibrator never holds every intermediate tensor of every image at once.
    """

    def __init__(self, crops: np.ndarray, contract: InputContract, batch: int = CALIB_BATCH) -> None:
        self.crops, self.contract, self.batch = crops, contract, batch
        self._starts = list(range(0, crops.shape[0], batch))
        self._iter: Iterator[int] = iter(self._starts)

    def __len__(self) -> int:
        return len(self._starts)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._iter = iter(self._starts[start_index:end_index])

    def get_next(self) -> dict[str, np.ndarray] | None:
        start = next(self._iter, None)
        if start is None:
            return None
        return {self.contract.input_name: self.contract.model_input(self.crops[start : start + self.batch])}

    def __iter__(self) -> "CalibrationFeed":
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        item = self.get_next()
        if item is None:
            raise StopIteration
        return item


def calibration_method(name: str) -> Any:
    from onnxruntime.quantization import CalibrationMethod

    if name not in METHODS:
        raise CorefaceError(f"unknown calibration method {name!r}; choose one of {', '.join(METHODS)}")
    return {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy, "percentile": CalibrationMethod.Percentile}[name]


@dataclass
class TensorRange:
    """Calibrated real range of one activation tensor."""

    name: str
    low: float
    high: float


class Quantizer:
    """Quantize one FP32 ONNX model with one calibration set, any number of times."""

    def __init__(self, model_path: str | os.PathLike[str], crops: np.ndarray, contract: InputContract, scheme: QuantScheme, method: str = "minmax") -> None:
        self.model_path = Path(model_path)
        self.model = load_onnx(self.model_path)
        check_float_model(self.model, str(self.model_path))
        self.crops, self.contract, self.scheme, self.method = crops, contract, scheme, method
        self._method = calibration_method(method)
        self._tmp = tempfile.TemporaryDirectory(prefix="coreface-quant-")
        self.workdir = Path(self._tmp.name)
        self.cache = self.workdir / "ranges.json"
        self.preprocessed = self.workdir / "preprocessed.onnx"
        self._preprocess()

    def close(self) -> None:
        self._tmp.cleanup()

    def __enter__(self) -> "Quantizer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _preprocess(self) -> None:
        from onnxruntime.quantization import quant_pre_process

        try:
            quant_pre_process(str(self.model_path), str(self.preprocessed), skip_symbolic_shape=True)
        except Exception as exc:  # onnx/ORT raise many types for graphs they cannot optimise
            raise CorefaceError(f"{self.model_path}: ONNX Runtime pre-processing failed ({str(exc).strip().splitlines()[-1]})") from None

    def quantize(self, out_path: str | os.PathLike[str], nodes_to_exclude: list[str] | tuple[str, ...] = ()) -> Path:
        """Write the Q/DQ model to ``out_path`` atomically (metadata kept, quantization recorded)."""
        from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

        raw = self.workdir / "quantized.onnx"
        feed = CalibrationFeed(self.crops, self.contract)
        extra = {
            "ActivationSymmetric": True,
            "WeightSymmetric": True,
            "QuantizeBias": self.scheme.quantize_bias,
            "CalibStridedMinMax": 1,  # one batch per collect: bounded memory for every method
        }
        level = logging.getLogger().level
        logging.getLogger().setLevel(logging.ERROR)  # quantize_static warns about things we chose on purpose
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # histogram calibrators print per batch
                quantize_static(
                    str(self.preprocessed),
                    str(raw),
                    feed,
                    quant_format=QuantFormat.QDQ,
                    per_channel=True,
                    reduce_range=self.scheme.reduce_range,
                    activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8,
                    nodes_to_exclude=list(nodes_to_exclude),
                    calibrate_method=self._method,
                    extra_options=extra,
                    **({"calibration_cache_path": str(self.cache)} if ranges_cached() else {}),
                )
        finally:
            logging.getLogger().setLevel(level)
        model = onnx.load(str(raw))
        props = {k: v for k, v in read_metadata(self.model).items()}
        props[QUANT_METADATA_KEY] = json.dumps(
            {"method": self.method, "scheme": self.scheme.as_dict(), "nodes_excluded": sorted(nodes_to_exclude)}, sort_keys=True
        )
        set_metadata(model, props)
        with atomic_path(out_path) as tmp:
            onnx.save(model, str(tmp))
        return Path(out_path)

    def ranges(self) -> list[TensorRange]:
        """Calibrated ranges of every activation tensor (after the first :meth:`quantize`)."""
        if self.cache.is_file():
            from onnxruntime.quantization.calibrate import load_tensors_data

            data = load_tensors_data(self.cache)
        else:  # an ONNX Runtime without the range cache: calibrate once more, with its own calibrator
            from onnxruntime.quantization.calibrate import create_calibrator
            from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

            quantizable = sorted(set(QLinearOpsRegistry) | set(QDQRegistry))  # what quantize_static calibrates
            calibrator = create_calibrator(self.preprocessed, quantizable, augmented_model_path=str(self.workdir / "augmented.onnx"), calibrate_method=self._method)
            calibrator.collect_data(CalibrationFeed(self.crops, self.contract))
            data = calibrator.compute_data()
        out = []
        for name, value in data.data.items():
            low, high = value.range_value
            out.append(TensorRange(name, float(np.min(low)), float(np.max(high))))
        return out


def ranges_cached() -> bool:
    """Whether this ONNX Runtime's ``quantize_static`` caches the calibrated ranges (newer
    releases): then quantizing again with other nodes in float costs no new calibration; older
    ones (a Jetson's ORT build, Python 3.10 wheels up to 1.23) calibrate on every call."""
    import inspect

    from onnxruntime.quantization import quantize_static

    return "calibration_cache_path" in inspect.signature(quantize_static).parameters
