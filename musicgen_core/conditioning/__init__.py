"""Conditioning: text encoders and the melody chromagram."""
