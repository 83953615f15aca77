"""The player's notes into the model's token stream: keys and pedal, folded into the codec's range,
quantised to the session's grid, and a phrase heard again at its own tempo.

`PlayerWriter` turns key and pedal events into ids (codec/stream.py writes the tokens) in the
player's family (`live.part`: `p`, or `v` on a chamber model, folded at or above codec.violin_low): a key
folded onto a pitch another held key sounds does not strike it again, and with the sustain
pedal (as corpus preprocessing does) a released key's note sounds until the pedal lifts.
While a phrase's tempo is to be heard, the writer keeps its state at the phrase's start (the
mark), the phrase's raw events and the ids fed since; `requantise` estimates the phrase's
tempo and beat phase from its last ESTIMATE_SECONDS (clara_live.beat, as `live.tempo_method`
says: by default beat/choice.py) and writes the events again on that grid.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

from clara_live.beat.choice import estimate_tempo_chosen
from clara_live.beat.classic import estimate_tempo_classic
from clara_live.beat.tracker import TempoEstimate, estimate_tempo
from clara_live.codec.steps import fold
from clara_live.codec.stream import NotewiseStream, StreamState
from clara_live.codec.vocabulary import Vocabulary
from clara_live.live.commands import Feed
from clara_live.live.tempo import Grid, TempoKeeper, next_beat
from clara_live.music.notes import PIANO, VIOLIN

ESTIMATE_SECONDS = 12.0  # a phrase's tempo is heard from its last this many seconds of onsets


@dataclasses.dataclass
class Phrase:
    start_step: int
    last_step: int


class Saved(NamedTuple):
    """The writer's state (what re-quantising a phrase starts again from)."""

    stream: StreamState
    held_by: dict[int, set[int]]
    pedal: bool
    grid: Grid
    phrase: Phrase | None


