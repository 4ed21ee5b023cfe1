"""An insightface-layout ONNX backbone -> a coreface-edge ONNX model (no torch).

insightface's recognition models (``w600k_r50.onnx`` and the like) take ``(N, 3, 112, 112)``
float RGB crops on the ArcFace template normalised as ``(x - 127.5) / 127.5`` and return an
``(N, D)`` embedding: exactly the project's default input contract. Importing checks that layout,
runs the graph once in ONNX Runtime, and writes a copy stamped with the contract (fingerprint:
the source file's SHA-256), so export, calibration, threshold and gate treat it as their own.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from ..atomic import write_bytes_atomic
from ..contract import CROP_SIZE, InputContract
from ..errors import CorefaceError
from .onnx_meta import contract_metadata, contract_of, load_onnx, set_metadata


def _dims(value_info) -> list[int | str]:
    return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in value_info.type.tensor_type.shape.dim]


def import_onnx_backbone(source: Path, output: Path) -> InputContract:
    """Check ``source`` and write it to ``output`` with coreface-edge metadata; returns its contract."""
    import onnxruntime as ort

    source, output = Path(source), Path(output)
    model = load_onnx(source)
    if contract_of(model, str(source)) is not None:
        raise CorefaceError(f"{source}: already a coreface-edge model (it carries an input contract); use it as it is")
    if len(model.graph.input) - len({i.name for i in model.graph.initializer} & {i.name for i in model.graph.input}) != 1:
        raise CorefaceError(f"{source}: expected one graph input (a face crop batch)")
    graph_input = next(i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer})
    in_dims, out_dims = _dims(graph_input), _dims(model.graph.output[0])
    if len(in_dims) != 4 or in_dims[1:] != [3, CROP_SIZE, CROP_SIZE] or graph_input.type.tensor_type.elem_type != 1:
        raise CorefaceError(f"{source}: input {graph_input.name!r} is {tuple(in_dims)}; an insightface-layout backbone takes float (N, 3, 112, 112)")
    if len(out_dims) != 2 or not isinstance(out_dims[1], int) or out_dims[1] <= 0:
        raise CorefaceError(f"{source}: output {model.graph.output[0].name!r} is {tuple(out_dims)}; expected an (N, D) embedding")
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    contract = InputContract(input_name=graph_input.name, embedding_size=int(out_dims[1]), architecture=f"onnx:{source.stem}", fingerprint=digest)
    try:
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        probe = np.zeros((1, 3, CROP_SIZE, CROP_SIZE), np.float32)
        (emb,) = session.run(None, {graph_input.name: probe})[:1]
    except Exception as exc:  # ORT raises its own error types for graphs it cannot run
        raise CorefaceError(f"{source}: ONNX Runtime cannot run it ({str(exc).strip().splitlines()[0][:200]})") from None
    if emb.shape != (1, contract.embedding_size) or not np.isfinite(emb).all():
        raise CorefaceError(f"{source}: a test crop gave an output of shape {emb.shape}, not a finite (1, {contract.embedding_size}) embedding")
    set_metadata(model, contract_metadata(contract))
    write_bytes_atomic(output, model.SerializeToString())
    return contract
