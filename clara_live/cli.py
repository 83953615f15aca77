"""The `clara` command: `main(argv) -> int`, one sub-command per job.

Every sub-command takes `--config FILE` and `--set section.key=value`. A bad input ends
with one line on stderr naming the file or value and the reason, and exit status 1; a
batch (several inputs) reports each bad item, goes on with the rest, and exits 1 at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from clara_live import __version__
from clara_live.atomic import STDOUT, Terminated, make_folder, output_target
from clara_live.config import SAMPLING_PRESETS, Config, load_config
from clara_live.errors import ClaraError, InputError


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="FILE", help="config file (default: the repository's config.yaml)")
    common.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override one config value; may be repeated")
    return common


def _codec_flags() -> argparse.ArgumentParser:
    flags = argparse.ArgumentParser(add_help=False)
    flags.add_argument("--encoding", choices=["notewise", "chordwise"], help="token encoding (codec.encoding)")
    flags.add_argument("--sample-freq", type=int, metavar="N", help="steps per quarter note (codec.sample_freq)")
    flags.add_argument("--chamber", action="store_true", default=None,
                       help="instrument families p and v (codec.chamber)")
    return flags


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clara", description="Clara Live: play a few notes, Clara suggests what comes next.")
    parser.add_argument("--version", action="version", version=f"clara {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common, codec = _common(), _codec_flags()

    p = commands.add_parser("encode", parents=[common, codec], help="MIDI or score files to tokens")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="MIDI, MusicXML, kern or ABC files, or music21:PATH")
    p.add_argument("-o", "--out", required=True,
                   help="a .txt file (-: standard output) for one input, else a folder of <stem>.txt")
    p.set_defaults(run=_cmd_encode)

    p = commands.add_parser("decode", parents=[common, codec], help="token files to MIDI")
    p.add_argument("inputs", nargs="+", metavar="TOKENS", help="text files of whitespace-separated tokens")
    p.add_argument("-o", "--out", required=True,
                   help="a .mid file (-: standard output) for one input, else a folder of <stem>.mid")
    p.set_defaults(run=_cmd_decode)

    p = commands.add_parser("corpus", parents=[common, codec], help="build a train/valid/test token corpus")
    p.add_argument("sources", nargs="+", metavar="SOURCE",
                   help="a corpus folder (ASAP, Pianolatron, POP909, OpenScore, or MIDI/score files with composer = "
                        "parent folder; a folder of corpora reads each), a file, or music21:NAME")
    p.add_argument("-o", "--out", required=True, help="output folder")
    p.add_argument("--workers", type=int, metavar="N", help="parallel processes (corpus.workers; 0 = one per core)")
    p.set_defaults(run=_cmd_corpus)

    p = commands.add_parser("train", parents=[common], help="train an AWD-LSTM on a corpus folder")
    p.add_argument("--corpus", required=True, metavar="DIR", help="a folder built by `clara corpus`")
    p.add_argument("--out", required=True, metavar="DIR", help="run folder: checkpoint, metrics, model/")
    p.add_argument("--init", metavar="MODEL_DIR", help="fine-tune from this model (a personal model)")
    p.add_argument("--resume", action="store_true", help="continue the checkpoint in --out exactly")
    p.set_defaults(run=_cmd_train)

    p = commands.add_parser("evaluate", parents=[common], help="NLL, perplexity and accuracy of a model on files")
    p.add_argument("--model", required=True, metavar="DIR", help="a model folder")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="MIDI or score files")
    p.set_defaults(run=_cmd_evaluate)

    p = commands.add_parser("continue", parents=[common], help="continue a piece in progress (or start one)")
    p.add_argument("prompt", nargs="?", metavar="PROMPT",
                   help="a MIDI or score file, or music21:PATH; none: Clara starts from silence")
    p.add_argument("-o", "--out", required=True, metavar="OUT.mid",
                   help="the prompt followed by Clara's continuation (-: standard output)")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--tokens", type=_int_up_to(MAX_TOKENS), metavar="N",
                        help=f"continue for N tokens (at most {MAX_TOKENS:,}); Ctrl-C keeps what was made")
    length.add_argument("--seconds", type=_float_up_to(MAX_SECONDS), metavar="S",
                        help=f"continue for S seconds at the prompt's tempo (default: 8 bars; at most "
                             f"{MAX_SECONDS:,.0f})")
    p.add_argument("--model", default=str(DEFAULT_MODEL), metavar="DIR", help="model folder (default: %(default)s)")
    p.add_argument("--temperature", type=float, metavar="T", help="sampling.temperature")
    p.add_argument("--top-k", type=int, metavar="K", help="sampling.top_k (0: no limit)")
    p.add_argument("--top-p", type=float, metavar="P", help="sampling.top_p (1: no limit)")
    p.add_argument("--random-freq", type=float, metavar="F",
                   help="sampling.random_freq: how often a token is sampled rather than the likeliest taken")
    p.add_argument("--seed", type=int, metavar="S", help="sampling.seed: the same seed gives the same music")
    p.add_argument("--preset", choices=sorted(SAMPLING_PRESETS), help="a named sampling rule (clara: Clara's "
                   "original, the likeliest token or half the time one of the top 5); flags still win")
    p.add_argument("--cache", action=argparse.BooleanOptionalAction, default=None,
                   help="sampling.cache: the continuous cache, a memory of the music so far")
    p.add_argument("--touch", choices=("learned", "flat"), help="sampling.touch: learned (each note's velocity "
                   "and timing from the model) or flat (one velocity, on the grid)")
    p.add_argument("--style", metavar="NAME", help="sampling.style: a style the model learned (chopin, pop, lied, "
                   "quartet...); its token opens the music (default piano; none or a style it does not know: no token)")
    search = p.add_mutually_exclusive_group()
    search.add_argument("--beam", type=_int_up_to(MAX_BEAM), default=1, metavar="B",
                        help=f"beam search of width B (at most {MAX_BEAM})")
    search.add_argument("--candidates", type=_int_up_to(MAX_CANDIDATES), default=1, metavar="K",
                        help=f"generate K candidates batched and keep the model's favourite "
                             f"(at most {MAX_CANDIDATES:,})")
    search.add_argument("--form", choices=["aab"], help="aab: a phrase, its repeat, and a departure from its middle")
    p.add_argument("--rank", choices=["model", "critic"], default="model",
                   help="how --candidates picks: the model's likelihood, or the critic's P(human)")
    p.add_argument("--critic", default=str(DEFAULT_CRITIC), metavar="DIR", help="critic for --rank critic")
    p.add_argument("--clara-part", dest="continue_part", choices=["p", "v"],
                   help="a chamber model (families p and v): continue only this family, p piano or v violin or "
                        "voice (default: the prompt's families, both from silence). The prompt's parts: a GM "
                        "program 40-44, 48-95 or 109-111, or a track named for a voice or a bowed or blown "
                        "instrument (voice, soprano, violin, cello, melody...), is v; the rest p")
    p.add_argument("--only-continuation", action="store_true", help="write Clara's notes without the prompt")
    p.add_argument("--wav", metavar="OUT.wav", help="also render through FluidSynth with a General MIDI soundfont")
    p.add_argument("--soundfont", metavar="SF2", help="soundfont for --wav (default: Debian's FluidR3_GM)")
    p.add_argument("--png", metavar="OUT.png", help="also draw a piano roll: the prompt's last bars and all of "
                   "Clara's continuation, in two colours, each note shaded by its velocity")
    p.add_argument("--png-all", action="store_true",
                   help="--png draws the whole piece (squeezed into 4,000 pixels when longer)")
    p.set_defaults(run=_cmd_continue)

    p = commands.add_parser("ports", parents=[common], help="list MIDI inputs and outputs")
    p.add_argument("--midi-api", choices=["auto", "alsa", "jack", "coremidi", "winmm"],
                   help="MIDI system (live.midi_api; auto: ALSA, else JACK on Linux)")
    p.set_defaults(run=_cmd_ports)

    p = commands.add_parser("live", parents=[common], help="play; Clara answers (call-response) or continues (suggest)")
    p.add_argument("--model", default=str(DEFAULT_MODEL), metavar="DIR", help="a notewise model (default: %(default)s)")
    p.add_argument("--mode", choices=["call-response", "suggest", "accompany"], help="live.mode")
    p.add_argument("--midi-api", choices=["auto", "alsa", "jack", "coremidi", "winmm"],
                   help="MIDI system (live.midi_api; auto: ALSA, else JACK on Linux)")
    p.add_argument("--in", dest="input", metavar="PORT", help="input port: name, index or part of a name (default: "
                   "the keyboard plugged in; with none, the computer keyboard)")
    p.add_argument("--keys", action="store_true", help="play the computer keyboard (A S D F G H J K = C D E F G A B C)")
    p.add_argument("--play", metavar="FILE.mid", help="play a MIDI file as the player, in real time, then stop")
    p.add_argument("--speed", type=_positive_float, default=1.0, metavar="X", help="--play X times as fast")
    p.add_argument("--out", dest="output", metavar="PORT", help="output port: name, index or part of a name")
    p.add_argument("--virtual", action="store_true",
                   help="create ports 'Clara In' and 'Clara Out' (those not named by --in/--out)")
    p.add_argument("--synth", action="store_true",
                   help="play through FluidSynth (the default when there is no output port)")
    p.add_argument("--bpm", type=float, metavar="BPM", help="live.bpm, until a tap or MIDI clock changes it")
    p.add_argument("--passthrough", action="store_true", default=None, help="echo your notes to the output")
    p.add_argument("--part", choices=["p", "v"], help="your part (live.part): p piano, v violin or voice (a chamber "
                   "model's family; your notes sound with live.program_v)")
    p.add_argument("--clara-part", choices=["p", "v"], help="Clara's part (live.clara_part): she plays only its notes")
    p.add_argument("--metronome", action="store_true", default=None, help="a click on each beat")
    p.add_argument("--clock-out", action="store_true", default=None, help="send MIDI clock")
    p.add_argument("--link", action="store_true", default=None,
                   help="join an Ableton Link session: its tempo and beat lead while it has other peers "
                        "(live.link; the optional extra clara-live[link], GPL-3.0-or-later)")
    p.add_argument("--temperature", type=float, metavar="T", help="sampling.temperature")
    p.add_argument("--top-k", type=int, metavar="K", help="sampling.top_k")
    p.add_argument("--random-freq", type=float, metavar="F", help="sampling.random_freq")
    p.add_argument("--seed", type=int, metavar="S", help="sampling.seed")
    p.add_argument("--preset", choices=sorted(SAMPLING_PRESETS), help="a named sampling rule (clara: Clara's "
                   "original, the likeliest token or half the time one of the top 5); flags still win")
    p.add_argument("--cache", action=argparse.BooleanOptionalAction, default=None,
                   help="sampling.cache: the continuous cache, a memory of the session")
    p.add_argument("--touch", choices=("learned", "flat"), help="sampling.touch: learned (each note's velocity "
                   "and timing from the model) or flat (one velocity, on the grid)")
    p.add_argument("--style", metavar="NAME", help="sampling.style: a style the model learned (chopin, pop, lied, "
                   "quartet...); its token opens the music (default piano; none or a style it does not know: no token)")
    # live_*: continue and judge score have a --candidates or --critic of their own, no live setting
    p.add_argument("--candidates", dest="live_candidates", type=_positive_int, metavar="K",
                   help="sample K answers at once and play the critic's pick (live.candidates)")
    p.add_argument("--critic", dest="live_critic", metavar="DIR", help="the critic for --candidates (live.critic)")
    p.add_argument("--save-dir", metavar="DIR", help="where the session is saved as MIDI (live.sessions_dir)")
    p.add_argument("--no-save", action="store_true", help="do not save the session")
    p.add_argument("--no-ui", action="store_true", help="plain log lines instead of the terminal view")
    p.add_argument("--duration", type=_positive_float, metavar="S", help="stop after S seconds")
    p.add_argument("--stats", metavar="FILE.json", help="write latency measurements at the end (benchmarks)")
    p.set_defaults(run=_cmd_live)

    judge = commands.add_parser("judge", help="the judges: which composer, human or generated")
    judges = judge.add_subparsers(dest="judge_command", required=True, metavar="JUDGE_COMMAND")
    p = judges.add_parser("train-composer", parents=[common], help="train the composer classifier")
    p.add_argument("--corpus", required=True, nargs="+", metavar="DIR",
                   help="a corpus `clara corpus` built (its composers, on its split by work), or folders of pieces, "
                        "one per composer")
    p.add_argument("--min-works", type=_positive_int, default=5, metavar="N",
                   help="a built corpus: the composers with at least N works (%(default)s)")
    p.add_argument("--out", required=True, metavar="DIR", help="the judge folder to write")
    p.add_argument("--model", default=str(DEFAULT_MODEL), metavar="DIR", help="generator whose encoder starts it")
    p.add_argument("--head-epochs", type=_positive_int, default=40, metavar="N",
                   help="epochs of the head alone on the frozen encoder's features (%(default)s)")
    p.add_argument("--epochs", type=_natural_int, default=0, metavar="N",
                   help="then epochs of end-to-end fine-tuning (%(default)s)")
    p.add_argument("--window", type=_positive_int, default=1024, metavar="TOKENS", help="(%(default)s)")
    p.add_argument("--transpose", type=_natural_int, default=0, metavar="SEMITONES",
                   help="also train on copies moved -N..+N semitones (%(default)s; notewise only)")
    p.add_argument("--per-piece", type=_positive_int, default=4, metavar="K",
                   help="windows per piece per fine-tuning epoch")
    p.add_argument("--head-lr", type=_positive_float, default=1e-3, metavar="LR", help="the head's AdamW rate")
    p.add_argument("--lr", type=_positive_float, default=1e-4, metavar="LR", help="the fine-tuning AdamW rate")
    p.add_argument("--seed", type=int, default=0, help="(%(default)s)")
    p.set_defaults(run=_cmd_train_composer)
    p = judges.add_parser("train-critic", parents=[common], help="train the critic: human or generated")
    p.add_argument("--model", default=str(DEFAULT_MODEL), metavar="GEN_DIR", help="the generator to judge")
    p.add_argument("--corpus", required=True, nargs="+", metavar="DIR",
                   help="the corpus the generator was built from (`clara corpus` output: its valid and test pieces "
                        "are the human side, its train pieces the generations' prompts), or folders of pieces")
    p.add_argument("--out", required=True, metavar="DIR", help="the judge folder to write")
    p.add_argument("--generations", type=_positive_int, default=496, metavar="N",
                   help="generated excerpts, 16 a setting in turn, the default sampling 4 turns in 31 (%(default)s)")
    p.add_argument("--epochs", type=_positive_int, default=6, metavar="N")
    p.add_argument("--window", type=_positive_int, default=256, metavar="TOKENS")
    p.set_defaults(run=_cmd_train_critic)
    p = judges.add_parser("critic", parents=[common], help="the probability that each file is human-composed")
    p.add_argument("inputs", nargs="+", metavar="FILE", help="MIDI or score files")
    p.add_argument("--judge", default=str(DEFAULT_CRITIC), metavar="DIR", help="a critic (%(default)s)")
    p.add_argument("--json", action="store_true", help="a JSON list of {file, human}")
    p.set_defaults(run=_cmd_critic)
    p = judges.add_parser("score", parents=[common], help="Inception-like score and novelty of a folder of pieces")
    p.add_argument("folder", metavar="GEN_DIR", help="a folder of generated MIDI files")
    p.add_argument("--composer", default=str(DEFAULT_COMPOSER), metavar="DIR", help="composer judge (%(default)s)")
    p.add_argument("--critic", default=str(DEFAULT_CRITIC), metavar="DIR", help="critic (%(default)s)")
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.set_defaults(run=_cmd_score)
    p = judges.add_parser("composer", parents=[common], help="the three likeliest composers of each file")
    p.add_argument("inputs", nargs="+", metavar="FILE", help="MIDI or score files")
    p.add_argument("--judge", default=str(DEFAULT_COMPOSER), metavar="DIR", help="a composer judge (%(default)s)")
    p.add_argument("--json", action="store_true", help="a JSON list of {file, top: [[composer, probability]...]}")
    p.set_defaults(run=_cmd_composer)
    return parser


# the most `clara continue` takes: beyond these, memory or time runs away (a beam of 10**6 grew to 12.8 GB
# in 25 s, ~13 KB a stream). Measured with the shipped notewise model on 2 cores shared with other work
# (load 8): a beam of 256 or 1,024 candidates stay under 0.5 GB RSS, so time binds first: 1,000 tokens
# take 30 s at --beam 64 and 91 s with 256 candidates; plain sampling 100,000 tokens (about an hour of
# music) 155 s, --seconds 3600 234 s
MAX_TOKENS = 100_000
MAX_SECONDS = 3600.0
MAX_BEAM = 64
MAX_CANDIDATES = 64  # as live.candidates

DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "trained_models" / "clara-joint"
DEFAULT_COMPOSER = DEFAULT_MODEL.parent / "composer"
DEFAULT_CRITIC = DEFAULT_MODEL.parent / "critic"


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text}: must be at least 1")
    return value


def _natural_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text}: must be 0 or more")
    return value


def _int_up_to(most: int) -> Callable[[str], int]:
    """argparse's type for a whole number from 1 to most."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text}: must be a whole number") from None
        if not 1 <= value <= most:
            raise argparse.ArgumentTypeError(f"{text}: must be 1 to {most:,}")
        return value
    return parse


