"""A model is a folder: `weights.pt` (a plain state dict) and `config.json` (architecture,
codec settings and vocabulary). One `load_model` serves every command.

Weights are read with `torch.load(weights_only=True)`: a corrupt or foreign file is refused
with a one-line error and never unpickled as arbitrary objects. Every loader (models here,
judges in clara_live/judge/store.py) checks a folder with `checked_folder` before using it.
"""

from __future__ import annotations

import dataclasses
import io
import json
import typing
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch.overrides import TorchFunctionMode

from clara_live import finite_json
from clara_live.atomic import write_bytes, write_text
from clara_live.codec.tokens import Grammar
from clara_live.config import CodecConfig, Config, ConfigError, from_dict
from clara_live.errors import ClaraError
from clara_live.model.awd_lstm import AWDLSTM

WEIGHTS = "weights.pt"
CONFIG = "config.json"
FORMAT = "clara-awd-lstm"
VERSION = 1
MAX_VOCABULARY = 2**20  # tokens; the shipped chordwise model has 20,752
# what a floating-point weight may be stored as (training/half_weights.py ships float16); load_state_dict
# casts each to the model's float32, so an int8 or bool copy would load silently and predict nothing
FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


class ModelError(ClaraError):
    """A model folder that cannot be loaded."""


class LoadedModel(NamedTuple):
    model: AWDLSTM
    codec: CodecConfig
    vocabulary: list[str]
    info: dict  # whatever training recorded (data, metrics, hardware)


def save_model(folder: str | Path, model: AWDLSTM, codec: CodecConfig, vocabulary: list[str],
               info: dict | None = None) -> None:
    """Write weights then config, each atomically; config last, so a folder with a config is whole."""
    folder = Path(folder)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    bad = non_finite(state)
    if bad is not None:  # such a model would only ever predict NaN
        raise ModelError(f"{folder}: not saved: {bad} holds NaN or infinite values")
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_bytes(folder / WEIGHTS, buffer.getvalue())
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "model": dataclasses.asdict(model.config),
        "codec": dataclasses.asdict(codec),
        "vocabulary": list(vocabulary),
        "info": info or {},
    }
    write_text(folder / CONFIG, finite_json.dumps(meta, indent=1) + "\n")


def _model_meta(folder: str | Path) -> dict:
    path = Path(folder) / CONFIG
    meta = read_folder_json(folder, CONFIG, "model")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelError(f"{path}: not a Clara model config (format is not {FORMAT!r})")
    if meta.get("version") != VERSION:
        raise ModelError(f"{path}: model format version {meta.get('version')!r}, this Clara reads {VERSION}")
    return meta


def check_config(meta: dict, path: Path) -> tuple[Config, list[str]]:
    """The model and codec sections of a model-like folder's JSON (path), and its vocabulary: both
    sections present (a missing one is refused, never filled with defaults), the vocabulary a list
    of distinct tokens of the codec's grammar that holds every fixed token the codec may need."""
    for section in ("model", "codec"):
        if not isinstance(meta.get(section), dict):
            raise ModelError(f"{path}: no {section!r} section (a model folder records its {section} settings)")
    # a model saved before touch existed has none; one saved before touch_format has format 1's head
    model = {"touch": False, "touch_format": 1, **meta["model"]}
    try:
        config = from_dict({"model": model, "codec": meta["codec"]}, str(path))
    except ConfigError as exc:
        raise ModelError(f"{path}: {exc}") from None
    vocabulary = meta.get("vocabulary")
    if isinstance(vocabulary, list) and len(vocabulary) > MAX_VOCABULARY:
        raise ModelError(f"{path}: vocabulary of {len(vocabulary):,} tokens, more than the {MAX_VOCABULARY:,} allowed")
    if not isinstance(vocabulary, list) or not vocabulary or not all(isinstance(t, str) for t in vocabulary) \
            or len(set(vocabulary)) != len(vocabulary):
        raise ModelError(f"{path}: vocabulary must be a non-empty list of distinct strings")
    known, grammar = set(vocabulary), Grammar(config.codec)
    for token in vocabulary:
        try:
            grammar.parse(token)
        except ValueError as exc:
            raise ModelError(f"{path}: vocabulary: {exc} (codec.encoding {config.codec.encoding})") from None
    missing = [t for t in grammar.fixed_vocabulary() if t not in known]
    if missing:
        raise ModelError(f"{path}: vocabulary lacks {len(missing)} tokens its codec needs (e.g. {missing[0]!r})")
    return config, vocabulary


