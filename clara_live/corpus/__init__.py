"""`clara corpus`: corpora of music into train/valid/test token files and a manifest.

Sources come from corpus readers (clara_live.corpus.sources: ASAP, Pianolatron, POP909,
OpenScore, plain composer folders), each piece with its composer and work. Files are encoded in
parallel processes, each once: the tokens and a note fingerprint are cached by file content and
codec settings (clara_live.corpus.cache), so a second build reads no music; a score's parse is
kept by its bytes alone (clara_live.corpus.read_cache), so a build with other codec settings
parses no score again. Works are then matched across corpora and every work lands on one side
of the split (clara_live.corpus.works); the matches, and any piece whose own split lost to its
work's, are in the manifest. A bad file is recorded with its reason and never stops the build;
the build then exits non-zero (the CLI) after writing the rest.

Every piece is stored once, in its own key. Training transposes each train piece afresh every
epoch by a shift drawn from `shifts` (the keys from transpose_low to transpose_high that keep
every note in range): the 12-key augmentation of Clara's corpora at a twelfth of the disk and
memory. The chordwise vocabulary counts the train chords in every key a piece may be drawn in.

With codec.chamber a corpus may give its parts families of their own (clara_live.corpus.parts: a
Lied's voice, POP909's melody as `v`).

With corpus.style each line opens with the piece's style token (`style_chopin`; its composer
where they have corpus.style_min_works works in train, else its corpus's: clara_live.corpus.styles),
listed in the vocabulary after the codec's tokens and in the manifest with their counts.

Output: `train.txt`, `valid.txt`, `test.txt` (one piece per line, tokens separated by spaces),
`train.touch`, `valid.touch`, `test.touch` (a line a piece: each note-on token's velocity and
onset offset, or `-` for a piece that carries no touch: a score, or a file at one velocity)
and `manifest.json` (settings, vocabulary, counts by split, corpus, composer and style, every piece
with its corpus, work, split, shifts and style, the cross-corpus matches, every skipped file and
its reason).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import multiprocessing
import os
from collections import Counter, defaultdict
from pathlib import Path
from typing import NamedTuple

from tqdm import tqdm

from clara_live.atomic import atomic_open, make_folder, write_text
from clara_live.codec import make_codec, to_steps
from clara_live.codec.notewise import NotewiseCodec, Touch
from clara_live.codec.tokens import UNK, Grammar, Kind, style, transposed
from clara_live.config import CodecConfig, Config
from clara_live.corpus import cache
from clara_live.corpus.parts import arranged
from clara_live.corpus.read_cache import read_piece
from clara_live.corpus.sources import Source, corpus_kind, find_sources
from clara_live.corpus.styles import choose
from clara_live.corpus.works import Member, assign, fingerprint, split_of
from clara_live.errors import ClaraError
from clara_live.music.beats import on_beats, read_beats
from clara_live.music.midi_io import MIDI_SUFFIXES, read_midi
from clara_live.music.read import not_regular

__all__ = ["MANIFEST", "SPLITS", "Source", "build_corpus", "corpus_kind", "encode_source", "find_sources",
           "split_of", "summary"]

SPLITS = ("train", "valid", "test")
MANIFEST = "manifest.json"
FORMAT_VERSION = 2  # 1: train stored in every key; 2: every piece once, keys drawn in training


class Encoded(NamedTuple):
    source: Source
    tokens: list[str]
    low: int  # lowest and highest MIDI pitch (0, -1 with no notes)
    high: int
    ngrams: list  # fingerprint (clara_live.corpus.works)
    error: str | None  # why the file was skipped
    cached: bool = False
    touch: str = ""  # each note-on token's touch (touch_line), "" where the file carries none


def touch_line(touch: list[Touch]) -> str:
    """A piece's touch as its touch file stores it: `velocity:offset` per note-on token, the offset
    in hundredths of a step (-50..49)."""
    return " ".join(f"{t.velocity}:{min(49, max(-50, round(t.offset * 100)))}" for t in touch)


def is_midi(source: Source) -> bool:
    """Whether a source is a MIDI file (a performance, a roll, a sequenced piece), not a score."""
    return not source.location.startswith("music21:") and Path(source.location).suffix.lower() in MIDI_SUFFIXES


def carries_touch(source: Source, notes: list) -> bool:
    """Whether a piece's velocities and timing are worth learning: a MIDI file (a score's
    velocities are its reader's default, its onsets exactly on the grid) whose notes are not all
    at one velocity (a file sequenced without dynamics)."""
    return is_midi(source) and len({n.velocity for n in notes}) > 1


def encode_source(source: Source, codec_config: CodecConfig, cache_folder: str = "", grid: str = "seconds"
                  ) -> Encoded:
    """Read and encode one piece in its own key (from the cache when it holds it); a performance
    with beat annotations on its beats when `grid` is "beats"."""
    if grid != "beats" or not source.beats:
        source = source._replace(beats="")
    if not source.location.startswith("music21:"):
        kind = not_regular(source.location)
        if kind is not None:
            return Encoded(source, [], 0, -1, [], f"{source.location}: {kind}")
    try:
        key, content = None, None
        if cache_folder and not source.location.startswith("music21:"):
            content = Path(source.location).read_bytes()
            keyed = content + b"\0beats\0" + Path(source.beats).read_bytes() if source.beats else content
            key = cache.entry_key(keyed, codec_config, source.families, source.arrangement)
            entry = cache.load(Path(cache_folder), key)
            if entry is not None:
                return Encoded(source, entry["tokens"].split(), entry["low"], entry["high"],
                               [tuple(g) for g in entry["ngrams"]], entry["error"], True, entry.get("touch", ""))
        encoded = _encode(source, codec_config, cache_folder, content)
        if key is not None:
            cache.store(Path(cache_folder), key, {"tokens": " ".join(encoded.tokens), "low": encoded.low,
                                                  "high": encoded.high, "ngrams": encoded.ngrams,
                                                  "error": encoded.error, "touch": encoded.touch})
        return encoded
    except OSError as exc:
        return Encoded(source, [], 0, -1, [], f"{source.location}: cannot read ({exc.strerror or exc})")
    except ClaraError as exc:
        return Encoded(source, [], 0, -1, [], str(exc))
    except Exception as exc:  # a reader bug on one odd file must not stop the build
        return Encoded(source, [], 0, -1, [], f"{source.location}: {exc.__class__.__name__}: {exc}")


def _encode(source: Source, codec_config: CodecConfig, cache_folder: str = "", content: bytes | None = None
            ) -> Encoded:
    if source.beats:
        piece = on_beats(read_midi(source.location, codec_config.sustain_pedal, seconds=True), read_beats(source.beats))
    else:  # a score parsed once (read_cache), whatever the codec settings
        piece = read_piece(source.location, codec_config.sustain_pedal, cache_folder, content)
    notes = to_steps(arranged(piece, source, codec_config.chamber), codec_config)
    if not notes:
        return Encoded(source, [], 0, -1, [], "no notes")
    pitches = [n.pitch for n in notes]
    codec = make_codec(codec_config)
    if isinstance(codec, NotewiseCodec):
        tokens, touch = codec.encode_touch(notes)
        line = touch_line(touch) if carries_touch(source, notes) else ""
    else:
        tokens, line = codec.encode(notes), ""
    return Encoded(source, tokens, min(pitches), max(pitches), fingerprint(notes), None, touch=line)


def _encode_job(args: tuple) -> Encoded:
    return encode_source(*args)


def cache_folder(config: Config) -> str:
    """The cache's folder from corpus.cache ("auto": the user's cache folder; "": none)."""
    if config.corpus.cache == "auto":
        return str(cache.default_folder())
    return str(Path(config.corpus.cache).expanduser()) if config.corpus.cache else ""


def build_corpus(specs: list[str], out: str | Path, config: Config, progress: bool = True) -> dict:
    """Build the corpus in out; returns the manifest (also written to out/manifest.json)."""
    out = Path(out)
    sources = find_sources(specs)
    make_folder(out)  # a bad --out is said now, not after encoding every file
    folder = cache_folder(config)
    jobs = [(s, config.codec, folder, config.corpus.performance_grid) for s in sources]
    workers = config.corpus.workers or os.cpu_count() or 1
    bar = tqdm(total=len(jobs), desc="encoding", unit="file", disable=not progress or None)
    results: list[Encoded] = []
    if workers == 1 or len(jobs) < 2:
        for job in jobs:
            results.append(_encode_job(job))
            bar.update()
    else:
        with multiprocessing.get_context("spawn").Pool(min(workers, len(jobs))) as pool:
            for result in pool.imap(_encode_job, jobs, chunksize=4):
                results.append(result)
                bar.update()
    bar.close()
    return _write(out, specs, config, results)


def allowed_shifts(low: int, high: int, config: Config) -> list[int]:
    """The transpositions in the augmentation range that keep every note in the codec's range."""
    c = config.codec
    return [s for s in range(config.corpus.transpose_low, config.corpus.transpose_high + 1)
            if low + s >= c.low_pitch and high + s <= c.high_pitch]


