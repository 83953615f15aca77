"""Which family each part of a read piece plays in a corpus, with codec.chamber.

Without chamber nothing here applies: a source keeps the families its reader names
(`Source.families`: the Lieder their piano part alone, as every corpus built before) and the
codec plays every note as piano. With chamber a source's `arrangement` decides:
- "lied" (OpenScore Lieder): the voice as `v` over its piano as `p`, as the score's instruments
  give them (the voice part is read as a sung or wind program, the piano's two staves as piano);
  the piano-only filter does not apply;
- "pop909" (POP909): the MELODY track, the sung line (monophonic: 1.5 % of its onsets fall under
  another of its notes), as `v`; BRIDGE and PIANO as `p`. BRIDGE is a second melody line, but
  one played on the piano and often in chords (22 % of its onsets fall under another of its
  notes) and under the melody (20 % of its onsets, median song), so it belongs to the
  accompaniment: `v` stays one sung line, as a Lied's voice is;
- "" (everything else): as read. The quartets' four bowed parts are `v`; the piano corpora are
  `p` (every note of piano-midi.de, ASAP and Pianolatron is read as piano).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from clara_live.music.notes import PIANO, VIOLIN, Piece

if TYPE_CHECKING:
    from clara_live.corpus.sources import Source

LIED = "lied"
POP909 = "pop909"
ARRANGEMENTS = ("", LIED, POP909)
MELODY = "MELODY"  # POP909's sung line: its track's name


def arranged(piece: Piece, source: Source, chamber: bool) -> Piece:
    """The notes a corpus keeps of a piece, each in the family it plays (see the module's docstring)."""
    if not chamber or not source.arrangement:
        if source.families:
            return piece._replace(notes=[n for n in piece.notes if n.family in source.families])
        return piece
    if source.arrangement == LIED:
        return piece
    if source.arrangement == POP909:
        melody = {i for i, name in enumerate(piece.parts) if name.strip().upper() == MELODY}
        return piece._replace(notes=[n._replace(family=VIOLIN if n.part in melody else PIANO) for n in piece.notes])
    raise ValueError(f"{source.arrangement!r} is not an arrangement (one of {ARRANGEMENTS})")
