"""Backbone artefact (.pt) -> ONNX with the input contract in its metadata and verified parity.

torch.onnx.export (TorchScript exporter; ``dynamo=False`` needs no onnxscript) in eval mode
with constant folding, a dynamic batch axis, then onnxslim (folds what is left of BatchNorm,
removes identities), metadata, ``onnx.checker``, and the parity check against PyTorch on real
aligned faces. The file appears under its final name only once parity has passed.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..atomic import atomic_path
from ..contract import CROP_SIZE, InputContract, scores_fingerprint
from ..errors import CorefaceError
from .fold_bn import fold_fc_batchnorm
from .onnx_meta import contract_metadata, set_metadata
from .parity import MIN_COSINE, ParityReport, compare_embeddings

OUTPUT_NAME = "embedding"
EXPORT_STEPS = ("load checkpoint", "torch.onnx.export", "onnxslim + BN folding", "parity check")
MIN_OPSET = 17


@dataclass(frozen=True)
class ExportOptions:
    bake_preprocess: bool = False
    fuse_flip: bool = False
    l2_normalize: bool = False
    opset: int = MIN_OPSET
    parity_threshold: float = MIN_COSINE


@dataclass(frozen=True)
class ExportResult:
    path: Path
    size_bytes: int
    opset: int
    contract: InputContract
    parity: ParityReport
    seconds: float
    threshold: Path | None = None  # the gate's threshold file, from the artefact's measured operating point


def onnxruntime_embed(path: Path, contract: InputContract, crops: np.ndarray) -> np.ndarray:
    """The written model's embeddings of ``crops`` in a plain CPU ONNX Runtime session (the
    runtime layer's backends build on export, not the other way round)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {contract.input_name: contract.model_input(crops)})[0]


def export_contract(architecture: str, embedding_size: int, fingerprint: str, opts: ExportOptions) -> InputContract:
    """The InputContract an export with ``opts`` produces."""
    base = InputContract()
    return InputContract(
        input_name="crops" if opts.bake_preprocess else base.input_name,
        layout="NHWC" if opts.bake_preprocess else "NCHW",
        dtype="uint8" if opts.bake_preprocess else "float32",
        embedding_size=embedding_size,
        baked_preprocess=opts.bake_preprocess,
        flip_fused=opts.fuse_flip,
        l2_normalized=opts.l2_normalize,
        architecture=architecture,
        fingerprint=fingerprint,
    )


def default_output(checkpoint: Path, opts: ExportOptions) -> Path:
    """``model.pt`` -> ``model.onnx`` (``model.baked.flip.l2.onnx`` with options)."""
    tags = [t for t, on in (("baked", opts.bake_preprocess), ("flip", opts.fuse_flip), ("l2", opts.l2_normalize)) if on]
    return checkpoint.with_name(".".join([checkpoint.stem, *tags, "onnx"]))


