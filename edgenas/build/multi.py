"""A build for several targets from one search: train the supernet once, specialise it per target.

``edgenas build --target A,B`` writes one run directory ``OUT/`` with the shared supernet
(``supernet.pt``), one complete sub-run per target (``OUT/A/``, ``OUT/B/``: each a run directory
of its own, with its bundle ``OUT/A/A/``) and ``multi.json`` + ``report.html`` beside them
(docs/methods.md §8). Each sub-run is an ordinary ``stages.Build`` whose two hooks read the
shared supernet: its rounds search only the alphas over the shared weights (``search.shared``),
and its final training starts from the chosen path's inherited weights and fine-tunes for
``finetune_epochs``. Everything else (op table profiled on the target, feedback rounds, QAT,
compile, measure, bundle) is the single-target stage, unchanged.

After the sub-runs, every target's chosen model is compiled for, and measured on, every other
target (the cross-target cost), and each target's accuracy-latency front is drawn from the
candidates measured on it, scored by their accuracy with the supernet's inherited weights.

Resumable as single builds are: the parent's ``state.json`` marks the shared stages, each
sub-run keeps its own.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

from .. import fsio, records
from ..compute import CPU, Compute
from ..errors import UsageError
from ..records import record
from ..target import TargetSpec
from . import rundir
from .config import BuildConfig
from .progress import Reporter
from .rundir import RunDir
from .stages import Build, add_seconds


@record("multi_build_config")
@dataclass(frozen=True)
class MultiConfig:
    """A multi-target build: ``targets`` as the user named them, the options every sub-run shares
    (``build``; its ``target`` is the first target, its ``out`` the parent directory) and the
    epochs the final training fine-tunes the inherited weights for."""

    targets: tuple[str, ...]
    build: BuildConfig
    finetune_epochs: int = 5

    def validate(self) -> None:
        b = self.build
        b.validate()
        if len(self.targets) < 2:
            raise UsageError("a multi-target build needs at least two targets (--target A,B)")
        dup = sorted({t for t in self.targets if self.targets.count(t) > 1})
        if dup:
            raise UsageError(f"--target names {', '.join(dup)} more than once")
        if self.finetune_epochs < 1:
            raise UsageError(f"--finetune-epochs must be at least 1 (got {self.finetune_epochs})")
        unsupported = [(b.strategy != "darts", f"--strategy {b.strategy}"),
                       (b.space_mode != "default", f"--space {b.space_mode} (SpaceEvo evolves one space per target)"),
                       (b.search.selection != "argmax", f"--selection {b.search.selection}"),
                       (bool(b.space.sparse_levels), "--sparse")]
        bad = [what for cond, what in unsupported if cond]
        if bad:
            raise UsageError(f"{', '.join(bad)} cannot be combined with several targets: the targets share one "
                             "supernet searched by its alphas (build them one at a time instead)")

    def sub_config(self, name: str) -> BuildConfig:
        return dataclasses.replace(self.build, target=name, out=str(Path(self.build.out) / name),
                                   final_epochs=self.finetune_epochs)


class TargetBuild(Build):
    """One target's sub-run: the single-target stages, searching over the shared supernet."""

    def __init__(self, cfg: BuildConfig, target: TargetSpec, reporter: Reporter, resume: bool, farm, supernet: Path,
                 compute: Compute = CPU):
        super().__init__(cfg, target, reporter, resume, farm, compute)
        self.supernet = supernet

    def search_strategy(self):
        from ..search.shared import search_alphas

        def alphas_only(space, data, table, budget_ms, cfg, seed, checkpoint=None, on_step=None, compute=None):
            return search_alphas(space, data, table, budget_ms, cfg, seed, self.supernet, checkpoint=checkpoint,
                                 on_epoch=on_step, compute=compute or self.compute)
        return alphas_only

    def search_label(self) -> str:
        return "alphas over the shared supernet"

    def initial_model(self, arch):
        from ..search.shared import inherit, load_supernet
        from ..space.supernet import freeze

        return inherit(freeze(arch), load_supernet(self.space, self.cfg.search, self.supernet), arch)


