"""`clara corpus`: folders of music into train/valid/test token files and a manifest.

Pieces are split by a stable hash of their path (relative to the folder given), so a piece
lands on the same side on every machine and every transposition of it stays there; only
the train split is augmented. Files are encoded in parallel processes; a bad file is
recorded in the manifest with its reason and never stops the build.

Output: `train.txt`, `valid.txt`, `test.txt` (one piece version per line, tokens separated
by spaces) and `manifest.json` (settings, vocabulary, counts, every piece's lines, every
skipped file with its reason).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import multiprocessing
import os
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

from tqdm import tqdm

from clara_live.atomic import atomic_open, write_text
from clara_live.codec import make_codec, to_steps, transpose
from clara_live.codec.tokens import UNK
from clara_live.config import CodecConfig, Config, CorpusConfig
from clara_live.errors import ClaraError, InputError
from clara_live.music.read import READABLE_SUFFIXES, read_music
from clara_live.music.score_io import CORPUS_PREFIX, corpus_works

SPLITS = ("train", "valid", "test")
MANIFEST = "manifest.json"
FORMAT_VERSION = 1


class Source(NamedTuple):
    location: str  # a file path or `music21:PATH`
    key: str  # what the split hashes: the path relative to the folder given
    composer: str


class Encoded(NamedTuple):
    source: Source
    split: str
    versions: list[tuple[int, list[str]]]  # (semitones, tokens) per kept transposition
    left_out: list[int]  # transpositions that would push a note out of range
    error: str | None  # why the file was skipped


def find_sources(specs: Iterable[str]) -> list[Source]:
    """Expand folders, files and `music21:NAME` (a composer) or `music21:PATH` (a work).

    A folder's files take the name of their parent folder as composer; a spec that names
    nothing readable is an error (the command line is wrong, not a file in it).
    """
    sources: list[Source] = []
    for spec in specs:
        if spec.startswith(CORPUS_PREFIX):
            name = spec[len(CORPUS_PREFIX):]
            works = [spec] if "/" in name else corpus_works(name)
            sources += [Source(w, w, name.split("/")[0]) for w in works]
            continue
        path = Path(spec)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in READABLE_SUFFIXES)
            if not files:
                raise InputError(f"{path}: no MIDI or score files in this folder")
            sources += [Source(str(f), f.relative_to(path).as_posix(), f.parent.name) for f in files]
        elif path.is_file():
            sources.append(Source(str(path), path.name, path.parent.name))
        else:
            raise InputError(f"{spec}: no such file or folder")
    return sources


def split_of(key: str, config: CorpusConfig) -> str:
    """train, valid or test, from a stable hash of key (never Python's salted hash())."""
    fraction = int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:12], 16) / 16**12
    if fraction < config.test_fraction:
        return "test"
    if fraction < config.test_fraction + config.valid_fraction:
        return "valid"
    return "train"


def encode_source(source: Source, split: str, codec_config: CodecConfig, corpus_config: CorpusConfig) -> Encoded:
    """Read and encode one piece in every transposition its split asks for."""
    try:
        piece = read_music(source.location, codec_config.sustain_pedal)
        notes = to_steps(piece, codec_config)
        if not notes:
            return Encoded(source, split, [], [], "no notes")
        codec = make_codec(codec_config)
        shifts = range(corpus_config.transpose_low, corpus_config.transpose_high + 1) if split == "train" else [0]
        versions, left_out = [], []
        for semitones in shifts:
            moved = transpose(notes, semitones, codec_config)
            if moved is None:
                left_out.append(semitones)
            else:
                versions.append((semitones, codec.encode(moved)))
        return Encoded(source, split, versions, left_out, None)
    except ClaraError as exc:
        return Encoded(source, split, [], [], str(exc))
    except Exception as exc:  # a reader bug on one odd file must not stop the build
        return Encoded(source, split, [], [], f"{source.location}: {exc.__class__.__name__}: {exc}")


def _encode_job(args: tuple) -> Encoded:
    return encode_source(*args)


