"""A model's vocabulary read through the codec's grammar: the one token <-> id mapping.

Every part that turns tokens into ids or ids back into music (the model's evaluation, the
sampler and its masks, the live session and worker, the judges, the corpus reader) asks a
`Vocabulary`; none builds its own dict or parses a token's spelling. Arrays per id (kind,
pitch key, value, family, top note) make the sampler's masks fast.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from clara_live.codec import make_codec
from clara_live.codec.notewise import wait_tokens
from clara_live.codec.tokens import UNK, Kind, transposed
from clara_live.config import CodecConfig

KINDS = (Kind.ON, Kind.OFF, Kind.WAIT, Kind.CHORD, Kind.REST, Kind.UNK, Kind.STYLE)  # new kinds go last


class Vocabulary:
    """A model's tokens (in id order) for one codec configuration."""

    def __init__(self, tokens: Sequence[str], codec: CodecConfig) -> None:
        self.tokens = list(tokens)
        self.index = {t: i for i, t in enumerate(self.tokens)}
        self.codec = codec
        self.coder = make_codec(codec)  # what the encoding can do (streams_events, unknown_token, silence)
        self.grammar = grammar = self.coder.grammar
        self.families = grammar.families
        self.unknown: int | None = self.index.get(UNK)  # the id of <unk>, if the vocabulary has one
        size = len(self.tokens)
        self.kind = np.full(size, -1, dtype=np.int8)  # position in KINDS, -1 for a token the grammar lacks
        self.key = np.full(size, -1, dtype=np.int64)  # notewise on/off: family rank * num_pitches + pitch index
        self.value = np.zeros(size, dtype=np.int64)  # wait steps, rest count, chord note count
        self.family = np.full(size, -1, dtype=np.int64)
        self.top = np.full(size, -1, dtype=np.int64)  # the highest pitch index a note-on or chord strikes, else -1
        self.parsed: list = [None] * size  # each id's Token, None where the grammar cannot read it
        for i, text in enumerate(self.tokens):
            try:
                token = grammar.parse(text)
            except ValueError:
                continue  # a token this grammar cannot name (a notewise corpus's <unk>) is never produced
            self.parsed[i] = token
            self.kind[i] = KINDS.index(token.kind)
            self.family[i] = self.families.index(token.family) if token.family else -1
            if token.kind in (Kind.ON, Kind.OFF):
                self.key[i] = self.family[i] * codec.num_pitches + token.value
                if token.kind is Kind.ON:
                    self.top[i] = token.value
            elif token.kind in (Kind.WAIT, Kind.REST):
                self.value[i] = token.value
            elif token.kind is Kind.CHORD:
                self.value[i] = token.bits.count("1")
                self.top[i] = token.bits.rindex("1")
        keys = len(self.families) * codec.num_pitches
        self.on_id = np.full(keys, -1, dtype=np.int64)
        self.off_id = np.full(keys, -1, dtype=np.int64)
        for i in np.flatnonzero(self.kind == KINDS.index(Kind.ON)):
            self.on_id[self.key[i]] = i
        for i in np.flatnonzero(self.kind == KINDS.index(Kind.OFF)):
            self.off_id[self.key[i]] = i
        self.wait_ids = np.flatnonzero(self.kind == KINDS.index(Kind.WAIT))
        self.rest_id = {(int(self.family[i]), int(self.value[i])): int(i)
                        for i in np.flatnonzero(self.kind == KINDS.index(Kind.REST))}
        self.chord_ids = [np.flatnonzero((self.kind == KINDS.index(Kind.CHORD)) & (self.family == f))
                          for f in range(len(self.families))]
        self.style_ids = {self.parsed[i].name: int(i) for i in np.flatnonzero(self.kind == KINDS.index(Kind.STYLE))}

    def __len__(self) -> int:
        return len(self.tokens)

    def ids(self, tokens: Iterable[str], where: str, unknown: bool = False) -> np.ndarray:
        """Tokens to ids. A token outside the vocabulary becomes <unk> when `unknown` is asked
        for and the vocabulary has one; otherwise it is a ValueError naming `where` and the token."""
        unk = self.unknown if unknown else None
        tokens = tokens if isinstance(tokens, Sequence) else list(tokens)
        ids = np.empty(len(tokens), dtype=np.int64)
        for i, token in enumerate(tokens):
            index = self.index.get(token, unk)
            if index is None:
                raise ValueError(f"{where}: token {i + 1} {token!r} is not in the model's vocabulary")
            ids[i] = index
        return ids

    def text(self, ids: Iterable[int]) -> list[str]:
        """Ids back to tokens."""
        return [self.tokens[i] for i in ids]

    def style_id(self, name: str) -> int | None:
        """The id of the token that opens a piece in style `name` ("chopin", as corpus.style names
        it), or None where the vocabulary has none (an unknown style means no token)."""
        return self.style_ids.get(name)

    def without_styles(self, ids: np.ndarray) -> np.ndarray:
        """A piece's ids with its style token left out: the music alone (for a judge, which must
        not read the composer off the token that names it)."""
        return ids[self.kind[ids] != KINDS.index(Kind.STYLE)] if self.style_ids else ids

    def strikes_outside(self, family: str) -> np.ndarray:
        """(vocab,) bool: the tokens that strike a note of any family but `family` (note-ons, chords):
        what a part that plays only `family` may not choose (`Sampler.forbid`). ValueError for a
        family the vocabulary lacks."""
        if family not in self.families:
            raise ValueError(f"family {family!r}: the vocabulary's families are {', '.join(self.families)}")
        strikes = (self.kind == KINDS.index(Kind.ON)) | (self.kind == KINDS.index(Kind.CHORD))
        return strikes & (self.family >= 0) & (self.family != self.families.index(family))

    def pitch_of(self, token_id: int) -> int | None:
        """The MIDI pitch a note-on or note-off token names (any family), else None."""
        key = int(self.key[token_id])
        return None if key < 0 else key % self.codec.num_pitches + self.codec.low_pitch

    def waits(self, steps: int) -> list[int]:
        """The ids of the waits that move a stream on by `steps` (none for 0 or less), as the codec writes them."""
        return self.ids(wait_tokens(steps, self.codec.wait_limit), "a wait").tolist()

    def shifted(self, semitones: int) -> np.ndarray:
        """Every id's id once the music is moved by `semitones`: notes and chords move, waits, rests and
        <unk> stay. -1 where a note would leave the pitch range or its moved token is not in the
        vocabulary; a chord never seen in that key becomes <unk> (-1 without one)."""
        unk = -1 if self.unknown is None else self.unknown
        table = np.full(len(self.tokens), -1, dtype=np.int64)
        for i, token in enumerate(self.parsed):
            if token is None:  # a token the grammar cannot read (a notewise corpus's <unk>) stays itself
                table[i] = i
                continue
            moved = transposed(token, semitones, self.codec.num_pitches)
            if moved is not None:
                table[i] = self.index.get(str(moved), unk if token.kind is Kind.CHORD else -1)
        return table


def move_ids(ids: np.ndarray, table: np.ndarray) -> np.ndarray:
    """A piece's ids moved through a `Vocabulary.shifted` table; a note moved out of range is dropped
    with its end (both its tokens map to -1), as the keyboard would not have it."""
    moved = table[ids]
    return moved[moved >= 0]
