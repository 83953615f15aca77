"""Piano-roll PNGs, read back with matplotlib: each part in its colour, each note shaded by its velocity,
and `clara continue --png` drawing the prompt's last bars and all of Clara's continuation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED

from clara_live.cli import main
from clara_live.errors import InputError
from clara_live.music.notes import StepNote
from clara_live.piano_roll import (
    COLOURS,
    DPI,
    MAX_WIDTH,
    PROMPT_TAIL_S,
    continuation_window,
    draw_continuation,
    draw_piano_roll,
    pitch_name,
    velocity_colour,
)

SF, BPM = 12, 120.0  # 12 steps a quarter at 120 bpm: a step is 1/24 s, a bar (4/4) 2 s
STEPS_PER_S = 24
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PROMPT = [StepNote(6 * i, 6 * i + 12, p, 127) for i, p in enumerate([60, 62, 64, 65, 67, 69, 71, 72])]
ANSWER = [StepNote(96 + 12 * i, 108 + 12 * i, p, 127) for i, p in enumerate([74, 72, 71, 69, 67, 65, 64, 62])]


def image(path: Path) -> np.ndarray:
    """The PNG as (rows, columns, RGB) floats in 0..1."""
    import matplotlib.image

    assert path.read_bytes()[:8] == PNG_MAGIC
    return matplotlib.image.imread(str(path))[..., :3]


def colour_pixels(path: Path, colour) -> int:
    """How many pixels of the PNG are this colour (within rounding)."""
    from matplotlib.colors import to_rgb

    return int(np.all(np.abs(image(path) - np.array(to_rgb(colour))) < 0.02, axis=-1).sum())


def hue_columns(pixels: np.ndarray, part: int) -> np.ndarray:
    """The columns holding a pixel of the part's hue (its shades keep the hue; greys have none)."""
    from matplotlib.colors import rgb_to_hsv

    hsv = rgb_to_hsv(pixels)
    hue = rgb_to_hsv(np.array(velocity_colour(part, 80)))[0]
    near = np.abs((hsv[..., 0] - hue + 0.5) % 1 - 0.5) < 0.04
    return np.flatnonzero((near & (hsv[..., 1] > 0.15)).any(axis=0))