def _float_up_to(most: float) -> Callable[[str], float]:
    """argparse's type for a positive number up to most."""
    def parse(text: str) -> float:
        value = _positive_float(text)
        if value > most:
            raise argparse.ArgumentTypeError(f"{text}: must be at most {most:,g}")
        return value
    return parse


def _positive_float(text: str) -> float:
    value = float(text)
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"{text}: must be a positive number")
    return value


def _config(args: argparse.Namespace) -> Config:
    preset = SAMPLING_PRESETS.get(getattr(args, "preset", None) or "", {})
    overrides = [f"sampling.{k}={v}" for k, v in preset.items()] + list(args.overrides)
    for flag, key in (("encoding", "codec.encoding"), ("sample_freq", "codec.sample_freq"),
                      ("chamber", "codec.chamber"), ("workers", "corpus.workers"),
                      ("temperature", "sampling.temperature"), ("top_k", "sampling.top_k"),
                      ("top_p", "sampling.top_p"), ("random_freq", "sampling.random_freq"),
                      ("seed", "sampling.seed"), ("cache", "sampling.cache"), ("touch", "sampling.touch"),
                      ("style", "sampling.style"),
                      ("midi_api", "live.midi_api"), ("mode", "live.mode"), ("part", "live.part"),
                      ("clara_part", "live.clara_part"),
                      ("bpm", "live.bpm"), ("passthrough", "live.passthrough"), ("metronome", "live.metronome"),
                      ("clock_out", "live.clock_out"), ("link", "live.link"), ("save_dir", "live.sessions_dir"),
                      ("live_candidates", "live.candidates"), ("live_critic", "live.critic")):
        value = getattr(args, flag, None)
        if value is not None:
            overrides.append(f"{key}={str(value).lower() if isinstance(value, bool) else value}")
    return load_config(args.config, overrides)


