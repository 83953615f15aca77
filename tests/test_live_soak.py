"""A short soak through `run_live`: performances cut into phrases, clock runs, garbage; the full hour is
benchmarks/live_soak.py (figures in BENCHMARKS.md)."""

from __future__ import annotations

import sys

import pytest
from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import live_soak  # noqa: E402


@pytest.mark.slow
def test_a_short_soak_ends_by_itself_with_no_stuck_note_and_the_whole_session_saved():
    result = live_soak.soak(minutes=0.5, speed=2.0, seed=3, warm=0.0)
    assert result["status"] == 0 and result["error"] is None, result
    assert result["garbage"] > 0 and result["phrases"] >= 3
    assert result["left_sounding"] == 0 and result["malformed_sent"] == 0
    assert result["saved_player_notes"] == result["player_notes"] > 50
    assert result["saved_clara_notes"] > 0  # Clara answered in the pauses


def test_garbage_never_looks_like_a_note():
    import random

    rng = random.Random(0)
    for _ in range(2000):
        message = live_soak._garbage(rng)
        assert not (len(message) == 3 and message[0] & 0xF0 == 0x90 and message[1] < 128 and message[2] < 128)
