"""Which port a player means: a port named on the command line (exactly, by index, or by a
unique part of its name) found among the names the MIDI system lists; and what a session's own
virtual ports are called when another session's are there already. Pure: no rtmidi here."""

from __future__ import annotations

import re
from collections.abc import Iterable

from clara_live.errors import InputError

STEM = "Clara"  # a session's virtual ports are "Clara In" and "Clara Out"


def _numbered(names: list[str]) -> str:
    return ", ".join(f"{i}: {n}" for i, n in enumerate(names)) or "there are none"


def find_port(names: list[str], spec: str, kind: str) -> int:
    """The index in names of the port spec names: the exact name, else a case-insensitive exact name,
    else a decimal index, else a unique case-insensitive substring. kind ("input"/"output") is for messages."""
    if spec in names:
        return names.index(spec)
    lowered = [n.lower() for n in names]
    if spec.lower() in lowered:
        return lowered.index(spec.lower())
    if spec.isascii() and spec.isdigit():
        if int(spec) < len(names):
            return int(spec)
        raise InputError(f"MIDI {kind} port index {spec} is out of range; available: {_numbered(names)}")
    hits = [i for i, n in enumerate(lowered) if spec.lower() in n]
    if len(hits) == 1:
        return hits[0]
    if hits:
        matches = ", ".join(repr(names[i]) for i in hits)
        raise InputError(f"MIDI {kind} port {spec!r} is ambiguous: it matches {matches}; give more of the name")
    raise InputError(f"no MIDI {kind} port matches {spec!r}; available: {_numbered(names)}")


def called(names: Iterable[str], port: str) -> list[str]:
    """The full names among names of every port called `port`, whatever its client: "client:port" on
    JACK, "client:port 128:0" on ALSA (as rtmidi lists them)."""
    pattern = re.compile(rf"(?:^|:){re.escape(port)}(?: \d+:\d+)?$")
    return [n for n in names if pattern.search(n)]


def virtual_stem(names: Iterable[str], stem: str = STEM) -> str:
    """What to call this session's virtual ports ("{stem} In" and "{stem} Out"): stem itself when no port
    of that name is there, else "{stem} 2", "{stem} 3", ..., the lowest number no port uses, so a second
    session is told apart by its port names, not only by the suffix JACK gives its client ("clara-01").

    names: the full names of every port the MIDI system lists, inputs and outputs (see `called`);
    another program's "Clara In" counts too."""
    names, number, candidate = list(names), 1, stem
    while called(names, f"{candidate} In") or called(names, f"{candidate} Out"):
        number += 1
        candidate = f"{stem} {number}"
    return candidate