def _outputs(inputs: Sequence[str], out: str, suffix: str) -> list[tuple[str, Path]]:
    """One output per input: OUT itself for a single input, else OUT/<stem><suffix>."""
    if len(inputs) == 1 and (out == STDOUT or not Path(out).is_dir()):
        return [(inputs[0], Path(out))]
    if out == STDOUT:
        raise ClaraError(f"-o -: standard output takes one input's output, not {len(inputs)}; name a folder")
    folder = make_folder(out)
    stems = [Path(i.split(":", 1)[-1]).stem for i in inputs]
    # two inputs with one stem must not overwrite each other
    return [(i, folder / (f"{s}{suffix}" if stems.count(s) == 1 else f"{s}-{n}{suffix}"))
            for n, (i, s) in enumerate(zip(inputs, stems, strict=True))]


def _batch(pairs: list[tuple[str, Path]], work: Callable[[str, Path], str]) -> int:
    """Each pair's work, its line printed (on stderr when the output itself goes to stdout), each failure
    reported; 1 when any failed. A reader of stdout that left (`| head -1`) stops no file being written:
    the lines are for it, the files are the work, so a batch whose every file was written exits 0."""
    failed = 0
    for source, target in pairs:
        try:
            line = work(source, target)
        except ClaraError as exc:
            failed += 1
            print(f"clara: error: {exc}", file=sys.stderr)
            continue
        _say(line, sys.stderr if str(target) == STDOUT else sys.stdout)
    if failed and len(pairs) > 1:
        print(f"clara: {failed} of {len(pairs)} inputs failed", file=sys.stderr)
    return 1 if failed else 0


