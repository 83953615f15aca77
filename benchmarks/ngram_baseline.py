"""N-gram baseline for the language model: interpolated modified Kneser-Ney on a corpus.

What it measures: how well a classic n-gram model (default order 5) predicts the test split
of a corpus built by `clara corpus`, in the same terms as the AWD-LSTM evaluation:
- nll: mean negative log-likelihood in nats per token; perplexity = exp(nll);
- accuracy: how often the argmax of the predictive distribution over the vocabulary is the
  token that actually comes next.
The valid split is reported beside the test split.

Sequences: each line of a split (one piece) is its own sequence; the train pieces of a corpus of
format 2 (stored once, their keys drawn in training) are counted in every key they may be drawn in. The context at the
start of a line is order-1 `<s>` pads; exactly the tokens of the line are predicted, the
first one included, and no end-of-piece `</s>` is added or predicted, as in the LSTM
evaluation. `<s>` is a context symbol only: it is never predicted and has no probability.

The model (Chen & Goodman 1998, "An empirical study of smoothing techniques for language
modeling", section 3.5): for a context h of length k-1 and its suffix h' of length k-2,

    P_k(w | h) = max(c(hw) - D(c(hw)), 0) / c(h.) + gamma(h) P_{k-1}(w | h')
    gamma(h)   = (D1 N1(h.) + D2 N2(h.) + D3+ N3+(h.)) / c(h.)

and P_k(w | h) = P_{k-1}(w | h') for a context never seen in training. At the top order c is
the raw count; below it c is the continuation count N1+(.hw), the number of distinct tokens
seen before hw (an n-gram that starts with `<s>` keeps its raw count, as in KenLM: nothing
but padding can come before it). The recursion ends in the uniform distribution over the
vocabulary, so every token of the vocabulary has a nonzero probability. The discounts of
each order come from that order's count-of-counts n1..n4: Y = n1 / (n1 + 2 n2),
D1 = 1 - 2Y n2/n1, D2 = 2 - 3Y n3/n2, D3+ = 3 - 4Y n4/n3; an estimate that is undefined or
outside (0, i] (tiny corpora) falls back to i/2.

Vocabulary: the corpus manifest's vocabulary plus any token seen in train. A chordwise
corpus names an unknown token (`<unk>`) in its manifest: then the vocabulary is the
manifest's alone and every token outside it, in train or test, becomes `<unk>`, which is
what the language model sees.

Implementation: tokens become integer ids and an n-gram of length k the integer
sum(id_j * B^(k-1-j)) with B = |V| + 1, so counting is np.unique over int64 arrays and a
context's n-grams are one contiguous run of the sorted codes. Evaluation computes the whole
distribution over the vocabulary for blocks of positions at once (numpy, no Python loop
per position).

Run it from the repository root:
    python benchmarks/ngram_baseline.py /tmp/corp                 # order 5
    python benchmarks/ngram_baseline.py /tmp/corp --order 3 --json
    python benchmarks/ngram_baseline.py /tmp/corp --lstm-nll 1.23  # prints 1.23 / ngram nll
    python benchmarks/ngram_baseline.py /tmp/corp --model trained_models/clara-notewise  # the LSTM's
        # test nll, perplexity and accuracy too, and its nll / the n-gram's
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BOS = "<s>"
DEFAULT_ORDER = 5
BLOCK = 4096  # positions per block of the vectorised evaluation: BLOCK x |V| float64 arrays


@dataclass(frozen=True)
class _Level:
    """The n-grams of one length k, sorted by code, grouped by their context (first k-1 ids)."""

    words: np.ndarray  # (G,) int64: the last id of each k-gram
    discounted: np.ndarray  # (G,) float64: max(c - D(c), 0), c the raw or continuation count
    contexts: np.ndarray  # (H,) int64: sorted codes of the contexts seen
    starts: np.ndarray  # (H + 1,) int64: context j owns k-grams starts[j]:starts[j + 1]
    totals: np.ndarray  # (H,) float64: c(h.), the sum of counts after context j
    gammas: np.ndarray  # (H,) float64: the weight left for the lower order
    discounts: tuple[float, float, float]  # D1, D2, D3+


class KneserNey:
    """A fitted interpolated modified Kneser-Ney model; build it with fit()."""

    def __init__(self, vocabulary: list[str], order: int, levels: list[_Level], unknown: str | None,
                 train_tokens: int) -> None:
        self.vocabulary = vocabulary  # id -> token; the id of <s> is len(vocabulary)
        self.index = {t: i for i, t in enumerate(vocabulary)}
        self.order = order
        self.unknown = unknown
        self.train_tokens = train_tokens
        self._levels = levels  # _levels[k - 1]: n-grams of length k
        self._bos = len(vocabulary)
        self._base = len(vocabulary) + 1

    @property
    def discounts(self) -> list[tuple[float, float, float]]:
        """(D1, D2, D3+) per order, unigrams first."""
        return [level.discounts for level in self._levels]

    def ids(self, tokens: Iterable[str]) -> list[int]:
        """Token ids; a token outside the vocabulary becomes the unknown token if there is one,
        else raises ValueError (its probability would be zero, its NLL infinite)."""
        out = []
        for t in tokens:
            i = self.index.get(t)
            if i is None:
                if self.unknown is None:
                    raise ValueError(f"token {t!r} is not in the model's vocabulary")
                i = self.index[self.unknown]
            out.append(i)
        return out

    def distribution(self, context: Sequence[str]) -> np.ndarray:
        """P(w | context) for every w of the vocabulary, shape (|V|,), in vocabulary order.

        context: the tokens before, from the start of the piece; only the last order-1 count,
        and a shorter context is the start of a piece (padded with <s> on the left).
        """
        keep = list(context)[-(self.order - 1):] if self.order > 1 else []
        ids = [self._bos if t == BOS else self.ids([t])[0] for t in keep]
        row = [self._bos] * (self.order - 1 - len(ids)) + ids
        return self._distributions(np.array([row], dtype=np.int64).reshape(1, self.order - 1))[0]

    def prob(self, context: Sequence[str], token: str) -> float:
        """P(token | context), context as in distribution(); 0.0 for a token outside the
        vocabulary when the model has no unknown token."""
        if token not in self.index and self.unknown is None:
            return 0.0
        return float(self.distribution(context)[self.ids([token])[0]])

    def _distributions(self, contexts: np.ndarray) -> np.ndarray:
        """contexts (m, order-1) ids, oldest first -> (m, |V|) predictive distributions."""
        m, size = len(contexts), len(self.vocabulary)
        p = np.full((m, size), 1.0 / size)  # order 0: uniform
        code = np.zeros(m, dtype=np.int64)  # the context of length k-1, as an n-gram code
        for k, level in enumerate(self._levels, start=1):
            if k > 1:
                code = contexts[:, -(k - 1)] * self._base ** (k - 2) + code
            j = np.searchsorted(level.contexts, code)
            jc = np.minimum(j, len(level.contexts) - 1)
            seen = np.flatnonzero((j < len(level.contexts)) & (level.contexts[jc] == code))
            if not len(seen):
                continue
            j = j[seen]
            lo, hi = level.starts[j], level.starts[j + 1]
            lengths = hi - lo
            rows = np.repeat(np.arange(len(seen)), lengths)
            flat = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths) + np.repeat(lo, lengths)
            mixed = level.gammas[j][:, None] * p[seen]  # (s, |V|)
            mixed[rows, level.words[flat]] += level.discounted[flat] / level.totals[j][rows]
            p[seen] = mixed
        return p


def _discounts(counts: np.ndarray) -> tuple[float, float, float]:
    """Chen & Goodman's D1, D2, D3+ from the count-of-counts of one order."""
    n = np.bincount(np.minimum(counts, 5), minlength=5).astype(float)  # n[i]: n-grams seen i times
    y = n[1] / (n[1] + 2 * n[2]) if n[1] + n[2] > 0 else 0.0
    out = []
    for i in (1, 2, 3):
        d = i - (i + 1) * y * n[i + 1] / n[i] if n[i] > 0 and n[i + 1] > 0 and y > 0 else math.nan
        out.append(float(d) if 0 < d <= i else i / 2)
    return out[0], out[1], out[2]


