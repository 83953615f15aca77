"""The live terminal view: a scrolling piano roll of the player and Clara, and a status area.

`render` is pure (a state and a size in, lines out) so it is tested as strings; `TerminalView`
only adds the terminal around it: the alternate screen, a hidden cursor, a rate limit, and one
write per frame. Plain ANSI escape sequences, 256 colours; no curses.

Layout, top to bottom: a header (mode, turn, beat, legend, ports), a status line (tempo and its
source, sampling settings, latency), the roll, and the last log lines. Time runs left to right
with `now` at the right edge; each text row holds two pitch bands, one per half of the cell
(the half blocks ▀ ▄ █), each band one or more semitones, so the whole range fits.
Where the player and Clara sound in the same half cell, it takes a third colour (BOTH_COLOUR).
"""

from __future__ import annotations

import math
import re
import shutil
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TextIO

from clara_live.live.midi import NOTE_OFF, NOTE_ON

PLAYER_COLOUR = 33  # blue (256-colour palette)
CLARA_COLOUR = 208  # orange
BOTH_COLOUR = 170  # orchid: player and Clara in the same half cell
PLAN_COLOUR = 223  # light peach: what Clara plans to play next (accompany), ahead of now
BEAT_COLOUR = 237  # faint grey beat lines
DIM_COLOUR = 244  # gutter labels, log lines, separators
TURN_COLOURS = {"listening": PLAYER_COLOUR, "waiting": 220, "clara": CLARA_COLOUR}
_COLOURS = {1: PLAYER_COLOUR, 2: CLARA_COLOUR, 3: BOTH_COLOUR, 4: PLAN_COLOUR}  # bit 1 player, bit 2 Clara; 4 planned
GUTTER = 4  # columns left of the roll for octave labels ("C4 ")
MAX_LOG_LINES = 5
RESET = "\x1b[0m"

ENTER = "\x1b[?1049h\x1b[?25l\x1b[?7l\x1b[H\x1b[2J"  # alternate screen, hide cursor, no autowrap, clear
LEAVE = "\x1b[0m\x1b[?7h\x1b[?25h\x1b[?1049l"  # undo all of ENTER
FRAME_START = "\x1b[?2026h\x1b[H"  # begin a synchronised update (ignored where unsupported), cursor home
FRAME_END = "\x1b[J\x1b[?2026l"  # clear whatever an older, taller frame left; end the update


@dataclass(frozen=True)
class RollNote:
    source: str  # "player" or "clara"; other sources are not drawn
    pitch: int  # MIDI pitch
    start: float  # seconds, monotonic clock
    end: float | None  # seconds; None while sounding


@dataclass(frozen=True)
class ViewState:
    now: float  # seconds, monotonic clock (same clock as the notes)
    mode: str  # "call-response" | "suggest" | "accompany"
    turn: str  # "listening" | "waiting" (phrase ended, Clara about to answer) | "clara"
    bpm: float
    tempo_source: str  # "bpm" | "tap" | "clock" | "link" | "playing" (heard in the last phrase) | "following"
    # (the player's beat followed as they play)
    beat_phase: float  # 0..1 position inside the current beat
    temperature: float
    top_k: int
    random_freq: float
    latency_ms: tuple[float, float] | None  # (p50, p99) of note-in -> model-updated, ms; None before any
    notes: tuple[RollNote, ...]  # recent notes (the caller prunes old ones)
    log: tuple[str, ...]  # recent log lines, newest last
    ports: str  # e.g. "in: Clara In  out: Clara Out"
    hint: str = ""  # how to play, under the status line (the computer keyboard's layout); "" for none
    planned: tuple[RollNote, ...] = ()  # accompany: Clara's plan, notes to sound (end None: to the plan's end)
    ahead: float = 0.0  # seconds of the roll right of now, where her plan is drawn lightly (0: now is the edge)


def _clean(text: str) -> str:
    """Text safe to print in one line: control characters (escapes, newlines, tabs) become spaces."""
    return text if text.isprintable() else "".join(c if c.isprintable() else " " for c in text)


