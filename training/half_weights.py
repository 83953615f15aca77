"""Store a model folder's weights as float16, for shipping, and check that nothing was lost.

    python -m training.half_weights SRC_MODEL DST_MODEL [--corpus DIR]

`load_model` loads float16 weights into the float32 model, so a shipped folder is half the
size. Tied tensors (embedding and decoder) stay one tensor. With --corpus, both folders are
scored on the corpus's test split and the NLLs printed side by side.
"""

from __future__ import annotations

import argparse
import io
import shutil
from pathlib import Path

import torch

from clara_live.atomic import write_bytes
from clara_live.model import load_model
from clara_live.model.evaluate import score
from clara_live.model.store import CONFIG, WEIGHTS


def half_weights(source: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    state = torch.load(source / WEIGHTS, map_location="cpu", weights_only=True)
    shared: dict[int, torch.Tensor] = {}
    half = {k: shared.setdefault(v.data_ptr(), v.half() if v.is_floating_point() else v) for k, v in state.items()}
    buffer = io.BytesIO()
    torch.save(half, buffer)
    write_bytes(target / WEIGHTS, buffer.getvalue())
    shutil.copyfile(source / CONFIG, target / CONFIG)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("target", type=Path)
    parser.add_argument("--corpus", type=Path, help="a corpus folder: compare test NLLs")
    args = parser.parse_args()
    half_weights(args.source, args.target)
    if args.corpus:
        from training.data import Corpus

        torch.backends.mkldnn.enabled = False
        corpus = Corpus(args.corpus)
        for folder in (args.source, args.target):
            loaded = load_model(folder)
            result = score(loaded.model, corpus.pieces("test", loaded.vocabulary))
            print(f"{folder}: test NLL {result['nll']:.5f}, accuracy {result['accuracy']:.4%}, "
                  f"{result['tokens']} tokens")


if __name__ == "__main__":
    main()
