"""One place that decides how long loops report progress (rich bars, or plain logs with --quiet)."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

_state = {"quiet": False}
log = logging.getLogger("slidepredict")


def set_quiet(quiet: bool) -> None:
    """Turn progress bars off (logs only), e.g. for cluster jobs whose output goes to files."""
    _state["quiet"] = quiet


def is_quiet() -> bool:
    return _state["quiet"] or not sys.stderr.isatty()


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate with a progress bar on a terminal; elsewhere log the start and end only."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    if is_quiet():
        log.info("%s (%s items)", description, total if total is not None else "?")
        yield from items
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, transient=False) as progress:
        task = progress.add_task(description, total=total)
        for item in items:
            yield item
            progress.advance(task)


def setup_logging(quiet: bool = False) -> None:
    """Console logging through rich (once per process)."""
    set_quiet(quiet)
    root = logging.getLogger("slidepredict")
    root.setLevel(logging.INFO)
    if not any(getattr(h, "_slidepredict", False) for h in root.handlers):
        from rich.logging import RichHandler

        handler = RichHandler(show_path=False, show_time=False, markup=False)
        handler._slidepredict = True  # type: ignore[attr-defined]
        root.addHandler(handler)


@contextlib.contextmanager
def add_logfile(path: str | os.PathLike[str]) -> Iterator[None]:
    """Append every log line of a run to ``path`` (provenance next to the outputs)."""
    root = logging.getLogger("slidepredict")
    root.setLevel(logging.INFO)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()
