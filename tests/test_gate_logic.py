"""Gate logic without a model: voting/cooldown state machine, matching, threshold choice,
gallery and audit SQLite files (real files), sources (real images and a real video file)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import cv2
import numpy as np
import pytest

from coreface_edge.errors import CorefaceError
from coreface_edge.gate import db
from coreface_edge.gate.audit import AuditLog, Event
from coreface_edge.gate.gallery import Gallery
from coreface_edge.gate.matcher import Matcher, best_two
from coreface_edge.gate.report import build_report, error_rates, plot_report
from coreface_edge.images import folder_images
from coreface_edge.gate.sources import Backoff, folder_frames, live_frames, nvargus_pipeline, open_source, source_kind
from coreface_edge.evaluation.scores import exhaustive_scores
from coreface_edge.gate.threshold import impostor_pair_count, open_set_far, pick_threshold
from coreface_edge.threshold_file import OperatingThreshold, carry_threshold, load_threshold, store_threshold
from coreface_edge.gate.voting import ACCEPT, NO_MATCH, REJECT, UNKNOWN, Decider, Observation, VotingPolicy, iou

BOX = (100.0, 100.0, 80.0, 80.0)


def obs(person: int, score: float, box=BOX, claimed: bool = False) -> Observation:
    return Observation(box, person, score, 0.1, claimed)


# --- voting and cooldown (pure) ----------------------------------------------------------------
def test_accept_needs_k_of_n_agreeing_frames():
    d = Decider(VotingPolicy(threshold=0.5, vote_k=3, vote_n=5, cooldown_s=10))
    assert d.update(0.0, [obs(2, 0.8)]) == []
    assert d.update(0.1, [obs(2, 0.3)]) == []  # below threshold: a NO_MATCH vote
    assert d.update(0.2, [obs(1, 0.9)]) == []  # another person: no agreement yet
    assert d.update(0.3, [obs(2, 0.7)]) == []  # two votes for person 2
    out = d.update(0.4, [obs(2, 0.6)])
    assert [(x.kind, x.person, x.votes) for x in out] == [(ACCEPT, 2, 3)]
    assert out[0].score == pytest.approx(0.7)  # mean of the agreeing votes' scores


def test_accept_score_is_mean_of_agreeing_votes():
    d = Decider(VotingPolicy(threshold=0.5, vote_k=2, vote_n=3, cooldown_s=10))
    d.update(0.0, [obs(4, 0.6)])
    d.update(0.1, [obs(4, 0.2)])
    (out,) = d.update(0.2, [obs(4, 0.8)])
    assert out.kind == ACCEPT and out.person == 4 and out.score == pytest.approx(0.7)


def test_cooldown_per_person_and_per_track():
    d = Decider(VotingPolicy(threshold=0.5, vote_k=1, vote_n=1, cooldown_s=5, track_ttl_s=1.0))
    assert [x.kind for x in d.update(0.0, [obs(7, 0.9)])] == [ACCEPT]
    assert d.update(0.5, [obs(7, 0.9)]) == []  # same track, silent
    far_box = (400.0, 100.0, 80.0, 80.0)
    assert d.update(2.0, [obs(7, 0.9, far_box)]) == []  # new track, same person: person cooldown
    assert [x.person for x in d.update(2.1, [obs(8, 0.9, (700.0, 50.0, 60.0, 60.0))])] == [8]  # others unaffected
    assert [x.kind for x in d.update(6.0, [obs(7, 0.9, far_box)])] == [ACCEPT]  # cooldown over


def test_the_next_person_in_a_queue_does_not_wait_out_the_cooldown():
    """Same spot, same track: a stranger, then enrolled person 3, then person 5 step up."""
    d = Decider(VotingPolicy(threshold=0.5, vote_k=2, vote_n=3, cooldown_s=5, reject_margin=0.1))
    t = iter(np.arange(0.0, 10.0, 0.1))
    decided = [x.kind for _ in range(3) for x in d.update(next(t), [obs(1, 0.2)])]
    assert decided == [UNKNOWN]
    decided = [(x.kind, x.person) for _ in range(4) for x in d.update(next(t), [obs(3, 0.9)])]
    assert decided == [(ACCEPT, 3)]  # at once, not 5 s later; then silent while person 3 stays
    assert [x for _ in range(4) for x in d.update(next(t), [obs(3, 0.3)])] == []  # head turned: still silent
    assert [(x.kind, x.person) for _ in range(2) for x in d.update(next(t), [obs(5, 0.8)])] == [(ACCEPT, 5)]


def test_a_gallery_reload_moves_votes_and_cooldowns_to_the_new_indices():
    d = Decider(VotingPolicy(threshold=0.5, vote_k=2, vote_n=3, cooldown_s=5))
    assert [x.person for x in d.update(0.0, [obs(2, 0.9)]) + d.update(0.1, [obs(2, 0.9)])] == [2]  # accepted
    far = (400.0, 100.0, 80.0, 80.0)
    d.update(0.2, [obs(1, 0.9, far)])  # one vote for person 1 on another track
    d.remap({2: 0})  # person 2 is now index 0; person 1 was removed
    assert d.update(0.3, [obs(0, 0.9, far)]) == []  # the removed person's vote is gone: 1 of 2 votes
    assert d.update(0.4, [obs(0, 0.9, (700.0, 50.0, 60.0, 60.0))]) == []  # index 0 keeps person 2's cooldown


def test_zero_cooldown_decides_every_frame():
    d = Decider(VotingPolicy(threshold=0.5, vote_k=1, vote_n=1, cooldown_s=0))
    kinds = [x.kind for t in range(4) for x in d.update(float(t) * 0.01, [obs(1, 0.9)])]
    assert kinds == [ACCEPT] * 4


def test_reject_and_unknown_are_told_apart():
    policy = VotingPolicy(threshold=0.5, vote_k=2, vote_n=2, cooldown_s=0, reject_margin=0.1)
    d = Decider(policy)
    d.update(0.0, [obs(3, 0.45)])
    (near,) = d.update(0.1, [obs(3, 0.44)])
    assert (near.kind, near.person) == (REJECT, 3)  # close under the threshold: looks enrolled
    d = Decider(policy)
    d.update(0.0, [obs(3, 0.1)])
    (far,) = d.update(0.1, [obs(3, 0.05)])
    assert (far.kind, far.person) == (UNKNOWN, NO_MATCH)
    d = Decider(policy)
    d.update(0.0, [obs(3, 0.1, claimed=True)])
    (mismatch,) = d.update(0.1, [obs(3, 0.1, claimed=True)])
    assert (mismatch.kind, mismatch.person) == (REJECT, 3)  # a claimed badge that does not match


def test_faces_are_tracked_by_iou_and_tracks_stay_bounded():
    d = Decider(VotingPolicy(threshold=0.5, vote_k=2, vote_n=3, cooldown_s=0, max_tracks=4, track_ttl_s=10))
    left, right = (0.0, 0.0, 50.0, 50.0), (300.0, 0.0, 50.0, 50.0)
    assert d.update(0.0, [obs(1, 0.9, left), obs(2, 0.9, right)]) == []
    shifted = (5.0, 3.0, 50.0, 50.0)
    out = d.update(0.1, [obs(2, 0.9, right), obs(1, 0.9, shifted)])
    assert sorted((x.person, x.face) for x in out) == [(1, 1), (2, 0)]
    assert d.n_tracks == 2
    for t in range(100):  # many faces passing by: the number of tracks never exceeds the bound
        d.update(1.0 + t, [obs(5, 0.9, (10.0 * t + 1000, 0.0, 5.0, 5.0))])
        assert d.n_tracks <= 4
    assert iou(left, left) == 1.0 and iou(left, right) == 0.0


def test_detector_view_keeps_the_smallest_accepted_face_detectable():
    from coreface_edge.face.frontend import auto_detect_side

    assert auto_detect_side((480, 640, 3), min_eye_distance=20) == 320
    assert auto_detect_side((1080, 1920, 3), min_eye_distance=20) == 768  # a 50 px face stays 20 px wide
    assert auto_detect_side((240, 320, 3), min_eye_distance=20) == 320
    assert auto_detect_side((1080, 1920, 3), min_eye_distance=8) == 1920  # tiny faces: full resolution


def test_voting_policy_rejects_k_above_n():
    with pytest.raises(CorefaceError, match=r"voting: need 1 <= vote_k <= vote_n, got k=4 n=3"):  # one line, also from the Python API
        VotingPolicy(threshold=0.5, vote_k=4, vote_n=3)


# --- matching (pure) ---------------------------------------------------------------------------
def _unit(rng: np.random.Generator, n: int, d: int = 16) -> np.ndarray:
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_matcher_takes_best_embedding_per_person_and_margin(tmp_path: Path):
    rng = np.random.default_rng(0)
    people = _unit(rng, 3)
    with Gallery(tmp_path / "g.db", create=True) as g:
        g.add_person("ann", np.stack([people[0], _unit(rng, 1)[0]]), "m1", badge="11")
        g.add_person("bob", people[1:2], "m1")
        g.add_person("cid", np.stack([_unit(rng, 1)[0], people[2]]), "m1", badge="33")
        matrix = g.matrix("m1")
    matcher = Matcher(matrix)
    queries = people * 3.0  # not normalised: the matcher normalises
    result = matcher.match(queries)
    assert [matrix.names[m.person] for m in result] == ["ann", "bob", "cid"]
    full = (people @ matrix.embeddings.T)
    for k, m in enumerate(result):
        per_person = [full[k, s:e].max() for s, e in zip(matrix.starts, list(matrix.starts[1:]) + [len(full[k])])]
        assert m.score == pytest.approx(1.0, abs=1e-5)
        assert m.margin == pytest.approx(1.0 - sorted(per_person)[-2], abs=1e-5)
    one = matcher.match(people[:1], person=matrix.index_of_badge("33"))
    assert one[0].person == 2 and one[0].score < 0.99 and one[0].margin < 0
    assert best_two(np.array([[0.2]]))[0].margin == pytest.approx(0.2)
    with pytest.raises(CorefaceError, match="not enrolled"):
        matrix.index_of_badge("99")


def test_faiss_search_agrees_with_numpy(tmp_path: Path):
    pytest.importorskip("faiss", reason="faiss not installed (optional: pip install faiss-cpu)")
    rng = np.random.default_rng(1)
    with Gallery(tmp_path / "g.db", create=True) as g:
        for k in range(20):
            g.add_person(f"p{k}", _unit(rng, 3), "m")
        matrix = g.matrix("m")
    q = _unit(rng, 5)
    exact, fast = Matcher(matrix, use_faiss=False).match(q), Matcher(matrix, use_faiss=True).match(q)
    assert [m.person for m in exact] == [m.person for m in fast]
    assert np.allclose([m.score for m in exact], [m.score for m in fast], atol=1e-5)


# --- threshold from a known score set ---------------------------------------------------------
def test_threshold_for_target_far_on_known_scores(tmp_path: Path):
    impostor = np.arange(1000) / 1000.0 * 0.5  # 0.0 .. 0.4995
    impostor[-3:] = [0.7, 0.8, 0.9]  # three high impostors
    genuine = np.array([0.95, 0.85, 0.75, 0.65, 0.45])
    threshold, far, tar = pick_threshold(genuine, impostor, 1e-3)
    # the lowest threshold still letting in only 1 impostor of 1000 is the genuine score 0.85
    assert threshold == pytest.approx(0.85) and far == pytest.approx(1e-3) and tar == pytest.approx(0.4)
    threshold, far, tar = pick_threshold(genuine, impostor, 3e-3)
    assert threshold == pytest.approx(0.65) and far == pytest.approx(3e-3) and tar == pytest.approx(0.8)
    with pytest.raises(CorefaceError, match="cannot resolve"):
        pick_threshold(genuine, impostor[:100], 1e-3)
    ids, probes = [1, 1, 2, 3, 3, 3], [1, 3, 4]  # the count that refuses a too-small set before embedding
    emb = _unit(np.random.default_rng(5), 6)
    assert impostor_pair_count(ids) == exhaustive_scores(emb, np.array(ids))[1].size == 11
    assert impostor_pair_count(ids, probes) == exhaustive_scores(emb, np.array(ids), emb[:3], np.array(probes))[1].size == 13
    model = tmp_path / "m.onnx"
    model.write_bytes(b"x")
    store_threshold(model, OperatingThreshold(0.7, 3e-3, far, tar, 5, 1000, "fp-a", "scores", 0.0))
    assert load_threshold(model, "fp-a").threshold == 0.7
    with pytest.raises(CorefaceError, match="computed for model"):
        load_threshold(model, "fp-b")
    engine = tmp_path / "m.fp16.engine"  # an FP16 engine built from m.onnx scores like it: it takes its threshold
    carried = carry_threshold(model, engine, "fp-a", "carried to this fp16 engine")
    assert carried == tmp_path / "m.fp16.engine.threshold.json"
    assert load_threshold(engine, "fp-a").threshold == 0.7 and load_threshold(engine, "fp-a").data == "scores; carried to this fp16 engine"
    assert carry_threshold(tmp_path / "none.onnx", tmp_path / "none.engine", "fp-a", "x") is None


def test_open_set_false_accepts_grow_with_the_gallery():
    assert open_set_far(1e-3, 1) == pytest.approx(1e-3)
    assert open_set_far(1e-3, 300) == pytest.approx(1 - 0.999**300)  # 100 people x 3 photos: ~26 %
    assert open_set_far(1e-6, 100_000) == pytest.approx(0.0952, abs=1e-4)
    assert open_set_far(1.0, 5) == 1.0 and open_set_far(0.0, 10**6) == 0.0


def test_a_signal_while_waiting_for_a_frame_stops_at_once(tmp_path: Path):
    """A dropped camera's back-off sleeps for up to 30 s: SIGTERM must not wait for it."""
    import os
    import signal
    import threading
    import time

    from coreface_edge.gate.actions import ActionRunner
    from coreface_edge.gate.loop import GateLoop

    def stalled_source():
        time.sleep(30)  # as live_frames sleeps between reopen attempts
        yield from ()

    with AuditLog(tmp_path / "audit.db") as log:
        log.start_run("cam", "m", 0.5, {})
        loop = GateLoop(None, None, None, log, ActionRunner([], print), None, "cam", emit=lambda line: None)  # type: ignore[arg-type]
        timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM))
        start = time.monotonic()
        timer.start()
        stats = loop.run(stalled_source())
        assert time.monotonic() - start < 5 and stats.stopped_by == "SIGTERM"
        assert log.rows("SELECT stopped FROM runs")[0][0] is not None  # the run was closed
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored


