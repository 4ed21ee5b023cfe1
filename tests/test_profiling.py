"""Profiling: statistics on known samples, machine description, report writing from a recorded
JSON, comparison ratios, the profiler's own overhead, and real CLI runs (ONNX model profile,
formats benchmark, gate pipeline on the walkers video)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli
from coreface_edge.errors import CorefaceError
from coreface_edge.profiling.commands import parse_batches
from coreface_edge.profiling.compare import compare_reports, metric_ratios
from coreface_edge.profiling.machine import describe_machine, parse_cpuinfo, parse_nvpmodel, parse_tegra_release
from coreface_edge.profiling.memory import parse_vmhwm_mb
from coreface_edge.profiling.output import write_report
from coreface_edge.profiling.report import latency_row, load_report, new_report
from coreface_edge.profiling.runner import TimedCalls, backend_parts, time_calls
from coreface_edge.profiling.stats import percentile, summarize, throughput
from coreface_edge.pretrained import DEFAULT_MODEL

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# --- statistics -------------------------------------------------------------------------------
def test_percentiles_interpolate_linearly_between_ranks():
    ten = list(range(1, 11))  # rank r = q/100 * 9
    assert percentile(ten, 50) == pytest.approx(5.5)  # r 4.5: 5 + 0.5 * (6 - 5)
    assert percentile(ten, 90) == pytest.approx(9.1)  # r 8.1: 9 + 0.1 * 1
    assert percentile(ten, 99) == pytest.approx(9.91)  # r 8.91
    assert percentile([10, 20, 30, 40], 90) == pytest.approx(37.0)  # r 2.7: 30 + 0.7 * 10
    assert percentile([7.0], 99) == 7.0
    with pytest.raises(ValueError):
        percentile([], 50)


def test_summary_of_known_samples():
    s = summarize([2, 4, 4, 4, 5, 5, 7, 9], items_per_call=8)  # mean 5, population std 2
    assert (s.count, s.mean_ms, s.std_ms, s.min_ms, s.max_ms) == (8, 5.0, 2.0, 2.0, 9.0)
    assert s.p50_ms == pytest.approx(4.5)
    assert s.throughput == pytest.approx(8 * 8 / 0.040)  # 64 images in 40 ms = 1600 img/s
    assert throughput(32, [100.0, 100.0]) == pytest.approx(320.0)
    assert throughput(1, []) == 0.0


def test_time_calls_times_each_call_and_reads_backend_split():
    class SplitTimings:  # the TensorRT backend's contract: ``timings`` of the last call
        timings: dict[str, float] | None = None

        def embed(self) -> None:
            self.timings = {"h2d_ms": 0.1, "compute_ms": 0.5, "d2h_ms": 0.05}

    backend = SplitTimings()
    advanced: list[int] = []
    timed = time_calls(backend.embed, iterations=20, warmup=2, parts=backend_parts(backend), advance=advanced.append)
    assert timed.latencies_ms.shape == (20,) and (timed.latencies_ms > 0).all()
    assert sum(advanced) == 20
    assert set(timed.parts_ms) == {"h2d", "compute", "d2h"}
    np.testing.assert_allclose(timed.parts_ms["compute"], 0.5)
    assert backend_parts(object()) is None


# --- machine description ---------------------------------------------------------------------
def test_cpuinfo_parsing_x86_and_arm():
    x86 = "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu sse4_2 avx avx2 fma f16c avx512f avx512_vnni\n"
    assert parse_cpuinfo(x86) == {"model": "AMD EPYC 7B13", "isa": ["sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512_vnni"]}
    arm = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes asimdhp asimddp\nCPU part\t: 0xd42\n"
    assert parse_cpuinfo(arm) == {"model": "", "isa": ["asimd", "asimdhp", "asimddp"]}


def test_jetson_power_mode_jetpack_and_peak_memory_parsing():
    assert parse_nvpmodel("NV Power Mode: MAXN\n0\n") == "MAXN"
    assert parse_nvpmodel("") == ""
    release = "# R36 (release), REVISION: 4.0, GCID: 37537400, BOARD: generic, EABI: aarch64, DATE: Fri Sep 13"
    assert parse_tegra_release(release) == {"l4t": "36.4.0", "jetpack": "6.1/6.2"}
    assert parse_tegra_release("nothing") == {}
    assert parse_vmhwm_mb("Name:\tpython\nVmHWM:\t  204800 kB\nVmRSS:\t 1 kB\n") == 200.0


def test_machine_description_of_this_machine_without_torch_import():
    machine = describe_machine()
    assert machine["cpu"] and machine["cpu_cores_usable"] >= 1
    assert "onnxruntime" in machine["versions"]
    assert isinstance(machine["gpus"], list) and isinstance(machine["isa"], list)


def test_profiling_modules_import_without_torch():
    import subprocess
    import sys

    code = (
        "import pkgutil, importlib, sys, coreface_edge.profiling as p\n"
        "for m in pkgutil.iter_modules(p.__path__): importlib.import_module('coreface_edge.profiling.' + m.name)\n"
        "print(sorted(m for m in ('torch', 'tensorrt', 'pycuda') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"


# --- comparison ------------------------------------------------------------------------------
def _report(samples: dict[str, list[float]], machine: dict | None = None) -> dict:
    rows = [latency_row(key, {"artefact": key, "batch": 8}, TimedCalls(np.array(ms)), 8) for key, ms in samples.items()]
    return new_report("profile", rows, {}, machine or {"cpu": "test cpu"})


def test_compare_gives_new_over_baseline_per_matching_key():
    baseline = _report({"a": [1.0, 2.0, 3.0], "gone": [1.0]})
    current = _report({"a": [2.0, 4.0, 6.0], "new": [1.0]})
    summary = compare_reports(current, baseline, "base.json")
    assert summary["matched"] == ["a"] and summary["unmatched"] == ["new"] and summary["same_machine"]
    ratios = current["rows"][0]["vs_baseline"]
    assert ratios["p50_ms"] == pytest.approx(2.0) and ratios["mean_ms"] == pytest.approx(2.0)
    assert ratios["throughput"] == pytest.approx(0.5)
    assert "vs_baseline" not in current["rows"][1]
    other_machine = _report({"a": [1.0]}, {"cpu": "another"})
    assert not compare_reports(_report({"a": [1.0]}), other_machine)["same_machine"]


def test_compare_flattens_parts_and_refuses_another_kind():
    row = {"metrics": {"p50_ms": 3.0, "zero": 1.0}, "parts": {"h2d": {"p50_ms": 0.2}}}
    base = {"metrics": {"p50_ms": 1.5, "zero": 0.0}, "parts": {"h2d": {"p50_ms": 0.1}}}
    assert metric_ratios(row, base) == {"p50_ms": pytest.approx(2.0), "h2d.p50_ms": pytest.approx(2.0)}
    with pytest.raises(CorefaceError, match="base.json: is a benchmark report"):
        compare_reports(_report({"a": [1.0]}), new_report("benchmark", [], {}, {}), "base.json")


def test_tensorrt_split_parts_become_sub_rows_with_their_own_ratios():
    from coreface_edge.profiling.render import table_lines

    def engine_report(scale: float) -> dict:
        parts = {"h2d": np.full(5, 0.1 * scale), "compute": np.full(5, 0.8 * scale), "d2h": np.full(5, 0.05 * scale)}
        timed = TimedCalls(np.full(5, 1.0 * scale), parts)
        row = latency_row("m.engine|tensorrt|b1", {"artefact": "m.engine", "backend": "tensorrt", "precision": "fp16", "batch": 1}, timed, 1)
        return new_report("profile", [row], {}, {"cpu": "x"})

    report = engine_report(2.0)
    compare_reports(report, engine_report(1.0))
    headers, lines = table_lines(report)
    assert headers[0] == "artefact" and "p50 ms vs base" in headers
    names = [cells[0] for cells, _ in lines]
    assert names == ["m.engine", "  └ h2d", "  └ compute", "  └ d2h"]
    compute = dict(zip(headers, lines[2][0]))
    assert compute["p50 ms"] == "1.600" and compute["p50 ms vs base"] == "2.00x"
    assert lines[0][1][headers.index("p50 ms vs base")] == "red"  # twice as slow


def test_bad_report_and_batch_inputs_are_one_line_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(CorefaceError, match="bad.json: not a JSON report"):
        load_report(bad)
    bad.write_text(json.dumps({"rows": []}))
    with pytest.raises(CorefaceError, match="not a coreface-edge report"):
        load_report(bad)
    with pytest.raises(CorefaceError, match="no such report"):
        load_report(tmp_path / "missing.json")
    assert parse_batches("32,1,8,8") == [1, 8, 32]
    for text in ("0,1", "a", ""):
        with pytest.raises(CorefaceError, match="--batch"):
            parse_batches(text)


# --- the profiler's own overhead ---------------------------------------------------------------
def test_profiler_overhead_is_under_one_percent_of_a_1ms_workload():
    from coreface_edge.profiling.overhead import measure_overhead

    result = measure_overhead(work_ms=1.0, iterations=200, rounds=3)
    assert result["extra_us_per_call"] < 10.0  # 1 % of 1 ms, measured directly with an empty embed
    assert 1.0 <= result["recorded_p50_ms"] < 1.01  # the recorded latency of a 1 ms call is within 1 %


# --- real CLI runs -----------------------------------------------------------------------------
@pytest.fixture(scope="session")
def profile_run(model_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("profile")
    proc = run_cli("profile", model_onnx, "--batch", "1,4", "-n", "4", "--warmup", "1", "--out", out)
    return out, proc.stdout


def test_real_profile_of_an_onnx_model(profile_run, model_onnx):
    out, stdout = profile_run
    assert "Model latency" in stdout and model_onnx.name in stdout
    report = load_report(out / "profile.json")
    assert [r["labels"]["batch"] for r in report["rows"]] == [1, 4]
    for row in report["rows"]:
        m = row["metrics"]
        assert m["count"] == 4 and len(row["samples_ms"]) == 4
        assert 0 < m["min_ms"] <= m["p50_ms"] <= m["p90_ms"] <= m["p99_ms"] <= m["max_ms"]
        assert m["throughput"] == pytest.approx(row["labels"]["batch"] * 1000.0 / m["mean_ms"], rel=1e-3)
        assert m["peak_rss_mb"] > 50 and row["labels"]["backend"] == "onnxruntime"
        assert row["key"] == f"{model_onnx.name}|onnxruntime|b{row['labels']['batch']}"
    assert report["machine"]["versions"]["onnxruntime"]
    for name in ("profile.md", "profile_latency_hist.png", "profile_latency_vs_batch.png"):
        assert (out / name).stat().st_size > 0


def test_report_regenerated_from_recorded_json(profile_run, tmp_path):
    recorded = load_report(profile_run[0] / "profile.json")
    written = write_report(recorded, tmp_path)
    names = sorted(p.name for p in written)
    assert names == ["profile.json", "profile.md", "profile_latency_hist.png", "profile_latency_vs_batch.png"]
    for png in tmp_path.glob("*.png"):
        data = png.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5000, png
    markdown = (tmp_path / "profile.md").read_text()
    assert "![Latency histograms](profile_latency_hist.png)" in markdown and "| p50 ms |" in markdown
    assert json.loads((tmp_path / "profile.json").read_text())["rows"] == recorded["rows"]


def test_profile_compare_against_saved_report(profile_run, model_onnx, tmp_path):
    baseline = profile_run[0] / "profile.json"
    proc = run_cli("profile", model_onnx, "--batch", "1", "-n", "3", "--warmup", "1", "--out", tmp_path, "--compare", baseline)
    assert "vs base" in proc.stdout
    report = load_report(tmp_path / "profile.json")
    base = {r["key"]: r for r in load_report(baseline)["rows"]}
    row = report["rows"][0]
    assert row["vs_baseline"]["p50_ms"] == pytest.approx(row["metrics"]["p50_ms"] / base[row["key"]]["metrics"]["p50_ms"])
    assert "Ratios are this run / baseline" in (tmp_path / "profile.md").read_text()


def test_profile_user_errors_are_one_line(tmp_path):
    proc = run_cli("profile", tmp_path / "missing.onnx", check=False)
    assert proc.returncode == 2 and "missing.onnx: file not found" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli("profile", "--pipeline", "video.mp4", check=False)
    assert proc.returncode == 2 and "--model is required" in proc.stderr


@pytest.fixture(scope="session")
def aligned_small(cfp_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Aligned CFP for 2 identities of each evaluation fold, plus 1 training identity to calibrate on."""
    out = tmp_path_factory.mktemp("aligned")
    run_cli("data", "prepare-cfp", cfp_root, out, "--identities", "1,401-402,451-452")
    return out


