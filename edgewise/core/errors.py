"""The one exception type for problems a user can fix."""


class EdgewiseError(Exception):
    """A problem the user can fix: bad input, missing package, existing output.

    The message says what failed, what is accepted and the fix. Only ``edgewise.cli`` turns it
    into ``Error: ...`` on stderr with exit code 2; anything else is a bug and keeps its traceback.
    """
