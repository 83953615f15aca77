"""Bad input, as a user gives it: each case ends in one line on stderr naming the file or value and
the reason, exit status 1 and no traceback; a batch reports each bad item and builds from the rest;
nothing non-finite reaches an output."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import mido
import pytest
import torch
from conftest import save_tiny_model

from clara_live.cli import main
from clara_live.codec import make_codec
from clara_live.config import CodecConfig, ModelConfig, load_config
from clara_live.model import AWDLSTM, load_model, save_model

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
MAESTRO = SHARED / "midi" / "maestro" / "maestro_1.mid"
EDGE = SHARED / "midi" / "edge"
PIANO = SHARED / "corpus" / "piano-midi-de"
TINY = ModelConfig(emb_size=8, hidden_size=16, num_layers=2)
TINY_TRAINING = ["model.emb_size=8", "model.hidden_size=16", "model.num_layers=2", "training.batch_size=4",
                 "training.bptt=20", "training.checkpoint_every=5", "training.eval_tokens=2000",
                 "training.device=cpu", "training.onednn=off", "training.precision=fp32"]


def one_line(text: str, *names: str) -> str:
    """The single `clara: error:` line of text (stderr), which must name each of names."""
    assert "Traceback" not in text, text
    lines = text.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("clara: error: "), text
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


def last_error(text: str, *names: str) -> str:
    """The error of a command that also reports progress on stderr (training): the last line, the only error."""
    assert "Traceback" not in text, text
    errors = [line for line in text.strip().splitlines() if line.startswith("clara: error: ")]
    assert len(errors) == 1 and text.strip().splitlines()[-1] == errors[0], text
    for name in names:
        assert name in errors[0], (name, errors[0])
    return errors[0]


@pytest.fixture
def a_file(tmp_path) -> Path:
    path = tmp_path / "FILE"
    path.write_text("not a folder\n")
    return path


@pytest.fixture
def tiny_model(tmp_path) -> Path:
    """A tiny notewise model folder (random weights) that every case below spoils in its own way."""
    return save_tiny_model(tmp_path / "tiny")


def edit_config(folder: Path, change) -> Path:
    meta = json.loads((folder / "config.json").read_text())
    change(meta)
    (folder / "config.json").write_text(json.dumps(meta))
    return folder


def nan_weights(folder: Path) -> Path:
    state = torch.load(folder / "weights.pt", weights_only=True)
    torch.save({k: torch.full_like(v, math.nan) for k, v in state.items()}, folder / "weights.pt")
    return folder


# --- values ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("args, names", [
    (["--set", "sampling.temperature=.inf"], ["sampling.temperature", "finite"]),
    (["--set", "sampling.temperature=.nan"], ["sampling.temperature"]),
    (["--seed", "99999999999999999999999"], ["sampling.seed", "18446744073709551615"]),
    (["--set", f"sampling.top_p={10**400}"], ["sampling.top_p", "finite"]),
])
def test_a_value_out_of_range_is_one_line(tmp_path, capsys, args, names):
    assert main(["continue", str(MAESTRO), "-o", str(tmp_path / "x.mid"), "--tokens", "16", *args]) == 1
    one_line(capsys.readouterr().err, *names)
    assert not (tmp_path / "x.mid").exists()


def test_an_infinite_length_is_refused_by_the_parser(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["continue", str(MAESTRO), "-o", str(tmp_path / "x.mid"), "--seconds", "inf"])
    assert exit_info.value.code == 2 and "inf: must be a positive number" in capsys.readouterr().err


def test_a_config_that_is_a_folder(tmp_path, capsys):
    assert main(["encode", str(MAESTRO), "-o", str(tmp_path / "x.txt"), "--config", str(tmp_path)]) == 1
    one_line(capsys.readouterr().err, str(tmp_path), "cannot read the config file")


# --- outputs -----------------------------------------------------------------------------------------

def test_an_output_inside_a_file(a_file, capsys):
    assert main(["encode", str(MAESTRO), "-o", str(a_file / "x.txt")]) == 1
    one_line(capsys.readouterr().err, str(a_file / "x.txt"), f"{a_file} is not a folder")


def test_a_decoded_output_inside_a_file(a_file, tmp_path, capsys):
    tokens = tmp_path / "t.txt"
    tokens.write_text("p27 wait12 endp27\n")
    assert main(["decode", str(tokens), "-o", str(a_file / "x.mid")]) == 1
    one_line(capsys.readouterr().err, str(a_file / "x.mid"), "is not a folder")


@pytest.mark.parametrize("command", ["encode", "decode"])
def test_several_inputs_to_an_output_folder_that_is_a_file(a_file, tmp_path, capsys, command):
    tokens = tmp_path / "t.txt"
    tokens.write_text("p27 wait12 endp27\n")
    inputs = [str(MAESTRO), str(SHARED / "midi" / "maestro" / "maestro_2.mid")] if command == "encode" \
        else [str(tokens), str(tokens)]
    assert main([command, *inputs, "-o", str(a_file)]) == 1
    one_line(capsys.readouterr().err, str(a_file), "it is a file")
    assert a_file.read_text() == "not a folder\n"


def test_a_corpus_output_that_is_a_file(a_file, capsys):
    assert main(["corpus", str(MAESTRO), "-o", str(a_file)]) == 1
    one_line(capsys.readouterr().err, str(a_file), "it is a file")


def test_a_closed_stdout_ends_quietly(tmp_path):
    """`clara ... | head -3`: the reader leaves before clara prints; no BrokenPipeError, nothing on stderr."""
    process = subprocess.Popen([sys.executable, "-m", "clara_live", "encode", str(MAESTRO), "-o",
                                str(tmp_path / "x.txt")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
    process.stdout.close()
    err = process.stderr.read().decode()
    assert process.wait(timeout=120) == 0  # the file, the work, was written; only its report went unread
    assert err == ""
    assert (tmp_path / "x.txt").read_text().split()


# --- model folders -----------------------------------------------------------------------------------

@pytest.mark.parametrize("spoil, names", [
    # a chordwise model whose vocabulary is notewise (the sampler would ask for 'prest0')
    (lambda f: edit_config(f, lambda m: m["codec"].update(encoding="chordwise")), ["config.json", "'wait1'"]),
    (lambda f: edit_config(f, lambda m: m.update(vocabulary=[t for t in m["vocabulary"] if t != "wait3"])),
     ["config.json", "lacks 1 tokens", "'wait3'"]),
    # sizes that would need ~17 GB: refused by their shapes before anything is allocated (past 16384, by config)
    (lambda f: edit_config(f, lambda m: m["model"].update(emb_size=16_384, hidden_size=16_384)),
     ["weights.pt", "do not fit config.json", "embed.weight"]),
    (nan_weights, ["weights.pt", "NaN"]),
    (lambda f: edit_config(f, lambda m: m.pop("model")), ["config.json", "no 'model' section"]),
    (lambda f: edit_config(f, lambda m: m.pop("codec")), ["config.json", "no 'codec' section"]),
], ids=["vocabulary-of-another-codec", "vocabulary-lacks-a-token", "40-GB", "nan-weights", "no-model", "no-codec"])
@pytest.mark.parametrize("command", ["continue", "evaluate"])
def test_a_spoilt_model_folder_is_refused_before_use(tiny_model, tmp_path, capsys, spoil, names, command):
    spoil(tiny_model)
    if command == "continue":
        args = ["continue", str(MAESTRO), "-o", str(tmp_path / "x.mid"), "--tokens", "4", "--model", str(tiny_model)]
    else:
        args = ["evaluate", "--model", str(tiny_model), str(MAESTRO)]
    assert main(args) == 1
    one_line(capsys.readouterr().err, *names)
    assert not (tmp_path / "x.mid").exists()


def test_a_judge_folder_is_checked_the_same_way(tiny_model, tmp_path, capsys):
    from clara_live.judge.classifier import Classifier
    from clara_live.judge.store import LoadedJudge, save_judge

    loaded = load_model(tiny_model)
    judge = Classifier(len(loaded.vocabulary), TINY, classes=2, head_hidden=0)
    save_judge(tmp_path / "critic", LoadedJudge(judge, "critic", ["generated", "human"], loaded.codec,
                                                loaded.vocabulary, 16, 8, {}))
    meta_path = tmp_path / "critic" / "judge.json"
    meta = json.loads(meta_path.read_text())
    del meta["codec"]
    meta_path.write_text(json.dumps(meta))
    assert main(["judge", "critic", str(MAESTRO), "--judge", str(tmp_path / "critic")]) == 1
    one_line(capsys.readouterr().err, "judge.json", "no 'codec' section")


def test_a_model_with_nan_weights_is_never_saved(tmp_path):
    model = AWDLSTM(len(make_codec(CodecConfig()).vocabulary()), TINY)
    with torch.no_grad():
        model.embed.weight[0, 0] = math.nan
    with pytest.raises(Exception, match="holds NaN or infinite values"):
        save_model(tmp_path / "m", model, CodecConfig(), make_codec(CodecConfig()).vocabulary())
    assert not (tmp_path / "m" / "config.json").exists()


# --- evaluate ----------------------------------------------------------------------------------------

def test_evaluating_a_file_with_no_notes(tiny_model, capsys):
    assert main(["evaluate", "--model", str(tiny_model), str(EDGE / "empty.mid")]) == 1
    captured = capsys.readouterr()
    one_line(captured.err, "empty.mid", "no notes")
    assert "nan" not in captured.out.lower()


def test_evaluating_a_batch_skips_the_empty_file_and_prints_json(tiny_model, capsys):
    assert main(["evaluate", "--model", str(tiny_model), "--json", str(EDGE / "empty.mid"), str(MAESTRO)]) == 1
    captured = capsys.readouterr()
    one_line(captured.err, "empty.mid", "no notes")
    result = json.loads(captured.out, parse_constant=lambda name: pytest.fail(f"{name} in the JSON"))
    assert result["files"] == 1 and all(math.isfinite(v) for v in result.values())


# --- training ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    from clara_live.corpus import build_corpus

    source = tmp_path_factory.mktemp("src") / "Clementi"
    source.mkdir()
    for midi in sorted((PIANO / "Clementi").glob("*.mid"))[:3]:
        shutil.copy(midi, source / midi.name)
    out = tmp_path_factory.mktemp("corpus")
    config = load_config(overrides=["corpus.workers=1", "corpus.transpose_low=0", "corpus.transpose_high=0",
                                    "corpus.valid_fraction=0.3", "corpus.test_fraction=0.0", "corpus.cache="])
    build_corpus([str(source)], out, config, progress=False)
    return out


def _train(corpus: Path, out: Path, *args: str, steps: int = 5) -> int:
    overrides = [a for item in TINY_TRAINING + [f"training.max_steps={steps}"] for a in ("--set", item)]
    return main(["train", "--corpus", str(corpus), "--out", str(out), *args, *overrides])


def test_fine_tuning_from_nan_weights_is_refused(corpus, tmp_path, capsys):
    base = tmp_path / "base"
    assert _train(corpus, base) == 0
    nan_weights(base / "model")
    capsys.readouterr()
    assert _train(corpus, tmp_path / "personal", "--init", str(base / "model")) == 1
    last_error(capsys.readouterr().err, str(base / "model" / "weights.pt"), "NaN")
    assert not (tmp_path / "personal" / "model").exists()


def test_training_stops_at_a_non_finite_loss(corpus, tmp_path, capsys):
    """A checkpoint whose weights went NaN: the resumed run stops at its first step, saving nothing."""
    out = tmp_path / "run"
    assert _train(corpus, out) == 0
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    state["model"]["embed.weight"][0] = math.nan  # tied: the decoder reads it at every step
    torch.save(state, out / "checkpoint.pt")
    before = {p.name: p.stat().st_mtime_ns for p in (out / "model").iterdir()}
    capsys.readouterr()
    assert _train(corpus, out, "--resume", steps=10) == 1
    last_error(capsys.readouterr().err, "training step 6", "not finite")
    assert {p.name: p.stat().st_mtime_ns for p in (out / "model").iterdir()} == before
    assert all(math.isfinite(p.float().sum()) for p in load_model(out / "model").model.state_dict().values())


def test_a_resume_clears_the_temporary_files_of_a_killed_run(corpus, tmp_path):
    out = tmp_path / "run"
    assert _train(corpus, out) == 0
    stale = [out / ".checkpoint.pt.k1ll3d_0.tmp", out / "model" / ".weights.pt.abcdefgh.tmp"]
    for path in stale:
        path.write_bytes(b"half a checkpoint")
    keep = out / ".notes.tmp"  # not one of atomic_open's: left alone
    keep.write_text("mine")
    assert _train(corpus, out, "--resume", steps=7) == 0
    assert not any(p.exists() for p in stale) and keep.exists()


# --- MIDI and corpora --------------------------------------------------------------------------------

def test_a_tempo_of_zero_never_reaches_the_continuation(tiny_model, tmp_path):
    prompt = mido.MidiFile(type=1, ticks_per_beat=480)
    notes = mido.MidiTrack()
    for pitch in (60, 64, 67, 72):
        notes += [mido.Message("note_on", note=pitch, velocity=80, time=0),
                  mido.Message("note_off", note=pitch, velocity=0, time=240)]
    prompt.tracks += [mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=0, time=0)]), notes]
    prompt.save(str(tmp_path / "tempo0.mid"))
    out = tmp_path / "x.mid"
    assert main(["continue", str(tmp_path / "tempo0.mid"), "-o", str(out), "--tokens", "8", "--seed", "1",
                 "--model", str(tiny_model)]) == 0
    tempos = [m.tempo for t in mido.MidiFile(str(out)).tracks for m in t if m.type == "set_tempo"]
    assert tempos == [mido.bpm2tempo(120)]


def test_a_corpus_with_failed_inputs_exits_1(tmp_path, capsys):
    source = tmp_path / "src" / "Mixed"
    source.mkdir(parents=True)
    shutil.copy(sorted((PIANO / "Clementi").glob("*.mid"))[0], source / "good.mid")
    for n in range(3):
        shutil.copy(EDGE / "corrupted_control168.mid", source / f"bad{n}.mid")
    assert main(["corpus", str(source.parent), "-o", str(tmp_path / "out"), "--set", "corpus.cache="]) == 1
    captured = capsys.readouterr()
    one_line(captured.err, "3 of 4 inputs")
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert [p["source"] for p in manifest["pieces"]] == [str(source / "good.mid")]


def test_a_corpus_reports_each_path_that_is_not_a_regular_file(tmp_path, capsys):
    source = tmp_path / "src" / "Haydn"
    source.mkdir(parents=True)
    shutil.copy(sorted((PIANO / "Haydn").glob("*.mid"))[0], source / "good.mid")
    (source / "folder.mid").mkdir()
    os.mkfifo(source / "fifo.mid")
    (source / "dangling.mid").symlink_to(tmp_path / "nowhere.mid")
    lone = tmp_path / "lone.mid"
    os.mkfifo(lone)
    assert main(["corpus", str(source.parent), str(lone), "-o", str(tmp_path / "out"),
                 "--set", "corpus.cache="]) == 1
    captured = capsys.readouterr()
    one_line(captured.err, "4 of 5 inputs")
    reported = [line for line in captured.out.splitlines() if line.startswith("skipped ")]
    assert sorted(reported) == sorted([f"skipped {source / 'dangling.mid'}: not a regular file (a dangling link)",
                                       f"skipped {source / 'fifo.mid'}: not a regular file (a FIFO)",
                                       f"skipped {source / 'folder.mid'}: not a regular file (a folder)",
                                       f"skipped {lone}: not a regular file (a FIFO)"])
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert [p["source"] for p in manifest["pieces"]] == [str(source / "good.mid")]


@pytest.mark.parametrize("command, name", [("encode", "fifo.mid"), ("decode", "fifo.txt")])
def test_reading_a_fifo_says_so_rather_than_waiting(tmp_path, capsys, command, name):
    os.mkfifo(tmp_path / name)
    assert main([command, str(tmp_path / name), "-o", str(tmp_path / "out")]) == 1
    one_line(capsys.readouterr().err, name, "not a regular file (a FIFO)")


def test_a_corrupt_delta_time_is_refused_rather_than_encoded_for_ever(tmp_path, capsys):
    """An 80-byte file whose second note comes 2**28 - 1 quarters on (130 million wait tokens)."""
    midi = mido.MidiFile(type=0, ticks_per_beat=1)
    midi.tracks.append(mido.MidiTrack([mido.Message("note_on", note=60, velocity=80, time=0),
                                       mido.Message("note_off", note=60, velocity=0, time=1),
                                       mido.Message("note_on", note=62, velocity=80, time=2**28 - 1),
                                       mido.Message("note_off", note=62, velocity=0, time=1)]))
    midi.save(str(tmp_path / "late.mid"))
    assert main(["encode", str(tmp_path / "late.mid"), "-o", str(tmp_path / "x.txt")]) == 1
    one_line(capsys.readouterr().err, "late.mid", "quarter note 268,435,457", "past the 65,536")


def test_json_written_holds_no_nan():
    from clara_live import finite_json

    text = finite_json.dumps({"auc": math.nan, "by": {"a": math.inf, "b": (1.5, -math.inf)}, "n": 3})
    expected = {"auc": None, "by": {"a": None, "b": [1.5, None]}, "n": 3}
    assert json.loads(text, parse_constant=lambda c: pytest.fail(c)) == expected


def _smf(*tracks: bytes, fmt: int = 1, ticks_per_beat: int = 480) -> bytes:
    chunks = b"".join(b"MTrk" + len(t).to_bytes(4, "big") + t for t in tracks)
    return b"MThd" + (6).to_bytes(4, "big") + fmt.to_bytes(2, "big") + len(tracks).to_bytes(2, "big") + \
        ticks_per_beat.to_bytes(2, "big") + chunks


NEVER_RELEASED = _smf(b"".join(b"\x83\x60\x90" + bytes([48 + n % 24, 80]) for n in range(50)) + b"\x00\xff\x2f\x00",
                      fmt=0)  # 50 note-ons a quarter apart, no note-off


def test_notes_with_no_note_off_are_encoded_and_the_closing_reported(tmp_path, capsys):
    """It was '0 tokens: the input has no notes', exit 0."""
    (tmp_path / "held.mid").write_bytes(NEVER_RELEASED)
    assert main(["encode", str(tmp_path / "held.mid"), "-o", str(tmp_path / "held.txt")]) == 0
    captured = capsys.readouterr()
    assert captured.err == (f"clara: warning: {tmp_path / 'held.mid'}: 50 notes had no note-off; closed at the next "
                            "strike of their key or the track's end\n")
    tokens = (tmp_path / "held.txt").read_text().split()
    assert sum(t.startswith("p") for t in tokens) == 50 and "no notes" not in captured.out


def test_notes_with_no_note_off_are_continued(tiny_model, tmp_path, capsys):
    """It was 'no notes in the model's range'."""
    (tmp_path / "held.mid").write_bytes(NEVER_RELEASED)
    assert main(["continue", str(tmp_path / "held.mid"), "-o", str(tmp_path / "x.mid"), "--tokens", "8",
                 "--seed", "1", "--model", str(tiny_model), "--only-continuation"]) == 0
    assert "50 notes had no note-off" in capsys.readouterr().err
    assert (tmp_path / "x.mid").exists()


