"""A piece as something to see: a piano-roll PNG through matplotlib, each note shaded by its velocity.

Each part has its colour (blue, orange, green...), and within it a note's shade is its velocity:
light for soft, dark for loud, outlined in the part's colour so the softest note stays visible. A
lane under the roll plots each note's velocity at its onset in the same shades, so a flat dynamic
reads as a straight row of dots and a shaped one as a contour; its axis is the shades' key.

Time runs at PX_PER_S pixels a second at the tempo given, and a picture wider than MAX_WIDTH is
squeezed to it; the pitches are cropped to the notes drawn. `draw_continuation` draws what
`clara continue` made: the last bars of the prompt and the whole continuation, or the whole piece.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from clara_live.atomic import write_bytes
from clara_live.errors import InputError
from clara_live.music.notes import PIANO, VIOLIN, StepNote

COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")  # matplotlib's tab10, in order
_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
_BLACK = {1, 3, 6, 8, 10}
DPI = 100
PX_PER_S = 80  # a 16th note at 120 bpm is 10 px wide: a MAESTRO run's notes stay apart
MIN_WIDTH, MAX_WIDTH = 6.0, 40.0  # inches: 600 to 4000 pixels
MARGIN_WIDTH = 1.6  # inches beside the roll: pitch names on the left, a little air on the right
PX_PER_PITCH = 11
LANE_HEIGHT = 1.1  # inches: the velocity lane
CHROME_HEIGHT = 1.2  # inches: the title, the legend and the axes' labels
MIN_BEAT_PX = 8  # beat lines only when beats are at least this far apart
MIDI_BPM = 120.0  # the tempo of steps given without one: MIDI's default
PROMPT_TAIL_S = 8.0  # the prompt drawn before Clara: about 4 bars at 120 bpm, a phrase to hear her pick up from


def pitch_name(pitch: int) -> str:
    """Scientific pitch name, C4 = MIDI 60: 61 -> "C#4"."""
    return f"{_NAMES[pitch % 12]}{pitch // 12 - 1}"


def velocity_colour(part: int, velocity: int) -> tuple[float, float, float]:
    """The shade a note of this velocity (1..127) takes in the part-th part's colour: from the colour
    mostly white (1) through the colour itself (about 80) to the colour mostly black (127)."""
    from matplotlib.colors import to_rgb

    colour = to_rgb(COLOURS[part % len(COLOURS)])
    t = (min(max(velocity, 1), 127) - 1) / 126
    if t < 0.6:  # white -> the colour
        mix, towards = 0.8 * (1 - t / 0.6), (1.0, 1.0, 1.0)
    else:  # the colour -> black
        mix, towards = 0.5 * (t - 0.6) / 0.4, (0.0, 0.0, 0.0)
    return tuple(c + (w - c) * mix for c, w in zip(colour, towards, strict=True))  # type: ignore[return-value]


def continuation_window(prompt: Sequence[StepNote], continuation: Sequence[StepNote], sample_freq: int,
                        bpm: float, beats_per_bar: int = 4) -> tuple[int, int, int]:
    """(start, begins, end) in steps: the prompt drawn from `start`, Clara from `begins` to `end`.

    Clara begins where the prompt's last note ends (0 without a prompt). The prompt's tail is
    PROMPT_TAIL_S seconds, at most half Clara's length so she fills most of the picture, and starts
    on the bar line before it unless that bar would make it longer than her part. At least one bar.
    """
    begins = max((n.end for n in prompt), default=0)
    end = max([n.end for n in continuation] + [begins])
    steps_per_s = sample_freq * bpm / 60
    tail = min(PROMPT_TAIL_S * steps_per_s, (end - begins) / 2)
    bar = sample_freq * beats_per_bar
    start = math.floor((begins - tail) / bar) * bar
    if begins - start > max(tail, end - begins):
        start = math.floor(begins - tail)
    start = max(0, start)
    return start, begins, max(end, start + bar)


def draw_continuation(prompt: Sequence[StepNote], continuation: Sequence[StepNote], sample_freq: int,
                      path: str | Path, bpm: float, beats_per_bar: int = 4, title: str | None = None,
                      whole: bool = False) -> None:
    """Draw a prompt (blue) and Clara's continuation of it (orange) as a piano-roll PNG; a chamber piece's
    violin or voice notes (family v) apart from its piano's, in green (the prompt's) and red (Clara's).

    By default the picture is the prompt's last bars (continuation_window) and the whole
    continuation, seconds counted from where Clara begins, at PX_PER_S; with `whole`, the whole
    piece from its first bar, seconds from its start, squeezed into MAX_WIDTH when longer. A dashed
    line marks where Clara begins. Written atomically; InputError if path cannot be written.
    """
    start, begins, end = continuation_window(prompt, continuation, sample_freq, bpm, beats_per_bar)
    if whole or not prompt:
        window, origin, label, xlabel = None, 0, "prompt", "seconds"
    else:
        window, origin, xlabel = (start, end), begins, "seconds from where Clara begins"
        label = f"prompt's last {(begins - start) / sample_freq * 60 / bpm:.0f} s"
    parts = [(label, prompt), ("Clara", continuation)] if prompt else [("Clara", continuation)]
    colours = [0, 1] if prompt else [1]
    if any(n.family == VIOLIN for n in [*prompt, *continuation]):  # a chamber piece: each family apart
        parts, colours = _by_family(parts, colours)
    draw_piano_roll(parts, sample_freq, path, bpm=bpm, beats_per_bar=beats_per_bar, title=title, window=window,
                    origin=origin, xlabel=xlabel, marks=[(begins, "Clara begins")] if prompt else [],
                    colours=colours)


def _by_family(parts: Sequence[tuple[str, Sequence[StepNote]]], colours: Sequence[int]
               ) -> tuple[list[tuple[str, list[StepNote]]], list[int]]:
    """Each part split into its piano (p) and violin or voice (v) notes: p in the part's colour, v in the
    colour two on (blue and green the prompt's, orange and red Clara's)."""
    split, shades = [], []
    for (label, notes), colour in zip(parts, colours, strict=True):
        for family, name, shade in ((PIANO, "piano", colour), (VIOLIN, "violin/voice", colour + 2)):
            split.append((f"{label}, {name}", [n for n in notes if n.family == family]))
            shades.append(shade)
    return split, shades


def draw_piano_roll(parts: Sequence[tuple[str, Sequence[StepNote]]], sample_freq: int, path: str | Path,
                    bpm: float | None = None, beats_per_bar: int = 4, title: str | None = None, *,
                    window: tuple[int, int] | None = None, origin: int = 0, xlabel: str = "seconds",
                    marks: Sequence[tuple[int, str]] = (), colours: Sequence[int] | None = None) -> None:
    """Draw parts as a piano-roll PNG, one colour per part (in order: blue, orange, green...).

    parts: (label, notes) pairs, note times in steps of sample_freq steps per quarter note, played at
    bpm (default MIDI_BPM). The x axis counts seconds from the step `origin` (captioned xlabel and
    the tempo), the top axis bars of beats_per_bar quarter notes (1 = the first bar).
    window: the steps drawn, (first, last); by default the whole bars the notes reach. A part's
    label counts the notes drawn. marks: (step, label) pairs drawn as dashed lines. colours: the
    index into COLOURS of each part (default 0, 1, 2...). Each note's shade is its velocity
    (velocity_colour). Empty parts are drawn as an empty roll. Written atomically; InputError if
    path cannot be written.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if sample_freq <= 0 or beats_per_bar <= 0:
        raise ValueError(f"sample_freq {sample_freq} and beats_per_bar {beats_per_bar} must be positive")
    colours = list(colours) if colours is not None else list(range(len(parts)))
    frame = _Frame.around([n for _, notes in parts for n in notes], sample_freq, bpm or MIDI_BPM, beats_per_bar,
                          window, origin)
    fig = Figure(figsize=(frame.width, frame.height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    roll, lane = fig.subplots(2, 1, sharex=True, height_ratios=[frame.roll_height, LANE_HEIGHT])
    _draw_keys_and_bars(roll, frame)
    handles = []
    for (label, notes), colour in zip(parts, colours, strict=True):
        shown = [n for n in notes if n.end > frame.start and n.start < frame.end]
        _draw_notes(roll, lane, shown, colour, frame)
        handles.append(_legend_patch(colour, f"{label} ({len(shown)} notes)"))
    if frame.empty:
        roll.text(0.5, 0.5, "no notes", transform=roll.transAxes, ha="center", va="center", color="0.4")
    _draw_lane_axes(lane, frame)
    for step, label in marks:
        _draw_mark(roll, lane, frame.x(step), label)
    _label_axes(roll, lane, frame, xlabel)
    if handles:
        fig.legend(handles=handles, loc="outside upper right", ncols=len(handles), fontsize=8, frameon=False,
                   title="shade: velocity, light soft to dark loud", title_fontsize=8, alignment="right")
    if title:
        fig.suptitle(title, x=0.01, ha="left", fontsize=11)
    _save_png(fig, path)


@dataclass(frozen=True)
class _Frame:
    """What a roll spans: steps start..end across, pitches low..high up, and the figure's size."""

    sample_freq: int
    bpm: float
    beats_per_bar: int
    start: int  # steps
    end: int
    origin: int  # the step at 0 s
    low: int
    high: int
    empty: bool  # no notes at all

    @classmethod
    def around(cls, notes: Sequence[StepNote], sample_freq: int, bpm: float, beats_per_bar: int,
               window: tuple[int, int] | None, origin: int) -> _Frame:
        """The window (by default the whole bars the notes reach, at least one) and the pitches of
        the notes in it with two to spare."""
        bar = sample_freq * beats_per_bar
        if window is None:
            window = (0, max(1, -(-max((n.end for n in notes), default=0) // bar)) * bar)
        start, end = window
        if end <= start:
            raise ValueError(f"window {window}: the last step must come after the first")
        pitches = [n.pitch for n in notes if n.end > start and n.start < end]
        low, high = min(pitches, default=60) - 2, max(pitches, default=71) + 2
        if high - low < 14:  # at least an octave and a bit, centred on the notes
            low, high = (low + high) // 2 - 7, (low + high) // 2 + 7
        return cls(sample_freq, bpm, beats_per_bar, start, end, origin, low, high, not pitches)

    def x(self, step: float) -> float:
        """A step's place on the x axis: seconds from the origin."""
        return (step - self.origin) / self.sample_freq * 60 / self.bpm

    @property
    def seconds(self) -> float:
        return self.x(self.end) - self.x(self.start)

    @property
    def width(self) -> float:  # inches
        return min(MAX_WIDTH, max(MIN_WIDTH, MARGIN_WIDTH + self.seconds * PX_PER_S / DPI))

    @property
    def roll_height(self) -> float:  # inches
        return min(8.0, max(2.0, (self.high - self.low + 1) * PX_PER_PITCH / DPI))

    @property
    def height(self) -> float:  # inches
        return CHROME_HEIGHT + self.roll_height + LANE_HEIGHT


def _draw_keys_and_bars(ax, frame: _Frame) -> None:
    """The background: black keys shaded as on a keyboard, a line under each C, beat lines when
    they are far enough apart, bar lines."""
    ax.set_xlim(frame.x(frame.start), frame.x(frame.end))
    ax.set_ylim(frame.low - 0.5, frame.high + 0.5)
    for pitch in range(frame.low, frame.high + 1):
        if pitch % 12 in _BLACK:
            ax.axhspan(pitch - 0.5, pitch + 0.5, color="0.94", lw=0, zorder=0)
        elif pitch % 12 == 0 and pitch > frame.low:
            ax.axhline(pitch - 0.5, color="0.75", lw=0.6, zorder=1)
    beat = frame.sample_freq
    first, last = -(-frame.start // beat), frame.end // beat
    beat_px = 60 / frame.bpm * (frame.width - MARGIN_WIDTH) * DPI / frame.seconds
    for b in range(first, last + 1):
        if b % frame.beats_per_bar == 0:
            ax.axvline(frame.x(b * beat), color="0.6", lw=0.7, zorder=1)
        elif beat_px >= MIN_BEAT_PX:
            ax.axvline(frame.x(b * beat), color="0.87", lw=0.4, zorder=1)


def _draw_notes(roll, lane, notes: Sequence[StepNote], colour: int, frame: _Frame) -> None:
    """Notes as boxes shaded by velocity and outlined in their part's colour, and their velocities
    as dots in the lane."""
    from matplotlib.collections import PolyCollection

    if not notes:
        return
    edge = COLOURS[colour % len(COLOURS)]
    faces = [velocity_colour(colour, n.velocity) for n in notes]
    verts = [[(frame.x(n.start), n.pitch - 0.42), (frame.x(n.end), n.pitch - 0.42),
              (frame.x(n.end), n.pitch + 0.42), (frame.x(n.start), n.pitch + 0.42)] for n in notes]
    roll.add_collection(PolyCollection(verts, facecolors=faces, edgecolors=edge, linewidths=0.5, zorder=2))
    lane.scatter([frame.x(n.start) for n in notes], [n.velocity for n in notes], s=9, c=faces,
                 edgecolors=edge, linewidths=0.4, zorder=2, clip_on=True)


def _draw_lane_axes(lane, frame: _Frame) -> None:
    lane.set_ylim(0, 134)
    lane.set_yticks([1, 32, 64, 96, 127])
    for level in (32, 64, 96):
        lane.axhline(level, color="0.9", lw=0.5, zorder=0)
    lane.tick_params(axis="y", labelsize=7)
    lane.set_ylabel("velocity", fontsize=8)


def _draw_mark(roll, lane, x: float, label: str) -> None:
    for ax in (roll, lane):
        ax.axvline(x, color="0.15", lw=1.2, ls=(0, (4, 3)), zorder=3)
    roll.annotate(label, (x, 1), xycoords=("data", "axes fraction"), xytext=(4, -4), textcoords="offset points",
                  ha="left", va="top", fontsize=8, color="0.15", zorder=4,
                  bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.85})


def _legend_patch(colour: int, label: str):
    from matplotlib.patches import Patch

    return Patch(facecolor=velocity_colour(colour, 80), edgecolor=COLOURS[colour % len(COLOURS)], label=label)


def _label_axes(roll, lane, frame: _Frame, xlabel: str) -> None:
    """Pitch names up the side, seconds along the bottom and bar numbers along the top."""
    from matplotlib.ticker import MaxNLocator

    low, high = frame.low, frame.high
    # y: the C of every octave, and every natural when the range is small enough to read them
    ticks = [p for p in range(low, high + 1) if p % 12 == 0 or (high - low <= 30 and p % 12 not in _BLACK)]
    roll.set_yticks(ticks, [pitch_name(p) for p in ticks], fontsize=7)
    roll.set_ylabel("pitch")
    roll.tick_params(axis="x", labelbottom=False)
    nbins = max(4, int(frame.width * 1.5))
    lane.xaxis.set_major_locator(MaxNLocator(nbins=nbins, steps=[1, 2, 5, 10]))
    lane.tick_params(axis="x", labelsize=8)
    lane.set_xlabel(f"{xlabel} (at {frame.bpm:g} bpm)", fontsize=8)
    steps_per_bar = frame.sample_freq * frame.beats_per_bar
    per_bar = frame.x(steps_per_bar) - frame.x(0)  # seconds a bar
    zero = frame.x(0)
    top = roll.secondary_xaxis("top", functions=(lambda s: (s - zero) / per_bar + 1,
                                                 lambda b: (b - 1) * per_bar + zero))
    top.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=nbins))
    top.set_xlabel(f"bar ({frame.beats_per_bar}/4)", fontsize=8)
    top.tick_params(labelsize=7)


def _save_png(fig, path: str | Path) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    try:
        write_bytes(path, buffer.getvalue())
    except OSError as exc:
        raise InputError(f"{path}: cannot write ({exc.strerror or exc.__class__.__name__})") from None
