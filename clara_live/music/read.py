"""One entry point for every input: MIDI files, score files and music21 corpus works."""

from __future__ import annotations

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
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix in MIDI_SUFFIXES:
        return read_midi(path, sustain_pedal)
    if suffix in SCORE_SUFFIXES:
        return read_score(path)
    raise InputError(f"{path}: unknown file type {suffix or '(none)'} "
                     f"(expected one of {' '.join(READABLE_SUFFIXES)})")