def test_benchmark_rows_for_built_failed_and_unavailable_formats(model_onnx, aligned_small, cfp_root, tmp_path):
    proc = run_cli(
        "benchmark", model_onnx, "--data", aligned_small, "--identities", "401-402,451-452", "--cfp-root", cfp_root,
        "--formats", "pytorch,onnx-fp32,onnx-int8,tensorrt-fp32,tensorrt-int8", "--calib", tmp_path / "no-calib.npz",
        "-n", "2", "--warmup", "0", "--out", tmp_path,
    )  # fmt: skip
    assert "Formats benchmark" in proc.stdout
    rows = {r["key"]: r for r in load_report(tmp_path / "benchmark.json")["rows"]}
    assert list(rows) == ["pytorch", "onnx-fp32", "onnx-int8", "tensorrt-fp32", "tensorrt-int8"]
    assert rows["pytorch"]["labels"]["status"] == "not available"
    assert "is not a PyTorch .pt" in rows["pytorch"]["labels"]["reason"]
    ok = rows["onnx-fp32"]
    assert ok["labels"]["status"] == "ok", ok["labels"]["reason"]
    m = ok["metrics"]
    assert m["size_mb"] == pytest.approx(model_onnx.stat().st_size / 1e6)
    for key in ("ff_tar_far_1e3_pct", "fp_tar_far_1e3_pct"):
        assert 0.0 <= m[key] <= 100.0, key
    for key in ("ff_accuracy_pct", "fp_accuracy_pct"):  # official-pair accuracy needs whole folds: None here
        assert m[key] is None or 0.0 <= m[key] <= 100.0, key
    assert m["p50_ms_b1"] > 0 and m["throughput_b32"] > 0
    failed = rows["onnx-int8"]["labels"]  # a real failure (no calibration file) stops nothing else
    assert failed["status"] == "failed" and "no-calib.npz" in failed["reason"]
    if importlib.util.find_spec("tensorrt") is None:
        for key in ("tensorrt-fp32", "tensorrt-int8"):
            assert rows[key]["labels"]["status"] == "not available"
            assert rows[key]["labels"]["reason"] == "TensorRT not installed"
    assert "TensorRT not installed" in (tmp_path / "benchmark.md").read_text()


