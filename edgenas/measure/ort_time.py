"""onnxruntime timed with the measurement protocol, for ``edgenas compile MODEL --compare-ort``.

Why: a bring-your-own model is only worth compiling with TVM if the library beats what the user
already has, and that is usually onnxruntime on the same ONNX. Untuned TVM int8 was measured at
4.8-6.8x slower than onnxruntime on an onnxruntime-quantized model, and nothing said so. The
comparison is only fair when both sides are timed the same way on the same machine in the same
window: the same protocol (warm-up, samples of about ``sample_ms``, outliers remeasured, stop on
a narrow median interval; docs/measurement.md), the same thread count, the same input.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from .protocol import Measurement, Protocol, make_measurement, run_protocol


def time_session(run, proto: Protocol, min_samples: int | None = None):
    """The protocol on ``run()`` timed with ``perf_counter``: the warm-up, then ``number`` runs per
    sample chosen so that one sample lasts about ``sample_ms`` (as ``protocol.time_vm`` does)."""
    t_end = time.perf_counter() + proto.warmup_ms / 1e3
    runs, t0 = 0, time.perf_counter()
    while time.perf_counter() < t_end or runs < 5:
        run()
        runs += 1
    per_run_ms = (time.perf_counter() - t0) * 1e3 / runs
    number = max(1, round(proto.sample_ms / max(per_run_ms, 1e-6)))

    def sample(n: int) -> list[float]:
        out = []
        for _ in range(n):
            t = time.perf_counter()
            for _ in range(number):
                run()
            out.append((time.perf_counter() - t) * 1e3 / number)
        return out

    return replace(run_protocol(sample, proto, min_samples), number=number)


def measure_ort(onnx_path: str | os.PathLike, input_shape, *, threads: int, proto: Protocol | None = None,
                min_samples: int | None = None) -> Measurement:
    """onnxruntime (CPU provider, all graph optimisations, ``threads`` intra-op threads) on this
    host, on the same seeded input as the TVM measurement."""
    from ..quantize.export import ort_session
    from .context import LoadWatch
    from .local import cpu_name

    proto = proto or Protocol()
    sess = ort_session(Path(onnx_path), threads=max(1, threads))
    feed = {sess.get_inputs()[0].name: np.random.default_rng(0).standard_normal(input_shape).astype("float32")}
    watch = LoadWatch()
    out = time_session(lambda: sess.run(None, feed), proto, min_samples)
    return make_measurement(out, proto=proto, target="onnxruntime", key="", tracker="",
                            device_id=f"local:{socket.gethostname()}", device=cpu_name(), threads=max(1, threads),
                            pinning=f"onnxruntime intra_op_num_threads={max(1, threads)}", library=onnx_path,
                            input_shape=input_shape, context=watch.finish())
