"""The streaming sampler and its searches: grammar-clean music, seeds, snapshots, batched
streams, beam search, best-of, AAB form, and the int8 engine against fp32.

Most tests use tiny random AWD-LSTMs (biased through the decoder so that the grammar mask has
work to do); two use the shipped notewise model where realism matters.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import MAESTRO_FILES, SHARED, pairing_errors, tiny_engine

from clara_live.codec import make_codec, to_steps
from clara_live.codec.tokens import UNK, Grammar, Kind
from clara_live.config import CodecConfig, InferenceConfig, SamplingConfig
from clara_live.engine import Engine, build_engine
from clara_live.model import load_model
from clara_live.music.midi_io import steps_to_midi, write_midi
from clara_live.music.notes import StepNote
from clara_live.music.read import read_music
from clara_live.sampling.grammar import KINDS
from clara_live.sampling.sampler import Sampler
from clara_live.sampling.search import aab, beam_search, best_of, generate

SHIPPED = Path(__file__).resolve().parents[1] / "trained_models" / "clara-notewise"
FP32 = InferenceConfig(device="cpu", precision="fp32")

NOTEWISE = CodecConfig()
NW_CODEC = make_codec(NOTEWISE)
NW_VOCAB = NW_CODEC.vocabulary()
NW_PROMPT = NW_CODEC.encode([StepNote(0, 6, 60), StepNote(3, 12, 64), StepNote(12, 20, 67)])  # every note closed
NW_PROMPT_B = NW_CODEC.encode([StepNote(0, 30, 45), StepNote(0, 2, 72), StepNote(5, 9, 76)])
# hard limits, so sampling runs into them: 4 notes at once, a note held at most a quarter (12 steps)
STRESS = SamplingConfig(random_freq=1.0, temperature=3.0, top_k=0, polyphony=4, max_note_quarters=1.0)

# chordwise, chamber (families p and v), a short rest window with a low cap so the cap is reached
CHORDWISE = CodecConfig(encoding="chordwise", chamber=True, rest_window=4, rest_cap=5)
CW_CODEC = make_codec(CHORDWISE)


def chord(family: str, *indices: int) -> str:
    bits = ["0"] * CHORDWISE.num_pitches
    for i in indices:
        bits[i] = "1"
    return family + "".join(bits)


BIG_CHORDS = [chord("p", 10, 14, 17, 20, 24, 27), chord("v", 30, 33, 37, 40, 44)]  # more than CW_STRESS allows
CHORDS = [chord("p", 0), chord("p", 24, 28, 31), chord("p", 12, 19), chord("v", 40), chord("v", 36, 43), *BIG_CHORDS]
CW_VOCAB = CW_CODEC.vocabulary({c: len(CHORDS) - i for i, c in enumerate(CHORDS)})
CW_PROMPT = [chord("p", 24, 28, 31), "vrest0"]
CW_STRESS = SamplingConfig(random_freq=1.0, temperature=3.0, top_k=0, polyphony=3)


KIND_ON = KINDS.index(Kind.ON)

pytestmark = pytest.mark.usefixtures("torch_settings_restored")


def sampler(engine: Engine, sampling: SamplingConfig = STRESS, seed: int | None = 0,
            codec: CodecConfig = NOTEWISE, prompt: list[str] | None = None) -> Sampler:
    """A tiny model's sampler, fed its codec's prompt (or this one)."""
    s = Sampler(engine, NW_VOCAB if codec is NOTEWISE else CW_VOCAB, codec, sampling, seed=seed)
    s.feed(prompt if prompt is not None else (NW_PROMPT if codec is NOTEWISE else CW_PROMPT))
    return s


def wait_steps(tokens: list[str]) -> int:
    return sum(int(t[4:]) for t in tokens if t.startswith("wait"))


def most_sounding(notes: list[StepNote]) -> int:
    """The most notes sounding at any one step (a note sounds from start to end - 1)."""
    events = sorted([(n.end, -1) for n in notes] + [(n.start, 1) for n in notes])  # ends first at a step
    most = now = 0
    for _, change in events:
        now += change
        most = max(most, now)
    return most


def hold_limit(sampling: SamplingConfig, codec: CodecConfig) -> int:
    """The longest a sampled note can sound, in steps: no wait carries a sounding note past max_steps,
    and the grammar forces its off at the step start where it has sounded that long; one step more
    where a generation cut inside that step is closed (close_all: a lower key's off after the shortest wait)."""
    return max(1, round(sampling.max_note_quarters * codec.sample_freq)) + 1


def check_notewise(prompt: list[str], out: list[str], sampling: SamplingConfig, tmp_path: Path,
                   codec=NW_CODEC) -> list[StepNote]:
    """The checks every sampled notewise continuation passes; returns the sampled notes."""
    grammar = Grammar(codec.config)
    for token in out:
        grammar.parse(token)  # raises for a token outside the grammar
    tokens = prompt + out
    notes = codec.decode(tokens)
    again = codec.encode(notes)
    while tokens and tokens[-1].startswith("wait") and len(tokens) > len(again):
        tokens = tokens[:-1]  # silence after the last note-off leaves no note to encode it
    if again != tokens:
        first = next((i for i, (a, b) in enumerate(zip(tokens, again, strict=False)) if a != b),
                     min(len(tokens), len(again)))
        pytest.fail(f"not in canonical order from token {first} (prompt {len(prompt)}): "
                    f"{tokens[max(0, first - 4):first + 6]} re-encodes as {again[max(0, first - 4):first + 6]}")
    path = tmp_path / "sampled.mid"
    write_midi(steps_to_midi(notes, codec.config.sample_freq), path)
    assert pairing_errors(path) == []
    since = wait_steps(prompt)  # the prompt closes its notes by then
    sampled = [n for n in notes if n.start >= since]
    assert most_sounding(sampled) <= sampling.polyphony
    longest = max((n.end - n.start for n in sampled), default=0)
    assert longest <= hold_limit(sampling, codec.config), f"a note held {longest} steps"
    return sampled


def check_chordwise(prompt: list[str], out: list[str], sampling: SamplingConfig) -> None:
    cfg, families = CHORDWISE, Grammar(CHORDWISE).families
    assert UNK not in out
    tokens = prompt + out
    parsed = [Grammar(cfg).parse(t) for t in tokens]
    assert len(tokens) % len(families) == 0
    assert [t.family for t in parsed] == [families[i % len(families)] for i in range(len(tokens))]
    for token in parsed[len(prompt):]:
        assert token.kind is Kind.REST or token.bits.count("1") <= sampling.polyphony
    # a rest counts the notes its family struck in the rest_window steps before, capped
    struck = np.array([t.bits.count("1") if t.kind is Kind.CHORD else 0 for t in parsed]).reshape(-1, len(families))
    for i, token in enumerate(parsed):
        if token.kind is Kind.REST:
            step, f = divmod(i, len(families))
            assert token.value == min(int(struck[max(0, step - cfg.rest_window):step, f].sum()), cfg.rest_cap)
    # decoding then encoding gives the tokens back, up to the last step that strikes a note
    last = max(i for i, t in enumerate(parsed) if t.kind is Kind.CHORD) // len(families)
    assert CW_CODEC.encode(CW_CODEC.decode(tokens)) == tokens[:(last + 1) * len(families)]


# --- grammar-clean sampling ----------------------------------------------------------------

PROFILES = {
    "plain": None,
    "notes": lambda t: 6.0 if not t.startswith("wait") else 0.0,  # wants p for sounding, endp for silent
    "offs": lambda t: 6.0 if t.startswith("endp") else 0.0,
    "waits": lambda t: 6.0 if t.startswith("wait") else 0.0,  # long holds, short waits in a row
}


@pytest.mark.parametrize("profile", PROFILES)
def test_sampled_notewise_music_keeps_the_grammar(profile, tmp_path):
    engine = tiny_engine(NW_VOCAB, seed=1, bias=PROFILES[profile])
    longest = 0
    for seed in range(8):
        s = sampler(engine, seed=seed)
        out = generate(s, max_tokens=100)[0]
        sampled = check_notewise(NW_PROMPT, out, STRESS, tmp_path)
        assert not s.states[0].sounding.any()
        longest = max([longest] + [n.end - n.start for n in sampled])
    if profile == "waits":  # notes ran into the limit, and no wait carried one past it
        assert longest == round(STRESS.max_note_quarters * NOTEWISE.sample_freq)


def test_generation_that_stops_inside_a_step_still_closes_in_canonical_order(tmp_path):
    # the offs come after a one-step wait when the step has already struck or closed notes
    engine = tiny_engine(NW_VOCAB, seed=2, bias=PROFILES["notes"])
    for max_tokens in range(5, 30):
        out = generate(sampler(engine, seed=max_tokens), max_tokens=max_tokens)[0]
        check_notewise(NW_PROMPT, out, STRESS, tmp_path)


def test_shipped_model_samples_clean_music(shipped, tmp_path):
    prompt = maestro_prompt(shipped)
    sampling = SamplingConfig(seed=3)
    s = Sampler(shipped.int8, shipped.vocabulary, shipped.codec, sampling)
    s.feed(prompt)
    out = generate(s, max_tokens=300)[0]
    sampled = check_notewise(prompt, out, sampling, tmp_path, make_codec(shipped.codec))
    assert len(sampled) >= 10  # it plays music, not only waits


def test_sampled_chordwise_music_keeps_the_grammar():
    def bias(token: str) -> float:  # wants <unk>, chords too big, and rests of any count
        return 8.0 if token == UNK or token in BIG_CHORDS else 4.0 if "rest" in token else 0.0

    engine = tiny_engine(CW_VOCAB, seed=1, bias=bias)
    for seed in range(8):
        s = sampler(engine, CW_STRESS, seed=seed, codec=CHORDWISE)
        out = generate(s, max_tokens=120)[0]
        check_chordwise(CW_PROMPT, out, CW_STRESS)
        assert any("rest" not in t for t in out)  # chords were struck too


# --- seeds, snapshots, streams -------------------------------------------------------------

def test_seeds_make_sampling_reproducible():
    engine = tiny_engine(NW_VOCAB)
    take = [generate(sampler(engine, seed=seed), max_tokens=80)[0] for seed in (7, 7, 8, 9)]
    assert take[0] == take[1]
    assert len({tuple(t) for t in take[1:]}) == 3
    assert Sampler(engine, NW_VOCAB, NOTEWISE, SamplingConfig(seed=5)).seed == 5  # the config's seed
    assert Sampler(engine, NW_VOCAB, NOTEWISE, SamplingConfig(seed=5), seed=6).seed == 6


def test_seed_minus_one_picks_a_fresh_seed_that_replays_the_take():
    engine = tiny_engine(NW_VOCAB)
    fresh = SamplingConfig(random_freq=1.0, seed=-1)
    a, b = sampler(engine, fresh, seed=None), sampler(engine, fresh, seed=None)
    assert a.seed != b.seed and 0 <= min(a.seed, b.seed)
    take_a, take_b = generate(a, max_tokens=80)[0], generate(b, max_tokens=80)[0]
    assert take_a != take_b
    assert generate(sampler(engine, fresh, seed=a.seed), max_tokens=80)[0] == take_a


def hidden_equal(x, y) -> bool:
    return all(torch.equal(h0, h1) and torch.equal(c0, c1) for (h0, c0), (h1, c1) in zip(x, y, strict=True))


@pytest.mark.parametrize("streams", [1, 3])
def test_restore_replays_exactly(streams):
    s = sampler(tiny_engine(NW_VOCAB), seed=4)
    s.expand(streams)
    snap = s.snapshot()
    first = generate(s, max_tokens=40)
    end_hidden, end_now = s.snapshot().hidden, [st.now for st in s.states]
    s.restore(snap)
    assert generate(s, max_tokens=40) == first
    assert hidden_equal(s.hidden, end_hidden) and [st.now for st in s.states] == end_now
    s.restore(snap)
    s.feed(["p40", "wait5", "endp40", "p10"])  # a branch that is then abandoned
    generate(s, max_tokens=15)
    s.restore(snap)
    assert hidden_equal(s.hidden, snap.hidden)
    assert generate(s, max_tokens=40) == first
    assert hidden_equal(s.hidden, end_hidden)


def test_batched_streams_score_like_separate_samplers():
    engine = tiny_engine(NW_VOCAB, seed=3, sharpness=10.0)
    batch = sampler(engine, seed=1)
    batch.expand(4)
    singles = [sampler(engine) for _ in range(4)]
    history: list[list[str]] = [[] for _ in range(4)]
    for _ in range(40):
        expected = torch.cat([one.log_probs() for one in singles])
        torch.testing.assert_close(batch.log_probs(), expected, atol=1e-5, rtol=1e-5)
        ids = batch.choose()
        batch.advance(ids)
        for one, i, past in zip(singles, ids, history, strict=True):
            one.advance(np.array([i]))
            past.append(NW_VOCAB[i])
    np.testing.assert_allclose(batch.logprob, [one.logprob[0] for one in singles], rtol=1e-5)
    assert batch.count.tolist() == [40] * 4
    assert len({tuple(past) for past in history}) == 4  # the streams went their own ways
    for row, past in enumerate(history):  # a whole history fed at once lands on the same prediction
        whole = sampler(engine, prompt=NW_PROMPT + past)
        torch.testing.assert_close(whole.log_probs()[0], batch.log_probs()[row], atol=1e-5, rtol=1e-5)
        assert whole.states[0].now == batch.states[row].now


def test_advance_leaves_inactive_streams_untouched():
    s = sampler(tiny_engine(NW_VOCAB), seed=2)
    s.expand(4)
    generate(s, max_tokens=10)  # the streams differ now
    before = s.snapshot()
    active = np.array([True, False, True, False])
    ids = s.choose()
    s.advance(ids, active)
    masked = s.snapshot()
    s.restore(before)
    s.advance(ids)  # every stream moves
    moved = s.snapshot()
    for layer in range(len(before.hidden)):
        for part in range(2):
            for row in range(4):
                want = (moved if active[row] else before).hidden[layer][part][:, row]
                assert torch.equal(masked.hidden[layer][part][:, row], want)
    for row in range(4):
        want = moved if active[row] else before
        assert torch.equal(masked.logits[row], want.logits[row])
        assert masked.states[row].now == want.states[row].now
        assert np.array_equal(masked.states[row].sounding, want.states[row].sounding)
        assert masked.count[row] == want.count[row] and masked.logprob[row] == want.logprob[row]


# --- searches ------------------------------------------------------------------------------

def scored_length(tokens: list[str], max_tokens: int | None = None, steps: int | None = None) -> int:
    """How many of a continuation's tokens a search scored: max_tokens, or through the wait
    that reaches `steps` (the offs after it only close the notes)."""
    if max_tokens:
        return max_tokens
    return next(i + 1 for i in range(len(tokens)) if wait_steps(tokens[:i + 1]) >= steps)


def rescore(engine: Engine, vocab: list[str], codec: CodecConfig, prompt: list[str], tokens: list[str],
            max_tokens: int | None = None, steps: int | None = None) -> float:
    """The mean log-probability of the scored tokens under the grammar mask, one token at a time."""
    s = Sampler(engine, vocab, codec, SamplingConfig(seed=0))
    s.feed(prompt)
    if steps:
        s.states[0].horizon = s.states[0].now + steps  # as generate does: no wait past the end
    length = scored_length(tokens, max_tokens, steps)
    total = 0.0
    for token in tokens[:length]:
        i = s.vocab.index[token]
        total += float(s.log_probs()[0, i])
        s.advance(np.array([i]), score=False)
    return total / length


def greedy_score(s: Sampler, origin, max_tokens: int | None = None, steps: int | None = None) -> float:
    s.restore(origin)
    s.logprob[:], s.count[:] = 0.0, 0
    generate(s, max_tokens, steps, greedy=True)
    return float(s.mean_logprob()[0])


def check_beam(engine: Engine, vocab: list[str], codec: CodecConfig, prompt: list[str], tmp_path: Path,
               width: int, **length) -> tuple[float, float]:
    """Beam search from a prompt, checked; returns its score and greedy decoding's."""
    s = Sampler(engine, vocab, codec, SamplingConfig(seed=0))
    s.feed(prompt)
    origin, start = s.snapshot(), s.states[0].now
    tokens, score = beam_search(s, width, **length)
    assert score == pytest.approx(rescore(engine, vocab, codec, prompt, tokens, **length), abs=1e-4)
    if length.get("steps"):
        assert wait_steps(tokens) == length["steps"] and s.states[0].now == start + length["steps"]
    check_notewise(prompt, tokens, SamplingConfig(), tmp_path, make_codec(codec))
    fresh = Sampler(engine, vocab, codec, SamplingConfig(seed=0))
    fresh.feed(prompt + tokens)  # the sampler stands just after what it returned
    assert s.states[0].now == fresh.states[0].now and not s.states[0].sounding.any()
    torch.testing.assert_close(s.logits, fresh.logits, atol=1e-4, rtol=1e-4)
    greedy = greedy_score(s, origin, **length)
    assert score >= greedy - 1e-6
    return score, greedy


def test_beam_search_beats_greedy_and_reports_its_true_score(tmp_path):
    better = 0
    for seed in range(3):
        engine = tiny_engine(NW_VOCAB, seed=seed, sharpness=30.0)
        for prompt in (NW_PROMPT, NW_PROMPT_B):
            for length in ({"max_tokens": 16}, {"steps": 30}):
                score, greedy = check_beam(engine, NW_VOCAB, NOTEWISE, prompt, tmp_path, 4, **length)
                better += score > greedy + 1e-6
    assert better >= 3  # it searches, rather than handing back greedy decoding


def test_beam_search_on_the_shipped_model(shipped, tmp_path):
    prompt = maestro_prompt(shipped)
    for length in ({"max_tokens": 20}, {"steps": 24}):
        check_beam(shipped.fp32, shipped.vocabulary, shipped.codec, prompt, tmp_path, 3, **length)


def test_generate_by_steps_ends_exactly_there(tmp_path):
    engine = tiny_engine(NW_VOCAB, seed=4, bias=PROFILES["waits"])  # long waits must be cut at the end
    for seed, steps in [(0, 1), (1, 7), (2, 50), (3, 97)]:
        s = sampler(engine, seed=seed)
        s.expand(3)
        start = s.states[0].now
        for out, state in zip(generate(s, steps=steps), s.states, strict=True):
            assert wait_steps(out) == steps and state.now == start + steps
            assert not state.sounding.any() and state.horizon is None
            check_notewise(NW_PROMPT, out, STRESS, tmp_path)
    engine = tiny_engine(CW_VOCAB, seed=4)
    for seed, steps in [(0, 1), (1, 9), (2, 20)]:
        s = sampler(engine, CW_STRESS, seed=seed, codec=CHORDWISE)
        s.expand(3)
        start = s.states[0].now
        for out, state in zip(generate(s, steps=steps), s.states, strict=True):
            assert len(out) == steps * 2 and state.now == start + steps and state.next_family == 0
            check_chordwise(CW_PROMPT, out, CW_STRESS)


@pytest.mark.parametrize("length", [{"max_tokens": 20}, {"steps": 24}], ids=["tokens", "steps"])
@pytest.mark.parametrize("by", ["model", "notes"])
def test_best_of_keeps_the_top_candidate_and_stands_after_it(by, length, tmp_path):
    engine = tiny_engine(NW_VOCAB, seed=5, sharpness=5.0)
    s = sampler(engine, SamplingConfig(random_freq=1.0, seed=0), seed=3)
    seen = []

    def scorer(sequences: list[list[str]], mean_logprob: np.ndarray) -> np.ndarray:
        seen.append((sequences, mean_logprob.copy()))
        if by == "model":
            return mean_logprob
        return np.array([sum(t.startswith("p") for t in q) for q in sequences]) + 1e-3 * mean_logprob

    winner, scores = best_of(s, 5, scorer=scorer, **length)
    sequences, mean_logprob = seen[0]
    assert len({tuple(q) for q in sequences}) == 5
    best = int(np.argmax(scores))
    assert winner == sequences[best] and scores[best] == max(scores)
    assert mean_logprob[best] == pytest.approx(rescore(engine, NW_VOCAB, NOTEWISE, NW_PROMPT, winner, **length),
                                               abs=1e-4)
    check_notewise(NW_PROMPT, winner, SamplingConfig(), tmp_path)
    fresh = sampler(engine, prompt=NW_PROMPT + winner)
    assert s.streams == 1 and s.states[0].now == fresh.states[0].now
    assert np.array_equal(s.states[0].sounding, fresh.states[0].sounding)
    torch.testing.assert_close(s.logits, fresh.logits, atol=1e-5, rtol=1e-5)


def onsets_before(codec, tokens: list[str], step: int) -> set[tuple[int, int]]:
    return {(n.start, n.pitch) for n in codec.decode(tokens) if n.start < step}


def test_aab_states_a_phrase_repeats_it_and_departs_from_its_middle():
    engine = tiny_engine(NW_VOCAB, seed=6, sharpness=3.0)
    phrase, half = 48, 24
    for seed in range(3):
        s = sampler(engine, SamplingConfig(random_freq=1.0, temperature=2.0), seed=seed)
        start = s.states[0].now
        out = aab(s, phrase)
        assert wait_steps(out) == 3 * phrase and s.states[0].now == start + 3 * phrase
        limit = NOTEWISE.wait_limit  # canonical across the joins too: no short wait followed by a wait
        assert not any(x.startswith("wait") and y.startswith("wait") and int(x[4:]) < limit
                       for x, y in zip(out, out[1:], strict=False))
        assert not out[0].startswith("wait")  # the phrase begins on a note
        # A ends on the wait that reaches its last step, then the offs of its notes still sounding
        end = scored_length(out, steps=phrase)
        assert wait_steps(out[:end]) == phrase
        while out[end].startswith("endp"):
            end += 1
        a, third = out[:end], out[2 * end:]
        assert out[end:2 * end] == a and wait_steps(third) == phrase
        middle = scored_length(a, steps=half) - 1  # A's tokens before the wait that crosses its middle
        assert third[:middle] == a[:middle]
        assert wait_steps(third[:middle + 1]) == half
        assert onsets_before(NW_CODEC, third, half) == onsets_before(NW_CODEC, a, half)
        heard = sampler(engine, prompt=NW_PROMPT + out)  # the model has heard all three statements
        torch.testing.assert_close(s.logits, heard.logits, atol=1e-4, rtol=1e-4)
    s = sampler(tiny_engine(CW_VOCAB, seed=6), CW_STRESS, codec=CHORDWISE)
    start = s.states[0].now
    out = aab(s, 16)
    step = 2 * 16  # two tokens a step
    assert len(out) == 3 * step and s.states[0].now == start + 48
    check_chordwise(CW_PROMPT, out, CW_STRESS)  # a repeated rest counts what was struck before it there

    def chords(tokens: list[str]) -> list[str]:
        return ["rest" if "rest" in t else t for t in tokens]

    assert chords(out[:step]) == chords(out[step:2 * step])
    assert chords(out[2 * step:2 * step + step // 2]) == chords(out[:step // 2])
    assert any(t != "rest" for t in chords(out[:step]))


# --- the shipped model ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def shipped():
    if not SHIPPED.is_dir():
        pytest.skip(f"{SHIPPED} not found")
    loaded = load_model(SHIPPED)
    return SimpleNamespace(vocabulary=loaded.vocabulary, codec=loaded.codec, fp32=build_engine(loaded.model, FP32),
                           int8=build_engine(loaded.model, InferenceConfig(device="cpu", precision="int8")))


def maestro_prompt(shipped, notes: int = 60) -> list[str]:
    """The notes of a held-out performance that end before its note `notes` begins: a clean prompt."""
    if not MAESTRO_FILES:
        pytest.skip(f"no MIDI files in {SHARED / 'midi' / 'maestro'}")
    piece = to_steps(read_music(MAESTRO_FILES[0], shipped.codec.sustain_pedal), shipped.codec)
    cut = piece[notes].start
    return make_codec(shipped.codec).encode([n for n in piece if n.end <= cut])


def test_int8_engine_agrees_with_fp32_on_held_out_music(shipped):
    # MAESTRO is held out: the model was trained on piano-midi.de alone
    if not MAESTRO_FILES:
        pytest.skip(f"no MIDI files in {SHARED / 'midi' / 'maestro'}")
    codec, index = make_codec(shipped.codec), {t: i for i, t in enumerate(shipped.vocabulary)}
    agree = total = 0
    worst = 0.0
    for path in MAESTRO_FILES:
        tokens = codec.encode(to_steps(read_music(path, shipped.codec.sustain_pedal), shipped.codec))
        ids = torch.tensor([[index[t] for t in tokens[:2000 // len(MAESTRO_FILES)]]])
        reference = shipped.fp32(ids, shipped.fp32.init_hidden(1))[0][0]  # fp32: one call equals token by token
        hidden, steps = shipped.int8.init_hidden(1), []
        for t in range(ids.size(1)):  # int8 quantises each call's activations: run it as generation does
            logits, hidden = shipped.int8(ids[:, t:t + 1], hidden)
            steps.append(logits[0])
        choice = torch.cat(steps).argmax(dim=-1)
        agree += int((choice == reference.argmax(dim=-1)).sum())
        total += len(choice)
        gap = reference.max(dim=-1).values - reference.gather(1, choice[:, None])[:, 0]
        worst = max(worst, float(gap.max()))
    rate = agree / total
    print(f"int8 top-1 agreement with fp32: {rate:.2%} of {total} held-out tokens; "
          f"largest fp32 logit gap to the int8 choice {worst:.3f}")
    assert rate >= 0.98
    assert worst < 0.5  # where they disagree, fp32 itself found the two all but tied


# --- with the continuous cache (sampling/memory.py; more in tests/test_memory.py) ----------

CACHED_STRESS = SamplingConfig(random_freq=1.0, temperature=3.0, top_k=0, polyphony=4, max_note_quarters=1.0,
                               cache=True, cache_size=32, cache_theta=10.0, cache_lambda=0.5)


def test_searches_keep_the_grammar_and_their_scores_with_the_cache(tmp_path):
    engine = tiny_engine(NW_VOCAB, seed=1, bias=PROFILES["notes"])
    for seed in range(4):
        s = sampler(engine, CACHED_STRESS, seed=seed)
        assert s.memory is not None
        out = generate(s, max_tokens=100)[0]  # past cache_size: the ring wraps
        check_notewise(NW_PROMPT, out, CACHED_STRESS, tmp_path)
        assert not s.states[0].sounding.any()
    s = sampler(engine, CACHED_STRESS, seed=5)
    winner, scores = best_of(s, 4, max_tokens=30)
    check_notewise(NW_PROMPT, winner, CACHED_STRESS, tmp_path)
    fresh = sampler(engine, CACHED_STRESS, prompt=NW_PROMPT + winner)  # the memory forked, then kept the winner
    torch.testing.assert_close(s.log_probs(), fresh.log_probs(), atol=1e-5, rtol=1e-5)
    s = sampler(engine, CACHED_STRESS, seed=6)
    out = aab(s, 24)
    assert wait_steps(out) == 72
    heard = sampler(engine, CACHED_STRESS, prompt=NW_PROMPT + out)
    torch.testing.assert_close(s.log_probs(), heard.log_probs(), atol=1e-5, rtol=1e-5)


def test_the_register_pull_weighs_note_ons_outside_the_register_heard():
    """Only note-ons outside the heard register (middle 80 % of the fed notes, a fifth wider) are
    pulled, by register_pull per octave; Clara's own notes do not move the register; a snapshot
    carries it; off, or with under four notes heard, nothing changes."""
    engine = tiny_engine(NW_VOCAB)
    sampler = Sampler(engine, NW_VOCAB, NOTEWISE, SamplingConfig(register_pull=3.0), seed=1)
    melody = NW_CODEC.encode([StepNote(6 * i, 6 * i + 6, p) for i, p in enumerate((60, 62, 64, 65, 67, 69, 67))])
    sampler.feed(melody[:4])  # two notes: too few to tell a register
    assert sampler.register_bias() is None
    sampler.feed(melody[4:])
    bias = sampler.register_bias()
    index, low = sampler.vocab.index, NOTEWISE.low_pitch
    bottom, top = np.percentile([60, 62, 64, 65, 67, 69, 67], [10, 90]) + (-7, 7)
    assert bias[index[f"p{60 - low}"]] == 0 and bias[index[f"p{int(top) - low}"]] == 0
    assert bias[index[f"p{48 - low}"]] < bias[index[f"p{52 - low}"]] < 0  # lower, less likely
    assert float(bias[index[f"p{36 - low}"]]) == pytest.approx(-3.0 * (bottom - 36) / 12, abs=1e-4)
    assert float(bias[index[f"p{88 - low}"]]) == pytest.approx(-3.0 * (88 - top) / 12, abs=1e-4)
    assert bias[index[f"endp{36 - low}"]] == 0 and bias[index["wait3"]] == 0  # offs and waits are free
    heard = sampler.heard
    before = sampler.snapshot()
    generate(sampler, steps=48)  # Clara's notes are not what was heard
    assert sampler.heard == heard
    sampler.feed(NW_CODEC.encode([StepNote(0, 6, 40)]))
    assert sampler.heard != heard
    sampler.restore(before)
    assert sampler.heard == heard
    off = Sampler(engine, NW_VOCAB, NOTEWISE, SamplingConfig(), seed=1)
    off.feed(melody)
    assert off.register_bias() is None


def test_the_key_pull_weighs_each_note_on_by_how_often_its_pitch_class_was_heard():
    """key_pull x log(share of the pitch class among the notes fed x 12, smoothed by half a note): in every
    octave alike, the key's notes up and the others down; offs and waits untouched; Clara's own notes
    do not move it; off, or with under four notes heard, nothing changes; sampling follows it."""
    engine = tiny_engine(NW_VOCAB, seed=1, bias=PROFILES["notes"])
    c_major = (60, 62, 64, 65, 67, 69, 71, 72, 67, 64, 60, 62)  # C twice, D twice, E twice, G twice, ...
    melody = NW_CODEC.encode([StepNote(6 * i, 6 * i + 6, p) for i, p in enumerate(c_major)])
    sampler = Sampler(engine, NW_VOCAB, NOTEWISE, SamplingConfig(key_pull=1.0), seed=1)
    sampler.feed(melody[:4])
    assert sampler.key_bias() is None
    sampler.feed(melody[4:])
    bias, index, low = sampler.key_bias(), sampler.vocab.index, NOTEWISE.low_pitch
    counts = np.bincount(np.array(c_major) % 12, minlength=12) + 0.5
    for pitch in (48, 60, 61, 66, 79, 85):
        expected = np.log(counts[pitch % 12] * 12 / counts.sum())
        assert float(bias[index[f"p{pitch - low}"]]) == pytest.approx(expected, abs=1e-5), pitch
    assert bias[index[f"p{60 - low}"]] > 0 > bias[index[f"p{61 - low}"]]
    assert bias[index[f"endp{61 - low}"]] == 0 and bias[index["wait3"]] == 0
    heard = sampler.heard
    generate(sampler, steps=24)
    assert sampler.heard == heard and torch.equal(sampler.key_bias(), bias)
    off = Sampler(engine, NW_VOCAB, NOTEWISE, SamplingConfig(key_pull=0.0), seed=1)
    off.feed(melody)
    assert off.key_bias() is None
    outside = {}
    for pull in (0.0, 3.0):
        pulled = Sampler(engine, NW_VOCAB, NOTEWISE, SamplingConfig(key_pull=pull, temperature=1.5), seed=4)
        pulled.feed(melody)
        struck = [int(t[1:]) + low for t in generate(pulled, steps=12 * 16)[0] if t.startswith("p")]
        outside[pull] = np.mean([p % 12 in (1, 3, 6, 8, 10) for p in struck])
    assert outside[0.0] > 0.2 and outside[3.0] < 0.5 * outside[0.0], outside
    # the accompaniment chooses without it (choose(key_pull=False)): as a sampler with none would
    draws = {}
    for name, pull, asked in (("unpulled", 5.0, False), ("plain", 0.0, True), ("pulled", 5.0, True)):
        s = Sampler(engine, NW_VOCAB, NOTEWISE, SamplingConfig(key_pull=pull, temperature=1.5), seed=4)
        s.feed(melody)
        draws[name] = [int(s.choose(key_pull=asked)[0]) for _ in range(30)]
    assert draws["unpulled"] == draws["plain"] != draws["pulled"]


def test_a_strong_register_pull_keeps_sampled_notes_near_the_register_heard():
    engine = tiny_engine(NW_VOCAB, seed=1, bias=PROFILES["notes"])
    melody = NW_CODEC.encode([StepNote(6 * i, 6 * i + 6, 60 + (i * 5) % 12) for i in range(16)])
    bottom, top = np.percentile([60 + (i * 5) % 12 for i in range(16)], [10, 90]) + (-7, 7)
    spread = {}
    for pull in (0.0, 12.0):
        pitches = []
        for seed in range(1, 5):  # pooled: one seed's share outside swings 0-0.14 with the pull (0.5-0.8 without)
            sampler = Sampler(engine, NW_VOCAB, NOTEWISE, SamplingConfig(register_pull=pull, temperature=1.5),
                              seed=seed)
            sampler.feed(melody)
            tokens = generate(sampler, steps=12 * 16)[0]
            pitches += [int(t[1:]) + NOTEWISE.low_pitch for t in tokens if t.startswith("p")]
        assert len(pitches) >= 80
        spread[pull] = np.mean([p < bottom - 2 or p > top + 2 for p in pitches])  # 2 semitones out: 2 nats
    assert spread[0.0] > 0.3 and spread[12.0] < 0.25 * spread[0.0], spread


def kind_masses(probs: torch.Tensor, vocab) -> dict[int, float]:
    kinds = np.asarray(vocab.kind)
    return {int(k): float(probs[0, torch.from_numpy(np.flatnonzero(kinds == k))].sum()) for k in np.unique(kinds)}


def test_event_temperature_draws_the_kind_of_event_at_its_own_temperature_and_the_note_at_the_other():
    # one wait far likelier than any one note, the notes together about as likely: a cold draw waits
    engine = tiny_engine(NW_VOCAB, seed=3, bias=lambda token: 3.0 if token == "wait6" else 0.0)
    cold = SamplingConfig(random_freq=1.0, temperature=0.4, top_k=0, max_repeats=0, motif_pull=0.0)
    s = sampler(engine, cold)
    logits = s.logits.masked_fill(~s.masks(), float("-inf"))
    at_one, at_cold = torch.softmax(logits, -1), torch.softmax(logits / 0.4, -1)
    mixed = torch.softmax(s._events_at(logits, logits / 0.4, 1.0), -1)
    one, cold_kinds, got = kind_masses(at_one, s.vocab), kind_masses(at_cold, s.vocab), kind_masses(mixed, s.vocab)
    assert max(abs(one[k] - cold_kinds[k]) for k in one) > 0.05  # the two temperatures disagree on the kinds here
    assert got == pytest.approx(one, abs=1e-5)  # which kind: at 1
    ons = torch.from_numpy(np.flatnonzero(np.asarray(s.vocab.kind) == KIND_ON))
    assert (mixed[0, ons] / mixed[0, ons].sum()).tolist() == pytest.approx(
        (at_cold[0, ons] / at_cold[0, ons].sum()).tolist(), abs=1e-5)  # which note: at 0.4
    # and choose() draws from it: the kinds' frequencies over many draws from one state
    s = sampler(engine, SamplingConfig(**{**cold.__dict__, "event_temperature": 1.0}), seed=1)
    drawn = np.asarray(s.vocab.kind)[[int(s.choose()[0]) for _ in range(3000)]]
    for k, p in one.items():
        assert np.mean(drawn == k) == pytest.approx(p, abs=0.03)


def test_event_temperature_off_or_equal_leaves_sampling_as_it_was():
    engine = tiny_engine(NW_VOCAB, seed=3, bias=lambda token: 3.0 if token == "wait6" else 0.0)
    base = SamplingConfig(random_freq=1.0, temperature=0.9, top_k=0, max_repeats=0, motif_pull=0.0)
    takes = []
    for event in (0.0, 0.9):
        s = sampler(engine, SamplingConfig(**{**base.__dict__, "event_temperature": event}), seed=5)
        takes.append([int(s.choose()[0]) for _ in range(200)])
    s = sampler(engine, SamplingConfig(**{**base.__dict__, "event_temperature": 1.5}), seed=5)
    takes.append([int(s.choose(one_temperature=True)[0]) for _ in range(200)])  # the accompaniment's way
    s = sampler(engine, SamplingConfig(**{**base.__dict__, "event_temperature": 1.5}), seed=5)
    hot = [int(s.choose()[0]) for _ in range(200)]
    assert takes[0] == takes[1] == takes[2] != hot
