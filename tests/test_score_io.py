"""Scores through music21: a MusicXML file made here, a work of the bundled corpus, errors."""

from __future__ import annotations

from pathlib import Path

import music21
import pytest
from music21 import chord, instrument, meter, note, stream, tempo, tie

from clara_live.codec import NotewiseCodec, to_steps
from clara_live.config import CodecConfig
from clara_live.errors import InputError
from clara_live.music.notes import Note
from clara_live.music.read import read_music
from clara_live.music.score_io import CORPUS_PREFIX, corpus_works, read_score, tied_lengths

BWV = "bach/bwv66.6"


@pytest.fixture(scope="module")
def duo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A violin line (with a tie inside a bar and one across the barline), a piano part with a
    chord and a rest, and a synth-drum part that must be dropped; at 90 beats a minute."""
    violin = stream.Part()
    violin.insert(0, instrument.Violin())
    violin.append(meter.TimeSignature("4/4"))
    violin.insert(0, tempo.MetronomeMark(number=90))
    first = note.Note("G4", quarterLength=1.0)
    first.volume.velocity = 100
    tied_start, tied_stop = note.Note("A4", quarterLength=2.0), note.Note("A4", quarterLength=1.0)
    tied_start.tie, tied_stop.tie = tie.Tie("start"), tie.Tie("stop")
    for element in (first, tied_start, tied_stop, note.Note("B4", quarterLength=2.0),
                    note.Note("C5", quarterLength=4.0)):  # the last crosses the barline at 8
        violin.append(element)

    piano = stream.Part()
    piano.insert(0, instrument.Piano())
    piano.append(meter.TimeSignature("4/4"))
    for element in (chord.Chord(["C3", "E3", "G3"], quarterLength=2.0), note.Rest(quarterLength=1.0),
                    note.Note("D3", quarterLength=3.0)):
        piano.append(element)

    drums = stream.Part()
    synth_drum = instrument.Instrument()
    synth_drum.midiProgram = 118
    drums.insert(0, synth_drum)
    drums.append(note.Note("C4", quarterLength=4.0))

    score = stream.Score()
    for part in (violin, piano, drums):
        score.insert(0, part)
    path = tmp_path_factory.mktemp("scores") / "duo.musicxml"
    score.write("musicxml", fp=str(path))
    return path


def test_musicxml_notes_in_quarter_notes(duo):
    piece = read_music(duo)
    assert piece.notes == [
        Note(0.0, 1.0, 67, 100, "v", 0),
        Note(0.0, 2.0, 48, 80, "p", 1), Note(0.0, 2.0, 52, 80, "p", 1), Note(0.0, 2.0, 55, 80, "p", 1),
        Note(1.0, 4.0, 69, 80, "v", 0),  # tied 2 + 1 quarter notes: one note
        Note(3.0, 6.0, 50, 80, "p", 1),
        Note(4.0, 6.0, 71, 80, "v", 0),
        Note(6.0, 10.0, 72, 80, "v", 0),  # split at the barline when written, merged when read
    ]
    assert piece.bpm == pytest.approx(90.0)
    assert piece.source == str(duo)


def test_score_suffixes_and_read_score_agree(duo, tmp_path):
    xml = tmp_path / "duo.xml"
    xml.write_bytes(duo.read_bytes())
    assert read_music(xml).notes == read_score(duo).notes == read_music(duo).notes


def test_score_violin_part_encodes_as_v_tokens(duo):
    config = CodecConfig(chamber=True)
    tokens = NotewiseCodec(config).encode(to_steps(read_music(duo), config))
    assert tokens[:5] == ["p15", "p19", "p22", "v34", "wait12"]
    assert sum(t.startswith("v") for t in tokens) == 4


def test_unparsable_score_raises_input_error_naming_it(tmp_path):
    for name, text in [("broken.xml", "<score-partwise><part><measure>"), ("junk.musicxml", "not xml at all")]:
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(InputError, match=rf"{name}: not a readable score") as info:
            read_music(path)
        assert str(path) in str(info.value)


@pytest.fixture(scope="module")
def bwv66() -> str:
    if not music21.corpus.getWork(BWV):
        pytest.skip(f"music21's bundled corpus has no {BWV}")
    return CORPUS_PREFIX + BWV


def test_music21_corpus_work(bwv66):
    piece = read_music(bwv66)
    assert piece.source == bwv66
    assert {n.part for n in piece.notes} == {0, 1, 2, 3}  # soprano, alto, tenor, bass
    assert {n.family for n in piece.notes} == {"p"}  # parts without a MIDI program are piano-like
    soprano = [(n.start, n.end, n.pitch) for n in piece.notes if n.part == 0]
    # the chorale opens C#5 B4 A4 B4 (a pickup of two eighths, then quarter notes)
    assert soprano[:4] == [(0.0, 0.5, 73), (0.5, 1.0, 71), (1.0, 2.0, 69), (2.0, 3.0, 71)]
    assert all(n.end > n.start for n in piece.notes)
    assert piece.notes == sorted(piece.notes)


def test_missing_corpus_work_raises_input_error():
    with pytest.raises(InputError, match=r"music21:nobody/nothing: not a readable score"):
        read_music("music21:nobody/nothing")


def test_corpus_works_lists_music21_sources(bwv66):
    works = corpus_works("bach")
    assert len(works) > 100
    assert all(w.startswith(CORPUS_PREFIX) for w in works)
    assert CORPUS_PREFIX + BWV + ".mxl" in works
    assert read_music(works[0]).notes  # each source is readable as it stands


def test_corpus_works_unknown_composer():
    with pytest.raises(InputError, match="music21:nobody: no such composer"):
        corpus_works("nobody")


def _stripped(part: stream.Stream) -> list[tuple[float, float, tuple[int, ...]]]:
    """music21's own tie merge (Stream.stripTies), the rule read_score follows without it."""
    return [(float(e.offset), float(e.offset + e.duration.quarterLength), tuple(p.midi for p in e.pitches))
            for e in part.stripTies().flatten().notes]


