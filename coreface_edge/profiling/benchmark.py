"""Build every format of one model this machine can build, then measure each: size, CFP
accuracy and TAR@FAR 1e-3, latency at batch 1 and throughput at batch 32 (like Ultralytics'
``benchmark``). A format that cannot be built here says why; one that fails says why; neither
stops the others.

Formats and what they are built from: PyTorch (the .pt itself), ONNX FP32 (exported from the
.pt, or the given .onnx), ONNX INT8 (static Q/DQ quantization calibrated on aligned faces of
identities outside the evaluated ones, or on ``--calib``), ONNX FP16 (converted FP32), and
TensorRT FP32 / FP16 / INT8 engines built from the matching ONNX.
"""

from __future__ import annotations

import contextlib
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ContextManager

import numpy as np

from ..errors import CorefaceError
from .models import profile_backend

FORMATS = ("pytorch", "onnx-fp32", "onnx-int8", "onnx-fp16", "tensorrt-fp32", "tensorrt-fp16", "tensorrt-int8")
TITLES = {
    "pytorch": "PyTorch",
    "onnx-fp32": "ONNX FP32",
    "onnx-int8": "ONNX INT8",
    "onnx-fp16": "ONNX FP16",
    "tensorrt-fp32": "TensorRT FP32",
    "tensorrt-fp16": "TensorRT FP16",
    "tensorrt-int8": "TensorRT INT8",
}
OK, FAILED, NOT_AVAILABLE = "ok", "failed", "not available"
LATENCY_BATCH, THROUGHPUT_BATCH = 1, 32
CALIBRATION_FACES = 256
FAR = 1e-3


class NotAvailable(Exception):
    """This format cannot be built on this machine; the message says why."""


def parse_formats(text: str) -> list[str]:
    """``"onnx-fp32,tensorrt-fp16"`` or ``"all"`` -> known format names, in table order."""
    if text.strip() == "all":
        return list(FORMATS)
    wanted = [f.strip() for f in text.split(",") if f.strip()]
    unknown = [f for f in wanted if f not in FORMATS]
    if unknown or not wanted:
        raise CorefaceError(f"--formats: unknown {', '.join(unknown) or 'empty list'}; choose from all, {', '.join(FORMATS)}")
    return [f for f in FORMATS if f in wanted]


def one_line(exc: BaseException) -> str:
    """An exception as the one line a table cell can hold."""
    if isinstance(exc, (CorefaceError, NotAvailable)):
        text = str(exc)
    else:
        text = f"{type(exc).__name__}: {exc}"
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def missing_module(name: str) -> bool:
    return importlib.util.find_spec(name) is None


def calibration_faces(aligned: Path, evaluated: set[int], limit: int = CALIBRATION_FACES) -> np.ndarray:
    """Up to ``limit`` aligned crops of identities *not* evaluated, spread evenly over them."""
    from ..evaluation.embedding import read_aligned

    files = sorted(
        p for d in aligned.iterdir() if d.is_dir() and d.name.isdigit() and int(d.name) not in evaluated for p in d.glob("*.jpg")
    )
    if not files:
        raise CorefaceError(f"{aligned}: no aligned faces outside the evaluated identities to calibrate INT8 on; give --calib")
    picks = [files[i] for i in np.linspace(0, len(files) - 1, min(limit, len(files))).round().astype(int)]
    return np.concatenate(list(read_aligned(picks, 64)))


