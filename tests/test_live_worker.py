"""The model worker with the shipped notewise model: answers are timed, paired and end on
their step; a stop rewinds the model to exactly what the listener heard."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from conftest import REPO

from clara_live.codec.notewise import NotewiseCodec
from clara_live.codec.vocabulary import Vocabulary
from clara_live.config import load_config
from clara_live.engine import build_engine
from clara_live.live.commands import Answer, Feed, Stop
from clara_live.live.midi import NOTE_OFF, NOTE_ON
from clara_live.live.tempo import Grid
from clara_live.live.worker import Worker
from clara_live.model import load_model
from clara_live.sampling.sampler import Sampler
from clara_live.sampling.search import first_steps

MODEL = REPO / "trained_models" / "clara-notewise"
PHRASE = ("p27", "wait12", "endp27", "p31", "wait12", "endp31", "p34", "wait12", "endp34")


@pytest.fixture(scope="module")
def loaded():
    return load_model(MODEL)


def _sampler(loaded, seed: int = 3) -> Sampler:
    # fp32: int8's dynamic quantisation scales each call's activations, so a token fed in a
    # chunk and the same token fed alone differ slightly; fp32 lets states be compared exactly
    config = load_config(overrides=["inference.precision=fp32"])
    return Sampler(build_engine(loaded.model, config.inference), loaded.vocabulary, loaded.codec,
                   config.sampling, seed=seed)


def _feed(loaded, tokens, velocity: int, time: float | None, step: int) -> Feed:
    """These tokens as the session sends them: ids in the model's vocabulary, and `step`, where the
    session's stream stands after them."""
    return Feed(tuple(Vocabulary(loaded.vocabulary, loaded.codec).ids(tokens, "test").tolist()), velocity, time, step)


