"""The demo job: the shipped model through every stage of the product on the bundled faces."""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from ..atomic import write_text_atomic
from ..calibration.calibset import load_calibration_set
from ..pretrained import can_export, copy_packaged_export
from ..profiling.benchmark import missing_module
from .samples import DemoSamples
from .scoring import LET_THROUGH, STRANGER_IN, WRONG_PERSON, GateScore, score_decisions
from .tour import BENCHMARK_ITERATIONS, MARKER, MARKER_TOOL, SHIPPED_MODEL, SPEED_ITERATIONS, Tour, copy_samples, prepare_folder, read_json

GATE_VOTING = ["--vote-k", "1", "--vote-n", "1", "--cooldown", "0"]  # every photo is one attempt at the door
NO_LIVENESS = ["--liveness", "off"]  # the camera frames are small web photos, no scene around the face for the liveness crops: it flags many
FACES, CALIB, GALLERY = "faces", "calib.npz", "gallery.db"


def run_demo(samples: DemoSamples, out: Path, console: Console) -> dict[str, Any]:
    """Run every step into ``out``; returns the summary (also written as the folder's marker, ``MARKER``)."""
    start = time.perf_counter()
    prepare_folder(out)
    write_text_atomic(out / MARKER, json.dumps({"tool": MARKER_TOOL, "output": str(out), "status": "running"}) + "\n")  # a failed run's folder is ours to replace
    tour = Tour(out, console)
    local = tour.internal("samples", f"copy the bundled photos to {out / 'samples'}", lambda: copy_samples(samples, out))
    model, gate_model, quantized = _models(tour, out, local)
    score = _gate(tour, out, local, gate_model)
    bench, latency = _measurements(tour, out, local, model, gate_model)
    summary = {
        "tool": MARKER_TOOL,
        "output": str(out),
        "status": "finished",
        "seconds": time.perf_counter() - start,
        "gate_model": str(gate_model),
        "quantization": {"verdict": quantized["verdict"], "chosen": quantized["chosen_precision"], "guard": quantized["guard"]},
        "threshold": read_json(Path(f"{gate_model}.threshold.json")),
        "gate": score.summary(),
        "steps": tour.as_dicts(),
    }
    _print_summary(console, summary, score, bench / "benchmark.json", latency / "pipeline.json")
    write_text_atomic(out / MARKER, json.dumps(summary, indent=2, default=str) + "\n")
    return summary


def _models(tour: Tour, out: Path, local: DemoSamples) -> tuple[Path, Path, dict[str, Any]]:
    """Export (or, without torch, the packaged export), held-out and calibration faces, INT8
    behind the guard, a TensorRT engine where TensorRT is installed. Returns the FP32 ONNX, the
    model the gate runs (the engine if built, else the FP32 ONNX: the shipped threshold was
    measured for FP32 scores) and the quantization report."""
    model = out / "model.onnx"
    export = ["export", SHIPPED_MODEL, "-o", str(model)]
    if not can_export():  # a Jetson: the shipped model's packaged export instead
        tour.internal("export", f"torch or onnxslim not installed: copy the packaged ONNX export instead of running coreface-edge {' '.join(export)}",
                      lambda: (None, _copy_packaged_export(model)))  # fmt: skip
    else:
        tour.run("export", export, lambda: f"{model} (parity checked), {_threshold_note(model)}")
    tour.run("align", ["data", "align", str(out / "labelled"), str(out / FACES)], lambda: _faces_note(out / FACES))
    calib = out / CALIB
    tour.run("collect", ["calibrate", "collect", str(local.calibration), "-o", str(calib), "--min-faces", "16"], lambda: f"{len(load_calibration_set(calib))} faces in {calib}")
    chosen = out / "model_auto.onnx"
    tour.run(
        "quantize",
        ["calibrate", "quantize", str(model), "--calib", str(calib), "--holdout", str(out / FACES), "--precision", "auto",
         "--speed-iterations", str(SPEED_ITERATIONS), "-o", str(chosen)],  # fmt: skip
        lambda: _quantize_note(read_json(out / "model_auto.report.json")),
    )
    engine = out / "model.fp16.engine"
    build = ["build", str(model), "--precision", "fp16", "-o", str(engine)]
    if missing_module("tensorrt"):
        tour.skip("tensorrt", "coreface-edge " + " ".join(build), "no TensorRT (on a Jetson it comes with JetPack; elsewhere pip install tensorrt)")
        gate_model = model
    else:
        built = tour.run("tensorrt", build, lambda: f"engine {engine}, {_threshold_note(engine)}", optional=True)
        gate_model = engine if built.status == "ok" and Path(f"{engine}.threshold.json").is_file() else model
    return model, gate_model, read_json(out / "model_auto.report.json")


def _gate(tour: Tour, out: Path, local: DemoSamples, gate_model: Path) -> GateScore:
    """Enroll the bundled people, run the gate over the camera frames, score it, report."""
    gallery, audit = out / GALLERY, out / "audit.db"
    for person in local.people():
        tour.run("enroll", ["enroll", "--model", str(gate_model), "--gallery", str(gallery), "--name", person, "--images", str(local.enroll / person)])
    tour.run("gate", ["gate", str(local.camera), "--model", str(gate_model), "--gallery", str(gallery), "--audit", str(audit), *GATE_VOTING, *NO_LIVENESS, "--snapshots", "--profile"],
             lambda: f"every decision in {audit}")  # fmt: skip
    score = score_decisions(local.visits(), _decisions(audit))
    _write_decisions(out / "decisions.csv", score)
    tour.run("report", ["report", str(audit), "--plot", str(out / "audit_report.png"), "--json", str(out / "audit_report.json")],
             lambda: f"trial report {out / 'audit_report.json'}")  # fmt: skip
    return score


