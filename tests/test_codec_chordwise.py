"""Chordwise codec: chord and rest tokens, decoding holds, round trips on real files, properties."""

from __future__ import annotations

import pytest
from conftest import step_notes
from hypothesis import given
from hypothesis import strategies as st

from clara_live.codec import ChordwiseCodec, make_codec, to_steps
from clara_live.codec.tokens import UNK
from clara_live.config import CodecConfig
from clara_live.music.midi_io import steps_to_midi, write_midi
from clara_live.music.notes import StepNote, normalise
from clara_live.music.read import read_music

CFG = CodecConfig(encoding="chordwise", sample_freq=4)  # pitches 33..94, hold 8 steps
CODEC = ChordwiseCodec(CFG)
CHAMBER = CodecConfig(encoding="chordwise", sample_freq=4, chamber=True)


def sn(start: int, end: int, pitch: int, family: str = "p") -> StepNote:
    return StepNote(start, end, pitch, 80, family)


def chord(*pitches: int, family: str = "p", low: int = 33, width: int = 62) -> str:
    """The chord token striking these MIDI pitches."""
    bits = ["0"] * width
    for p in pitches:
        bits[p - low] = "1"
    return family + "".join(bits)


def test_make_codec_picks_chordwise():
    assert isinstance(make_codec(CFG), ChordwiseCodec)


def test_chord_token_has_one_character_per_pitch():
    token = CODEC.encode([sn(0, 1, 33), sn(0, 1, 60), sn(0, 1, 94)])
    assert token == [chord(33, 60, 94)]
    assert token[0] == "p1" + "0" * 26 + "1" + "0" * 33 + "1"


def test_chord_decodes_to_exactly_the_pitches_named():
    for pitches in [(33,), (60,), (94,), (33, 34, 35), (48, 60, 64, 67, 72, 94)]:
        assert sorted(n.pitch for n in CODEC.decode([chord(*pitches)])) == list(pitches)


def test_rest_counts_notes_struck_in_the_window_before():
    notes = [sn(0, 1, 60), sn(0, 1, 64), sn(0, 1, 67), sn(12, 13, 72)]
    # steps 1..10 see step 0 in their window of 10 steps; step 11 no longer does
    assert CODEC.encode(notes) == [chord(60, 64, 67)] + ["prest3"] * 10 + ["prest0", chord(72)]


def test_rest_window_follows_config():
    codec = ChordwiseCodec(CodecConfig(encoding="chordwise", sample_freq=4, rest_window=2))
    notes = [sn(0, 1, 60), sn(1, 2, 62), sn(1, 2, 64), sn(5, 6, 60)]
    assert codec.encode(notes) == [chord(60), chord(62, 64), "prest3", "prest2", "prest0", chord(60)]


def test_rest_counts_above_25_have_their_own_tokens():
    # Clara lowercased these tokens, which merged counts 26..51 onto 0..25
    notes = [sn(0, 1, 33 + i) for i in range(26)] + [sn(12, 13, 60)]
    tokens = CODEC.encode(notes)
    assert tokens[1:11] == ["prest26"] * 10 and tokens[11] == "prest0"
    assert "prest26" != "prest0" and CODEC.vocabulary().index("prest26") != CODEC.vocabulary().index("prest0")


def test_rest_counts_are_capped():
    notes = [sn(0, 1, 33 + i) for i in range(45)] + [sn(2, 3, 60)]
    assert CODEC.encode(notes)[1] == "prest40"
    capped = ChordwiseCodec(CodecConfig(encoding="chordwise", rest_cap=5))
    assert capped.encode(notes)[1] == "prest5"
    assert capped.vocabulary() == [UNK] + [f"prest{n}" for n in range(6)]


def test_encoding_runs_from_step_0_to_the_last_onset():
    tokens = CODEC.encode([sn(3, 40, 60)])
    assert tokens == ["prest0", "prest0", "prest0", chord(60)]
    assert CODEC.encode([]) == []


def test_chamber_has_a_token_per_family_per_step():
    codec = ChordwiseCodec(CHAMBER)
    tokens = codec.encode([sn(0, 2, 40, "p"), sn(1, 2, 70, "v")])
    assert tokens == [chord(40), "vrest0", "prest1", chord(70, family="v")]
    assert [(n.start, n.pitch, n.family) for n in codec.decode(tokens)] == [(0, 40, "p"), (1, 70, "v")]


def test_decode_holds_a_note_until_its_family_strikes_again_at_most_chord_hold():
    tokens = [chord(60, 64), "prest2", "prest2", chord(67)] + ["prest1"] * 12 + [chord(72)]
    notes = CODEC.decode(tokens)
    hold = round(CFG.chord_hold * CFG.sample_freq)
    assert hold == 8
    assert [(n.start, n.end, n.pitch) for n in notes] == [
        (0, 3, 60), (0, 3, 64), (3, 3 + hold, 67), (16, 16 + hold, 72)]


def test_decode_velocity():
    assert {n.velocity for n in CODEC.decode([chord(60)])} == {CFG.velocity}
    assert {n.velocity for n in CODEC.decode([chord(60)], velocity=9)} == {9}


