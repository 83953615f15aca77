"""A memory of the session: held-out pieces read from their start, NLL with and without the
continuous cache (clara_live/sampling/memory.py) and dynamic evaluation, and the cache's cost.

What it measures, for a model folder (the shipped notewise model by default):
1. The pieces: piano-midi.de's valid/test pieces and one ASAP performance of each valid/test
   work (training/heldout.py: never trained on), each read with the model's codec from its
   start and cut to its first --max-tokens tokens. Every piece starts from a zero state.
2. NLL in nats per token and per note (the same total divided by the on-tokens `p..` among
   the predicted tokens), summed over a corpus's pieces, for
   - model: the fp32 model alone;
   - cache: the continuous cache (Grave et al. 2017) over the fp32 model's last-layer outputs,
     p = (1 - λ) p_model + λ p_cache, p_cache(w) ∝ Σ_{i: x_{i+1}=w} exp(θ cos(h_t, h_i)) over
     the last N pairs; the offline scorer here is the online Memory's arithmetic, vectorised
     over a piece (tests/test_memory.py checks that they agree);
   - cache_int8: the same on the int8 engine, the path `clara live` and `clara continue` take;
   - dynamic: dynamic evaluation (Krause et al. 2018): the piece in segments of --segment
     tokens; each segment is scored, then the fp32 weights take one gradient step on it
     (RMS-normalised or plain SGD) and decay back towards the trained ones by --decay;
   - dynamic+cache: both, the cache keyed on the adapting model's outputs.
   With --dynamic-every N the two dynamic rows cover every N-th piece, marked [sub], beside the
   model and the cache on the same pieces.
   The model's pure prediction is scored (no grammar mask), as `clara evaluate` does.
3. --tune: the cache's θ, λ and N and dynamic evaluation's step and learning rate, chosen on
   the VALID split only: the setting whose smaller relative gain per note over the two corpora
   is largest (it must help both the sequenced corpus and the performances); dynamic evaluation
   is tuned on every --tune-every-th valid piece, for time. Test is reported once, with the
   chosen settings (the defaults are the ones this chose).
4. Cost: one Sampler step (choose, then advance) on the int8 engine with one CPU thread, with
   and without the cache (full, after --cost-prompt tokens), at 1 and --k streams; blocks of the
   two alternate so background load falls on both alike. p50, p99 and mean in ms.

    python benchmarks/session_memory.py [--model DIR] [--max-tokens N] [--splits valid,test]
        [--cache-size N] [--cache-theta T] [--cache-lambda L] [--segment S] [--lr LR]
        [--decay D] [--method rms|sgd] [--tune] [--no-dynamic] [--cost-steps N] [--json FILE]
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from clara_live.codec import make_codec, to_steps  # noqa: E402
from clara_live.codec.vocabulary import Vocabulary  # noqa: E402
from clara_live.config import InferenceConfig, SamplingConfig  # noqa: E402
from clara_live.engine import Engine, build_engine  # noqa: E402
from clara_live.errors import ClaraError  # noqa: E402
from clara_live.model import LoadedModel, load_model  # noqa: E402
from clara_live.model.awd_lstm import AWDLSTM, detach  # noqa: E402
from clara_live.music.read import read_music  # noqa: E402
from clara_live.sampling.memory import Memory  # noqa: E402
from clara_live.sampling.sampler import Sampler  # noqa: E402

DEFAULT_MODEL = REPO / "trained_models" / "clara-notewise"
CORPORA = ("piano-midi-de", "asap")
CHUNK = 256
GRID_THETA = (5.0, 10.0, 15.0, 20.0, 30.0)
GRID_LAMBDA = (0.1, 0.2, 0.3, 0.4, 0.5)
GRID_SIZE = (500, 1000, 2000)
GRID_LR = {"rms": (3e-4, 1e-3, 3e-3), "sgd": (0.1, 0.3, 1.0)}


@dataclasses.dataclass(frozen=True)
class CacheSetting:
    size: int
    theta: float
    lam: float


@dataclasses.dataclass(frozen=True)
class DynamicSetting:
    method: str  # rms | sgd
    lr: float
    segment: int
    decay: float


# --- pieces ------------------------------------------------------------------------------------

def pieces(loaded: LoadedModel, corpus: str, split: str, max_tokens: int) -> list[np.ndarray]:
    """The held-out pieces of a corpus and split as token ids, each cut to its first max_tokens."""
    from training import heldout

    items = heldout.piano_midi_de(split) if corpus == "piano-midi-de" else heldout.asap(split)
    codec, vocab = make_codec(loaded.codec), Vocabulary(loaded.vocabulary, loaded.codec)
    out = []
    for item in items:
        try:
            notes = to_steps(read_music(item.path, loaded.codec.sustain_pedal), loaded.codec)
            ids = vocab.ids(codec.encode(notes), str(item.path))[:max_tokens]
        except (ClaraError, ValueError) as exc:
            print(f"skipped {item.path}: {exc}", file=sys.stderr)
            continue
        if len(ids) > 1:
            out.append(ids)
    return out


# --- the model alone ------------------------------------------------------------------------------

def model_pass(engine: Engine, sequences: list[np.ndarray]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per piece: the log-probability of each next token (T-1,) and the last layer's output after
    each token but the last (T-1, dim); the pieces run side by side, padded at the end."""
    length = max(len(s) for s in sequences)
    ids = torch.zeros(len(sequences), length, dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, :len(seq)] = torch.as_tensor(seq)
    hidden = engine.init_hidden(len(sequences))
    target_lp, outputs = [], []
    for t in range(0, length - 1, CHUNK):
        inputs, targets = ids[:, t:min(t + CHUNK, length - 1)], ids[:, t + 1:t + 1 + CHUNK]
        logits, hidden, out = engine(inputs, hidden, outputs=True)
        target_lp.append(torch.log_softmax(logits, dim=-1).gather(-1, targets[..., None]).squeeze(-1))
        outputs.append(out)
    lp, out = torch.cat(target_lp, dim=1), torch.cat(outputs, dim=1)
    return [(lp[row, :len(seq) - 1].clone(), out[row, :len(seq) - 1].clone()) for row, seq in enumerate(sequences)]


