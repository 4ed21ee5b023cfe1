"""Sensitivity analysis: which quantized tensors hurt most, and the fewest layers to leave in float.

Ranking: run the Q/DQ model once on a few held-out faces with both sides of every Q/DQ pair
exposed, and measure, for each quantized activation, the
signal-to-quantization-noise ratio between its value before QuantizeLinear and after
DequantizeLinear, per channel and averaged over channels (an outlier channel that takes the
whole INT8 range flattens every other channel; a whole-tensor SQNR would not see it, its energy
is the outlier's); the lowest SQNR hurts most. Search: leave the worst tensor's layers (its
producer and consumers) in float, re-quantize with the cached calibration ranges, re-check
the guard; repeat, then drop any excluded group the passing model does not need.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import onnx

from ..contract import InputContract
from .guard import GuardResult


@dataclass
class TensorSensitivity:
    """One quantized activation: its SQNR (dB) and the nodes that quantize it."""

    tensor: str
    sqnr_db: float
    nodes: list[str]


@dataclass
class ExclusionResult:
    """What the search found: the excluded nodes, the guard verdict for them, and the ranking."""

    nodes: list[str]
    result: GuardResult | None
    ranking: list[TensorSensitivity]
    tried: list[tuple[int, float, bool]] = field(default_factory=list)  # (groups, mean cosine, passed)

    @property
    def passed(self) -> bool:
        return self.result is not None and self.result.passed


def sqnr_db(reference: np.ndarray, approx: np.ndarray) -> float:
    """``20 log10(|ref| / |ref - approx|)``; large when ``approx`` is close."""
    ref = np.asarray(reference, np.float64).ravel()
    err = np.linalg.norm(ref - np.asarray(approx, np.float64).ravel())
    eps = np.finfo(np.float32).eps
    return float(20.0 * np.log10(max(float(np.linalg.norm(ref)), eps) / max(float(err), eps)))


def channel_sqnr_db(reference: np.ndarray, approx: np.ndarray) -> float:
    """Mean over channels (axis 1) of each channel's SQNR in dB; all-zero channels are skipped."""
    ref = np.asarray(reference, np.float64)
    if ref.ndim < 2:
        return sqnr_db(ref, approx)
    ref = np.moveaxis(ref, 1, 0).reshape(ref.shape[1], -1)
    err = ref - np.moveaxis(np.asarray(approx, np.float64), 1, 0).reshape(ref.shape)
    ref_norm, err_norm = np.linalg.norm(ref, axis=1), np.linalg.norm(err, axis=1)
    live = ref_norm > 1e-6 * max(float(ref_norm.max()), np.finfo(np.float32).tiny)
    if not live.any():
        return sqnr_db(reference, approx)
    eps = np.finfo(np.float32).eps
    return float(np.mean(20.0 * np.log10(np.maximum(ref_norm[live], eps) / np.maximum(err_norm[live], eps))))


def tensor_layers(model: onnx.ModelProto) -> dict[str, list[str]]:
    """For each tensor of the float graph, the names of the nodes that produce or consume it."""
    layers: dict[str, list[str]] = {}
    for node in model.graph.node:
        for name in [*node.input, *node.output]:
            if name:
                layers.setdefault(name, []).append(node.name)
    return layers


def qdq_pairs(model: onnx.ModelProto) -> list[tuple[str, str]]:
    """``(tensor before QuantizeLinear, tensor after DequantizeLinear)`` for every quantized activation."""
    producers = {out: node for node in model.graph.node for out in node.output}
    pairs = []
    for node in model.graph.node:
        quant = producers.get(node.input[0]) if node.op_type == "DequantizeLinear" else None
        if quant is not None and quant.op_type == "QuantizeLinear":
            pairs.append((quant.input[0], node.output[0]))
    return pairs


def rank_tensors(qdq_model: Path, float_model: onnx.ModelProto, crops: np.ndarray, contract: InputContract) -> list[TensorSensitivity]:
    """Quantized activations of ``qdq_model``, worst (lowest channel SQNR) first, on ``crops``.

    Runs the Q/DQ graph unoptimised (exact Q/DQ arithmetic) with both sides of every Q/DQ pair
    exposed as outputs.
    """
    import onnxruntime as ort

    model = onnx.load(str(qdq_model))
    layers = tensor_layers(float_model)
    pairs = [(pre, post) for pre, post in qdq_pairs(model) if pre in layers and pre not in {i.name for i in float_model.graph.input}]
    exposed = {o.name for o in model.graph.output}
    for name in {n for pair in pairs for n in pair} - exposed:
        model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    values = dict(zip(names, session.run(names, {contract.input_name: contract.model_input(crops)})))
    ranking = [TensorSensitivity(pre, channel_sqnr_db(values[pre], values[post]), layers[pre]) for pre, post in pairs]
    return sorted(ranking, key=lambda t: t.sqnr_db)


def search_exclusions(
    ranking: list[TensorSensitivity],
    evaluate: Callable[[list[str]], GuardResult],
    max_groups: int = 8,
) -> ExclusionResult:
    """Leave the worst tensors' layers in float, one group at a time, until ``evaluate`` passes.

    ``evaluate(nodes_to_exclude)`` quantizes without those nodes and runs the guard. After a
    pass, each earlier group is tried without (newest first) and dropped when not needed.
    """
    groups: list[list[str]] = []
    seen: set[str] = set()
    for item in ranking:
        new = [n for n in item.nodes if n not in seen]
        if new:
            groups.append(new)
            seen.update(new)
        if len(groups) == max_groups:
            break
    out = ExclusionResult([], None, ranking)
    chosen: list[list[str]] = []
    for group in groups:
        chosen.append(group)
        result = evaluate([n for g in chosen for n in g])
        out.tried.append((len(chosen), result.mean_cosine, result.passed))
        out.result = result
        if result.passed:
            break
    if not out.passed:
        out.nodes = [n for g in chosen for n in g]
        return out
    for group in list(reversed(chosen[:-1])):
        trial = [g for g in chosen if g is not group]
        result = evaluate([n for g in trial for n in g])
        out.tried.append((len(trial), result.mean_cosine, result.passed))
        if result.passed:
            chosen, out.result = trial, result
    out.nodes = [n for g in chosen for n in g]
    return out
