"""The stages of a build, each a method that writes its outputs and marks itself done.

Kept apart from ``config.py`` (the configuration and its presets) so that each stage is a small
unit with one job; the order of calls in ``Build.run`` *is* the data flow.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import torch

from .. import fsio, records
from ..compute import CPU, Compute
from ..data import load_data
from ..errors import UsageError
from ..latency.dataset import LatencyPoint, table_covers
from ..latency.predictor import Predictor, fit_arch_predictor, quality, table_hash
from ..latency.profile import compile_arch, measure_arch, profile_space
from ..latency.table import LatencyTable
from ..measure.runners import runner_for
from ..search.objective import default_budget
from ..measure.stats import LatencyStats
from ..quantize.convert import calibrate, to_brevitas
from ..quantize.export import compare, export_float, export_int8, run_ort, run_torch
from ..quantize.recipe import for_target, get_recipe
from ..search.darts import SearchResult
from ..search.strategies import STRATEGIES
from ..space.arch import Arch, arch_from_choices
from ..space.supernet import freeze
from ..target import TargetSpec
from ..train import evaluate, fit
from ..tuning_store import TuningStore
from . import rundir
from .config import BuildConfig
from .cost import SEARCH_STAGES, search_cost
from .manifest import SCHEMA_VERSION, Manifest, hash_files, round_line
from .progress import Reporter
from .rundir import RunDir


def _step_note(h: dict) -> str:
    if "epoch" in h:
        return f"epoch {h['epoch']} val {h['val_acc']:.3f} E[lat] {h.get('expected_ms', float('nan')):.3f} ms"
    return f"sample {h['sample']} val {h['val_acc']:.3f} pred {h['predicted_ms']:.3f} ms"


def _fit_ms(point: dict) -> float:
    """What the predictor learns from: the reference-calibrated ms when the point has them."""
    return point.get("calibrated_ms") or point["measured_ms"]


def add_seconds(run_dir: RunDir, name: str, seconds: float) -> None:
    """Add ``seconds`` to stage ``name`` in the run's ``timing.json`` (summed across resumes)."""
    path = run_dir.file(rundir.TIMING)
    timing = fsio.read_json(path) if path.exists() else {}
    timing[name] = round(timing.get(name, 0.0) + seconds, 3)
    fsio.write_json(path, timing)


