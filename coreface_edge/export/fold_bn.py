"""Fold an inference BatchNormalization that follows a fully connected layer into that layer.

The TorchScript exporter folds Conv+BN, but the embedding head's ``Linear -> BatchNorm1d``
stays as ``Gemm``/``MatMul`` + ``BatchNormalization``; onnxslim leaves it too. With constant
weights the pair is one ``Gemm``: ``W' = W * s``, ``b' = (b - mean) * s + beta``,
``s = gamma / sqrt(var + eps)``.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
from onnx import helper, numpy_helper


def _fc_weights(node: onnx.NodeProto, inits: dict[str, onnx.TensorProto]) -> tuple[np.ndarray, np.ndarray | None] | None:
    """(W as (K, D), bias or None) of a foldable Gemm/MatMul with constant weights, else None."""
    if node.input[1] not in inits:
        return None
    weight = numpy_helper.to_array(inits[node.input[1]])
    if weight.ndim != 2:
        return None
    if node.op_type == "MatMul":
        return weight, None
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0:
        return None
    bias = None
    if len(node.input) > 2 and node.input[2]:
        if node.input[2] not in inits:
            return None
        bias = numpy_helper.to_array(inits[node.input[2]]).reshape(-1)
    return (weight.T if attrs.get("transB", 0) else weight), bias


def fold_fc_batchnorm(model: onnx.ModelProto) -> int:
    """Fold every ``Gemm|MatMul -> BatchNormalization`` pair on 2-D tensors in place; returns how many."""
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    producers = {out: node for node in graph.node for out in node.output}
    uses = Counter(name for node in graph.node for name in node.input)
    uses.update(o.name for o in graph.output)
    inferred = onnx.shape_inference.infer_shapes(model)
    ranks = {v.name: len(v.type.tensor_type.shape.dim) for v in inferred.graph.value_info}
    folded = 0
    for bn in [n for n in graph.node if n.op_type == "BatchNormalization"]:
        fc = producers.get(bn.input[0])
        if fc is None or fc.op_type not in ("Gemm", "MatMul") or uses[fc.output[0]] != 1 or ranks.get(bn.input[0]) != 2:
            continue
        if not all(name in inits for name in bn.input[1:5]):
            continue
        found = _fc_weights(fc, inits)
        if found is None:
            continue
        weight, bias = found
        gamma, beta, mean, var = (numpy_helper.to_array(inits[n]).astype(np.float64) for n in bn.input[1:5])
        eps = next((helper.get_attribute_value(a) for a in bn.attribute if a.name == "epsilon"), 1e-5)
        scale = gamma / np.sqrt(var + eps)
        bias = np.zeros(weight.shape[1]) if bias is None else bias.astype(np.float64)
        new_w = (weight.astype(np.float64) * scale[None, :]).astype(np.float32)
        new_b = ((bias - mean) * scale + beta).astype(np.float32)
        w_name, b_name = f"{bn.output[0]}_folded_weight", f"{bn.output[0]}_folded_bias"
        graph.initializer.extend([numpy_helper.from_array(new_w, w_name), numpy_helper.from_array(new_b, b_name)])
        gemm = helper.make_node("Gemm", [fc.input[0], w_name, b_name], [bn.output[0]], name=f"{fc.name or 'fc'}_bn_folded")
        index = list(graph.node).index(bn)
        graph.node.insert(index, gemm)
        graph.node.remove(bn)
        graph.node.remove(fc)
        stale = [v for v in graph.value_info if v.name == fc.output[0]]
        for v in stale:
            graph.value_info.remove(v)
        folded += 1
    if folded:
        used = {name for node in graph.node for name in node.input}
        keep = [t for t in graph.initializer if t.name in used]
        del graph.initializer[:]
        graph.initializer.extend(keep)
    return folded
