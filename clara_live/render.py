"""A piece as something to hear: a WAV through FluidSynth (piano_roll.py draws one).

The WAV comes from the `fluidsynth` command-line program (Debian: fluidsynth, fluid-soundfont-gm),
run as a fast offline render with no audio or MIDI driver, so it needs no sound card. Three of its
habits shape the code (FluidSynth 2.3.1 on Debian 12 unless said otherwise):
- it exits 0 when it cannot load the soundfont (it goes on with its default soundfont) and when it
  cannot write the output file, so both are checked here, not by its exit status;
- since 2.3.1 it renders until every voice is silent (here 2-3 s past the end, mostly dither); earlier
  versions stop at the end of the file, cutting the last release off (FluidSynth issues #24, #1408).
  So it renders a copy of the MIDI padded with TAIL_S seconds, and the near-silence after that tail
  is trimmed, which gives the same WAV length whatever the version;
- it waits for a note that is never released: a piano one decays (51 s of render here), one on a
  looping instrument never ends (issue #1257), hence the time limit.
mido is used here, beside midi_io, only to read the file's length in seconds and to write the padded copy.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tempfile
import wave
from pathlib import Path

import mido
import numpy as np

from clara_live.atomic import atomic_open, make_folder, removed_on_sigterm, scratch_folder
from clara_live.errors import ClaraError, InputError

SOUNDFONTS = (Path("/usr/share/sounds/sf2/FluidR3_GM.sf2"), Path("/usr/share/sounds/sf2/default-GM.sf2"))
SOUNDFONT_ENV = "CLARA_SOUNDFONT"
INSTALL_HINT = "apt-get install fluidsynth fluid-soundfont-gm"
GAIN = 1.0  # FluidSynth's default 0.2 is very quiet; a dense MAESTRO excerpt peaks near -10 dBFS at 1.0
TAIL_S = 1.0  # seconds kept after the last MIDI event, for the last release and the reverb
SILENCE = 10 ** (-60 / 20)  # -60 dBFS: trailing audio below this is trimmed (down to TAIL_S)
PEAK_BLOCKS = 1000  # 10 ms blocks whose peaks are measured at once (10 s of audio)
TIMEOUT_S = 60.0  # plus TIMEOUT_PER_S per second of music; it renders ~90x real time here
TIMEOUT_PER_S = 0.5
MAX_RENDER_S = 3600.0  # an hour of music at most: a 635 MB WAV, rendered in ~40 s here (~90x real time)


def render_wav(midi: str | Path | mido.MidiFile, wav_path: str | Path, soundfont: str | Path | None = None,
               sample_rate: int = 44100) -> None:
    """Render a MIDI file (a path, or one in memory) to a 16-bit stereo WAV of the whole piece plus the release tail.

    The WAV lasts the MIDI's length (seconds, tempo changes included) plus TAIL_S, longer only while
    the sound stays above -60 dBFS; a piece longer than MAX_RENDER_S is refused before anything is
    rendered. The soundfont is, in order: the argument, $CLARA_SOUNDFONT, then FluidR3_GM.sf2 or
    default-GM.sf2 in /usr/share/sounds/sf2. The WAV is written as atomic.py writes (atomically beside
    a file or a link's target; through a FIFO, a device or `-`); the render's temporary folder is
    removed on every way out, SIGTERM and Ctrl-C included.
    Raises InputError for an unreadable MIDI file or soundfont or an unwritable target, ClaraError when
    the piece is too long, or fluidsynth is missing, fails or runs past its time limit; each message is
    one line naming the file.
    """
    wav_path = Path(wav_path)  # Path("-") is still `-`, standard output
    if not 8000 <= sample_rate <= 96000:  # FluidSynth's synth.sample-rate range
        raise ValueError(f"sample_rate {sample_rate} outside 8000..96000")
    if isinstance(midi, mido.MidiFile):
        label = Path(midi.filename or "the piece")
        midi, seconds = _checked(midi, label)
    else:
        label = Path(midi)
        midi, seconds = _read_midi(label)
    if seconds > MAX_RENDER_S:
        raise ClaraError(f"{label}: {seconds / 60:.0f} minutes of music; WAVs are rendered up to "
                         f"{MAX_RENDER_S / 60:.0f} minutes (the MIDI file holds it all)")
    exe = shutil.which("fluidsynth")
    if exe is None:
        raise ClaraError(f"{label}: cannot render: fluidsynth not found on PATH (install it: {INSTALL_HINT})")
    sf2 = _find_soundfont(soundfont)
    try:
        # the render and the padded copy live beside the target, so a big WAV never fills /tmp (a stream's: in /tmp)
        scratch = make_folder(scratch_folder(wav_path))
        with removed_on_sigterm(), \
                tempfile.TemporaryDirectory(prefix=f".{wav_path.name}.", suffix=".tmp", dir=scratch) as tmp:
            padded, raw = Path(tmp) / "padded.mid", Path(tmp) / "render.wav"
            _pad(midi, TAIL_S).save(str(padded))
            _run_fluidsynth(exe, sf2, padded, raw, sample_rate, label, TIMEOUT_S + TIMEOUT_PER_S * seconds)
            _write_trimmed(raw, wav_path, min_seconds=seconds + TAIL_S, label=label)
    except OSError as exc:
        raise InputError(f"{wav_path}: cannot write ({exc.strerror or exc.__class__.__name__})") from None


def _read_midi(path: Path) -> tuple[mido.MidiFile, float]:
    """The parsed file and its length in seconds."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc.__class__.__name__})") from None
    try:
        midi = mido.MidiFile(file=io.BytesIO(data))
    except Exception as exc:  # mido raises OSError, EOFError, ValueError or KeyError on bad data
        raise InputError(f"{path}: not a readable MIDI file ({exc})") from None
    return _checked(midi, path)