def _write(out: Path, specs: list[str], config: Config, results: list[Encoded]) -> dict:
    good = [r for r in results if r.error is None]
    skipped = [{"source": r.source.location, "reason": r.error} for r in results if r.error is not None]
    works = assign([Member(r.source.key, r.source.corpus, _plain(r.source), r.source.composer, r.source.work,
                           r.source.title, Counter(r.ngrams), not is_midi(r.source)) for r in good], config.corpus)
    styles = choose([r.source for r in good], works.splits, works.groups, config.corpus.style_min_works) \
        if config.corpus.style else [""] * len(good)
    style_stats: dict[str, dict[str, int]] = {}
    style_works: dict[str, set[int]] = defaultdict(set)
    style_composers: dict[str, set[str]] = defaultdict(set)
    pieces = []
    split_stats = {s: {"pieces": 0, "tokens": 0, "works": 0} for s in SPLITS}
    by_corpus: dict[str, dict[str, int]] = {}
    composers: dict[str, dict[str, int]] = {}
    work_sets: dict[str, set[int]] = defaultdict(set)
    chord_counts: Counter[str] = Counter()
    codec = make_codec(config.codec)
    grammar = codec.grammar
    lines = {s: 0 for s in SPLITS}
    handles, touches = {}, {}
    with contextlib.ExitStack() as files:
        for split in SPLITS:
            handles[split] = files.enter_context(atomic_open(out / f"{split}.txt"))
            touches[split] = files.enter_context(atomic_open(out / f"{split}.touch"))
        for r, split, group, name in zip(good, works.splits, works.groups, styles, strict=True):
            tokens = [style(name), *r.tokens] if name else r.tokens  # a style token is no note-on: touch unchanged
            handles[split].write(" ".join(tokens) + "\n")
            touches[split].write((r.touch or "-") + "\n")
            shifts = allowed_shifts(r.low, r.high, config) if split == "train" else [0]
            if split == "train" and codec.unknown_token is not None:  # its vocabulary: the frequent chords
                chord_counts.update(_chords_in_keys(r.tokens, shifts, grammar))
            stats = split_stats[split]
            stats["pieces"] += 1
            stats["tokens"] += len(tokens)
            work_sets[split].add(group)
            tables = [(by_corpus, r.source.corpus or "(files)"), (composers, r.source.composer)]
            for table, key in tables + ([(style_stats, name)] if name else []):
                entry = table.setdefault(key, {**{s: 0 for s in SPLITS}, "tokens": 0})
                entry[split] += 1
                entry["tokens"] += len(tokens)
            piece = {"source": r.source.location, "key": r.source.key, "composer": r.source.composer,
                     "corpus": r.source.corpus, "work": r.source.work, "title": r.source.title,
                     "group": group, "split": split, "line": lines[split], "tokens": len(tokens),
                     "shifts": shifts, "touch": bool(r.touch)}
            if name:
                piece["style"] = name
                style_composers[name].add(r.source.composer)
                if split == "train":
                    style_works[name].add(group)
            pieces.append(piece)
            lines[split] += 1
    for split in SPLITS:
        split_stats[split]["works"] = len(work_sets[split])
    frequent = {c: n for c, n in chord_counts.items() if n >= config.corpus.chord_min_count}
    manifest = {
        "format": FORMAT_VERSION,
        "sources": list(specs),
        "codec": dataclasses.asdict(config.codec),
        "corpus": dataclasses.asdict(config.corpus),
        "vocabulary": codec.vocabulary(frequent) + [style(name) for name in sorted(style_stats)],
        "unknown_token": codec.unknown_token,
        "splits": split_stats,
        "corpora": dict(sorted(by_corpus.items())),
        "composers": dict(sorted(composers.items())),
        **({"styles": {name: {**c, "train_works": len(style_works[name]), "composers": sorted(style_composers[name])}
                       for name, c in sorted(style_stats.items())}} if config.corpus.style else {}),
        "augmentation": {"transpose_low": config.corpus.transpose_low,
                         "transpose_high": config.corpus.transpose_high,
                         "drawn": "a shift per train piece per epoch, from its shifts"},
        "cached": sum(r.cached for r in results),
        "touch": {"file": "SPLIT.touch: a line a piece, velocity:offset (hundredths of a step) per note-on "
                          "token, or - where the piece carries no touch",
                  "pieces": sum(bool(r.touch) for r in good)},
        "matches": works.matches,
        "moved": works.moved,
        "pieces": pieces,
        "skipped": skipped,
    }
    write_text(out / MANIFEST, json.dumps(manifest, indent=1) + "\n")
    return manifest