class PlayerWriter:
    """The player's side of the token stream; see the module docstring."""

    def __init__(self, vocab: Vocabulary, tempo: TempoKeeper, family: str = PIANO) -> None:
        self.codec = vocab.codec
        self.stream = NotewiseStream(vocab, family)  # the player's part: `p`, or a chamber model's `v`
        # where a key is folded to: the token range, a `v` part at or above violin_low (as a corpus's solo line is)
        self.low = self.codec.violin_low if family == VIOLIN else self.codec.low_pitch
        self.tempo = tempo  # whose grid quantises the events
        self.pedal = False
        self.held_by: dict[int, set[int]] = {}  # folded pitch -> held keys sounding it
        self.phrase: Phrase | None = None
        self.mark: Saved | None = None  # the writer at the phrase's start, while its tempo is to be heard
        self.events: list[tuple[str, int, int, float]] = []  # the phrase's (kind, key or value, velocity, time)
        self.fed: list[int] = []  # the ids fed since the mark

    @property
    def now(self) -> int:
        """The stream's position in steps: the one step counter (the worker reads it in each command)."""
        return self.stream.now

    def skip_to(self, step: int) -> None:
        """The stream moved on to step by tokens the worker wrote (her answer, to its end or its stop)."""
        self.stream.now = step

    def due(self, step: int) -> list[int]:
        """Deferred note-offs due by step (a note released in the step it began)."""
        return self.stream.due(step)

    def step(self, t: float) -> int:
        """The grid step of an event at t: the nearest, never before the stream's position."""
        return max(self.stream.now, round(self.tempo.grid.step_at(t)))

    # --- events ---------------------------------------------------------------------------

    def on(self, key: int, t: float) -> list[int]:
        step = self.step(t)
        if self.phrase is None:
            self.phrase = Phrase(step, step)
        self.phrase.last_step = step
        pitch = self._fold(key)
        self.held_by.setdefault(pitch, set()).add(key)
        return self.stream.strike(pitch, step)

    def off(self, key: int, t: float) -> list[int]:
        pitch = self._fold(key)
        holders = self.held_by.get(pitch, set())
        holders.discard(key)
        if holders or pitch not in self.stream.sounding or (self.pedal and self.codec.sustain_pedal):
            return []  # still held by another key folded onto it, not ours, or held by the pedal
        return self._release([pitch], self.step(t))

    def pedal_to(self, down: bool, t: float) -> list[int]:
        self.pedal = down
        if not self.pedal and self.codec.sustain_pedal:
            released = [p for p in self.stream.sounding if not self.held_by.get(p)]
            # nothing to release, no tokens: during an answer the worker's stream is hers
            return self._release(released, self.step(t)) if released else []
        return []

    def record(self, kind: str, key: int, velocity: int, t: float) -> None:
        """Keep an event while the phrase may be quantised again."""
        if self.mark is not None:
            self.events.append((kind, key, velocity, t))

    def feeds(self, ids: list[int], velocity: int, t: float | None) -> list[Feed]:
        """The ids as a Feed (none if empty), kept while the phrase may be quantised again."""
        if not ids:
            return []
        if self.mark is not None:
            self.fed += ids
        return [Feed(tuple(ids), velocity, t, self.stream.now)]

    def begin_mark(self) -> None:
        """A phrase whose tempo is to be heard begins: keep the writer's state here."""
        self.mark = self.save()
        self.events, self.fed = [], []

    def forget_mark(self) -> None:
        """The phrase is over: nothing more to quantise again."""
        self.mark, self.events, self.fed = None, [], []

    def close_phrase(self, t: float) -> tuple[Phrase, int, list[int]]:
        """Close what still sounds at the phrase's end: (the phrase, its end step, the ids).
        The stream moves on to where its last note ends, not to t: the silence that ended the
        phrase is not written (a key still held, at a trigger, is closed at t)."""
        phrase, self.phrase = self.phrase, None
        assert phrase is not None
        step = self.step(t)
        stream = self.stream
        held = [p for p in stream.sounding if p not in stream.pending_offs]
        ids = stream.advance_to(step if held else max([stream.now, phrase.last_step, *stream.pending_offs.values()]))
        ids += stream.close_all()
        self.held_by.clear()  # keys still down (a trigger) no longer sound in the stream
        return phrase, step, ids

    # --- the phrase at its own tempo ---------------------------------------------------------

    def requantise(self, t: float, phrase: Phrase, step: int, tail: list[int], method: str
                   ) -> tuple[Phrase, int, tuple[Feed, ...]] | None:
        """The phrase since the mark heard at its own tempo (`tail`: the ids that closed it):
        None when the tempo is unclear (the grid stays); else the phrase, its end step and the
        Feeds that replace what was fed since the mark (none when the new grid quantises it
        exactly as the old one did: then the old grid stays). The writer is left at the phrase's
        end either way."""
        mark, events, fed = self.mark, self.events, self.fed + tail
        grid = self.tempo.grid
        onsets = [(te, velocity, key) for kind, key, velocity, te in events if kind == "on"]
        if mark is None or not onsets:
            return None
        # a long phrase is heard from its last ESTIMATE_SECONDS (an estimate's cost grows with its length;
        # the beat the player ends on is the one her answer goes on from)
        heard = [o for o in onsets if o[0] >= onsets[-1][0] - ESTIMATE_SECONDS]
        times, velocities = [te for te, _, _ in heard], [v for _, v, _ in heard]
        pitches = [key for _, _, key in heard]
        if method == "classic":
            estimate = estimate_tempo_classic(times, velocities, prior_bpm=grid.bpm)
        elif method == "learned":
            estimate = estimate_tempo(times, velocities, prior_bpm=grid.bpm, pitches=pitches)
        else:  # the session's tempo is a heard one (not the first guess): a second phrase seldom leaves it
            estimate = estimate_tempo_chosen(times, velocities, prior_bpm=grid.bpm, pitches=pitches,
                                             informed=self.tempo.source != "bpm")
        if estimate is None:
            return None
        if _same_beats(grid, estimate, onsets[0][0], onsets[-1][0]):
            return phrase, step, ()  # the player kept the session's beat: the grid they heard stays
        after = self.save()
        # the new grid: the estimated beats on the session's beats, the phrase's first note
        # about where it was (a beat at least after the mark, a pickup before its beat)
        sf, period = self.codec.sample_freq, estimate.period
        q = round((onsets[0][0] - estimate.beat_time) / period * sf)  # steps from the estimate's beat
        before, offset = divmod(q, sf)  # the beat at or before the first note, and the steps after it
        beat_step = max(next_beat(mark.stream.now, sf), phrase.start_step - (sf if offset else 0))
        self.load(mark._replace(grid=Grid(estimate.beat_time + before * period, float(beat_step), estimate.bpm, sf)))
        feeds: list[Feed] = []
        for kind, key, velocity, te in events:
            written = self.on(key, te) if kind == "on" else self.off(key, te) if kind == "off" \
                else self.pedal_to(key >= 64, te)
            if written:
                feeds.append(Feed(tuple(written), velocity, None, self.stream.now))
        new_phrase, new_step, ids = self.close_phrase(t)
        if ids:
            feeds.append(Feed(tuple(ids), 0, None, self.stream.now))
        if [x for f in feeds for x in f.ids] == fed:
            self.load(after)  # the same notes on the same steps: the grid the player heard stays
            return phrase, step, ()
        return new_phrase, new_step, tuple(feeds)

    # --- state --------------------------------------------------------------------------------

    def save(self) -> Saved:
        return Saved(self.stream.save(), {p: set(k) for p, k in self.held_by.items()}, self.pedal, self.tempo.grid,
                     None if self.phrase is None else dataclasses.replace(self.phrase))

    def load(self, saved: Saved) -> None:
        self.stream.load(saved.stream)
        self.pedal, self.tempo.grid = saved.pedal, saved.grid
        self.held_by = {p: set(k) for p, k in saved.held_by.items()}
        self.phrase = None if saved.phrase is None else dataclasses.replace(saved.phrase)

    def _release(self, pitches: list[int], step: int) -> list[int]:
        if self.phrase is not None and pitches:
            self.phrase.last_step = step
        return self.stream.release(pitches, step)

    def _fold(self, key: int) -> int:
        return fold(key, self.low, self.codec.high_pitch)


def _same_beats(grid: Grid, estimate: TempoEstimate, start: float, end: float) -> bool:
    """Whether the estimated beats from start to end all lie within a step of the grid's beats
    (a tempo heard within a hair of the grid's: re-quantising on it would only move the notes
    that sit on a step's edge, where a player's ms of jitter decide)."""
    sf = grid.sample_freq
    for beat in estimate.beats(start - estimate.period, end + estimate.period):
        offset = grid.step_at(float(beat)) % sf
        if min(offset, sf - offset) > 1.0:
            return False
    return True
