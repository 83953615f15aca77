"""Touch as heads or as tokens: the two designs of issue 24, trained alike and measured on the same
held-out strikes.

- heads (what Clara ships, clara_live/model/touch.py): the token stream is unchanged; a note-on's
  velocity and offset enter its embedding, and a head on the last layer's output and the struck
  token's embedding predicts them after the pitch is chosen.
- tokens (Performance RNN's way): a velocity token (32 bins of 4) before every note-on of known
  touch, its own embedding row; the model predicts the loudness first, then the pitch. (Offsets
  are left out here: tokens for them would lengthen the stream further.)

Both start from the same model (--init, the shipped one by default), train the same number of
steps on the same train pieces that carry touch (batches of --batch x --bptt tokens, AdamW at
--lr, no dropout changes), then are scored on the same valid pieces:
- velocity bits per strike: heads, the head's; tokens, the velocity token's probability among the
  velocity tokens (given that a strike comes next), both as a distribution over velocities 1..127;
- joint bits per note: the tokens' NLL (velocity tokens included, each with log2 of its bin's
  width, so both price the exact velocity) plus the head's velocity bits, per note: what each
  design pays for the music and its loudness together;
- tokens per note: what the stream costs the live step.

  python benchmarks/touch_design.py --corpus ~/.cache/clara-live/corpora/mix-touch --steps 300
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from clara_live.codec.tokens import Kind  # noqa: E402
from clara_live.codec.vocabulary import KINDS  # noqa: E402
from clara_live.corpus.built import BuiltCorpus  # noqa: E402
from clara_live.model import AWDLSTM, detach, load_model  # noqa: E402
from clara_live.model.touch import VELOCITY_BINS, targets, touch_loss, velocity_bin, velocity_width  # noqa: E402
from training.trainer import with_touch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def with_velocity_tokens(piece: np.ndarray, vocab_size: int, on_kind: np.ndarray) -> np.ndarray:
    """A piece (tokens, 3) as the token design's id stream: id vocab_size + bin before each note-on of
    known touch (column 1: 1 where the id is a velocity token's, else 0)."""
    out = []
    for token, velocity, _ in piece.tolist():
        if on_kind[token] and velocity > 0:
            out.append((vocab_size + (velocity - 1) // 4, 1))
        out.append((token, 0))
    return np.array(out, dtype=np.int64)


def grown(model: AWDLSTM, extra: int) -> AWDLSTM:
    """The model with `extra` new token rows (small random embeddings, tied decoder, zero bias)."""
    bigger = AWDLSTM(model.vocab_size + extra, dataclasses.replace(model.config, touch=False))
    state = model.state_dict()
    for name in ("embed.weight", "decoder.weight"):
        rows = torch.empty(extra, state[name].size(1)).uniform_(-0.1, 0.1)
        state[name] = torch.cat([state[name], rows])
    state["decoder.bias"] = torch.cat([state["decoder.bias"], torch.zeros(extra)])
    bigger.load_state_dict({k: v for k, v in state.items() if not k.startswith("touch.")})
    return bigger


def batches(stream: np.ndarray, batch: int, bptt: int, steps: int):
    columns = len(stream) // batch
    data = torch.from_numpy(stream[:columns * batch].reshape(batch, columns, *stream.shape[1:]).copy())
    for step in range(steps):
        start = (step * bptt) % max(columns - bptt - 1, 1)
        yield data[:, start:start + bptt + 1], start == 0


def train(model: AWDLSTM, stream: np.ndarray, heads: bool, args) -> float:
    model.train()
    optimiser = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    hidden = model.init_hidden(args.batch)
    started = time.time()
    for chunk, fresh in batches(stream, args.batch, args.bptt, args.steps):
        hidden = model.init_hidden(args.batch) if fresh else detach(hidden)
        ids = chunk[..., 0]
        if heads:
            logits, hidden, acts, (v, o) = model(ids[:, :-1], hidden, activations=True,
                                                 touch=(chunk[:, :-1, 1], chunk[:, :-1, 2]), struck=ids[:, 1:])
            extra, _ = touch_loss(v, o, *targets(chunk[:, 1:, 1], chunk[:, 1:, 2]))
            extra = extra / ids[:, 1:].numel()
        else:
            logits, hidden = model(ids[:, :-1], hidden)
            extra = 0.0
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), ids[:, 1:].reshape(-1)) + extra
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.25)
        optimiser.step()
    return time.time() - started


