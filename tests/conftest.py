"""Shared fixtures: the committed face photos and the optional ../shared data."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest_plugins = ["fixtures_models"]

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SHARED = Path(os.environ.get("COREFACE_SHARED", ROOT.parent / "shared"))
CFP_ROOT = SHARED / "data" / "cfp"
WALKERS = SHARED / "data" / "video" / "walkers.mp4"
# The suite's camera frames are CFP web photos, not people before a camera (no scene around the face), which the liveness check flags:
# gate and profile --pipeline run without it here unless a test turns it on (tests/test_liveness.py).
os.environ["COREFACE_LIVENESS"] = "off"


@pytest.fixture(scope="session")
def face_photos() -> list[Path]:
    """Real CFP photos committed with the tests (identities 401-403, never trained on)."""
    return sorted(FIXTURES.glob("cfp_*.jpg"))


@pytest.fixture(scope="session")
def cfp_root() -> Path:
    if not (CFP_ROOT / "Protocol").is_dir():
        pytest.skip(f"CFP data not found at {CFP_ROOT} (needs ../shared/data/cfp)")
    return CFP_ROOT


@pytest.fixture(scope="session")
def tiny_faces(cfp_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """84 real aligned crops of 6 identities (YuNet + ArcFace template), prepared once."""
    from coreface_edge.data.prepare import prepare_cfp

    out = tmp_path_factory.mktemp("faces") / "cfp112"
    prepare_cfp(cfp_root, out, list(range(1, 7)))
    return out


@pytest.fixture(scope="session")
def walkers_video() -> Path:
    if not WALKERS.is_file():
        pytest.skip(f"walkers video not found at {WALKERS} (needs ../shared/data/video)")
    return WALKERS


def run_cli(*args: str, check: bool = True, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``coreface-edge ARGS`` in a real subprocess, as a user would."""
    proc = subprocess.run(
        [sys.executable, "-m", "coreface_edge", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"coreface-edge {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc
