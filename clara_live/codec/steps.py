"""From notes in quarter notes to notes on the codec's step grid, and transposition.

Both codecs start here, so folding and quantisation happen one way only.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from clara_live.config import CodecConfig
from clara_live.music.notes import PIANO, VIOLIN, Piece, StepNote


def fold(pitch: int, low: int, high: int) -> int:
    """Move a pitch by octaves into low..high (which must span at least an octave)."""
    if pitch < low:
        pitch += 12 * math.ceil((low - pitch) / 12)
    elif pitch > high:
        pitch -= 12 * math.ceil((pitch - high) / 12)
    return pitch


def to_steps(piece: Piece, config: CodecConfig) -> list[StepNote]:
    """Quantise a piece to steps of 1/sample_freq quarter note and fold it into range.

    Without chamber every instrument is piano-like. With chamber, a piece with a single
    violin-like part (a solo instrument) has that part folded into violin range, at or above
    violin_low. Onsets and releases round to the nearest step; a note that would last no
    step lasts one.
    """
    sf = config.sample_freq
    high = config.high_pitch
    violin_parts = {n.part for n in piece.notes if n.family == VIOLIN} if config.chamber else set()
    violin_low = config.violin_low if len(violin_parts) == 1 else config.low_pitch
    out = []
    for note in piece.notes:
        family = note.family if config.chamber else PIANO
        low = violin_low if family == VIOLIN else config.low_pitch
        start = math.floor(note.start * sf + 0.5)
        end = max(math.floor(note.end * sf + 0.5), start + 1)
        out.append(StepNote(start, end, fold(note.pitch, low, high), note.velocity, family))
    return normalise(out)


def normalise(notes: Iterable[StepNote]) -> list[StepNote]:
    """One sounding note per (family, pitch) at a time, ordered by onset, family, pitch.

    Two onsets of a pitch in one step merge (the longer, louder one stays); a note struck
    again while it sounds is closed at the new onset, so no note-off is ever lost.
    """
    ordered = sorted(notes, key=lambda n: (n.family, n.pitch, n.start, -n.end))
    out: list[StepNote] = []
    for note in ordered:
        if out and out[-1].family == note.family and out[-1].pitch == note.pitch:
            prev = out[-1]
            if note.start == prev.start:
                out[-1] = prev._replace(end=max(prev.end, note.end), velocity=max(prev.velocity, note.velocity))
                continue
            if note.start < prev.end:
                out[-1] = prev._replace(end=note.start)
        out.append(note)
    out.sort(key=lambda n: (n.start, n.family, n.pitch))
    return out


def transpose(notes: list[StepNote], semitones: int, config: CodecConfig) -> list[StepNote] | None:
    """The notes moved by semitones, or None when any would leave the token range."""
    if not notes or semitones == 0:
        return list(notes)
    low = min(n.pitch for n in notes) + semitones
    high = max(n.pitch for n in notes) + semitones
    if low < config.low_pitch or high > config.high_pitch:
        return None
    return [n._replace(pitch=n.pitch + semitones) for n in notes]
