"""The live terminal view as strings: frame sizes, where and in which colour notes land, the plain
status line, and the terminal codes TerminalView writes (with a fake clock, no real terminal)."""

from __future__ import annotations

import io
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clara_live.live.view import (
    BOTH_COLOUR,
    CLARA_COLOUR,
    PLAN_COLOUR,
    PLAYER_COLOUR,
    RollNote,
    TerminalView,
    ViewState,
    plain,
    render,
)

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
SGR = re.compile(r"\x1b\[([0-9;]*)m")
BLOCKS = set("▀▄█")
NOW = 100.0
# a 84 x 12 frame over pitches 60..71 in 8 s: 2 status lines, 8 roll rows, 2 log lines; the roll has
# a 4-column gutter, then 80 columns of 0.1 s; 12 pitches in 16 half cells: one pitch per half cell,
# pitch 60 in the lower half of the bottom roll row (line 9), 61 in its upper half, 62 in line 8...
WIDTH, HEIGHT, LOW, HIGH, GUTTER = 84, 12, 60, 71, 4


def state(notes: tuple[RollNote, ...] = (), **changes: object) -> ViewState:
    values = dict(now=NOW, mode="call-response", turn="listening", bpm=120.0, tempo_source="tap", beat_phase=0.0,
                  temperature=1.0, top_k=5, random_freq=0.5, latency_ms=(0.4, 1.2), notes=notes,
                  log=("model loaded", "phrase ended", "Clara answers"), ports="in: Clara In  out: Clara Out")
    values.update(changes)
    return ViewState(**values)


def visible(line: str) -> str:
    return ANSI.sub("", line)


def cells(line: str) -> list[tuple[str, int | None, int | None]]:
    """Each visible character of a line with its 256-colour foreground and background (None: default)."""
    out: list[tuple[str, int | None, int | None]] = []
    fg = bg = None
    for i, part in enumerate(SGR.split(line)):
        if i % 2 == 0:
            out += [(ch, fg, bg) for ch in part]
            continue
        params = [int(p) if p else 0 for p in part.split(";")]
        j = 0
        while j < len(params):
            if params[j] == 0:
                fg = bg = None
            elif params[j] in (38, 48):
                fg, bg = (params[j + 2], bg) if params[j] == 38 else (fg, params[j + 2])
                j += 2
            j += 1
    return out


def frame(*notes: RollNote, **changes: object) -> list[str]:
    return render(state(notes, **changes), WIDTH, HEIGHT, low=LOW, high=HIGH)


def row_of(pitch: int) -> tuple[int, str]:
    """The frame line and half block of a pitch in `frame`'s layout."""
    return 9 - (pitch - LOW) // 2, "▀" if (pitch - LOW) % 2 else "▄"


def drawn(lines: list[str]) -> list[tuple[int, int, str, int | None, int | None]]:
    """(line, column, character, fg, bg) of every note cell in the roll."""
    return [(i, c, *cell) for i, line in enumerate(lines[2:10], start=2)
            for c, cell in enumerate(cells(line)) if cell[0] in BLOCKS]


SIZES = [0, 1, 2, 5, 6, 7, 12, 19, 20, 21, 24, 40, 80, 200]


@pytest.mark.parametrize("width", SIZES)
@pytest.mark.parametrize("height", SIZES)
def test_every_size_gives_height_lines_within_width(width: int, height: int) -> None:
    notes = tuple(RollNote("player" if i % 2 else "clara", 30 + 3 * i, NOW - 9 + i * 0.4, NOW - 8 + i * 0.45)
                  for i in range(22)) + (RollNote("clara", 64, NOW - 1, None),)
    lines = render(state(notes, log=tuple(f"line {i} " * 20 for i in range(9))), width, height)
    assert len(lines) == height
    assert all(len(visible(line)) <= width for line in lines)


@given(width=st.integers(-5, 300), height=st.integers(-5, 120), seconds=st.floats(allow_nan=True),
       low=st.integers(-20, 140), high=st.integers(-20, 140), now=st.floats(-1e18, 1e18),
       bpm=st.floats(allow_nan=True), phase=st.floats(allow_nan=True),
       notes=st.lists(st.builds(RollNote, st.sampled_from(["player", "clara", "drums"]), st.integers(-10, 140),
                                st.floats(allow_nan=True), st.none() | st.floats(allow_nan=True)), max_size=20),
       log=st.lists(st.text(max_size=200), max_size=8))
def test_any_state_and_size_renders(width: int, height: int, seconds: float, low: int, high: int, now: float,
                                    bpm: float, phase: float, notes: list[RollNote], log: list[str]) -> None:
    lines = render(state(tuple(notes), now=now, bpm=bpm, beat_phase=phase, log=tuple(log)), width, height,
                   seconds=seconds, low=low, high=high)
    assert len(lines) == max(0, height)
    assert all(len(visible(line)) <= max(0, width) for line in lines)
    assert all("\n" not in visible(line) and "\x1b" not in visible(line) for line in lines)


