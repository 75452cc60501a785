"""Latency models per target: the op table profiled on the target and the whole-model predictor."""