# --- gallery file ------------------------------------------------------------------------------
def test_gallery_duplicates_other_model_remove_and_empty(tmp_path: Path):
    rng = np.random.default_rng(2)
    path = tmp_path / "g.db"
    with Gallery(path, create=True) as g:
        with pytest.raises(CorefaceError, match="gallery is empty"):
            g.matrix("m")
        crops = rng.integers(0, 255, (2, 112, 112, 3), dtype=np.uint8)
        pid = g.add_person("ann", _unit(rng, 2), "m", badge="7", crops=crops, sources=["a.jpg", "b.jpg"])
        with pytest.raises(CorefaceError, match="already enrolled"):
            g.add_person("ann", _unit(rng, 1), "m")
        with pytest.raises(CorefaceError, match="badge '7' already"):
            g.add_person("bob", _unit(rng, 1), "m", badge="7")
        with pytest.raises(CorefaceError, match="enrolled with model m, this is other: re-enroll"):
            g.add_person("bob", _unit(rng, 1), "other")
        with pytest.raises(CorefaceError, match="re-enroll"):
            g.matrix("other")
        assert [p.name for p in g.persons()] == ["ann"]  # refused writes left nothing behind
        first = g.embeddings_of(pid)[0]
        assert cv2.imdecode(np.frombuffer(g.crop(first["id"]), np.uint8), cv2.IMREAD_COLOR).shape == (112, 112, 3)
        assert g.find("7").name == "ann" and g.find(str(pid)).name == "ann"
        g.remove("ann")
    conn = sqlite3.connect(path)
    assert [conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("persons", "embeddings", "crops")] == [0, 0, 0]
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_gallery_export_import_between_gates(tmp_path: Path):
    rng = np.random.default_rng(3)
    with Gallery(tmp_path / "a.db", create=True) as a:
        a.add_person("ann", _unit(rng, 2), "m", badge="1", crops=rng.integers(0, 255, (2, 112, 112, 3), dtype=np.uint8))
        a.add_person("bob", _unit(rng, 1), "m")
        a.export_bundle(tmp_path / "bundle.npz")
        original = a.matrix("m")
    with Gallery(tmp_path / "b.db", create=True) as b:
        assert b.import_from(tmp_path / "bundle.npz") == ["ann", "bob"]
        moved = b.matrix("m")
        assert np.allclose(moved.embeddings, original.embeddings) and moved.badges == original.badges
        assert sum(r["crop"] for r in b.embeddings_of(b.find("ann").id)) == 2
        with pytest.raises(CorefaceError, match="already enrolled here: ann, bob"):
            b.import_from(tmp_path / "a.db")  # a copied gallery file works as a source too
    with Gallery(tmp_path / "c.db", create=True) as c:
        c.add_person("cid", _unit(rng, 1), "other-model")
        with pytest.raises(CorefaceError, match="re-enroll"):
            c.import_from(tmp_path / "a.db")
        assert [p.name for p in c.persons()] == ["cid"]
    (tmp_path / "junk.npz").write_bytes(b"not a bundle")
    with Gallery(tmp_path / "d.db", create=True) as d, pytest.raises(CorefaceError, match="not a gallery bundle"):
        d.import_from(tmp_path / "junk.npz")