def export_onnx(
    checkpoint: str | os.PathLike[str],
    output: str | os.PathLike[str],
    opts: ExportOptions = ExportOptions(),
    parity_crops: np.ndarray | None = None,
    on_step: Callable[[str], None] | None = None,
) -> ExportResult:
    """Export ``checkpoint`` to ``output``; raises CorefaceError (and writes nothing) on any failure.

    ``parity_crops``: uint8 BGR aligned faces for the parity check (default: the packaged crops).
    ``on_step`` is called with each of ``EXPORT_STEPS`` as it starts (for a progress bar).
    """
    step = on_step or (lambda _name: None)
    import onnx

    try:
        import onnxslim
        import torch
    except ImportError as exc:
        raise CorefaceError(f"{exc.name} is not installed: pip install 'coreface-edge[train]' (export needs torch and onnxslim)") from None

    from ..models import checkpoint_fingerprint, load_backbone_artifact
    from .parity import load_parity_crops
    from .wrapper import EmbeddingGraph

    if opts.opset < MIN_OPSET:
        raise CorefaceError(f"--opset {opts.opset}: at least {MIN_OPSET} is required")
    checkpoint, output = Path(checkpoint), Path(output)
    if output.suffix.lower() != ".onnx":
        raise CorefaceError(f"{output}: the output file must end in .onnx")
    step(EXPORT_STEPS[0])
    crops = load_parity_crops() if parity_crops is None else parity_crops
    start = time.perf_counter()
    backbone, metadata = load_backbone_artifact(checkpoint)
    contract = export_contract(backbone.architecture, int(backbone.embedding_size), scores_fingerprint(checkpoint_fingerprint(checkpoint), opts.fuse_flip), opts)
    graph = EmbeddingGraph(backbone, contract).eval()
    reference_graph = EmbeddingGraph(backbone, InputContract(flip_fused=opts.fuse_flip, l2_normalized=opts.l2_normalize)).eval()
    if opts.bake_preprocess:
        example = torch.zeros((2, CROP_SIZE, CROP_SIZE, 3), dtype=torch.uint8)
    else:
        example = torch.zeros((2, 3, CROP_SIZE, CROP_SIZE), dtype=torch.float32)

    step(EXPORT_STEPS[1])
    with tempfile.TemporaryDirectory(prefix="coreface-export-") as tmp:
        raw = Path(tmp) / "raw.onnx"
        with torch.no_grad():
            torch.onnx.export(
                graph,
                (example,),
                str(raw),
                dynamo=False,
                opset_version=opts.opset,
                do_constant_folding=True,
                training=torch.onnx.TrainingMode.EVAL,
                input_names=[contract.input_name],
                output_names=[OUTPUT_NAME],
                dynamic_axes={contract.input_name: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            )
        step(EXPORT_STEPS[2])
        model = onnxslim.slim(onnx.load(str(raw)))
    fold_fc_batchnorm(model)
    set_metadata(model, contract_metadata(contract))
    model.producer_name = "coreface-edge"
    onnx.checker.check_model(model, full_check=True)

    with atomic_path(output) as tmp_path:
        onnx.save(model, str(tmp_path))
        step(EXPORT_STEPS[3])
        candidate = onnxruntime_embed(tmp_path, contract, crops)
        with torch.inference_mode():
            reference = reference_graph(torch.from_numpy(InputContract().model_input(crops))).numpy()
        parity = compare_embeddings(reference, candidate, opts.parity_threshold)
        if not parity.passed:
            raise CorefaceError(
                f"{output}: parity failed: min cosine {parity.min_cosine:.6f} < {parity.threshold} "
                f"(max abs diff {parity.max_abs_diff:.3g}) on {parity.faces} faces; nothing written"
            )
    seconds = time.perf_counter() - start
    threshold = store_operating_threshold(output, contract.fingerprint, metadata.get("operating_threshold"), opts)
    return ExportResult(output, output.stat().st_size, opts.opset, contract, parity, seconds, threshold)


def store_operating_threshold(model: Path, fingerprint: str, point: dict | None, opts: ExportOptions) -> Path | None:
    """Write ``<model>.threshold.json`` from the operating point measured for this artefact (the
    shipped model's card carries one), so ``gate`` runs without a threshold of the user's own.
    Not for a flip-fused export (its scores differ from the measured ones), and never over a
    threshold already stored for this model (one the user measured on their own faces)."""
    from ..threshold_file import OperatingThreshold, load_threshold, sidecar_path, store_threshold

    if not point or opts.fuse_flip:
        return None
    keys = ("threshold", "far_target", "far", "tar", "genuine_pairs", "impostor_pairs", "data", "reject_threshold")
    missing = [k for k in keys if k not in point]
    if missing:
        raise CorefaceError(f"{model}: the artefact's operating_threshold lacks {', '.join(missing)}; the ONNX is written, the threshold is not")
    try:
        if load_threshold(model, fingerprint) is not None:
            return sidecar_path(model)
    except CorefaceError:
        pass  # another model's threshold under this name: replaced below
    return store_threshold(model, OperatingThreshold(**{k: point[k] for k in keys}, fingerprint=fingerprint, created=time.time()))
