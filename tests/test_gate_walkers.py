"""The accept minimum on a real crowd: walkers.mp4 (1080p, 5-9 strangers per frame) against the
demo's gallery (CFP 401-408, 3 bundled photos each) with the shipped model, at default settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from coreface_edge.cli import app
from coreface_edge.demo.samples import bundled_samples
from coreface_edge.pretrained import DEFAULT_MODEL, copy_packaged_export


def _run(*args: object) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def demo_site(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("walkers")
    model = copy_packaged_export(DEFAULT_MODEL, root / "model.onnx")  # with its stored threshold
    for person in sorted(bundled_samples().enroll.iterdir()):
        _run("enroll", "--model", model, "--gallery", root / "g.db", "--name", person.name, "--images", person)
    return {"root": root, "model": model, "gallery": root / "g.db"}


def _gate(site: dict[str, Path], video: Path, *extra: str) -> tuple[list[dict], dict]:
    out = _run("gate", video, "--model", site["model"], "--gallery", site["gallery"], "--audit", site["root"] / "a.db", *extra)
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return [d for d in lines if "decision" in d], lines[-1]


@pytest.mark.parametrize("extra", [(), ("--max-faces", "8")], ids=["defaults", "max-faces-8"])
def test_nobody_in_the_walkers_crowd_is_accepted(demo_site: dict[str, Path], walkers_video: Path, extra: tuple[str, ...]):
    """Nobody in the video is enrolled: not one accept, while faces are still found and judged."""
    decided, summary = _gate(demo_site, walkers_video, *extra)
    assert summary["decisions"]["accept"] == 0, [d for d in decided if d["decision"] == "accept"]
    assert summary["frames"] == 105 and summary["faces_judged"] > 0 and decided
    assert all(d["quality"]["size"] >= 22.0 for d in decided)  # every decision from a face above the accept minimum
    if extra:
        assert summary["faces_below_accept"] > 0  # the crowd's far faces are held back, not judged
