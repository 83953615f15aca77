"""A corpus built by `clara corpus`, read back: manifest.json (pieces, splits, works, codec,
vocabulary) and one token file per split. Used by training, the judges and the benchmarks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from clara_live.codec.vocabulary import Vocabulary
from clara_live.config import CodecConfig
from clara_live.errors import InputError


class BuiltCorpus:
    """A built corpus folder: manifest.json plus train/valid/test.txt."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        try:
            self.manifest = json.loads((self.folder / "manifest.json").read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError(f"{self.folder}: no manifest.json (build the corpus with `clara corpus`)") from None
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise InputError(f"{self.folder / 'manifest.json'}: not valid JSON") from None
        self.vocabulary: list[str] = self.manifest["vocabulary"]
        self.unknown: str | None = self.manifest.get("unknown_token")
        try:
            self.codec = CodecConfig(**self.manifest["codec"])
        except (KeyError, TypeError):
            raise InputError(f"{self.folder / 'manifest.json'}: no codec settings (build the corpus again with "
                             "`clara corpus`)") from None
        self._vocabs: dict[tuple[str, ...], Vocabulary] = {}

    def vocab(self, vocabulary: list[str] | None = None) -> Vocabulary:
        """A model's vocabulary (the corpus's own by default) read through the corpus's codec, once."""
        tokens = tuple(vocabulary or self.vocabulary)
        if tokens not in self._vocabs:
            self._vocabs[tokens] = Vocabulary(tokens, self.codec)
        return self._vocabs[tokens]

    def pieces(self, split: str, vocabulary: list[str] | None = None) -> list[np.ndarray]:
        """Each line of split.txt as an id array over vocabulary (the corpus's own by default)."""
        vocab = self.vocab(vocabulary)
        path = self.folder / f"{split}.txt"
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            raise InputError(f"{path}: missing") from None
        try:
            return [vocab.ids(line.split(), f"{path}:{n + 1}", unknown=self.unknown is not None)
                    for n, line in enumerate(lines) if line.strip()]
        except ValueError as exc:
            raise InputError(str(exc)) from None
