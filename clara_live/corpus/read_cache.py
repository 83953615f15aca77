"""Pieces as their reader read them, kept on disk: a score is parsed once, whatever the codec.

music21 takes 0.15 to 10 s a MusicXML file and the OpenScore corpora hold 1,499 of them. The
token cache (clara_live.corpus.cache) is keyed by the codec settings, so a codec change used to
parse every score again; this cache holds the notes the reader gave (start, end, pitch, velocity,
family, part; the tempo; the parts' names and programs) keyed only by what decides them: the file's bytes,
the reader (its name, its own settings, the version of the library it runs on) and
READER_FORMAT. A score's reader has no settings of its own (the sustain pedal is a MIDI
reader's); a score music21 cannot read is kept as its reason, so a bad file costs its parse once.

Only score files are kept: a MIDI file is read in 3 to 6 ms (symusic), faster than its entry
(about 75 kB of JSON for a POP909 song) would load. An entry is one JSON file, written
atomically; one that cannot be read, or whose key or contents do not hold together, is ignored
and the file read again.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
from pathlib import Path

from clara_live.atomic import write_text
from clara_live.errors import InputError
from clara_live.music.notes import FAMILIES, Note, Piece
from clara_live.music.read import read_music
from clara_live.music.score_io import SCORE_SUFFIXES

READER_FORMAT = 1
FOLDER = "pieces"  # under the corpus cache's folder


def cached(location: str) -> bool:
    """Whether a source is read through this cache: a score file (not music21's bundled corpus)."""
    return not location.startswith("music21:") and Path(location).suffix.lower() in SCORE_SUFFIXES


def read_piece(location: str, sustain_pedal: bool, folder: str | Path = "", content: bytes | None = None) -> Piece:
    """The piece read_music reads from location, from the cache in folder when it holds it (and
    stored there when it did not). `content`: the file's bytes, where the caller has them.
    InputError as read_music raises it, for a file read now or kept as unreadable."""
    if not folder or not cached(location):
        return read_music(location, sustain_pedal)
    if content is None:
        content = Path(location).read_bytes()
    where = Path(folder) / FOLDER
    key = entry_key(content)
    entry = load(where, key, location)
    if isinstance(entry, Piece):
        return entry
    if isinstance(entry, str):
        raise InputError(f"{location}: {entry}")
    try:
        piece = read_music(location, sustain_pedal)
    except InputError as exc:
        reason = str(exc).removeprefix(f"{location}: ")
        _store(where, key, {"error": reason})
        raise
    _store(where, key, _entry(piece))
    return piece


def entry_key(content: bytes) -> str:
    """A score's entry: its bytes, the reader and its library's version, READER_FORMAT."""
    settings = json.dumps({"reader": "score", "music21": _music21_version(), "format": READER_FORMAT},
                          sort_keys=True)
    digest = hashlib.sha256(content)
    digest.update(b"\0" + settings.encode("utf-8"))
    return digest.hexdigest()


def _music21_version() -> str:
    try:
        return importlib.metadata.version("music21")
    except importlib.metadata.PackageNotFoundError:
        return ""


def _path(folder: Path, key: str) -> Path:
    return folder / key[:2] / f"{key}.json"


def _entry(piece: Piece) -> dict:
    notes = piece.notes
    return {"bpm": piece.bpm, "parts": list(piece.parts), "programs": list(piece.programs),
            "start": [n.start for n in notes], "end": [n.end for n in notes], "pitch": [n.pitch for n in notes],
            "velocity": [n.velocity for n in notes], "family": "".join(n.family for n in notes),
            "part": [n.part for n in notes]}


def load(folder: Path, key: str, location: str) -> Piece | str | None:
    """The piece an entry holds (its source named location), the reason it holds for a file that
    could not be read, or None: no entry, or one that cannot be trusted."""
    try:
        entry = json.loads(_path(folder, key).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(entry, dict) or entry.get("key") != key:
        return None
    if isinstance(entry.get("error"), str):
        return entry["error"]
    try:
        columns = [entry[name] for name in ("start", "end", "pitch", "velocity", "family", "part")]
        notes = [Note(float(s), float(e), int(p), int(v), f, int(part))
                 for s, e, p, v, f, part in zip(*columns, strict=True)]
        parts = tuple(str(name) for name in entry["parts"])
        # entries written before the programs were kept have none: the corpus, their only reader, never asks
        programs = tuple(int(p) for p in entry.get("programs", ()))
        bpm = float(entry["bpm"])
    except (KeyError, TypeError, ValueError):
        return None
    if any(n.family not in FAMILIES or not 0 <= n.pitch <= 127 for n in notes):
        return None
    return Piece(notes, bpm, location, parts, programs)


def _store(folder: Path, key: str, entry: dict) -> None:
    try:
        write_text(_path(folder, key), json.dumps({**entry, "key": key, "format": READER_FORMAT}))
    except OSError:
        pass  # a cache that cannot be written is only slower
