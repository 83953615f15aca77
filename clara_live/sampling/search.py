"""Ways to continue: sample, best of K candidates, beam search, and AAB phrase form.

Each works on a Sampler that has been fed its context, leaves the sampler positioned just
after the continuation it returns (so a live session carries on from there), and measures
length in tokens or in steps of the grid. A continuation measured in steps ends exactly on
its last step: waits that would pass it are masked, and notewise every note still sounding
is closed there, so a phrase ends cleanly on its bar line.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from tqdm import tqdm

from clara_live.codec.vocabulary import Vocabulary
from clara_live.sampling.sampler import Sampler

# A scorer ranks candidates: given their token lists and mean log-probabilities under the
# model, it returns one score per candidate, higher is better (the critic plugs in here).
Scorer = Callable[[list[list[str]], np.ndarray], np.ndarray]


def model_score(sequences: list[list[str]], mean_logprob: np.ndarray) -> np.ndarray:  # noqa: ARG001
    """Rank by the model's own mean log-probability."""
    return mean_logprob


def generate(sampler: Sampler, max_tokens: int | None = None, steps: int | None = None,
             greedy: bool = False, progress: bool = False) -> list[list[str]]:
    """Sample every stream until it has max_tokens tokens or has moved `steps` steps on.

    Streams advance together (one batched model call per token); a stream that is done is
    held still while the others finish. Returns each stream's tokens.
    """
    if not max_tokens and not steps:
        raise ValueError("generate needs max_tokens or steps")
    states = sampler.states
    if steps:
        for state in states:
            state.horizon = state.now + steps
    out: list[list[str]] = [[] for _ in states]
    active = np.ones(len(states), dtype=bool)
    total = max_tokens if max_tokens and not steps else steps
    unit = "tok" if total == max_tokens else "step"
    bar = tqdm(total=total, unit=unit, disable=not progress, leave=False)
    start = states[0].now
    try:
        while active.any():
            ids = sampler.choose(greedy)
            if steps:
                finishing = np.array([s.now_after(int(i)) >= s.horizon for s, i in zip(states, ids, strict=True)])
            sampler.advance(ids, active)
            for row in np.flatnonzero(active):
                out[row].append(sampler.vocab.tokens[ids[row]])
            bar.update(len(out[0]) - bar.n if unit == "tok" else min(states[0].now - start, total) - bar.n)
            if max_tokens:
                active &= np.array([len(o) < max_tokens for o in out])
            if steps:
                active &= ~finishing
    finally:
        bar.close()
        for state in states:
            state.horizon = None
    _close(sampler, out)
    return out


def _close(sampler: Sampler, out: list[list[str]]) -> None:
    """Close every stream's sounding notes (notewise), feeding the closing tokens to the model."""
    closes = [state.close_all() for state in sampler.states]
    for position in range(max((len(c) for c in closes), default=0)):
        active = np.array([position < len(c) for c in closes])
        ids = np.array([c[position] if position < len(c) else 0 for c in closes])
        sampler.advance(ids, active, score=False)
        for row in np.flatnonzero(active):
            out[row].append(sampler.vocab.tokens[ids[row]])


def best_of(sampler: Sampler, candidates: int, max_tokens: int | None = None, steps: int | None = None,
            scorer: Scorer = model_score, progress: bool = False) -> tuple[list[str], np.ndarray]:
    """Generate K candidates batched and keep the one the scorer ranks first.

    Returns its tokens and every candidate's score; the sampler is left on the winner.
    """
    if sampler.streams != 1:
        raise ValueError("best_of starts from one stream")
    sampler.expand(candidates)
    sequences = generate(sampler, max_tokens, steps, progress=progress)
    scores = np.asarray(scorer(sequences, sampler.mean_logprob()), dtype=float)
    best = int(np.argmax(scores))
    sampler.select([best])
    return sequences[best], scores


