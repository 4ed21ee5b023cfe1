"""The liveness (presentation-attack) check: MiniFASNet weights loaded strictly, ONNX parity,
the shipped models on the samples, spoof votes in the gate, the audit log, the report, the CLI.

Real weights, real photos through YuNet and real ONNX Runtime sessions; the samples and the
MiniFASNet state dicts come from ../shared (skipped with the reason where it is absent); the
attack frames the gate sees here are synthetic prints of the committed CFP photos.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import SHARED, WALKERS, run_cli

from coreface_edge.errors import CorefaceError
from coreface_edge.gate.report import presentation_rates
from coreface_edge.gate.voting import ACCEPT, NO_MATCH, SPOOF, SPOOF_VOTE, Decider, Observation, VotingPolicy
from coreface_edge.liveness.crop import context_box, liveness_crops
from coreface_edge.liveness.metrics import apcer, bpcer
from coreface_edge.liveness.runtime import LivenessModel, open_liveness, shipped_dir, shipped_liveness
from coreface_edge.liveness.spec import spec_from_name
from coreface_edge.liveness.synthetic import synthetic_attack

MINIFASNET = SHARED / "models" / "minifasnet"
WEIGHTS = ("2.7_80x80_MiniFASNetV2.pth", "4_0_0_80x80_MiniFASNetV1SE.pth")


@pytest.fixture(scope="session")
def minifasnet() -> Path:
    if not all((MINIFASNET / w).is_file() for w in WEIGHTS):
        pytest.skip(f"MiniFASNet weights not found at {MINIFASNET} (needs ../shared/models/minifasnet)")
    return MINIFASNET


@pytest.fixture(scope="session")
def attack_frames(tmp_path_factory: pytest.TempPathFactory, face_photos: list[Path]) -> Path:
    """Four synthetic print attacks (640x480) of the committed photo of CFP 401."""
    folder = tmp_path_factory.mktemp("attacks")
    photo = cv2.imread(str(next(p for p in face_photos if p.name == "cfp_401_frontal_01.jpg")))
    for seed in range(4):
        cv2.imwrite(str(folder / f"print_{seed}.jpg"), synthetic_attack(photo, "print", seed), [cv2.IMWRITE_JPEG_QUALITY, 95])
    return folder


def _one_line_error(*args: object) -> str:
    proc = run_cli(*map(str, args), check=False, timeout=180)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


# --- network and weights -------------------------------------------------------------------
def test_state_dicts_load_strictly(tmp_path: Path):
    """Our own state dicts round-trip (``module.`` prefixes allowed); a missing, unexpected or
    mis-shaped key is a one-line error naming the file and the key."""
    import torch

    from coreface_edge.models.minifasnet import MiniFASNet, load_minifasnet

    torch.manual_seed(0)
    net = MiniFASNet("MiniFASNetV1SE").eval()
    state = net.state_dict()
    path = tmp_path / "4_0_0_80x80_MiniFASNetV1SE.pth"
    torch.save({f"module.{k}": v for k, v in state.items()}, path)
    x = torch.rand(2, 3, 80, 80) * 255
    with torch.no_grad():
        assert torch.equal(load_minifasnet(path, "MiniFASNetV1SE")(x), net(x))
    with pytest.raises(CorefaceError, match=r"4_0_0_80x80_MiniFASNetV1SE.pth: key 'conv_3.model.1.conv.conv.weight' has shape \(26, 64, 1, 1\), MiniFASNetV2 expects \(13, 64, 1, 1\)"):
        load_minifasnet(path, "MiniFASNetV2")
    broken = tmp_path / "broken.pth"
    torch.save({k: v for k, v in state.items() if k != "prob.weight"}, broken)
    with pytest.raises(CorefaceError, match=r"broken.pth: missing key 'prob.weight'"):
        load_minifasnet(broken, "MiniFASNetV1SE")
    torch.save({**state, "head.weight": torch.zeros(3)}, broken)
    with pytest.raises(CorefaceError, match=r"broken.pth: unexpected key 'head.weight'"):
        load_minifasnet(broken, "MiniFASNetV1SE")


def test_shipped_weights_load_strictly(minifasnet: Path):
    import torch

    from coreface_edge.models.minifasnet import load_minifasnet

    for name in WEIGHTS:
        spec = spec_from_name(minifasnet / name)
        model = load_minifasnet(minifasnet / name, spec.architecture)
        assert 430_000 < sum(p.numel() for p in model.parameters()) < 440_000
        with torch.no_grad():
            assert model(torch.zeros(1, 3, 80, 80)).shape == (1, 3)
    assert (spec_from_name(WEIGHTS[0]).scale, spec_from_name(WEIGHTS[1]).scale) == (2.7, 4.0)
    with pytest.raises(CorefaceError, match="2.7_80x80_MiniFASNetV2.pth: key .* MiniFASNetV1SE expects"):
        load_minifasnet(minifasnet / WEIGHTS[0], "MiniFASNetV1SE")


def test_corrupt_weight_file_is_one_clear_line(tmp_path: Path):
    import torch

    from coreface_edge.models.minifasnet import MiniFASNet, load_minifasnet

    good = tmp_path / "good.pth"
    torch.save(MiniFASNet("MiniFASNetV2").state_dict(), good)
    truncated = tmp_path / "2.7_80x80_MiniFASNetV2.pth"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CorefaceError, match=r"2.7_80x80_MiniFASNetV2.pth: not a readable PyTorch state dict \(corrupt, truncated or another format"):
        load_minifasnet(truncated, "MiniFASNetV2")
    out = tmp_path / "out.onnx"
    line = _one_line_error("liveness", "export", truncated, "-o", out)
    assert str(truncated) in line and "not a readable PyTorch state dict" in line and not out.exists()
    line = _one_line_error("liveness", "export", tmp_path / "model.pth", "-o", out)
    assert "cannot read the crop conventions from the name" in line


# --- export and parity ---------------------------------------------------------------------
def test_export_parity_and_the_vendored_onnx_are_these_weights(minifasnet: Path, tmp_path: Path):
    """Each export passes parity against PyTorch, and gives the vendored ONNX's probabilities."""
    from coreface_edge.liveness.export import MAX_PROBABILITY_DIFF, export_liveness, parity_crops

    crops = parity_crops(80)
    for name in WEIGHTS:
        out = tmp_path / name.replace(".pth", ".onnx")
        spec, parity = export_liveness(minifasnet / name, out)
        assert parity.passed and parity.max_abs_diff <= MAX_PROBABILITY_DIFF and parity.faces == len(crops)
        fresh, vendored = LivenessModel(out), LivenessModel(shipped_dir() / out.name)
        assert fresh.spec == vendored.spec == spec
        p_fresh = fresh.session.run(None, {"crops": crops})[0]
        p_vendored = vendored.session.run(None, {"crops": crops})[0]
        np.testing.assert_allclose(p_fresh, p_vendored, atol=1e-6)
        np.testing.assert_allclose(p_fresh.sum(axis=1), 1.0, atol=1e-5)


