"""Touch in Clara's live notes (issue 17): when and how hard one of her note-ons sounds.

The Sampler gives each note-on it samples a learned velocity and onset offset (`Touch`, with
`sampling.touch: learned` on a model that learned touch); the worker's answers and the
accompaniment both place a note through `placed`, so her timing follows one rule.
"""

from __future__ import annotations

from clara_live.codec.notewise import Touch
from clara_live.codec.tokens import Kind
from clara_live.live.tempo import Grid
from clara_live.sampling.grammar import KINDS
from clara_live.sampling.sampler import Sampler

_ON = KINDS.index(Kind.ON)


def touch_of(sampler: Sampler, token_id: int) -> Touch | None:
    """The touch the sampler just gave this token (a note-on, with learned touch), else None."""
    if not sampler.learned_touch or sampler.vocab.kind[token_id] != _ON or not sampler.made[0]:
        return None
    return sampler.made[0][-1]


def placed(grid: Grid, step: int, velocity: int, touch: Touch | None, on_beat: bool = False,
           released: bool = False, within: float | None = None) -> tuple[float, int]:
    """(seconds, monotonic; velocity) of a note-on struck at session step `step`: on its step's time
    at `velocity`, or with its touch at its own velocity, its onset moved by its offset (in steps),
    except a note pinned to the player's beat (`on_beat`: an answer's first notes) and a key released
    in this very step (`released`: never struck before its release). `within`: the offset moves it at
    most this many seconds (a part that keeps to the player's grid)."""
    if touch is None:
        return grid.time_of(step), velocity
    offset = 0.0 if on_beat else max(touch.offset, 0.0) if released else touch.offset
    if within is not None:
        offset = min(max(offset, -within / grid.step_seconds), within / grid.step_seconds)
    return grid.time_of(step + offset), touch.velocity
