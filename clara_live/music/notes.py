"""Notes, the value every reader produces and every codec consumes.

`Note` times are in quarter notes (floats, from the file's ticks, so tempo changes never
move the grid); `StepNote` times are in steps of the codec's grid (ints). Both are tuples
for speed: a piano piece has thousands of notes and encoding runs over whole corpora.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import numpy as np

PIANO = "p"  # struck and plucked instruments: piano, harpsichord, organ, harp, guitar...
VIOLIN = "v"  # bowed, blown and sung instruments: strings, winds, brass, voice
FAMILIES = (PIANO, VIOLIN)  # also the order of families inside a step


class Note(NamedTuple):
    start: float  # quarter notes from the start of the piece
    end: float  # quarter notes; end > start
    pitch: int  # MIDI pitch 0..127
    velocity: int = 80  # MIDI velocity 1..127
    family: str = PIANO
    part: int = 0  # which part (track) of the piece it came from


class StepNote(NamedTuple):
    start: int  # steps from the start of the piece
    end: int  # steps; end > start
    pitch: int  # MIDI pitch, folded into the codec's range
    velocity: int = 80
    family: str = PIANO
    offset: float = 0.0  # where the onset really fell, in steps from `start` (-0.5 <= offset < 0.5): its timing


class Piece(NamedTuple):
    """A piece as read from a file: notes in quarter notes plus what a writer needs back."""

    notes: list[Note]
    bpm: float = 120.0  # the first tempo of the file
    source: str = ""  # where it came from, for messages
    parts: tuple[str, ...] = ()  # each part's name as the file gives it (a track's, a score part's), by Note.part
    programs: tuple[int, ...] = ()  # each part's General MIDI program as read (none: 0 in MIDI, -1 in a score)


class Normalised(list):
    """A list of StepNotes already normalised (the result of `normalise`; do not mutate it).

    Encoding normalises its input; this marker lets it skip the second pass over notes that
    `to_steps` has just normalised (15 % of encoding time over the corpus).
    """


def normalise(notes: Iterable[StepNote]) -> Normalised:
    """One sounding note per (family, pitch) at a time, ordered by onset, family, pitch.

    Two onsets of a pitch in one step merge (the longer, louder one stays); a note struck
    again while it sounds is closed at the new onset, so no note-off is ever lost.
    """
    if isinstance(notes, Normalised):
        return notes
    notes = list(notes)
    if not notes:
        return Normalised()
    start, end, pitch, velocity, family, offset = zip(*notes, strict=True)
    return normalise_arrays(np.array(start, dtype=np.int64), np.array(end, dtype=np.int64),
                             np.array(pitch, dtype=np.int64), np.array(velocity, dtype=np.int64),
                             np.array(family) == VIOLIN, np.array(offset, dtype=np.float64))


def normalise_arrays(start: np.ndarray, end: np.ndarray, pitch: np.ndarray, velocity: np.ndarray,
                      violin: np.ndarray, offset: np.ndarray | None = None) -> Normalised:
    """`normalise` on arrays; `offset` (default 0) is each onset's timing off its step (a merged
    onset keeps the earliest)."""
    offset = np.zeros(len(start)) if offset is None else offset
    order = np.lexsort((-end, start, pitch, violin))  # by family, pitch, onset, longest first
    start, end, pitch, velocity, violin, offset = (start[order], end[order], pitch[order], velocity[order],
                                                   violin[order], offset[order])
    same_key = (pitch[1:] == pitch[:-1]) & (violin[1:] == violin[:-1])
    first = np.concatenate([[True], ~(same_key & (start[1:] == start[:-1]))])  # first of each onset group
    groups = np.flatnonzero(first)
    velocity = np.maximum.reduceat(velocity, groups)  # the loudest of merged onsets
    offset = np.minimum.reduceat(offset, groups)  # ... struck when the first of them was
    start, end, pitch, violin = start[groups], end[groups], pitch[groups], violin[groups]
    # a note struck again while it sounds ends at the new onset
    restruck = np.concatenate([(pitch[1:] == pitch[:-1]) & (violin[1:] == violin[:-1]), [False]])
    end = np.where(restruck, np.minimum(end, np.roll(start, -1)), end)
    order = np.lexsort((pitch, violin, start))
    families = np.where(violin[order], VIOLIN, PIANO).tolist()
    return Normalised(map(StepNote._make, zip(start[order].tolist(), end[order].tolist(), pitch[order].tolist(),
                                              velocity[order].tolist(), families, offset[order].tolist(),
                                              strict=True)))
