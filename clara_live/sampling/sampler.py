"""The streaming sampler: Clara's core loop of predicting a token and feeding it back.

A `Sampler` owns the model's hidden state for one or more streams (K candidates advance
together, one batched model call per token), each stream's grammar state, and a seeded
random generator, so the same seed gives the same music. Tokens are fed as they happen
(a prompt, a player's notes, Clara's own choices); the hidden state is never re-primed.
`snapshot`/`restore` branch and rewind; `expand`/`select` fork candidates and keep some.

With a memory (the continuous cache, sampling/memory.py; `sampling.cache`) every token fed
or sampled is remembered with the model's output before it, and every prediction (log_probs,
choose, the scores) is the model's mixed with the memory's; it rewinds and forks with the rest.

With a motif pull (sampling/motif.py; `sampling.motif_pull`) the top lines of the music fed
teach a short-term interval model, and choose() leans each stream's next top note towards the
intervals the player's motifs took there.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch

from clara_live.codec.notewise import TOUCH_UNKNOWN, Touch
from clara_live.codec.tokens import PIANO_STYLE
from clara_live.codec.vocabulary import Vocabulary
from clara_live.config import CodecConfig, SamplingConfig
from clara_live.engine import Engine
from clara_live.model.touch import LEVEL_WINDOW, level_bias, sample_exact
from clara_live.model.touch import sample as sample_touch
from clara_live.model.weight_drop import Hidden
from clara_live.sampling.grammar import ChordwiseState, NotewiseState, new_state
from clara_live.sampling.memory import Memory, MemoryState
from clara_live.sampling.motif import Motifs, apply_bias

FEED_CHUNK = 256  # tokens per model call when feeding a long prompt
REGISTER_NOTES = 48  # the register is that of the last this many notes fed ...
REGISTER_MARGIN = 7  # ... their middle 80 % widened by a fifth on either side
MIN_VELOCITY = 12  # the softest note Clara plays with learned touch: softer is all but silent on most pianos
PLAYED_NOTES = 64  # fed velocities say nothing of the player's dynamics while the last this many note-ons fed ...
PLAYED_VELOCITIES = 3  # ... hold fewer distinct velocities than this (a keyboard without velocity sends all 64)
DEFAULT_STYLE = PIANO_STYLE  # the style that opens the music with none asked for (the piano corpora's)
NO_STYLE = "none"  # sampling.style that asks for no style token at all


class Snapshot(NamedTuple):
    hidden: list[Hidden]
    states: list[NotewiseState | ChordwiseState]
    logits: torch.Tensor | None
    logprob: np.ndarray
    count: np.ndarray
    rng: torch.Tensor
    memory: MemoryState | None = None
    heard: tuple[int, ...] = ()
    motifs: tuple[int, ...] = ()
    output: torch.Tensor | None = None
    made: tuple[Strikes, ...] = ()
    recent: np.ndarray | None = None
    previous: np.ndarray | None = None


class Strikes:
    """The touch of one stream's sampled note-ons, oldest first: an immutable list that grows by one in
    constant time (`plus`), so a snapshot keeps it as it is without a copy and a long session's strikes
    cost nothing more each (a tuple rebuilt on every strike grew with the session)."""

    __slots__ = ("_before", "_last", "_length")

    def __init__(self, before: Strikes | None = None, last: Touch | None = None) -> None:
        self._before, self._last = before, last
        self._length = 0 if before is None else len(before) + 1

    def plus(self, touch: Touch) -> Strikes:
        return Strikes(self, touch)

    def __len__(self) -> int:
        return self._length

    def last(self, count: int) -> list[Touch]:
        """The last `count` strikes, oldest first (walks back only as far as it needs)."""
        out: list[Touch] = []
        node: Strikes | None = self
        while node is not None and node._before is not None and len(out) < count:
            out.append(node._last)  # type: ignore[arg-type]
            node = node._before
        return out[::-1]

    def __iter__(self):
        return iter(self.last(self._length))

    def __getitem__(self, index: int | slice):
        if isinstance(index, slice):
            start = 0 if index.start is None else index.start
            if index.step is None and index.stop is None and start >= 0:
                return self.last(max(self._length - start, 0))
            return list(self)[index]
        if index == -1 and self._length:
            return self._last
        return list(self)[index]


class Sampler:
    def __init__(self, engine: Engine, vocabulary: list[str], codec: CodecConfig, sampling: SamplingConfig,
                 seed: int | None = None, memory: Memory | None = None) -> None:
        """memory: a continuous cache to use; by default the one `sampling.cache` asks for (or none)."""
        self.engine = engine
        self.memory = memory if memory is not None else Memory.from_config(sampling)
        self.vocab = Vocabulary(vocabulary, codec)
        self.sampling = sampling
        if seed is None:
            seed = sampling.seed
        self.seed = seed if seed >= 0 else int.from_bytes(os.urandom(4), "little")
        self.generator = torch.Generator().manual_seed(self.seed)
        # per token: the pitch index a note-on strikes, -1 for every other token (what register_bias weighs)
        self._on_pitch = np.full(len(self.vocab.tokens), -1, dtype=np.int64)
        ons = self.vocab.on_id >= 0
        self._on_pitch[self.vocab.on_id[ons]] = np.flatnonzero(ons) % codec.num_pitches
        self.motifs = Motifs(sampling.motif_pull)
        self._register: tuple[tuple[int, ...], np.ndarray] | None = None  # (heard, its 10th and 90th percentiles)
        self._on_class = np.where(self._on_pitch >= 0, (self._on_pitch + codec.low_pitch) % 12, -1)  # pitch class
        self._key: tuple[tuple[int, ...], torch.Tensor] | None = None  # (heard, key_bias over it)
        self._notes = torch.from_numpy(np.flatnonzero(self.vocab.top >= 0))  # ids of the tokens that strike notes
        # touch (model/touch.py): each note-on sampled gets the velocity and offset the model gives it
        self.learned_touch = engine.touch and sampling.touch == "learned" and self.vocab.coder.streams_events
        # (vocab,) bool or None: tokens the caller forbids over the grammar's mask (the accompaniment's register
        # and the melody's held pitch). Their probability goes to the waits allowed (the step passes instead, as
        # it would have had she not been kept off them: without it, masking the notes the model wanted makes her
        # strike another note far oftener than she would); where it leaves a stream nothing, the shortest wait
        self.forbid: np.ndarray | None = None
        # (vocab,) bool or None: tokens kept from her as plainly as the grammar keeps them, their probability shared
        # by all the tokens left in proportion (a family the music is not written for: a piano piece's violin notes)
        self.absent: np.ndarray | None = None
        self._wait = np.zeros(len(self.vocab.tokens), dtype=bool)
        self._wait[self.vocab.wait_ids] = True
        # the token ids of each kind of event (sampling.event_temperature): note-ons, note-offs, waits...
        self._event_kind = torch.from_numpy(np.asarray(self.vocab.kind, dtype=np.int64) + 1)  # -1 (none) -> 0
        self.reset()

    # --- state -----------------------------------------------------------------------

    def reset(self, streams: int = 1) -> None:
        """Forget everything: zero hidden state, empty grammar state, no prediction yet."""
        self.hidden = self.engine.init_hidden(streams)
        self.states = [new_state(self.vocab, self.sampling) for _ in range(streams)]
        self.logits: torch.Tensor | None = None  # (streams, vocab) on the CPU: the next token's logits
        self.logprob = np.zeros(streams)  # log-probability of the sampled tokens, per stream
        self.count = np.zeros(streams, dtype=np.int64)  # sampled tokens scored, per stream
        self._masks: torch.Tensor | None = None  # the masks choose() used, until the next advance
        self._masks_mixed: torch.Tensor | None = None  # ... and the memory's mix under them
        self.heard: tuple[int, ...] = ()  # pitch indices of the last REGISTER_NOTES note-ons fed
        self.output: torch.Tensor | None = None  # (streams, emb): the last layer's output (touch's head reads it)
        self.made: list[Strikes] = [Strikes() for _ in range(streams)]  # each stream's sampled note-ons' touch
        # each stream's last LEVEL_WINDOW tokens' touch columns (velocity, offset): the touch head's running level
        self.recent = np.zeros((streams, LEVEL_WINDOW, 2), dtype=np.int64)
        # each stream's last known strike (velocity, offset in hundredths; velocity 0: none yet), fed or
        # sampled, the player's included: what an exact head (model/touch.py, formats 2, 3) repeats
        self.previous = np.zeros((streams, 2), dtype=np.int64)
        self.fed_velocities: tuple[int, ...] = ()  # the last PLAYED_NOTES velocities of note-ons fed (known ones)
        self.motifs.reset()
        if self.memory is not None:
            self.memory.reset(streams)

    @property
    def streams(self) -> int:
        return len(self.states)

    def snapshot(self) -> Snapshot:
        return Snapshot([(h.clone(), c.clone()) for h, c in self.hidden], [s.copy() for s in self.states],
                        None if self.logits is None else self.logits.clone(), self.logprob.copy(),
                        self.count.copy(), self.generator.get_state(),
                        None if self.memory is None else self.memory.snapshot(), self.heard, self.motifs.history,
                        None if self.output is None else self.output.clone(), tuple(self.made), self.recent.copy(),
                        self.previous.copy())

    def restore(self, snapshot: Snapshot) -> None:
        """Return exactly to a snapshot: the same tokens then follow for the same choices."""
        self.hidden = [(h.clone(), c.clone()) for h, c in snapshot.hidden]
        self.states = [s.copy() for s in snapshot.states]
        self.logits = None if snapshot.logits is None else snapshot.logits.clone()
        self.logprob, self.count = snapshot.logprob.copy(), snapshot.count.copy()
        self.generator.set_state(snapshot.rng)
        self.heard = snapshot.heard
        self.motifs.history = snapshot.motifs
        self.output = None if snapshot.output is None else snapshot.output.clone()
        self.made = list(snapshot.made) or [Strikes() for _ in self.states]
        self.recent = snapshot.recent.copy() if snapshot.recent is not None else \
            np.zeros((len(self.states), LEVEL_WINDOW, 2), dtype=np.int64)
        self.previous = snapshot.previous.copy() if snapshot.previous is not None else \
            np.zeros((len(self.states), 2), dtype=np.int64)
        if self.memory is not None:
            if snapshot.memory is None:
                raise ValueError("this snapshot was taken without the sampler's memory")
            self.memory.restore(snapshot.memory)
        self._masks = self._masks_mixed = None

    def select(self, rows: Sequence[int]) -> None:
        """Keep these streams, in this order (a row may repeat: that forks it)."""
        index = torch.as_tensor(list(rows), dtype=torch.long)
        on_device = index.to(self.engine.device)
        self.hidden = [(h[:, on_device].contiguous(), c[:, on_device].contiguous()) for h, c in self.hidden]
        self.states = [self.states[r].copy() for r in rows]
        if self.logits is not None:
            self.logits = self.logits[index]
        self.logprob, self.count = self.logprob[list(rows)], self.count[list(rows)]
        if self.output is not None:
            self.output = self.output[index]
        self.made = [self.made[r] for r in rows]
        self.recent = self.recent[list(rows)]
        self.previous = self.previous[list(rows)]
        if self.memory is not None:
            self.memory.select(rows)
        self._masks = self._masks_mixed = None

    def expand(self, streams: int) -> None:
        """Fork stream 0 into `streams` identical streams (candidates)."""
        self.select([0] * streams)
        self.logprob[:] = 0.0
        self.count[:] = 0

    # --- feeding ---------------------------------------------------------------------

    def feed(self, tokens: Sequence[str], velocity: int | Sequence[int] = 0,
             offset: Sequence[float] | None = None) -> None:
        """Feed the same tokens to every stream (a prompt, or what the player just played);
        `velocity` is the notes' velocity, or one per token (0: not known), `offset` each token's
        onset offset from its step (touch; none: on the step)."""
        self.feed_ids(self.vocab.ids(tokens, "fed tokens").tolist(), velocity, offset)

    def feed_ids(self, ids: Sequence[int], velocity: int | Sequence[int] = 0,
                 offset: Sequence[float] | None = None) -> None:
        if not len(ids):
            return
        velocities = [velocity] * len(ids) if isinstance(velocity, int) else list(velocity)
        touch = self._fed_touch(ids, velocities, offset) if self.learned_touch else None
        if touch is not None:
            self._remember(torch.stack(touch, -1).numpy())
        for start in range(0, len(ids), FEED_CHUNK):
            chunk = torch.as_tensor(ids[start:start + FEED_CHUNK], dtype=torch.long, device=self.engine.device)
            chunk = chunk.expand(self.streams, -1)
            given = None if touch is None else tuple(t[:, start:start + FEED_CHUNK].expand(self.streams, -1)
                                                     for t in touch)
            if self.memory is None and not self.learned_touch:
                logits, self.hidden = self.engine(chunk, self.hidden)
            else:
                logits, self.hidden, outputs = self.engine(chunk, self.hidden, outputs=True, touch=given)
                self.output = outputs[:, -1]
                if self.memory is not None:
                    self.memory.feed(outputs, chunk.cpu())
            self.logits = logits[:, -1].cpu()
        for row, state in enumerate(self.states):
            for i, v in zip(ids, velocities, strict=True):
                sets = state.sets
                state.update(int(i), v)
                if row == 0 and state.sets != sets:  # an onset set of fed music closed: learn its top
                    self.motifs.learn(state.tops[-1])
        struck = self._on_pitch[np.asarray(ids, dtype=np.int64)]
        if (struck >= 0).any():
            self.heard = (*self.heard, *struck[struck >= 0].tolist())[-REGISTER_NOTES:]
        self._masks = self._masks_mixed = None

    def open_piece(self) -> bool:
        """Feed the token of the style asked for (sampling.style; with none asked for, DEFAULT_STYLE), as
        a piece of that style opens in training; False (nothing fed) for "none" or a style the model does
        not know. A model that learned styles heard one open every piece: with none, it starts from a
        state it never knew (the joint model's answers to piano prompts then drifted, now and then, into
        a quartet's tremolo and held chords)."""
        name = self.sampling.style or DEFAULT_STYLE
        style = self.vocab.style_id(name) if name != NO_STYLE else None
        if style is None:
            return False
        self.feed_ids([style])
        return True

    def style_note(self) -> str | None:
        """A line for the player when the style asked for is one the model does not know, else None."""
        style = self.sampling.style
        if not style or style == NO_STYLE or self.vocab.style_id(style) is not None:
            return None
        known = ", ".join(sorted(self.vocab.style_ids)) or "none: it was trained without styles"
        return f"sampling.style {style!r} is not a style this model knows, so none is used (it knows: {known})"

    def play(self, tokens: Sequence[str]) -> None:
        """Tokens Clara plays herself (a phrase repeated, a beam's winner): fed, or with learned
        touch advanced one by one so each note-on is given its own velocity and timing (`made`)."""
        if not self.learned_touch:
            self.feed(tokens)
            return
        for i in self.vocab.ids(tokens, "played tokens").tolist():
            self.advance(np.full(self.streams, i), score=False)

    def _fed_touch(self, ids: Sequence[int], velocities: list[int], offset: Sequence[float] | None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """Touch's input columns for fed tokens: a note-on's velocity (-1 where not known), its
        offset in hundredths of a step; 0 for every other token. While the note-ons fed show no
        dynamics (PLAYED_VELOCITIES), their velocities count as not known: a flat player's level
        (all 1, all 127, a keyboard without velocity) is never taken as their touch, so hers is her own."""
        strikes = torch.from_numpy(self._on_pitch[np.asarray(ids, dtype=np.int64)] >= 0)
        velocity = torch.as_tensor(velocities, dtype=torch.long).clamp(max=127)
        struck = velocity[strikes & (velocity > 0)].tolist()
        self.fed_velocities = (*self.fed_velocities, *struck)[-PLAYED_NOTES:]
        if self.player_level() is None:
            velocity = torch.zeros_like(velocity)
        velocity = torch.where(strikes, torch.where(velocity > 0, velocity, TOUCH_UNKNOWN), 0)
        hundredths = torch.zeros(len(ids), dtype=torch.long) if offset is None else \
            torch.round(torch.as_tensor(offset, dtype=torch.float) * 100).long().clamp(-50, 49)
        return velocity.view(1, -1), torch.where(strikes, hundredths, 0).view(1, -1)

    def player_level(self) -> float | None:
        """The mean velocity of the note-ons fed (the player's, a prompt's) while they show dynamics; None while
        they show none (a keyboard without velocity: her level is then her own)."""
        known = self.fed_velocities
        return float(np.mean(known)) if len(set(known)) >= PLAYED_VELOCITIES else None

    def _sampled_touch(self, ids: np.ndarray, active: np.ndarray | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Touch for the tokens chosen: each note-on's drawn from the model's touch head (and kept
        in `made`), 0 for every other token (and for streams standing still)."""
        strikes = self._on_pitch[ids] >= 0
        if active is not None:
            strikes &= active
        velocity = torch.zeros(len(ids), dtype=torch.long)
        hundredths = torch.zeros(len(ids), dtype=torch.long)
        rows = np.flatnonzero(strikes)
        if len(rows) and self.output is not None:
            index = torch.as_tensor(rows)
            previous = torch.from_numpy(self.previous[rows])
            level = self.engine.touch_features(*torch.from_numpy(self.recent[rows]).unbind(-1), before=previous)[:, -1]
            v_logits, o_logits = self.engine.touch_logits(self.output[index.to(self.output.device)],
                                                          torch.as_tensor(ids[rows], device=self.engine.device),
                                                          level.to(self.engine.device))
            timing = self.sampling.timing_temperature
            target = self.player_level()
            if target is not None and self.sampling.level_pull > 0:
                v_logits = v_logits.cpu()
                v_logits = v_logits + level_bias(v_logits, previous, target, self.sampling.level_pull)
            if self.engine.touch_format > 1:
                drawn, offset = sample_exact(v_logits.cpu(), o_logits.cpu(), previous, self.generator,
                                             offset_temperature=timing)
            else:
                drawn, offset = sample_touch(v_logits.cpu(), o_logits.cpu(), self.generator, offset_temperature=timing)
            drawn = drawn.clamp(MIN_VELOCITY, 127)
            velocity[index], hundredths[index] = drawn, torch.round(offset * 100).long().clamp(-50, 49)
            for row, v, o in zip(rows.tolist(), drawn.tolist(), offset.tolist(), strict=True):
                self.made[row] = self.made[row].plus(Touch(int(v), float(o)))
        self._remember(torch.stack([velocity, hundredths], -1).view(-1, 1, 2).numpy(), active)
        return velocity.view(-1, 1), hundredths.view(-1, 1)

    def _remember(self, columns: np.ndarray, active: np.ndarray | None = None) -> None:
        """Push tokens' touch columns ((streams or 1, tokens, 2)) into each stream's running window
        (streams where `active` is False keep theirs)."""
        columns = np.broadcast_to(columns, (self.streams, *columns.shape[1:]))
        pushed = np.concatenate([self.recent, columns], axis=1)[:, -LEVEL_WINDOW:]
        self.recent = pushed if active is None else np.where(np.asarray(active)[:, None, None], pushed, self.recent)
        known = columns[..., 0] > 0  # (streams, tokens)
        last = columns[np.arange(self.streams), columns.shape[1] - 1 - np.argmax(known[:, ::-1], axis=1)]
        last = np.where(known.any(axis=1)[:, None], last, self.previous)
        self.previous = last if active is None else np.where(np.asarray(active)[:, None], last, self.previous)

    def advance(self, ids: np.ndarray, active: np.ndarray | None = None, score: bool = True) -> None:
        """Feed one token per stream; streams where `active` is False stay exactly as they are. With
        learned touch, each note-on chosen is given a velocity and offset (`made`)."""
        ids = np.asarray(ids, dtype=np.int64)
        if score and self.logits is not None:
            lp = self.log_probs(self._masks)[torch.arange(self.streams), torch.as_tensor(ids)].numpy()
            on = np.ones(self.streams, dtype=bool) if active is None else active
            self.logprob[on] += lp[on]
            self.count[on] += 1
        x = torch.as_tensor(ids, device=self.engine.device).view(-1, 1)
        outputs = None
        if self.memory is None and not self.learned_touch:
            logits, hidden = self.engine(x, self.hidden)
        else:
            touch = self._sampled_touch(ids, active) if self.learned_touch else None
            logits, hidden, outputs = self.engine(x, self.hidden, outputs=True, touch=touch)
            if self.memory is not None:
                self.memory.feed(outputs, ids.reshape(-1, 1), active)
            outputs = outputs[:, -1]
        logits = logits[:, -1].cpu()
        if active is None or active.all():
            self.hidden, self.logits = hidden, logits
            self.output = outputs if outputs is not None else self.output
        else:
            keep = torch.as_tensor(active)
            on_device = keep.to(self.engine.device).view(1, -1, 1)
            self.hidden = [(torch.where(on_device, h, h0), torch.where(on_device, c, c0))
                           for (h, c), (h0, c0) in zip(hidden, self.hidden, strict=True)]
            self.logits = torch.where(keep.view(-1, 1), logits, self.logits)
            if outputs is not None and self.output is not None:
                self.output = torch.where(on_device.view(-1, 1), outputs, self.output)
        for row, state in enumerate(self.states):
            if active is None or active[row]:
                state.update(int(ids[row]))
        self._masks = self._masks_mixed = None

    # --- choosing --------------------------------------------------------------------

    def masks(self) -> torch.Tensor:
        masks = np.stack([s.allowed() for s in self.states])
        if self.absent is not None:  # (never a stream left nothing: a state only the absent family could leave)
            kept = masks & ~self.absent
            masks = np.where(kept.any(axis=1, keepdims=True), kept, masks)
        if self.forbid is not None:
            kept = masks & ~self.forbid
            empty = ~kept.any(axis=1)
            if empty.any():  # nothing left but forbidden notes: the shortest wait instead
                kept[np.ix_(empty, self.vocab.wait_ids[:1])] = True
            masks = kept
        return torch.from_numpy(masks)

    def log_probs(self, masks: torch.Tensor | None = None) -> torch.Tensor:
        """(streams, vocab) log-probabilities of the next token under the grammar mask (with a
        memory: the model's mixed with the memory's, the disallowed tokens' share given back)."""
        if self.logits is None:
            raise RuntimeError("the sampler has no prediction yet: feed it at least one token")
        allowed = self.masks() if masks is None else masks
        mixed = self._mixed(allowed)
        return mixed if mixed is not None else torch.log_softmax(self.logits.masked_fill(~allowed, float("-inf")), -1)

    def _mixed(self, allowed: torch.Tensor) -> torch.Tensor | None:
        """The memory's mix of the masked prediction, renormalised over the allowed tokens; None
        without a memory or while it changes nothing (λ = 0, nothing remembered yet)."""
        if self.memory is None:
            return None
        if allowed is self._masks and self._masks_mixed is not None:  # choose() mixed, advance() scores
            return self._masks_mixed
        log_probs = torch.log_softmax(self.logits.masked_fill(~allowed, float("-inf")), dim=-1)
        mixed = self.memory.mix(log_probs)
        if mixed is log_probs:
            return None
        mixed = torch.log_softmax(mixed.masked_fill(~allowed, float("-inf")), dim=-1)
        if allowed is self._masks:
            self._masks_mixed = mixed
        return mixed

    def choose(self, greedy: bool = False, one_temperature: bool = False, key_pull: bool = True) -> np.ndarray:
        """One token id per stream: Clara's truncated sampling over the allowed tokens.
        (`one_temperature`: the kind of event at `temperature` too, whatever event_temperature says;
        `key_pull` False: no key pull, whatever sampling.key_pull says.)

        Each stream takes its likeliest token, or with probability random_freq draws one
        from the distribution at `temperature`, cut to the top_k tokens, the top_p mass and
        the tokens at least min_p times as likely as the likeliest (Nguyen et al. 2024).
        """
        if self.logits is None:
            raise RuntimeError("the sampler has no prediction yet: feed it at least one token")
        cfg = self.sampling
        self._masks = self.masks()  # advance() scores the choice under the same masks
        self._masks_mixed = None
        logits = self._mixed(self._masks)  # with a memory, the mixed log-probabilities serve as logits
        if logits is None:
            logits = self.logits.masked_fill(~self._masks, float("-inf"))
        if self.forbid is not None:
            logits = logits + self._forbidden_to_waits()
        for bias in (self.register_bias(), self.key_bias() if key_pull else None):
            if bias is not None:
                logits = logits + bias
        bias = self.motif_bias()
        if bias is not None:
            logits = apply_bias(logits, bias, self._notes)
        choice = logits.argmax(dim=-1)
        if greedy or cfg.random_freq == 0.0:
            return choice.numpy()
        draw = torch.rand(self.streams, generator=self.generator) < cfg.random_freq
        if draw.any():
            z = logits[draw] / cfg.temperature
            if cfg.event_temperature and cfg.event_temperature != cfg.temperature and not one_temperature:
                z = self._events_at(logits[draw], z, cfg.event_temperature)
            if cfg.top_k:
                kth = torch.topk(z, min(cfg.top_k, z.size(-1)), dim=-1).values[:, -1:]
                z = z.masked_fill(z < kth, float("-inf"))
            if cfg.top_p < 1.0:
                ordered, order = torch.sort(z, dim=-1, descending=True)
                mass = torch.softmax(ordered, dim=-1).cumsum(dim=-1)
                cut = mass - torch.softmax(ordered, dim=-1) >= cfg.top_p  # keep the token that crosses top_p
                z = z.scatter(-1, order, ordered.masked_fill(cut, float("-inf")))
            if cfg.min_p > 0.0:  # relative to the likeliest: log p - log p_max >= log min_p
                z = z.masked_fill(z - z.max(dim=-1, keepdim=True).values < np.log(cfg.min_p), float("-inf"))
            choice[draw] = torch.multinomial(torch.softmax(z, dim=-1), 1, generator=self.generator).squeeze(-1)
        return choice.numpy()

    def _events_at(self, logits: torch.Tensor, z: torch.Tensor, temperature: float) -> torch.Tensor:
        """`z` (logits at the sampling temperature) with each kind of event's total probability (a note
        struck, a note released, a wait; chordwise a chord or a rest) set to what it has at `temperature`:
        which kind comes next (the texture: how many notes sound, how long they last) is drawn at one
        temperature, which note or wait within it at the other. A temperature under 1 sharpens the
        choice of note, where it keeps the key; on the choice of kind it thins the texture, the
        likeliest kind at most steps being time passing (BENCHMARKS.md, answer quality)."""
        kind, kinds = self._event_kind, int(self._event_kind.max()) + 1
        at = torch.softmax(logits / temperature, dim=-1)
        now = torch.softmax(z, dim=-1)
        mass_at = torch.zeros(len(z), kinds).index_add_(1, kind, at)
        mass_now = torch.zeros(len(z), kinds).index_add_(1, kind, now)
        shift = torch.log(mass_at / mass_now.clamp(min=1e-30)).nan_to_num(0.0, posinf=0.0, neginf=0.0)
        return z + shift[:, kind]

    def _forbidden_to_waits(self) -> torch.Tensor:
        """(streams, vocab) log-odds added to the allowed waits: what the forbidden tokens the grammar
        allows would have had, shared among them in proportion (0 elsewhere)."""
        grammar = torch.from_numpy(np.stack([s.allowed() for s in self.states]))
        p = torch.softmax(self.logits.masked_fill(~grammar, float("-inf")), dim=-1)
        forbidden = grammar & torch.from_numpy(self.forbid)
        waits = self._masks & torch.from_numpy(self._wait)
        moved, kept = (p * forbidden).sum(-1, keepdim=True), (p * waits).sum(-1, keepdim=True)
        lift = torch.where(kept > 0, torch.log1p(moved / kept.clamp(min=1e-12)), torch.zeros_like(kept))
        return torch.where(waits, lift, torch.zeros(()))

    def register_bias(self) -> torch.Tensor | None:
        """(vocab,) log-odds added to the note-ons when choosing (sampling.register_pull): none
        inside the register heard (the middle 80 % of the last notes fed, a fifth wider on either
        side), -register_pull per octave beyond it; None when off or fewer than 4 notes heard.
        It keeps an answer where the player was; what she plays inside it is the model's."""
        pull = self.sampling.register_pull
        outside = self._beyond_register(self._on_pitch)
        if not pull or outside is None:
            return None
        return torch.from_numpy(np.where(self._on_pitch >= 0, -pull * outside / 12.0, 0.0).astype(np.float32))

    def key_bias(self) -> torch.Tensor | None:
        """(vocab,) log-odds added to the note-ons when choosing (sampling.key_pull): key_pull times the
        log of how much more (or less) often than an even share each pitch class came in the last notes
        fed (the player's, the prompt's: `heard`), smoothed by half a note, so a note in the key heard is
        likelier and one outside it less likely, each in proportion; None when off or fewer than 4 notes
        heard. It keeps her in the player's key; which of its notes, and when, is the model's."""
        pull = self.sampling.key_pull
        if not pull or len(self.heard) < 4:
            return None
        if self._key is None or self._key[0] is not self.heard:  # once per note fed, not per token
            low = self.vocab.codec.low_pitch
            counts = np.bincount((np.asarray(self.heard) + low) % 12, minlength=12) + 0.5
            share = np.log(counts * 12 / counts.sum())
            bias = np.where(self._on_class >= 0, pull * share[np.maximum(self._on_class, 0)], 0.0)
            self._key = (self.heard, torch.from_numpy(bias.astype(np.float32)))
        return self._key[1]

    def _beyond_register(self, pitch: np.ndarray) -> np.ndarray | None:
        """Semitones each pitch index lies beyond the register heard (the middle 80 % of the last
        notes fed, a fifth wider on either side), 0 inside it; None with under four notes heard."""
        if len(self.heard) < 4:
            return None
        if self._register is None or self._register[0] is not self.heard:  # once per note fed, not per token
            self._register = (self.heard, np.percentile(self.heard, [10, 90]))
        low, high = self._register[1]
        return np.maximum(low - REGISTER_MARGIN - pitch, 0) + np.maximum(pitch - high - REGISTER_MARGIN, 0)

    def motif_bias(self) -> torch.Tensor | None:
        """(streams, vocab) log-odds for the note tokens (sampling.motif_pull): per stream, the
        pull towards the intervals the fed music's motifs took after its top line's last ones
        (sampling/motif.py), for notes inside the register heard (a scale's sequence would walk
        on down the keyboard); None when off or nothing is predicted for any stream."""
        if not self.motifs.pull:
            return None
        rows = [self.motifs.bias(s.tops, s.step_top, self.vocab.top) for s in self.states]
        if all(r is None for r in rows):
            return None
        zeros = np.zeros(len(self.vocab.tokens), dtype=np.float32)
        bias = np.stack([zeros if r is None else r for r in rows])
        beyond = self._beyond_register(self.vocab.top)
        if beyond is not None:  # a motif's sequence may not walk her out of the player's register
            bias[:, beyond > 0] = 0.0
        return torch.from_numpy(bias) if bias.any() else None

    def step(self, active: np.ndarray | None = None, greedy: bool = False) -> list[str]:
        """Choose a token for every stream, feed it back, and return it."""
        ids = self.choose(greedy)
        self.advance(ids, active)
        return self.vocab.text(ids)

    def mean_logprob(self) -> np.ndarray:
        """Per stream: the mean log-probability of its sampled tokens (a length-normalised score)."""
        return self.logprob / np.maximum(self.count, 1)
