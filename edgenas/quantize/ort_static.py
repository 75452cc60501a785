"""onnxruntime's own static INT8 quantization of a float ONNX model, as a reference.

What ``edgenas compile`` is compared against and tested with: a QDQ (or QOperator) model made by
``onnxruntime.quantization.quantize_static`` after its shape-inference pre-processing, with
per-channel int8 weights and uint8 activations (docs/tvm.md §1), calibrated on seeded
standard-normal inputs so that every caller gets the same model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def quantize_static_onnx(fp32: str | Path, out: str | Path, shape: tuple[int, ...], fmt: str = "QDQ",
                         samples: int = 8, input_name: str = "input", reduce_range: bool = False) -> Path:
    """Quantize ``fp32`` into ``out`` (``fmt``: ``QDQ`` or ``QOperator``); returns ``out``.
    ``reduce_range``: 7-bit weights ([-64, 64]; onnxruntime's option for CPUs without VNNI,
    and the width edgenas trains for x86-avx2: docs/int8_kernels.md)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out = Path(out)
    pre = out.with_name(out.stem + ".pre.onnx")
    quant_pre_process(str(fp32), str(pre))

    class Reader(CalibrationDataReader):
        def __init__(self):
            rs = np.random.RandomState(0)
            self.it = iter([{input_name: rs.randn(*shape).astype("float32")} for _ in range(samples)])

        def get_next(self):
            return next(self.it, None)

    quantize_static(str(pre), str(out), Reader(), quant_format=getattr(QuantFormat, fmt), per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, reduce_range=reduce_range)
    return out
