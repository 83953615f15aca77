"""Sustain pedal (CC64) from MIDI tracks that hold no notes.

symusic drops tracks without notes, and with them their controllers, yet many files keep
the pedal in a track of its own (154 of the 297 piano-midi.de files). This walks the raw
Standard MIDI File chunks and reads CC64 from such tracks only: a track is abandoned at
its first note-on (symusic has it, pedal included), so the cost is a few hundred events
per file, not the whole file in Python.
"""

from __future__ import annotations

from collections import defaultdict

from clara_live.music.smf_repair import DATA_BYTES, events, tracks

SUSTAIN = 64


def noteless_track_pedals(data: bytes) -> dict[int, list[tuple[int, int]]]:
    """Pedal-down intervals (start tick, end tick) by program, from tracks with no note-on.

    The program is the one the track's channel was last given in that track (0 if none).
    A pedal still down at the track's end is held to its last event. Malformed bytes end
    the scan of their track quietly, and a chunk cut short is not read (smf_repair.tracks): the
    caller's parser has already judged the file (symusic refuses a chunk that runs past its end).
    """
    found: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for start, end in tracks(data):
        for program, interval in _scan_track(data, start, end):
            found[program].append(interval)
    return found


def _scan_track(data: bytes, start: int, end: int) -> list[tuple[int, tuple[int, int]]]:
    programs: dict[int, int] = {}
    down: dict[int, int] = {}  # channel -> tick the pedal went down
    intervals: list[tuple[int, tuple[int, int]]] = []
    tick = 0
    for tick, status, i in events(data, start, end):
        if not 0x80 <= status < 0xF0:
            continue
        kind, channel = status >> 4, status & 0x0F
        a = data[i]
        b = data[i + 1] if DATA_BYTES[kind] == 2 else 0
        if kind == 0x9 and b > 0:
            return []  # a track with notes: symusic keeps it and its pedal
        if kind == 0xC:
            programs[channel] = a
        elif kind == 0xB and a == SUSTAIN and channel != 9:  # not the drum channel
            if b >= 64 and channel not in down:
                down[channel] = tick
            elif b < 64 and channel in down:
                intervals.append((programs.get(channel, 0), (down.pop(channel), tick)))
    intervals += [(programs.get(c, 0), (t, tick)) for c, t in down.items() if tick > t]
    return intervals
