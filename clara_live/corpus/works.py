"""One work, one side of the split, across corpora.

The same sonata can be sequenced in piano-midi.de, performed five times in ASAP and played on a
roll in Pianolatron. Pieces are joined into works (union-find) when
- they share a work within their corpus (ASAP's performances of one score, a work's repeat-less
  version, Pianolatron's rolls with the same composer and title);
- they are in different corpora, by the same composer, and their catalogue numbers agree (op.,
  BWV, K., D., Hob. read from the titles; an opus alone agrees with every number within it);
- they are in different corpora, by the same composer, and their notes agree: the pitch 6-grams
  of their first 600 notes overlap by SAME_WORK or more (different works stay under 0.05).
A work takes the split of its piano-midi.de-style plain-folder member (the hash of its path, so
every corpus built before keeps its split; several: the most held-out of theirs, reported as a
move), else its ASAP work's hash, else its first MIDI member's key's (a score joining a roll or a
song, as Schumann's "Widmung" joins Liszt's transcription on a Pianolatron roll, never moves a
piece a model has held out), else its first member's key's. Valid is for choosing, test is
reported once.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import NamedTuple

from clara_live.config import CorpusConfig
from clara_live.music.notes import StepNote

SAME_WORK = 0.3  # fingerprint overlap at which two pieces are one work
NGRAM = 6
FINGERPRINT_NOTES = 600
MIN_NGRAMS = 30  # fewer 6-grams than this: too little to match on
HELD_OUT = {"test": 2, "valid": 1, "train": 0}
_LOST_LETTER = re.compile(r"(?<=[A-Za-z])_+(?=[a-z]|$)")  # a folder name's stand-in for a letter outside ASCII
_OPUS = re.compile(r"\b(?:op|opus)[\s.]*(\d+)[a-z]?(?:[\s,.]*(?:no|nr|n°)?[\s.]*(\d+))?", re.I)
_CATALOGUE = [
    ("bwv", re.compile(r"\bbwv[\s.]*(\d+)", re.I)),
    ("k", re.compile(r"\b(?:k|kv)[\s.]*(\d{2,3})\b", re.I)),
    ("d", re.compile(r"\bd[\s.]+(\d{2,3})\b", re.I)),
    ("hob", re.compile(r"\b(?:hob|hoboken)[\s.]*([xvi]+)[:.\s]*(\d+)", re.I)),
]


def split_of(key: str, config: CorpusConfig) -> str:
    """train, valid or test, from a stable hash of key (never Python's salted hash())."""
    fraction = int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:12], 16) / 16**12
    if fraction < config.test_fraction:
        return "test"
    if fraction < config.test_fraction + config.valid_fraction:
        return "valid"
    return "train"


def fingerprint(notes: Sequence[StepNote]) -> list[tuple[int, ...]]:
    """Pitch 6-grams of the first FINGERPRINT_NOTES notes in onset order (a step's notes low to
    high), as a list (JSON-friendly; `Counter` it to compare)."""
    pitches = [n.pitch for n in sorted(notes, key=lambda n: (n.start, n.pitch))][:FINGERPRINT_NOTES]
    return [tuple(pitches[i:i + NGRAM]) for i in range(len(pitches) - NGRAM + 1)]


def overlap(a: Counter, b: Counter) -> float:
    if not a or not b:
        return 0.0
    return sum((a & b).values()) / min(sum(a.values()), sum(b.values()))


