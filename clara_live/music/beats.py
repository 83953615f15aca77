"""A performance on its beats: note times in seconds re-timed so that each annotated beat is one
quarter note, the way the live session hears a player on the beat grid of their own tempo.

A performance read in seconds has a wait that means a length of time; on its annotated beats the
same wait means a musical length (12 steps a beat whatever the player's tempo and rubato), as the
live session's grid does. Between two annotated beats time maps linearly; before the first and
after the last the nearest interval goes on. The result starts on a whole beat (a pickup before
the first annotated beat keeps its place before it).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from clara_live.errors import InputError
from clara_live.music.notes import Piece

MIN_BEATS = 2


def read_beats(path: str | Path) -> np.ndarray:
    """The beat times (seconds) of an annotation file: one beat a line, its time first (ASAP's
    `*_annotations.txt`: time, time, label; tab-separated)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the beat annotations ({exc.__class__.__name__})") from None
    times = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            times.append(float(line.split()[0]))
        except ValueError:
            raise InputError(f"{path}:{number}: not a beat time: {line.split()[0]!r}") from None
    beats = np.array(times)
    if len(beats) < MIN_BEATS or not np.all(np.isfinite(beats)) or np.any(np.diff(beats) <= 0):
        raise InputError(f"{path}: needs {MIN_BEATS} or more beats in increasing time")
    return beats


def beat_position(seconds: np.ndarray, beats: np.ndarray) -> np.ndarray:
    """Each time's position in beats (0 = the first annotated beat), linear between beats and
    extrapolated by the first and last intervals outside them."""
    index = np.arange(len(beats), dtype=float)
    position = np.interp(seconds, beats, index)
    before, after = seconds < beats[0], seconds > beats[-1]
    position[before] = (seconds[before] - beats[0]) / (beats[1] - beats[0])
    position[after] = len(beats) - 1 + (seconds[after] - beats[-1]) / (beats[-1] - beats[-2])
    return position


def on_beats(piece: Piece, beats: np.ndarray) -> Piece:
    """The piece (its note times in seconds) with each annotated beat a quarter note; its tempo
    the median of the annotated beats'."""
    if not piece.notes:
        return piece
    starts = beat_position(np.array([n.start for n in piece.notes]), beats)
    ends = beat_position(np.array([n.end for n in piece.notes]), beats)
    shift = -math.floor(min(0.0, float(starts.min())))  # a pickup stays before its beat, at a time >= 0
    notes = [n._replace(start=float(s) + shift, end=float(e) + shift)
             for n, s, e in zip(piece.notes, starts.tolist(), ends.tolist(), strict=True)]
    bpm = 60.0 / float(np.median(np.diff(beats)))
    return Piece(sorted(notes), bpm, piece.source, piece.parts)
