"""The demo's steps: each is the real ``coreface-edge`` command a user would type, run
in-process with its output in ``OUT/logs/``, so the demo shows exactly how to do the same on
one's own site. The summary at the end comes from the files those commands wrote.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, TypeVar

from rich.console import Console

from ..errors import CorefaceError
from ..pretrained import DEFAULT_MODEL
from .samples import DemoSamples

T = TypeVar("T")
SHIPPED_MODEL = DEFAULT_MODEL
MARKER = "coreface-demo.json"  # written first, then with the summary: a folder with it is an earlier demo's and may be replaced
MARKER_TOOL = "coreface-edge demo"
MARKER_STATES = ("running", "finished")
INTERRUPTED = 130
SPEED_ITERATIONS = 5
BENCHMARK_ITERATIONS = 10


def invoke(args: list[str]) -> None:
    """Run ``coreface-edge ARGS`` in this process (the console script's code path); reports
    record ``args`` as their command line. Click turns Ctrl-C into exit status 130 and
    ``typer.Exit(n)`` into ``n`` here: they come back as KeyboardInterrupt and CorefaceError."""
    from typer.main import get_command

    from ..cli import app

    saved = sys.argv
    sys.argv = ["coreface-edge", *args]
    try:
        status = get_command(app).main(args=args, prog_name="coreface-edge", standalone_mode=False)
    finally:
        sys.argv = saved
    if status == INTERRUPTED:
        raise KeyboardInterrupt
    if isinstance(status, int) and status != 0:
        raise CorefaceError(f"coreface-edge {shlex.join(args)}: exit status {status}")


@dataclass
class Step:
    name: str
    command: str
    status: str
    seconds: float
    note: str = ""
    log: str = ""


@dataclass
class Tour:
    """Runs the steps in order, shows each command and its outcome, keeps the record."""

    out: Path
    console: Console
    steps: list[Step] = field(default_factory=list)

    def run(self, name: str, args: list[str], note: Callable[[], str] = lambda: "", optional: bool = False) -> Step:
        """One command, its stdout and stderr to ``logs/NN_name.log``. A failure stops the demo,
        unless the step is ``optional`` (TensorRT): then it is recorded and the demo goes on."""
        log = self.out / "logs" / f"{len(self.steps) + 1:02d}_{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        shown = "coreface-edge " + shlex.join(args)
        self.console.print(f"[bold cyan]{name:>9}[/] $ {shown}", highlight=False, soft_wrap=True)
        start = time.perf_counter()
        with open(log, "w", encoding="utf-8") as fh, contextlib.redirect_stdout(fh), contextlib.redirect_stderr(fh):
            try:
                invoke(args)
                failure = None
            except KeyboardInterrupt:
                raise
            except CorefaceError as exc:
                failure = str(exc)
            except Exception as exc:  # noqa: BLE001 - an optional step's library error is reported, not raised
                if not optional:
                    raise
                failure = f"{type(exc).__name__}: {exc}".splitlines()[0]
            if failure is not None:
                print(f"error: {failure}")
        seconds = time.perf_counter() - start
        if failure is None:
            return self._record(Step(name, shown, "ok", seconds, note(), str(log)))
        if not optional:
            raise CorefaceError(f"demo step {name!r} failed: {failure} (log: {log})")
        self.console.print(f"{'':>9}   [yellow]failed, going on without it: {failure}[/]", highlight=False, soft_wrap=True)
        return self._record(Step(name, shown, f"failed: {failure}", seconds, "", str(log)))

    def skip(self, name: str, command: str, why: str) -> Step:
        self.console.print(f"[bold cyan]{name:>9}[/] [yellow]skipped: {why}[/]", highlight=False, soft_wrap=True)
        return self._record(Step(name, command, f"skipped: {why}", 0.0))

    def internal(self, name: str, what: str, work: Callable[[], tuple[T, str]]) -> T:
        """A step done by the demo itself (arranging files), not by a command: ``work`` returns
        its result and a note; the result is returned."""
        self.console.print(f"[bold cyan]{name:>9}[/] {what}", highlight=False, soft_wrap=True)
        start = time.perf_counter()
        result, note = work()
        self._record(Step(name, what, "ok", time.perf_counter() - start, note))
        return result

    def _record(self, step: Step) -> Step:
        if step.note:
            self.console.print(f"{'':>9}   [dim]{step.note}[/] ({step.seconds:.1f} s)", highlight=False, soft_wrap=True)
        self.steps.append(step)
        return step

    def as_dicts(self) -> list[dict[str, Any]]:
        return [asdict(s) for s in self.steps]


def prepare_folder(out: Path) -> None:
    """Start from an empty ``out``; replace an earlier demo's folder, never anything else."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise CorefaceError(f"{out}: exists and is not a folder; choose another --out")
    if out.exists() and any(out.iterdir()):
        if not is_demo_folder(out) or out.resolve() in (Path.cwd().resolve(), Path.home().resolve()):
            raise CorefaceError(f"{out}: folder is not empty and not an earlier demo's; choose another --out")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def is_demo_folder(out: Path) -> bool:
    """Whether ``out`` holds the marker an earlier demo run wrote (not just a file of that name)."""
    try:
        marker = json.loads((out / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(marker, dict) and marker.get("tool") == MARKER_TOOL and marker.get("status") in MARKER_STATES


def copy_samples(samples: DemoSamples, out: Path) -> tuple[DemoSamples, str]:
    """Copy the bundled photos next to the results (the commands then name readable paths),
    and lay out the enrolled and camera photos by person for the held-out faces."""
    copied = DemoSamples(out / "samples")
    shutil.copytree(samples.root, copied.root)
    by_person = out / "labelled"
    for person in copied.people():
        for photo in (copied.enroll / person).iterdir():
            _copy(photo, by_person / person / f"enroll_{photo.name}")
    for visit in copied.visits():
        _copy(copied.camera / visit.frame, by_person / visit.identity / f"camera_{visit.frame}")
    photos = sum(1 for _ in copied.root.rglob("*.jpg"))
    note = (
        f"{photos} CFP photos of people the model never saw: {len(copied.people())} to enroll, "
        f"{len(copied.visits())} camera frames, {sum(1 for _ in copied.calibration.glob('*.jpg'))} calibration photos"
    )
    return copied, note


def _copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CorefaceError(f"{path}: expected the report a demo step writes ({exc})") from None
