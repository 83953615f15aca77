"""One entry point for every input: MIDI files, score files and music21 corpus works."""

from __future__ import annotations

import errno
import stat
from pathlib import Path

from clara_live.errors import InputError
from clara_live.music.midi_io import MIDI_SUFFIXES, read_midi
from clara_live.music.notes import Piece
from clara_live.music.score_io import CORPUS_PREFIX, SCORE_SUFFIXES, read_score

READABLE_SUFFIXES = MIDI_SUFFIXES + SCORE_SUFFIXES


def read_music(source: str | Path, sustain_pedal: bool = True) -> Piece:
    """Read a MIDI file, a score file or `music21:PATH`; InputError names the source and reason."""
    text = str(source)
    if text.startswith(CORPUS_PREFIX):
        return read_score(text)
    path = Path(source)
    kind = not_regular(path)
    if kind is not None:
        raise InputError(f"{path}: {kind}")
    suffix = path.suffix.lower()
    if suffix in MIDI_SUFFIXES:
        return read_midi(path, sustain_pedal)
    if suffix in SCORE_SUFFIXES:
        return read_score(path)
    raise InputError(f"{path}: unknown file type {suffix or '(none)'} "
                     f"(expected one of {' '.join(READABLE_SUFFIXES)})")


def not_regular(path: str | Path) -> str | None:
    """None for a regular file (or a link to one); else why it cannot be read as music: no such
    file, a folder, a FIFO, a dangling link, a symlink loop... (reading a FIFO would wait for a writer
    forever)."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        if path.is_symlink():  # stat follows links: ELOOP for a loop, ENOENT at the end of a dangling one
            return f"not a regular file ({'a symlink loop' if exc.errno == errno.ELOOP else 'a dangling link'})"
        return "no such file" if isinstance(exc, FileNotFoundError) else f"cannot read ({exc.strerror})"
    if stat.S_ISREG(mode):
        return None
    kinds = {stat.S_ISDIR: "a folder", stat.S_ISFIFO: "a FIFO", stat.S_ISSOCK: "a socket",
             stat.S_ISCHR: "a character device", stat.S_ISBLK: "a block device"}
    kind = next((name for test, name in kinds.items() if test(mode)), "not a plain file")
    return f"not a regular file ({kind})"
