"""The README's promises: its test command is what CI runs, and its main-job chain works."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from conftest import ROOT, run_cli
from coreface_edge.pretrained import DEFAULT_MODEL

README = (ROOT / "README.md").read_text(encoding="utf-8")


def _fenced_commands() -> list[str]:
    return [line.strip() for block in re.findall(r"```bash\n(.*?)```", README, re.S) for line in block.splitlines() if line.strip()]


def test_ci_runs_the_readme_test_command():
    commands = _fenced_commands()
    assert "python -m pytest -q" in commands
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert ci[-1].strip() == "python -m pytest -q"
    setup = next(c for c in commands if c.startswith("python3 -m venv"))
    assert "-e '.[train,dev]'" in setup and "pip install -q -e '.[train,dev]'" in "\n".join(ci)


def test_quick_start_is_set_up_demo_test():
    """What it is, then set up, the main job (`coreface-edge demo`, run by tests/test_demo.py)
    and the test command, in that order."""
    quick = README[README.index("## Quick start") : README.index("### What the demo prints")]
    assert re.findall(r"```bash\n(.*?)\n```", quick, re.S) == [
        "python3 -m venv .venv && . .venv/bin/activate && pip install torch==2.13.0 -e '.[train,dev]'",
        "coreface-edge demo",
        "python -m pytest -q",
    ]


def _readme_commands() -> set[tuple[str, ...]]:
    """Every ``coreface-edge SUB [SUBSUB]`` the README names (sub-commands of groups included)."""
    from typer.main import get_command

    from coreface_edge.cli import app

    root = get_command(app)
    found = set()
    for words in re.findall(r"coreface-edge ((?:[a-z][a-z0-9-]*)(?: [a-z][a-z0-9-]*)?)", README):
        first, *rest = words.split()
        command = root.commands.get(first)
        if command is None:
            continue
        sub = getattr(command, "commands", {})
        found.add((first, rest[0]) if rest and rest[0] in sub else (first,))
    return found


def test_every_readme_command_is_run_by_a_test():
    """Each command the README shows is invoked by some test (in-process or as a subprocess)."""
    sources = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "tests").glob("test_*.py") if p.name != "test_readme.py")
    commands = _readme_commands()
    assert ("demo",) in commands and ("calibrate", "quantize") in commands and ("data", "align") in commands
    missing = []
    for command in sorted(commands):
        pattern = r'"' + r'",\s*"'.join(map(re.escape, command)) + r'"\s*[,)\]]'
        if not re.search(pattern, sources):
            missing.append(" ".join(command))
    assert not missing, f"README commands no test runs: {missing}"


def test_main_job_chain_runs_on_real_photos(tmp_path: Path, face_photos: list[Path]):
    """The README chain, with the webcam swapped for a folder of frames: export the shipped
    model by name, enroll a person from photos, run the gate over other photos of her."""
    chain = next(c for c in _fenced_commands() if c.startswith(f"coreface-edge export {DEFAULT_MODEL}"))
    steps = [s.strip().split()[1] for s in chain.split("&&")]
    assert steps == ["export", "enroll", "gate"]
    run_cli("export", DEFAULT_MODEL, "-o", "model.onnx", cwd=tmp_path)
    photos = tmp_path / "photos" / "ada"
    photos.mkdir(parents=True)
    frames = tmp_path / "camera"
    frames.mkdir()
    for path in face_photos:
        if path.name.startswith("cfp_401_frontal"):
            shutil.copy(path, photos / path.name)
        shutil.copy(path, frames / path.name)
    run_cli("enroll", "--model", "model.onnx", "--gallery", "site.db", "--name", "Ada Lovelace", "--images", photos, cwd=tmp_path)
    out = run_cli("gate", frames, "--model", "model.onnx", "--gallery", "site.db", "--audit", "audit.db",
                  "--threshold", "0.5", "--vote-k", "1", "--vote-n", "1", cwd=tmp_path).stdout  # fmt: skip
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    decided = [d for d in lines if "decision" in d]
    summary = next(d for d in lines if d.get("event") == "summary")
    # the first frame is one of her enrollment photos: accepted as her, with a near-perfect score
    assert decided[0]["frame"] == "cfp_401_frontal_01.jpg" and decided[0]["decision"] == "accept"
    assert decided[0]["person"] == "Ada Lovelace" and decided[0]["score"] > 0.99
    assert summary["frames"] == len(face_photos) and summary["stopped_by"] == "end of source"
    assert (tmp_path / "audit.db").is_file()