def lane(path: Path) -> np.ndarray:
    """The bottom quarter of the picture: the velocity lane (a dot per note) and the time axis, no legend."""
    pixels = image(path)
    return pixels[3 * len(pixels) // 4:]


def long_prompt(seconds: float) -> list[StepNote]:
    """An eighth note every quarter second and a bass note every bar, for `seconds`."""
    eighths = [StepNote(6 * i, 6 * i + 6, 60 + (i * 5) % 19, 40 + i % 60) for i in range(round(seconds * 4))]
    bass = [StepNote(48 * i, 48 * i + 48, 43 + i % 5, 70) for i in range(round(seconds / 2))]
    return eighths + bass


def clara_after(prompt: list[StepNote], seconds: float) -> list[StepNote]:
    """Clara's eighth notes from where the prompt ends, for `seconds`."""
    begins = max(n.end for n in prompt)
    return [StepNote(begins + 6 * i, begins + 6 * i + 6, 64 + (i * 7) % 15, 64) for i in range(round(seconds * 4))]


def test_pitch_names() -> None:
    assert [pitch_name(p) for p in (21, 59, 60, 61, 108)] == ["A0", "B3", "C4", "C#4", "C8"]


def test_piano_roll_draws_each_part_in_its_colour(tmp_path: Path) -> None:
    roll, empty = tmp_path / "roll.png", tmp_path / "empty.png"
    draw_piano_roll([("prompt", PROMPT), ("Clara", ANSWER)], SF, roll, bpm=BPM, title="two parts")
    draw_piano_roll([("prompt", []), ("Clara", [])], SF, empty)  # the legend alone
    for part in (0, 1):  # blue for the first part, orange for the second, in velocity 127's shade
        shade = velocity_colour(part, 127)
        notes, legend = colour_pixels(roll, shade), colour_pixels(empty, shade)
        assert notes > 3 * legend + 200, (part, notes, legend)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.png", "roll.png"]  # no temporary left


def test_velocity_changes_the_shade(tmp_path: Path) -> None:
    notes = [StepNote(0, 24, 60, 20), StepNote(24, 48, 64, 120)]  # a second each, soft then loud
    draw_piano_roll([("part", notes)], SF, tmp_path / "roll.png", bpm=BPM)
    soft, loud = velocity_colour(0, 20), velocity_colour(0, 120)
    assert colour_pixels(tmp_path / "roll.png", soft) > 200 and colour_pixels(tmp_path / "roll.png", loud) > 200
    assert sum(soft) - sum(loud) > 1.0, (soft, loud)  # soft is light, loud is dark: far apart on each channel
    # every velocity has its own shade, getting darker as it gets louder, within each part's colour
    for part in range(len(COLOURS)):
        shades = [sum(velocity_colour(part, v)) for v in range(1, 128)]
        assert all(a > b for a, b in zip(shades, shades[1:], strict=False)), part


def test_longer_piece_gives_a_wider_image(tmp_path: Path) -> None:
    long = [n._replace(start=n.start + 48 * 30, end=n.end + 48 * 30) for n in ANSWER]  # 30 bars later
    draw_piano_roll([("prompt", PROMPT), ("Clara", ANSWER)], SF, tmp_path / "short.png")
    draw_piano_roll([("prompt", PROMPT), ("Clara", long)], SF, tmp_path / "long.png")
    assert image(tmp_path / "long.png").shape[1] > 2 * image(tmp_path / "short.png").shape[1]


def test_window_is_the_prompts_last_bars_and_all_of_clara() -> None:
    prompt = long_prompt(360)  # six minutes
    begins = max(n.end for n in prompt)
    start, at, end = continuation_window(prompt, clara_after(prompt, 16), SF, BPM)
    assert at == begins and end == begins + 16 * STEPS_PER_S
    assert start % (4 * SF) == 0  # on a bar line
    assert PROMPT_TAIL_S * STEPS_PER_S <= begins - start < PROMPT_TAIL_S * STEPS_PER_S + 4 * SF
    # a short continuation keeps at least half the picture
    start, at, end = continuation_window(prompt, clara_after(prompt, 3), SF, BPM)
    assert end - at >= at - start > 0
    # no prompt: Clara from the start; no continuation: still a bar to draw
    assert continuation_window([], ANSWER, SF, BPM) == (0, 0, max(n.end for n in ANSWER))
    start, at, end = continuation_window(PROMPT, [], SF, BPM)
    assert at == max(n.end for n in PROMPT) and end - start >= 4 * SF


def test_continue_picture_is_mostly_clara(tmp_path: Path) -> None:
    """Six minutes of prompt and 16 s of Clara: her notes take most of the width, at a readable scale."""
    prompt = long_prompt(360)
    clara = clara_after(prompt, 16)
    draw_continuation(prompt, clara, SF, tmp_path / "roll.png", bpm=BPM, title="mostly Clara")
    pixels = lane(tmp_path / "roll.png")
    ours, hers = hue_columns(pixels, 0), hue_columns(pixels, 1)
    assert len(ours) and len(hers) and ours.max() < hers.min()  # the prompt, then Clara
    drawn = hers.max() - ours.min()
    assert hers.max() - hers.min() >= 0.5 * drawn, (ours.min(), hers.min(), hers.max())
    assert 16 * 60 <= hers.max() - hers.min() <= 16 * 100  # pixels a second: readable, not squeezed
    assert pixels.shape[1] < MAX_WIDTH * DPI


def test_png_all_keeps_the_whole_piece(tmp_path: Path) -> None:
    prompt = long_prompt(360)
    clara = clara_after(prompt, 16)
    draw_continuation(prompt, clara, SF, tmp_path / "all.png", bpm=BPM, whole=True)
    pixels = lane(tmp_path / "all.png")
    assert pixels.shape[1] == MAX_WIDTH * DPI  # squeezed into the widest picture
    ours, hers = hue_columns(pixels, 0), hue_columns(pixels, 1)
    drawn = hers.max() - ours.min()
    assert drawn > 0.9 * pixels.shape[1]  # from the first note to her last
    assert ours.max() - ours.min() > 0.9 * drawn  # the prompt, all six minutes, is most of it
    assert 0 < hers.max() - hers.min() < 0.06 * drawn  # 16 of 376 seconds


def test_continuation_without_a_prompt_is_clara_alone(tmp_path: Path) -> None:
    draw_continuation([], ANSWER, SF, tmp_path / "alone.png", bpm=BPM)
    pixels = image(tmp_path / "alone.png")
    assert colour_pixels(tmp_path / "alone.png", velocity_colour(1, 127)) > 200  # orange, as beside a prompt
    assert len(hue_columns(pixels, 0)) == 0


def test_piano_roll_unwritable_path_names_it(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("a file, not a folder")
    target = tmp_path / "afile" / "roll.png"
    for draw in (lambda: draw_piano_roll([("prompt", PROMPT)], SF, target),
                 lambda: draw_continuation(PROMPT, ANSWER, SF, target, bpm=BPM)):
        with pytest.raises(InputError) as exc:
            draw()
        assert "\n" not in str(exc.value) and str(target) in str(exc.value)


def test_png_all_without_png_is_one_line(tmp_path: Path, capsys) -> None:
    assert main(["continue", "-o", str(tmp_path / "o.mid"), "--png-all"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--png-all" in err[0] and "--png OUT.png" in err[0], err
    assert not (tmp_path / "o.mid").exists()


@pytest.mark.slow  # the shipped model
def test_continue_png_and_png_all(tmp_path: Path) -> None:
    prompt = SHARED / "corpus" / "piano-midi-de" / "Chopin" / "chpn-p7.mid"
    base = ["continue", str(prompt), "-o", str(tmp_path / "o.mid"), "--seconds", "6", "--seed", "2"]
    assert main([*base, "--png", str(tmp_path / "last.png")]) == 0
    assert main([*base, "--png", str(tmp_path / "all.png"), "--png-all"]) == 0
    last, whole = lane(tmp_path / "last.png"), lane(tmp_path / "all.png")
    assert whole.shape[1] > 2 * last.shape[1]
    ours, hers = hue_columns(last, 0), hue_columns(last, 1)  # the close-up: Clara most of the width
    assert hers.max() - hers.min() >= 0.5 * (hers.max() - ours.min())
    ours, hers = hue_columns(whole, 0), hue_columns(whole, 1)  # the whole piece: mostly prompt
    assert hers.max() - hers.min() < 0.5 * (hers.max() - ours.min())
