"""Train a model's touch head alone, the LSTM and token layers frozen (issue 24).

A binned head cannot learn the exact values that the corpora hold often: an onset exactly on its
step, a strike at exactly the previous strike's velocity or offset (model/touch.py, formats 2 and
3). This grows a model's head to `--format` 2 or 3 (the bins' rows copied, the exact classes and
the previous strike's inputs fresh; or keeps format 1, a control that trains the old head the same
way) and trains only the head, on what the frozen model gives at each known strike of the corpus's
train pieces.

The frozen model is run once, forward only (torch.no_grad, eval mode, one thread), over the first
`--tokens` tokens of `--pieces` train pieces a corpus that carry touch (and `--valid-pieces` valid
ones); what the head reads at each known strike (the last layer's output, the struck token, the
running level and the previous strike over the whole piece so far) is kept in OUT/strikes.pt, so a
second run on the same pieces trains at once. The head then trains for `--epochs` passes over the
train strikes (Adam), and the epoch with the fewest valid touch bits a strike (velocity + offset,
over the values as `clara evaluate` counts them, corpora weighed equally) is saved as a model folder
(OUT/weights.pt, OUT/config.json, the base's everything else, and its splits.json). Test is never read here.

    OMP_NUM_THREADS=1 python -m training.touch_head --model ~/.cache/clara-live/runs/joint1-e1 \\
        --corpus ~/.cache/clara-live/corpora/joint --out ~/.cache/clara-live/runs/touch-exact-1
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from clara_live.corpus.built import BuiltCorpus
from clara_live.model import load_model
from clara_live.model.awd_lstm import AWDLSTM
from clara_live.model.store import save_model
from clara_live.model.touch import (
    EXTRA_CLASSES,
    OFFSET_BINS,
    OFFSET_WIDTHS,
    PREVIOUS_FEATURES,
    VELOCITY_BINS,
    exact_value_bits,
    level_features,
    previous_features,
    previous_strike,
    targets,
    touch_loss,
    value_bits,
    value_log_probs,
    velocity_width,
)

CHUNK = 256  # tokens per frozen forward
BATCH = 16  # pieces run side by side
STRIKES_FILE = "strikes.pt"
CACHE_VERSION = 2  # 2: `previous` holds the previous strike's velocity and offset


def grow(model: AWDLSTM, format: int) -> AWDLSTM:
    """The model with a touch head of `format`: every weight copied; from format 1 to 2 or 3 the head's
    first layer gains zero columns for the previous strike (so it reads the bins as before) and its
    last layer gains the exact classes' rows, fresh (zero: their logits start at 0)."""
    if model.touch is None:
        raise SystemExit("the model has no touch head (model.touch is false): train one with `clara train` first")
    old = model.touch.format
    if old == format:
        return model
    if old != 1:
        raise SystemExit(f"cannot grow a touch head of format {old} to {format}")
    grown = AWDLSTM(model.vocab_size, dataclasses.replace(model.config, touch_format=format))
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("touch.head.")}
    missing, unexpected = grown.load_state_dict(state, strict=False)
    assert not unexpected and all(k.startswith("touch.head.") for k in missing), (missing, unexpected)
    with torch.no_grad():
        first, last = grown.touch.head[0], grown.touch.head[2]
        first.weight.zero_()
        first.weight[:, :-PREVIOUS_FEATURES[format]] = model.touch.head[0].weight
        first.bias.copy_(model.touch.head[0].bias)
        offsets = VELOCITY_BINS + EXTRA_CLASSES[format][0]  # where the offset logits start
        rows = [*range(VELOCITY_BINS), *range(offsets, offsets + OFFSET_BINS)]  # the bins
        last.weight.zero_(), last.bias.zero_()
        last.weight[rows] = model.touch.head[2].weight
        last.bias[rows] = model.touch.head[2].bias
    return grown.eval()


def chosen_pieces(corpus: BuiltCorpus, split: str, vocabulary: list[str], per_corpus: int, tokens: int,
                  seed: int) -> list[tuple[str, np.ndarray]]:
    """(corpus name, the first `tokens` tokens of a piece (tokens, 3)) for `per_corpus` pieces that
    carry touch, drawn at random from each corpus of the split."""
    pieces = corpus.pieces(split, vocabulary, touch=True)
    entries = sorted((p for p in corpus.manifest["pieces"] if p["split"] == split), key=lambda p: p["line"])
    by_corpus: dict[str, list[np.ndarray]] = defaultdict(list)
    for entry, piece in zip(entries, pieces, strict=True):
        if entry.get("touch"):
            by_corpus[entry["corpus"] or "(files)"].append(piece)
    rng = np.random.default_rng(seed)
    out = []
    for name, group in sorted(by_corpus.items()):
        for i in rng.permutation(len(group))[:per_corpus]:
            out.append((name, group[i][:tokens]))
    return out


