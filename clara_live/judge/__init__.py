"""The judges: a composer classifier and a critic (human or generated) over the token stream."""