def _checked(midi: mido.MidiFile, label: Path) -> tuple[mido.MidiFile, float]:
    if midi.type == 2:
        raise InputError(f"{label}: type 2 (sequential tracks) MIDI files are not supported")
    return midi, midi.length


def _pad(midi: mido.MidiFile, seconds: float) -> mido.MidiFile:
    """A copy whose longest track ends `seconds` later (at the last tempo): FluidSynth plays to the end
    of the last track, so its voices get that long to release whatever its version does after it."""
    padded = mido.MidiFile(type=midi.type, ticks_per_beat=midi.ticks_per_beat)
    tempo = 500000  # microseconds per quarter, the MIDI default
    for msg in mido.merge_tracks(midi.tracks):
        if msg.type == "set_tempo":
            tempo = msg.tempo
    extra = round(mido.second2tick(seconds, midi.ticks_per_beat, tempo))
    longest = max(range(len(midi.tracks)), key=lambda i: sum(m.time for m in midi.tracks[i]), default=None)
    for i, source in enumerate(midi.tracks):
        track, delay = mido.MidiTrack(), 0
        for msg in source:
            if msg.type == "end_of_track":  # dropped, its delay kept, one new one appended
                delay += msg.time
            else:
                track.append(msg.copy(time=msg.time + delay))
                delay = 0
        track.append(mido.MetaMessage("end_of_track", time=delay + (extra if i == longest else 0)))
        padded.tracks.append(track)
    return padded


def _find_soundfont(soundfont: str | Path | None) -> Path:
    if soundfont is not None:
        candidates, named = [Path(soundfont)], True
    elif os.environ.get(SOUNDFONT_ENV):
        candidates, named = [Path(os.environ[SOUNDFONT_ENV])], True
    else:
        candidates, named = list(SOUNDFONTS), False
    for path in candidates:
        if path.is_file():
            check_soundfont(path)
            return path
    if named:
        raise InputError(f"{candidates[0]}: soundfont not found")
    tried = " or ".join(str(p) for p in candidates)
    raise InputError(f"{tried}: no soundfont found (install one: {INSTALL_HINT}, or set ${SOUNDFONT_ENV})")