class Clock:
    def __init__(self, t: float = 0.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def _answer(grid: Grid, start: int = 48, steps: int = 48) -> Answer:
    return Answer(id=1, start_step=start, steps=steps, grid=grid, velocity=70, channel=0)


def test_an_answer_is_timed_on_its_grid_paired_and_ends_on_its_step(loaded):
    sent = []
    clock = Clock()
    worker = Worker(_sampler(loaded), lambda *event: sent.append(event), lookahead=1e9, clock=clock)
    worker.handle(_feed(loaded, PHRASE, 80, 0.0, 36))
    grid = Grid(anchor_time=10.0, anchor_step=0.0, bpm=120.0, sample_freq=12)
    answer = _answer(grid)
    worker.handle(answer)
    assert worker.state.now == worker.base + answer.end_step
    assert not worker.state.sounding.any()
    ons = [e for e in sent if e[1][0] & 0xF0 == NOTE_ON]
    offs = [e for e in sent if e[1][0] & 0xF0 == NOTE_OFF]
    assert ons, "Clara played nothing"
    assert min(t for t, *_ in ons) == pytest.approx(answer.start_time)  # she starts on the beat
    assert all(answer.start_time - 1e-9 <= t <= answer.end_time + 1e-9 for t, *_ in sent)
    assert all(track == "clara" and tag == 1 and msg[0] & 0x0F == 0 for _, msg, track, tag in sent)
    assert all(msg[2] == 70 for _, msg, *_ in ons)
    # every note-on has a later note-off of the same pitch
    opened: dict[int, float] = {}
    for t, msg, *_ in sorted(sent, key=lambda e: (e[0], e[1][0] & 0xF0 == NOTE_ON)):
        if msg[0] & 0xF0 == NOTE_ON:
            assert msg[1] not in opened
            opened[msg[1]] = t
        else:
            assert opened.pop(msg[1]) < t
    assert not opened and len(ons) == len(offs)


def test_feeding_keeps_one_hidden_state_for_the_whole_session(loaded):
    worker = Worker(_sampler(loaded), lambda *e: None)
    reference = _sampler(loaded)
    reference.feed([f"wait{loaded.codec.wait_limit}"])
    for chunk, step in ((PHRASE[:2], 12), (PHRASE[2:5], 24), (PHRASE[5:], 36)):
        worker.handle(_feed(loaded, chunk, 80, 0.0, step))
        reference.feed(chunk)
    assert torch.allclose(worker.sampler.logits, reference.logits, atol=1e-5)
    assert worker.fed == len(PHRASE)


def _dense(loaded) -> Sampler:
    """A sampler under Clara's own rule (mostly the likeliest token): with this seed it plays on
    past the stop, so the test below has sampled-but-unplayed notes to rewind."""
    import dataclasses

    from clara_live.config import SAMPLING_PRESETS

    sampler = _sampler(loaded)
    sampler.sampling = dataclasses.replace(sampler.sampling, **SAMPLING_PRESETS["clara"])
    return sampler


def test_a_stop_rewinds_the_model_to_what_was_heard(loaded):
    """Stopped mid-answer, the model holds the phrase, Clara's tokens before the stop step, a
    wait to it and the closing offs, as a fresh model fed just those would: the tokens she
    sampled ahead but never played leave no trace."""
    grid = Grid(anchor_time=10.0, anchor_step=36.0, bpm=120.0, sample_freq=12)
    answer = _answer(grid, start=48, steps=96)  # 10.5 s .. 14.5 s
    # the same seed unstopped: the whole answer the stopped worker was sampling
    whole = Worker(_dense(loaded), lambda *e: None, lookahead=1e9, clock=Clock(10.0))
    whole.handle(_feed(loaded, PHRASE, 80, 10.0, 36))
    whole.handle(answer)
    tokens = whole.sampler.vocab.text(whole._played.ids)

    sent = []
    clock = Clock(11.2)  # it samples up to 11.8 s (step 79): past the stop at 11.25 s (step 66)
    worker = Worker(_dense(loaded), lambda *event: sent.append(event), lookahead=0.6, clock=clock)
    worker.start()
    try:
        worker.submit(_feed(loaded, PHRASE, 80, 10.0, 36))
        worker.submit(answer)
        deadline = time.monotonic() + 10
        while not (worker._played and worker.state.now >= worker.base + 66) and time.monotonic() < deadline:
            time.sleep(0.005)  # the worker samples up to 0.6 s ahead of the (fake) clock, then waits
        worker.submit(Stop(1, 66, 11.25))
        worker.submit(_feed(loaded, ("wait2", "p40"), 90, 11.3, 68))
        while not worker.idle() and time.monotonic() < deadline:
            time.sleep(0.005)
    finally:
        worker.close()
    assert worker.error is None
    played_ahead = [e for e in sent if e[0] > grid.time_of(66)]
    assert played_ahead, "the worker had not sampled past the stop: the test proves nothing"

    reference = _sampler(loaded)
    reference.feed([f"wait{loaded.codec.wait_limit}", *PHRASE])
    vocab = reference.vocab
    heard = vocab.text(first_steps(vocab.ids(tokens, "the answer").tolist(), 66 - 36, vocab))
    reference.feed(heard)
    reference.feed(_waits(66 + worker.base - reference.states[0].now, loaded.codec.wait_limit))
    reference.feed_ids(reference.states[0].close_all())
    reference.feed(["wait2", "p40"])
    assert torch.allclose(worker.sampler.logits, reference.logits, atol=1e-5)
    assert worker.state.now == worker.base + 68
    assert worker.state.sounding.sum() == 1  # only the player's new note
    # and what it heard is what was scheduled before the stop
    notes = NotewiseCodec(loaded.codec).decode(heard)
    onsets = sorted((36 + n.start, n.pitch) for n in notes)
    scheduled = sorted((round(grid.step_at(t)), msg[1]) for t, msg, *_ in sent
                       if msg[0] & 0xF0 == NOTE_ON and t < grid.time_of(66))
    assert onsets == scheduled


def _waits(steps: int, limit: int) -> list[str]:
    out = [f"wait{limit}"] * (steps // limit) if steps > 0 else []
    if steps > 0 and steps % limit:
        out.append(f"wait{steps % limit}")
    return out


def test_refuses_a_chordwise_model():
    loaded = load_model(REPO / "trained_models" / "clara-chordwise")
    with pytest.raises(ValueError, match="notewise"):
        Worker(_sampler(loaded), lambda *e: None)


def test_sampling_changes_apply_to_the_next_tokens(loaded):
    from clara_live.live.commands import Sampling

    worker = Worker(_sampler(loaded), lambda *e: None)
    changed = load_config(overrides=["sampling.top_k=1", "sampling.polyphony=2"]).sampling
    worker.handle(Sampling(changed))
    assert worker.sampler.sampling.top_k == 1 and worker.state.polyphony == 2
    assert torch.isfinite(worker.sampler.logits).all()


def test_best_of_k_plays_the_scorer_s_pick_and_falls_back_when_time_is_short(loaded):
    seen = []

    def most_notes(sequences, mean_logprob):  # a stand-in for the critic: the busiest candidate wins
        seen.append(sequences)
        return np.array([sum(t.startswith("p") for t in seq) for seq in sequences], dtype=float)

    sent = []
    clock = Clock(0.0)
    worker = Worker(_sampler(loaded), lambda *event: sent.append(event), lookahead=1e9, clock=clock,
                    candidates=4, scorer=most_notes)
    worker.handle(_feed(loaded, PHRASE, 80, 0.0, 36))
    grid = Grid(anchor_time=10.0, anchor_step=36.0, bpm=120.0, sample_freq=12)
    worker.handle(_answer(grid, start=48, steps=48))  # due 10.5 s from now: time for four
    assert worker.chosen == [4] and len(seen) == 1 and len(seen[0]) == 4
    winner = max(seen[0], key=lambda seq: sum(t.startswith("p") for t in seq))
    pitches = [int(t[1:]) + loaded.codec.low_pitch for t in winner if t.startswith("p")]
    assert [m[1] for _, m, *_ in sent if m[0] & 0xF0 == NOTE_ON] == pitches
    assert worker.state.now == worker.base + 48 + 48 and not worker.state.sounding.any()

    sent.clear()
    clock.t = grid.time_of(96) + 10.0  # the next answer is due at once: no time to choose
    late = Grid(anchor_time=clock.t, anchor_step=96.0, bpm=120.0, sample_freq=12)
    worker.handle(Answer(id=2, start_step=96, steps=24, grid=late, velocity=70, channel=0))
    assert worker.chosen == [4, 1] and len(seen) == 1  # streamed, unjudged
    assert sent and worker.state.now == worker.base + 120


def test_a_refeed_rewinds_to_the_phrase_s_mark_and_reads_the_phrase_anew(loaded):
    """The phrase fed as it came (on the old grid), then re-quantised: the model holds exactly
    what a fresh one fed the re-quantised phrase holds, and the stream stands where its waits say."""
    from clara_live.live.commands import Mark, Refeed

    worker = Worker(_sampler(loaded), lambda *e: None)
    worker.handle(_feed(loaded, ("wait5", "p20", "wait3", "endp20"), 70, 0.0, 8))  # an earlier phrase
    worker.handle(Mark())
    worker.handle(_feed(loaded, ("wait12", "p27"), 80, 1.0, 20))
    worker.handle(_feed(loaded, ("wait10", "endp27", "p31"), 90, 1.5, 30))
    worker.handle(_feed(loaded, ("wait7", "endp31"), 0, None, 37))
    moved = (_feed(loaded, ("wait12", "p27"), 80, None, 20), _feed(loaded, ("wait12", "endp27", "p31"), 90, None, 32),
             _feed(loaded, ("wait12", "endp31"), 0, None, 44))
    worker.handle(Refeed(moved))
    reference = _sampler(loaded)
    reference.feed([f"wait{loaded.codec.wait_limit}", "wait5", "p20", "wait3", "endp20"], 70)
    for feed in moved:
        reference.feed_ids(feed.ids, feed.velocity)
    assert torch.allclose(worker.sampler.logits, reference.logits, atol=1e-5)
    assert worker.state.now == worker.base + 8 + 36 and not worker.state.sounding.any()
    assert worker.refed == 1
    # and a refeed with no mark is an error, not a silent desynchronisation
    fresh = Worker(_sampler(loaded), lambda *e: None)
    with pytest.raises(RuntimeError, match="no mark"):
        fresh.handle(Refeed(moved))


def test_the_pause_before_an_answer_is_not_fed_yet_the_answer_keeps_its_time(loaded):
    """from_step: the model goes straight from the phrase (ended at step 36) into the answer
    (due at step 72, after the pause that ended the phrase): it reads no silence, holds exactly
    what a model fed the phrase and then the answer from step 36 holds, and still plays on the
    answer's grid from step 72; the session's later steps map onto the stream after it."""
    grid = Grid(anchor_time=10.0, anchor_step=36.0, bpm=120.0, sample_freq=12)
    answer = Answer(id=1, start_step=72, steps=48, grid=grid, velocity=70, channel=0, from_step=36)
    sent = []
    worker = Worker(_sampler(loaded), lambda *event: sent.append(event), lookahead=1e9, clock=Clock())
    worker.handle(_feed(loaded, PHRASE, 80, 0.0, 36))
    base = worker.base
    worker.handle(answer)
    assert worker.base == base - 36
    tokens = worker.sampler.vocab.text(worker._played.ids)
    assert not tokens[0].startswith("wait")  # straight on from the phrase's end
    reference = _sampler(loaded)
    reference.feed([f"wait{loaded.codec.wait_limit}", *PHRASE, *tokens])
    assert torch.allclose(worker.sampler.logits, reference.logits, atol=1e-5)
    assert worker.state.now == worker.base + answer.end_step
    ons = [t for t, msg, *_ in sent if msg[0] & 0xF0 == NOTE_ON]
    assert ons and min(ons) == pytest.approx(answer.start_time)
    assert all(answer.start_time - 1e-9 <= t <= answer.end_time + 1e-9 for t, *_ in sent)
    worker.handle(_feed(loaded, ("wait12", "p40"), 90, 20.0, 132))  # the player again, a beat after her answer
    assert worker.state.now == worker.base + answer.end_step + 12


def test_a_stop_before_the_answer_began_gives_the_pause_back(loaded):
    """Stopped while she waits to begin (the player plays again at step 60), the stream holds the
    phrase and the real silence up to the stop, as the listener heard it."""
    grid = Grid(anchor_time=10.0, anchor_step=36.0, bpm=120.0, sample_freq=12)
    answer = Answer(id=1, start_step=72, steps=48, grid=grid, velocity=70, channel=0, from_step=36)
    worker = Worker(_sampler(loaded), lambda *e: None, lookahead=0.0, clock=Clock(0.0))
    worker.handle(_feed(loaded, PHRASE, 80, 0.0, 36))
    base = worker.base
    worker.submit(Stop(1, 60, 11.0))  # read while the answer waits for its time
    worker.handle(answer)
    assert worker.base == base
    reference = _sampler(loaded)
    reference.feed([f"wait{loaded.codec.wait_limit}", *PHRASE, "wait24"])
    assert torch.allclose(worker.sampler.logits, reference.logits, atol=1e-5)
    assert worker.state.now == base + 60


def test_closing_mid_answer_ends_the_worker_without_finishing_the_answer(loaded):
    """The session is over while she waits to play ahead: the worker's thread ends at once (a thread
    left running in the model at exit aborted the process: "terminate called without an active exception")."""
    grid = Grid(anchor_time=30.0, anchor_step=36.0, bpm=120.0, sample_freq=12)  # her answer is due in 30 s
    worker = Worker(_sampler(loaded), lambda *e: None, lookahead=0.5, clock=Clock(0.0))
    worker.start()
    worker.submit(_feed(loaded, PHRASE, 80, 0.0, 36))
    worker.submit(_answer(grid, start=48, steps=48))
    deadline = time.monotonic() + 10
    while worker._played is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert worker._played is not None, "the answer never began: the test proves nothing"
    worker.close(timeout=10.0)
    assert not worker._thread.is_alive() and worker.error is None
