"""The player's motifs (sampling/motif.py): the top line each grammar state keeps, the
short-term interval model learnt from the music fed, and the pull it gives the sampler."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import tiny_engine

from clara_live.codec import make_codec
from clara_live.codec.vocabulary import Vocabulary
from clara_live.config import CodecConfig, SamplingConfig
from clara_live.music.notes import StepNote
from clara_live.sampling.grammar import new_state
from clara_live.sampling.motif import WINDOW, Motifs, apply_bias
from clara_live.sampling.sampler import Sampler
from clara_live.sampling.search import generate

pytestmark = pytest.mark.usefixtures("torch_settings_restored")

NOTEWISE = CodecConfig()
CODEC = make_codec(NOTEWISE)
VOCAB = CODEC.vocabulary()
LOW = NOTEWISE.low_pitch
CELL = (60, 62, 64, 60)  # a motif: up a tone, up a tone, down a third


def melody(pitches, length: int = 6, under: int | None = None) -> list[str]:
    """Single notes `length` steps each (a bass note `under` beneath every one, if given)."""
    notes = [StepNote(length * i, length * (i + 1), p) for i, p in enumerate(pitches)]
    if under is not None:
        notes += [StepNote(length * i, length * (i + 1), under) for i in range(len(pitches))]
    return CODEC.encode(notes)


def trigrams(tops: list[int]) -> set[tuple[int, ...]]:
    steps = np.diff(tops).tolist()
    return {tuple(steps[i:i + 3]) for i in range(len(steps) - 2)}


def test_a_notewise_state_keeps_the_top_line_of_its_onset_sets():
    vocab = Vocabulary(VOCAB, NOTEWISE)
    state = new_state(vocab, SamplingConfig())
    for token in melody([72, 74, 71, 76], under=48):  # the bass is never the top
        state.update(vocab.index[token])
    assert state.tops == tuple(p - LOW for p in (72, 74, 71, 76)) and state.sets == 4


def test_a_chordwise_state_keeps_the_top_line_of_its_chords():
    config = CodecConfig(encoding="chordwise")
    codec = make_codec(config)
    pieces = [StepNote(4 * i, 4 * i + 4, p) for i, p in enumerate((67, 69, 65))]
    pieces += [StepNote(4 * i, 4 * i + 4, 48) for i in range(3)]
    tokens = codec.encode(pieces)
    vocab = Vocabulary(codec.vocabulary({t: 1 for t in tokens}), config)
    state = new_state(vocab, SamplingConfig())
    for token in tokens:
        state.update(vocab.index[token])
    assert state.tops == tuple(p - config.low_pitch for p in (67, 69, 65)) and state.sets == 3


def test_the_short_term_model_predicts_what_followed_the_same_intervals():
    motifs = Motifs(pull=1.0)
    for p in (60, 62, 64, 60, 67, 69, 71, 67):  # the cell, then the cell a fifth higher
        motifs.learn(p)
    assert motifs.predict((60,)) == {} and Motifs(1.0).predict((60, 62, 64)) == {}
    after_two_tones = motifs.predict((50, 52, 54))  # +2 +2: both times a third down followed
    assert max(after_two_tones, key=after_two_tones.get) == -4
    # Witten-Bell: order 2 saw -4 twice (one type) -> 2/3, escaping 1/3 to order 1, where after +2
    # came +2 twice and -4 twice (two types) -> each 2/6
    assert after_two_tones[-4] == pytest.approx(2 / 3 + 1 / 3 * 2 / 6)
    assert after_two_tones[2] == pytest.approx(1 / 3 * 2 / 6)
    assert sum(after_two_tones.values()) < 1  # the rest escapes to 'no motif'
    assert motifs.predict((50, 51, 52)) == {}  # never heard a semitone step


def test_the_short_term_model_forgets_beyond_its_window():
    motifs = Motifs(pull=1.0)
    for p in (60, 62, 64, 60):
        motifs.learn(p)
    assert -4 in motifs.predict((50, 52, 54))
    for i in range(WINDOW + 3):
        motifs.learn(60 + 7 * (i % 2))  # then only fifths, up and down
    assert motifs.predict((50, 52, 54)) == {}


def test_the_pull_moves_probability_between_notes_not_between_striking_and_waiting():
    logits = torch.tensor([[0.0, 1.0, 2.0, float("-inf"), 0.5]])
    notes = torch.tensor([False, True, True, True, False])
    bias = torch.tensor([[5.0, 3.0, 0.0, 9.0, 7.0]])
    moved = apply_bias(logits, bias, notes.nonzero().squeeze(1))
    p, q = torch.softmax(logits, -1), torch.softmax(moved, -1)
    assert q[0, notes].sum() == pytest.approx(float(p[0, notes].sum()))  # the notes keep their share
    torch.testing.assert_close(q[0, ~notes], p[0, ~notes])  # and everything else its own
    assert q[0, 1] / q[0, 2] == pytest.approx(float(np.exp(1.0 + 3.0 - 2.0)), rel=1e-4)
    assert moved[0, 3] == float("-inf")  # a disallowed note stays disallowed
    nothing = torch.tensor([[0.0, float("-inf"), float("-inf"), float("-inf"), 0.5]])
    torch.testing.assert_close(apply_bias(nothing, bias, notes.nonzero().squeeze(1)), nothing)


def test_the_sampler_learns_what_is_fed_not_what_it_samples():
    engine = tiny_engine(VOCAB)
    sampler = Sampler(engine, VOCAB, NOTEWISE, SamplingConfig(motif_pull=4.0), seed=3)
    sampler.feed(melody(CELL * 3))
    learnt = sampler.motifs.history
    assert learnt[-4:] == tuple(p - LOW for p in CELL)
    before = sampler.snapshot()
    generate(sampler, steps=48)
    assert sampler.motifs.history == learnt  # Clara's notes extend her top line, not the model
    sampler.feed(melody([40]))
    assert sampler.motifs.history != learnt
    sampler.restore(before)
    assert sampler.motifs.history == learnt


def test_the_bias_favours_the_note_that_continues_the_motif_as_the_new_top():
    engine = tiny_engine(VOCAB)
    sampler = Sampler(engine, VOCAB, NOTEWISE, SamplingConfig(motif_pull=4.0), seed=3)
    sampler.feed(melody(CELL * 3 + (67, 69, 71)))  # ... the cell a fifth up, before its last note
    bias = sampler.motif_bias()[0]
    index = sampler.vocab.index
    assert int(torch.argmax(bias)) == index[f"p{67 - LOW}"]  # down a third from 71, as the cell went
    assert bias[index["wait6"]] == 0 and bias[index[f"endp{67 - LOW}"]] == 0
    off = Sampler(engine, VOCAB, NOTEWISE, SamplingConfig(motif_pull=0.0), seed=3)
    off.feed(melody(CELL * 3 + (67, 69, 71)))
    assert off.motif_bias() is None


@pytest.mark.parametrize("seed", [1, 2])
def test_a_strong_pull_makes_sampled_music_take_up_the_motif(seed):
    """With a strong pull, the top line Clara samples after a call built on one cell restates
    the cell's interval 3-grams; without it (a random model) it hardly ever does."""
    engine = tiny_engine(VOCAB, seed=seed, bias=lambda t: 3.0 if t.startswith("p") else 0.0)
    call = [60, 62, 64, 60, 65, 67, 69, 65, 64, 66, 68, 64]  # the cell on C, F and E
    reused = {}
    for pull in (0.0, 12.0):
        sampler = Sampler(engine, VOCAB, NOTEWISE, SamplingConfig(motif_pull=pull, polyphony=1), seed=seed)
        sampler.feed(melody(call))
        tops: list[int] = []
        state = sampler.states[0]
        for _ in range(600):
            sets = state.sets
            sampler.step()
            if state.sets != sets:
                tops.append(state.tops[-1])
        reused[pull] = len(trigrams(tops) & trigrams(call))
    assert reused[12.0] >= 1 and reused[12.0] > reused[0.0]


