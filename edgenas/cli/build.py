"""``edgenas build``: search, quantize, compile and measure, into a run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .app import app, handled

TRAIN_DEVICE_HELP = (
    "Where training runs (supernet search, random search, SpaceEvo proxies, final training, QAT): auto (CUDA when "
    "torch sees a GPU, else cpu) | cpu | cuda | cuda:N. Export, compile and measurement are unchanged. On cpu a seed "
    "gives bit-identical results. On CUDA a seed gives the same data order, initial weights and noise draws, but "
    "cuDNN/cuBLAS kernels sum in a non-fixed order, so weights, alphas and accuracies differ in the last digits "
    "between runs and from the CPU, and a close architecture decision may flip.")
NPROC_HELP = (
    "Training processes on this machine (data-parallel: each rank trains on its shard of every batch, gradients of "
    "weights and alphas all-reduced; gloo on CPU, NCCL on CUDA; rank 0 alone writes the run, compiles and measures). "
    "Several machines: leave 1 and start `edgenas build` under `torchrun --nnodes` (docs/distributed.md). "
    "Results with N > 1 match one process up to float summation order and per-shard BatchNorm statistics.")


@app.command()
@handled
def build(
    target: str = typer.Option("x86-avx2", "--target", "-t", help="Target name (see `edgenas targets list`) or a path to a target TOML; "
                               "several, comma-separated (x86-avx2,rpi4), share one supernet training and get one sub-run "
                               "each in OUT/<target>/, with their fronts side by side in OUT/report.html."),
    data: str = typer.Option("digits", "--data", help="digits (embedded) | fashion-mnist (Debian dataset-fashion-mnist) | idx:DIR (MNIST layout) | cifar10:PATH (python batches) | folder:PATH (one sub-folder per class)."),
    out: Path = typer.Option(Path("runs/latest"), "--out", "-o", help="Run directory to write (must be new unless --resume)."),
    rounds: int = typer.Option(2, "--rounds", help="Search rounds; each refits the latency predictor on the previous rounds' measurements."),
    latency_budget: Optional[str] = typer.Option(None, "--latency-budget", help="Target INT8 latency, e.g. 0.2ms or 150us (default: the predicted latency at uniform alphas, the space's average)."),
    epochs: int = typer.Option(20, "--epochs", help="Final training epochs (fp32, before QAT)."),
    search_epochs: int = typer.Option(10, "--search-epochs", help="DARTS epochs per round (the first 3 train weights only)."),
    samples: int = typer.Option(15, "--samples", help="Extra architectures sampled from softmax(alpha) and measured per round "
                                "(16 with the chosen one: a per-op-class correction needs ~12-16 points to change the op table's ranking; "
                                "latency needs no trained weights, so they are cheap)."),
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
    key: Optional[str] = typer.Option(None, "--key", help="Device key on the tracker (default: the target's rpc_key); "
                                      "with several targets, TARGET=KEY pairs (x86-avx2=local-cpu,rpi4=rpi4)."),
    finetune_epochs: int = typer.Option(5, "--finetune-epochs", help="With several targets: epochs each target's final "
                                        "training fine-tunes its model from the shared supernet's weights (instead of --epochs from scratch)."),
    train_device: str = typer.Option("auto", "--train-device", help=TRAIN_DEVICE_HELP),
    nproc: int = typer.Option(1, "--nproc", help=NPROC_HELP),
    data_workers: int = typer.Option(2, "--data-workers", help="DataLoader worker processes decoding an image folder "
                                     "(--data folder:DIR) per training process; in-memory data sets use none."),
):
    """Search, quantize, compile and measure a model for TARGET; writes a run directory.

    With several targets (--target x86-avx2,rpi4) the supernet is trained once on the data and
    each target then searches its own architecture over the shared weights (alphas only), with
    its own op table, feedback rounds, fine-tuning, QAT, compile, measurement and bundle. OUT/
    holds one sub-run per target, multi.json and report.html (every target's accuracy-latency
    front, the cross-target cost, the time spent)."""
    from .. import build as builder
    from ..compute import compute_group
    from ..target import get_target
    from .options import farm_from_options
    from .view import build_summary, out as console, reporter

    names = [t.strip() for t in target.split(",") if t.strip()]
    if len(names) > 1:
        if nproc != 1:
            from ..errors import UsageError
            raise UsageError("--nproc with several targets is not supported yet: build with --nproc 1, or one target at a time")
        return _build_multi(names, tracker=tracker, key=key, finetune_epochs=finetune_epochs, resume=resume,
                            train_device=train_device, data_workers=data_workers,
                            data=data, out=out, rounds=rounds, latency_budget=latency_budget, epochs=epochs,
                            search_epochs=search_epochs, samples=samples, trials=trials, recipe=recipe,
                            image_size=image_size, seed=seed, strategy=strategy, bits=bits, space=space, sparse=sparse,
                            selection=selection, reuse_latency=reuse_latency, heldout=heldout)
    spec = get_target(target)
    cfg = build_config(target=target, data=data, out=out, rounds=rounds, latency_budget=latency_budget, epochs=epochs,
                       search_epochs=search_epochs, samples=samples, trials=trials, recipe=recipe, image_size=image_size,
                       heldout=heldout, seed=seed, strategy=strategy, bits=bits, space=space, sparse=sparse, selection=selection,
                       reuse_latency=reuse_latency, spec=spec)
    with compute_group(train_device, nproc, data_workers) as compute:
        if not compute.is_main:   # a torchrun rank other than 0: train the jobs rank 0 sends
            compute.serve()
            return
        manifest = builder.build(cfg, spec, reporter(), resume=resume, farm=farm_from_options(tracker, key, spec),
                                 compute=compute)
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


def _build_multi(names: list[str], *, tracker: Optional[str], key: Optional[str], finetune_epochs: int, resume: bool,
                 train_device: str, data_workers: int, **options):
    """``edgenas build --target A,B,...`` (``build.multi``): every target resolved and its farm
    checked before the shared training starts."""
    from ..build.multi import MultiConfig, build_multi
    from ..compute import compute_group
    from ..errors import UsageError
    from ..target import get_target
    from .options import farm_from_options
    from .view import out as console, reporter

    specs = [get_target(n) for n in names]
    keys = dict(pair.split("=", 1) for pair in (key or "").split(",") if "=" in pair)
    if key is not None and (not keys or set(keys) - set(names)):
        raise UsageError(f"--key {key!r}: with several targets give TARGET=KEY pairs for targets among {', '.join(names)}")
    bits = {s.search_bits for s in specs} if options["bits"] is None else None
    if bits is not None and len(bits) > 1:
        raise UsageError(f"the targets {', '.join(names)} search different bit widths by default: pass --bits")
    base = build_config(target=names[0], spec=specs[0], **options)
    cfg = MultiConfig(targets=tuple(s.name for s in specs), build=base, finetune_epochs=finetune_epochs)
    farms = {s.name: farm_from_options(tracker, keys.get(s.name), s) for s in specs}
    with compute_group(train_device, 1, data_workers) as compute:
        result = build_multi(cfg, specs, reporter(), resume=resume, farms=farms, compute=compute)
    console.print(multi_summary(result, options["out"]))


def multi_summary(result: dict, out: Path):
    """The multi-target build's closing table: each target's chosen model, its latency on every
    target, and the time the build took."""
    from .view import kv_table

    rows = []
    for name, f in result["fronts"].items():
        ch = f["chosen"]
        emulated = " (emulated)" if ch.get("emulated") else ""
        rows.append((f"{name}: chosen", ch["arch"]))
        rows.append((f"{name}: int8 / latency", f"{(ch.get('int8_acc') or 0) * 100:.2f} % / "
                                                f"{ch.get('latency_ms') or float('nan'):.4f} ms{emulated} on {ch.get('where')}"))
        front = sum(c["on_front"] for c in f["candidates"])
        rows.append((f"{name}: front", f"{front} of {len(f['candidates'])} candidates measured on {name} (inherited weights)"))
        rows.append((f"{name}: bundle", f"{out / name / name}  verify: {result['verified'].get(name)}"))
    own = {n: f["chosen"] for n, f in result["fronts"].items()}
    for r in result["cross"]:
        base = own[r["on"]]
        ratio = (" (the same architecture as its own)" if base["arch"] == r["arch"] else
                 f" ({r['measured_ms'] / base['latency_ms']:.2f}× its own model)" if base.get("latency_ms") else "")
        rows.append((f"cross: {r['model_of']} model on {r['on']}", f"{r['measured_ms']:.4f} ms{ratio}"))
    s = result["seconds"]
    rows.append(("time", f"wall {s.get('wall', 0.0):.0f} s: shared supernet {s.get('supernet', 0.0):.0f} s, "
                 + ", ".join(f"{n} {s.get(f'target {n}', 0.0):.0f} s" for n in result["targets"])
                 + f", cross-target {s.get('cross', 0.0):.0f} s (scripts/bench_multi.py sets it beside separate builds)"))
    rows.append(("report", str(out / "report.html")))
    return kv_table("edgenas build (multi-target)", rows)
