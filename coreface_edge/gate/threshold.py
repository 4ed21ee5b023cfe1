"""The model a gate runs (its fingerprint) and its operating threshold, stored beside it.

``coreface-edge threshold`` picks the threshold for a target FAR from the impostor scores
of an evaluation set (the evaluation package's ROC and TAR@FAR); the file it writes,
``<model>.threshold.json``, is :mod:`coreface_edge.threshold_file`'s.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from ..errors import CorefaceError
from ..evaluation.metrics import roc_curve, tar_at_far
from ..runtime.base import Embedder, EmbeddingBackend, open_backend
from ..threshold_file import OperatingThreshold, load_threshold, sidecar_path

REJECT_FAR_FACTOR = 10.0  # 'reject' (looks enrolled) from the score a stranger reaches 10x as often as the accept one


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def model_fingerprint(path: str | Path, backend: EmbeddingBackend) -> str:
    """The model's identity: its contract fingerprint, or the SHA-256 of the file when empty."""
    return backend.contract.fingerprint or file_sha256(path)


def open_model(path: str | Path, backend: str | None = None, **options: Any) -> tuple[EmbeddingBackend, str]:
    """Open a model file with its backend; returns ``(backend, fingerprint)``."""
    opened = open_backend(path, backend, **options)
    return opened, model_fingerprint(path, opened)


def open_set_far(far: float, comparisons: int) -> float:
    """Chance that a stranger scores at or above the threshold against *any* of ``comparisons``
    gallery embeddings (1:N), from the per-comparison ``far``, pairs taken as independent."""
    return 1.0 if far >= 1 else float(-np.expm1(comparisons * np.log1p(-far)))


def check_far(far_target: float, impostor_pairs: int) -> None:
    """Refuse a FAR outside (0, 1) or one that ``impostor_pairs`` pairs cannot measure."""
    if not 0 < far_target < 1:
        raise CorefaceError(f"--far {far_target}: must be between 0 and 1")
    needed = int(np.ceil(1 / far_target - 1e-9))
    if impostor_pairs < needed:
        raise CorefaceError(f"--far {far_target:g}: {impostor_pairs} impostor pairs cannot resolve that FAR (need >= {needed})")


def pick_threshold(genuine: np.ndarray, impostor: np.ndarray, far_target: float) -> tuple[float, float, float]:
    """``(threshold, far, tar)``: the lowest threshold whose FAR on these impostors is <= target.

    Refuses a set with fewer than ``1 / far_target`` impostor pairs: it cannot measure that FAR.
    """
    check_far(far_target, np.size(impostor))
    point = tar_at_far(roc_curve(genuine, impostor), far_target)
    return point.threshold, point.far, point.tar


DEFAULT_REJECT_MARGIN = 0.1  # 'reject' band under the threshold when no operating point is stored


def reject_margin_of(point: OperatingThreshold | None) -> float:
    """The measured gap between the accept threshold and the score at 10x its FAR ('reject' below
    the threshold but above that: the face looks enrolled), else the default."""
    if point is None or point.reject_threshold is None:
        return DEFAULT_REJECT_MARGIN
    return point.threshold - point.reject_threshold


def resolve_threshold(model: str | Path, fingerprint: str, given: float | None) -> tuple[float, str, OperatingThreshold | None]:
    """``(threshold, where it came from, the stored operating point or None)``: ``--threshold``
    if given, else the stored one."""
    if given is not None:
        return given, "--threshold", None
    chosen = load_threshold(model, fingerprint)
    if chosen is None:
        raise CorefaceError(
            f"{model}: no operating threshold stored; run 'coreface-edge threshold --model {model} --far 1e-3 --data ALIGNED --store' or pass --threshold"
        )
    return chosen.threshold, f"{sidecar_path(model).name} (FAR {chosen.far_target:g}, TAR {chosen.tar:.3f})", chosen


