"""``gate --fleet``: bring the gate's cache up to date before it opens, then sync beside it."""

from __future__ import annotations

from pathlib import Path

from ..errors import CorefaceError
from . import cache
from .dsn import Unreachable, resolve
from .sync import SyncAgent


def join_fleet(fleet: str, gallery: Path, audit: Path, model: str, name: str) -> tuple[SyncAgent, str | None]:
    """The agent for this gate after a first sync, and why it starts offline (None: online).

    Unreachable server: the gate starts from its cache if it has one, else stops (one line).
    Anything else (wrong password, another model, a newer schema) stops it with one line.
    """
    agent = SyncAgent(resolve(fleet), gallery, audit, model, name)
    try:
        agent.sync_once(push=False)  # the queue of an offline spell drains in the background, not before the gate opens
        agent.state.online = True
        return agent, None
    except Unreachable as exc:
        people = cache.people(agent.cache)
        if people == 0:
            agent.close(final_sync=False)
            raise CorefaceError(f"{exc}; and {gallery} holds no cached gallery yet, so the gate cannot start") from None
        return agent, f"{exc}; deciding from the cache ({people} people), events queued on disk"
    except CorefaceError:
        agent.close(final_sync=False)
        raise
