"""The token grammar, declared once and used three ways: encoding, robust decoding and
(later) the sampler's masks.

Notewise tokens:  `p{i}` note on, `endp{i}` note off (i = MIDI pitch - low_pitch; `v` for
the violin-like family in chamber mode), `wait{n}` advance n steps (1 <= n <= wait_limit).
Chordwise tokens: `p` + one character per pitch (`1` struck in this step, else `0`), or
`prest{n}` for a step with nothing struck, n = notes struck in the rest_window steps
before (capped at rest_cap); `<unk>` stands for a chord outside the vocabulary.
Both: `style_{name}` (`style_chopin`, `style_pop`: lower-case ASCII letters) opens a piece of
a corpus built with corpus.style. It is neither a note, a wait nor a rest: a condition the
model is given, never one it is asked to choose (the sampler's masks offer no style token).
"""

from __future__ import annotations

import enum
import re
from typing import NamedTuple

from clara_live.config import CodecConfig
from clara_live.music.notes import FAMILIES, PIANO

UNK = "<unk>"
PIANO_STYLE = "piano"  # the piano corpora's style (corpus/sources.py): the one a styled model opens with by default
STYLE_PREFIX = "style_"
_STYLE = re.compile(r"style_([a-z]+)")
_NUMBER = "0|[1-9][0-9]*"  # exactly as str(int) writes it: ASCII digits, no leading zeros


class Kind(enum.Enum):
    ON = "on"
    OFF = "off"
    WAIT = "wait"
    CHORD = "chord"
    REST = "rest"
    UNK = "unk"
    STYLE = "style"


class Token(NamedTuple):
    kind: Kind
    family: str = ""  # "p" or "v"; "" for waits and <unk>
    value: int = 0  # pitch index (on/off), steps (wait), count (rest)
    bits: str = ""  # chord: one character per pitch
    name: str = ""  # style: its name ("chopin")

    def __str__(self) -> str:
        if self.kind is Kind.ON:
            return f"{self.family}{self.value}"
        if self.kind is Kind.OFF:
            return f"end{self.family}{self.value}"
        if self.kind is Kind.WAIT:
            return f"wait{self.value}"
        if self.kind is Kind.REST:
            return f"{self.family}rest{self.value}"
        if self.kind is Kind.CHORD:
            return f"{self.family}{self.bits}"
        if self.kind is Kind.STYLE:
            return f"{STYLE_PREFIX}{self.name}"
        return UNK


def strike(pitch_index: int, family: str = PIANO) -> str:
    """The token that strikes pitch index `pitch_index` (MIDI pitch minus the codec's low_pitch): "p28"."""
    return str(Token(Kind.ON, family, pitch_index))


def release(pitch_index: int, family: str = PIANO) -> str:
    """The token that releases it: "endp28"."""
    return str(Token(Kind.OFF, family, pitch_index))


def wait(steps: int) -> str:
    """One wait of `steps` steps (1..wait_limit): "wait6"."""
    return str(Token(Kind.WAIT, "", steps))


def style(name: str) -> str:
    """The token that opens a piece in a style: "style_chopin" (name: lower-case ASCII letters)."""
    if not _STYLE.fullmatch(STYLE_PREFIX + name):
        raise ValueError(f"{name!r} is not a style name (lower-case ASCII letters)")
    return str(Token(Kind.STYLE, name=name))


def silence(config: CodecConfig) -> str:
    """One token of silence a model can be primed with: a beat's wait (notewise) or a rest (chordwise)."""
    return wait(config.sample_freq) if config.encoding == "notewise" else str(Token(Kind.REST, PIANO, 0))


class Grammar:
    """Which tokens exist for one codec configuration, and how to read them."""

    def __init__(self, config: CodecConfig) -> None:
        self.config = config
        self.families = FAMILIES if config.chamber else (PIANO,)
        fams = "".join(self.families)
        if config.encoding == "notewise":
            self._pattern = re.compile(rf"(end)?([{fams}])({_NUMBER})|wait({_NUMBER})")
        else:
            self._pattern = re.compile(rf"([{fams}])([01]{{{config.num_pitches}}})|([{fams}])rest({_NUMBER})")

    def parse(self, text: str) -> Token:
        """Read one token; ValueError says why it is not one of this grammar's."""
        cfg = self.config
        if text.startswith(STYLE_PREFIX):
            named = _STYLE.fullmatch(text)
            if named is None:
                raise ValueError(f"{text!r}: a style token's name is lower-case ASCII letters")
            return Token(Kind.STYLE, name=named.group(1))
        match = self._pattern.fullmatch(text)
        if text == UNK and cfg.encoding == "chordwise":
            return Token(Kind.UNK)
        if match is None:
            hint = " (v tokens need --chamber)" if not cfg.chamber and text.removeprefix("end").startswith("v") else ""
            raise ValueError(f"{text!r} is not a {cfg.encoding} token{hint}")
        if cfg.encoding == "notewise":
            end, family, index, wait = match.groups()
            if wait is not None:
                steps = int(wait)
                if not 1 <= steps <= cfg.wait_limit:
                    raise ValueError(f"{text!r}: waits run from 1 to {cfg.wait_limit} steps")
                return Token(Kind.WAIT, "", steps)
            value = int(index)
            if value >= cfg.num_pitches:
                raise ValueError(f"{text!r}: pitch index outside 0..{cfg.num_pitches - 1}")
            return Token(Kind.OFF if end else Kind.ON, family, value)
        family, bits, rest_family, count = match.groups()
        if bits is not None:
            if "1" not in bits:
                raise ValueError(f"{text!r}: a chord with no note is written as a rest token")
            return Token(Kind.CHORD, family, bits=bits)
        if int(count) > cfg.rest_cap:
            raise ValueError(f"{text!r}: rest counts run from 0 to {cfg.rest_cap}")
        return Token(Kind.REST, rest_family, int(count))

    def fixed_vocabulary(self) -> list[str]:
        """Every token this grammar can produce, except chords and styles (those come from a corpus)."""
        cfg = self.config
        if cfg.encoding == "notewise":
            tokens = [f"wait{n}" for n in range(1, cfg.wait_limit + 1)]
            for family in self.families:
                tokens += [f"{family}{i}" for i in range(cfg.num_pitches)]
                tokens += [f"end{family}{i}" for i in range(cfg.num_pitches)]
            return tokens
        tokens = [UNK]
        for family in self.families:
            tokens += [f"{family}rest{n}" for n in range(cfg.rest_cap + 1)]
        return tokens


def notes_struck(token: Token) -> int:
    """How many notes a token strikes: 1 for a note-on, a chord's notes, else 0."""
    if token.kind is Kind.ON:
        return 1
    return token.bits.count("1") if token.kind is Kind.CHORD else 0


def transposed(token: Token, semitones: int, num_pitches: int) -> Token | None:
    """The token moved by semitones (notes and chords; waits, rests, styles and <unk> stay as they are),
    or None when a note would leave the pitch range."""
    if token.kind in (Kind.ON, Kind.OFF):
        value = token.value + semitones
        return token._replace(value=value) if 0 <= value < num_pitches else None
    if token.kind is Kind.CHORD:
        bits = token.bits
        if semitones > 0:
            if "1" in bits[num_pitches - semitones:]:
                return None
            bits = "0" * semitones + bits[:num_pitches - semitones]
        elif semitones < 0:
            if "1" in bits[:-semitones]:
                return None
            bits = bits[-semitones:] + "0" * -semitones
        return token._replace(bits=bits)
    return token
