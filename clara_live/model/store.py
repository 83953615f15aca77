"""A model is a folder: `weights.pt` (a plain state dict) and `config.json` (architecture,
codec settings and vocabulary). One `load_model` serves every command.

Weights are read with `torch.load(weights_only=True)`: a corrupt or foreign file is refused
with a one-line error and never unpickled as arbitrary objects.
"""

from __future__ import annotations

import dataclasses
import io
import json
import typing
from pathlib import Path
from typing import NamedTuple

import torch

from clara_live.atomic import write_bytes, write_text
from clara_live.config import CodecConfig, ConfigError, ModelConfig, from_dict
from clara_live.errors import ClaraError
from clara_live.model.awd_lstm import AWDLSTM

WEIGHTS = "weights.pt"
CONFIG = "config.json"
FORMAT = "clara-awd-lstm"
VERSION = 1


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
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, buffer)
    write_bytes(folder / WEIGHTS, buffer.getvalue())
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "model": dataclasses.asdict(model.config),
        "codec": dataclasses.asdict(codec),
        "vocabulary": list(vocabulary),
        "info": info or {},
    }
    write_text(folder / CONFIG, json.dumps(meta, indent=1) + "\n")


def read_model_config(folder: str | Path) -> tuple[ModelConfig, CodecConfig, list[str], dict]:
    """The config.json of a model folder, checked."""
    path = Path(folder) / CONFIG
    meta = read_folder_json(folder, CONFIG, "model")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelError(f"{path}: not a Clara model config (format is not {FORMAT!r})")
    if meta.get("version") != VERSION:
        raise ModelError(f"{path}: model format version {meta.get('version')!r}, this Clara reads {VERSION}")
    try:
        config = from_dict({"model": meta.get("model"), "codec": meta.get("codec")}, str(path))
    except ConfigError as exc:
        raise ModelError(f"{path}: {exc}") from None
    vocabulary = meta.get("vocabulary")
    if not isinstance(vocabulary, list) or not vocabulary or not all(isinstance(t, str) for t in vocabulary) \
            or len(set(vocabulary)) != len(vocabulary):
        raise ModelError(f"{path}: vocabulary must be a non-empty list of distinct strings")
    return config.model, config.codec, vocabulary, typing.cast(dict, meta.get("info") or {})


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
    """Load a model folder for inference (eval mode) on device."""
    model_config, codec, vocabulary, info = read_model_config(folder)
    model = AWDLSTM(len(vocabulary), model_config)
    load_weights(model, Path(folder) / WEIGHTS)
    return LoadedModel(model.to(device).eval(), codec, vocabulary, info)


def load_weights(model: torch.nn.Module, path: Path, config_name: str = CONFIG) -> None:
    """Fill model from a plain state dict of tensors, read with weights_only=True (never unpickling
    code); ModelError names the file and why it does not fit."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ModelError(f"{path}: missing") from None
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError... for bad files
        raise ModelError(f"{path}: not a readable weights file ({exc.__class__.__name__})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{path}: not a state dict of tensors")
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[1:2] or [str(exc)[:200]]
        raise ModelError(f"{path}: weights do not fit {config_name} ({first[0].strip()})") from None
