"""Cross-validate the composer head's design: which features, windows and head to ship.

    python -m training.composer_cv --corpus DIR [--model GEN_DIR] [--window 1024] [--layers all]
        [--norm standard] [--hidden 0] [--transpose 0] [--head-epochs 40] [--folds 5]

The test split stays untouched: the train and valid pieces of `clara judge train-composer`'s
split are dealt into folds (stratified by composer, in stable hash order); for each fold a head
is trained, as train-composer's first stage does, on the frozen encoder's features of the other
folds for a fixed number of epochs, and judges the held-out fold's pieces. Every piece is judged
once, so 252 pieces (195 of the 12 composers with >= 10 pieces) score each design instead of
31 valid pieces. Prints top-1 over all labels, and top-1 and top-3 choosing among the composers
with >= 10 pieces (the issue's goal), with the counts.
"""

from __future__ import annotations

import argparse
from collections import Counter, defaultdict

import torch

from clara_live.codec.vocabulary import Vocabulary
from clara_live.judge.classifier import Classifier
from clara_live.judge.data import hash_order, split_pieces, transposed_versions
from clara_live.judge.pieces import load_labelled
from clara_live.judge.predict import top_k_accuracy
from clara_live.model import load_model
from training.composer import among
from training.judge import HeadTraining, head_probabilities, train_head, window_features


def folds_of(items: list[tuple[str, str]], folds: int) -> dict[str, int]:
    """(key, label) -> fold, dealt round-robin within each label in stable hash order."""
    by_label: dict[str, list[str]] = defaultdict(list)
    for key, label in items:
        by_label[label].append(key)
    return {key: i % folds for keys in by_label.values() for i, key in enumerate(hash_order(keys))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", required=True, nargs="+")
    parser.add_argument("--model", default="trained_models/clara-notewise")
    parser.add_argument("--window", type=int, default=1024)
    parser.add_argument("--layers", choices=("all", "last"), default="all")
    parser.add_argument("--norm", choices=("standard", "layer"), default="standard")
    parser.add_argument("--hidden", type=int, default=0)
    parser.add_argument("--transpose", type=int, default=0)
    parser.add_argument("--head-epochs", type=int, default=40)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--min-pieces", type=int, default=10)
    args = parser.parse_args()

    loaded = load_model(args.model)
    vocab = Vocabulary(loaded.vocabulary, loaded.codec)
    pieces, problems = load_labelled(args.corpus, vocab)
    for problem in problems:
        print(f"skipped: {problem}")
    classes = sorted({p.label for p in pieces})
    label = {c: i for i, c in enumerate(classes)}
    split = split_pieces([(p.key, p.label) for p in pieces])
    pool = [p for p in pieces if split[p.key] != "test"]
    fold = folds_of([(p.key, p.label) for p in pool], args.folds)
    counts = Counter(p.label for p in pieces)
    major = [c for c in classes if counts[c] >= args.min_pieces]

    def fresh() -> Classifier:
        torch.manual_seed(0)
        return Classifier.from_generator(loaded.model, len(classes), head_hidden=args.hidden, head_dropout=0.5,
                                         pool_layers=args.layers, norm=args.norm)

    encoder = fresh()
    stride = max(1, args.window // 2)
    features = {p.key: [window_features(encoder, version, args.window, stride)
                        for version in transposed_versions(p.ids, vocab, args.transpose)] for p in pool}
    probs = torch.zeros(len(pool), len(classes))
    for f in range(args.folds):
        train = [p for p in pool if fold[p.key] != f]
        held = [i for i, p in enumerate(pool) if fold[p.key] == f]
        model = fresh()
        train_head(model, [features[p.key] for p in train], [label[p.label] for p in train],
                   HeadTraining(epochs=args.head_epochs))
        probs[held] = head_probabilities(model, [features[pool[i].key][0] for i in held])
    labels = [label[p.label] for p in pool]
    keep, sub, sub_labels = among(probs, [p.label for p in pool], classes, major)
    print(f"{args.folds}-fold CV, {len(pool)} pieces, window {args.window}, layers {args.layers}, norm {args.norm}, "
          f"hidden {args.hidden}, transpose ±{args.transpose}, {args.head_epochs} head epochs: "
          f"top-1 {top_k_accuracy(probs, labels, 1):.1%} over {len(classes)} labels; "
          f"{len(major)} composers with >= {args.min_pieces} pieces ({len(keep)} pieces): "
          f"top-1 {top_k_accuracy(sub, sub_labels, 1):.1%}, top-3 {top_k_accuracy(sub, sub_labels, 3):.1%}")


if __name__ == "__main__":
    main()