def _say(line: str, stream) -> None:
    """Print a line now (flushed, so a reader that left is seen here); if stdout's reader left, stdout
    goes to devnull and the caller carries on."""
    try:
        print(line, file=stream, flush=True)
    except BrokenPipeError:
        _drop_stdout()


def _drop_stdout() -> None:
    """The reader of stdout went away: what is left in stdout's buffer, and all that follows, goes to
    devnull, not to a second error at exit (Python's docs advise it: the note on SIGPIPE in the signal module)."""
    with contextlib.suppress(OSError, ValueError):  # a stdout with no file descriptor has no buffer to drop
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def _cmd_encode(args: argparse.Namespace, config: Config) -> int:
    from clara_live.atomic import write_text
    from clara_live.codec import make_codec, to_steps
    from clara_live.music.read import read_music

    codec = make_codec(config.codec)

    def work(source: str, target: Path) -> str:
        piece = read_music(source, config.codec.sustain_pedal)
        tokens = codec.encode(to_steps(piece, config.codec))
        write_text(target, " ".join(tokens) + "\n")
        note = "" if tokens else ": the input has no notes"
        return f"{source} -> {target} ({len(tokens)} tokens{note})"

    return _batch(_outputs(args.inputs, args.out, ".txt"), work)


def _cmd_decode(args: argparse.Namespace, config: Config) -> int:
    from clara_live.codec import make_codec
    from clara_live.music.midi_io import steps_to_midi, write_midi
    from clara_live.music.read import not_regular

    codec = make_codec(config.codec)

    def work(source: str, target: Path) -> str:
        kind = not_regular(source)  # a FIFO would be waited on for ever
        if kind is not None:
            raise InputError(f"{source}: {kind}")
        try:
            tokens = Path(source).read_text(encoding="utf-8").split()
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"{source}: cannot read tokens ({exc.__class__.__name__})") from None
        try:
            notes = codec.decode(tokens)
        except ValueError as exc:
            raise InputError(f"{source}: {exc}") from None
        write_midi(steps_to_midi(notes, config.codec.sample_freq, config.codec.bpm, config.codec.violin_low), target)
        return f"{source} -> {target} ({len(notes)} notes)"

    return _batch(_outputs(args.inputs, args.out, ".mid"), work)


