"""CLI of the gate: ``enroll``, ``gallery list|show|remove|export|import``, ``gate``,
``threshold``, ``report [show|label]``. No torch anywhere on this path."""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

from ..data.cfp import DEFAULT_CFP_ROOT
from ..errors import CorefaceError
from .actions import MAX_AGE_S

LIVENESS_DEFAULT = "on"  # measured: docs/benchmarks.md, "Liveness"
PERSON_REF_HELP = "Id, name (any case) or badge; refused if it fits several people: then id:N, badge:B or name:NAME."


def _model_options(threads: Optional[int]) -> dict[str, Any]:
    return {} if threads is None else {"threads": threads}


def _front_end(embedder: Any, max_faces: int, detect_side: Optional[int], refine: bool = True, accept: Any = None, detector: Any = None) -> Any:
    from ..face.detector import YuNetDetector
    from ..face.frontend import FaceFrontEnd

    return FaceFrontEnd(detector or YuNetDetector(), embedder, max_faces=max_faces, detect_side=detect_side, refine=refine, accept=accept)


def _time(t: float) -> str:
    import time

    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


# --- enroll ----------------------------------------------------------------------------------
def enroll_command(
    model: Path = typer.Option(..., help="Embedding model: .onnx, .engine/.plan (or .pt where torch is installed)."),
    gallery: Path = typer.Option(..., help="Gallery SQLite file (created if missing)."),
    name: str = typer.Option(..., help="Display name (unique in the gallery)."),
    badge: Optional[str] = typer.Option(None, help="Badge number (unique), for 1:1 verification at the gate."),
    images: Optional[Path] = typer.Option(None, help="Folder of photos of this person (one face each)."),
    camera: Optional[str] = typer.Option(None, help="Enroll live from a SOURCE (webcam index, RTSP URL, GStreamer pipeline, video)."),
    frames: int = typer.Option(5, min=1, help="--camera: good frames to collect."),
    timeout: float = typer.Option(60.0, min=1.0, help="--camera: give up after this many seconds."),
    keep_crops: bool = typer.Option(False, "--keep-crops", help="Also store the aligned face images (not stored by default)."),
    threshold: Optional[float] = typer.Option(None, help="Look-alike warning threshold [default: the model's stored threshold]."),
    backend: Optional[str] = typer.Option(None, help="Force a backend: onnxruntime, tensorrt or torch."),
    threads: Optional[int] = typer.Option(None, min=1, help="onnxruntime: intra-op threads of the embedder and the detector [default: one per core]."),
) -> None:
    """Enroll one person from a photo folder or live from a camera."""
    import numpy as np

    from ..face.detector import YuNetDetector
    from ..face.frontend import FULL_RESOLUTION, from_images
    from ..images import folder_images
    from ..profiling.progress import advancer, progress_bar
    from ..runtime.base import embed_in_batches
    from ..threshold_file import load_threshold
    from .enroll import from_camera, look_alikes
    from .gallery import Gallery, model_mismatch
    from .sources import open_source
    from .threshold import open_model

    if (images is None) == (camera is None):
        raise CorefaceError("enroll: give exactly one of --images DIR or --camera SOURCE")
    console = Console(stderr=True)
    with Gallery(gallery, create=True) as store:
        store.check_new_person(name, badge)  # before any photo is processed
        store.check_writable()
        embedder, fingerprint = open_model(model, backend, **_model_options(threads))
        if store.model is not None and store.model != fingerprint:
            raise model_mismatch(gallery, store.model, fingerprint)
        front = _front_end(embedder.embed, 1, FULL_RESOLUTION, detector=YuNetDetector(threads=threads))
        with progress_bar(console) as progress:
            if images is not None:
                if not images.is_dir():
                    raise CorefaceError(f"{images}: not a folder of photos")
                files = folder_images(images)
                advance = advancer(progress, progress.add_task(f"enrolling {name}", total=len(files)))
                got = from_images(front, files, lambda: advance(1))
            else:
                source = open_source(camera).frames
                advance = advancer(progress, progress.add_task(f"enrolling {name}: look at the camera", total=frames))
                guide = lambda advice: console.print(f"[bold]{advice}[/]")  # noqa: E731
                got = from_camera(front, source, frames, guide, lambda: advance(1), timeout_s=timeout, source=str(camera))
        if not got.crops:
            raise CorefaceError(f"{images or camera}: no usable face ({len(got.skipped)} skipped); nothing enrolled")
        crops = np.stack(got.crops)
        embeddings = embed_in_batches(front.embed_fn, crops)
        warn_at = threshold if threshold is not None else getattr(load_threshold(model, fingerprint), "threshold", None)
        similar = look_alikes(store, fingerprint, embeddings, warn_at) if warn_at is not None else []
        person_id = store.add_person(
            name, embeddings, fingerprint, badge, got.qualities, got.sources, crops if keep_crops else None
        )
    table = Table(title=f"enrolled {name!r} (id {person_id}) in {gallery}")
    for column in ("faces stored", "skipped", "crops kept", "model"):
        table.add_column(column)
    table.add_row(str(len(got.crops)), str(len(got.skipped)), "yes" if keep_crops else "no", fingerprint[:12])
    console.print(table)
    for file, why in got.skipped:
        console.print(f"[yellow]skipped[/] {file}: {why}")
    for other, score in similar:
        console.print(f"[bold yellow]warning:[/] {name!r} already matches enrolled {other!r} (score {score:.3f} >= {warn_at:.3f})")
    if warn_at is None:
        console.print("[yellow]no threshold stored for this model: look-alike check skipped (run coreface-edge threshold --store)[/]")


