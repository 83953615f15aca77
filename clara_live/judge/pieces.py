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
from clara_live.errors import ClaraError
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
    encoder = make_codec(codec)
    index = {t: i for i, t in enumerate(vocabulary)}
    unknown = "<unk>" if "<unk>" in index else None
    pieces, problems = [], []
    for source in find_sources(specs):
        try:
            tokens = encoder.encode(to_steps(read_music(source.location, codec.sustain_pedal), codec))
            ids = token_ids(tokens, index, unknown, source.location)
        except (ClaraError, ValueError) as exc:
            problems.append(str(exc))
            continue
        if len(ids) < 2:
            problems.append(f"{source.location}: no notes")
            continue
        pieces.append(LabelledPiece(source.key, source.composer, ids, source.location))
    return pieces, problems