def _cmd_corpus(args: argparse.Namespace, config: Config) -> int:
    from clara_live.corpus import build_corpus, summary

    manifest = build_corpus(args.sources, args.out, config)
    print(summary(manifest))
    print(f"wrote {args.out}/manifest.json")
    if manifest["skipped"]:
        print(f"clara: error: {len(manifest['skipped'])} of {len(manifest['skipped']) + len(manifest['pieces'])} "
              "inputs could not be encoded (listed above); the corpus holds the rest", file=sys.stderr)
        return 1
    return 0


def _cmd_train(args: argparse.Namespace, config: Config) -> int:
    from training.trainer import train

    result = train(args.corpus, args.out, config, init=args.init, resume=args.resume)
    if int(os.environ.get("RANK", 0)) == 0:  # under torchrun, one report
        best = result["best_valid_nll"]  # inf until an epoch's validation
        valid = f"best valid NLL {best:.4f} nats/token" if math.isfinite(best) else "no epoch validated yet"
        print(f"trained {result['step']} steps; {valid}; model in {args.out}/model")
    return 0


def _cmd_evaluate(args: argparse.Namespace, config: Config) -> int:
    import json

    import torch

    from clara_live.codec import make_codec, to_steps
    from clara_live.codec.vocabulary import Vocabulary
    from clara_live.model import load_model
    from clara_live.model.evaluate import bits_per_note, score
    from clara_live.music.notes import normalise
    from clara_live.music.read import read_music

    torch.backends.mkldnn.enabled = False  # oneDNN's LSTM is many times slower than the plain CPU path here
    loaded = load_model(args.model)
    codec = make_codec(loaded.codec)
    vocab = Vocabulary(loaded.vocabulary, loaded.codec)
    sequences, failed, notes = [], 0, 0
    for source in args.inputs:
        try:
            encoded = normalise(to_steps(read_music(source, loaded.codec.sustain_pedal), loaded.codec))
            tokens = codec.encode(encoded)
            if len(tokens) < 2:  # the first token is never predicted: nothing to score
                raise InputError(f"{source}: no notes to evaluate" if not encoded else
                                 f"{source}: too short to evaluate ({len(tokens)} token)")
            sequences.append(vocab.ids(tokens, source, unknown=True))
            notes += len(encoded)
        except (ClaraError, ValueError) as exc:  # unreadable file, or a token the model never saw
            failed += 1
            print(f"clara: error: {exc}", file=sys.stderr)
    if not sequences:  # every input was reported above
        return 1
    result = {**score(loaded.model, sequences, progress=sys.stderr.isatty()), "files": len(sequences), "notes": notes}
    result["bits_per_note"] = bits_per_note(result["nll"], result["tokens"], notes)
    if args.json:
        print(json.dumps(result, allow_nan=False))  # always JSON: a NaN would be a bug, raised here
    else:
        print(f"{result['files']} files, {result['notes']} notes, {result['tokens']} tokens: "
              f"{result['bits_per_note']:.3f} bits/note, NLL {result['nll']:.4f} nats/token, "
              f"perplexity {result['perplexity']:.3f}, accuracy {result['accuracy']:.2%}")
    return 1 if failed else 0