def composer_name(text: str) -> str:
    """A composer as every corpus can spell them: the surname, ASCII, lower case
    ("Beethoven, Ludwig van", "Beethoven" and "beethoven" are one; "Chopin,_Fr_d_ric" too;
    "Mendelssohn-Bartholdy" is "mendelssohn", but "Saint-Saëns" and "Saint-Georges" stay two).
    In a folder's name `_` is a space ("Le_Beau": "lebeau", as "Le Beau") or, after a letter and
    before a lower-case one or the comma, a letter the name could not hold ("Holm_s": "holms", as
    close to "Holmès" as the folder lets us come)."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    if "," not in text:
        return re.sub(r"[^a-z]", "", text.lower())
    surname = _LOST_LETTER.sub("", text.split(",", 1)[0].strip())
    if "-" in surname and not surname.lower().startswith("saint-"):
        surname = surname.split("-")[0]
    return re.sub(r"[^a-z]", "", surname.lower())


def catalogue(title: str) -> set[tuple[str, str]]:
    """The catalogue numbers a title names, as (catalogue, number) with a number within an opus
    where the title gives one: {("op", "10.5")} for "Etudes_Opus_10_5_Black_Key", {("op", "28")} for
    "Preludes op. 28", {("bwv", "846")}. (In some titles the opus's second number is a movement: it
    then keeps a sonata's movements apart, and a title with the opus alone joins them.)"""
    text = title.replace("_", " ")
    found = set()
    for match in _OPUS.finditer(text):
        found.add(("op", match.group(1) + ("." + match.group(2) if match.group(2) else "")))
    for name, pattern in _CATALOGUE:
        for match in pattern.finditer(text):
            found.add((name, "".join(match.groups()).lower().replace(" ", "")))
    return found


def same_number(a: set[tuple[str, str]], b: set[tuple[str, str]]) -> str:
    """The catalogue number two titles share ("" if none): equal, or one an opus and the other a
    number within it (op. 28 and op. 28 no. 16)."""
    for name, x in sorted(a):
        for other, y in sorted(b):
            if name == other and (x == y or (name == "op" and (x.split(".")[0] == y or y.split(".")[0] == x))):
                return f"{name} {x if len(x) >= len(y) else y}"
    return ""


class Member(NamedTuple):
    key: str
    corpus: str
    plain: bool  # a plain folder (piano-midi.de's layout): its path hash is its split
    composer: str
    work: str
    title: str
    ngrams: Counter
    score: bool = False  # read from a score (OpenScore): it never decides a work that has MIDI members


class Works(NamedTuple):
    splits: list[str]  # per member
    groups: list[int]  # per member: its work's index
    matches: list[dict]  # cross-corpus joins: {"a", "b", "by", "overlap"}
    moved: list[dict]  # plain-folder pieces whose own split lost to another member's


def assign(members: list[Member], config: CorpusConfig) -> Works:
    """Join members into works and give each work one split (see the module's docstring)."""
    works = _UnionFind(len(members))
    _join_within_corpora(members, works)
    matches = _join_across_corpora(members, works)
    groups: dict[int, list[int]] = defaultdict(list)
    for i in range(len(members)):
        groups[works.find(i)].append(i)
    splits = [""] * len(members)
    group_of = [0] * len(members)
    moved: list[dict] = []
    for number, (_, indices) in enumerate(sorted(groups.items())):
        split = _split(members, indices, config)
        for i in indices:
            splits[i] = split
            group_of[i] = number
            own = split_of(members[i].key, config)
            if members[i].plain and own != split:
                moved.append({"key": members[i].key, "from": own, "to": split})
    return Works(splits, group_of, matches, moved)


class _UnionFind:
    """Members joined into works: each work's root is its lowest member index."""

    def __init__(self, size: int) -> None:
        self.parent = list(range(size))

    def find(self, i: int) -> int:
        parent = self.parent
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def join(self, i: int, j: int) -> None:
        a, b = self.find(i), self.find(j)
        if a != b:
            self.parent[max(a, b)] = min(a, b)


def _join_within_corpora(members: list[Member], works: _UnionFind) -> None:
    """A work within its corpus, by the corpus's own work id; rolls of one title by one composer are one work."""
    same: dict[tuple[str, str], int] = {}
    for i, m in enumerate(members):
        if m.plain:
            continue
        works.join(same.setdefault((m.corpus, m.work), i), i)
        if m.corpus != "asap":
            works.join(same.setdefault((m.corpus, "title:" + composer_name(m.composer) + ":" + m.title.lower()), i), i)


def _join_across_corpora(members: list[Member], works: _UnionFind) -> list[dict]:
    """One composer's pieces in two corpora joined by catalogue number, else by their notes; the joins made."""
    matches: list[dict] = []
    by_composer: dict[str, list[int]] = defaultdict(list)
    for i, m in enumerate(members):
        by_composer[composer_name(m.composer)].append(i)
    for indices in by_composer.values():
        numbers = {i: catalogue(members[i].title) for i in indices}
        for x, i in enumerate(indices):
            for j in indices[x + 1:]:
                match = _match(members[i], members[j], numbers[i], numbers[j])
                if match is not None:
                    matches.append(match)
                    works.join(i, j)
    return matches


def _match(a: Member, b: Member, number_a: set[tuple[str, str]], number_b: set[tuple[str, str]]) -> dict | None:
    """Why two members of different corpora are one work (their catalogue number, or notes that
    overlap at least SAME_WORK), or None."""
    if a.corpus == b.corpus:
        return None
    common = same_number(number_a, number_b)
    if common:
        return {"a": a.key, "b": b.key, "by": "catalogue " + common}
    if min(sum(a.ngrams.values()), sum(b.ngrams.values())) < MIN_NGRAMS:
        return None
    score = overlap(a.ngrams, b.ngrams)
    if score >= SAME_WORK:
        return {"a": a.key, "b": b.key, "by": "notes", "overlap": round(score, 3)}
    return None


def _split(members: list[Member], indices: list[int], config: CorpusConfig) -> str:
    plain = [split_of(members[i].key, config) for i in indices if members[i].plain]
    if plain:
        return max(plain, key=HELD_OUT.__getitem__)
    asap = sorted(members[i].work for i in indices if members[i].corpus == "asap")
    if asap:
        return split_of(f"asap:{asap[0]}", config)
    midi = [members[i].key for i in indices if not members[i].score]
    return split_of(min(midi or [members[i].key for i in indices]), config)
