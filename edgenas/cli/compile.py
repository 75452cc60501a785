"""``edgenas compile`` (a bring-your-own ONNX model to a TVM library, and its latency on a farm)
and ``edgenas tune-space`` (tune every op of the search space into the target's tuning logs)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .app import app, handled


@app.command("compile")
@handled
def compile_cmd(
    model: Path = typer.Argument(..., help="ONNX model: float, or QDQ/QCDQ int8 (brevitas, onnxruntime quantize_static)."),
    target: str = typer.Option("x86-avx2", "--target", "-t", help="Target name or TOML path."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output library path (default: MODEL_<target>.so beside the model)."),
    trials: int = typer.Option(0, "--trials", help="MetaSchedule trials (tuning records go to tuning_logs/<target>/)."),
    float_only: bool = typer.Option(False, "--float", help="Do not fold Q/DQ into integer ops (float simulation)."),
    tracker: Optional[str] = typer.Option(None, "--tracker", help="TVM RPC tracker HOST:PORT of a device farm: tune there "
                                          "(MetaSchedule RPC runner) and measure the library there."),
    key: Optional[str] = typer.Option(None, "--key", help="Device key on the tracker (default: the target's rpc_key)."),
    measure: bool = typer.Option(False, "--measure", help="Time the library with the measurement protocol: here, or on "
                                 "the farm with --tracker (which always measures)."),
    compare_ort: bool = typer.Option(False, "--compare-ort", help="Also time onnxruntime on the same ONNX here, in the "
                                     "same run, at the library's thread count, and print the ratio (implies --measure)."),
    check_tuned: bool = typer.Option(True, "--check-tuned/--no-check-tuned", help="When tuning records apply and the "
                                     "target runs here: also build the default schedules, time both interleaved at the "
                                     "target's thread count, and keep the tuned library only if it is not slower "
                                     "(docs/tuning.md)."),
):
    """Compile a bring-your-own ONNX model for TARGET with TVM (INT8 kernels for QDQ models).

    Examples:\n
      edgenas compile model_int8.onnx --target x86-avx2 --measure --compare-ort\n
      edgenas compile model_int8.onnx --target x86-avx2 --trials 64\n
      edgenas compile model_int8.onnx --target rpi4 --trials 64 --tracker 10.0.0.2:9190 --key rpi4
    """
    from ..compile import compile_onnx
    from ..target import get_target
    from .options import farm_from_options
    from .view import kv_table, out as console, reporter

    spec = get_target(target)
    farm = farm_from_options(tracker, key, spec)
    lib = out or model.with_name(f"{model.stem}_{spec.name}.so")
    progress = reporter()
    keep_tuned = None
    if check_tuned and farm is None and spec.measurable_locally:
        from ..compile.frontend import input_shape
        from ..measure.tuned_check import checker

        keep_tuned = checker(input_shape(model), spec)
    with progress.stage(f"compile {model.name} for {spec.name}") as advance:
        res = compile_onnx(model, spec, lib, int8=not float_only, trials=trials, farm=farm,
                           progress=lambda m: advance(0, m), keep_tuned=keep_tuned)
    latency = ort = None
    if measure or compare_ort or farm is not None:
        from ..compile.frontend import input_shape
        from ..measure.runners import runner_for

        runner, shape = runner_for(spec, farm), input_shape(model)
        where = f"on {farm.tracker} key {farm.key!r}" if farm is not None else "here"
        with progress.stage(f"measure {lib.name} {where}"):
            latency = runner.measure(res.library, shape)
        if compare_ort:
            from ..measure.ort_time import measure_ort

            with progress.stage(f"measure onnxruntime on {model.name} here ({latency.threads} threads)"):
                ort = measure_ort(model, shape, threads=latency.threads)
    rows = [("library", str(res.library)), ("target", res.target),
            ("int8 ops", ", ".join(f"{k}×{v}" for k, v in res.int8_ops.items()) or "none"),
            ("int8 kernels", ", ".join(f"{k}×{v}" for k, v in res.kernels.items()) or "none"),
            ("tuning", f"{res.trials} new trials ({res.failed_runs} failed to run), {res.db_records} records, "
                       f"applied={res.tuned}"),
            *([("tuned vs default", res.tuned_check)] if res.tuned_check else []),
            ("seconds", f"{res.seconds:.1f}")]
    rows += [("fell back to float", f) for f in res.fallbacks]
    if latency is not None:
        rows.append(("latency on the farm" if farm is not None else "latency", _latency_text(latency)))
    if ort is not None:
        ratio = latency.stats.median_ms / ort.stats.median_ms
        rows.append(("latency onnxruntime", _latency_text(ort)))
        rows.append(("TVM / onnxruntime", f"{ratio:.2f}x ({'TVM faster' if ratio < 1 else 'onnxruntime faster'}"
                                          f"{'; TVM on the farm, onnxruntime here' if farm is not None else ''})"))
    console.print(kv_table("edgenas compile", rows))


def _latency_text(m) -> str:
    s = m.stats
    where = f"{m.device_id}, key {m.key}" if m.key else m.device_id
    flags = (", emulated" if s.emulated else "") + (", machine busy" if s.context and s.context.busy else "")
    return (f"median {s.median_ms:.4f} ms, 95% CI {m.ci_ms[0]:.4f}-{m.ci_ms[1]:.4f} (n = {s.n}, {s.threads} threads, "
            f"{where}{flags})")


@app.command("tune-space")
@handled
def tune_space_cmd(
    target: str = typer.Option("x86-avx2", "--target", "-t", help="Target name or TOML path (must be measurable here)."),
    trials: int = typer.Option(16, "--trials", help="MetaSchedule trials per op configuration (tasks with records are skipped)."),
    image_size: int = typer.Option(16, "--image-size", help="Input resolution of the space (as for build)."),
    recipe: str = typer.Option("int8-per-channel", "--recipe", help="Quantization recipe name or path."),
):
    """Tune every op configuration of the search space into tuning_logs/<target>/ (resumable).

    Per-model tuning cannot sit inside a search loop; tuning the space once means every architecture the search picks compiles from database hits, and the op table is re-profiled from the same tuned kernels.
    """
    import dataclasses

    from ..latency.profile import tune_space
    from ..quantize.recipe import get_recipe
    from ..space.arch import SpaceConfig
    from ..target import get_target
    from ..tuning_store import TuningStore
    from .view import reporter

    spec = get_target(target)
    space = dataclasses.replace(SpaceConfig(), image_size=image_size)
    n = len(space.positions())
    with reporter().stage(f"tune {spec.name}: ops of the space", total=None) as adv:
        new = tune_space(space, get_recipe(recipe), spec, trials, progress=lambda i, total, key: adv(1 if i else 0, f"{i + 1}/{total} {key}"))
    store = TuningStore(spec)
    if new:
        store.forget_op_table()  # measured on the old kernels: the next build re-profiles
    typer.echo(f"{new} new trials for {n} searchable layers; database in {store.database_dir}")
