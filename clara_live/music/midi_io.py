"""MIDI files in and out: the one module that touches symusic and mido.

Reading uses symusic (a C++ parser): measured here it parses the piano corpus about 180x
faster than mido (0.2 ms against 36 ms a file), which is what lets encoding beat miditok.
Writing uses mido: plain, explicit messages, so every note-on is paired by construction.
"""

from __future__ import annotations

import io
import sys
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import mido
import numpy as np
import symusic

from clara_live.atomic import write_bytes
from clara_live.errors import InputError
from clara_live.music.instruments import DRUM_CHANNEL, PROGRAM_OF_FAMILY, family_of
from clara_live.music.notes import FAMILIES, PIANO, VIOLIN, Note, Piece, StepNote, normalise
from clara_live.music.pedal_scan import noteless_track_pedals
from clara_live.music.smf_repair import PROBE_TICKS, Held, mend_metas, probe, unreleased

MIDI_SUFFIXES = (".mid", ".midi", ".smf")
# the longest a file's notes may run, in quarter notes: 9 hours at 120 bpm, 18 times the longest piece
# of the corpora here (3,624). A corrupt delta time can put a note 2**28 ticks on (with one tick a
# quarter, 130 million wait tokens and gigabytes from an 80-byte file)
MAX_QUARTERS = 65_536
_PART_NAMES = {PIANO: "piano", VIOLIN: "violin", "cello": "cello"}
_PART_PROGRAMS = {**PROGRAM_OF_FAMILY, "cello": 42}


def read_midi(path: str | Path, sustain_pedal: bool = True, seconds: bool = False) -> Piece:
    """Read a MIDI file into notes timed in quarter notes (ticks / ticks-per-quarter), or in
    seconds through the file's tempo map (`seconds`: a performance to be put on its beats).

    Ticks count quarter notes whatever the tempo, so tempo changes never distort the step
    grid. Drums (channel 10) and unpitched programs are dropped. With sustain_pedal, a note
    released while CC64 is down sounds until the pedal lifts; the pedal is a channel control,
    and files often put it in one hand's track or in a track of its own, so it applies to every
    track of the same program (symusic does not report channels).
    """
    data = midi_bytes(path)
    score, held = _parse(data, path)
    tpq = float(score.ticks_per_quarter)  # > 0: midi_bytes refuses a division of 0 and SMPTE frames
    pedals: dict[int, list[tuple[int, int]]] = defaultdict(list)
    if sustain_pedal:
        for track in score.tracks:
            if not track.is_drum:
                pedals[track.program].extend((p.time, p.time + p.duration) for p in track.pedals)
        for program, intervals in noteless_track_pedals(data).items():
            pedals[program].extend(intervals)
    notes: list[Note] = []
    parts = _parts(score, held)
    for part, (program, is_drum, arr) in enumerate(parts):
        family = family_of(program, is_drum)
        if family is None or len(arr["time"]) == 0:
            continue
        start = arr["time"].astype(np.int64)
        end = start + np.maximum(arr["duration"].astype(np.int64), 0)
        if pedals.get(program):
            end = _hold_under_pedal(end, pedals[program])
        check_span(path, end.max() / tpq)
        on, off = (_seconds(score, start), _seconds(score, end)) if seconds else (start / tpq, end / tpq)
        for s, e, p, v in zip(on.tolist(), off.tolist(),
                              arr["pitch"].tolist(), arr["velocity"].tolist(), strict=True):
            notes.append(Note(s, e, p, max(1, v), family, part))
    notes.sort()
    tempos = _tempos(score)
    bpm = float(tempos[0].qpm) if tempos else 120.0
    names = tuple(str(t.name) for t in score.tracks) + ("",) * (len(parts) - len(score.tracks))  # held: unnamed
    return Piece(notes, bpm, str(path), names, tuple(program for program, _, _ in parts))


