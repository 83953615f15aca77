"""`clara live` and `clara ports` from the command line: help, and one-line errors for what
cannot work (a chordwise model, no MIDI system)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import REPO

from clara_live.cli import main

pytestmark = pytest.mark.slow  # real components (JACK, FluidSynth, the shipped model, corpora): not in test-fast


def test_help_lists_the_live_options(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["live", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--virtual", "--synth", "--mode", "--midi-api", "--bpm", "--no-ui", "--passthrough", "--save-dir"):
        assert flag in text


def test_a_chordwise_model_is_refused_in_one_line(capsys):
    code = main(["live", "--model", str(REPO / "trained_models" / "clara-chordwise"), "--no-ui"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1
    assert "clara-chordwise" in err[0] and "notewise" in err[0]


def test_a_bad_beat_tracker_is_refused_in_one_line_before_any_port(capsys, monkeypatch, tmp_path):
    """The learned beat tracker is loaded at start (not at the first phrase's end, mid-session);
    with tempo_method classic it is never needed."""
    from clara_live.beat import net as beat_net
    from clara_live.live import ports

    bad = tmp_path / "weights.npz"
    bad.write_bytes(b"not an npz")
    real = beat_net.load
    monkeypatch.setattr(beat_net, "load", lambda: real(bad))
    opened = []
    monkeypatch.setattr(ports, "resolve_api", lambda api: opened.append(api) or pytest.fail("a port was opened"))
    code = main(["live", "--no-ui", "--no-save"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and str(bad) in err[0] and not opened
    with pytest.raises(BaseException, match="a port was opened"):
        main(["live", "--no-ui", "--no-save", "--set", "live.tempo_method=classic"])


@pytest.mark.parametrize("command", [["ports"], ["live", "--virtual", "--no-ui", "--no-save"]])
def test_no_midi_system_is_one_clear_line(command):
    """JACK asked for, and no server of that name: the message says how to get one."""
    env = {**os.environ, "JACK_DEFAULT_SERVER": f"nobody-runs-this-{os.getpid()}", "JACK_NO_START_SERVER": "1"}
    done = subprocess.run([sys.executable, "-m", "clara_live", *command, "--midi-api", "jack"], capture_output=True,
                          text=True, env=env, cwd=REPO, timeout=120)
    assert done.returncode == 1
    lines = [line for line in done.stderr.splitlines() if line.startswith("clara: error:")]
    assert len(lines) == 1, done.stderr
    assert "jack" in lines[0].lower() and "jackd" in lines[0]
    assert "Traceback" not in done.stderr
