"""A judge is a folder: `weights.pt` (a plain state dict, read with weights_only=True) and
`judge.json` (what it judges, its classes, its encoder's architecture, codec and vocabulary,
its window, and what training measured)."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path
from typing import NamedTuple

import torch

from clara_live import finite_json
from clara_live.atomic import write_bytes, write_text
from clara_live.config import MAX_SIZE, CodecConfig, Config
from clara_live.judge.classifier import NORMS, POOL_LAYERS, Classifier
from clara_live.model.store import WEIGHTS, ModelError, checked_folder, read_folder_json

CONFIG = "judge.json"
FORMAT = "clara-judge"
VERSION = 1
KINDS = ("composer", "critic")
MAX_WINDOW = 2**20  # tokens a window (and a stride) at most; the shipped judges use 256 and 1024
MAX_CLASSES = 10_000


class LoadedJudge(NamedTuple):
    model: Classifier
    kind: str  # composer | critic
    classes: list[str]
    codec: CodecConfig
    vocabulary: list[str]
    window: int
    stride: int
    info: dict


def save_judge(folder: str | Path, judge: LoadedJudge, half: bool = False) -> None:
    """Weights, then judge.json (so a folder with a judge.json is whole), each written atomically.
    half: store the parameters as float16 (half the size; loading casts them back)."""
    folder = Path(folder)
    buffer = io.BytesIO()
    state = {k: v.detach().cpu().contiguous() for k, v in judge.model.state_dict().items()}
    if half:  # parameters only: buffers (a Standardize's statistics) keep their precision
        params = {name for name, _ in judge.model.named_parameters()}
        state = {k: v.half() if k in params and v.is_floating_point() else v for k, v in state.items()}
    torch.save(state, buffer)
    write_bytes(folder / WEIGHTS, buffer.getvalue())
    model = judge.model
    meta = {"format": FORMAT, "version": VERSION, "kind": judge.kind, "classes": judge.classes,
            "model": dataclasses.asdict(judge.model.config), "codec": dataclasses.asdict(judge.codec),
            "vocabulary": judge.vocabulary, "window": judge.window, "stride": judge.stride,
            "head_hidden": model.head_hidden, "pool_layers": model.pool_layers, "norm": model.norm,
            "info": judge.info}
    write_text(folder / CONFIG, finite_json.dumps(meta, indent=1) + "\n")


def load_judge(folder: str | Path, kind: str | None = None) -> LoadedJudge:
    """Load a judge folder in eval mode; ModelError names the file and the reason."""
    path = Path(folder) / CONFIG
    meta = read_folder_json(folder, CONFIG, "judge")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise ModelError(f"{path}: not a Clara judge (format {FORMAT!r}, version {VERSION})")
    if meta.get("kind") not in KINDS or (kind is not None and meta["kind"] != kind):
        raise ModelError(f"{path}: a {meta.get('kind')!r} judge, not a {kind or ' or '.join(KINDS)} judge")
    classes = _classes(meta, path)
    window, stride = _whole(meta, "window", 1, MAX_WINDOW, path), _whole(meta, "stride", 1, MAX_WINDOW, path)
    hidden = _whole(meta, "head_hidden", 0, MAX_SIZE, path)
    # judges written before the head had a choice are last-layer, LayerNorm ones
    pool_layers, norm = meta.get("pool_layers", "last"), meta.get("norm", "layer")
    for key, value, known in (("pool_layers", pool_layers, POOL_LAYERS), ("norm", norm, NORMS)):
        if value not in known:
            raise ModelError(f"{path}: {key} must be {' or '.join(known)}, not {value!r}")
    if not isinstance(meta.get("info", {}), dict):
        raise ModelError(f"{path}: info must be a mapping, not {type(meta['info']).__name__}")

    def build(config: Config, vocabulary: list[str]) -> Classifier:
        return Classifier(len(vocabulary), config.model, len(classes), head_hidden=hidden, pool_layers=pool_layers,
                          norm=norm)

    model, config, vocabulary = checked_folder(folder, meta, CONFIG, build)
    return LoadedJudge(model.eval(), meta["kind"], classes, config.codec, vocabulary, window, stride,
                       meta.get("info") or {})


def _whole(meta: dict, key: str, low: int, high: int, path: Path) -> int:
    """judge.json's meta[key], a whole number in [low, high]: never cast (int(2.7), int(True) and
    int("16") passed, and a window of -1 loaded only to fail as a ValueError in the windows)."""
    if key not in meta:
        raise ModelError(f"{path}: no {key!r} (a judge records its {key})")
    value = meta[key]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ModelError(f"{path}: {key} must be a whole number in [{low}, {high}], not {value!r}")
    return value


def _classes(meta: dict, path: Path) -> list[str]:
    """judge.json's classes: 2 to MAX_CLASSES distinct names; a critic's include "human" (its ranking
    asks for P(human))."""
    classes = meta.get("classes")
    if not isinstance(classes, list) or not 2 <= len(classes) <= MAX_CLASSES \
            or not all(isinstance(c, str) and c for c in classes) or len(set(classes)) != len(classes):
        raise ModelError(f"{path}: classes must be a list of 2 to {MAX_CLASSES:,} distinct names, not "
                         f"{str(classes)[:80]}")
    if meta["kind"] == "critic" and "human" not in classes:
        raise ModelError(f"{path}: classes of a critic must include 'human' (it ranks by P(human))")
    return classes
