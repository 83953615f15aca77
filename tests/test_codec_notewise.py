"""Notewise codec: exact tokens for small cases, round trips on real files, and properties."""

from __future__ import annotations

import mido
import pytest
from conftest import step_notes
from hypothesis import given
from hypothesis import strategies as st

from clara_live.codec import NotewiseCodec, make_codec, to_steps
from clara_live.config import CodecConfig
from clara_live.music.midi_io import steps_to_midi, write_midi
from clara_live.music.notes import Note, Piece, StepNote, normalise
from clara_live.music.read import read_music

CFG = CodecConfig()  # sample_freq 12, pitches 33..94, waits up to 25
CODEC = NotewiseCodec(CFG)
CHAMBER = CodecConfig(chamber=True)


def sn(start: int, end: int, pitch: int, family: str = "p", velocity: int = 80) -> StepNote:
    return StepNote(start, end, pitch, velocity, family)


def shape(notes: list[StepNote]) -> list[tuple[int, int, int, str]]:
    """What the tokens carry: velocity is not encoded."""
    return [(n.start, n.end, n.pitch, n.family) for n in notes]


# --- exact tokens -------------------------------------------------------------------------


def test_make_codec_picks_notewise():
    assert isinstance(make_codec(CFG), NotewiseCodec)


def test_tokens_name_pitch_index_from_low_pitch():
    assert CODEC.encode([sn(0, 1, 33), sn(0, 1, 94)]) == ["p0", "p61", "wait1", "endp0", "endp61"]


def test_offs_before_ons_within_a_step_and_pitches_ascend():
    notes = [sn(0, 4, 64), sn(0, 4, 60), sn(4, 8, 62), sn(4, 8, 57), sn(2, 4, 67)]
    assert CODEC.encode(notes) == [
        "p27", "p31", "wait2", "p34", "wait2",
        "endp27", "endp31", "endp34", "p24", "p29", "wait4", "endp24", "endp29",
    ]


def test_piano_family_before_violin_within_a_step():
    codec = NotewiseCodec(CHAMBER)
    assert codec.encode([sn(0, 2, 70, "v"), sn(0, 2, 40, "p"), sn(0, 2, 80, "p")]) == [
        "p7", "p47", "v37", "wait2", "endp7", "endp47", "endv37"]


def test_re_struck_note_is_closed_before_it_sounds_again():
    # the first note would sound to step 8, but the same key is struck again at step 4
    assert CODEC.encode([sn(0, 8, 60), sn(4, 8, 60)]) == ["p27", "wait4", "endp27", "p27", "wait4", "endp27"]


def test_note_ending_where_the_next_begins_is_closed_first():
    assert CODEC.encode([sn(0, 4, 60), sn(4, 6, 60)]) == ["p27", "wait4", "endp27", "p27", "wait2", "endp27"]


def test_two_onsets_in_one_step_merge():
    assert CODEC.encode([sn(0, 2, 60), sn(0, 5, 60, velocity=10)]) == ["p27", "wait5", "endp27"]


def test_zero_length_note_lasts_one_step():
    steps = to_steps(Piece([Note(1.0, 1.0, 60)]), CFG)
    assert shape(steps) == [(12, 13, 60, "p")]
    assert CODEC.encode(steps) == ["wait12", "p27", "wait1", "endp27"]
    assert shape(CODEC.decode(["p27", "endp27"])) == [(0, 1, 60, "p")]


@pytest.mark.parametrize(("gap", "waits"), [
    (1, ["wait1"]),
    (24, ["wait24"]),
    (25, ["wait25"]),
    (26, ["wait25", "wait1"]),
    (50, ["wait25", "wait25"]),
    (60, ["wait25", "wait25", "wait10"]),
])
def test_waits_merge_up_to_wait_limit_and_chain_beyond(gap, waits):
    assert CFG.wait_limit == 2 * CFG.sample_freq + 1 == 25
    assert CODEC.encode([sn(0, gap, 60)]) == ["p27", *waits, "endp27"]
    assert shape(CODEC.decode(["p27", *waits, "endp27"])) == [(0, gap, 60, "p")]


def test_leading_silence_is_waited():
    assert CODEC.encode([sn(30, 31, 60)]) == ["wait25", "wait5", "p27", "wait1", "endp27"]


def test_max_wait_is_honoured():
    codec = NotewiseCodec(CodecConfig(max_wait=8))
    assert codec.encode([sn(0, 20, 60)]) == ["p27", "wait8", "wait8", "wait4", "endp27"]
    assert codec.vocabulary()[:8] == [f"wait{n}" for n in range(1, 9)]
    with pytest.raises(ValueError, match=r"token 2: 'wait9'"):
        codec.decode(["p27", "wait9"])


def test_wait_limit_follows_sample_freq():
    codec = NotewiseCodec(CodecConfig(sample_freq=4))
    assert codec.encode([sn(0, 20, 60)]) == ["p27", "wait9", "wait9", "wait2", "endp27"]


