"""Where the output goes (issue 27): every writer goes through atomic.py, so a device node or a FIFO
is written through and never replaced, a symlink's target is written beside it, `-` is stdout, and
anything else ends in one line and exit 1. Also what a closed stdout, Ctrl-C and SIGTERM leave
behind, and the bounds on `continue` and on a render."""

from __future__ import annotations

import contextlib
import io
import itertools
import os
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import mido
import pytest
from conftest import REPO, SHARED, pairing_errors, save_tiny_model

from clara_live.cli import MAX_BEAM, MAX_CANDIDATES, MAX_SECONDS, MAX_TOKENS, build_parser, main

MAESTRO = SHARED / "midi" / "maestro" / "maestro_1.mid"
TOKENS = "p27 wait12 endp27 p31 wait6 endp31\n"
PNG = b"\x89PNG\r\n\x1a\n"
FLUIDSYNTH = pytest.mark.system("fluidsynth", "fluid-soundfont-gm")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture
def scratch(tmp_path, monkeypatch) -> Path:
    """The system's temporary folder, moved into tmp_path so that what is left there is seen."""
    folder = tmp_path / "scratch"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def _argv(command: str, out: str, tmp_path: Path, tiny: Path) -> list[str]:
    if command == "encode":
        return ["encode", str(MAESTRO), "-o", out]
    if command == "decode":
        (tmp_path / "in.txt").write_text(TOKENS)
        return ["decode", str(tmp_path / "in.txt"), "-o", out]
    base = ["continue", "--model", str(tiny), "--tokens", "12", "--seed", "1"]
    if command == "continue":
        return [*base, "-o", out]
    return [*base, "-o", str(tmp_path / "made.mid"), f"--{command}", out]  # png, wav


def _right(command: str, data: bytes) -> bool:
    """Whether data is what the command writes: tokens, MIDI, a PNG or a WAV."""
    if command == "encode":
        words = data.decode().split()
        return bool(words) and all(w.startswith(("p", "endp", "wait")) for w in words)
    return data.startswith({"decode": b"MThd", "continue": b"MThd", "png": PNG, "wav": b"RIFF"}[command])


