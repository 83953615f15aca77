"""The live companion: MIDI ports, the session state machine, the model worker and the scheduler.

Live: rtmidi reader (polls, timestamps) -> event queue -> session (pure state machine) ->
worker (feeds tokens to the sampler, generates answers) -> scheduler (absolute times,
open-note bookkeeping, panic) -> MIDI output or FluidSynth.
"""
