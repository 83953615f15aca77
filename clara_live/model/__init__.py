"""The AWD-LSTM language model, its folder format and its evaluation."""

from clara_live.model.awd_lstm import AWDLSTM, detach
from clara_live.model.store import LoadedModel, ModelError, load_model, save_model

__all__ = ["AWDLSTM", "LoadedModel", "ModelError", "detach", "load_model", "save_model"]
