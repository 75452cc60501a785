"""Search stage: strategies that pick an architecture from a space (DARTS by default)."""
