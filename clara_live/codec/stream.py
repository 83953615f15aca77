"""A notewise token stream written as notes happen: the live player's notes, token by token.

`NotewiseStream` holds the stream's position (`now`, in steps) and its sounding notes, and
writes ids in a model's vocabulary: `strike` and `release` at a step, `advance_to` a step,
`close_all`. It writes what the offline codec (codec/notewise.py) writes for the same notes:
waits of at most wait_limit steps; a note lasts at least one step, so a note released in the
step it began is closed a step later (its off deferred); a note struck again while it
sounds is closed first. Pitches are MIDI pitches already inside the codec's range. A stream
writes one family's notes (`p` unless told: a chamber model's `v` for a violin or voice part).
"""

from __future__ import annotations

from typing import NamedTuple

from clara_live.codec.vocabulary import Vocabulary
from clara_live.music.notes import PIANO


class StreamState(NamedTuple):
    """Where a stream stands (what `save` returns and `load` returns to)."""

    now: int
    sounding: dict[int, int]
    pending_offs: dict[int, int]


class NotewiseStream:
    """One notewise token stream over a model's vocabulary; see the module docstring."""

    def __init__(self, vocab: Vocabulary, family: str = PIANO) -> None:
        if not vocab.coder.streams_events:
            raise ValueError(f"a token stream takes one event a token, and {vocab.codec.encoding} does not")
        if family not in vocab.families:
            raise ValueError(f"family {family!r}: the vocabulary's families are {', '.join(vocab.families)}")
        self.vocab = vocab
        self.family = family
        self._first = vocab.families.index(family) * vocab.codec.num_pitches - vocab.codec.low_pitch  # key of pitch 0
        self.now = 0  # the stream's position, in steps
        self.sounding: dict[int, int] = {}  # pitch -> onset step
        self.pending_offs: dict[int, int] = {}  # pitch -> the step its off is due (it began in the step released)

    def strike(self, pitch: int, step: int) -> list[int]:
        """Strike pitch at step (at least now): the waits there, then its note-on. Struck twice
        in one step it is one note; struck again while it sounds, it is closed first."""
        ids = self.advance_to(step)
        onset = self.sounding.get(pitch)
        self.pending_offs.pop(pitch, None)
        if onset != step:
            if onset is not None:
                ids.append(self._off(pitch))
            self.sounding[pitch] = step
            ids.append(self._on(pitch))
        return ids

    def release(self, pitches: list[int], step: int) -> list[int]:
        """Close these sounding notes at step; one that began at step closes a step later."""
        ids = self.advance_to(step)
        for pitch in sorted(pitches):
            if self.sounding.get(pitch) == step:
                self.pending_offs[pitch] = step + 1
            elif pitch in self.sounding:
                del self.sounding[pitch]
                ids.append(self._off(pitch))
        return ids

    def advance_to(self, step: int) -> list[int]:
        """Move the stream to step: waits, with the deferred offs due on the way at their own step."""
        ids: list[int] = []
        for due in sorted(set(self.pending_offs.values())):
            if due > step:
                break
            ids += self._waits(due)
            for pitch in sorted(p for p, d in self.pending_offs.items() if d == due):
                del self.pending_offs[pitch]
                if self.sounding.pop(pitch, None) is not None:
                    ids.append(self._off(pitch))
        return ids + self._waits(step)

    def due(self, step: int) -> list[int]:
        """The deferred offs due by step, and the waits to their step (nothing before one is due)."""
        if not self.pending_offs or min(self.pending_offs.values()) > step:
            return []
        return self.advance_to(min(self.pending_offs.values()))

    def close_all(self) -> list[int]:
        """Close every sounding note here, in pitch order (a deferred off with them)."""
        ids = [self._off(pitch) for pitch in sorted(self.sounding)]
        self.sounding.clear()
        self.pending_offs.clear()
        return ids

    def save(self) -> StreamState:
        return StreamState(self.now, dict(self.sounding), dict(self.pending_offs))

    def load(self, state: StreamState) -> None:
        self.now, self.sounding, self.pending_offs = state.now, dict(state.sounding), dict(state.pending_offs)

    def _waits(self, step: int) -> list[int]:
        ids = self.vocab.waits(step - self.now)
        self.now = max(self.now, step)
        return ids

    def _on(self, pitch: int) -> int:
        return int(self.vocab.on_id[self._first + pitch])

    def _off(self, pitch: int) -> int:
        return int(self.vocab.off_id[self._first + pitch])