def _level(codes: np.ndarray, counts: np.ndarray, base: int) -> _Level:
    """Tables of one order from its sorted unique codes and their (raw or continuation) counts."""
    discounts = _discounts(counts)
    d = np.array((0.0, *discounts))[np.minimum(counts, 3)]  # D(c) per n-gram
    context_of = codes // base
    contexts, starts = np.unique(context_of, return_index=True)
    totals = np.add.reduceat(counts.astype(float), starts)
    gammas = np.add.reduceat(d, starts) / totals
    return _Level(words=codes % base, discounted=np.maximum(counts - d, 0.0), contexts=contexts,
                  starts=np.append(starts, len(codes)).astype(np.int64), totals=totals, gammas=gammas,
                  discounts=discounts)


def _padded(model_ids: list[list[int]], order: int, bos: int) -> tuple[np.ndarray, np.ndarray]:
    """One stream of all sequences, each after order-1 <s>; and the positions to predict."""
    pad = [bos] * (order - 1)
    stream, positions, at = [], [], 0
    for ids in model_ids:
        stream += pad
        stream += ids
        positions.append(np.arange(at + len(pad), at + len(pad) + len(ids)))
        at += len(pad) + len(ids)
    positions_array = np.concatenate(positions) if positions else np.zeros(0, dtype=np.int64)
    return np.array(stream, dtype=np.int64), positions_array