def _cmd_continue(args: argparse.Namespace, config: Config) -> int:
    from clara_live.codec.tokens import Grammar
    from clara_live.continuation import Request, alone, continue_piece, to_midi
    from clara_live.engine import build_engine
    from clara_live.model import load_model
    from clara_live.music.midi_io import write_midi
    from clara_live.music.read import read_music
    from clara_live.sampling.sampler import Sampler

    if args.png_all and not args.png:
        raise ClaraError("--png-all says how --png draws: give --png OUT.png too")
    outputs = [o for o in (args.out, args.png, args.wav) if o is not None]
    if outputs.count(STDOUT) > 1:
        raise ClaraError("-o, --png, --wav: only one of them can be - (standard output)")
    for output in outputs:  # a folder, a socket, a loop of links...: said now, not after the generation
        output_target(output)
    say = sys.stderr if STDOUT in outputs else sys.stdout  # stdout holds the output itself
    loaded = load_model(args.model)
    if args.continue_part is not None and args.continue_part not in Grammar(loaded.codec).families:
        raise ClaraError(f"{args.model}: --clara-part {args.continue_part}: the model has no {args.continue_part} "
                         "family (it was trained without codec.chamber: its notes are all p)")
    piece = read_music(args.prompt, loaded.codec.sustain_pedal) if args.prompt else None  # as the model was trained
    sampler = Sampler(build_engine(loaded.model, config.inference), loaded.vocabulary, loaded.codec, config.sampling)
    if sampler.style_note():
        print(f"clara: {sampler.style_note()}", file=sys.stderr)
    scorer = None
    if args.rank == "critic":
        from clara_live.judge.rank import critic_scorer
        from clara_live.judge.store import load_judge

        scorer = critic_scorer(load_judge(args.critic, kind="critic"))
    request = Request(args.tokens, args.seconds, args.beam, args.candidates, args.form, scorer, args.continue_part)
    result = continue_piece(loaded, sampler, piece, request, config.sampling, progress=sys.stderr.isatty())
    if result.interrupted:
        print(f"clara: interrupted: writing the {len(result.tokens)} tokens made so far", file=sys.stderr)
    sf = loaded.codec.sample_freq
    bar_steps = config.sampling.beats_per_bar * sf
    midi = to_midi(result, sf, loaded.codec.violin_low, args.only_continuation, bar_steps)
    midi.filename = str(args.out)  # the name a failed render gives
    write_midi(midi, args.out)
    seconds = max((n.end for n in result.continuation), default=0) - min(
        (n.start for n in result.continuation), default=0)
    print(f"{args.prompt or '(no prompt)'} -> {args.out}: {len(result.continuation)} notes in "
          f"{seconds / sf * 60 / result.bpm:.1f} s, {len(result.tokens)} tokens "
          f"(context {result.context_tokens} tokens, seed {result.seed})", file=say)
    if args.png:
        from clara_live.piano_roll import draw_continuation

        prompt = [] if args.only_continuation else result.prompt
        clara = alone(result.continuation, bar_steps) if args.only_continuation else result.continuation
        draw_continuation(prompt, clara, sf, args.png, bpm=result.bpm, beats_per_bar=config.sampling.beats_per_bar,
                          title=f"{Path(args.prompt).name if args.prompt else 'Clara'} (seed {result.seed})",
                          whole=args.png_all)
        print(f"piano roll -> {args.png}", file=say)
    if args.wav:
        from clara_live.render import render_wav

        render_wav(midi, args.wav, soundfont=args.soundfont)  # the MIDI as made: -o may be a stream
        print(f"audio -> {args.wav}", file=say)
    return 0


