"""Every output file appears complete or not at all: write beside it, rename into place.

A killed run therefore never leaves half a CSV, image or checkpoint that a rerun would
take for finished work.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

TMP_SUFFIX = ".partial"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; it replaces ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}{TMP_SUFFIX}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write a text file atomically and return its path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


@contextlib.contextmanager
def staged_folder(out_dir: str | os.PathLike[str], prefix: str) -> Iterator[Path]:
    """Yield a hidden staging folder inside ``out_dir`` for a set of files published together.

    The caller moves the finished files out of it (each move atomic); the staging folder is
    always removed, and on an error ``out_dir`` too when this call created it.
    """
    import shutil
    import tempfile

    from slidepredict.core.batch import check_writable

    out_dir = Path(out_dir)
    existed = out_dir.exists()
    check_writable(out_dir)
    staging = Path(tempfile.mkdtemp(prefix=prefix, dir=out_dir))
    try:
        yield staging
    except BaseException:
        if not existed:
            shutil.rmtree(out_dir, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
