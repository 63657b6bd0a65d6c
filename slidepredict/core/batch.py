"""Per-slide batch loops shared by every stage: one failing slide never stops the others."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from slidepredict.core.errors import SlidePredictError
from slidepredict.core.progress import track

log = logging.getLogger("slidepredict")
T = TypeVar("T")

DONE, SKIPPED, BUSY = "done", "skipped", "busy"


@dataclass
class BatchResult:
    """Outcome of a loop over slides; ``failed`` holds (slide, one-line reason)."""

    done: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    busy: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0

    def summary(self) -> str:
        parts = [f"{len(self.done)} done", f"{len(self.skipped)} already complete"]
        if self.busy:
            parts.append(f"{len(self.busy)} being processed by another job")
        parts.append(f"{len(self.failed)} failed")
        return ", ".join(parts)


def run_per_slide(
    slides: Sequence[Path], work: Callable[[Path], str], description: str
) -> BatchResult:
    """Call ``work(slide)`` for each slide; it returns DONE, SKIPPED or BUSY, or raises.

    A user-level error (:class:`SlidePredictError`) or a read failure is logged as one line
    naming the slide and the batch goes on; programming errors still propagate.
    """
    result = BatchResult()
    for slide in track(slides, description):
        try:
            status = work(slide)
        except (SlidePredictError, OSError) as exc:
            reason = str(exc).replace("\n", " ")
            log.error("%s", reason if slide.name in reason else f"{slide.name}: {reason}")
            result.failed.append((slide, reason))
            continue
        {DONE: result.done, SKIPPED: result.skipped, BUSY: result.busy}[status].append(slide)
    return result


def parse_shard(spec: str | None) -> tuple[int, int]:
    """``"i/N"`` (1-based, as SLURM array indices usually are) -> (i, N); None -> (1, 1)."""
    if not spec:
        return 1, 1
    try:
        i_s, n_s = spec.split("/")
        i, n = int(i_s), int(n_s)
    except ValueError:
        raise SlidePredictError(f"--shard must look like i/N (e.g. 3/10), got {spec!r}") from None
    if not (n >= 1 and 1 <= i <= n):
        raise SlidePredictError(f"--shard {spec}: need 1 <= i <= N")
    return i, n


def select_shard(items: Sequence[T], spec: str | None) -> list[T]:
    """Every N-th item starting at i; deterministic, so array jobs split a folder without overlap."""
    i, n = parse_shard(spec)
    return list(items[i - 1 :: n])


def check_writable(folder: str | os.PathLike[str]) -> Path:
    """Create ``folder`` if needed and fail early, in one line, when it cannot be written."""
    path = Path(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SlidePredictError(f"cannot create output folder {path}: {exc.strerror}; choose another --out") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise SlidePredictError(f"output folder {path} is not writable")
    return path


@contextlib.contextmanager
def output_folder(folder: str | os.PathLike[str]) -> Iterator[Path]:
    """A command's output folder, checked before any work; a refused run leaves no folder it created.

    Every command runs inside this (``pipeline/stages.py``), so an unwritable ``--out`` is one
    line for all of them, and a run refused for its inputs (a :class:`SlidePredictError`)
    removes the folder again if it made it and nothing was written there.
    """
    path = Path(folder)
    made = [p for p in (path, *path.parents) if not p.exists()]  # what mkdir will create, deepest first
    check_writable(path)
    try:
        yield path
    except SlidePredictError:
        for p in made:
            try:
                p.rmdir()  # only an empty folder goes
            except OSError:
                break
        raise
