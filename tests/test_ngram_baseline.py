"""benchmarks/ngram_baseline.py: the Kneser-Ney baseline's probabilities, metrics and command."""

from __future__ import annotations

import json
import math
import random
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
from conftest import load_benchmark

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


ngram = load_benchmark("ngram_baseline")
VOCAB = [f"t{i}" for i in range(12)]


def random_corpus(seed: int, lines: int = 30, vocab: list[str] = VOCAB[:9]) -> list[list[str]]:
    rng = random.Random(seed)
    # a Markov-ish source so that contexts repeat and all count-of-counts are populated
    out = []
    for _ in range(lines):
        tok, line = rng.choice(vocab), []
        for _ in range(rng.randint(1, 40)):
            tok = vocab[(vocab.index(tok) + rng.choice((1, 1, 2, 3))) % len(vocab)] if rng.random() < 0.8 \
                else rng.choice(vocab)
            line.append(tok)
        out.append(line)
    return out


def reference_prob(sequences, order, vocabulary, context, token) -> float:
    """Interpolated modified Kneser-Ney written straight from the formulas, dicts of tuples."""
    pad = ["<s>"] * (order - 1)
    raw = [Counter() for _ in range(order + 1)]
    for line in sequences:
        padded = pad + line
        for i in range(order - 1, len(padded)):
            for k in range(1, order + 1):
                raw[k][tuple(padded[i - k + 1:i + 1])] += 1
    counts = [None] * (order + 1)
    counts[order] = raw[order]
    for k in range(order - 1, 0, -1):
        left = defaultdict(set)
        for gram in raw[k + 1]:
            left[gram[1:]].add(gram[0])
        counts[k] = Counter({g: (raw[k][g] if g[0] == "<s>" else len(left[g])) for g in raw[k]})
    words = list(dict.fromkeys(list(vocabulary) + sorted({t for s in sequences for t in s})))

    def discounts(c):
        n = Counter(c.values())  # n[i]: how many n-grams have count exactly i
        y = n[1] / (n[1] + 2 * n[2]) if n[1] + n[2] else 0.0
        out = []
        for i in (1, 2, 3):
            d = i - (i + 1) * y * n[i + 1] / n[i] if n[i] and n[i + 1] and y else math.nan
            out.append(d if 0 < d <= i else i / 2)
        return out

    def p(k, ctx, w):
        if k == 0:
            return 1 / len(words)
        c, (d1, d2, d3) = counts[k], discounts(counts[k])
        follow = {g[-1]: v for g, v in c.items() if g[:-1] == ctx}
        if not follow:
            return p(k - 1, ctx[1:], w)
        total = sum(follow.values())
        d = {1: d1, 2: d2}
        gamma = sum(d.get(v, d3) for v in follow.values()) / total
        here = max(follow.get(w, 0) - d.get(follow.get(w, 0), d3), 0) / total
        return here + gamma * p(k - 1, ctx[1:], w)

    ctx = tuple((pad + list(context))[len(pad + list(context)) - (order - 1):]) if order > 1 else ()
    return p(order, ctx, token)


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_matches_the_formulas_written_out(order):
    train = random_corpus(1)
    model = ngram.fit(train, order=order, vocabulary=VOCAB)
    for context in ([], ["t1"], ["t1", "t2"], ["t5", "t6", "t7"], ["t0", "t11"], ["t11", "t10"], ["t4"] * 5):
        for token in ("t0", "t3", "t4", "t10"):
            expected = reference_prob(train, order, VOCAB, context, token)
            assert model.prob(context, token) == pytest.approx(expected, rel=1e-12), (context, token)


@pytest.mark.parametrize("order", [1, 2, 3, 5])
def test_distributions_sum_to_one(order):
    model = ngram.fit(random_corpus(2), order=order, vocabulary=VOCAB)
    rng = random.Random(order)
    for _ in range(50):
        context = [rng.choice(VOCAB[:9] + ["<s>"]) for _ in range(rng.randint(0, 7))]
        p = model.distribution(context)
        assert p.shape == (len(VOCAB),)
        assert abs(p.sum() - 1.0) < 1e-9
        assert (p > 0).all()
        assert sum(model.prob(context, t) for t in VOCAB) == pytest.approx(1.0, abs=1e-9)


def test_unseen_vocabulary_tokens_get_probability():
    model = ngram.fit(random_corpus(3), order=5, vocabulary=VOCAB)  # t9..t11 never in train
    for token in ("t9", "t10", "t11"):
        assert model.prob(["t1", "t2", "t3", "t4"], token) > 0
    result = ngram.evaluate(model, [["t1", "t10", "t11", "t9"]])
    assert math.isfinite(result["nll"]) and result["tokens"] == 4
    assert model.prob(["t1"], "never") == 0.0
    with pytest.raises(ValueError, match="not in the model's vocabulary"):
        ngram.evaluate(model, [["t1", "never"]])