def beam_search(sampler: Sampler, width: int, max_tokens: int | None = None, steps: int | None = None,
                progress: bool = False) -> tuple[list[str], float]:
    """The likeliest continuation found by a length-normalised beam search of this width.

    Hypotheses are ranked by their mean log-probability per token under the grammar mask;
    the greedy continuation is always a candidate, so the result is never less likely than
    greedy decoding. Returns the tokens and their mean log-probability.
    """
    if sampler.streams != 1:
        raise ValueError("beam_search starts from one stream")
    if not max_tokens and not steps:
        raise ValueError("beam_search needs max_tokens or steps")
    origin = sampler.snapshot()
    sampler.logprob[:], sampler.count[:] = 0.0, 0
    greedy = generate(sampler, max_tokens, steps, greedy=True)[0]
    finished: list[tuple[float, list[str]]] = [(float(sampler.mean_logprob()[0]), greedy)]
    sampler.restore(origin)
    sampler.expand(width)
    vocab_size = len(sampler.vocab.tokens)
    sequences: list[list[int]] = [[] for _ in range(width)]
    scores = np.full(width, -np.inf)
    scores[0] = 0.0  # the beams start identical: expand only the first
    horizon = [s.now + steps for s in sampler.states] if steps else None
    for state, end in zip(sampler.states, horizon or [], strict=False):
        state.horizon = end  # as generate does: no wait past the end, and the same mask as greedy's score
    cap = max_tokens or (steps * 64 if steps else 0)  # a hypothesis never needs more tokens than this
    bar = tqdm(total=cap if not steps else steps, disable=not progress, leave=False)
    while True:
        total = (scores[:, None] + sampler.log_probs().numpy()).ravel()
        order = np.argsort(-total, kind="stable")[:2 * width]
        kept: list[tuple[int, int, float]] = []
        for flat in order:
            if not np.isfinite(total[flat]):
                break
            row, token = divmod(int(flat), vocab_size)
            length = len(sequences[row]) + 1
            done = (max_tokens and length >= max_tokens) or \
                (steps and sampler.states[row].now_after(token) >= horizon[row]) or length >= cap
            if done:
                finished.append((float(total[flat]) / length, [sampler.vocab.tokens[t] for t in sequences[row]]
                                 + [sampler.vocab.tokens[token]]))
            else:
                kept.append((row, token, float(total[flat])))
            if len(kept) == width:
                break
        best_live = max((s / (len(sequences[r]) + 1) for r, _, s in kept), default=-np.inf)
        if not kept or (len(finished) > width and max(f[0] for f in finished) >= best_live):
            break
        kept += [kept[-1][:2] + (-np.inf,)] * (width - len(kept))  # pad with dead beams
        sampler.select([r for r, _, _ in kept])
        sampler.advance(np.array([t for _, t, _ in kept]), score=False)
        sequences = [sequences[r] + [t] for r, t, _ in kept]
        scores = np.array([s for _, _, s in kept])
        bar.update((sampler.states[0].now - origin.states[0].now if steps else len(sequences[0])) - bar.n)
    bar.close()
    score, best = max(finished, key=lambda f: f[0])
    sampler.restore(origin)
    sampler.play(best)
    out = [list(best)]
    _close(sampler, out)
    return out[0], score


def aab(sampler: Sampler, phrase_steps: int, progress: bool = False) -> list[str]:
    """State a phrase A, repeat it, then keep A's first half and let the model go elsewhere.

    The structure Clara's author wished a network could find by itself: statement,
    confirmation, departure. A is `phrase_steps` long; the departure starts at its middle.
    Returns the tokens of all three statements; the model has heard every one of them.
    """
    if sampler.streams != 1:
        raise ValueError("aab works on one stream")
    half = phrase_steps // 2
    sampler.states[0].begin_with_a_note()
    phrase = generate(sampler, steps=phrase_steps, progress=progress)[0]
    repeat = _recount(sampler, phrase)
    sampler.play(repeat)  # the repeat: the model hears A twice, as a listener would
    vocab = sampler.vocab
    opening = _recount(sampler, vocab.text(first_steps(vocab.ids(phrase, "the phrase").tolist(), half, vocab)))
    sampler.play(opening)
    departure = generate(sampler, steps=phrase_steps - half, progress=progress)[0]
    return phrase + repeat + opening + departure


def _recount(sampler: Sampler, tokens: list[str]) -> list[str]:
    """Tokens played again from here. A chordwise rest counts the notes struck just before it,
    so a repeated rest is recounted for its new place; notewise tokens stay as they are."""
    vocab = sampler.vocab
    if vocab.coder.streams_events:
        return tokens
    state = sampler.states[0].copy()
    out = []
    for text in tokens:
        i = vocab.index[text]
        family = int(vocab.family[i])
        if vocab.rest_id.get((family, int(vocab.value[i]))) == i:
            i = vocab.rest_id[(family, min(sum(state.recent[family]), state.cap))]
        state.update(i)
        out.append(vocab.tokens[i])
    return out


def first_steps(ids: list[int], steps: int, vocab: Vocabulary) -> list[int]:
    """The ids of the first `steps` steps (a wait across the cut is split at it)."""
    if not vocab.coder.streams_events:  # a token a step and family
        return list(ids[:steps * len(vocab.families)])
    out: list[int] = []
    now = 0
    waits = vocab.kind[vocab.wait_ids[0]]
    for i in ids:
        if vocab.kind[i] == waits:
            steps_waited = int(vocab.value[i])
            if now + steps_waited >= steps:
                return out + vocab.waits(steps - now)
            now += steps_waited
        out.append(i)
    return out
