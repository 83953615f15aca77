"""Rendering: a real FluidSynth render measured with wave + numpy, and its errors (test_piano_roll: PNGs)."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from clara_live import render
from clara_live.errors import ClaraError, InputError
from clara_live.music.midi_io import steps_to_midi, write_midi
from clara_live.music.notes import StepNote
from clara_live.render import SOUNDFONT_ENV, TAIL_S, render_wav

SF, BPM = 12, 120.0  # 12 steps a quarter at 120 bpm: a step is 1/24 s
SCALE = [StepNote(6 * i, 6 * i + 6, p, 100) for i, p in enumerate([60, 62, 64, 65, 67, 69, 71, 72])]  # 0-2 s
CHORD = [StepNote(144, 168, p, 100) for p in (60, 64, 67)]  # 6-7 s, after 4 s of silence
MIDI_SECONDS = 7.0

needs_fluidsynth = pytest.mark.system("fluidsynth", "fluid-soundfont-gm")  # renders with the default soundfont


def dbfs(samples: np.ndarray) -> float:
    """RMS level of 16-bit samples in dB below full scale."""
    rms = np.sqrt(np.mean((samples.astype(np.float64) / 32768) ** 2)) if samples.size else 0.0
    return 20 * np.log10(rms + 1e-12)


def write_piece(path: Path, notes: list[StepNote]) -> Path:
    write_midi(steps_to_midi(notes, SF, BPM), path)
    return path


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, tuple, np.ndarray]:
    """The scale, 4 s of silence and a chord, rendered once: (folder, WAV params, (frames, channels))."""
    folder = tmp_path_factory.mktemp("render")
    render_wav(write_piece(folder / "piece.mid", SCALE + CHORD), folder / "piece.wav")
    with wave.open(str(folder / "piece.wav"), "rb") as w:
        params = w.getparams()
        samples = np.frombuffer(w.readframes(params.nframes), dtype="<i2").reshape(-1, params.nchannels)
    return folder, params, samples


def span(params: tuple, samples: np.ndarray, start_s: float, end_s: float) -> np.ndarray:
    return samples[round(start_s * params.framerate):round(end_s * params.framerate)]


@needs_fluidsynth
def test_wav_format_and_length(rendered) -> None:
    folder, params, samples = rendered
    assert (params.framerate, params.nchannels, params.sampwidth) == (44100, 2, 2)
    seconds = params.nframes / params.framerate
    # the whole piece plus the tail (TAIL_S, longer only while the release is above -60 dBFS)
    assert MIDI_SECONDS + TAIL_S - 0.05 <= seconds <= MIDI_SECONDS + TAIL_S + 1.5, seconds
    assert sorted(p.name for p in folder.iterdir()) == ["piece.mid", "piece.wav"]  # no temporary left


@needs_fluidsynth
def test_sound_where_the_notes_are(rendered) -> None:
    _, params, samples = rendered
    scale, chord = dbfs(span(params, samples, 0, 2)), dbfs(span(params, samples, 6, 7))
    gap = dbfs(span(params, samples, 3, 5.9))  # a second after the scale's last release
    assert scale > -40 and chord > -40, (scale, chord)
    assert gap < -60 and gap < min(scale, chord) - 30, (gap, scale, chord)
    window = params.framerate // 4
    levels = [dbfs(samples[i:i + window]) for i in range(0, len(samples) - window, window)]
    loudest = np.argmax(levels) * 0.25  # seconds
    assert 0 <= loudest < 2.2 or 6 <= loudest < 7.2, loudest


@needs_fluidsynth
def test_release_is_rendered_then_fades(rendered) -> None:
    _, params, samples = rendered
    release = dbfs(span(params, samples, MIDI_SECONDS, MIDI_SECONDS + 0.15))
    assert release > -70, f"the chord's release was cut off ({release:.1f} dBFS just after its note-off)"
    end = dbfs(samples[-params.framerate // 20:])
    assert end < -55, f"the WAV ends on a loud sample ({end:.1f} dBFS in its last 50 ms)"


@needs_fluidsynth
def test_sample_rate_and_target_folder_created(tmp_path: Path) -> None:
    midi = write_piece(tmp_path / "short.mid", SCALE[:2])
    target = tmp_path / "new" / "folder" / "short.wav"
    render_wav(midi, target, sample_rate=22050)
    with wave.open(str(target), "rb") as w:
        assert w.getframerate() == 22050
        assert 0.5 + TAIL_S - 0.05 <= w.getnframes() / 22050 <= 0.5 + TAIL_S + 1.5


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


@needs_fluidsynth
def test_missing_soundfont_names_it(tmp_path: Path) -> None:
    midi = write_piece(tmp_path / "a.mid", SCALE)
    missing = tmp_path / "nowhere.sf2"
    with pytest.raises(InputError) as exc:
        render_wav(midi, tmp_path / "a.wav", soundfont=missing)
    assert str(missing) in one_line(exc) and "not found" in str(exc.value)
    assert not (tmp_path / "a.wav").exists()


@needs_fluidsynth
def test_soundfont_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "env.sf2"
    monkeypatch.setenv(SOUNDFONT_ENV, str(missing))
    with pytest.raises(InputError) as exc:
        render_wav(write_piece(tmp_path / "a.mid", SCALE), tmp_path / "a.wav")
    assert str(missing) in one_line(exc)


@needs_fluidsynth
@pytest.mark.parametrize("content", [b"not a soundfont", b"RIFF\x10\x00\x00\x00sfbkLIST\x00\x00\x00\x00"],
                         ids=["not-riff", "corrupt-sf2"])
def test_unusable_soundfont_names_it(tmp_path: Path, content: bytes) -> None:
    # fluidsynth exits 0 on both and renders with its default soundfont instead
    bad = tmp_path / "bad.sf2"
    bad.write_bytes(content)
    with pytest.raises(InputError) as exc:
        render_wav(write_piece(tmp_path / "a.mid", SCALE), tmp_path / "a.wav", soundfont=bad)
    assert str(bad) in one_line(exc)
    assert not (tmp_path / "a.wav").exists()


@pytest.mark.parametrize("content", [b"MThd? no, just text\n", None], ids=["not-midi", "missing"])
def test_unreadable_midi_names_it(tmp_path: Path, content: bytes | None) -> None:
    midi = tmp_path / "notes.mid"
    if content is not None:
        midi.write_bytes(content)
    with pytest.raises(InputError) as exc:
        render_wav(midi, tmp_path / "notes.wav")
    assert str(midi) in one_line(exc)
    assert not (tmp_path / "notes.wav").exists()


def test_missing_fluidsynth_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    midi = write_piece(tmp_path / "a.mid", SCALE)
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(ClaraError) as exc:
        render_wav(midi, tmp_path / "a.wav")
    message = one_line(exc)
    assert str(midi) in message and "apt-get install fluidsynth fluid-soundfont-gm" in message


@needs_fluidsynth
def test_unwritable_target_names_it(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("a file, not a folder")
    target = tmp_path / "afile" / "a.wav"
    with pytest.raises(InputError) as exc:
        render_wav(write_piece(tmp_path / "a.mid", SCALE), target)
    assert str(target) in one_line(exc)


@pytest.mark.parametrize("peak_blocks", [1, 3, 1000])
def test_trim_keeps_to_the_last_loud_block_whatever_the_chunk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             peak_blocks: int) -> None:
    """The render is cut after its last 10-ms block above -60 dBFS, never before min_seconds, however
    many blocks are measured at once."""
    monkeypatch.setattr(render, "PEAK_BLOCKS", peak_blocks)
    samples = np.zeros((5000, 2), dtype="<i2")  # 5 s at 1000 Hz: blocks of 10 frames
    samples[700, 0], samples[2345, 1] = -1000, 1000  # the last loud block ends at frame 2350
    raw = tmp_path / "raw.wav"
    with wave.open(str(raw), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(1000)
        w.writeframes(samples.tobytes())
    for min_seconds, frames in ((1.0, 2350), (3.0, 3000), (9.0, 5000)):
        render._write_trimmed(raw, tmp_path / "out.wav", min_seconds=min_seconds, label=raw)
        with wave.open(str(tmp_path / "out.wav"), "rb") as w:
            assert w.getnframes() == frames, (min_seconds, w.getnframes())

