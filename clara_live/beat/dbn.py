"""Beats from a beat activation: a dynamic Bayesian network over tempo and beat phase.

After Krebs, Böck & Widmer 2015 ("An efficient state-space model for joint tempo and meter
tracking", madmom's DBNBeatTrackingProcessor): a state is a beat interval (frames, one of
a log-spaced set between MIN_BPM and MAX_BPM) and a position within it; the position advances
a frame a frame, and at the end of an interval the next one may change tempo, the likelier the
closer (TRANSITION). Frames within 1/OBSERVATION of an interval's start are beat states and
see the activation a; the others see (1 - a) * THRESHOLD / (1 - THRESHOLD), so a frame is
likelier a beat than not where a > THRESHOLD (madmom's model is THRESHOLD 1 / OBSERVATION).
Viterbi finds the likeliest path (an interval's start takes the gains of all its beat frames at
once, and the path is walked back an interval at a time); its beats are the frames where it
starts an interval, each moved to the activation's peak nearby (interpolated between frames).
The first guess is a log-Gaussian prior on the first interval's tempo.

Pure functions; an activation is FPS frames a second.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np

from clara_live.beat.limits import MAX_BPM, MIN_BPM
from clara_live.beat.net import FPS

TEMPI_PER_OCTAVE = 24  # tempo states (fewer where intervals run out of whole frames)
TRANSITION = 30.0  # lambda of exp(-lambda |ratio - 1|) between consecutive intervals
OBSERVATION = 16  # 1/OBSERVATION of an interval's frames are beat states
PRIOR_OCTAVES = 1.0  # the first guess's standard deviation, in octaves
TEMPO_WEIGHT = 0.5  # the tempo head's log probability counts this much at each beat
THRESHOLD = 1.0 / 16  # the activation above which a frame is likelier a beat than not
EPS = 1e-6
BAND = 1e-4  # tempo changes less likely than this are left out (a band of 23 tempo states where 1e-7 kept 49;
# issue 23: the chosen tempo the same on every train and valid phrase, the decoder 12 % faster; at 1e-2, 11
# states, twice as fast, the chosen tempo lost 3 valid phrases)


class StateSpace(NamedTuple):
    intervals: np.ndarray  # (n,) frames per beat of each tempo state
    firsts: np.ndarray  # (n,) the state index where each interval's positions start
    lasts: np.ndarray  # (n,) ... and end
    block: np.ndarray  # (states,) each state's tempo index
    beat: np.ndarray  # (states,) bool: a beat state
    sources: np.ndarray  # (n, width) the intervals whose end may lead to interval j's start ...
    log_transition: np.ndarray  # (n, width) ... and the log probability of each (-inf: padding)


@functools.lru_cache(maxsize=8)
def state_space(min_bpm: float = MIN_BPM, max_bpm: float = MAX_BPM, per_octave: int = TEMPI_PER_OCTAVE,
                transition: float = TRANSITION, observation: int = OBSERVATION) -> StateSpace:
    shortest, longest = 60.0 * FPS / max_bpm, 60.0 * FPS / min_bpm
    n = int(np.log2(longest / shortest) * per_octave) + 1
    intervals = np.unique(np.round(shortest * (longest / shortest) ** (np.arange(n) / (n - 1))).astype(int))
    intervals = intervals[intervals >= 2]
    firsts = np.r_[0, np.cumsum(intervals)[:-1]]
    lasts = firsts + intervals - 1
    block = np.repeat(np.arange(len(intervals)), intervals)
    position = np.arange(block.size) - firsts[block]
    beat = position < np.maximum(1, intervals[block] / observation)
    ratio = intervals[None, :] / intervals[:, None]  # (from, to)
    weights = np.exp(-transition * np.abs(ratio - 1.0))
    weights /= weights.sum(axis=1, keepdims=True)
    # only the tempo changes likelier than BAND (a band around the diagonal: fast to take the max of)
    n = len(intervals)
    likely_from, likely_to = np.nonzero(weights >= BAND)
    reach = int(np.max(np.abs(likely_from - likely_to)))
    offsets = np.arange(-reach, reach + 1)
    sources = np.arange(n)[:, None] + offsets[None, :]  # (to, width)
    inside = (sources >= 0) & (sources < n)
    sources = np.clip(sources, 0, n - 1)
    log_transition = np.where(inside, np.log(np.maximum(weights[sources, np.arange(n)[:, None]], 1e-300)), -np.inf)
    return StateSpace(intervals, firsts, lasts, block, beat, sources, log_transition)


def viterbi(activation: np.ndarray, prior_bpm: float, space: StateSpace,
            prior_octaves: float = PRIOR_OCTAVES, threshold: float = THRESHOLD,
            per_beat: np.ndarray | None = None) -> np.ndarray:
    """The likeliest state path (frames,) for a (frames,) beat activation in 0..1; `per_beat`
    (n,) is a log score each tempo state earns at each of its beats (a tempo head's say)."""
    a = np.clip(np.asarray(activation, dtype=np.float64), EPS, 1 - EPS)
    # every state sees off[t], whatever it is, so only beat states' on[t] - off[t] tells them apart
    gain = np.log(a) - np.log((1 - a) * threshold / (1 - threshold))
    bpm = 60.0 * FPS / space.intervals
    log_prior = -0.5 * (np.log2(bpm / prior_bpm) / prior_octaves) ** 2 - np.log(space.intervals)
    per_beat = np.zeros(len(space.intervals)) if per_beat is None else per_beat
    frames, n, size = len(a), len(space.intervals), space.block.size
    # an interval started at frame t is a beat state for its first `beat_frames` frames, whose gains are
    # known already (the activation is the whole phrase's): a start takes them all at once, so no frame
    # adds to the beat states one by one (the same scores where an interval ends, the same path)
    beat_frames = np.bincount(space.block[space.beat], minlength=n)
    total = np.r_[0.0, np.cumsum(gain)]
    ahead = total[np.minimum(np.arange(frames)[:, None] + beat_frames[None, :], frames)] - total[:frames, None]
    ahead += per_beat
    # the scores at frame t are buffer[frames - t:][:size]: a position advancing a frame is the same
    # number one place to the left, so no copy a frame; only the intervals' starts are written
    buffer = np.empty(frames - 1 + size)
    score = buffer[frames - 1:]
    position = np.arange(size) - space.firsts[space.block]
    score[:] = (log_prior + per_beat)[space.block] + total[np.clip(beat_frames[space.block] - position, 0, frames)]
    width = space.sources.shape[1]
    last_of_source = space.lasts[space.sources]  # (to, width): the state each transition leaves
    row_start = np.arange(n) * width
    back = np.zeros((frames, n), dtype=np.int32)  # the best source of each start, as its column in sources
    for t in range(1, frames):
        candidates = score[last_of_source] + space.log_transition  # (to, width)
        best = candidates.argmax(axis=1)
        back[t] = best
        score = buffer[frames - 1 - t:][:size]  # every state one position on
        score[space.firsts] = candidates.ravel()[row_start + best] + ahead[t]
        if t % 64 == 0:
            score -= score.max()  # keep the numbers small over long phrases
    # back through the path an interval at a time: its positions, then the interval it came from
    path = np.empty(frames, dtype=np.int64)
    state, t = int(np.argmax(score)), frames - 1
    while True:
        j = int(space.block[state])
        steps = min(state - int(space.firsts[j]), t)
        path[t - steps:t + 1] = np.arange(state - steps, state + 1)
        t -= steps
        if t == 0:
            return path
        state = int(space.lasts[space.sources[j, back[t, j]]])
        t -= 1


def track(activation: np.ndarray, prior_bpm: float, tempo: tuple[np.ndarray, np.ndarray] | None = None,
          **constants: float) -> np.ndarray:
    """Beat times (seconds from frame 0) for a (frames,) beat activation. `tempo`: (bpm, p), a
    tempo head's probabilities, weighs each beat of a tempo state by p ** TEMPO_WEIGHT (p read
    off in log tempo). Constants override this module's (per_octave, transition, observation,
    prior_octaves, threshold, tempo_weight) for tuning."""
    observation = int(constants.get("observation", OBSERVATION))
    space = state_space(MIN_BPM, MAX_BPM, int(constants.get("per_octave", TEMPI_PER_OCTAVE)),
                        float(constants.get("transition", TRANSITION)), observation)
    a = np.asarray(activation, dtype=np.float64)
    if a.size < 2:
        return np.zeros(0)
    per_beat = None
    if tempo is not None:
        bpm, p = tempo
        log_p = np.interp(np.log(60.0 * FPS / space.intervals), np.log(bpm), np.log(np.maximum(p, 1e-6)))
        per_beat = float(constants.get("tempo_weight", TEMPO_WEIGHT)) * log_p
    path = viterbi(a, prior_bpm, space, float(constants.get("prior_octaves", PRIOR_OCTAVES)),
                   float(constants.get("threshold", THRESHOLD)), per_beat)
    starts = np.flatnonzero(np.isin(path, space.firsts))
    return np.array([_peak(a, int(f), int(space.intervals[space.block[path[f]]])) for f in starts]) / FPS


def _peak(a: np.ndarray, frame: int, interval: int) -> float:
    """The activation's peak within a sixth of an interval of `frame`, interpolated (a parabola
    through it and its neighbours), in frames."""
    reach = max(1, interval // 6)
    lo, hi = max(0, frame - reach), min(len(a), frame + reach + 1)
    k = lo + int(np.argmax(a[lo:hi]))
    if 0 < k < len(a) - 1:
        left, mid, right = a[k - 1], a[k], a[k + 1]
        curve = left - 2 * mid + right
        if curve < 0:
            return k + 0.5 * (left - right) / curve
    return float(k)
