"""Labelled pieces for the judges: every file of a corpus folder as token ids, labelled by its
composer (the parent folder's name, as `clara corpus` labels them). A file that cannot be read
is skipped and reported, and the rest go on."""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import numpy as np

from clara_live.codec import make_codec, to_steps
from clara_live.config import CodecConfig
from clara_live.corpus import find_sources
from clara_live.errors import ClaraError, InputError
from clara_live.model.evaluate import token_ids
from clara_live.music.read import read_music


class LabelledPiece(NamedTuple):
    key: str  # the path relative to the folder given: what the split hashes
    label: str
    ids: np.ndarray  # token ids in the model's vocabulary
    source: str


def load_labelled(specs: Iterable[str], codec: CodecConfig, vocabulary: list[str]) -> tuple[list[LabelledPiece],
                                                                                               list[str]]:
    """(pieces, problems): each readable file with at least two tokens, and one line per file left out."""
    pieces, problems = [], []
    for source in find_sources(specs):
        try:
            ids = encode_file(source.location, codec, vocabulary)
        except ClaraError as exc:
            problems.append(str(exc))
            continue
        pieces.append(LabelledPiece(source.key, source.composer, ids, source.location))
    return pieces, problems


def encode_file(source: str, codec: CodecConfig, vocabulary: list[str]) -> np.ndarray:
    """One file's token ids in a model's vocabulary; InputError names the file and the reason."""
    tokens = make_codec(codec).encode(to_steps(read_music(source, codec.sustain_pedal), codec))
    index = {t: i for i, t in enumerate(vocabulary)}
    try:
        ids = token_ids(tokens, index, "<unk>" if "<unk>" in index else None, source)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    if len(ids) < 2:
        raise InputError(f"{source}: no notes to judge")
    return ids