def _measurements(tour: Tour, out: Path, local: DemoSamples, model: Path, gate_model: Path) -> tuple[Path, Path]:
    """Every format in one table (on the held-out faces), and the pipeline's latency report."""
    bench, latency = out / "benchmark", out / "latency"
    source = SHIPPED_MODEL if can_export() else str(model)
    tour.run("benchmark", ["benchmark", source, "--faces", str(out / FACES), "--calib", str(out / CALIB), "--out", str(bench),
                           "-n", str(BENCHMARK_ITERATIONS), "--warmup", "2"], lambda: f"table {bench / 'benchmark.md'}")  # fmt: skip
    tour.run("latency", ["profile", "--pipeline", str(local.camera), "--model", str(gate_model), "--gallery", str(out / GALLERY),
                         "--iterations", "0", "--warmup", "2", "--out", str(latency), "--audit", str(latency / "pipeline_audit.db"), *NO_LIVENESS],
             lambda: f"report {latency / 'pipeline.md'}")  # fmt: skip
    return bench, latency


def _copy_packaged_export(model: Path) -> str:
    copy_packaged_export(SHIPPED_MODEL, model)
    return f"{model} (the packaged export), {_threshold_note(model)}"


def _threshold_note(model: Path) -> str:
    stored = read_json(Path(f"{model}.threshold.json"))
    return f"operating threshold {stored['threshold']:.4f} (FAR {stored['far_target']:g})"


def _faces_note(faces: Path) -> str:
    people = [d for d in faces.iterdir() if d.is_dir()]
    return f"{sum(len(list(d.glob('*.jpg'))) for d in people)} labelled held-out faces of {len(people)} people in {faces}"


def _quantize_note(report: dict[str, Any]) -> str:
    guard = report["guard"]
    if guard["passed"]:
        return report["verdict"]
    return f"{report['verdict']}: {'; '.join(guard['problems'])}"


def _decisions(audit: Path) -> list[dict[str, Any]]:
    from ..gate.audit import AuditLog

    with AuditLog(audit, create=False) as log:
        rows = log.rows("SELECT frame, decision, person, score FROM events ORDER BY id")
    return [{"frame": f, "decision": d, "person": p, "score": s} for f, d, p, s in rows]


def _write_decisions(path: Path, score: GateScore) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["frame", "truth", "decision", "person", "score", "verdict"])
    writer.writeheader()
    writer.writerows(score.rows)
    write_text_atomic(path, buffer.getvalue())


def _print_summary(console: Console, summary: dict[str, Any], score: GateScore, benchmark: Path, latency: Path) -> None:
    from ..profiling.render import pipeline_summary, rich_table
    from ..profiling.report import load_report

    console.print()
    console.print(rich_table(load_report(benchmark)))
    console.print(_gate_table(score, summary["threshold"]))
    g = summary["gate"]
    console.print(
        f"enrolled people let through: {g['let_through']} of {g['enrolled_attempts']} attempts ({100 * g['share_let_through']:.0f} %); "
        f"strangers let in: {g['strangers_let_in']} of {g['stranger_attempts']}; accepted as someone else: {g['wrong_person_accepted']}",
        highlight=False,
    )
    if g["share_let_through"] < 0.5:
        console.print(
            "[yellow]note:[/] fewer than half of the enrolled attempts were let through at this strict threshold (FAR 1e-4); "
            f"measure the threshold on your own people (coreface-edge threshold --faces) and read the model card: "
            f"coreface_edge/assets/models/{SHIPPED_MODEL}.md",
            highlight=False,
        )
    pipeline = load_report(latency)
    console.print(rich_table(pipeline))
    console.print(pipeline_summary(pipeline), highlight=False)
    console.print(f"INT8: {summary['quantization']['verdict']}; the gate ran {summary['gate_model']}", highlight=False)
    console.print(
        f"[bold]demo finished in {summary['seconds']:.0f} s; everything is in {summary['output']}[/] "
        f"(model, gallery.db, audit.db, decisions.csv, benchmark/, latency/, logs/ with each command's output)",
        highlight=False,
    )


def _gate_table(score: GateScore, threshold: dict[str, Any]) -> Table:
    table = Table(title=f"gate decisions against the ground truth (threshold {threshold['threshold']:.4f}, FAR {threshold['far_target']:g})")
    for column in ("frame", "who", "decision", "person", "score", "verdict"):
        table.add_column(column)
    for r in score.rows:
        style = "bold red" if r["verdict"] in (STRANGER_IN, WRONG_PERSON) else "green" if r["verdict"] == LET_THROUGH else ""
        table.add_row(
            r["frame"], r["truth"] or "stranger", r["decision"] or "-", r["person"] or "-",
            "-" if r["score"] is None else f"{r['score']:.4f}", r["verdict"], style=style,
        )  # fmt: skip
    return table
