"""The one exception type that the CLI turns into `Error: ...` and exit code 2."""


class AuditError(Exception):
    """Bad usage or input: the message names the problem and the fix.

    Raised anywhere in the core or in a plugin, it reaches the user as one line
    on stderr with exit code 2, without a traceback.
    """

    exit_code = 2


def first_line(error: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message, for one-line errors."""
    text = str(error).strip().splitlines()
    return text[0][:limit] if text else type(error).__name__


class Terminated(KeyboardInterrupt):
    """SIGTERM (what CI runners and Kubernetes send), handled as Ctrl-C is: the run is marked interrupted, exit 143."""