def test_corrupt_foreign_and_locked_database_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 20)
    with pytest.raises(CorefaceError, match="corrupt.db: not a valid SQLite database"):
        Gallery(corrupt)
    assert corrupt.read_bytes().startswith(b"SQLite format 3\x00" + bytes(range(16)))  # left untouched
    with AuditLog(tmp_path / "audit.db"):
        pass
    with pytest.raises(CorefaceError, match="not a coreface-edge gallery file"):
        Gallery(tmp_path / "audit.db")
    with pytest.raises(CorefaceError, match="no such gallery file"):
        Gallery(tmp_path / "missing.db")
    monkeypatch.setattr(db, "BUSY_TIMEOUT_S", 0.2)
    with Gallery(tmp_path / "g.db", create=True) as g:
        holder = sqlite3.connect(tmp_path / "g.db", isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            with pytest.raises(CorefaceError, match="locked by another process"):
                g.add_person("ann", _unit(np.random.default_rng(4), 1), "m")
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        g.add_person("ann", _unit(np.random.default_rng(4), 1), "m")  # works once the lock is gone
        assert len(g.persons()) == 1


# --- audit log and report ---------------------------------------------------------------------
def _event(t: float, kind: str, person: str | None, total: float) -> Event:
    timings = {"detect": total / 2, "align": 1.0, "embed": total / 2 - 2, "match": 1.0, "total": total}
    return Event(t, "cam", "0", kind, 1 if person else None, person, None, 0.6, 0.2, 3, 0, {"size": 50.0}, timings)


def test_audit_labels_and_trial_report(tmp_path: Path):
    path = tmp_path / "audit.db"
    base = 1_800_000_000.0
    with AuditLog(path) as log:
        log.start_run("cam", "m", 0.5, {"x": 1})
        kinds = [ACCEPT] * 6 + [REJECT] * 2 + [UNKNOWN] * 2
        ids = [log.write(_event(base + 1800 * k, kind, "ann" if kind == ACCEPT else None, 20.0 + k)) for k, kind in enumerate(kinds)]
        log.finish_run(frames=123)
        log.label(ids[0], wrong=True)  # a stranger let in
        (tmp_path / "labels.csv").write_text(f"event_id,wrong\n{ids[6]},yes\n{ids[1]},no\n")
        assert log.label_csv(tmp_path / "labels.csv") == 2
        with pytest.raises(CorefaceError, match="no event 999"):
            log.label(999, True)
        (tmp_path / "bad.csv").write_text("event,verdict\n1,2\n")
        with pytest.raises(CorefaceError, match="bad.csv:2: expected columns event_id,wrong"):
            log.label_csv(tmp_path / "bad.csv")
        report, totals = build_report(log)
    assert report["counts"] == {ACCEPT: 6, REJECT: 2, UNKNOWN: 2}
    assert sum(sum(c.values()) for c in report["per_hour"].values()) == 10
    assert len(report["per_hour"]) == 5  # events 30 min apart over 5 hours
    assert report["runs"][0]["frames"] == 123
    labels = report["labels"]
    assert (labels["false_accepts"], labels["false_rejects"], labels["labelled"]) == (1, 1, 3)
    assert labels["false_accept_rate"] == pytest.approx(1 / 4)  # 1 wrong accept + 3 right rejects/unknowns
    assert labels["false_reject_rate"] == pytest.approx(1 / 6)  # 5 right accepts + 1 wrong reject
    assert report["latency"]["total"]["p50_ms"] == pytest.approx(np.percentile(20.0 + np.arange(10), 50))
    assert plot_report(report, totals, tmp_path / "r.png").stat().st_size > 5000
    assert error_rates([], []).far is None


# --- sources ----------------------------------------------------------------------------------
def test_source_kinds_and_csi_pipeline(tmp_path: Path):
    assert source_kind("0") == "camera"
    assert source_kind("rtsp://10.0.0.5:554/stream") == "rtsp"
    pipeline = nvargus_pipeline(sensor_id=1, width=1920, height=1080, fps=30)
    assert source_kind(pipeline) == "gstreamer"
    assert pipeline.startswith("nvarguscamerasrc sensor-id=1 ! ") and "width=1920, height=1080, framerate=30/1" in pipeline
    assert pipeline.endswith("appsink drop=true max-buffers=1 sync=false")
    assert source_kind(str(tmp_path)) == "folder"
    with pytest.raises(CorefaceError, match="no such file or folder"):
        source_kind(str(tmp_path / "nope.mp4"))
    with pytest.raises(CorefaceError, match="no images in this folder"):
        open_source(str(tmp_path))


def test_folder_source_marks_unreadable_and_truncated_images(tmp_path: Path, face_photos: list[Path]):
    """Every file is a frame, so the gate counts it; one that cannot be used carries its problem.
    A JPEG cut short by a failed copy decodes in OpenCV (grey rows) but is refused."""
    for k, photo in enumerate(face_photos[:3]):
        (tmp_path / f"{k}_{photo.name}").write_bytes(photo.read_bytes())
    (tmp_path / "1b_broken.jpg").write_bytes(b"\xff\xd8 garbage")
    whole = face_photos[0].read_bytes()
    (tmp_path / "1c_cut.jpg").write_bytes(whole[: len(whole) // 2])
    assert cv2.imread(str(tmp_path / "1c_cut.jpg")) is not None  # what the gate used to take as a whole photo
    frames = list(folder_frames(folder_images(tmp_path)))
    assert [f.name for f in frames] == sorted(p.name for p in tmp_path.iterdir())
    problems = {f.name: f.problem for f in frames if f.problem}
    assert sorted(problems) == ["1b_broken.jpg", "1c_cut.jpg"] and "truncated JPEG" in problems["1c_cut.jpg"]
    assert all(f.image.ndim == 3 for f in frames if not f.problem) and all(f.image is None for f in frames if f.problem)


class FlakyVideo:
    """A real ``cv2.VideoCapture`` of a video file that drops after ``fail_after`` frames."""

    def __init__(self, path: Path, fail_after: int | None, opens: bool = True) -> None:
        self.cap, self.fail_after, self.opens, self.read_count = cv2.VideoCapture(str(path)), fail_after, opens, 0

    def isOpened(self) -> bool:
        return self.opens and self.cap.isOpened()

    def read(self):
        if self.fail_after is not None and self.read_count >= self.fail_after:
            return False, None
        self.read_count += 1
        return self.cap.read()

    def release(self) -> None:
        self.cap.release()


def test_live_source_that_drops_is_reopened_with_backoff(tmp_path: Path, face_photos: list[Path]):
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 240))
    for photo in face_photos * 2:
        writer.write(cv2.resize(cv2.imread(str(photo)), (320, 240)))
    writer.release()
    attempts = iter([FlakyVideo(video, None, opens=False)] * 2 + [FlakyVideo(video, 4)] + [FlakyVideo(video, None, opens=False)] * 3)
    events, sleeps = [], []
    frames = live_frames(
        FlakyVideo(video, 5), lambda: next(attempts), "cam", Backoff(0.5, 2.0, 1.5), max_reopens=3,
        on_event=lambda kind, detail: events.append(kind), sleep=sleeps.append,
    )  # fmt: skip
    got = []
    with pytest.raises(CorefaceError, match="cam: source lost and 3 reopen attempts failed"):
        for frame in frames:
            got.append(frame)
    assert len(got) == 9 and [f.index for f in got] == list(range(9))  # 5 frames, drop, reopened, 4 more
    assert events == ["source_lost", "source_reopened", "source_lost"]
    assert sleeps == [0.5, 1.0, 1.5, 0.5, 1.0, 1.5]  # back-off doubles up to its cap, then restarts


def test_missing_camera_is_one_clear_line():
    with pytest.raises(CorefaceError, match="97: cannot open this camera source"):
        open_source("97")


def test_camera_enrollment_guides_the_person_until_enough_good_frames(tmp_path: Path, face_photos: list[Path]):
    from coreface_edge.face.detector import YuNetDetector
    from coreface_edge.gate.enroll import from_camera
    from coreface_edge.face.frontend import FULL_RESOLUTION, FaceFrontEnd
    from coreface_edge.gate.sources import open_source

    video = tmp_path / "camera.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (640, 480))
    face = cv2.imread(str(face_photos[0]))
    dark = (face * 0.1).astype(np.uint8)
    small = cv2.resize(face, None, fx=0.12, fy=0.12)
    for image in [np.zeros_like(face), dark, small] + [face] * 4:  # nobody, too dark, too far, then good
        canvas = np.full((480, 640, 3), 90, np.uint8)
        canvas[: image.shape[0], : image.shape[1]] = image[:480, :640]
        writer.write(canvas)
    writer.release()
    front = FaceFrontEnd(YuNetDetector(), embed=lambda crops: crops, detect_side=FULL_RESOLUTION)  # as enroll does
    advice: list[str] = []
    frames = open_source(str(video)).frames
    got = from_camera(front, frames, 3, advice.append, lambda: None, min_interval_s=0.0)
    assert len(got.crops) == 3 and all(c.shape == (112, 112, 3) for c in got.crops)
    assert advice[0] == "no face" and "too dark" in advice[1] and "closer" in advice[2] and advice[-1] == "hold still"
    source = open_source(str(video))
    assert (source.kind, source.total) == ("video", 7)
    with pytest.raises(CorefaceError, match=r"camera\.avi: only 4 of 9 good frames"):
        from_camera(front, source.frames, 9, advice.append, lambda: None, min_interval_s=0.0, source=str(video))


def test_small_faces_get_their_landmarks_from_the_full_frame(face_photos: list[Path]):
    """A face 100 px wide in a 640x480 frame is 50 px in the gate's 320 px view: refined, its
    landmarks land nearer those a full-resolution detection finds; large or tiny faces are left."""
    from coreface_edge.face.detector import YuNetDetector, detect_downscaled, refine_landmarks

    detector, coarse_err, refined_err = YuNetDetector(), [], []
    for photo in (cv2.imread(str(p)) for p in face_photos if "frontal" in p.name):
        small = cv2.resize(photo, (round(photo.shape[1] * 120 / photo.shape[0]), 120), interpolation=cv2.INTER_AREA)
        frame = np.full((480, 640, 3), 110, np.uint8)
        frame[180 : 180 + small.shape[0], 260 : 260 + small.shape[1]] = small
        reference = detector.detect(frame).landmarks[0]
        coarse = detect_downscaled(detector, frame, 320)
        refined = refine_landmarks(detector, frame, coarse, view_scale=2.0)
        coarse_err.append(np.abs(coarse.landmarks[0] - reference).mean())
        refined_err.append(np.abs(refined.landmarks[0] - reference).mean())
        assert refine_landmarks(detector, frame, coarse, view_scale=1.2).landmarks.tolist() == coarse.landmarks.tolist()  # 80 px in view
        assert refine_landmarks(detector, frame, coarse, 2.0, min_face_px=500).landmarks.tolist() == coarse.landmarks.tolist()
    assert len(coarse_err) == 5 and sum(refined_err) < 0.75 * sum(coarse_err)


def test_enrollment_skips_a_photo_with_two_faces(face_photos: list[Path], tmp_path: Path):
    from coreface_edge.face.detector import YuNetDetector
    from coreface_edge.face.frontend import FULL_RESOLUTION, FaceFrontEnd, from_images

    one, two = (cv2.imread(str(p)) for p in (face_photos[3], face_photos[5]))  # CFP 402 and 403, frontal
    one, two = (cv2.resize(x, (round(x.shape[1] * 300 / x.shape[0]), 300)) for x in (one, two))
    pair = np.hstack([one, two])
    for name, image in {"alone.jpg": one, "pair.jpg": pair}.items():
        cv2.imwrite(str(tmp_path / name), image)
    front = FaceFrontEnd(YuNetDetector(), embed=lambda crops: crops, detect_side=FULL_RESOLUTION)  # as enroll does
    got = from_images(front, [tmp_path / "alone.jpg", tmp_path / "pair.jpg"], lambda: None)
    assert got.sources == ["alone.jpg"] and got.skipped == [("pair.jpg", "2 faces: only the person to enroll may be in view")]


def test_a_person_removed_while_the_gate_runs_is_no_longer_accepted(tmp_path: Path, face_photos: list[Path]):
    """`gallery remove` from another process (here: another connection) between two frames."""
    import json

    from coreface_edge.face.detector import YuNetDetector
    from coreface_edge.gate.actions import ActionRunner
    from coreface_edge.gate.gallery import GalleryWatcher
    from coreface_edge.gate.loop import BadgeReader, GateLoop
    from coreface_edge.face.frontend import FaceFrontEnd
    from coreface_edge.gate.sources import Frame

    embed = lambda crops: np.ones((len(crops), 16), np.float32)  # noqa: E731 - every face looks like ann
    with Gallery(tmp_path / "g.db", create=True) as g:
        g.add_person("bob", _unit(np.random.default_rng(1), 1), "m")
        g.add_person("ann", np.ones((1, 16), np.float32) / 4.0, "m")
    watcher = GalleryWatcher(tmp_path / "g.db")
    matrix = watcher.load("m")
    assert watcher.poll() is None
    face = cv2.imread(str(face_photos[0]))

    def frames():
        for i in range(4):
            if i == 2:
                with Gallery(tmp_path / "g.db") as other:
                    other.remove("ann")
            yield Frame(i, 0.1 * i, face, f"f{i}")

    lines: list[str] = []
    loop = GateLoop(FaceFrontEnd(YuNetDetector(), embed), Matcher(matrix), Decider(VotingPolicy(0.9, 1, 1, 0.0)), None,
                    ActionRunner([], print), BadgeReader(None, None, print), "cam", emit=lines.append,
                    gallery=watcher, reload_every_s=0.0)  # fmt: skip
    loop.run(frames())
    watcher.close()
    out = [json.loads(line) for line in lines]
    got = [(o.get("frame"), o.get("decision"), o.get("person")) for o in out if "decision" in o]
    assert got[:2] == [("f0", ACCEPT, "ann"), ("f1", ACCEPT, "ann")]
    assert all(person != "ann" for _, _, person in got[2:]) and len(got) == 4
    reloaded = [o for o in out if o.get("event") == "gallery_reloaded"]
    assert len(reloaded) == 1 and reloaded[0]["detail"].startswith("1 people")


def test_a_bad_frame_is_counted_and_the_loop_goes_on(tmp_path: Path, face_photos: list[Path]):
    """A frame the detector cannot take (empty image) is a ``bad_frame`` event, not a stop."""
    import json

    from coreface_edge.face.detector import YuNetDetector
    from coreface_edge.gate.actions import ActionRunner
    from coreface_edge.gate.loop import BadgeReader, GateLoop
    from coreface_edge.face.frontend import FaceFrontEnd
    from coreface_edge.gate.sources import Frame

    with Gallery(tmp_path / "g.db", create=True) as g:
        g.add_person("ann", _unit(np.random.default_rng(6), 1), "m")
        matrix = g.matrix("m")
    embed = lambda crops: crops.reshape(len(crops), -1)[:, :16].astype(np.float32) + 1.0  # noqa: E731 - not under test
    lines: list[str] = []
    good = cv2.imread(str(face_photos[0]))
    frames = [Frame(0, 0.0, np.zeros((0, 0, 3), np.uint8), "empty"), Frame(1, 0.1, good, "good")]
    with AuditLog(tmp_path / "audit.db") as log:
        log.start_run("cam", "m", -1.0, {})
        loop = GateLoop(FaceFrontEnd(YuNetDetector(), embed), Matcher(matrix), Decider(VotingPolicy(-1.0, 1, 1, 0.0)), log,
                        ActionRunner([], print), BadgeReader(None, None, print), "cam", emit=lines.append)  # fmt: skip
        stats = loop.run(frames)
        stored = log.rows("SELECT frame, decision FROM events")
    events = [json.loads(line) for line in lines]
    assert stats.frames == 2 and stats.bad_frames == 1 and stats.stopped_by == "end of source"
    assert events[0]["event"] == "bad_frame" and "frame empty" in events[0]["detail"]
    assert stored == [("good", ACCEPT)] and events[1]["decision"] == ACCEPT


def test_a_face_below_the_accept_minimum_is_logged_but_never_judged(tmp_path: Path, face_photos: list[Path]):
    """Real photo, real YuNet and ONNX Runtime: with the enrolled face itself (score ~1) the gate
    accepts; once the accept minimum asks for more eye distance than the face has, the same frame
    gives no decision, only a ``not_judged`` line, and nothing is embedded."""
    import json

    from coreface_edge.face.detector import YuNetDetector
    from coreface_edge.face.quality import AcceptMinimum
    from coreface_edge.gate.actions import ActionRunner
    from coreface_edge.gate.loop import BadgeReader, GateLoop
    from coreface_edge.face.frontend import FULL_RESOLUTION, FaceFrontEnd
    from coreface_edge.gate.sources import Frame
    from coreface_edge.pretrained import DEFAULT_MODEL, shipped_onnx_path
    from coreface_edge.runtime import open_backend

    backend = open_backend(shipped_onnx_path(DEFAULT_MODEL), threads=1)
    image = cv2.imread(str(face_photos[0]))
    enrolled = FaceFrontEnd(YuNetDetector(), backend.embed, detect_side=FULL_RESOLUTION).judge(image)
    eyes = enrolled.qualities[0].size
    with Gallery(tmp_path / "g.db", create=True) as g:
        g.add_person("ann", enrolled.embeddings, "m")
        matrix = g.matrix("m")
    results = {}
    for label, minimum in (("judged", AcceptMinimum(eyes - 5)), ("held back", AcceptMinimum(eyes + 5))):
        lines: list[str] = []
        front = FaceFrontEnd(YuNetDetector(), backend.embed, accept=minimum)
        loop = GateLoop(front, Matcher(matrix), Decider(VotingPolicy(0.99, 1, 1, 0.0)), None, ActionRunner([], print),
                        BadgeReader(None, None, print), "cam", emit=lines.append)  # fmt: skip
        loop.run([Frame(0, 0.0, image, "f0")])
        results[label] = ([json.loads(line) for line in lines], loop.stats)
    (judged, stats), (held, held_stats) = results["judged"], results["held back"]
    assert [(d["decision"], d["person"]) for d in judged] == [("accept", "ann")] and stats.faces_below_accept == 0
    assert [e["event"] for e in held] == ["not_judged"] and held[0]["problems"][0].startswith("too small to judge")
    assert (held_stats.faces_judged, held_stats.faces_below_accept, held_stats.faces_low_quality) == (0, 1, 0)
    held_faces = FaceFrontEnd(YuNetDetector(), backend.embed, accept=AcceptMinimum(eyes + 5)).judge(image)
    assert held_stats.decisions["accept"] == 0 and held_faces.below_accept == [True] and held_faces.embeddings is None
