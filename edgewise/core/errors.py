"""The one exception type for problems a user can fix."""


class EdgewiseError(Exception):
    """A problem the user can fix: bad input, missing package, existing output.

    The message says what failed, what is accepted and the fix. Only ``edgewise.cli`` turns it
    into ``Error: ...`` on stderr with exit code 2; anything else is a bug and keeps its traceback.
    """


class Terminated(BaseException):
    """SIGTERM, raised by the command line's handler (edgewise.cli.main) so that a stopped run cleans up as
    on Ctrl-C. A BaseException, like KeyboardInterrupt, so that no ``except Exception`` swallows it."""


INTERRUPTS = (KeyboardInterrupt, Terminated)


def add_interrupt_note(error: BaseException, note: str) -> None:
    """Say on an interrupt what was kept and how to go on (the CLI prints it); an inner note comes first."""
    inner = getattr(error, "edgewise_note", None)
    error.edgewise_note = f"{inner}; {note}" if inner else note
