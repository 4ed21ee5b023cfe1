"""Metric lines as JSONL (one object per line) and, when installed, TensorBoard scalars."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..atomic import write_text_atomic


class MetricsLog:
    """Append-only JSONL log; on resume the lines after the checkpoint's step are dropped."""

    def __init__(self, output: Path, resume_step: int | None = None) -> None:
        self.path = output / "metrics.jsonl"
        if resume_step is None:
            write_text_atomic(self.path, "")
        elif self.path.is_file():
            kept = [line for line in self.path.read_text(encoding="utf-8").splitlines() if _step(line) <= resume_step]
            write_text_atomic(self.path, "".join(f"{line}\n" for line in kept))
        self._fh = open(self.path, "a", encoding="utf-8")
        self._tb = _tensorboard(output, None if resume_step is None else resume_step + 1)

    def write(self, record: dict[str, Any]) -> None:
        self._fh.write(json.dumps(record, sort_keys=True) + "\n")
        self._fh.flush()
        if self._tb is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key not in ("step", "epoch"):
                    self._tb.add_scalar(f"{record.get('kind', 'train')}/{key}", value, record["step"])

    def close(self) -> None:
        self._fh.close()
        if self._tb is not None:
            self._tb.close()


def read_metrics(path: Path, kind: str = "train") -> list[dict[str, Any]]:
    """The records of one kind from a metrics.jsonl file."""
    records = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r for r in records if r.get("kind") == kind]


def _step(line: str) -> int:
    try:
        return int(json.loads(line).get("step", 0))
    except ValueError:  # a line cut by kill -9
        return 1 << 62


def _tensorboard(output: Path, purge_step: int | None) -> Any:
    """A SummaryWriter on ``output/tensorboard`` (None without the tensorboard package). On resume,
    ``purge_step`` hides the events a killed run logged after its checkpoint, as the JSONL drops them."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard not installed: JSONL only
        return None
    return SummaryWriter(str(output / "tensorboard"), purge_step=purge_step)
