"""The beat heard from playing: pure functions of note onsets, velocities and pitches (times in
seconds on any clock), with no port, clock or model of the session's.

- `tracker`: the learned beat tracker (estimate_tempo, hear): the network of `net`, decoded by `dbn`;
- `classic`: the hand-made estimator (onset autocorrelation, a comb, priors);
- `choice`: both estimators' candidates ranked by a small learned ranker (what `clara live` uses);
- `follow`: the beat followed onset by onset between two phrases' estimates;
- `limits`: the tempo range.

`clara_live.live` (the session's TempoKeeper) and `training/` (beat_tracker, tempo_choice) both
use it; it imports nothing of either.
"""
