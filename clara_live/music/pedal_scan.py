"""Sustain pedal (CC64) from MIDI tracks that hold no notes.

symusic drops tracks without notes, and with them their controllers, yet many files keep
the pedal in a track of its own (154 of the 297 piano-midi.de files). This walks the raw
Standard MIDI File chunks and reads CC64 from such tracks only: a track is abandoned at
its first note-on (symusic has it, pedal included), so the cost is a few hundred events
per file, not the whole file in Python.
"""

from __future__ import annotations

from collections import defaultdict

SUSTAIN = 64
# data bytes after a channel status, by its high nibble
_DATA_BYTES = {0x8: 2, 0x9: 2, 0xA: 2, 0xB: 2, 0xC: 1, 0xD: 1, 0xE: 2}


def _varlen(data: bytes, i: int) -> tuple[int, int]:
    value = 0
    for _ in range(4):
        byte = data[i]
        i += 1
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            break
    return value, i


def noteless_track_pedals(data: bytes) -> dict[int, list[tuple[int, int]]]:
    """Pedal-down intervals (start tick, end tick) by program, from tracks with no note-on.

    The program is the one the track's channel was last given in that track (0 if none).
    A pedal still down at the track's end is held to its last event. Malformed bytes end
    the scan of their track quietly: the caller's parser has already judged the file.
    """
    found: dict[int, list[tuple[int, int]]] = defaultdict(list)
    i = 14 if data[:4] == b"MThd" else len(data)
    while i + 8 <= len(data):
        kind, length = data[i:i + 4], int.from_bytes(data[i + 4:i + 8], "big")
        start, i = i + 8, i + 8 + length
        if kind == b"MTrk":
            for program, interval in _scan_track(data[start:i]):
                found[program].append(interval)
    return found


def _scan_track(track: bytes) -> list[tuple[int, tuple[int, int]]]:
    tick, i, status = 0, 0, 0
    programs: dict[int, int] = {}
    down: dict[int, int] = {}  # channel -> tick the pedal went down
    intervals: list[tuple[int, tuple[int, int]]] = []
    try:
        while i < len(track):
            delta, i = _varlen(track, i)
            tick += delta
            if track[i] & 0x80:
                status, i = track[i], i + 1
            if status in (0xF0, 0xF7):  # sysex: a length, then bytes
                length, i = _varlen(track, i)
                i += length
            elif status == 0xFF:  # meta: a type, a length, then bytes
                length, i = _varlen(track, i + 1)
                i += length
            elif 0x80 <= status < 0xF0:
                kind, channel = status >> 4, status & 0x0F
                a = track[i]
                b = track[i + 1] if _DATA_BYTES[kind] == 2 else 0
                i += _DATA_BYTES[kind]
                if kind == 0x9 and b > 0:
                    return []  # a track with notes: symusic keeps it and its pedal
                if kind == 0xC:
                    programs[channel] = a
                elif kind == 0xB and a == SUSTAIN and channel != 9:  # not the drum channel
                    if b >= 64 and channel not in down:
                        down[channel] = tick
                    elif b < 64 and channel in down:
                        intervals.append((programs.get(channel, 0), (down.pop(channel), tick)))
            else:
                return intervals  # a status byte no file should hold here
    except IndexError:
        pass
    intervals += [(programs.get(c, 0), (t, tick)) for c, t in down.items() if tick > t]
    return intervals