def test_export_cli_writes_conventions_into_the_onnx(tmp_path: Path):
    import torch

    from coreface_edge.models.minifasnet import MiniFASNet

    torch.manual_seed(1)
    weights = tmp_path / "2.7_80x80_MiniFASNetV2.pth"
    torch.save(MiniFASNet("MiniFASNetV2").state_dict(), weights)
    proc = run_cli("liveness", "export", weights, "-o", tmp_path / "v2.onnx")
    assert "crop 2.7x the face box at 80x80, live class 1" in " ".join(proc.stdout.split())
    model = LivenessModel(tmp_path / "v2.onnx")
    assert (model.spec.architecture, model.spec.scale, model.spec.side) == ("MiniFASNetV2", 2.7, 80)
    line = _one_line_error("liveness", "score", shipped_dir() / "SOURCE.md", "--models", shipped_dir() / "LICENSE")
    assert "LICENSE: ONNX Runtime cannot load it as a liveness model" in line
    import onnxruntime

    if "TensorrtExecutionProvider" not in onnxruntime.get_available_providers():  # the gate says so before opening anything
        line = _one_line_error("gate", "0", "--model", tmp_path / "m.onnx", "--gallery", tmp_path / "g.db", "--liveness", "on", "--liveness-device", "tensorrt")
        assert "TensorrtExecutionProvider is not available in this onnxruntime build" in line
    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():  # likewise for the detector
        line = _one_line_error("gate", "0", "--model", tmp_path / "m.onnx", "--gallery", tmp_path / "g.db", "--detector-device", "cuda")
        assert "CUDAExecutionProvider is not available in this onnxruntime build" in line