class _Reader(threading.Thread):
    """The reader at the other end of a FIFO: all it is sent."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.path, self.data = path, b""
        self.start()

    def run(self) -> None:
        with open(self.path, "rb") as handle:
            self.data = handle.read()

    def finish(self) -> bytes:
        if self.is_alive():  # the writer never opened it: a writer that closes at once lets the reader go
            with contextlib.suppress(OSError):
                os.close(os.open(self.path, os.O_WRONLY | os.O_NONBLOCK))
        self.join(10)
        return self.data


def _node(path: Path, major: int, minor: int, kind: int = stat.S_IFCHR) -> None:
    try:
        os.mknod(path, kind | 0o666, os.makedev(major, minor))
    except OSError as exc:
        pytest.skip(f"cannot make a device node here ({exc.strerror})")


def _read_only_folder(tmp_path: Path) -> Path:
    if os.geteuid() != 0:
        folder = tmp_path / "read-only"
        folder.mkdir(mode=0o555)
        return folder / "out"
    # root ignores mode bits; sysfs refuses it a new file all the same
    if not os.path.isdir("/sys") or os.access("/sys", os.W_OK) and not os.path.ismount("/sys"):
        pytest.skip("no folder here that root cannot write")
    return Path("/sys/clara-output-test")


# each kind of path: what to make, then the exit status expected and what must hold afterwards
KINDS = ["null device", "full device", "block device", "fifo", "link to a file", "dangling link", "link loop",
         "under a link loop", "folder", "under a file", "socket", "read-only folder", "stdout"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("command", ["encode", "decode", "continue", "png", pytest.param("wav", marks=FLUIDSYNTH)])
def test_every_output_path_ends_in_the_right_result_or_one_line(command, kind, tmp_path, tiny, scratch,
                                                                 capsysbinary):
    out, reader, expect_error = tmp_path / "out", None, None
    if kind == "null device":
        _node(out, 1, 3)
    elif kind == "full device":
        _node(out, 1, 7)
        expect_error = "No space left on device"
    elif kind == "block device":
        _node(out, 7, 0, stat.S_IFBLK)  # loop0's numbers: refused before it is opened
        expect_error = "it is a block device"
    elif kind == "fifo":
        os.mkfifo(out)
        reader = _Reader(out)
    elif kind == "link to a file":
        (tmp_path / "real").write_bytes(b"old")
        out.symlink_to("real")
    elif kind == "dangling link":
        out.symlink_to(tmp_path / "sub" / "new")
    elif kind == "link loop":
        out.symlink_to("loop")
        (tmp_path / "loop").symlink_to("out")
        expect_error = "a loop of symbolic links"
    elif kind == "under a link loop":
        (tmp_path / "a").symlink_to("b")
        (tmp_path / "b").symlink_to("a")
        out = tmp_path / "a" / "out"
        expect_error = "a loop of symbolic links"
    elif kind == "folder":
        out.mkdir()
        if command not in ("encode", "decode"):  # those two write a folder of <stem> files
            expect_error = "it is a folder"
    elif kind == "under a file":
        (tmp_path / "file").write_text("a file")
        out = tmp_path / "file" / "out"
        expect_error = f"{tmp_path / 'file'} is not a folder"
    elif kind == "socket":
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(out))
        server.close()
        expect_error = "it is a socket"
    elif kind == "read-only folder":
        out = _read_only_folder(tmp_path)
        expect_error = ""
    argument = "-" if kind == "stdout" else str(out)

    status = main(_argv(command, argument, tmp_path, tiny))
    captured = capsysbinary.readouterr()
    err = captured.err.decode()
    data = reader.finish() if reader is not None else b""

    assert "Traceback" not in err, err
    if expect_error is not None:
        lines = err.strip().splitlines()
        assert status == 1 and len(lines) == 1 and lines[0].startswith("clara: error: "), err
        assert argument in lines[0] and expect_error in lines[0], lines[0]
    else:
        assert status == 0, err
    if kind in ("null device", "full device"):
        assert stat.S_ISCHR(os.lstat(out).st_mode)  # never replaced by a file
    elif kind == "block device":
        assert stat.S_ISBLK(os.lstat(out).st_mode)
    elif kind == "fifo":
        assert stat.S_ISFIFO(os.lstat(out).st_mode) and _right(command, data), data[:40]
    elif kind == "link to a file":
        assert out.is_symlink() and _right(command, (tmp_path / "real").read_bytes())
    elif kind == "dangling link":
        assert out.is_symlink() and _right(command, (tmp_path / "sub" / "new").read_bytes())
    elif kind == "folder" and expect_error is None:
        (written,) = out.iterdir()
        assert _right(command, written.read_bytes())
    elif kind == "stdout":
        assert _right(command, captured.out), captured.out[:40]
        assert "->" in err  # the report line, kept off the output
    assert not [p for p in tmp_path.rglob("*.tmp")], list(tmp_path.rglob("*.tmp"))  # no temporary left
    assert not os.path.lexists("/sys/clara-output-test")


@pytest.mark.parametrize("argv, names", [
    (["encode", str(MAESTRO), str(MAESTRO), "-o", "-"], ["-o -", "one input"]),
    (["continue", "-o", "-", "--png", "-"], ["only one of them can be -"]),
    (["live", "--stats", "-"], ["--stats -"]),
])
def test_stdout_takes_one_output(argv, names, capsys):
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and all(n in err for n in names), err


def test_an_unwritable_live_stats_is_said_before_the_session(tmp_path, capsys):
    assert main(["live", "--stats", str(tmp_path), "--model", str(tmp_path / "no-model"), "--no-ui"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == f"clara: error: {tmp_path}: cannot write (it is a folder)", err


# --- a reader of stdout that leaves ----------------------------------------------------------------

class _ClosedPipe(io.TextIOBase):
    """A stdout whose reader has gone (`| head -1` after its line)."""

    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    def fileno(self) -> int:
        raise io.UnsupportedOperation("no file descriptor")


def test_a_closed_stdout_stops_no_file_of_a_batch(tmp_path, monkeypatch):
    inputs = []
    for name in "abc":
        (tmp_path / f"{name}.txt").write_text(TOKENS)
        inputs.append(str(tmp_path / f"{name}.txt"))
    monkeypatch.setattr(sys, "stdout", _ClosedPipe())
    assert main(["decode", *inputs, "-o", str(tmp_path / "out")]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.mid", "b.mid", "c.mid"]


def test_a_batch_piped_to_head_writes_every_file(tmp_path):
    """`clara encode A B C -o DIR | head -1`, unbuffered as the report found it: all three written, exit 0."""
    process = subprocess.Popen([sys.executable, "-m", "clara_live", "encode", str(MAESTRO), str(MAESTRO),
                                str(MAESTRO), "-o", str(tmp_path / "out")], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, cwd=REPO, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    process.stdout.close()
    err = process.stderr.read().decode()
    assert process.wait(timeout=120) == 0, err
    assert err == ""
    assert len(list((tmp_path / "out").glob("*.txt"))) == 3


# --- bounds on continue ----------------------------------------------------------------------------

@pytest.mark.parametrize("flag, most", [("--beam", MAX_BEAM), ("--candidates", MAX_CANDIDATES),
                                        ("--tokens", MAX_TOKENS), ("--seconds", MAX_SECONDS)])
def test_continue_refuses_more_than_its_documented_maximum(flag, most, capsys):
    parser = build_parser()
    args = parser.parse_args(["continue", "-o", "x.mid", flag, str(int(most))])
    assert getattr(args, flag[2:]) == most
    for too_many in (int(most) + 1, 10**6, 10**12):
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args(["continue", "-o", "x.mid", flag, str(too_many)])
        assert exit_info.value.code == 2
        assert f"argument {flag}: {too_many}: must be" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parser.parse_args(["continue", "--help"])
    assert f"at most {most:,.0f}" in capsys.readouterr().out.replace("\n", " ").replace("  ", " ")


def test_continue_candidates_are_not_the_live_sessions(tmp_path, tiny):
    """continue's --candidates and --critic are its own: not checked as live.candidates and live.critic
    (a critic folder named 1 is no int for live.critic to refuse)."""
    assert main(["continue", "--model", str(tiny), "-o", str(tmp_path / "o.mid"), "--tokens", "4",
                 "--candidates", str(MAX_CANDIDATES), "--critic", "1"]) == 0


# --- Ctrl-C and SIGTERM --------------------------------------------------------------------------------

def test_ctrl_c_while_sampling_writes_what_was_made(tmp_path, tiny, monkeypatch, capsys):
    from clara_live.sampling.sampler import Sampler

    advance, calls = Sampler.advance, itertools.count()

    def interrupted(self, ids, active=None, score=True):
        if next(calls) == 300:  # 300 tokens in, the user presses Ctrl-C
            raise KeyboardInterrupt
        advance(self, ids, active, score)

    monkeypatch.setattr(Sampler, "advance", interrupted)
    out = tmp_path / "o.mid"
    assert main(["continue", "--model", str(tiny), "-o", str(out), "--tokens", str(MAX_TOKENS), "--seed", "2"]) == 0
    captured = capsys.readouterr()
    assert "clara: interrupted: writing the 300 tokens made so far" in captured.err
    assert "300 tokens" in captured.out
    assert pairing_errors(out) == []  # the notes left sounding are closed at the end
    assert any(m.type == "note_on" for t in mido.MidiFile(str(out)).tracks for m in t)


def test_ctrl_c_during_a_search_writes_nothing_and_leaves_nothing(tmp_path, tiny, monkeypatch, capsys):
    from clara_live.sampling.sampler import Sampler

    def interrupted(self, ids, active=None, score=True):
        raise KeyboardInterrupt

    monkeypatch.setattr(Sampler, "advance", interrupted)
    assert main(["continue", "--model", str(tiny), "-o", str(tmp_path / "o.mid"), "--beam", "3"]) == 130
    assert capsys.readouterr().err.strip() == "clara: interrupted"
    assert list(tmp_path.iterdir()) == []


def _ready(process: subprocess.Popen, done, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "never got there"
        time.sleep(0.02)


def test_sigterm_during_a_write_leaves_no_temporary_file(tmp_path):
    script = ("import sys, time\n"
              "from clara_live.atomic import Terminated, atomic_open\n"
              "try:\n"
              "    with atomic_open(sys.argv[1]) as handle:\n"
              "        handle.write('half a file')\n"
              "        time.sleep(120)\n"
              "except Terminated:\n"
              "    sys.exit(143)\n")
    out = tmp_path / "out.txt"
    process = subprocess.Popen([sys.executable, "-c", script, str(out)], cwd=REPO, stderr=subprocess.PIPE)
    _ready(process, lambda: list(tmp_path.glob(".out.txt.*.tmp")))
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 143, process.stderr.read()
    assert list(tmp_path.iterdir()) == []


@FLUIDSYNTH
def test_sigterm_during_a_render_leaves_no_temporary_folder(tmp_path, tiny):
    """`clara continue --wav` of a 20-minute piece, SIGTERM as the render starts: the render's folder
    (hundreds of MB when it is left) goes, fluidsynth with it; the MIDI, written before, stays."""
    prompt = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=500000)])
    for i in range(600):  # a note every 2 s for 20 minutes
        track += [mido.Message("note_on", note=60 + i % 12, velocity=80, time=0 if i == 0 else 1920 - 240),
                  mido.Message("note_off", note=60 + i % 12, velocity=0, time=240)]
    prompt.tracks.append(track)
    prompt.save(str(tmp_path / "long.mid"))
    process = subprocess.Popen([sys.executable, "-m", "clara_live", "continue", str(tmp_path / "long.mid"),
                                "--model", str(tiny), "--tokens", "4", "-o", str(tmp_path / "o.mid"),
                                "--wav", str(tmp_path / "o.wav")], cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    _ready(process, lambda: list(tmp_path.glob(".o.wav.*.tmp/render.wav")))
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 143, process.stderr.read()
    assert process.stderr.read().decode().strip().splitlines()[-1] == "clara: terminated"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["long.mid", "o.mid"]


# --- the render's bound --------------------------------------------------------------------------------

def _piece(path: Path, seconds: float) -> Path:
    midi = mido.MidiFile(ticks_per_beat=480)  # 120 bpm: a second is 960 ticks
    midi.tracks.append(mido.MidiTrack([mido.Message("note_on", note=60, velocity=80, time=0),
                                       mido.Message("note_off", note=60, velocity=0, time=round(seconds * 960))]))
    midi.save(str(path))
    return path


def test_a_render_over_the_bound_is_refused_before_anything_runs(tmp_path, monkeypatch):
    from clara_live import render
    from clara_live.errors import ClaraError

    monkeypatch.setattr(render, "MAX_RENDER_S", 10.0)
    monkeypatch.setenv("PATH", str(tmp_path))  # no fluidsynth: the length is what is said, first
    with pytest.raises(ClaraError) as exc:
        render.render_wav(_piece(tmp_path / "long.mid", 60), tmp_path / "long.wav")
    message = str(exc.value)
    assert "\n" not in message and str(tmp_path / "long.mid") in message and "minutes" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["long.mid"]


def test_a_session_too_long_to_render_says_so_in_one_line(tmp_path, monkeypatch):
    from clara_live import render
    from clara_live.config import load_config
    from clara_live.live.plumbing import render_session

    monkeypatch.setattr(render, "MAX_RENDER_S", 10.0)
    out = io.StringIO()
    render_session(_piece(tmp_path / "session.mid", 60), load_config(None, []), out)
    assert out.getvalue().startswith("no WAV: ") and out.getvalue().count("\n") == 1, out.getvalue()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["session.mid"]
