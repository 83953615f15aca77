"""Scores (MusicXML, kern, ABC, the music21 bundled corpus) read through music21's objects.

Never by writing MIDI and reading it back: music21's MIDI writer took 81 s for one
Beethoven quartet here, while walking the score objects takes a fraction of a second. Nor
through music21's Stream.stripTies, which copies the part, re-sorts it at every merge and scans
every spanner for every tied note: 144 s of CPU for Wolf's quartet (its parse: 6.5 s), where
`tied_lengths` follows the same rule over the flattened part in a fraction of a second.
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
    instruments = [part.getInstrument(returnDefault=True) for part in parts]
    programs = tuple(-1 if i.midiProgram is None else int(i.midiProgram) for i in instruments)
    for index, part in enumerate(parts):
        instrument = instruments[index]
        program = instrument.midiProgram if instrument.midiProgram is not None else 0
        family = family_of(program, is_drum=instrument.midiChannel == 9)
        if family is None:
            continue
        if part.hasPartLikeStreams() or part.hasVoices():  # a part of parts: music21's own merge (rare)
            flat, lengths = part.stripTies().flatten(), {}
        else:
            flat = part.flatten()
            lengths = tied_lengths([e for e in flat.notesAndRests if e.quarterLength > 0])
        for element in flat.notes:
            merged = lengths.get(id(element), element.duration.quarterLength)
            if merged is None:
                continue  # tied onto the note before it
            start = float(element.offset)
            end = start + float(merged)
            velocity = element.volume.velocity if element.volume.velocity is not None else DEFAULT_VELOCITY
            for pitch in getattr(element, "pitches", ()):
                notes.append(Note(start, end, int(pitch.midi), int(velocity), family, index))
    notes.sort()
    marks = score.flatten().getElementsByClass("MetronomeMark")
    bpm = float(marks[0].getQuarterBPM()) if len(marks) and marks[0].number else 120.0
    return Piece(notes, bpm, text, names, programs)


def tied_lengths(elements: list) -> dict[int, object]:
    """Ties merged as music21's Stream.stripTies (v10.5, matchByPitch) merges them, without
    touching the stream: for the notes and rests of a flattened part (in order, those with a
    length), each tie's first note's merged length and None for every note tied onto it, by
    id(element); notes in no tie are left out. Its rule, step by step: a `start` begins (or
    extends) a run; a `continue` extends it when the previous note matches (same pitch, or a
    chord of the same pitches), else starts one; a note (not a chord) with `stop`, or one that
    matches the previous note of the run, ends it; a run of one note is dropped."""
    from music21 import chord, note
    from music21.common.numberTools import opFrac

    connected: list[int] = []
    lengths: dict[int, object] = {}

    def ends_run(current, i_last, last) -> bool:
        if hasattr(current, "tie") and not isinstance(current, chord.Chord) and current.tie is not None \
                and current.tie.type == "stop":
            return True
        if last is None or i_last not in connected:
            return False
        if hasattr(last, "pitch") and hasattr(current, "pitch") and not isinstance(last, chord.Chord) \
                and not isinstance(current, chord.Chord):
            return last.pitch == current.pitch
        if not isinstance(current, note.Note) and hasattr(last, "pitches") and hasattr(current, "pitches"):
            if len(last.pitches) != len(current.pitches):
                return False
            return all(a.step == b.step and a.isEnharmonic(b) for a, b in zip(last.pitches, current.pitches,
                                                                                 strict=True))
        return False

    for i, current in enumerate(elements):
        i_last, last = (i - 1, elements[i - 1]) if i > 0 else (None, None)
        tie = getattr(current, "tie", None)
        end = None
        if tie is not None and tie.type == "start":
            if i_last is None or i_last not in connected:
                connected = [i]
            else:
                connected.append(i)
            end = False
        elif tie is not None and tie.type == "continue":
            if not connected:
                connected.append(i)
            elif ends_run(current, i_last, last):
                connected.append(i)
            else:
                connected = [i]
            end = False
        if end is None:
            end = ends_run(current, i_last, last)
        if end:
            connected.append(i)
            if len(connected) < 2:
                connected = []
                continue
            first = elements[connected[0]]
            total = 0
            for q in connected[1:]:
                total += elements[q].quarterLength
                lengths[id(elements[q])] = None
            lengths[id(first)] = opFrac(first.quarterLength + total)
            connected = []
    return lengths


def corpus_works(composer: str) -> list[str]:
    """`music21:PATH` sources for every work of a composer in music21's bundled corpus."""
    import music21

    paths = music21.corpus.getComposer(composer)
    if not paths:
        raise InputError(f"{CORPUS_PREFIX}{composer}: no such composer in music21's bundled corpus")
    root = Path(music21.__file__).parent / "corpus"
    return [CORPUS_PREFIX + Path(p).relative_to(root).as_posix() for p in paths]
