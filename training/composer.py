"""Train the composer classifier: `clara judge train-composer`.

The generator's encoder learns to name a passage's composer: labelled pieces from a corpus
folder (composer = folder), split by piece and stratified by composer, windows drawn afresh
each epoch, the best epoch on the valid split kept, and the test split reported at the piece
level (a piece's windows averaged): top-1 and top-3, for all composers and for those with at
least `min_pieces` pieces, with confusion-matrix PNGs.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from clara_live.judge.classifier import Classifier
from clara_live.judge.data import split_pieces
from clara_live.judge.pieces import load_labelled
from clara_live.judge.store import LoadedJudge, save_judge
from clara_live.model import load_model
from training.judge import confusion, predict_pieces, top_k_accuracy, train_judge


def train_composer(corpus: list[str], out: str | Path, generator: str | Path, *, epochs: int = 8, window: int = 256,
                   stride: int = 128, per_piece: int = 4, lr: float = 1e-3, batch_size: int = 16, seed: int = 0,
                   min_pieces: int = 10, log: Callable[[str], None] = print) -> dict:
    loaded = load_model(generator)
    pieces, problems = load_labelled(corpus, loaded.codec, loaded.vocabulary)
    for problem in problems:
        log(f"skipped: {problem}")
    classes = sorted({p.label for p in pieces})
    if len(classes) < 2:
        raise ValueError(f"{', '.join(corpus)}: a composer classifier needs at least two composers (folders)")
    split = split_pieces([(p.key, p.label) for p in pieces])
    part = {name: [p for p in pieces if split[p.key] == name] for name in ("train", "valid", "test")}
    log(f"{len(pieces)} pieces by {len(classes)} composers: " +
        ", ".join(f"{name} {len(ps)}" for name, ps in part.items()))
    model = Classifier.from_generator(loaded.model, len(classes))
    label = {c: i for i, c in enumerate(classes)}
    valid_ids = [p.ids for p in part["valid"]]
    valid_labels = [label[p.label] for p in part["valid"]]
    best = {"top1": -1.0, "state": None, "epoch": 0}

    def validate(epoch: int) -> None:
        if not valid_ids:  # too few pieces for a valid split: the last epoch is kept
            best.update(state=copy.deepcopy(model.state_dict()), epoch=epoch + 1)
            return
        probs = predict_pieces(model, valid_ids, window, stride)
        top1 = top_k_accuracy(probs, valid_labels, 1)
        log(f"  valid piece top-1 {top1:.3f}")
        if top1 > best["top1"]:
            best.update(top1=top1, state=copy.deepcopy(model.state_dict()), epoch=epoch + 1)

    history = train_judge(model, [p.ids for p in part["train"]], [label[p.label] for p in part["train"]],
                          window=window, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed,
                          per_piece=per_piece, log=log, after_epoch=validate)
    model.load_state_dict(best["state"])
    counts = Counter(p.label for p in pieces)
    major = [c for c in classes if counts[c] >= min_pieces]
    test_labels = [label[p.label] for p in part["test"]]
    probs = predict_pieces(model, [p.ids for p in part["test"]], window, stride)
    keep = [i for i, p in enumerate(part["test"]) if p.label in major]
    sub = probs[keep][:, [label[c] for c in major]]  # among the major composers only
    sub_labels = [major.index(part["test"][i].label) for i in keep]
    measured = len(major) >= 2 and bool(keep)
    metrics = {
        "test_pieces": len(part["test"]), "top1": top_k_accuracy(probs, test_labels, 1),
        "top3": top_k_accuracy(probs, test_labels, 3), "major_composers": major, "major_test_pieces": len(keep),
        "major_top1": top_k_accuracy(sub, sub_labels, 1) if measured else None,
        "major_top3": top_k_accuracy(sub, sub_labels, 3) if measured else None,
        "best_epoch": best["epoch"], "valid_top1": best["top1"], "train_loss": history,
    }
    out = Path(out)
    info = {"corpus": corpus, "generator": str(generator), "metrics": metrics, "epochs": epochs,
            "per_piece": per_piece, "split": {p.key: split[p.key] for p in pieces}, "skipped": problems}
    save_judge(out, LoadedJudge(model, "composer", classes, loaded.codec, loaded.vocabulary, window, stride, info))
    _draw_confusion(confusion(probs, test_labels, len(classes)), classes, out / "confusion.png",
                    f"composer, test pieces (top-1 {metrics['top1']:.0%})")
    if measured:
        _draw_confusion(confusion(sub, sub_labels, len(major)), major, out / "confusion-major.png",
                        f"{len(major)} composers with >= {min_pieces} pieces (top-1 {metrics['major_top1']:.0%})")
    return metrics


def _draw_confusion(matrix, names: list[str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from clara_live.atomic import atomic_open

    fig, ax = plt.subplots(figsize=(1 + 0.45 * len(names), 1 + 0.45 * len(names)))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    for i in range(len(names)):
        for j in range(len(names)):
            if matrix[i, j]:
                ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=6)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=8)
    fig.tight_layout()
    with atomic_open(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=120)
    plt.close(fig)
