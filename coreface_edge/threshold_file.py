"""A model's operating threshold, stored beside it as ``<model>.threshold.json``.

Below export/, runtime/ and gate/: ``export`` carries a threshold to the files it converts,
``threshold`` (gate/threshold.py) measures and stores one, ``gate`` and ``enroll`` read it back,
refusing one that was computed for another model.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from .atomic import write_text_atomic
from .errors import CorefaceError

SIDECAR_SUFFIX = ".threshold.json"


@dataclass(frozen=True)
class OperatingThreshold:
    """A threshold chosen for ``far_target`` on an evaluation set, and what it gave there."""

    threshold: float
    far_target: float
    far: float
    tar: float
    genuine_pairs: int
    impostor_pairs: int
    fingerprint: str
    data: str
    created: float
    reject_threshold: float | None = None  # threshold at FAR ``gate.threshold.REJECT_FAR_FACTOR * far_target``


def sidecar_path(model: str | Path) -> Path:
    return Path(str(model) + SIDECAR_SUFFIX)


def store_threshold(model: str | Path, chosen: OperatingThreshold) -> Path:
    path = sidecar_path(model)
    write_text_atomic(path, json.dumps(asdict(chosen), indent=2) + "\n")
    return path


def load_threshold(model: str | Path, fingerprint: str) -> OperatingThreshold | None:
    """The stored threshold for this model, None when there is none; refuses another model's."""
    path = sidecar_path(model)
    if not path.is_file():
        return None
    try:
        chosen = OperatingThreshold(**json.loads(path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, TypeError, UnicodeDecodeError) as exc:
        raise CorefaceError(f"{path}: not a threshold file ({exc}); rerun coreface-edge threshold --store") from None
    if chosen.fingerprint != fingerprint:
        raise CorefaceError(f"{path}: computed for model {chosen.fingerprint[:12]}, this is {fingerprint[:12]}: rerun coreface-edge threshold --store")
    return chosen


def carry_threshold(source: str | Path, target: str | Path, fingerprint: str, note: str) -> Path | None:
    """Store ``source``'s threshold for ``target``, a converted copy that scores like it (an FP32
    or FP16 engine: cosine to the source ~1 - 1e-5), noting where it was measured; None when
    ``source`` has none. Not for INT8: its scores shift by more than thresholds near 0.99 allow."""
    stored = load_threshold(source, fingerprint)
    if stored is None:
        return None
    return store_threshold(target, replace(stored, data=f"{stored.data}; {note}", created=time.time()))
