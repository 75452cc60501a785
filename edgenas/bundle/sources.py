"""What a bundle takes from a finished run directory, checked before anything is copied.

The run's own manifest hashes its artifacts, so packaging first re-checks them: a bundle must
never seal bytes that already differ from what the build measured. The run keeps no data, so the
held-out inputs for ``edgenas verify`` are regenerated from the run's own data spec, image size
and seed (the same test split the manifest's accuracy was measured on); their reference outputs
come from onnxruntime running the int8 ONNX with graph optimizations off, the execution the TVM
integer rewrite is bit-exact against (docs/tvm.md §1).
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import numpy as np

from .. import fsio
from ..build.manifest import Manifest
from ..build.rundir import MODEL_INT8_ONNX, RunDir
from ..errors import UsageError


class RunSources:
    def __init__(self, run: Path):
        self.rundir = RunDir.read(run, finished=True)
        self.run = self.rundir.path
        self.manifest: Manifest = self.rundir.manifest()
        self.manifest_sha256 = fsio.sha256_file(self.rundir.manifest_file)
        for name, digest in self.manifest.files.items():
            if not (run / name).exists():
                raise UsageError(f"{run / name}: listed in the run's manifest but missing")
            if fsio.sha256_file(run / name) != digest:
                raise UsageError(f"{run / name}: changed since the build (sha256 differs from the run's manifest)")

    @cached_property
    def config(self) -> dict:
        return self.rundir.config()

    @cached_property
    def seconds(self) -> dict:
        return dict(self.manifest.stage_seconds)

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return self.rundir.input_shape()

    def copy_recipe(self, dst_dir: Path) -> str:
        """Copy the recipe TOML the run was built with to ``dst_dir/recipe.toml``; returns its source.

        The recipe file may have changed since the build, so the copy is checked against the
        manifest's recipe name and refused if it no longer loads.
        """
        from ..quantize.recipe import RECIPES_DIR, get_recipe

        spec = self.config.get("recipe", self.manifest.recipe)
        path = Path(spec) if spec.endswith(".toml") or "/" in spec else RECIPES_DIR / f"{spec}.toml"
        if not path.is_file():
            raise UsageError(f"the recipe {spec!r} this run was built with is no longer at {path}")
        if get_recipe(str(path)).name != self.manifest.recipe:
            raise UsageError(f"{path}: now names recipe {get_recipe(str(path)).name!r}, the run used {self.manifest.recipe!r}")
        fsio.copy_file(path, dst_dir / "recipe.toml")
        return str(path)

    def verify_inputs(self, n: int) -> tuple[np.ndarray, str]:
        """The first ``n`` samples of the run's test split (or seeded noise if the data is gone)."""
        from ..data import load_data

        cfg = self.config
        try:
            data = load_data(cfg["data"], cfg["space"]["image_size"], cfg["seed"])
            return data.test[0][:n].astype(np.float32), f"{data.name} test split, first {n} samples (seed {cfg['seed']})"
        except UsageError as e:
            x = np.random.default_rng(0).standard_normal((n, *self.input_shape[1:])).astype(np.float32)
            return x, f"standard-normal noise, seed 0 (the run's data was not available: {e})"

    def write_verification(self, inputs_path: Path, outputs_path: Path, n: int) -> dict:
        from ..quantize.export import run_ort

        x, what = self.verify_inputs(n)
        ref = run_ort(self.run / MODEL_INT8_ONNX, x, optimize=False).astype(np.float32)
        for path, arr in ((inputs_path, x), (outputs_path, ref)):
            with fsio.atomic_path(path) as tmp:
                with open(tmp, "wb") as f:
                    np.save(f, arr)
        step = output_step(ref)
        return {"inputs": inputs_path.parent.name + "/" + inputs_path.name,
                "outputs": outputs_path.parent.name + "/" + outputs_path.name,
                "inputs_are": what, "n": int(len(x)),
                "reference": "onnxruntime int8 (model_int8.onnx, graph optimizations off)",
                "atol": tolerance(ref, step), "output_step": step,
                "top1": "must agree on every input whose reference top-2 margin exceeds 2*atol"}


def output_step(ref: np.ndarray) -> float | None:
    """The output quantization step when the outputs are dequantized int8 (their values lie on a
    grid), else ``None`` (float logits from an int8 GEMM, as brevitas exports the classifier)."""
    v = np.unique(np.round(ref.astype(np.float64).ravel(), 7))
    if len(v) < 3:
        return None
    d = np.diff(v)
    step = float(d.min())
    if step <= 0 or not np.allclose(d / step, np.round(d / step), atol=1e-2):
        return None
    return step


def tolerance(ref: np.ndarray, step: float | None) -> float:
    """How far a correct library's outputs may be from onnxruntime's.

    The integer rewrite rounds requantization its own way (fixed point, round-half-even), so an
    intermediate int8 activation may differ by one step from onnxruntime's: the INT8 issue's
    criterion. Propagated to float logits that moves them by a small fraction of their range
    (0.15 % measured on the digits demo); a broken library (wrong weights, layout or target)
    moves them by the order of the range. 2 % of the range separates the two; dequantized
    outputs also get one output step.
    """
    rng = float(np.ptp(ref)) or float(np.abs(ref).max()) or 1.0
    return max(0.02 * rng, 1.01 * step) if step else 0.02 * rng
