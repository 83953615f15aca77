"""Offline continuation: a piece in progress in, the piece with Clara's continuation out.

The prompt is read with the model's own codec settings; when it is longer than the model
needs, its last whole bars are used (sampling.prompt_tokens). Clara's notes start where
the prompt's last note ends, at the prompt's tempo and the player's average velocity.

With a chamber model (families `p` and `v`) a voice-and-piano or violin-and-piano prompt is read
in both families (`chamber_parts`: a part's General MIDI program, or its track's name) and
continued in both, or in those `Request.parts` names; the file written has each family on a track
and channel of its own with its program (music/midi_io.steps_to_midi: piano 0, violin 40, cello 42),
the `v` tracks at the prompt's own `v` program where it has one (`v_program`: a voice at 52 or 53
is continued as a voice).
"""

from __future__ import annotations

import re
from typing import NamedTuple

import mido
import numpy as np

from clara_live.codec import make_codec, to_steps
from clara_live.codec.notewise import Touch
from clara_live.codec.tokens import silence
from clara_live.config import SamplingConfig
from clara_live.errors import InputError
from clara_live.model.store import LoadedModel
from clara_live.music.instruments import chamber_parts, family_of
from clara_live.music.midi_io import steps_to_midi
from clara_live.music.notes import VIOLIN, Piece, StepNote
from clara_live.sampling.sampler import MIN_VELOCITY, PLAYED_VELOCITIES, Sampler
from clara_live.sampling.search import Scorer, aab, beam_search, best_of, generate, model_score

VELOCITY_NOTES = 32  # Clara plays at the mean velocity of the prompt's last this-many notes (flat touch)
# a part named for a singer sounds as a voice (VOICE_OOHS) unless its program is already a voice's (choir aahs,
# voice oohs, synth voice): OpenScore's Lieder, as MuseScore wrote them, give the voice an oboe's program (68)
VOICE_NAME = re.compile(r"\b(voice|vocals?|vox|singer|singing|gesang|singstimme|stimme|soprano|mezzo|alto|contralto|"
                        r"tenor|baritone)", re.IGNORECASE)
VOICE_PROGRAMS = (52, 53, 54)
VOICE_OOHS = 53

V_TRACKS = ("violin", "cello")  # the names steps_to_midi gives a `v` part's tracks


class Request(NamedTuple):
    max_tokens: int | None = None
    seconds: float | None = None
    beam: int = 1
    candidates: int = 1
    form: str | None = None  # None or "aab"
    scorer: Scorer | None = None  # how best-of-K ranks its candidates (None: the model's own likelihood)
    part: str | None = None  # the one family she continues (`--clara-part`: p or v); None: the prompt's (prompt_part)


class Continuation(NamedTuple):
    prompt: list[StepNote]  # the whole prompt on the grid
    continuation: list[StepNote]  # Clara's notes, timed after the prompt
    tokens: list[str]  # Clara's tokens
    context_tokens: int  # how many prompt tokens the model read
    bpm: float
    seed: int
    interrupted: bool = False  # Ctrl-C ended the sampling early: the continuation is what was made by then
    v_program: int | None = None  # the prompt's v part's General MIDI program (v_program); None: violin 40, cello 42


def prompt_context(notes: list[StepNote], codec, max_tokens: int, bar_steps: int) -> tuple[list[str], int]:
    """The tokens of the prompt's last whole bars that fit in max_tokens, and the step they start at."""
    tokens = codec.encode(notes)
    if len(tokens) <= max_tokens or not notes:
        return tokens, 0
    last_bar = max(n.end for n in notes) // bar_steps
    low, high = 1, last_bar + 1  # find the earliest bar whose tail fits: fewer bars, fewer tokens
    while low < high:
        middle = (low + high) // 2
        if len(_tail_tokens(notes, codec, middle * bar_steps)) <= max_tokens:
            high = middle
        else:
            low = middle + 1
    cut = low * bar_steps
    tail = _tail_tokens(notes, codec, cut)
    if len(tail) > max_tokens:  # the last bar alone is over budget: keep its end (the grammar
        tail = tail[-max_tokens:]  # state ignores an off whose on was cut away)
    return tail, cut


def _tail_tokens(notes: list[StepNote], codec, cut: int) -> list[str]:
    """Tokens of the notes that start at or after `cut`, shifted to start there."""
    return codec.encode([n._replace(start=n.start - cut, end=n.end - cut) for n in notes if n.start >= cut])


def v_program(piece: Piece) -> int | None:
    """The General MIDI program the prompt's `v` part was read with, so her `v` part sounds as the
    prompt's does (a voice at 52 or 53 goes on as a voice, not a violin); a part named for a singer
    (VOICE_NAME) as a voice, VOICE_OOHS, whatever else its file gave it. None where no `v` part has a
    `v` program (a part `v` by its track's name alone, a file with no programs) or the `v` parts have
    several (a violin and a cello: written as violin 40 and cello 42 by pitch, as before)."""
    parts = {n.part for n in piece.notes if n.family == VIOLIN}
    programs = set()
    for p in parts:
        program = piece.programs[p] if p < len(piece.programs) else -1
        name = piece.parts[p] if p < len(piece.parts) else ""
        programs.add(VOICE_OOHS if VOICE_NAME.search(name) and program not in VOICE_PROGRAMS else program)
    found = {p for p in programs if 0 <= p <= 127 and family_of(p) == VIOLIN}
    return found.pop() if len(found) == 1 else None


