"""Training: synthetic corpus, codec and LM trainers, losses."""