# --- gallery ---------------------------------------------------------------------------------
gallery_app = typer.Typer(help="Inspect and move a gallery: list, show, remove, export, import.", no_args_is_help=True)


@gallery_app.command("list")
def gallery_list(gallery: Path = typer.Argument(..., help="Gallery SQLite file.")) -> None:
    """Everyone enrolled, with badge, number of embeddings and enrollment time."""
    from .gallery import Gallery

    with Gallery(gallery) as store:
        persons, model = store.persons(), store.model
    table = Table(title=f"{gallery}: {len(persons)} people, model {str(model)[:12]}")
    for column in ("id", "name", "badge", "embeddings", "enrolled"):
        table.add_column(column)
    for p in persons:
        table.add_row(str(p.id), p.name, p.badge or "", str(p.n_embeddings), _time(p.created))
    Console().print(table)


@gallery_app.command("show")
def gallery_show(gallery: Path = typer.Argument(...), person: str = typer.Argument(..., help=PERSON_REF_HELP)) -> None:
    """One person's embeddings: source, quality, whether a crop is kept."""
    from .gallery import Gallery

    with Gallery(gallery) as store:
        p = store.find(person)
        rows = store.embeddings_of(p.id)
    table = Table(title=f"{p.name} (id {p.id}, badge {p.badge or '-'}, enrolled {_time(p.created)})")
    for column in ("embedding", "source", "quality", "crop", "model"):
        table.add_column(column)
    for r in rows:
        table.add_row(str(r["id"]), r["source"] or "", r["quality"] or "", "yes" if r["crop"] else "no", r["model"][:12])
    Console().print(table)


@gallery_app.command("remove")
def gallery_remove(gallery: Path = typer.Argument(...), person: str = typer.Argument(..., help=PERSON_REF_HELP)) -> None:
    """Delete a person and everything stored about them (embeddings, crops)."""
    from .gallery import Gallery

    with Gallery(gallery) as store:
        removed = store.remove(person)
    Console().print(f"removed {removed.name!r} (id {removed.id}, {removed.n_embeddings} embeddings)")