@torch.no_grad()
def strikes(model: AWDLSTM, pieces: list[tuple[str, np.ndarray]]) -> dict[str, torch.Tensor]:
    """What the head reads at each known strike of the pieces, and what is struck: `output` (n, emb),
    `struck` ids, `velocity`, `offset` (hundredths) and `previous` (the last known strike before,
    (n, 2), velocity 0: none), `level` (n, LEVEL_FEATURES) and `corpus` (an index into `names`)."""
    model.eval()
    names = sorted({name for name, _ in pieces})
    kept: dict[str, list[torch.Tensor]] = defaultdict(list)
    order = sorted(range(len(pieces)), key=lambda i: len(pieces[i][1]))
    for start in range(0, len(order), BATCH):
        group = [pieces[i] for i in order[start:start + BATCH]]
        length = max(len(p) for _, p in group)
        table = torch.zeros(len(group), length, 3, dtype=torch.long)
        for row, (_, piece) in enumerate(group):
            table[row, :len(piece)] = torch.as_tensor(piece)
        level = level_features(table[..., 1], table[..., 2])  # over the whole piece so far, as the sampler's
        previous = previous_strike(table[..., 1], table[..., 2])
        hidden = model.init_hidden(len(group))
        for t in range(0, length - 1, CHUNK):
            inputs = table[:, t:t + CHUNK][:, :table[:, t + 1:t + 1 + CHUNK].size(1)]
            outputs, hidden = model.encode(inputs[..., 0], hidden, touch=(inputs[..., 1], inputs[..., 2]))
            after = table[:, t + 1:t + 1 + inputs.size(1)]
            known = after[..., 1] > 0  # padding is 0: never a strike
            span = slice(t, t + inputs.size(1))
            kept["output"].append(outputs[-1][known])
            kept["struck"].append(after[..., 0][known])
            kept["velocity"].append(after[..., 1][known])
            kept["offset"].append(after[..., 2][known])
            kept["previous"].append(previous[:, span][known])
            kept["level"].append(level[:, span][known])
            corpus = torch.tensor([names.index(name) for name, _ in group]).view(-1, 1).expand_as(known)
            kept["corpus"].append(corpus[known])
        print(f"  {min(start + BATCH, len(order))}/{len(order)} pieces", file=sys.stderr, flush=True)
    return {**{k: torch.cat(v) for k, v in kept.items()}, "names": names}