def test_the_pull_never_asks_for_a_third_strike_of_a_repeated_top_note():
    """A cell of repeated notes is learnt, but after two strikes of one top note the pull leaves a
    third to the model (the loop guard's business), and still pulls the cell's other ways on."""
    motifs = Motifs(pull=2.0)
    for p in (60, 60, 60, 64) * 3:
        motifs.learn(p)
    top = np.arange(40, 80)
    assert motifs.predict((50, 50))[0] > 0
    bias = motifs.bias((50, 50), -1, top)
    assert bias is not None and bias[top == 50] == 0 and bias[top == 54] > 0
    assert motifs.bias((54, 50), -1, top)[top == 50] > 0  # a first repeat (after a third down) is the cell's
    assert motifs.bias((54, 50), 50, top) is None  # ... unless this step has already struck it


def test_the_pull_stays_inside_the_register_heard():
    """A descending scale's cell (a step down) pulls the next step down, but not beyond the
    register the player was heard in (the middle 80 % of the notes fed, a fifth wider)."""
    engine = tiny_engine(VOCAB)
    sampler = Sampler(engine, VOCAB, NOTEWISE, SamplingConfig(motif_pull=4.0), seed=3)
    sampler.feed(melody([72, 71, 69, 67, 65, 64, 62, 60] * 2))
    index = sampler.vocab.index
    bias = sampler.motif_bias()[0]  # after C (60), the fed cells went down a tone or a semitone
    assert bias[index[f"p{58 - LOW}"]] > 0 and bias[index[f"p{59 - LOW}"]] > 0
    sampler.feed(melody([55, 53, 52, 50, 48, 47, 45, 43]))  # ... the player's line goes on down
    low = np.percentile([p - LOW for p in sampler.heard], 10) - 7
    bias = sampler.motif_bias()[0]
    allowed = [p for p in range(60) if bias[index[f"p{p}"]] > 0]
    assert allowed and all(p >= low for p in allowed)
    high = Sampler(engine, VOCAB, NOTEWISE, SamplingConfig(motif_pull=4.0), seed=3)
    high.feed(melody([72, 71, 69, 67] * 6 + [40, 38]))  # a low excursion: its cell's next steps lie
    assert high.motif_bias() is None  # far below the register of the notes heard, so no pull there
