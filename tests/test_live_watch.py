"""The watchdog: checks run every period, or at once when something that heard a loss wakes it."""

from __future__ import annotations

import time

from clara_live.live.watch import Watchdog


def _until(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.001)
    return predicate()


def test_a_woken_watchdog_checks_at_once_not_at_the_end_of_its_period():
    reason: list[str] = []
    dog = Watchdog([lambda: reason[0] if reason else None], period=30.0)
    try:
        time.sleep(0.05)
        reason.append("the JACK server stopped")
        dog.wake()
        assert _until(lambda: dog.lost is not None, 2.0), "not heard until the period's end"
        assert dog.lost == "the JACK server stopped"
    finally:
        dog.close()


def test_a_watchdog_checks_every_period_and_stops_at_the_first_reason():
    calls: list[float] = []

    def check():
        calls.append(time.monotonic())
        return "gone" if len(calls) >= 3 else None

    later: list[str] = []
    dog = Watchdog([check, lambda: later.append("run") or ("later" if len(later) >= 3 else None)], period=0.01)
    try:
        assert _until(lambda: dog.lost is not None, 5.0)
        time.sleep(0.05)
        assert dog.lost == "gone" and len(calls) == 3 and len(later) == 2  # the first reason; nothing after it
    finally:
        dog.close()


def test_a_closed_watchdog_stops_checking_at_once():
    calls: list[float] = []
    dog = Watchdog([lambda: calls.append(time.monotonic())], period=30.0)
    start = time.monotonic()
    dog.close()
    assert time.monotonic() - start < 1.0 and not dog._thread.is_alive() and calls == []
