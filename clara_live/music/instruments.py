"""General MIDI programs sorted into Clara's two instrument families.

The rule: struck and plucked instruments sound like a piano part (`p`): pianos, chromatic
percussion (celesta, vibraphone, marimba...), organs and accordions (chordal keyboard
parts), guitars, plucked basses, pizzicato strings, harp, sitar, banjo, koto, kalimba.
Bowed, blown and sung instruments carry single lines like a violin (`v`): strings,
ensembles and choirs, brass, reeds, pipes, synth leads and pads, fiddle, bagpipe, shanai.
Unpitched sounds are dropped like drums: the percussive programs 112-119 (woodblock, taiko,
steel drums...), synth effects 96-103 and sound effects 120-127, and channel 10.
"""

from __future__ import annotations

from clara_live.music.notes import PIANO, VIOLIN

DRUM_CHANNEL = 9  # channel 10 counted from 1

_VIOLIN_PROGRAMS = frozenset(
    [*range(40, 45)]  # violin, viola, cello, contrabass, tremolo strings (45-47: pizz, harp, timpani)
    + list(range(48, 56))  # string ensembles, synth strings, choir, voice
    + list(range(56, 88))  # brass, reeds, pipes, synth leads
    + list(range(88, 96))  # synth pads: sustained
    + [109, 110, 111]  # bagpipe, fiddle, shanai
)
_DROPPED_PROGRAMS = frozenset([*range(96, 104), *range(112, 128)])


def family_of(program: int, is_drum: bool = False) -> str | None:
    """The family of a General MIDI program (0-127), or None for sounds we drop."""
    if is_drum or program in _DROPPED_PROGRAMS:
        return None
    return VIOLIN if program in _VIOLIN_PROGRAMS else PIANO


# what a decoded family is played with
PROGRAM_OF_FAMILY = {PIANO: 0, VIOLIN: 40}  # acoustic grand piano, violin
