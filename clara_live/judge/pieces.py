"""Labelled pieces for the judges: every file of a corpus folder as token ids, labelled by its
composer (the parent folder's name, as `clara corpus` labels them), or the pieces of a corpus
`clara corpus` built, with their corpus, composer, work and split. A file that cannot be read
is skipped and reported, and the rest go on."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

import numpy as np

from clara_live.codec import make_codec, to_steps
from clara_live.codec.vocabulary import Vocabulary
from clara_live.corpus import find_sources
from clara_live.errors import ClaraError, InputError
from clara_live.music.instruments import chamber_parts
from clara_live.music.read import read_music


class LabelledPiece(NamedTuple):
    key: str  # the path relative to the folder given: what the split hashes
    label: str
    ids: np.ndarray  # token ids in the model's vocabulary
    source: str


def load_labelled(specs: Iterable[str], vocab: Vocabulary) -> tuple[list[LabelledPiece], list[str]]:
    """(pieces, problems): each readable file with at least two tokens as ids in a model's vocabulary,
    and one line per file left out."""
    pieces, problems = [], []
    for source in find_sources(specs):
        try:
            ids = encode_file(source.location, vocab)
        except ClaraError as exc:
            problems.append(str(exc))
            continue
        pieces.append(LabelledPiece(source.key, source.composer, ids, source.location))
    return pieces, problems


def encode_file(source: str, vocab: Vocabulary) -> np.ndarray:
    """One file's token ids in a model's vocabulary; InputError names the file and the reason."""
    codec = vocab.codec
    piece = read_music(source, codec.sustain_pedal)
    if codec.chamber:  # its parts in the model's families, as `clara continue` reads a prompt (a "Melody" track is v)
        piece = chamber_parts(piece)
    tokens = make_codec(codec).encode(to_steps(piece, codec))
    try:
        ids = vocab.ids(tokens, source, unknown=True)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    if len(ids) < 2:
        raise InputError(f"{source}: no notes to judge")
    return ids


class BuiltPiece(NamedTuple):
    key: str  # the manifest's key ("Chopin/chpn_op10_e01.mid"), with the file's stem where several pieces
    # share one (ASAP keys a score: "asap:Bach/Fugue/bwv_846/Shi05M" is one performance of it)
    corpus: str
    composer: str  # as the corpus spells it
    work: str  # the work it belongs to across corpora ("work17"): every piece of a work shares one split
    split: str  # the corpus's split by work
    ids: np.ndarray
    source: str  # the file, as the manifest names it


def built_corpus(folder: str | Path) -> bool:
    """Whether a folder is a corpus `clara corpus` built (not a folder of music files)."""
    return (Path(folder) / "manifest.json").is_file()


def load_built(folder: str | Path, vocabulary: list[str], splits: Iterable[str] = ("train", "valid", "test"),
               corpora: Iterable[str] | None = None) -> list[BuiltPiece]:
    """The pieces of a built corpus's splits (as stored: each in its own key) as ids over a
    model's vocabulary, with their corpus, composer, work and split from manifest.json. A piece's
    style token (corpus.style) is left out: it names the composer a judge is to hear."""
    from clara_live.corpus.built import BuiltCorpus

    corpus = BuiltCorpus(folder)
    keep = None if corpora is None else set(corpora)
    keys = _own_keys(corpus.manifest["pieces"])
    out = []
    for split in splits:
        listed = sorted((p for p in corpus.manifest["pieces"] if p["split"] == split), key=lambda p: p["line"])
        lines = [corpus.vocab(vocabulary).without_styles(ids) for ids in corpus.pieces(split, vocabulary)]
        if len(listed) != len(lines):
            raise InputError(f"{folder}: manifest.json lists {len(listed)} {split} pieces, "
                             f"{split}.txt has {len(lines)}")
        for p, ids in zip(listed, lines, strict=True):
            if keep is None or p.get("corpus", "") in keep:
                out.append(BuiltPiece(keys[p["source"]], p.get("corpus", ""), p["composer"], f"work{p['group']}",
                                      split, ids, p["source"]))
    return out


def _own_keys(pieces: list[dict]) -> dict[str, str]:
    """Each piece's file -> a key of its own: the manifest's, where no other piece has it; else
    with the file's name ("asap:Bach/Fugue/bwv_846/Shi05M": ASAP keys the score, so its
    performances share one), and with its folder too where even that is shared (a performance
    in a score's folder and in its "_no_repeat" twin)."""
    shared = Counter(p["key"] for p in pieces)
    named = {p["source"]: p["key"] if shared[p["key"]] == 1 else f"{p['key']}/{Path(p['source']).stem}"
             for p in pieces}
    again = Counter(named.values())
    return {source: key if again[key] == 1 else f"{key.rsplit('/', 1)[0]}/{Path(source).parent.name}/"
            f"{Path(source).stem}" for source, key in named.items()}
