"""Store a judge folder's parameters as float16, for shipping, and check that its verdicts hold.

    python -m training.half_judge SRC_JUDGE DST_JUDGE [--corpus DIR] [--limit N]

`load_judge` loads float16 parameters into the float32 model (a Standardize's statistics stay
float32), so a shipped judge is half the size. The PNGs beside the weights are copied. With
--corpus (the folder the judge was trained on), both are run on the judge's test split and the
top-1 accuracy and largest probability difference printed.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from clara_live.codec.vocabulary import Vocabulary
from clara_live.judge.pieces import encode_file
from clara_live.judge.predict import predict_pieces, top_k_accuracy
from clara_live.judge.store import load_judge, save_judge


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("target", type=Path)
    parser.add_argument("--corpus", type=Path, help="the corpus folder the judge's split names (a judge of a built "
                        "corpus names its files itself: give any folder, say the built corpus)")
    parser.add_argument("--limit", type=int, default=0, help="check at most this many test pieces (0: all)")
    args = parser.parse_args()
    full = load_judge(args.source)
    save_judge(args.target, full, half=True)
    for png in args.source.glob("*.png"):
        shutil.copyfile(png, args.target / png.name)
    if not args.corpus:
        return
    half = load_judge(args.target)
    sources = full.info.get("sources") or {}
    files = {k: Path(sources[k]) if k in sources else args.corpus / k for k, v in full.info.get("split", {}).items()
             if v == "test"}
    tests = sorted(k for k, path in files.items() if path.is_file())[:args.limit or None]
    vocab = Vocabulary(full.vocabulary, full.codec)
    ids = [encode_file(str(files[k]), vocab) for k in tests]
    named = full.info.get("labels") or {k: k.split("/")[0] for k in tests}
    labels = [full.classes.index(named[k]) if named.get(k) in full.classes else -1 for k in tests]
    a = predict_pieces(full.model, ids, full.window, full.stride)
    b = predict_pieces(half.model, ids, half.window, half.stride)
    line = f"{len(tests)} test pieces: largest probability difference {float((a - b).abs().max()):.2e}"
    if full.kind == "composer":
        line += f"; top-1 {top_k_accuracy(a, labels, 1):.4f} (float32) vs {top_k_accuracy(b, labels, 1):.4f} (float16)"
    print(line)


if __name__ == "__main__":
    main()
