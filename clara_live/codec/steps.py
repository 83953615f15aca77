"""From notes in quarter notes to notes on the codec's step grid, and transposition.

Both codecs start here, so folding and quantisation happen one way only.
"""

from __future__ import annotations

import math

import numpy as np

from clara_live.config import CodecConfig
from clara_live.music.notes import VIOLIN, Normalised, Piece, StepNote, normalise_arrays


def fold(pitch: int, low: int, high: int) -> int:
    """Move a pitch by octaves into low..high (which must span at least an octave)."""
    if pitch < low:
        pitch += 12 * math.ceil((low - pitch) / 12)
    elif pitch > high:
        pitch -= 12 * math.ceil((pitch - high) / 12)
    return pitch


def to_steps(piece: Piece, config: CodecConfig) -> Normalised:
    """Quantise a piece to steps of 1/sample_freq quarter note and fold it into range.

    Without chamber every instrument is piano-like. With chamber, a piece with a single
    violin-like part (a solo instrument, a Lied's voice, a song's melody) has that part folded
    into violin range, at or above violin_low: first the whole part moves up by the fewest
    octaves that leave at most a tenth of its notes below (a bass's song keeps its line's shape, an
    octave up), then each note still below moves up by octaves alone. Several violin-like parts
    (a quartet) keep their own range, cello and viola included. Onsets and releases round to the
    nearest step; a note that would last no step lasts one. Each note keeps its onset's rounding
    residual (`offset`, in steps): the timing the grid drops, which touch learns. Vectorised: this
    runs once per file of every corpus build.
    """
    if not piece.notes:
        return Normalised()
    starts, ends, pitches, velocities, families, parts = zip(*piece.notes, strict=True)
    sf = config.sample_freq
    exact = np.array(starts) * sf
    start = np.floor(exact + 0.5).astype(np.int64)
    end = np.maximum(np.floor(np.array(ends) * sf + 0.5).astype(np.int64), start + 1)
    violin = np.array(families) == VIOLIN if config.chamber else np.zeros(len(starts), dtype=bool)
    solo = config.chamber and len({p for p, f in zip(parts, families, strict=True) if f == VIOLIN}) == 1
    low = np.where(violin & solo, config.violin_low, config.low_pitch)
    pitch = np.array(pitches, dtype=np.int64)
    if solo:  # the fewest octaves that leave at most a tenth of the part's notes below violin_low
        line = np.sort(pitch[violin])
        octaves = max(0, -(-(config.violin_low - int(line[len(line) // 10])) // 12))
        pitch = np.where(violin, pitch + 12 * octaves, pitch)
    pitch = np.where(pitch < low, pitch + 12 * ((low - pitch + 11) // 12), pitch)
    high = config.high_pitch
    pitch = np.where(pitch > high, pitch - 12 * ((pitch - high + 11) // 12), pitch)
    offset = np.round(exact - start, 6) + 0.0  # float noise of the quarter notes gone (and -0.0 with it)
    return normalise_arrays(start, end, pitch, np.array(velocities, dtype=np.int64), violin, offset)


def transpose(notes: list[StepNote], semitones: int, config: CodecConfig) -> list[StepNote] | None:
    """The notes moved by semitones, or None when any would leave the token range.

    A uniform shift keeps normalised notes normalised.
    """
    if not notes or semitones == 0:
        return notes if isinstance(notes, Normalised) else list(notes)
    low = min(n.pitch for n in notes) + semitones
    high = max(n.pitch for n in notes) + semitones
    if low < config.low_pitch or high > config.high_pitch:
        return None
    moved = [n._replace(pitch=n.pitch + semitones) for n in notes]
    return Normalised(moved) if isinstance(notes, Normalised) else moved
