"""Measure stage: run compiled libraries locally or through a TVM RPC tracker, and verify numerics."""
