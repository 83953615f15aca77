"""Held-out music: which pieces of ../shared a model never learned from, split by work.

A model trained on a corpus `clara corpus` built carries its held-out sets: `splits.json` in
the model folder lists the corpus's valid and test pieces (each as its corpus and path within
it, and its work), written by the trainer (`write_splits`); `model_items` reads them back.
The corpus split them by work across corpora (clara_live/corpus/works.py).

For a model without one (clara-notewise, trained on piano-midi.de's train split by the stable
hash of each file's path) the older rules below: ASAP's works split by a stable hash of the
work (a folder with its `_no_repeat`-style suffix removed), an ASAP work that is also in
piano-midi.de taking that piece's split, matched by a note fingerprint (the pitch 6-grams of
the score). The beat tracker was trained on ASAP's train works by these rules, so its
benchmark keeps them.

Valid is for choosing; test is reported once.
"""

from __future__ import annotations

import csv
import functools
import json
import re
from collections import Counter
from pathlib import Path
from typing import NamedTuple

from clara_live.atomic import write_text
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


SPLITS = "splits.json"


def write_splits(manifest: dict, model_dir: str | Path) -> None:
    """The held-out sets of a built corpus (its manifest) into a model folder, as `splits.json`:
    per split, each piece's corpus, its path within that corpus's folder and its work."""
    held: dict[str, list[dict[str, str]]] = {"valid": [], "test": []}
    for piece in manifest["pieces"]:
        if piece["split"] in held:
            path = Path(piece["source"])
            corpus = piece.get("corpus") or path.parent.name
            root = next((a for a in path.parents if a.name == corpus), path.parent)  # the corpus's folder
            held[piece["split"]].append({"corpus": root.name, "path": path.relative_to(root).as_posix(),
                                         "work": f"work{piece['group']}", "composer": piece["composer"]})
    write_text(Path(model_dir) / SPLITS, json.dumps({"sources": manifest.get("sources", []), **held}, indent=0) + "\n")


def model_items(model_dir: str | Path, split: str, corpora: tuple[str, ...] = ("piano-midi-de", "asap"),
                per_score: int = 1, root: Path = CORPUS) -> list[Item] | None:
    """The pieces of `corpora` in a model's held-out split (splits.json), sorted, with `per_score`
    performances of each ASAP score (0 = all); None when the model folder has no splits.json."""
    path = Path(model_dir) / SPLITS
    if not path.is_file():
        return None
    try:
        listed = json.loads(path.read_text(encoding="utf-8"))[split]
    except (json.JSONDecodeError, KeyError, UnicodeDecodeError):
        raise InputError(f"{path}: not a held-out list with a {split!r} split") from None
    scores: dict[tuple[str, str], list[Item]] = {}
    for entry in listed:
        if entry["corpus"] in corpora:
            item = Item(entry["corpus"], entry["work"], root / entry["corpus"] / entry["path"], entry["composer"])
            score = str(item.path.parent) if item.corpus == "asap" else str(item.path)  # ASAP: a folder a score
            scores.setdefault((item.corpus, score), []).append(item)
    out = []
    for key in sorted(scores):
        items = sorted(scores[key], key=lambda i: i.path.name)
        out += items if per_score == 0 or key[0] != "asap" else items[:per_score]
    return out
