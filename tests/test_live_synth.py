"""The live FluidSynth output: real fluidsynth processes writing WAVs through the 'file' audio driver,
which renders in real time, so the WAV shows when each note sounded and when it stopped."""

from __future__ import annotations

import gc
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from clara_live.errors import ClaraError
from clara_live.live.synth import RELEASE_S, FluidSynthOutput, shell_command

pytestmark = pytest.mark.slow  # real components (JACK, FluidSynth, the shipped model, corpora): not in test-fast

needs_fluidsynth = pytest.mark.system("fluidsynth", "fluid-soundfont-gm")
BLOCK_S = 0.02


def open_synth(wav: Path, **kwargs: object) -> FluidSynthOutput:
    return FluidSynthOutput(audio_driver="file", extra_settings={"audio.file.name": str(wav)}, **kwargs)


def levels(wav: Path) -> np.ndarray:
    """Peak level of each BLOCK_S block of the WAV, in dBFS."""
    with wave.open(str(wav), "rb") as w:
        rate = w.getframerate()
        samples = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, w.getnchannels())
    block = round(rate * BLOCK_S)
    n = len(samples) // block
    peaks = np.abs(samples[:n * block].astype(np.float64) / 32768).reshape(n, -1).max(axis=1)
    return 20 * np.log10(peaks + 1e-9)


def span(db: np.ndarray, start: float, end: float) -> np.ndarray:
    return db[round(start / BLOCK_S):round(end / BLOCK_S)]


def fake_soundfont(path: Path) -> Path:
    path.write_bytes(b"RIFF\x10\x00\x00\x00sfbk" + b"\x00" * 16)  # a valid header on a corrupt body
    return path


def test_shell_commands() -> None:
    assert shell_command([0x90, 60, 100]) == "noteon 0 60 100\n"
    assert shell_command([0x9F, 60, 0]) == "noteoff 15 60\n"  # velocity 0 is a note-off
    assert shell_command([0x83, 61, 64]) == "noteoff 3 61\n"
    assert shell_command([0xB1, 64, 127]) == "cc 1 64 127\n"
    assert shell_command([0xC2, 19]) == "prog 2 19\n"
    assert shell_command([0xE0, 0, 64]) == "pitch_bend 0 8192\n"
    assert shell_command([0xE0, 127, 127]) == "pitch_bend 0 16383\n"
    for ignored in ([0xF8], [0xFA], [0xFC], [0xFE], [0xF0, 0x7E, 0xF7], [0xA0, 60, 10], [0xD0, 10], [], [60]):
        assert shell_command(ignored) is None, ignored
    for bad in ([0x90, 60], [0x90, 128, 1], [0xB0, 7, -1], [0xC0], [0x90, 60, 1, 2]):
        with pytest.raises(ValueError, match="malformed"):
            shell_command(bad)


@needs_fluidsynth
def test_notes_sound_in_time_and_close_releases_what_is_held(tmp_path: Path) -> None:
    wav = tmp_path / "live.wav"
    with open_synth(wav) as synth:
        assert synth.name == "FluidSynth (FluidR3_GM.sf2)"
        t0 = time.monotonic()
        synth.send([0xC0, 0])  # piano
        synth.send([0x90, 60, 100])
        for ignored in ([0xF8], [0xFA], [0xFE], [0xA0, 60, 40], [0xD0, 40], [0xF0, 0x7E, 0xF7]):
            synth.send(ignored)
        time.sleep(0.3)
        synth.send([0x90, 60, 0])  # released: it decays to silence in the gap
        time.sleep(1.1 - (time.monotonic() - t0))
        synth.send([0xC1, 16])  # a drawbar organ never decays while held...
        synth.send([0xB1, 64, 127])  # ...and the pedal holds it past all-notes-off
        synth.send([0xE1, 0, 64])
        synth.send([0x91, 67, 100])
        time.sleep(0.4)
    assert synth.closed and synth._proc.returncode == 0  # close() waited for it

    db = levels(wav)
    onset = np.flatnonzero(db > -40)[0] * BLOCK_S
    second = (np.flatnonzero(span(db, onset + 0.9, len(db) * BLOCK_S) > -40)[0] * BLOCK_S) + onset + 0.9
    assert span(db, onset, onset + 0.25).min() > -30, "the first note is not sounding"
    assert span(db, onset + 0.9, onset + 1.05).max() < -50, "not silent after the first note's release"
    assert second - onset == pytest.approx(1.1, abs=0.08), "the WAV is not in real time"
    assert span(db, second + 0.04, second + 0.35).min() > -30, "the held organ note is not sounding"
    end = len(db) * BLOCK_S
    assert end - second == pytest.approx(0.4 + RELEASE_S, abs=0.15)
    assert span(db, end - 0.1, end).max() < -50, "close() left the held note sounding"


@needs_fluidsynth
def test_errors_after_start_close_and_no_process_left(tmp_path: Path) -> None:
    synth = open_synth(tmp_path / "a.wav")
    for _ in range(3000):  # 6000 commands, each echoed on its stdout: the pipe must be drained
        synth.send([0x90, 60, 1])
        synth.send([0x80, 60, 0])
    with pytest.raises(ValueError):
        synth.send([0x90, 60])
    synth.close()
    synth.close()
    assert synth._proc.returncode == 0
    with pytest.raises(ClaraError, match="closed"):
        synth.send([0x90, 60, 100])

    stopped = open_synth(tmp_path / "b.wav")
    stopped._proc.kill()
    stopped._proc.wait()
    with pytest.raises(ClaraError, match="FluidSynth stopped"):
        stopped.send([0x90, 60, 100])
    stopped.close()  # nothing left to stop: no error

    forgotten = open_synth(tmp_path / "c.wav")
    proc = forgotten._proc
    del forgotten
    gc.collect()
    assert proc.poll() is not None, "a synth nobody closed left fluidsynth running"


def test_missing_or_unreadable_soundfont(tmp_path: Path) -> None:
    with pytest.raises(ClaraError, match="nope.sf2"):
        FluidSynthOutput(tmp_path / "nope.sf2")
    text = tmp_path / "notes.txt"
    text.write_text("not a soundfont")
    with pytest.raises(ClaraError, match="notes.txt: not a SoundFont"):
        FluidSynthOutput(text)


@needs_fluidsynth
def test_soundfont_fluidsynth_cannot_load(tmp_path: Path) -> None:
    bad = fake_soundfont(tmp_path / "bad.sf2")
    with pytest.raises(ClaraError, match="bad.sf2: FluidSynth could not load this soundfont"):
        open_synth(tmp_path / "bad.wav", soundfont=bad)


def test_missing_fluidsynth(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(ClaraError, match="fluidsynth not found: install it"):
        FluidSynthOutput(fake_soundfont(tmp_path / "x.sf2"))


@needs_fluidsynth
def test_process_that_dies_at_start(tmp_path: Path) -> None:
    with pytest.raises(ClaraError, match="FluidSynth could not start: Failed to open audio file"):
        open_synth(tmp_path / "missing" / "out.wav")
    with pytest.raises(ClaraError, match="synth gain 11"):
        open_synth(tmp_path / "g.wav", gain=11)