def test_unknown_token_stands_for_tokens_outside_the_vocabulary():
    train = [["a", "b", "rare", "a", "b"]] * 3
    model = ngram.fit(train, order=2, vocabulary=["a", "b"], unknown="<unk>")
    assert model.vocabulary == ["a", "b", "<unk>"]
    assert model.prob(["a"], "other") == model.prob(["a"], "<unk>") > 0


def test_repetition_is_learned():
    line = ["p60", "p64", "p67", "wait4", "endp60", "endp64", "endp67"] * 20
    train, test = [line] * 5, [line[:70]]
    high = ngram.fit(train, order=5, vocabulary=VOCAB)
    low = ngram.fit(train, order=1, vocabulary=VOCAB)
    r5, r1 = ngram.evaluate(high, test), ngram.evaluate(low, test)
    assert r5["accuracy"] > 0.95
    assert r5["nll"] < r1["nll"] / 5
    assert r5["perplexity"] == pytest.approx(math.exp(r5["nll"]))


def test_nll_and_accuracy_agree_with_prob():
    train, test = random_corpus(4), random_corpus(5, lines=3)
    model = ngram.fit(train, order=4, vocabulary=VOCAB)
    nll, hits, n = 0.0, 0, 0
    for line in test:
        for i, token in enumerate(line):
            p = model.distribution(line[:i])
            nll -= math.log(p[VOCAB.index(token)])
            hits += VOCAB[int(np.argmax(p))] == token
            n += 1
    result = ngram.evaluate(model, test)
    assert result["tokens"] == n
    assert result["nll"] == pytest.approx(nll / n, rel=1e-12)
    assert result["accuracy"] == hits / n


@pytest.fixture(scope="module")
def real_tokens() -> tuple[list[list[str]], list[list[str]], list[str]]:
    """Notewise tokens of a few piano-midi.de pieces: train pieces and one held-out piece."""
    files = sorted((SHARED / "corpus" / "piano-midi-de" / "Clementi").glob("*.mid"))[:10]
    if len(files) < 10:
        pytest.skip("the piano-midi.de corpus is not in ../shared")
    from clara_live.codec import make_codec, to_steps
    from clara_live.config import CodecConfig
    from clara_live.music.read import read_music

    config = CodecConfig()
    codec = make_codec(config)
    lines = [codec.encode(to_steps(read_music(f, config.sustain_pedal), config)) for f in files]
    return lines[:9], lines[9:], codec.vocabulary()


def test_order_five_beats_unigrams_on_real_music(real_tokens):
    train, test, vocabulary = real_tokens
    r5 = ngram.evaluate(ngram.fit(train, 5, vocabulary), test)
    r1 = ngram.evaluate(ngram.fit(train, 1, vocabulary), test)
    assert r5["nll"] < r1["nll"] - 0.3
    assert r5["accuracy"] > r1["accuracy"]


def test_command_prints_json(tmp_path, capsys):
    for split, seed in (("train", 6), ("valid", 7), ("test", 8)):
        (tmp_path / f"{split}.txt").write_text("\n".join(" ".join(s) for s in random_corpus(seed)) + "\n")
    (tmp_path / "manifest.json").write_text(json.dumps({"vocabulary": VOCAB, "unknown_token": None}))
    assert ngram.main([str(tmp_path), "--order", "3", "--json", "--lstm-nll", "1.0"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"nll", "perplexity", "accuracy", "tokens", "order", "train_tokens"} <= set(out)
    assert out["order"] == 3 and out["lstm_ratio"] == pytest.approx(1.0 / out["nll"])
    assert ngram.main([str(tmp_path)]) == 0
    assert "perplexity" in capsys.readouterr().out


def test_help():
    with pytest.raises(SystemExit) as exit_:
        ngram.main(["--help"])
    assert exit_.value.code == 0


def test_a_corpus_stored_once_is_counted_in_every_key_it_trains_in(tmp_path):
    """Format 2 stores each train piece once; the n-gram counts it in each of its keys, as the
    LSTM meets it over its epochs (and as format 1 stored it)."""
    import shutil

    from clara_live.config import load_config
    from clara_live.corpus import build_corpus

    source = tmp_path / "src" / "Clementi"
    source.mkdir(parents=True)
    for f in sorted((SHARED / "corpus" / "piano-midi-de" / "Clementi").glob("*.mid"))[:2]:
        shutil.copy(f, source / f.name)
    config = load_config(overrides=["corpus.workers=1", "corpus.valid_fraction=0", "corpus.test_fraction=0"])
    manifest = build_corpus([str(tmp_path / "src")], tmp_path / "c", config, progress=False)
    train = ngram.read_split(tmp_path / "c", "train")
    expanded = ngram.in_every_key(train, manifest)
    shifts = [p["shifts"] for p in sorted(manifest["pieces"], key=lambda p: p["line"])]
    assert len(expanded) == sum(map(len, shifts)) > len(train) == 2
    first = expanded[shifts[0].index(0)] if 0 in shifts[0] else None
    assert first == train[0]
    up = expanded[shifts[0].index(2)]
    pairs = [(a, b) for a, b in zip(train[0], up, strict=True) if a.startswith("p")]
    assert pairs and all(int(b[1:]) == int(a[1:]) + 2 for a, b in pairs)