def test_velocity_is_not_encoded():
    loud = [sn(0, 3, 60, velocity=127), sn(1, 2, 70, velocity=5)]
    soft = [n._replace(velocity=40) for n in loud]
    assert CODEC.encode(loud) == CODEC.encode(soft)


def test_encode_empty_and_unsorted_input():
    assert CODEC.encode([]) == []
    notes = [sn(5, 7, 50), sn(0, 2, 40)]
    assert CODEC.encode(notes) == CODEC.encode(list(reversed(notes)))


# --- decoding -----------------------------------------------------------------------------


def test_decode_uses_the_given_or_configured_velocity():
    assert CODEC.decode(["p0", "wait1"])[0].velocity == CFG.velocity
    assert CODEC.decode(["p0", "wait1"], velocity=33)[0].velocity == 33


def test_decode_ignores_note_off_for_a_silent_note():
    assert shape(CODEC.decode(["endp5", "p5", "wait2", "endp5", "endp5", "wait3"])) == [(0, 2, 38, "p")]


def test_decode_closes_notes_still_open_at_the_end():
    assert shape(CODEC.decode(["p5", "wait3", "p7", "wait2"])) == [(0, 5, 38, "p"), (3, 5, 40, "p")]


def test_decode_note_open_at_the_very_end_lasts_one_step():
    assert shape(CODEC.decode(["wait4", "p5"])) == [(4, 5, 38, "p")]


def test_decode_second_strike_in_the_same_step_is_one_note():
    assert shape(CODEC.decode(["p5", "p5", "wait3", "endp5"])) == [(0, 3, 38, "p")]


def test_decode_strike_of_a_sounding_note_closes_it_first():
    assert shape(CODEC.decode(["p5", "wait3", "p5", "wait2", "endp5"])) == [(0, 3, 38, "p"), (3, 5, 38, "p")]


def test_decode_chamber_families_are_separate_voices():
    codec = NotewiseCodec(CHAMBER)
    assert shape(codec.decode(["p30", "v30", "wait2", "endp30", "wait1", "endv30"])) == [
        (0, 2, 63, "p"), (0, 3, 63, "v")]


@pytest.mark.parametrize(("tokens", "position", "bad"), [
    (["foo"], 1, "foo"),
    (["p1", "wait1", "p99"], 3, "p99"),
    (["p1", "wait0"], 2, "wait0"),
    (["wait26"], 1, "wait26"),
    (["p1", "v3"], 2, "v3"),
    (["p1", "<unk>"], 2, "<unk>"),
    (["p1", ""], 2, ""),
])
def test_decode_refuses_invalid_tokens_naming_the_position(tokens, position, bad):
    with pytest.raises(ValueError, match=rf"^token {position}: '{bad}'"):
        CODEC.decode(tokens)


def test_violin_token_without_chamber_says_chamber_is_needed():
    with pytest.raises(ValueError, match=r"^token 2: 'v3' .*need --chamber"):
        CODEC.decode(["p1", "v3"])


def test_vocabulary_is_waits_then_ons_then_offs():
    vocab = CODEC.vocabulary()
    assert vocab == ([f"wait{n}" for n in range(1, 26)] + [f"p{i}" for i in range(62)]
                     + [f"endp{i}" for i in range(62)])
    chamber = NotewiseCodec(CHAMBER).vocabulary()
    assert len(chamber) == 25 + 4 * 62 and "v61" in chamber and "endv0" in chamber


# --- chamber ------------------------------------------------------------------------------


def test_violin_program_becomes_v_tokens_and_drums_are_dropped(make_midi):
    path = make_midi("trio.mid", [
        [(0, mido.Message("program_change", channel=0, program=0)),
         (0, mido.Message("note_on", channel=0, note=48, velocity=70)),
         (480, mido.Message("note_off", channel=0, note=48, velocity=0))],
        [(0, mido.Message("program_change", channel=1, program=40)),  # violin
         (0, mido.Message("note_on", channel=1, note=76, velocity=70)),
         (480, mido.Message("note_off", channel=1, note=76, velocity=0))],
        [(0, mido.Message("note_on", channel=9, note=36, velocity=100)),  # kick drum
         (120, mido.Message("note_off", channel=9, note=36, velocity=0))],
    ])
    chamber = NotewiseCodec(CHAMBER)
    assert chamber.encode(to_steps(read_music(path), CHAMBER)) == ["p15", "v43", "wait12", "endp15", "endv43"]
    # without chamber the violin is piano-like; the drum stays out either way
    assert CODEC.encode(to_steps(read_music(path), CFG)) == ["p15", "p43", "wait12", "endp15", "endp43"]


def test_single_violin_part_is_folded_to_violin_low():
    piece = Piece([Note(0, 1, 40, family="v", part=1), Note(0, 1, 40, family="p", part=0)])
    steps = to_steps(piece, CHAMBER)
    assert sorted(shape(steps)) == [(0, 12, 40, "p"), (0, 12, 64, "v")]
    assert min(n.pitch for n in steps if n.family == "v") >= CHAMBER.violin_low


