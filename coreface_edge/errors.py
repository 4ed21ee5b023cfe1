"""The one exception type the CLI turns into a clean one-line message."""


class CorefaceError(Exception):
    """A user-facing error: its message names the file or setting and the problem.

    The CLI prints ``error: <message>`` and exits with status 2; no traceback.
    """