class MultiBuild:
    """The build of ``cfg`` for ``targets`` (``TargetSpec``s resolved from ``cfg.targets``),
    each measured through ``farms[name]`` when it is not ``None``, trained on ``compute``'s device."""

    def __init__(self, cfg: MultiConfig, targets: list[TargetSpec], reporter: Reporter, resume: bool,
                 farms: dict[str, object], compute: Compute = CPU):
        self.cfg, self.rep, self.resume = cfg, reporter, resume
        self.run_dir = RunDir(cfg.build.out)
        supernet = self.run_dir.path / rundir.SUPERNET
        # every sub-run is set up (prerequisites, farm, data) before any long work starts
        self.builds = [TargetBuild(cfg.sub_config(t.name), t, reporter, resume, farms.get(t.name), supernet, compute)
                       for t in targets]
        self.compute = compute
        first = self.builds[0]
        self.space, self.data = first.space, first.data

    def _timed(self, name: str, fn):
        t = time.time()
        out = fn()
        add_seconds(self.run_dir, name, time.time() - t)
        return out

    # -- stages -------------------------------------------------------------------------------
    def train_supernet(self) -> None:
        """The one weight training every target's search shares."""
        from ..search.shared import train_supernet

        run, b = self.run_dir, self.cfg.build
        if run.done("supernet"):
            return
        with self.rep.stage(f"train the shared supernet ({len(self.builds)} targets)", total=b.search.epochs) as adv:
            self._timed("supernet", lambda: train_supernet(
                self.space, self.data, b.search, b.seed, run.file(rundir.SUPERNET),
                on_epoch=lambda e, h: adv(1, f"epoch {e} loss {h['w_loss']:.3f} val {h['val_acc']:.3f}"),
                compute=self.compute))
        run.mark("supernet", epochs=b.search.epochs)

    def cross(self) -> list[dict]:
        """Every target's chosen INT8 model compiled for and measured on every other target."""
        from ..compile import compile_onnx

        run = self.run_dir
        rows = fsio.read_json(run.file("cross.json")) if run.file("cross.json").exists() else []
        todo = [(a, b) for a in self.builds for b in self.builds
                if a is not b and not any(r["model_of"] == a.target.name and r["on"] == b.target.name for r in rows)]
        if run.done("cross"):
            return rows
        with self.rep.stage("cross-target cost: each model on the other targets", total=len(todo)) as adv:
            for a, b in todo:
                lib = run.file("cross", f"{a.target.name}_on_{b.target.name}.so")
                self._timed("cross", lambda: compile_onnx(a.run_dir.join(rundir.MODEL_INT8_ONNX), b.target, lib,
                                                          int8=True, trials=0, farm=b.farm))
                stats = self._timed("cross", lambda: b._measure_lib(str(lib), a.space.input_shape, repeat=50))
                rows.append({"model_of": a.target.name, "on": b.target.name, "arch": str(a.run_dir.arch()),
                             "measured_ms": stats.median_ms, "where": stats.where})
                fsio.write_json(run.file("cross.json"), rows)   # per pair: a resume measures only the pairs left
                adv(1, f"{a.target.name} model on {b.target.name}: {stats.median_ms:.3f} ms")
        run.mark("cross", pairs=len(rows))
        return rows

    def fronts(self, cross: list[dict]) -> dict:
        """Per target: every candidate measured on it (the rounds' candidates, the feedback loop's
        held-out samples, its final model and the other targets' chosen models; an architecture measured more than once at its lowest
        median, as the protocol's repeats are read), with its accuracy under the supernet's
        inherited weights, and which of them are on the accuracy-latency front."""
        from ..search.shared import load_supernet, path_accuracy
        from ..space.arch import Arch

        net = load_supernet(self.space, self.cfg.build.search, self.run_dir.path / rundir.SUPERNET)
        scores: dict[str, float] = {}

        def acc(arch: str) -> float:
            if arch not in scores:
                scores[arch] = path_accuracy(net, Arch.parse(arch), self.data)
            return scores[arch]

        out = {}
        with self.rep.stage("accuracy-latency fronts (inherited supernet weights)", total=len(self.builds)) as adv:
            for b in self.builds:
                name, m = b.target.name, b.run_dir.manifest()
                pts: dict[str, dict] = {}
                final = {"arch": m.arch, "measured_ms": (m.latency or {}).get("median_ms")}
                held = b.run_dir.join(rundir.HELDOUT)
                rows = [(row, "search") for row in b.measured_so_far(b.cfg.rounds)]
                rows += [(row, "held-out sample") for row in (fsio.read_json(held) if held.exists() else [])]
                rows += [(final, "search")] if final["measured_ms"] is not None else []
                for row, source in rows:
                    p = pts.setdefault(row["arch"], {"arch": row["arch"], "measured_ms": [], "source": source})
                    p["measured_ms"].append(row["measured_ms"])
                for row in cross:
                    if row["on"] == name:
                        p = pts.setdefault(row["arch"], {"arch": row["arch"], "measured_ms": [],
                                                         "source": f"chosen for {row['model_of']}"})
                        p["measured_ms"].append(row["measured_ms"])
                cands = [{**p, "measured_ms": min(p["measured_ms"]), "inherited_acc": acc(p["arch"]),
                          "chosen": p["arch"] == m.arch} for p in pts.values()]
                for c in cands:
                    c["on_front"] = not any(o["measured_ms"] <= c["measured_ms"] and o["inherited_acc"] >= c["inherited_acc"]
                                            and (o["measured_ms"], o["inherited_acc"]) != (c["measured_ms"], c["inherited_acc"])
                                            for o in cands)
                out[name] = {"candidates": sorted(cands, key=lambda c: c["measured_ms"]),
                             "chosen": {"arch": m.arch, "int8_acc": m.accuracy.get("int8_tvm"),
                                        "fp32_acc": m.accuracy.get("fp32"),
                                        "latency_ms": (m.latency or {}).get("median_ms"),
                                        "where": (m.latency or {}).get("where"),
                                        "emulated": bool((m.latency or {}).get("emulated", False))}}
                adv(1, name)
        return out

    def verify(self) -> dict[str, str]:
        """Each sub-run's bundle checked as `edgenas verify` checks it (aarch64 under qemu)."""
        from ..bundle.verify import verify_bundle

        out = {}
        with self.rep.stage("verify the bundles", total=len(self.builds)) as adv:
            for b in self.builds:
                bad = verify_bundle(b.run_dir.join(b.target.name)).failures()
                out[b.target.name] = "ok" if not bad else "; ".join(f"{c.name}: {c.detail}" for c in bad)
                adv(1, f"{b.target.name}: {out[b.target.name]}")
        return out

    # -- the whole build ----------------------------------------------------------------------
    def run(self) -> dict:
        with self.run_dir.open(records.to_dict(self.cfg)["data"], self.resume) as run:
            if run.done("done"):   # a finished build resumed: nothing is run or measured again
                return fsio.read_json(run.file(rundir.MULTI))
            started = time.time()
            try:
                self.train_supernet()
                for b in self.builds:
                    if run.done(f"target {b.target.name}"):
                        continue
                    self.rep.info(f"--- target {b.target.name} (sub-run {b.run_dir.path}) ---")
                    self._timed(f"target {b.target.name}", b.run)
                    run.mark(f"target {b.target.name}")
                cross = self.cross()
                fronts = self.fronts(cross)
                verified = self.verify()
            finally:   # the wall time of every invocation, interrupted ones too (as timing.json sums stages)
                self._add_wall(time.time() - started)
            result = {"targets": list(self.cfg.targets), "fronts": fronts, "cross": cross, "verified": verified,
                      "seconds": fsio.read_json(run.file(rundir.TIMING)),
                      "sub_runs": {n: str(run.path / n) for n in self.cfg.targets}}
            fsio.write_json(run.file(rundir.MULTI), result)
            from ..report.multi import write_multi_report

            write_multi_report(run.path)
            run.mark("done", wall_s=result["seconds"]["wall"])
            return result

    def _add_wall(self, seconds: float) -> None:
        path = self.run_dir.file(rundir.TIMING)
        timing = fsio.read_json(path) if path.exists() else {}
        timing["wall"] = round(timing.get("wall", 0.0) + seconds, 3)
        fsio.write_json(path, timing)


def build_multi(cfg: MultiConfig, targets: list[TargetSpec], reporter: Reporter | None = None, resume: bool = False,
                farms: dict | None = None, compute: Compute = CPU) -> dict:
    """Run (or resume) the multi-target build ``cfg``; returns what ``OUT/multi.json`` holds."""
    cfg.validate()
    return MultiBuild(cfg, targets, reporter or Reporter(), resume, farms or {}, compute).run()