def test_pipeline_profile_on_real_video(model_onnx, walkers_video, tmp_path):
    proc = run_cli(
        "profile", "--pipeline", walkers_video, "--model", model_onnx, "-n", "4", "--warmup", "1", "--max-faces", "4", "--out", tmp_path
    )
    assert "Pipeline stages" in proc.stdout and "frames/s end to end" in proc.stdout
    report = load_report(tmp_path / "pipeline.json")
    rows = {r["key"]: r for r in report["rows"]}
    assert list(rows) == ["capture", "detect", "align", "embed", "match", "decide", "log", "other", "end-to-end"]
    assert all(r["metrics"]["count"] == 4 for r in rows.values())
    e2e = rows["end-to-end"]["metrics"]
    assert e2e["throughput"] == pytest.approx(1000.0 / e2e["mean_ms"], rel=1e-3)
    parts = sum(r["metrics"]["mean_ms"] for k, r in rows.items() if k != "end-to-end")
    assert parts == pytest.approx(e2e["mean_ms"], rel=1e-3)  # stages + other add up to the frame time
    assert rows["detect"]["metrics"]["p50_ms"] > 1.0 and rows["capture"]["metrics"]["p50_ms"] > 0.1
    assert report["settings"]["faces_detected"] > 4 and report["settings"]["measured_frames"] == 4
    assert report["settings"]["detect_side"] == "auto (as the gate)"  # 768 px for 1080p, as `gate` picks it
    assert (tmp_path / "pipeline_stages.png").read_bytes().startswith(PNG_MAGIC)
    assert (tmp_path / "pipeline_audit.db").is_file()


def test_benchmark_says_which_evaluation_to_give(tmp_path):
    both = run_cli("benchmark", DEFAULT_MODEL, "--faces", tmp_path, "--data", tmp_path, check=False)
    assert both.returncode == 2 and "give exactly one of --data ALIGNED_CFP or --faces LABELLED_FACES" in both.stderr
    no_calib = run_cli("benchmark", DEFAULT_MODEL, "--faces", tmp_path, "--formats", "onnx-int8", check=False)
    assert no_calib.returncode == 2 and "INT8 needs a calibration set other than the evaluated faces: give --calib" in no_calib.stderr
    unknown = run_cli("benchmark", "no_such_model", "--faces", tmp_path, check=False)
    assert unknown.returncode == 2 and "no_such_model: file not found (nor a shipped model's name)" in unknown.stderr
