"""FP16 conversion with FP32 inputs and outputs (TensorRT 11 strongly typed builds, GPU ONNX Runtime)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import onnx

from ..atomic import atomic_path
from ..errors import CorefaceError
from ..export.onnx_meta import graph_precision, load_onnx, read_metadata, set_metadata
from .quantize import check_float_model

FP16_METADATA_KEY = "coreface_edge.fp16"


def convert_fp16(model_path: str | os.PathLike[str], out_path: str | os.PathLike[str]) -> Path:
    """Write an FP16 copy of an FP32 ONNX model (``keep_io_types``: it still takes and returns float32)."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = load_onnx(model_path)
    check_float_model(model, str(model_path))
    if graph_precision(model) != "fp32":
        raise CorefaceError(f"{model_path}: model is already {graph_precision(model)}; convert the FP32 model")
    props = read_metadata(model)
    half = convert_float_to_float16(model, keep_io_types=True)
    props[FP16_METADATA_KEY] = json.dumps({"keep_io_types": True, "converter": "onnxruntime.transformers.float16"})
    set_metadata(half, props)
    with atomic_path(out_path) as tmp:
        onnx.save(half, str(tmp))
    return Path(out_path)