def fit(sequences: Iterable[Sequence[str]], order: int = DEFAULT_ORDER, vocabulary: Iterable[str] = (),
        unknown: str | None = None) -> KneserNey:
    """Fit an interpolated modified Kneser-Ney model of the given order.

    sequences: one list of tokens per piece version (each is its own sequence, see the
    module docstring). vocabulary: tokens the model must give probability to even if train
    never shows them; tokens seen in train are added, unless unknown is given: then the
    vocabulary is vocabulary + [unknown] and train tokens outside it become unknown.
    """
    if order < 1:
        raise ValueError(f"order must be at least 1, not {order}")
    sequences = [list(s) for s in sequences]
    words = list(dict.fromkeys(vocabulary))
    if unknown is not None and unknown not in words:
        words.append(unknown)
    if unknown is None:
        known = set(words)
        words += sorted({t for s in sequences for t in s} - known)
    if BOS in words:
        raise ValueError(f"{BOS} is reserved for the padding of contexts")
    if not words:
        raise ValueError("empty vocabulary and no training tokens")
    base = len(words) + 1
    if base ** order >= 2**63:
        raise ValueError(f"order {order} with {len(words)} tokens overflows the int64 n-gram codes")
    model = KneserNey(words, order, [], unknown, train_tokens=sum(len(s) for s in sequences))
    stream, positions = _padded([model.ids(s) for s in sequences], order, model._bos)
    if not len(positions):
        raise ValueError("no training tokens")

    # grams[k]: code of the k-gram ending at each predicted position (positions are >= order-1)
    grams = [np.zeros(len(positions), dtype=np.int64)]
    for k in range(1, order + 1):
        grams.append(stream[positions - (k - 1)] * base ** (k - 1) + grams[-1])
    levels: list[_Level] = [None] * order  # type: ignore[list-item]
    codes, counts = np.unique(grams[order], return_counts=True)
    levels[order - 1] = _level(codes, counts, base)
    for k in range(order - 1, 0, -1):
        longer = codes  # unique (k+1)-grams
        codes, continuation = np.unique(longer % base**k, return_counts=True)  # N1+(. g) per k-gram g
        raw_codes, raw = np.unique(grams[k], return_counts=True)
        assert np.array_equal(codes, raw_codes)  # every k-gram is the suffix of a (k+1)-gram
        counts = np.where(codes // base ** (k - 1) == model._bos, raw, continuation)
        levels[k - 1] = _level(codes, counts, base)
    model._levels = levels
    return model


def evaluate(model: KneserNey, sequences: Iterable[Sequence[str]]) -> dict:
    """NLL (nats/token), perplexity and next-token accuracy of model on sequences.

    Every token of every sequence is predicted from its padded context (see the module
    docstring); ties in the argmax go to the earlier vocabulary entry.
    """
    n = model.order
    stream, positions = _padded([model.ids(s) for s in sequences], n, model._bos)
    nll, hits = 0.0, 0
    for lo in range(0, len(positions), BLOCK):
        at = positions[lo:lo + BLOCK]
        contexts = stream[at[:, None] + np.arange(-(n - 1), 0)]  # (m, order-1)
        targets = stream[at]
        p = model._distributions(contexts)
        nll -= float(np.log(p[np.arange(len(at)), targets]).sum())
        hits += int((p.argmax(axis=1) == targets).sum())
    tokens = len(positions)
    mean = nll / tokens if tokens else math.nan
    return {"nll": mean, "perplexity": math.exp(mean) if tokens else math.nan,
            "accuracy": hits / tokens if tokens else math.nan, "tokens": tokens}


def read_split(corpus: Path, split: str) -> list[list[str]]:
    """One token list per non-empty line of corpus/split.txt."""
    with open(corpus / f"{split}.txt", encoding="utf-8") as f:
        return [tokens for line in f if (tokens := line.split())]


def in_every_key(train: list[list[str]], manifest: dict) -> list[list[str]]:
    """A corpus of format 2 stores each train piece once and training draws its key afresh every
    epoch from the piece's shifts: the n-gram counts each piece in all those keys (what the LSTM
    sees over its epochs, and what format 1 stored)."""
    if manifest.get("format", 1) < 2:
        return train
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from clara_live.codec.tokens import UNK, Grammar, transposed
    from clara_live.config import CodecConfig

    grammar = Grammar(CodecConfig(**manifest["codec"]))
    num_pitches = grammar.config.num_pitches
    pieces = sorted((p for p in manifest["pieces"] if p["split"] == "train"), key=lambda p: p["line"])
    out = []
    for piece, tokens in zip(pieces, train, strict=True):
        parsed = [grammar.parse(t) for t in tokens]
        for shift in piece["shifts"]:
            moved = [transposed(t, shift, num_pitches) for t in parsed]
            out.append([UNK if m is None else str(m) for m in moved])
    return out


def lstm_test_score(model_dir: Path, corpus: Path) -> dict:
    """The model's NLL, perplexity and accuracy on the corpus's test lines (each from a zero state; the
    first token of a line has no context and is not predicted, one token in ~5,000 here)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import torch

    from clara_live.model import load_model
    from clara_live.model.evaluate import score
    from training.data import Corpus

    torch.backends.mkldnn.enabled = False
    loaded = load_model(model_dir)
    return score(loaded.model, Corpus(corpus).pieces("test", loaded.vocabulary))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("corpus", type=Path, help="a folder written by `clara corpus`")
    parser.add_argument("--order", type=int, default=DEFAULT_ORDER, help="n-gram order (default 5)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--lstm-nll", type=float, help="the LSTM's test NLL (nats/token): print it / n-gram NLL")
    parser.add_argument("--model", type=Path, help="a model folder: score it on the same test split (sets --lstm-nll)")
    args = parser.parse_args(argv)
    lstm = lstm_test_score(args.model, args.corpus) if args.model is not None else None
    if lstm is not None:
        args.lstm_nll = lstm["nll"]

    manifest = json.loads((args.corpus / "manifest.json").read_text(encoding="utf-8"))
    start = time.perf_counter()
    train = in_every_key(read_split(args.corpus, "train"), manifest)
    model = fit(train, args.order, manifest["vocabulary"], manifest.get("unknown_token"))
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    test = evaluate(model, read_split(args.corpus, "test"))
    valid = evaluate(model, read_split(args.corpus, "valid"))
    eval_s = time.perf_counter() - start

    result = {**test, "order": args.order, "train_tokens": model.train_tokens, "valid": valid,
              "vocabulary": len(model.vocabulary), "discounts": model.discounts,
              "fit_seconds": round(fit_s, 2), "eval_seconds": round(eval_s, 2)}
    if args.lstm_nll is not None:
        result["lstm_nll"] = args.lstm_nll
        result["lstm_ratio"] = args.lstm_nll / test["nll"]
    if lstm is not None:
        result["lstm_test"] = lstm
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"interpolated modified Kneser-Ney, order {args.order}, {len(model.vocabulary)} tokens in the vocabulary, "
          f"{model.train_tokens} train tokens (fit {fit_s:.1f} s, evaluation {eval_s:.1f} s)")
    for name, r in (("test", test), ("valid", valid)):
        print(f"{name:5s}: nll {r['nll']:.4f} nats/token, perplexity {r['perplexity']:.3f}, "
              f"accuracy {r['accuracy']:.4f} over {r['tokens']} tokens")
    if lstm is not None:
        print(f"lstm : nll {lstm['nll']:.4f} nats/token, perplexity {lstm['perplexity']:.3f}, "
              f"accuracy {lstm['accuracy']:.4f} over {lstm['tokens']} tokens (test)")
    if args.lstm_nll is not None:
        print(f"lstm nll / n-gram nll (test): {result['lstm_ratio']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
