"""What happens on accept: run a command (with a timeout) and/or pulse a Jetson GPIO pin.

Each action runs on its own background worker with a small bounded queue, so a slow door
controller never stalls the camera loop, and a hanging command hook never delays the GPIO
pulse. A failing action is reported, never raised.

Safety rules (a door must not open for someone who has already left):

- an accept that waited in an action's queue longer than ``max_age_s`` (default 2 s) is
  dropped and reported, not acted on;
- a command hook runs in its own session (process group); on timeout, and at shutdown, the
  whole group is killed (SIGTERM, then SIGKILL), so no stray children remain.

Every accept gets one :class:`ActionOutcome` per action (``ok``, ``failed``, ``timeout``,
``stale``, ``queue_full``, ``shutdown``); the caller collects them with
:meth:`ActionRunner.drain_outcomes` (thread-safe, bounded) or hears them via ``on_outcome``.
"""

from __future__ import annotations

import os
import queue
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable

from ..errors import CorefaceError

QUEUE_SIZE = 8  # accepts waiting per action
MAX_AGE_S = 2.0  # an accept older than this when its action would start is dropped
KILL_GRACE_S = 0.5  # SIGTERM -> SIGKILL for a hook's process group
OUTCOMES_KEPT = 1024  # undrained outcomes kept (oldest dropped): memory stays flat
SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ash", "ksh", "busybox"})
SHELL_OPERATORS = frozenset({">", ">>", "<", "<<", "|", "||", "&", "&&", ";", "2>", "2>>", "&>", "2>&1", "1>"})
SHELL_VARIABLE = re.compile(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?|\$\(|`")  # $VAR, ${VAR}, $(...), `...`
REDIRECTION = re.compile(r"^(\d?>>?|<|\|)")  # >file, 2>file, >>file, <file, |cmd written without a space

OK, FAILED, TIMEOUT, STALE, QUEUE_FULL, SHUTDOWN = "ok", "failed", "timeout", "stale", "queue_full", "shutdown"


class ActionTimeout(Exception):
    """A command hook ran past its timeout (its process group was killed)."""


class ActionKilled(Exception):
    """A command hook was killed (or not started) because the gate is stopping."""


@dataclass(frozen=True)
class ActionOutcome:
    """What became of one action for one accept (``event_id`` from ``COREFACE_EVENT_ID``)."""

    event_id: int | None
    action: str
    outcome: str  # ok | failed | timeout | stale | queue_full | shutdown
    detail: str
    waited_s: float  # time in the queue
    ran_s: float  # time the action itself took (0 when it did not run)


def _kill_group(proc: subprocess.Popen, grace_s: float = KILL_GRACE_S) -> None:
    """SIGTERM the process group of ``proc`` (its own session), then SIGKILL what is left
    (children that ignored SIGTERM, or outlived the leader); reap."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            pass


class GpioPulse:
    """Drive a Jetson GPIO pin (BOARD numbering) high for ``pulse_s`` seconds per accept."""

    def __init__(self, pin: int, pulse_s: float = 1.0) -> None:
        try:
            import Jetson.GPIO as GPIO  # type: ignore[import-not-found]
        except ImportError:
            raise CorefaceError(f"--gpio-pin {pin}: Jetson.GPIO is not installed (pip install Jetson.GPIO on the Jetson)") from None
        self._gpio, self.pin, self.pulse_s = GPIO, pin, pulse_s
        self.name = f"--gpio-pin {pin}"
        self._stop = threading.Event()
        GPIO.setmode(GPIO.BOARD)
        GPIO.setup(pin, GPIO.OUT, initial=GPIO.LOW)

    def __call__(self, env: dict[str, str]) -> None:
        self._gpio.output(self.pin, self._gpio.HIGH)
        try:
            self._stop.wait(self.pulse_s)  # cut short at shutdown
        finally:
            self._gpio.output(self.pin, self._gpio.LOW)

    def kill(self) -> None:
        self._stop.set()

    def close(self) -> None:
        self._gpio.cleanup(self.pin)


class CommandAction:
    """Run ``command`` without a shell, with COREFACE_* variables in its environment.

    The command is split shell-style (quotes group words) but no shell runs it: ``$VAR``,
    ``>>``, ``|`` ... are not interpreted, so they are refused at start unless the command is
    itself a shell (write ``sh -c '... $COREFACE_PERSON ...'``). Checked at start: balanced
    quotes, and that the program exists and is executable. It runs in its own process group;
    after ``timeout_s`` the whole group is killed.
    """

    name = "--on-accept"

    def __init__(self, command: str, timeout_s: float = 5.0) -> None:
        try:
            self.argv = shlex.split(command)
        except ValueError as exc:
            raise CorefaceError(f"--on-accept {command!r}: {str(exc).lower()} (unbalanced quotes)") from None
        if not self.argv:
            raise CorefaceError("--on-accept: empty command")
        self.argv[0] = _executable(self.argv[0])
        _refuse_shell_syntax(self.argv)
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._running: subprocess.Popen | None = None
        self._killed = False

    def __call__(self, env: dict[str, str]) -> None:
        with tempfile.TemporaryFile() as output:  # not a pipe: a backgrounded child cannot hold us up
            with self._lock:
                if self._killed:
                    raise ActionKilled("not started: the gate is stopping")
                proc = subprocess.Popen(
                    self.argv, env={**os.environ, **env}, stdin=subprocess.DEVNULL, stdout=output,
                    stderr=subprocess.STDOUT, start_new_session=True,
                )  # fmt: skip
                self._running = proc
            try:
                proc.wait(self.timeout_s)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                raise ActionTimeout(f"timed out after {self.timeout_s:g} s: its process group was killed") from None
            finally:
                with self._lock:
                    self._running = None
            if proc.returncode != 0:
                if self._killed:
                    raise ActionKilled(f"killed at shutdown (its process group), exit status {proc.returncode}")
                output.seek(max(0, output.seek(0, os.SEEK_END) - 4096))  # the last line is enough
                tail = output.read().decode(errors="replace").strip().splitlines()[-1:] or [""]
                raise RuntimeError(f"exit status {proc.returncode} {tail[0][:200]}".strip())

    def kill(self) -> None:
        """Shutdown: kill the running hook's process group; start no new one."""
        with self._lock:
            self._killed = True
            proc = self._running
        if proc is not None:
            _kill_group(proc)


def _executable(program: str) -> str:
    """The program's path; one-line error if it does not exist or is not executable."""
    if os.sep in program:
        if not os.path.exists(program):
            raise CorefaceError(f"--on-accept: {program}: no such file")
        if os.path.isdir(program) or not os.access(program, os.X_OK):
            raise CorefaceError(f"--on-accept: {program}: not an executable file (chmod +x?)")
        return program
    found = shutil.which(program)
    if found is None:
        raise CorefaceError(f"--on-accept: {program}: no such command on PATH (give its full path)")
    return program  # resolved again through PATH at run time, like a shell would


def _refuse_shell_syntax(argv: list[str]) -> None:
    """Without a shell, ``>> file`` or ``$VAR`` would be passed literally: refuse, pointing at ``sh -c``."""
    if any(os.path.basename(a) in SHELLS for a in argv):
        return
    for arg in argv[1:]:
        bare = not any(c.isspace() for c in arg)
        if arg in SHELL_OPERATORS or (bare and (SHELL_VARIABLE.search(arg) or REDIRECTION.match(arg))):
            raise CorefaceError(
                f"--on-accept runs without a shell, so {arg!r} would be passed literally: "
                "write sh -c '...' for redirections, pipes or $COREFACE_* variables (they are in the environment)"
            )


def _action_name(action: Callable[[dict[str, str]], None]) -> str:
    return getattr(action, "name", None) or getattr(action, "__name__", None) or type(action).__name__


def _event_id(env: dict[str, str]) -> int | None:
    try:
        return int(env.get("COREFACE_EVENT_ID", ""))
    except ValueError:
        return None


class _Worker:
    """One action, its queue and its thread."""

    def __init__(self, runner: "ActionRunner", action: Callable[[dict[str, str]], None]) -> None:
        self.runner, self.action, self.name = runner, action, _action_name(action)
        self.queue: queue.Queue = queue.Queue()  # bounded by hand in submit(): the stop sentinel always fits
        self.abandon = False  # set at shutdown after the grace: drop what is still queued
        self.thread = threading.Thread(target=self._work, name=f"gate-action {self.name}", daemon=True)
        self.thread.start()

    def _work(self) -> None:
        runner = self.runner
        while True:
            item = self.queue.get()
            if item is None:
                return
            env, queued_at = item
            waited = time.monotonic() - queued_at
            if self.abandon:
                runner._report(env, self.name, SHUTDOWN, "not run: the gate stopped", waited, 0.0)
                continue
            if waited > runner.max_age_s:
                runner._report(env, self.name, STALE, f"accept dropped: it waited {waited:.1f} s (> {runner.max_age_s:g} s), "
                               "the person may have left", waited, 0.0)  # fmt: skip
                continue
            t0 = time.monotonic()
            try:
                self.action(env)
            except ActionTimeout as exc:
                runner._report(env, self.name, TIMEOUT, str(exc), waited, time.monotonic() - t0)
            except ActionKilled as exc:
                runner._report(env, self.name, SHUTDOWN, str(exc), waited, time.monotonic() - t0)
            except Exception as exc:  # noqa: BLE001 - an action must never stop the gate
                runner._report(env, self.name, FAILED, f"{type(exc).__name__}: {exc}", waited, time.monotonic() - t0)
            else:
                runner._report(env, self.name, OK, "", waited, time.monotonic() - t0)


class ActionRunner:
    """Queue accepted decisions for the actions (one worker each).

    ``on_error(message)`` hears every failure and every dropped accept (one line each);
    :meth:`drain_outcomes` returns every :class:`ActionOutcome` collected since the last call.
    """

    def __init__(
        self,
        actions: list[Callable[[dict[str, str]], None]],
        on_error: Callable[[str], None],
        max_age_s: float = MAX_AGE_S,
    ) -> None:
        if max_age_s <= 0:
            raise CorefaceError(f"action max age must be > 0 s, got {max_age_s:g}")
        self.actions, self.on_error, self.max_age_s = actions, on_error, max_age_s
        self._outcomes: deque[ActionOutcome] = deque(maxlen=OUTCOMES_KEPT)
        self._workers = [_Worker(self, action) for action in actions]
        self._closed = False

    def submit(self, env: dict[str, str]) -> None:
        if not self._workers or self._closed:
            return
        now = time.monotonic()
        for worker in self._workers:
            if worker.queue.qsize() >= QUEUE_SIZE:
                self._report(env, worker.name, QUEUE_FULL, "accept dropped: action queue full (actions are slower than decisions)", 0.0, 0.0)
            else:
                worker.queue.put((dict(env), now))

    def _report(self, env: dict[str, str], action: str, outcome: str, detail: str, waited: float, ran: float) -> None:
        result = ActionOutcome(_event_id(env), action, outcome, detail, round(waited, 3), round(ran, 3))
        self._outcomes.append(result)
        if outcome != OK:
            who = env.get("COREFACE_PERSON") or "?"
            self.on_error(f"{action} ({outcome}) for {who!r}, event {result.event_id}: {detail}")

    def drain_outcomes(self) -> list[ActionOutcome]:
        """Outcomes collected since the last call (oldest first; at most the last 1024 kept)."""
        got = []
        while True:
            try:
                got.append(self._outcomes.popleft())
            except IndexError:
                return got

    def close(self, timeout_s: float = 10.0) -> None:
        """Let queued actions finish (up to ``timeout_s``), then kill running hooks, release GPIO pins."""
        if self._closed:
            return
        self._closed = True
        for worker in self._workers:
            worker.queue.put(None)
        deadline = time.monotonic() + timeout_s
        for worker in self._workers:
            worker.thread.join(max(0.0, deadline - time.monotonic()))
        busy = [w for w in self._workers if w.thread.is_alive()]
        for worker in busy:
            worker.abandon = True
            kill = getattr(worker.action, "kill", None)
            if kill is not None:
                kill()
        for worker in busy:
            worker.thread.join(2 * KILL_GRACE_S + 1.0)
        if busy:
            self.on_error(f"actions still busy after {timeout_s:g} s at shutdown: stopped {', '.join(w.name for w in busy)}")
        for action in self.actions:
            close = getattr(action, "close", None)
            if close is not None:
                close()
