"""Each family's polyphony cap (sampling.polyphony_v): a chamber model's `v` part is one line, a voice's
or a violin's, so no `v` note is struck while another sounds (cap 1), or a violin's double stop at most
(cap 2); the piano keeps sampling.polyphony. A tiny random chamber model (tests/test_duet.py) strikes
all over both families, so without the cap its `v` part overlaps itself."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_duet import Recording
from test_duet_continue import duet

from clara_live.codec import make_codec
from clara_live.codec.vocabulary import Vocabulary
from clara_live.config import CodecConfig, ConfigError, SamplingConfig, load_config
from clara_live.continuation import Request, continue_piece
from clara_live.engine import build_engine
from clara_live.model import load_model
from clara_live.music.read import read_music
from clara_live.sampling.grammar import ChordwiseState, NotewiseState

SEEDS = range(4)
CHAMBER = CodecConfig(chamber=True)
VOCAB = Vocabulary(make_codec(CHAMBER).vocabulary(), CHAMBER)


def most_v_sounding(tokens: list[str], start: int) -> int:
    """The most `v` notes sounding at once from token `start` on (the notes the prompt left sounding count,
    an off for a silent note is ignored, as the decoder takes it)."""
    sounding: set[str] = set()
    most = 0
    for i, token in enumerate(tokens):
        if token.startswith("endv"):
            sounding.discard(token[3:])
        elif token.startswith("v"):
            sounding.add(token)
            if i >= start:
                most = max(most, len(sounding))
    return most


def continued(model: Path, prompt: Path, cap: int, seed: int) -> tuple[list[str], int, list]:
    """(the tokens fed and sampled, where hers begin, her notes) of an 8-second continuation of a duet."""
    config = load_config(overrides=["sampling.motif_pull=0", f"sampling.polyphony_v={cap}"])
    loaded = load_model(model)
    sampler = Recording(build_engine(loaded.model, config.inference), loaded.vocabulary, loaded.codec,
                        config.sampling, seed=seed)
    result = continue_piece(loaded, sampler, read_music(prompt), Request(seconds=8.0), config.sampling)
    fed = sampler.vocab.text(sampler.fed)
    return fed + result.tokens, len(fed), result.continuation


def overlaps(notes) -> int:
    """The most of these notes sounding at once (ends are exclusive)."""
    edges = sorted([(n.start, 1) for n in notes] + [(n.end, -1) for n in notes], key=lambda e: (e[0], e[1]))
    most = now = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most


def test_with_cap_1_her_v_part_is_one_line(chamber_model, tmp_path):
    prompt = duet(tmp_path / "prompt.mid", "Voice", None)
    struck = 0
    for seed in SEEDS:
        tokens, start, notes = continued(chamber_model, prompt, 1, seed)
        assert most_v_sounding(tokens, start) <= 1, seed
        line = [n for n in notes if n.family == "v"]
        assert overlaps(line) <= 1, (seed, line)  # as written: each v note ends before the next begins
        struck += len(line)
    assert struck >= 2 * len(SEEDS)  # she did sing: the cap thinned her line, it did not silence it


def test_with_cap_2_a_violin_double_stops_and_no_more(chamber_model, tmp_path):
    prompt = duet(tmp_path / "prompt.mid")
    most = [most_v_sounding(*continued(chamber_model, prompt, 2, seed)[:2]) for seed in SEEDS]
    assert max(most) == 2 and all(m <= 2 for m in most), most


def test_the_piano_keeps_sampling_polyphony(chamber_model, tmp_path):
    """Cap 1 on v leaves p its chords: the random model stacks piano notes as it did."""
    prompt = duet(tmp_path / "prompt.mid")
    most_p = 0
    for seed in SEEDS:
        _, _, notes = continued(chamber_model, prompt, 1, seed)
        most_p = max(most_p, overlaps([n for n in notes if n.family == "p"]))
    assert 3 <= most_p <= SamplingConfig().polyphony


def test_a_v_note_on_at_the_cap_is_masked_until_its_end_token():
    state = NotewiseState(VOCAB, SamplingConfig(polyphony_v=1))
    ids = VOCAB.index
    state.update(ids["v20"])
    state.update(ids["wait2"])
    allowed = state.allowed()
    assert not allowed[ids["v24"]] and allowed[ids["p24"]] and allowed[ids["endv20"]]
    state.update(ids["endv20"])
    assert state.allowed()[ids["v24"]]  # after the end, in the same step: the line goes on
    state.update(ids["v24"])
    state.update(ids["p30"])  # a piano note is not held back by the v line
    assert not state.allowed()[[ids["v27"], ids["v30"]]].any()
    two = NotewiseState(VOCAB, SamplingConfig(polyphony_v=2))
    for token in ("v20", "v24"):
        assert two.allowed()[ids[token]]
        two.update(ids[token])
    two.update(ids["wait2"])
    assert not two.allowed()[ids["v27"]] and two.allowed()[ids["p27"]]


def test_the_masked_mass_goes_where_the_grammar_sends_it(chamber_model):
    """A v note-on at the cap has no probability; the tokens left keep their proportions (renormalised),
    as under the cap on all notes."""
    loaded = load_model(chamber_model)
    probs = {}
    for cap in (1, 4):
        config = load_config(overrides=["sampling.motif_pull=0", f"sampling.polyphony_v={cap}"])
        sampler = Recording(build_engine(loaded.model, config.inference), loaded.vocabulary, loaded.codec,
                            config.sampling, seed=0)
        sampler.reset()
        sampler.feed(["v20", "wait2"])
        probs[cap] = sampler.log_probs()[0].exp().numpy()
    p, q = probs[1], probs[4]
    v_ons = (VOCAB.kind == 0) & (VOCAB.family == VOCAB.families.index("v"))
    assert p[v_ons].sum() == 0 and q[v_ons].sum() > 0.01 and p.sum() == pytest.approx(1.0, abs=1e-5)
    kept = p > 0
    assert np.allclose(p[kept], q[kept] / q[kept].sum(), rtol=1e-4)


def chord(family: str, *pitches: int, codec: CodecConfig) -> str:
    bits = ["0"] * codec.num_pitches
    for p in pitches:
        bits[p] = "1"
    return family + "".join(bits)


def test_a_chordwise_v_chord_keeps_to_the_cap():
    codec = CodecConfig(chamber=True, encoding="chordwise")
    chords = [chord(f, *pitches, codec=codec) for f in "pv" for pitches in ((30,), (30, 34), (30, 34, 37))]
    vocab = Vocabulary(make_codec(codec).vocabulary({c: 1 for c in chords}), codec)
    for cap in (1, 2):
        state = ChordwiseState(vocab, SamplingConfig(polyphony_v=cap))
        assert vocab.value[vocab.chord_ids[0][state.allowed()[vocab.chord_ids[0]]]].max() == 3  # p: polyphony
        state.update(vocab.rest_id[(0, 0)])  # the p part rests: v's turn
        v_chords = vocab.chord_ids[1]
        assert vocab.value[v_chords[state.allowed()[v_chords]]].max() == cap


def test_polyphony_v_out_of_range_is_one_line():
    with pytest.raises(ConfigError, match=r"sampling.polyphony_v: 5 is outside \[1, 4\]"):
        load_config(overrides=["sampling.polyphony_v=5"])
