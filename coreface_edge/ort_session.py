"""ONNX Runtime sessions for every network the toolkit runs: embedder, detector, liveness."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Sequence

from .errors import CorefaceError

DEVICES = ("cpu", "cuda", "tensorrt", "auto")
EP = {"cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider", "cpu": "CPUExecutionProvider"}


def select_providers(device: str, available: Sequence[str]) -> list[str]:
    """Execution providers for ``device``, best first, always ending with the CPU provider.

    ``auto`` takes CUDA when this ONNX Runtime build has it; ``cuda`` and ``tensorrt`` must be
    available or the call fails with the reason (TensorRT EP falls back to CUDA, then CPU).
    """
    if device not in DEVICES:
        raise CorefaceError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    if device == "cpu":
        return [EP["cpu"]]
    if device == "auto":
        return [p for p in (EP["cuda"],) if p in available] + [EP["cpu"]]
    wanted = [EP["tensorrt"], EP["cuda"]] if device == "tensorrt" else [EP["cuda"]]
    if wanted[0] not in available:
        raise CorefaceError(
            f"{wanted[0]} is not available in this onnxruntime build (available: {', '.join(available)}); "
            "install onnxruntime-gpu or use --device cpu"
        )
    return [p for p in wanted if p in available] + [EP["cpu"]]


def trt_cache_dir(model: Path) -> Path:
    """Where the TensorRT provider keeps engines for ``model``: beside it (``<model>.ort-trt-cache``)
    when its folder is writable, else under the user's cache (a model packaged in a read-only
    site-packages), one folder per model path."""
    if os.access(model.resolve().parent, os.W_OK):
        return model.with_suffix(".ort-trt-cache")
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "coreface-edge" / "ort-trt" / f"{model.stem}-{hashlib.sha256(str(model.resolve()).encode()).hexdigest()[:12]}"


def open_session(path: Path, device: str = "cpu", threads: int | None = None, what: str = "a model", **kwargs: Any) -> Any:
    """An ``onnxruntime.InferenceSession`` for ``path``; any load failure is one CorefaceError line.

    ``threads``: intra-op threads (None: ONNX Runtime's default, one per core); they do not
    spin-wait between runs. With the TensorRT provider, engines and timing caches are kept in
    :func:`trt_cache_dir`, so a Jetson builds them once, not at every start.
    """
    import onnxruntime as ort

    if not path.is_file():
        raise CorefaceError(f"{path}: file not found (expected {what})")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    # Idle intra-op threads sleep instead of spinning: a gate runs the detector, the embedder and
    # two liveness networks in turn, and a spinning pool takes the cores from the next session
    # (walkers.mp4: 1.4x the frames per second; docs/benchmarks.md, "YuNet in ONNX Runtime").
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    providers: list[Any] = select_providers(device, ort.get_available_providers())
    if providers[0] == EP["tensorrt"]:
        cache = str(trt_cache_dir(path))
        providers[0] = (providers[0], {"trt_engine_cache_enable": True, "trt_engine_cache_path": cache, "trt_timing_cache_enable": True})
    try:
        return ort.InferenceSession(str(path), options, providers=providers, **kwargs)
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf/InvalidGraph/... types
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        reason = reason.split(f"Load model from {path} failed:", 1)[-1]  # the path is said once, in front
        raise CorefaceError(f"{path}: ONNX Runtime cannot load it as {what} ({reason[:300]})") from None
