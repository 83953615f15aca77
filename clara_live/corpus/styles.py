"""Style: one conditioning token at the head of each piece's line (corpus.style).

A piece's style is its composer where the corpus names one (the surname, accents folded, as
clara_live.corpus.works.composer_name spells it: "Chopin, Frédéric" and "Chopin" are one), if
that composer has at least corpus.style_min_works works in train across all corpora; else its
corpus's style: "pop" (POP909, which names no composer), "lied", "quartet", and "piano" for the
piano corpora and any other folder (clara_live.corpus.sources gives each source its styles). So
a style token names music enough to learn it, and every piece carries one. The token is
`style_{name}` (clara_live.codec.tokens.style); the manifest lists each style with its pieces
by split and its works in train.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from clara_live.codec.tokens import style
from clara_live.corpus.sources import PIANO_STYLE, Source
from clara_live.corpus.works import composer_name


def choose(sources: Sequence[Source], splits: Sequence[str], groups: Sequence[int], min_works: int) -> list[str]:
    """Each piece's style (see the module's docstring), from its source's styles, its split and its
    work (groups: one index per work, as clara_live.corpus.works.assign gives them)."""
    works: dict[str, set[int]] = defaultdict(set)
    for source, split, group in zip(sources, splits, groups, strict=True):
        if split == "train":
            for name in source.styles[:-1]:
                works[name].add(group)
    chosen = []
    for source in sources:
        options = source.styles or (PIANO_STYLE,)
        chosen.append(next((name for name in options[:-1] if len(works[name]) >= min_works), options[-1]))
    return chosen


def token_for(text: str) -> str:
    """The style token a name asks for ("Chopin, Frédéric", "Chopin" and "chopin": "style_chopin";
    "pop": "style_pop"), or "" for a name with no letters to keep. Whether a model knows it is its
    vocabulary's to say (Vocabulary.style_id)."""
    name = composer_name(text)
    return style(name) if name else ""
