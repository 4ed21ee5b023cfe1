"""``coreface-edge demo`` from an installed wheel (not the source tree): the shipped model, the
detector and the bundled faces must be package data. One real run, then its artefacts and
its decisions, scored here again from the audit log against the bundled ground truth."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from coreface_edge.demo.samples import bundled_samples
from coreface_edge.demo.scoring import score_decisions
from coreface_edge.demo.tour import MARKER, prepare_folder
from coreface_edge.errors import CorefaceError
from coreface_edge.pretrained import DEFAULT_MODEL

REPO = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package built as a wheel and installed into a folder of its own."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"  # a copy: building writes build/ and *.egg-info beside pyproject.toml
    shutil.copytree(REPO / "coreface_edge", source / "coreface_edge", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(root / "dist"), str(source)])
    wheel = next((root / "dist").glob("coreface_edge-*.whl"))
    _run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(root / "site"), str(wheel)])
    return root / "site"


@pytest.fixture(scope="session")
def demo(installed: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    work = tmp_path_factory.mktemp("demo")
    env = {**os.environ, "PYTHONPATH": str(installed)}
    where = _run([sys.executable, "-c", "import coreface_edge; print(coreface_edge.__file__)"], cwd=work, env=env).stdout.strip()
    proc = _run([sys.executable, "-m", "coreface_edge", "demo", "-o", "out"], cwd=work, env=env, timeout=600)
    return {"out": work / "out", "stdout": proc.stdout, "package": Path(where)}


def test_demo_runs_from_the_installed_wheel(demo: dict, installed: Path):
    assert demo["package"].is_relative_to(installed)  # not the source tree
    for packaged in (f"assets/models/{DEFAULT_MODEL}.pt", "assets/yunet/yunet_n_dynamic.onnx", "assets/demo/camera/ground_truth.csv"):
        assert (installed / "coreface_edge" / packaged).is_file()


def test_demo_writes_every_artefact_into_one_folder(demo: dict):
    out = demo["out"]
    for name in ("model.onnx", "model.onnx.threshold.json", "calib.npz", "model_auto.report.json", "model_auto.report.md", "gallery.db",
                 "audit.db", "decisions.csv", "audit_report.json", "benchmark/benchmark.json", "benchmark/benchmark.md",
                 "latency/pipeline.json", "latency/pipeline_stages.png", "latency/pipeline_latency_hist.png", MARKER):  # fmt: skip
        assert (out / name).is_file(), name
    assert len(list((out / "logs").glob("*.log"))) >= 15  # one per command run
    summary = json.loads((out / MARKER).read_text())
    assert summary["output"] == "out" and f"everything is in {summary['output']}" in " ".join(demo["stdout"].split())
    with sqlite3.connect(out / "gallery.db") as db:
        assert db.execute("SELECT COUNT(*) FROM persons").fetchone()[0] == 8


def test_int8_guard_and_tensorrt_outcome_are_reported(demo: dict):
    report = json.loads((demo["out"] / "model_auto.report.json").read_text())
    guard = report["guard"]
    assert guard["n_faces"] >= 50 and report["calibration"]["faces"] >= 16
    assert guard["passed"] == (not guard["problems"])
    assert report["chosen_precision"] in ("int8", "fp32") and report["verdict"] in demo["stdout"]
    if not guard["passed"]:
        assert report["chosen_precision"] == "fp32" and "FP32 kept (INT8 failed the accuracy guard)" in demo["stdout"]
    text = " ".join(demo["stdout"].split())
    bench = {r["key"]: r for r in json.loads((demo["out"] / "benchmark" / "benchmark.json").read_text())["rows"]}
    assert bench["onnx-fp32"]["labels"]["status"] == "ok" and bench["onnx-fp32"]["metrics"]["faces_tar_far_1e3_pct"] is not None
    if "tensorrt" in sys.modules or _has_tensorrt():
        assert bench["tensorrt-fp16"]["labels"]["status"] == "ok"
    else:
        assert "skipped: no TensorRT" in text and bench["tensorrt-fp16"]["labels"]["status"] == "not available"


def _has_tensorrt() -> bool:
    import importlib.util

    return importlib.util.find_spec("tensorrt") is not None


def test_gate_decisions_against_the_ground_truth(demo: dict):
    """Re-scored here from the audit log: no stranger let in, nobody accepted as someone else,
    the share of enrolled people let through printed."""
    out = demo["out"]
    with open(bundled_samples().camera / "ground_truth.csv", newline="") as fh:
        truth = {r["frame"]: r["person"] or None for r in csv.DictReader(fh)}
    with sqlite3.connect(out / "audit.db") as db:
        events = db.execute("SELECT frame, decision, person FROM events ORDER BY id").fetchall()
    assert {frame for frame, _, _ in events} == set(truth)  # every camera frame was judged
    accepted = [(frame, person) for frame, decision, person in events if decision == "accept"]
    assert all(truth[frame] is not None for frame, _ in accepted), accepted  # no stranger let in
    assert all(truth[frame] == person for frame, person in accepted), accepted  # nobody taken for someone else
    enrolled = sum(p is not None for p in truth.values())
    share = f"enrolled people let through: {len(accepted)} of {enrolled} attempts ({100 * len(accepted) / enrolled:.0f} %)"
    assert share in " ".join(demo["stdout"].split())
    # not safe by refusing everyone blindly: enrolled people score above strangers (a model that
    # cannot tell faces apart would pass the two checks above too)
    with sqlite3.connect(out / "audit.db") as db:
        scores = dict(db.execute("SELECT frame, score FROM events").fetchall())
    genuine = [scores[f] for f, p in truth.items() if p is not None]
    strangers = [scores[f] for f, p in truth.items() if p is None]
    assert sum(g > s for g in genuine for s in strangers) / (len(genuine) * len(strangers)) >= 0.65  # ROC AUC
    assert json.loads((out / MARKER).read_text())["gate"]["not_judged"] == 0
    with open(out / "decisions.csv", newline="") as fh:
        assert len(list(csv.DictReader(fh))) == len(truth)


def _cells(row: str) -> list[str]:
    return [c.strip() for c in row.strip("│ ").split("│")]


def test_readme_shows_what_the_demo_prints(demo: dict):
    """The README's quick-start output is a real run: the outcome line and every decision row
    are what the demo prints (scores within 0.002: another CPU's kernels round differently)."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = readme[readme.index("### What the demo prints") :].split("```text\n", 1)[1].split("```", 1)[0]
    outcome = next(line for line in block.splitlines() if line.startswith("enrolled people let through"))
    printed = demo["stdout"].splitlines()
    assert outcome in printed
    shown = {_cells(r)[0]: _cells(r) for r in block.splitlines() if r.startswith("│ frame_")}
    ran = {_cells(r)[0]: _cells(r) for r in printed if r.startswith("│ frame_")}
    assert shown and len(ran) == 32
    for frame, (_, who, decision, person, score, verdict) in shown.items():
        assert ran[frame][1:4] + ran[frame][5:] == [who, decision, person, verdict], frame
        assert abs(float(ran[frame][4]) - float(score)) < 2e-3, frame
    assert any(line.startswith("INT8: ") for line in printed) and "INT8: " in block


def test_scoring_names_every_kind_of_mistake():
    visits = bundled_samples().visits()
    enrolled = [v for v in visits if v.person][:3]
    stranger = next(v for v in visits if v.person is None)
    other = next(v.person for v in visits if v.person and v.person != enrolled[1].person)
    decisions = [
        {"frame": enrolled[0].frame, "decision": "accept", "person": enrolled[0].person, "score": 0.999},
        {"frame": enrolled[1].frame, "decision": "accept", "person": other, "score": 0.999},
        {"frame": stranger.frame, "decision": "accept", "person": other, "score": 0.999},
    ]
    score = score_decisions(visits, decisions)
    s = score.summary()
    assert (s["let_through"], s["wrong_person_accepted"], s["strangers_let_in"], s["safe"]) == (1, 1, 1, False)
    assert s["not_judged"] == len(visits) - 3 and s["enrolled_attempts"] == 16 and s["stranger_attempts"] == 16


def test_output_folder_is_never_someone_elses(tmp_path: Path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("keep me")
    (tmp_path / "mine" / MARKER).write_text("{}")  # a file of that name is not an earlier demo
    with pytest.raises(CorefaceError, match="not empty and not an earlier demo's"):
        prepare_folder(tmp_path / "mine")
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "keep me"
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / MARKER).write_text(json.dumps({"tool": "coreface-edge demo", "output": "earlier", "status": "finished"}))
    (earlier / "old.log").write_text("x")
    prepare_folder(earlier)
    assert list(earlier.iterdir()) == []


def test_ctrl_c_in_a_step_stops_the_demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Click answers Ctrl-C with exit status 130 when it runs in-process; the demo must stop,
    not record the step as done and go on (an optional step included)."""
    from rich.console import Console

    import coreface_edge.data.align_folder as align_folder
    from coreface_edge.demo.tour import Tour

    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt  # what the user's Ctrl-C raises inside the command

    monkeypatch.setattr(align_folder, "align_person_folders", interrupted)
    (tmp_path / "photos" / "ann").mkdir(parents=True)
    shutil.copy(bundled_samples().camera / "frame_001.jpg", tmp_path / "photos" / "ann" / "a.jpg")
    tour = Tour(tmp_path, Console(file=open(os.devnull, "w")))
    with pytest.raises(KeyboardInterrupt):
        tour.run("align", ["data", "align", str(tmp_path / "photos"), str(tmp_path / "faces")], optional=True)
    assert tour.steps == []


def test_ctrl_c_says_what_the_demo_kept(tmp_path: Path):
    """Ctrl-C used to end the demo with exit status 130 and nothing on the screen."""
    proc = subprocess.Popen([sys.executable, "-m", "coreface_edge", "demo", "-o", "out"], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})  # fmt: skip
    try:
        for line in proc.stdout:
            if "export" in line:  # the first command is running
                break
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted: the steps that finished are in out (each command's output in out/logs); coreface-edge demo -o out starts it again" in " ".join(err.split())
    assert (tmp_path / "out" / "logs").is_dir()


def test_demo_runs_without_torch_from_the_packaged_export(tmp_path: Path):
    """A Jetson has no torch: the demo copies the packaged ONNX export instead of exporting,
    and every other step (the edge path) runs as usual."""
    script = "import sys; sys.modules['torch'] = None\nfrom coreface_edge.cli import main\nsys.argv = ['coreface-edge', 'demo', '-o', 'out']\nmain()\n"
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = " ".join(proc.stdout.split())
    assert "torch or onnxslim not installed: copy the packaged ONNX export" in text and "accepted as someone else: 0" in text
    summary = json.loads((tmp_path / "out" / MARKER).read_text())
    assert summary["status"] == "finished" and summary["gate"]["safe"]
    bench = {r["key"]: r for r in json.loads((tmp_path / "out" / "benchmark" / "benchmark.json").read_text())["rows"]}
    assert bench["pytorch"]["labels"]["status"] == "not available" and bench["onnx-fp32"]["labels"]["status"] == "ok"


def test_packaged_export_is_the_export_of_the_packaged_model(model_onnx: Path, parity_faces):
    """The ONNX shipped for machines without torch computes what a fresh export computes, and
    carries the same fingerprint (galleries and thresholds move between them)."""
    from fixtures_models import trained_artifact

    from coreface_edge.export.parity import compare_embeddings
    from coreface_edge.threshold_file import load_threshold
    from coreface_edge.pretrained import shipped_model_path, shipped_onnx_path
    from coreface_edge.runtime import open_backend

    if trained_artifact() != shipped_model_path(DEFAULT_MODEL):
        pytest.skip("COREFACE_TRAINED_MODEL points at another model than the shipped one")
    packaged, fresh = open_backend(shipped_onnx_path(DEFAULT_MODEL)), open_backend(model_onnx)
    assert packaged.contract == fresh.contract
    assert compare_embeddings(fresh.embed(parity_faces), packaged.embed(parity_faces)).min_cosine >= 0.99999
    assert load_threshold(shipped_onnx_path(DEFAULT_MODEL), packaged.contract.fingerprint) is not None


def test_a_failing_step_stops_the_demo_unless_optional(tmp_path: Path):
    """Real commands that fail: a required step stops the demo naming its log; an optional one
    (TensorRT) is recorded as failed and the demo goes on."""
    from rich.console import Console

    from coreface_edge.demo.tour import Tour

    tour = Tour(tmp_path, Console(file=open(os.devnull, "w")))
    step = tour.run("tensorrt", ["build", str(tmp_path / "missing.onnx")], optional=True)
    assert step.status.startswith("failed: ") and Path(step.log).is_file() and "error:" in Path(step.log).read_text()
    with pytest.raises(CorefaceError, match=r"demo step 'enroll' failed: .*missing.db.* \(log: .*02_enroll.log\)"):
        tour.run("enroll", ["gallery", "list", str(tmp_path / "missing.db")])
    assert [s.name for s in tour.steps] == ["tensorrt"]
