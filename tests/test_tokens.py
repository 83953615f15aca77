"""The token grammar: Token values, parsing, refusals and the fixed vocabularies."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clara_live.codec.tokens import UNK, Grammar, Kind, Token, notes_struck, style, transposed
from clara_live.config import CodecConfig

NOTEWISE = Grammar(CodecConfig())
NOTEWISE_CHAMBER = Grammar(CodecConfig(chamber=True))
CHORDWISE = Grammar(CodecConfig(encoding="chordwise"))
CHORDWISE_CHAMBER = Grammar(CodecConfig(encoding="chordwise", chamber=True))
GRAMMARS = [NOTEWISE, NOTEWISE_CHAMBER, CHORDWISE, CHORDWISE_CHAMBER]
IDS = ["notewise", "notewise-chamber", "chordwise", "chordwise-chamber"]


@pytest.mark.parametrize(("token", "text"), [
    (Token(Kind.ON, "p", 28), "p28"),
    (Token(Kind.OFF, "p", 28), "endp28"),
    (Token(Kind.ON, "v", 0), "v0"),
    (Token(Kind.OFF, "v", 61), "endv61"),
    (Token(Kind.WAIT, "", 6), "wait6"),
    (Token(Kind.REST, "p", 26), "prest26"),
    (Token(Kind.CHORD, "v", bits="0101"), "v0101"),
    (Token(Kind.UNK), "<unk>"),
])
def test_str_of_a_token_is_its_vocabulary_entry(token, text):
    assert str(token) == text


@pytest.mark.parametrize(("text", "token"), [
    ("p0", Token(Kind.ON, "p", 0)),
    ("p61", Token(Kind.ON, "p", 61)),
    ("endp28", Token(Kind.OFF, "p", 28)),
    ("wait1", Token(Kind.WAIT, "", 1)),
    ("wait25", Token(Kind.WAIT, "", 25)),
])
def test_parse_notewise(text, token):
    assert NOTEWISE.parse(text) == token


def test_parse_chordwise():
    bits = "1" + "0" * 60 + "1"
    assert CHORDWISE.parse("p" + bits) == Token(Kind.CHORD, "p", bits=bits)
    assert CHORDWISE.parse("prest40") == Token(Kind.REST, "p", 40)
    assert CHORDWISE.parse(UNK) == Token(Kind.UNK)
    assert CHORDWISE_CHAMBER.parse("vrest0") == Token(Kind.REST, "v", 0)


@pytest.mark.parametrize(("grammar", "text", "reason"), [
    (NOTEWISE, "foo", "is not a notewise token"),
    (NOTEWISE, "p62", "pitch index outside 0..61"),
    (NOTEWISE, "p99", "pitch index outside 0..61"),
    (NOTEWISE, "endp62", "pitch index outside 0..61"),
    (NOTEWISE, "wait0", "waits run from 1 to 25"),
    (NOTEWISE, "wait26", "waits run from 1 to 25"),
    (NOTEWISE, "v3", "need --chamber"),
    (NOTEWISE, "endv3", "need --chamber"),
    (NOTEWISE, "p-1", "is not a notewise token"),
    (NOTEWISE, "P3", "is not a notewise token"),
    (NOTEWISE, UNK, "is not a notewise token"),
    (NOTEWISE, "", "is not a notewise token"),
    (NOTEWISE, " p3", "is not a notewise token"),
    (NOTEWISE_CHAMBER, "x3", "is not a notewise token"),
    (NOTEWISE_CHAMBER, "v62", "pitch index outside"),
    (CHORDWISE, "prest41", "rest counts run from 0 to 40"),
    (CHORDWISE, "p" + "0" * 62, "written as a rest token"),
    (CHORDWISE, "p" + "1" * 61, "is not a chordwise token"),
    (CHORDWISE, "p" + "1" * 63, "is not a chordwise token"),
    (CHORDWISE, "p" + "2" * 62, "is not a chordwise token"),
    (CHORDWISE, "vrest0", "need --chamber"),
    (CHORDWISE, "p27", "is not a chordwise token"),
    (CHORDWISE, "wait3", "is not a chordwise token"),
])
def test_parse_refuses_what_is_not_a_token_saying_why(grammar, text, reason):
    with pytest.raises(ValueError, match=reason) as info:
        grammar.parse(text)
    assert repr(text) in str(info.value)


@pytest.mark.parametrize("grammar", GRAMMARS, ids=IDS)
def test_only_a_v_token_without_chamber_is_told_about_chamber(grammar):
    with pytest.raises(ValueError) as info:
        grammar.parse("foo")
    assert "chamber" not in str(info.value)


def test_wait_limit_comes_from_the_config():
    grammar = Grammar(CodecConfig(sample_freq=4))  # 2 * 4 + 1
    assert grammar.parse("wait9").value == 9
    with pytest.raises(ValueError, match="waits run from 1 to 9"):
        grammar.parse("wait10")
    assert Grammar(CodecConfig(max_wait=40)).parse("wait40").value == 40


def test_families_follow_chamber():
    assert NOTEWISE.families == ("p",)
    assert NOTEWISE_CHAMBER.families == ("p", "v")


def test_fixed_vocabularies():
    assert NOTEWISE.fixed_vocabulary() == (
        [f"wait{n}" for n in range(1, 26)] + [f"p{i}" for i in range(62)] + [f"endp{i}" for i in range(62)])
    assert len(NOTEWISE_CHAMBER.fixed_vocabulary()) == 25 + 4 * 62
    assert CHORDWISE.fixed_vocabulary() == [UNK] + [f"prest{n}" for n in range(41)]
    assert CHORDWISE_CHAMBER.fixed_vocabulary() == (
        [UNK] + [f"prest{n}" for n in range(41)] + [f"vrest{n}" for n in range(41)])
    small = Grammar(CodecConfig(low_pitch=40, num_pitches=24, violin_low=45, max_wait=3))
    assert small.fixed_vocabulary() == (
        ["wait1", "wait2", "wait3"] + [f"p{i}" for i in range(24)] + [f"endp{i}" for i in range(24)])


@pytest.mark.parametrize("grammar", GRAMMARS, ids=IDS)
def test_every_vocabulary_token_parses_back_to_itself(grammar):
    vocab = grammar.fixed_vocabulary()
    assert len(set(vocab)) == len(vocab)
    for text in vocab:
        assert str(grammar.parse(text)) == text


@given(st.sets(st.integers(0, 61), min_size=1), st.sampled_from(["p", "v"]))
def test_chord_tokens_parse_back_to_themselves(indices, family):
    text = family + "".join("1" if i in indices else "0" for i in range(62))
    token = CHORDWISE_CHAMBER.parse(text)
    assert token.kind is Kind.CHORD and token.family == family and str(token) == text


@pytest.mark.parametrize("text", ["p5\n", "endp5\n", "p05", "wait007", "p\u0663"])
def test_parse_accepts_only_the_exact_vocabulary_entry(text):
    try:
        token = NOTEWISE.parse(text)
    except ValueError:
        return
    assert str(token) == text, f"{text!r} parsed as {str(token)!r}"


def test_tokens_are_spelled_by_the_codec_for_everyone_else():
    from clara_live.codec.tokens import release, silence, strike, wait
    from clara_live.config import CodecConfig

    assert (strike(28), release(28), wait(6)) == ("p28", "endp28", "wait6")
    assert strike(3, "v") == "v3"
    assert silence(CodecConfig()) == "wait12"
    assert silence(CodecConfig(encoding="chordwise")) == "prest0"
    grammar = Grammar(CodecConfig())
    assert [grammar.parse(t).kind for t in (strike(0), release(0), wait(1))] == [Kind.ON, Kind.OFF, Kind.WAIT]


@pytest.mark.parametrize("grammar", GRAMMARS, ids=IDS)
def test_a_style_token_is_read_by_every_grammar_and_is_no_music(grammar):
    token = grammar.parse("style_chopin")
    assert token == Token(Kind.STYLE, name="chopin") and str(token) == "style_chopin" == style("chopin")
    assert notes_struck(token) == 0 and transposed(token, 5, 62) == token
    assert not any(t.startswith("style_") for t in grammar.fixed_vocabulary())  # styles come from a corpus


@pytest.mark.parametrize("text", ["style_", "style_Chopin", "style_c3po", "style_chopin ", "style_pop_rock"])
def test_a_style_token_names_its_style_in_lower_case_letters(text):
    with pytest.raises(ValueError, match="style token"):
        NOTEWISE.parse(text)
    with pytest.raises(ValueError, match="not a style name"):
        style(text.removeprefix("style_"))