def build_corpus(specs: list[str], out: str | Path, config: Config, progress: bool = True) -> dict:
    """Build the corpus in out; returns the manifest (also written to out/manifest.json)."""
    out = Path(out)
    sources = find_sources(specs)
    jobs = [(s, split_of(s.key, config.corpus), config.codec, config.corpus) for s in sources]
    workers = config.corpus.workers or os.cpu_count() or 1
    bar = tqdm(total=len(jobs), desc="encoding", unit="file", disable=not progress or None)
    results: list[Encoded] = []
    if workers == 1 or len(jobs) < 2:
        for job in jobs:
            results.append(_encode_job(job))
            bar.update()
    else:
        with multiprocessing.get_context("spawn").Pool(min(workers, len(jobs))) as pool:
            for result in pool.imap(_encode_job, jobs, chunksize=1):
                results.append(result)
                bar.update()
    bar.close()
    return _write(out, specs, config, results)


def _write(out: Path, specs: list[str], config: Config, results: list[Encoded]) -> dict:
    pieces, skipped = [], []
    split_stats = {s: {"pieces": 0, "versions": 0, "tokens": 0} for s in SPLITS}
    composers: dict[str, dict[str, int]] = {}
    kept_by_shift: Counter[int] = Counter()
    left_by_shift: Counter[int] = Counter()
    chord_counts: Counter[str] = Counter()
    lines = {s: 0 for s in SPLITS}
    handles = {}
    with atomic_open(out / "train.txt") as handles["train"], atomic_open(out / "valid.txt") as handles["valid"], \
            atomic_open(out / "test.txt") as handles["test"]:
        for r in results:
            if r.error is not None:
                skipped.append({"source": r.source.location, "reason": r.error})
                continue
            versions = []
            for semitones, tokens in r.versions:
                handles[r.split].write(" ".join(tokens) + "\n")
                versions.append({"transpose": semitones, "line": lines[r.split], "tokens": len(tokens)})
                lines[r.split] += 1
                kept_by_shift[semitones] += 1
                if r.split == "train" and config.codec.encoding == "chordwise":
                    chord_counts.update(t for t in tokens if "rest" not in t)
            left_by_shift.update(r.left_out)
            ntokens = sum(v["tokens"] for v in versions)
            stats = split_stats[r.split]
            stats["pieces"] += 1
            stats["versions"] += len(versions)
            stats["tokens"] += ntokens
            entry = composers.setdefault(r.source.composer, {**{s: 0 for s in SPLITS}, "tokens": 0})
            entry[r.split] += 1
            entry["tokens"] += ntokens
            pieces.append({"source": r.source.location, "key": r.source.key, "composer": r.source.composer,
                           "split": r.split, "versions": versions, "left_out": r.left_out})
    codec = make_codec(config.codec)
    frequent = {c: n for c, n in chord_counts.items() if n >= config.corpus.chord_min_count}
    manifest = {
        "format": FORMAT_VERSION,
        "sources": list(specs),
        "codec": dataclasses.asdict(config.codec),
        "corpus": dataclasses.asdict(config.corpus),
        "vocabulary": codec.vocabulary(frequent),
        "unknown_token": UNK if config.codec.encoding == "chordwise" else None,
        "splits": split_stats,
        "composers": dict(sorted(composers.items())),
        "transpositions": {
            "kept": sum(kept_by_shift.values()),
            "left_out": sum(left_by_shift.values()),
            "left_out_by_semitones": {str(k): left_by_shift[k] for k in sorted(left_by_shift)},
        },
        "pieces": pieces,
        "skipped": skipped,
    }
    write_text(out / MANIFEST, json.dumps(manifest, indent=1) + "\n")
    return manifest


def summary(manifest: dict) -> str:
    """A few lines for the terminal: split sizes, augmentation and skipped files."""
    lines = []
    for split, s in manifest["splits"].items():
        lines.append(f"{split:5s}: {s['pieces']:4d} pieces, {s['versions']:5d} versions, {s['tokens']:9d} tokens")
    t = manifest["transpositions"]
    lines.append(f"transpositions: {t['kept']} kept, {t['left_out']} left out (a note would leave the range)")
    lines.append(f"vocabulary: {len(manifest['vocabulary'])} tokens")
    for item in manifest["skipped"]:
        lines.append(f"skipped {item['reason']}" if item["reason"].startswith(item["source"])
                     else f"skipped {item['source']}: {item['reason']}")
    return "\n".join(lines)
