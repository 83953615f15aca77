"""What symusic reads wrong in a Standard MIDI File, found in the raw bytes and mended around it.

- A meta event of the wrong length (a tempo of 1 byte, `FF 51 01 05`): symusic reads the length the
  event should have from its first byte on, past its end (`05 00 90`: 327,824 us a quarter, 183 bpm).
  `mend_metas` makes each such event a text event of the same length, which nothing reads, so the
  file's layout is unchanged.
- A note struck and never released: symusic drops it (50 note-ons and no note-off read as no notes).
  `unreleased` finds each, closed where a DAW or pretty_midi closes it: at the next strike of its key,
  else at its track's end.

Both walk the events in Python (~1 us an event, 100x symusic), so they run only when a cheap test
says they may find something: a byte search for the metas; for the notes, `probe`, the file with a
note-off for every key appended to each track 2**28 - 1 ticks after its end, which symusic parses
as it would the file, save that a note never released ends there.
"""

from __future__ import annotations

import bisect
import re
from collections import defaultdict, deque
from collections.abc import Iterator
from typing import NamedTuple

# data bytes after a channel status, by its high nibble
DATA_BYTES = {0x8: 2, 0x9: 2, 0xA: 2, 0xB: 2, 0xC: 1, 0xD: 1, 0xE: 2}
# the metas whose length is fixed and that symusic reads: type -> (length, name)
FIXED_METAS = {0x51: (3, "tempo"), 0x58: (4, "time signature"), 0x59: (2, "key signature")}
# FF, a fixed meta's type, then a first length byte other than its length: one C scan of the file finds
# every place a meta of the wrong length may be (a byte search per type and a Python test per tempo found
# cost half of symusic's parse on performances with thousands of tempo changes)
_MAYBE_WRONG_LENGTH = re.compile(b"|".join(re.escape(bytes([0xFF, kind])) + b"[^" + re.escape(bytes([length])) + b"]"
                                           for kind, (length, _) in FIXED_METAS.items()))
TEXT = 0x01
PROBE_TICKS = 0x0FFFFFFF  # the largest delta time: past any note a track can release
_PROBE_DELTA = b"\xff\xff\xff\x7f"  # PROBE_TICKS as a delta time (a variable-length quantity)
_END_OF_TRACK = b"\xff\x2f\x00"
# a note-off for every key of a channel: its status once, then running status at delta 0
_ALL_OFF = [bytes([0x80 | ch, 0, 0]) + b"".join(bytes([0, p, 0]) for p in range(1, 128)) for ch in range(16)]


class Held(NamedTuple):
    """A note never released, closed where a player's instrument would close it (ticks)."""

    track: int  # which MTrk chunk, from 0
    channel: int
    program: int  # the channel's program when it was struck
    pitch: int
    velocity: int
    start: int
    end: int


def varlen(data: bytes, i: int) -> tuple[int, int]:
    """A variable-length quantity at i (at most 4 bytes): (value, the index after it)."""
    value = 0
    for _ in range(4):
        byte = data[i]
        i += 1
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            break
    return value, i


def tracks(data: bytes) -> Iterator[tuple[int, int]]:
    """(start, end) of each MTrk chunk's body that lies whole inside data, in order."""
    if data[:4] != b"MThd" or len(data) < 8:
        return
    i = 8 + int.from_bytes(data[4:8], "big")
    while i + 8 <= len(data):
        kind, length = data[i:i + 4], int.from_bytes(data[i + 4:i + 8], "big")
        start, i = i + 8, i + 8 + length
        if i > len(data):
            return
        if kind == b"MTrk":
            yield start, i


def events(data: bytes, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(tick, status, index of the byte after the status) of each whole event of a track body, running
    status resolved. Malformed bytes end the walk quietly: symusic has judged the file."""
    tick, i, status = 0, start, 0
    try:
        while i < end:
            delta, i = varlen(data, i)
            tick += delta
            if data[i] & 0x80:
                status, i = data[i], i + 1
            if status in (0xF0, 0xF7):  # sysex: a length, then bytes
                length, after = varlen(data, i)
                after += length
            elif status == 0xFF:  # meta: a type, a length, then bytes
                length, after = varlen(data, i + 1)
                after += length
            elif 0x80 <= status < 0xF0:
                after = i + DATA_BYTES[status >> 4]
            else:
                return  # a status byte no file should hold here
            if after > end:
                return
            yield tick, status, i
            i = after
    except IndexError:
        return


def mend_metas(data: bytes) -> tuple[bytes, list[str]]:
    """data with each tempo, time or key signature of the wrong length made a text event, and what was
    mended ("a tempo of 1 byte, not 3"); data itself when nothing is."""
    if not _MAYBE_WRONG_LENGTH.search(data):
        return data, []
    out, mended = bytearray(data), []
    for start, end in tracks(data):
        for _, status, i in events(data, start, end):
            if status != 0xFF or data[i] not in FIXED_METAS:
                continue
            length, name = FIXED_METAS[data[i]]
            got = varlen(data, i + 1)[0]
            if got != length:
                out[i] = TEXT
                mended.append(f"a {name} of {got} byte{'' if got == 1 else 's'}, not {length}")
    return (bytes(out), mended) if mended else (data, [])


def probe(data: bytes) -> bytes:
    """data with, in each track that ends with an end-of-track and strikes on some channel, a note-off
    for every key of those channels PROBE_TICKS after the track's end. A note symusic reads from it
    ending that late is one the file never released; else it reads the file's own notes."""
    out, at = bytearray(), 0
    for start, end in tracks(data):
        body = data[start:end]
        channels = [ch for ch in range(16) if bytes([0x90 | ch]) in body]
        if not channels or not body.endswith(_END_OF_TRACK):
            continue
        # the end-of-track becomes an empty text event at its tick; the note-offs follow, then the end
        offs = b"\xff\x01\x00" + _PROBE_DELTA + b"\x00".join(_ALL_OFF[ch] for ch in channels)
        offs += b"\x00" + _END_OF_TRACK
        out += data[at:start - 4] + (end - start - 3 + len(offs)).to_bytes(4, "big") + body[:-3] + offs
        at = end
    return bytes(out + data[at:]) if out else data


def unreleased(data: bytes) -> list[Held]:
    """Every note struck and never released, in each track. A release closes the earliest strike of its
    key still sounding, as symusic pairs them; a strike left over ends at the next strike of its key
    (channel and pitch) in its track, else at the track's last tick."""
    held: list[Held] = []
    for number, (start, end) in enumerate(tracks(data)):
        sounding: dict[tuple[int, int], deque] = defaultdict(deque)  # key -> (tick, velocity, program)
        strikes: dict[tuple[int, int], list[int]] = defaultdict(list)
        programs: dict[int, int] = {}
        last = 0
        for tick, status, i in events(data, start, end):
            last = tick
            kind, channel = status >> 4, status & 0x0F
            if kind == 0xC:
                programs[channel] = data[i]
            elif kind in (0x8, 0x9):
                key, velocity = (channel, data[i]), data[i + 1]
                if kind == 0x9 and velocity > 0:
                    sounding[key].append((tick, velocity, programs.get(channel, 0)))
                    strikes[key].append(tick)
                elif sounding[key]:
                    sounding[key].popleft()
        for (channel, pitch), left in sounding.items():
            for tick, velocity, program in left:
                later = strikes[channel, pitch]
                at = bisect.bisect_right(later, tick)
                after = later[at] if at < len(later) else last
                held.append(Held(number, channel, program, pitch, velocity, tick, after))
    return held
