"""Notewise: Clara's event encoding (`p28 endp28 wait6`), with her bugs fixed.

Inside a step, note-offs come before note-ons and pitches ascend (piano family first), so
the same notes always give the same tokens; a re-struck note is closed before it sounds
again. Decoding accepts any sequence of the grammar's tokens and always yields paired notes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

from clara_live.codec.tokens import Grammar, Kind
from clara_live.config import CodecConfig
from clara_live.music.notes import StepNote, normalise

TOUCH_UNKNOWN = -1  # a piece array's velocity for a note-on whose touch is not known (model/touch.py)


class Touch(NamedTuple):
    """How a note was struck: its velocity (1..127) and its onset's offset from its step, in steps
    (-0.5 <= offset < 0.5)."""

    velocity: int
    offset: float


def wait_tokens(steps: int, limit: int) -> list[str]:
    """The waits that move a stream on by `steps` (none for 0 or less): the longest wait
    repeated, then the rest, as the encoder writes a silence."""
    if steps <= 0:
        return []
    tokens = [f"wait{limit}"] * (steps // limit)
    if steps % limit:
        tokens.append(f"wait{steps % limit}")
    return tokens


class NotewiseCodec:
    """One token an event: a note's start, a note's end, a wait. What the rest of Clara asks of an
    encoding (`codec.make_codec`) are these attributes, never its name:

    - `streams_events`: its tokens are events a stream can take one at a time (a live session, a
      player's note fed as it comes, touch at each note-on, a vocabulary grown by new tokens,
      transposition token by token);
    - `unknown_token`: the token a corpus writes for what the vocabulary lacks (None: it lacks nothing);
    - `silence(steps)`: the tokens of a silence that long, to prime a model with."""

    streams_events = True
    unknown_token: str | None = None

    def __init__(self, config: CodecConfig) -> None:
        self.config = config
        self.grammar = Grammar(config)

    def silence(self, steps: int) -> list[str]:
        return wait_tokens(steps, self.config.wait_limit)

    def encode(self, notes: Iterable[StepNote]) -> list[str]:
        """Tokens for notes on the step grid (as made by steps.to_steps)."""
        return self.encode_touch(notes)[0]

    def encode_touch(self, notes: Iterable[StepNote]) -> tuple[list[str], list[Touch]]:
        """Tokens for notes on the step grid, and the touch of each note-on token, in order."""
        low = self.config.low_pitch
        events = []
        for n in normalise(notes):
            events.append((n.end, 0, n.family, n.pitch - low, 0, 0.0))
            events.append((n.start, 1, n.family, n.pitch - low, n.velocity, n.offset))
        events.sort()
        limit = self.config.wait_limit
        tokens: list[str] = []
        touch: list[Touch] = []
        now = 0
        for step, on, family, index, velocity, offset in events:
            if step > now:
                tokens += wait_tokens(step - now, limit)
                now = step
            if on:
                tokens.append(f"{family}{index}")
                touch.append(Touch(velocity, offset))
            else:
                tokens.append(f"end{family}{index}")
        return tokens, touch

    def decode(self, tokens: Iterable[str], velocity: int | None = None,
               touch: Sequence[Touch] | None = None) -> list[StepNote]:
        """Notes for any token sequence; ValueError names the first token that is not one.

        An `endp` for a silent note is ignored, a `p` for a sounding note closes it first (a
        second `p` in the same step is ignored), a note closed in the step it began lasts one
        step, and notes still open at the end are closed there. Every note has `velocity` (the
        codec's by default), or with `touch` the velocity and offset of its note-on token (one
        per note-on token, in order; a note-on beyond them takes `velocity`).
        """
        velocity = velocity or self.config.velocity
        low = self.config.low_pitch
        parse = self.grammar.parse
        now = 0
        sounding: dict[tuple[str, int], tuple[int, Touch]] = {}  # (family, index) -> onset step, touch
        notes: list[StepNote] = []
        struck = 0
        flat = Touch(velocity, 0.0)
        for position, text in enumerate(tokens):
            try:
                token = parse(text)
            except ValueError as exc:
                raise ValueError(f"token {position + 1}: {exc}") from None
            if token.kind is Kind.WAIT:
                now += token.value
                continue
            if token.kind is Kind.STYLE:
                continue  # a condition, not music
            key = (token.family, token.value)
            this = flat
            if token.kind is Kind.ON:
                this = touch[struck] if touch is not None and struck < len(touch) else flat
                struck += 1
            held = sounding.pop(key, None)
            if held is not None:
                onset, how = held
                if token.kind is Kind.ON and onset == now:
                    sounding[key] = held  # struck twice in one step: one note
                    continue
                notes.append(StepNote(onset, max(now, onset + 1), token.value + low, how.velocity, token.family,
                                      how.offset))
            if token.kind is Kind.ON:
                sounding[key] = (now, this)
        end = now
        for (family, index), (onset, how) in sounding.items():
            notes.append(StepNote(onset, max(end, onset + 1), index + low, how.velocity, family, how.offset))
        return normalise(notes)

    def vocabulary(self, chord_counts: dict[str, int] | None = None) -> list[str]:
        return self.grammar.fixed_vocabulary()
