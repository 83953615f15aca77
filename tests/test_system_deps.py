"""`make test`'s system packages: .ci/system-deps installs them where it can, else says in one line
how and how many tests will skip; pytest ends with one line naming what its skipped tests lacked.

Each case runs in a folder of stand-in commands on PATH (id, sudo, apt-get, make), so nothing here
installs anything or needs root.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # minutes of the suite: `make test` runs it, `make test-fast` does not

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / ".ci" / "system-deps"


def stand_ins(folder: Path, uid: int, sudo_ok: bool) -> Path:
    """A PATH folder: the shell tools the script uses, make, and stand-ins for id, sudo and apt-get
    (which logs its arguments); no fluidsynth, sox or jackd."""
    folder.mkdir()
    for tool in ("bash", "env", "sed", "dirname", "cat"):
        os.symlink(shutil.which(tool), folder / tool)
    sudo = '[ "$1" = -n ] && shift\n[ "$1" = true ] && exit 0\nexec "$@"' if sudo_ok else "exit 1"
    scripts = {"id": f"echo {uid}", "make": "exit 0", "sudo": sudo,
               "apt-get": f'echo "apt-get $*" >> {folder / "apt.log"}'}
    for name, body in scripts.items():
        (folder / name).write_text(f"#!/bin/sh\n{body}\n")
        (folder / name).chmod(0o755)
    return folder


def run_script(folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(folder / "bash"), str(SCRIPT), sys.executable], capture_output=True, text=True,
                          env={**os.environ, "PATH": str(folder)}, timeout=300)


@pytest.mark.parametrize("uid, sudo_ok", [(0, False), (1000, True)], ids=["root", "sudo-without-password"])
def test_installs_what_is_missing_where_it_may(tmp_path, uid, sudo_ok):
    folder = stand_ins(tmp_path / "bin", uid, sudo_ok)
    done = run_script(folder)
    assert done.returncode == 0, done.stderr
    assert "installing fluidsynth" in done.stdout and "jackd2" in done.stdout
    log = (folder / "apt.log").read_text().splitlines()
    assert log[0] == "apt-get update -qq"
    assert log[1].startswith("apt-get install -y -qq --no-install-recommends fluidsynth")
    assert "sox" in log[1] and "jackd2" in log[1] and "make" not in log[1]


def test_without_root_or_sudo_one_line_says_how_and_how_many_tests_skip(tmp_path):
    folder = stand_ins(tmp_path / "bin", 1000, sudo_ok=False)
    done = run_script(folder)
    assert done.returncode == 0, done.stderr
    assert not (folder / "apt.log").exists()
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, done.stdout
    match = re.fullmatch(r"(\d+) tests will skip without (.+): install them with sudo apt-get install "
                         r"--no-install-recommends (.+)", lines[0])
    assert match and match[2] == match[3] and {"fluidsynth", "sox", "jackd2"} <= set(match[2].split()), lines[0]
    assert int(match[1]) >= 10  # the live JACK tests and the FluidSynth ones


def test_nothing_to_do_when_all_is_there(tmp_path):
    if any(shutil.which(t) is None for t in ("make", "fluidsynth", "sox", "jackd")) \
            or not Path("/usr/share/sounds/sf2/FluidR3_GM.sf2").is_file():
        pytest.skip("this machine lacks one of the packages: the other cases cover it")
    done = subprocess.run([str(SCRIPT), sys.executable], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_pytest_ends_with_one_line_naming_what_the_skipped_tests_lack(tmp_path):
    folder = stand_ins(tmp_path / "bin", 1000, sudo_ok=False)  # no fluidsynth on this PATH
    tests = ["tests/test_render.py::test_wav_format_and_length", "tests/test_piano_roll.py::test_pitch_names"]
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests],
                          capture_output=True, text=True, cwd=REPO, env={**os.environ, "PATH": str(folder)},
                          timeout=300)
    assert done.returncode == 0, done.stdout
    lines = [line for line in done.stdout.splitlines() if "for want of" in line]
    assert len(lines) == 1, done.stdout
    match = re.fullmatch(r"1 test skipped for want of (fluidsynth[a-z0-9 -]*) \(not installed\); install with: "
                         r"sudo apt-get install --no-install-recommends (.+)", lines[0])
    assert match and match[1] == match[2], lines[0]
