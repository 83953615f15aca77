"""Learn how clara_live.beat.choice ranks its tempo candidates.

Data (training/tempo_data.py): ASAP's performance openings (rubato), POP909's steady melodies
(each train song's opening and up to POP909_WINDOWS - 1 later phrases, 20 s apart: 2,901 train
phrases where the openings alone were 595; valid and test songs their openings only) and
synthetic steady phrases, each split by work; a quarter of the steady phrases are
heard without their velocities (a keyboard without velocity) and a quarter without their
pitches, so that neither is needed to choose. Each phrase is heard twice: from the first guess
100 bpm (a fresh session, `clara live`'s default) and from the previous phrase's tempo (the
truth moved by up to 3 %, as a second phrase at one tempo is heard, or one time in four by
5-15 %, a player who changed tempo); with --guessed (issue 23's third round, not what the
shipped ranker learned from) also from a first guess that is not a heard tempo, log-uniform in
60-180 bpm (a player's own `--bpm`; always described and cached). Every candidate of every
phrase is described by beat_choice.FEATURES; a candidate within 4 % of the truth is right.

The ranker is a one-hidden-layer network scoring each candidate; a softmax over a phrase's
candidates is trained to put its mass on the right ones (listwise; Adam, full batch), each set
weighing the same. Its size and L2 penalty are chosen on the valid works by the mean of the sets'
Acc1 (each scenario); with --cv, by that mean where each set and scenario's Acc1 pools valid's
phrases with the train openings, each scored by a 3-fold cross-validation by work (less noisy
than valid's 59-100 phrases a set alone); test is never read here (its
phrases are not even described). The features are cached in OUT/features.npz (plain arrays) so
that a second run only fits.

    python -m training.tempo_choice --out ~/.cache/clara-live/runs/tempo-choice   # the shipped ranker's recipe
    python -m training.tempo_choice --out ~/.cache/clara-live/runs/tempo-choice --cv [--guessed]
    cp ~/.cache/clara-live/runs/tempo-choice/choice.json trained_models/beat/
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import torch

from clara_live.atomic import write_text
from clara_live.beat import choice as beat_choice
from clara_live.beat.limits import MAX_BPM, MIN_BPM
from training import tempo_data

FRESH = 100.0  # the first guess of a fresh session
SECOND = 0.03  # a second phrase's first guess: the truth moved by up to this share ...
CHANGED = 0.25  # ... or, this often, by 5-15 % (the player changed tempo between the phrases)
CHOICES = ((8, 1e-3), (16, 1e-4), (16, 1e-3), (32, 1e-3), (32, 1e-2))  # (hidden units, L2), chosen on valid
EPOCHS = 600
POP909_WINDOWS = 5  # phrases from each POP909 train song (its opening and later ones)
SCENARIOS = ("fresh", "second", "guessed")
GUESSED = (60.0, 180.0)  # "guessed": a first guess that is not a heard tempo (clara live --bpm), log-uniform in these
FOLDS = 3  # cross-validation by work on the train phrases



def _describe_one(item: tuple[int, dict]) -> list[tuple]:
    """One phrase's scenarios: (kind, split, scenario, prior, truth, [(features, right, bpm)...])."""
    index, phrase = item
    rng = np.random.default_rng(index)
    if phrase["kind"] != "asap" and index % 4 == 1:
        phrase = {**phrase, "velocities": None}  # a keyboard without velocity (every note 64)
    if phrase["kind"] != "asap" and index % 4 == 2:
        phrase = {**phrase, "pitches": None}  # onsets and velocities only (read as middle C)
    out = []
    for scenario in SCENARIOS:
        # a second phrase: mostly at the tempo heard before, but a player may have moved it
        moved = float(rng.uniform(1 - SECOND, 1 + SECOND)) if rng.random() >= CHANGED \
            else float(rng.choice([-1.0, 1.0]) * rng.uniform(0.05, 0.15) + 1.0)
        prior = {"fresh": FRESH, "second": phrase["bpm"] * moved,
                 "guessed": float(np.exp(rng.uniform(*np.log(GUESSED))))}[scenario]
        prior = min(MAX_BPM, max(MIN_BPM, prior))
        heard = beat_choice.listen(phrase["onsets"], phrase["velocities"], prior, phrase["pitches"])
        found = beat_choice.candidates(heard) if heard is not None else []
        x = beat_choice.features(heard, found, scenario == "second") if found else []
        rows = [(x[i], tempo_data.hit(60.0 / c.period, phrase["bpm"]), 60.0 / c.period) for i, c in enumerate(found)]
        out.append((phrase["kind"], phrase["split"], scenario, prior, phrase["bpm"], "@" not in phrase["name"],
                    phrase["work"], rows))
    return out


