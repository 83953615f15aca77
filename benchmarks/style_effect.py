"""Style (issue 25): does a style token make Clara's music that style's?

Clara plays `--seconds` under each style of `--styles` (a style the model learned, `none`: no style
token, `piano`: the default, the piano style): from silence (`--prompt-seconds 0`, the default: what
the style alone makes of her music), or continuing held-out prompts (the answer benchmark's: the
model's own valid or test split of piano-midi.de and ASAP) cut `--prompt-seconds` long, one
generation per prompt and take, each with its own seed (from silence, as many as there are prompts). The
composer classifier (`--composer`, a judge built on the same model's vocabulary or any other) hears
the continuation alone, the prompt left out, and names its likeliest composer. For each composer asked
as a style, the report gives how often it is named under that style and with no style token, and
their ratio (issue 25's goal: Chopin named at least 3x as often under --style chopin).

  python benchmarks/style_effect.py --split valid --styles chopin,none,piano
  python benchmarks/style_effect.py --split valid --prompt-seconds 4    # continuing 4 s of a held-out piece
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import answer_quality  # noqa: E402  (its prompts and offline continuation)

from clara_live.codec import make_codec  # noqa: E402
from clara_live.codec.steps import to_steps  # noqa: E402
from clara_live.codec.vocabulary import Vocabulary  # noqa: E402
from clara_live.config import load_config  # noqa: E402
from clara_live.engine import build_engine  # noqa: E402
from clara_live.judge.predict import predict_pieces  # noqa: E402
from clara_live.judge.store import load_judge  # noqa: E402
from clara_live.model import load_model  # noqa: E402
from clara_live.music.notes import Note, Piece  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
NAMES = {"none": "none", "piano": ""}  # the command line's names for sampling.style's "none" and ""


def judge_ids(notes: list[answer_quality.Timed], vocab: Vocabulary) -> np.ndarray | None:
    """A continuation's notes (seconds) as the judge's token ids: 120 bpm, a quarter note a half second (the
    grid is the judge's; where the notes fall on it is what the continuation played). None: too few notes."""
    quarter = 0.5
    piece = Piece([Note(n.start / quarter, max(n.end, n.start + 0.01) / quarter, n.pitch, n.velocity)
                   for n in notes if n.start >= 0.0], 120.0)
    if len(piece.notes) < 4:
        return None
    tokens = make_codec(vocab.codec).encode(to_steps(piece, vocab.codec))
    ids = vocab.ids(tokens, "continuation", unknown=True)
    return ids if len(ids) >= 2 else None


def run(args: argparse.Namespace) -> dict:
    config = load_config(overrides=args.set)
    loaded = load_model(args.model)
    engine = build_engine(loaded.model, config.inference)
    judge = load_judge(args.composer, kind="composer")
    vocab = Vocabulary(judge.vocabulary, judge.codec)
    prompts = answer_quality.load_prompts(args.split, max(args.prompt_seconds, 1.0), args.seconds, args.limit,
                                          model=Path(args.model))
    styles = [s.strip() for s in args.styles.split(",") if s.strip()]
    print(f"{len(prompts)} {'prompts' if args.prompt_seconds > 0 else 'generations from silence'} "
          f"({args.split} split), styles {styles}", file=sys.stderr)
    named: dict[str, list[str]] = {}
    for style in styles:
        started = time.perf_counter()
        setting = {"style": NAMES.get(style, style)}  # sampling.style's value
        named[style] = []
        for take in range(args.seeds):
            for i, prompt in enumerate(prompts):
                seed = args.seed + answer_quality.SEED_STRIDE * take + i
                piece = prompt.piece if args.prompt_seconds > 0 else None
                notes = answer_quality.offline(loaded, engine, config, piece, args.seconds, setting, seed)
                ids = judge_ids(answer_quality._clip(notes, args.seconds), vocab)
                if ids is None:
                    named[style].append("(silent)")
                    continue
                probs = predict_pieces(judge.model, [ids], judge.window, judge.stride)[0]
                named[style].append(judge.classes[int(probs.argmax())])
        print(f"{style}: {len(named[style])} continuations, {time.perf_counter() - started:.0f} s", file=sys.stderr)
    asked = [s for s in styles if s not in NAMES]
    baseline = "none" if "none" in styles else None
    report: dict = {"model": args.model, "composer": args.composer, "split": args.split,
                    "prompt_seconds": args.prompt_seconds, "prompts": len(prompts),
                    "seeds": args.seeds, "named": {}, "ratio": {}}
    for style in styles:
        counts: dict[str, int] = {}
        for name in named[style]:
            counts[name] = counts.get(name, 0) + 1
        report["named"][style] = dict(sorted(counts.items(), key=lambda kv: -kv[1]))
    for style in asked:
        composer = next((c for c in judge.classes if c.lower() == style.lower()), None)
        if composer is None or baseline is None:
            continue
        under = named[style].count(composer) / len(named[style])
        without = named[baseline].count(composer) / len(named[baseline])
        report["ratio"][style] = {"composer": composer, "under_style": round(under, 4), "no_style": round(without, 4),
                                  "ratio": round(under / without, 2) if without else None}
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(REPO / "trained_models" / "clara-joint"))
    parser.add_argument("--composer", default=str(REPO / "trained_models" / "composer"))
    parser.add_argument("--split", choices=["valid", "test"], default="valid")
    parser.add_argument("--styles", default="chopin,none,piano",
                        help="comma-separated: styles the model learned, none (no token), piano (the default)")
    parser.add_argument("--prompt-seconds", type=float, default=0.0, help="0: from silence")
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--limit", type=int, default=0, help="prompts (0: all)")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    parser.add_argument("--json", type=Path, help="write the report here too")
    args = parser.parse_args(argv)
    report = run(args)
    text = json.dumps(report, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