@torch.no_grad()
def evaluate(model: AWDLSTM, pieces: list[np.ndarray], heads: bool, base_vocab: int, on_kind: np.ndarray) -> dict:
    """Sum over pieces (each from a zero state) of the tokens' NLL, the velocity bits per strike and
    the notes."""
    model.eval()
    token_nats = velocity_bits = width_bits = 0.0
    strikes = notes = tokens = 0
    for piece in pieces:
        x = torch.from_numpy(piece).unsqueeze(0)
        ids = x[..., 0]
        hidden = model.init_hidden(1)
        if heads:
            logits, _, _, (v, _) = model(ids[:, :-1], hidden, activations=True, touch=(x[:, :-1, 1], x[:, :-1, 2]),
                                         struck=ids[:, 1:])
            known = x[0, 1:, 1] > 0
            bins = velocity_bin(x[0, 1:, 1][known])
            lp = F.log_softmax(v[0][known].float(), -1).gather(-1, bins.unsqueeze(-1)).squeeze(-1)
            velocity_bits += float(((-lp + torch.log(velocity_width(bins).float())) / math.log(2)).sum())
            strikes += int(known.sum())
            notes += int(on_kind[ids[0, 1:].numpy()].sum())
        else:
            logits, _ = model(ids[:, :-1], hidden)
            is_velocity = x[0, 1:, 1] == 1
            bins = ids[0, 1:][is_velocity] - base_vocab
            among = F.log_softmax(logits[0][is_velocity][:, base_vocab:].float(), -1)
            lp = among.gather(-1, bins.unsqueeze(-1)).squeeze(-1)
            widths = torch.log2(velocity_width(bins).float())
            velocity_bits += float((-lp / math.log(2) + widths).sum())
            width_bits += float(widths.sum())  # a token names a bin of 4 velocities: the value inside it costs these
            strikes += int(is_velocity.sum())
            plain = ids[0, 1:][~is_velocity]
            notes += int(on_kind[plain.numpy()].sum())
        token_nats += float(F.cross_entropy(logits[0].float(), ids[0, 1:], reduction="sum"))
        tokens += ids.size(1) - 1
    joint = token_nats / math.log(2) + (velocity_bits if heads else width_bits)
    return {"velocity_bits": velocity_bits / strikes, "joint_bits_per_note": joint / notes,
            "tokens_per_note": tokens / notes, "strikes": strikes, "notes": notes}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, required=True, help="a corpus folder built by clara corpus (with touch)")
    parser.add_argument("--init", type=Path, default=REPO / "trained_models" / "clara-notewise")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--bptt", type=int, default=100)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--train-pieces", type=int, default=200)
    parser.add_argument("--valid-pieces", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    built = BuiltCorpus(args.corpus)
    base = load_model(args.init)
    vocab = built.vocab(base.vocabulary)
    on_kind = vocab.kind == KINDS.index(Kind.ON)
    rng = np.random.default_rng(args.seed)

    def touched(split: str, count: int) -> list[np.ndarray]:
        entries = sorted((p for p in built.manifest["pieces"] if p["split"] == split), key=lambda p: p["line"])
        pieces = [p for e, p in zip(entries, built.pieces(split, base.vocabulary, touch=True), strict=True)
                  if e.get("touch")]
        return [pieces[i] for i in sorted(rng.choice(len(pieces), min(count, len(pieces)), replace=False))]

    train_pieces, valid_pieces = touched("train", args.train_pieces), touched("valid", args.valid_pieces)
    order = rng.permutation(len(train_pieces))
    stream = np.concatenate([train_pieces[i] for i in order])
    size = len(base.vocabulary)
    results = {}
    for design in ("heads", "tokens"):
        torch.manual_seed(args.seed)
        if design == "heads":
            model = with_touch(load_model(args.init).model)
            seconds = train(model, stream, True, args)
            scored = evaluate(model, valid_pieces, True, size, on_kind)
        else:
            model = grown(load_model(args.init).model, VELOCITY_BINS)
            token_stream = with_velocity_tokens(stream, size, on_kind)
            seconds = train(model, token_stream, False, args)
            scored = evaluate(model, [with_velocity_tokens(p, size, on_kind) for p in valid_pieces], False, size,
                              on_kind)
        results[design] = {**scored, "train_seconds": round(seconds, 1)}
        print(f"{design:>6}: velocity {scored['velocity_bits']:.3f} bits/strike, "
              f"joint {scored['joint_bits_per_note']:.3f} bits/note, {scored['tokens_per_note']:.2f} tokens/note "
              f"({scored['strikes']} strikes; {seconds:.0f} s to train)", flush=True)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    if args.json:
        args.json.write_text(json.dumps({"settings": settings, "results": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
