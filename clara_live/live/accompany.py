"""Clara's accompaniment, on the model worker's thread (`live.mode: accompany`).

The player's melody and her part are one notewise stream. With a piano model both are piano notes
(`p`), as it learned music; with a chamber model (codec families p and v, as the joint model learned
a POP909 song's melody in v over its piano in p) the melody is read as v and she plays p. The worker
has read everything up to a committed step c (a `Snapshot`); since then it keeps the player's events
(from each `Feed`) and her plan, sampled with the player's future unknown from the player's latest
event at step s up to `Accompany.ahead` steps on, each note of it scheduled at its step's time on the
session's beat grid under one tag.

When the player's next note (or a release with no note: `hear`) comes at s', the worker returns to c
(or to the latest step of her plan that the player's events since c have not passed, a snapshot
taken as it began) and reads what happened up to s': her planned notes that sounded (step < s', due
by then), the player's events, in one step's canonical order (offs, then ons, ascending by family
and pitch: her notes under the melody come before the melody's note struck in the same step, as a
score's notes would be written). Her notes still sounding at s' go on sounding unless the new mask
forbids them. That point is committed, and she plans again from s'. Notochord's sub-event queries
and the Anticipatory Music Transformer's anticipation order the same question by time then by part;
here the step, family and pitch order the model learned decides, and in time the player comes first:
her note-ons sound YIELD after their step's time, so a melody note struck in the same step, heard
first, can still drop a planned note on its pitch.

What she may choose is data given to the sampler (`Sampler.forbid`): no note within BAND semitones of
the melody's register or beyond it (below the lowest of its recent notes; `above`: over the highest),
so never the pitch the melody holds, and no end of the melody's notes. The melody's own next tokens
are forbidden, their probability to the waits (`wait_on`), or with a chamber model and IMAGINE,
imagined: sampled as the model expects them, never played, never read again. A beat passing with no
player event carries the plan on from where it ends, without going back. A `Stop` (the player rested
for a bar) reads what she played up to its step, closes every sounding note there and cancels the
rest of her plan.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch

from clara_live.codec.tokens import Kind
from clara_live.live.commands import Accompany, Feed, Stop
from clara_live.live.midi import NOTE_OFF, NOTE_ON
from clara_live.live.touch import placed, touch_of
from clara_live.music.notes import PIANO, VIOLIN
from clara_live.sampling.grammar import KINDS, NotewiseState
from clara_live.sampling.sampler import Sampler, Snapshot

_ON, _OFF, _WAIT = KINDS.index(Kind.ON), KINDS.index(Kind.OFF), KINDS.index(Kind.WAIT)
BAND = 3  # semitones: she keeps at least this far clear of the melody's register (its next note may fall there)
# seconds her note-ons sound after their time: a melody note struck in the same step, heard first, can
# still drop hers before it sounds (its pitch may be one she planned: she cannot know the melody's next note)
YIELD = 0.008
# the style she accompanies in when none is asked for (a model that learned styles): POP909's, whose melody over
# its piano part is the accompaniment the joint model learned (valid, 16 songs, 3 seeds, against the piano model:
# pc cosine 0.756 / 0.799, density 2.08 / 2.73 x the real part's; with the piano style, Ode to Joy's pc cosine 0.58)
ACCOMPANY_STYLE = "pop"
TIMING = 0.010  # seconds her learned timing (touch) may move a note: she keeps to the player's grid (issue 26)
# a chamber model's plan imagines the melody going on (True) or forbids its tokens (False): joint1 after epoch 1,
# 16 valid songs, imagined / forbidden: pc cosine 0.618 / 0.684, density 1.70 / 2.37, her notes' median length
# 0.37 / 0.15 beats, loop share 0.040 / 0.043, doublings 1 / 0 (BENCHMARKS.md); a piano model never imagines
# (its notes in the melody's zone taken as the melody measured worse: pc cosine 0.51-0.60, loops 0.08-0.13)
IMAGINE = False
LEVEL_NOTES = 16  # with learned touch, her velocities are scaled so that the mean of her last this many ...
                  # ... lies at the session's level for her (a little under the player's): her accents kept


class Planned(NamedTuple):
    step: int  # the session's step
    token_id: int
    time: float  # when it is scheduled to sound (seconds, monotonic)
    velocity: int
    offset: float = 0.0  # its onset's offset from its step (steps; touch), as it sounds


class Accompanist:
    """Her part, planned and replanned on the worker's sampler; see the module docstring.

    `schedule(time, message, track, tag)` and `cancel(tag, after, close)` are the output scheduler's;
    `latencies` the seconds from a player's note in to her plan updated."""

    def __init__(self, sampler: Sampler, base: int, schedule: Callable[..., None],
                 cancel: Callable[[int, float, bool], None] | None,
                 clock: Callable[[], float] = time.monotonic, note_beats: float | None = None,
                 wait_on: float = 0.0) -> None:
        self.sampler, self.base = sampler, base  # the model's step is the session's step + base
        if note_beats is not None:  # her notes end after this many beats at most (live.accompany_max_note_beats)
            state = sampler.states[0]
            state.max_steps = min(state.max_steps, max(1, round(note_beats * sampler.vocab.codec.sample_freq)))
        self.schedule, self.cancel, self.clock = schedule, cancel, clock
        vocab = sampler.vocab
        self.pitch = np.full(len(vocab.tokens), -1, dtype=np.int64)  # MIDI pitch each note-on strikes
        for i in np.flatnonzero(vocab.kind == _ON):
            self.pitch[i] = vocab.pitch_of(int(i))
        self.released = np.full(len(vocab.tokens), -1, dtype=np.int64)  # MIDI pitch each note-off releases
        for i in np.flatnonzero(vocab.kind == _OFF):
            self.released[i] = vocab.pitch_of(int(i))
        # a chamber model (codec families p and v) learned a song's melody in v over its piano part in p: the
        # player's notes are read as v (`melody`: each id as the model hears it) and she plays p alone (`theirs`:
        # the tokens she may never choose). A piano model hears both parts as p.
        self.melody = np.arange(len(vocab.tokens))
        self.theirs = np.zeros(len(vocab.tokens), dtype=bool)
        if VIOLIN in vocab.families:
            self.melody = melody_ids(vocab, VIOLIN)
            self.theirs = (vocab.family >= 0) & (vocab.family != vocab.families.index(PIANO))
        self.committed = sampler.snapshot()
        self.at = 0  # the session step of the committed point
        self.heard: list[tuple[int, int, int]] = []  # the player's (step, id, velocity) since it
        self.plan: list[Planned] = []  # hers sampled since it
        self.pending: list[Planned] = []  # hers before it, still to sound when it was committed
        self.tag: int | None = None  # her current plan's, for the scheduler
        self.plans = 0
        self.current: Accompany | None = None
        self.end = 0  # the session step her plan reaches
        self.sounding: dict[int, int] = {}  # her notes sounding at the committed point: key -> MIDI pitch
        self.latencies: list[float] = []  # note in -> plan updated, on the worker's clock
        self.costs: list[float] = []  # ... the computing's part of it (perf_counter): what the fake clock cannot see
        self.cpu_costs: list[float] = []  # ... the same in this thread's CPU time (thread_time): without the waits
        # for a core that a loaded machine adds
        self.first_costs: list[float] = []  # note in -> her next note scheduled (perf_counter)
        # the sampler at each step her plan began since the committed point: (her notes before it, its session
        # step, the snapshot). A rewind goes back to the latest one the player's events and her kept notes
        # have not passed, and reads only what came after (reuse False: always to the committed point)
        self.marks: list[tuple[int, int, Snapshot]] = []
        self.reuse = True
        self.touches: deque[int] = deque(maxlen=LEVEL_NOTES)  # her last learned velocities
        # a step she reaches after a short wait, where the model expected the melody: with this chance she may
        # wait on (a second wait, not the codec's form: the replan reads the merged one) rather than be made to
        # act there, where the melody's probability can go only to her notes' ends and new notes. Piano model,
        # 16 valid songs: 0.9 gives density 1.27 x the real part's (0: 3.04) but pc cosine 0.70 (0.77), loop
        # share 0.049 (0.031); 1.0: 0.85, 0.62, 0.037 (BENCHMARKS.md); the chamber model's density stays ~3.
        # live.accompany_wait_on (0: never)
        self.wait_on = wait_on
        # the melody's next tokens imagined (sampled, never played) rather than forbidden: a chamber model only
        # (IMAGINE), as a piano model cannot tell her notes from the melody's but by register
        self.imagine = IMAGINE and bool(self.theirs.any())
        self.dream = np.zeros(len(vocab.tokens), dtype=bool)  # the tokens that are the melody's now
        self.dreamt = False  # a token of the melody imagined since the committed point (no mark after it holds)
        self.release = True  # plan again at a release of the player's (False: only at their notes)

    @property
    def state(self) -> NotewiseState:
        return self.sampler.states[0]

    def hear(self, feed: Feed) -> bool:
        """The player's tokens, laid on the session's steps (the feed's waits end at feed.step). A release
        with no note struck (`release`: on) is read at once and she plans again from it, so the note to come
        finds little to read; True then (the worker goes on sampling her plan)."""
        vocab = self.sampler.vocab
        step = feed.step - sum(int(vocab.value[i]) for i in feed.ids if vocab.kind[i] == _WAIT)
        released = []
        for i in feed.ids:
            if vocab.kind[i] == _WAIT:
                step += int(vocab.value[i])
            else:
                self.heard.append((step, int(self.melody[i]), feed.velocity))
                released.append(vocab.pitch_of(int(i)) if vocab.kind[i] == _OFF else None)
        if not self.release or self.current is None or not released or None in released:
            return False
        command = self.current._replace(step=feed.step, held=tuple(p for p in self.current.held if p not in released))
        self.current = command
        self.plans += 1
        self._rewind(feed.step, command.grid, self._forbid(command), (command.id << 16) + self.plans)
        self._limit(command)
        return True

    def accompany(self, command: Accompany) -> None:
        """Plan her part: again from the player's note at command.step, or on from the plan's end. At a
        note the plan is updated once the model has read it (her unsounded plan dropped, what happened
        replayed: `latencies`, `costs`), and her next note is sampled at once (`first_costs`); `more`
        samples the rest, a token at a time, while no other command waits."""
        started, cpu = time.perf_counter(), time.thread_time()
        carried = command.time is None and self.current is not None and self.current.id == command.id
        self.current = command
        self.end = command.step + command.ahead + 1  # the beat ahead itself: struck with the melody's next note
        if not carried:
            self.plans += 1
            self._rewind(command.step, command.grid, self._forbid(command), (command.id << 16) + self.plans)
        self._limit(command)
        if command.time is None:
            return
        self.latencies.append(self.clock() - command.time)
        self.costs.append(time.perf_counter() - started)
        self.cpu_costs.append(time.thread_time() - cpu)
        struck = len(self.plan)
        while self.more() and not any(self.sampler.vocab.kind[p.token_id] == _ON for p in self.plan[struck:]):
            pass
        self.first_costs.append(time.perf_counter() - started)

    def more(self) -> bool:
        """Sample one more token of the plan; False once it reaches its window's end (or she rests)."""
        state = self.state
        if self.current is None or state.now - self.base >= self.end:
            return False
        if state.after_short_wait and self.wait_on and not self.imagine and \
                float(torch.rand(1, generator=self.sampler.generator)) < self.wait_on:
            state.after_short_wait = False  # see `wait_on`
        # one temperature: drawn hot, the kind of event (sampling.event_temperature) gave her accompaniment more
        # notes out of the melody's key (8 valid songs, seed 1: pitch-class cosine 0.784 -> 0.644, notes 0.11 -> 0.18
        # beats long, density 3.21 -> 3.32), where it thickened the answers' texture as it should. No key pull
        # either: the melody's pitch classes pulled her into loops (8 valid songs, seeds 1 and 2: loop share
        # 0.035 / 0.017 -> 0.060 / 0.050; pitch-class cosine 0.784 / 0.763 -> 0.847 / 0.745)
        ids = self.sampler.choose(one_temperature=True, key_pull=False)
        token, step = int(ids[0]), state.now - self.base
        self.sampler.advance(ids, score=False)
        if self.dream[token]:
            self.dreamt = True  # the melody as she imagines it: heard by her plan, never played nor read again
        else:
            self._play(token, step, self.current)
        if self.reuse and not self.dreamt and self.sampler.vocab.kind[token] == _WAIT:  # a step begins: a place
            self.marks.append((len(self.plan), state.now - self.base, self.sampler.snapshot()))  # to go back to
        return state.now - self.base < self.end

    def planned(self, now: float) -> list[tuple[int, float, float | None]]:
        """Her plan's notes sounding or to sound after `now` (seconds, monotonic): (MIDI pitch, start, end;
        None while the plan holds no end), for the view. Safe to call from another thread (a copy is read)."""
        notes: dict[int, float] = {}
        out: list[tuple[int, float, float | None]] = []
        kind = self.sampler.vocab.kind
        for p in list(self.pending) + list(self.plan):
            pitch = self.sampler.vocab.pitch_of(p.token_id)
            if kind[p.token_id] == _ON:
                notes[pitch] = p.time
            elif pitch in notes and p.time > now:
                out.append((pitch, notes.pop(pitch), p.time))
            else:
                notes.pop(pitch, None)
        return out + [(pitch, start, None) for pitch, start in notes.items() if self.current is not None]

    def stop(self, stop: Stop) -> None:
        """She rests: what she played up to stop.step is read, every note of hers closed there, the rest dropped."""
        if self.current is None or self.current.id != stop.id:
            return
        self._rewind(stop.step, self.current.grid, np.ones(len(self.pitch), dtype=bool), self.tag, stop.time)
        self.sampler.feed_ids(self.state.close_all())  # the player's too, should any still sound
        self.committed = self.sampler.snapshot()
        self.current = None
        self.sampler.forbid = None

    # --- inside -------------------------------------------------------------------------------

    def _rewind(self, step: int, grid, forbid: np.ndarray, tag: int | None, now: float | None = None) -> None:
        """Back to the committed point, then what happened up to `step` read in one call and committed:
        her notes planned before it (those not yet sent are scheduled again under `tag`), her notes
        planned at it that the new mask allows (struck before the melody's in the step, lower), the
        player's events, and her notes sounding there that the mask forbids closed there."""
        sampler, vocab = self.sampler, self.sampler.vocab
        now = self.clock() if now is None else now
        if self.tag is not None and self.cancel is not None:
            self.cancel(self.tag, now, False)  # her plan not yet sent dropped; what sounds she closes herself
        old = self.tag
        self.tag = tag
        pending = self._pending(forbid, now)
        kept = self._kept(step, forbid, now)
        first_heard = min((h[0] for h in self.heard), default=step)
        start, position, snapshot = 0, self.at, self.committed
        for k, m, snap in reversed(self.marks):
            if m <= min(first_heard, step) and kept[:k] == self.plan[:k]:
                start, position, snapshot = k, m, snap
                break
        sounding = dict(self.sounding)  # key -> pitch
        events: list[tuple[int, int, int, int, int, float]] = []  # (step, 0 off / 1 on, key, id, velocity, offset)
        for index, p in enumerate(kept):
            kind, key = vocab.kind[p.token_id], int(vocab.key[p.token_id])
            if kind == _OFF:
                sounding.pop(key, None)
            else:
                sounding[key] = int(self.pitch[p.token_id])
            if index >= start:  # before it, the mark's snapshot has read it already
                events.append((p.step, int(kind == _ON), key, p.token_id, p.velocity, p.offset))
            if p.time > now and old is not None:  # dropped by the cancel: sent again under the new tag
                self.schedule(p.time, self._message(p.token_id, p.velocity), "clara", tag)
                pending.append(p)
        for p in self.plan:  # sent already (the player came late) but not kept: closed now (a stray off is dropped)
            if p.time <= now and vocab.kind[p.token_id] == _ON and p not in kept:
                self.schedule(now, self._message(int(vocab.off_id[vocab.key[p.token_id]]), 0), "clara", tag)
        for key in sorted(sounding):
            if forbid[vocab.on_id[key]]:  # under the melody no more, or its pitch: closed now
                off = int(vocab.off_id[key])
                events.append((step, 0, key, off, 0, 0.0))
                del sounding[key]
                self.schedule(now, self._message(off, 0), "clara", tag)
        later = [h for h in self.heard if h[0] > step]
        events += [(s, int(vocab.kind[i] == _ON), int(vocab.key[i]), i, v, 0.0) for s, i, v in self.heard if s <= step]
        sampler.restore(snapshot)
        ids: list[int] = []
        velocities: list[int] = []
        offsets: list[float] = []
        for s, _, _, i, v, o in sorted(events):
            waits = vocab.waits(s - position)
            position = max(position, s)
            ids += [*waits, i]
            velocities += [0] * len(waits) + [v]
            offsets += [0.0] * len(waits) + [o]
        waits = vocab.waits(step - position)
        sampler.feed_ids(ids + waits, velocities + [0] * len(waits), offsets + [0.0] * len(waits))
        self.committed, self.at, self.sounding = sampler.snapshot(), step, sounding
        self.heard, self.plan, self.marks, self.pending, self.dreamt = later, [], [], pending, False

    def _pending(self, forbid: np.ndarray, now: float) -> list[Planned]:
        """Her notes an earlier rewind committed that are still to sound (their step came before the player's
        event's, their time after its arrival), sent again under the new tag, as the cancel dropped them:
        but a note-on the new mask forbids (and its off), as `_kept` drops it; the model read it, and it
        never sounds. Returns those sent again."""
        pending, dropped = [], set()
        kind = self.sampler.vocab.kind
        for p in self.pending:
            pitch = self.sampler.vocab.pitch_of(p.token_id)
            if p.time <= now:
                continue
            if kind[p.token_id] == _ON and forbid[p.token_id]:
                dropped.add(pitch)
            elif kind[p.token_id] == _OFF and pitch in dropped:
                dropped.discard(pitch)
            else:
                self.schedule(p.time, self._message(p.token_id, p.velocity), "clara", self.tag)
                pending.append(p)
        return pending

    def _kept(self, step: int, forbid: np.ndarray, now: float) -> list[Planned]:
        """Her plan up to `step` that stands: what was sent, and what is still to sound before or at
        `step` unless the new mask forbids it (the player came early onto its pitch or under it: the
        note and its off are dropped)."""
        kept, dropped = [], set()
        kind = self.sampler.vocab.kind
        for p in self.plan:
            if p.step > step:
                break
            if kind[p.token_id] == _ON and (p.time > now or p.step == step) and forbid[p.token_id]:
                dropped.add(self.pitch[p.token_id])
                continue
            if kind[p.token_id] == _OFF and self.sampler.vocab.pitch_of(p.token_id) in dropped:
                dropped.discard(self.sampler.vocab.pitch_of(p.token_id))
                continue
            kept.append(p)
        return kept

    def _message(self, token_id: int, velocity: int) -> tuple[int, int, int]:
        vocab, channel = self.sampler.vocab, self.current.channel
        pitch = vocab.pitch_of(token_id)
        return (NOTE_ON | channel, pitch, velocity) if vocab.kind[token_id] == _ON else (NOTE_OFF | channel, pitch, 0)

    def _zone(self, command: Accompany) -> tuple[np.ndarray, np.ndarray]:
        """(note-ons, note-offs) within BAND of the melody's register or beyond it (over it: `above`)."""
        low, high = command.register
        pitch, released = self.pitch, self.released
        if command.above:
            return (pitch >= 0) & (pitch <= high + BAND), (released >= 0) & (released <= high + BAND)
        return pitch >= low - BAND, released >= low - BAND

    def _forbid(self, command: Accompany) -> np.ndarray:
        """The note-ons she may not strike now: in the melody's zone (`_zone`), its held pitches."""
        forbid = self._zone(command)[0].copy()
        for held in command.held:
            forbid |= self.pitch == held
        return forbid

    def _limit(self, command: Accompany) -> None:
        """What her plan may sample (`Sampler.forbid`) and which of its tokens are the melody's (`dream`).
        Imagining (`imagine`): the melody goes on as the model expects it, sampled and never played: a
        chamber model's melody family, a piano model's notes in the melody's zone; she may not strike in the
        zone (a piano model's notes there are the melody's). Otherwise the melody's tokens and the zone are
        forbidden, their probability to the waits."""
        ons, offs = self._zone(command)
        forbid = self._forbid(command)
        if not self.imagine:
            self.sampler.forbid, self.dream = forbid | offs | self.theirs, np.zeros_like(forbid)
        elif self.theirs.any():  # a chamber model: the melody's family is imagined, her own zone forbidden
            self.sampler.forbid, self.dream = forbid & ~self.theirs, self.theirs
        else:  # a piano model: what it plays in the zone is the melody
            self.sampler.forbid, self.dream = None, ons | offs

    def _play(self, token_id: int, step: int, command: Accompany) -> None:
        """Schedule a token of her plan: a note-off on its step, a note-on at the plan's velocity or with its
        touch (live/touch.py; struck with the player's note, on its beat). With touch her velocities keep
        their shape, scaled so that their recent mean is the session's level for her."""
        vocab = self.sampler.vocab
        kind = vocab.kind[token_id]
        if kind not in (_ON, _OFF):
            return
        t, velocity, offset = command.grid.time_of(step), 0, 0.0
        if kind == _ON:
            touch = touch_of(self.sampler, token_id)
            if touch is not None:
                self.touches.append(touch.velocity)
                level = command.velocity * len(self.touches) / sum(self.touches)
                touch = touch._replace(velocity=min(max(round(touch.velocity * level), 1), 127))
            off = vocab.off_id[vocab.key[token_id]]
            released = any(p.step == step and p.token_id == off for p in self.plan[-16:])
            t, velocity = placed(command.grid, step, command.velocity, touch, on_beat=step == command.step,
                                 released=released, within=TIMING)
            offset = (t - command.grid.time_of(step)) / command.grid.step_seconds
            t += YIELD
        self.plan.append(Planned(step, token_id, t, velocity, offset))
        self.schedule(t, self._message(token_id, velocity), "clara", self.tag)


def melody_ids(vocab, family: str) -> np.ndarray:
    """Every id as the melody's part plays it: a note-on or off moved to `family` (same pitch), others as they are."""
    ids = np.arange(len(vocab.tokens))
    rank, pitches = vocab.families.index(family), vocab.codec.num_pitches
    for kind, table in ((_ON, vocab.on_id), (_OFF, vocab.off_id)):
        for i in np.flatnonzero(vocab.kind == kind):
            ids[i] = table[rank * pitches + vocab.key[i] % pitches]
    return ids
