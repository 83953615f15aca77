"""Performances on their annotated beats (clara_live.music.beats): each beat a quarter note, so a
wait means a musical length as on the live session's grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clara_live.codec import to_steps
from clara_live.config import CodecConfig
from clara_live.errors import InputError
from clara_live.music.beats import beat_position, on_beats, read_beats
from clara_live.music.midi_io import read_midi
from clara_live.music.notes import Note, Piece

ASAP = Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / "asap"
FUGUE = ASAP / "Bach" / "Fugue" / "bwv_846" / "Shi05M"


def test_positions_are_linear_between_beats_and_extrapolated_outside():
    beats = np.array([1.0, 1.5, 2.5, 3.0])  # a slowing then quickening player
    seconds = np.array([0.75, 1.0, 1.25, 2.0, 2.5, 2.75, 3.0, 3.25])
    assert beat_position(seconds, beats).tolist() == [-0.5, 0.0, 0.5, 1.5, 2.0, 2.5, 3.0, 3.5]


def test_a_rubato_line_on_its_beats_is_even_and_a_pickup_keeps_its_place():
    beats = np.cumsum([0.4, 0.5, 0.62, 0.7, 0.55, 0.45])  # rubato
    onsets = [beats[0] - 0.2, *beats.tolist()]  # a pickup half a beat (of the first interval) early
    notes = [Note(t, t + 0.1, 60 + k, 80) for k, t in enumerate(onsets)]
    piece = on_beats(Piece(notes, 120.0, "line"), beats)
    starts = [n.start for n in piece.notes]
    assert starts[0] == pytest.approx(0.6) and starts[1:] == pytest.approx([1, 2, 3, 4, 5, 6])
    steps = to_steps(piece, CodecConfig())
    assert [n.start for n in steps][1:] == [12, 24, 36, 48, 60, 72]
    assert piece.bpm == pytest.approx(60 / np.median(np.diff(beats)))


def test_bad_annotations_are_one_line_naming_the_file(tmp_path):
    bad = tmp_path / "a.txt"
    bad.write_text("1.0\tb\n0.5\tb\n")
    with pytest.raises(InputError, match="a.txt: needs 2 or more beats in increasing time"):
        read_beats(bad)
    bad.write_text("1.0\tb\nsoon\tb\n")
    with pytest.raises(InputError, match=r"a.txt:2: not a beat time: 'soon'"):
        read_beats(bad)


def test_a_performance_on_its_beats_sits_on_the_musical_grid():
    """Bach's C major fugue as Shi played it (ASAP): on its annotated beats, far more onsets fall on
    whole beats and on the eighth-note grid than on the seconds grid of its MIDI file."""
    beats = read_beats(f"{FUGUE}_annotations.txt")
    grid = to_steps(on_beats(read_midi(f"{FUGUE}.mid", seconds=True), beats), CodecConfig())
    plain = to_steps(read_midi(f"{FUGUE}.mid"), CodecConfig())
    for every, at_least in ((12, 0.2), (6, 0.4)):
        share = [np.mean(np.array(sorted({n.start for n in s})) % every == 0) for s in (grid, plain)]
        assert share[0] >= at_least and share[0] >= 2 * share[1], (every, share)
