"""Mutated MIDI files through the readers of `clara encode`, `clara continue` and `clara evaluate`.

Real files (MAESTRO and piano-midi.de) are spoilt 250 ways, the same ways every run (byte flips,
truncations, chunk lengths, garbage, duplicated chunks, zero and extreme tempos, huge delta times,
bad headers...), and each variant runs through `main([...])` in-process. Every variant must end
with status 0, or 1 and one `clara: error:` line naming the file; anything else escaping main is a
bug. No output may hold a NaN, an infinity or a tempo of 0.
"""

from __future__ import annotations

import json
import math
import random
import struct
from collections.abc import Callable
from pathlib import Path

import mido
import pytest
from conftest import save_tiny_model

from clara_live.cli import main
from clara_live.codec.tokens import Grammar
from clara_live.config import CodecConfig

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SOURCES = [SHARED / "midi" / "maestro" / "maestro_1.mid", SHARED / "midi" / "maestro" / "maestro_3.mid",
           SHARED / "corpus" / "piano-midi-de" / "Haydn" / "haydn_35_3.mid",
           SHARED / "corpus" / "piano-midi-de" / "Clementi" / "clementi_opus36_1_1.mid"]
VARIANTS = 250
SEED = 20240614

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("torch_settings_restored")]


# --- the mutations: bytes in, bytes out, with a random.Random --------------------------------------

def _chunks(data: bytes) -> list[tuple[int, int]]:
    """(offset, length) of each chunk whose header is whole, walking from the start."""
    out, at = [], 0
    while at + 8 <= len(data):
        length = struct.unpack(">I", data[at + 4:at + 8])[0]
        out.append((at, length))
        at += 8 + length
    return out


def _events(data: bytes, kind: bytes) -> list[int]:
    """Offsets of a byte pattern (a meta event's type and length, say)."""
    found, at = [], data.find(kind)
    while at >= 0:
        found.append(at)
        at = data.find(kind, at + 1)
    return found


def flip_bytes(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 16) if out else 0):
        out[rng.randrange(len(out))] ^= rng.randint(1, 255)
    return bytes(out)


def truncate(data: bytes, rng: random.Random) -> bytes:
    return data[:rng.choice([0, 4, 13, 14, 22, rng.randint(0, len(data))])]


def chunk_length(data: bytes, rng: random.Random) -> bytes:
    chunks = _chunks(data)
    if not chunks:
        return data
    at, _ = rng.choice(chunks)
    length = rng.choice([0, 1, 5, 0x7FFFFFFF, 0xFFFFFFFF, rng.randrange(len(data) * 2)])
    return data[:at + 4] + struct.pack(">I", length) + data[at + 8:]


def insert_garbage(data: bytes, rng: random.Random) -> bytes:
    at = rng.randint(min(14, len(data)), len(data))
    return data[:at] + rng.randbytes(rng.randint(1, 64)) + data[at:]


def duplicate_chunk(data: bytes, rng: random.Random) -> bytes:
    chunks = _chunks(data)
    if not chunks:
        return data + data
    at, length = rng.choice(chunks[1:] or chunks)
    chunk = data[at:at + 8 + length]
    where = rng.choice([at, len(data)])
    return data[:where] + chunk * rng.randint(1, 3) + data[where:]


def tempo(data: bytes, rng: random.Random) -> bytes:
    """Every set_tempo to 0, 1 or the largest value (or one added at the start when there is none)."""
    value = rng.choice([0, 0, 1, 0xFFFFFF]).to_bytes(3, "big")
    places = _events(data, b"\xff\x51\x03")
    if not places:
        return insert_event(data, b"\x00\xff\x51\x03" + value)
    out = bytearray(data)
    for at in places:
        out[at + 3:at + 6] = value
    return bytes(out)


def insert_event(data: bytes, event: bytes, track: int = 0) -> bytes:
    """event (with its delta time) at the start of a track (the first, or track modulo their number),
    its chunk's length fixed up."""
    chunks = _chunks(data)
    if len(chunks) < 2:
        return data + event
    at, length = chunks[1 + track % (len(chunks) - 1)]
    return data[:at + 4] + struct.pack(">I", length + len(event)) + event + data[at + 8:]


