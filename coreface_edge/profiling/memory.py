"""Peak memory of the profiled process: CPU resident set and, when visible, GPU memory.

The CPU peak is ``VmHWM`` from ``/proc/self/status``, which Linux lets a process reset
(write ``5`` to ``/proc/self/clear_refs``), so each artefact gets its own peak; elsewhere
``resource.getrusage`` gives the peak over the whole process. GPU memory comes from
``pynvml`` when installed, or from torch when the torch backend already imported it; a
Jetson's GPU shares the CPU memory, so its use shows in the CPU peak.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")


def reset_peak_rss() -> bool:
    """Start a new CPU peak-memory window; False when the OS does not allow it."""
    try:
        CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


def parse_vmhwm_mb(status_text: str) -> float | None:
    """``VmHWM`` (peak resident set) in MiB from ``/proc/<pid>/status`` text."""
    match = re.search(r"^VmHWM:\s*(\d+)\s*kB", status_text, re.MULTILINE)
    return int(match.group(1)) / 1024.0 if match else None


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB since the last :func:`reset_peak_rss`."""
    try:
        peak = parse_vmhwm_mb(STATUS.read_text())
    except OSError:
        peak = None
    if peak is not None:
        return peak
    import resource

    scale = 1.0 / 2**20 if sys.platform == "darwin" else 1.0 / 1024  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def gpu_memory_mb() -> float | None:
    """GPU memory in use (MiB) by the process's device, or None where it cannot be seen."""
    torch = sys.modules.get("torch")  # never import torch just to ask
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        return torch.cuda.max_memory_reserved() / 2**20
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        return pynvml.nvmlDeviceGetMemoryInfo(handle).used / 2**20
    except pynvml.NVMLError:
        return None
