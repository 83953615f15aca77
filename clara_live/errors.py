"""The one error type a user sees: a single line naming the file or value and the reason."""

from __future__ import annotations

from pathlib import Path


class ClaraError(Exception):
    """An error whose message is shown to the user as is, with exit status 1."""


class InputError(ClaraError):
    """A file or token sequence that cannot be read; the message names it and says why."""


class OutputError(ClaraError, OSError):
    """A file or folder that cannot be written: `path: cannot write (reason)`. Also an OSError,
    so code that treats a failed write as one still does."""

    def __init__(self, path: str | Path, reason: str, errno: int | None = None) -> None:
        """reason: words (`it is a folder`, `No space left on device`); errno: the OS's, if any."""
        super().__init__(errno, reason)
        self.filename = str(path)

    def __str__(self) -> str:
        return f"{self.filename}: cannot write ({self.strerror})"
