"""The one exception type the CLI turns into a clean one-line message."""

from __future__ import annotations

import os

_ORIGINAL = "\nOriginal Traceback (most recent call last):\n"


class CorefaceError(Exception):
    """A user-facing error: its message names the file or setting and the problem.

    The CLI prints ``error: <message>`` and exits with status 2; no traceback.
    """


def one_line(exc: BaseException) -> str:
    """The message to show for ``exc``: ``str(exc)``, unwrapped when PyTorch re-raised it.

    A DataLoader worker (or pin-memory thread) that raises re-raises the *same* exception type
    in the main process with the text ``Caught <Type> in DataLoader worker process N.`` +
    ``Original Traceback (most recent call last): ...`` + the original traceback. For such a
    message this returns the original exception's own message (what follows
    ``<module>.<Type>: `` at the end of that traceback); for any other message, ``str(exc)``.
    """
    text = str(exc)
    if not text.startswith("Caught ") or _ORIGINAL not in text:
        return text
    kind = type(exc)
    name = kind.__qualname__ if kind.__module__ in ("builtins", "__main__") else f"{kind.__module__}.{kind.__qualname__}"
    lines = text.rstrip().splitlines()
    # The last exception of the (possibly chained or nested) traceback is the one raised: search from the end.
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].startswith(f"{name}: "):
            return "\n".join([lines[i][len(name) + 2 :], *lines[i + 1 :]]).strip()
    return lines[-1].strip()


def raised_while_loading(exc: BaseException) -> bool:
    """Whether ``exc`` came out of a ``torch.utils.data`` DataLoader iteration (a sample that
    failed to load), judged by the frames it was raised through; no torch import needed."""
    marker = os.sep + os.path.join("torch", "utils", "data") + os.sep
    tb = exc.__traceback__
    while tb is not None:
        if marker in tb.tb_frame.f_code.co_filename:
            return True
        tb = tb.tb_next
    return False
