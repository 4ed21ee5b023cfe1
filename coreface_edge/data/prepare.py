"""Align CFP to 112x112 crops: YuNet first, the fiducials where YuNet finds no face.

Output: ``OUT/<NNN>/<frontal|profile>_<MM>.jpg`` plus ``OUT/manifest.jsonl`` (one JSON
entry per crop). While running, each finished crop is appended to a journal
(``OUT/.prepare-cfp.journal.jsonl``); a re-run, after a finished or an interrupted run,
skips every crop that has both its file and its entry, and the manifest is rewritten
atomically at the end from all entries.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import multiprocessing
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Iterator

import cv2
import numpy as np

from ..atomic import write_bytes_atomic, write_text_atomic
from ..errors import CorefaceError
from ..face import YuNetDetector, align_faces, measure_quality
from .cfp import CfpImage, check_root, five_points, list_images, read_fiducials
from .crops import encode_jpeg

MANIFEST = "manifest.jsonl"
JOURNAL = ".prepare-cfp.journal.jsonl"
JPEG_QUALITY = 95


@dataclass
class PrepareSummary:
    """What one ``prepare-cfp`` run did."""

    done: int = 0
    skipped: int = 0
    yunet: int = 0
    fiducials: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0


def read_manifest(path: Path) -> list[dict[str, Any]]:
    """Entries of a manifest or journal; a torn last line (interrupted append) is dropped."""
    if not path.is_file():
        return []
    entries = []
    lines = path.read_text().splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(lines):
                break
            raise CorefaceError(f"{path}: line {number} is not valid JSON") from None
    return entries


def check_output_folder(out: Path) -> None:
    """Refuse an existing, non-empty ``out`` that no earlier ``prepare-cfp`` wrote."""
    if out.exists() and not out.is_dir():
        raise CorefaceError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not ((out / MANIFEST).is_file() or (out / JOURNAL).is_file()):
        raise CorefaceError(f"{out}: folder has other content and is not a prepare-cfp output (no {MANIFEST}); choose a new folder")


def finished_entries(out: Path) -> dict[str, dict[str, Any]]:
    """Entries of earlier runs (manifest, then journal) whose crop file still exists."""
    entries: dict[str, dict[str, Any]] = {}
    for entry in read_manifest(out / MANIFEST) + read_manifest(out / JOURNAL):
        if (out / entry["path"]).is_file():
            entries[entry["path"]] = entry
    return entries


def _lock(journal: IO[str], out: Path) -> None:
    """Hold an exclusive lock on the journal: one prepare-cfp per output folder at a time."""
    try:
        fcntl.flock(journal.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise CorefaceError(f"{out}: another prepare-cfp is writing to this folder") from None


Job = tuple[Path, Path, CfpImage]  # (CFP root, output folder, photo)
_detector: YuNetDetector | None = None


def _init_worker(score_threshold: float) -> None:
    global _detector
    cv2.setNumThreads(1)
    _detector = YuNetDetector(score_threshold=score_threshold)


def align_one(root: Path, out: Path, image: CfpImage) -> dict[str, Any]:
    """Align one photo and write its crop; returns its manifest entry or ``{"error": ...}``."""
    assert _detector is not None, "call _init_worker first"
    bgr = cv2.imread(str(root / image.image_relpath), cv2.IMREAD_COLOR)
    if bgr is None:
        return {"path": image.aligned_relpath, "error": f"{image.image_relpath}: unreadable image"}
    detections = _detector.detect(bgr)
    if len(detections):
        best = int(detections.order_by_size_and_centrality(bgr.shape)[0])
        landmarks, score, method = detections.landmarks[best], float(detections.scores[best]), "yunet"
    else:
        try:
            landmarks = five_points(read_fiducials(root / image.fiducial_relpath), image.kind)
        except CorefaceError as exc:
            return {"path": image.aligned_relpath, "error": f"no face found and {exc}"}
        score, method = None, "fiducials"
    crop = align_faces(bgr, landmarks)[0]
    write_bytes_atomic(out / image.aligned_relpath, encode_jpeg(crop, JPEG_QUALITY))  # a full disk stops the run, one line
    return {
        "identity": image.identity,
        "kind": image.kind,
        "number": image.number,
        "path": image.aligned_relpath,
        "source": image.image_relpath,
        "method": method,
        "score": None if score is None else round(score, 4),
        "landmarks": np.round(landmarks.astype(np.float64), 2).tolist(),
        "quality": measure_quality(crop, landmarks).as_dict(),
    }


def _init_pool_worker(score_threshold: float) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    _init_worker(score_threshold)


def _align_star(args: Job) -> dict[str, Any]:
    return align_one(*args)


@contextlib.contextmanager
def _job_runner(workers: int, score_threshold: float) -> Iterator[Callable[[list[Job]], Iterator[dict[str, Any]]]]:
    """Yield a ``map`` over jobs: in-process for one worker, else a pool of spawned workers.

    Spawn, not fork: a caller that already runs threads (ONNX Runtime, torch, a progress bar)
    would hand a forked child locks held by threads that do not exist there, and hang it.
    """
    if workers <= 1:
        _init_worker(score_threshold)
        yield lambda jobs: map(_align_star, jobs)
        return
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(workers, initializer=_init_pool_worker, initargs=(score_threshold,)) as pool:
        yield lambda jobs: pool.imap_unordered(_align_star, jobs, chunksize=4)


def prepare_cfp(
    root: Path,
    out: Path,
    identities: list[int] | None = None,
    score_threshold: float = 0.5,
    workers: int = 1,
    progress: Callable[[Iterable[dict[str, Any]], int], Iterable[dict[str, Any]]] = lambda it, total: it,
) -> PrepareSummary:
    """Align every CFP photo of ``identities`` into ``out``; see the module docstring.

    ``progress(results, total)`` wraps the stream of per-image results (a progress bar).
    """
    check_root(root)
    check_output_folder(out)
    images = list_images(root, identities)
    if not images:
        raise CorefaceError(f"{root}: no CFP images found for the requested identities")
    try:
        out.mkdir(parents=True, exist_ok=True)
        journal = open(out / JOURNAL, "a", encoding="utf-8")
    except OSError as exc:
        raise CorefaceError(f"{out}: cannot create the output folder ({exc.strerror or exc})") from None
    with journal:
        _lock(journal, out)
        for stale in out.glob("*/.*.tmp"):  # crops a killed worker was writing
            stale.unlink()
        entries = finished_entries(out)
        todo = [image for image in images if image.aligned_relpath not in entries]
        summary = PrepareSummary(skipped=len(images) - len(todo))
        start = time.perf_counter()
        jobs = [(root, out, image) for image in todo]
        with _job_runner(workers, score_threshold) as run:
            for result in progress(run(jobs), len(jobs)):
                if "error" in result:
                    summary.failures.append((result["path"], result["error"]))
                    continue
                journal.write(json.dumps(result) + "\n")
                journal.flush()
                entries[result["path"]] = result
                summary.done += 1
                if result["method"] == "yunet":
                    summary.yunet += 1
                else:
                    summary.fiducials += 1
        summary.seconds = time.perf_counter() - start
        ordered = sorted(entries.values(), key=lambda e: (e["identity"], e["kind"], e["number"]))
        write_text_atomic(out / MANIFEST, "".join(json.dumps(e) + "\n" for e in ordered))
        (out / JOURNAL).unlink()
    summary.failures.sort()
    return summary