def prompt_part(notes: list[StepNote]) -> str | None:
    """The one family a prompt is written in, which she keeps to (a piano piece is continued on the piano:
    left free, the joint model struck a violin's or voice's note in 34 of 71 answers to held-out piano
    prompts); None for a prompt in both families, or none."""
    families = {n.family for n in notes}
    return families.pop() if len(families) == 1 else None


def continue_piece(loaded: LoadedModel, sampler: Sampler, piece: Piece | None, request: Request,
                   sampling: SamplingConfig, progress: bool = False) -> Continuation:
    """Feed the prompt (or a moment of silence) and generate Clara's continuation.

    With a chamber model the prompt is read in both families (`chamber_parts`) and she continues in the
    families it has (a duet in both, a piano piece on the piano: `prompt_part`, the other family's strikes
    masked as the grammar masks, `Sampler.absent`; from silence in both), or only in `request.part`
    (ValueError for a family the model lacks): the other family's strikes are forbidden her
    (Sampler.forbid), their probability going to the waits.
    Ctrl-C while plain sampling (no beam, candidates or form) ends it early: the continuation is what was
    made, `interrupted` set; during a search, which has nothing whole to give yet, it propagates."""
    codec_config = loaded.codec
    codec = make_codec(codec_config)
    sf = codec_config.sample_freq
    bar_steps = sampling.beats_per_bar * sf
    if piece is not None and codec_config.chamber:
        piece = chamber_parts(piece)
    notes = list(to_steps(piece, codec_config)) if piece is not None else []
    sampler.forbid = sampler.vocab.strikes_outside(request.part) if request.part is not None else None
    part = prompt_part(notes) if request.part is None and codec_config.chamber else None
    sampler.absent = sampler.vocab.strikes_outside(part) if part is not None else None
    bpm = piece.bpm if piece is not None else codec_config.bpm
    if piece is not None and not notes:
        raise InputError(f"{piece.source}: the prompt has no notes in the model's range")
    context, cut = prompt_context(notes, codec, sampling.prompt_tokens, bar_steps) if notes else ([], 0)
    if sampler.vocab.unknown is not None:  # chordwise: a chord the model never saw is <unk>
        context = sampler.vocab.text(sampler.vocab.ids(context, "the prompt", unknown=True))
    sampler.reset()
    sampler.open_piece()
    context_touch = _context_touch(context, notes, cut, codec) if context and sampler.learned_touch else []
    if context:
        sampler.feed(context, *_fed_touch(context, context_touch))
        context_steps = sampler.states[0].now  # the steps the context spans, as the grammar counted them
    else:  # from scratch: a moment of silence, as between two pieces of the corpus
        sampler.feed([_silence(codec_config)])
    interrupted = False
    steps = round(request.seconds * bpm / 60 * sf) if request.seconds else None
    max_tokens = request.max_tokens
    if not steps and not max_tokens:
        steps = 8 * bar_steps
    if request.form == "aab":  # three statements of a phrase in the time asked for, whole bars
        bars = max(1, round(steps / 3 / bar_steps)) if request.seconds else sampling.phrase_bars
        tokens = aab(sampler, bars * bar_steps, progress)
    elif request.beam > 1:
        tokens, _ = beam_search(sampler, request.beam, max_tokens, steps, progress)
    elif request.candidates > 1:
        tokens, _ = best_of(sampler, request.candidates, max_tokens, steps, scorer=request.scorer or model_score,
                            progress=progress)
    else:
        tokens, interrupted = _generate_keeping(sampler, max_tokens, steps, progress)
    velocity = _velocity(notes, codec_config.velocity)
    touch = {"touch": context_touch + list(sampler.made[0])} if sampler.learned_touch else {}
    if context:  # decoded together, so notes the continuation closes keep their place
        decoded = codec.decode(context + tokens, velocity=velocity, **touch)
        clara = [n._replace(start=n.start + cut, end=n.end + cut) for n in decoded if n.start >= context_steps]
    else:
        clara = codec.decode(tokens, velocity=velocity, **touch)
    program = v_program(piece) if piece is not None and codec_config.chamber else None
    return Continuation(notes, clara, tokens, len(context), bpm, sampler.seed, interrupted, program)