def _cmd_ports(args: argparse.Namespace, config: Config) -> int:
    from clara_live.live import ports

    print(ports.describe_ports(ports.resolve_api(config.live.midi_api)))
    return 0


def _cmd_live(args: argparse.Namespace, config: Config) -> int:
    from clara_live.live.app import LiveOptions, run_live

    ui = not args.no_ui and sys.stdout.isatty()
    if args.stats == STDOUT:
        raise ClaraError("--stats -: standard output holds the session's lines; name a file")
    if args.stats:
        output_target(args.stats)  # a folder, a loop of links...: said now, not after the session
    if sum(bool(x) for x in (args.input, args.keys, args.play)) > 1:
        raise InputError("choose one input: --in, --keys or --play")
    options = LiveOptions(Path(args.model), args.input, args.output, args.virtual, args.synth, ui,
                          not args.no_save, args.duration, Path(args.stats) if args.stats else None,
                          play=Path(args.play) if args.play else None, speed=args.speed, keys=args.keys)
    return run_live(options, config)


def _cmd_train_composer(args: argparse.Namespace, config: Config) -> int:
    from training.composer import ComposerOptions, train_composer

    options = ComposerOptions(head_epochs=args.head_epochs, epochs=args.epochs, window=args.window,
                              transpose=args.transpose, per_piece=args.per_piece, head_lr=args.head_lr, lr=args.lr,
                              seed=args.seed, min_works=args.min_works)
    metrics = train_composer(args.corpus, args.out, args.model, options)
    line = f"test pieces {metrics['test_pieces']}: top-1 {metrics['top1']:.1%}, top-3 {metrics['top3']:.1%}"
    if metrics["major_top1"] is not None:
        line += (f"; {len(metrics['major_composers'])} composers with >= 10 works ({metrics['major_test_pieces']} "
                 f"test pieces): top-1 {metrics['major_top1']:.1%}, top-3 {metrics['major_top3']:.1%}")
    print(f"{line}; judge in {args.out}")
    return 0


