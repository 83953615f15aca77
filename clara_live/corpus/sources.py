"""What a corpus folder holds: a Source per piece, with its composer, work and metadata.

A folder is read by the reader its contents call for, where its metadata says more than the
folder does:
- ASAP (`metadata.csv` with `midi_performance`): one source per performance; the work is the
  score's folder (its `_no_repeat`-style suffix removed: a work and its repeat-less version are
  one work), the title from the metadata, the beat annotations beside it.
- Pianolatron (`catalog.json`): one source per roll (its druid names the file); composer, work
  title and performer from the catalogue.
- POP909 (a README naming POP909, songs as `NNN.mid`): one source per song, all its tracks
  (melody, bridge, piano) as one piano part; with codec.chamber the melody as `v` over the rest
  as `p` (clara_live.corpus.parts).
- OpenScore (a README naming OpenScore, `.mxl` scores under composer folders): the composer is the
  top folder; Lieder keep their piano part only (the voice is a `v` part), quartets all four;
  with codec.chamber the Lieder keep the voice too.
- Any other folder: its MIDI and score files, composer = parent folder (piano-midi.de's layout).
  A piano-midi.de `metadata.csv` (composer, title, midi) gives titles where present.
A root that holds several of these (../shared/corpus) is read as each of its corpus folders.

Each source names the styles it may carry (corpus.style; clara_live.corpus.styles): its composer,
as every corpus spells them, where the corpus names one, then its corpus's style ("pop",
"lied", "quartet", and "piano" for the piano corpora and any other folder).

A source's `key` is what the split hashes when the work has no twin elsewhere: for the plain
folder the file's path relative to the folder given (as every corpus built before), else
`corpus:id`. Nothing here reads music; the build does, in its worker processes.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

from clara_live.codec.tokens import PIANO_STYLE
from clara_live.corpus.parts import LIED, POP909
from clara_live.corpus.works import composer_name
from clara_live.errors import InputError
from clara_live.music.notes import PIANO
from clara_live.music.read import READABLE_SUFFIXES
from clara_live.music.score_io import CORPUS_PREFIX, corpus_works

ASAP_REPEATS = re.compile(r"_(no_repeat|no_first_repeat|repeat|no_trio)$")
# the corpora's styles: a piece whose composer has too little music (or none named) takes its corpus's
POP_STYLE, LIED_STYLE, QUARTET_STYLE, SCORE_STYLE = "pop", "lied", "quartet", "score"  # and codec's PIANO_STYLE


class Source(NamedTuple):
    location: str  # a file path or `music21:PATH`
    key: str  # what the split hashes (see the module's docstring)
    composer: str
    corpus: str = ""  # the corpus folder's name ("" for a file or music21 work given alone)
    work: str = ""  # the work within its corpus: performances, rolls and repeats of one work share it
    title: str = ""  # from the corpus's metadata, for matching works across corpora
    families: tuple[str, ...] = ()  # keep only these instrument families ((): all)
    beats: str = ""  # a performance's beat annotations (one beat a line), for corpus.performance_grid beats
    arrangement: str = ""  # with codec.chamber, which family each part plays (clara_live.corpus.parts): "" as read
    styles: tuple[str, ...] = ()  # the styles it may carry, most specific first: (composer, corpus's style)


def find_sources(specs: Iterable[str]) -> list[Source]:
    """Expand folders, files and `music21:NAME` (a composer) or `music21:PATH` (a work).

    A spec that names nothing readable is an error (the command line is wrong, not a file in it).
    """
    sources: list[Source] = []
    for spec in specs:
        if spec.startswith(CORPUS_PREFIX):
            name = spec[len(CORPUS_PREFIX):]
            works = [spec] if "/" in name else corpus_works(name)
            sources += [Source(w, w, name.split("/")[0], "music21", w, styles=_styles(name.split("/")[0]))
                        for w in works]
            continue
        path = Path(spec)
        if path.is_dir():
            sources += _folder(path)
        elif path.exists() or path.is_symlink():  # a FIFO or a dangling link too: skipped and reported
            sources.append(Source(str(path), path.name, path.parent.name, "", path.name,
                                  styles=_styles(path.parent.name)))
        else:
            raise InputError(f"{spec}: no such file or folder")
    return sources


def _folder(path: Path) -> list[Source]:
    kind = corpus_kind(path)
    if kind == "collection":
        found = []
        for child in sorted(p for p in path.iterdir() if p.is_dir()):
            found += _folder(child)
        return found
    reader = {"asap": _asap, "pianolatron": _pianolatron, "pop909": _pop909, "openscore": _openscore}.get(kind, _plain)
    sources = reader(path)
    if not sources:
        raise InputError(f"{path}: no MIDI or score files in this folder")
    return sources


def corpus_kind(path: Path) -> str:
    """asap | pianolatron | pop909 | openscore | collection (a folder of corpora) | plain."""
    if (path / "catalog.json").is_file():
        return "pianolatron"
    if (path / "metadata.csv").is_file() and "midi_performance" in _header(path / "metadata.csv"):
        return "asap"
    readme = _readme(path)
    if "pop909" in readme:
        return "pop909"
    if "openscore" in readme:
        return "openscore"
    children = [p for p in path.iterdir() if p.is_dir()]
    if children and any(corpus_kind(c) != "plain" for c in children):
        return "collection"
    return "plain"


def _readme(path: Path) -> str:
    try:
        return (path / "README.md").read_text(encoding="utf-8", errors="replace")[:400].lower()
    except OSError:
        return ""


def _header(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8") as f:
        return next(csv.reader(f), [])


def _files(path: Path) -> list[Path]:
    """The music files under path, by suffix; a folder, FIFO or dangling link with such a name too,
    so that the build reports it (encode_source) rather than passing over it in silence."""
    return sorted(p for p in path.rglob("*") if p.suffix.lower() in READABLE_SUFFIXES)


def _plain(path: Path) -> list[Source]:
    titles = _pmd_titles(path)
    out = []
    for f in _files(path):
        key = f.relative_to(path).as_posix()
        out.append(Source(str(f), key, f.parent.name, path.name, key, titles.get(key, f.stem),
                          styles=_styles(f.parent.name)))
    return out


def _pmd_titles(path: Path) -> dict[str, str]:
    """piano-midi.de's metadata.csv: (composer folder/file) -> title."""
    meta = path / "metadata.csv"
    if not meta.is_file() or "midi" not in _header(meta):
        return {}
    with open(meta, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return {"/".join(r["midi"].split("/")[-2:]): r.get("title", "") for r in rows if r.get("midi")}


def _asap(path: Path) -> list[Source]:
    with open(path / "metadata.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    out = []
    for r in rows:
        work = ASAP_REPEATS.sub("", r["folder"])
        beats = str(path / r["performance_annotations"]) if r.get("performance_annotations") else ""
        out.append(Source(str(path / r["midi_performance"]), f"asap:{work}", r["composer"], path.name,
                          work, r.get("title", ""), (), beats, styles=_styles(r["composer"])))
    return out


def _pianolatron(path: Path) -> list[Source]:
    try:
        catalog = json.loads((path / "catalog.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{path / 'catalog.json'}: not a readable catalogue ({exc})") from None
    files = {f.stem: f for f in _files(path)}
    out = []
    for roll in catalog:
        druid = str(roll.get("druid", ""))
        file = files.pop(druid, None)
        if file is None:
            continue  # a roll deliberately left out of this copy
        composer = roll.get("composer") or file.parent.name
        title = roll.get("work") or roll.get("title") or druid
        out.append(Source(str(file), f"pianolatron:{druid}", composer, path.name, druid, title,
                          styles=_styles(composer)))
    for druid, file in sorted(files.items()):  # files the catalogue does not list
        out.append(Source(str(file), f"pianolatron:{druid}", file.parent.name, path.name, druid, druid,
                          styles=_styles(file.parent.name)))
    return out


def _pop909(path: Path) -> list[Source]:
    """The songs; the corpus names no composer, so its style is its own."""
    return [Source(str(f), f"pop909:{f.stem}", "POP909", path.name, f.stem, f.stem, styles=(POP_STYLE,),
                   arrangement=POP909) for f in _files(path)]


def _openscore(path: Path) -> list[Source]:
    lieder = "lieder" in _readme(path) or "lieder" in path.name.lower()
    quartets = "quartet" in _readme(path) or "quartet" in path.name.lower()
    style = LIED_STYLE if lieder else QUARTET_STYLE if quartets else SCORE_STYLE
    out = []
    for f in _files(path):
        relative = f.relative_to(path)
        composer = relative.parts[0] if len(relative.parts) > 1 else path.name
        work = relative.parent.as_posix()
        out.append(Source(str(f), f"{path.name}:{relative.as_posix()}", composer, path.name, work,
                          relative.parent.name.replace("_", " "), (PIANO,) if lieder else (),
                          styles=_styles(composer, style),
                          arrangement=LIED if lieder else ""))
    return out


def _styles(composer: str, corpus_style: str = PIANO_STYLE) -> tuple[str, ...]:
    """A piece's styles: its composer as every corpus spells them (when that leaves a name), then its corpus's."""
    named = composer_name(composer)
    return (named, corpus_style) if named and named != corpus_style else (corpus_style,)