@gallery_app.command("export")
def gallery_export(gallery: Path = typer.Argument(...), out: Path = typer.Argument(..., help="Bundle to write (.npz).")) -> None:
    """Write the whole gallery to one portable bundle (model fingerprint included)."""
    from .gallery import Gallery

    with Gallery(gallery) as store:
        n = store.export_bundle(out)
    Console().print(f"exported {n} people to {out}")


@gallery_app.command("import")
def gallery_import(
    gallery: Path = typer.Argument(..., help="Gallery to add to (created if missing)."),
    source: Path = typer.Argument(..., help="A bundle from 'gallery export', or another gallery file."),
) -> None:
    """Add the people of a bundle or another gallery; the model fingerprints must match."""
    from .gallery import Gallery

    if not source.is_file():
        raise CorefaceError(f"{source}: no such file")
    with Gallery(gallery, create=True) as store:
        names = store.import_from(source)
    Console().print(f"imported {len(names)} people into {gallery}: {', '.join(names)}")


# --- gate ------------------------------------------------------------------------------------
def gate_command(
    source: str = typer.Argument(..., help="Webcam index (0), video file, image folder, RTSP URL or GStreamer pipeline."),
    model: Path = typer.Option(..., help="Embedding model (.onnx, .engine/.plan)."),
    gallery: Path = typer.Option(..., help="Gallery SQLite file."),
    badge: Optional[str] = typer.Option(None, help="1:1: verify every face against this badge's person."),
    badge_command: Optional[str] = typer.Option(None, help="1:1: shell command printing the claimed badge (run when a face appears)."),
    threshold: Optional[float] = typer.Option(None, help="Accept score [default: the threshold stored by 'coreface-edge threshold']."),
    vote_k: int = typer.Option(3, min=1, help="Accept when k of the last n frames of a face agree."),
    vote_n: int = typer.Option(5, min=1, help="Voting window (frames)."),
    cooldown: float = typer.Option(5.0, min=0.0, help="Seconds before the same person (or face track) is decided again."),
    reject_margin: Optional[float] = typer.Option(None, min=0.0, help="Below threshold by less than this: 'reject' (looks enrolled), else 'unknown' [default: the stored gap down to the score at 10x its FAR, kept with --threshold; 0.1 if nothing is stored]."),
    max_faces: int = typer.Option(1, min=1, help="Faces judged per frame (largest / most central first)."),
    audit: Path = typer.Option(Path("audit.db"), help="Audit log SQLite file (created if missing)."),
    camera_name: Optional[str] = typer.Option(None, help="Camera name in the audit log [default: SOURCE]."),
    snapshots: bool = typer.Option(False, "--snapshots", help="Store the aligned face of each decision in the audit log."),
    on_accept: Optional[str] = typer.Option(None, help="Command run on accept, without a shell (COREFACE_PERSON, _BADGE, _SCORE, _EVENT_ID in its environment; use sh -c '...' for shell syntax)."),
    action_timeout: float = typer.Option(5.0, min=0.1, help="Seconds before an --on-accept command is killed (with its process group)."),
    action_max_age: float = typer.Option(MAX_AGE_S, min=0.0, help="An accept whose door action waited longer than this (s) is dropped: the person may have left."),
    gpio_pin: Optional[int] = typer.Option(None, help="Jetson GPIO pin (BOARD numbering) pulsed high on accept."),
    liveness: str = typer.Option(LIVENESS_DEFAULT, envvar="COREFACE_LIVENESS", help="Presentation-attack (liveness) check: on (the shipped MiniFASNet models), off, or MODEL[,MODEL] (liveness ONNX files from 'coreface-edge liveness export')."),
    liveness_threshold: Optional[float] = typer.Option(None, help="A face whose liveness score (live probability) falls below this votes 'spoof' [default: the shipped models' 0.5]."),
    liveness_device: str = typer.Option("cpu", help="ONNX Runtime execution provider for the liveness models: cpu, cuda, tensorrt or auto (the GPU ones need onnxruntime-gpu)."),
    detector_device: str = typer.Option("cpu", help="ONNX Runtime execution provider for the YuNet face detector: cpu, cuda, tensorrt or auto (on a Jetson, cuda takes detection off the CPU; tensorrt builds an engine for each new input size, so prefer cuda)."),
    on_spoof: Optional[str] = typer.Option(None, help="Command run on each 'spoof' decision, without a shell (COREFACE_PERSON: who the attack matched, _LIVENESS, _EVENT_ID, _CAMERA in its environment)."),
    preview: bool = typer.Option(False, "--preview", help="Show a window with boxes, names and scores (needs a display)."),
    profile: bool = typer.Option(False, "--profile", help="Print per-stage latency p50/p99 and FPS at the end."),
    max_frames: Optional[int] = typer.Option(None, min=1, help="Stop after this many frames."),
    detect_side: Optional[int] = typer.Option(None, min=64, help="Detect on a view no larger than this (longest side) [default: from the frame size and the smallest face the quality gate accepts: 320 for 640x480, 768 for 1080p]."),
    accept_min_eyes: Optional[float] = typer.Option(None, min=0.0, help="Faces with eyes closer than this (frame px; a face is ~2.2x as wide) are logged ('not_judged') but never judged, so never accepted: far faces match strangers more often than the threshold promises (docs/benchmarks.md, 'Minimum face for an accept'); 0 judges every face the quality gate passes [default: 22]."),
    accept_min_frontal: Optional[float] = typer.Option(None, min=0.0, max=1.0, help="Likewise for faces more turned than this frontal score (1 = frontal) [default: 0.5]."),
    refine_landmarks: bool = typer.Option(True, "--refine-landmarks/--no-refine-landmarks", help="Faces small in the detector's view (< 64 px) get their landmarks from a second, full-resolution detection: better scores for far faces, a few ms per such face."),
    backend: Optional[str] = typer.Option(None, help="Force a backend: onnxruntime, tensorrt or torch."),
    threads: Optional[int] = typer.Option(None, min=1, help="onnxruntime: intra-op threads of the embedder and the detector [default: one per core]."),
    fleet: Optional[str] = typer.Option(None, "--fleet", help="Join a fleet: its server as @FILE (a file holding the connection string), 'env' ($COREFACE_FLEET_DSN) or a connection string without password (~/.pgpass). --gallery becomes the local cache of the fleet's gallery, the audit log its outbox (docs/fleet.md)."),
) -> None:
    """Run the gate: decisions as JSON lines on stdout, every decision in the audit log."""
    from ..face.detector import YuNetDetector
    from ..face.quality import AcceptMinimum
    from ..liveness.runtime import liveness_option
    from ..profiling.progress import advancer, progress_bar
    from .actions import ActionRunner, CommandAction, GpioPulse
    from .audit import AuditLog
    from .gallery import GalleryWatcher
    from .loop import BadgeReader, GateLoop
    from .matcher import Matcher
    from .sources import open_source
    from ..threshold_file import load_threshold
    from .threshold import open_model, reject_margin_of, resolve_threshold
    from .voting import Decider, VotingPolicy

    if badge and badge_command:
        raise CorefaceError("gate: give --badge or --badge-command, not both")
    if vote_k > vote_n:
        raise CorefaceError(f"--vote-k {vote_k} is larger than --vote-n {vote_n}")
    accept_minimum = AcceptMinimum(
        AcceptMinimum.min_size if accept_min_eyes is None else accept_min_eyes,
        AcceptMinimum.min_frontal if accept_min_frontal is None else accept_min_frontal,
    )
    if liveness == "off" and (liveness_threshold is not None or on_spoof):
        raise CorefaceError("--liveness off: --liveness-threshold and --on-spoof need the liveness check on")
    checker = liveness_option(liveness, liveness_threshold, liveness_device)
    detector = YuNetDetector(device=detector_device, threads=threads)
    console = Console(stderr=True)
    link, offline = None, None
    if fleet:  # the fleet's gallery is pulled into --gallery (its local cache) before the gate opens it
        from ..fleet.gate import join_fleet

        embedder, fingerprint = open_model(model, backend, **_model_options(threads))
        link, offline = join_fleet(fleet, gallery, audit, fingerprint, camera_name or source)
    with contextlib.closing(link) if link else contextlib.nullcontext(), contextlib.closing(GalleryWatcher(gallery)) as watcher:
        if link is None:  # reloaded when the file changes; a bad file is refused before the model is opened
            embedder, fingerprint = open_model(model, backend, **_model_options(threads))
        matrix = watcher.load(fingerprint)
        if badge:
            matrix.index_of_badge(badge)
        accept_at, origin, stored = resolve_threshold(model, fingerprint, threshold)
        if reject_margin is None:  # with --threshold too: the measured accept/reject gap
            reject_margin = reject_margin_of(stored or load_threshold(model, fingerprint))
        if preview:
            _check_display()
        actions = [CommandAction(on_accept, action_timeout)] if on_accept else []
        if gpio_pin is not None:
            actions.append(GpioPulse(gpio_pin))
        camera = camera_name or source
        emit = _locked_print()
        announce = lambda kind, detail: loop.event(kind, detail)  # noqa: E731 - ``loop`` is bound below
        opened = open_source(source, on_event=announce)
        with AuditLog(audit) as log, progress_bar(console) as progress:
            loop = GateLoop(
                front=_front_end(embedder.embed, max_faces, detect_side, refine_landmarks, accept_minimum, detector),
                matcher=Matcher(matrix),
                decider=Decider(VotingPolicy(accept_at, vote_k, vote_n, cooldown, reject_margin, live_threshold=checker and checker.threshold)),
                audit=log,
                actions=ActionRunner(actions, lambda msg: announce("action_error", msg), max_age_s=action_max_age),
                badges=BadgeReader(badge, badge_command, lambda msg: announce("badge_error", msg)),
                camera=camera,
                emit=emit,
                snapshots=snapshots,
                preview=preview,
                gallery=watcher,
                liveness=checker,
                alarms=ActionRunner([CommandAction(on_spoof, action_timeout)], lambda msg: announce("action_error", msg), max_age_s=action_max_age) if on_spoof else None,
            )
            log.start_run(camera, fingerprint, accept_at, {
                "source": source, "kind": opened.kind, "model": str(model), "threshold_from": origin, "vote": [vote_k, vote_n],
                "cooldown_s": cooldown, "reject_margin": reject_margin, "max_faces": max_faces,
                "accept_minimum": asdict(accept_minimum), "mode": "1:1" if badge or badge_command else "1:N",
                "people": len(matrix), "matcher": loop.matcher.engine, "backend": embedder.info(),
                "liveness": checker.info() if checker else None,
            })  # fmt: skip
            console.print(f"gate on {camera} ({opened.kind}): {len(matrix)} people, threshold {accept_at:.4f} from {origin}, "
                          f"reject from {accept_at - reject_margin:.4f}, vote {vote_k}/{vote_n}, judging faces with eyes >= {accept_minimum.min_size:g} px apart, "
                          f"audit {audit}", highlight=False)  # fmt: skip
            console.print(f"liveness: {'off' if checker is None else f'on, spoof below {checker.threshold:g} ({len(checker.models)} models)'}", highlight=False)
            if stored is not None:
                _warn_weak_model(console, stored.tar, stored.far_target)
            if stored is not None and not (badge or badge_command):
                _warn_open_set(console, stored.far, len(matrix), len(matrix.embeddings))
            if link is not None:
                link.start(announce)
                if offline:
                    announce("fleet_offline", offline)
            frames = opened.frames
            if opened.total:  # a file: show how far through it the gate is
                frames = _advancing(frames, advancer(progress, progress.add_task(f"gate on {Path(source).name}", total=opened.total)))
            summary = loop.run(frames, max_frames).summary()
            if link is not None:  # after the run is closed in the log: its last events are pushed too
                summary["fleet"] = link.close()
        emit(json.dumps({"event": "summary", "camera": camera, **summary}))
        _print_summary(console, summary, profile)


