"""Door actions with real processes: stale accepts dropped, hung hooks killed with their whole
process group (no orphans), shutdown kills the running hook, GPIO never waits behind a hook,
and a bad --on-accept is one line at start."""

from __future__ import annotations

import os
import sys
import time
import types
from pathlib import Path

import pytest

from coreface_edge.errors import CorefaceError
from coreface_edge.gate.actions import ActionRunner, CommandAction, GpioPulse


def alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie waiting for a reaper counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in ("Z", "X")


def wait_until(predicate, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def accept(event_id: int, person: str = "ann") -> dict[str, str]:
    return {"COREFACE_EVENT_ID": str(event_id), "COREFACE_PERSON": person, "COREFACE_BADGE": "100"}


def read_pid(path: Path) -> int:
    assert wait_until(lambda: path.exists() and path.read_text().strip() != ""), f"{path} never written"
    return int(path.read_text().split()[0])


def test_stale_accept_is_dropped_not_run(tmp_path: Path):
    log = tmp_path / "door.log"
    slow = script(tmp_path / "slow.sh", f'echo "$COREFACE_EVENT_ID" >> {log}\nsleep 1.2\n')
    errors: list[str] = []
    runner = ActionRunner([CommandAction(str(slow), timeout_s=10)], errors.append, max_age_s=0.5)
    t0 = time.monotonic()
    for event_id in (1, 2, 3):  # the first opens the door; the others wait > 0.5 s behind it
        runner.submit(accept(event_id))
    assert wait_until(lambda: len(runner._outcomes) == 3, 5)
    runner.close(5)
    assert time.monotonic() - t0 < 3.0
    assert log.read_text().split() == ["1"]  # the door never opened for the accepts that went stale
    outcomes = {o.event_id: o for o in runner.drain_outcomes()}
    assert [outcomes[k].outcome for k in (1, 2, 3)] == ["ok", "stale", "stale"]
    assert outcomes[2].waited_s > 0.5 and outcomes[1].ran_s >= 1.1
    stale = [e for e in errors if "(stale)" in e]
    assert len(stale) == 2 and all("accept dropped" in e and "'ann'" in e for e in stale), errors
    assert runner.drain_outcomes() == []  # drained once


def test_fresh_accepts_behind_a_quick_hook_all_run(tmp_path: Path):
    log = tmp_path / "door.log"
    quick = script(tmp_path / "quick.sh", f'echo "$COREFACE_EVENT_ID $COREFACE_PERSON" >> {log}\nsleep 0.1\n')
    errors: list[str] = []
    runner = ActionRunner([CommandAction(str(quick))], errors.append, max_age_s=2.0)
    for event_id in (1, 2, 3):
        runner.submit(accept(event_id, person=f"p{event_id}"))
    runner.close(5)
    assert log.read_text().splitlines() == ["1 p1", "2 p2", "3 p3"] and errors == []
    assert [o.outcome for o in runner.drain_outcomes()] == ["ok", "ok", "ok"]


def test_timed_out_hook_is_killed_with_its_whole_process_group(tmp_path: Path):
    pids = tmp_path / "pids"
    # the hook starts a child and ignores SIGTERM itself: both must still die (SIGKILL to the group)
    hang = script(tmp_path / "hang.sh", f"trap '' TERM\nsleep 30 &\necho $$ $! > {pids}\nwait\nsleep 30\n")
    errors: list[str] = []
    runner = ActionRunner([CommandAction(str(hang), timeout_s=0.5)], errors.append)
    t0 = time.monotonic()
    runner.submit(accept(7))
    assert wait_until(lambda: len(runner._outcomes) == 1, 5)
    took = time.monotonic() - t0
    hook_pid, child_pid = map(int, pids.read_text().split())
    assert 0.5 <= took < 2.5, took
    assert wait_until(lambda: not alive(child_pid) and not alive(hook_pid), 3), "the hook's sleep child was orphaned"
    (outcome,) = runner.drain_outcomes()
    assert (outcome.event_id, outcome.outcome) == (7, "timeout")
    assert any("(timeout)" in e and "process group was killed" in e for e in errors), errors
    runner.close(1)


def test_shutdown_kills_the_running_hook_and_its_children(tmp_path: Path):
    pids = tmp_path / "pids"
    hang = script(tmp_path / "hang.sh", f"sleep 30 &\necho $! > {pids}\nwait\n")
    errors: list[str] = []
    runner = ActionRunner([CommandAction(str(hang), timeout_s=60)], errors.append)
    runner.submit(accept(1))
    child_pid = read_pid(pids)
    runner.submit(accept(2))  # still queued at shutdown: never run
    t0 = time.monotonic()
    runner.close(timeout_s=0.5)  # the grace, then the group is killed
    assert time.monotonic() - t0 < 3.0
    assert wait_until(lambda: not alive(child_pid), 3), "the running hook's child outlived the gate"
    assert [(o.event_id, o.outcome) for o in runner.drain_outcomes()] == [(1, "shutdown"), (2, "shutdown")]
    assert any("still busy after 0.5 s at shutdown: stopped --on-accept" in e for e in errors), errors
    assert pids.read_text().split() == [str(child_pid)]  # the second accept did not start the hook again


def test_queue_full_is_reported_per_accept(tmp_path: Path):
    hang = script(tmp_path / "hang.sh", "sleep 30\n")
    errors: list[str] = []
    runner = ActionRunner([CommandAction(str(hang), timeout_s=60)], errors.append)
    for event_id in range(1, 12):  # 1 runs, 8 queue, 2 overflow
        runner.submit(accept(event_id))
        time.sleep(0.01)
    full = [o for o in runner.drain_outcomes() if o.outcome == "queue_full"]
    assert [o.event_id for o in full] == [10, 11]
    assert sum("(queue_full)" in e for e in errors) == 2
    runner.close(0.2)


@pytest.fixture
def fake_gpio(monkeypatch: pytest.MonkeyPatch) -> list[tuple[float, int, int]]:
    """A stand-in Jetson.GPIO (this machine has no GPIO): records (time, pin, level)."""
    changes: list[tuple[float, int, int]] = []
    gpio = types.ModuleType("Jetson.GPIO")
    gpio.BOARD, gpio.OUT, gpio.LOW, gpio.HIGH = "BOARD", "OUT", 0, 1
    gpio.setmode = lambda mode: None
    gpio.setup = lambda pin, mode, initial=0: changes.append((time.monotonic(), pin, initial))
    gpio.output = lambda pin, level: changes.append((time.monotonic(), pin, level))
    gpio.cleanup = lambda pin: changes.append((time.monotonic(), pin, -1))
    jetson = types.ModuleType("Jetson")
    jetson.GPIO = gpio
    monkeypatch.setitem(sys.modules, "Jetson", jetson)
    monkeypatch.setitem(sys.modules, "Jetson.GPIO", gpio)
    return changes


def test_gpio_pulse_never_waits_behind_a_hanging_hook(tmp_path: Path, fake_gpio: list[tuple[float, int, int]]):
    hang = script(tmp_path / "hang.sh", "sleep 30\n")
    errors: list[str] = []
    runner = ActionRunner([CommandAction(str(hang), timeout_s=3), GpioPulse(12, pulse_s=0.2)], errors.append)
    t0 = time.monotonic()
    runner.submit(accept(1))
    assert wait_until(lambda: any(level == 0 and t > t0 for t, _, level in fake_gpio), 2)
    levels = [(round(t - t0, 2), level) for t, _, level in fake_gpio if t > t0]
    assert levels[0][1] == 1 and levels[0][0] < 0.3, levels  # high at once, not after the hook's 3 s timeout
    assert levels[1][1] == 0 and 0.15 < levels[1][0] - levels[0][0] < 0.6, levels
    runner.close(0.2)
    assert fake_gpio[-1][2] == -1  # pin released at shutdown
    outcomes = {o.action: o.outcome for o in runner.drain_outcomes()}
    assert outcomes == {"--gpio-pin 12": "ok", "--on-accept": "shutdown"}


def test_on_accept_gets_coreface_variables_through_sh_c(tmp_path: Path):
    out = tmp_path / "x.txt"
    errors: list[str] = []
    runner = ActionRunner([CommandAction(f"sh -c 'echo \"$COREFACE_PERSON/$COREFACE_BADGE\" >> {out}'")], errors.append)
    runner.submit(accept(1, person="Ada Lovelace"))
    runner.close(5)
    assert out.read_text() == "Ada Lovelace/100\n" and errors == []


def test_a_failing_hook_reports_its_exit_status_and_last_line(tmp_path: Path):
    fail = script(tmp_path / "fail.sh", "echo relay offline >&2\nexit 3\n")
    errors: list[str] = []
    runner = ActionRunner([CommandAction(str(fail))], errors.append)
    runner.submit(accept(5))
    runner.close(5)
    assert len(errors) == 1 and "(failed)" in errors[0] and "exit status 3 relay offline" in errors[0]
    assert [(o.event_id, o.outcome) for o in runner.drain_outcomes()] == [(5, "failed")]


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ("curl 'http://x", "--on-accept \"curl 'http://x\": no closing quotation (unbalanced quotes)"),
        ("/usr/local/bin/open-door-nonexistent --now", "--on-accept: /usr/local/bin/open-door-nonexistent: no such file"),
        ("open-door-nonexistent", "--on-accept: open-door-nonexistent: no such command on PATH"),
        ("/tmp", "--on-accept: /tmp: not an executable file"),
        ("echo $COREFACE_PERSON >> x.txt", "runs without a shell, so '$COREFACE_PERSON' would be passed literally"),
        ("echo person | nc door 80", "runs without a shell, so '|' would be passed literally"),
        ("echo hi >x.txt", "runs without a shell, so '>x.txt' would be passed literally"),
        ("curl http://door/$(date)", "runs without a shell, so 'http://door/$(date)' would be passed literally"),
        ("", "--on-accept: empty command"),
    ],
)
def test_a_bad_on_accept_is_one_line_at_start(command: str, message: str):
    with pytest.raises(CorefaceError) as err:
        CommandAction(command)
    assert message in str(err.value) and "\n" not in str(err.value), str(err.value)


def test_shell_syntax_is_allowed_inside_sh_c_and_a_plain_command_on_path_is_fine():
    assert CommandAction("sh -c 'echo $COREFACE_PERSON >> /tmp/x.txt'").argv[:2] == ["sh", "-c"]
    assert CommandAction("/usr/bin/env bash -c 'curl http://door/$COREFACE_BADGE | cat'").argv[0] == "/usr/bin/env"
    assert CommandAction("true --person=ann").argv == ["true", "--person=ann"]


def test_a_file_that_is_not_executable_is_refused(tmp_path: Path):
    door = tmp_path / "open-door"
    door.write_text("#!/bin/sh\n")
    with pytest.raises(CorefaceError, match="open-door: not an executable file"):
        CommandAction(f"{door} --now")
    door.chmod(0o755)
    assert CommandAction(f"{door} --now").argv == [str(door), "--now"]
