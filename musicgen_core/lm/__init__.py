"""The transformer language model over codebook streams."""