# --- the cache, offline ----------------------------------------------------------------------------

class Pairs:
    """A piece's query/key similarities, ages and same-next-token flags, for many cache settings."""

    def __init__(self, h: torch.Tensor, ids: torch.Tensor) -> None:
        ids = torch.as_tensor(ids)
        count = len(ids) - 1
        unit = F.normalize(h[:count].float(), dim=-1)
        self.sim = unit @ unit.T  # (query t, key i): cos(h_t, h_i)
        position = torch.arange(count)
        self.age = position[:, None] - position[None, :]  # pair i is known at t when t - i >= 1
        self.same = ids[1:, None] == ids[None, 1:]  # the pair's token is the one to predict
        self.n = count

    def cache_prob(self, size: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
        """p_cache of each next token (T-1,) and whether the cache had any pair then."""
        window = (self.age >= 1) & (self.age <= size)
        weights = torch.exp(theta * (self.sim - 1.0)).masked_fill(~window, 0.0)  # cos <= 1: no overflow
        total = weights.sum(dim=1)
        hit = (weights * self.same).sum(dim=1)
        return torch.where(total > 0, hit / total.clamp_min(1e-38), torch.zeros_like(total)), total > 0


def mixed(target_lp: torch.Tensor, p_cache: torch.Tensor, has: torch.Tensor, lam: float) -> torch.Tensor:
    """log((1 - λ) p_model + λ p_cache) of each next token, as Memory.mix computes it."""
    if lam == 0.0:
        return target_lp
    mix = torch.logaddexp(target_lp + math.log1p(-lam), torch.log(p_cache) + math.log(lam))
    return torch.where(has, mix, target_lp)


def cache_target_log_probs(h: torch.Tensor, ids: torch.Tensor, target_lp: torch.Tensor, size: int,
                           theta: float, lam: float) -> torch.Tensor:
    """A piece's next-token log-probabilities under the model mixed with the cache.

    h: (>= T-1, dim) the outputs after each token; ids: (T,) the piece; target_lp: (T-1,) the
    model's log-probability of each next token."""
    p_cache, has = Pairs(h, ids).cache_prob(size, theta)
    return mixed(target_lp, p_cache, has, lam)


# --- dynamic evaluation ------------------------------------------------------------------------------

def dynamic_pass(model: AWDLSTM, seq: np.ndarray, setting: DynamicSetting) -> tuple[torch.Tensor, torch.Tensor]:
    """Dynamic evaluation of one piece: each segment is scored, then the weights learn from it.
    Returns the next-token log-probabilities (T-1,) and the outputs (T-1, dim) as scored; the
    model's weights are put back afterwards."""
    params = [p for p in model.parameters() if p.requires_grad]
    original = [p.detach().clone() for p in params]
    square = [torch.zeros_like(p) for p in params]
    ids = torch.as_tensor(seq).view(1, -1)
    hidden = model.init_hidden(1)
    target_lp, outputs = [], []
    model.eval()  # no dropout: the model as it predicts, only its weights move
    try:
        for step, t in enumerate(range(0, len(seq) - 1, setting.segment), start=1):
            inputs, targets = ids[:, t:min(t + setting.segment, len(seq) - 1)], ids[:, t + 1:t + 1 + setting.segment]
            with torch.enable_grad():
                logits, hidden, act = model(inputs, hidden, activations=True)
                lp = torch.log_softmax(logits, dim=-1).gather(-1, targets[..., None]).squeeze(-1)
                loss = -lp.mean()
                grads = torch.autograd.grad(loss, params)
            target_lp.append(lp.detach()[0])
            outputs.append(act.raw.detach()[0])
            hidden = detach(hidden)
            with torch.no_grad():
                for p, g, p0, ms in zip(params, grads, original, square, strict=True):
                    if setting.method == "rms":  # RMSprop-normalised, bias-corrected running mean square
                        ms.mul_(0.9).add_(0.1 * g * g)
                        g = g / ((ms / (1.0 - 0.9 ** step)).sqrt() + 1e-8)
                    p.add_(-setting.lr * g + setting.decay * (p0 - p))
    finally:
        with torch.no_grad():
            for p, p0 in zip(params, original, strict=True):
                p.copy_(p0)
    return torch.cat(target_lp), torch.cat(outputs)


# --- figures --------------------------------------------------------------------------------------

def totals(lps: list[torch.Tensor], sequences: list[np.ndarray], is_note: np.ndarray) -> dict:
    nll = -sum(float(lp.double().sum()) for lp in lps)
    tokens = sum(len(s) - 1 for s in sequences)
    notes = int(sum(is_note[s[1:]].sum() for s in sequences))
    return {"nll_token": nll / tokens, "nll_note": nll / notes, "tokens": tokens, "notes": notes}


def gain(base: dict, other: dict) -> float:
    """Relative reduction of NLL per note, in percent."""
    return 100.0 * (1.0 - other["nll_note"] / base["nll_note"])


def tune_cache(passes: dict[str, list], sets: dict[str, list[np.ndarray]], is_note: np.ndarray,
               log: list[str]) -> tuple[CacheSetting, list[dict]]:
    pairs = {c: [Pairs(h, torch.as_tensor(s)) for (_, h), s in zip(passes[c], sets[c], strict=True)] for c in sets}
    base = {c: totals([lp for lp, _ in passes[c]], sets[c], is_note) for c in sets}
    grid, best = [], None
    for size, theta in itertools.product(GRID_SIZE, GRID_THETA):
        probs = {c: [p.cache_prob(size, theta) for p in pairs[c]] for c in sets}
        for lam in GRID_LAMBDA:
            row = {"size": size, "theta": theta, "lambda": lam}
            for c in sets:
                lps = [mixed(lp, pc, has, lam) for (lp, _), (pc, has) in zip(passes[c], probs[c], strict=True)]
                row[c] = gain(base[c], totals(lps, sets[c], is_note))
            row["worst"] = min(row[c] for c in sets)
            grid.append(row)
            if best is None or row["worst"] > best["worst"]:
                best = row
            log.append(f"  cache N={size} θ={theta:g} λ={lam:g}: " +
                       ", ".join(f"{c} {row[c]:+.1f} %" for c in sets))
    return CacheSetting(best["size"], best["theta"], best["lambda"]), grid


def tune_dynamic(model: AWDLSTM, engine: Engine, sets: dict[str, list[np.ndarray]], is_note: np.ndarray,
                 segment: int, decay: float, every: int, log: list[str]) -> tuple[DynamicSetting, list[dict]]:
    """The learning rate on every `every`-th valid piece (dynamic evaluation is slow on a CPU)."""
    sets = {c: s[::every] for c, s in sets.items()}
    base = {c: totals([lp for lp, _ in model_pass(engine, sets[c])], sets[c], is_note) for c in sets}
    grid, best = [], None
    for method, rates in GRID_LR.items():
        for lr in rates:
            setting = DynamicSetting(method, lr, segment, decay)
            row = {"method": method, "lr": lr}
            for c in sets:
                lps = [dynamic_pass(model, s, setting)[0] for s in sets[c]]
                row[c] = gain(base[c], totals(lps, sets[c], is_note))
            row["worst"] = min(row[c] for c in sets)
            grid.append(row)
            if best is None or row["worst"] > best["worst"]:
                best = row
            log.append(f"  dynamic {method} lr={lr:g}: " + ", ".join(f"{c} {row[c]:+.1f} %" for c in sets))
            print(log[-1], file=sys.stderr, flush=True)
    return DynamicSetting(best["method"], best["lr"], segment, decay), grid


def evaluate_split(loaded: LoadedModel, engines: dict[str, Engine], sets: dict[str, list[np.ndarray]],
                   is_note: np.ndarray, cache: CacheSetting, dynamic: DynamicSetting | None,
                   dynamic_every: int = 1) -> dict:
    out = {}
    for corpus, sequences in sets.items():
        row = {"pieces": len(sequences)}
        fp32 = model_pass(engines["fp32"], sequences)
        row["model"] = totals([lp for lp, _ in fp32], sequences, is_note)
        row["cache"] = totals([cache_target_log_probs(h, torch.as_tensor(s), lp, cache.size, cache.theta, cache.lam)
                               for (lp, h), s in zip(fp32, sequences, strict=True)], sequences, is_note)
        int8 = model_pass(engines["int8"], sequences)
        row["model_int8"] = totals([lp for lp, _ in int8], sequences, is_note)
        row["cache_int8"] = totals([cache_target_log_probs(h, torch.as_tensor(s), lp, cache.size, cache.theta,
                                                           cache.lam)
                                    for (lp, h), s in zip(int8, sequences, strict=True)], sequences, is_note)
        row["gain_note_pct"] = {"cache": gain(row["model"], row["cache"]),
                                "cache_int8": gain(row["model_int8"], row["cache_int8"])}
        if dynamic is not None:  # on every dynamic_every-th piece, against the model on those pieces
            subset = sequences[::dynamic_every]
            row["dynamic_pieces"] = len(subset)
            row["model_subset"] = totals([lp for lp, _ in fp32[::dynamic_every]], subset, is_note)
            started = time.perf_counter()
            passes = [dynamic_pass(loaded.model, s, dynamic) for s in subset]
            seconds = time.perf_counter() - started
            row["dynamic"] = totals([lp for lp, _ in passes], subset, is_note)
            row["dynamic"]["ms_per_segment"] = 1000 * seconds / sum(
                math.ceil((len(s) - 1) / dynamic.segment) for s in subset)
            row["dynamic_cache"] = totals([cache_target_log_probs(h, torch.as_tensor(s), lp, cache.size, cache.theta,
                                                                  cache.lam)
                                           for (lp, h), s in zip(passes, subset, strict=True)], subset, is_note)
            row["cache_subset"] = totals([cache_target_log_probs(h, torch.as_tensor(s), lp, cache.size, cache.theta,
                                                                 cache.lam)
                                          for (lp, h), s in zip(fp32[::dynamic_every], subset, strict=True)],
                                         subset, is_note)
            for key in ("dynamic", "dynamic_cache", "cache_subset"):
                row["gain_note_pct"][key] = gain(row["model_subset"], row[key])
        out[corpus] = row
    return out


# --- cost --------------------------------------------------------------------------------------------

def step_cost(loaded: LoadedModel, cache: CacheSetting, prompt: np.ndarray, steps: int, streams: int,
              block: int = 100) -> dict:
    """ms per Sampler step (choose + advance) on the int8 engine, one thread, without and with the cache."""
    torch.set_num_threads(1)
    engine = build_engine(loaded.model, InferenceConfig(device="cpu", precision="int8", threads=1))
    sampling = SamplingConfig(seed=0)
    samplers = {"without": Sampler(engine, loaded.vocabulary, loaded.codec, sampling),
                "with": Sampler(engine, loaded.vocabulary, loaded.codec, sampling,
                                memory=Memory(cache.size, cache.theta, cache.lam))}
    times: dict[str, list[float]] = {k: [] for k in samplers}
    for s in samplers.values():
        s.feed_ids(prompt.tolist())
        s.expand(streams)
        for _ in range(20):
            s.step()  # warm-up
    with torch.inference_mode():
        for round_ in range(max(1, steps // block)):
            for name in (("without", "with") if round_ % 2 == 0 else ("with", "without")):
                s = samplers[name]
                for i in range(block + 5):
                    started = time.perf_counter_ns()
                    s.step()
                    if i >= 5:  # the other sampler's block pushed this one out of the cache
                        times[name].append((time.perf_counter_ns() - started) / 1e6)
    out = {}
    for name, ms in times.items():
        a = np.array(ms)
        out[name] = {"p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)), "mean": float(a.mean())}
    out["added"] = {k: out["with"][k] - out["without"][k] for k in ("p50", "p99", "mean")}
    out["filled"] = int(samplers["with"].memory.filled.min())
    return out


# --- the report ----------------------------------------------------------------------------------------

ROWS = (("model", "model (fp32)"), ("cache", "cache"), ("model_int8", "model (int8)"), ("cache_int8", "cache (int8)"),
        ("model_subset", "model [sub]"), ("cache_subset", "cache [sub]"), ("dynamic", "dynamic [sub]"),
        ("dynamic_cache", "dyn+cache [sub]"))


def table(results: dict) -> str:
    lines = [f"{'split':6} {'corpus':14} {'pieces':>6} {'notes':>6} {'method':16} {'nats/token':>10} "
             f"{'nats/note':>9} {'vs model':>8}"]
    for split, corpora in results.items():
        for corpus, row in corpora.items():
            for key, name in ROWS:
                if key not in row:
                    continue
                r = row[key]
                change = "" if key.startswith("model") else f"{-row['gain_note_pct'][key]:+.1f} %"
                count = row["dynamic_pieces"] if key.endswith("subset") or key.startswith("dynamic") else row["pieces"]
                lines.append(f"{split:6} {corpus:14} {count:6d} {r['notes']:6d} {name:16} "
                             f"{r['nll_token']:10.4f} {r['nll_note']:9.4f} {change:>8}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    defaults = SamplingConfig()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(DEFAULT_MODEL))
    parser.add_argument("--max-tokens", type=int, default=2000, help="each piece's first N tokens")
    parser.add_argument("--splits", default="valid,test")
    parser.add_argument("--cache-size", type=int, default=defaults.cache_size)
    parser.add_argument("--cache-theta", type=float, default=defaults.cache_theta)
    parser.add_argument("--cache-lambda", type=float, default=defaults.cache_lambda)
    parser.add_argument("--method", choices=["rms", "sgd"], default="rms", help="dynamic evaluation's step")
    parser.add_argument("--lr", type=float, default=1e-3, help="dynamic evaluation's learning rate")
    parser.add_argument("--segment", type=int, default=128, help="dynamic evaluation's segment, in tokens")
    parser.add_argument("--decay", type=float, default=0.0, help="per step, back towards the trained weights")
    parser.add_argument("--tune", action="store_true", help="choose the cache and dynamic settings on valid first")
    parser.add_argument("--tune-every", type=int, default=4,
                        help="--tune: dynamic evaluation on every N-th valid piece")
    parser.add_argument("--no-dynamic", action="store_true")
    parser.add_argument("--dynamic-every", type=int, default=1,
                        help="dynamic evaluation on every N-th piece only (it is slow on a CPU); [sub] rows")
    parser.add_argument("--cost-steps", type=int, default=1000, help="timed Sampler steps per variant (0: none)")
    parser.add_argument("--cost-prompt", type=int, default=2500, help="tokens fed before timing (fills the cache)")
    parser.add_argument("--k", type=int, default=8, help="streams for the batched cost")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the NLL passes")
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    loaded = load_model(args.model)
    if not make_codec(loaded.codec).streams_events:
        raise SystemExit(f"{args.model}: this benchmark counts notewise on-tokens, the model is "
                         f"{loaded.codec.encoding}")
    is_note = Vocabulary(loaded.vocabulary, loaded.codec).top >= 0  # the tokens that strike a note
    engines = {precision: build_engine(loaded.model, InferenceConfig("cpu", precision, args.threads))
               for precision in ("fp32", "int8")}
    splits = [s for s in args.splits.split(",") if s]
    data = {split: {c: pieces(loaded, c, split, args.max_tokens) for c in CORPORA} for split in splits}
    cache = CacheSetting(args.cache_size, args.cache_theta, args.cache_lambda)
    dynamic = None if args.no_dynamic else DynamicSetting(args.method, args.lr, args.segment, args.decay)
    report: dict = {"model": str(args.model), "max_tokens": args.max_tokens, "machine": platform.machine(),
                    "torch": torch.__version__}
    log: list[str] = []
    if args.tune:
        if "valid" not in data:
            data["valid"] = {c: pieces(loaded, c, "valid", args.max_tokens) for c in CORPORA}
        valid = data["valid"]
        passes = {c: model_pass(engines["fp32"], valid[c]) for c in CORPORA}
        cache, cache_grid = tune_cache(passes, valid, is_note, log)
        report["cache_grid"] = cache_grid
        print(f"cache chosen on valid: N={cache.size} θ={cache.theta:g} λ={cache.lam:g}", file=sys.stderr)
        if dynamic is not None:
            dynamic, dynamic_grid = tune_dynamic(loaded.model, engines["fp32"], valid, is_note, args.segment,
                                                 args.decay, args.tune_every, log)
            report["dynamic_grid"] = dynamic_grid
    report["cache"] = dataclasses.asdict(cache)
    report["dynamic"] = None if dynamic is None else dataclasses.asdict(dynamic)
    results = {}
    for split in splits:
        started = time.perf_counter()
        results[split] = evaluate_split(loaded, engines, data[split], is_note, cache, dynamic, args.dynamic_every)
        print(f"{split}: {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    report["results"] = results
    if args.cost_steps:
        prompt = np.concatenate([s for s in data[splits[0]]["asap"]])[:args.cost_prompt]
        report["cost_ms"] = {f"streams_{k}": step_cost(loaded, cache, prompt, args.cost_steps, k) for k in (1, args.k)}
    if log:
        print("tuning on valid (NLL per note, relative to the model):\n" + "\n".join(log))
    print(f"cache: N={cache.size} θ={cache.theta:g} λ={cache.lam:g}" +
          ("" if dynamic is None else f"; dynamic: {dynamic.method} lr={dynamic.lr:g} segment={dynamic.segment} "
                                      f"decay={dynamic.decay:g}"))
    print(table(results))
    for split, corpora in results.items():
        for corpus, row in corpora.items():
            if "dynamic" in row:
                print(f"{split} {corpus}: dynamic evaluation {row['dynamic']['ms_per_segment']:.0f} ms per "
                      f"{dynamic.segment}-token segment (fp32, {args.threads} thread(s))")
    for name, cost in report.get("cost_ms", {}).items():
        print(f"Sampler step, int8, 1 thread, {name.replace('_', ' ')}: without {cost['without']['p50']:.3f} / "
              f"{cost['without']['p99']:.3f} ms (p50 / p99), with the cache ({cost['filled']} pairs) "
              f"{cost['with']['p50']:.3f} / {cost['with']['p99']:.3f} ms: +{cost['added']['p50']:.3f} ms at p50")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