def test_decode_steps_follow_family_order():
    codec = ChordwiseCodec(CHAMBER)
    v, p = chord(70, family="v"), chord(40)
    # a token for a family at or before the previous token's family starts a new step
    assert [(n.start, n.family) for n in codec.decode([v, p, p, v, v])] == [
        (0, "v"), (1, "p"), (2, "p"), (2, "v"), (3, "v")]


def test_unk_is_a_silent_step_of_its_own():
    assert [n.start for n in CODEC.decode([UNK, chord(60), UNK, UNK, chord(62)])] == [1, 4]
    codec = ChordwiseCodec(CHAMBER)
    assert [(n.start, n.family) for n in codec.decode([chord(40), UNK, chord(70, family="v")])] == [
        (0, "p"), (2, "v")]


@pytest.mark.parametrize(("tokens", "position", "bad"), [
    (["foo"], 1, "foo"),
    (["prest0", "prest41"], 2, "prest41"),
    (["prest0", "p" + "0" * 62], 2, "p" + "0" * 62),
    (["p" + "1" * 61], 1, "p" + "1" * 61),
    (["prest0", "p27"], 2, "p27"),
    (["vrest0"], 1, "vrest0"),
    (["prest0", "wait1"], 2, "wait1"),
])
def test_decode_refuses_invalid_tokens_naming_the_position(tokens, position, bad):
    with pytest.raises(ValueError, match=rf"^token {position}: '{bad}'"):
        CODEC.decode(tokens)


def test_vocabulary_has_unk_and_rests_first_then_chords_by_count():
    counts = {chord(60): 3, chord(62): 7, chord(40): 3, UNK: 100}
    vocab = CODEC.vocabulary(counts)
    assert vocab[0] == UNK
    assert vocab[1:42] == [f"prest{n}" for n in range(41)]
    # most frequent first, ties in token order; <unk> is never listed twice
    assert vocab[42:] == [chord(62), *sorted([chord(60), chord(40)])]
    assert CODEC.vocabulary() == vocab[:42]
    chamber = ChordwiseCodec(CHAMBER).vocabulary()
    assert chamber == [UNK] + [f"prest{n}" for n in range(41)] + [f"vrest{n}" for n in range(41)]


# --- round trips on real files ------------------------------------------------------------


def test_round_trip_real_files(real_midi, assert_round_trip):
    assert_round_trip(real_midi, CFG)


def test_edge_empty_file_encodes_to_nothing(edge):
    assert CODEC.encode(to_steps(read_music(edge / "empty.mid"), CFG)) == []
    assert CODEC.decode([]) == []


# --- properties ---------------------------------------------------------------------------


def tokens_for(codec: ChordwiseCodec) -> st.SearchStrategy[list[str]]:
    cfg = codec.config
    chords = st.builds(
        lambda family, indices: family + "".join("1" if i in indices else "0" for i in range(cfg.num_pitches)),
        st.sampled_from(codec.grammar.families),
        st.sets(st.integers(0, cfg.num_pitches - 1), min_size=1, max_size=8))
    return st.lists(st.one_of(st.sampled_from(codec.grammar.fixed_vocabulary()), chords), max_size=100)


@pytest.mark.parametrize("config", [CFG, CHAMBER], ids=["piano", "chamber"])
@given(data=st.data())
def test_encode_decode_encode_is_identical(config, data):
    codec = ChordwiseCodec(config)
    notes = data.draw(step_notes(config, max_start=60, max_length=20))
    tokens = codec.encode(notes)
    decoded = codec.decode(tokens)
    assert codec.encode(decoded) == tokens
    # every onset survives (durations are the decoder's own)
    assert {(n.start, n.pitch, n.family) for n in decoded} == {(n.start, n.pitch, n.family) for n in normalise(notes)}
    assert set(tokens) <= set(codec.vocabulary({t: 1 for t in tokens}))


@pytest.mark.parametrize("config", [CFG, CHAMBER], ids=["piano", "chamber"])
@given(data=st.data())
def test_any_token_sequence_decodes_to_valid_paired_notes(config, data, tmp_path_factory, pairing_errors):
    codec = ChordwiseCodec(config)
    tokens = data.draw(tokens_for(codec))
    notes = codec.decode(tokens)
    hold = round(config.chord_hold * config.sample_freq)
    for n in notes:
        assert 0 < n.end - n.start <= hold, n
        assert config.low_pitch <= n.pitch <= config.high_pitch, n
        assert n.family in codec.grammar.families
    struck = sum(t.count("1") for t in tokens if "rest" not in t and t != UNK)
    assert len(notes) == struck  # a chord token strikes once per pitch, one step per token
    assert codec.encode(codec.decode(codec.encode(notes))) == codec.encode(notes)
    path = tmp_path_factory.getbasetemp() / f"chordwise-random-{config.chamber}.mid"
    write_midi(steps_to_midi(notes, config.sample_freq), path)
    assert pairing_errors(path) == []