class _Keeping:
    """A sampler as generate() drives it, keeping each token stream 0 is advanced by, so what was
    made survives a Ctrl-C that stops generate() before it returns (its own list goes with it)."""

    def __init__(self, sampler: Sampler) -> None:
        self.sampler, self.ids = sampler, []

    def __getattr__(self, name: str):
        return getattr(self.sampler, name)

    def advance(self, ids: np.ndarray, active: np.ndarray | None = None, score: bool = True) -> None:
        self.sampler.advance(ids, active, score)
        if active is None or active[0]:
            self.ids.append(int(ids[0]))


def _generate_keeping(sampler: Sampler, max_tokens: int | None, steps: int | None,
                      progress: bool) -> tuple[list[str], bool]:
    """One stream sampled as generate() samples it, and whether Ctrl-C ended it early. Cut short, the
    tokens are those made so far, notes left sounding (the decoder closes them at the end); the
    sampler is then mid-token and not to be used again."""
    keeping = _Keeping(sampler)
    try:
        return generate(keeping, max_tokens, steps, progress=progress)[0], False  # type: ignore[arg-type]
    except KeyboardInterrupt:
        return sampler.vocab.text(keeping.ids), True


def _context_touch(context: list[str], notes: list[StepNote], cut: int, codec) -> list[Touch]:
    """The touch of each note-on of the context (the prompt's tail from step `cut`, perhaps cut
    shorter at its front to fit)."""
    tokens, touch = codec.encode_touch([n._replace(start=n.start - cut, end=n.end - cut) for n in notes
                                        if n.start >= cut])
    dropped = tokens[:len(tokens) - len(context)]
    return touch[sum(t[0] in "pv" for t in dropped):]


def _fed_touch(context: list[str], touch: list[Touch]) -> tuple[list[int], list[float] | None]:
    """Per context token, the velocity and offset the sampler is fed: a note-on's own, 0 for the
    rest (the sampler takes a prompt without dynamics as one of unknown touch)."""
    if not touch:
        return [0] * len(context), None
    velocities, offsets, strikes = [], [], iter(touch)
    for token in context:
        this = next(strikes) if token[0] in "pv" else None
        velocities.append(this.velocity if this is not None else 0)
        offsets.append(this.offset if this is not None else 0.0)
    return velocities, offsets


def _silence(codec_config) -> str:
    return silence(codec_config)


def _velocity(notes: list[StepNote], default: int) -> int:
    """Flat touch's one velocity: the mean of the prompt's last notes, or `default` where they hold
    fewer than PLAYED_VELOCITIES distinct ones (a file or keyboard without dynamics: all 1 would be
    silent, all 127 a shout); never under MIN_VELOCITY."""
    recent = sorted(notes, key=lambda n: n.start)[-VELOCITY_NOTES:]
    if len({n.velocity for n in recent}) < PLAYED_VELOCITIES:
        return default
    return int(np.clip(round(np.mean([n.velocity for n in recent])), MIN_VELOCITY, 127))


def alone(notes: list[StepNote], bar_steps: int) -> list[StepNote]:
    """The continuation on its own: moved back by whole bars to begin in the first (it kept the
    prompt's timeline, so alone it would start after the prompt's length of silence)."""
    if not notes:
        return notes
    shift = min(n.start for n in notes) // bar_steps * bar_steps
    return [n._replace(start=n.start - shift, end=n.end - shift) for n in notes]


def to_midi(result: Continuation, sample_freq: int, violin_low: int, only_continuation: bool,
            bar_steps: int) -> mido.MidiFile:
    """A type-1 MIDI file: the prompt's tracks, then Clara's on channels of her own; or hers
    alone (`only_continuation`), from the first bar (of `bar_steps`) she plays in. The `v` tracks
    (violin, cello) are at the prompt's `v` program where it has one (`result.v_program`)."""
    notes = alone(result.continuation, bar_steps) if only_continuation else result.continuation
    clara = _v_program(steps_to_midi(notes, sample_freq, result.bpm, violin_low), result.v_program)
    if only_continuation or not result.prompt:
        for track in clara.tracks[1:]:
            _label(track, "Clara", 0)
        return clara
    midi = _v_program(steps_to_midi(result.prompt, sample_freq, result.bpm, violin_low), result.v_program)
    used = len(midi.tracks) - 1  # one channel per prompt track
    for track in clara.tracks[1:]:
        _label(track, "Clara", used)
        midi.tracks.append(track)
    return midi


def _v_program(midi: mido.MidiFile, program: int | None) -> mido.MidiFile:
    """The file with its `v` tracks (steps_to_midi's violin and cello) set to `program` (None: as written)."""
    if program is None:
        return midi
    for track in midi.tracks:
        if track.name in V_TRACKS:
            track[:] = [m.copy(program=program) if m.type == "program_change" else m for m in track]
    return midi


def _label(track: mido.MidiTrack, prefix: str, channel_shift: int) -> None:
    for i, msg in enumerate(track):
        if msg.is_meta and msg.type == "track_name":
            track[i] = msg.copy(name=f"{prefix} {msg.name}")
        elif not msg.is_meta and hasattr(msg, "channel") and channel_shift:
            track[i] = msg.copy(channel=msg.channel + channel_shift)
