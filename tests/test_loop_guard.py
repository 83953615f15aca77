"""The loop guard in the grammar masks: no note or chord struck more times in a row than
`sampling.max_repeats`, or than the music heard so far did; greedy decoding, beam search
and best-of-K with the shipped model keep to it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clara_live.codec import make_codec
from clara_live.codec.vocabulary import Vocabulary
from clara_live.config import CodecConfig, InferenceConfig, SamplingConfig
from clara_live.engine import build_engine
from clara_live.model import load_model
from clara_live.music.notes import StepNote
from clara_live.sampling.grammar import ChordwiseState, NotewiseState
from clara_live.sampling.sampler import Sampler
from clara_live.sampling.search import beam_search, best_of, generate

SHIPPED = Path(__file__).resolve().parents[1] / "trained_models" / "clara-notewise"
NOTEWISE = CodecConfig()
CODEC = make_codec(NOTEWISE)
VOCAB = Vocabulary(CODEC.vocabulary(), NOTEWISE)


def _state(tokens: list[str], max_repeats: int = 3) -> NotewiseState:
    state = NotewiseState(VOCAB, SamplingConfig(max_repeats=max_repeats))
    for token in tokens:
        state.update(VOCAB.index[token])
    return state


def _allowed(state) -> set[str]:
    return {VOCAB.tokens[i] for i in np.flatnonzero(state.allowed())}


def _strikes(pitches: tuple[int, ...], times: int) -> list[str]:
    notes = [StepNote(6 * i, 6 * i + 3, 33 + p) for i in range(times) for p in pitches]
    tokens = CODEC.encode(notes)
    return tokens + ["wait3"]  # the last notes closed, a step later: the next strike is due


def test_a_note_struck_three_times_may_not_be_struck_a_fourth():
    state = _state(_strikes((20,), 3))
    allowed = _allowed(state)
    assert "p20" not in allowed
    assert {"p19", "p21", "p40"} <= allowed  # any other note may
    assert "p20" in _allowed(_state(_strikes((20,), 2)))  # twice: a third time is fine
    assert "p20" in _allowed(_state(_strikes((20,), 3), max_repeats=0))  # the guard off


def test_a_chord_may_not_be_completed_again_but_may_change():
    state = _state(_strikes((20, 24, 27), 3))
    assert {"p20", "p24", "p27"} <= _allowed(state)  # the chord's lower notes may begin a new chord
    for token in ("p20", "p24"):
        state.update(VOCAB.index[token])
    allowed = _allowed(state)
    assert "p27" not in allowed  # completing the same chord a fourth time
    assert "p28" in allowed and "p30" in allowed  # another top note


def test_the_step_may_not_close_on_the_repeated_set():
    state = _state(_strikes((20,), 3), max_repeats=3)
    state.update(VOCAB.index["p20"])  # fed (a player may), then the sampler continues the step
    state.run = 3
    assert not any(t.startswith("wait") for t in _allowed(state))


def test_the_player_sets_how_many_repeats_are_music():
    state = _state(_strikes((20,), 6))  # the player struck it six times
    assert state.longest_run == 6 and state.repeat_limit == 6
    assert "p20" not in _allowed(state)  # six is the limit now: a seventh is a loop
    shorter = _state(_strikes((20,), 6) + _strikes((25,), 4))
    assert "p25" in _allowed(shorter)  # four of a new note is within the player's six


def test_the_guard_survives_a_copy_and_counts_only_struck_sets():
    state = _state(_strikes((20,), 3) + ["wait12", "wait12"])  # silence between strikes is not a new set
    assert "p20" not in _allowed(state.copy())


def test_chordwise_chords_are_guarded_too():
    codec = CodecConfig(encoding="chordwise")
    bits = ["0"] * codec.num_pitches
    bits[20] = bits[24] = "1"
    chord = "p" + "".join(bits)
    tokens = make_codec(codec).vocabulary({chord: 5})
    vocab = Vocabulary(tokens, codec)
    state = ChordwiseState(vocab, SamplingConfig(max_repeats=2))
    for _ in range(2):
        state.update(vocab.index[chord])
    assert not state.allowed()[vocab.index[chord]]
    fresh = ChordwiseState(vocab, SamplingConfig(max_repeats=2))
    fresh.update(vocab.index[chord])
    assert fresh.allowed()[vocab.index[chord]]


# --- with the shipped model ---------------------------------------------------------------


@pytest.fixture(scope="module")
def loaded():
    return load_model(SHIPPED)


def _longest_run(tokens: list[str]) -> int:
    state = _state([], max_repeats=0)
    for token in tokens:
        state.update(VOCAB.index[token])
    return state.longest_run


def _sampler(loaded, max_repeats: int, seed: int = 0) -> Sampler:
    engine = build_engine(loaded.model, InferenceConfig(device="cpu", precision="fp32"))
    sampling = SamplingConfig(random_freq=0.0, max_repeats=max_repeats)
    return Sampler(engine, loaded.vocabulary, loaded.codec, sampling, seed=seed)


PROMPT = _strikes((24,), 3)[:-1] + ["wait3"]  # a note struck three times, the pattern greedy decoding repeats


def test_greedy_decoding_loops_without_the_guard_and_not_with_it(loaded):
    free = _sampler(loaded, 0)
    free.feed(PROMPT)
    unguarded = generate(free, steps=12 * 16, greedy=True)[0]
    guarded_sampler = _sampler(loaded, 3)
    guarded_sampler.feed(PROMPT)
    guarded = generate(guarded_sampler, steps=12 * 16, greedy=True)[0]
    assert _longest_run(PROMPT + unguarded) > 3  # the model's habit, which the guard is for
    assert _longest_run(PROMPT + guarded) <= 3
    assert sum(t.startswith("p") for t in guarded) >= 8  # it still plays: other notes, not silence


def test_beam_search_and_best_of_keep_the_guard(loaded):
    sampler = _sampler(loaded, 3)
    sampler.feed(PROMPT)
    tokens, _ = beam_search(sampler, 3, steps=12 * 4)
    assert _longest_run(PROMPT + tokens) <= 3
    sampler = _sampler(loaded, 3, seed=5)
    sampler.sampling = SamplingConfig(random_freq=1.0, top_k=0, max_repeats=3)
    sampler.feed(PROMPT)
    tokens, _ = best_of(sampler, 4, steps=12 * 8)
    assert _longest_run(PROMPT + tokens) <= 3


def test_no_note_begins_in_the_last_sixteenth_before_the_phrase_end():
    state = _state(["wait25"])  # the longest wait: another wait may follow
    state.horizon = state.now + 2
    assert not any(t.startswith("p") for t in _allowed(state))
    assert "wait2" in _allowed(state)
    state.horizon = state.now + 12
    assert "p30" in _allowed(state)


@pytest.mark.parametrize("codec", [NOTEWISE, CodecConfig(chamber=True), CodecConfig(encoding="chordwise",
                                                                                       num_pitches=12, low_pitch=60,
                                                                                       violin_low=60)],
                         ids=["notewise", "chamber", "chordwise"])
def test_no_mask_offers_a_style_token_and_feeding_one_changes_nothing(codec):
    coder = make_codec(codec)
    chords = ["p100010010000", "p010001000100"] if codec.encoding == "chordwise" else []
    vocab = Vocabulary([*coder.vocabulary(), *chords, "style_chopin", "style_pop"], codec)
    styles = list(vocab.style_ids.values())
    state = (ChordwiseState if codec.encoding == "chordwise" else NotewiseState)(vocab, SamplingConfig())
    rng = np.random.default_rng(0)
    for _ in range(400):  # a random walk through what the masks allow
        mask = state.allowed()
        assert not mask[styles].any()
        before = vars(state.copy()).copy()
        state.update(styles[0])
        after = vars(state)
        assert before.keys() == after.keys()
        for name, value in before.items():
            assert np.array_equal(value, after[name]) if isinstance(value, np.ndarray) else value == after[name], name
        state.update(int(rng.choice(np.flatnonzero(mask))))
