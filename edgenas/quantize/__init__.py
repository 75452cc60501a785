"""Quantize stage: recipes from ``quant/*.toml``, brevitas QAT, QCDQ ONNX export, parity checks."""
