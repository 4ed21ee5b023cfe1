"""MiniFASNet state dict -> ONNX with its conventions in the metadata and verified parity.

The graph takes uint8 BGR NHWC crops (cast and transpose inside) and returns softmax
probabilities, so the edge runtime only crops and runs it. The file appears under its final
name only once ONNX Runtime's probabilities match PyTorch's on real faces. torch is imported
inside the functions: this module is on the export side.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from ..errors import CorefaceError
from .spec import METADATA_KEY, LivenessSpec, spec_from_name

OPSET = 17
MAX_PROBABILITY_DIFF = 1e-4  # parity: largest allowed |p_torch - p_onnx| on any class of any face
INPUT_NAME, OUTPUT_NAME = "crops", "probabilities"


@dataclass(frozen=True)
class LivenessParity:
    faces: int
    max_abs_diff: float
    same_decisions: bool  # argmax and live >= 0.5 agree on every face

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= MAX_PROBABILITY_DIFF and self.same_decisions


def compare_probabilities(reference: np.ndarray, candidate: np.ndarray, live_index: int) -> LivenessParity:
    """Parity of two ``(N, classes)`` probability arrays (pure)."""
    if reference.shape != candidate.shape:
        raise CorefaceError(f"parity: PyTorch gave {reference.shape}, ONNX {candidate.shape}")
    diff = float(np.abs(reference - candidate).max()) if reference.size else 0.0
    same = bool(np.array_equal(reference.argmax(1), candidate.argmax(1)) and np.array_equal(reference[:, live_index] >= 0.5, candidate[:, live_index] >= 0.5))
    return LivenessParity(int(reference.shape[0]), diff, same)


def parity_crops(side: int) -> np.ndarray:
    """Real faces for the parity check: the packaged aligned CFP crops resized to ``side``."""
    import cv2

    from ..export.parity import load_parity_crops

    return np.stack([cv2.resize(c, (side, side), interpolation=cv2.INTER_AREA) for c in load_parity_crops()])


def export_liveness(
    weights: str | Path, output: str | Path, spec: LivenessSpec | None = None, provenance: dict[str, str] | None = None
) -> tuple[LivenessSpec, LivenessParity]:
    """Export the state dict ``weights`` to ``output``; writes nothing unless parity passes.
    ``provenance``: more metadata entries (e.g. what the weights were fine-tuned on)."""
    try:
        import onnx
        import onnxslim
        import torch
    except ImportError as exc:
        raise CorefaceError(f"{exc.name} is not installed: pip install 'coreface-edge[train]' (export needs torch and onnxslim)") from None
    from ..export.onnx_meta import set_metadata
    from ..models.minifasnet import load_minifasnet
    from .runtime import LivenessModel

    weights, output = Path(weights), Path(output)
    if output.suffix.lower() != ".onnx":
        raise CorefaceError(f"{output}: the output file must end in .onnx")
    spec = spec or spec_from_name(weights)
    network = load_minifasnet(weights, spec.architecture)

    class Graph(torch.nn.Module):  # uint8 NHWC in, probabilities out
        def __init__(self) -> None:
            super().__init__()
            self.network = network

        def forward(self, crops: torch.Tensor) -> torch.Tensor:
            return torch.softmax(self.network(crops.permute(0, 3, 1, 2).float()), dim=1)

    graph = Graph().eval()
    with tempfile.TemporaryDirectory(prefix="coreface-liveness-") as tmp:
        raw = Path(tmp) / "raw.onnx"
        with torch.no_grad():
            torch.onnx.export(
                graph, (torch.zeros((2, spec.side, spec.side, 3), dtype=torch.uint8),), str(raw), dynamo=False, opset_version=OPSET,
                do_constant_folding=True, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            )  # fmt: skip
        model = onnxslim.slim(onnx.load(str(raw)))
    set_metadata(model, {METADATA_KEY: spec.to_json(), "source_weights": weights.name, "licence": "Apache-2.0 (minivision-ai/Silent-Face-Anti-Spoofing)", **(provenance or {})})
    model.producer_name = "coreface-edge"
    onnx.checker.check_model(model, full_check=True)
    crops = parity_crops(spec.side)
    with atomic_path(output) as tmp_path:
        onnx.save(model, str(tmp_path))
        candidate = LivenessModel(tmp_path).session.run(None, {INPUT_NAME: crops})[0]
        with torch.inference_mode():
            reference = graph(torch.from_numpy(crops)).numpy()
        parity = compare_probabilities(reference, candidate, spec.live_index)
        if not parity.passed:
            raise CorefaceError(
                f"{output}: parity failed: max |p_torch - p_onnx| {parity.max_abs_diff:.3g} (limit {MAX_PROBABILITY_DIFF:g}), "
                f"same decisions: {parity.same_decisions}, on {parity.faces} faces; nothing written"
            )
    return spec, parity
