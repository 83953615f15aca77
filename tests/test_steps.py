"""From quarter notes to the step grid: folding, quantisation, normalisation, transposition."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clara_live.codec import to_steps, transpose
from clara_live.codec.steps import fold
from clara_live.config import CodecConfig
from clara_live.music.notes import Note, Piece, StepNote, normalise

CFG = CodecConfig()  # sample_freq 12, range 33..94
CHAMBER = CodecConfig(chamber=True)


def shape(notes):
    return [(n.start, n.end, n.pitch, n.family) for n in notes]


# --- fold ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("pitch", "folded"), [
    (21, 33), (22, 34), (32, 44), (0, 36), (33, 33), (60, 60), (94, 94), (95, 83), (106, 94), (107, 83),
    (108, 84), (127, 91),
])
def test_fold_moves_pitches_by_octaves_into_range(pitch, folded):
    assert fold(pitch, 33, 94) == folded


@given(st.integers(0, 127), st.integers(0, 100), st.integers(11, 60))
def test_fold_lands_in_range_in_the_same_pitch_class_by_the_fewest_octaves(pitch, low, span):
    high = min(low + span, 127)
    folded = fold(pitch, low, high)
    assert low <= folded <= high
    assert (folded - pitch) % 12 == 0
    if low <= pitch <= high:
        assert folded == pitch
    else:  # one octave less would still be outside
        back = folded - 12 if pitch < low else folded + 12
        assert not low <= back <= high


# --- to_steps -----------------------------------------------------------------------------


def test_to_steps_quantises_to_the_nearest_step():
    piece = Piece([Note(0.0, 1.0, 60), Note(1.04, 2.0, 62), Note(1.05, 2.96, 64), Note(0.125, 0.5, 66)])
    assert shape(to_steps(piece, CFG)) == [(0, 12, 60, "p"), (2, 6, 66, "p"), (12, 24, 62, "p"), (13, 36, 64, "p")]
    # half a step rounds up: 0.125 quarter notes at 4 steps a quarter is step 0.5
    assert shape(to_steps(Piece([Note(0.125, 0.375, 60)]), CodecConfig(sample_freq=4))) == [(1, 2, 60, "p")]


def test_note_shorter_than_a_step_lasts_one_step():
    piece = Piece([Note(2.0, 2.0, 60), Note(3.0, 3.01, 62)])
    assert shape(to_steps(piece, CFG)) == [(24, 25, 60, "p"), (36, 37, 62, "p")]


def test_to_steps_folds_into_the_token_range():
    piece = Piece([Note(0, 1, 21), Note(0, 1, 108), Note(0, 1, 60)])
    assert sorted(n.pitch for n in to_steps(piece, CFG)) == [33, 60, 84]


def test_to_steps_keeps_velocity():
    assert [n.velocity for n in to_steps(Piece([Note(0, 1, 60, velocity=17)]), CFG)] == [17]


def test_without_chamber_every_family_is_piano():
    piece = Piece([Note(0, 1, 40, family="v", part=1), Note(0, 1, 50, family="p", part=0)])
    assert {n.family for n in to_steps(piece, CFG)} == {"p"}
    # and a violin part is not folded to violin_low
    assert sorted(n.pitch for n in to_steps(piece, CFG)) == [40, 50]


def test_chamber_single_violin_part_is_folded_to_violin_low():
    # a line in violin range but for one low note: that note alone moves, by octaves (40 -> 64, as
    # 52 is still below 55); the piano part keeps its 40
    line = [60, 62, 64, 65, 67, 69, 71, 72, 74, 40]
    piece = Piece([Note(i, i + 1, p, family="v", part=1) for i, p in enumerate(line)]
                  + [Note(0, 1, 40, family="p", part=0)])
    steps = to_steps(piece, CHAMBER)
    assert [n.pitch for n in sorted(steps, key=lambda n: n.start) if n.family == "v"] == [*line[:-1], 64]
    assert [n.pitch for n in steps if n.family == "p"] == [40]
    assert min(n.pitch for n in steps if n.family == "v") >= CHAMBER.violin_low


def test_chamber_a_low_solo_line_moves_whole_into_violin_range():
    # a bass's song (43..62): the whole part moves up an octave so its line keeps its shape; the note
    # still below violin_low (43 + 12 = 55 is not) would move alone
    line = [43, 45, 47, 48, 50, 52, 53, 55, 57, 59, 60, 62, 50, 47]
    piece = Piece([Note(i, i + 1, p, family="v", part=2) for i, p in enumerate(line)]
                  + [Note(0, 4, 36, family="p", part=0)])
    steps = sorted(to_steps(piece, CHAMBER), key=lambda n: (n.start, n.family))
    assert [n.pitch for n in steps if n.family == "v"] == [p + 12 for p in line]
    assert [n.pitch for n in steps if n.family == "p"] == [36]
    # a soprano's (60..79) stays where it is
    high = Piece([Note(i, i + 1, p + 17, family="v") for i, p in enumerate(line)])
    assert [n.pitch for n in to_steps(high, CHAMBER)] == [p + 17 for p in line]


def test_chamber_several_violin_parts_keep_the_full_range():
    piece = Piece([Note(0, 1, 40, family="v", part=1), Note(0, 1, 60, family="v", part=2)])
    assert sorted(n.pitch for n in to_steps(piece, CHAMBER)) == [40, 60]


def test_to_steps_output_is_normalised():
    piece = Piece([Note(0, 4, 60), Note(2, 3, 60), Note(0, 1, 60, velocity=100)])
    assert to_steps(piece, CFG) == normalise(to_steps(piece, CFG))
    assert shape(to_steps(piece, CFG)) == [(0, 24, 60, "p"), (24, 36, 60, "p")]


def test_empty_piece_has_no_steps():
    assert to_steps(Piece([]), CFG) == []


# --- normalise ----------------------------------------------------------------------------


def test_normalise_merges_onsets_in_one_step_keeping_the_longer_and_louder():
    assert normalise([StepNote(0, 2, 60, 100), StepNote(0, 5, 60, 30)]) == [StepNote(0, 5, 60, 100)]


def test_normalise_closes_a_note_struck_again():
    assert normalise([StepNote(0, 10, 60), StepNote(4, 6, 60)]) == [StepNote(0, 4, 60), StepNote(4, 6, 60)]


def test_normalise_keeps_families_apart_and_orders_by_onset_family_pitch():
    notes = [StepNote(3, 4, 50, family="v"), StepNote(0, 9, 60, family="v"), StepNote(0, 9, 60),
             StepNote(0, 2, 40)]
    assert shape(normalise(notes)) == [(0, 2, 40, "p"), (0, 9, 60, "p"), (0, 9, 60, "v"), (3, 4, 50, "v")]


step_note = st.builds(lambda s, d, p, v, f: StepNote(s, s + d, p, v, f),
                      st.integers(0, 50), st.integers(1, 30), st.integers(33, 40), st.integers(1, 127),
                      st.sampled_from("pv"))


@given(st.lists(step_note, max_size=40))
def test_normalise_gives_one_sounding_note_per_key_and_is_idempotent(notes):
    out = normalise(notes)
    assert normalise(out) == out
    assert out == sorted(out, key=lambda n: (n.start, n.family, n.pitch))
    assert all(n.end > n.start for n in out)
    by_key: dict[tuple[str, int], list[StepNote]] = {}
    for n in out:
        by_key.setdefault((n.family, n.pitch), []).append(n)
    for group in by_key.values():
        for a, b in zip(group, group[1:], strict=False):
            assert a.end <= b.start, (a, b)
    # every onset survives, and nothing new appears
    assert {(n.start, n.pitch, n.family) for n in out} == {(n.start, n.pitch, n.family) for n in notes}


# --- transpose ----------------------------------------------------------------------------


def test_transpose_shifts_every_note():
    notes = [StepNote(0, 1, 40), StepNote(1, 2, 90, 50, "v")]
    assert transpose(notes, 4, CFG) == [StepNote(0, 1, 44), StepNote(1, 2, 94, 50, "v")]
    assert transpose(notes, -7, CFG) == [StepNote(0, 1, 33), StepNote(1, 2, 83, 50, "v")]


def test_transpose_returns_none_when_a_note_would_leave_the_range():
    notes = [StepNote(0, 1, 40), StepNote(1, 2, 90)]
    assert transpose(notes, 5, CFG) is None  # 95 > 94
    assert transpose(notes, -8, CFG) is None  # 32 < 33


def test_transpose_by_zero_or_of_nothing_is_a_copy():
    notes = [StepNote(0, 1, 40)]
    same = transpose(notes, 0, CFG)
    assert same == notes and same is not notes
    assert transpose([], 3, CFG) == []
