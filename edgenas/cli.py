"""The ``edgenas`` command line: parses, calls the Python API, displays. No work happens here.

Heavy modules (torch, tvm, rich tables) are imported inside the commands so ``edgenas --help``
is instant. Every ``EdgenasError`` ends as one line on stderr (exit 2 for usage errors, 1 for
failures); ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(
    help="Co-optimise a neural architecture and its INT8 quantization for a named edge device, "
    "compile it with Apache TVM and measure it on the device.\n\n"
    "Start with:  edgenas build --target x86-avx2   (digits data, this CPU)",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
targets_app = typer.Typer(help="List and inspect device targets (targets/*.toml).", no_args_is_help=True)
app.add_typer(targets_app, name="targets")


def _state(ctx: typer.Context) -> dict:
    return ctx.find_root().obj or {}


@app.callback()
def _root(ctx: typer.Context, debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors.")):
    import warnings

    ctx.obj = {"debug": debug}
    if not debug:  # library chatter (brevitas' optional kernels, torch.onnx deprecations) is not for users
        for module in ("brevitas", "torch", "onnxscript"):
            warnings.filterwarnings("ignore", module=module)


def handled(fn):
    """Turn errors into one readable line and an exit code (tracebacks only with --debug)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from .errors import EdgenasError

        debug = "--debug" in sys.argv
        try:
            return fn(*args, **kwargs)
        except EdgenasError as e:
            if debug:
                raise
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(e.exit_code)
        except KeyboardInterrupt:
            typer.echo("interrupted: finished stages are kept; rerun with --resume to continue", err=True)
            raise typer.Exit(130)
        except typer.Exit:
            raise
        except Exception as e:  # noqa: BLE001 - last resort: still one line
            if debug:
                raise
            msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
            typer.echo(f"error: {type(e).__name__}: {msg} (rerun with --debug for the traceback)", err=True)
            raise typer.Exit(1)

    return wrapper


def _parse_ms(text: Optional[str]) -> Optional[float]:
    from .errors import UsageError

    if text is None:
        return None
    t = text.strip().lower()
    scale = 1.0
    for suffix, s in (("ms", 1.0), ("us", 1e-3), ("s", 1e3)):
        if t.endswith(suffix):
            t, scale = t[: -len(suffix)], s
            break
    try:
        return float(t) * scale
    except ValueError:
        raise UsageError(f"--latency-budget {text!r}: expected a duration such as 4ms, 800us or 0.5") from None


