"""Music as notes: reading MIDI and scores, the instrument families, writing MIDI."""
