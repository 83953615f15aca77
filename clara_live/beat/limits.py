"""The tempi Clara hears and plays at: a phrase's estimate, a tap and the followed beat stay inside these."""

MIN_BPM, MAX_BPM = 20.0, 300.0