def test_lakh_chamber_tokens_use_both_families(edge):
    tokens = NotewiseCodec(CHAMBER).encode(to_steps(read_music(edge / "multitrack_lakh.mid"), CHAMBER))
    assert any(t.startswith("v") for t in tokens) and any(t.startswith("p") for t in tokens)


# --- round trips on real files ------------------------------------------------------------


@pytest.mark.parametrize("sample_freq", [12, 4])
def test_round_trip_real_files(real_midi, sample_freq, assert_round_trip):
    assert_round_trip(real_midi, CodecConfig(sample_freq=sample_freq))


def test_round_trip_chamber_multitrack_lakh(edge, assert_round_trip):
    assert_round_trip(edge / "multitrack_lakh.mid", CHAMBER)


def test_round_trip_chamber_is_stable_after_one_pass(edge, tmp_path, assert_round_trip):
    # once decoded (one v part), the file round-trips exactly
    codec = NotewiseCodec(CHAMBER)
    first = tmp_path / "first.mid"
    notes = codec.decode(codec.encode(to_steps(read_music(edge / "multitrack_lakh.mid"), CHAMBER)))
    assert {n.family for n in notes} == {"p", "v"}
    write_midi(steps_to_midi(notes, CHAMBER.sample_freq), first)
    assert_round_trip(first, CHAMBER)


def test_round_trip_chamber_single_violin(make_midi, assert_round_trip):
    path = make_midi("duo.mid", [
        [(0, mido.Message("program_change", channel=0, program=0))]
        + [(480 * i, mido.Message("note_on", channel=0, note=36 + 5 * i, velocity=60)) for i in range(8)]
        + [(480 * i + 400, mido.Message("note_off", channel=0, note=36 + 5 * i, velocity=0)) for i in range(8)],
        [(0, mido.Message("program_change", channel=1, program=41))]  # viola, low notes folded up
        + [(240 * i, mido.Message("note_on", channel=1, note=48 + i, velocity=60)) for i in range(16)]
        + [(240 * i + 230, mido.Message("note_off", channel=1, note=48 + i, velocity=0)) for i in range(16)],
    ])
    decoded = assert_round_trip(path, CHAMBER)
    assert {n.family for n in to_steps(read_music(decoded), CHAMBER)} == {"p", "v"}


def test_edge_empty_file_encodes_to_nothing(edge):
    assert CODEC.encode(to_steps(read_music(edge / "empty.mid"), CFG)) == []
    assert CODEC.decode([]) == []


# --- properties ---------------------------------------------------------------------------


CONFIGS = [CFG, CHAMBER, CodecConfig(sample_freq=4, max_wait=3)]


@pytest.mark.parametrize("config", CONFIGS, ids=["sf12", "chamber", "sf4-wait3"])
@given(data=st.data())
def test_encode_decode_encode_is_identical(config, data):
    codec = NotewiseCodec(config)
    notes = data.draw(step_notes(config))
    tokens = codec.encode(notes)
    decoded = codec.decode(tokens)
    assert codec.encode(decoded) == tokens
    assert shape(decoded) == shape(normalise(notes))


@pytest.mark.parametrize("config", CONFIGS, ids=["sf12", "chamber", "sf4-wait3"])
@given(data=st.data())
def test_tokens_are_in_the_vocabulary(config, data):
    codec = NotewiseCodec(config)
    vocab = set(codec.vocabulary())
    assert set(codec.encode(data.draw(step_notes(config)))) <= vocab


@pytest.mark.parametrize("config", [CFG, CHAMBER], ids=["sf12", "chamber"])
@given(data=st.data())
def test_any_token_sequence_decodes_to_valid_paired_notes(config, data, tmp_path_factory, pairing_errors):
    codec = NotewiseCodec(config)
    tokens = data.draw(st.lists(st.sampled_from(codec.grammar.fixed_vocabulary()), max_size=150))
    notes = codec.decode(tokens)
    for n in notes:
        assert n.end > n.start >= 0, n
        assert config.low_pitch <= n.pitch <= config.high_pitch, n
        assert n.family in codec.grammar.families
    assert codec.encode(codec.decode(codec.encode(notes))) == codec.encode(notes)
    path = tmp_path_factory.getbasetemp() / f"notewise-random-{config.chamber}.mid"
    write_midi(steps_to_midi(notes, config.sample_freq), path)
    assert pairing_errors(path) == []
    # the file holds exactly the decoded notes (read raw: to_steps would fold a lone v part)
    read = {(n.pitch, round(n.start * config.sample_freq), round(n.end * config.sample_freq), n.family)
            for n in read_music(path).notes}
    assert read == {(n.pitch, n.start, n.end, n.family) for n in notes}

