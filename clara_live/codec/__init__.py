"""Notewise and chordwise codecs: notes on a step grid to tokens and back."""

from __future__ import annotations

from clara_live.codec.chordwise import ChordwiseCodec
from clara_live.codec.notewise import NotewiseCodec
from clara_live.codec.steps import to_steps, transpose
from clara_live.config import CodecConfig

Codec = NotewiseCodec | ChordwiseCodec

__all__ = ["Codec", "ChordwiseCodec", "NotewiseCodec", "make_codec", "to_steps", "transpose"]


def make_codec(config: CodecConfig) -> Codec:
    """The codec that config.encoding names."""
    return NotewiseCodec(config) if config.encoding == "notewise" else ChordwiseCodec(config)