def test_a_one_byte_tempo_is_not_read_from_the_bytes_after_it(tiny_model, tmp_path, capsys):
    """`FF 51 01 05` was read as 327,824 us a quarter, and the continuation written at ~183 bpm."""
    notes = b"\x00\x90\x3c\x40\x83\x60\x80\x3c\x00\x00\x90\x3e\x40\x83\x60\x80\x3e\x00"
    (tmp_path / "tempo.mid").write_bytes(_smf(b"\x00\xff\x51\x01\x05" + notes + b"\x00\xff\x2f\x00", fmt=0))
    out = tmp_path / "x.mid"
    assert main(["continue", str(tmp_path / "tempo.mid"), "-o", str(out), "--tokens", "8", "--seed", "1",
                 "--model", str(tiny_model)]) == 0
    assert capsys.readouterr().err == (f"clara: warning: {tmp_path / 'tempo.mid'}: ignored 1 meta event of the "
                                       "wrong length (a tempo of 1 byte, not 3)\n")
    tempos = [m.tempo for t in mido.MidiFile(str(out)).tracks for m in t if m.type == "set_tempo"]
    assert tempos == [mido.bpm2tempo(120)]


def test_a_symlink_loop_is_called_one(tmp_path, capsys):
    """It was reported as 'a dangling link'."""
    (tmp_path / "a.mid").symlink_to(tmp_path / "b.mid")
    (tmp_path / "b.mid").symlink_to(tmp_path / "a.mid")
    (tmp_path / "self.mid").symlink_to(tmp_path / "self.mid")
    for name in ("a.mid", "self.mid"):
        assert main(["encode", str(tmp_path / name), "-o", str(tmp_path / "x.txt")]) == 1
        one_line(capsys.readouterr().err, name, "not a regular file (a symlink loop)")
    (tmp_path / "dangling.mid").symlink_to(tmp_path / "nowhere.mid")
    assert main(["encode", str(tmp_path / "dangling.mid"), "-o", str(tmp_path / "x.txt")]) == 1
    one_line(capsys.readouterr().err, "dangling.mid", "not a regular file (a dangling link)")


