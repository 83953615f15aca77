"""A corpus built by `clara corpus`, read back: manifest.json (pieces, splits, works, codec,
vocabulary) and one token file per split. Used by training, the judges and the benchmarks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from clara_live.codec.notewise import TOUCH_UNKNOWN
from clara_live.codec.tokens import Kind
from clara_live.codec.vocabulary import KINDS, Vocabulary
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

    def pieces(self, split: str, vocabulary: list[str] | None = None, touch: bool = False) -> list[np.ndarray]:
        """Each line of split.txt as an id array over vocabulary (the corpus's own by default); with
        touch, an array (tokens, 3) of ids and each token's velocity and offset from split.touch
        (clara_live/model/touch.py's columns)."""
        ids = self._ids(split, vocabulary)
        return [with_touch(piece, line, self.vocab(vocabulary), f"{self.folder / f'{split}.touch'}:{n + 1}")
                for n, (piece, line) in enumerate(zip(ids, self._touch_lines(split, len(ids)), strict=True))] \
            if touch else ids

    def _touch_lines(self, split: str, count: int) -> list[str]:
        path = self.folder / f"{split}.touch"
        try:
            lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        except FileNotFoundError:
            raise InputError(f"{path}: missing (a corpus built before touch: build it again with `clara corpus`)"
                             ) from None
        if len(lines) != count:
            raise InputError(f"{path}: {len(lines)} lines for {count} pieces in {split}.txt")
        return lines

    def _ids(self, split: str, vocabulary: list[str] | None) -> list[np.ndarray]:
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


def with_touch(ids: np.ndarray, line: str, vocab: Vocabulary, where: str) -> np.ndarray:
    """(tokens, 3): the ids, each note-on's velocity and offset from its touch line (`-`: unknown,
    velocity -1), 0 and 0 for the other tokens."""
    out = np.zeros((len(ids), 3), dtype=np.int64)
    out[:, 0] = ids
    strikes = np.flatnonzero(vocab.kind[ids] == KINDS.index(Kind.ON))
    if line.strip() == "-":
        out[strikes, 1] = TOUCH_UNKNOWN
        return out
    try:
        pairs = np.array([item.split(":") for item in line.split()], dtype=np.int64).reshape(-1, 2)
    except ValueError:
        raise InputError(f"{where}: not a touch line (velocity:offset per note-on)") from None
    if len(pairs) != len(strikes):
        raise InputError(f"{where}: {len(pairs)} touches for {len(strikes)} note-on tokens")
    if len(pairs) and (pairs[:, 0].min() < 1 or pairs[:, 0].max() > 127
                       or pairs[:, 1].min() < -50 or pairs[:, 1].max() > 49):
        raise InputError(f"{where}: a velocity outside 1..127 or an offset outside -50..49")
    out[strikes, 1:] = pairs
    return out
