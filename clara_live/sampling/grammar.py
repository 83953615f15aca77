"""Grammar masks: which tokens may come next, whatever the model says.

A stream's state follows the tokens it has seen (prompt, player or sampled) and answers
`allowed()` with a boolean mask over the model's vocabulary. Notewise, the mask keeps the
codec's canonical order, so sampled music looks like the music the model was trained on:
in a step, note-offs come before note-ons and each ascend by (family, pitch); no `endp`
for a silent note or for one struck in this step (notes last at least one step); no `p`
for a sounding note; a wait shorter than the longest never follows another wait. It also
caps polyphony (all notes, and each family's own: `v` is one line, a voice's or a violin's,
so no `v` note is struck while another sounds unless sampling.polyphony_v allows a double
stop), closes a note held longer than max_note_quarters, strikes no note in the last
sixteenth before a phrase's end (it would be cut off at once), and guards against loops: an
onset set (the notes struck in one step) may not be struck more times in a row than
`max_repeats`, or than the longest such run the stream has heard (a player who repeats a
chord six times may hear it six times back). Chordwise, the mask allows only the rest token
that counts the notes just struck (the encoding fixes it), the next family's tokens in
chamber mode, chords within the polyphony cap (and their family's), no chord struck more
times in a row than the same loop guard allows, and never `<unk>`.

Every state offers at least one token: notewise a wait, or after a short wait an off or an
on; chordwise the rest token. No mask ever offers a style token (`style_chopin`): a style is
fed, never chosen, and feeding one leaves the state as it was.
"""

from __future__ import annotations

import copy
from collections import deque

import numpy as np

from clara_live.codec.tokens import Kind
from clara_live.codec.vocabulary import KINDS, Vocabulary
from clara_live.config import SamplingConfig

_ON, _OFF, _WAIT, _CHORD, _REST = (KINDS.index(k) for k in KINDS[:5])
_STYLE = KINDS.index(Kind.STYLE)
TOPS = 4  # top-line pitches a state keeps (sampling/motif.py's contexts need ORDER + 1)


def family_caps(families: tuple[str, ...], sampling: SamplingConfig) -> np.ndarray:
    """(families,) the most notes of each family sounding (notewise) or struck (chordwise) at once:
    sampling.polyphony_v for `v`, sampling.polyphony for the rest."""
    return np.array([sampling.polyphony_v if f == "v" else sampling.polyphony for f in families], dtype=np.int64)