def describe(phrases: list[dict], workers: int = 1) -> dict[str, np.ndarray]:
    """Every candidate's features, flat, with the index of its phrase-scenario (a group), whether
    it is right, its bpm; and per group the phrase's set, split, scenario and work, the prior, the
    truth and whether the phrase is an opening (not a later window of a POP909 song). Test phrases
    are left out (never read here). A phrase's second-phrase prior is drawn from its own seed (its
    place among all the phrases, test included: the same whatever the workers)."""
    slim = [(i, {k: p[k] for k in ("kind", "split", "bpm", "onsets", "velocities", "pitches", "name", "work")})
            for i, p in enumerate(phrases) if p["split"] != "test"]
    if workers > 1:
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            described = pool.map(_describe_one, slim, chunksize=16)
    else:
        described = [_describe_one(item) for item in slim]
    x, group, right, bpm, meta = [], [], [], [], []
    for scenarios in described:
        for kind, split, scenario, prior, truth, opening, work, rows in scenarios:
            for features, ok, candidate_bpm in rows:
                x.append(features)
                group.append(len(meta))
                right.append(ok)
                bpm.append(candidate_bpm)
            meta.append((kind, split, scenario, prior, truth, opening, work))
    kinds, splits, scenarios_, priors, truths, openings, works = zip(*meta, strict=True)
    return {"x": np.array(x, dtype=np.float64).reshape(-1, len(beat_choice.FEATURES)),
            "group": np.array(group, dtype=np.int64), "right": np.array(right, dtype=bool),
            "bpm": np.array(bpm), "kind": np.array(kinds), "split": np.array(splits),
            "scenario": np.array(scenarios_), "prior": np.array(priors), "truth": np.array(truths),
            "opening": np.array(openings, dtype=bool), "work": np.array(works),
            "features": np.array(beat_choice.FEATURES)}


def fit(data: dict[str, np.ndarray], hidden: int, penalty: float, mean: np.ndarray, scale: np.ndarray,
        epochs: int = EPOCHS, seed: int = 0) -> beat_choice.Ranker:
    """A ranker (one hidden tanh layer) over the standardised features, trained on the train groups."""
    torch.manual_seed(seed)
    train = data["split"][data["group"]] == "train"
    groups = data["group"][train]
    # groups with no right candidate teach nothing (counted as misses when scored)
    useful = np.zeros(len(data["split"]), dtype=bool)
    np.logical_or.at(useful, groups, data["right"][train])
    keep = useful[groups]
    groups, ids = np.unique(groups[keep], return_inverse=True)
    x = torch.tensor((data["x"][train][keep] - mean) / scale, dtype=torch.float32)
    right = torch.tensor(data["right"][train][keep], dtype=torch.float32)
    seg = torch.tensor(ids)
    kinds = data["kind"][groups]
    share = {k: float(np.mean(kinds == k)) for k in set(kinds.tolist())}
    weight = torch.tensor([1.0 / (len(share) * share[k]) for k in kinds], dtype=torch.float32)
    layer, out = torch.nn.Linear(x.shape[1], hidden), torch.nn.Linear(hidden, 1, bias=False)  # a softmax ignores a bias
    optimiser = torch.optim.Adam([*layer.parameters(), *out.parameters()], lr=0.01, weight_decay=penalty)
    n = len(groups)
    for _ in range(epochs):
        s = out(torch.tanh(layer(x))).squeeze(1)
        top = torch.zeros(n).scatter_reduce(0, seg, s.detach(), "amax", include_self=False)
        z = torch.exp(s - top[seg])
        total = torch.zeros(n).index_add(0, seg, z)
        good = torch.zeros(n).index_add(0, seg, z * right)
        loss = -(weight * (torch.log(good + 1e-12) - torch.log(total))).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return beat_choice.Ranker(mean, scale, layer.weight.detach().double().numpy(),
                              layer.bias.detach().double().numpy(), out.weight.detach().double().numpy()[0])


