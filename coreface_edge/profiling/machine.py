"""What machine a figure was measured on: CPU, ISA, GPU, Jetson power mode, library versions.

Nothing here imports torch or tensorrt: versions come from package metadata, the GPU from
``nvidia-smi`` or the device tree, so describing a Jetson works with only the edge runtime.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

ISA_FLAGS = (
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16",
    "avx_vnni", "amx_tile", "amx_int8", "amx_bf16",
    "asimd", "asimdhp", "asimddp", "fphp", "i8mm", "bf16", "sve", "sve2",
)  # x86 (flags) and Arm (Features) names worth knowing for INT8/FP16 speed
PACKAGES = {  # report name -> distributions that provide it (first found wins)
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu"),
    "tensorrt": ("tensorrt", "tensorrt-cu13", "tensorrt-cu12", "tensorrt_lean"),
    "torch": ("torch",),
    "onnx": ("onnx",),
    "numpy": ("numpy",),
    "opencv": ("opencv-python-headless", "opencv-python", "opencv-contrib-python"),
}
CPUINFO = Path("/proc/cpuinfo")
DEVICE_TREE_MODEL = Path("/proc/device-tree/model")
TEGRA_RELEASE = Path("/etc/nv_tegra_release")
L4T_TO_JETPACK = {"36.3": "6.0", "36.4": "6.1/6.2", "38.2": "7.0"}


def parse_cpuinfo(text: str) -> dict[str, Any]:
    """CPU model name and the ISA flags of interest from ``/proc/cpuinfo`` text (x86 or Arm)."""
    model = ""
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware") and not model:
            model = value.strip()
        elif key in ("flags", "features"):
            flags.update(value.split())
    return {"model": model, "isa": [f for f in ISA_FLAGS if f in flags]}


def parse_nvpmodel(text: str) -> str:
    """The power mode name from ``nvpmodel -q`` output (``NV Power Mode: MAXN`` -> ``MAXN``)."""
    match = re.search(r"NV Power Mode:\s*(\S+)", text)
    return match.group(1) if match else ""


def parse_tegra_release(text: str) -> dict[str, str]:
    """L4T release and the JetPack it ships with, from ``/etc/nv_tegra_release``.

    ``# R36 (release), REVISION: 4.0, ...`` -> ``{"l4t": "36.4.0", "jetpack": "6.1/6.2"}``.
    """
    match = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text)
    if not match:
        return {}
    major, revision = match.group(1), match.group(2)
    l4t = f"{major}.{revision}"
    minor = f"{major}.{revision.split('.')[0]}"
    return {"l4t": l4t, "jetpack": L4T_TO_JETPACK.get(minor, "unknown")}


def package_versions() -> dict[str, str]:
    """Installed versions of the runtimes a figure depends on (package metadata, no import)."""
    found: dict[str, str] = {}
    for name, dists in PACKAGES.items():
        for dist in dists:
            try:
                found[name] = importlib.metadata.version(dist)
                break
            except importlib.metadata.PackageNotFoundError:
                continue
    return found


def _run(argv: list[str], timeout: float = 5.0) -> str:
    """stdout of a short tool invocation, or "" when it is missing or fails."""
    if not shutil.which(argv[0]):
        return ""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return ""
    return proc.stdout if proc.returncode == 0 else ""


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace").replace("\x00", "").strip()
    except OSError:
        return ""


def describe_gpus() -> list[str]:
    """``name, memory, driver`` for each NVIDIA GPU, or the Jetson module from the device tree."""
    out = _run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"])
    gpus = [line.strip() for line in out.splitlines() if line.strip()]
    if not gpus and TEGRA_RELEASE.exists():
        model = _read(DEVICE_TREE_MODEL)
        gpus = [f"{model} (integrated)"] if model else ["Jetson integrated GPU"]
    return gpus


def describe_machine() -> dict[str, Any]:
    """Everything a reader needs to know to compare a latency figure with their own."""
    cpu = parse_cpuinfo(_read(CPUINFO))
    if not cpu["model"]:
        cpu["model"] = _read(DEVICE_TREE_MODEL) or platform.processor() or platform.machine()
    machine: dict[str, Any] = {
        "hostname": platform.node(),
        "os": f"{platform.system()} {platform.release()}",
        "arch": platform.machine(),
        "python": platform.python_version(),
        "cpu": cpu["model"],
        "cpu_cores": os.cpu_count() or 0,
        "cpu_cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 0,
        "isa": cpu["isa"],
        "memory_gb": _total_memory_gb(),
        "load_avg": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else [],
        "gpus": describe_gpus(),
        "versions": package_versions(),
    }
    power_mode = parse_nvpmodel(_run(["nvpmodel", "-q"]))
    if power_mode:
        machine["jetson_power_mode"] = power_mode
    tegra = parse_tegra_release(_read(TEGRA_RELEASE))
    if tegra:
        machine["jetson"] = tegra
    return machine


def _total_memory_gb() -> float:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return 0.0


def machine_summary(machine: dict[str, Any]) -> str:
    """One line for a table caption: ``AMD EPYC, 2 cores, avx2 fma ...; no GPU; onnxruntime 1.32.0``."""
    parts = [f"{machine.get('cpu', '?')}, {machine.get('cpu_cores_usable', '?')} cores"]
    if machine.get("isa"):
        parts[0] += " (" + " ".join(machine["isa"]) + ")"
    parts.append("; ".join(machine.get("gpus") or ["no GPU"]))
    if machine.get("jetson_power_mode"):
        parts.append(f"power mode {machine['jetson_power_mode']}")
    versions = machine.get("versions", {})
    parts.append(", ".join(f"{k} {versions[k]}" for k in ("onnxruntime", "tensorrt", "torch") if k in versions))
    return "; ".join(p for p in parts if p)
