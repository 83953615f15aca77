"""Scores (MusicXML, kern, ABC, the music21 bundled corpus) read through music21's objects.

Never by writing MIDI and reading it back: music21's MIDI writer took 81 s for one
Beethoven quartet here, while walking the score objects takes a fraction of a second.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from clara_live.errors import InputError
from clara_live.music.instruments import family_of
from clara_live.music.notes import Note, Piece

SCORE_SUFFIXES = (".xml", ".musicxml", ".mxl", ".krn", ".abc", ".mei", ".rntxt")
CORPUS_PREFIX = "music21:"
DEFAULT_VELOCITY = 80


def read_score(source: str | Path) -> Piece:
    """Read a score file, or `music21:PATH` for a work of music21's bundled corpus.

    Ties are merged into one note; each part's instrument decides its family (a part
    without a MIDI program is taken as piano-like); unpitched parts are dropped.
    """
    import music21  # imported here: it takes ~1 s and only score input needs it

    text = str(source)
    try:
        with warnings.catch_warnings():  # music21 warns per unreadable wedge or direction: noise in a corpus build
            warnings.simplefilter("ignore")
            if text.startswith(CORPUS_PREFIX):
                score = music21.corpus.parse(text[len(CORPUS_PREFIX):])
            else:
                score = music21.converter.parse(text)
    except Exception as exc:  # music21 raises many unrelated types for bad files
        raise InputError(f"{text}: not a readable score ({exc.__class__.__name__}: {str(exc)[:120]})") from None
    parts = list(score.parts) if hasattr(score, "parts") and len(score.parts) else [score]
    notes: list[Note] = []
    names = tuple(str(part.partName or "") for part in parts)
    for index, part in enumerate(parts):
        instrument = part.getInstrument(returnDefault=True)
        program = instrument.midiProgram if instrument.midiProgram is not None else 0
        family = family_of(program, is_drum=instrument.midiChannel == 9)
        if family is None:
            continue
        for element in part.stripTies().flatten().notes:
            start = float(element.offset)
            end = start + float(element.duration.quarterLength)
            velocity = element.volume.velocity if element.volume.velocity is not None else DEFAULT_VELOCITY
            for pitch in getattr(element, "pitches", ()):
                notes.append(Note(start, end, int(pitch.midi), int(velocity), family, index))
    notes.sort()
    marks = score.flatten().getElementsByClass("MetronomeMark")
    bpm = float(marks[0].getQuarterBPM()) if len(marks) and marks[0].number else 120.0
    return Piece(notes, bpm, text, names)


def corpus_works(composer: str) -> list[str]:
    """`music21:PATH` sources for every work of a composer in music21's bundled corpus."""
    import music21

    paths = music21.corpus.getComposer(composer)
    if not paths:
        raise InputError(f"{CORPUS_PREFIX}{composer}: no such composer in music21's bundled corpus")
    root = Path(music21.__file__).parent / "corpus"
    return [CORPUS_PREFIX + Path(p).relative_to(root).as_posix() for p in paths]