def chosen(data: dict[str, np.ndarray], ranker: beat_choice.Ranker) -> np.ndarray:
    """Each group's chosen bpm (its prior where it has no candidate)."""
    out = data["prior"].copy()
    best = np.full(len(out), -np.inf)
    scores = ranker.scores(data["x"])
    for i, (g, s) in enumerate(zip(data["group"].tolist(), scores.tolist(), strict=True)):
        if s > best[g]:
            best[g], out[g] = s, data["bpm"][i]
    return out


def table(data: dict[str, np.ndarray], bpm: np.ndarray, split: str) -> dict[str, dict[str, float]]:
    """Acc1 per set and scenario on a split's openings (a POP909 train song's later phrases are
    for learning only)."""
    out = {}
    for kind in sorted(set(data["kind"].tolist())):
        for scenario in SCENARIOS:
            mask = (data["kind"] == kind) & (data["scenario"] == scenario) & (data["split"] == split) & data["opening"]
            if mask.any():
                acc1 = np.abs(bpm[mask] / data["truth"][mask] - 1) <= tempo_data.TOLERANCE
                out[f"{kind}/{scenario}"] = {"phrases": int(mask.sum()), "acc1": float(acc1.mean())}
    return out


def cross_validate(data: dict[str, np.ndarray], hidden: int, penalty: float, folds: int = FOLDS
                   ) -> dict[str, dict[str, float]]:
    """Acc1 per set and scenario on the train openings, each scored by a ranker fitted on the
    other folds' works (a work's phrases all in one fold: zlib.crc32 of its name): less noisy
    than valid's 59-100 phrases a set."""
    fold = np.array([zlib.crc32(w.encode()) % folds for w in data["work"].tolist()])
    train = data["split"] == "train"
    bpm = data["prior"].copy()
    for k in range(folds):
        split = np.where(train & (fold != k), "train", np.where(train, "held", "other"))
        part = {**data, "split": split}
        inside = split[data["group"]] == "train"
        mean, scale = data["x"][inside].mean(axis=0), data["x"][inside].std(axis=0) + 1e-6
        ranker = fit(part, hidden, penalty, mean, scale)
        held = split == "held"
        bpm[held] = chosen(part, ranker)[held]
    return table({**data, "split": np.where(train, "cv", "other")}, bpm, "cv")


def only(data: dict[str, np.ndarray], scenarios: tuple[str, ...]) -> dict[str, np.ndarray]:
    """`describe`'s data keeping only the phrase-scenarios of these scenarios (and their candidates)."""
    keep = np.isin(data["scenario"], scenarios)
    new_id = np.cumsum(keep) - 1
    rows = keep[data["group"]]
    per_group = {k: v[keep] for k, v in data.items() if k in ("kind", "split", "scenario", "prior", "truth", "opening",
                                                              "work")}
    per_row = {k: data[k][rows] for k in ("x", "right", "bpm")}
    return {**data, **per_group, **per_row, "group": new_id[data["group"][rows]]}


def reachable(data: dict[str, np.ndarray], split: str = "valid") -> dict[str, float]:
    """Per set and scenario, the share of a split's phrases whose candidates hold a right one:
    the most any ranker can reach."""
    right = np.zeros(len(data["split"]), dtype=bool)
    np.logical_or.at(right, data["group"], data["right"])
    out = {}
    for kind in sorted(set(data["kind"].tolist())):
        for scenario in SCENARIOS:
            mask = (data["kind"] == kind) & (data["scenario"] == scenario) & (data["split"] == split)
            if mask.any():
                out[f"{kind}/{scenario}"] = float(right[mask].mean())
    return out


