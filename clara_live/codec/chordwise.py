"""Chordwise: one token per step per instrument family, naming the pitches struck in it.

A chord token is the family prefix plus one character per pitch of the range (`1` struck
in this step). A step where the family strikes nothing is a rest token carrying how many
notes it struck in the rest_window steps before, so the model still feels the texture;
every count up to rest_cap has its own token (Clara's lowercasing merged 26-51 onto 0-25).
Decoding gives exactly the pitches a chord names (Clara's decoder shifted them a semitone).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from clara_live.codec.tokens import UNK, Grammar, Kind, Token
from clara_live.config import CodecConfig
from clara_live.music.notes import StepNote, normalise


class ChordwiseCodec:
    """One token a step and family: the chord it strikes or a rest. Its vocabulary is the corpus's
    frequent chords, the rest `<unk>`; a stream of it cannot take one note at a time. The attributes
    the rest of Clara asks are NotewiseCodec's."""

    streams_events = False
    unknown_token: str | None = UNK

    def __init__(self, config: CodecConfig) -> None:
        self.config = config
        self.grammar = Grammar(config)

    def silence(self, steps: int) -> list[str]:
        families = self.grammar.families
        return [str(Token(Kind.REST, family, 0)) for _ in range(max(steps, 0)) for family in families]

    def encode(self, notes: Iterable[StepNote]) -> list[str]:
        """Tokens for notes on the step grid, from step 0 to the last onset."""
        cfg = self.config
        notes = normalise(notes)
        if not notes:
            return []
        families = self.grammar.families
        steps = notes[-1].start + 1
        struck = np.zeros((steps, len(families), cfg.num_pitches), dtype=np.uint8)
        for n in notes:
            struck[n.start, families.index(n.family), n.pitch - cfg.low_pitch] = 1
        counts = struck.sum(axis=2, dtype=np.int64)  # (steps, families)
        before = np.cumsum(counts, axis=0) - counts  # notes struck in all earlier steps
        window = before - np.vstack([np.zeros((cfg.rest_window, len(families)), np.int64), before])[:steps]
        window = np.minimum(window, cfg.rest_cap)
        chars = (struck + ord("0")).tobytes()
        width = cfg.num_pitches
        tokens = []
        for step in range(steps):
            for f, family in enumerate(families):
                if counts[step, f]:
                    offset = (step * len(families) + f) * width
                    tokens.append(family + chars[offset:offset + width].decode("ascii"))
                else:
                    tokens.append(f"{family}rest{window[step, f]}")
        return tokens

    def decode(self, tokens: Iterable[str], velocity: int | None = None) -> list[StepNote]:
        """Notes for any token sequence; ValueError names the first token that is not one.

        A token for a family at or before the previous token's family starts a new step
        (`<unk>` is a silent step of its own). A note sounds until its family strikes again,
        at most chord_hold quarter notes.
        """
        cfg = self.config
        velocity = velocity or cfg.velocity
        families = self.grammar.families
        hold = max(1, round(cfg.chord_hold * cfg.sample_freq))
        step, previous = -1, len(families)
        onsets: list[tuple[int, str, int]] = []
        for position, text in enumerate(tokens):
            try:
                token = self.grammar.parse(text)
            except ValueError as exc:
                raise ValueError(f"token {position + 1}: {exc}") from None
            if token.kind is Kind.STYLE:
                continue  # a condition, not a step
            order = families.index(token.family) if token.family else 0
            if token.kind is Kind.UNK or order <= previous:
                step += 1
            previous = len(families) if token.kind is Kind.UNK else order
            if token.kind is Kind.CHORD:
                onsets += [(step, token.family, i) for i, c in enumerate(token.bits) if c == "1"]
        notes = []
        for family in families:
            strikes = sorted({s for s, f, _ in onsets if f == family})
            following = dict(zip(strikes, strikes[1:], strict=False))
            for s, f, index in onsets:
                if f == family:
                    end = min(following.get(s, s + hold), s + hold)
                    notes.append(StepNote(s, end, index + cfg.low_pitch, velocity, family))
        return normalise(notes)

    def vocabulary(self, chord_counts: dict[str, int] | None = None) -> list[str]:
        """The fixed tokens (`<unk>`, rests) then the given chords, most frequent first (ties in
        token order, so the vocabulary is reproducible). The corpus builder passes only the
        train chords seen at least corpus.chord_min_count times."""
        chords = sorted((chord_counts or {}).items(), key=lambda kv: (-kv[1], kv[0]))
        return self.grammar.fixed_vocabulary() + [c for c, _ in chords if c != UNK]