# --- clara live --play: the file read as encode reads it ---------------------------------------------

TPQ_0 = bytes.fromhex("4d546864000000060000000100004d54726b0000000d00903c408360803c4000ff2f00")
A_NOTE = b"\x00\x90\x3c\x40\x83\x60\x80\x3c\x00\x00\xff\x2f\x00"


def test_play_refuses_a_division_of_0_ticks_as_encode_does(tmp_path, capsys):
    """mido raised ZeroDivisionError."""
    from clara_live.errors import InputError
    from clara_live.live.playback import performance

    (tmp_path / "tpq0.mid").write_bytes(TPQ_0)
    with pytest.raises(InputError) as played:
        performance(tmp_path / "tpq0.mid")
    assert main(["encode", str(tmp_path / "tpq0.mid"), "-o", str(tmp_path / "x.txt")]) == 1
    assert one_line(capsys.readouterr().err) == f"clara: error: {played.value}"
    assert "tpq0.mid: not a readable MIDI file (a time division of 0 ticks a quarter note)" in str(played.value)


def test_play_plays_a_format_2_file_s_tracks_together_as_encode_reads_them(tmp_path):
    """mido raised `TypeError: can't merge tracks in type 2`."""
    from clara_live.live.playback import performance

    (tmp_path / "fmt2.mid").write_bytes(_smf(A_NOTE, A_NOTE.replace(b"\x3c", b"\x40"), fmt=2))
    assert performance(tmp_path / "fmt2.mid") == [(0.0, [0x90, 60, 64]), (0.0, [0x90, 64, 64]),
                                                  (0.5, [0x80, 60, 0]), (0.5, [0x80, 64, 0])]


