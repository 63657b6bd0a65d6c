"""Writing per-slide h5 files: atomic writes, completeness checks, locks, leftovers of killed runs.

Tiling writes ``coords`` only; extraction adds ``features``. Both go through
:func:`write_h5_atomic` so a killed process never leaves a file that looks complete, and
through :func:`write_once` (:func:`slide_lock` inside) so several processes can share one
output folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from slidepredict._version import __version__
from slidepredict.core.atomic import TMP_SUFFIX, atomic_path
from slidepredict.featurefile.layout import COORDS_DATASETS

__all__ = [
    "COMPLETE_ATTR", "LOCK_SUFFIX", "TMP_SUFFIX", "clean_partials", "is_complete", "plain_attrs", "read_attrs",
    "slide_lock", "write_h5_atomic", "write_once",
]

COMPLETE_ATTR = "slidepredict_complete"
LOCK_SUFFIX = ".lock"


def _attr_value(value: Any) -> Any:
    """h5py attributes cannot hold None or nested dicts; store those as JSON strings."""
    if value is None:
        return "none"
    if isinstance(value, (dict, list, tuple)) and not (
        isinstance(value, (list, tuple)) and all(isinstance(v, (int, float)) for v in value)
    ):
        return json.dumps(value)
    return value


def write_h5_atomic(
    path: str | os.PathLike[str],
    datasets: Mapping[str, np.ndarray],
    attrs: Mapping[str, Any],
    dataset_attrs: Mapping[str, Mapping[str, Any]] | None = None,
) -> Path:
    """Write datasets and attrs to a temporary file and rename it into place when complete.

    ``dataset_attrs`` go on the datasets themselves (CLAM reads ``patch_size``/``patch_level`` from ``coords``).
    """
    import h5py

    path = Path(path)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        for name, data in datasets.items():
            ds = f.create_dataset(name, data=data)
            for key, value in (dataset_attrs or {}).get(name, {}).items():
                ds.attrs[key] = _attr_value(value)
        for key, value in attrs.items():
            f.attrs[key] = _attr_value(value)
        f.attrs["slidepredict_version"] = __version__
        f.attrs[COMPLETE_ATTR] = True
    return path


def read_attrs(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """Attributes of a complete slidepredict file, or None when it is missing or unreadable."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            attrs = plain_attrs(f.attrs)
    except (OSError, KeyError):
        return None
    return attrs if attrs.get(COMPLETE_ATTR) else None


def is_complete(
    path: str | os.PathLike[str], expected: Mapping[str, Any], datasets: tuple[str, ...] = COORDS_DATASETS
) -> bool:
    """True when ``path`` is a finished file whose attrs match every expected setting."""
    import h5py

    attrs = read_attrs(path)
    if attrs is None:
        return False
    for key, want in expected.items():
        have = attrs.get(key)
        if isinstance(want, float) or isinstance(have, float):
            try:
                if not np.isclose(float(have), float(want), rtol=1e-6):
                    return False
            except (TypeError, ValueError):
                return False
        elif str(have) != str(_attr_value(want)):
            return False
    with h5py.File(path, "r") as f:
        return all(name in f for name in datasets)


def plain_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """h5py attributes as plain Python values (bytes decoded, NumPy scalars unwrapped)."""
    return {k: _py(v) for k, v in attrs.items()}


def _py(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode()
    return value


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def slide_lock(target: str | os.PathLike[str], stale_after_s: float = 6 * 3600) -> Iterator[bool]:
    """Try to take ``<target>.lock``; yields False when another live process holds it.

    A lock whose process is gone (same host) or that is older than ``stale_after_s``
    is taken over, so a killed job never blocks a slide for ever.
    """
    lock = Path(f"{target}{LOCK_SUFFIX}")
    lock.parent.mkdir(parents=True, exist_ok=True)
    me = f"{socket.gethostname()} {os.getpid()}"
    acquired = False
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if _lock_is_stale(lock, stale_after_s):
                with contextlib.suppress(FileNotFoundError):
                    lock.unlink()
                continue
            break
        with os.fdopen(fd, "w") as fh:
            fh.write(me)
        acquired = True
        break
    try:
        yield acquired
    finally:
        if acquired:
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()


def _lock_is_stale(lock: Path, stale_after_s: float) -> bool:
    try:
        text = lock.read_text().split()
        age = time.time() - lock.stat().st_mtime
    except (FileNotFoundError, OSError):
        return True
    if age > stale_after_s:
        return True
    if len(text) == 2 and text[0] == socket.gethostname() and text[1].isdigit():
        return not _pid_alive(int(text[1]))
    return False


def write_once(
    target: str | os.PathLike[str],
    expected: Mapping[str, Any],
    work: Callable[[], None],
    datasets: tuple[str, ...] = COORDS_DATASETS,
) -> str:
    """Run ``work`` (which writes ``target``) unless a matching complete file exists or another
    process holds the slide; returns batch.DONE, SKIPPED or BUSY.

    Checked again after taking the lock, so two jobs racing for one slide never both do it.
    """
    from slidepredict.core.batch import BUSY, DONE, SKIPPED

    if is_complete(target, expected, datasets):
        return SKIPPED
    with slide_lock(target) as acquired:
        if not acquired:
            return BUSY
        if is_complete(target, expected, datasets):
            return SKIPPED
        work()
    return DONE


def clean_partials(folder: str | os.PathLike[str]) -> int:
    """Remove temporary files left by killed runs of this host's dead processes; returns how many."""
    removed = 0
    for tmp in Path(folder).glob(f"*{TMP_SUFFIX}"):
        pid = tmp.name[: -len(TMP_SUFFIX)].rsplit(".", 1)[-1]
        if pid.isdigit() and not _pid_alive(int(pid)):
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
                removed += 1
    return removed