def _tempo(state: ViewState) -> str:
    source = {"playing": "from your playing", "following": "following you"}.get(state.tempo_source, state.tempo_source)
    return f"{state.bpm:.1f} bpm ({source})"


def _sampling(state: ViewState) -> str:
    return f"T {state.temperature:.2f} k {state.top_k} rf {state.random_freq:.2f}"


def _latency(state: ViewState) -> str:
    if state.latency_ms is None:
        return "latency -"
    p50, p99 = state.latency_ms
    return f"latency p50 {p50:.1f} ms p99 {p99:.1f} ms"


def plain(state: ViewState) -> str:
    """One line of plain text, no escape codes (for logs):
    "call-response | listening | 120.0 bpm (tap) | T 1.00 k 5 rf 0.50 | latency p50 0.4 ms p99 1.2 ms"."""
    return _clean(" | ".join([state.mode, state.turn, _tempo(state), _sampling(state), _latency(state)]))


def _line(segments: Iterable[tuple[str, str]], width: int) -> str:
    """Join (text, SGR parameters) segments, cut to `width` visible characters; "" is the default style."""
    out, left = [], width
    for text, sgr in segments:
        text = _clean(text)[:left]
        if text:
            out.append(f"\x1b[{sgr}m{text}{RESET}" if sgr else text)
            left -= len(text)
    return "".join(out)


def _header(state: ViewState, width: int) -> str:
    dim = f"38;5;{DIM_COLOUR}"
    on_beat = math.isfinite(state.beat_phase) and state.beat_phase % 1.0 < 0.25
    return _line([(" Clara ", f"1;38;5;{CLARA_COLOUR}"), (state.mode, "1"), (" · ", dim),
                  (state.turn, f"1;38;5;{TURN_COLOURS.get(state.turn, DIM_COLOUR)}"), ("  ", ""),
                  ("●" if on_beat else "○", "1" if on_beat else dim), ("   ", ""),
                  ("■", f"38;5;{PLAYER_COLOUR}"), (" you ", ""), ("■", f"38;5;{CLARA_COLOUR}"), (" Clara ", ""),
                  ("■", f"38;5;{BOTH_COLOUR}"), (" both   ", ""), (state.ports, dim)], width)


def _status(state: ViewState, width: int) -> str:
    sep = (" │ ", f"38;5;{DIM_COLOUR}")
    return _line([(" ", ""), (_tempo(state), "1"), sep, (_sampling(state), ""), sep, (_latency(state), "")], width)


def _columns(start: float, end: float, t0: float, dt: float, cols: int) -> tuple[int, int] | None:
    """First and last column of [start, end] in a roll of `cols` columns from t0, dt seconds each;
    None when off the roll. A note with end <= start still takes the column of its start."""
    x0, x1 = (start - t0) / dt, (max(end, start) - t0) / dt
    if not math.isfinite(x0) or x0 >= cols or not x1 > 0:
        return None
    c0 = max(0, math.floor(x0 + 1e-9))
    c1 = min(cols - 1, math.ceil(min(x1, cols) - 1e-9) - 1)  # end is exclusive: a note up to 1.0 s ends before it
    return c0, max(c0, c1)


def _cell(code: int) -> tuple[str, str | None]:
    """The character and SGR parameters (None: default style) of a cell code: bit 0 player in the upper
    half, bit 1 Clara in the upper half, bits 2 and 3 the same in the lower half, bit 4 a beat line, bits 5
    and 6 her plan in the upper and lower half (drawn where neither sounds)."""
    up, lo = code & 3 or (code >> 5 & 1) * 4, code >> 2 & 3 or (code >> 6 & 1) * 4  # 1 player, 2 Clara, 3 both, 4 plan
    if up and lo and up != lo:
        return "▀", f"0;38;5;{_COLOURS[up]};48;5;{_COLOURS[lo]}"
    if up or lo:
        return ("█" if up and lo else "▀" if up else "▄"), f"0;38;5;{_COLOURS[up or lo]}"
    return ("┊", f"0;38;5;{BEAT_COLOUR}") if code & 16 else (" ", None)


