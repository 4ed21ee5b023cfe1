"""Where the fleet server is: a connection string from an option, the environment or a file,
never printed with its password; connection errors become one line naming the masked server."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from ..errors import CorefaceError

ENV_DSN = "COREFACE_FLEET_DSN"
CONNECT_TIMEOUT_S = 3
STATEMENT_TIMEOUT_MS = 15_000
# The server answered and refused (retrying will not help); a TLS connection cut while connecting
# ("SSL SYSCALL error", "SSL connection has been closed unexpectedly") is not among these.
REFUSED = ("authentication failed", "does not exist", "no pg_hba.conf entry", "permission denied", "invalid ",
           "does not support SSL", "certificate", "sslmode")
_URL_PASSWORD = re.compile(r"(://[^:/@\s]*:)([^@\s]*)(@)")
_KV_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def mask(text: str) -> str:
    """``text`` with every password of a connection string in it replaced by ``***``."""
    return _KV_PASSWORD.sub(r"\1***", _URL_PASSWORD.sub(r"\1***\3", text))


def resolve(value: str | None) -> str:
    """The connection string: ``value``, or ``@FILE`` (its first non-comment line), or
    ``$COREFACE_FLEET_DSN`` (which may itself be ``@FILE``)."""
    value = os.environ.get(ENV_DSN) if value in (None, "", "env") else value
    if not value:
        raise CorefaceError(f"fleet: no server given: pass --dsn (or --fleet for 'gate'), or set {ENV_DSN}, e.g. @/etc/coreface/fleet.dsn")
    if not value.startswith("@"):
        return value.strip()
    path = Path(value[1:]).expanduser()
    try:
        lines = [line.strip() for line in path.read_text().splitlines()]
    except OSError as exc:
        raise CorefaceError(f"{path}: cannot read the fleet connection file ({exc.strerror})") from None
    found = [line for line in lines if line and not line.startswith("#")]
    if not found:
        raise CorefaceError(f"{path}: holds no connection string")
    return found[0]


def psycopg() -> Any:
    """The psycopg module, or one line saying how to install it (the ``[fleet]`` extra)."""
    try:
        import psycopg as module
    except ImportError:
        raise CorefaceError("the fleet needs psycopg and pgvector: pip install 'coreface-edge[fleet]'") from None
    return module


def describe_server(dsn: str) -> str:
    """``user@host:port/db`` (no password), for messages."""
    conninfo_to_dict = psycopg().conninfo.conninfo_to_dict

    try:
        info = conninfo_to_dict(dsn)
    except Exception:  # noqa: BLE001 - an unparseable string is described by its masked self
        return f"fleet server {mask(dsn)!r}"
    host = info.get("host") or info.get("hostaddr") or "local socket"
    return f"fleet server {info.get('user') or '?'}@{host}:{info.get('port') or 5432}/{info.get('dbname') or '?'}"


def password_of(dsn: str) -> str | None:
    try:
        return psycopg().conninfo.conninfo_to_dict(dsn).get("password")
    except Exception:  # noqa: BLE001
        return None


def scrub(dsn: str, text: str) -> str:
    """An error text without the DSN's password, first line only."""
    secret = password_of(dsn)
    text = mask(str(text).strip().splitlines()[0] if str(text).strip() else type(text).__name__)
    return text.replace(secret, "***") if secret else text


def connect(dsn: str, autocommit: bool = False, **options: Any) -> Any:
    """A psycopg connection with short timeouts and TCP keepalives; failures are one line."""
    pg = psycopg()
    try:
        return pg.connect(
            dsn,
            autocommit=autocommit,
            connect_timeout=CONNECT_TIMEOUT_S,
            keepalives=1,
            keepalives_idle=5,
            keepalives_interval=2,
            keepalives_count=3,
            options=f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
            application_name="coreface-edge",
            **options,
        )
    except pg.OperationalError as exc:
        text = scrub(dsn, exc)
        if any(sign in text for sign in REFUSED):  # the server answered: retrying will not help
            raise CorefaceError(f"{describe_server(dsn)}: refused the connection ({text})") from None
        raise Unreachable(f"{describe_server(dsn)}: cannot connect ({text})") from None
    except Exception as exc:  # noqa: BLE001 - a malformed string raises before any network use
        raise CorefaceError(f"{describe_server(dsn)}: not a valid connection string ({scrub(dsn, exc)})") from None


class Unreachable(CorefaceError):
    """The server cannot be reached now (down, network cut, refused): a gate retries later."""
