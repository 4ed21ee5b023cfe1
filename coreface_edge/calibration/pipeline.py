"""The quantize and fp16 jobs end to end: convert, guard on held-out faces, time, decide, report."""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnx
import onnxruntime as ort

from ..atomic import atomic_path
from ..errors import CorefaceError
from ..runtime import open_backend
from ..runtime.base import embed_in_batches
from .calibset import load_calibration_set
from .fp16 import convert_fp16
from .guard import GuardResult, Tolerance, judge
from .holdout import Holdout, load_holdout
from ..export.onnx_meta import load_onnx
from .quantize import Quantizer, calibration_method, check_float_model
from .scheme import choose_scheme, host_isa
from .sensitivity import rank_tensors, search_exclusions
from .speed import speed_table

PRECISIONS = ("int8", "auto")
MIN_CALIBRATION_FACES = 16
SENSITIVITY_FACES = 16
MIN_SPEEDUP = 1.05  # below this INT8 is "not faster" (timing noise on a shared machine)
GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")
FP16_ON_CPU = (
    "warning: FP16 pays on GPUs (TensorRT, ONNX Runtime with CUDA); this ONNX Runtime has no GPU provider, and on a CPU it "
    "runs FP16 slower than FP32 (the demo's benchmark table: 1.8x the latency at batch 1, 0.43x the throughput at "
    "batch 32): run the FP32 model on this machine and this FP16 copy on a GPU."
)

Step = Callable[[str], None]


@dataclass(frozen=True)
class QuantizeOptions:
    target: str = "cpu"
    method: str = "minmax"
    precision: str = "int8"
    auto_exclude: bool = False
    max_excluded_groups: int = 8
    threads: int = 2
    holdout_max: int = 400
    speed_iterations: int = 10
    tolerance: Tolerance = Tolerance()


def _holdout_summary(holdout: Holdout) -> dict[str, Any]:
    return {"source": holdout.source, "faces": len(holdout), "identities": int(np.unique(holdout.labels).size)}


def _speed_note(rows: list[dict[str, Any]], name: str) -> str:
    ups = [r[f"{name}_speedup"] for r in rows]
    listed = ", ".join(f"{u:.2f}x at batch {r['batch']}" for u, r in zip(ups, rows))
    if min(ups) < MIN_SPEEDUP:
        return f"{name.upper()} is not faster than FP32 on this CPU ({listed}); `--precision auto` keeps FP32 here."
    return f"{name.upper()} is faster than FP32 on this CPU ({listed})."


def run_quantize(model: Path, calib: Path, holdout_path: Path, out: Path, options: QuantizeOptions, step: Step = lambda s: None) -> dict[str, Any]:
    """Quantize ``model``, guard it, time it, and write the chosen model and its report.

    Returns the report dict; raises CorefaceError (after writing the report) when the guard
    rejects INT8 and ``--precision int8`` was asked for.
    """
    from .report import plot_guard_roc, write_report

    if options.precision not in PRECISIONS:
        raise CorefaceError(f"unknown precision {options.precision!r}; choose one of {', '.join(PRECISIONS)}")
    calibration_method(options.method)
    scheme = choose_scheme(options.target, host_isa())
    check_float_model(load_onnx(model, external_data=False), str(model))
    fp32 = open_backend(model, threads=options.threads)
    calib_set = load_calibration_set(calib)
    calib_set.check_for(fp32.contract, str(calib))
    if len(calib_set) < MIN_CALIBRATION_FACES:
        raise CorefaceError(f"{calib}: found {len(calib_set)} faces, need at least {MIN_CALIBRATION_FACES}")
    holdout = load_holdout(holdout_path, options.tolerance.far, options.holdout_max)
    step(f"FP32 embeddings of {len(holdout)} held-out faces")
    reference = embed_in_batches(fp32.embed, holdout.crops)
    report: dict[str, Any] = {
        "kind": "INT8 quantization",
        "model": str(model),
        "precision_tested": "int8",
        "method": options.method,
        "scheme": scheme.as_dict(),
        "threads": options.threads,
        "calibration": {"file": str(calib), "faces": len(calib_set), "sources": len({e["source"] for e in calib_set.entries}), "collect": calib_set.summary},
        "holdout": _holdout_summary(holdout),
        "tolerance": asdict(options.tolerance),
    }
    with Quantizer(model, calib_set.crops, fp32.contract, scheme, options.method) as quantizer:
        candidate = quantizer.workdir / "int8.onnx"

        last: dict[str, np.ndarray] = {}

        def evaluate(exclude: list[str]) -> GuardResult:
            quantizer.quantize(candidate, exclude)
            int8 = open_backend(candidate, threads=options.threads, disabled_optimizers=scheme.check_disabled_optimizers)
            last["int8"] = embed_in_batches(int8.embed, holdout.crops)
            return judge(reference, last["int8"], holdout.labels, options.tolerance)

        step(f"calibrating ({options.method}) on {len(calib_set)} faces and quantizing")
        result = evaluate([])
        report["ranges"] = [asdict(r) for r in quantizer.ranges()]
        excluded: list[str] = []
        if not result.passed and options.auto_exclude:
            step("sensitivity analysis: ranking quantized tensors")
            ranking = rank_tensors(candidate, onnx.load(str(quantizer.preprocessed)), holdout.crops[:SENSITIVITY_FACES], fp32.contract)
            report["sensitivity"] = [asdict(t) for t in ranking[:50]]
            step("sensitivity analysis: leaving the worst layers in float")
            found = search_exclusions(ranking, evaluate, options.max_excluded_groups)
            report["exclusion_search"] = [{"groups": g, "mean_cosine": c, "passed": p} for g, c, p in found.tried]
            if found.passed:
                result, excluded = found.result, found.nodes
                evaluate(excluded)  # leave the passing model in `candidate`
            else:
                report["auto_exclude"] = (
                    f"cannot restore accuracy: leaving {len(found.nodes)} nodes of the {options.max_excluded_groups} worst tensors in float "
                    f"still gives {found.result.summary() if found.result else 'no result'}"
                )
        report["excluded_nodes"] = excluded
        report["guard"] = result.as_dict()
        report["speed"] = []
        if result.passed or options.precision == "auto":
            step("timing FP32 vs INT8 (ONNX Runtime CPU)")
            int8 = open_backend(candidate, threads=options.threads)
            report["speed"] = speed_table({"fp32": fp32, "int8": int8}, holdout.crops, options.speed_iterations)
            report["speed_note"] = _speed_note(report["speed"], "int8")
        chosen = _choose(report, result, options.precision)
        report["chosen_precision"] = chosen
        if chosen is not None:
            with atomic_path(out) as tmp:
                shutil.copyfile(candidate if chosen == "int8" else model, tmp)
            report["output"] = str(out)
        report["verdict"] = _verdict(report, result, chosen)
        report["roc_plot"] = str(plot_guard_roc(out, reference, last["int8"], holdout.labels, "INT8", options.tolerance.far))
        report["report_files"] = [str(p) for p in write_report(out, report)]
    if chosen is None:
        tried = f"; auto-exclude cannot restore accuracy ({len(report['exclusion_search'])} tries)" if "auto_exclude" in report else ""
        raise CorefaceError(
            f"{model}: INT8 rejected by the accuracy guard: {'; '.join(result.problems)} ({result.summary()}){tried}; report: {report['report_files'][1]}"
        )
    return report


