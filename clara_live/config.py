"""config.yaml, loaded once into frozen dataclasses: one section per component.

Each component receives only its own section. Unknown sections or keys and values of the
wrong type are refused with a ConfigError that names the key, so a typo in config.yaml
or in `--set section.key=value` never passes silently.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import yaml

from clara_live.beat.limits import MAX_BPM, MIN_BPM
from clara_live.errors import ClaraError

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent.parent / "config.yaml"
MAX_SEED = 2**64 - 1  # the largest seed torch's generator takes
MAX_SIZE = 16384  # model.emb_size and model.hidden_size (and a judge's head), at most
MAX_LAYERS = 16  # model.num_layers, at most


class ConfigError(ClaraError):
    """A config file or override that cannot be used."""


@dataclass(frozen=True)
class CodecConfig:
    """How notes become tokens (notewise or chordwise) and back."""

    encoding: str = "notewise"  # notewise | chordwise
    sample_freq: int = 12  # steps per quarter note
    max_wait: int = 0  # longest single wait token in steps; 0 means 2 * sample_freq + 1
    chamber: bool = False  # instrument families p (piano-like) and v (violin-like)
    sustain_pedal: bool = True  # CC64 extends released notes while the pedal is down
    low_pitch: int = 33  # MIDI pitch of token index 0
    num_pitches: int = 62  # token range: low_pitch .. low_pitch + num_pitches - 1
    violin_low: int = 55  # a solo v-family part is folded by octaves to at least this pitch
    rest_window: int = 10  # chordwise: a rest counts the notes struck in this many steps before it
    rest_cap: int = 40  # chordwise: counts above this share the token for the cap
    chord_hold: float = 2.0  # chordwise decoding: the longest a note is held, in quarter notes
    bpm: float = 120.0  # tempo written to decoded MIDI files
    velocity: int = 80  # velocity written to decoded MIDI files

    # the numeric settings' ranges (_check_ranges); the upper ends keep the vocabulary (waits, rests)
    # and a MIDI file's tempo (at most 0xFFFFFF microseconds a quarter: 4 bpm) within reach
    RANGES: ClassVar[dict[str, str]] = {
        "sample_freq": "[1, 480]", "max_wait": "[0, 10000] (0: automatic)", "low_pitch": "[0, 127]",
        "num_pitches": "[12, 128]", "violin_low": "[0, 127]", "rest_window": "[1, 10000]", "rest_cap": "[0, 10000]",
        "chord_hold": "(0, 1000]", "bpm": "[4, 1000]", "velocity": "[1, 127]",
    }

    def __post_init__(self) -> None:
        _check(self.encoding in ("notewise", "chordwise"), "codec.encoding",
               f"must be notewise or chordwise, not {self.encoding!r}")
        _check_ranges(self, "codec")
        _check(self.low_pitch + self.num_pitches <= 128, "codec.low_pitch, codec.num_pitches",
               f"{self.low_pitch} + {self.num_pitches} pitches pass MIDI 127")
        _check(self.low_pitch <= self.violin_low <= self.high_pitch - 11, "codec.violin_low",
               f"{self.violin_low} must leave an octave inside the token range (at most {self.high_pitch - 11})"
               if self.violin_low > self.low_pitch else f"{self.violin_low} is below low_pitch {self.low_pitch}")

    @property
    def high_pitch(self) -> int:
        """Highest MIDI pitch the tokens can name."""
        return self.low_pitch + self.num_pitches - 1

    @property
    def wait_limit(self) -> int:
        """Longest single wait token, in steps (longer waits are chained)."""
        return self.max_wait or 2 * self.sample_freq + 1


@dataclass(frozen=True)
class CorpusConfig:
    """How a folder of music becomes train/valid/test token files."""

    valid_fraction: float = 0.1
    test_fraction: float = 0.1
    transpose_low: int = -6  # augmentation of the train split, in semitones
    transpose_high: int = 5
    workers: int = 0  # parallel processes; 0 means one per CPU core
    chord_min_count: int = 1  # chordwise: a chord seen fewer times in train is <unk>
    cache: str = "auto"  # encoded files kept by content: "auto" (~/.cache/clara-live/corpus), a folder, "" (none)
    weights: str = ""  # training: pieces of a corpus drawn this often an epoch, "asap=2,pop909=0.5" (default 1)
    performance_grid: str = "beats"  # annotated performances: "beats" (12 steps an annotated beat) or "seconds"
    style: bool = False  # each piece's line opens with its style token (corpus/styles.py): composer, else corpus
    style_min_works: int = 5  # a composer is a style of their own with at least this many works in train

    RANGES: ClassVar[dict[str, str]] = {
        "valid_fraction": "[0, 1)", "test_fraction": "[0, 1)", "transpose_low": "[-12, 0]", "transpose_high": "[0, 12]",
        "workers": "[0, 1024] (0: one per core)", "chord_min_count": "[1, 1e9]", "style_min_works": "[1, 1e9]",
    }
    MAX_WEIGHT: ClassVar[float] = 100.0  # a piece drawn more often than this an epoch is a typo

    def __post_init__(self) -> None:
        _check_ranges(self, "corpus")
        _check(self.valid_fraction + self.test_fraction < 1, "corpus.test_fraction",
               "valid_fraction + test_fraction must leave a train split")
        self.weight_of("")  # refuses a malformed corpus.weights now, not at training time
        _check(self.performance_grid in ("beats", "seconds"), "corpus.performance_grid",
               f"must be beats or seconds, not {self.performance_grid!r}")

    def weight_of(self, corpus: str) -> float:
        """How often a piece of this corpus is drawn an epoch (corpus.weights; 1 unless named)."""
        weights = {}
        for item in filter(None, (part.strip() for part in self.weights.split(","))):
            name, _, value = item.partition("=")
            try:
                weight = float(value)
            except ValueError:
                weight = math.nan
            _check(bool(name.strip()) and 0 <= weight <= self.MAX_WEIGHT, "corpus.weights",
                   f"{item!r} is not corpus=weight with a weight in [0, {self.MAX_WEIGHT:g}]")
            weights[name.strip()] = weight
        return weights.get(corpus, 1.0)


@dataclass(frozen=True)
class ModelConfig:
    """AWD-LSTM sizes and regularisation (names follow Merity et al. 2017)."""

    emb_size: int = 256  # also the last layer's size when the decoder is tied to the embedding
    hidden_size: int = 512
    num_layers: int = 3
    dropout_emb: float = 0.1  # dropoute: whole embedding rows
    dropout_input: float = 0.3  # dropouti: locked dropout on the embeddings
    dropout_hidden: float = 0.25  # dropouth: locked dropout between layers
    dropout_output: float = 0.3  # dropout: locked dropout on the last layer's output
    weight_drop: float = 0.4  # wdrop: DropConnect on hidden-to-hidden weights
    tie_weights: bool = True
    touch: bool = True  # each strike's velocity and timing, learned (model/touch.py); a model saved before has none
    touch_format: int = 1  # touch's head: 1 bins; 2 and 3 also exact values (SAME, ON; 3 REPEAT; model/touch.py)

    # the upper ends: an LSTM of 16 layers of 16,384 is already ~550 GB to train; beyond them a size is
    # a typo (and torch's storage size overflows before memory runs out: 10**9 did, even on the meta device)
    RANGES: ClassVar[dict[str, str]] = {
        "emb_size": f"[1, {MAX_SIZE}]", "hidden_size": f"[1, {MAX_SIZE}]", "num_layers": f"[1, {MAX_LAYERS}]",
        "dropout_emb": "[0, 1)", "dropout_input": "[0, 1)", "dropout_hidden": "[0, 1)", "dropout_output": "[0, 1)",
        "weight_drop": "[0, 1)", "touch_format": "[1, 3]",
    }

    def __post_init__(self) -> None:
        _check_ranges(self, "model")


@dataclass(frozen=True)
class TrainingConfig:
    """The training loop: batches, schedule, regularisation weights, checkpoints."""

    batch_size: int = 32  # global: split across ranks under torchrun
    bptt: int = 100  # mean sequence length; each batch draws its own around it
    epochs: int = 8
    lr: float = 0.003  # peak of the one-cycle schedule
    weight_decay: float = 0.01  # AdamW
    warmup_fraction: float = 0.1  # one-cycle: share of steps spent rising to lr
    clip: float = 0.25  # gradient norm
    alpha: float = 2.0  # activation regularisation (AR)
    beta: float = 1.0  # temporal activation regularisation (TAR)
    checkpoint_every: int = 200  # steps
    log_every: int = 50  # steps between train-loss lines in metrics.jsonl
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    precision: str = "auto"  # auto (bf16 where the GPU or CPU has native bf16, else fp32) | fp32 | bf16
    # oneDNN for fp32 on a CPU: auto (time both at the start of a fresh run, keep the faster) | on | off.
    # Typed object because YAML reads a bare on/off as a boolean: __post_init__ makes it "on"/"off"
    # and refuses anything else, so the value is always one of the three strings
    onednn: object = "auto"
    max_steps: int = 0  # stop after this many steps in all (0: run every epoch)
    eval_tokens: int = 0  # cap on validation tokens per evaluation (0: the whole split)
    touch_weight: float = 1.0  # the touch heads' loss (model.touch), per token, beside the next token's

    # a negative clip flips the gradient; a negative alpha, beta or weight decay rewards what it should
    # punish; the seed times 1000 (plus the rank) must stay a torch seed
    RANGES: ClassVar[dict[str, str]] = {
        "batch_size": "[1, 65536]", "bptt": "[2, 10000]", "epochs": "[1, 100000]", "lr": "(0, 10]",
        "weight_decay": "[0, 1]", "warmup_fraction": "(0, 1)", "clip": "(0, 1000]", "alpha": "[0, 1000]",
        "beta": "[0, 1000]", "checkpoint_every": "[1, 1e9]", "log_every": "[1, 1e9]", "seed": "[0, 4294967295]",
        "max_steps": "[0, 1e12] (0: every epoch)", "eval_tokens": "[0, 1e12] (0: the whole split)",
        "touch_weight": "[0, 100]",
    }

    def __post_init__(self) -> None:
        if isinstance(self.onednn, bool):
            object.__setattr__(self, "onednn", "on" if self.onednn else "off")
        _check(self.onednn in ("auto", "on", "off"), "training.onednn", f"must be auto, on or off, not {self.onednn!r}")
        _check_ranges(self, "training")
        _check(self.device in ("auto", "cpu", "cuda"), "training.device", "must be auto, cpu or cuda")
        _check(self.precision in ("auto", "fp32", "bf16"), "training.precision",
               f"must be auto, fp32 or bf16, not {self.precision!r}")


@dataclass(frozen=True)
class SamplingConfig:
    """How the next token is chosen, and the rules that keep sampled music playable."""

    random_freq: float = 1.0  # Clara's truncated sampling: the top token, or with this probability a sample
    top_k: int = 0  # ... among the k likeliest (Clara's top n); 0 = no limit
    top_p: float = 1.0  # ... within the smallest set holding this much probability (nucleus); 1 = no limit
    temperature: float = 0.9  # divides the logits before a sample is drawn
    # what kind of event comes next (a note struck, a note released, time passing: the texture's density,
    # polyphony and note lengths) is drawn at this temperature, which note or wait within a kind at
    # `temperature`; 0 = `temperature` for both (one temperature, as before)
    event_temperature: float = 1.1
    min_p: float = 0.0  # ... keeping only tokens at least this fraction as likely as the likeliest; 0 = no limit
    seed: int = -1  # -1 = a fresh seed each run; otherwise the same seed gives the same music
    polyphony: int = 10  # most notes sounding at once (notewise) or struck at once (chordwise)
    polyphony_v: int = 1  # ... of the v family (chamber models): a voice sings one note; 2 lets a violin double-stop
    max_note_quarters: float = 8.0  # notewise: a note held this long is closed
    max_repeats: int = 1  # loop guard: an onset set struck at most this many times in a row (or as often as
    # the music heard so far did); 0 = no guard. 1: she strikes the same note or chord again at once only where
    # the player did (real music's median run in 12 s is 1; at 3 hers was 2: BENCHMARKS.md, answer quality)
    prompt_tokens: int = 1024  # most tokens of a prompt fed to the model (its last whole bars)
    phrase_bars: int = 2  # form aab: length of the phrase A when no --tokens/--seconds sets it
    beats_per_bar: int = 4
    # the continuous cache (sampling/memory.py): p = (1 - lambda) p_model + lambda p_cache, where
    # p_cache weighs the tokens that followed the last cache_size moments by exp(theta * cosine)
    cache: bool = False
    cache_size: int = 2000  # (output, next token) pairs remembered per stream
    cache_theta: float = 15.0  # sharpness: how closely a past moment must resemble this one
    cache_lambda: float = 0.4  # the cache's share of the prediction
    # the register of what was heard (sampler.register_bias): a note more than a fifth outside the middle 80 %
    # of the last notes fed (the player's, the prompt's) is this much less likely per octave (log odds); 0 = off
    register_pull: float = 0.0
    # the key of what was heard (sampler.key_bias): each note-on's log odds move by key_pull x the log of how much
    # more or less often than an even share its pitch class came in the last notes fed; 0 = off. 0.25: answers
    # in the prompt's key as often as real music is, as near real music or nearer (BENCHMARKS.md, answer quality)
    key_pull: float = 0.25
    # the player's motifs (sampling/motif.py): a note that would continue the top line by an interval the fed
    # music's motifs took after the same intervals gains up to this much (log odds); 0 = off. 4.5: answers as
    # near real music as without it, reusing the player's motifs (BENCHMARKS.md, answer quality)
    motif_pull: float = 4.5
    # touch (model/touch.py): "learned" plays each note with the velocity and timing the model gives it (a
    # model that learned touch), "flat" at one velocity on the grid, the level of the player's last notes
    touch: str = "learned"
    # learned touch's timing (each onset's offset from its step) is drawn at this temperature: under 1 she
    # keeps to the timing heard (an offset repeated, the step itself) rather than wandering from it
    timing_temperature: float = 0.25
    # learned touch keeps to the player's level (the mean of their last notes, where they play with dynamics):
    # each strike's expected velocity is moved this share of the way to it, its spread kept; 0 = off, 1 = all.
    # 0.1: her level 4.7 from the prompt's (real music 6.1; 8.7 without), her spread as real music's
    # (BENCHMARKS.md, touch)
    level_pull: float = 0.1
    # the style a piece is played in (a model trained with corpus.style: "chopin", "pop", "lied"...): its
    # token opens the music she hears; "": "piano" (the piano corpora's); "none" or a style the model does
    # not know: no style token
    style: str = ""

    # a temperature under 0.01 or a cache_theta over 1000 overflows float32 logits into NaN
    RANGES: ClassVar[dict[str, str]] = {
        "random_freq": "[0, 1]", "top_k": "[0, 1000000] (0: no limit)", "top_p": "(0, 1]", "temperature": "[0.01, 100]",
        "event_temperature": "[0, 100] (0: one temperature)", "timing_temperature": "[0.01, 100]",
        "level_pull": "[0, 1] (0: off)",
        "min_p": "[0, 1) (0: no limit)", "seed": f"[-1, {MAX_SEED}] (-1: fresh each run)", "polyphony": "[1, 128]",
        "polyphony_v": "[1, 4] (a bowed instrument's strings)",
        "max_note_quarters": "(0, 1000]", "max_repeats": "[0, 1000] (0: no guard)", "prompt_tokens": "[1, 100000]",
        "phrase_bars": "[1, 1000]", "beats_per_bar": "[1, 32]", "cache_size": "[1, 100000]",
        "cache_theta": "[0, 1000]", "cache_lambda": "[0, 1)", "register_pull": "[0, 20] (0: off)",
        "motif_pull": "[0, 20] (0: off)", "key_pull": "[0, 5] (0: off)",
    }

    def __post_init__(self) -> None:
        _check_ranges(self, "sampling")
        _check(self.event_temperature == 0.0 or 0.01 <= self.event_temperature <= 100.0, "sampling.event_temperature",
               f"must be 0 (off) or in [0.01, 100], not {self.event_temperature}")
        _check(self.touch in ("learned", "flat"), "sampling.touch", f"must be learned or flat, not {self.touch!r}")
        _check(self.style == "" or (self.style.isascii() and self.style.isalpha() and self.style.islower()),
               "sampling.style", f"must be lower-case letters (chopin, pop) or empty, not {self.style!r}")


# Named ways of choosing the next token (`--preset NAME`); each sets these sampling keys, and any
# flag or --set given with it still wins. "default" is SamplingConfig's own choice (what
# benchmarks/answer_quality.py measured closest to real music); "clara" is Clara's original rule:
# the likeliest token, or half the time a draw from the top 5.
_CHOICE = ("random_freq", "top_k", "top_p", "min_p", "temperature", "event_temperature")
SAMPLING_PRESETS: dict[str, dict[str, float | int]] = {
    "default": {f.name: f.default for f in dataclasses.fields(SamplingConfig) if f.name in _CHOICE},
    "clara": {"random_freq": 0.5, "top_k": 5, "top_p": 1.0, "min_p": 0.0, "temperature": 1.0, "event_temperature": 0.0},
}


@dataclass(frozen=True)
class InferenceConfig:
    """Where and how generation runs."""

    device: str = "auto"  # auto (CUDA when present) | cpu | cuda
    precision: str = "auto"  # auto (int8 on CPU, fp32 on CUDA) | fp32 | int8 (CPU only)
    threads: int = 1  # CPU threads for the model; 0 = torch's default

    RANGES: ClassVar[dict[str, str]] = {"threads": "[0, 1024] (0: torch's default)"}

    def __post_init__(self) -> None:
        _check(self.device in ("auto", "cpu", "cuda"), "inference.device", "must be auto, cpu or cuda")
        _check(self.precision in ("auto", "fp32", "int8"), "inference.precision", "must be auto, fp32 or int8")
        _check_ranges(self, "inference")


@dataclass(frozen=True)
class LiveConfig:
    """`clara live`: turn-taking, tempo, controls and outputs of a live session."""

    mode: str = "call-response"  # call-response | suggest | accompany
    midi_api: str = "auto"  # auto | alsa | jack | coremidi | winmm
    client_name: str = "clara"  # the MIDI client's name (ports show as "clara:Clara In")
    bpm: float = 100.0  # tempo until a tap or a MIDI clock sets another (the first guess of tempo_from_playing)
    tempo_from_playing: bool = True  # hear each phrase's tempo and beat, re-quantise it and answer at it
    tempo_method: str = "chosen"  # chosen (both below, ranked: beat/choice.py) | learned | classic
    silence_beats: float = 1.0  # a phrase ends after this much silence with no key and no sustain pedal held
    trigger_cc: int = 67  # pressing this controller (>= 64) ends the phrase at once; -1 = none (67: soft pedal)
    suggest_bars: int = 2  # suggest: how long Clara continues
    max_answer_bars: int = 4  # call-response: the longest answer
    accompany_lookahead_beats: float = 1.0  # accompany: how far ahead Clara plans her part (again at each note)
    accompany_above: bool = False  # accompany: she plays over the player's melody instead of under it
    # accompany: her notes end after this many beats at most (sampling.max_note_quarters, if shorter, still
    # holds): a note held on under the melody's moving harmony clashes with it (BENCHMARKS.md, accompaniment)
    accompany_max_note_beats: float = 2.0
    # accompany: the chance she waits on at a step where the model expected the melody, rather than act there
    # (0: never; 0.9 brought her density to the real part's but her pitch classes further from the melody's)
    accompany_wait_on: float = 0.0
    channel: int = 1  # Clara's MIDI channel, 1-16
    # duet roles: the player's part and Clara's, each a family of a chamber model (codec.chamber): p (piano) or
    # v (violin or voice); a model without families has only p. Each part sounds with its General MIDI program
    part: str = "p"  # the player's: their notes are fed to the model in this family
    clara_part: str = "p"  # Clara's: she strikes only this family's notes
    program_p: int = 0  # acoustic grand piano
    program_v: int = 40  # violin (52 choir aahs or 53 voice oohs for a voice; 41 viola, 42 cello, 71 clarinet)
    player_channel: int = 0  # the player's notes echoed (passthrough) on this channel, 1-16; 0: as they play
    # them while the two parts are one family, else the first channel free of Clara's and the metronome's
    velocity_follow: bool = True  # Clara plays at the player's recent average velocity
    velocity: int = 80  # ... or at this one (also before the player has played)
    velocity_window: int = 16  # notes averaged
    tap_cc: int = -1  # tap tempo: presses of this controller; -1 = none
    tap_note: int = -1  # ... or of this key (it is not played); -1 = none
    follow_clock: bool = True  # follow incoming MIDI clock (24 ppqn, start/stop)
    clock_out: bool = False  # send MIDI clock (and start/stop) at the session tempo
    link: bool = False  # join an Ableton Link session: with other peers its tempo and beat lead (extra: [link])
    metronome: bool = False
    metronome_channel: int = 10
    metronome_note: int = 76  # the bar's first beat (GM hi wood block); the others a semitone up (low block)
    passthrough: bool = False  # echo the player's notes to the output (on their own channel)
    cc_temperature: int = 21  # controllers that set sampling live; -1 = none
    cc_top_k: int = 22
    cc_random_freq: int = 23
    lookahead: float = 0.5  # seconds Clara generates ahead of what she plays
    candidates: int = 1  # > 1: sample this many answers at once and play the critic's pick (fewer if time is short)
    critic: str = "trained_models/critic"  # the critic for candidates > 1 (relative to the repository)
    sessions_dir: str = "clara-sessions"  # every session is saved here as MIDI ("" = not saved)
    soundfont: str = "/usr/share/sounds/sf2/FluidR3_GM.sf2"  # --synth
    audio_driver: str = ""  # --synth: FluidSynth's audio driver ("": its default; jack under JACK MIDI;
    # none: no sound while playing, the session rendered to WAV beside its MIDI at the end)

    RANGES: ClassVar[dict[str, str]] = {
        "bpm": f"[{MIN_BPM:g}, {MAX_BPM:g}]",  # the tempi the session hears and plays at (beat/limits.py)
        "silence_beats": "(0, 64]", "trigger_cc": "[-1, 127] (-1: none)", "suggest_bars": "[1, 64]",
        "max_answer_bars": "[1, 64]", "accompany_lookahead_beats": "(0, 4]",
        "accompany_max_note_beats": "(0, 64]", "accompany_wait_on": "[0, 1]",
        "channel": "[1, 16]", "program_p": "[0, 127]", "program_v": "[0, 127]",
        "player_channel": "[0, 16] (0: as played, or a free one)", "velocity": "[1, 127]",
        "velocity_window": "[1, 1000]",
        "tap_cc": "[-1, 127] (-1: none)", "tap_note": "[-1, 127] (-1: none)", "metronome_channel": "[1, 16]",
        "metronome_note": "[0, 126] (the other beats are a semitone up)", "cc_temperature": "[-1, 127] (-1: none)",
        "cc_top_k": "[-1, 127] (-1: none)", "cc_random_freq": "[-1, 127] (-1: none)", "lookahead": "(0, 10]",
        # each candidate is a sampler stream and a critic's judgement before the answer is due
        "candidates": "[1, 64]",
    }

    def __post_init__(self) -> None:
        _check(self.mode in ("call-response", "suggest", "accompany"), "live.mode",
               "must be call-response, suggest or accompany")
        _check(self.midi_api in ("auto", "alsa", "jack", "coremidi", "winmm"), "live.midi_api",
               "must be auto, alsa, jack, coremidi or winmm")
        _check_ranges(self, "live")
        _check(self.tempo_method in ("chosen", "learned", "classic"), "live.tempo_method",
               "must be chosen, learned or classic")
        _check(bool(self.client_name.strip()), "live.client_name", "must not be empty")
        for key in ("part", "clara_part"):
            _check(getattr(self, key) in ("p", "v"), f"live.{key}",
                   f"must be p (piano) or v (violin or voice), not {getattr(self, key)!r}")
        _check(self.player_channel != self.channel or self.program(self.part) == self.program(self.clara_part),
               "live.player_channel", f"{self.player_channel} is Clara's channel too (live.channel), but the "
               "two parts sound with two programs: give each its own channel")

    def program(self, part: str) -> int:
        """The General MIDI program (0-127) a part (p or v) sounds with."""
        return self.program_v if part == "v" else self.program_p

    @property
    def player_out(self) -> int | None:
        """The 0-based channel the player's echoed notes go out on (live.player_channel), None for the
        channel they play them on (the parts one family, no channel named)."""
        if self.player_channel:
            return self.player_channel - 1
        if self.part == self.clara_part:
            return None
        taken = {self.channel - 1, self.metronome_channel - 1, 9}  # 9: General MIDI's drums
        return next(c for c in range(16) if c not in taken)


@dataclass(frozen=True)
class Config:
    codec: CodecConfig = field(default_factory=CodecConfig)
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    live: LiveConfig = field(default_factory=LiveConfig)


def _check(ok: bool, key: str, reason: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {reason}")


_INTERVAL = re.compile(r"([\[(])(\S+), (\S+)([\])])(?: \((.+)\))?")


def _number(text: str) -> int | float:
    return int(text) if text.lstrip("-").isdigit() else float(text)  # ints exactly: a seed goes to 2**64 - 1


def _in_range(value: float, interval: str) -> bool:
    """Whether value lies in an interval written `[low, high]` (`(` or `)` for an open end),
    optionally followed by a note in parentheses."""
    match = _INTERVAL.fullmatch(interval)
    if match is None:
        raise ValueError(f"not an interval: {interval!r}")
    opening, low, high, closing, _ = match.groups()
    low_ok = value > _number(low) if opening == "(" else value >= _number(low)
    high_ok = value < _number(high) if closing == ")" else value <= _number(high)
    return low_ok and high_ok  # NaN is in no interval


def _check_ranges(settings: object, section: str) -> None:
    """Each numeric setting of a section against its class's RANGES: one line naming
    section.key, the value and the range allowed."""
    for key, interval in type(settings).RANGES.items():  # type: ignore[attr-defined]
        value = getattr(settings, key)
        if not _in_range(value, interval):
            raise ConfigError(f"{section}.{key}: {value!r} is outside {interval}")


def _coerce(key: str, value: object, annotation: object) -> object:
    """Return value as the field's type, or refuse it naming the key."""
    kind = {"int": int, "float": float, "str": str, "bool": bool}.get(str(annotation), annotation)
    if kind is float and isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = float(value.strip())  # YAML 1.1 reads 1e-3 (an exponent, no dot) as a string
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value) if abs(value) < 2**1023 else math.inf  # float() overflows past that
    if kind is float and isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key}: expected a finite number, got {value!r}")  # YAML's .inf and .nan
    if kind is int and isinstance(value, bool):
        raise ConfigError(f"{key}: expected int, got bool {value!r}")
    if not isinstance(value, kind):  # type: ignore[arg-type]
        raise ConfigError(f"{key}: expected {kind.__name__}, got {type(value).__name__} {value!r}")
    return value