def _locked_print() -> Callable[[str], None]:
    """print() for decisions and events from the loop and the fleet's sync thread, a whole line at a time."""
    import threading

    lock = threading.Lock()

    def emit(line: str) -> None:
        with lock:
            print(line, flush=True)

    return emit


WEAK_MODEL_TAR = 0.8  # below this expected TAR at the operating point, say it loudly at start


def _warn_weak_model(console: Console, tar: float, far_target: float) -> None:
    """The stored operating point's TAR is what enrolled people can expect per judged face."""
    if tar < WEAK_MODEL_TAR:
        console.print(
            f"[bold yellow]warning: at this threshold the model let through {100 * tar:.1f} % of genuine pairs when it was "
            f"measured (FAR {far_target:g}): expect many enrolled people to be turned away. Use a stronger model, or a "
            f"looser --far with 'coreface-edge threshold' (more strangers let in), or --badge (1:1).[/]",
            highlight=False,
        )


def _warn_open_set(console: Console, far: float, people: int, comparisons: int) -> None:
    """1:N: a stranger is compared with every enrolled embedding, so false matches add up."""
    from .threshold import open_set_far

    risk = open_set_far(far, comparisons)
    style = "bold yellow" if risk >= 0.01 else "dim"
    console.print(
        f"[{style}]1:N over {people} people ({comparisons} embeddings) at FAR {far:.1e} per comparison: a stranger's face "
        f"matches someone in about {100 * risk:.2g} % of judged frames (voting lowers it less than k-fold, frames are alike); "
        f"pick a stricter --far for larger galleries or use --badge[/]",
        highlight=False,
    )