@app.command()
@handled
def build(
    target: str = typer.Option("x86-avx2", "--target", "-t", help="Target name (see `edgenas targets list`) or a path to a target TOML."),
    data: str = typer.Option("digits", "--data", help="digits (embedded) | cifar10:PATH (python batches) | folder:PATH (one sub-folder per class)."),
    out: Path = typer.Option(Path("runs/latest"), "--out", "-o", help="Run directory to write (must be new unless --resume)."),
    rounds: int = typer.Option(2, "--rounds", help="Search rounds; each refits the latency predictor on the previous rounds' measurements."),
    latency_budget: Optional[str] = typer.Option(None, "--latency-budget", help="Target INT8 latency, e.g. 0.2ms or 150us (default: the first candidate's predicted latency)."),
    epochs: int = typer.Option(20, "--epochs", help="Final training epochs (fp32, before QAT)."),
    search_epochs: int = typer.Option(10, "--search-epochs", help="DARTS epochs per round (the first 3 train weights only)."),
    samples: int = typer.Option(2, "--samples", help="Extra architectures sampled from softmax(alpha) and measured per round."),
    trials: int = typer.Option(0, "--trials", help="MetaSchedule trials to tune the final model (0 reuses tuning_logs/<target> only)."),
    recipe: str = typer.Option("int8-per-channel", "--recipe", help="Quantization recipe name (quant/*.toml) or path."),
    image_size: int = typer.Option(16, "--image-size", help="Input resolution of the search space (digits are 8x8, upsampled)."),
    seed: int = typer.Option(0, "--seed", help="Seed for data split, search, training and sampling."),
    strategy: str = typer.Option("darts", "--strategy", help="darts (differentiable, hardware-aware) | random (same compute, the baseline)."),
    bits: Optional[str] = typer.Option(None, "--bits", help="Per-layer bit widths to search, e.g. 4,8 (QuantNAS noise + entropy + "
                                       "BitOps terms turn on with several; default: the target file's [search] bits, 8 for INT8 targets)."),
    space: str = typer.Option("default", "--space", help="default: search the built-in INT8 space | evolve: SpaceEvo first "
                              "picks per-stage block types and widths by Q-T score (KD proxy + latencies measured on the "
                              "target; ~2-5 min more), then the rounds search that space."),
    sparse: bool = typer.Option(False, "--sparse", help="Add DASS sparse ops (75% of weights pruned) beside the dense ones, with a sparsity cost term."),
    selection: str = typer.Option("argmax", "--selection", help="argmax | pt (DARTS-PT: keep the op whose removal hurts validation accuracy most)."),
    reuse_latency: bool = typer.Option(False, "--reuse-latency", help="Fit round 1's latency predictor on the whole-model "
                                       "measurements earlier builds kept for this target (tuning_logs/<target>/latency_points.json); "
                                       "off by default so that a build is reproducible from its own options."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run in --out from its last finished stage."),
    tracker: Optional[str] = typer.Option(None, "--tracker", help="TVM RPC tracker HOST:PORT of a device farm; measure there instead of locally."),
    key: Optional[str] = typer.Option(None, "--key", help="Device key on the tracker (default: the target's rpc_key)."),
):
    """Search, quantize, compile and measure a model for TARGET; writes a run directory."""
    from .cli_view import RichReporter, build_summary, out as console
    from .pipeline import build as run_build

    cfg = build_config(target=target, data=data, out=out, rounds=rounds, latency_budget=latency_budget, epochs=epochs,
                       search_epochs=search_epochs, samples=samples, trials=trials, recipe=recipe, image_size=image_size,
                       seed=seed, strategy=strategy, bits=bits, space=space, sparse=sparse, selection=selection,
                       reuse_latency=reuse_latency)
    manifest = run_build(cfg, RichReporter(), resume=resume, farm=_farm(tracker, key, target))
    console.print(build_summary(manifest, out))


def _bit_set(bits: Optional[str], target: str) -> tuple[int, ...]:
    """``--bits 4,8`` as a sorted tuple; without --bits, the target file's ``[search] bits``."""
    from .errors import UsageError
    from .target import BIT_WIDTHS, get_target

    if bits is None:
        return get_target(target).search_bits
    try:
        bit_set = tuple(sorted({int(b) for b in bits.split(",")}))
    except ValueError:
        raise UsageError(f"--bits {bits!r}: expected comma-separated widths such as 8 or 4,8") from None
    if not bit_set or any(b not in BIT_WIDTHS for b in bit_set):
        raise UsageError(f"--bits {bits!r}: widths must be between {BIT_WIDTHS[0]} and {BIT_WIDTHS[-1]}")
    return bit_set


def build_config(*, target: str, data: str, out: Path, rounds: int, latency_budget: Optional[str], epochs: int,
                 search_epochs: int, samples: int, trials: int, recipe: str, image_size: int, seed: int, strategy: str,
                 bits: Optional[str], space: str, sparse: bool, selection: str, reuse_latency: bool):
    """The ``BuildConfig`` of ``edgenas build``'s options (a function of its own so tests check
    that every option reaches the build without running one)."""
    import dataclasses

    from .errors import UsageError
    from .pipeline import BuildConfig
    from .search.darts import SearchConfig
    from .space.arch import SpaceConfig

    bit_set = _bit_set(bits, target)
    if selection not in ("argmax", "pt"):
        raise UsageError(f"--selection {selection!r}: choose argmax or pt")
    mixed = len(bit_set) > 1  # QuantNAS: noise per candidate width, entropy and BitOps terms (METHODS.md §1)
    search_cfg = SearchConfig(epochs=search_epochs, warmup=min(3, max(0, search_epochs - 1)), selection=selection,
                              noise="gauss" if mixed else "none", entropy_weight=1e-2 if mixed else 0.0,
                              bitops_weight=1e-2 if mixed else 0.0, sparsity_weight=0.2 if sparse else 0.0)
    space_cfg = dataclasses.replace(SpaceConfig(), image_size=image_size, bits=bit_set, sparse_levels=(0.75,) if sparse else ())
    return BuildConfig(target=target, data=data, out=str(out), rounds=rounds, latency_budget_ms=_parse_ms(latency_budget),
                       seed=seed, recipe=recipe, trials=trials, strategy=strategy, final_epochs=epochs, sampled_per_round=samples,
                       space_mode=space, space=space_cfg, search=search_cfg, reuse_latency=reuse_latency)


def _farm(tracker: Optional[str], key: Optional[str], target: str):
    """A device-farm client when --tracker is given (checked now, before any long work), for the
    target named by ``target`` (a name or a TOML path) so that its measurements record it."""
    from .errors import UsageError

    if tracker is None:
        if key is not None:
            raise UsageError("--key needs --tracker HOST:PORT")
        return None
    from .measure.rpc import Farm
    from .target import get_target

    spec = get_target(target)
    farm = Farm(tracker, key or spec.rpc_key or spec.name, target=spec.name)
    farm.check()
    return farm


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
):
    """Compile a bring-your-own ONNX model for TARGET with TVM (INT8 kernels for QDQ models).

    Examples:\n
      edgenas compile model_int8.onnx --target x86-avx2 --trials 64\n
      edgenas compile model_int8.onnx --target rpi4 --trials 64 --tracker 10.0.0.2:9190 --key rpi4
    """
    from .cli_view import console as err_console, kv_table, out as console
    from .compile import compile_onnx
    from .target import get_target

    spec = get_target(target)
    farm = _farm(tracker, key, spec.name)
    lib = out or model.with_name(f"{model.stem}_{spec.name}.so")
    with err_console.status(f"compiling {model.name} for {spec.name}") as status:
        res = compile_onnx(model, spec, lib, int8=not float_only, trials=trials, farm=farm,
                           progress=lambda m: status.update(m))
        latency = None
        if farm is not None:
            from .compile.frontend import input_shape

            status.update(f"measuring {lib.name} on {farm.tracker} key {farm.key!r}")
            latency = farm.measurement(res.library, input_shape(model))
    rows = [("library", str(res.library)), ("target", res.target),
            ("int8 ops", ", ".join(f"{k}×{v}" for k, v in res.int8_ops.items()) or "none"),
            ("tuning", f"{res.trials} new trials ({res.failed_runs} failed to run), {res.db_records} records, "
                       f"applied={res.tuned}"),
            ("seconds", f"{res.seconds:.1f}")]
    rows += [("fell back to float", f) for f in res.fallbacks]
    if latency is not None:
        rows.append(("latency on the farm", f"median {latency.stats.median_ms:.4f} ms (n = {latency.stats.n}, "
                                            f"{latency.device_id}, key {latency.key})"))
    console.print(kv_table("edgenas compile", rows))


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

    from .cli_view import RichReporter
    from .latency.profile import tune_space
    from .pipeline import op_table_path
    from .quantize.recipe import get_recipe
    from .space.arch import SpaceConfig
    from .target import get_target

    spec = get_target(target)
    space = dataclasses.replace(SpaceConfig(), image_size=image_size)
    n = len(space.positions())
    with RichReporter().stage(f"tune {spec.name}: ops of the space", total=None) as adv:
        new = tune_space(space, get_recipe(recipe), spec, trials, progress=lambda i, total, key: adv(1 if i else 0, f"{i + 1}/{total} {key}"))
    stale = op_table_path(spec.name)
    if new and stale.exists():
        stale.unlink()  # measured on the old kernels: the next build re-profiles
    typer.echo(f"{new} new trials for {n} searchable layers; database in {stale.parent}")