def _choose(report: dict[str, Any], result: GuardResult, precision: str) -> str | None:
    """``int8``, ``fp32`` (auto: INT8 failed or is not faster) or None (INT8 asked for and rejected)."""
    if precision == "int8":
        return "int8" if result.passed else None
    faster = bool(report["speed"]) and min(r["int8_speedup"] for r in report["speed"]) >= MIN_SPEEDUP
    return "int8" if result.passed and faster else "fp32"


def _verdict(report: dict[str, Any], result: GuardResult, chosen: str | None) -> str:
    if chosen is None:
        return f"REJECTED: {'; '.join(result.problems)}"
    if chosen == "fp32":
        why = "INT8 failed the accuracy guard" if not result.passed else "INT8 is not faster than FP32 here"
        return f"FP32 kept ({why})"
    return f"INT8 accepted: {result.summary()}"


def run_fp16(model: Path, holdout_path: Path, out: Path, tolerance: Tolerance, threads: int = 2, holdout_max: int = 400, step: Step = lambda s: None) -> dict[str, Any]:
    """Convert ``model`` to FP16 (FP32 I/O) and check parity with FP32 on held-out faces."""
    from .report import plot_guard_roc, write_report

    fp32 = open_backend(model, threads=threads)
    holdout = load_holdout(holdout_path, tolerance.far, holdout_max)
    step("converting to FP16")
    with atomic_path(out) as tmp:
        convert_fp16(model, tmp)
        step(f"parity on {len(holdout)} held-out faces")
        fp16 = open_backend(tmp, backend="onnxruntime", threads=threads)
        reference, half = embed_in_batches(fp32.embed, holdout.crops), embed_in_batches(fp16.embed, holdout.crops)
        result = judge(reference, half, holdout.labels, tolerance)
        if not result.passed:
            raise CorefaceError(f"{model}: FP16 copy fails the parity check: {'; '.join(result.problems)} ({result.summary()})")
    report = {
        "kind": "FP16 conversion",
        "model": str(model),
        "precision_tested": "fp16",
        "threads": threads,
        "holdout": _holdout_summary(holdout),
        "tolerance": asdict(tolerance),
        "guard": result.as_dict(),
        "output": str(out),
        "verdict": f"FP16 parity passed: {result.summary()}",
        "roc_plot": str(plot_guard_roc(out, reference, half, holdout.labels, "FP16", tolerance.far)),
    }
    if not set(GPU_PROVIDERS) & set(ort.get_available_providers()):
        report["speed_note"] = FP16_ON_CPU
    report["report_files"] = [str(p) for p in write_report(out, report)]
    return report
