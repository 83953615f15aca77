"""Which port a player means: a port named on the command line (exactly, by index, or by a
unique part of its name) found among the names the MIDI system lists. Pure: no rtmidi here."""

from __future__ import annotations

from clara_live.errors import InputError


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
