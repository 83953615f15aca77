"""Encoded pieces kept on disk, keyed by the file's content and the settings that encode it.

music21 takes seconds to read a quartet and a build reads thousands of files: a file is read
once, and a later build with the same codec settings finds its tokens and fingerprint here
(`corpus.cache`, default ~/.cache/clara-live/corpus; "" turns it off). An entry is one JSON
file written atomically; one that cannot be read is encoded again. Nothing here trusts an entry
beyond its key: the key hashes the file's bytes, the codec settings, the families kept, the
arrangement (with chamber) and the entry format. The music a score's parse gave is kept apart,
by the file's bytes alone (clara_live.corpus.read_cache), so a codec change never parses again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

from clara_live.atomic import write_text
from clara_live.config import CodecConfig

ENTRY_FORMAT = 3  # 2: with each note-on's touch; 3: offsets without float noise (entries of 2 may differ by 1/100 step)
# chamber encodings only (so the keys of piano builds stay): 2: a lone v part moved by whole octaves
# before its notes are folded (codec/steps.py), and the corpora's arrangements (corpus/parts.py)
CHAMBER_FORMAT = 2


def default_folder() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "clara-live" / "corpus"


def entry_key(content: bytes, codec: CodecConfig, families: tuple[str, ...], arrangement: str = "") -> str:
    """The key of a file's entry. The arrangement (clara_live.corpus.parts) and CHAMBER_FORMAT
    apply only with codec.chamber, so they join the key only then (the keys of every piano build
    stay as they were)."""
    settings = {"codec": dataclasses.asdict(codec), "families": list(families), "format": ENTRY_FORMAT}
    if codec.chamber:
        settings["chamber_format"] = CHAMBER_FORMAT
        if arrangement:
            settings["arrangement"] = arrangement
    digest = hashlib.sha256(content)
    digest.update(json.dumps(settings, sort_keys=True).encode("utf-8"))
    return digest.hexdigest()


def load(folder: Path, key: str) -> dict | None:
    path = folder / key[:2] / f"{key}.json"
    try:
        entry = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return entry if isinstance(entry, dict) and entry.get("key") == key else None


def store(folder: Path, key: str, entry: dict) -> None:
    try:
        write_text(folder / key[:2] / f"{key}.json", json.dumps({**entry, "key": key}))
    except OSError:
        pass  # a cache that cannot be written is only slower