def test_player_and_clara_notes_land_in_their_colours_rows_and_columns() -> None:
    lines = frame(RollNote("player", 62, NOW - 2, NOW - 1), RollNote("clara", 67, NOW - 4, NOW - 3.5))
    line, half = row_of(67)  # the higher note: on an upper line, so listed first
    expected = [(line, GUTTER + c, half, CLARA_COLOUR, None) for c in range(40, 45)]
    line, half = row_of(62)
    expected += [(line, GUTTER + c, half, PLAYER_COLOUR, None) for c in range(60, 70)]
    assert drawn(lines) == expected


def test_a_sounding_note_reaches_the_right_edge() -> None:
    lines = frame(RollNote("clara", 71, NOW - 0.55, None))
    line, half = row_of(71)
    assert [(i, c) for i, c, *_ in drawn(lines)] == [(line, GUTTER + c) for c in range(74, 80)]
    assert visible(lines[line])[-1] == half


def test_her_plan_is_drawn_lightly_right_of_now_and_what_sounds_stops_at_now() -> None:
    """Accompany (issue 26): with 2 s shown ahead, the 80 columns hold 10 s (0.125 s each) and now is column 64.
    Her planned note from now + 0.5 to now + 1 lands there in the plan's colour; a planned note already begun is
    drawn from now; the player's sounding note reaches now, not the edge; with nothing ahead no plan is drawn."""
    player = RollNote("player", 64, NOW - 1.0, None)
    later, begun = RollNote("clara", 62, NOW + 0.5, NOW + 1.0), RollNote("clara", 60, NOW - 0.3, NOW + 0.25)
    lines = frame(player, planned=(later, begun), ahead=2.0)
    cols = {pitch: [(c - GUTTER, colour) for i, c, ch, colour, _ in drawn(lines) if (i, ch) == row_of(pitch)]
            for pitch in (60, 62, 64)}
    assert cols[64] == [(c, PLAYER_COLOUR) for c in range(56, 64)]
    assert cols[62] == [(c, PLAN_COLOUR) for c in range(68, 72)]
    assert cols[60] == [(c, PLAN_COLOUR) for c in range(64, 66)]
    assert not [cell for cell in drawn(frame(player, planned=(later, begun))) if cell[3] == PLAN_COLOUR]


def test_what_sounds_hides_her_plan_in_the_same_half_cell() -> None:
    lines = frame(RollNote("clara", 62, NOW - 1.0, NOW + 1.0), planned=(RollNote("clara", 62, NOW, NOW + 1.0),),
                  ahead=2.0)
    assert {colour for *_, colour, _ in drawn(lines)} == {CLARA_COLOUR}


def test_two_pitches_in_one_cell_take_both_halves_and_the_same_half_mixes_colours() -> None:
    # 60 and 61 share the bottom row: the player below, Clara above, drawn as ▀ on a blue background
    lines = frame(RollNote("player", 60, NOW - 1, None), RollNote("clara", 61, NOW - 1, None))
    assert {cell[2:] for cell in drawn(lines)} == {("▀", CLARA_COLOUR, PLAYER_COLOUR)}
    # the same pitch at the same time: the third colour, over the time they overlap only
    lines = frame(RollNote("player", 64, NOW - 2, NOW - 1), RollNote("clara", 64, NOW - 1.5, NOW - 0.5))
    colours = [fg for *_, fg, _ in drawn(lines)]
    assert colours == [PLAYER_COLOUR] * 5 + [BOTH_COLOUR] * 5 + [CLARA_COLOUR] * 5


def test_notes_out_of_range_old_future_or_foreign_are_not_drawn() -> None:
    lines = frame(RollNote("player", LOW - 1, NOW - 1, None), RollNote("clara", HIGH + 1, NOW - 1, None),
                  RollNote("player", 64, NOW - 20, NOW - 9), RollNote("clara", 65, NOW - 8.5, NOW - 8.0),
                  RollNote("player", 66, NOW + 1, None), RollNote("drums", 67, NOW - 1, None))
    assert drawn(lines) == []


def test_a_note_ending_before_it_starts_takes_one_column() -> None:
    lines = frame(RollNote("player", 60, NOW - 2, NOW - 3))
    assert [(i, c) for i, c, *_ in drawn(lines)] == [(row_of(60)[0], GUTTER + 60)]


def test_a_note_from_before_the_left_edge_is_cut_there() -> None:
    lines = frame(RollNote("player", 60, NOW - 30, NOW - 7.5))
    assert [c for _, c, *_ in drawn(lines)] == [GUTTER + c for c in range(5)]