class NotewiseState:
    """Sounding notes and the position inside the current step of one notewise stream."""

    def __init__(self, vocab: Vocabulary, sampling: SamplingConfig) -> None:
        self.vocab = vocab
        keys = len(vocab.on_id)
        self.polyphony = sampling.polyphony  # all families together
        self.caps = family_caps(vocab.families, sampling)  # each family's own
        self.max_steps = max(1, round(sampling.max_note_quarters * vocab.codec.sample_freq))
        self.limit = vocab.codec.wait_limit
        self.keys = np.arange(keys)
        self.sounding = np.zeros(keys, dtype=bool)
        self.onset = np.zeros(keys, dtype=np.int64)
        self.velocity = np.zeros(keys, dtype=np.int64)
        self.now = 0  # steps since the stream began
        self.last_off = -1  # highest key closed in this step
        self.last_on = -1  # highest key struck in this step
        self.after_short_wait = False
        self.horizon: int | None = None  # waits may not carry the stream past this step (a phrase's end)
        self.tail = max(1, vocab.codec.sample_freq // 4)  # no note begins this close to the horizon
        self.max_repeats = sampling.max_repeats  # the loop guard; 0 = off
        self.struck: list[int] = []  # keys struck in this step, ascending
        self.previous: tuple[int, ...] = ()  # the last step's onset set that had any
        self.run = 0  # how many times in a row `previous` has been struck
        self.longest_run = 0  # the longest such run heard in this stream
        self.tops: tuple[int, ...] = ()  # the top line: the highest pitch index of the last TOPS onset sets
        self.sets = 0  # onset sets closed in this stream

    def copy(self) -> NotewiseState:
        new = copy.copy(self)  # the vocabulary is shared; the arrays are this stream's own
        new.sounding, new.onset, new.velocity = self.sounding.copy(), self.onset.copy(), self.velocity.copy()
        new.struck = list(self.struck)
        return new

    @property
    def repeat_limit(self) -> int:
        return repeat_limit(self.max_repeats, self.longest_run)

    @property
    def step_top(self) -> int:
        """The highest pitch index struck in this step so far, -1 for none."""
        return max((k % self.vocab.codec.num_pitches for k in self.struck), default=-1)

    def _looping(self) -> bool:
        """Whether striking the previous onset set once more would pass the loop guard."""
        limit = self.repeat_limit
        return bool(limit) and self.run >= limit and len(self.previous) > 0

    def now_after(self, token_id: int) -> int:
        """The step the stream would be at after this token."""
        return self.now + (int(self.vocab.value[token_id]) if self.vocab.kind[token_id] == _WAIT else 0)

    def forced(self) -> int | None:
        """A token that must come next: the off of a note held too long, lowest first."""
        if self.last_on >= 0:
            return None  # ons have begun in this step; it closes at the next step's start
        overdue = self.sounding & (self.now - self.onset >= self.max_steps) & (self.keys > self.last_off)
        if overdue.any():
            return int(self.vocab.off_id[int(np.argmax(overdue))])
        return None

    def allowed(self) -> np.ndarray:
        vocab = self.vocab
        mask = np.zeros(len(vocab.tokens), dtype=bool)
        forced = self.forced()
        if forced is not None and forced >= 0:
            mask[forced] = True
            return mask
        looping = self._looping()
        # the loop guard: the step may not close on the onset set struck `limit` times already
        repeat = looping and tuple(self.struck) == self.previous
        if not self.after_short_wait and not repeat:
            waits = vocab.wait_ids
            if self.horizon is not None:
                waits = waits[vocab.value[waits] <= self.horizon - self.now]
            if self.sounding.any():  # nor past the step where a note sounding would be held too long
                waits = waits[vocab.value[waits] <= int(self.onset[self.sounding].min()) + self.max_steps - self.now]
            mask[waits] = True
        if self.last_on < 0:
            offs = vocab.off_id[self.sounding & (self.onset < self.now) & (self.keys > self.last_off)]
            mask[offs[offs >= 0]] = True
        if int(self.sounding.sum()) < self.polyphony:
            free = ~self.sounding & (self.keys > self.last_on)
            # a family at its cap strikes nothing: its line goes on only after a note's end
            full = self.sounding.reshape(len(self.caps), -1).sum(axis=1) >= self.caps  # (families,)
            free &= ~full[self.keys // self.vocab.codec.num_pitches]
            if looping and tuple(self.struck) == self.previous[:-1]:
                free[self.previous[-1]] = False  # ... nor strike the key that would complete it again
            ons = vocab.on_id[free]
            # no note struck just to be cut off at the phrase's end, unless nothing else may come
            if not (self.horizon is not None and self.horizon - self.now < self.tail and mask.any()):
                mask[ons[ons >= 0]] = True
        if not mask.any():  # only at or past the horizon with every note struck this step
            mask[vocab.wait_ids[:1]] = True
        return mask

    def update(self, token_id: int, velocity: int = 0) -> None:
        """Follow one token. Tokens outside the canonical order (a player's, say) are taken as
        the decoder takes them: an off for a silent note is ignored, an on re-strikes."""
        vocab = self.vocab
        kind = vocab.kind[token_id]
        if kind == _STYLE:
            return  # a condition, not music
        if kind == _WAIT:
            steps = int(vocab.value[token_id])
            self.now += steps
            self.last_off = self.last_on = -1
            self.after_short_wait = steps < self.limit
            self._close_step()
            return
        self.after_short_wait = False
        key = int(vocab.key[token_id])
        if kind == _OFF:
            self.sounding[key] = False
            self.last_off = max(self.last_off, key)
        elif kind == _ON:
            self.sounding[key] = True
            self.onset[key] = self.now
            self.velocity[key] = velocity
            self.last_on = max(self.last_on, key)
            self.struck.append(key)

    def _close_step(self) -> None:
        """A wait ends the step: count its onset set into the run of identical ones."""
        if not self.struck:
            return
        self.tops = (*self.tops, self.step_top)[-TOPS:]
        self.sets += 1
        struck = tuple(sorted(self.struck))
        self.run = self.run + 1 if struck == self.previous else 1
        self.previous = struck
        self.longest_run = max(self.longest_run, self.run)
        self.struck = []

    def begin_with_a_note(self) -> None:
        """Let the next token not be a wait: a phrase starts on its first note, and a phrase
        that is repeated then never joins its own leading wait onto its trailing one."""
        self.after_short_wait = True

    def close_all(self) -> list[int]:
        """The tokens that close every sounding note, in canonical order: the offs, ascending,
        after the shortest wait when this step has struck a note or closed a higher one (an
        off may follow neither, and a note lasts at least one step)."""
        keys = np.flatnonzero(self.sounding)
        offs = [int(self.vocab.off_id[k]) for k in keys]
        if len(keys) and (self.last_on >= 0 or keys[0] < self.last_off):
            waits = self.vocab.wait_ids
            return [int(waits[np.argmin(self.vocab.value[waits])]), *offs]
        return offs


class ChordwiseState:
    """Recent strikes and the next family of one chordwise stream."""

    def __init__(self, vocab: Vocabulary, sampling: SamplingConfig) -> None:
        self.vocab = vocab
        codec = vocab.codec
        self.polyphony = sampling.polyphony
        self.caps = family_caps(vocab.families, sampling)  # ... a chord of `v` at most polyphony_v notes
        self.window = codec.rest_window
        self.cap = codec.rest_cap
        self.recent = [deque(maxlen=codec.rest_window) for _ in vocab.families]
        self.next_family = 0
        self.now = 0  # complete steps since the stream began
        self.horizon: int | None = None  # unused by the mask: every chordwise token is one step
        self.max_repeats = sampling.max_repeats  # the loop guard, per family; 0 = off
        self.previous = [-1] * len(vocab.families)  # each family's last chord token
        self.run = [0] * len(vocab.families)
        self.longest_run = 0
        self.step_top = -1  # the highest pitch index struck in this step so far, -1 for none
        self.tops: tuple[int, ...] = ()  # the top line, as NotewiseState's
        self.sets = 0

    def copy(self) -> ChordwiseState:
        new = copy.copy(self)
        new.recent = [deque(r, maxlen=r.maxlen) for r in self.recent]
        new.previous, new.run = list(self.previous), list(self.run)
        return new

    def now_after(self, token_id: int) -> int:
        """The number of complete steps after this token."""
        family = int(self.vocab.family[token_id])
        last = len(self.vocab.families) - 1
        return self.now + (1 if family < 0 or family >= last or self.next_family == last else 0)

    def forced(self) -> int | None:
        return None

    def allowed(self) -> np.ndarray:
        vocab = self.vocab
        mask = np.zeros(len(vocab.tokens), dtype=bool)
        f = self.next_family
        chords = vocab.chord_ids[f]
        mask[chords[vocab.value[chords] <= min(self.polyphony, int(self.caps[f]))]] = True
        limit = repeat_limit(self.max_repeats, self.longest_run)
        if limit and self.run[f] >= limit and self.previous[f] >= 0:
            mask[self.previous[f]] = False  # the loop guard
        rest = vocab.rest_id.get((f, min(sum(self.recent[f]), self.cap)))
        if rest is not None:
            mask[rest] = True
        if not mask.any():
            mask[list(vocab.rest_id.values())] = True
        return mask

    def update(self, token_id: int, velocity: int = 0) -> None:  # noqa: ARG002 - same signature as notewise
        vocab = self.vocab
        kind = vocab.kind[token_id]
        if kind == _STYLE:
            return  # a condition, not a step
        family = int(vocab.family[token_id])
        if kind not in (_CHORD, _REST) or family < 0:  # <unk>: a silent step of its own
            for recent in self.recent:
                recent.append(0)
            self._advance(len(vocab.families))
            return
        if family < self.next_family:  # a family at or before the last one starts a new step
            for f in range(self.next_family, len(vocab.families)):
                self.recent[f].append(0)
            self._advance(len(vocab.families))
        self.recent[family].append(int(vocab.value[token_id]) if kind == _CHORD else 0)
        if kind == _CHORD:
            self.step_top = max(self.step_top, int(vocab.top[token_id]))
            self.run[family] = self.run[family] + 1 if token_id == self.previous[family] else 1
            self.previous[family] = int(token_id)
            self.longest_run = max(self.longest_run, self.run[family])
        self._advance(family + 1)

    def _advance(self, family: int) -> None:
        if family >= len(self.vocab.families):
            self.now += 1
            self.next_family = 0
            if self.step_top >= 0:
                self.tops = (*self.tops, self.step_top)[-TOPS:]
                self.sets += 1
                self.step_top = -1
        else:
            self.next_family = family

    def begin_with_a_note(self) -> None:
        pass  # every chordwise token is a step of its own

    def close_all(self) -> list[int]:
        return []


def repeat_limit(max_repeats: int, longest_run: int) -> int:
    """The loop guard: the most times in a row a note, chord or onset set may be struck, the
    configured limit or the longest run the stream has heard (0: no guard)."""
    return max(max_repeats, longest_run) if max_repeats else 0


def new_state(vocab: Vocabulary, sampling: SamplingConfig) -> NotewiseState | ChordwiseState:
    return (NotewiseState if vocab.coder.streams_events else ChordwiseState)(vocab, sampling)