def huge_delta(data: bytes, rng: random.Random) -> bytes:
    """A delta time of 2**28 - 1 ticks (the largest a variable-length quantity holds) before a note, its
    release, a tempo or the end of a track."""
    late = rng.choice([b"\x00\x90\x3c\x40\xff\xff\xff\x7f\x80\x3c\x00", b"\xff\xff\xff\x7f\x90\x3c\x40\x10\x80\x3c\x00",
                       b"\xff\xff\xff\x7f\xff\x51\x03\x07\xa1\x20", b"\xff\xff\xff\x7f\xff\x2f\x00"])
    return insert_event(data, late, rng.randrange(16))


def header(data: bytes, rng: random.Random) -> bytes:
    """MThd's format, track count or division: 0, huge, SMPTE, negative."""
    field = rng.choice([(8, 10), (10, 12), (12, 14)])
    value = rng.choice([0, 1, 2, 3, 0xFFFF, 0x8000, 0xE728, 0x7FFF])
    return data[:field[0]] + value.to_bytes(2, "big") + data[field[1]:]


def meta_length(data: bytes, rng: random.Random) -> bytes:
    """A meta or sysex event claiming far more bytes than its track holds."""
    event = rng.choice([b"\x00\xff\x01\x8f\xff\xff\x7fhello", b"\x00\xf0\x8f\xff\xff\x7f\x01\x02\xf7",
                        b"\x00\xff\x58\x04\x00\x00\x18\x08", b"\x00\xff\x51\x00"])
    return insert_event(data, event)


def bad_data_bytes(data: bytes, rng: random.Random) -> bytes:
    """Notes with a status byte where a data byte belongs, pitch or velocity >= 128, or running status lost."""
    event = rng.choice([b"\x00\x90\x80\x40", b"\x00\x90\x3c\xff", b"\x00\x3c\x40", b"\x00\xb0\x40\x7f\x00\x90",
                        b"\x00\xe0\xff\xff", b"\x00\xf8\x00\xfe"])
    return insert_event(data, event * rng.randint(1, 20))


def many_notes(data: bytes, rng: random.Random) -> bytes:
    """Thousands of note-ons at one tick, never released."""
    return insert_event(data, b"".join(b"\x00\x90" + bytes([p % 128, 1 + p % 127]) for p in range(3000)))


def wrong_length_meta(data: bytes, rng: random.Random) -> bytes:
    """A tempo, time or key signature shorter or longer than its kind (read past its end, it was a tempo
    from the bytes of the next event), before the track's first note or in the middle of a track."""
    event = rng.choice([b"\x00\xff\x51\x01\x05", b"\x00\xff\x51\x00", b"\x00\xff\x51\x05\x01\x02\x03\x04\x05",
                        b"\x00\xff\x58\x02\x06\x03", b"\x00\xff\x59\x01\x04", b"\x00\xff\x59\x00"])
    return insert_event(data, event, rng.randrange(16))


def running_status(data: bytes, rng: random.Random) -> bytes:
    """Data bytes that lean on a running status across a meta or sysex event, or with none set at all."""
    event = rng.choice([b"\x00\x90\x3c\x40\x00\xff\x01\x00\x00\x3e\x40\x60\x3c\x00\x00\x3e\x00",
                        b"\x00\x90\x3c\x40\x00\xf0\x01\xf7\x00\x3c\x00", b"\x00\x3c\x40\x10\x3c\x00"])
    return insert_event(data, event, rng.randrange(16))


def splice(data: bytes, rng: random.Random) -> bytes:
    """Two mutations, one after the other."""
    first, second = rng.sample(SIMPLE, 2)
    return second(first(data, rng), rng)


SIMPLE: list[Callable[[bytes, random.Random], bytes]] = [
    flip_bytes, truncate, chunk_length, insert_garbage, duplicate_chunk, tempo, huge_delta, header, meta_length,
    bad_data_bytes, many_notes, wrong_length_meta, running_status]
MUTATIONS = SIMPLE + [splice]


def variants(count: int = VARIANTS) -> list[tuple[str, bytes]]:
    """(name, bytes) of count mutated files, the same every run."""
    rng = random.Random(SEED)
    originals = [(p.stem, p.read_bytes()) for p in SOURCES]
    out = []
    for i in range(count):
        mutation = MUTATIONS[i % len(MUTATIONS)]  # every kind, in turn
        stem, data = rng.choice(originals)
        out.append((f"{i:03d}-{mutation.__name__}-{stem}", mutation(data, rng)))
    return out


# --- the commands ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny random notewise model: what is tested is the way in, not the music."""
    return save_tiny_model(tmp_path_factory.mktemp("model") / "tiny")


