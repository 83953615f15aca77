"""The codec's Vocabulary: the one token <-> id mapping every part uses."""

from __future__ import annotations

import numpy as np
import pytest

from clara_live.codec import make_codec
from clara_live.codec.tokens import UNK, release, strike, wait
from clara_live.codec.vocabulary import Vocabulary, move_ids
from clara_live.config import CodecConfig
from clara_live.music.notes import StepNote

NOTEWISE = CodecConfig()
CHORDWISE = CodecConfig(encoding="chordwise", num_pitches=12, low_pitch=60, violin_low=60)


def test_ids_and_text_round_trip_in_the_models_order():
    tokens = list(reversed(make_codec(NOTEWISE).vocabulary()))  # a model's order need not be the grammar's
    vocab = Vocabulary(tokens, NOTEWISE)
    ids = vocab.ids(["p39", "wait4", "endp39"], "here")
    assert ids.tolist() == [tokens.index("p39"), tokens.index("wait4"), tokens.index("endp39")]
    assert vocab.text(ids) == ["p39", "wait4", "endp39"]
    assert len(vocab) == len(tokens)


def test_a_token_outside_the_vocabulary_is_an_error_naming_where_or_unk_when_asked():
    vocab = Vocabulary(["wait1", "p0", "endp0"], NOTEWISE)
    with pytest.raises(ValueError, match=r"song.mid: token 2 'p1' is not in the model's vocabulary"):
        vocab.ids(["p0", "p1"], "song.mid")
    with pytest.raises(ValueError):  # no <unk> to fall back on
        vocab.ids(["p1"], "song.mid", unknown=True)
    chords = Vocabulary([UNK, "prest0", "p100000000000"], CHORDWISE)
    assert chords.unknown == 0
    assert chords.ids(["p100000000000", "p010000000000"], "x", unknown=True).tolist() == [2, 0]


def test_pitch_of_names_the_midi_pitch_of_notes_only():
    vocab = Vocabulary(make_codec(NOTEWISE).vocabulary(), NOTEWISE)
    for pitch in (NOTEWISE.low_pitch, 60, NOTEWISE.high_pitch):
        on, off = vocab.index[strike(pitch - NOTEWISE.low_pitch)], vocab.index[release(pitch - NOTEWISE.low_pitch)]
        assert vocab.pitch_of(on) == vocab.pitch_of(off) == pitch
    assert vocab.pitch_of(vocab.index[wait(3)]) is None


def test_waits_are_written_as_the_codec_writes_a_silence():
    vocab = Vocabulary(make_codec(NOTEWISE).vocabulary(), NOTEWISE)
    limit = NOTEWISE.wait_limit
    assert vocab.text(vocab.waits(2 * limit + 3)) == [wait(limit), wait(limit), wait(3)]
    assert vocab.waits(limit) == [vocab.index[wait(limit)]] and vocab.waits(0) == vocab.waits(-4) == []


def test_a_notewise_unk_is_kept_but_never_read_as_music():
    vocab = Vocabulary(["wait1", "p0", UNK], NOTEWISE)
    assert vocab.kind[2] == -1 and vocab.pitch_of(2) is None
    assert vocab.shifted(1).tolist()[2] == 2


def test_shifting_moves_notes_and_drops_those_off_the_keyboard_whole():
    tokens = ["wait1", "wait2", "p0", "p1", "p2", "endp0", "endp1", "endp2", UNK]
    vocab = Vocabulary(tokens, NOTEWISE)
    ids = vocab.ids(["p0", "p2", "wait1", "endp0", "endp2", "wait2", "p1", "endp1"], "piece")
    assert vocab.text(move_ids(ids, vocab.shifted(1))) == ["p1", "wait1", "endp1", "wait2", "p2", "endp2"]
    assert vocab.text(move_ids(ids, vocab.shifted(-2))) == ["p0", "wait1", "endp0", "wait2"]
    assert np.array_equal(move_ids(ids, vocab.shifted(0)), ids)


