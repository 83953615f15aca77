"""Atomic file writes: a temporary file beside the target, fsynced, then renamed over it.

A reader never sees a half-written file, and a crash leaves the old file (or none) in place;
a process killed mid-write (SIGKILL) leaves its temporary file, which `remove_stale_temps`
clears when the writer starts again. A target that cannot be written (its folder is a file,
it is a folder, the disk is full) raises OutputError, one line naming it and the reason.
"""

from __future__ import annotations

import contextlib
import glob
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from clara_live.errors import OutputError

# mkstemp's names: ".<target name>.<8 random characters>.tmp"
_RANDOM = "[a-z0-9_]" * 8


def _reason(path: Path, exc: OSError) -> str:
    """Why path cannot be written, in words: the first of its folders that is a file, else the OS's reason."""
    for parent in path.parents:
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                return f"{parent} is not a folder"
            break
    if path.is_dir():
        return "it is a folder"
    return exc.strerror or exc.__class__.__name__


def make_folder(path: str | Path) -> Path:
    """Create a folder and its parents (an existing one is fine); OutputError when it cannot be."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = "it is a file" if path.exists() and not path.is_dir() else _reason(path, exc)
        raise OutputError(path, reason, exc.errno) from None
    return path


@contextlib.contextmanager
def _writing(path: Path) -> Iterator[None]:
    """An OSError raised inside, while writing path, as an OutputError naming path and why."""
    try:
        yield
    except OSError as exc:
        raise OutputError(path, _reason(path, exc), exc.errno) from None


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a temporary file for writing; on a clean exit it replaces path, on an error it is removed."""
    path = Path(path)
    with _writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    binary = "b" in mode
    try:
        with os.fdopen(fd, mode, encoding=None if binary else encoding) as handle:
            yield handle
            with _writing(path):  # a full disk shows here at the latest
                handle.flush()
                os.fsync(handle.fileno())
        with _writing(path):
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
            os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | Path, text: str) -> None:
    with atomic_open(path, "w") as handle, _writing(Path(path)):
        handle.write(text)


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_open(path, "wb") as handle, _writing(Path(path)):
        handle.write(data)


def remove_stale_temps(target: str | Path) -> list[Path]:
    """Remove the temporary files that writers of target killed mid-write left beside it (a
    clean or failed write removes its own). Call it only where no other process is writing
    target. Returns what was removed."""
    target = Path(target)
    removed = []
    for candidate in target.parent.glob(f".{glob.escape(target.name)}.{_RANDOM}.tmp"):
        if candidate.is_file():
            with contextlib.suppress(FileNotFoundError):
                candidate.unlink()
                removed.append(candidate)
    return removed