_CELLS = [_cell(code) for code in range(128)]
_RUNS = re.compile(rb"(.)\1*", re.DOTALL)  # runs of one repeated byte


def _beats(state: ViewState, cols: int, dt: float, now_col: float) -> bytearray:
    """1 in the columns holding a beat line: every beat, or every 2nd, 4th... so lines stay 4 columns apart.
    Counted in columns from now's (`now_col`), not in clock seconds, so a huge clock value cannot stall the loop."""
    beats = bytearray(cols)
    step = 60.0 / state.bpm / dt if math.isfinite(state.bpm) and state.bpm > 0 else math.nan  # columns a beat
    if not (math.isfinite(step) and step > 0 and math.isfinite(state.beat_phase)):
        return beats
    x = now_col - (state.beat_phase % 1.0) * step  # the latest beat
    while step < 4:
        step *= 2
    while x + step < cols:  # the beats to come, right of now
        x += step
    while x >= 0:
        beats[min(cols - 1, math.floor(x))] = 1
        x -= step
    return beats


def _roll(state: ViewState, rows: int, cols: int, seconds: float, low: int, high: int) -> list[str]:
    """`rows` lines of GUTTER + `cols` characters: the notes and the beat lines."""
    band = max(1, math.ceil((high - low + 1) / (2 * rows)))  # semitones per half cell
    # half-cell rows, bottom first, one set per source: 1 where it sounds (bytes, so slices paint fast)
    slots = {source: [bytearray(cols) for _ in range(2 * rows)] for source in ("player", "clara", "plan")}
    ahead = min(max(state.ahead, 0.0), seconds) if math.isfinite(state.ahead) else 0.0
    dt = (seconds + ahead) / cols
    t0 = state.now - seconds
    planned = [RollNote("plan", n.pitch, max(n.start, state.now), n.end) for n in state.planned]
    for note in (*state.notes, *planned):
        pitch = int(note.pitch)
        if note.source not in slots or not low <= pitch <= high:
            continue
        until = state.now + ahead if note.source == "plan" else state.now  # where a note with no end yet reaches
        end = until if note.end is None or math.isnan(note.end) else note.end
        span = _columns(note.start, end, t0, dt, cols)
        if span is not None:
            slots[note.source][(pitch - low) // band][span[0]:span[1] + 1] = b"\x01" * (span[1] + 1 - span[0])
    beats = int.from_bytes(_beats(state, cols, dt, seconds / dt))
    player, clara, plan = slots["player"], slots["clara"], slots["plan"]
    lines = []
    for row in range(rows - 1, -1, -1):  # top line first
        first = low + 2 * row * band  # lowest pitch of the row
        c_pitch = first + (-first) % 12
        label = f"C{c_pitch // 12 - 1}" if c_pitch <= min(high, first + 2 * band - 1) else ""
        parts = [f"\x1b[38;5;{DIM_COLOUR}m{label:>3} {RESET}"]
        style: str | None = None
        # each byte array holds 0 or 1 per cell, so shifting whole rows packs five flags per byte, at C speed
        code = (int.from_bytes(player[2 * row + 1]) | int.from_bytes(clara[2 * row + 1]) << 1
                | int.from_bytes(player[2 * row]) << 2 | int.from_bytes(clara[2 * row]) << 3 | beats << 4
                | int.from_bytes(plan[2 * row + 1]) << 5 | int.from_bytes(plan[2 * row]) << 6)
        for run in _RUNS.finditer(code.to_bytes(cols)):  # one style change at most per run of equal cells
            ch, st = _CELLS[run.group()[0]]
            if st != style:
                parts.append(f"\x1b[{st}m" if st else RESET)
                style = st
            parts.append(ch * (run.end() - run.start()))
        if style is not None:
            parts.append(RESET)
        lines.append("".join(parts))
    return lines


def render(state: ViewState, width: int, height: int, seconds: float = 8.0, low: int = 33, high: int = 94) -> list[str]:
    """The frame for a width x height terminal: exactly `height` lines of at most `width` visible
    characters (ANSI codes aside). A header, a status line, the roll of the last `seconds` seconds
    (and `state.ahead` seconds to come, at most `seconds`, where Clara's plan is drawn lightly)
    over MIDI pitches low..high (notes outside are not drawn), and the last log lines; `seconds` is
    kept within 0.01..1e9 (8 when not a positive number).
    Below 20 x 6 it is a one-line plain status followed by blank lines."""
    width, height = max(0, width), max(0, height)
    if width < 20 or height < 6:
        return [plain(state)[:width]] + [""] * (height - 1) if height else []
    seconds = min(max(seconds, 0.01), 1e9) if math.isfinite(seconds) and seconds > 0 else 8.0
    low, high = min(low, high), max(low, high)
    hint = [_line([(" " + state.hint, "1")], width)] if state.hint and height >= 8 else []
    logs = min(MAX_LOG_LINES, (height - 2 - len(hint)) // 4)  # at least 3 roll rows stay
    rows = height - 2 - len(hint) - logs
    recent = list(state.log[-logs:]) if logs else []
    log_lines = [""] * (logs - len(recent)) + [_line([(" " + text, f"38;5;{DIM_COLOUR}")], width) for text in recent]
    roll = _roll(state, rows, width - GUTTER, seconds, low, high)
    return [_header(state, width), _status(state, width), *hint, *roll, *log_lines]


class Roll:
    """Recent notes of both sources for the terminal view."""

    def __init__(self, keep: float = 16.0) -> None:
        self.keep = keep
        self.open: dict[tuple[str, int], float] = {}
        self.done: deque = deque()
        self.lock = threading.Lock()

    def note(self, source: str, message: tuple[int, ...] | list[int], t: float) -> None:
        kind = message[0] & 0xF0
        if kind not in (NOTE_ON, NOTE_OFF) or len(message) < 3:
            return
        key = (source, message[1])
        with self.lock:
            start = self.open.pop(key, None)
            if start is not None:
                self.done.append((source, message[1], start, t))
            if kind == NOTE_ON and message[2] > 0:
                self.open[key] = t

    def notes(self, now: float) -> tuple:
        with self.lock:
            while self.done and self.done[0][3] < now - self.keep:
                self.done.popleft()
            finished = [RollNote(s, p, a, b) for s, p, a, b in self.done]
            sounding = [RollNote(s, p, a, None) for (s, p), a in self.open.items()]
        return tuple(finished + sounding)


class TerminalView:
    """The view on a real terminal, as a context manager: the alternate screen and a hidden cursor
    while inside, both restored on the way out (exceptions too). Draws only while open."""

    def __init__(self, stream: TextIO = sys.stdout, fps: float = 20.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not fps > 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.stream = stream
        self.interval = 1.0 / fps  # seconds between frames at the most
        self.clock = clock
        self._last: float | None = None  # clock time of the last frame drawn
        self._open = False

    def __enter__(self) -> TerminalView:
        self.stream.write(ENTER)
        self.stream.flush()
        self._open = True
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def draw(self, state: ViewState) -> None:
        """Draw a frame sized to the terminal, unless one was drawn less than 1/fps seconds ago."""
        now = self.clock()
        if not self._open or (self._last is not None and now - self._last < self.interval):
            return
        self._last = now
        size = shutil.get_terminal_size()
        lines = render(state, size.columns, size.lines)
        self.stream.write(FRAME_START + "\r\n".join(line + "\x1b[K" for line in lines) + FRAME_END)
        self.stream.flush()

    def close(self) -> None:
        """Show the cursor and leave the alternate screen; does nothing the second time."""
        if not self._open:
            return
        self._open = False
        try:
            self.stream.write(LEAVE)
            self.stream.flush()
        except (OSError, ValueError):  # a closed or broken stream: nothing left to restore
            pass
