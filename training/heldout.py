"""Held-out music: which pieces of ../shared no shipped model learned from, split by work.

The shipped models were trained on piano-midi.de's train split (`clara corpus` hashes each
file's path). ASAP's performances were never trained on; its works are split here by a
stable hash of the work (a folder with its `_no_repeat`-style suffix removed, so a work and
its repeat-less version are one work), and an ASAP work that is also in piano-midi.de takes
that piece's split: the same sonata in two corpora is one work. Works are matched by a note
fingerprint (the pitch 6-grams of the score), since the two corpora name works differently.

Valid is for choosing; test is reported once.
"""

from __future__ import annotations

import csv
import functools
import re
from collections import Counter
from pathlib import Path
from typing import NamedTuple

from clara_live.config import CorpusConfig
from clara_live.corpus import find_sources, split_of
from clara_live.errors import InputError
from clara_live.music.midi_io import read_midi

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
CORPUS = SHARED / "corpus"
SUFFIX = re.compile(r"_(no_repeat|no_first_repeat|repeat|no_trio)$")
SAME_WORK = 0.3  # fingerprint overlap above which two files are one work (different works: < 0.05)
NGRAM = 6


class Item(NamedTuple):
    corpus: str  # "piano-midi-de" | "asap"
    work: str  # the work's key within its corpus
    path: Path
    composer: str


def fingerprint(path: Path, notes: int = 600) -> Counter:
    """Pitch 6-grams of the first `notes` notes in onset order (chords low to high)."""
    piece = read_midi(path, sustain_pedal=False)
    pitches = [n.pitch for n in sorted(piece.notes, key=lambda n: (round(n.start, 2), n.pitch))][:notes]
    return Counter(tuple(pitches[i:i + NGRAM]) for i in range(len(pitches) - NGRAM + 1))


def overlap(a: Counter, b: Counter) -> float:
    if not a or not b:
        return 0.0
    return sum((a & b).values()) / min(sum(a.values()), sum(b.values()))


def piano_midi_de(split: str, root: Path = CORPUS / "piano-midi-de") -> list[Item]:
    """The piano-midi.de pieces of a split, exactly as `clara corpus` found and split them."""
    config = CorpusConfig()
    return [Item("piano-midi-de", s.key, Path(s.location), s.composer) for s in find_sources([str(root)])
            if split_of(s.key, config) == split]


def asap_work(folder: str) -> str:
    return SUFFIX.sub("", folder)


@functools.lru_cache(maxsize=4)
def asap_splits(root: Path = CORPUS / "asap", piano_root: Path = CORPUS / "piano-midi-de") -> dict[str, str]:
    """Every ASAP work's split: its piano-midi.de twin's, else its own hash."""
    config = CorpusConfig()
    rows = asap_rows(root)
    works = sorted({asap_work(r["folder"]) for r in rows})
    score_of = {asap_work(r["folder"]): root / r["midi_score"] for r in rows}
    by_composer: dict[str, list[tuple[str, Counter]]] = {}
    for source in find_sources([str(piano_root)]):
        try:
            by_composer.setdefault(source.composer, []).append((source.key, fingerprint(Path(source.location))))
        except InputError:
            continue
    splits = {}
    for work in works:
        split = split_of(f"asap:{work}", config)
        composer = work.split("/")[0]
        try:
            mine = fingerprint(score_of[work])
        except InputError:
            mine = Counter()
        best = max(((overlap(mine, fp), p) for p, fp in by_composer.get(composer, [])),
                   default=(0.0, None), key=lambda x: x[0])
        if best[0] >= SAME_WORK:
            split = split_of(best[1], config)
        splits[work] = split
    return splits


def asap(split: str, root: Path = CORPUS / "asap", per_work: int = 1) -> list[Item]:
    """Performances of the ASAP works in a split, `per_work` of each (0 = all), sorted."""
    splits = asap_splits(root)
    items: dict[str, list[Item]] = {}
    for r in asap_rows(root):
        work = asap_work(r["folder"])
        if splits.get(work) == split:
            items.setdefault(work, []).append(Item("asap", work, root / r["midi_performance"], r["composer"]))
    out = []
    for work in sorted(items):
        performances = sorted(items[work], key=lambda i: i.path.name)
        out += performances if per_work == 0 else performances[:per_work]
    return out


def asap_rows(root: Path = CORPUS / "asap") -> list[dict[str, str]]:
    """ASAP's metadata.csv: a row per performance (composer, folder, midi_score, midi_performance,
    performance_annotations, ...)."""
    with open(root / "metadata.csv", newline="") as f:
        return list(csv.DictReader(f))