def midi_bytes(path: str | Path) -> bytes:
    """A MIDI file's bytes as every reader of it takes them (encoding and `clara live --play` alike):
    InputError for a file that cannot be read or has no time to play in (a division of 0 ticks a
    quarter, or SMPTE frames); a meta event of the wrong length made inert, with a warning."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc.__class__.__name__})") from None
    if data[:4] == b"MThd" and len(data) >= 14:
        division = int.from_bytes(data[12:14], "big")
        if division == 0:
            raise InputError(f"{path}: not a readable MIDI file (a time division of 0 ticks a quarter note)")
        if division & 0x8000:
            raise InputError(f"{path}: not a readable MIDI file (SMPTE time division is not supported)")
    data, mended = mend_metas(data)
    if mended:
        kinds = ", ".join(sorted(set(mended)))
        warn(path, f"ignored {len(mended)} meta event{'s' if len(mended) > 1 else ''} of the wrong length ({kinds})")
    return data


def check_span(path: str | Path, quarters: float) -> None:
    """InputError when a file's notes run to quarter note `quarters`, past the MAX_QUARTERS a piece may span."""
    if quarters > MAX_QUARTERS:
        raise InputError(f"{path}: a note ends at quarter note {quarters:,.0f}, past the "
                         f"{MAX_QUARTERS:,} a piece may span (a corrupt delta time?)")


def warn(path: str | Path, text: str) -> None:
    """One line on stderr naming the file: something read that is not what the file meant."""
    print(f"clara: warning: {path}: {text}", file=sys.stderr)


def _parse(data: bytes, path: str | Path) -> tuple[symusic.Score, list[Held]]:
    """The score symusic reads, and the notes the file never released (which symusic drops), each
    closed at the next strike of its key or its track's end. The probe is parsed in the file's
    stead: with nothing left sounding it reads the same, at the cost of one parse."""
    try:
        score = symusic.Score.from_midi(probe(data), ttype="tick")
        if not any(len(t.notes) and t.notes.numpy()["duration"].max() >= PROBE_TICKS for t in score.tracks):
            return score, []
    except Exception:  # noqa: BLE001 - the file itself is parsed below, and its error reported
        pass
    try:
        score = symusic.Score.from_midi(data, ttype="tick")
    except Exception as exc:  # symusic raises RuntimeError/ValueError with a terse reason
        raise InputError(f"{path}: not a readable MIDI file ({exc})") from None
    held = unreleased(data)
    if held:
        warn(path, f"{len(held)} notes had no note-off; closed at the next strike of their key or the track's end")
    return score, held


def _parts(score: symusic.Score, held: list[Held]) -> list[tuple[int, bool, dict[str, np.ndarray]]]:
    """(program, drums?, notes as symusic's arrays by field) of each track, then of the notes never
    released, one part for each track, channel and program they were struck in."""
    parts = [(t.program, t.is_drum, t.notes.numpy()) for t in score.tracks]
    groups: dict[tuple[int, int, int], list[Held]] = defaultdict(list)
    for note in held:
        groups[note.track, note.channel, note.program].append(note)
    for (_, channel, program), group in groups.items():
        arr = {field: np.array([getattr(n, name) for n in group], dtype=np.int64)
               for field, name in (("time", "start"), ("pitch", "pitch"), ("velocity", "velocity"))}
        arr["duration"] = np.array([n.end - n.start for n in group], dtype=np.int64)
        parts.append((program, channel == DRUM_CHANNEL, arr))
    return parts


def _tempos(score: symusic.Score) -> list:
    """The score's tempo changes but those of 0 microseconds a quarter (an infinite tempo: time
    would stand still), which are left out as players ignore them."""
    return [t for t in score.tempos if t.mspq > 0]


def _seconds(score: symusic.Score, ticks: np.ndarray) -> np.ndarray:
    """Tick times in seconds through the score's tempo changes (120 bpm before the first)."""
    tpq = float(score.ticks_per_quarter)
    changes = sorted((int(t.time), float(t.mspq)) for t in _tempos(score)) or [(0, 500_000.0)]
    if changes[0][0] > 0:
        changes.insert(0, (0, 500_000.0))
    at = np.array([c[0] for c in changes], dtype=np.float64)
    per_tick = np.array([c[1] for c in changes]) / 1e6 / tpq  # seconds a tick from each change on
    elapsed = np.concatenate([[0.0], np.cumsum(np.diff(at) * per_tick[:-1])])
    k = np.searchsorted(at, ticks, side="right") - 1
    return elapsed[k] + (ticks - at[k]) * per_tick[k]


