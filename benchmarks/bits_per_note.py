"""Bits per note of a model on a built corpus's split, corpus by corpus.

What it measures: for each corpus in a corpus folder built by `clara corpus` (its manifest names
each piece's corpus), the model's NLL of the split's pieces (each from a zero state, as `clara
evaluate` scores a file) as bits per note: NLL per token x tokens / notes / ln 2, notes being every
note the codec encoded (note-ons, a chord's notes), as `clara evaluate` counts them: comparable across
encodings and step grids. The issue-13 goals: <= 5.0 bits/note on sequenced classical
pieces (piano-midi-de), <= 7.5 on performances (asap), <= 6.5 on pop (pop909).

Held out means held out: a piece whose own split was train but joined a held-out work
(manifest "moved") was seen by any model trained on the old piano-midi.de split, the shipped one
among them; it is left out unless --keep-moved.

  python benchmarks/bits_per_note.py --corpus out/mix --model trained_models/clara-notewise --split valid
  python benchmarks/bits_per_note.py --corpus out/mix --model runs/mix/model --split test --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from clara_live.codec.tokens import notes_struck  # noqa: E402
from clara_live.codec.vocabulary import Vocabulary  # noqa: E402
from clara_live.config import CodecConfig  # noqa: E402
from clara_live.corpus.built import with_touch  # noqa: E402
from clara_live.model import load_model  # noqa: E402
from clara_live.model.evaluate import bits_per_note, score  # noqa: E402


def measure(corpus: Path, model_dir: Path, split: str, keep_moved: bool = False, max_pieces: int = 0) -> dict:
    manifest = json.loads((corpus / "manifest.json").read_text(encoding="utf-8"))
    loaded = load_model(model_dir)
    codec = CodecConfig(**manifest["codec"])
    if codec != loaded.codec:
        raise SystemExit(f"{corpus}: its codec settings are not the model's ({model_dir})")
    lines = (corpus / f"{split}.txt").read_text(encoding="utf-8").splitlines()
    # a model with touch hears each note-on's velocity and timing, as it learned (the tokens scored alike)
    touch_file = corpus / f"{split}.touch"
    touches = touch_file.read_text(encoding="utf-8").splitlines() \
        if loaded.model.touch is not None and touch_file.exists() else None
    moved = set() if keep_moved else {m["key"] for m in manifest.get("moved", []) if m["from"] == "train"}
    vocab = Vocabulary(loaded.vocabulary, codec)
    struck = np.array([notes_struck(vocab.grammar.parse(t)) for t in loaded.vocabulary])  # notes each token strikes
    pieces: dict[str, list] = defaultdict(list)
    left_out = 0
    for piece in manifest["pieces"]:
        if piece["split"] != split:
            continue
        if piece["key"] in moved:
            left_out += 1
            continue
        pieces[piece["corpus"] or "(files)"].append((lines[piece["line"]].split(),
                                                     touches[piece["line"]] if touches is not None else None))
    rows = {}
    for name, token_lists in sorted(pieces.items()):
        token_lists = token_lists[:max_pieces] if max_pieces else token_lists
        ids = [vocab.ids(t, f"{corpus}/{split}.txt", unknown=manifest.get("unknown_token") is not None)
               for t, _ in token_lists]
        start = time.perf_counter()
        given = [with_touch(i, line, vocab, f"{touch_file}") if line is not None else i
                 for i, (_, line) in zip(ids, token_lists, strict=True)]
        result = score(loaded.model, given)
        notes = int(sum(struck[i].sum() for i in ids))  # every note the codec encoded, as `clara evaluate` counts
        rows[name] = {"pieces": len(token_lists), "tokens": result["tokens"], "notes": notes,
                      "nll": result["nll"], "accuracy": result["accuracy"],
                      "bits_per_note": bits_per_note(result["nll"], result["tokens"], notes),
                      "seconds": round(time.perf_counter() - start, 1)}
    return {"corpus": str(corpus), "model": str(model_dir), "split": split, "left_out_moved": left_out,
            "corpora": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", type=Path, required=True, help="a folder built by `clara corpus`")
    parser.add_argument("--model", type=Path, required=True, help="a model folder")
    parser.add_argument("--split", default="valid", choices=("train", "valid", "test"))
    parser.add_argument("--keep-moved", action="store_true", help="also score pieces moved from train (see above)")
    parser.add_argument("--max-pieces", type=int, default=0, help="at most this many pieces a corpus (0: all)")
    parser.add_argument("--json", type=Path, help="write the result here too")
    args = parser.parse_args(argv)
    result = measure(args.corpus, args.model, args.split, args.keep_moved, args.max_pieces)
    print(f"{args.model} on {args.corpus} ({args.split}; {result['left_out_moved']} pieces moved from train left out)")
    print(f"{'corpus':16s} {'pieces':>6s} {'notes':>9s} {'nats/token':>10s} {'accuracy':>8s} {'bits/note':>9s}")
    for name, r in result["corpora"].items():
        print(f"{name:16s} {r['pieces']:6d} {r['notes']:9d} {r['nll']:10.3f} {r['accuracy']:8.3f} "
              f"{r['bits_per_note']:9.2f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