def _plain(source: Source) -> bool:
    """A file of a plain folder (piano-midi.de's layout) or given alone: its key's hash is its split."""
    return ":" not in source.key  # every reader but the plain folder's names its keys `corpus:id`


def _chords_in_keys(tokens: list[str], shifts: list[int], grammar: Grammar) -> Counter:
    counts: Counter[str] = Counter()
    chords = Counter(t for t in tokens if "rest" not in t and t != UNK)
    for text, n in chords.items():
        token = grammar.parse(text)
        if token.kind is not Kind.CHORD:
            continue
        for shift in shifts:
            moved = transposed(token, shift, grammar.config.num_pitches)
            if moved is not None:
                counts[str(moved)] += n
    return counts


def summary(manifest: dict) -> str:
    """A few lines for the terminal: split sizes, corpora, matches and skipped files."""
    lines = []
    for split, s in manifest["splits"].items():
        lines.append(f"{split:5s}: {s['pieces']:5d} pieces, {s['works']:5d} works, {s['tokens']:10d} tokens")
    for name, c in manifest.get("corpora", {}).items():
        lines.append(f"  {name}: {c['train']} / {c['valid']} / {c['test']} pieces (train / valid / test), "
                     f"{c['tokens']} tokens")
    a = manifest["augmentation"]
    lines.append(f"augmentation: a key from {a['transpose_low']:+d} to {a['transpose_high']:+d} semitones drawn "
                 "per train piece per epoch")
    lines.append(f"vocabulary: {len(manifest['vocabulary'])} tokens; {manifest['cached']} files from the cache")
    if manifest.get("styles"):
        styles = sorted(manifest["styles"].items(), key=lambda kv: -kv[1]["train"])
        lines.append(f"styles: {len(styles)} (" + ", ".join(f"{n} {c['train']}" for n, c in styles)
                     + " train pieces)")
    by = Counter(m["by"].split()[0] for m in manifest["matches"])
    lines.append(f"works matched across corpora: {len(manifest['matches'])} joins "
                 f"({by['notes']} by notes, {by['catalogue']} by catalogue number)"
                 + (f"; {len(manifest['moved'])} pieces took their work's split" if manifest["moved"] else ""))
    for item in manifest["skipped"]:
        lines.append(f"skipped {item['reason']}" if item["reason"].startswith(item["source"])
                     else f"skipped {item['source']}: {item['reason']}")
    return "\n".join(lines)