def _hold_under_pedal(end: np.ndarray, intervals: list[tuple[int, int]]) -> np.ndarray:
    """Move each release that falls while the pedal is down to the pedal's lift."""
    down = np.array(sorted(intervals), dtype=np.int64).reshape(-1, 2)
    # merge overlapping intervals so one search finds the lift that ends the hold
    merged = [list(down[0])]
    for s, e in down[1:]:
        if s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    m = np.array(merged, dtype=np.int64)
    idx = np.searchsorted(m[:, 0], end, side="right") - 1
    inside = (idx >= 0) & (end < m[np.maximum(idx, 0), 1])
    return np.where(inside, m[np.maximum(idx, 0), 1], end)


def steps_to_midi(notes: Iterable[StepNote], sample_freq: int, bpm: float = 120.0,
                  violin_low: int = 55) -> mido.MidiFile:
    """Build a type-1 MIDI file, every note-on paired with its note-off.

    One track per family: piano, violin, and a cello track for violin-family notes below
    violin_low (so reading the file back sees the same parts: a lone violin part would be
    folded up into violin range as a solo instrument). Each step is a whole number of ticks,
    so reading the file back lands on the same steps.
    """
    ticks_per_step = -(-480 // sample_freq)  # ceil: at least 480 ticks per quarter
    midi = mido.MidiFile(type=1, ticks_per_beat=ticks_per_step * sample_freq)
    conductor = mido.MidiTrack()
    conductor.append(mido.MetaMessage("set_tempo", tempo=midi_tempo(bpm), time=0))
    conductor.append(mido.MetaMessage("time_signature", numerator=4, denominator=4, time=0))
    midi.tracks.append(conductor)
    parts: dict[str, list[StepNote]] = defaultdict(list)
    for note in normalise(notes):  # one sounding note per pitch, so every on has its off
        low_string = note.family == VIOLIN and note.pitch < violin_low
        parts["cello" if low_string else note.family].append(note)
    for channel, part in enumerate(p for p in (*FAMILIES, "cello") if parts[p]):
        track = mido.MidiTrack()
        track.append(mido.MetaMessage("track_name", name=_PART_NAMES[part], time=0))
        track.append(mido.Message("program_change", channel=channel, program=_PART_PROGRAMS[part], time=0))
        # (tick, 0 = off before 1 = on, pitch, velocity): offs first so a re-struck note is closed
        events = []
        for pitch, on, off, velocity in timed(parts[part], ticks_per_step):
            events.append((on, 1, pitch, velocity))
            events.append((off, 0, pitch, 0))
        events.sort()
        now = 0
        for tick, on, pitch, velocity in events:
            kind = "note_on" if on else "note_off"
            track.append(mido.Message(kind, channel=channel, note=pitch, velocity=velocity, time=tick - now))
            now = tick
        midi.tracks.append(track)
    return midi


def timed(notes: list[StepNote], ticks_per_step: int) -> list[tuple[int, int, int, int]]:
    """(pitch, on tick, off tick, velocity) of notes on the grid, each onset moved by its touch
    offset (less than half a step, so no onset passes another step's). A note's off comes no later
    than the next onset of its key, which an early onset may bring before its grid step, and at
    least a tick after its own; a key's onsets at least two ticks apart; none before tick 0."""
    out = []
    by_key: dict[int, list[StepNote]] = defaultdict(list)
    for n in notes:
        by_key[n.pitch].append(n)
    for pitch, keyed in by_key.items():
        keyed.sort(key=lambda n: n.start)
        ons = [max(0, n.start * ticks_per_step + round(n.offset * ticks_per_step)) for n in keyed]
        for i in range(1, len(ons)):  # two touches meeting between steps: the later onset a tick or two on
            ons[i] = max(ons[i], ons[i - 1] + 2)
        for i, n in enumerate(keyed):
            off = n.end * ticks_per_step
            if i + 1 < len(keyed):
                off = min(off, ons[i + 1])
            out.append((pitch, ons[i], max(off, ons[i] + 1), n.velocity))
    return out


def midi_tempo(bpm: float) -> int:
    """bpm as a set_tempo a MIDI file can hold: 1..0xFFFFFF microseconds a quarter (never 0, which
    stops time); 120 bpm for a bpm that is no tempo at all (0, negative, NaN)."""
    if not bpm > 0:
        bpm = 120.0
    return min(max(round(60e6 / bpm), 1), 0xFFFFFF)


def write_midi(midi: mido.MidiFile, path: str | Path) -> None:
    """Write a MIDI file atomically (a temporary file renamed over the target)."""
    buffer = io.BytesIO()
    midi.save(file=buffer)
    write_bytes(path, buffer.getvalue())