def _merged(part: stream.Stream) -> list[tuple[float, float, tuple[int, ...]]]:
    flat = part.flatten()
    lengths = tied_lengths([e for e in flat.notesAndRests if e.quarterLength > 0])
    return [(float(e.offset), float(e.offset + lengths.get(id(e), e.duration.quarterLength)),
             tuple(p.midi for p in e.pitches)) for e in flat.notes if lengths.get(id(e), 1) is not None]


def _tied(element, kind: str):
    element.tie = tie.Tie(kind)
    return element


def test_ties_merge_as_music21_merges_them():
    part = stream.Part()
    for element in (
            _tied(note.Note("C4", quarterLength=1), "start"), _tied(note.Note("C4", quarterLength=0.5), "continue"),
            _tied(note.Note("C4", quarterLength=0.5), "stop"),  # three notes, one C4
            _tied(note.Note("D4", quarterLength=1), "start"), note.Rest(quarterLength=1),  # a tie the rest breaks
            _tied(note.Note("D4", quarterLength=1), "stop"),  # ... whose stop closes nothing
            _tied(chord.Chord(["E4", "G4"], quarterLength=1), "start"), chord.Chord(["E4", "G4"], quarterLength=1),
            _tied(chord.Chord(["E4", "G4"], quarterLength=2), "continue"),  # a chord run, one matched by pitch
            _tied(note.Note("F4", quarterLength=1), "continue"), note.Note("F4", quarterLength=1),  # continue: a start
            _tied(note.Note("A4", quarterLength=1), "start"), note.Note("B4", quarterLength=1),  # an open tie
            note.Note("C5", quarterLength=1)):
        part.append(element)
    part.insert(0.5, note.Note("D5").getGrace())  # a grace note: kept as it is, and no tie broken
    assert _merged(part) == _stripped(part)
    assert _merged(part)[0] == (0.0, 2.0, (60,))


@pytest.mark.parametrize("song", ["Reichardt,_Louise/12_Ges_nge,_Op.3/6_Kriegslied_des_Mays/lc5002006.mxl",
                                  "Gounod,_Charles/_unknown/Le_soir,_CG_441/lc29748062.mxl"])
def test_a_real_lied_reads_as_music21_s_tie_merge_reads_it(song):
    path = Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / "openscore-lieder" / song
    score = music21.converter.parse(path)
    for part in score.parts:
        assert _merged(part) == _stripped(part)
    notes = read_score(path).notes
    expected = sorted((start, end, pitch) for index, part in enumerate(score.parts)
                      for start, end, pitches in _stripped(part) for pitch in pitches)
    assert sorted((n.start, n.end, n.pitch) for n in notes) == expected