def _advancing(frames: Iterable[Any], advance: Callable[[int], None]) -> Iterator[Any]:
    for frame in frames:
        yield frame
        advance(1)


def _check_display() -> None:
    import cv2

    from .loop import PREVIEW_WINDOW

    try:
        cv2.namedWindow(PREVIEW_WINDOW)
    except cv2.error:
        raise CorefaceError("--preview: this OpenCV has no GUI (opencv-python-headless) or there is no display") from None


def _print_summary(console: Console, summary: dict[str, Any], profile: bool) -> None:
    table = Table(title=f"gate stopped ({summary['stopped_by']})")
    table.add_column("measure")
    table.add_column("value", justify="right")
    rows = {"frames": "frames", "fps": "frames per second", "cpu_ms_per_frame": "CPU ms per frame (all threads)",
            "faces_detected": "faces detected", "faces_judged": "faces judged", "faces_low_quality": "faces below the quality gate",
            "faces_below_accept": "faces too small / turned to judge (accept minimum)",
            "faces_not_examined": "faces beyond --max-faces (not examined)",
            "bad_frames": "bad frames (skipped)"}  # fmt: skip
    for key, label in rows.items():
        table.add_row(label, str(summary[key]))
    for kind, count in summary["decisions"].items():
        table.add_row(kind, str(count), style="bold")
    if "fleet" in summary:
        table.add_row("fleet: events pushed / still queued", f"{summary['fleet']['pushed']} / {summary['fleet']['queued']}")
    console.print(table)
    if not profile:
        return
    latency = Table(title="per-stage latency per frame (ms)")
    for column in ("stage", "p50", "p90", "p99", "max"):
        latency.add_column(column, justify="right")
    for stage, s in summary["latency_ms"].items():
        latency.add_row(stage, *(f"{s[k]:.2f}" for k in ("p50", "p90", "p99", "max")))
    console.print(latency)