@dataclass
class Builder:
    """Builds the artefact of each format on demand, once, into ``models_dir``."""

    checkpoint: Path
    models_dir: Path
    calibration: Callable[[], np.ndarray]
    built: dict[str, Path] = field(default_factory=dict)
    problems: dict[str, tuple[str, str]] = field(default_factory=dict)  # format -> (status, reason)

    def artefact(self, fmt: str) -> Path:
        """The file of ``fmt``, building it (and what it needs) the first time."""
        if fmt in self.built:
            return self.built[fmt]
        if fmt in self.problems:
            status, reason = self.problems[fmt]
            raise (NotAvailable if status == NOT_AVAILABLE else CorefaceError)(f"needs {TITLES[fmt]}: {reason}")
        try:
            path = getattr(self, "_" + fmt.replace("-", "_"))()
        except NotAvailable as exc:
            self.problems[fmt] = (NOT_AVAILABLE, one_line(exc))
            raise
        except Exception as exc:  # noqa: BLE001 - one failing format never stops the others
            self.problems[fmt] = (FAILED, one_line(exc))
            raise
        self.built[fmt] = path
        return path

    def _out(self, suffix: str) -> Path:
        self.models_dir.mkdir(parents=True, exist_ok=True)
        return self.models_dir / f"{self.checkpoint.stem}{suffix}"

    def _pytorch(self) -> Path:
        if self.checkpoint.suffix.lower() not in (".pt", ".pth"):
            raise NotAvailable(f"the checkpoint {self.checkpoint.name} is not a PyTorch .pt")
        if missing_module("torch"):
            raise NotAvailable("torch not installed")
        return self.checkpoint

    def _onnx_fp32(self) -> Path:
        from ..pretrained import can_export, copy_packaged_export, shipped_name_of

        if self.checkpoint.suffix.lower() == ".onnx":
            return self.checkpoint
        shipped = shipped_name_of(self.checkpoint)
        if shipped is not None and not can_export():  # the packaged export of the shipped .pt
            return copy_packaged_export(shipped, self._out(".onnx"))
        if missing_module("torch"):
            raise NotAvailable("torch not installed (needed to export the .pt)")
        from ..export.onnx_export import export_onnx

        return export_onnx(self.checkpoint, self._out(".onnx")).path

    def _onnx_int8(self) -> Path:
        from ..calibration.quantize import Quantizer
        from ..calibration.scheme import choose_scheme, host_isa
        from ..runtime import open_backend

        source = self.artefact("onnx-fp32")
        contract = open_backend(source, "onnxruntime").contract
        with Quantizer(source, self.calibration(), contract, choose_scheme("cpu", host_isa())) as quantizer:
            return quantizer.quantize(self._out(".int8.onnx"))

    def _onnx_fp16(self) -> Path:
        from ..calibration.fp16 import convert_fp16

        return convert_fp16(self.artefact("onnx-fp32"), self._out(".fp16.onnx"))

    def _engine(self, precision: str, source_format: str) -> Path:
        if missing_module("tensorrt"):
            raise NotAvailable("TensorRT not installed")
        if missing_module("pycuda"):
            raise NotAvailable("pycuda not installed (the TensorRT backend needs it)")
        from ..export.tensorrt_builder import BuildOptions, build_engine

        source = self.artefact(source_format)
        opts = BuildOptions(precision=precision, min_batch=1, opt_batch=8, max_batch=THROUGHPUT_BATCH)
        return build_engine(source, self._out(f".{precision}.engine"), opts).engine

    def _tensorrt_fp32(self) -> Path:
        return self._engine("fp32", "onnx-fp32")

    def _tensorrt_fp16(self) -> Path:
        return self._engine("fp16", "onnx-fp16")

    def _tensorrt_int8(self) -> Path:
        return self._engine("int8", "onnx-int8")


def backend_of(fmt: str) -> str:
    return "torch" if fmt == "pytorch" else "tensorrt" if fmt.startswith("tensorrt") else "onnxruntime"


def accuracy_metrics(result: dict[str, Any]) -> dict[str, float | None]:
    """Accuracy and TAR@FAR 1e-3 in %, per row of the evaluation: FF and FP on CFP (official
    pairs / exhaustive pairs), or ``faces`` on labelled faces of the user's own."""
    out: dict[str, float | None] = {}
    for setting, row in result["rows"].items():
        accuracy = row.get("accuracy")
        points = row.get("verification", {}).get("tar_at_far", {})
        tar = next((p["tar"] for k, p in points.items() if abs(float(k) - FAR) < 1e-12), None)
        out[f"{setting.lower()}_accuracy_pct"] = None if accuracy is None else 100.0 * accuracy["mean"]
        out[f"{setting.lower()}_tar_far_1e3_pct"] = None if tar is None else 100.0 * tar
    return out


