"""A small learned beat tracker's input frames and its forward pass, in numpy.

After Böck & Davies' temporal convolutional beat trackers (Davies & Böck 2019; Böck & Davies
2020) and Liu et al., "Performance MIDI-to-score conversion by neural beat tracking" (ISMIR
2022), which both hear beats in a performance's onsets: the notes become frames (FPS a second)
of a few cheap features, a stack of dilated 1-D convolutions turns them into a beat and a
downbeat activation per frame, and a decoder (clara_live.beat.tracker) reads a tempo off them.
Trained by training/beat_tracker.py on ASAP's train works; the weights ship in
trained_models/beat/weights.npz, loaded with allow_pickle=False.

Pure functions but for `load`'s cache; times are seconds on any clock.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from clara_live.errors import InputError

FPS = 50  # frames a second
FEATURES = 7  # per frame: see `frames`
BANDS = (48, 72)  # MIDI pitches: bass below 48, middle below 72, treble from 72
KERNEL = 5
WEIGHTS = Path(__file__).resolve().parents[2] / "trained_models" / "beat" / "weights.npz"


def frames(onsets: Sequence[float], velocities: Sequence[float] | None = None,
           pitches: Sequence[float] | None = None, start: float | None = None,
           length: int | None = None) -> np.ndarray:
    """(length, FEATURES) float32 frames from `start` (default: the first onset), FPS a second:
    log(1 + onsets), summed velocity / 127, log(1 + onsets) in the bass, middle and treble
    bands, the lowest pitch struck ((pitch - 21) / 87, 0 where nothing is), and whether the
    frame holds the lowest note within half a second either side. Without pitches the bands and
    the lowest pitch read as middle C. Non-finite onsets are dropped."""
    t = np.asarray(onsets, dtype=float)
    v = np.full(len(t), 64.0) if velocities is None else np.asarray(velocities, dtype=float)
    p = np.full(len(t), 60.0) if pitches is None else np.asarray(pitches, dtype=float)
    if not len(v) == len(p) == len(t):
        raise InputError(f"frames: {len(t)} onsets, {len(v)} velocities and {len(p)} pitches differ in number")
    keep = np.isfinite(t) & np.isfinite(v) & np.isfinite(p)
    t, v, p = t[keep], np.clip(v[keep], 1, 127), np.clip(p[keep], 21, 108)
    if start is None:
        start = float(t.min()) if len(t) else 0.0
    index = np.floor((t - start) * FPS + 0.5).astype(int)
    if length is None:
        length = int(index.max()) + 1 if len(index) else 1
    inside = (index >= 0) & (index < length)
    index, v, p = index[inside], v[inside], p[inside]
    x = np.zeros((length, FEATURES), dtype=np.float64)
    np.add.at(x[:, 0], index, 1.0)
    np.add.at(x[:, 1], index, v / 127.0)
    band = np.searchsorted(BANDS, p, side="right")  # 0 bass, 1 middle, 2 treble
    np.add.at(x, (index, 2 + band), 1.0)
    lowest = np.full(length, np.inf)
    np.minimum.at(lowest, index, p)
    struck = np.isfinite(lowest)
    x[struck, 5] = (lowest[struck] - 21.0) / 87.0
    # a frame whose lowest note is the lowest within +-0.5 s: a bass note on a strong beat, often
    reach = FPS // 2
    padded = np.pad(lowest, reach, constant_values=np.inf)
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * reach + 1)
    x[struck, 6] = (lowest[struck] <= windows[struck].min(axis=1)).astype(float)
    for c in (0, 2, 3, 4):
        x[:, c] = np.log1p(x[:, c])
    return x.astype(np.float32)


def widen(times: Sequence[float], length: int, start: float = 0.0) -> np.ndarray:
    """(length,) float32 targets: 1 at the frame of each time, 0.5 at its neighbours."""
    y = np.zeros(length, dtype=np.float32)
    index = np.floor((np.asarray(times, dtype=float) - start) * FPS + 0.5).astype(int)
    for offset, value in ((-1, 0.5), (1, 0.5), (0, 1.0)):
        k = index + offset
        k = k[(k >= 0) & (k < length)]
        y[k] = np.maximum(y[k], value)
    return y


def check(weights: dict[str, np.ndarray], name: str = "weights") -> dict[str, np.ndarray]:
    """The weights if they make a network `forward` can run, else an InputError naming `name`."""
    def need(key: str, shape: tuple[int | None, ...]) -> np.ndarray:
        if key not in weights:
            raise InputError(f"{name}: no array {key!r} (not a beat tracker's weights)")
        a = weights[key]
        if a.ndim != len(shape) or any(s is not None and s != d for s, d in zip(shape, a.shape, strict=True)):
            raise InputError(f"{name}: {key} has shape {a.shape}, expected {shape}")
        if not np.all(np.isfinite(a)):
            raise InputError(f"{name}: {key} holds non-finite values")
        return a
    blocks = int(need("blocks", ()).item()) if "blocks" in weights else -1
    if blocks < 1:
        raise InputError(f"{name}: no positive array 'blocks' (not a beat tracker's weights)")
    channels = need("in.weight", (None, FEATURES)).shape[0]
    need("in.bias", (channels,))
    for b in range(blocks):
        need(f"block{b}.dilated.weight", (channels, channels, KERNEL))
        need(f"block{b}.dilated.bias", (channels,))
        need(f"block{b}.mix.weight", (channels, channels))
        need(f"block{b}.mix.bias", (channels,))
    heads = need("out.weight", (None, channels)).shape[0]
    need("out.bias", (heads,))
    if "tempo.weight" in weights:  # the optional tempo head
        bins = need("tempo.weight", (None, channels)).shape[0]
        need("tempo.bias", (bins,))
        bpm = need("tempo.bpm", (bins,))
        if bins < 2 or np.any(np.diff(bpm) <= 0) or bpm[0] <= 0:
            raise InputError(f"{name}: tempo.bpm is not a rising list of positive tempi")
    return weights


@functools.lru_cache(maxsize=4)
def load(path: Path = WEIGHTS) -> dict[str, np.ndarray]:
    """The weights in an .npz (never unpickled), checked; an InputError names a bad file."""
    try:
        with np.load(path, allow_pickle=False) as f:
            weights = {k: np.asarray(f[k]) for k in f.files}
    except (OSError, ValueError, EOFError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise InputError(f"{path}: not a readable beat tracker's weights ({first})") from None
    return check({k: v.astype(np.float32) if k not in ("blocks", "tempo.bpm") else v for k, v in weights.items()},
                 str(path))


def dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b (a matrix by a matrix or a vector) on the caller's thread. OpenBLAS spreads a product
    this small over every core; on the project's 2-core CPU with another busy process that made
    `forward` 100 times slower (1.4 ms on one thread, 170 ms median on two, under load:
    BENCHMARKS.md). numpy's einsum does its own loop, never BLAS's threads."""
    return np.einsum("ij,j->i" if b.ndim == 1 else "ij,jk->ik", a, b)