# --- threshold -------------------------------------------------------------------------------
def threshold_command(
    model: Path = typer.Option(..., help="Embedding model (.onnx, .engine/.plan, .pt)."),
    far: float = typer.Option(1e-3, help="Target false-accept rate (per comparison)."),
    data: Optional[Path] = typer.Option(None, help="Aligned CFP folder (written by 'data prepare-cfp'): the CFP protocol pairs."),
    faces: Optional[Path] = typer.Option(None, help="Or the site's own labelled faces: FACES/<person>/*.jpg aligned crops ('data align' writes them), every pair."),
    cfp_root: Path = typer.Option(DEFAULT_CFP_ROOT, envvar="COREFACE_CFP_ROOT", help="CFP release with the Protocol/ folder."),
    identities: str = typer.Option("401-500", help="Evaluation identities (never trained on)."),
    setting: str = typer.Option("FF", help="FF (frontal-frontal, what a gate sees) or FP (frontal-profile)."),
    store: bool = typer.Option(False, "--store", help="Save it as <model>.threshold.json so 'gate' uses it by default."),
    batch_size: int = typer.Option(64, min=1, help="Crops per embedder call."),
    backend: Optional[str] = typer.Option(None, help="Force a backend: onnxruntime, tensorrt or torch."),
    threads: Optional[int] = typer.Option(None, min=1, help="onnxruntime: intra-op threads."),
) -> None:
    """Pick the operating threshold for a target FAR from the impostor pairs of an evaluation set."""
    from ..threshold_file import store_threshold
    from .threshold import REJECT_FAR_FACTOR, open_model, threshold_on_cfp, threshold_on_faces

    if (data is None) == (faces is None):
        raise CorefaceError("threshold: give exactly one of --data (aligned CFP) or --faces (the site's own labelled faces)")
    if setting not in ("FF", "FP"):
        raise CorefaceError(f"--setting {setting}: choose FF or FP")
    console = Console(stderr=True)
    embedder, fingerprint = open_model(model, backend, **_model_options(threads))
    if faces is not None:
        chosen = threshold_on_faces(fingerprint, embedder.embed, faces, far, batch_size, console)
    else:
        chosen = threshold_on_cfp(fingerprint, embedder.embed, data, cfp_root, identities, setting, far, batch_size, console)
    table = Table(title=f"operating threshold of {model.name} at FAR {far:g} ({chosen.data})")
    for column in ("threshold", "FAR observed", "TAR expected", f"reject from (FAR {min(REJECT_FAR_FACTOR * far, 1):g})", "genuine pairs", "impostor pairs"):
        table.add_column(column, justify="right")
    table.add_row(f"{chosen.threshold:.4f}", f"{chosen.far:.2e}", f"{chosen.tar:.4f}", f"{chosen.reject_threshold:.4f}",
                  str(chosen.genuine_pairs), str(chosen.impostor_pairs))  # fmt: skip
    Console().print(table)
    if store:
        console.print(f"stored in {store_threshold(model, chosen)}")


