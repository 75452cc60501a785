"""ONNX export (float and QCDQ int8) and the parity checks against onnxruntime.

brevitas 0.13's QCDQ export uses the TorchScript exporter (``dynamo=False``): the dynamo one
refuses quantized bias with torch 2.13 (docs/tvm.md §1). Every export is written atomically and
checked by running it in onnxruntime against the PyTorch module on held-out inputs.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import fsio
from ..records import record

OPSET = 17


@record("parity")
@dataclass(frozen=True)
class Parity:
    """How far two executions of the same model disagree on the same inputs."""

    reference: str
    candidate: str
    max_abs_err: float
    top1_agreement: float
    n: int


def export_float(model: nn.Module, example: torch.Tensor, path: Path) -> Path:
    model.eval()
    with fsio.atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), str(tmp), opset_version=OPSET, dynamo=False,
                          input_names=["input"], output_names=["logits"])
    return path


def export_int8(qmodel: nn.Module, example: torch.Tensor, path: Path) -> Path:
    from brevitas.export import export_onnx_qcdq

    qmodel.eval()
    with torch.no_grad():  # refresh the cached eval-mode input scales the int32 bias quantizers read
        qmodel(example)
    with fsio.atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_onnx_qcdq(qmodel, args=example, export_path=str(tmp), dynamo=False, opset_version=OPSET,
                         input_names=["input"], output_names=["logits"])
        _strip_initializer_inputs(tmp)
    return path


def _strip_initializer_inputs(path: Path) -> None:
    """Drop initializers listed as graph inputs: onnxruntime treats those as overridable and then
    refuses to fuse the QDQ groups into its int8 kernels (the comparison would be float)."""
    import onnx

    model = onnx.load(str(path))
    inits = {t.name for t in model.graph.initializer}
    keep = [i for i in model.graph.input if i.name not in inits]
    if len(keep) != len(model.graph.input):
        del model.graph.input[:]
        model.graph.input.extend(keep)
        onnx.save(model, str(path))


def ort_session(path: Path, threads: int = 1, optimize: bool = True):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def run_ort(path: Path, x: np.ndarray, optimize: bool = True) -> np.ndarray:
    """Run batch-1 sessions over ``x`` (the exported graphs have a static batch of 1)."""
    sess = ort_session(path, optimize=optimize)
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: x[i : i + 1]})[0] for i in range(len(x))])


@torch.no_grad()
def run_torch(model: nn.Module, x: np.ndarray) -> np.ndarray:
    model.eval()
    return model(torch.from_numpy(x)).detach().numpy()


def compare(ref_name: str, ref: np.ndarray, cand_name: str, cand: np.ndarray) -> Parity:
    return Parity(
        reference=ref_name,
        candidate=cand_name,
        max_abs_err=float(np.abs(ref - cand).max()),
        top1_agreement=float((ref.argmax(1) == cand.argmax(1)).mean()),
        n=len(ref),
    )
