"""The `clara` command: `main(argv) -> int`, one sub-command per job.

Every sub-command takes `--config FILE` and `--set section.key=value`. A bad input ends
with one line on stderr naming the file or value and the reason, and exit status 1; a
batch (several inputs) reports each bad item, goes on with the rest, and exits 1 at the end.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from clara_live import __version__
from clara_live.config import Config, load_config
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
    p.add_argument("-o", "--out", required=True, help="a .txt file for one input, else a folder of <stem>.txt")
    p.set_defaults(run=_cmd_encode)

    p = commands.add_parser("decode", parents=[common, codec], help="token files to MIDI")
    p.add_argument("inputs", nargs="+", metavar="TOKENS", help="text files of whitespace-separated tokens")
    p.add_argument("-o", "--out", required=True, help="a .mid file for one input, else a folder of <stem>.mid")
    p.set_defaults(run=_cmd_decode)

    p = commands.add_parser("corpus", parents=[common, codec], help="build a train/valid/test token corpus")
    p.add_argument("sources", nargs="+", metavar="SOURCE",
                   help="a folder of MIDI/score files (composer = parent folder), a file, or music21:NAME")
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
    return parser


def _config(args: argparse.Namespace) -> Config:
    overrides = list(args.overrides)
    for flag, key in (("encoding", "codec.encoding"), ("sample_freq", "codec.sample_freq"),
                      ("chamber", "codec.chamber"), ("workers", "corpus.workers")):
        value = getattr(args, flag, None)
        if value is not None:
            overrides.append(f"{key}={str(value).lower() if isinstance(value, bool) else value}")
    return load_config(args.config, overrides)


def _outputs(inputs: Sequence[str], out: str, suffix: str) -> list[tuple[str, Path]]:
    """One output per input: OUT itself for a single input, else OUT/<stem><suffix>."""
    if len(inputs) == 1 and not Path(out).is_dir():
        return [(inputs[0], Path(out))]
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    stems = [Path(i.split(":", 1)[-1]).stem for i in inputs]
    # two inputs with one stem must not overwrite each other
    return [(i, folder / (f"{s}{suffix}" if stems.count(s) == 1 else f"{s}-{n}{suffix}"))
            for n, (i, s) in enumerate(zip(inputs, stems, strict=True))]


def _batch(pairs: list[tuple[str, Path]], work: Callable[[str, Path], str]) -> int:
    failed = 0
    for source, target in pairs:
        try:
            print(work(source, target))
        except ClaraError as exc:
            failed += 1
            print(f"clara: error: {exc}", file=sys.stderr)
    if failed and len(pairs) > 1:
        print(f"clara: {failed} of {len(pairs)} inputs failed", file=sys.stderr)
    return 1 if failed else 0


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

    codec = make_codec(config.codec)

    def work(source: str, target: Path) -> str:
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
    return 0


def _cmd_train(args: argparse.Namespace, config: Config) -> int:
    from training.trainer import train

    result = train(args.corpus, args.out, config, init=args.init, resume=args.resume)
    if int(os.environ.get("RANK", 0)) == 0:  # under torchrun, one report
        print(f"trained {result['step']} steps; best valid NLL {result['best_valid_nll']:.4f} nats/token; "
              f"model in {args.out}/model")
    return 0


def _cmd_evaluate(args: argparse.Namespace, config: Config) -> int:
    import json

    import torch

    from clara_live.codec import make_codec, to_steps
    from clara_live.model import load_model
    from clara_live.model.evaluate import score, token_ids
    from clara_live.music.read import read_music

    torch.backends.mkldnn.enabled = False  # oneDNN's LSTM is many times slower than the plain CPU path here
    loaded = load_model(args.model)
    codec = make_codec(loaded.codec)
    index = {t: i for i, t in enumerate(loaded.vocabulary)}
    unknown = "<unk>" if "<unk>" in index else None
    sequences, failed = [], 0
    for source in args.inputs:
        try:
            tokens = codec.encode(to_steps(read_music(source, loaded.codec.sustain_pedal), loaded.codec))
            sequences.append(token_ids(tokens, index, unknown, source))
        except (ClaraError, ValueError) as exc:  # unreadable file, or a token the model never saw
            failed += 1
            print(f"clara: error: {exc}", file=sys.stderr)
    result = {**score(loaded.model, sequences), "files": len(sequences)}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['files']} files, {result['tokens']} tokens: NLL {result['nll']:.4f} nats/token, "
              f"perplexity {result['perplexity']:.3f}, accuracy {result['accuracy']:.2%}")
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = _config(args)
        return args.run(args, config)
    except ClaraError as exc:
        print(f"clara: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("clara: interrupted", file=sys.stderr)
        return 130

