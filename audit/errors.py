"""The one exception type that the CLI turns into `Error: ...` and exit code 2."""


class AuditError(Exception):
    """Bad usage or input: the message names the problem and the fix.

    Raised anywhere in the core or in a plugin, it reaches the user as one line
    on stderr with exit code 2, without a traceback.
    """

    exit_code = 2