def _cmd_train_critic(args: argparse.Namespace, config: Config) -> int:
    from training.critic import CriticOptions, train_critic

    options = CriticOptions(count=args.generations, window=args.window, epochs=args.epochs)
    metrics = train_critic(args.corpus, args.out, args.model, options)
    worst = min(metrics["test_auc_by_setting"].items(), key=lambda kv: kv[1], default=("-", float("nan")))
    print(f"test ROC AUC {metrics['test_auc']:.3f} over {metrics['test_excerpts']} excerpts of "
          f"{metrics['test_items']} pieces and generations (pieces: {metrics['test_piece_auc']:.3f}); "
          f"against the hardest setting ({worst[0]}) {worst[1]:.3f}; judge in {args.out}")
    return 0


def _judged(args: argparse.Namespace, kind: str, folder: str | None = None, inputs: Sequence[str] | None = None):
    """(file, piece probabilities) for each readable input; each bad one reported in one line."""
    from clara_live.codec.vocabulary import Vocabulary
    from clara_live.judge.pieces import encode_file
    from clara_live.judge.predict import predict_pieces
    from clara_live.judge.store import load_judge

    judge = load_judge(folder or args.judge, kind=kind)
    vocab = Vocabulary(judge.vocabulary, judge.codec)
    results, failed = [], 0
    for source in args.inputs if inputs is None else inputs:
        try:
            ids = encode_file(source, vocab)
        except ClaraError as exc:
            failed += 1
            print(f"clara: error: {exc}", file=sys.stderr)
            continue
        results.append((source, predict_pieces(judge.model, [ids], judge.window, judge.stride)[0]))
    return judge, results, failed


def _cmd_critic(args: argparse.Namespace, config: Config) -> int:
    from clara_live import finite_json

    judge, judged, failed = _judged(args, "critic")
    results = [{"file": source, "human": round(float(probs[judge.classes.index("human")]), 4)}
               for source, probs in judged]
    if args.json:
        print(finite_json.dumps(results))
    else:
        for r in results:
            print(f"{r['file']}: human {r['human']:.0%}")
    return 1 if failed else 0


def _cmd_score(args: argparse.Namespace, config: Config) -> int:
    import torch

    from clara_live import finite_json
    from clara_live.judge.score import inception_score, novel
    from clara_live.music.read import READABLE_SUFFIXES

    folder = Path(args.folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder")
    files = sorted(str(p) for p in folder.rglob("*") if p.suffix.lower() in READABLE_SUFFIXES)
    if not files:
        raise InputError(f"{folder}: no MIDI or score files")
    composer, by_composer, failed = _judged(args, "composer", args.composer, files)
    critic, by_critic, _ = _judged(args, "critic", args.critic, [f for f, _ in by_composer])
    probs = torch.stack([p for _, p in by_composer])
    human = torch.stack([p[critic.classes.index("human")] for _, p in by_critic])
    fresh = [by_composer[i][0] for i in novel(human, probs)]
    result = {"files": len(by_composer), "inception_score": inception_score(probs),
              "composers": len(composer.classes), "human_mean": float(human.mean()), "novel": fresh}
    if args.json:
        print(finite_json.dumps(result))
    else:
        print(f"{result['files']} pieces: Inception-like score {result['inception_score']:.2f} (1 to "
              f"{result['composers']}); the critic's mean P(human) {result['human_mean']:.2f}; "
              f"{len(fresh)} novel (human-sounding, no composer claims them)")
        for name in fresh:
            print(f"  novel: {name}")
    return 1 if failed else 0


def _cmd_composer(args: argparse.Namespace, config: Config) -> int:
    from clara_live import finite_json

    judge, judged, failed = _judged(args, "composer")
    results = []
    for source, probs in judged:
        top = probs.topk(min(3, len(judge.classes)))
        results.append({"file": source, "top": [[judge.classes[i], round(float(p), 4)]
                                                for p, i in zip(top.values.tolist(), top.indices.tolist(),
                                                                strict=True)]})
    if args.json:
        print(finite_json.dumps(results))
    else:
        for r in results:
            print(f"{r['file']}: " + ", ".join(f"{c} {p:.0%}" for c, p in r["top"]))
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = _config(args)
        status = args.run(args, config)
        sys.stdout.flush()  # here, so a reader that left early (`| head`) is seen below, not at exit
        return status
    except ClaraError as exc:
        print(f"clara: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # the reader of stdout went away: stop quietly
        _drop_stdout()
        return 1
    except KeyboardInterrupt as exc:  # training's says where it saved and how to resume
        print(f"clara: {str(exc) or 'interrupted'}", file=sys.stderr)
        return 130
    except Terminated:  # SIGTERM while a temporary file or folder existed: it was removed on the way here
        print("clara: terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
