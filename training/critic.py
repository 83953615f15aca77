"""Train the critic: `clara judge train-critic`. Human or generated?

Human excerpts come from pieces the generator never trained on (its corpus's valid and test
splits, by the same stable hash `clara corpus` uses); generated ones from the generator itself
under varied sampling settings (temperature, top-k, random_freq), each generation with its own
seed. Both sides are split for the critic by item — a human piece, or a generation — so no
piece and no generation seed is on two sides. The test figure is ROC AUC at the piece level.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
from collections.abc import Callable
from pathlib import Path

import numpy as np

from clara_live.config import CorpusConfig, load_config
from clara_live.corpus import split_of
from clara_live.engine import build_engine
from clara_live.judge.classifier import Classifier
from clara_live.judge.data import split_pieces
from clara_live.judge.pieces import load_labelled
from clara_live.judge.store import LoadedJudge, save_judge
from clara_live.model import load_model
from clara_live.model.evaluate import token_ids
from clara_live.sampling.sampler import Sampler
from clara_live.sampling.search import generate
from training.judge import predict_pieces, train_judge

CLASSES = ["generated", "human"]  # the critic's probability of "human" is column 1
SETTINGS = list(itertools.product((0.8, 1.0, 1.3), (5, 20, 0), (0.25, 0.5, 1.0)))  # temperature, top_k, random_freq


def generations(generator_dir: str | Path, count: int, tokens: int, burn_in: int = 64, batch: int = 16,
                seed: int = 0) -> list[tuple[str, np.ndarray]]:
    """`count` generations of `tokens` tokens each (after `burn_in` tokens from silence, dropped),
    cycling through SETTINGS; keyed by their seed and settings."""
    loaded = load_model(generator_dir)
    config = load_config()
    index = {t: i for i, t in enumerate(loaded.vocabulary)}
    engine = build_engine(loaded.model, config.inference)  # once: quantising it is the slow part
    out = []
    for start in range(0, count, batch):
        k = min(batch, count - start)
        temperature, top_k, random_freq = SETTINGS[(start // batch) % len(SETTINGS)]
        sampling = dataclasses.replace(config.sampling, temperature=temperature, top_k=top_k,
                                       random_freq=random_freq)
        sampler = Sampler(engine, loaded.vocabulary, loaded.codec, sampling, seed=seed + start)
        sampler.feed([f"wait{loaded.codec.wait_limit}"] if loaded.codec.encoding == "notewise" else
                     [t for t in loaded.vocabulary if "rest0" in t][:1])
        sampler.expand(k)
        for row, seq in enumerate(generate(sampler, max_tokens=burn_in + tokens)):
            key = f"generated/seed{seed + start}-{row}-T{temperature}-k{top_k}-rf{random_freq}"
            out.append((key, token_ids(seq[burn_in:burn_in + tokens], index, None, key)))
    return out


def auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """ROC AUC: the chance a random positive outscores a random negative (ties count half)."""
    pos, neg = scores[positive], scores[~positive]
    if not len(pos) or not len(neg):
        return float("nan")
    ranks = _ranks(np.concatenate([pos, neg]))
    return float((ranks[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def _ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(1, len(values) + 1)
    for value in np.unique(values):  # ties share their mean rank
        same = values == value
        ranks[same] = ranks[same].mean()
    return ranks


def train_critic(corpus: list[str], out: str | Path, generator: str | Path, *, count: int = 480, window: int = 256,
                 epochs: int = 6, per_piece: int = 4, lr: float = 1e-3, batch_size: int = 16, seed: int = 0,
                 log: Callable[[str], None] = print) -> dict:
    loaded = load_model(generator)
    pieces, problems = load_labelled(corpus, loaded.codec, loaded.vocabulary)
    for problem in problems:
        log(f"skipped: {problem}")
    held_out = [p for p in pieces if split_of(p.key, CorpusConfig()) != "train"]
    log(f"{len(held_out)} human pieces the generator never trained on; generating {count} excerpts")
    generated = generations(generator, count, window, seed=seed)
    items = [(p.key, "human") for p in held_out] + [(key, "generated") for key, _ in generated]
    split = split_pieces(items)
    data = {p.key: (p.ids, 1) for p in held_out} | {key: (ids, 0) for key, ids in generated}
    part = {name: [k for k, _ in items if split[k] == name] for name in ("train", "valid", "test")}
    log(", ".join(f"{name} {len(keys)}" for name, keys in part.items()))
    model = Classifier.from_generator(loaded.model, len(CLASSES))
    best = {"auc": -1.0, "state": None, "epoch": 0}

    def score(keys: list[str]) -> float:
        probs = predict_pieces(model, [data[k][0] for k in keys], window, window // 2)[:, 1].numpy()
        return auc(probs, np.array([data[k][1] == 1 for k in keys]))

    def validate(epoch: int) -> None:
        value = score(part["valid"]) if part["valid"] else float("nan")
        log(f"  valid AUC {value:.3f}")
        if not value <= best["auc"]:  # nan (no valid split) keeps the latest
            best.update(auc=value, state=copy.deepcopy(model.state_dict()), epoch=epoch + 1)

    history = train_judge(model, [data[k][0] for k in part["train"]], [data[k][1] for k in part["train"]],
                          window=window, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed,
                          per_piece=per_piece, log=log, after_epoch=validate)
    model.load_state_dict(best["state"])
    metrics = {"test_auc": score(part["test"]), "test_items": len(part["test"]), "valid_auc": best["auc"],
               "best_epoch": best["epoch"], "train_loss": history}
    info = {"corpus": corpus, "generator": str(generator), "metrics": metrics, "generations": count,
            "settings": SETTINGS, "split": split, "skipped": problems}
    save_judge(out, LoadedJudge(model, "critic", CLASSES, loaded.codec, loaded.vocabulary, window, window // 2,
                                info))
    return metrics