def checked_folder(folder: str | Path, meta: dict, config_name: str,
                   build: Callable[[Config, list[str]], torch.nn.Module]) -> tuple[torch.nn.Module, Config, list[str]]:
    """The one check of a model-like folder before use, shared by every loader: its JSON's (meta,
    read from config_name) sections and vocabulary (check_config), then weights.pt against what
    build(config, vocabulary) makes (load_weights: names, shapes, finite values). Returns the
    built model with the folder's weights, and the config and vocabulary."""
    path = Path(folder) / config_name
    config, vocabulary = check_config(meta, path)
    model = load_weights(lambda: build(config, vocabulary), Path(folder) / WEIGHTS, config_name)
    return model, config, vocabulary


def read_folder_json(folder: str | Path, name: str, what: str) -> object:
    """The JSON file `name` of a model-like folder; ModelError names the file and the reason."""
    path = Path(folder) / name
    if not Path(folder).is_dir():
        raise ModelError(f"{folder}: no such {what} folder")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"{path}: missing (a {what} folder holds {name} and {WEIGHTS})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path}: not valid JSON ({exc.__class__.__name__})") from None


def load_model(folder: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    """Load a model folder for inference (eval mode) on device, checked first (checked_folder)."""
    meta = _model_meta(folder)
    model, config, vocabulary = checked_folder(folder, meta, CONFIG,
                                               lambda config, vocabulary: AWDLSTM(len(vocabulary), config.model))
    return LoadedModel(model.to(device).eval(), config.codec, vocabulary, typing.cast(dict, meta.get("info") or {}))


def load_weights(build: Callable[[], torch.nn.Module], path: Path, config_name: str = CONFIG) -> torch.nn.Module:
    """build() filled from a plain state dict of tensors, read with weights_only=True (never
    unpickling code); ModelError names the file and why it does not fit.

    The names, shapes and dtypes are compared with a model built on torch's meta device (no
    memory), so a config whose sizes would need many gigabytes is refused before anything is
    allocated; a floating-point weight stored as anything but FLOAT_DTYPES (int8, bool, complex)
    and NaN or infinite weights are refused too (they would only ever predict nothing or NaN)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ModelError(f"{path}: missing") from None
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError... for bad files
        raise ModelError(f"{path}: not a readable weights file ({exc.__class__.__name__})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{path}: not a state dict of tensors")
    try:
        with torch.device("meta"), _ShapesOnly():
            expected = dict(build().state_dict())
    except (TypeError, ValueError) as exc:  # a setting the model refuses (a judge's head)
        raise ModelError(f"{path.parent / config_name}: incomplete or invalid ({exc})") from None
    except RuntimeError as exc:  # sizes past what torch can count even on the meta device
        first = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
        raise ModelError(f"{path.parent / config_name}: sizes torch cannot build ({first})") from None
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        what = f"missing {missing[0]!r}" if missing else f"unexpected {unexpected[0]!r}"
        raise ModelError(f"{path}: weights do not fit {config_name} ({what})")
    for name, want in expected.items():
        if tuple(state[name].shape) != tuple(want.shape):
            raise ModelError(f"{path}: weights do not fit {config_name} ({name} is {list(state[name].shape)} in "
                             f"the file, {list(want.shape)} by the config)")
        dtype, allowed = state[name].dtype, FLOAT_DTYPES if want.is_floating_point() else (want.dtype,)
        if dtype not in allowed:
            raise ModelError(f"{path}: {name} is {str(dtype).removeprefix('torch.')} in the file, not a weight "
                             f"dtype ({', '.join(str(d).removeprefix('torch.') for d in allowed)})")
    bad = non_finite(state)
    if bad is not None:
        raise ModelError(f"{path}: {bad} holds NaN or infinite values")
    model = build()
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[1:2] or [str(exc)[:200]]
        raise ModelError(f"{path}: weights do not fit {config_name} ({first[0].strip()})") from None
    return model


def parameter_count(build: Callable[[], torch.nn.Module]) -> int:
    """How many parameters build() makes (tied ones once), counted on the meta device: nothing is
    allocated, so a model too large to build can be measured before it is refused."""
    with torch.device("meta"), _ShapesOnly():
        return sum(p.numel() for p in build().parameters())


class _ShapesOnly(TorchFunctionMode):
    """Random initialisation skipped, for a model built on the meta device only for its shapes: there
    normal_ goes through torch's Python decompositions, 1.7 s of imports at the first call."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if getattr(func, "__name__", "") in ("normal_", "uniform_"):  # nn.init's and the tensor methods
            return args[0] if args else kwargs["tensor"]
        return func(*args, **kwargs)


def non_finite(state: dict[str, torch.Tensor]) -> str | None:
    """The name of the first tensor of a state dict holding NaN or an infinity, or None."""
    for name, tensor in state.items():
        if tensor.is_floating_point():
            values = tensor.detach().cpu()
            # numpy's test: torch.isfinite took 0.3 s over the shipped weights here, numpy 5 ms
            values = values.float() if values.dtype == torch.bfloat16 else values  # numpy has no bfloat16
            if not np.isfinite(values.numpy()).all():
                return name
    return None
