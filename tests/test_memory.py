"""The continuous cache (clara_live/sampling/memory.py) alone and inside the Sampler: its
distribution by hand, λ = 0 as the model exactly, the ring buffer's bound, a repeated motif
made likelier, exact replays after snapshot/restore, and batched streams as separate ones.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import load_benchmark, tiny_engine

from clara_live.codec import make_codec
from clara_live.config import CodecConfig, ConfigError, InferenceConfig, SamplingConfig
from clara_live.engine import Engine, build_engine
from clara_live.model import load_model
from clara_live.music.notes import StepNote
from clara_live.sampling.memory import Memory
from clara_live.sampling.sampler import Sampler
from clara_live.sampling.search import beam_search, generate

SHIPPED = Path(__file__).resolve().parents[1] / "trained_models" / "clara-notewise"
NOTEWISE = CodecConfig()
CODEC = make_codec(NOTEWISE)
VOCAB = CODEC.vocabulary()
PROMPT = CODEC.encode([StepNote(0, 6, 60), StepNote(3, 12, 64), StepNote(12, 20, 67)])
FREE = SamplingConfig(random_freq=1.0, top_k=0, seed=0)  # every token drawn from the whole distribution
CACHED = SamplingConfig(random_freq=1.0, top_k=0, seed=0, cache=True, cache_size=64, cache_theta=5.0,
                        cache_lambda=0.5)


pytestmark = pytest.mark.usefixtures("torch_settings_restored")


def fed(engine: Engine, sampling: SamplingConfig = CACHED, prompt: list[str] | None = None,
        memory: Memory | None = None) -> Sampler:
    s = Sampler(engine, VOCAB, NOTEWISE, sampling, seed=0, memory=memory)
    s.feed(PROMPT if prompt is None else prompt)
    return s


def hand_cache(keys: list[np.ndarray], nexts: list[int], query: np.ndarray, theta: float, vocab: int) -> np.ndarray:
    """p_cache by the formula, one pair at a time."""
    unit = [k / np.linalg.norm(k) for k in keys]
    q = query / np.linalg.norm(query)
    weights = [math.exp(theta * float(np.dot(q, k))) for k in unit]
    p = np.zeros(vocab)
    for w, x in zip(weights, nexts, strict=True):
        p[x] += w / sum(weights)
    return p


# --- the cache alone -------------------------------------------------------------------------

def test_distribution_and_mix_equal_a_hand_computation():
    memory = Memory(size=10, theta=2.0, lam=0.3)
    h = np.array([[1.0, 0.0], [0.6, 0.8], [-1.0, 0.5], [2.0, 0.3]])  # the outputs after tokens 0..3
    ids = [3, 1, 3, 0]  # so the pairs are (h0, 1), (h1, 3), (h2, 0) and h3 is the query
    memory.feed(torch.tensor(h, dtype=torch.float32)[None], [ids])
    want = hand_cache([h[0], h[1], h[2]], [1, 3, 0], h[3], 2.0, vocab=5)
    p, has = memory.distribution(5)
    np.testing.assert_allclose(p[0].numpy(), want, rtol=1e-5, atol=1e-7)
    assert has.tolist() == [True] and p[0, [2, 4]].tolist() == [0.0, 0.0]
    model = torch.log_softmax(torch.tensor([[0.5, -1.0, 2.0, 0.0, 1.0]]), dim=-1)
    mixed = memory.mix(model)
    np.testing.assert_allclose(mixed[0].exp().numpy(), 0.7 * model[0].exp().numpy() + 0.3 * want, rtol=1e-5)
    assert mixed.exp().sum().item() == pytest.approx(1.0, abs=1e-6)


def test_nothing_to_remember_yet_keeps_the_model():
    memory = Memory(size=4, theta=3.0, lam=0.5)
    model = torch.log_softmax(torch.randn(1, 6), dim=-1)
    assert torch.equal(memory.mix(model), model)  # never fed
    memory.feed(torch.randn(1, 1, 3), [[2]])  # one token: a query, but no pair yet
    assert torch.equal(memory.mix(model), model)
    memory.feed(torch.randn(1, 1, 3), [[4]])  # now (h0, 4): all of the cache's mass on token 4
    p, _ = memory.distribution(6)
    assert p[0].tolist() == [0, 0, 0, 0, 1, 0]


def test_chunks_and_single_tokens_leave_the_same_pairs_and_the_ring_keeps_the_last():
    torch.manual_seed(0)
    h, ids = torch.randn(1, 23, 8), torch.randint(0, 7, (1, 23))
    whole, steps, chunks = Memory(5, 4.0, 0.2), Memory(5, 4.0, 0.2), Memory(5, 4.0, 0.2)
    whole.feed(h, ids)  # 22 pairs into 5 slots at once
    for t in range(23):
        steps.feed(h[:, t:t + 1], ids[:, t:t + 1])
    for a, b in [(0, 3), (3, 4), (4, 12), (12, 23)]:
        chunks.feed(h[:, a:b], ids[:, a:b])
    want = hand_cache(list(h[0, 17:22].numpy()), ids[0, 18:23].tolist(), h[0, 22].numpy(), 4.0, vocab=7)
    for memory in (whole, steps, chunks):
        assert memory.filled.tolist() == [5]
        np.testing.assert_allclose(memory.distribution(7)[0][0].numpy(), want, rtol=1e-5, atol=1e-7)


def test_streams_are_independent_and_inactive_ones_stay():
    torch.manual_seed(1)
    h, ids = torch.randn(3, 6, 4), torch.randint(0, 9, (3, 6))
    batch = Memory(4, 2.0, 0.3, streams=3)
    batch.feed(h[:, :4], ids[:, :4])
    before = batch.snapshot()
    batch.feed(h[:, 4:], ids[:, 4:], active=np.array([True, False, True]))
    for row in range(3):
        one = Memory(4, 2.0, 0.3)
        end = 4 if row == 1 else 6
        one.feed(h[row:row + 1, :end], ids[row:row + 1, :end])
        torch.testing.assert_close(batch.distribution(9)[0][row], one.distribution(9)[0][0])
    assert torch.equal(batch.keys[1], before.keys[1]) and batch.pos[1] == before.pos[1]
    batch.restore(before)
    assert all(torch.equal(a, b) for a, b in zip(batch.snapshot(), before, strict=True))


def test_bad_settings_are_refused():
    with pytest.raises(ValueError):
        Memory(0, 1.0, 0.1)
    with pytest.raises(ValueError):
        Memory(10, 1.0, 1.0)
    for bad in ({"cache_size": 0}, {"cache_lambda": 1.0}, {"cache_lambda": -0.1}, {"cache_theta": -1.0}):
        with pytest.raises(ConfigError, match="sampling.cache_"):
            SamplingConfig(**bad)
    assert Memory.from_config(SamplingConfig(cache=False)) is None
    memory = Memory.from_config(SamplingConfig(cache=True, cache_size=7, cache_theta=3.0, cache_lambda=0.2))
    assert (memory.size, memory.theta, memory.lam) == (7, 3.0, 0.2)


# --- inside the sampler ----------------------------------------------------------------------

def test_lambda_zero_is_the_model_exactly():
    engine = tiny_engine(VOCAB)
    plain = fed(engine, FREE)
    zero = fed(engine, FREE, memory=Memory(64, 5.0, 0.0))
    for _ in range(30):
        assert torch.equal(plain.log_probs(), zero.log_probs())
        ids = plain.choose()
        assert np.array_equal(zero.choose(), ids)
        plain.advance(ids)
        zero.advance(ids)
    assert np.array_equal(plain.logprob, zero.logprob)


def test_the_config_switch_gives_the_sampler_its_memory():
    engine = tiny_engine(VOCAB)
    assert fed(engine, FREE).memory is None
    s = fed(engine, CACHED)
    assert isinstance(s.memory, Memory) and s.memory.filled.tolist() == [len(PROMPT) - 1]
    out = generate(s, max_tokens=10)[0]  # and the offs that close its notes
    assert s.memory.filled.tolist() == [len(PROMPT) - 1 + len(out)]


def test_sampler_scores_are_the_mixed_distribution_under_the_grammar():
    engine = tiny_engine(VOCAB, 2)
    s = fed(engine)
    generate(s, max_tokens=20)
    mask = s.masks()
    model = torch.log_softmax(s.logits.masked_fill(~mask, float("-inf")), dim=-1)
    p_cache, _ = s.memory.distribution(len(VOCAB))
    want = (0.5 * model.exp() + 0.5 * p_cache) * mask
    want = want / want.sum(dim=-1, keepdim=True)
    torch.testing.assert_close(s.log_probs().exp(), want, atol=1e-6, rtol=1e-5)
    assert s.log_probs()[~mask].eq(float("-inf")).all()


def test_restore_replays_exactly_with_the_cache():
    s = fed(tiny_engine(VOCAB, 3))
    s.expand(3)
    snap = s.snapshot()
    first = generate(s, max_tokens=60)  # past cache_size: the ring has wrapped
    end = s.snapshot()
    s.restore(snap)
    s.feed(["p40", "wait5", "endp40", "p10"])  # a branch, then abandoned
    generate(s, max_tokens=25)
    s.restore(snap)
    assert generate(s, max_tokens=60) == first
    assert all(torch.equal(a, b) for a, b in zip(s.snapshot().memory, end.memory, strict=True))


def test_batched_streams_equal_separate_samplers_with_the_cache():
    engine = tiny_engine(VOCAB, 4)
    batch = fed(engine)
    batch.expand(3)
    singles = [fed(engine) for _ in range(3)]
    history: list[list[str]] = [[] for _ in range(3)]
    for _ in range(50):
        torch.testing.assert_close(batch.log_probs(), torch.cat([one.log_probs() for one in singles]),
                                   atol=1e-5, rtol=1e-5)
        ids = batch.choose()
        batch.advance(ids)
        for one, i, past in zip(singles, ids, history, strict=True):
            one.advance(np.array([i]))
            past.append(VOCAB[i])
    np.testing.assert_allclose(batch.logprob, [one.logprob[0] for one in singles], rtol=1e-5)
    assert len({tuple(p) for p in history}) == 3
    for row, past in enumerate(history):  # fed at once (in chunks) lands on the same prediction
        whole = fed(engine, prompt=PROMPT + past)
        torch.testing.assert_close(whole.log_probs()[0], batch.log_probs()[row], atol=1e-5, rtol=1e-5)


def test_beam_search_reports_the_mixed_score():
    engine = tiny_engine(VOCAB, 5)
    s = fed(engine)
    origin = s.snapshot()
    tokens, score = beam_search(s, 3, max_tokens=12)
    s.restore(origin)
    total = 0.0
    for token in tokens[:12]:  # the scored tokens (offs may follow to close the notes)
        i = s.vocab.index[token]
        total += float(s.log_probs()[0, i])
        s.advance(np.array([i]), score=False)
    assert score == pytest.approx(total / 12, abs=1e-4)


@pytest.fixture(scope="module")
def shipped():
    if not SHIPPED.is_dir():
        pytest.skip(f"{SHIPPED} not found")
    loaded = load_model(SHIPPED)
    return loaded, build_engine(loaded.model, InferenceConfig(device="cpu", precision="int8"))


def test_a_repeated_motif_becomes_likelier_with_the_cache(shipped):
    loaded, engine = shipped
    codec = make_codec(loaded.codec)
    rng = np.random.default_rng(0)  # an odd motif the model would not guess: random pitches and lengths
    notes, now = [], 0
    for _ in range(12):
        length = int(rng.integers(2, 9))
        notes.append(StepNote(now, now + length, int(rng.integers(45, 85))))
        now += length
    motif = codec.encode(notes) + ["wait6"]
    on = SamplingConfig(seed=0, cache=True)  # the shipped settings
    scores = {}
    for name, sampling in (("model", SamplingConfig(seed=0)), ("cache", on)):
        s = Sampler(engine, loaded.vocabulary, loaded.codec, sampling)
        s.feed(["wait12"] + motif + motif)
        total = 0.0
        for token in motif:  # the third time through
            i = s.vocab.index[token]
            total += float(s.log_probs()[0, i])
            s.advance(np.array([i]), score=False)
        scores[name] = total / len(motif)
    assert scores["cache"] > scores["model"] + 0.1, scores


def test_the_benchmark_s_offline_scorer_equals_the_online_memory():
    bench = load_benchmark("session_memory")
    torch.manual_seed(6)
    h, ids = torch.randn(40, 8), torch.randint(0, 5, (40,))
    log_probs = torch.log_softmax(torch.randn(40, 5), dim=-1)  # the model's prediction after each token
    memory = Memory(16, 3.0, 0.25)
    online = []
    for t in range(39):
        memory.feed(h[None, t:t + 1], ids[None, t:t + 1])
        online.append(float(memory.mix(log_probs[None, t])[0, ids[t + 1]]))
    offline = bench.cache_target_log_probs(h, ids, log_probs[torch.arange(39), ids[1:]], 16, 3.0, 0.25)
    np.testing.assert_allclose(offline.numpy(), online, rtol=1e-5, atol=1e-6)
