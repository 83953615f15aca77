"""Notes, the value every reader produces and every codec consumes.

`Note` times are in quarter notes (floats, from the file's ticks, so tempo changes never
move the grid); `StepNote` times are in steps of the codec's grid (ints). Both are tuples
for speed: a piano piece has thousands of notes and encoding runs over whole corpora.
"""

from __future__ import annotations

from typing import NamedTuple

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


class Piece(NamedTuple):
    """A piece as read from a file: notes in quarter notes plus what a writer needs back."""

    notes: list[Note]
    bpm: float = 120.0  # the first tempo of the file
    source: str = ""  # where it came from, for messages