# --- scoring -------------------------------------------------------------------------------
def test_the_samples_two_attacks_flagged_and_the_live_one_passed(minifasnet: Path):
    """Through YuNet and the shipped ONNX models at the shipped threshold, and from the CLI."""
    from coreface_edge.face.detector import YuNetDetector

    checker, detector = open_liveness(None, None), YuNetDetector()
    scores = {}
    for name in ("image_T1.jpg", "image_F1.jpg", "image_F2.jpg"):
        image = cv2.imread(str(minifasnet / "samples" / name))
        found = detector.detect(image)
        scores[name] = float(checker.score(image, found.select(found.order_by_size_and_centrality(image.shape)[:1]).boxes)[0])
    assert scores["image_T1.jpg"] >= checker.threshold > max(scores["image_F1.jpg"], scores["image_F2.jpg"]), scores
    rows = {line.split("│")[1].strip().rsplit("/", 1)[-1]: line for line in run_cli("liveness", minifasnet / "samples").stdout.splitlines() if ".jpg" in line}
    assert "live" in rows["image_T1.jpg"] and "spoof" in rows["image_F1.jpg"] and "spoof" in rows["image_F2.jpg"]


def test_synthetic_attacks_are_flagged_without_torch(attack_frames: Path):
    """The edge path scores without torch: block its import and run the CLI on the attacks."""
    script = "import sys; sys.modules['torch'] = None\nfrom coreface_edge.cli import main\nsys.argv = ['coreface-edge', *sys.argv[1:]]\nmain()\n"
    proc = subprocess.run([sys.executable, "-c", script, "liveness", str(attack_frames)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if "print_" in line]
    assert len(rows) == 4 and all("spoof" in r for r in rows), proc.stdout


def test_context_box_is_enlarged_about_the_centre_and_kept_inside():
    assert context_box(np.array([300, 200, 40, 40]), 2.0, 640, 480) == (280, 180, 360, 260)
    assert context_box(np.array([0, 0, 40, 40]), 4.0, 640, 480) == (0, 0, 160, 160)  # shifted, not cut
    assert context_box(np.array([600, 440, 40, 40]), 4.0, 640, 480) == (479, 319, 639, 479)
    assert context_box(np.array([100, 100, 300, 300]), 4.0, 640, 480) == (10, 0, 489, 479)  # shrunk to the frame height, shifted up
    crops = liveness_crops(np.zeros((480, 640, 3), np.uint8), np.array([[10, 10, 50, 60], [500, 400, 80, 70]], np.float32), 2.7, 80)
    assert crops.shape == (2, 80, 80, 3) and crops.dtype == np.uint8


def test_apcer_and_bpcer():
    assert apcer(np.array([0.1, 0.6, 0.5, 0.2]), 0.5) == 0.5 and bpcer(np.array([0.9, 0.4, 0.99, 0.5]), 0.5) == 0.25
    assert apcer(np.array([]), 0.5) is None and bpcer(np.array([]), 0.5) is None


# --- decision logic ------------------------------------------------------------------------
BOX = (100.0, 100.0, 60.0, 60.0)


def test_spoof_votes_decide_and_liveness_runs_only_where_a_vote_can_decide():
    calls: list[list[int]] = []

    def liveness(score: float):
        def live(index: list[int]) -> list[float]:
            calls.append(list(index))
            return [score] * len(index)

        return live

    policy = VotingPolicy(0.8, vote_k=2, vote_n=3, cooldown_s=5.0, live_threshold=0.5)
    matching = Observation(BOX, 0, 0.9, 0.3)
    attack = Decider(policy)  # a photo of person 0 held up: it matches, and scores low on liveness
    assert attack.update(0.0, [matching], liveness(0.1)) == []
    (decision,) = attack.update(0.1, [matching], liveness(0.1))
    assert (decision.kind, decision.person, decision.votes, decision.live) == (SPOOF, 0, 2, pytest.approx(0.1))
    live = Decider(policy)  # the person themselves
    live.update(0.0, [matching], liveness(0.95))
    (decision,) = live.update(0.1, [matching], liveness(0.95))
    assert (decision.kind, decision.person, decision.live) == (ACCEPT, 0, pytest.approx(0.95))
    calls.clear()
    for t in (0.2, 0.3, 0.4):  # the track decided: silent, and not checked again for the same person
        assert live.update(t, [matching], liveness(0.1)) == []
    assert calls == []
    stranger = Observation(BOX, 1, 0.9, 0.3)  # someone else steps into the track: checked, and its spoof votes count
    live.update(0.5, [stranger], liveness(0.1))
    (decision,) = live.update(0.6, [stranger], liveness(0.1))
    assert decision.kind == SPOOF and calls == [[0], [0]]
    off = Decider(VotingPolicy(0.8, vote_k=2, vote_n=3))  # liveness off: the callback is never asked
    off.update(0.0, [matching], liveness(0.1))
    assert off.update(0.1, [matching], liveness(0.1))[0].kind == ACCEPT and calls == [[0], [0]]


def test_unchecked_frames_never_decide_and_spoof_votes_survive_a_gallery_reload():
    policy = VotingPolicy(0.8, vote_k=2, vote_n=3, cooldown_s=0.0, live_threshold=0.5)
    decider = Decider(policy)
    matching = Observation(BOX, 3, 0.9, 0.3)
    assert decider.update(0.0, [matching], None) == [] and decider.update(0.1, [matching], None) == []  # no scores: no decision
    decider.update(0.2, [matching], lambda index: [0.2] * len(index))
    decider.remap({3: 0})
    assert [v for v, _ in decider._tracks[0].votes] == [0, 0, SPOOF_VOTE]  # person 3 is now 0; the spoof vote is kept
    (decision,) = decider.update(0.3, [Observation(BOX, 0, 0.9, 0.3)], lambda index: [0.3] * len(index))
    assert decision.kind == SPOOF and decision.votes == 2 and decision.person == 0
    nobody = Decider(policy)
    nobody.update(0.0, [Observation(BOX, NO_MATCH, 0.1, 0.0)], lambda index: [0.05])
    (decision,) = nobody.update(0.1, [Observation(BOX, NO_MATCH, 0.1, 0.0)], lambda index: [0.05])
    assert decision.kind == SPOOF and decision.person == NO_MATCH  # an attack that matched no one is still an attack


def test_presentation_rates_from_labels():
    decisions = ["spoof", "spoof", "accept", "unknown", "accept", "spoof"]
    wrong = [None, 1, None, None, 1, None]
    attack = [None, None, None, None, 1, 0]  # event 5: an attack let in; event 6: a live person flagged
    rates = presentation_rates(decisions, wrong, attack)
    assert (rates.attacks, rates.attacks_missed, rates.bona_fide, rates.bona_fide_flagged) == (2, 1, 4, 2)
    assert rates.apcer == 0.5 and rates.bpcer == 0.5


# --- the gate ------------------------------------------------------------------------------
def test_gate_decides_spoof_logs_it_runs_the_hook_and_reports_apcer_bpcer(
    model_onnx: Path, face_photos: list[Path], attack_frames: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Liveness is on by default (the suite turns it off for its photo frames: not here)."""
    monkeypatch.delenv("COREFACE_LIVENESS")
    model = tmp_path / "model.onnx"
    shutil.copy(model_onnx, model)
    enroll = tmp_path / "ann"
    enroll.mkdir()
    shutil.copy(next(p for p in face_photos if p.name == "cfp_401_frontal_01.jpg"), enroll)
    run_cli("enroll", "--model", model, "--gallery", tmp_path / "g.db", "--name", "ann", "--images", enroll)
    alarm, audit = tmp_path / "alarm.txt", tmp_path / "audit.db"
    proc = run_cli("gate", attack_frames, "--model", model, "--gallery", tmp_path / "g.db", "--audit", audit, "--threshold", "0.999",
                   "--vote-k", "1", "--vote-n", "1", "--cooldown", "0",
                   "--on-spoof", f"sh -c 'echo $COREFACE_LIVENESS $COREFACE_EVENT_ID >> {alarm}'")  # fmt: skip
    events = [json.loads(line) for line in proc.stdout.splitlines() if '"decision"' in line]
    assert len(events) >= 3 and all(e["decision"] == SPOOF and e["live"] < 0.5 for e in events), events
    assert "liveness: on, spoof below 0.5 (2 models)" in proc.stderr
    summary = json.loads(next(line for line in proc.stdout.splitlines() if '"summary"' in line))
    assert summary["decisions"]["spoof"] == len(events) and summary["latency_ms"]["liveness"]["max"] > 0
    assert sorted(int(line.split()[1]) for line in alarm.read_text().splitlines()) == [e["id"] for e in events]
    with sqlite3.connect(audit) as conn:
        logged = conn.execute("SELECT e.decision, l.score, l.liveness_ms FROM events e JOIN liveness l ON l.event_id = e.id").fetchall()
        outcomes = conn.execute("SELECT outcome FROM actions").fetchall()
        settings = json.loads(conn.execute("SELECT settings FROM runs").fetchone()[0])
    assert len(logged) == len(events) and all(d == SPOOF and s < 0.5 and ms > 0 for d, s, ms in logged)
    assert outcomes == [("ok",)] * len(events) and len(settings["liveness"]["models"]) == 2
    run_cli("report", "label", audit, str(events[1]["id"]), "--bona-fide")  # say the second was a live person after all
    report_json = tmp_path / "report.json"
    text = run_cli("report", audit, "--json", report_json).stdout
    pad = json.loads(report_json.read_text())["presentation_attacks"]
    assert (pad["attacks"], pad["apcer"], pad["bona_fide"], pad["bpcer"]) == (len(events) - 1, 0.0, 1, 1.0)
    assert "APCER 0.00 %" in " ".join(text.split()) and "BPCER 100.00 %" in " ".join(text.split())


def test_profile_pipeline_shows_the_liveness_stage(model_onnx: Path, attack_frames: Path, tmp_path: Path):
    run_cli("profile", "--pipeline", attack_frames, "--model", model_onnx, "--iterations", "0", "--warmup", "0",
            "--liveness", "on", "--out", tmp_path / "on", "--audit", tmp_path / "on.db")  # fmt: skip
    run_cli("profile", "--pipeline", attack_frames, "--model", model_onnx, "--iterations", "0", "--warmup", "0",
            "--liveness", "off", "--out", tmp_path / "off", "--audit", tmp_path / "off.db")  # fmt: skip
    on, off = ({r["key"]: r for r in json.loads((tmp_path / arm / "pipeline.json").read_text())["rows"]} for arm in ("on", "off"))
    assert "liveness" not in off and list(on) == [*off][:3] + ["liveness"] + [*off][3:]
    assert on["liveness"]["metrics"]["max_ms"] > 0  # the first frames of the track are checked


def test_shipped_threshold_and_models_are_package_data():
    shipped = shipped_liveness()
    assert [p.name for p in shipped.models] == [w.replace(".pth", ".onnx") for w in WEIGHTS]
    assert all(p.is_file() for p in shipped.models) and 0 < shipped.threshold < 1 and shipped.measured
    assert (shipped_dir() / "LICENSE").is_file() and "Apache" in (shipped_dir() / "LICENSE").read_text()


# --- fair frames and site fine-tuning -------------------------------------------------------
def test_bona_fide_frames_blend_the_face_in_and_attacks_share_the_scene(face_photos: list[Path]):
    """A bona fide frame has no photo edge (the blend is soft), an attack carries its carrier,
    both come from the same scene through the same camera, and both are deterministic."""
    from coreface_edge.liveness.synthetic import bona_fide_frame, scene_from

    photo = cv2.imread(str(face_photos[0]))
    scene = scene_from(np.full((1080, 1920, 3), 60, np.uint8), np.random.default_rng(0))
    assert scene.shape == (480, 640, 3)
    live = bona_fide_frame(photo, 3, 240, scene)
    assert live.shape == (480, 640, 3) and np.array_equal(live, bona_fide_frame(photo, 3, 240, scene))
    edges = np.abs(np.diff(cv2.GaussianBlur(live, (0, 0), 2).astype(np.float32), axis=1)).mean(2)
    assert edges[:, :40].max() < 3 and edges.max() < 40  # flat scene at the side, no hard step anywhere
    attack = synthetic_attack(photo, "screen", 3, 240, scene)
    assert attack.shape == live.shape and np.abs(attack[:, :20].astype(int) - 60).mean() < 10  # the scene around the phone
    assert (attack.max(axis=2) < 35).mean() > 0.01 > (live.max(axis=2) < 35).mean()  # the phone's black bezel
    with pytest.raises(ValueError, match="background must be 640x480"):
        bona_fide_frame(photo, 0, 240, scene[:100])
    with pytest.raises(ValueError, match="must fit"):
        synthetic_attack(photo, "print", 0, 450)


def test_the_shipped_check_judges_the_presentation_not_the_photo(face_photos: list[Path]):
    """The same CFP photos pass when blended into a real scene and are flagged when pasted with
    hard edges on grey (the look of a held-up print): it is the models' context that decides."""
    if not WALKERS.is_file():
        pytest.skip(f"walkers.mp4 not found at {WALKERS} (needs ../shared/data/video)")
    from coreface_edge.face.detector import YuNetDetector
    from coreface_edge.face.frontend import FaceFrontEnd
    from coreface_edge.liveness.synthetic import bona_fide_frame, scene_from

    capture = cv2.VideoCapture(str(WALKERS))
    capture.set(cv2.CAP_PROP_POS_FRAMES, 60)
    _, background = capture.read()
    checker, front = open_liveness(None, None), FaceFrontEnd(YuNetDetector(), None, max_faces=1)
    frontal = [p for p in face_photos if "frontal" in p.name]

    def score(frame: np.ndarray) -> float:
        faces = front.faces(frame)
        assert faces.ok, faces.problems
        return float(checker.score(frame, faces.boxes[faces.ok[:1]])[0])

    in_scene = [score(bona_fide_frame(cv2.imread(str(p)), k, 200, scene_from(background, np.random.default_rng(k)))) for k, p in enumerate(frontal)]
    pasted = []
    for p in frontal:
        frame = np.full((480, 640, 3), 110, np.uint8)
        photo = cv2.resize(cv2.imread(str(p)), (120, 120))
        frame[180:300, 260:380] = photo
        pasted.append(score(frame))
    assert min(in_scene) >= checker.threshold > max(pasted), (in_scene, pasted)


def test_live_vs_attack_loss_and_the_holdout_split():
    import torch

    from coreface_edge.liveness.finetune import holdout_split, live_vs_attack_loss

    logits = torch.tensor([[0.0, 2.0, 0.0], [1.0, 0.0, 1.0], [0.0, 0.0, 3.0]])
    live = torch.tensor([1.0, 0.0, 0.0])
    p = torch.softmax(logits, 1)
    expected = 0.5 * (-torch.log(p[0, 1]) + 0.5 * (-torch.log(1 - p[1, 1]) - torch.log(1 - p[2, 1])))
    assert torch.isclose(live_vs_attack_loss(logits, live, 1), expected)
    labels = np.array([1] * 10 + [0] * 30)
    held = holdout_split(labels, 0.2, seed=0)
    assert held[:10].sum() == 2 and held[10:].sum() == 6 and np.array_equal(held, holdout_split(labels, 0.2, seed=0))
    assert not holdout_split(labels, 0.0, seed=0).any()


def test_finetune_adapts_the_models_to_a_site_and_exports_them(minifasnet: Path, face_photos: list[Path], tmp_path: Path):
    """The CLI on a tiny site (the committed photos as people before a grey wall, and as prints):
    the flagged people score higher afterwards, the .pth load strictly and the ONNX run at the edge."""
    from coreface_edge.liveness.synthetic import bona_fide_frame

    live, attack = tmp_path / "live", tmp_path / "attack"
    live.mkdir(), attack.mkdir()
    frontal = [p for p in face_photos if "frontal" in p.name]
    for k, p in enumerate(frontal * 3):
        photo = cv2.imread(str(p))
        cv2.imwrite(str(live / f"{k:02d}.jpg"), bona_fide_frame(photo, k, 200 + 20 * (k % 3)))
        cv2.imwrite(str(attack / f"{k:02d}.jpg"), synthetic_attack(photo, ("print", "screen")[k % 2], k, 200))
    (live / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    check_live, check_attack = tmp_path / "check_live", tmp_path / "check_attack"
    check_live.mkdir(), check_attack.mkdir()
    for k, p in enumerate(frontal):
        cv2.imwrite(str(check_live / f"{k}.jpg"), bona_fide_frame(cv2.imread(str(p)), 100 + k, 260))
        cv2.imwrite(str(check_attack / f"{k}.jpg"), synthetic_attack(cv2.imread(str(p)), "print", 100 + k, 260))
    weights = ",".join(str(minifasnet / w) for w in WEIGHTS)
    out = tmp_path / "site"
    proc = run_cli("liveness", "finetune", "--live", live, "--attack", attack, "--weights", weights, "-o", out, "--check-live", check_live,
                   "--check-attack", check_attack, "--epochs", "6", "--holdout", "0.25", "--batch", "8", timeout=300)  # fmt: skip
    assert "loss per epoch" in proc.stdout and "expect worse on others" not in proc.stdout
    rows = [[c.strip() for c in line.split("│")][1:7] for line in proc.stdout.splitlines() if "(BPCER)" in line or "(APCER)" in line]
    assert rows[0][:4] == ["held out at random", "bona fide (BPCER)", "4", "1"], rows  # 15 usable faces in 16 files, one unreadable
    assert [r[:3] for r in rows[2:]] == [["check set", "bona fide (BPCER)", "5"], ["check set", "attack (APCER)", "5"]], rows
    assert rows[2][4] != "0.0 %" and rows[2][5] == "0.0 %", rows  # people before a grey wall: flagged before, passed after
    assert rows[3][5] == "0.0 %", rows  # the prints still flagged
    assert "trained on 22 faces (11 bona fide), 6 epochs" in proc.stdout
    onnx_files = [out / Path(w).with_suffix(".onnx").name for w in WEIGHTS]
    from coreface_edge.models.minifasnet import load_minifasnet

    for w in WEIGHTS:
        load_minifasnet(out / w, spec_from_name(w).architecture)
    metadata = LivenessModel(onnx_files[0]).session.get_modelmeta().custom_metadata_map
    assert metadata["fine_tuned_on"] == f"bona fide {live}; attacks {attack}; 6 epochs, lr 0.0001"
    from coreface_edge.face.detector import YuNetDetector
    from coreface_edge.face.frontend import FaceFrontEnd

    front = FaceFrontEnd(YuNetDetector(), None, max_faces=1)
    before, after = open_liveness(None, None), open_liveness(onnx_files, None)

    def mean_score(checker, folder: Path) -> float:
        scores = []
        for path in sorted(folder.glob("[0-9]*.jpg")):
            frame = cv2.imread(str(path))
            faces = front.faces(frame)
            scores.extend(checker.score(frame, faces.boxes[faces.ok[:1]]).tolist())
        return float(np.mean(scores))

    assert mean_score(after, live) > mean_score(before, live) + 0.2
    assert mean_score(after, attack) < 0.5
    assert f"use: --liveness {onnx_files[0]},{onnx_files[1]}" in proc.stdout


def test_finetune_errors_are_one_line(minifasnet: Path, tmp_path: Path, face_photos: list[Path]):
    weights = ",".join(str(minifasnet / w) for w in WEIGHTS)
    line = _one_line_error("liveness", "finetune", "--live", tmp_path / "nowhere", "--attack", tmp_path, "--weights", weights, "-o", tmp_path / "o")
    assert "nowhere: no such folder" in line
    line = _one_line_error("liveness", "finetune", "--live", face_photos[0], "--attack", tmp_path, "--weights", weights, "-o", tmp_path / "o")
    assert f"{face_photos[0]}: not a folder" in line
    line = _one_line_error("liveness", "finetune", "--live", tmp_path, "--attack", tmp_path, "--weights", weights, "-o", minifasnet)
    assert f"{minifasnet}: the fine-tuned weights would overwrite {minifasnet / WEIGHTS[0]}" in line
    line = _one_line_error("liveness", "finetune", "--live", tmp_path, "--attack", tmp_path, "--weights", tmp_path / "2.7_80x80_MiniFASNetV2.pth", "-o", tmp_path / "o")
    assert "2.7_80x80_MiniFASNetV2.pth: no such weight file" in line
    line = _one_line_error("liveness", "finetune", "--live", tmp_path, "--attack", tmp_path, "--weights", weights, "-o", face_photos[0] / "out")
    assert f"{face_photos[0] / 'out'}: cannot write the output folder ({face_photos[0]} is a file)" in line
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "a.jpg").write_bytes(cv2.imencode(".jpg", np.full((200, 200, 3), 90, np.uint8))[1].tobytes())
    shutil.copy(face_photos[0], empty / "b.jpg")
    line = _one_line_error("liveness", "finetune", "--live", empty, "--attack", empty, "--weights", weights, "-o", tmp_path / "o")
    assert f"{empty}: 1 usable bona fide face(s) in 2 files; fine-tuning needs at least 2 (skipped: no face)" in line
    assert not (tmp_path / "o").exists()
