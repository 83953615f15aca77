"""Which family each part plays with codec.chamber (clara_live.corpus.parts): a Lied's voice over
its piano, POP909's melody over its piano; without chamber the tokens of every corpus built
before (real files from ../shared)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from clara_live.codec import make_codec, to_steps
from clara_live.config import CodecConfig
from clara_live.corpus import encode_source, find_sources
from clara_live.corpus.parts import MELODY, POP909, arranged
from clara_live.music.read import read_music

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
CORPUS = SHARED / "corpus"
SONG = CORPUS / "openscore-lieder" / "Reichardt,_Louise" / "12_Ges_nge,_Op.3" / "6_Kriegslied_des_Mays" / \
    "lc5002006.mxl"
PIANO = CodecConfig()
CHAMBER = CodecConfig(chamber=True)


def _ons(tokens: list[str], family: str) -> int:
    return sum(t.startswith(family) and t[1:].isdigit() for t in tokens)


@pytest.fixture(scope="module")
def lieder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpora") / "openscore-lieder"
    folder = root / SONG.relative_to(CORPUS / "openscore-lieder").parent
    folder.mkdir(parents=True)
    shutil.copy(SONG, folder / SONG.name)
    (root / "README.md").write_text("# OpenScore Lieder\n\nSongs for voice and piano\n")
    return root


@pytest.fixture(scope="module")
def pop909(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpora") / "pop909"
    root.mkdir()
    (root / "README.md").write_text("# POP909: piano arrangements of popular songs\n")
    shutil.copy(CORPUS / "pop909" / "001.mid", root / "001.mid")
    return root


def test_with_chamber_a_lied_is_its_voice_over_its_piano(lieder, tmp_path):
    [source] = find_sources([str(lieder)])
    piece = read_music(SONG)
    voice = [n for n in piece.notes if piece.parts[n.part] == "Voice"]
    piano = [n for n in piece.notes if piece.parts[n.part] == "Piano"]
    assert voice and piano and {n.family for n in voice} == {"v"} and {n.family for n in piano} == {"p"}
    chamber = encode_source(source, CHAMBER, str(tmp_path))
    assert chamber.error is None
    assert _ons(chamber.tokens, "v") == len(to_steps(piece._replace(notes=voice), CHAMBER))
    assert _ons(chamber.tokens, "p") == len(to_steps(piece._replace(notes=piano), CHAMBER))
    # the voice (63..78 here) is in violin range already: no note moved
    decoded = make_codec(CHAMBER).decode(chamber.tokens)
    assert sorted(n.pitch for n in decoded if n.family == "v") == sorted(n.pitch for n in voice)
    # without chamber: the piano part alone, as every corpus built before
    alone = encode_source(source, PIANO, str(tmp_path))
    assert alone.tokens == make_codec(PIANO).encode(to_steps(piece._replace(notes=piano), PIANO))


def test_with_chamber_pop909_is_its_melody_over_its_piano(pop909, tmp_path):
    [source] = find_sources([str(pop909)])
    assert source.arrangement == POP909
    piece = read_music(pop909 / "001.mid")
    assert piece.parts == (MELODY, "BRIDGE", "PIANO") and {n.family for n in piece.notes} == {"p"}
    chamber = encode_source(source, CHAMBER, str(tmp_path))
    decoded = make_codec(CHAMBER).decode(chamber.tokens)
    melody = to_steps(piece._replace(notes=[n._replace(family="v") for n in piece.notes if n.part == 0]), CHAMBER)
    rest = to_steps(piece._replace(notes=[n for n in piece.notes if n.part != 0]), CHAMBER)
    assert [(n.start, n.pitch) for n in decoded if n.family == "v"] == [(n.start, n.pitch) for n in melody]
    assert [(n.start, n.pitch) for n in decoded if n.family == "p"] == [(n.start, n.pitch) for n in rest]
    assert len(melody) > 100 and min(n.pitch for n in melody) >= CHAMBER.violin_low  # a sung line, over the piano
    # without chamber every track is piano, as before
    assert encode_source(source, PIANO, str(tmp_path)).tokens == make_codec(PIANO).encode(to_steps(piece, PIANO))


def test_chamber_builds_key_the_token_cache_apart(pop909, tmp_path):
    [source] = find_sources([str(pop909)])
    first = [encode_source(source, config, str(tmp_path)) for config in (PIANO, CHAMBER)]
    again = [encode_source(source, config, str(tmp_path)) for config in (PIANO, CHAMBER)]
    assert [e.cached for e in first] == [False, False] and [e.cached for e in again] == [True, True]
    assert [e.tokens for e in first] == [e.tokens for e in again] and first[0].tokens != first[1].tokens


def test_an_arrangement_is_only_for_chamber():
    piece = read_music(CORPUS / "pop909" / "001.mid")
    [source] = find_sources([str(CORPUS / "pop909" / "001.mid")])  # a file alone: as read
    assert source.arrangement == "" and arranged(piece, source, True) == piece
    assert arranged(piece, source._replace(arrangement=POP909), False) == piece