def check_soundfont(path: Path) -> None:
    """Checked here: FluidSynth quietly renders with its default soundfont when it cannot load one."""
    try:
        with path.open("rb") as handle:
            head = handle.read(12)
    except OSError as exc:
        raise InputError(f"{path}: cannot read soundfont ({exc.strerror or exc.__class__.__name__})") from None
    if head[:4] != b"RIFF" or head[8:12] != b"sfbk":
        raise InputError(f"{path}: not a SoundFont (.sf2/.sf3) file")


def _run_fluidsynth(exe: str, sf2: Path, midi: Path, out: Path, sample_rate: int, label: Path,
                    timeout: float) -> None:
    # -n no MIDI driver, -i no shell, -F renders offline and opens no audio driver
    cmd = [exe, "-n", "-i", "-q", "-g", str(GAIN), "-r", str(sample_rate), "-T", "wav", "-O", "s16",
           "-F", str(out), str(sf2), str(midi)]
    try:
        done = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              errors="replace", timeout=timeout)
    except OSError as exc:
        raise ClaraError(f"{label}: cannot run {exe} ({exc.strerror or exc.__class__.__name__})") from None
    except subprocess.TimeoutExpired:
        raise ClaraError(f"{label}: fluidsynth still rendering after {timeout:.0f} s "
                         "(a note that is never released?)") from None
    lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    reason = (errors or lines or [f"exit status {done.returncode}"])[-1]
    if any("failed to load" in line.lower() for line in lines):  # it would go on with its default soundfont
        raise InputError(f"{sf2}: fluidsynth could not load this soundfont ({reason})")
    # it exits 0 when it cannot open the output file, so a missing or empty file is a failure too
    if done.returncode != 0 or not out.is_file() or out.stat().st_size <= 44:
        raise ClaraError(f"{label}: fluidsynth failed: {reason}")


def _write_trimmed(raw: Path, target: Path, min_seconds: float, label: Path) -> None:
    """Copy the render to target, cut after the last block louder than SILENCE but not before min_seconds."""
    try:
        with wave.open(str(raw), "rb") as src:
            params = src.getparams()
            frames = src.readframes(params.nframes)
    except (wave.Error, EOFError) as exc:
        raise ClaraError(f"{label}: fluidsynth wrote an unreadable WAV ({exc})") from None
    if params.sampwidth != 2:
        raise ClaraError(f"{label}: fluidsynth wrote {8 * params.sampwidth}-bit samples, expected 16")
    samples = np.frombuffer(frames, dtype="<i2").reshape(-1, params.nchannels)  # (frames, channels)
    block = max(1, params.framerate // 100)  # 10 ms
    min_frames = round(min_seconds * params.framerate)
    chunk = PEAK_BLOCKS * block  # the peaks a chunk at a time: an hour's int32 copy would take 1.3 GB
    loud_end = 0
    # the last loud block, sought from the end: it stops at the first loud chunk, or where min_seconds
    # keeps what is left anyway, so only the tail past the music is read, not the hour before it
    for start in reversed(range(0, len(samples), chunk)):
        if start + chunk <= min_frames:
            break
        part = samples[start:start + chunk]
        n_blocks = -(-len(part) // block)
        peaks = np.zeros(n_blocks * block, dtype=np.int32)
        peaks[:len(part)] = np.abs(part.astype(np.int32)).max(axis=1)
        loud = np.flatnonzero(peaks.reshape(n_blocks, block).max(axis=1) > SILENCE * 32768)
        if len(loud):
            loud_end = start + (loud[-1] + 1) * block
            break
    end = min(len(samples), max(loud_end, min_frames))
    with atomic_open(target, "wb") as handle, wave.open(handle, "wb") as dst:
        dst.setnchannels(params.nchannels)
        dst.setsampwidth(2)
        dst.setframerate(params.framerate)
        dst.writeframes(samples[:end])  # a view, not a copy
