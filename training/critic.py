"""Train the critic: `clara judge train-critic`. Human or generated?

The human side is music the generator never trained on: the valid and test splits of the
corpus it was built from (a built corpus: every corpus in it, performances and rolls too; a
folder of files: the same stable hash `clara corpus` uses). The generated side is the generator
itself under the settings the critic will be used against: the shipped default sampling (the
config's, with its motif pull and loop guard) most often, and Clara's grid of temperature x
top-k x random_freq, each batch with its own seed. With a built corpus a batch continues a
prompt from a piece of the generator's train split — as live answers continue the player — so
the critic learns generated against human, not "began from silence" against "did not".

Both sides are split for the critic by item: a human *work* (all its pieces: ASAP has several
performances of one sonata), stratified by corpus, or a generation, stratified by setting; no
work and no generation seed is on two sides. The test figure is ROC AUC over excerpts of the
critic's window (how it is used: one answer at a time), overall, against each setting and for
each corpus's excerpts, and at the piece level (a piece's excerpts averaged).
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from clara_live.codec.vocabulary import Vocabulary
from clara_live.config import CorpusConfig, load_config
from clara_live.corpus import split_of
from clara_live.engine import build_engine
from clara_live.judge.classifier import Classifier
from clara_live.judge.data import split_pieces
from clara_live.judge.pieces import built_corpus, load_built, load_labelled
from clara_live.judge.predict import predict_pieces
from clara_live.judge.store import LoadedJudge, save_judge
from clara_live.model import load_model
from clara_live.sampling.sampler import Sampler
from clara_live.sampling.search import generate
from training.judge import JudgeTraining, train_judge

CLASSES = ["generated", "human"]  # the critic's probability of "human" is column 1
GRID = {f"T{t}-k{k}-rf{rf}": {"temperature": t, "event_temperature": 0.0, "key_pull": 0.0, "top_k": k,
                              "random_freq": rf}
        for t, k, rf in itertools.product((0.8, 1.0, 1.3), (5, 20, 0), (0.25, 0.5, 1.0))}
SETTINGS: dict[str, dict] = {"default": {}} | GRID  # "default": the config's sampling as shipped
# settings generations may name that training does not schedule: the default before the event temperature, the
# key pull and the loop guard at 1 (issue 25), what the shipped critic learned from
PROBES: dict[str, dict] = {"one-temperature": {"event_temperature": 0.0, "key_pull": 0.0, "max_repeats": 3}}
SCHEDULE = ["default"] * 4 + list(GRID)  # a batch per entry, cycled: the default a quarter of the time or so


@dataclasses.dataclass(frozen=True)
class Prompts:
    """What the generations continue: `tokens` tokens of one of `pieces` (id arrays over the
    generator's vocabulary), from a random place in a piece drawn at random for each batch."""

    pieces: Sequence[np.ndarray]
    tokens: int = 256


def generations(generator_dir: str | Path, count: int, tokens: int, burn_in: int = 64, batch: int = 16,
                seed: int = 0, prompts: Prompts | None = None,
                schedule: Sequence[str] = SCHEDULE) -> list[tuple[str, np.ndarray]]:
    """`count` generations of `tokens` tokens each, `batch` at a time, cycling through `schedule`
    (names in SETTINGS); keyed by seed, row and setting. Without prompts (or with none in them) a
    batch begins from silence and drops its first `burn_in` tokens; with prompts it continues one."""
    loaded = load_model(generator_dir)
    config = load_config()
    threads = torch.get_num_threads()
    try:
        engine = build_engine(loaded.model, config.inference)  # once: quantising it is the slow part
        rng = np.random.default_rng(seed)
        out = []
        for start in range(0, count, batch):
            name = schedule[(start // batch) % len(schedule)]
            sampling = dataclasses.replace(config.sampling, **(SETTINGS | PROBES)[name])
            sampler = Sampler(engine, loaded.vocabulary, loaded.codec, sampling, seed=seed + start)
            skip = _begin(sampler, prompts, burn_in, rng)
            sampler.expand(min(batch, count - start))
            for row, seq in enumerate(generate(sampler, max_tokens=skip + tokens)):
                key = f"generated/seed{seed + start}-{row}-{name}"
                out.append((key, sampler.vocab.ids(seq[skip:skip + tokens], key)))
        return out
    finally:  # the engine runs on inference.threads; training the critic afterwards wants them all
        torch.set_num_threads(threads)


def _begin(sampler: Sampler, prompts: Prompts | None, burn_in: int, rng: np.random.Generator) -> int:
    """Feeds a batch's start: a prompt drawn from prompts, or silence; returns the tokens to drop."""
    if prompts is not None and len(prompts.pieces):
        piece = prompts.pieces[int(rng.integers(len(prompts.pieces)))]
        at = int(rng.integers(0, max(1, len(piece) - prompts.tokens)))
        sampler.feed_ids(piece[at:at + prompts.tokens].tolist())  # already ids over the generator's vocabulary
        return 0
    sampler.feed(sampler.vocab.coder.silence(sampler.vocab.codec.wait_limit))
    return burn_in


def setting_of(key: str) -> str:
    """A generation's setting from its key ("generated/seed16-3-T0.8-k5-rf0.25" -> "T0.8-k5-rf0.25")."""
    return key.split("/", 1)[1].split("-", 2)[2]


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


def excerpts(ids: np.ndarray, window: int, count: int) -> list[np.ndarray]:
    """Up to `count` windows of a piece, evenly spread from its start to its end (the same every run)."""
    if len(ids) <= window:
        return [ids]
    starts = np.unique(np.linspace(0, len(ids) - window, count).round().astype(int))
    return [ids[s:s + window] for s in starts.tolist()]


def _human_side(corpus: list[str], loaded, log: Callable[[str], None]):
    """(pieces [(key, work, corpus, ids, file)], prompts, problems): the generator's held-out pieces,
    and with a built corpus its train pieces to prompt the generations."""
    if len(corpus) == 1 and built_corpus(corpus[0]):
        held = load_built(corpus[0], loaded.vocabulary, ("valid", "test"))
        prompts = [p.ids for p in load_built(corpus[0], loaded.vocabulary, ("train",))]
        return [(p.key, p.work, p.corpus, p.ids, p.source) for p in held], prompts, []
    pieces, problems = load_labelled(corpus, Vocabulary(loaded.vocabulary, loaded.codec))
    for problem in problems:
        log(f"skipped: {problem}")
    held = [(p.key, p.key, "", p.ids, p.source) for p in pieces if split_of(p.key, CorpusConfig()) != "train"]
    return held, [], problems


@dataclasses.dataclass(frozen=True)
class CriticOptions:
    """How `train_critic` trains (the `clara judge train-critic` flags): `count` generated excerpts;
    `epochs` of end-to-end training at `lr` on windows of `window` tokens, `per_piece` windows a
    piece an epoch, in batches of `batch_size`; tested on up to `test_excerpts` excerpts a piece."""

    count: int = 496
    window: int = 256
    epochs: int = 6
    per_piece: int = 4
    lr: float = 1e-3
    batch_size: int = 16
    seed: int = 0
    test_excerpts: int = 4


def train_critic(corpus: list[str], out: str | Path, generator: str | Path, options: CriticOptions = CriticOptions(),
                 *, log: Callable[[str], None] = print) -> dict:
    count, window, test_excerpts = options.count, options.window, options.test_excerpts
    loaded = load_model(generator)
    human, prompts, problems = _human_side(corpus, loaded, log)
    corpora = sorted({c for _, _, c, _, _ in human})
    log(f"{len(human)} human pieces the generator never trained on ({', '.join(corpora) or 'one folder'}); "
        f"generating {count} excerpts" + (f" continuing its {len(prompts)} train pieces" if prompts else ""))
    generated = generations(generator, count, window, seed=options.seed, prompts=Prompts(prompts))
    works = {group: c for _, group, c, _, _ in human}
    split_of_work = split_pieces([(group, c or "human") for group, c in works.items()])
    split = {key: split_of_work[group] for key, group, _, _, _ in human}
    split |= split_pieces([(key, setting_of(key)) for key, _ in generated])
    data = {key: (ids, 1, c) for key, _, c, ids, _ in human}
    data |= {key: (ids, 0, setting_of(key)) for key, ids in generated}
    part = {name: [k for k in data if split[k] == name] for name in ("train", "valid", "test")}
    log(", ".join(f"{name} {len(keys)}" for name, keys in part.items()))
    model = Classifier.from_generator(loaded.model, len(CLASSES))
    best = {"auc": -1.0, "state": None, "epoch": 0}

    def validate(epoch: int) -> None:
        value = judged(model, part["valid"], data, window, test_excerpts)["auc"] if part["valid"] else float("nan")
        log(f"  valid excerpt AUC {value:.3f}")
        if not value <= best["auc"]:  # nan (no valid split) keeps the latest
            best.update(auc=value, state=copy.deepcopy(model.state_dict()), epoch=epoch + 1)

    training = JudgeTraining(window=window, epochs=options.epochs, lr=options.lr, batch_size=options.batch_size,
                             seed=options.seed, per_piece=options.per_piece)
    history = train_judge(model, [data[k][0] for k in part["train"]], [data[k][1] for k in part["train"]],
                          training, log=log, after_epoch=validate)
    model.load_state_dict(best["state"])
    test = judged(model, part["test"], data, window, test_excerpts)
    metrics = {"test_auc": test["auc"], "test_piece_auc": test["piece_auc"], "test_items": len(part["test"]),
               "test_excerpts": test["excerpts"], "test_auc_by_setting": test["by_setting"],
               "test_auc_by_corpus": test["by_corpus"], "valid_auc": best["auc"], "best_epoch": best["epoch"],
               "train_loss": history}
    info = {"corpus": corpus, "generator": str(generator), "metrics": metrics, "generations": count,
            "settings": SETTINGS, "schedule": SCHEDULE, "prompted": bool(prompts), "window": window,
            "split": split, "sources": {key: source for key, _, _, _, source in human}, "skipped": problems}
    save_judge(out, LoadedJudge(model, "critic", CLASSES, loaded.codec, loaded.vocabulary, window, window // 2,
                                info))
    return metrics


def judged(model: Classifier, keys: list[str], data: dict, window: int, per_piece: int) -> dict:
    """ROC AUC of P(human) over excerpts of `window` tokens (up to `per_piece` a human piece; a
    generation is one), overall, human against each setting's generations and each corpus's
    human excerpts against all generations; and over pieces (a piece's excerpts averaged)."""
    rows = [(k, e) for k in keys for e in excerpts(data[k][0], window, per_piece)]
    if not rows:
        nan = float("nan")
        return {"auc": nan, "piece_auc": nan, "excerpts": 0, "by_setting": {}, "by_corpus": {}}
    p = predict_pieces(model, [e for _, e in rows], window, window)[:, 1].numpy()
    human = np.array([data[k][1] == 1 for k, _ in rows])
    group = np.array([data[k][2] for k, _ in rows])
    position = {k: i for i, k in enumerate(keys)}
    owner = np.array([position[k] for k, _ in rows])
    piece_p = np.array([p[owner == i].mean() for i in range(len(keys))])
    piece_human = np.array([data[k][1] == 1 for k in keys])
    by_setting = {s: auc(p[human | (group == s)], human[human | (group == s)])
                  for s in sorted(set(group[~human]))}
    by_corpus = {c: auc(p[~human | (group == c)], human[~human | (group == c)]) for c in sorted(set(group[human]))}
    return {"auc": auc(p, human), "piece_auc": auc(piece_p, piece_human), "excerpts": len(rows),
            "by_setting": by_setting, "by_corpus": by_corpus}