def _run(args: list[str], capsys: pytest.CaptureFixture, source: Path) -> tuple[int, str]:
    """main(args) -> (status, stdout); fails on anything but 0, or 1 with one error line naming source.
    Warnings (what was mended: a meta of the wrong length, notes never released) come before it, one
    line each naming source."""
    try:
        status = main(args)
    except SystemExit as exc:  # argparse: not expected here
        pytest.fail(f"{source.name}: exit {exc.code} from {args[0]}")
    captured = capsys.readouterr()
    assert status in (0, 1), f"{source.name}: {args[0]} returned {status}"
    lines = captured.err.strip().splitlines()
    warnings = [line for line in lines if line.startswith(f"clara: warning: {source}: ")]
    errors = lines[len(warnings):]
    assert lines[:len(warnings)] == warnings, f"{args[0]} {source.name}: {captured.err!r}"
    if status == 1:
        assert len(errors) == 1 and errors[0].startswith("clara: error: ") and source.name in errors[0], \
            f"{args[0]} {source.name}: {captured.err!r}"
    else:
        assert errors == [], f"{args[0]} {source.name}: {captured.err!r}"
    for word in ("nan", "inf"):
        assert word not in captured.out.lower().replace("info", ""), f"{args[0]} {source.name}: {captured.out!r}"
    return status, captured.out


def _no_constant(name: str) -> None:
    pytest.fail(f"{name} in evaluate's JSON")


def _check_midi(path: Path) -> None:
    midi = mido.MidiFile(str(path))
    tempos = [m.tempo for t in midi.tracks for m in t if m.type == "set_tempo"]
    assert tempos and all(0 < t <= 0xFFFFFF for t in tempos), f"{path.name}: tempos {tempos}"


@pytest.mark.parametrize("half", [0, 1])  # two tests, so `pytest -n 2` runs them side by side
def test_mutated_files_end_in_output_or_one_line(tmp_path, capsys, tiny_model, half):
    grammar = Grammar(CodecConfig())
    seen = {"encoded": 0, "continued": 0, "evaluated": 0, "refused": 0}
    for name, data in variants()[half::2]:
        source = tmp_path / f"{name}.mid"
        source.write_bytes(data)
        tokens = tmp_path / f"{name}.txt"
        status, _ = _run(["encode", str(source), "-o", str(tokens)], capsys, source)
        if status == 1:
            seen["refused"] += 1
            continue
        seen["encoded"] += 1
        for token in tokens.read_text().split():
            grammar.parse(token)  # ValueError for anything but a token of the codec's
        out = tmp_path / f"{name}.out.mid"
        status, _ = _run(["continue", str(source), "-o", str(out), "--tokens", "4", "--seed", "1", "--model",
                          str(tiny_model)], capsys, source)
        if status == 0:
            seen["continued"] += 1
            _check_midi(out)
        status, printed = _run(["evaluate", "--model", str(tiny_model), "--json", str(source)], capsys, source)
        if status == 0:
            seen["evaluated"] += 1
            result = json.loads(printed, parse_constant=_no_constant)
            assert all(math.isfinite(v) for v in result.values()), f"{name}: {result}"
    # the mutations leave many files readable and spoil many: both paths are exercised
    assert seen["refused"] >= 20 and seen["continued"] >= 20 and seen["evaluated"] >= 20, seen


def test_the_variants_are_the_same_every_run():
    first, again = variants(24), variants(24)
    assert first == again and len({data for _, data in first}) == 24


def test_mutated_files_are_played_or_refused_in_one_line(tmp_path, capsys):
    """`clara live --play`'s reader (mido, behind encode's checks): the same variants end in messages at
    finite, ordered times, or in an InputError naming the file; nothing else escapes."""
    from clara_live.errors import InputError
    from clara_live.live.playback import performance

    played = refused = 0
    for name, data in variants():
        source = tmp_path / f"{name}.mid"
        source.write_bytes(data)
        try:
            events = performance(source)
        except InputError as exc:
            assert source.name in str(exc) and "\n" not in str(exc), str(exc)
            refused += 1
            continue
        times = [t for t, _ in events]
        assert all(math.isfinite(t) for t in times) and times == sorted(times), name
        assert all(len(m) == 3 and m[0] >= 0x80 and max(m[1:]) < 0x80 for _, m in events), name
        played += 1
    assert played >= 20 and refused >= 20, (played, refused)
    capsys.readouterr()