def features_cached(cache: Path, pop909_windows: int, workers: int = 1) -> dict[str, np.ndarray]:
    """`describe` of every set, kept in `cache`: read back where it holds every one of FEATURES
    (its columns picked by name) and as many POP909 windows, else described again (~5 min)."""
    if cache.exists():
        with np.load(cache, allow_pickle=False) as f:
            data = {k: f[k] for k in f.files}
        names = data.get("features", np.array([])).tolist()
        if set(beat_choice.FEATURES) <= set(names) and int(data.get("pop909_windows", 1)) == pop909_windows:
            data["x"] = data["x"][:, [names.index(n) for n in beat_choice.FEATURES]]
            return data
    began = time.perf_counter()
    data = describe(tempo_data.all_sets(pop909_windows=pop909_windows), workers)
    data["pop909_windows"] = np.array(pop909_windows)
    np.savez(cache, **data)
    print(f"described {len(data['split'])} phrase-scenarios, {len(data['x'])} candidates in "
          f"{time.perf_counter() - began:.0f} s", file=sys.stderr)
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="a folder for the features, metrics and choice.json")
    parser.add_argument("--pop909-windows", type=int, default=POP909_WINDOWS,
                        help="phrases from each POP909 train song: its opening and up to N-1 later ones")
    parser.add_argument("--workers", type=int, default=1, help="processes describing the phrases (default 1)")
    parser.add_argument("--guessed", action="store_true",
                        help="learn from the 'guessed' scenario too (a first guess that is not a heard tempo, "
                             "log-uniform in 60-180 bpm); the shipped ranker did not")
    parser.add_argument("--cv", action="store_true",
                        help=f"choose by Acc1 on valid pooled with {FOLDS}-fold cross-validation's by work on train")
    parser.add_argument("--choice", type=lambda v: (int(v.split(",")[0]), float(v.split(",")[1])),
                        help="fit only this (hidden units, L2), e.g. 16,1e-3, instead of trying CHOICES")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    data = features_cached(args.out / "features.npz", args.pop909_windows, args.workers)
    if not args.guessed:
        data = only(data, ("fresh", "second"))
    print("the candidates hold the truth (valid): " + " ".join(f"{k} {v:.3f}" for k, v in reachable(data).items()))
    train = data["split"][data["group"]] == "train"
    mean, scale = data["x"][train].mean(axis=0), data["x"][train].std(axis=0) + 1e-6
    results = []
    for hidden, penalty in CHOICES if args.choice is None else [args.choice]:
        ranker = fit(data, hidden, penalty, mean, scale)
        valid = table(data, chosen(data, ranker), "valid")
        score = float(np.mean([v["acc1"] for v in valid.values()]))
        line = f"hidden {hidden}, L2 {penalty:g}: valid mean Acc1 {score:.3f} " + \
            " ".join(f"{k} {v['acc1']:.3f}" for k, v in valid.items())
        folds = None
        if args.cv:  # valid's phrases and the cross-validated train openings pooled: each set and scenario's Acc1
            folds = cross_validate(data, hidden, penalty)
            score = float(np.mean([(valid[k]["acc1"] * valid[k]["phrases"] + v["acc1"] * v["phrases"])
                                   / (valid[k]["phrases"] + v["phrases"]) for k, v in folds.items()]))
            line += f"; cross-validated on train {np.mean([v['acc1'] for v in folds.values()]):.3f} " + \
                " ".join(f"{k} {v['acc1']:.3f}" for k, v in folds.items()) + f"; pooled {score:.3f}"
        print(line, flush=True)
        results.append((score, hidden, penalty, ranker, valid, folds))
    score, hidden, penalty, ranker, valid, folds = max(results, key=lambda r: r[0])
    write_text(args.out / "choice.json", json.dumps({
        "features": list(beat_choice.FEATURES), "hidden": hidden,
        **{k: getattr(ranker, k).tolist() for k in ("mean", "scale", "hidden_weight", "hidden_bias", "out_weight")},
        "penalty": penalty, "valid": valid, **({"cross_validated": folds} if folds else {})}) + "\n")
    print(f"chose hidden {hidden}, L2 {penalty:g} (score {score:.3f}); wrote {args.out / 'choice.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