def bits(model: AWDLSTM, data: dict, rows: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Velocity and offset bits of each strike (or of `rows`) under the model's head."""
    pick = (lambda x: x) if rows is None else (lambda x: x[rows])
    previous = pick(data["previous"])
    head = model.touch
    features = pick(data["level"]) if head.format == 1 else torch.cat([pick(data["level"]),
                                                                       previous_features(previous, head.format)], -1)
    v_logits, o_logits = head.logits(pick(data["output"]), model.embed(pick(data["struck"])), features)
    velocity, offset = pick(data["velocity"]), pick(data["offset"])
    if head.format > 1:
        return exact_value_bits(*value_log_probs(v_logits, o_logits, previous), velocity, offset, previous)
    v_log, o_log = value_log_probs(v_logits, o_logits)
    v_target, o_target = targets(velocity, offset)
    return (value_bits(v_log, v_target, velocity_width(v_target).float()),
            value_bits(o_log, o_target, OFFSET_WIDTHS[o_target].float()))


@torch.no_grad()
def valid_report(model: AWDLSTM, data: dict) -> dict:
    """Bits a strike per corpus (velocity, offset) and their mean over corpora (`touch_bits`)."""
    model.eval()
    velocity, offset = bits(model, data)
    rows = {}
    for i, name in enumerate(data["names"]):
        mine = data["corpus"] == i
        rows[name] = {"velocity_bits": velocity[mine].mean().item(), "offset_bits": offset[mine].mean().item(),
                      "strikes": int(mine.sum())}
    mean = float(np.mean([r["velocity_bits"] + r["offset_bits"] for r in rows.values()]))
    return {"touch_bits": mean, "corpora": rows}


def train(model: AWDLSTM, train_data: dict, valid_data: dict, epochs: int, lr: float, batch: int, seed: int,
          log=print) -> tuple[dict, dict, list[dict]]:
    """Train model.touch.head on the train strikes; (the best epoch's head state, its valid report, the
    history). Epoch 0 is the head as given."""
    for p in model.parameters():
        p.requires_grad_(False)
    head = model.touch.head
    for p in head.parameters():
        p.requires_grad_(True)
    optimiser = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=0.01)
    generator = torch.Generator().manual_seed(seed)
    struck = model.embed(train_data["struck"]).detach()  # the frozen embedding, looked up once
    n = len(train_data["velocity"])
    format = model.touch.format
    previous = train_data["previous"] if format > 1 else None
    features = train_data["level"] if previous is None else torch.cat([train_data["level"],
                                                                       previous_features(previous, format)], -1)
    v_target, o_target = targets(train_data["velocity"], train_data["offset"], previous, format == 3)
    report = valid_report(model, valid_data)
    best = ({k: v.clone() for k, v in head.state_dict().items()}, report)
    history = [{"epoch": 0, **report}]
    log(f"epoch 0: valid {report['touch_bits']:.4f} bits a strike (velocity + offset, mean over corpora)")
    steps = epochs * ((n + batch - 1) // batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=lr, total_steps=max(steps, 1), pct_start=0.1)
    for epoch in range(1, epochs + 1):
        head.train()
        started, total = time.time(), 0.0
        for rows in torch.randperm(n, generator=generator).split(batch):
            v_logits, o_logits = model.touch.logits(train_data["output"][rows], struck[rows], features[rows])
            loss, count = touch_loss(v_logits, o_logits, v_target[rows], o_target[rows],
                                     None if previous is None else previous[rows])
            optimiser.zero_grad(set_to_none=True)
            (loss / max(count, 1)).backward()
            optimiser.step()
            schedule.step()
            total += loss.item()
        report = valid_report(model, valid_data)
        history.append({"epoch": epoch, "train_nats": total / n, **report})
        log(f"epoch {epoch}: train {total / n:.4f} nats a strike, valid {report['touch_bits']:.4f} bits "
            f"({time.time() - started:.0f} s)")
        if report["touch_bits"] < best[1]["touch_bits"]:
            best = ({k: v.clone() for k, v in head.state_dict().items()}, report)
    head.load_state_dict(best[0])
    for p in model.parameters():
        p.requires_grad_(True)
    return best[0], best[1], history


def cached_strikes(out: Path, model: AWDLSTM, corpus: BuiltCorpus, vocabulary: list[str], args) -> tuple[dict, dict]:
    """(train strikes, valid strikes), from OUT/strikes.pt where it was made from the same settings."""
    settings = {"model": str(args.model), "corpus": str(args.corpus), "pieces": args.pieces,
                "valid_pieces": args.valid_pieces, "tokens": args.tokens, "seed": args.seed, "version": CACHE_VERSION}
    path = out / STRIKES_FILE
    if path.exists():
        saved = torch.load(path, map_location="cpu", weights_only=True)
        if saved.get("settings") == json.dumps(settings, sort_keys=True):
            return saved["train"], saved["valid"]
    both = {}
    for split, per_corpus in (("train", args.pieces), ("valid", args.valid_pieces)):
        started = time.time()
        both[split] = strikes(model, chosen_pieces(corpus, split, vocabulary, per_corpus, args.tokens, args.seed))
        print(f"{split}: {len(both[split]['velocity'])} strikes in {time.time() - started:.0f} s", flush=True)
    torch.save({"settings": json.dumps(settings, sort_keys=True), **both}, path)
    return both["train"], both["valid"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="the model folder whose head is trained")
    parser.add_argument("--corpus", type=Path, required=True, help="a corpus folder built by clara corpus, with touch")
    parser.add_argument("--out", type=Path, required=True, help="the new model folder (and its strikes cache)")
    parser.add_argument("--format", type=int, choices=(1, 2, 3), default=3, help="the head's format (model/touch.py)")
    parser.add_argument("--pieces", type=int, default=40, help="train pieces a corpus")
    parser.add_argument("--valid-pieces", type=int, default=10, help="valid pieces a corpus")
    parser.add_argument("--tokens", type=int, default=3000, help="the first this many tokens of each piece")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--batch", type=int, default=256, help="strikes a step")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--strikes-from", type=Path, help="another run's folder whose strikes.pt to use")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    loaded = load_model(args.model)
    base = loaded.model
    if base.touch is None:
        raise SystemExit(f"{args.model}: this model learned no touch (model.touch is false)")
    corpus = BuiltCorpus(args.corpus)
    source = args.strikes_from or args.out
    train_data, valid_data = cached_strikes(source, base, corpus, loaded.vocabulary, args)
    model = grow(base, args.format)
    started = time.time()
    _, report, history = train(model, train_data, valid_data, args.epochs, args.lr, args.batch, args.seed)
    info = {**loaded.info, "touch_head": {"base": str(args.model), "format": args.format,
                                          "settings": {k: (str(v) if isinstance(v, Path) else v)
                                                       for k, v in vars(args).items()},
                                          "train_strikes": len(train_data["velocity"]),
                                          "valid": report, "history": history,
                                          "seconds": round(time.time() - started)}}
    save_model(args.out, model, loaded.codec, loaded.vocabulary, info)
    splits = args.model / "splits.json"  # which pieces the model held out: the benchmarks' prompts come from them
    if splits.exists():
        shutil.copyfile(splits, args.out / "splits.json")
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
