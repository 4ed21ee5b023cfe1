"""ONNX model metadata and graph facts shared by export, runtimes and the TensorRT builder (no torch)."""

from __future__ import annotations

from pathlib import Path

import onnx

from .. import __version__
from ..contract import CONTRACT_METADATA_KEY, InputContract
from ..errors import CorefaceError

QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})


def contract_metadata(contract: InputContract) -> dict[str, str]:
    """The metadata_props an exported model carries: the contract as JSON plus readable keys."""
    norm = f"(x - {contract.mean:g}) / {contract.std:g}, {contract.color}"
    if contract.baked_preprocess:
        norm += " (baked into the graph: feed uint8 BGR NHWC)"
    return {
        CONTRACT_METADATA_KEY: contract.to_json(),
        "input_name": contract.input_name,
        "input_layout": contract.layout,
        "input_dtype": contract.dtype,
        "normalization": norm,
        "embedding_size": str(contract.embedding_size),
        "architecture": contract.architecture,
        "flip_fused": str(contract.flip_fused).lower(),
        "l2_normalized": str(contract.l2_normalized).lower(),
        "source_checkpoint_sha256": contract.fingerprint,
        "producer": f"coreface-edge {__version__}",
    }


def set_metadata(model: onnx.ModelProto, props: dict[str, str]) -> None:
    """Replace or add ``props`` in ``model.metadata_props`` (other keys are kept)."""
    kept = [p for p in model.metadata_props if p.key not in props]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)


def read_metadata(model: onnx.ModelProto) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


def load_onnx(path: str | Path, external_data: bool = True) -> onnx.ModelProto:
    """Load an ONNX file; an unreadable or corrupt file is a one-line CorefaceError."""
    path = Path(path)
    if not path.is_file():
        raise CorefaceError(f"{path}: file not found")
    try:
        return onnx.load(str(path), load_external_data=external_data)
    except Exception as exc:  # onnx raises DecodeError, OSError, ValueError... for corrupt files
        raise CorefaceError(f"{path}: not a readable ONNX model ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'corrupt'})") from None


def graph_precision(model: onnx.ModelProto) -> str:
    """``int8`` if the graph has Q/DQ nodes, ``fp16`` if it computes in float16, else ``fp32``."""
    ops = {node.op_type for node in model.graph.node}
    if ops & QDQ_OPS:
        return "int8"
    fp16 = onnx.TensorProto.FLOAT16
    if any(init.data_type == fp16 for init in model.graph.initializer):
        return "fp16"
    if any(v.type.tensor_type.elem_type == fp16 for v in model.graph.value_info):
        return "fp16"
    return "fp32"


def asymmetric_qdq(model: onnx.ModelProto) -> str | None:
    """Name of the first Q/DQ node with an asymmetric zero point (UINT8, or not all zero), else None.

    TensorRT's explicit quantization is symmetric (zero point 0); an ONNX Runtime default
    (asymmetric UINT8) Q/DQ model would otherwise fail deep in its parser.
    """
    from onnx import numpy_helper

    constants = {init.name: init for init in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type not in QDQ_OPS or len(node.input) < 3 or not node.input[2]:
            continue
        zero = constants.get(node.input[2])  # a zero point computed in the graph is left to TensorRT
        if zero is not None and (zero.data_type == onnx.TensorProto.UINT8 or numpy_helper.to_array(zero).any()):
            return node.name or node.output[0]
    return None


def contract_of(model: onnx.ModelProto, source: str) -> InputContract | None:
    """The InputContract stored in ``model``'s metadata, or None for a foreign model."""
    text = read_metadata(model).get(CONTRACT_METADATA_KEY)
    return None if text is None else InputContract.from_json(text, source)