# --- report ----------------------------------------------------------------------------------
class _ShowByDefault(TyperGroup):
    """``report AUDIT`` means ``report show AUDIT``; ``report label ...`` labels events."""

    default_command = "show"

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)


report_app = typer.Typer(cls=_ShowByDefault, help="Trial report of an audit log (report AUDIT), or label events (report label).", no_args_is_help=True)


@report_app.command("show")
def report_show(
    audit: Path = typer.Argument(..., help="Audit log written by 'gate'."),
    labels: Optional[Path] = typer.Option(None, help="CSV event_id,wrong to import before reporting."),
    plot: Optional[Path] = typer.Option(None, help="Write a PNG: decisions per hour and latency histogram."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the report as JSON."),
) -> None:
    """Decisions per day/hour, accept/reject/unknown, latency percentiles, observed FAR/FRR."""
    from ..atomic import write_text_atomic
    from .audit import AuditLog
    from .report import build_report, plot_report

    with AuditLog(audit, create=False) as log:
        if labels is not None:
            log.label_csv(labels)
        report, totals = build_report(log)
    console = Console()
    kinds = tuple(report["counts"])  # spoof only where liveness ran
    counts = Table(title=f"{audit}: {report['events']} decisions in {len(report['runs'])} runs")
    for column in ("day", *kinds):
        counts.add_column(column, justify="right")
    for day, c in report["per_day"].items():
        counts.add_row(day, *(str(c.get(k, 0)) for k in kinds))
    counts.add_row("total", *(str(report["counts"][k]) for k in kinds), style="bold")
    console.print(counts)
    hours = Table(title="per hour")
    for column in ("hour", *kinds):
        hours.add_column(column, justify="right")
    for hour, c in report["per_hour"].items():
        hours.add_row(hour, *(str(c.get(k, 0)) for k in kinds))
    console.print(hours)
    latency = Table(title="latency of the deciding frames (ms)")
    for column in ("stage", "p50", "p90", "p99", "max"):
        latency.add_column(column, justify="right")
    for stage, s in report["latency"].items():
        latency.add_row(stage, *(f"{s[k]:.2f}" for k in ("p50_ms", "p90_ms", "p99_ms", "max_ms")))
    console.print(latency)
    lab = report["labels"]
    rate = lambda r: "-" if r is None else f"{100 * r:.2f} %"  # noqa: E731
    console.print(
        f"labelled events: {lab['labelled']}; false accepts {lab['false_accepts']} of {lab['impostor_attempts']} "
        f"impostor attempts ({rate(lab['false_accept_rate'])}); false rejects {lab['false_rejects']} of "
        f"{lab['genuine_attempts']} genuine attempts ({rate(lab['false_reject_rate'])}); unlabelled events count as right",
        highlight=False,
    )
    pad = report["presentation_attacks"]
    if pad is not None:
        console.print(
            f"presentation attacks (ISO/IEC 30107-3): APCER {rate(pad['apcer'])} ({pad['attacks_missed']} of {pad['attacks']} attacks "
            f"not flagged), BPCER {rate(pad['bpcer'])} ({pad['bona_fide_flagged']} of {pad['bona_fide']} live presentations "
            "flagged spoof); label with 'report label AUDIT ID --attack/--bona-fide'",
            highlight=False,
        )
    if json_out is not None:
        write_text_atomic(json_out, json.dumps(report, indent=2) + "\n")
    if plot is not None:
        console.print(f"wrote {plot_report(report, totals, plot)}")


@report_app.command("label")
def report_label(
    audit: Path = typer.Argument(..., help="Audit log written by 'gate'."),
    event_id: int = typer.Argument(..., help="Event id (the 'id' of the JSON line / audit row)."),
    wrong: Optional[bool] = typer.Option(None, "--wrong/--right", help="The decision was wrong (or right)."),
    attack: Optional[bool] = typer.Option(None, "--attack/--bona-fide", help="What was presented: an attack (photo, screen, mask) or a live person."),
) -> None:
    """Mark one decision as wrong (or right), and/or what was presented; the report turns labels
    into FAR / FRR and APCER / BPCER."""
    from .audit import AuditLog

    if wrong is None and attack is None:
        raise CorefaceError("report label: give --wrong/--right and/or --attack/--bona-fide")
    with AuditLog(audit, create=False) as log:
        if wrong is not None:
            log.label(event_id, wrong)
        if attack is not None:
            log.label_presentation(event_id, attack)
    said = ([] if wrong is None else ["wrong" if wrong else "right"]) + ([] if attack is None else ["an attack" if attack else "bona fide"])
    Console().print(f"event {event_id} labelled {' and '.join(said)}")


def register(app: typer.Typer) -> None:
    """Add enroll, gallery, gate, threshold and report to the root app."""
    app.command("enroll")(enroll_command)
    app.add_typer(gallery_app, name="gallery")
    app.command("gate")(gate_command)
    app.command("threshold")(threshold_command)
    app.add_typer(report_app, name="report")