def test_a_chord_moves_whole_and_one_never_seen_in_that_key_becomes_unk():
    chords = {"p100000000000": 3, "p010000000000": 2, "p000000000011": 1}
    vocab = Vocabulary(make_codec(CHORDWISE).vocabulary(chords), CHORDWISE)
    up = vocab.shifted(1)
    assert vocab.tokens[up[vocab.index["p100000000000"]]] == "p010000000000"
    assert up[vocab.index["p000000000011"]] == -1  # its top note would leave the range
    assert up[vocab.index["p010000000000"]] == vocab.unknown  # p001000000000 was never seen
    assert vocab.tokens[up[vocab.index["prest2"]]] == "prest2" and up[vocab.unknown] == vocab.unknown
    down = vocab.shifted(-1)
    assert vocab.tokens[down[vocab.index["p000000000011"]]] == UNK and down[vocab.index["p100000000000"]] == -1


def test_chamber_families_move_alike():
    config = CodecConfig(chamber=True)
    vocab = Vocabulary(make_codec(config).vocabulary(), config)
    up = vocab.shifted(2)
    for token, moved in (("v10", "v12"), ("endv10", "endv12"), ("p10", "p12"), ("wait3", "wait3")):
        assert vocab.tokens[up[vocab.index[token]]] == moved


@pytest.mark.parametrize("codec", [NOTEWISE, CHORDWISE], ids=["notewise", "chordwise"])
def test_style_tokens_have_ids_of_their_own_and_stay_put_when_the_music_moves(codec):
    tokens = [*make_codec(codec).vocabulary(), "style_chopin", "style_pop"]
    vocab = Vocabulary(tokens, codec)
    chopin = vocab.index["style_chopin"]
    assert vocab.style_id("chopin") == chopin and vocab.style_id("pop") == chopin + 1
    assert vocab.style_id("liszt") is None  # an unknown style means no token
    assert vocab.pitch_of(chopin) is None and vocab.family[chopin] == -1 and vocab.key[chopin] == -1
    assert vocab.shifted(3)[chopin] == chopin and vocab.shifted(-5)[chopin] == chopin
    music = vocab.ids(tokens[:3], "here")
    assert vocab.without_styles(np.array([chopin, *music])).tolist() == music.tolist()
    plain = Vocabulary(make_codec(codec).vocabulary(), codec)
    assert plain.style_ids == {} and plain.without_styles(music) is music


@pytest.mark.parametrize("codec", [NOTEWISE, CodecConfig(chamber=True), CHORDWISE], ids=["notewise", "chamber",
                                                                                       "chordwise"])
def test_decoding_passes_over_a_style_token(codec):
    coder = make_codec(codec)
    notes = [StepNote(0, 4, codec.low_pitch + 2), StepNote(4, 8, codec.low_pitch + 5)]
    tokens = coder.encode(notes)
    assert coder.decode(["style_chopin", *tokens]) == coder.decode(tokens)


@pytest.mark.parametrize("codec", [NOTEWISE, CHORDWISE, CodecConfig(chamber=True),
                                   CodecConfig(encoding="chordwise", chamber=True, num_pitches=12, low_pitch=60,
                                               violin_low=60)], ids=["notewise", "chordwise", "notewise-chamber",
                                                                     "chordwise-chamber"])
def test_the_codec_says_what_its_encoding_can_do_and_writes_a_silence_of_any_length(codec):
    from clara_live.codec.stream import NotewiseStream

    coder = make_codec(codec)
    notewise = codec.encoding == "notewise"
    assert coder.streams_events is notewise
    assert coder.unknown_token == (None if notewise else UNK)
    assert coder.silence(0) == []
    for steps in (1, codec.wait_limit, 2 * codec.wait_limit + 5):
        tokens = coder.silence(steps)
        if notewise:  # waits of that many steps in all: a note struck after them starts there
            assert [n.start for n in coder.decode([*tokens, strike(0), wait(1)])] == [steps]
        else:  # a rest for every family at every step
            assert coder.decode(tokens) == [] and len(tokens) == steps * len(coder.grammar.families)
            assert {coder.grammar.parse(t).kind.name for t in tokens} == {"REST"}
    vocab = Vocabulary(coder.vocabulary({}), codec)
    assert vocab.coder.streams_events is notewise
    if notewise:
        assert NotewiseStream(vocab).vocab is vocab
    else:
        with pytest.raises(ValueError, match="one event a token, and chordwise does not"):
            NotewiseStream(vocab)
