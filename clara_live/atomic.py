"""Atomic file writes: a temporary file beside the target, fsynced, then renamed over it.

A reader never sees a half-written file, and a crash leaves the old file (or none) in place;
a process killed mid-write (SIGKILL) leaves its temporary file, which `remove_stale_temps`
clears when the writer starts again. What the path names decides how it is written, as `cp`
and `sed -i` decide it:
- a regular file, or nothing yet: atomically, as above;
- a symbolic link: the file it leads to, atomically beside that file (a dangling link's
  target is created); the link stays. A loop of links is refused;
- a character device or a FIFO (/dev/null, a named pipe): written through as a stream, never
  replaced. A FIFO is opened as `cp` opens it: the write waits for a reader;
- `-`: standard output, as a stream, the whole output at the end (binary data is refused
  while stdout is a terminal);
- a folder, a socket, a block device, a path under a file: refused.
A target that cannot be written raises OutputError, one line naming it and the reason.
Where SIGTERM would kill the process outright (no handler of its own), it raises Terminated
while a temporary file exists, so the temporary is removed on the way out.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import io
import os
import signal
import stat
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, NamedTuple

from clara_live.errors import OutputError

STDOUT = "-"  # the path that names standard output
MAX_LINKS = 40  # links followed before a path counts as a loop (Linux's own limit, ELOOP)
# mkstemp's names: ".<target name>.<8 random characters>.tmp"
_RANDOM = "[a-z0-9_]" * 8


class Terminated(BaseException):  # noqa: N818 - named for the signal, as KeyboardInterrupt is
    """SIGTERM, raised (inside `removed_on_sigterm`) where it would have killed the process outright."""


class Target(NamedTuple):
    """Where a write to a path lands."""

    path: Path | None  # the file written, links followed (a stream's: as named); None: standard output
    stream: bool  # written through as it comes (stdout, a FIFO, a character device), never replaced


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


def _follow(path: Path) -> Path:
    """The path its symbolic links lead to (path itself when it is none); OutputError for a loop."""
    start = path
    for _ in range(MAX_LINKS):
        try:
            link = os.readlink(path)
        except OSError:  # not a link (EINVAL), missing, or under a file: the path as it stands
            return path
        path = path.parent / link  # an absolute link replaces the whole path
    raise OutputError(start, "a loop of symbolic links", errno.ELOOP)


def output_target(path: str | Path) -> Target:
    """Where a write to path lands, or OutputError when it cannot be written there (a folder, a
    socket, a block device, a loop of links, a folder on the way that is a file)."""
    if str(path) == STDOUT:
        return Target(None, True)
    path = Path(path)
    try:
        found = os.stat(path)  # links followed as the kernel follows them (/dev/stdout's in /proc too)
    except (FileNotFoundError, NotADirectoryError):  # new, or a dangling link: its target is created
        found = None
    except OSError as exc:
        reason = "a loop of symbolic links" if exc.errno == errno.ELOOP else _reason(path, exc)
        raise OutputError(path, reason, exc.errno) from None
    if found is None or stat.S_ISREG(found.st_mode):
        resolved = _follow(path)
        if found is not None and not _same_file(resolved, found):
            return Target(path, True)  # a link only the kernel can follow (/proc's): written through
        for parent in resolved.parents:  # the first folder on the way that exists must be one
            if parent.exists():
                if not parent.is_dir():
                    raise OutputError(path, f"{parent} is not a folder")
                break
        return Target(resolved, False)
    if stat.S_ISCHR(found.st_mode) or stat.S_ISFIFO(found.st_mode):
        return Target(path, True)
    kind = "a folder" if stat.S_ISDIR(found.st_mode) else "a socket" if stat.S_ISSOCK(found.st_mode) else \
        "a block device (clara does not write to disks)" if stat.S_ISBLK(found.st_mode) else "not a file"
    raise OutputError(path, f"it is {kind}")


def _same_file(path: Path, found: os.stat_result) -> bool:
    try:
        return os.path.samestat(os.stat(path), found)
    except OSError:
        return False


def scratch_folder(path: str | Path) -> Path:
    """Where temporaries for a write to path belong: beside the file it lands in (so a rename
    finishes the write and a big one never fills /tmp), or the system's for a stream."""
    where = output_target(path)
    return where.path.parent if not where.stream else Path(tempfile.gettempdir())


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


def _terminated(signum, frame) -> None:  # noqa: ARG001 - signal handler signature
    raise Terminated


@contextlib.contextmanager
def removed_on_sigterm() -> Iterator[None]:
    """Inside, SIGTERM raises Terminated rather than killing the process outright, so the with
    blocks around it remove their temporaries. Only in the main thread (where Python runs signal
    handlers) and only while SIGTERM has no handler of its own (clara live and training have
    theirs); elsewhere it changes nothing."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return
    signal.signal(signal.SIGTERM, _terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open path for writing as the module's docstring says: a temporary file that on a clean exit
    replaces the file path leads to and on an error is removed; or a stream (stdout, a FIFO, a
    character device) written through."""
    where = output_target(path)
    binary = "b" in mode
    if where.path is None:
        with _stdout(binary, encoding) as handle:
            yield handle
    elif where.stream:
        with _stream(where.path, binary, encoding) as handle:
            yield handle
    else:
        with removed_on_sigterm(), _replacing(where.path, mode, binary, encoding) as handle:
            yield handle


@contextlib.contextmanager
def _replacing(path: Path, mode: str, binary: bool, encoding: str | None) -> Iterator[IO]:
    with _writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
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


@contextlib.contextmanager
def _stream(path: Path, binary: bool, encoding: str | None) -> Iterator[IO]:
    """A FIFO or a character device, opened as it is (no O_CREAT: a node that went away is not
    replaced by a file) and written through; /dev/full's ENOSPC shows at the flush at the latest."""
    with _writing(path):
        fd = os.open(path, os.O_WRONLY | os.O_NOCTTY)
    with os.fdopen(fd, "wb" if binary else "w", encoding=None if binary else encoding) as handle:
        try:
            yield handle
            with _writing(path):
                handle.flush()
        except OSError:
            with contextlib.suppress(OSError):  # the write failed: drop what the buffer still holds
                handle.close()
            raise


@contextlib.contextmanager
def _stdout(binary: bool, encoding: str | None) -> Iterator[IO]:
    """Standard output: what is written is held, then written at the end as one piece, so a failed
    write sends nothing. A closed pipe raises BrokenPipeError as it is, which `clara` ends quietly."""
    raw = getattr(sys.stdout, "buffer", None)  # None: no stdout, or one that takes text alone
    if binary and (raw is None or sys.stdout.isatty()):
        raise OutputError(STDOUT, "standard output is a terminal; redirect it or name a file" if raw is not None
                          else "standard output takes no bytes here")
    held = io.BytesIO() if binary else io.StringIO()
    yield held
    if raw is None:
        sys.stdout.write(held.getvalue())
        sys.stdout.flush()
        return
    sys.stdout.flush()  # what was printed before comes first
    raw.write(held.getvalue() if binary else held.getvalue().encode(encoding or "utf-8"))
    raw.flush()


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
