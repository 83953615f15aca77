"""Clara Live: a real-time musical companion built on Clara's AWD-LSTM over notewise/chordwise tokens."""

__version__ = "0.1.0"