@targets_app.command("list")
@handled
def targets_list():
    """Show every target file with its TVM target, reachability and INT8 support."""
    from .cli_view import out as console, targets_table
    from .target import get_target, list_targets

    console.print(targets_table([get_target(n) for n in list_targets()]))


@targets_app.command("show")
@handled
def targets_show(name: str = typer.Argument(..., help="Target name or TOML path.")):
    """Show one target in full, including the TVM target TVM resolves it to."""
    from .cli_view import kv_table, out as console
    from .target import get_target

    s = get_target(name)
    rows = [("name", s.name), ("description", s.description), ("file", s.path), ("arch", s.arch),
            ("tvm target", str(s.tvm_target)), ("tvm host", str(s.tvm_host) if s.tvm_host else "-"),
            ("cross compiler", s.cross_compiler or "-"), ("runner", s.runner + (f" (key {s.rpc_key})" if s.rpc_key else "")),
            ("int8 dot product", s.int8_dot), ("search bits (default --bits)", ",".join(map(str, s.search_bits)))]
    console.print(kv_table(f"target {s.name}", rows))


# Command groups that live beside their stage (each module imports only typer at import time and
# registers its commands on ``app`` with ``@app.command()`` / ``app.add_typer``).
COMMAND_MODULES = ("edgenas.cli_artifacts", "edgenas.cli_farm")


def _register_command_modules() -> None:
    import importlib

    for name in COMMAND_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:
                raise


_register_command_modules()


def main() -> None:
    """Run the app; click's own usage errors (unknown option, bad value) become one line, exit 2."""
    try:  # typer >= 0.20 vendors click
        from typer._click import exceptions as cx
    except ImportError:  # pragma: no cover - older typer
        from click import exceptions as cx

    try:
        rv = app(standalone_mode=False)
    except cx.UsageError as e:
        if e.format_message().strip():  # empty for "no arguments: help was shown"
            cmd = e.ctx.command_path if e.ctx else "edgenas"
            typer.echo(f"error: {e.format_message()} (see `{cmd} --help`)", err=True)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("interrupted: finished stages are kept; rerun with --resume to continue", err=True)
        sys.exit(130)
    except typer.Exit as e:
        sys.exit(getattr(e, "exit_code", 1))
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    # ``python -m edgenas.cli`` runs this file as __main__, a second copy of the module whose app
    # would miss the commands registered on ``edgenas.cli.app``; run the real one.
    from edgenas.cli import main as _main

    _main()