def test_play_ignores_a_tempo_of_the_wrong_length_as_encode_does(tmp_path, capsys):
    from clara_live.live.playback import performance

    (tmp_path / "tempo.mid").write_bytes(_smf(b"\x00\xff\x51\x01\x05" + A_NOTE, fmt=0))
    assert performance(tmp_path / "tempo.mid") == [(0.0, [0x90, 60, 64]), (0.5, [0x80, 60, 0])]
    assert "tempo.mid: ignored 1 meta event of the wrong length (a tempo of 1 byte, not 3)" in capsys.readouterr().err


def test_play_refuses_a_fifo_rather_than_waiting_for_a_writer(tmp_path):
    import threading

    from clara_live.errors import InputError
    from clara_live.live.playback import performance

    os.mkfifo(tmp_path / "fifo.mid")
    raised: list[Exception] = []

    def play() -> None:
        try:
            performance(tmp_path / "fifo.mid")
        except InputError as exc:
            raised.append(exc)

    reader = threading.Thread(target=play, daemon=True)
    reader.start()
    reader.join(10)
    if reader.is_alive():  # let the blocked open return
        os.close(os.open(tmp_path / "fifo.mid", os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("performance() waited on a FIFO")
    assert [str(e) for e in raised] == [f"{tmp_path / 'fifo.mid'}: not a regular file (a FIFO)"]


def test_play_of_10000_tracks_is_read_in_bounded_time(tmp_path):
    import time

    from clara_live.live.playback import performance

    one = b"\x00\x90\x3c\x40\x60\x80\x3c\x00\x00\xff\x2f\x00"
    (tmp_path / "many.mid").write_bytes(_smf(*[one] * 10_000))
    began = time.perf_counter()
    played = performance(tmp_path / "many.mid")
    assert len(played) == 20_000 and played[-1][0] == 0.1
    assert time.perf_counter() - began < 10  # ~1 s here


def test_play_refuses_notes_past_the_span_encode_refuses(tmp_path, capsys):
    from clara_live.errors import InputError
    from clara_live.live.playback import performance

    late = b"\x00\x90\x3c\x40\x01\x80\x3c\x00\xff\xff\xff\x7f\x90\x3e\x40\x01\x80\x3e\x00\x00\xff\x2f\x00"
    (tmp_path / "late.mid").write_bytes(_smf(late, fmt=0, ticks_per_beat=1))
    with pytest.raises(InputError) as played:
        performance(tmp_path / "late.mid")
    assert main(["encode", str(tmp_path / "late.mid"), "-o", str(tmp_path / "x.txt")]) == 1
    assert one_line(capsys.readouterr().err) == f"clara: error: {played.value}"


@pytest.mark.parametrize("name, data", [("tpq0.mid", TPQ_0), ("fmt2-empty.mid", _smf(b"\x00\xff\x2f\x00", fmt=2))],
                         ids=["ticks-per-beat-0", "format-2"])
def test_live_play_of_a_bad_file_is_one_line_and_exit_1(tiny_model, tmp_path, name, data):
    """As a user runs it; no MIDI system is needed to play a file (as in test_live_failures)."""
    (tmp_path / name).write_bytes(data)
    env = {**os.environ, "JACK_DEFAULT_SERVER": "nobody-runs-this", "JACK_NO_START_SERVER": "1"}
    done = subprocess.run([sys.executable, "-m", "clara_live", "live", "--play", str(tmp_path / name), "--no-ui",
                           "--model", str(tiny_model), "--midi-api", "jack", "--set", "live.audio_driver=none",
                           "--save-dir", str(tmp_path / "sessions")],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr
    one_line(done.stderr, name)