class Build:
    """One build for ``target`` (the ``TargetSpec`` resolved from ``cfg.target`` by the caller),
    measured through ``farm`` (a ``measure.rpc.Farm``) when one is given, else on this host.
    Training runs on ``compute`` (a ``compute.Compute``: device and ranks; docs/distributed.md);
    this object lives on rank 0 only, which alone writes the run directory."""

    def __init__(self, cfg: BuildConfig, target: TargetSpec, reporter: Reporter, resume: bool, farm=None,
                 compute: Compute = CPU):
        self.cfg, self.rep, self.resume, self.farm, self.compute = cfg, reporter, resume, farm, compute
        self.target = target
        self.target.check_host_prerequisites()
        if not self.target.measurable_locally and farm is None:
            raise UsageError(
                f"target {self.target.name!r} is measured on a device: pass --tracker HOST:PORT --key "
                f"{self.target.rpc_key or self.target.name}, or build for x86-avx2 and compile the result with "
                f"`edgenas compile RUN/model_int8.onnx --target {self.target.name}`")
        # capped at the target's weight width ([int8] weight_bits: 7 on x86-avx2, docs/quantization.md):
        # the op table, the feedback libraries and the QAT all quantize through this one recipe
        self.recipe = for_target(get_recipe(cfg.recipe), target)
        self.data = load_data(cfg.data, cfg.space.image_size, cfg.seed)
        # Fashion-MNIST's 45,000 training images x 20 epochs would take an hour on two cores;
        # digits (1,078) are far under the cap. The search has its own (SearchConfig.subsample).
        self.train = self.data.subsample(cfg.final_subsample).train
        self.space = dataclasses.replace(cfg.space, in_channels=self.data.channels, num_classes=self.data.classes)
        self.run_dir = RunDir(cfg.out)
        self.store = TuningStore(target)
        self.runner = runner_for(target, farm)
        self.budget_ms = cfg.latency_budget_ms   # an evolved space keeps the budget it was evolved for

    # -- helpers ------------------------------------------------------------------------------
    def _measure_lib(self, lib: str, shape: tuple[int, ...], repeat: int = 15) -> LatencyStats:
        """Every latency of the build goes through the measurement protocol (warm-up, short samples,
        repeats until the median's interval is tight, outliers re-measured), journaled in the run."""
        return self.runner.measure(lib, shape, min_samples=repeat, journal=self.run_dir.journal_file).stats

    def _median(self, lib: str, shape: tuple[int, ...]) -> float:
        return self._measure_lib(lib, shape).median_ms

    def _timed(self, name: str, fn):
        """Run ``fn`` and add its wall time to ``timing.json`` (kept across resumes), and its
        training jobs' device time to ``compute.json`` (``cost.py``)."""
        from ..compute import USAGE
        from .cost import add_segment

        USAGE.take()
        t = time.time()
        out = fn()
        add_seconds(self.run_dir, name, time.time() - t)
        train_wall, busy = USAGE.take()
        add_segment(self.run_dir.file(rundir.COMPUTE), name, time.time() - t, train_wall, busy,
                    self.compute.device_name(), self.compute.world, f"{self.target.name} ({self.runner.where})")
        return out

    def _example(self) -> torch.Tensor:
        return torch.from_numpy(self.data.val[0][:1])

    def search_strategy(self):
        """The round's search, ``strategy(space, data, table, budget_ms, cfg, seed, checkpoint,
        on_step) -> SearchResult``: the configured strategy (a multi-target build's sub-run
        searches the shared supernet instead, ``build.multi``)."""
        return STRATEGIES.get(self.cfg.strategy)

    def search_label(self) -> str:
        return self.cfg.strategy

    def initial_model(self, arch: Arch) -> torch.nn.Module:
        """The network the final training starts from: freshly initialised here, the supernet's
        inherited weights in a multi-target build's sub-run."""
        return freeze(arch)

    # -- stages -------------------------------------------------------------------------------
    def op_table(self) -> LatencyTable:
        """The op table for this target: cached across runs in tuning_logs/<target>/."""
        run = self.run_dir
        if run.done("op_table"):
            return records.load(run.file(rundir.OP_TABLE), LatencyTable)
        table = self.store.op_table()
        todo = len(table.missing(self.space)) + (2 if table.fixed_ms == 0 else 0)
        with self.rep.stage("profile op latencies (INT8, on target)", total=todo) as adv:
            table = self._timed("profile", lambda: profile_space(
                self.space, table, self.recipe, self.target, self._median,
                progress=lambda i, n, key: adv(1 if i else 0, key)))
        if todo:
            self.store.save_op_table(table)
        records.save(run.file(rundir.OP_TABLE), table)
        run.mark("op_table", entries=len(table.entries))
        return table

    def evolve_space(self, table: LatencyTable) -> LatencyTable:
        """``--space evolve``: SpaceEvo chooses the space the rounds search (docs/methods.md §2).

        Per-stage tables (block-wise KD proxy + INT8 latencies profiled on the target, growing the
        op table) and aging evolution by Q-T score at the build's latency budget; the winner
        replaces ``self.space``. Returns the grown op table."""
        from ..space.arch import SpaceConfig
        from ..search.evolve import evolve_for_budget

        run, cfg = self.run_dir, self.cfg
        if not run.done("evolve"):
            budget = cfg.latency_budget_ms or default_budget(table, self.space)
            with self.rep.stage(f"SpaceEvo: evolve the search space (budget {budget:.3f} ms)", total=None) as adv:
                res, tables, table = self._timed("evolve", lambda: evolve_for_budget(
                    self.space, self.data.subsample(cfg.search.subsample), table, budget, cfg.evolve,
                    lambda space, t: profile_space(space, t, self.recipe, self.target, self._median,
                                                   progress=lambda i, n, key: adv(0, f"profile {key}")),
                    cfg.seed, progress=lambda m: adv(0, m), compute=self.compute))
            # the tables measured each block family's first variant; the searched space has them all
            todo = len(table.missing(res.space))
            with self.rep.stage("profile the evolved space's op latencies (INT8, on target)", total=todo) as adv:
                table = self._timed("profile", lambda: profile_space(
                    res.space, table, self.recipe, self.target, self._median,
                    progress=lambda i, n, key: adv(1 if i else 0, key)))
            self.store.save_op_table(table)
            records.save(run.file(rundir.OP_TABLE), table)
            records.save(run.file(rundir.STAGE_TABLES), tables)
            records.save(run.file(rundir.SPACE), res.space)
            blocks = [st.ops[0] for st in res.space.stages]
            self.rep.info(f"SpaceEvo: Q-T {res.score:.4f} after {res.evaluated} candidate spaces; stages "
                          + ", ".join(f"{op}×{st.channels}" for op, st in zip(blocks, res.space.stages)))
            run.mark("evolve", candidate=str(res.best), qt_score=res.score, evaluated=res.evaluated, budget_ms=budget)
        self.space = records.load(run.file(rundir.SPACE), SpaceConfig)
        self.budget_ms = cfg.latency_budget_ms or run.info("evolve")["budget_ms"]
        return records.load(run.file(rundir.OP_TABLE), LatencyTable)

    def _first_arch(self) -> Arch:
        return arch_from_choices(self.space, [self.space.candidates(i)[0] for i in range(len(self.space.positions()))])

    def earlier_runs(self, table: LatencyTable, ref: dict) -> list[dict]:
        """``--reuse-latency``: whole-model measurements kept from earlier builds on this target
        (``tuning_logs/<target>/latency_points.json``) whose ops the op table covers. Snapshotted
        into the run directory the first time, so a resumed run fits on the same points."""
        if not self.cfg.reuse_latency:
            return []
        snap = self.run_dir.file(rundir.EARLIER_POINTS)
        if not snap.exists():
            same_ends = (str(self._first_arch()).split("|")[0], str(self._first_arch()).split("|")[-1])
            kept = [p for p in self.store.latency_points().points
                    if p.where == self.runner.where                                    # same device (farm key)
                    and (p.arch.split("|")[0], p.arch.split("|")[-1]) == same_ends   # same input, stem, head
                    and table_covers(table, Arch.parse(p.arch))]
            fsio.write_json(snap, [{"arch": p.arch, "measured_ms": p.measured_ms, "where": p.where, "ratio": p.ratio,
                                    "reference": p.reference} for p in kept])
            self.rep.info(f"latency model: {len(kept)} measurement(s) from earlier runs on {self.target.name}")
        return [{**p, "calibrated_ms": p["ratio"] * ref["calibrated_ms"]} if p.get("ratio") and p.get("reference") == ref["arch"]
                else p for p in fsio.read_json(snap)]

    def _keep_for_later_runs(self, rows: list[dict], r: int) -> None:
        """Append this round's measurements to the target's latency points (the store locks:
        builds for the same target may run side by side)."""
        where = self.runner.where
        self.store.add_latency_points(*(LatencyPoint(row["arch"], row["measured_ms"], where=where, round=r,
                                                     ratio=row.get("ratio") or 0.0, reference=row.get("reference", ""))
                                        for row in rows))

    def measured_so_far(self, upto: int) -> list[dict]:
        out = []
        for r in range(1, upto + 1):
            f = self.run_dir.round_file(r, "measured.json")
            if f.exists():
                out += fsio.read_json(f)
        return out

    # -- the feedback loop (docs/latency.md) -----------------------------------------------------
    def reference(self) -> dict:
        """The run's reference library (the space's first architecture, compiled INT8) and its
        calibrated time: every feedback measurement alternates with it and records the ratio,
        which cancels the host's speed drift (docs/measurement.md). Kept in the run directory, so a
        resumed run uses the same reference and calibration."""
        run = self.run_dir
        if not run.file(rundir.REFERENCE).exists():
            arch = self._first_arch()
            with self.rep.stage("feedback: compile and calibrate the reference library", total=1) as adv:
                lib = self._timed("feedback", lambda: compile_arch(arch, self.recipe, self.target,
                                                                    run.file(rundir.REFERENCE_LIB)))
                m = self._timed("feedback", lambda: self.runner.measure(str(lib), arch.input_shape, min_samples=50,
                                                                         journal=run.journal_file))
                adv(1, f"{m.stats.median_ms:.4f} ms")
            fsio.write_json(run.file(rundir.REFERENCE), {"arch": str(arch), "library": rundir.REFERENCE_LIB,
                                                         "sha256": fsio.sha256_file(lib),
                                                         "calibrated_ms": m.stats.median_ms})
        return fsio.read_json(run.file(rundir.REFERENCE))

    def _measure_candidate(self, arch: Arch, table: LatencyTable, pred: Predictor, ref: dict) -> dict:
        """One candidate compiled INT8 and measured interleaved with the reference: its absolute
        median, its ratio to the reference, and the ms that ratio means at the reference's
        calibrated time (what the predictor learns from)."""
        lib_ref = str(self.run_dir.join(ref["library"]))
        m = self._timed("feedback", lambda: measure_arch(arch, self.recipe, self.target, lambda lib, shape: self.runner.measure(
            lib, shape, min_samples=15, journal=self.run_dir.journal_file, reference=lib_ref)))
        ratio = m.reference
        return {"arch": str(arch), "table_ms": table.arch_sum(arch), "predicted_ms": pred.predict_arch(arch, table),
                "measured_ms": m.stats.median_ms, "ratio": ratio.ratio, "reference": ref["arch"],
                "calibrated_ms": ratio.ratio * ref["calibrated_ms"], "windows": len(ratio.windows),
                "discarded": ratio.discarded}

    def heldout(self, table: LatencyTable, pred: Predictor, ref: dict) -> list[dict]:
        """``cfg.heldout`` architectures drawn uniformly from the space, measured once and never
        fitted: the predictor's error on them is the honest one (docs/latency.md)."""
        path = self.run_dir.file(rundir.HELDOUT)
        if not path.exists():
            rng, archs, first = np.random.default_rng(self.cfg.seed * 31 + 997), [], self._first_arch()
            for _ in range(50 * max(1, self.cfg.heldout)):
                if len(archs) == self.cfg.heldout:
                    break
                a = self._sample(None, rng)
                if a != first and a not in archs:
                    archs.append(a)
            rows = []
            with self.rep.stage(f"feedback: compile + measure {len(archs)} held-out candidates", total=len(archs)) as adv:
                for arch in archs:
                    rows.append(self._measure_candidate(arch, table, pred, ref))
                    adv(1, f"{rows[-1]['calibrated_ms']:.3f} ms")
            fsio.write_json(path, rows)
        return fsio.read_json(path)

    def _fit(self, points: list[dict], table: LatencyTable) -> Predictor:
        """The predictor fitted on ``points``: on the reference-calibrated ms where a point has
        them (steadier than absolute medians on a shared host, docs/measurement.md)."""
        if not points:
            return Predictor(target=self.target.name, table_hash=table_hash(table))
        return fit_arch_predictor([Arch.parse(p["arch"]) for p in points], [_fit_ms(p) for p in points],
                                  table, self.target.name)

    def round(self, r: int, table: LatencyTable) -> SearchResult:
        run, cfg = self.run_dir, self.cfg
        ref = self.reference()
        pred = self._fit(self.earlier_runs(table, ref) + self.measured_so_far(r - 1), table)
        scaled = pred.corrected_table(table)   # the predictor as a per-op table: what the search optimises
        records.save(run.file(f"rounds/r{r}/predictor.json"), pred)
        if not run.done(f"r{r}.search"):
            budget = self.budget_ms or default_budget(scaled, self.space)
            strategy, label = self.search_strategy(), self.search_label()
            total = cfg.search.epochs if cfg.strategy == "darts" else None
            with self.rep.stage(f"round {r}: search ({label}, budget {budget:.3f} ms)", total=total) as adv:
                res = self._timed("search", lambda: strategy(
                    self.space, self.data, scaled, budget, cfg.search, cfg.seed + r,
                    checkpoint=run.file(f"rounds/r{r}/search_ckpt.pt"),
                    on_step=lambda e, h: adv(1, _step_note(h)), compute=self.compute))
            records.save(run.file(f"rounds/r{r}/search.json"), res)
            from ..search.collapse import collapse_warning, fit_warning

            warning = collapse_warning(res.history)
            if warning:
                self.rep.warn(f"round {r}: {warning}")
            if res.fitted:   # the argmax was over the budget by the search's table (docs/search.md)
                self.rep.info(f"round {r}: the argmax was over the {budget:.3f} ms budget; "
                              + ", ".join(f"layer {s['layer']} {s['old_op']} -> {s['new_op']}" for s in res.fitted))
            tight = fit_warning(res.arch, res.fitted, budget)
            if tight:
                self.rep.warn(f"round {r}: {tight}")
            run.mark(f"r{r}.search", arch=str(res.arch), collapse=warning, budget_swaps=len(res.fitted),
                     budget_fit_warning=tight)
        res = records.load(run.file(f"rounds/r{r}/search.json"), SearchResult)
        if not run.done(f"r{r}.measure"):
            held = self.heldout(table, pred, ref) if cfg.heldout else []
            rng = np.random.default_rng(cfg.seed * 31 + r)
            # half from softmax(alpha) (where the search is heading), half uniform (spread over the space,
            # so that the refit generalises to what the next round may choose: docs/latency.md)
            archs = [res.arch] + [self._sample(res if i % 2 == 0 else None, rng) for i in range(cfg.sampled_per_round)]
            rows = []
            with self.rep.stage(f"round {r}: compile + measure {len(archs)} candidates", total=len(archs)) as adv:
                for i, arch in enumerate(archs):
                    rows.append({**self._measure_candidate(arch, table, pred, ref), "chosen": i == 0})
                    adv(1, f"{rows[-1]['measured_ms']:.3f} ms")
            fsio.write_json(run.file(f"rounds/r{r}/measured.json"), rows)
            self._keep_for_later_runs(rows, r)
            chosen = rows[0]
            err = abs(chosen["predicted_ms"] - _fit_ms(chosen)) / _fit_ms(chosen) * 100
            heldout = {}
            if held:   # the error on the held-out set with this round's predictor, and after refitting on this round
                refit = self._fit(self.earlier_runs(table, ref) + self.measured_so_far(r - 1) + rows, table)
                archs_h, ms_h = [Arch.parse(h["arch"]) for h in held], [_fit_ms(h) for h in held]
                heldout = {"heldout_before": quality([pred.predict_arch(a, table) for a in archs_h], ms_h),
                           "heldout_after": quality([refit.predict_arch(a, table) for a in archs_h], ms_h),
                           "refit_kind": refit.kind, "predictor_kind": pred.kind}
            run.mark(f"r{r}.measure", predicted_ms=chosen["predicted_ms"], measured_ms=chosen["measured_ms"],
                     calibrated_ms=_fit_ms(chosen), pred_err_pct=err, budget_ms=res.budget_ms,
                     budget_met=_fit_ms(chosen) <= res.budget_ms,
                     discarded_windows=sum(x["discarded"] for x in rows + held),
                     windows=sum(x["windows"] for x in rows + held), **heldout)
        m = run.info(f"r{r}.measure")   # from the run state, so that a --resume reports every round too
        self.rep.info(f"round {r}: {round_line(m)}")
        return res

    def _sample(self, res: SearchResult | None, rng: np.random.Generator) -> Arch:
        """An architecture drawn from the round's softmax(alpha) (uniform when the strategy has no
        alphas, or with no round): latency needs no trained weights, so these measurements are cheap."""
        choices = []
        for i in range(len(self.space.positions())):
            cands = self.space.candidates(i)
            p = np.asarray(res.alphas[i]) if res is not None and res.alphas else np.ones(len(cands))
            choices.append(cands[int(rng.choice(len(cands), p=p / p.sum()))])
        return arch_from_choices(self.space, choices)

    def train_fp32(self, arch: Arch) -> torch.nn.Module:
        run, cfg = self.run_dir, self.cfg
        torch.manual_seed(cfg.seed)
        model = self.initial_model(arch)
        ckpt = run.file("train_fp32_ckpt.pt")
        if run.done("train_fp32"):
            model.load_state_dict(torch.load(run.file("model_fp32.pt"), weights_only=True))
            return model.eval()
        sparse = any("_sp" in layer.op for layer in arch.layers)
        with self.rep.stage("train fp32" + (" (DASS: dense, prune, fine-tune)" if sparse else ""), total=cfg.final_epochs) as adv:
            if sparse:  # the three DASS stages; restarts from scratch on resume (no per-epoch checkpoint)
                from ..space.sparse import train_sparse

                self._timed("train_fp32", lambda: train_sparse(model, self.train, cfg.final_epochs, 3e-3, cfg.seed,
                                                               compute=self.compute))
            else:
                self._timed("train_fp32", lambda: fit(model, self.train, cfg.final_epochs, 3e-3, cfg.seed, checkpoint=ckpt,
                                                      on_epoch=lambda e, loss: adv(1, f"loss {loss:.3f}"), compute=self.compute))
        from ..train import save_checkpoint

        save_checkpoint(run.file("model_fp32.pt"), model.state_dict())
        run.mark("train_fp32", test_acc=evaluate(model, *self.data.test))
        return model.eval()

    def qat(self, model: torch.nn.Module) -> torch.nn.Module:
        run, cfg = self.run_dir, self.cfg
        torch.manual_seed(cfg.seed)
        qmodel = calibrate(to_brevitas(model, self.recipe), self.train[0])
        if run.done("qat"):
            qmodel.load_state_dict(torch.load(run.file("model_int8.pt"), weights_only=False))
            return qmodel.eval()
        with self.rep.stage("QAT int8 (brevitas)", total=self.recipe.qat_epochs) as adv:
            self._timed("qat", lambda: fit(qmodel, self.train, self.recipe.qat_epochs, self.recipe.qat_lr, cfg.seed,
                                           checkpoint=run.file("qat_ckpt.pt"), on_epoch=lambda e, loss: adv(1, f"loss {loss:.3f}"),
                                           compute=self.compute.alone()))   # on rank 0's device: brevitas nets do not pickle
        from ..train import save_checkpoint

        save_checkpoint(run.file("model_int8.pt"), qmodel.state_dict())
        run.mark("qat", test_acc=evaluate(qmodel, *self.data.test))
        return qmodel.eval()

    def export(self, model, qmodel) -> list[dict]:
        run = self.run_dir
        if not run.done("export"):
            with self.rep.stage("export ONNX (float + QCDQ) and check with onnxruntime", total=2) as adv:
                from ..space.sparse import densify

                export_float(densify(model), self._example(), run.file(rundir.MODEL_FP32_ONNX))
                adv()
                export_int8(qmodel, self._example(), run.file(rundir.MODEL_INT8_ONNX))
                adv()
            x = np.asarray(self.data.test[0])   # an image folder's split is decoded here, once
            parity = [dataclasses.asdict(compare("torch fp32", run_torch(model, x), "onnxruntime fp32", run_ort(run.file(rundir.MODEL_FP32_ONNX), x))),
                      dataclasses.asdict(compare("brevitas int8", run_torch(qmodel, x), "onnxruntime int8", run_ort(run.file(rundir.MODEL_INT8_ONNX), x)))]
            acc = float((run_ort(run.file(rundir.MODEL_INT8_ONNX), x).argmax(1) == self.data.test[1]).mean())
            run.mark("export", parity=parity, onnx_int8_acc=acc)
        return run.info("export")["parity"]

    def compile(self):
        from ..compile import compile_onnx

        run = self.run_dir
        lib = run.file(rundir.library_name(self.target.name))
        if not run.done("compile"):
            keep_tuned = None
            if self.farm is None and self.target.measurable_locally:  # docs/tuning.md: tuned only if not slower
                from ..measure.tuned_check import checker

                keep_tuned = checker(self.space.input_shape, self.target)
            with self.rep.stage(f"compile INT8 with TVM for {self.target.name}" + (f" ({self.cfg.trials} tuning trials)" if self.cfg.trials else "")) as adv:
                res = self._timed("compile", lambda: compile_onnx(run.file(rundir.MODEL_INT8_ONNX), self.target, lib, int8=True,
                                                                 trials=self.cfg.trials, farm=self.farm,
                                                                 progress=lambda m: adv(0, m), keep_tuned=keep_tuned))
            run.mark("compile", result=dataclasses.asdict(res))
        return lib, run.info("compile")["result"]

    def measure(self, lib) -> tuple[LatencyStats, dict]:
        run = self.run_dir
        if not run.done("measure"):
            shape = self.space.input_shape
            with self.rep.stage(f"measure on {self.target.name}", total=1) as adv:
                stats = self._timed("measure", lambda: self._measure_lib(str(lib), shape, repeat=50))
                adv()
            x = np.asarray(self.data.test[0])   # an image folder's split is decoded here, once
            tvm_out = self.runner.run(lib, x)
            ort_out = run_ort(run.file(rundir.MODEL_INT8_ONNX), x)
            parity = dataclasses.asdict(compare("onnxruntime int8", ort_out, f"tvm {self.target.name}", tvm_out))
            records.save(run.file(rundir.LATENCY), stats)
            run.mark("measure", parity=parity, tvm_acc=float((tvm_out.argmax(1) == self.data.test[1]).mean()))
        return records.load(run.file(rundir.LATENCY), LatencyStats), run.info("measure")

    # -- the whole build ----------------------------------------------------------------------
    def run(self) -> Manifest:
        cfg = self.cfg
        with self.run_dir.open(records.to_dict(cfg)["data"], self.resume) as run:
            table = self.op_table()
            if cfg.space_mode == "evolve":
                table = self.evolve_space(table)
            res = None
            for r in range(1, cfg.rounds + 1):
                res = self.round(r, table)
            arch = res.arch
            records.save(run.arch_file, arch)
            model = self.train_fp32(arch)
            qmodel = self.qat(model)
            parity = self.export(model, qmodel)
            lib, comp = self.compile()
            stats, meas = self.measure(lib)
            manifest = self.manifest(arch, parity + [meas["parity"]], comp, stats, meas)
            self.deliver()
            return manifest

    def deliver(self) -> None:
        """The report a user reads and the deployable bundle ``OUT/<target>/`` (both regenerable:
        ``edgenas report`` / ``edgenas package``)."""
        from ..bundle import package
        from ..report import write_report

        with self.rep.stage("report.html and bundle", total=2) as adv:
            write_report(self.run_dir.path)
            adv()
            package(self.run_dir.path, self.target)
            adv()

    def manifest(self, arch, parity, comp, stats, meas) -> Manifest:
        run, cfg = self.run_dir, self.cfg
        state = run.completed()
        rounds = tuple({"round": r, **{k: v for k, v in state[f"r{r}.measure"].items() if k != "at"},
                        "arch": state[f"r{r}.search"]["arch"]} for r in range(1, cfg.rounds + 1))
        names = [rundir.ARCH, rundir.MODEL_FP32_ONNX, rundir.MODEL_INT8_ONNX, rundir.library_name(self.target.name),
                 rundir.LATENCY, rundir.OP_TABLE]
        seconds = fsio.read_json(run.file(rundir.TIMING)) if run.file(rundir.TIMING).exists() else {}
        m = Manifest(
            schema_version=SCHEMA_VERSION, target=self.target.name, target_dict=self.target.tvm_target, arch=str(arch),
            data=self.data.name, seed=cfg.seed, recipe=self.recipe.name,
            accuracy={"fp32": state["train_fp32"]["test_acc"], "int8_brevitas": state["qat"]["test_acc"],
                      "int8_onnx": state["export"]["onnx_int8_acc"], "int8_tvm": meas["tvm_acc"], "split": "test",
                      "n": int(len(self.data.test[1]))},
            latency=dataclasses.asdict(stats), latency_how=f"TVM time_evaluator, {stats.n} repeats, {stats.where}",
            parity=tuple(parity), compile=comp, rounds=rounds, stage_seconds=seconds,
            search_cost_s=round(sum(seconds.get(k, 0.0) for k in SEARCH_STAGES), 2),
            search_cost=search_cost(run.file(rundir.COMPUTE)),
            files=hash_files(run.path, names),
        )
        records.save(run.manifest_file, m)
        return m