def impostor_pair_count(ids: list, probe_ids: list | None = None) -> int:
    """Impostor pairs among ``ids`` (all pairs), or between ``ids`` and ``probe_ids``: known before embedding."""
    counts = Counter(ids)
    if probe_ids is None:
        n = len(ids)
        return n * (n - 1) // 2 - sum(c * (c - 1) // 2 for c in counts.values())
    probes = Counter(probe_ids)
    return len(ids) * len(probe_ids) - sum(c * probes[k] for k, c in counts.items())


def threshold_on_cfp(
    fingerprint: str, embedder: Embedder, data: Path, cfp_root: Path, identities: str, setting: str,
    far_target: float, batch_size: int, console: Console,
) -> OperatingThreshold:  # fmt: skip
    """Embed the aligned CFP evaluation identities once and pick the threshold on ``setting`` pairs."""
    from ..data.cfp import check_aligned_folder, parse_identities
    from ..evaluation.cfp_protocol import load_protocol
    from ..evaluation.embedding import embed_batches, read_aligned
    from ..evaluation.scores import exhaustive_scores

    check_aligned_folder(data)
    protocol = load_protocol(cfp_root)
    selected = set(parse_identities(identities))
    frontal = [i for i in protocol.images(selected, "frontal") if (data / i.aligned_relpath).is_file()]
    profile = [i for i in protocol.images(selected, "profile") if (data / i.aligned_relpath).is_file()] if setting == "FP" else []
    if not frontal:
        raise CorefaceError(f"{data}: no aligned CFP images of identities {identities} found")
    images = frontal + profile
    check_far(far_target, impostor_pair_count([i.identity for i in frontal], [i.identity for i in profile] if setting == "FP" else None))
    batches = read_aligned([data / i.aligned_relpath for i in images], batch_size)
    embeddings = embed_batches(batches, len(images), embedder, console, f"embedding {len(images)} CFP images")
    ids = np.array([i.identity for i in images])
    n = len(frontal)
    if setting == "FP":
        genuine, impostor = exhaustive_scores(embeddings[:n], ids[:n], embeddings[n:], ids[n:])
    else:
        genuine, impostor = exhaustive_scores(embeddings, ids)
    return operating_point(genuine, impostor, far_target, fingerprint, f"{data} ({setting}, identities {identities})")


def threshold_on_faces(fingerprint: str, embedder: Embedder, faces: Path, far_target: float, batch_size: int, console: Console) -> OperatingThreshold:
    """The threshold measured on the site's own labelled faces: ``faces/<person>/*.jpg`` aligned
    112x112 crops (``coreface-edge data align`` writes them from photos), every pair of them."""
    from ..data.imagefolder import ImageFolder
    from ..evaluation.embedding import embed_batches, read_aligned
    from ..evaluation.scores import exhaustive_scores

    folder = ImageFolder(faces)
    ids = np.asarray(folder.labels)
    check_far(far_target, impostor_pair_count(ids.tolist()))
    paths = [path for path, _ in folder.samples]
    embeddings = embed_batches(read_aligned(paths, batch_size), len(paths), embedder, console, f"embedding {len(paths)} faces")
    genuine, impostor = exhaustive_scores(embeddings, ids)
    if genuine.size == 0:
        raise CorefaceError(f"{faces}: every person has one face: genuine pairs need at least 2 faces of a person")
    return operating_point(genuine, impostor, far_target, fingerprint, f"{faces} (site faces, {len(set(ids.tolist()))} people)")


def operating_point(genuine: np.ndarray, impostor: np.ndarray, far_target: float, fingerprint: str, data: str) -> OperatingThreshold:
    """The threshold at ``far_target`` on these scores, with the 'reject' threshold at 10x that FAR."""
    threshold, far, tar = pick_threshold(genuine, impostor, far_target)
    reject = tar_at_far(roc_curve(genuine, impostor), min(REJECT_FAR_FACTOR * far_target, 1.0)).threshold
    return OperatingThreshold(threshold, far_target, far, tar, int(genuine.size), int(impostor.size), fingerprint, data, time.time(), reject)
