"""A memory of the session: the continuous cache (Grave, Joulin & Usunier 2017, "Improving
neural language models with a continuous cache").

The cache keeps the last `size` pairs (h_i, x_{i+1}) of each stream: the model's last-layer
output after token x_i, and the token that followed it. With h_t the output after the latest
token, the next token's cache distribution is

    p_cache(w) ∝ Σ_{i: x_{i+1} = w} exp(θ · cos(h_t, h_i))

and the prediction is p = (1 - λ) p_model + λ p_cache. The keys are unit vectors (a cosine,
not the paper's raw dot product: it measured better on held-out music, benchmarks/session_memory.py).
What followed a moment like this one earlier in the session becomes likelier now: the player's
motifs come back.

Streams are batched and independent (`active` leaves a stream untouched); each has a ring
buffer, so a step costs the same after ten tokens or ten thousand. The last output is held as
the pending query until its next token arrives, so feeding a chunk at once or a token at a
time leaves the same pairs. `snapshot`/`restore`/`select` copy everything, as the sampler's do.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from clara_live.config import SamplingConfig


class MemoryState(NamedTuple):
    keys: torch.Tensor | None  # (streams, size, dim) unit vectors
    values: torch.Tensor | None  # (streams, size) the token that followed each key
    filled: torch.Tensor  # (streams,) pairs held (<= size)
    pos: torch.Tensor  # (streams,) the next slot written
    query: torch.Tensor | None  # (streams, dim) the latest output, not yet paired
    has_query: torch.Tensor  # (streams,) bool


class Memory:
    """The continuous cache of one or more streams: `feed` what the model read, `mix` its prediction."""

    def __init__(self, size: int, theta: float, lam: float, streams: int = 1) -> None:
        if size < 1 or theta < 0 or not 0.0 <= lam < 1.0:
            raise ValueError(f"cache: size {size} must be >= 1, theta {theta} >= 0, lambda {lam} in [0, 1)")
        self.size, self.theta, self.lam = size, float(theta), float(lam)
        self.reset(streams)

    @classmethod
    def from_config(cls, sampling: SamplingConfig) -> Memory | None:
        """The cache the config asks for (sampling.cache), or None."""
        if not sampling.cache:
            return None
        return cls(sampling.cache_size, sampling.cache_theta, sampling.cache_lambda)

    # --- state -----------------------------------------------------------------------

    def reset(self, streams: int = 1) -> None:
        """Forget everything; the buffers are allocated at the first feed (when the width is known)."""
        self.keys: torch.Tensor | None = None
        self.values: torch.Tensor | None = None
        self.query: torch.Tensor | None = None
        self.filled = torch.zeros(streams, dtype=torch.long)
        self.pos = torch.zeros(streams, dtype=torch.long)
        self.has_query = torch.zeros(streams, dtype=torch.bool)
        self._even: tuple[int, int, bool] | None = (0, 0, False)
        self._dist: tuple[int, torch.Tensor, torch.Tensor | None] | None = None

    @property
    def streams(self) -> int:
        return len(self.filled)

    def snapshot(self) -> MemoryState:
        return MemoryState(*(None if t is None else t.clone() for t in self._tensors()))

    def restore(self, state: MemoryState) -> None:
        """Return exactly to a snapshot (the sampler rewinds the model and its memory together)."""
        (self.keys, self.values, self.filled, self.pos, self.query,
         self.has_query) = (None if t is None else t.clone() for t in state)
        self._settle()

    def select(self, rows: Sequence[int]) -> None:
        """Keep these streams, in this order (a row may repeat: that forks it)."""
        index = torch.as_tensor(list(rows), dtype=torch.long)
        (self.keys, self.values, self.filled, self.pos, self.query,
         self.has_query) = (None if t is None else t[index] for t in self._tensors())
        self._settle()

    def _tensors(self) -> MemoryState:
        return MemoryState(self.keys, self.values, self.filled, self.pos, self.query, self.has_query)

    def _settle(self) -> None:
        """Note whether every stream holds as many pairs at the same slot (the usual case: streams
        forked from one history and advanced together), which lets feed and mix take plain slices."""
        self._dist = None
        filled, pos, has = int(self.filled[0]), int(self.pos[0]), bool(self.has_query[0])
        even = bool((self.filled == filled).all() and (self.pos == pos).all() and (self.has_query == has).all())
        self._even = (filled, pos, has) if even else None

    # --- feeding ---------------------------------------------------------------------

    def feed(self, outputs: torch.Tensor, ids: torch.Tensor | np.ndarray | Sequence[int],
             active: np.ndarray | torch.Tensor | None = None) -> None:
        """The model read `ids` (streams, time) and emitted `outputs` (streams, time, dim).

        Pairs the pending query with ids[:, 0] and each output with the next token; the last
        output becomes the pending query. Streams where `active` is False stay as they are.
        """
        outputs = outputs.detach().to("cpu", torch.float32)
        ids = torch.as_tensor(np.asarray(ids), dtype=torch.long).reshape(outputs.shape[:2])
        if self.keys is None:
            dim = outputs.size(-1)
            self.keys = torch.zeros(self.streams, self.size, dim)
            self.values = torch.zeros(self.streams, self.size, dtype=torch.long)
            self.query = torch.zeros(self.streams, dim)
        if active is not None and bool(np.all(active)):
            active = None
        if active is None and self._even is not None:
            self._feed_even(F.normalize(outputs, dim=-1), ids)
            return
        rows = torch.arange(self.streams) if active is None else \
            torch.nonzero(torch.as_tensor(np.asarray(active), dtype=torch.bool)).view(-1)
        if not len(rows):
            return
        unit = F.normalize(outputs[rows], dim=-1)
        had = self.has_query[rows]
        if bool(had.all()):
            self.record(torch.cat([self.query[rows, None], unit[:, :-1]], dim=1), ids[rows], rows)
        elif not bool(had.any()):
            self.record(unit[:, :-1], ids[rows, 1:], rows)
        else:  # some streams have a query and some not: never after a common start, but kept right
            for row in rows.tolist():
                self.feed(outputs, ids, _only(row, self.streams))
            return
        self.query[rows] = unit[:, -1]
        self.has_query[rows] = True
        self._settle()

    def _feed_even(self, unit: torch.Tensor, ids: torch.Tensor) -> None:
        """feed() for every stream when all stand alike: slices at one slot, no gathers."""
        filled, pos, has = self._even
        if has and unit.size(1) == 1:  # one token: the pending query and the token make one pair
            self.keys[:, pos] = self.query
            self.values[:, pos] = ids[:, 0]
            count = 1
        else:
            keys = torch.cat([self.query[:, None], unit[:, :-1]], dim=1) if has else unit[:, :-1]
            values = ids if has else ids[:, 1:]
            count = keys.size(1)
            if count > self.size:  # only the last `size` pairs survive
                keys, values = keys[:, -self.size:], values[:, -self.size:]
                start = (pos + count - self.size) % self.size
            else:
                start = pos
            first = min(keys.size(1), self.size - start)
            self.keys[:, start:start + first] = keys[:, :first]
            self.values[:, start:start + first] = values[:, :first]
            rest = keys.size(1) - first
            if rest:
                self.keys[:, :rest] = keys[:, first:]
                self.values[:, :rest] = values[:, first:]
        filled, pos = min(filled + count, self.size), (pos + count) % self.size
        self.filled.fill_(filled)
        self.pos.fill_(pos)
        self.query = unit[:, -1].contiguous()
        self.has_query.fill_(True)
        self._even = (filled, pos, True)
        self._dist = None

    def record(self, keys: torch.Tensor, next_ids: torch.Tensor, rows: torch.Tensor | None = None) -> None:
        """Append pairs to the ring buffers: keys (n, time, dim) unit vectors and the tokens that
        followed them (n, time), for the streams `rows` (all by default). The oldest fall out."""
        rows = torch.arange(self.streams) if rows is None else rows
        count = keys.size(1)
        if count == 0:
            return
        if count > self.size:  # only the last `size` pairs would survive
            keys, next_ids, skipped = keys[:, -self.size:], next_ids[:, -self.size:], count - self.size
        else:
            skipped = 0
        slots = (self.pos[rows, None] + skipped + torch.arange(keys.size(1))) % self.size
        self.keys[rows[:, None], slots] = keys
        self.values[rows[:, None], slots] = next_ids
        self.pos[rows] = (self.pos[rows] + count) % self.size
        self.filled[rows] = torch.clamp(self.filled[rows] + count, max=self.size)
        self._settle()

    # --- predicting ------------------------------------------------------------------

    def distribution(self, vocab_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """p_cache (streams, vocab) for the next token, and which streams have one (a query and
        at least one pair); rows without one are zero."""
        p, has = self._distribution(vocab_size)
        if has is None:
            has = torch.full((self.streams,), self._even[0] > 0 and self._even[2])
        return p, has

    def _distribution(self, vocab_size: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(p_cache, which streams have one); None for `which` when all streams alike."""
        if self._dist is not None and self._dist[0] == vocab_size:
            return self._dist[1], self._dist[2]
        p = torch.zeros(self.streams, vocab_size)
        if self._even is not None:
            n, has = self._even[0], None
            if n and self._even[2]:
                scores = torch.bmm(self.keys[:, :n], self.query[:, :, None]).squeeze(-1)
                p.scatter_add_(1, self.values[:, :n], torch.softmax(scores * self.theta, dim=-1))
        else:
            has = self.has_query & (self.filled > 0)
            if self.keys is not None and bool(has.any()):
                n = int(self.filled.max())
                scores = torch.bmm(self.keys[:, :n], self.query[:, :, None]).squeeze(-1) * self.theta
                scores = scores.masked_fill(torch.arange(n) >= self.filled[:, None], float("-inf"))
                weights = torch.softmax(scores, dim=-1).masked_fill(~has[:, None], 0.0)  # (no pairs: NaN -> 0)
                p.scatter_add_(1, self.values[:, :n], weights)
        self._dist = (vocab_size, p, has)
        return p, has

    def empty(self) -> bool:
        """Nothing to mix in for any stream yet."""
        if self._even is not None:
            return not (self._even[0] and self._even[2])
        return not bool((self.has_query & (self.filled > 0)).any())

    def mix(self, log_probs: torch.Tensor) -> torch.Tensor:
        """log((1 - λ) p_model + λ p_cache) for the model's log-probabilities (streams, vocab);
        streams with nothing in memory keep the model's (and with λ = 0 or nothing yet, this
        returns `log_probs` itself)."""
        if self.lam == 0.0 or self.empty():
            return log_probs
        p_cache, has = self._distribution(log_probs.size(-1))
        mixed = torch.logaddexp(log_probs + math.log1p(-self.lam), torch.log(p_cache) + math.log(self.lam))
        return mixed if has is None else torch.where(has[:, None], mixed, log_probs)


def _only(row: int, streams: int) -> np.ndarray:
    active = np.zeros(streams, dtype=bool)
    active[row] = True
    return active
