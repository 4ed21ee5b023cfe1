"""What happens on accept: run a command (with a timeout) and/or pulse a Jetson GPIO pin.

Actions run on one background worker with a small bounded queue, so a slow door controller
never stalls the camera loop, and a failing action is reported, never raised.
"""

from __future__ import annotations

import os
import queue
import shlex
import subprocess
import threading
import time
from typing import Callable

from ..errors import CorefaceError

QUEUE_SIZE = 8


class GpioPulse:
    """Drive a Jetson GPIO pin (BOARD numbering) high for ``pulse_s`` seconds per accept."""

    def __init__(self, pin: int, pulse_s: float = 1.0) -> None:
        try:
            import Jetson.GPIO as GPIO  # type: ignore[import-not-found]
        except ImportError:
            raise CorefaceError(f"--gpio-pin {pin}: Jetson.GPIO is not installed (pip install Jetson.GPIO on the Jetson)") from None
        self._gpio, self.pin, self.pulse_s = GPIO, pin, pulse_s
        GPIO.setmode(GPIO.BOARD)
        GPIO.setup(pin, GPIO.OUT, initial=GPIO.LOW)

    def __call__(self, env: dict[str, str]) -> None:
        self._gpio.output(self.pin, self._gpio.HIGH)
        time.sleep(self.pulse_s)
        self._gpio.output(self.pin, self._gpio.LOW)

    def close(self) -> None:
        self._gpio.cleanup(self.pin)


class CommandAction:
    """Run ``command`` (split shell-style, no shell) with COREFACE_* variables set, with a timeout."""

    def __init__(self, command: str, timeout_s: float = 5.0) -> None:
        self.argv = shlex.split(command)
        if not self.argv:
            raise CorefaceError("--on-accept: empty command")
        self.timeout_s = timeout_s

    def __call__(self, env: dict[str, str]) -> None:
        proc = subprocess.run(
            self.argv, env={**os.environ, **env}, timeout=self.timeout_s, capture_output=True, text=True
        )
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [""]
            raise RuntimeError(f"exit status {proc.returncode} {tail[0]}".strip())


class ActionRunner:
    """Queue accepted decisions for the actions; ``on_error(message)`` hears every failure."""

    def __init__(self, actions: list[Callable[[dict[str, str]], None]], on_error: Callable[[str], None]) -> None:
        self.actions, self.on_error = actions, on_error
        self._queue: queue.Queue = queue.Queue(maxsize=QUEUE_SIZE)
        self._thread = threading.Thread(target=self._work, name="gate-actions", daemon=True)
        if actions:
            self._thread.start()

    def submit(self, env: dict[str, str]) -> None:
        if not self.actions:
            return
        try:
            self._queue.put_nowait(env)
        except queue.Full:
            self.on_error("action queue full: accept dropped (actions are slower than decisions)")

    def _work(self) -> None:
        while True:
            env = self._queue.get()
            if env is None:
                return
            for action in self.actions:
                try:
                    action(env)
                except subprocess.TimeoutExpired as exc:
                    self.on_error(f"on-accept action timed out after {exc.timeout:g} s")
                except Exception as exc:  # noqa: BLE001 - an action must never stop the gate
                    self.on_error(f"on-accept action failed: {type(exc).__name__}: {exc}")

    def close(self, timeout_s: float = 10.0) -> None:
        """Let queued actions finish (up to ``timeout_s``), then release GPIO pins."""
        if self._thread.is_alive():
            try:
                self._queue.put(None, timeout=timeout_s)
                self._thread.join(timeout_s)
            except queue.Full:
                self.on_error(f"actions still busy after {timeout_s:g} s at shutdown")
        for action in self.actions:
            close = getattr(action, "close", None)
            if close is not None:
                close()
