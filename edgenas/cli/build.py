"""``edgenas build``: search, quantize, compile and measure, into a run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .app import app, handled


@app.command()
@handled
def build(
    target: str = typer.Option("x86-avx2", "--target", "-t", help="Target name (see `edgenas targets list`) or a path to a target TOML."),
    data: str = typer.Option("digits", "--data", help="digits (embedded) | fashion-mnist (Debian dataset-fashion-mnist) | idx:DIR (MNIST layout) | cifar10:PATH (python batches) | folder:PATH (one sub-folder per class)."),
    out: Path = typer.Option(Path("runs/latest"), "--out", "-o", help="Run directory to write (must be new unless --resume)."),
    rounds: int = typer.Option(2, "--rounds", help="Search rounds; each refits the latency predictor on the previous rounds' measurements."),
    latency_budget: Optional[str] = typer.Option(None, "--latency-budget", help="Target INT8 latency, e.g. 0.2ms or 150us (default: the predicted latency at uniform alphas, the space's average)."),
    epochs: int = typer.Option(20, "--epochs", help="Final training epochs (fp32, before QAT)."),
    search_epochs: int = typer.Option(10, "--search-epochs", help="DARTS epochs per round (the first 3 train weights only)."),
    samples: int = typer.Option(7, "--samples", help="Extra architectures sampled from softmax(alpha) and measured per round "
                                "(the predictor refits on them; latency needs no trained weights, so they are cheap)."),
    heldout: int = typer.Option(6, "--heldout", help="Architectures measured once and never fitted: the predictor's error on "
                                "them is printed after every round, before and after its refit."),
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
    from .. import build as builder
    from ..target import get_target
    from .options import farm_from_options
    from .view import RichReporter, build_summary, out as console

    spec = get_target(target)
    cfg = build_config(target=target, data=data, out=out, rounds=rounds, latency_budget=latency_budget, epochs=epochs,
                       search_epochs=search_epochs, samples=samples, trials=trials, recipe=recipe, image_size=image_size,
                       heldout=heldout, seed=seed, strategy=strategy, bits=bits, space=space, sparse=sparse, selection=selection,
                       reuse_latency=reuse_latency, spec=spec)
    manifest = builder.build(cfg, spec, RichReporter(), resume=resume, farm=farm_from_options(tracker, key, spec))
    console.print(build_summary(manifest, out))


def build_config(*, target: str, data: str, out: Path, rounds: int, latency_budget: Optional[str], epochs: int,
                 search_epochs: int, samples: int, trials: int, recipe: str, image_size: int, seed: int, strategy: str,
                 bits: Optional[str], space: str, sparse: bool, selection: str, reuse_latency: bool, spec=None,
                 heldout: int = 6):
    """The ``BuildConfig`` of ``edgenas build``'s options as typed (a function of its own so tests
    check that every option reaches the build without running one). The policy behind ``--bits``
    and ``--sparse`` is ``build.config``'s presets; ``spec`` is ``target`` resolved, when it is."""
    from ..build.config import BuildConfig
    from ..target import get_target
    from .options import bit_set, parse_ms

    return BuildConfig.from_options(
        bits=bit_set(bits, spec or get_target(target)), sparse=sparse, selection=selection, search_epochs=search_epochs,
        image_size=image_size, target=target, data=data, out=str(out), rounds=rounds,
        latency_budget_ms=parse_ms(latency_budget), seed=seed, recipe=recipe, trials=trials, strategy=strategy,
        final_epochs=epochs, sampled_per_round=samples, heldout=heldout, space_mode=space, reuse_latency=reuse_latency)