def test_beat_lines_mark_the_beats_and_notes_hide_them() -> None:
    # 120 bpm: a beat every 0.5 s = 5 columns; half way through a beat, the latest was 0.25 s ago
    lines = frame(beat_phase=0.5)
    assert [c for c, ch in enumerate(visible(lines[2])) if ch == "┊"] == [GUTTER + c for c in range(2, 80, 5)]
    lines = frame(beat_phase=0.0)  # a beat right now: in the last column
    assert visible(lines[2])[-1] == "┊"
    lines = frame(bpm=600.0, beat_phase=0.5)  # a beat every column: every 4th beat drawn
    assert [c for c, ch in enumerate(visible(lines[2])) if ch == "┊"][-2:] == [GUTTER + 75, GUTTER + 79]
    lines = frame(RollNote("player", 60, NOW - 8, None))
    assert "┊" not in visible(lines[9])[GUTTER:] and "┊" in visible(lines[8])


def test_status_lines_and_log() -> None:
    lines = frame(turn="waiting", log=tuple(f"log {i}" for i in range(6)) + ("bad \x1b[2J\nline",))
    assert "call-response" in visible(lines[0]) and "waiting" in visible(lines[0]) and "Clara In" in visible(lines[0])
    assert "120.0 bpm (tap)" in visible(lines[1]) and "p99 1.2 ms" in visible(lines[1])
    assert visible(lines[-2]).strip() == "log 5"
    assert visible(lines[-1]).strip() == "bad  [2J line"  # the escape and the newline became spaces
    assert visible(render(state(log=("only one",)), WIDTH, HEIGHT)[-2]) == ""  # the log sits at the bottom


def test_a_tiny_terminal_gets_a_one_line_status() -> None:
    assert render(state(), 19, 3) == [plain(state())[:19], "", ""]
    assert render(state(), 80, 5)[0] == plain(state())[:80]
    assert render(state(), 0, 2) == ["", ""]
    assert render(state(), 80, 0) == []


def test_plain_status() -> None:
    text = plain(state(mode="suggest", turn="clara"))
    assert text == "suggest | clara | 120.0 bpm (tap) | T 1.00 k 5 rf 0.50 | latency p50 0.4 ms p99 1.2 ms"
    assert plain(state(latency_ms=None)).endswith("| latency -")
    assert "\x1b" not in plain(state(mode="\x1b[31mred"))


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_terminal_view_enters_draws_and_leaves(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "60")
    monkeypatch.setenv("LINES", "15")
    out = io.StringIO()
    with TerminalView(out) as view:
        assert out.getvalue().startswith("\x1b[?1049h") and "\x1b[?25l" in out.getvalue()
        view.draw(state((RollNote("player", 60, NOW - 1, None),)))
        drawn_frame = out.getvalue()
    text = out.getvalue()
    assert text.endswith("\x1b[?25h\x1b[?1049l")
    body = drawn_frame[drawn_frame.index("\x1b[?2026h"):]
    assert body.count("\r\n") == 14 and "\x1b[2J" not in body  # 15 lines, no full clear
    assert "\n" not in body.replace("\r\n", "")
    view.draw(state())  # after close: nothing written
    view.close()  # idempotent
    assert out.getvalue() == text


def test_terminal_view_rate_limits() -> None:
    out, clock = io.StringIO(), FakeClock()
    with TerminalView(out, fps=20.0, clock=clock) as view:
        for t in (0.0, 0.01, 0.049, 0.05, 0.06, 0.2):
            clock.t = t
            view.draw(state())
    assert out.getvalue().count("\x1b[?2026h") == 3  # at 0.0, 0.05 and 0.2


def test_terminal_view_restores_the_terminal_on_an_exception() -> None:
    out = io.StringIO()
    with pytest.raises(RuntimeError, match="boom"), TerminalView(out) as view:
        view.draw(state())
        raise RuntimeError("boom")
    assert out.getvalue().endswith("\x1b[?25h\x1b[?1049l")
    assert out.getvalue().count("\x1b[?1049l") == 1


def test_terminal_view_survives_a_closed_stream_and_refuses_zero_fps() -> None:
    out = io.StringIO()
    view = TerminalView(out).__enter__()
    out.close()
    view.close()  # the restore cannot be written; it must not raise
    with pytest.raises(ValueError):
        TerminalView(io.StringIO(), fps=0)


def test_a_tempo_heard_in_the_playing_says_so_with_the_answer_s_log() -> None:
    log = ("phrase end (silence): Clara answers 8 beats at 84.0 bpm (from your playing)",)
    lines = frame(tempo_source="playing", bpm=84.0, log=log)
    assert "84.0 bpm (from your playing)" in visible(lines[1])
    assert "Clara answers 8 beats at 84.0 bpm" in visible(lines[-1])
    assert "84.0 bpm (from your playing)" in plain(state(tempo_source="playing", bpm=84.0))


def test_how_to_play_is_a_line_under_the_status_and_the_frame_keeps_its_height():
    hint = "keys: A S D F G H J K = C D E F G A B C"
    lines = render(state(hint=hint), 100, 24)
    assert len(lines) == 24 and hint in visible(lines[2])
    assert all(hint not in visible(line) for line in render(state(), 100, 24))
    small = render(state(hint=hint), 100, 7)  # too small to spare a line: the roll keeps its rows
    assert len(small) == 7 and all(hint not in visible(line) for line in small)
