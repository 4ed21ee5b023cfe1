"""The Python API (docs/api.md): its examples run as written, without torch, and each facade does
what the CLI does, on real bundled photos through YuNet and ONNX Runtime."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from coreface_edge import AcceptMinimum, CorefaceError, Embedder, Gallery, Gate, verify
from coreface_edge.gate.audit import AuditLog

API_DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def doc_examples() -> list[str]:
    """The ```python blocks of docs/api.md, in order, except those marked "not run by the tests"."""
    blocks = re.findall(r"```python\n(.*?)```", API_DOC.read_text(encoding="utf-8"), re.S)
    return [b for b in blocks if not b.startswith("# not run by the tests")]


def test_the_examples_of_docs_api_run_without_torch(tmp_path: Path):
    examples = doc_examples()
    assert len(examples) == 4
    script = "import sys\nsys.modules['torch'] = None  # a Jetson: no torch\n" + "\n".join(examples)
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.splitlines()
    shape, dtype, threshold = out[0].split()
    assert (shape, dtype) == (f"({embedder_size()},)", "float32") and 0 < float(threshold) < 1 and "same person: " in out[1]
    counts = re.fullmatch(r"32 frames, \{'accept': (\d+), 'reject': (\d+), 'unknown': (\d+)\}", out[-1])
    assert counts and sum(map(int, counts.groups())) == 32, out[-1]  # vote 1 of 1: every visit decided
    assert len([line for line in out if line.startswith("cfp4")]) == 8 and (tmp_path / "site.db").is_file()
    with AuditLog(tmp_path / "audit.db", create=False) as log:
        assert log.rows("SELECT COUNT(*) FROM events")[0][0] == 32  # one visit per bundled camera frame


def embedder_size() -> int:
    """The shipped model's embedding size, from its ONNX metadata."""
    from coreface_edge.pretrained import DEFAULT_MODEL, shipped_onnx_path
    from coreface_edge.runtime import open_backend

    return open_backend(shipped_onnx_path(DEFAULT_MODEL)).contract.embedding_size


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder()


def test_embedder_and_verify(embedder: Embedder, face_photos: list[Path], tmp_path: Path):
    photos = {p.name: p for p in face_photos}
    a, a2, b = (photos[f"cfp_{n}.jpg"] for n in ("401_frontal_01", "401_frontal_02", "402_frontal_01"))
    vector = embedder.embed(a)
    assert vector.shape == (embedder_size(),) and vector.dtype == np.float32 and abs(float(np.linalg.norm(vector)) - 1) < 1e-5
    assert verify(a, a, embedder=embedder).score > 0.9999 and verify(a, a, embedder=embedder).same
    same, other = verify(a, a2, embedder=embedder), verify(a, b, embedder=embedder)
    assert same.score > other.score and not other.same and same.threshold == embedder.threshold
    assert verify(a, b, embedder=embedder, threshold=other.score - 1e-6).same  # an explicit threshold wins
    with pytest.raises(CorefaceError, match="cfp_401_profile_01.jpg: no usable face \\(face the camera\\)"):
        embedder.embed(photos["cfp_401_profile_01.jpg"])
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(a.read_bytes()[:4000])
    with pytest.raises(CorefaceError, match="cut.jpg: unreadable image \\(truncated JPEG"):
        embedder.embed(cut)


def test_gallery_and_gate(embedder: Embedder, face_photos: list[Path], tmp_path: Path):
    photos = {p.name: p for p in face_photos}
    with Gallery(tmp_path / "g.db", embedder) as gallery:
        ann = gallery.enroll("ann", [photos["cfp_401_frontal_01.jpg"], photos["cfp_401_profile_01.jpg"]], badge="7")
        assert (ann.faces, ann.skipped) == (1, [("cfp_401_profile_01.jpg", "face the camera")])
        gallery.enroll("bob", [photos["cfp_402_frontal_01.jpg"]])
        with pytest.raises(CorefaceError, match="'Ann' is already enrolled as 'ann'"):
            gallery.enroll("Ann", [photos["cfp_401_frontal_02.jpg"]])
        assert gallery.people() == ["ann", "bob"]
    seen, events = [], []
    with Gate(tmp_path / "g.db", embedder, on_decision=seen.append, on_event=events.append, threshold=0.999, vote_k=2, vote_n=2,
              cooldown=0, audit=tmp_path / "a.db") as gate:  # fmt: skip
        frame = cv2_read(photos["cfp_401_frontal_01.jpg"])
        assert gate.process(frame) == []  # one vote of the two needed
        decided = gate.process(frame, name="second")
        assert [(d.decision, d.person, d.badge, d.frame, d.votes) for d in decided] == [("accept", "ann", "7", "second", 2)]
        assert seen == decided and decided[0].score > 0.999
        assert gate.process(np.zeros((0, 0, 3), np.uint8)) == [] and gate.summary["bad_frames"] == 1
        assert [e["event"] for e in events] == ["bad_frame"] and "frame 2:" in events[0]["detail"]
        assert gate.process(cv2_read(photos["cfp_401_profile_01.jpg"])) == [] and events[-1]["event"] == "not_judged"
        assert gate.summary["frames"] == 4 and gate.summary["decisions"]["accept"] == 1
    with AuditLog(tmp_path / "a.db", create=False) as log:
        assert log.rows("SELECT id, decision, person FROM events") == [(decided[0].id, "accept", "ann")]
        assert log.rows("SELECT frames, stopped IS NOT NULL FROM runs") == [(4, 1)]
    with Gate(tmp_path / "g.db", embedder, threshold=0.999, vote_k=1, vote_n=1, accept_minimum=AcceptMinimum(min_size=1000)) as gate:
        assert gate.process(frame) == [] and gate.summary["faces_below_accept"] == 1  # too small to judge: never accepted

    def door_jammed(decision):
        raise RuntimeError(f"door jammed for {decision.person}")

    with Gate(tmp_path / "g.db", embedder, on_decision=door_jammed, threshold=0.999, vote_k=1, vote_n=1) as gate:
        with pytest.raises(RuntimeError, match="door jammed for ann"):  # the integrator's error is theirs, not a "bad frame"
            gate.process(frame)
        assert gate.summary["bad_frames"] == 0 and gate.summary["decisions"]["accept"] == 1


def cv2_read(path: Path) -> np.ndarray:
    import cv2

    return cv2.imread(str(path))


def test_gate_settings_are_checked_before_the_gallery_is_opened(embedder: Embedder, tmp_path: Path):
    with pytest.raises(CorefaceError, match=r"voting: need 1 <= vote_k <= vote_n, got k=3 n=2"):
        Gate(tmp_path / "never_created.db", embedder, vote_k=3, vote_n=2)
    assert not (tmp_path / "never_created.db").exists()
