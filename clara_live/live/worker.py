"""The model worker: one thread that owns the sampler for the whole session.

It takes the session's commands in order: the player's tokens are fed the moment they
arrive (the hidden state is never re-primed), an answer is sampled a token at a time a
little ahead of when it sounds and its notes handed to the scheduler, and a stop rewinds
the model to what Clara actually played before it. A phrase's mark keeps the model at its
start, and a refeed (the phrase quantised again on the tempo heard in it) returns there and
reads it anew. The I/O threads never wait for it.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from clara_live.codec.notewise import Touch
from clara_live.codec.tokens import Kind, wait
from clara_live.live.accompany import ACCOMPANY_STYLE, Accompanist
from clara_live.live.budget import ChoiceBudget
from clara_live.live.commands import Accompany, Answer, Feed, Mark, Refeed, Sampling, Stop
from clara_live.live.midi import NOTE_OFF, NOTE_ON
from clara_live.live.touch import placed, touch_of
from clara_live.sampling.grammar import KINDS, NotewiseState
from clara_live.sampling.sampler import Sampler, Snapshot
from clara_live.sampling.search import Scorer, best_of, first_steps

_ON, _OFF, _WAIT = KINDS.index(Kind.ON), KINDS.index(Kind.OFF), KINDS.index(Kind.WAIT)


class Played(NamedTuple):
    """An answer in progress: the model before it, and the ids it has been fed and sampled since."""

    answer: Answer
    before: Snapshot
    start: int  # the model's step when the answer began (its lead wait included)
    ids: list[int]
    base: int  # the worker's base before the answer (the silence it skipped is given back if she is stopped first)
    offs: dict[int, int]  # pitch -> the model step of its last note-off in this answer (learned touch)
    first: list[int]  # the model step of the answer's first note-on, once struck


class _Quit(NamedTuple):
    pass


class Worker:
    """Feeds and samples on its own thread; `submit` never blocks.

    `schedule(time, message, track, tag)` receives Clara's notes (the scheduler's `add`);
    `latencies` holds the last seconds from a player's event to the model having read it.
    `part`, Clara's family on a chamber model (live.clara_part), keeps her to its notes (Sampler.forbid).
    """

    def __init__(self, sampler: Sampler, schedule: Callable[..., None], lookahead: float = 0.5,
                 clock: Callable[[], float] = time.monotonic, candidates: int = 1, scorer: Scorer | None = None,
                 accompany: bool = False, cancel: Callable[[int, float, bool], None] | None = None,
                 part: str | None = None, note_beats: float | None = None, wait_on: float = 0.0) -> None:
        if not sampler.vocab.coder.streams_events:
            raise ValueError("the live worker needs a model whose tokens are events (notewise)")
        self.sampler = sampler
        self.schedule = schedule
        self.lookahead = lookahead
        self.clock = clock
        self._busy = False
        self.candidates, self.scorer = candidates, scorer  # best-of-K answers, ranked by the scorer (the critic)
        self.budget = ChoiceBudget(candidates)
        self._last_judge = 0.0
        self.commands: queue.SimpleQueue = queue.SimpleQueue()
        self.latencies: deque[float] = deque(maxlen=2000)
        self.fed = 0  # player tokens fed
        self.error: BaseException | None = None
        self._played: Played | None = None
        self._pending: list = []  # commands read while an answer was being sampled
        self._mark: Snapshot | None = None  # the model at the current phrase's start
        self.refed = 0  # phrases fed again, re-quantised
        self.limit = sampler.vocab.codec.wait_limit
        if part is not None and len(sampler.vocab.families) > 1:  # a duet: she strikes only her part's notes
            sampler.forbid = sampler.vocab.strikes_outside(part)
        if accompany and not sampler.sampling.style:  # a melody over a piano part, as a styled model learned it
            sampler.sampling = dataclasses.replace(sampler.sampling, style=ACCOMPANY_STYLE)
        if sampler.logits is None:
            sampler.open_piece()  # the style asked for, if the model knows it
            sampler.feed([wait(self.limit)])  # the model needs one token to predict from
        # session step s is the model's step s + base: the session owns the count (each Feed says where its
        # stream stands, and base follows it); an answer lowers base by the pause it skips (from_step)
        self.base = self.state.now
        # live.mode accompany: her part planned as the player plays (live/accompany.py); `cancel` is the scheduler's
        self.accompanist = Accompanist(sampler, self.base, schedule, cancel, clock, note_beats,
                                       wait_on) if accompany else None
        self._thread = threading.Thread(target=self._run, name="clara-worker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def submit(self, command: Feed | Mark | Refeed | Answer | Accompany | Stop | Sampling) -> None:
        self.commands.put(command)

    def close(self, timeout: float = 2.0) -> None:
        self.commands.put(_Quit())
        if self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def chosen(self) -> list[int]:
        """How many candidates each answer could afford."""
        return self.budget.chosen

    @property
    def choices(self) -> list[tuple[float, float]]:
        """Per best-of-K answer: (seconds the choice took, seconds there were)."""
        return self.budget.choices

    @property
    def step(self) -> int:
        """Where the model's stream stands, in the session's steps."""
        return self.state.now - self.base

    @property
    def state(self) -> NotewiseState:  # the one stream's grammar state (restore replaces it)
        return self.sampler.states[0]

    def idle(self) -> bool:
        """Nothing left to do (for tests and benchmarks)."""
        return self.commands.empty() and not self._pending and not self._busy

    # --- the loop ------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                command = self._pending.pop(0) if self._pending else self.commands.get()
                self._busy = True
                try:
                    if not self.handle(command):
                        return
                finally:
                    self._busy = False
        except BaseException as exc:  # the session sees it, panics and ends
            self.error = exc

    def handle(self, command: object) -> bool:
        """Carry out one command; False to quit."""
        if isinstance(command, _Quit):
            return False
        accompanist = self.accompanist
        if accompanist is not None and isinstance(command, Feed | Accompany | Stop):
            if isinstance(command, Feed):
                self.fed += len(command.ids)
                if accompanist.hear(command):  # a release: she plans again from it
                    while self.commands.empty() and accompanist.more():
                        pass
            elif isinstance(command, Accompany):
                accompanist.accompany(command)
                if command.time is not None:
                    self.latencies.append(accompanist.latencies[-1])
                while self.commands.empty() and accompanist.more():  # the rest of her plan, a note-in never waits long
                    pass
            else:
                accompanist.stop(command)
            return True
        if isinstance(command, Feed):
            self._played = None  # the answer is over: the stream goes on from its end
            self._feed(command)
            if command.time is not None:
                self.latencies.append(self.clock() - command.time)
        elif isinstance(command, Mark):
            self._played = None  # the answer is over: the phrase begins where the stream stands
            self._mark = self.sampler.snapshot()
        elif isinstance(command, Refeed):
            self._refeed(command)
        elif isinstance(command, Sampling):
            self.sampler.sampling = command.config
            self.state.polyphony = command.config.polyphony
        elif isinstance(command, Stop):
            self._stop(command)
        elif isinstance(command, Answer):
            self._answer(command)
        return True

    def _feed(self, feed: Feed) -> None:
        self.sampler.feed_ids(feed.ids, feed.velocity)
        self.fed += len(feed.ids)
        self.base = self.state.now - feed.step

    def _refeed(self, refeed: Refeed) -> None:
        """Back to the phrase's mark, then its tokens as quantised again (velocities kept)."""
        if self._mark is None:
            raise RuntimeError("a refeed with no mark: the session and the model would disagree")
        self.sampler.restore(self._mark)
        ids = [token_id for feed in refeed.feeds for token_id in feed.ids]
        self.sampler.feed_ids(ids, [feed.velocity for feed in refeed.feeds for _ in feed.ids])  # one model call
        self.fed += len(ids)
        self.base = self.state.now - refeed.feeds[-1].step
        self.refed += 1

    # --- answers ---------------------------------------------------------------------------

    def _answer(self, answer: Answer) -> None:
        sampler = self.sampler
        self._played = played = Played(answer, sampler.snapshot(), self.state.now, [], self.base, {}, [])
        if answer.from_step is not None:  # the stream goes on from there into the answer: the pause is skipped
            self.base -= answer.start_step - max(answer.from_step, self.state.now - self.base)
        lead = sampler.vocab.waits(answer.start_step + self.base - self.state.now)
        sampler.feed_ids(lead)
        played.ids.extend(lead)
        if self.scorer is not None and self.candidates > 1:
            k = self.budget.affordable(answer.steps, answer.start_time - self.clock())
            self.chosen.append(k)
            if k > 1:
                started = self.clock()
                self._best_of(answer, k)
                # (seconds the choice took, seconds it had): the choice must fit before the answer is due
                self.choices.append((self.clock() - started, answer.start_time - started))
                return
        state = self.state  # the same object until the answer ends (only a stop restores)
        end = answer.end_step + self.base
        state.horizon = end
        state.begin_with_a_note()
        sampling, sampled = 0.0, 0
        try:
            while state.now < end:
                if not self._between_tokens(answer):
                    return  # stopped
                started = self.clock()
                ids = sampler.choose()
                finishing = state.now_after(int(ids[0])) >= end
                step = state.now
                sampler.advance(ids, score=False)
                sampling, sampled = sampling + self.clock() - started, sampled + 1
                self._play(int(ids[0]), step, answer, self._touch_of(int(ids[0])))
                if finishing:
                    break
        finally:
            state.horizon = None
            if sampled:  # what one stream costs, for choosing how many candidates fit next time
                self.budget.streamed(sampling, sampled, answer.steps)
        for token_id in state.close_all():
            step = self.state.now
            sampler.advance(np.array([token_id]), score=False)
            self._play(token_id, step, answer)  # offs

    def calibrate(self) -> None:
        """Measure what a choice costs here before the first one is due (the sampler is left as it was)."""
        self.budget.calibrate(self.sampler, self.scorer, wait(self.limit), self.clock)

    def _best_of(self, answer: Answer, k: int) -> None:
        """Sample k candidates at once, keep the scorer's favourite and play it whole."""
        sampler = self.sampler
        for state in sampler.states:
            state.begin_with_a_note()
        started = self.clock()
        tokens, _ = best_of(sampler, k, steps=answer.steps, scorer=self._judge_timed)
        self.budget.batched(k, self.clock() - started - self._last_judge, len(tokens), answer.steps)
        vocab = sampler.vocab
        step = answer.start_step + self.base
        ids = vocab.ids(tokens, "the chosen answer").tolist()
        strikes = sum(vocab.kind[i] == _ON for i in ids)
        touches = iter(sampler.made[0][len(sampler.made[0]) - strikes:] if sampler.learned_touch and strikes else ())
        for token_id in ids:
            self._play(token_id, step, answer, next(touches, None) if vocab.kind[token_id] == _ON else None)
            if vocab.kind[token_id] == _WAIT:
                step += int(vocab.value[token_id])

    def _judge_timed(self, sequences: list[list[str]], mean_logprob: np.ndarray) -> np.ndarray:
        started = self.clock()
        scores = self.scorer(sequences, mean_logprob)
        self._last_judge = self.clock() - started
        self.budget.judged(self._last_judge, sum(len(seq) for seq in sequences))
        return scores

    def _between_tokens(self, answer: Answer) -> bool:
        """Take commands that came in; wait while far enough ahead. False once stopped."""
        while True:
            try:
                command = self.commands.get_nowait()
            except queue.Empty:
                ahead = answer.grid.time_of(self.state.now - self.base) - self.clock()
                if ahead <= self.lookahead:
                    return True
                try:
                    command = self.commands.get(timeout=ahead - self.lookahead)
                except queue.Empty:
                    return True
            if isinstance(command, Stop) and command.id == answer.id:
                self._stop(command)
                return False
            if isinstance(command, _Quit):  # the session is over: no answer to finish
                self._pending.insert(0, command)
                return False
            if isinstance(command, Sampling):
                self.handle(command)
            else:
                self._pending.append(command)  # after the answer (the session stops it first)

    def _touch_of(self, token_id: int) -> Touch | None:
        return touch_of(self.sampler, token_id)

    def _play(self, token_id: int, step: int, answer: Answer, touch: Touch | None = None) -> None:
        """Schedule a note-on or off of the answer at its step's time. A note-on plays at the answer's
        velocity, or with its touch: its own velocity, and its onset moved by its offset, except the
        answer's first notes (on the player's beat) and a key struck again in the step it was
        released (never before its release)."""
        vocab = self.sampler.vocab
        played = self._played
        played.ids.append(token_id)
        kind = vocab.kind[token_id]
        if kind not in (_ON, _OFF):
            return
        pitch = vocab.pitch_of(token_id)
        if kind == _OFF:
            played.offs[pitch] = step
            self.schedule(answer.grid.time_of(step - self.base), (NOTE_OFF | answer.channel, pitch, 0), "clara",
                          answer.id)
            return
        if not played.first:
            played.first.append(step)
        t, velocity = placed(answer.grid, step - self.base, answer.velocity, touch, on_beat=step == played.first[0],
                             released=played.offs.get(pitch) == step)
        self.schedule(t, (NOTE_ON | answer.channel, pitch, velocity), "clara", answer.id)

    def _stop(self, stop: Stop) -> None:
        """Rewind to before the answer and feed what was played before stop.step, then close
        every note there: the model hears exactly what the listener heard."""
        played, self._played = self._played, None
        if played is None or played.answer.id != stop.id:
            return  # finished and superseded already
        sampler = self.sampler
        sampler.restore(played.before)
        if stop.step < played.answer.start_step:  # stopped before she began: the pause was heard after all
            self.base = played.base
        cut = stop.step + self.base - played.start
        heard = first_steps(played.ids, max(cut, 0), sampler.vocab)
        sampler.feed_ids(heard)
        sampler.feed_ids(sampler.vocab.waits(stop.step + self.base - self.state.now))
        closes = self.state.close_all()
        sampler.feed_ids(closes)