def _build_section(name: str, cls: type, values: object) -> object:
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"{name}: expected a mapping of keys, got {type(values).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in values.items():
        if key not in fields:
            raise ConfigError(f"{name}.{key}: unknown key (known: {', '.join(fields)})")
        kwargs[key] = _coerce(f"{name}.{key}", value, hints[key])
    return cls(**kwargs)


def from_dict(data: object, source: str = "config") -> Config:
    """Build a Config from plain data (as read from YAML); missing keys take defaults."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of sections, got {type(data).__name__}")
    sections = {f.name: f for f in dataclasses.fields(Config)}
    hints = typing.get_type_hints(Config)
    kwargs = {}
    for name, values in data.items():
        if name not in sections:
            raise ConfigError(f"{name}: unknown section (known: {', '.join(sections)})")
        kwargs[name] = _build_section(name, hints[name], values)
    return Config(**kwargs)


def parse_override(text: str) -> tuple[str, str, object]:
    """Split `section.key=value`; the value is read as YAML (so 4, 0.5, true, notewise)."""
    path, sep, raw = text.partition("=")
    section, dot, key = path.strip().partition(".")
    if not sep or not dot or not section or not key:
        raise ConfigError(f"--set {text!r}: expected section.key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return section, key, value


class _DuplicateKey(yaml.YAMLError):
    """A key given twice in one mapping of a YAML file."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """safe_load's loader (the same types, no Python objects), but a key given twice in one
    mapping is refused: plain YAML keeps the last silently, so a setting edited in one place
    would be undone by a forgotten copy further down."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[object, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor` may be overridden, as YAML means
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: SafeLoader's own construct_mapping refuses it
                continue
            if first is not None:
                raise _DuplicateKey(f"line {line}: key {key!r} given twice (first on line {first})")
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def load_config(path: str | Path | None = None, overrides: typing.Iterable[str] = ()) -> Config:
    """Read config.yaml (the repository's, unless path is given) and apply --set overrides."""
    path = Path(path) if path is not None else DEFAULT_CONFIG_PATH
    data: dict = {}
    if path.exists():
        try:
            data = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader) or {}
        except OSError as exc:  # a folder, or a file we may not read
            reason = exc.strerror or exc.__class__.__name__
            raise ConfigError(f"{path}: cannot read the config file ({reason})") from None
        except _DuplicateKey as exc:
            raise ConfigError(f"{path}: {exc}") from None
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: not valid YAML ({exc.__class__.__name__})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping of sections")
    elif path != DEFAULT_CONFIG_PATH:
        raise ConfigError(f"{path}: no such config file")
    data = {name: dict(values or {}) if isinstance(values, dict) else values
            for name, values in data.items()}
    for text in overrides:
        section, key, value = parse_override(text)
        if data.get(section) is None:  # absent, or a heading with only comments under it
            data[section] = {}
        if not isinstance(data[section], dict):
            raise ConfigError(f"{section}: expected a mapping of keys")
        data[section][key] = value
    return from_dict(data, str(path))


def replace(config: Config, **sections: object) -> Config:
    """A copy of config with whole sections swapped (sections stay frozen)."""
    return dataclasses.replace(config, **sections)
