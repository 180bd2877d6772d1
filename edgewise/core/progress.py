"""Progress and messages for people, on stderr, so stdout stays clean for --json."""

from __future__ import annotations

from functools import cache


@cache
def console():
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def report_console():
    """The console of results for people, on stdout: a terminal's own width; anything else (a file, a CI
    log, a pipe) gets room for long lines, so that paths in tables are never cut with an ellipsis."""
    from rich.console import Console

    probe = Console()
    return probe if probe.is_terminal else Console(width=max(200, probe.width), soft_wrap=True)


def progress_bar(transient: bool = False):
    """A rich progress bar with elapsed and remaining time."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=console(),
        transient=transient,
    )
