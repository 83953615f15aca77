"""A score's parse kept by its bytes (clara_live.corpus.read_cache): a hit reads no score, a
codec change reuses the parse, an entry that cannot be trusted is read again (real Lieder from
../shared)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from clara_live.codec import make_codec, to_steps
from clara_live.config import CodecConfig
from clara_live.corpus import encode_source, find_sources, read_cache
from clara_live.errors import InputError
from clara_live.music.read import read_music

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
LIEDER = SHARED / "corpus" / "openscore-lieder"
SONG = LIEDER / "Reichardt,_Louise" / "12_Ges_nge,_Op.3" / "6_Kriegslied_des_Mays" / "lc5002006.mxl"  # 0.1 s
OTHER = LIEDER / "Butterworth,_George" / "6_Songs_from_A_Shropshire_Lad" / "2_When_I_was_one_and_twenty" / \
    "lc6214844.mxl"


@pytest.fixture
def reads(monkeypatch) -> list[str]:
    """Every score the cache asks music21's reader for, in order."""
    seen: list[str] = []

    def counted(location, sustain_pedal=True):
        seen.append(str(location))
        return read_music(location, sustain_pedal)

    monkeypatch.setattr(read_cache, "read_music", counted)
    return seen


def _entries(folder: Path) -> list[Path]:
    return sorted((folder / read_cache.FOLDER).rglob("*.json"))


def test_a_hit_reads_no_score_and_gives_the_same_piece(tmp_path, reads):
    first = read_cache.read_piece(str(SONG), True, tmp_path)
    again = read_cache.read_piece(str(SONG), False, tmp_path)  # the pedal is a MIDI reader's: same entry
    assert reads == [str(SONG)] and len(_entries(tmp_path)) == 1
    assert first == again == read_music(SONG)
    assert again.parts == ("Voice", "Piano", "Piano") and {n.family for n in again.notes} == {"v", "p"}
    # the same bytes under another name are the same entry, the piece named as asked
    copy = tmp_path / "copy.mxl"
    shutil.copy(SONG, copy)
    assert read_cache.read_piece(str(copy), True, tmp_path).source == str(copy) and len(reads) == 1


def test_midi_and_no_folder_are_read_as_ever(tmp_path, reads):
    midi = SHARED / "corpus" / "pop909" / "001.mid"
    assert read_cache.read_piece(str(midi), True, tmp_path) == read_music(midi)
    assert read_cache.read_piece(str(SONG), True, "") == read_music(SONG)
    assert reads == [str(midi), str(SONG)] and _entries(tmp_path) == []


def test_a_codec_change_reuses_the_parse(tmp_path, reads):
    [source] = find_sources([str(SONG)])
    configs = [CodecConfig(), CodecConfig(sample_freq=8), CodecConfig(chamber=True)]
    encoded = [encode_source(source, config, str(tmp_path)) for config in configs]
    assert reads == [str(SONG)]  # three codec settings, one parse
    for config, result in zip(configs, encoded, strict=True):
        assert result.error is None and not result.cached
        assert result.tokens == make_codec(config).encode(to_steps(read_music(SONG), config))
    assert any(t.startswith("v") for t in encoded[2].tokens)


@pytest.mark.parametrize("damage", [
    lambda text: text[: len(text) // 2],  # cut short: not JSON
    lambda text: "",
    lambda text: json.dumps({**json.loads(text), "pitch": json.loads(text)["pitch"][:-1]}),  # columns disagree
    lambda text: json.dumps({**json.loads(text), "family": "x" * len(json.loads(text)["family"])}),
    lambda text: json.dumps({**json.loads(text), "key": "0" * 64}),  # another file's
], ids=["cut", "empty", "short-column", "bad-family", "wrong-key"])
def test_an_entry_that_cannot_be_trusted_is_read_again_and_mended(tmp_path, reads, damage):
    piece = read_cache.read_piece(str(SONG), True, tmp_path)
    [entry] = _entries(tmp_path)
    entry.write_text(damage(entry.read_text()))
    assert read_cache.read_piece(str(SONG), True, tmp_path) == piece
    assert read_cache.read_piece(str(SONG), True, tmp_path) == piece
    assert reads == [str(SONG)] * 2  # read again once, then the mended entry serves


def test_a_score_no_reader_can_take_is_kept_as_its_reason(tmp_path, reads):
    bad = tmp_path / "bad.mxl"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    messages = []
    for _ in range(2):
        with pytest.raises(InputError) as info:
            read_cache.read_piece(str(bad), True, tmp_path / "cache")
        messages.append(str(info.value))
    assert reads == [str(bad)] and messages[0] == messages[1] and messages[0].startswith(f"{bad}: not a readable score")


def test_entries_of_two_files_are_apart(tmp_path, reads):
    a = read_cache.read_piece(str(SONG), True, tmp_path)
    b = read_cache.read_piece(str(OTHER), True, tmp_path)
    assert a != b and len(_entries(tmp_path)) == 2
    assert read_cache.read_piece(str(OTHER), True, tmp_path) == b and len(reads) == 2