def faces_evaluation(crops: np.ndarray, labels: np.ndarray, embed: Callable[[np.ndarray], np.ndarray]) -> dict[str, Any]:
    """Verification on labelled aligned faces (every pair; 10-fold accuracy on balanced pairs),
    in the result form of the CFP evaluation with one row, ``faces``."""
    from ..calibration.guard import verification
    from ..evaluation.evaluate import far_label
    from ..runtime.base import embed_in_batches

    found = verification(embed_in_batches(embed, crops), labels, FAR)
    return {"rows": {"faces": {"accuracy": {"mean": found.accuracy}, "verification": {"tar_at_far": {far_label(FAR): {"tar": found.tar}}}}}}


Evaluate = Callable[[Callable[[np.ndarray], np.ndarray]], dict[str, Any]]
Bar = Callable[[str, int], ContextManager[Callable[[int], None]]]  # (label, total) -> advance(n)


def _no_bar(_label: str, _total: int) -> ContextManager[Callable[[int], None]]:
    return contextlib.nullcontext(lambda _n: None)


def measure_format(fmt: str, path: Path, evaluate: Evaluate, iterations: int, warmup: int, bar: Bar = _no_bar) -> dict[str, Any]:
    """Open ``path`` with the format's backend; accuracy through ``evaluate``, then latency."""
    from ..runtime import open_backend

    backend = open_backend(path, backend_of(fmt))
    metrics: dict[str, Any] = {"size_mb": path.stat().st_size / 1e6, **accuracy_metrics(evaluate(backend.embed))}
    with bar(f"{TITLES[fmt]}: latency at batch {LATENCY_BATCH} and {THROUGHPUT_BATCH}", 2 * iterations) as advance:
        rows = profile_backend(backend, path.name, [LATENCY_BATCH, THROUGHPUT_BATCH], iterations, warmup, advance)
    single, batched = rows
    metrics["p50_ms_b1"] = single["metrics"]["p50_ms"]
    metrics["p99_ms_b1"] = single["metrics"]["p99_ms"]
    metrics["throughput_b32"] = batched["metrics"]["throughput"]
    return {"metrics": metrics, "latency": {f"b{r['labels']['batch']}": r["metrics"] for r in rows}, "backend": backend.info()}


def benchmark_row(fmt: str, status: str, reason: str = "", path: Path | None = None, measured: dict[str, Any] | None = None) -> dict[str, Any]:
    """One table row; ``metrics`` is empty unless the format was built and measured."""
    row: dict[str, Any] = {
        "key": fmt,
        "labels": {"format": TITLES[fmt], "status": status, "reason": reason, "file": str(path) if path else ""},
        "metrics": {},
    }
    if measured:
        row["metrics"] = measured["metrics"]
        row["latency"] = measured["latency"]
        row["labels"]["backend"] = measured["backend"]
    return row


def run_benchmark(
    builder: Builder,
    formats: list[str],
    evaluate: Evaluate,
    iterations: int,
    warmup: int,
    announce: Callable[[str], None] = lambda _text: None,
    bar: Bar = _no_bar,
) -> list[dict[str, Any]]:
    """Build and measure each format in turn; every outcome becomes a row."""
    rows = []
    for fmt in formats:
        announce(f"{TITLES[fmt]}: building")
        try:
            path = builder.artefact(fmt)
        except NotAvailable as exc:
            rows.append(benchmark_row(fmt, NOT_AVAILABLE, one_line(exc)))
            continue
        except Exception as exc:  # noqa: BLE001 - one failing format never stops the others
            rows.append(benchmark_row(fmt, FAILED, f"build: {one_line(exc)}"))
            continue
        announce(f"{TITLES[fmt]}: accuracy and latency of {path.name}")
        try:
            measured = measure_format(fmt, path, evaluate, iterations, warmup, bar)
        except Exception as exc:  # noqa: BLE001
            rows.append(benchmark_row(fmt, FAILED, f"run: {one_line(exc)}", path))
            continue
        rows.append(benchmark_row(fmt, OK, "", path, measured))
    return rows