def dilation(block: int) -> int:
    return 2 ** block


def forward(weights: dict[str, np.ndarray], x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """(frames, heads) sigmoid activations (beat, downbeat) of (frames, FEATURES) input, and the
    tempo head's probabilities over weights["tempo.bpm"] for the whole input (None without one).
    The network: a 1x1 convolution in, then blocks h += mix(elu(dilated conv(h))) with
    dilation 2**block and 'same' zero padding, then a 1x1 convolution out; the tempo head is
    a linear layer on elu(h) averaged over the frames (after Böck, Davies & Knees 2019's
    multi-task tempo and beat tracking)."""
    h = dot(weights["in.weight"], x.T.astype(np.float32)) + weights["in.bias"][:, None]  # (C, T)
    channels, length = h.shape
    for b in range(int(weights["blocks"])):
        d = dilation(b)
        reach = d * (KERNEL // 2)
        padded = np.pad(h, ((0, 0), (reach, reach)))
        stacked = np.concatenate([padded[:, k * d:k * d + length] for k in range(KERNEL)], axis=0)  # (K*C, T)
        w = weights[f"block{b}.dilated.weight"].transpose(0, 2, 1).reshape(channels, KERNEL * channels)  # (C, K*C)
        z = dot(w, stacked) + weights[f"block{b}.dilated.bias"][:, None]
        z = np.where(z > 0, z, np.expm1(np.minimum(z, 0.0)))
        h = h + dot(weights[f"block{b}.mix.weight"], z) + weights[f"block{b}.mix.bias"][:, None]
    logits = dot(weights["out.weight"], h) + weights["out.bias"][:, None]
    activation = (1.0 / (1.0 + np.exp(-logits))).T
    if "tempo.weight" not in weights:
        return activation, None
    pooled = np.where(h > 0, h, np.expm1(np.minimum(h, 0.0))).mean(axis=1)
    z = dot(weights["tempo.weight"], pooled) + weights["tempo.bias"]
    z = np.exp(z - z.max())
    return activation, z / z.sum()


def receptive_field(blocks: int) -> float:
    """Seconds of context either side a frame's activation sees."""
    return sum(dilation(b) * (KERNEL // 2) for b in range(blocks)) / FPS


__all__ = ["FPS", "FEATURES", "WEIGHTS", "check", "dot", "forward", "frames", "load", "receptive_field", "widen"]
